//! The MP request. For now only the BSP is reported; starting the APs (INIT-SIPI-SIPI into a
//! trampoline below 1 MiB, parking them in HHDM code) will plug in here: [`plan`] runs before
//! ExitBootServices and is where per-AP stacks and info structures get allocated, [`finish`]
//! runs after it and is where the APs would be started.

use bootcore::proto::{MP_REQUEST_X2APIC, MP_RESPONSE_X2APIC, MpInfo};

use crate::{
    acpi::Madt,
    cpu::{self, APIC_BASE_ENABLE, APIC_BASE_X2APIC, Features, MSR_APIC_BASE},
    error::Error,
};

/// What the loader will do about CPUs.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// x2APIC mode at entry (already on in firmware and requested by the kernel).
    pub x2apic: bool,
    /// The firmware enabled x2APIC but the kernel did not ask: switch back to xAPIC after
    /// ExitBootServices.
    pub leave_x2apic: bool,
    /// The BSP's `limine_mp_info`.
    pub bsp: MpInfo,
}

impl Plan {
    /// The response flags.
    pub fn flags(&self) -> u32 {
        if self.x2apic { MP_RESPONSE_X2APIC } else { 0 }
    }
}

/// Decides the APIC mode and describes the BSP (`request_flags` from the MP request).
pub fn plan(features: &Features, madt: Option<&Madt>, request_flags: u64) -> Result<Plan, Error> {
    // SAFETY: IA32_APIC_BASE exists on every x86-64 CPU.
    let apic_base = unsafe { cpu::rdmsr(MSR_APIC_BASE) };
    let in_x2apic =
        apic_base & (APIC_BASE_ENABLE | APIC_BASE_X2APIC) == (APIC_BASE_ENABLE | APIC_BASE_X2APIC);
    let wants_x2apic = request_flags & MP_REQUEST_X2APIC != 0;
    let x2apic = in_x2apic && wants_x2apic;
    let leave_x2apic = in_x2apic && !wants_x2apic;
    if leave_x2apic && features.apic_id > 254 {
        return Err(Error::X2ApicStuck);
    }
    let lapic_id = features.apic_id;
    let processor_id = madt
        .and_then(|m| m.cpus.iter().find(|c| c.apic_id == lapic_id))
        .map_or(0, |c| c.uid);
    Ok(Plan {
        x2apic,
        leave_x2apic,
        bsp: MpInfo {
            processor_id,
            lapic_id,
            reserved: 0,
            goto_address: 0,
            extra_argument: 0,
        },
    })
}

/// After ExitBootServices: put the BSP's APIC in the planned mode. (AP start-up goes here.)
pub fn finish(plan: &Plan) {
    if plan.leave_x2apic {
        // SAFETY: Boot services are gone, so no firmware code depends on the APIC mode any
        // more. Leaving x2APIC mode requires disabling the APIC first (SDM 10.12.5); it is
        // then re-enabled in xAPIC mode. IA32_APIC_BASE exists on every x86-64 CPU.
        unsafe {
            let base = cpu::rdmsr(MSR_APIC_BASE);
            cpu::wrmsr(MSR_APIC_BASE, base & !(APIC_BASE_ENABLE | APIC_BASE_X2APIC));
            cpu::wrmsr(MSR_APIC_BASE, (base & !APIC_BASE_X2APIC) | APIC_BASE_ENABLE);
        }
    }
}
