//! The paging protections: NX (EFER.NXE), write protection in ring 0 (CR0.WP), SMEP, SMAP
//! and UMIP (CR4), each turned on where CPUID reports it; and the PAT layout the page tables
//! assume.

use core::arch::x86_64::{__cpuid, __cpuid_count};

use x86_64::registers::{
    control::{Cr0, Cr0Flags, Cr4, Cr4Flags},
    model_specific::{Efer, EferFlags, Msr},
};

/// IA32_PAT.
const MSR_PAT: u32 = 0x277;
/// PA0 WB, PA1 WT, PA2 UC-, PA3 UC, PA4 WP, PA5 WC, PA6 UC-, PA7 UC: Limine's layout with
/// the last two entries at their power-on values.
const PAT_LAYOUT: u64 = 0x0007_0105_0007_0406;
/// The entries the page tables use: PA0 (WB), PA3 (UC) and PA5 (WC).
const PAT_USED_MASK: u64 = 0x0000_ff00_ff00_00ff;

/// Which protections are on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Protections {
    /// No-execute pages (EFER.NXE).
    pub nx: bool,
    /// Supervisor writes honour read-only pages (CR0.WP).
    pub write_protect: bool,
    /// No execution of user pages in ring 0 (CR4.SMEP).
    pub smep: bool,
    /// No access to user pages in ring 0 outside `stac`/`clac` (CR4.SMAP).
    pub smap: bool,
    /// No SGDT/SIDT/SLDT/SMSW/STR in user mode (CR4.UMIP).
    pub umip: bool,
}

impl Protections {
    /// What this CPU supports.
    pub fn supported() -> Self {
        let max_leaf = __cpuid(0).eax;
        let (ebx7, ecx7) = if max_leaf >= 7 {
            let leaf = __cpuid_count(7, 0);
            (leaf.ebx, leaf.ecx)
        } else {
            (0, 0)
        };
        Self {
            nx: crate::cpu::Features::read().nx,
            write_protect: true,
            smep: ebx7 & (1 << 7) != 0,
            smap: ebx7 & (1 << 20) != 0,
            umip: ecx7 & (1 << 2) != 0,
        }
    }

    /// What is enabled on this CPU right now.
    pub fn active() -> Self {
        let cr4 = Cr4::read();
        Self {
            nx: Efer::read().contains(EferFlags::NO_EXECUTE_ENABLE),
            write_protect: Cr0::read().contains(Cr0Flags::WRITE_PROTECT),
            smep: cr4.contains(Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION),
            smap: cr4.contains(Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION),
            umip: cr4.contains(Cr4Flags::USER_MODE_INSTRUCTION_PREVENTION),
        }
    }
}

/// Enables NX on this CPU if it has it (needed before loading tables with NX bits), and makes
/// sure the PAT entries the tables use hold the expected types.
pub(super) fn prepare_for_tables(protections: Protections) {
    if protections.nx {
        // SAFETY: setting NXE only gives bit 63 of page-table entries a meaning; the active
        // (loader's) tables were built for a CPU with NXE on, as the protocol requires.
        unsafe { Efer::update(|flags| flags.insert(EferFlags::NO_EXECUTE_ENABLE)) };
    }
    if crate::cpu::Features::read().pat {
        let mut pat = Msr::new(MSR_PAT);
        // SAFETY: the CPU has PAT (checked above); reading it has no side effects.
        let current = unsafe { pat.read() };
        if current & PAT_USED_MASK != PAT_LAYOUT & PAT_USED_MASK {
            // SAFETY: the new layout keeps PA0 write-back, so every existing write-back
            // mapping keeps its type; the loader's write-combining framebuffer gets WC again.
            unsafe { pat.write(PAT_LAYOUT) };
        }
    }
}

/// Turns on WP, SMEP, SMAP and UMIP where supported.
pub(super) fn enable(protections: Protections) {
    // SAFETY: the kernel's own tables are loaded: kernel code is mapped read-only and
    // supervisor, and nothing is mapped user-accessible, so WP and SMEP cannot fault on
    // kernel code; SMAP only affects user pages (none exist yet; hal's future user-copy
    // routines must bracket their accesses with `stac`/`clac`); UMIP only affects user mode.
    unsafe {
        Cr0::update(|flags| flags.insert(Cr0Flags::WRITE_PROTECT));
        Cr4::update(|flags| {
            if protections.smep {
                flags.insert(Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION);
            }
            if protections.smap {
                flags.insert(Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION);
            }
            if protections.umip {
                flags.insert(Cr4Flags::USER_MODE_INSTRUCTION_PREVENTION);
            }
        });
    }
}
