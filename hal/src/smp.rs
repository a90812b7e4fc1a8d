//! Starting the application processors the loader parked (PROTOCOL.md, "MP (multiprocessor)
//! Feature"), and knowing when none of them uses the loader's memory any more.
//!
//! The loader starts every CPU listed in the MADT and parks it spinning on its
//! `goto_address`, on a stack, page tables, GDT and IDT that all live in
//! bootloader-reclaimable memory. [`start_aps`] releases each one:
//!
//! - up to the limit (the kernel's `maxcpus=`, at most [`MAX_CPUS`]) into [`ap_entry`], with
//!   an index hal assigns (1, 2, …; the bootstrap CPU is 0). It switches to the kernel's page
//!   tables, loads its own GDT, TSS, per-CPU block and IDT, enables its local APIC, moves to a
//!   kernel stack with a guard page, and only then counts itself as having left the loader's
//!   memory and calls the kernel's AP main;
//! - beyond the limit into [`park_entry`]: the kernel's page tables, a shared GDT, an IDT
//!   whose every gate halts, a small shared stack in hal's own memory, and `hlt` with
//!   interrupts off for good.
//!
//! So hal itself knows whether any CPU still runs in loader memory
//! ([`all_left_loader_memory`]), and reclaiming that memory asks it rather than trusting the
//! kernel's bookkeeping.

use core::{
    cell::UnsafeCell,
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
};

use limine::mp::Cpu;
use spin::Once;
use x86_64::structures::idt::{InterruptDescriptorTable, InterruptStackFrame};

pub use crate::percpu::MAX_CPUS;
use crate::{boot::Boot, gdt, percpu, trap};

/// Kernel stack size of every AP, in 4 KiB pages.
pub const AP_STACK_PAGES: u64 = 16;

static AP_MAIN: Once<fn(usize) -> !> = Once::new();
/// Whether [`start_aps`] has run (it runs once).
static STARTED: AtomicBool = AtomicBool::new(false);
/// CPUs released from the loader's parking loop (into the kernel or into hal's halt loop).
static RELEASED: AtomicUsize = AtomicUsize::new(0);
/// Released CPUs that no longer use any loader memory (stack, tables, code).
static LEFT: AtomicUsize = AtomicUsize::new(0);
/// Released CPUs that reached the kernel's AP main.
static ARRIVED: AtomicUsize = AtomicUsize::new(0);
/// CPUs moved to hal's halt loop because they were beyond the limit.
static PARKED: AtomicUsize = AtomicUsize::new(0);

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

/// The CPUs the loader started (including the bootstrap CPU), in the order it listed them.
pub fn cpus(boot: &Boot) -> impl Iterator<Item = CpuInfo> + '_ {
    let mp = boot.responses().mp;
    let bsp = mp.map_or(0, |mp| mp.bsp_lapic_id());
    mp.into_iter().flat_map(move |mp| {
        mp.cpus().iter().map(move |cpu| CpuInfo {
            acpi_id: cpu.id,
            lapic_id: cpu.lapic_id,
            is_bsp: cpu.lapic_id == bsp,
        })
    })
}

/// Whether the loader enabled x2APIC mode (recorded at `hal::init`).
pub fn x2apic_enabled() -> bool {
    X2APIC.load(Ordering::Relaxed)
}

static X2APIC: AtomicBool = AtomicBool::new(false);

/// The bootstrap CPU's local APIC id as the loader reported it (0 without an MP response),
/// recording whether x2APIC is on. `hal::init` calls this before the responses can go.
pub(crate) fn bsp_lapic_id() -> u32 {
    let mp = crate::boot::live().mp;
    X2APIC.store(
        mp.is_some_and(|mp| mp.flags().contains(limine::mp::ResponseFlags::X2APIC)),
        Ordering::Relaxed,
    );
    mp.map_or(0, |mp| mp.bsp_lapic_id())
}

/// What [`start_aps`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Started {
    /// APs released into the kernel.
    pub released: usize,
    /// Of those, how many reached the kernel's AP main in time.
    pub arrived: usize,
    /// APs beyond the limit, moved to hal's halt loop.
    pub parked: usize,
    /// Whether every released CPU left the loader's memory in time.
    pub all_left: bool,
}

/// Why [`start_aps`] did nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartError {
    /// `hal::init` has not run: the APs would find no kernel page tables.
    NotInitialised,
    /// It ran before.
    AlreadyStarted,
    /// The loader gave no MP response (the machine runs on one CPU).
    NoMpResponse,
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotInitialised => write!(f, "hal::init has not run"),
            Self::AlreadyStarted => write!(f, "the APs were started before"),
            Self::NoMpResponse => write!(f, "the loader gave no MP response"),
        }
    }
}

/// Releases every AP the loader parked: up to `limit` CPUs in all (the bootstrap CPU
/// included, capped at [`MAX_CPUS`]) into `ap_main(index)` on a kernel stack, the rest into
/// hal's halt loop. Waits (on the clock, two seconds per CPU at most) until each released CPU
/// has left the loader's memory.
pub fn start_aps(
    boot: &Boot,
    limit: usize,
    ap_main: fn(usize) -> !,
) -> Result<Started, StartError> {
    if !crate::init::done() {
        return Err(StartError::NotInitialised);
    }
    let mp = boot.responses().mp.ok_or(StartError::NoMpResponse)?;
    if STARTED.swap(true, Ordering::AcqRel) {
        return Err(StartError::AlreadyStarted);
    }
    AP_MAIN.call_once(|| ap_main);
    PARK_IDT.call_once(park_idt);
    let limit = limit.clamp(1, MAX_CPUS);
    let bsp = mp.bsp_lapic_id();
    let (mut index, mut parked) = (1, 0);
    for cpu in mp.cpus().iter().filter(|cpu| cpu.lapic_id != bsp) {
        RELEASED.fetch_add(1, Ordering::AcqRel);
        if index < limit {
            cpu.extra.store(index as u64, Ordering::Relaxed);
            // Release ordering: `extra` is visible before the CPU sees its goto address.
            cpu.goto_address.write(ap_entry);
            index += 1;
        } else {
            cpu.goto_address.write(park_entry);
            parked += 1;
        }
    }
    let released = RELEASED.load(Ordering::Acquire);
    // An AP needs well under a millisecond on hardware; under emulation allow two seconds
    // per CPU so a dead AP cannot hang the boot.
    let deadline = crate::time::now_ns() + 2_000_000_000 * released.max(1) as u64;
    while (LEFT.load(Ordering::Acquire) < released || ARRIVED.load(Ordering::Acquire) < index - 1)
        && crate::time::now_ns() < deadline
    {
        core::hint::spin_loop();
    }
    Ok(Started {
        released: index - 1,
        arrived: ARRIVED.load(Ordering::Acquire),
        parked,
        all_left: all_left_loader_memory(),
    })
}

/// Whether no AP runs in the loader's memory: the APs were released and every one of them
/// has left it, or the loader started none.
pub(crate) fn all_left_loader_memory() -> bool {
    if STARTED.load(Ordering::Acquire) {
        LEFT.load(Ordering::Acquire) == RELEASED.load(Ordering::Acquire)
    } else {
        crate::boot::live().mp.is_none_or(|mp| mp.cpus().len() <= 1)
    }
}

/// How many CPUs are in hal's halt loop (beyond the limit).
pub fn parked_count() -> usize {
    PARKED.load(Ordering::Acquire)
}

/// Where a released AP starts, on the stack the loader gave it.
///
/// # Safety
/// Only the loader calls this, with the CPU's own `Cpu` record, in the protocol's machine
/// state.
unsafe extern "C" fn ap_entry(cpu: &Cpu) -> ! {
    let index = cpu.extra.load(Ordering::Relaxed) as usize;
    // Before anything can log or panic: both name the CPU with `percpu::current_index`.
    percpu::init_this_cpu(index, cpu.lapic_id);
    crate::cpu::reset_rflags();
    // A panic elsewhere may have begun stopping the machine before this CPU could take NMIs.
    if trap::stopping() {
        crate::cpu::halt_forever();
    }
    crate::mm_hooks::on_ap_start();
    gdt::init_this_cpu(index);
    trap::init_this_cpu();
    crate::usermode::init_this_cpu();
    if crate::apic::mode().is_some()
        && let Err(error) = crate::apic::init_this_cpu()
    {
        log::warn!("smp: cpu {index}: local APIC: {error}");
    }
    percpu::mark_online();
    match crate::mm::alloc_kernel_stack(AP_STACK_PAGES) {
        Ok(stack) => crate::cpu::run_on_stack(stack, move || ap_on_kernel_stack(index)),
        Err(e) => {
            // It stays on the loader's stack, so the loader's memory is never reclaimed.
            log::error!("smp: cpu {index}: no kernel stack ({e}); halting this CPU");
            crate::cpu::halt_forever()
        }
    }
}

fn ap_on_kernel_stack(index: usize) -> ! {
    crate::thread::init_this_cpu();
    LEFT.fetch_add(1, Ordering::AcqRel);
    ARRIVED.fetch_add(1, Ordering::AcqRel);
    let main = AP_MAIN
        .get()
        .expect("start_aps stores AP_MAIN before releasing any CPU");
    main(index)
}

/// The stack parked CPUs share. They only ever push onto it when an NMI or machine check
/// arrives, and those handlers never return, so nothing reads what they wrote.
#[repr(C, align(16))]
struct ParkStack(UnsafeCell<[u8; PARK_STACK_SIZE]>);

const PARK_STACK_SIZE: usize = 4096;

// SAFETY: only the CPU (pushing on exception entry) writes the bytes; Rust takes the address.
unsafe impl Sync for ParkStack {}

static PARK_STACK: ParkStack = ParkStack(UnsafeCell::new([0; PARK_STACK_SIZE]));

/// The IDT parked CPUs load: the exceptions that can reach a CPU halted with interrupts off
/// (NMI, machine check, and a double fault should one of them fail) halt it for good.
static PARK_IDT: Once<InterruptDescriptorTable> = Once::new();

fn park_idt() -> InterruptDescriptorTable {
    let mut idt = InterruptDescriptorTable::new();
    idt.non_maskable_interrupt.set_handler_fn(park_nmi);
    idt.machine_check.set_handler_fn(park_machine_check);
    idt.double_fault.set_handler_fn(park_double_fault);
    idt
}

extern "x86-interrupt" fn park_nmi(_: InterruptStackFrame) {
    crate::cpu::halt_forever()
}

extern "x86-interrupt" fn park_machine_check(_: InterruptStackFrame) -> ! {
    crate::cpu::halt_forever()
}

extern "x86-interrupt" fn park_double_fault(_: InterruptStackFrame, _: u64) -> ! {
    crate::cpu::halt_forever()
}

/// Where a CPU beyond the limit goes: off every piece of loader memory, then halted.
///
/// # Safety
/// Only the loader calls this, in the protocol's machine state.
unsafe extern "C" fn park_entry(_cpu: &Cpu) -> ! {
    crate::cpu::disable_interrupts();
    crate::mm_hooks::on_ap_start();
    gdt::load_for_parking();
    PARK_IDT
        .get()
        .expect("start_aps builds the park IDT before releasing any CPU")
        .load();
    let top = PARK_STACK.0.get() as u64 + PARK_STACK_SIZE as u64;
    // SAFETY: the park stack is hal's static memory, used only as parked CPUs' stack, and
    // what they push there is never read (see `ParkStack`).
    unsafe { crate::cpu::switch_stack_and_call(top, parked) }
}

extern "C" fn parked() -> ! {
    PARKED.fetch_add(1, Ordering::AcqRel);
    LEFT.fetch_add(1, Ordering::AcqRel);
    crate::cpu::halt_forever()
}
