//! Application-processor start-up decisions for the MP request: which CPUs the response lists
//! and the loader starts, the local-APIC mode, the interrupt-command values of INIT-SIPI-SIPI,
//! which MTRRs an AP copies from the BSP, and the layout of the trampoline page
//! ([`trampoline`]).
//!
//! The request and response are the "SMP (multiprocessor) Feature" of Limine's `PROTOCOL.md`
//! (named MP in base revision 3); the start-up sequence is written down in `loader/README.md`,
//! "Application processors".

pub mod trampoline;

use alloc::vec::Vec;
use core::iter;

use crate::madt::Cpu;

/// Highest APIC ID an xAPIC can be sent an IPI to (0xFF is the broadcast ID).
pub const MAX_XAPIC_ID: u32 = 254;

/// What the CPU and the firmware say about x2APIC, and what the kernel asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApicFacts {
    /// CPUID.1:ECX[21]: the CPU has x2APIC mode.
    pub supported: bool,
    /// The firmware left the BSP's local APIC in x2APIC mode.
    pub firmware_x2apic: bool,
    /// The MP request's flag bit 0: the kernel wants x2APIC if possible.
    pub requested: bool,
}

/// The local-APIC mode the loader puts every CPU in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApicMode {
    /// x2APIC on the BSP and every AP (response flag bit 0).
    pub x2apic: bool,
    /// The firmware enabled x2APIC but the loader does not use it: each CPU goes back to
    /// xAPIC mode (which needs the APIC disabled in between).
    pub leave_x2apic: bool,
}

/// Chooses the APIC mode: x2APIC when the kernel asks and the CPU has it, and also (if the
/// CPU has it) whenever the BSP or a CPU to start has an APIC ID above 254, which xAPIC mode
/// cannot address.
pub fn choose_apic_mode(facts: ApicFacts, cpus: &[Cpu], bsp_id: u32) -> ApicMode {
    let forced = bsp_id > MAX_XAPIC_ID
        || cpus
            .iter()
            .any(|c| c.startable() && c.apic_id > MAX_XAPIC_ID);
    let x2apic = facts.supported && (facts.requested || forced);
    ApicMode {
        x2apic,
        leave_x2apic: facts.firmware_x2apic && !x2apic,
    }
}

/// One CPU of the MP response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedCpu {
    /// ACPI processor UID (0 for a BSP the MADT does not list).
    pub processor_id: u32,
    /// (x2)APIC ID.
    pub lapic_id: u32,
    /// Whether this is the BSP (already running; never started).
    pub bsp: bool,
}

/// The CPUs the MP response lists if every AP starts, in MADT order, the BSP included.
///
/// APs are Processor Local APIC entries, and Local x2APIC entries only when `x2apic` is in
/// use, with exactly one of Enabled and Online-Capable set. Entries a mode cannot address
/// (IDs above 254 without x2APIC, the broadcast ID 0xFF in a Processor Local APIC entry) and
/// repeated APIC IDs are skipped. The BSP is its first entry whatever its flags; a BSP the
/// MADT does not list goes first, with processor UID 0.
pub fn plan_cpus(cpus: &[Cpu], bsp_id: u32, x2apic: bool) -> Vec<PlannedCpu> {
    let mut out: Vec<PlannedCpu> = Vec::new();
    for cpu in cpus {
        if out.iter().any(|p| p.lapic_id == cpu.apic_id) {
            continue;
        }
        let bsp = cpu.apic_id == bsp_id;
        let usable = cpu.startable()
            && (x2apic || !cpu.x2apic_entry)
            && (x2apic || cpu.apic_id <= MAX_XAPIC_ID)
            && (cpu.x2apic_entry || cpu.apic_id != 0xFF);
        if bsp || usable {
            out.push(PlannedCpu {
                processor_id: cpu.uid,
                lapic_id: cpu.apic_id,
                bsp,
            });
        }
    }
    if !out.iter().any(|p| p.bsp) {
        out.insert(
            0,
            PlannedCpu {
                processor_id: 0,
                lapic_id: bsp_id,
                bsp: true,
            },
        );
    }
    out
}

/// Values for the local APIC's interrupt command register.
pub mod icr {
    /// xAPIC MMIO offset of the ICR's low half (write it last: that sends the IPI).
    pub const XAPIC_LOW: u64 = 0x300;
    /// xAPIC MMIO offset of the ICR's high half (destination in bits 31:24).
    pub const XAPIC_HIGH: u64 = 0x310;
    /// The x2APIC ICR (one 64-bit MSR, destination in bits 63:32).
    pub const X2APIC_MSR: u32 = 0x830;
    /// INIT, level assert, physical destination.
    pub const INIT: u32 = 0x4500;
    /// Start-up, level assert, physical destination; the vector goes in bits 7:0.
    pub const STARTUP: u32 = 0x4600;
    /// xAPIC ICR low bit 12: the previous IPI has not been sent yet.
    pub const DELIVERY_PENDING: u32 = 1 << 12;

    /// The low half of a start-up IPI for the trampoline page `vector` (page number).
    pub const fn startup(vector: u8) -> u32 {
        STARTUP | vector as u32
    }

    /// The ICR high half addressing xAPIC ID `dest`.
    pub const fn xapic_high(dest: u32) -> u32 {
        (dest & 0xFF) << 24
    }

    /// The x2APIC ICR value sending `low` to x2APIC ID `dest`.
    pub const fn x2apic(dest: u32, low: u32) -> u64 {
        ((dest as u64) << 32) | low as u64
    }
}

/// The start-up vector for a trampoline at physical `page`: its page number, if the page is
/// 4 KiB aligned and below 1 MiB (where a CPU in real mode starts).
pub fn sipi_vector(page: u64) -> Option<u8> {
    if !page.is_multiple_of(4096) {
        return None;
    }
    u8::try_from(page >> 12).ok()
}

/// IA32_MTRRCAP: variable-range count in bits 7:0, fixed ranges supported in bit 8.
pub const MSR_MTRR_CAP: u32 = 0xFE;
/// IA32_MTRR_DEF_TYPE: default type, FE (bit 10) and E (bit 11).
pub const MSR_MTRR_DEF_TYPE: u32 = 0x2FF;
/// IA32_MTRR_PHYSBASE0; PHYSMASKn follows each PHYSBASEn.
pub const MSR_MTRR_PHYS_BASE0: u32 = 0x200;
/// The eleven fixed-range MTRRs.
pub const FIXED_MTRRS: [u32; 11] = [
    0x250, 0x258, 0x259, 0x268, 0x269, 0x26A, 0x26B, 0x26C, 0x26D, 0x26E, 0x26F,
];
/// Variable-range MTRR pairs copied at most (real CPUs have 8 to 10).
pub const MAX_VARIABLE_MTRRS: u32 = 32;
/// Most MSRs [`mtrr_msrs`] yields.
pub const MAX_MTRR_MSRS: usize = FIXED_MTRRS.len() + 2 * MAX_VARIABLE_MTRRS as usize + 1;

/// The MTRR MSRs an AP copies from the BSP, given the BSP's IA32_MTRRCAP: the fixed ranges
/// (if supported), every variable base/mask pair (at most [`MAX_VARIABLE_MTRRS`]), and
/// IA32_MTRR_DEF_TYPE last, since writing it re-enables the MTRRs (SDM 3A §12.11.8).
pub fn mtrr_msrs(cap: u64) -> impl Iterator<Item = u32> {
    let fixed: &[u32] = if cap & (1 << 8) != 0 {
        &FIXED_MTRRS
    } else {
        &[]
    };
    let variable = ((cap & 0xFF) as u32).min(MAX_VARIABLE_MTRRS);
    fixed
        .iter()
        .copied()
        .chain((0..2 * variable).map(|i| MSR_MTRR_PHYS_BASE0 + i))
        .chain(iter::once(MSR_MTRR_DEF_TYPE))
}

#[cfg(test)]
mod tests;
