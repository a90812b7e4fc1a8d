//! CPU feature detection, the MSR numbers the loader uses, and the few instructions it needs.
//!
//! Port I/O, MSR and control-register access go through the `x86_64` crate, as in hal:
//! `Port`, `Msr` and `Cr4`. Reading is safe (CPUID and RDTSC have no side effects; control
//! registers are readable in ring 0, where UEFI applications run).

use core::arch::{
    asm,
    x86_64::{__cpuid, __cpuid_count, _rdtsc},
};

use x86_64::{
    instructions::{self, interrupts, random::RdRand},
    registers::control::Cr4,
};

/// IA32_APIC_BASE: LAPIC base address, enable and x2APIC bits.
pub const MSR_APIC_BASE: u32 = 0x1B;
/// `IA32_APIC_BASE` bit 10: x2APIC mode.
pub const APIC_BASE_X2APIC: u64 = 1 << 10;
/// `IA32_APIC_BASE` bit 11: APIC globally enabled.
pub const APIC_BASE_ENABLE: u64 = 1 << 11;

/// CR4.LA57: 5-level paging active.
pub const CR4_LA57: u64 = 1 << 12;

/// The CPU features the loader cares about, read once with CPUID.
#[derive(Clone, Copy, Debug)]
pub struct Features {
    /// No-execute page protection (CPUID 0x8000_0001 EDX bit 20).
    pub nx: bool,
    /// Page attribute table (CPUID 1 EDX bit 16).
    pub pat: bool,
    /// 1 GiB pages (CPUID 0x8000_0001 EDX bit 26).
    pub gib_pages: bool,
    /// RDRAND (CPUID 1 ECX bit 30).
    pub rdrand: bool,
    /// x2APIC mode (CPUID 1 ECX bit 21).
    pub x2apic: bool,
    /// Memory type range registers (CPUID 1 EDX bit 12).
    pub mtrr: bool,
    /// Initial APIC ID of this CPU (CPUID 1 EBX bits 31:24, or CPUID 0xB EDX if x2APIC).
    pub apic_id: u32,
}

impl Features {
    /// Reads the features of the CPU running this code (the BSP).
    pub fn detect() -> Self {
        let leaf1 = __cpuid(1);
        let max_basic = __cpuid(0).eax;
        let max_ext = __cpuid(0x8000_0000).eax;
        let ext1 = if max_ext >= 0x8000_0001 {
            __cpuid(0x8000_0001).edx
        } else {
            0
        };
        let x2apic = leaf1.ecx & (1 << 21) != 0;
        let apic_id = if x2apic && max_basic >= 0xB {
            __cpuid_count(0xB, 0).edx
        } else {
            leaf1.ebx >> 24
        };
        Self {
            nx: ext1 & (1 << 20) != 0,
            pat: leaf1.edx & (1 << 16) != 0,
            gib_pages: ext1 & (1 << 26) != 0,
            rdrand: leaf1.ecx & (1 << 30) != 0,
            x2apic,
            mtrr: leaf1.edx & (1 << 12) != 0,
            apic_id,
        }
    }
}

/// Reads CR4.
pub fn cr4() -> u64 {
    Cr4::read_raw()
}

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effect.
    unsafe { _rdtsc() }
}

/// One random number from RDRAND, if the CPU has it and it delivers within a few tries.
pub fn rdrand(features: &Features) -> Option<u64> {
    if !features.rdrand {
        return None;
    }
    let rdrand = RdRand::new()?;
    (0..32).find_map(|_| rdrand.get_u64())
}

/// Orders every earlier load and store before every later one (also before a following
/// WRMSR to the x2APIC ICR, which is not serialising).
pub fn mfence() {
    // SAFETY: MFENCE only orders memory accesses.
    unsafe { asm!("mfence", options(nostack, preserves_flags)) };
}

/// Disables maskable interrupts on this CPU. After ExitBootServices nothing of the firmware
/// needs them.
pub fn cli() {
    interrupts::disable();
}

/// Stops this CPU for good (interrupts off, `hlt` in a loop).
pub fn halt() -> ! {
    loop {
        interrupts::disable();
        instructions::hlt();
    }
}
