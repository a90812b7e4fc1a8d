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
//! Back to user mode after a syscall goes through `sysretq` when `rcx`/`r11` still hold what
//! `syscall` put there and `rip` is canonical (`sysretq` would fault in the kernel on a
//! non-canonical one); everything else through `iretq`. The FPU registers (x87, SSE and
//! AVX, with `xsave`/`xrstor` and the size CPUID gives; `fxsave` on a CPU without XSAVE) are
//! saved only when the CPU switches threads or another context runs (see [`FPU_LIVE`]).
//!
//! Not yet:
//! - AVX-512, AMX and the other XSAVE components (XCR0 holds x87, SSE and AVX only), and
//!   `xsaveopt`/`xsaves` (each save writes the whole image): QEMU's TCG CPU, where every test
//!   here runs, has none of them, so code for them could not be run;
//! - PCIDs, for the same reason (TCG reports neither PCID nor INVPCID). The plan: a few PCIDs
//!   per CPU, each remembering the space it holds and that space's flush generation; a space
//!   bumps its generation on every flush, so a CPU reloading a space it ran before keeps its
//!   TLB entries (CR3 bit 63) only when no flush happened meanwhile; kernel mappings, which
//!   are not global, are then flushed with INVPCID's all-contexts form.
//!
//! An NMI or machine check that lands between `swapgs` and `iretq`/`sysretq` on the way out
//! (or before the `swapgs` on the way in) arrives in kernel mode with the user's GS base: the
//! trap path checks the GS base MSR for every trap taken in kernel mode and swaps it (as
//! Linux's "paranoid" entry does), so per-CPU data is always the kernel's.

use alloc::boxed::Box;
use core::{
    arch::{
        asm, naked_asm,
        x86_64::{__cpuid, __cpuid_count},
    },
    cell::UnsafeCell,
    mem::offset_of,
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
};

use x86_64::registers::{
    control::{Cr0, Cr0Flags, Cr4, Cr4Flags},
    model_specific::{Efer, EferFlags, FsBase, LStar, Msr, SFMask},
    rflags::RFlags,
    xcontrol::XCr0,
};

use crate::{
    gdt,
    percpu::{IrqGuard, PerCpu, PreemptGuard},
    trap::TrapFrame,
};

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
#[derive(Debug, Default)]
pub struct UserContext {
    /// The general-purpose registers, `rip`, `rsp` and `rflags`.
    pub regs: UserRegs,
    /// The FS base (thread pointer; `arch_prctl(ARCH_SET_FS)`).
    pub fs_base: u64,
    /// The x87/SSE/AVX registers. Only hal writes them (a save, or a sanitized image), so the
    /// restore never meets an invalid image (reserved MXCSR bits or a bad XSAVE header would
    /// fault in the kernel). They may be live in a CPU's registers rather than here: see
    /// [`FPU_LIVE`].
    fpu: Fpu,
}

impl Clone for UserContext {
    /// A copy with the current FPU state (saved from the registers first if live).
    fn clone(&self) -> Self {
        Self {
            regs: self.regs,
            fs_base: self.fs_base,
            fpu: Fpu(Box::new(FpuArea(UnsafeCell::new(self.fpu_state().bytes)))),
        }
    }
}

crate::cpu_local! {
    /// Per CPU, the address of the [`FpuArea`] whose state this CPU's FPU registers hold
    /// (0: none). The kernel is soft-float, so after a context's user code traps its registers
    /// stay as they were until another context runs here or this CPU switches threads: a syscall
    /// then costs no save or restore. The state is saved into the area when the CPU switches
    /// kernel threads ([`save_live_fpu`]) and whenever the kernel reads it; an area leaving this
    /// table before it is freed (its `Drop`) is what keeps the address valid.
    static FPU_LIVE: AtomicUsize = AtomicUsize::new(0);
}

/// A context's boxed FPU area (boxed: its address stays put while the context moves).
#[derive(Debug, Default)]
struct Fpu(Box<FpuArea>);

impl Fpu {
    fn addr(&self) -> usize {
        self.0.0.get() as usize
    }
}

impl Drop for Fpu {
    fn drop(&mut self) {
        let addr = self.addr();
        for (_, live) in FPU_LIVE.iter() {
            let _ = live.compare_exchange(addr, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
    }
}

/// Saves the user FPU state live in this CPU's registers into its context's area, and
/// forgets it (hal's thread switch calls this: the next thread may run another context).
pub(crate) fn save_live_fpu() {
    // Interrupts are off (the thread switch): the task stays on this CPU.
    let addr = FPU_LIVE.here().swap(0, Ordering::AcqRel);
    if addr != 0 {
        // SAFETY: a live area belongs to a context that has not been dropped (its `Drop`
        // takes it out of the table first), and nothing else touches it while its state is
        // live in this CPU's registers.
        unsafe { save_fpu(addr) };
    }
}

/// How user FPU state is saved on this machine: the same on every CPU (chosen on the
/// bootstrap CPU, applied on each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FpuFormat {
    /// `fxsave`/`fxrstor`: x87 and SSE only, a 512-byte image; XSAVE is off (the CPU lacks
    /// it), so programs cannot use AVX.
    Fxsave,
    /// `xsave`/`xrstor` with XCR0 = `features` (x87, SSE and, if present, AVX): an image of
    /// `size` bytes in the standard (uncompacted) form, the `fxsave` layout in its first 512.
    Xsave {
        /// The enabled state components (XCR0).
        features: u64,
        /// The image's size (CPUID.(EAX=0Dh,ECX=0).EBX with XCR0 set).
        size: usize,
    },
}

impl FpuFormat {
    /// The size of a saved image.
    pub fn size(self) -> usize {
        match self {
            Self::Fxsave => LEGACY_SIZE,
            Self::Xsave { size, .. } => size,
        }
    }
}

/// The format chosen on the bootstrap CPU (its `init_this_cpu`).
static FORMAT: spin::Once<FpuFormat> = spin::Once::new();

/// How user FPU state is saved (and so how big a signal frame's FPU image is).
pub fn fpu_format() -> FpuFormat {
    *FORMAT.get().unwrap_or(&FpuFormat::Fxsave)
}

/// The `fxsave` layout's size, and the XSAVE header's place after it.
const LEGACY_SIZE: usize = 512;
const HEADER: usize = 512;
const HEADER_SIZE: usize = 64;
/// Room for an image: x87, SSE and AVX take 832 bytes; a CPU whose CPUID reports more for
/// those than this gets only x87 and SSE (576 bytes).
const FPU_MAX: usize = 1024;
/// XCR0 bits: x87, SSE, AVX (the upper halves of the YMM registers).
const XFEATURES_WANTED: u64 = 0b111;
const XFEATURES_LEGACY: u64 = 0b011;
/// The MXCSR in the legacy area, and its default (all exceptions masked).
const MXCSR: usize = 24;
const MXCSR_DEFAULT: u32 = 0x1f80;

/// Saves this CPU's FPU registers into the area at `addr` (their state stays loaded).
///
/// # Safety
/// `addr` is an [`FpuArea`] nothing else accesses meanwhile.
unsafe fn save_fpu(addr: usize) {
    match fpu_format() {
        // SAFETY: the area is `FPU_MAX` (at least 512) bytes, 64-byte aligned and the
        // caller's to write.
        FpuFormat::Fxsave => unsafe { asm!("fxsave64 [{}]", in(reg) addr, options(nostack)) },
        // SAFETY: as above; `size` is at most `FPU_MAX`, and the CPU writes only the
        // components in `features` (XCR0).
        FpuFormat::Xsave { features, .. } => unsafe {
            asm!(
                "xsave64 [{}]",
                in(reg) addr,
                in("eax") features as u32,
                in("edx") (features >> 32) as u32,
                options(nostack),
            )
        },
    }
}

/// Loads this CPU's FPU registers from the area at `addr`.
///
/// # Safety
/// `addr` is an [`FpuArea`] nothing writes meanwhile, holding an image this CPU's save wrote
/// or one [`sanitize`] checked (so the restore cannot fault in the kernel).
unsafe fn restore_fpu(addr: usize) {
    match fpu_format() {
        // SAFETY: the caller's guarantees; the kernel never uses the FPU registers itself
        // (its target is soft-float), so what is loaded stays the user's.
        FpuFormat::Fxsave => unsafe { asm!("fxrstor64 [{}]", in(reg) addr, options(nostack)) },
        // SAFETY: as above; the header is valid for `features` (checked by `sanitize`).
        FpuFormat::Xsave { features, .. } => unsafe {
            asm!(
                "xrstor64 [{}]",
                in(reg) addr,
                in("eax") features as u32,
                in("edx") (features >> 32) as u32,
                options(nostack),
            )
        },
    }
}

/// Makes `area` (an image in `format`) safe to restore: MXCSR's reserved bits cleared and,
/// for XSAVE, the header's XSTATE_BV limited to the enabled components, XCOMP_BV (the
/// compacted form) and the reserved header bytes zero; otherwise the restore would fault.
fn sanitize(area: &mut [u8; FPU_MAX], format: FpuFormat) {
    let mxcsr = u32::from_le_bytes(area[MXCSR..MXCSR + 4].try_into().expect("4 bytes"));
    area[MXCSR..MXCSR + 4].copy_from_slice(&(mxcsr & MXCSR_VALID).to_le_bytes());
    if let FpuFormat::Xsave { features, .. } = format {
        let bv = u64::from_le_bytes(area[HEADER..HEADER + 8].try_into().expect("8 bytes"));
        area[HEADER..HEADER + 8].copy_from_slice(&(bv & features).to_le_bytes());
        area[HEADER + 8..HEADER + HEADER_SIZE].fill(0);
    }
}

/// A saved FPU image: [`FpuFormat::size`] bytes, 64-byte aligned (as `xsave` needs).
#[repr(C, align(64))]
struct FpuArea(UnsafeCell<[u8; FPU_MAX]>);

impl Default for FpuArea {
    /// The state a new program starts with, as after `fninit` with SSE on: x87 control word
    /// 0x37f, MXCSR 0x1f80 (all exceptions masked), every register zero; for XSAVE a header
    /// saying x87 and SSE come from the legacy area and the rest (AVX) is in its initial,
    /// zero state.
    fn default() -> Self {
        Self(UnsafeCell::new(initial_image(fpu_format())))
    }
}

fn initial_image(format: FpuFormat) -> [u8; FPU_MAX] {
    let mut area = [0u8; FPU_MAX];
    area[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
    area[MXCSR..MXCSR + 4].copy_from_slice(&MXCSR_DEFAULT.to_le_bytes());
    area[28..32].copy_from_slice(&0xffffu32.to_le_bytes()); // MXCSR_MASK (ignored)
    if let FpuFormat::Xsave { features, .. } = format {
        area[HEADER..HEADER + 8].copy_from_slice(&(features & XFEATURES_LEGACY).to_le_bytes());
    }
    area
}

impl core::fmt::Debug for FpuArea {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("FpuArea { .. }")
    }
}

/// A copy of a context's FPU state: [`FpuFormat::size`] bytes (see [`Self::as_bytes`]).
#[derive(Clone)]
pub struct FpuImage {
    bytes: [u8; FPU_MAX],
    len: usize,
}

impl FpuImage {
    /// The image: an `fxsave` image (512 bytes), or an `xsave` one in the standard form.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Why [`UserContext::set_fpu_state`] refused an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadFpuImage;

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

crate::cpu_local! {
    /// Per CPU, the FS base it last loaded for user mode.
    static FS_LOADED: AtomicU64 = AtomicU64::new(0);
}

/// `sysretq` only for a `rip` below this (the lower half less its last page, as Linux).
const SYSRET_RIP_END: u64 = 0x0000_7fff_ffff_f000;

/// Codes `hal_enter_user` returns with.
const RETURNED_SYSCALL: u64 = 0;
const RETURNED_TRAP: u64 = 1;

crate::cpu_local! {
    /// The trap that ended the last run on each CPU (vector, error code, CR2).
    static LAST_TRAP: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
}

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
        // What this CPU's registers hold is checked and set here and used on entry: the task
        // stays on this CPU until `run` returns.
        let pinned = PreemptGuard::new();
        // `wrmsr` is slow; the kernel never changes FS (nor can user mode: FSGSBASE is off),
        // so the value this CPU last loaded is still there.
        let loaded = FS_LOADED.get(&pinned);
        if loaded.load(Ordering::Relaxed) != fs {
            FsBase::write(x86_64::VirtAddr::new_truncate(fs));
            loaded.store(fs, Ordering::Relaxed);
        }
        let fpu = self.fpu.addr();
        let live = FPU_LIVE.get(&pinned);
        if live.load(Ordering::Acquire) != fpu {
            // Another context's state is in the registers: keep it in its own area first.
            save_live_fpu();
            // SAFETY: the area is this context's (`&mut self`), holding what a save wrote,
            // the initial state or an image `set_fpu_state` sanitized.
            unsafe { restore_fpu(fpu) };
            live.store(fpu, Ordering::Release);
        }
        // Back from a syscall with `rcx`/`r11` as `syscall` left them, `sysretq` is the cheap
        // way out; it loads `rip` from `rcx` and faults in the kernel on a non-canonical one,
        // so anything else (a signal frame, `execve`, a `rip` in the last page) uses `iretq`.
        let sysret = self.regs.rcx == self.regs.rip
            && self.regs.r11 == self.regs.rflags
            && self.regs.rip < SYSRET_RIP_END;
        // SAFETY: `hal_enter_user` enters user mode with this context's registers and returns
        // here, on this stack, with the callee-saved registers restored, once user mode
        // traps; meanwhile only the trap and syscall paths write the context, through the
        // pointer recorded in this CPU's block, while this `&mut` is lent to the call.
        let code = unsafe { hal_enter_user(&raw mut *self, u64::from(sysret)) };
        if code == RETURNED_SYSCALL {
            return Event::Syscall;
        }
        let [vector, error_code, address] = LAST_TRAP.get(&pinned);
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
    /// The FPU registers as a signal frame carries them: an image in [`fpu_format`].
    pub fn fpu_state(&self) -> FpuImage {
        let fpu = self.fpu.addr();
        let bytes = {
            let irqs_off = IrqGuard::new();
            if FPU_LIVE.get(&irqs_off).load(Ordering::Acquire) == fpu {
                // SAFETY: the area is this context's, its state live in this CPU's registers;
                // saving keeps it live (registers unchanged).
                unsafe { save_fpu(fpu) };
            }
            // SAFETY: the area is not being written: its state is saved, and only this
            // context's own calls (with `&self` or `&mut self`) write it.
            unsafe { *self.fpu.0.0.get() }
        };
        FpuImage {
            bytes,
            len: fpu_format().size(),
        }
    }

    /// Replaces the FPU registers with `image` (from a signal frame): either a full image in
    /// [`fpu_format`] or a 512-byte `fxsave` one (the AVX state then goes back to its initial
    /// state, as Linux does for a legacy frame). MXCSR's reserved bits and the XSAVE header
    /// are sanitized (see [`sanitize`]), so the restore cannot fault in the kernel. Any other
    /// length is refused.
    pub fn set_fpu_state(&mut self, image: &[u8]) -> Result<(), BadFpuImage> {
        let format = fpu_format();
        let mut area = [0u8; FPU_MAX];
        if image.len() == format.size() {
            area[..image.len()].copy_from_slice(image);
        } else if image.len() == LEGACY_SIZE {
            area = initial_image(format);
            area[..LEGACY_SIZE].copy_from_slice(image);
        } else {
            return Err(BadFpuImage);
        }
        sanitize(&mut area, format);
        self.install_fpu(area);
        Ok(())
    }

    /// Puts the FPU registers in their initial state (x87 and SSE reset, MXCSR 0x1f80, AVX
    /// state zero), as Linux does for a `sigreturn` whose frame has no `fpstate`.
    pub fn reset_fpu_state(&mut self) {
        self.install_fpu(initial_image(fpu_format()));
    }

    fn install_fpu(&mut self, area: [u8; FPU_MAX]) {
        let fpu = self.fpu.addr();
        {
            let irqs_off = IrqGuard::new();
            // The registers no longer hold this context's state: the next run loads `area`.
            let _ = FPU_LIVE.get(&irqs_off).compare_exchange(
                fpu,
                0,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
            // SAFETY: `&mut self`: nothing else reads or writes the area now.
            unsafe { *self.fpu.0.0.get() = area };
        }
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
/// FPU state user programs use (CR0.MP, not EM; CR4.OSFXSR, OSXMMEXCPT; with XSAVE,
/// CR4.OSXSAVE and XCR0 as [`fpu_format`] says, chosen on the first CPU to get here, the
/// bootstrap CPU).
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
    let format = *FORMAT.call_once(choose_format);
    if let FpuFormat::Xsave { features, .. } = format {
        enable_xsave(features);
    }
    // STAR: syscall loads CS = 0x08, SS = 0x10; sysret would load CS = 0x10 + 16 and
    // SS = 0x10 + 8 (user code and data, RPL 3).
    let star = (u64::from(gdt::KERNEL_DATA.0) << 48) | (u64::from(gdt::KERNEL_CODE.0) << 32);
    // SAFETY: as above (the raw MSR, since the crate's setter checks a layout for `sysret`
    // from the user selectors that this GDT meets but expresses differently).
    unsafe { Msr::new(STAR_MSR).write(star) };
}

const STAR_MSR: u32 = 0xc000_0081;

/// On the bootstrap CPU: XSAVE with x87, SSE and AVX (those of them XCR0 supports) if the
/// CPU has it and their image fits an [`FpuArea`], else x87 and SSE alone; `fxsave` without
/// XSAVE. Leaves XSAVE enabled on this CPU when chosen.
fn choose_format() -> FpuFormat {
    if __cpuid(1).ecx & (1 << 26) == 0 {
        return FpuFormat::Fxsave;
    }
    let supported = __cpuid_count(0xd, 0);
    let supported = u64::from(supported.eax) | (u64::from(supported.edx) << 32);
    for wanted in [XFEATURES_WANTED, XFEATURES_LEGACY] {
        let features = supported & wanted;
        enable_xsave(features);
        // EBX: the size XCR0's components need in the standard form.
        let size = __cpuid_count(0xd, 0).ebx as usize;
        if size <= FPU_MAX {
            return FpuFormat::Xsave { features, size };
        }
    }
    // A CPU whose x87 and SSE need more than `FPU_MAX` bytes does not exist; be safe anyway.
    // SAFETY: clearing OSXSAVE again: nothing has used XSAVE yet.
    unsafe { Cr4::update(|f| f.remove(Cr4Flags::OSXSAVE)) };
    FpuFormat::Fxsave
}

/// Sets CR4.OSXSAVE and XCR0 = `features` on this CPU.
fn enable_xsave(features: u64) {
    // SAFETY: the CPU has XSAVE (checked before the format was chosen), and `features` is a
    // subset of what CPUID.(EAX=0Dh,ECX=0) reports supported that includes x87 and SSE,
    // which is what `xsetbv` accepts; no user state has been saved in another format.
    unsafe {
        Cr4::update(|f| f.insert(Cr4Flags::OSXSAVE));
        XCr0::write_raw(features);
    }
}

/// Called by the trap path for a trap taken in user mode, after any interrupt handler ran:
/// stores the registers into the running context and returns from `run`. Never returns.
pub(crate) fn trap_from_user(frame: &TrapFrame) -> ! {
    let block = crate::percpu::this_block();
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
    let [vector, error_code, address] = LAST_TRAP.here();
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

/// Enters user mode with `context`'s registers, through `sysretq` if `sysret` is non-zero
/// (the caller checked `rcx == rip`, `r11 == rflags` and a canonical `rip`) or else `iretq`;
/// returns (with a `RETURNED_*` code) when user mode next traps to the kernel.
#[unsafe(naked)]
unsafe extern "C" fn hal_enter_user(context: *mut UserContext, sysret: u64) -> u64 {
    naked_asm!(
        // No interrupt from here on: between `swapgs` and the return to user mode GS is the
        // user's, and on the `sysretq` path the stack is the user's too.
        "cli",
        "push rbx",
        "push rbp",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "mov gs:[{krsp}], rsp",
        "mov gs:[{ctx}], rdi",
        "test rsi, rsi",
        "jnz 2f",
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
        // sysretq: rip from rcx, rflags from r11, the user's code and stack selectors from
        // STAR; rsp is loaded last (the stack is the user's from then on).
        "2:",
        "mov rax, [rdi + {rax}]",
        "mov rbx, [rdi + {rbx}]",
        "mov rdx, [rdi + {rdx}]",
        "mov rsi, [rdi + {rsi}]",
        "mov rbp, [rdi + {rbp}]",
        "mov r8, [rdi + {r8}]",
        "mov r9, [rdi + {r9}]",
        "mov r10, [rdi + {r10}]",
        "mov r12, [rdi + {r12}]",
        "mov r13, [rdi + {r13}]",
        "mov r14, [rdi + {r14}]",
        "mov r15, [rdi + {r15}]",
        "mov rcx, [rdi + {rip}]",
        "mov r11, [rdi + {rflags}]",
        "mov rsp, [rdi + {rsp}]",
        "mov rdi, [rdi + {rdi}]",
        "swapgs",
        "sysretq",
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
