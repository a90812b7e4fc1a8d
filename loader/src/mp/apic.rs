//! The BSP's local APIC: switching its mode and sending INIT and start-up IPIs.
//!
//! Used after ExitBootServices while the firmware's page tables are still active, so the
//! xAPIC registers are reachable at their physical address (identity-mapped, uncached MMIO).

use bootcore::mp::icr;
use x86_64::registers::model_specific::Msr;

use super::start::Tsc;
use crate::cpu::{self, APIC_BASE_ENABLE, APIC_BASE_X2APIC, MSR_APIC_BASE};

/// How long a previous IPI may stay pending before the xAPIC is considered stuck.
const DELIVERY_TIMEOUT_US: u64 = 10_000;

/// Puts this CPU's local APIC in x2APIC mode (through xAPIC mode if it was disabled).
pub fn enable_x2apic() {
    // SAFETY: Only called when CPUID reports x2APIC, so both bits may be set; boot services
    // are gone, so no firmware code depends on the APIC mode. Enabling the APIC before
    // setting EXTD follows the legal transitions (SDM 3A §11.12.5: disabled → xAPIC → x2APIC).
    unsafe {
        let base = Msr::new(MSR_APIC_BASE).read();
        if base & APIC_BASE_X2APIC == 0 {
            Msr::new(MSR_APIC_BASE).write(base | APIC_BASE_ENABLE);
            Msr::new(MSR_APIC_BASE).write(base | APIC_BASE_ENABLE | APIC_BASE_X2APIC);
        }
    }
}

/// Takes this CPU's local APIC from x2APIC back to xAPIC mode.
pub fn leave_x2apic() {
    // SAFETY: Boot services are gone, so no firmware code depends on the APIC mode. Leaving
    // x2APIC mode requires disabling the APIC first (SDM 3A §11.12.5); it is then re-enabled
    // in xAPIC mode. IA32_APIC_BASE exists on every x86-64 CPU.
    unsafe {
        let base = Msr::new(MSR_APIC_BASE).read();
        if base & APIC_BASE_X2APIC != 0 {
            Msr::new(MSR_APIC_BASE).write(base & !(APIC_BASE_ENABLE | APIC_BASE_X2APIC));
            Msr::new(MSR_APIC_BASE).write((base & !APIC_BASE_X2APIC) | APIC_BASE_ENABLE);
        }
    }
}

/// The BSP's local APIC in its current mode.
#[derive(Clone, Copy, Debug)]
pub enum LocalApic {
    /// x2APIC: the ICR is MSR 0x830.
    X2,
    /// xAPIC: registers at this physical (identity-mapped) base.
    X(u64),
}

impl LocalApic {
    /// The APIC as IA32_APIC_BASE describes it now.
    pub fn current() -> Self {
        // SAFETY: IA32_APIC_BASE exists on every x86-64 CPU.
        let base = unsafe { Msr::new(MSR_APIC_BASE).read() };
        if base & APIC_BASE_X2APIC != 0 {
            LocalApic::X2
        } else {
            LocalApic::X(base & 0x000F_FFFF_FFFF_F000)
        }
    }

    /// Sends the IPI `low` (an ICR low half) to APIC ID `dest`. Returns false if an xAPIC
    /// did not accept it within 10 ms.
    pub fn send(&self, dest: u32, low: u32, tsc: &Tsc) -> bool {
        // Everything written for the target (the trampoline page) must be visible first; a
        // WRMSR to the x2APIC ICR is not serialising.
        cpu::mfence();
        match *self {
            LocalApic::X2 => {
                // SAFETY: In x2APIC mode MSR 0x830 is the ICR; sending INIT or start-up to
                // another CPU does not affect this one.
                unsafe { Msr::new(icr::X2APIC_MSR).write(icr::x2apic(dest, low)) };
                true
            }
            LocalApic::X(base) => {
                let low_reg = (base + icr::XAPIC_LOW) as *mut u32;
                let high_reg = (base + icr::XAPIC_HIGH) as *mut u32;
                if !idle(low_reg, tsc) {
                    return false;
                }
                // SAFETY: `base` is this CPU's xAPIC MMIO page (from IA32_APIC_BASE), which
                // the firmware's page tables still in use identity-map; these are the ICR's
                // halves, and writing the low half sends an INIT or start-up IPI to another
                // CPU, which does not affect this one.
                unsafe {
                    high_reg.write_volatile(icr::xapic_high(dest));
                    low_reg.write_volatile(low);
                }
                idle(low_reg, tsc)
            }
        }
    }
}

/// Waits until the xAPIC ICR at `low_reg` reports no IPI pending.
fn idle(low_reg: *mut u32, tsc: &Tsc) -> bool {
    let deadline = tsc.deadline_us(DELIVERY_TIMEOUT_US);
    loop {
        // SAFETY: `low_reg` is the ICR low register of the identity-mapped xAPIC page
        // (see `LocalApic::send`); reading it has no side effect.
        let value = unsafe { low_reg.read_volatile() };
        if value & icr::DELIVERY_PENDING == 0 {
            return true;
        }
        if tsc.passed(deadline) {
            return false;
        }
        core::hint::spin_loop();
    }
}
