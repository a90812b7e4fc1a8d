//! The local APIC: every CPU's own interrupt controller (EOI, spurious and error vectors,
//! its timer, and inter-processor interrupts).
//!
//! Evergreen keeps the mode the firmware and loader left: xAPIC (registers in one MMIO page,
//! the same physical page on every CPU) or x2APIC (registers as MSRs `0x800 + offset / 16`).
//! A CPU that arrives in xAPIC mode while the others run in x2APIC mode is switched up.

pub mod ipi;
mod timer;

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

pub(crate) use ipi::{init_tlb_shootdown, serve as serve_shootdown};
pub use ipi::{
    send_fixed, send_nmi, send_self, shootdown, shootdown_timeouts, shootdowns_served,
    stop_other_cpus,
};
use spin::Once;
pub(crate) use timer::calibrate_timer;
pub use timer::{
    timer_frequency, timer_oneshot_ns, timer_periodic, timer_remaining_ns, timer_stop,
};
use x86_64::registers::model_specific::Msr;

use crate::{
    mm::Mmio,
    trap::{self, TrapFrame, vectors},
};

/// IA32_APIC_BASE: the APIC's physical base, global enable and x2APIC enable.
const MSR_APIC_BASE: u32 = 0x1b;
const BASE_X2APIC: u64 = 1 << 10;
const BASE_ENABLE: u64 = 1 << 11;
const BASE_ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;
/// The first x2APIC register MSR (the xAPIC register at offset 0).
const X2APIC_MSR_BASE: u32 = 0x800;

/// Register offsets (xAPIC MMIO; the x2APIC MSR is `0x800 + offset / 16`).
mod reg {
    pub const ID: u32 = 0x20;
    pub const VERSION: u32 = 0x30;
    pub const TPR: u32 = 0x80;
    pub const EOI: u32 = 0xb0;
    pub const SVR: u32 = 0xf0;
    pub const ESR: u32 = 0x280;
    pub const ICR_LOW: u32 = 0x300;
    pub const ICR_HIGH: u32 = 0x310;
    pub const LVT_TIMER: u32 = 0x320;
    pub const LVT_LINT0: u32 = 0x350;
    pub const LVT_LINT1: u32 = 0x360;
    pub const LVT_ERROR: u32 = 0x370;
    pub const TIMER_INITIAL: u32 = 0x380;
    pub const TIMER_CURRENT: u32 = 0x390;
    pub const TIMER_DIVIDE: u32 = 0x3e0;
}

/// LVT: the entry is masked.
const LVT_MASKED: u32 = 1 << 16;
/// LVT: NMI delivery.
const LVT_NMI: u32 = 0b100 << 8;
/// LVT: active-low input.
const LVT_ACTIVE_LOW: u32 = 1 << 13;
/// Spurious-interrupt vector register: APIC software enable.
const SVR_ENABLE: u32 = 1 << 8;

/// How the local APIC's registers are reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Memory-mapped registers at this physical address.
    XApic(u64),
    /// Model-specific registers.
    X2Apic,
}

impl core::fmt::Display for Mode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::XApic(phys) => write!(f, "xAPIC at {phys:#x}"),
            Self::X2Apic => write!(f, "x2APIC"),
        }
    }
}

/// Why the local APIC could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// CPUID says this CPU has no local APIC.
    Missing,
    /// Its register page could not be mapped.
    Map(u64),
    /// [`init`] has not run.
    NotInitialised,
    /// This CPU is in x2APIC mode but the bootstrap CPU uses xAPIC.
    ModeMismatch,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Missing => write!(f, "CPUID reports no local APIC"),
            Self::Map(phys) => write!(f, "cannot map the local APIC registers at {phys:#x}"),
            Self::NotInitialised => write!(f, "the local APIC has not been initialised"),
            Self::ModeMismatch => {
                write!(
                    f,
                    "this CPU is in x2APIC mode, the bootstrap CPU in xAPIC mode"
                )
            }
        }
    }
}

/// The register access of the local APICs (the same for every CPU).
struct LocalApic {
    mode: Mode,
    /// The xAPIC register page (`None` in x2APIC mode).
    mmio: Option<Mmio>,
}

static LAPIC: Once<LocalApic> = Once::new();
static ERRORS: AtomicU64 = AtomicU64::new(0);
static LAST_ERROR: AtomicU32 = AtomicU32::new(0);
static SPURIOUS: AtomicU64 = AtomicU64::new(0);

fn read_msr(index: u32) -> u64 {
    // SAFETY: only IA32_APIC_BASE (present on every CPU with an APIC, checked through CPUID
    // before first use) and x2APIC registers in x2APIC mode are read; reads have no side
    // effects besides the architectural ones of the APIC register itself.
    unsafe { Msr::new(index).read() }
}

fn write_msr(index: u32, value: u64) {
    // SAFETY: as for `read_msr`; the values written are valid for each register (the callers
    // program documented fields only), and none of them affects memory safety.
    unsafe { Msr::new(index).write(value) }
}

impl LocalApic {
    fn read(&self, offset: u32) -> u32 {
        match &self.mmio {
            Some(mmio) => mmio.read_u32(u64::from(offset)),
            None => read_msr(X2APIC_MSR_BASE + offset / 16) as u32,
        }
    }

    fn write(&self, offset: u32, value: u32) {
        match &self.mmio {
            Some(mmio) => mmio.write_u32(u64::from(offset), value),
            None => write_msr(X2APIC_MSR_BASE + offset / 16, u64::from(value)),
        }
    }
}

fn lapic() -> Option<&'static LocalApic> {
    LAPIC.get()
}

/// Whether CPUID reports a local APIC.
fn present() -> bool {
    core::arch::x86_64::__cpuid(1).edx & (1 << 9) != 0
}

/// Finds the local APIC on the bootstrap CPU, maps its registers if it is in xAPIC mode, and
/// takes over end-of-interrupt signalling. `madt_address` (from ACPI) is only cross-checked:
/// IA32_APIC_BASE is what the hardware uses. Call before [`init_this_cpu`].
pub(crate) fn init(madt_address: Option<u64>) -> Result<Mode, Error> {
    if let Some(lapic) = lapic() {
        return Ok(lapic.mode);
    }
    if !present() {
        return Err(Error::Missing);
    }
    let mut base = read_msr(MSR_APIC_BASE);
    if base & BASE_ENABLE == 0 {
        base |= BASE_ENABLE;
        write_msr(MSR_APIC_BASE, base);
    }
    let lapic = if base & BASE_X2APIC != 0 {
        LocalApic {
            mode: Mode::X2Apic,
            mmio: None,
        }
    } else {
        let phys = base & BASE_ADDRESS_MASK;
        if let Some(madt) = madt_address.filter(|&a| a != phys) {
            log::warn!(
                "apic: the MADT says {madt:#x}, IA32_APIC_BASE says {phys:#x}; using the MSR"
            );
        }
        let mmio = crate::mm::map_mmio(phys, 0x1000).map_err(|_| Error::Map(phys))?;
        LocalApic {
            mode: Mode::XApic(phys),
            mmio: Some(mmio),
        }
    };
    let mode = LAPIC.call_once(|| lapic).mode;
    trap::register_hal(vectors::APIC_ERROR, on_error);
    trap::register_hal(vectors::SPURIOUS, on_spurious);
    trap::set_eoi(eoi);
    Ok(mode)
}

/// Enables the local APIC of the CPU running this: spurious vector, error vector, the LINT
/// pins (LINT0 — the 8259's virtual-wire input — masked; the NMI pin as the MADT says), task
/// priority 0, timer stopped. Call on every CPU after [`init`] and after its IDT is loaded.
pub(crate) fn init_this_cpu() -> Result<(), Error> {
    let lapic = lapic().ok_or(Error::NotInitialised)?;
    let base = read_msr(MSR_APIC_BASE);
    match lapic.mode {
        Mode::X2Apic if base & BASE_X2APIC == 0 => {
            // Enable first, then x2APIC: the architectural order of the two bits.
            write_msr(MSR_APIC_BASE, base | BASE_ENABLE);
            write_msr(MSR_APIC_BASE, base | BASE_ENABLE | BASE_X2APIC);
        }
        Mode::XApic(_) if base & BASE_X2APIC != 0 => return Err(Error::ModeMismatch),
        _ if base & BASE_ENABLE == 0 => write_msr(MSR_APIC_BASE, base | BASE_ENABLE),
        _ => {}
    }
    lapic.write(reg::TPR, 0);
    lapic.write(reg::LVT_TIMER, LVT_MASKED | u32::from(vectors::TIMER));
    lapic.write(reg::LVT_LINT0, lint_setting(0));
    lapic.write(reg::LVT_LINT1, lint_setting(1));
    lapic.write(reg::LVT_ERROR, u32::from(vectors::APIC_ERROR));
    // The ESR latches on a write; write twice to clear stale errors (xAPIC erratum-safe).
    lapic.write(reg::ESR, 0);
    lapic.write(reg::ESR, 0);
    lapic.write(reg::SVR, SVR_ENABLE | u32::from(vectors::SPURIOUS));
    // Acknowledge anything left in service by the firmware.
    lapic.write(reg::EOI, 0);
    ipi::mark_ready();
    Ok(())
}

/// The LVT value for LINT`pin` on this CPU: NMI if the MADT says so, else masked.
fn lint_setting(pin: u8) -> u32 {
    let Some(platform) = crate::acpi::platform().filter(|p| p.has_madt) else {
        // Without a MADT, the PC convention: LINT1 carries NMI.
        return if pin == 1 { LVT_NMI } else { LVT_MASKED };
    };
    let id = id();
    let uid = platform
        .processors
        .iter()
        .find(|p| p.apic_id == id)
        .map(|p| p.uid);
    platform
        .local_nmis
        .iter()
        .find(|nmi| nmi.lint == pin && (nmi.uid.is_none() || nmi.uid == uid))
        .map_or(LVT_MASKED, |nmi| {
            LVT_NMI
                | if nmi.signalling.active_low {
                    LVT_ACTIVE_LOW
                } else {
                    0
                }
        })
}

/// The local APIC id of the CPU running this (0 before [`init`]).
pub fn id() -> u32 {
    match lapic() {
        Some(lapic) if lapic.mode == Mode::X2Apic => lapic.read(reg::ID),
        Some(lapic) => lapic.read(reg::ID) >> 24,
        None => 0,
    }
}

/// The mode in use, once [`init`] ran.
pub fn mode() -> Option<Mode> {
    lapic().map(|l| l.mode)
}

/// The APIC version register: version in bits 0-7, highest LVT entry in bits 16-23.
pub fn version() -> Option<u32> {
    lapic().map(|l| l.read(reg::VERSION))
}

/// Signals end-of-interrupt to this CPU's local APIC (installed as hal's EOI hook).
pub fn eoi() {
    if let Some(lapic) = lapic() {
        lapic.write(reg::EOI, 0);
    }
}

fn on_error(_frame: &TrapFrame) {
    if let Some(lapic) = lapic() {
        lapic.write(reg::ESR, 0);
        LAST_ERROR.store(lapic.read(reg::ESR), Ordering::Relaxed);
    }
    ERRORS.fetch_add(1, Ordering::Relaxed);
}

fn on_spurious(_frame: &TrapFrame) {
    SPURIOUS.fetch_add(1, Ordering::Relaxed);
}

/// How many APIC error interrupts arrived, and the last error status (ESR) seen. Handlers
/// do not log (the logger's locks are not interrupt-safe); the kernel reports these.
pub fn errors() -> (u64, u32) {
    (
        ERRORS.load(Ordering::Relaxed),
        LAST_ERROR.load(Ordering::Relaxed),
    )
}

/// How many spurious interrupts arrived.
pub fn spurious_count() -> u64 {
    SPURIOUS.load(Ordering::Relaxed)
}
