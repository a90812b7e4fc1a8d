//! Starting the application processors the loader parked (Limine MP request).
//!
//! The loader starts every CPU listed in the MADT and parks it spinning on its
//! `goto_address`. [`start_aps`] numbers the APs 1.. (the bootstrap CPU is 0), passes each its
//! number through the `extra` field, and releases it into [`ap_entry`], which gives the CPU its
//! own GDT, TSS, per-CPU block and IDT before calling the kernel's AP main.

use core::sync::atomic::Ordering;

use limine::mp::Cpu;
use spin::Once;

use crate::{gdt, percpu, percpu::MAX_CPUS, trap};

static AP_MAIN: Once<fn(usize) -> !> = Once::new();

/// A CPU the loader reported.
#[derive(Clone, Copy, Debug)]
pub struct CpuInfo {
    /// ACPI processor UID.
    pub acpi_id: u32,
    /// Local APIC id.
    pub lapic_id: u32,
    /// Whether it is the bootstrap CPU.
    pub is_bsp: bool,
}

/// The CPUs the loader started (including the bootstrap CPU), in MADT order.
pub fn cpus() -> impl Iterator<Item = CpuInfo> {
    let mp = crate::boot::responses().mp;
    let bsp = mp.map_or(0, |mp| mp.bsp_lapic_id());
    mp.into_iter().flat_map(move |mp| {
        mp.cpus().iter().map(move |cpu| CpuInfo {
            acpi_id: cpu.id,
            lapic_id: cpu.lapic_id,
            is_bsp: cpu.lapic_id == bsp,
        })
    })
}

/// Whether the loader enabled x2APIC mode.
pub fn x2apic_enabled() -> bool {
    crate::boot::responses()
        .mp
        .is_some_and(|mp| mp.flags().contains(limine::mp::ResponseFlags::X2APIC))
}

/// Releases every parked AP into `ap_main(index)`. Returns how many were released; CPUs
/// beyond [`MAX_CPUS`] are left parked (and logged).
pub fn start_aps(ap_main: fn(usize) -> !) -> usize {
    let Some(mp) = crate::boot::responses().mp else {
        log::warn!("smp: the loader gave no MP response; running on one CPU");
        return 0;
    };
    AP_MAIN.call_once(|| ap_main);
    let bsp = mp.bsp_lapic_id();
    let mut index = 1;
    for cpu in mp.cpus().iter().filter(|cpu| cpu.lapic_id != bsp) {
        if index >= MAX_CPUS {
            log::warn!(
                "smp: CPU with APIC id {} left parked (limit {MAX_CPUS})",
                cpu.lapic_id
            );
            continue;
        }
        cpu.extra.store(index as u64, Ordering::Relaxed);
        // Release ordering: `extra` is visible before the CPU sees its goto address.
        cpu.goto_address.write(ap_entry);
        index += 1;
    }
    index - 1
}

/// Where a released AP starts, on the stack the loader gave it.
///
/// # Safety
/// Only the loader calls this, with the CPU's own `Cpu` record, in the protocol's machine
/// state.
unsafe extern "C" fn ap_entry(cpu: &Cpu) -> ! {
    crate::cpu::reset_rflags();
    // A panic elsewhere may have begun stopping the machine before this CPU could take NMIs.
    if trap::stopping() {
        crate::cpu::halt_forever();
    }
    let index = cpu.extra.load(Ordering::Relaxed) as usize;
    crate::mm_hooks::on_ap_start();
    gdt::init_this_cpu(index);
    percpu::init_this_cpu(index, cpu.lapic_id);
    trap::init_this_cpu();
    percpu::mark_online();
    let main = AP_MAIN
        .get()
        .expect("start_aps stores AP_MAIN before releasing any CPU");
    main(index)
}
