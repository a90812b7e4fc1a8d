//! Running user code: a [`UserContext`] runs on the current CPU until something needs the
//! kernel, and [`UserContext::run`] returns why — a `syscall`, a CPU exception, or an
//! interrupt. The kernel then handles it and calls `run` again; it never sees a kernel
//! context's registers, and user mode never reaches the fatal-exception path.
//!
//! How: `run` saves the callee-saved registers on the kernel stack, records that stack
//! pointer and the context in this CPU's per-CPU block, loads the user registers and enters
//! user mode with `iretq` (always: it has no non-canonical-`rcx` hazard, unlike `sysret`,
//! at the cost of a few cycles). The way back is one of two:
//!
//! - `syscall` lands in [`hal_syscall_entry`] with interrupts off (FMASK), switches to the
//!   recorded kernel stack, stores the user registers into the context and returns from
//!   `run`;
//! - an interrupt or exception from user mode arrives on the CPU's `rsp0` stack through the
//!   common trap path, which stores the registers into the context (after running the
//!   interrupt's handler) and returns from `run` the same way.
//!
//! Not yet (each is needed once several user contexts share a CPU, or for speed):
//! - AVX state (`xsave`, its size from CPUID): each context keeps its x87/SSE registers with
//!   `fxsave`/`fxrstor`, and XSAVE stays off, so programs do not use AVX;
//! - `sysret` for the return path, and PCIDs;
//! - an NMI that lands between `swapgs` and `iretq` on the way out sees the user's GS base
//!   (Linux's "paranoid" NMI entry); hal's NMIs only stop CPUs on a panic, whose handler does
//!   not use GS-relative data before halting.

use alloc::boxed::Box;
use core::{
    arch::{asm, naked_asm},
    mem::offset_of,
    sync::atomic::Ordering,
};

use x86_64::registers::{
    control::{Cr0, Cr0Flags, Cr4, Cr4Flags},
    model_specific::{Efer, EferFlags, FsBase, LStar, Msr, SFMask},
    rflags::RFlags,
};

use crate::{gdt, percpu::PerCpu, trap::TrapFrame};

/// A user thread's registers.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[expect(missing_docs, reason = "register names speak for themselves")]
pub struct UserRegs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rsp: u64,
    pub rflags: u64,
}

/// A user thread's state: what `run` enters user mode with, and what it finds on the way
/// back. The kernel may change any of it (a signal frame, a syscall's result): hal checks
/// what it must before entering.
#[repr(C)]
#[derive(Clone, Debug, Default)]
pub struct UserContext {
    /// The general-purpose registers, `rip`, `rsp` and `rflags`.
    pub regs: UserRegs,
    /// The FS base (thread pointer; `arch_prctl(ARCH_SET_FS)`).
    pub fs_base: u64,
    /// The x87/SSE registers. Only hal writes them (`fxsave`), so `fxrstor` never meets an
    /// invalid image (reserved MXCSR bits would fault in the kernel).
    fpu: Box<FpuArea>,
}

/// The `fxsave` image: x87, MXCSR and the sixteen XMM registers (AVX state is not saved:
/// hal does not enable XSAVE, so no program may use AVX).
#[repr(C, align(16))]
#[derive(Clone)]
struct FpuArea([u8; 512]);

impl Default for FpuArea {
    /// The state a new program starts with, as after `fninit` with SSE on: x87 control word
    /// 0x37f, MXCSR 0x1f80 (all exceptions masked), every register zero.
    fn default() -> Self {
        let mut area = [0u8; 512];
        area[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        area[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        area[28..32].copy_from_slice(&0xffffu32.to_le_bytes()); // MXCSR_MASK (ignored)
        Self(area)
    }
}

impl core::fmt::Debug for FpuArea {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("FpuArea { .. }")
    }
}

/// Why [`UserContext::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The program executed `syscall`: the number is in `rax`, the arguments in `rdi`,
    /// `rsi`, `rdx`, `r10`, `r8`, `r9`; the result goes in `rax`.
    Syscall,
    /// A CPU exception in user mode (the instruction is in `rip`).
    Exception {
        /// The vector (0 divide error, 6 invalid opcode, 13 general protection, 14 page
        /// fault, …).
        vector: u8,
        /// The error code the CPU pushed (0 if none).
        error_code: u64,
        /// For page faults, the address (CR2).
        address: u64,
    },
    /// A device interrupt or IPI arrived while user code ran (hal has run its handler).
    Interrupt(u8),
}

/// The flags user mode may set; IF is always on and IOPL 0 in user mode.
const USER_FLAGS: u64 = 0x0000_0000_0004_0dd5 | (1 << 21);
const FLAGS_ALWAYS: u64 = (1 << 1) | (1 << 9);

/// Codes `hal_enter_user` returns with.
const RETURNED_SYSCALL: u64 = 0;
const RETURNED_TRAP: u64 = 1;

/// The trap that ended the last run on each CPU (vector, error code, CR2).
static LAST_TRAP: [[core::sync::atomic::AtomicU64; 3]; crate::percpu::MAX_CPUS] =
    [const { [const { core::sync::atomic::AtomicU64::new(0) }; 3] }; crate::percpu::MAX_CPUS];

impl UserContext {
    /// Runs the context on this CPU, in the running user address space, until it makes a
    /// syscall, raises an exception or is interrupted; returns which. A `rip` that is not
    /// canonical is reported as a general-protection exception without entering user mode
    /// (`iretq` would fault in the kernel).
    pub fn run(&mut self) -> Event {
        self.regs.rflags = (self.regs.rflags & USER_FLAGS) | FLAGS_ALWAYS;
        if !is_canonical(self.regs.rip) {
            return Event::Exception {
                vector: 13,
                error_code: 0,
                address: 0,
            };
        }
        let fs = if is_canonical(self.fs_base) {
            self.fs_base
        } else {
            0
        };
        FsBase::write(x86_64::VirtAddr::new_truncate(fs));
        let fpu = self.fpu.0.as_mut_ptr();
        // SAFETY: the image is 512 bytes, 16-byte aligned, and was written by `fxsave` or is
        // the valid initial state; the kernel never uses the x87/SSE registers itself (its
        // target is soft-float), so loading them here and saving them below keeps the user's.
        unsafe { asm!("fxrstor64 [{}]", in(reg) fpu, options(nostack)) };
        // SAFETY: `hal_enter_user` enters user mode with this context's registers and returns
        // here, on this stack, with the callee-saved registers restored, once user mode
        // traps; meanwhile only the trap and syscall paths write the context, through the
        // pointer recorded in this CPU's block, while this `&mut` is lent to the call.
        let code = unsafe { hal_enter_user(&raw mut *self) };
        // SAFETY: as above: the same area, saved before any other user context can run here.
        unsafe { asm!("fxsave64 [{}]", in(reg) fpu, options(nostack)) };
        if code == RETURNED_SYSCALL {
            return Event::Syscall;
        }
        let [vector, error_code, address] = &LAST_TRAP[crate::percpu::current_index()];
        let vector = vector.load(Ordering::Relaxed) as u8;
        // An NMI is no fault of the program's: like an interrupt, it only paused it.
        if vector < 32 && vector != 2 {
            Event::Exception {
                vector,
                error_code: error_code.load(Ordering::Relaxed),
                address: address.load(Ordering::Relaxed),
            }
        } else {
            Event::Interrupt(vector)
        }
    }
}

impl UserContext {
    /// The x87/SSE registers as an `fxsave` image (what a signal frame carries).
    pub fn fpu_state(&self) -> [u8; 512] {
        self.fpu.0
    }

    /// Replaces the x87/SSE registers with `image` (from a signal frame): MXCSR's reserved
    /// bits are cleared, so `fxrstor` cannot fault in the kernel.
    pub fn set_fpu_state(&mut self, image: &[u8; 512]) {
        let mut area = *image;
        let mxcsr = u32::from_le_bytes([area[24], area[25], area[26], area[27]]) & MXCSR_VALID;
        area[24..28].copy_from_slice(&mxcsr.to_le_bytes());
        self.fpu.0 = area;
    }
}

/// The MXCSR bits every x86-64 CPU defines (flags, masks, rounding, flush-to-zero); DAZ
/// (bit 6) is left out, as not every CPU has it.
const MXCSR_VALID: u32 = 0xffbf;

fn is_canonical(address: u64) -> bool {
    let top = address >> 47;
    top == 0 || top == 0x1ffff
}

/// Sets this CPU up for user mode: `syscall`/`sysret` (EFER.SCE, STAR, LSTAR, FMASK) and the
/// SSE state user programs use (CR0.MP, not EM; CR4.OSFXSR, OSXMMEXCPT).
pub(crate) fn init_this_cpu() {
    // SAFETY: enabling `syscall` with LSTAR pointing at hal's entry, which switches to a
    // kernel stack before touching memory; STAR's selectors are the GDT's (kernel code/data
    // at 0x08/0x10, user data/code at 0x18/0x20, as `sysret` requires).
    unsafe {
        Efer::update(|f| f.insert(EferFlags::SYSTEM_CALL_EXTENSIONS));
        LStar::write(x86_64::VirtAddr::new(hal_syscall_entry as *const () as u64));
        SFMask::write(
            RFlags::INTERRUPT_FLAG
                | RFlags::TRAP_FLAG
                | RFlags::DIRECTION_FLAG
                | RFlags::ALIGNMENT_CHECK
                | RFlags::NESTED_TASK
                | RFlags::IOPL_HIGH
                | RFlags::IOPL_LOW,
        );
        Cr0::update(|f| {
            f.remove(Cr0Flags::EMULATE_COPROCESSOR);
            f.insert(Cr0Flags::MONITOR_COPROCESSOR);
        });
        Cr4::update(|f| {
            f.insert(Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE);
        });
    }
    // STAR: syscall loads CS = 0x08, SS = 0x10; sysret would load CS = 0x10 + 16 and
    // SS = 0x10 + 8 (user code and data, RPL 3).
    let star = (u64::from(gdt::KERNEL_DATA.0) << 48) | (u64::from(gdt::KERNEL_CODE.0) << 32);
    // SAFETY: as above (the raw MSR, since the crate's setter checks a layout for `sysret`
    // from the user selectors that this GDT meets but expresses differently).
    unsafe { Msr::new(STAR_MSR).write(star) };
}

const STAR_MSR: u32 = 0xc000_0081;

/// Called by the trap path for a trap taken in user mode, after any interrupt handler ran:
/// stores the registers into the running context and returns from `run`. Never returns.
pub(crate) fn trap_from_user(frame: &TrapFrame) -> ! {
    let Some(block) = crate::percpu::this_block() else {
        crate::cpu::halt_forever()
    };
    let context = block.context.load(Ordering::Acquire) as *mut UserContext;
    if context.is_null() {
        // User mode without a context cannot happen: nothing else enters it.
        panic!("trap from user mode with no user context running");
    }
    let cr2 = if frame.vector == 14 {
        x86_64::registers::control::Cr2::read_raw()
    } else {
        0
    };
    let [vector, error_code, address] = &LAST_TRAP[crate::percpu::current_index()];
    vector.store(frame.vector, Ordering::Relaxed);
    error_code.store(frame.error_code, Ordering::Relaxed);
    address.store(cr2, Ordering::Relaxed);
    let regs = UserRegs {
        rax: frame.rax,
        rbx: frame.rbx,
        rcx: frame.rcx,
        rdx: frame.rdx,
        rsi: frame.rsi,
        rdi: frame.rdi,
        rbp: frame.rbp,
        r8: frame.r8,
        r9: frame.r9,
        r10: frame.r10,
        r11: frame.r11,
        r12: frame.r12,
        r13: frame.r13,
        r14: frame.r14,
        r15: frame.r15,
        rip: frame.rip,
        rsp: frame.rsp,
        rflags: frame.rflags,
    };
    // SAFETY: `context` is the `&mut UserContext` that `run` lent to `hal_enter_user`, which
    // has not returned; nothing else accesses it meanwhile. Then back to `run`'s stack, which
    // lies above this one (the rsp0 stack, abandoned).
    unsafe {
        (*context).regs = regs;
        asm!(
            "mov rax, {code}",
            "jmp {back}",
            code = const RETURNED_TRAP,
            back = sym hal_return_from_user,
            options(noreturn),
        )
    }
}

/// Enters user mode with `context`'s registers; returns (with a `RETURNED_*` code) when user
/// mode next traps to the kernel.
#[unsafe(naked)]
unsafe extern "C" fn hal_enter_user(context: *mut UserContext) -> u64 {
    naked_asm!(
        "push rbx",
        "push rbp",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "mov gs:[{krsp}], rsp",
        "mov gs:[{ctx}], rdi",
        // The iretq frame: SS, RSP, RFLAGS, CS, RIP.
        "push {user_ss}",
        "push qword ptr [rdi + {rsp}]",
        "push qword ptr [rdi + {rflags}]",
        "push {user_cs}",
        "push qword ptr [rdi + {rip}]",
        "mov rax, [rdi + {rax}]",
        "mov rbx, [rdi + {rbx}]",
        "mov rcx, [rdi + {rcx}]",
        "mov rdx, [rdi + {rdx}]",
        "mov rsi, [rdi + {rsi}]",
        "mov rbp, [rdi + {rbp}]",
        "mov r8, [rdi + {r8}]",
        "mov r9, [rdi + {r9}]",
        "mov r10, [rdi + {r10}]",
        "mov r11, [rdi + {r11}]",
        "mov r12, [rdi + {r12}]",
        "mov r13, [rdi + {r13}]",
        "mov r14, [rdi + {r14}]",
        "mov r15, [rdi + {r15}]",
        "mov rdi, [rdi + {rdi}]",
        "swapgs",
        "iretq",
        krsp = const offset_of!(PerCpu, kernel_rsp),
        ctx = const offset_of!(PerCpu, context),
        user_ss = const gdt::USER_DATA.0 as u64,
        user_cs = const gdt::USER_CODE.0 as u64,
        rax = const offset_of!(UserRegs, rax),
        rbx = const offset_of!(UserRegs, rbx),
        rcx = const offset_of!(UserRegs, rcx),
        rdx = const offset_of!(UserRegs, rdx),
        rsi = const offset_of!(UserRegs, rsi),
        rdi = const offset_of!(UserRegs, rdi),
        rbp = const offset_of!(UserRegs, rbp),
        r8 = const offset_of!(UserRegs, r8),
        r9 = const offset_of!(UserRegs, r9),
        r10 = const offset_of!(UserRegs, r10),
        r11 = const offset_of!(UserRegs, r11),
        r12 = const offset_of!(UserRegs, r12),
        r13 = const offset_of!(UserRegs, r13),
        r14 = const offset_of!(UserRegs, r14),
        r15 = const offset_of!(UserRegs, r15),
        rip = const offset_of!(UserRegs, rip),
        rsp = const offset_of!(UserRegs, rsp),
        rflags = const offset_of!(UserRegs, rflags),
    )
}

/// Back from user mode: `rax` holds the code `hal_enter_user` returns.
#[unsafe(naked)]
unsafe extern "C" fn hal_return_from_user() -> ! {
    naked_asm!(
        "mov rsp, gs:[{krsp}]",
        "mov qword ptr gs:[{ctx}], 0",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbp",
        "pop rbx",
        "ret",
        krsp = const offset_of!(PerCpu, kernel_rsp),
        ctx = const offset_of!(PerCpu, context),
    )
}

/// The `syscall` entry (LSTAR): interrupts are off (FMASK), GS is the user's, RSP the user's.
#[unsafe(naked)]
unsafe extern "C" fn hal_syscall_entry() -> ! {
    naked_asm!(
        "swapgs",
        "mov gs:[{ursp}], rsp",
        "mov rsp, gs:[{krsp}]",
        "push rax",
        "mov rax, gs:[{ctx}]",
        "mov [rax + {rbx}], rbx",
        "mov [rax + {rdx}], rdx",
        "mov [rax + {rsi}], rsi",
        "mov [rax + {rdi}], rdi",
        "mov [rax + {rbp}], rbp",
        "mov [rax + {r8}], r8",
        "mov [rax + {r9}], r9",
        "mov [rax + {r10}], r10",
        "mov [rax + {r12}], r12",
        "mov [rax + {r13}], r13",
        "mov [rax + {r14}], r14",
        "mov [rax + {r15}], r15",
        // syscall put the user rip in rcx and rflags in r11 (as the program sees them after).
        "mov [rax + {rip}], rcx",
        "mov [rax + {rcx}], rcx",
        "mov [rax + {rflags}], r11",
        "mov [rax + {r11}], r11",
        "pop rbx",
        "mov [rax + {rax}], rbx",
        "mov rbx, gs:[{ursp}]",
        "mov [rax + {rsp}], rbx",
        "mov eax, {code}",
        "jmp {back}",
        ursp = const offset_of!(PerCpu, user_rsp),
        krsp = const offset_of!(PerCpu, kernel_rsp),
        ctx = const offset_of!(PerCpu, context),
        rax = const offset_of!(UserRegs, rax),
        rbx = const offset_of!(UserRegs, rbx),
        rcx = const offset_of!(UserRegs, rcx),
        rdx = const offset_of!(UserRegs, rdx),
        rsi = const offset_of!(UserRegs, rsi),
        rdi = const offset_of!(UserRegs, rdi),
        rbp = const offset_of!(UserRegs, rbp),
        r8 = const offset_of!(UserRegs, r8),
        r9 = const offset_of!(UserRegs, r9),
        r10 = const offset_of!(UserRegs, r10),
        r11 = const offset_of!(UserRegs, r11),
        r12 = const offset_of!(UserRegs, r12),
        r13 = const offset_of!(UserRegs, r13),
        r14 = const offset_of!(UserRegs, r14),
        r15 = const offset_of!(UserRegs, r15),
        rip = const offset_of!(UserRegs, rip),
        rsp = const offset_of!(UserRegs, rsp),
        rflags = const offset_of!(UserRegs, rflags),
        code = const RETURNED_SYSCALL,
        back = sym hal_return_from_user,
    )
}
