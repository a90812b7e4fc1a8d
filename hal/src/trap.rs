//! Interrupts and exceptions: the IDT, the entry stubs for all 256 vectors, and dispatch.
//!
//! Every vector enters through a 16-byte stub that pushes a dummy error code when the CPU
//! does not push one, then the vector number, and jumps to a common path that saves all
//! general-purpose registers as a [`TrapFrame`] and calls [`dispatch`]. Exceptions are
//! diagnosed here (a register dump, CR2 for page faults, a frame-pointer stack trace);
//! device interrupts go to handlers the kernel registers with [`register`].

use core::{
    arch::global_asm,
    sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
};

use spin::Lazy;
use x86_64::{
    VirtAddr, instructions::tables::lidt, registers::control::Cr2,
    structures::DescriptorTablePointer,
};

use crate::gdt;

/// The registers of an interrupted context, as saved by the entry stubs.
#[repr(C)]
#[derive(Clone, Debug)]
#[expect(missing_docs, reason = "register names speak for themselves")]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// The vector that was raised.
    pub vector: u64,
    /// The CPU's error code, or 0 for vectors without one.
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// First vector available for device interrupts and IPIs.
pub const FIRST_IRQ_VECTOR: u8 = 32;
/// The APIC spurious-interrupt vector (needs no EOI).
pub const SPURIOUS_VECTOR: u8 = 0xff;

/// The vectors Evergreen assigns.
pub mod vectors {
    /// The local APIC timer tick.
    pub const TIMER: u8 = 0x20;
    /// Legacy IRQ 1: the PS/2 keyboard (through the I/O APIC).
    pub const KEYBOARD: u8 = 0x21;
    /// Legacy IRQ 4: COM1 (through the I/O APIC).
    pub const COM1: u8 = 0x24;
    /// IPI: flush TLB entries on the receiving CPU.
    pub const TLB_SHOOTDOWN: u8 = 0xf0;
    /// IPI: a test or wake-up ping.
    pub const PING: u8 = 0xf1;
    /// The local APIC error interrupt.
    pub const APIC_ERROR: u8 = 0xfe;
    /// The local APIC spurious interrupt.
    pub const SPURIOUS: u8 = super::SPURIOUS_VECTOR;
}

global_asm!(
    r#"
    .section .text.trap_stubs, "ax"
    .balign 16
    .global hal_trap_stubs
hal_trap_stubs:
    .set vector, 0
    .rept 256
    .balign 16
    .if vector == 8 || (vector >= 10 && vector <= 14) || vector == 17 || vector == 21 || vector == 29 || vector == 30
    .else
    push 0
    .endif
    push vector
    jmp {common}
    .set vector, vector + 1
    .endr
    "#,
    common = sym trap_common,
);

unsafe extern "C" {
    /// The first of 256 entry stubs, 16 bytes apart.
    static hal_trap_stubs: u8;
}

/// Saves the interrupted context and calls [`dispatch`] with the kernel's GS base loaded;
/// restores it and returns with `iretq`.
#[unsafe(naked)]
extern "C" fn trap_common() {
    core::arch::naked_asm!(
        // Coming from user mode, switch to the kernel's GS base.
        "test qword ptr [rsp + 24], 3",
        "jz 2f",
        "swapgs",
        "2:",
        "push rax",
        "push rbx",
        "push rcx",
        "push rdx",
        "push rsi",
        "push rdi",
        "push rbp",
        "push r8",
        "push r9",
        "push r10",
        "push r11",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        // Taken in kernel mode: the GS base is the kernel's, except for an NMI or machine
        // check in the few instructions around `swapgs` on a user-mode crossing. Check the
        // MSR (kernel GS bases are higher-half addresses, user ones are not) and swap if
        // needed, remembering it in r12 (callee-saved across `dispatch`) to swap back.
        "xor r12d, r12d",
        "test qword ptr [rsp + 15 * 8 + 24], 3",
        "jnz 4f",
        "mov ecx, {gs_base_msr}",
        "rdmsr",
        "test edx, edx",
        "js 4f",
        "swapgs",
        "mov r12d, 1",
        "4:",
        "mov rdi, rsp",
        "cld",
        "mov rbx, rsp",
        "and rsp, -16",
        "call {dispatch}",
        "mov rsp, rbx",
        "test r12d, r12d",
        "jz 5f",
        "swapgs",
        "5:",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop r11",
        "pop r10",
        "pop r9",
        "pop r8",
        "pop rbp",
        "pop rdi",
        "pop rsi",
        "pop rdx",
        "pop rcx",
        "pop rbx",
        "pop rax",
        "test qword ptr [rsp + 24], 3",
        "jz 3f",
        "swapgs",
        "3:",
        "add rsp, 16",
        "iretq",
        dispatch = sym dispatch,
        gs_base_msr = const 0xc000_0101u32,
    )
}

/// One 16-byte IDT gate.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct Gate(u128);

impl Gate {
    fn interrupt(handler: u64, ist: u16, user: bool) -> Self {
        let selector = u128::from(gdt::KERNEL_CODE.0);
        // Present, DPL 0 (3 for the gates user code may raise with `int3`/`into`), 64-bit
        // interrupt gate (interrupts disabled on entry).
        let dpl = if user { 3u128 << 13 } else { 0 };
        let attributes = 0x8e00u128 | dpl | u128::from(ist & 7);
        let handler = u128::from(handler);
        Self(
            (handler & 0xffff)
                | (selector << 16)
                | (attributes << 32)
                | (((handler >> 16) & 0xffff) << 48)
                | ((handler >> 32) << 64),
        )
    }
}

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static IDT: Lazy<Idt> = Lazy::new(|| {
    let stubs = (&raw const hal_trap_stubs) as u64;
    let mut gates = [Gate(0); 256];
    for (vector, gate) in gates.iter_mut().enumerate() {
        let ist = match vector {
            2 => gdt::IST_NMI,
            8 => gdt::IST_DOUBLE_FAULT,
            18 => gdt::IST_MACHINE_CHECK,
            _ => 0,
        };
        // As on Linux, user mode may raise #BP (`int3`) and #OF (`into`) itself; any other
        // `int n` from user mode is a general-protection fault.
        let user = matches!(vector, 3 | 4);
        *gate = Gate::interrupt(stubs + 16 * vector as u64, ist, user);
    }
    Idt(gates)
});

/// Loads the IDT on this CPU. Call after [`gdt::init_this_cpu`] (the gates use its IST
/// stacks and code selector).
pub(crate) fn init_this_cpu() {
    let idt: &'static Idt = &IDT;
    let pointer = DescriptorTablePointer {
        limit: (size_of::<Idt>() - 1) as u16,
        base: VirtAddr::from_ptr(idt),
    };
    // SAFETY: the IDT is a static with 256 valid gates pointing at the stubs above, which
    // stay mapped for the kernel's lifetime.
    unsafe { lidt(&pointer) };
}

/// A device-interrupt or IPI handler. It sees the interrupted context's registers but cannot
/// change them: the frame belongs to kernel code, and a rewritten `rip`, `rsp` or `cs` would
/// make `iretq` jump anywhere. (Mutable register state will exist only for user contexts.)
pub type Handler = fn(&TrapFrame);

static HANDLERS: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];
static EOI: AtomicUsize = AtomicUsize::new(0);
static STOPPING: AtomicBool = AtomicBool::new(false);
static BREAKPOINTS: AtomicU64 = AtomicU64::new(0);
static STOPPED: AtomicUsize = AtomicUsize::new(0);

/// Vectors whose handlers hal installs itself and the rest of the kernel may not replace:
/// hal's own safety rests on them (a TLB shootdown that is never served leaves stale
/// mappings of freed frames).
const HAL_VECTORS: [u8; 3] = [
    vectors::TLB_SHOOTDOWN,
    vectors::APIC_ERROR,
    vectors::SPURIOUS,
];

/// Why [`register`] refused a vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterError {
    /// Vectors below 32 are CPU exceptions, handled by hal.
    Exception(u8),
    /// hal handles this vector itself.
    Reserved(u8),
}

impl core::fmt::Display for RegisterError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Exception(v) => write!(f, "vector {v} is a CPU exception"),
            Self::Reserved(v) => write!(f, "vector {v:#x} is handled by hal"),
        }
    }
}

/// Installs `handler` for `vector` on every CPU: a device interrupt or IPI vector (32 and
/// up) that hal does not handle itself.
pub fn register(vector: u8, handler: Handler) -> Result<(), RegisterError> {
    if vector < FIRST_IRQ_VECTOR {
        return Err(RegisterError::Exception(vector));
    }
    if HAL_VECTORS.contains(&vector) {
        return Err(RegisterError::Reserved(vector));
    }
    HANDLERS[usize::from(vector)].store(handler as usize, Ordering::Release);
    Ok(())
}

/// The vectors [`allocate`] hands out for device interrupts (MSI and MSI-X): above the fixed
/// legacy-device vectors, below hal's IPI and APIC vectors.
pub const DYNAMIC_VECTORS: core::ops::Range<u8> = 0x30..0xf0;

/// A vector [`allocate`] handed out with its handler installed; dropping it uninstalls the
/// handler and frees the vector. A device must be told to stop using it first.
#[derive(Debug, PartialEq, Eq)]
pub struct Vector(u8);

impl Vector {
    /// The vector number (what a device's message data carries).
    pub fn number(&self) -> u8 {
        self.0
    }
}

impl Drop for Vector {
    fn drop(&mut self) {
        HANDLERS[usize::from(self.0)].store(0, Ordering::Release);
    }
}

/// Installs `handler` on a free vector of [`DYNAMIC_VECTORS`], on every CPU; `None` when all
/// are taken.
pub fn allocate(handler: Handler) -> Option<Vector> {
    DYNAMIC_VECTORS.clone().find_map(|v| {
        HANDLERS[usize::from(v)]
            .compare_exchange(0, handler as usize, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Vector(v))
    })
}

/// [`register`] for hal's own vectors.
pub(crate) fn register_hal(vector: u8, handler: Handler) {
    HANDLERS[usize::from(vector)].store(handler as usize, Ordering::Release);
}

/// Sets the function that acknowledges an interrupt (the local APIC's EOI).
pub(crate) fn set_eoi(eoi: fn()) {
    EOI.store(eoi as usize, Ordering::Release);
}

/// From now on, an NMI halts the CPU that takes it: used to stop every CPU on a panic.
pub(crate) fn begin_stop() {
    STOPPING.store(true, Ordering::SeqCst);
}

/// Whether a system-wide stop is under way (CPUs coming online check this and halt).
pub fn stopping() -> bool {
    STOPPING.load(Ordering::SeqCst)
}

/// How many CPUs have halted in response to a stop NMI.
pub fn stopped_cpus() -> usize {
    STOPPED.load(Ordering::Acquire)
}

/// How many breakpoint (`int3`) exceptions have been handled.
pub fn breakpoints_handled() -> u64 {
    BREAKPOINTS.load(Ordering::Relaxed)
}

/// A page fault caught by [`probe_read`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageFault {
    /// The faulting address (CR2).
    pub address: u64,
    /// The CPU's page-fault error code.
    pub error_code: u64,
}

crate::cpu_local! {
    /// The CR2 and error code of the last page fault a probe caught on each CPU.
    static LAST_FAULT: (AtomicU64, AtomicU64) = (AtomicU64::new(0), AtomicU64::new(0));
}

#[repr(C)]
struct ProbeResult {
    value: u64,
    faulted: u64,
}

/// Reads the qword at `address`; `rdi` = address, returns (value, faulted).
#[unsafe(naked)]
extern "C" fn probe_read_raw(_address: u64) -> ProbeResult {
    core::arch::naked_asm!(
        "xor edx, edx",
        ".global hal_probe_read_insn",
        "hal_probe_read_insn:",
        "mov rax, qword ptr [rdi]",
        "ret",
        ".global hal_probe_read_fixup",
        "hal_probe_read_fixup:",
        "xor eax, eax",
        "mov edx, 1",
        "ret",
    )
}

unsafe extern "C" {
    static hal_probe_read_insn: u8;
    static hal_probe_read_fixup: u8;
}

/// Test hook: raises the PING vector with `int` while the user's GS base (0) is loaded, as
/// an NMI that lands next to a `swapgs` finds it; the trap path must load the kernel's GS
/// base for the handler (which uses per-CPU data) and put the user's back. Only with the
/// `test-hooks` feature: it is no part of the normal API.
#[cfg(feature = "test-hooks")]
pub fn ping_with_user_gs() {
    let irqs_off = crate::percpu::IrqGuard::new();
    // SAFETY: interrupts are off, so only the `int` runs between the two `swapgs` (nothing
    // else uses GS meanwhile); the kernel's GS base is back before Rust code runs again.
    unsafe {
        core::arch::asm!(
            "swapgs",
            "int {vector}",
            "swapgs",
            vector = const vectors::PING,
        );
    }
    drop(irqs_off);
}

/// Test hook: reads the qword at `address`, reporting a page fault instead of crashing.
/// Only with the `test-hooks` feature: a read of any address can race with a writer or have
/// a device side effect, so it is no part of the normal API.
#[cfg(feature = "test-hooks")]
pub fn probe_read(address: u64) -> Result<u64, PageFault> {
    probe(address)
}

/// Reads the qword at `address`, reporting a page fault instead of crashing (hal's stack
/// walker uses it on frame-pointer chains it cannot trust).
pub(crate) fn probe(address: u64) -> Result<u64, PageFault> {
    // The fault handler records the fault on this CPU; the guard keeps the task here.
    let pinned = crate::percpu::PreemptGuard::new();
    let result = probe_read_raw(address);
    if result.faulted == 0 {
        return Ok(result.value);
    }
    let (cr2, code) = LAST_FAULT.get(&pinned);
    Err(PageFault {
        address: cr2.load(Ordering::Relaxed),
        error_code: code.load(Ordering::Relaxed),
    })
}

const EXCEPTION_NAMES: [&str; 32] = [
    "divide error",
    "debug",
    "non-maskable interrupt",
    "breakpoint",
    "overflow",
    "bound range exceeded",
    "invalid opcode",
    "device not available",
    "double fault",
    "coprocessor segment overrun",
    "invalid TSS",
    "segment not present",
    "stack-segment fault",
    "general protection fault",
    "page fault",
    "reserved",
    "x87 floating-point error",
    "alignment check",
    "machine check",
    "SIMD floating-point error",
    "virtualization exception",
    "control protection exception",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "hypervisor injection",
    "VMM communication",
    "security exception",
    "reserved",
];

/// Resolves a user page fault that is the kernel's to serve: demand paging, copy-on-write,
/// stack growth.
fn resolve_page_fault(error_code: u64) -> bool {
    let address = Cr2::read_raw();
    crate::mm::resolve_lazy_fault(error_code, address)
        || crate::mm::resolve_write_fault(error_code, address)
        || crate::mm::resolve_stack_fault(error_code, address)
}

/// The common Rust entry for every vector.
extern "C" fn dispatch(frame: &mut TrapFrame) {
    let vector = frame.vector as usize;
    let from_user = frame.cs & 3 == 3;
    // An exception in user mode is the user program's: it goes back to the kernel as an
    // event of the context that ran (`hal::usermode`), never to the fatal path.
    if from_user && vector < 32 && !(vector == 2 && stopping()) {
        if vector == 14 && resolve_page_fault(frame.error_code) {
            // A write to a copy-on-write page, which has its own frame now, or a touch of
            // the stack below its mapped part, which grew: retry it.
            return;
        }
        crate::usermode::trap_from_user(frame);
    }
    match vector {
        2 if stopping() => {
            STOPPED.fetch_add(1, Ordering::AcqRel);
            crate::cpu::halt_forever()
        }
        3 => {
            BREAKPOINTS.fetch_add(1, Ordering::Relaxed);
            log::warn!("breakpoint at {:#x}; continuing", frame.rip);
        }
        14 if frame.rip == (&raw const hal_probe_read_insn) as u64 => {
            let (cr2, code) = LAST_FAULT.here();
            cr2.store(Cr2::read_raw(), Ordering::Relaxed);
            code.store(frame.error_code, Ordering::Relaxed);
            frame.rip = (&raw const hal_probe_read_fixup) as u64;
        }
        14 if crate::user::is_copy(frame.rip) && resolve_page_fault(frame.error_code) => {
            // A user-memory copy wrote a copy-on-write page, which has its own frame now, or
            // touched the stack's reserve, which is mapped now: the copy goes on.
        }
        14 if let Some(resume) = crate::user::fixup(frame.rip, Cr2::read_raw()) => {
            // A user-memory copy touched a bad user address: it reports a fault instead.
            frame.rip = resume;
        }
        0..32 => fatal_exception(frame),
        _ => {
            let handler = HANDLERS[vector].load(Ordering::Acquire);
            if handler != 0 {
                // SAFETY: only `register` stores here, and it stores a `Handler`.
                let handler: Handler = unsafe { core::mem::transmute::<usize, Handler>(handler) };
                handler(&*frame);
            } else if vector != usize::from(SPURIOUS_VECTOR) {
                log::warn!("unexpected interrupt on vector {vector}");
            }
            let eoi = EOI.load(Ordering::Acquire);
            if eoi != 0 && vector != usize::from(SPURIOUS_VECTOR) {
                // SAFETY: only `set_eoi` stores here, and it stores a `fn()`.
                let eoi: fn() = unsafe { core::mem::transmute::<usize, fn()>(eoi) };
                eoi();
            }
        }
    }
    if from_user {
        // An interrupt taken in user mode: its handler has run; the kernel decides what next.
        crate::usermode::trap_from_user(frame);
    }
}

/// The instruction pointer of the last fatal exception (0 if none): the panic handler names
/// the function it belongs to.
static FATAL_RIP: AtomicU64 = AtomicU64::new(0);

/// Where the last fatal CPU exception happened, if one did.
pub fn fatal_exception_rip() -> Option<u64> {
    Some(FATAL_RIP.load(Ordering::Acquire)).filter(|&rip| rip != 0)
}

/// Reports an exception the kernel cannot recover from, then panics.
fn fatal_exception(frame: &TrapFrame) -> ! {
    FATAL_RIP.store(frame.rip, Ordering::Release);
    let vector = frame.vector as usize;
    let name = EXCEPTION_NAMES[vector];
    let cpu = crate::percpu::current_index();
    log::error!(
        "CPU {cpu}: {name} (vector {vector}), error code {:#x}",
        frame.error_code
    );
    if vector == 14 {
        let cr2 = Cr2::read_raw();
        let code = frame.error_code;
        log::error!(
            "  page fault at address {cr2:#x}: {} {} in {} mode",
            if code & 1 != 0 {
                "protection violation on"
            } else {
                "non-present page,"
            },
            if code & 0x10 != 0 {
                "instruction fetch"
            } else if code & 2 != 0 {
                "write"
            } else {
                "read"
            },
            if code & 4 != 0 { "user" } else { "kernel" },
        );
    }
    dump_registers(frame);
    if vector == 14 {
        panic!(
            "{name} at rip {:#x}, address {:#x}",
            frame.rip,
            Cr2::read_raw()
        );
    }
    panic!("{name} at rip {:#x}", frame.rip);
}

fn dump_registers(f: &TrapFrame) {
    log::error!(
        "  rip {:#018x}  cs {:#06x}  rflags {:#010x}",
        f.rip,
        f.cs,
        f.rflags
    );
    log::error!("  rsp {:#018x}  ss {:#06x}", f.rsp, f.ss);
    log::error!(
        "  rax {:#018x}  rbx {:#018x}  rcx {:#018x}",
        f.rax,
        f.rbx,
        f.rcx
    );
    log::error!(
        "  rdx {:#018x}  rsi {:#018x}  rdi {:#018x}",
        f.rdx,
        f.rsi,
        f.rdi
    );
    log::error!(
        "  rbp {:#018x}  r8  {:#018x}  r9  {:#018x}",
        f.rbp,
        f.r8,
        f.r9
    );
    log::error!(
        "  r10 {:#018x}  r11 {:#018x}  r12 {:#018x}",
        f.r10,
        f.r11,
        f.r12
    );
    log::error!(
        "  r13 {:#018x}  r14 {:#018x}  r15 {:#018x}",
        f.r13,
        f.r14,
        f.r15
    );
}
