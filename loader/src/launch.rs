//! ExitBootServices and what follows it: converting the final memory map, building the page
//! tables, quieting interrupt sources and jumping into the kernel. Nothing here allocates or
//! calls boot services; failures can only be reported on serial.

use uefi::boot::{self, MemoryType};

use crate::{
    acpi::IoApic,
    arena::Arena,
    cpu::{self, Features},
    fail, handoff,
    kernel::Kernel,
    mem::Region,
    memory, mp, out, platform,
    responses::Pending,
    strict,
    tables::{self, Identity},
};

/// Everything prepared before ExitBootServices for the steps after it.
pub struct Launch<'k> {
    /// CPU features (NX, PAT, 1 GiB pages).
    pub features: Features,
    /// Base revision in use.
    pub revision: u64,
    /// HHDM offset.
    pub hhdm: u64,
    /// The loaded kernel.
    pub kernel: &'k Kernel<'k>,
    /// Where the kernel starts.
    pub entry: u64,
    /// Homes for the memory maps.
    pub memmaps: memory::Prepared,
    /// The loader's overlays on the EFI map.
    pub overlays: alloc::vec::Vec<bootcore::memmap::Overlay>,
    /// The response arena (memory-map responses are filled in after the exit).
    pub responses: Arena,
    /// Response slots still to fill.
    pub pending: Pending,
    /// The page-table pool (below 4 GiB).
    pub pool: Region,
    /// Ranges identity-mapped for the hand-off and the AP trampoline.
    pub identity: alloc::vec::Vec<Identity>,
    /// The kernel's stack.
    pub stack: Region,
    /// The GDT and hand-off parameters page.
    pub handoff_page: Region,
    /// The MP plan, if the kernel asked for MP.
    pub mp: Option<mp::Plan>,
    /// I/O APICs to mask.
    pub io_apics: alloc::vec::Vec<IoApic>,
}

/// Exits boot services and enters the kernel.
pub fn exit_and_enter(mut l: Launch<'_>) -> ! {
    out::boot_services_ending();
    // SAFETY: Nothing obtained from boot services is used after this point: screen output has
    // been switched off, files and protocols are no longer touched, and every allocation that
    // is still alive stays alive (this function never returns, so nothing is dropped).
    let final_map = unsafe { boot::exit_boot_services(Some(MemoryType::LOADER_DATA)) };
    cpu::cli();

    let entries = match l.memmaps.finish(
        &final_map,
        &l.overlays,
        &mut l.responses,
        l.pending.memmap,
        l.pending.efi_memmap,
    ) {
        Ok(entries) => entries,
        Err(e) => fail::after_exit(format_args!("{e}")),
    };
    if strict::on() {
        strict::poison_usable(entries);
    }
    let pool_base = l.pool.base();
    let cr3 = match tables::build(
        l.pool.tables_mut(),
        pool_base,
        l.kernel,
        entries,
        l.revision,
        l.hhdm,
        &l.identity,
        (l.features.nx, l.features.gib_pages),
    ) {
        Ok(cr3) => cr3,
        Err(e) => fail::after_exit(format_args!("building page tables: {e}")),
    };
    let params = handoff::Params {
        cr3,
        hhdm: l.hhdm,
        stack_top_phys: l.stack.end(),
        entry: l.entry,
        nx: l.features.nx,
        pat: l.features.pat,
        rflags: if strict::on() {
            handoff::RFLAGS | strict::ENTRY_RFLAGS_EXTRA
        } else {
            handoff::RFLAGS
        },
    };
    // The GDT goes in place first: APs load the same one.
    if let Err(e) = handoff::prepare(&mut l.handoff_page, &params) {
        fail::after_exit(format_args!("{e}"));
    }
    if let Some(plan) = &mut l.mp {
        let boot = mp::Boot {
            hhdm: l.hhdm,
            cr3,
            gdt_hhdm: l.hhdm + l.handoff_page.base(),
        };
        if let Err(what) = mp::finish(plan, l.pending.mp.as_mut(), &mut l.responses, &boot) {
            fail::after_exit(format_args!("pre-sized {what} too small"));
        }
    }
    platform::mask_pic();
    platform::mask_io_apics(&l.io_apics);
    platform::mask_lapic_timer();
    // SAFETY: Boot services are gone, interrupts are off and masked at their sources, and the
    // page tables map the kernel, the HHDM (which covers every allocation: all of them are
    // bootloader-reclaimable or executable-and-modules) and identity-map the loader image,
    // the stack and the hand-off page. Every AP that was started is parked in HHDM code and
    // no longer touches the identity map the stub drops.
    unsafe { handoff::enter(&l.handoff_page) }
}
