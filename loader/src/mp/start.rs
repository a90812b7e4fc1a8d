//! INIT-SIPI-SIPI: bringing each AP through the trampoline into its parking loop.
//!
//! Every AP gets an INIT first (which also pulls it out of whatever loop the firmware parked
//! it in), then, after 10 ms, the APs are started one at a time, since they share the
//! trampoline page's data block: a start-up IPI, a second one if the AP has not reported
//! after 200 µs, then up to a second for its booted flag. An AP that never reports is sent
//! INIT again (so it cannot run the trampoline later with another AP's data), logged and
//! left out of the response.

use bootcore::mp::{
    MAX_MTRR_MSRS, MSR_MTRR_CAP, icr, mtrr_msrs, sipi_vector,
    trampoline::{self as t, APIC_KEEP, APIC_X2APIC, APIC_XAPIC, Common},
};
use x86_64::registers::model_specific::Msr;

use super::{Boot, Plan, apic::LocalApic, asm};
use crate::{cpu, handoff, mem::Region};

/// Wait after the INITs before the first start-up IPI.
const INIT_DELAY_US: u64 = 10_000;
/// Wait before the second start-up IPI.
const SIPI_RETRY_US: u64 = 200;
/// How long an AP may take to report it is parked.
const BOOT_TIMEOUT_US: u64 = 1_000_000;
/// TSC rate assumed if the measurement failed (errs toward longer waits).
const FALLBACK_TSC_HZ: u64 = 4_000_000_000;

/// Time from the time-stamp counter.
#[derive(Clone, Copy, Debug)]
pub struct Tsc {
    hz: u64,
}

impl Tsc {
    /// A clock counting `hz` ticks per second.
    pub fn new(hz: u64) -> Self {
        Self {
            hz: if hz == 0 { FALLBACK_TSC_HZ } else { hz },
        }
    }

    /// The TSC value `us` microseconds from now.
    pub fn deadline_us(&self, us: u64) -> u64 {
        cpu::rdtsc().saturating_add(self.ticks(us))
    }

    /// Whether the TSC has reached `deadline`.
    pub fn passed(&self, deadline: u64) -> bool {
        cpu::rdtsc() >= deadline
    }

    /// Busy-waits `us` microseconds.
    pub fn delay_us(&self, us: u64) {
        let deadline = self.deadline_us(us);
        while !self.passed(deadline) {
            core::hint::spin_loop();
        }
    }

    fn ticks(&self, us: u64) -> u64 {
        (u128::from(self.hz) * u128::from(us) / 1_000_000) as u64
    }

    /// Ticks converted to microseconds.
    pub fn micros(&self, ticks: u64) -> u64 {
        (u128::from(ticks) * 1_000_000 / u128::from(self.hz)) as u64
    }
}

/// Starts every AP of `plan` through the trampoline `page`; `infos` are the HHDM addresses of
/// the planned CPUs' `limine_mp_info`s, and `running` is set for each AP that parked.
pub fn start_all(plan: &Plan, page: &mut Region, boot: &Boot, infos: &[u64], running: &mut [bool]) {
    let Some(vector) = sipi_vector(page.base()) else {
        log::warn!("MP: trampoline page {:#x} is not below 1 MiB", page.base());
        return;
    };
    if let Err(e) = prepare(plan, page, boot) {
        log::warn!("MP: {e}; application processors will not be started");
        return;
    }
    let tsc = Tsc::new(plan.tsc_hz);
    let apic = LocalApic::current();
    let aps = || {
        plan.cpus
            .iter()
            .zip(infos)
            .enumerate()
            .filter(|(_, (cpu, _))| !cpu.bsp)
    };
    let first_init = cpu::rdtsc();
    for (_, (cpu, _)) in aps() {
        if !apic.send(cpu.lapic_id, icr::INIT, &tsc) {
            log::warn!("MP: INIT to APIC id {} not delivered", cpu.lapic_id);
        }
    }
    tsc.delay_us(INIT_DELAY_US);
    let (mut tried, mut parked) = (0, 0);
    for (i, (cpu, &info)) in aps() {
        tried += 1;
        if start_one(&apic, &tsc, page, vector, cpu.lapic_id, info) {
            running[i] = true;
            parked += 1;
        } else {
            log::warn!(
                "MP: CPU with APIC id {} (UID {}) did not start; left out",
                cpu.lapic_id,
                cpu.processor_id
            );
            // Stop it, in case it is merely slow: it must not run the trampoline later with
            // another AP's data.
            apic.send(cpu.lapic_id, icr::INIT, &tsc);
        }
    }
    let us = tsc.micros(cpu::rdtsc().wrapping_sub(first_init));
    log::info!(
        "MP: {parked} of {tried} AP(s) parked in {}.{:03} ms (first INIT to last parked; \
         trampoline at {:#x})",
        us / 1000,
        us % 1000,
        page.base()
    );
}

/// Fills the trampoline page: code, GDT, control registers, MTRRs, parking address.
fn prepare(plan: &Plan, page: &mut Region, boot: &Boot) -> Result<(), t::TrampolineError> {
    let mut mtrrs = [(0u32, 0u64); MAX_MTRR_MSRS];
    let mut count = 0;
    if plan.features.mtrr {
        // SAFETY: CPUID reports MTRRs, so IA32_MTRRCAP exists.
        let cap = unsafe { Msr::new(MSR_MTRR_CAP).read() };
        for msr in mtrr_msrs(cap) {
            // SAFETY: `mtrr_msrs` lists only the MTRRs IA32_MTRRCAP says exist.
            mtrrs[count] = (msr, unsafe { Msr::new(msr).read() });
            count += 1;
        }
    }
    let (code, prot32, long64) = asm::trampoline();
    let apic_mode = if plan.mode.x2apic {
        APIC_X2APIC
    } else if plan.mode.leave_x2apic {
        APIC_XAPIC
    } else {
        APIC_KEEP
    };
    let common = Common {
        page: page.base(),
        code,
        prot32,
        long64,
        gdt: handoff::GDT,
        gdt_hhdm: boot.gdt_hhdm,
        cr3: boot.cr3,
        cr0: handoff::CR0,
        cr4: handoff::CR4,
        efer: handoff::efer(plan.features.nx),
        pat: plan.features.pat.then_some(handoff::PAT),
        apic_mode,
        park: boot.hhdm + asm::park(),
        mtrrs: &mtrrs[..count],
    };
    t::write_common(&common, page.bytes_mut())
}

/// Starts one AP and waits for it to park. Returns whether it did.
fn start_one(
    apic: &LocalApic,
    tsc: &Tsc,
    page: &mut Region,
    vector: u8,
    id: u32,
    info: u64,
) -> bool {
    if t::write_ap(info, page.bytes_mut()).is_err() {
        return false;
    }
    let booted = (page.base() + t::BOOTED as u64) as *const u64;
    let wait = |us| {
        let deadline = tsc.deadline_us(us);
        loop {
            // SAFETY: `booted` is an aligned u64 inside the trampoline page, identity-mapped
            // and owned by the loader; the AP writes it once, after which it is only read.
            if unsafe { booted.read_volatile() } != 0 {
                return true;
            }
            if tsc.passed(deadline) {
                return false;
            }
            core::hint::spin_loop();
        }
    };
    if !apic.send(id, icr::startup(vector), tsc) {
        return false;
    }
    if wait(SIPI_RETRY_US) {
        return true;
    }
    // A second start-up IPI is ignored by a CPU that already left wait-for-SIPI.
    apic.send(id, icr::startup(vector), tsc);
    wait(BOOT_TIMEOUT_US)
}
