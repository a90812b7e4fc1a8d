//! Bringing hal up on the bootstrap CPU, in the one order its parts need.
//!
//! The kernel calls [`init`] once, with the [`Boot`] token, and gets back a [`Machine`]
//! report; it never calls the steps itself, so it cannot call them out of order, twice, or
//! with the wrong CPU index. In order:
//!
//! 1. this CPU's GDT, TSS and per-CPU block as CPU 0, and the IDT (exceptions are reported
//!    from here on);
//! 2. memory management: the frame allocator, the kernel's page tables and protections, the
//!    heap;
//! 3. the boot files' records and the memory map's ranges (for MMIO claims) copied out of
//!    loader memory;
//! 4. the ACPI tables;
//! 5. the clock, calibrated against the HPET, the ACPI PM timer or the PIT;
//! 6. the 8259 PICs masked, the local APIC enabled, TLB shootdowns, the APIC timer measured.
//!
//! The application processors come next, with [`crate::smp::start_aps`], and last the
//! loader's memory is reclaimed with [`crate::mm::reclaim_bootloader_memory`]; each checks
//! that what it needs has happened.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::{acpi, apic, boot::Boot, gdt, mm, percpu, pic, smp, time, trap};

static STARTED: AtomicBool = AtomicBool::new(false);
static DONE: AtomicBool = AtomicBool::new(false);

/// What [`init`] brought up. Steps after memory management may fail without stopping the
/// kernel; each says why.
pub struct Machine {
    /// The frame allocator and the kernel's page tables.
    pub memory: mm::InitSummary,
    /// The ACPI tables.
    pub acpi: Result<&'static acpi::Platform, acpi::Error>,
    /// The monotonic clock's calibration.
    pub time: Result<time::Calibration, time::Error>,
    /// The local APIC.
    pub apic: Result<Apic, apic::Error>,
    /// The bootstrap CPU's local APIC id.
    pub bsp_lapic_id: u32,
}

/// The local APIC as [`init`] left it.
#[derive(Clone, Copy, Debug)]
pub struct Apic {
    /// xAPIC or x2APIC.
    pub mode: apic::Mode,
    /// The APIC timer's input clock, if it could be measured.
    pub timer_hz: Option<u64>,
}

/// Why [`init`] failed: the kernel cannot run without memory management.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// `init` ran before.
    AlreadyDone,
    /// Memory management could not be set up.
    Memory(mm::InitError),
}

impl core::fmt::Display for InitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::AlreadyDone => write!(f, "hal::init ran before"),
            Self::Memory(e) => write!(f, "memory management: {e}"),
        }
    }
}

/// Brings hal up on the bootstrap CPU (see the module doc for the order). Runs once.
pub fn init(_boot: &Boot) -> Result<Machine, InitError> {
    if STARTED.swap(true, Ordering::AcqRel) {
        return Err(InitError::AlreadyDone);
    }
    let bsp_lapic_id = smp::bsp_lapic_id();
    percpu::init_this_cpu(0, bsp_lapic_id);
    gdt::init_this_cpu(0);
    trap::init_this_cpu();
    crate::usermode::init_this_cpu();
    percpu::mark_online();
    let memory = mm::init().map_err(InitError::Memory)?;
    crate::boot::preserve();
    crate::thread::init_this_cpu();
    mm::record_memory_map();
    let acpi = acpi::init();
    let time = time::init();
    pic::disable();
    let madt_address = acpi.as_ref().ok().and_then(|p| p.local_apic_address);
    let apic = apic::init(madt_address).and_then(|mode| {
        apic::init_this_cpu()?;
        apic::init_tlb_shootdown();
        Ok(Apic {
            mode,
            timer_hz: apic::calibrate_timer(),
        })
    });
    DONE.store(true, Ordering::Release);
    Ok(Machine {
        memory,
        acpi,
        time,
        apic,
        bsp_lapic_id,
    })
}

/// Whether [`init`] has finished.
pub(crate) fn done() -> bool {
    DONE.load(Ordering::Acquire)
}
