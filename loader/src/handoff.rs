//! The jump into the kernel: the hand-off page (GDT, descriptor-table pointers and the stub's
//! parameters) and the position-independent stub that switches to the kernel's machine state.
//!
//! The stub runs first at its identity (physical) address on the firmware's page tables. It
//! sets EFER, PAT, CR4 and CR0, loads the new CR3 (whose temporary identity map covers the
//! loader image, the stack and this page), loads the GDT at its physical address, far-returns
//! into CS = 0x28, loads 0x30 into the data segments, and jumps to its own HHDM alias. From
//! there it reloads the GDT with its HHDM address, zeroes PML4 entries 0..256 (dropping the
//! identity map, as real Limine does), reloads CR3, switches to the HHDM stack, pushes a zero
//! return address, zeroes every general-purpose register, sets RFLAGS to 0x2 (strict mode: also AC) and jumps
//! to the kernel.
//!
//! Control-register choice (base revision 3 leaves other bits to the loader): CR0 =
//! PE | ET | WP | PG exactly; CR4 = PAE | OSFXSR | OSXMMEXCPT (SSE stays usable as under
//! UEFI, everything else, including PGE, SMEP, SMAP and OSXSAVE, is cleared); EFER = LME | LMA
//! | NXE (NXE only if the CPU has NX; SCE cleared). The IDT register is loaded with base 0,
//! limit 0: an exception before the kernel loads its own IDT is a clean triple fault rather
//! than a jump into unmapped firmware code.

use core::arch::global_asm;

use crate::{error::Error, mem::Region};

/// The 7 descriptors of the Limine GDT (v8 `gdt.s2.c`): null, 16-bit code/data, 32-bit
/// code/data, 64-bit code (0x28), 64-bit data (0x30). They sit at offset 0 of the hand-off
/// page; APs load the same GDT (`mp`).
pub const GDT: [u64; 7] = [
    0,
    0x0000_9B00_0000_FFFF,
    0x0000_9300_0000_FFFF,
    0x00CF_9B00_0000_FFFF,
    0x00CF_9300_0000_FFFF,
    0x0020_9B00_0000_0000,
    0x0000_9300_0000_0000,
];

// Layout of the hand-off page (offsets shared with the assembly below).
const OFF_GDTR_PHYS: usize = 0x40;
const OFF_GDTR_VIRT: usize = 0x50;
const OFF_IDTR: usize = 0x60;
const OFF_CR3: usize = 0x70;
const OFF_HHDM: usize = 0x78;
const OFF_STACK_PHYS: usize = 0x80;
const OFF_STACK_VIRT: usize = 0x88;
const OFF_ENTRY: usize = 0x90;
const OFF_CR0: usize = 0x98;
const OFF_CR4: usize = 0xA0;
const OFF_EFER: usize = 0xA8;
const OFF_PAT: usize = 0xB0;
const OFF_HAS_PAT: usize = 0xB8;
const OFF_RFLAGS: usize = 0xC0;

/// CR0 at entry (BSP and APs): PE | ET | WP | PG.
pub const CR0: u64 = 1 | (1 << 4) | (1 << 16) | (1 << 31);
/// CR4 at entry (BSP and APs): PAE | OSFXSR | OSXMMEXCPT.
pub const CR4: u64 = (1 << 5) | (1 << 9) | (1 << 10);
/// EFER: LME | LMA.
const EFER: u64 = (1 << 8) | (1 << 10);
/// EFER.NXE.
const EFER_NXE: u64 = 1 << 11;
/// EFER at entry (BSP and APs): LME | LMA, and NXE if the CPU has NX.
pub fn efer(nx: bool) -> u64 {
    if nx { EFER | EFER_NXE } else { EFER }
}

/// The Limine PAT: PA0 WB, PA1 WT, PA2 UC-, PA3 UC, PA4 WP, PA5 WC, PA6/7 UC.
pub const PAT: u64 = 0x0000_0105_0007_0406;

/// What the stub needs.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Physical address of the new PML4.
    pub cr3: u64,
    /// HHDM offset.
    pub hhdm: u64,
    /// Stack top, physical (used until the stub runs in the higher half).
    pub stack_top_phys: u64,
    /// Kernel entry point.
    pub entry: u64,
    /// Set EFER.NXE.
    pub nx: bool,
    /// Write the PAT MSR.
    pub pat: bool,
    /// RFLAGS at entry: 0x2, plus [`crate::strict::ENTRY_RFLAGS_EXTRA`] in strict mode.
    pub rflags: u64,
}

/// RFLAGS at entry outside strict mode: only the reserved bit 1.
pub const RFLAGS: u64 = 0x2;

/// Writes the GDT and the stub's parameters into the hand-off page.
pub fn prepare(page: &mut Region, params: &Params) -> Result<(), Error> {
    let phys = page.base();
    let bytes = page.bytes_mut();
    let mut put = |at: usize, value: &[u8]| -> Result<(), Error> {
        bytes
            .get_mut(at..at + value.len())
            .ok_or(Error::Internal("hand-off page layout"))?
            .copy_from_slice(value);
        Ok(())
    };
    for (i, descriptor) in GDT.iter().enumerate() {
        put(i * 8, &descriptor.to_le_bytes())?;
    }
    let limit = (GDT.len() * 8 - 1) as u16;
    put(OFF_GDTR_PHYS, &limit.to_le_bytes())?;
    put(OFF_GDTR_PHYS + 2, &phys.to_le_bytes())?;
    put(OFF_GDTR_VIRT, &limit.to_le_bytes())?;
    put(OFF_GDTR_VIRT + 2, &(params.hhdm + phys).to_le_bytes())?;
    put(OFF_IDTR, &[0; 10])?;
    put(OFF_CR3, &params.cr3.to_le_bytes())?;
    put(OFF_HHDM, &params.hhdm.to_le_bytes())?;
    put(OFF_STACK_PHYS, &params.stack_top_phys.to_le_bytes())?;
    put(
        OFF_STACK_VIRT,
        &(params.hhdm + params.stack_top_phys).to_le_bytes(),
    )?;
    put(OFF_ENTRY, &params.entry.to_le_bytes())?;
    put(OFF_CR0, &CR0.to_le_bytes())?;
    put(OFF_CR4, &CR4.to_le_bytes())?;
    put(OFF_EFER, &efer(params.nx).to_le_bytes())?;
    put(OFF_PAT, &PAT.to_le_bytes())?;
    put(OFF_HAS_PAT, &u64::from(params.pat).to_le_bytes())?;
    put(OFF_RFLAGS, &params.rflags.to_le_bytes())?;
    Ok(())
}

/// Jumps into the kernel. Never returns.
///
/// # Safety
///
/// Boot services must have been exited, interrupts masked, and `page` prepared with
/// [`prepare`] for page tables that identity-map the loader image, the stack and `page`, map
/// the HHDM (including `page`, the stack and the loader image), the kernel, and every response.
pub unsafe fn enter(page: &Region) -> ! {
    // SAFETY: The caller guarantees the state the stub relies on (see the module docs).
    unsafe { evergreen_handoff(page.base()) }
}

unsafe extern "sysv64" {
    /// The stub below; `page` is the hand-off page's physical address.
    fn evergreen_handoff(page: u64) -> !;
}

global_asm!(
    ".section .text",
    ".global evergreen_handoff",
    "evergreen_handoff:",
    "cli",
    "cld",
    // Identity-mapped stack, valid on the firmware's and on the new page tables.
    "mov rsp, [rdi + {stack_phys}]",
    // EFER first: the new tables use NX bits.
    "mov ecx, 0xC0000080",
    "mov rax, [rdi + {efer}]",
    "mov rdx, rax",
    "shr rdx, 32",
    "wrmsr",
    "cmp qword ptr [rdi + {has_pat}], 0",
    "je 1f",
    "mov ecx, 0x277",
    "mov rax, [rdi + {pat}]",
    "mov rdx, rax",
    "shr rdx, 32",
    "wrmsr",
    "1:",
    "mov rax, [rdi + {cr4}]",
    "mov cr4, rax",
    "mov rax, [rdi + {cr0}]",
    "mov cr0, rax",
    "mov rax, [rdi + {cr3}]",
    "mov cr3, rax",
    "lgdt [rdi + {gdtr_phys}]",
    "lidt [rdi + {idtr}]",
    "push 0x28",
    "lea rax, [rip + 2f]",
    "push rax",
    "retfq",
    "2:",
    "mov eax, 0x30",
    "mov ds, ax",
    "mov es, ax",
    "mov ss, ax",
    "mov fs, ax",
    "mov gs, ax",
    "xor eax, eax",
    "xor edx, edx",
    "mov ecx, 0xC0000100", // FS.base
    "wrmsr",
    "mov ecx, 0xC0000101", // GS.base
    "wrmsr",
    "mov ecx, 0xC0000102", // KERNEL_GS_BASE
    "wrmsr",
    // Continue at the HHDM alias of this code, with the page addressed through the HHDM.
    "mov r8, [rdi + {hhdm}]",
    "add rdi, r8",
    "lea rax, [rip + 3f]",
    "add rax, r8",
    "jmp rax",
    "3:",
    "lgdt [rdi + {gdtr_virt}]",
    "mov rsp, [rdi + {stack_virt}]",
    "mov r9, rdi",
    // Drop the lower half: zero PML4[0..256] through its HHDM alias, then flush the TLB.
    "mov rdi, cr3",
    "add rdi, r8",
    "xor eax, eax",
    "mov ecx, 256",
    "rep stosq",
    "mov rax, cr3",
    "mov cr3, rax",
    // Stack: zero return address, then the entry point and RFLAGS for popfq/ret.
    "push 0",
    "push qword ptr [r9 + {entry}]",
    "push qword ptr [r9 + {rflags}]",
    "xor eax, eax",
    "xor ebx, ebx",
    "xor ecx, ecx",
    "xor edx, edx",
    "xor esi, esi",
    "xor edi, edi",
    "xor ebp, ebp",
    "xor r8d, r8d",
    "xor r9d, r9d",
    "xor r10d, r10d",
    "xor r11d, r11d",
    "xor r12d, r12d",
    "xor r13d, r13d",
    "xor r14d, r14d",
    "xor r15d, r15d",
    "popfq",
    "ret",
    stack_phys = const OFF_STACK_PHYS,
    stack_virt = const OFF_STACK_VIRT,
    efer = const OFF_EFER,
    pat = const OFF_PAT,
    has_pat = const OFF_HAS_PAT,
    cr0 = const OFF_CR0,
    cr3 = const OFF_CR3,
    cr4 = const OFF_CR4,
    gdtr_phys = const OFF_GDTR_PHYS,
    gdtr_virt = const OFF_GDTR_VIRT,
    idtr = const OFF_IDTR,
    hhdm = const OFF_HHDM,
    entry = const OFF_ENTRY,
    rflags = const OFF_RFLAGS,
);
