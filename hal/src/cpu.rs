//! The processor itself: halting, interrupt flag, and read-only views of its control state
//! (used by diagnostics and by the loader conformance probe).

use alloc::boxed::Box;
use core::arch::asm;

use x86_64::{
    instructions::{interrupts, tables::sgdt},
    registers::{
        control::{Cr0, Cr3, Cr4},
        model_specific::{Efer, Msr},
        rflags,
        segmentation::{CS, DS, ES, FS, GS, SS, Segment},
    },
};

/// Disables interrupts and halts this CPU forever.
pub fn halt_forever() -> ! {
    loop {
        interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// Whether maskable interrupts are enabled on this CPU.
pub fn interrupts_enabled() -> bool {
    interrupts::are_enabled()
}

/// A snapshot of this CPU's control state.
#[derive(Clone, Copy, Debug)]
pub struct ControlState {
    /// CR0.
    pub cr0: u64,
    /// CR3 (page-table root and flags).
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// IA32_EFER.
    pub efer: u64,
    /// IA32_PAT, if the CPU has PAT.
    pub pat: Option<u64>,
    /// RFLAGS.
    pub rflags: u64,
    /// CS, DS, ES, FS, GS, SS selectors.
    pub selectors: [u16; 6],
    /// FS and GS base addresses.
    pub fs_base: u64,
    /// GS base address.
    pub gs_base: u64,
    /// GDTR base (virtual) and limit.
    pub gdtr: (u64, u16),
}

/// IA32_PAT.
const MSR_PAT: u32 = 0x277;
/// IA32_FS_BASE.
const MSR_FS_BASE: u32 = 0xc000_0100;
/// IA32_GS_BASE.
const MSR_GS_BASE: u32 = 0xc000_0101;

/// Reads this CPU's control state.
pub fn control_state() -> ControlState {
    let features = Features::read();
    let read_msr = |index: u32| {
        // SAFETY: only architectural MSRs that exist on every x86-64 CPU (FS/GS base) or whose
        // existence was checked through CPUID (PAT) are read; reads have no side effects.
        unsafe { Msr::new(index).read() }
    };
    let (cr3_frame, cr3_flags) = Cr3::read_raw();
    let gdtr = sgdt();
    ControlState {
        cr0: Cr0::read_raw(),
        cr3: cr3_frame.start_address().as_u64() | u64::from(cr3_flags),
        cr4: Cr4::read_raw(),
        efer: Efer::read_raw(),
        pat: features.pat.then(|| read_msr(MSR_PAT)),
        rflags: rflags::read_raw(),
        selectors: [
            CS::get_reg().0,
            DS::get_reg().0,
            ES::get_reg().0,
            FS::get_reg().0,
            GS::get_reg().0,
            SS::get_reg().0,
        ],
        fs_base: read_msr(MSR_FS_BASE),
        gs_base: read_msr(MSR_GS_BASE),
        gdtr: (gdtr.base.as_u64(), gdtr.limit),
    }
}

/// Reads the descriptor at `selector` from the currently loaded GDT.
///
/// Returns `None` if the selector is outside the GDT's limit.
pub fn gdt_descriptor(selector: u16) -> Option<u64> {
    let gdtr = sgdt();
    let offset = u64::from(selector & !7);
    if offset + 7 > u64::from(gdtr.limit) {
        return None;
    }
    let address = gdtr.base.as_u64() + offset;
    // SAFETY: the GDT is mapped (the CPU uses it for every segment load) and `offset` is within
    // its limit, so the 8 bytes at `address` are readable.
    Some(unsafe { core::ptr::read_volatile(address as *const u64) })
}

/// The stack pointer of the caller (approximately: the current frame's).
pub fn stack_pointer() -> u64 {
    let rsp: u64;
    // SAFETY: reading rsp has no side effects.
    unsafe { asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack, preserves_flags)) };
    rsp
}

/// CPU features Evergreen cares about, from CPUID.
#[derive(Clone, Copy, Debug, Default)]
pub struct Features {
    /// Page attribute table.
    pub pat: bool,
    /// No-execute pages (EFER.NXE).
    pub nx: bool,
    /// x2APIC mode.
    pub x2apic: bool,
    /// 1 GiB pages.
    pub page1g: bool,
}

impl Features {
    /// Reads the features of this CPU.
    pub fn read() -> Self {
        let leaf1 = core::arch::x86_64::__cpuid(1);
        let max_ext = core::arch::x86_64::__cpuid(0x8000_0000).eax;
        let ext1 = if max_ext >= 0x8000_0001 {
            core::arch::x86_64::__cpuid(0x8000_0001).edx
        } else {
            0
        };
        Self {
            pat: leaf1.edx & (1 << 16) != 0,
            x2apic: leaf1.ecx & (1 << 21) != 0,
            nx: ext1 & (1 << 20) != 0,
            page1g: ext1 & (1 << 26) != 0,
        }
    }
}

/// RFLAGS.AC, the alignment-check flag, which also lifts SMAP: while it is set, supervisor
/// code may touch user pages.
pub const RFLAGS_AC: u64 = 1 << 18;

/// This CPU's RFLAGS.
pub fn rflags() -> u64 {
    x86_64::registers::rflags::read_raw()
}

/// Puts RFLAGS in a known state at a CPU's first kernel instruction: only the reserved bit 1
/// (interrupts stay off). The Limine protocol fixes IF, VM and DF at entry and leaves every
/// other flag undefined; AC in particular would silently disable SMAP.
pub(crate) fn reset_rflags() {
    // SAFETY: writing 0x2 clears IF (already clear at entry), DF, AC, TF and the arithmetic
    // flags, none of which any code relies on across this point; the push and pop balance.
    unsafe { asm!("push 2", "popfq") };
}

/// Executes `int3`; the breakpoint handler reports it and execution continues.
pub fn breakpoint() {
    x86_64::instructions::interrupts::int3();
}

/// Switches to `stack` and runs `f` there; `f` never returns (so the stack is never
/// freed: it is leaked on purpose).
///
/// Used to run code on a kernel stack with a guard page (the stack-overflow test, and CPUs
/// leaving the loader's stacks). `f` is moved to the heap for the switch.
pub fn run_on_stack<F: FnOnce() + Send + 'static>(stack: crate::mm::KernelStack, f: F) -> ! {
    let top = stack.top();
    core::mem::forget(stack);
    let f: Box<dyn FnOnce()> = Box::new(f);
    let boxed = Box::into_raw(Box::new(f));
    // SAFETY: `top` is the top of a mapped, writable kernel stack that is never unmapped
    // (forgotten above); the trampoline never returns, so abandoning the current stack is
    // fine. The stack is aligned to 16 before the call as the ABI requires, and `boxed` is
    // the pointer the trampoline takes back.
    unsafe {
        asm!(
            "mov rsp, {top}",
            "and rsp, -16",
            "xor ebp, ebp",
            "call {trampoline}",
            "ud2",
            top = in(reg) top,
            trampoline = sym run_boxed,
            in("rdi") boxed,
            options(noreturn),
        )
    }
}

/// Takes back the closure [`run_on_stack`] boxed and runs it.
extern "C" fn run_boxed(boxed: *mut Box<dyn FnOnce()>) -> ! {
    // SAFETY: `run_on_stack` made `boxed` with `Box::into_raw` and passes it here once.
    let f = *unsafe { Box::from_raw(boxed) };
    f();
    panic!("a function given to run_on_stack returned; its stack has no caller")
}

/// Switches to the stack whose top is `top` and calls `f` there, for hal's own static stacks.
///
/// # Safety
/// `top` is the top of mapped, writable memory that nothing else uses as anything but a
/// stack this CPU may write, for as long as `f` runs (forever).
pub(crate) unsafe fn switch_stack_and_call(top: u64, f: extern "C" fn() -> !) -> ! {
    // SAFETY: the caller promises `top` is a stack this CPU may use; `f` never returns.
    unsafe {
        asm!(
            "mov rsp, {top}",
            "and rsp, -16",
            "xor ebp, ebp",
            "call {f}",
            "ud2",
            top = in(reg) top,
            f = in(reg) f,
            options(noreturn),
        )
    }
}

/// Enables maskable interrupts on this CPU.
pub fn enable_interrupts() {
    interrupts::enable();
}

/// Disables maskable interrupts on this CPU.
pub fn disable_interrupts() {
    interrupts::disable();
}

/// Enables interrupts and halts until the next one has been handled. The two happen as one
/// step (`sti; hlt`), so an interrupt that arrives in between still wakes the CPU.
pub fn idle() {
    interrupts::enable_and_hlt();
}

/// Executes `ud2`, which raises an invalid-opcode exception: for the test that checks how
/// the kernel reports CPU exceptions.
pub fn invalid_opcode() -> ! {
    // SAFETY: `ud2` only raises #UD; the exception handler reports it and never returns here.
    unsafe { asm!("ud2", options(noreturn, nomem, nostack)) }
}

/// A hardware random number (RDRAND), if the CPU has the instruction and it delivered.
pub fn rdrand() -> Option<u64> {
    let has = core::arch::x86_64::__cpuid(1).ecx & (1 << 30) != 0;
    if !has {
        return None;
    }
    let mut value = 0u64;
    for _ in 0..10 {
        // SAFETY: RDRAND exists (CPUID.1:ECX.RDRAND); it writes one register and the flags.
        if unsafe { core::arch::x86_64::_rdrand64_step(&mut value) } == 1 {
            return Some(value);
        }
    }
    None
}

/// The CPU's vendor (CPUID leaf 0: "GenuineIntel", "AuthenticAMD", …).
pub fn vendor_string() -> alloc::string::String {
    let leaf = core::arch::x86_64::__cpuid(0);
    let mut bytes = [0u8; 12];
    for (i, word) in [leaf.ebx, leaf.edx, leaf.ecx].iter().enumerate() {
        bytes[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
    }
    alloc::string::String::from_utf8_lossy(&bytes).into_owned()
}

/// The CPU's model name (CPUID leaves 0x8000_0002..4), or "unknown" where it has none.
pub fn brand_string() -> alloc::string::String {
    if core::arch::x86_64::__cpuid(0x8000_0000).eax < 0x8000_0004 {
        return "unknown".into();
    }
    let mut bytes = [0u8; 48];
    for (n, leaf) in (0x8000_0002u32..=0x8000_0004).enumerate() {
        let r = core::arch::x86_64::__cpuid(leaf);
        for (i, word) in [r.eax, r.ebx, r.ecx, r.edx].iter().enumerate() {
            let at = n * 16 + i * 4;
            bytes[at..at + 4].copy_from_slice(&word.to_le_bytes());
        }
    }
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    alloc::string::String::from_utf8_lossy(&bytes[..end])
        .trim()
        .into()
}

/// The TSC rate in MHz (0 before the clock is calibrated).
pub fn tsc_mhz() -> u64 {
    crate::time::calibration().map_or(0, |c| c.tsc_hz / 1_000_000)
}
