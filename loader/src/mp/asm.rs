//! The code an AP runs: the trampoline (copied to the page below 1 MiB) and the parking loop
//! (run in place, at the loader image's HHDM alias).
//!
//! Trampoline, entered in real mode at `page:0` by the start-up IPI: load the page's GDT,
//! enable protection, far-jump to 32-bit code; set CR4, CR3, EFER and CR0 (PG on: long mode)
//! from the data block; far-jump to 64-bit code; load the data segments and the BSP's GDT at
//! its HHDM address; jump to the parking code's HHDM address. EBX holds the page's physical
//! base throughout (the data block is read at `rbx + offset`); no stack is used.
//!
//! Parking code, at its HHDM alias, still reading the data block through the page's identity
//! mapping: load IDTR 0/0, reset the FPU, set the APIC mode, copy the BSP's MTRRs and write
//! the PAT (SDM 3A §12.11.8: caches off and flushed, MTRRs disabled, written with the default
//! type last, caches flushed and back on), set the booted flag — the last access to the page —
//! and spin with `pause` on the `goto_address` of its `limine_mp_info` (kept in r12). When it
//! becomes non-zero: reload CR3, switch to the stack in `reserved`, push a zero return
//! address, zero every general-purpose register except RDI (the info's HHDM address), set
//! RFLAGS to 0x2 and jump.
//!
//! Local labels avoid numbers made of 0s and 1s only, which LLVM's Intel syntax can read as
//! binary literals.

use core::arch::global_asm;

use bootcore::{mp::trampoline as t, proto::MpInfo};

unsafe extern "C" {
    static evergreen_ap_trampoline: u8;
    static evergreen_ap_prot32: u8;
    static evergreen_ap_long64: u8;
    static evergreen_ap_trampoline_end: u8;
    static evergreen_ap_park: u8;
}

/// The trampoline code, with the offsets of its 32-bit and 64-bit entries.
pub fn trampoline() -> (&'static [u8], usize, usize) {
    let start = &raw const evergreen_ap_trampoline;
    let prot32 = &raw const evergreen_ap_prot32 as usize - start as usize;
    let long64 = &raw const evergreen_ap_long64 as usize - start as usize;
    let len = &raw const evergreen_ap_trampoline_end as usize - start as usize;
    // SAFETY: The symbols delimit the trampoline's bytes in the loader's own code section,
    // which is mapped readable and never written.
    let code = unsafe { core::slice::from_raw_parts(start, len) };
    (code, prot32, long64)
}

/// Physical address of the parking code (the loader image is identity-mapped).
pub fn park() -> u64 {
    &raw const evergreen_ap_park as u64
}

global_asm!(
    ".section .text",
    ".balign 16",
    ".global evergreen_ap_trampoline",
    "evergreen_ap_trampoline:",
    ".code16",
    "cli",
    "cld",
    "mov %cs, %ax",
    "mov %ax, %ds",
    "xor %ebx, %ebx",
    "mov %ax, %bx",
    "shl $4, %ebx",
    "lgdtl {gdtr32}",
    "mov %cr0, %eax",
    "or $1, %eax",
    "mov %eax, %cr0",
    "ljmpl *{far32}",
    ".code32",
    ".global evergreen_ap_prot32",
    "evergreen_ap_prot32:",
    "mov $0x20, %ax",
    "mov %ax, %ds",
    "mov %ax, %es",
    "mov %ax, %ss",
    "mov %ax, %fs",
    "mov %ax, %gs",
    "mov {cr4}(%ebx), %eax",
    "mov %eax, %cr4",
    "mov {cr3}(%ebx), %eax",
    "mov %eax, %cr3",
    "mov $0xC0000080, %ecx",
    "mov {efer}(%ebx), %eax",
    "mov {efer}+4(%ebx), %edx",
    "wrmsr",
    "mov {cr0}(%ebx), %eax",
    "mov %eax, %cr0",
    "ljmp *{far64}(%ebx)",
    ".code64",
    ".global evergreen_ap_long64",
    "evergreen_ap_long64:",
    "mov $0x30, %ax",
    "mov %ax, %ds",
    "mov %ax, %es",
    "mov %ax, %ss",
    "mov %ax, %fs",
    "mov %ax, %gs",
    "mov %ebx, %ebx",
    "lgdt {gdtr64}(%rbx)",
    "jmp *{park}(%rbx)",
    ".global evergreen_ap_trampoline_end",
    "evergreen_ap_trampoline_end:",
    gdtr32 = const t::GDTR32,
    far32 = const t::FAR32,
    far64 = const t::FAR64,
    gdtr64 = const t::GDTR64,
    cr0 = const t::CR0,
    cr3 = const t::CR3,
    cr4 = const t::CR4,
    efer = const t::EFER,
    park = const t::PARK,
    options(att_syntax),
);

global_asm!(
    ".section .text",
    ".balign 16",
    ".global evergreen_ap_park",
    "evergreen_ap_park:",
    "lidt [rbx + {idtr}]",
    "fninit",
    "mov r12, [rbx + {info}]",
    // APIC mode.
    "mov r8, [rbx + {apic_mode}]",
    "mov ecx, 0x1B",
    "rdmsr",
    "cmp r8, {x2apic}",
    "jne 2f",
    "or eax, 0x800",
    "wrmsr",
    "or eax, 0x400",
    "wrmsr",
    "jmp 3f",
    "2:",
    "cmp r8, {xapic}",
    "jne 3f",
    "test eax, 0x400",
    "jz 3f",
    "and eax, 0xFFFFF3FF",
    "wrmsr",
    "or eax, 0x800",
    "wrmsr",
    "3:",
    // MTRRs and PAT with caching disabled (CD=1, NW=0) and flushed.
    "mov r9, cr0",
    "mov rax, r9",
    "bts rax, 30",
    "btr rax, 29",
    "mov cr0, rax",
    "wbinvd",
    "mov rax, cr3",
    "mov cr3, rax",
    "mov r13, [rbx + {mtrr_count}]",
    "test r13, r13",
    "jz 5f",
    "mov ecx, 0x2FF",
    "rdmsr",
    "and eax, 0xFFFFF3FF",
    "wrmsr",
    "lea rsi, [rbx + {mtrrs}]",
    "4:",
    "mov ecx, [rsi]",
    "mov eax, [rsi + 8]",
    "mov edx, [rsi + 12]",
    "wrmsr",
    "add rsi, 16",
    "dec r13",
    "jnz 4b",
    "5:",
    "cmp qword ptr [rbx + {has_pat}], 0",
    "je 6f",
    "mov ecx, 0x277",
    "mov eax, [rbx + {pat}]",
    "mov edx, [rbx + {pat} + 4]",
    "wrmsr",
    "6:",
    "wbinvd",
    "mov rax, cr3",
    "mov cr3, rax",
    "mov cr0, r9",
    // Parked: tell the BSP. The trampoline page is not touched after this store.
    "mov qword ptr [rbx + {booted}], 1",
    "7:",
    "pause",
    "mov rax, [r12 + {goto}]",
    "test rax, rax",
    "jz 7b",
    "mov rdx, cr3",
    "mov cr3, rdx",
    "mov rsp, [r12 + {reserved}]",
    "push 0",
    "push rax",
    "push 2",
    "mov rdi, r12",
    "xor eax, eax",
    "xor ebx, ebx",
    "xor ecx, ecx",
    "xor edx, edx",
    "xor esi, esi",
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
    idtr = const t::IDTR,
    info = const t::INFO,
    apic_mode = const t::APIC_MODE,
    x2apic = const t::APIC_X2APIC,
    xapic = const t::APIC_XAPIC,
    mtrr_count = const t::MTRR_COUNT,
    mtrrs = const t::MTRRS,
    has_pat = const t::HAS_PAT,
    pat = const t::PAT,
    booted = const t::BOOTED,
    goto = const MpInfo::GOTO_ADDRESS_OFFSET,
    reserved = const MpInfo::RESERVED_OFFSET,
);
