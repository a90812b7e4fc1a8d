//! Kernel threads and the context switch.
//!
//! A [`Thread`] owns a kernel stack; while it is not running, its callee-saved registers sit
//! on that stack and its stack pointer in the `Thread`. [`switch_to`] suspends the running
//! thread and resumes another, on this CPU. What makes it safe to call from safe code:
//!
//! - a thread runs on at most one CPU: `switch_to` claims the next thread's `running` flag
//!   first and refuses a thread that is running (or finished);
//! - the flag of the thread being suspended is released only after its registers are saved,
//!   by the thread that takes over the CPU, so another CPU can never resume it half-saved;
//! - each CPU holds a reference to the thread it runs (the first is a `Thread` standing for
//!   the stack the CPU was already on), and the suspended thread's reference is dropped only
//!   after the switch — so a finished thread's stack is freed only once no CPU is on it.
//!
//! Scheduling — which thread runs next — is the kernel's.

use alloc::{boxed::Box, sync::Arc};
use core::{
    arch::naked_asm,
    cell::UnsafeCell,
    sync::atomic::{AtomicBool, Ordering},
};

use crate::{mm::KernelStack, sync::IrqMutex};

/// Kernel stack size of a thread, in 4 KiB pages.
pub const STACK_PAGES: u64 = 16;

/// A kernel thread.
pub struct Thread {
    /// Its stack (`None` for a CPU's first thread, which runs on the stack the CPU had).
    _stack: Option<KernelStack>,
    /// The saved stack pointer while suspended.
    rsp: UnsafeCell<u64>,
    /// Whether a CPU runs it (or is switching to it).
    running: AtomicBool,
    /// Whether its function has returned (it can never run again).
    finished: AtomicBool,
    /// The function it starts with, taken when it first runs.
    start: IrqMutex<Option<Start>>,
}

/// A thread's function, boxed, with the code that runs it. Not a `Box<dyn FnOnce()>`:
/// calling one of those frees the box only when the function returns, and a thread's
/// function never does (it ends with [`exit_to`]), so every thread would leak its box.
/// `run` moves the function out of its box onto the thread's stack, freeing the box, first.
struct Start {
    run: unsafe fn(*mut ()),
    discard: unsafe fn(*mut ()),
    function: *mut (),
}

impl Drop for Start {
    /// A thread dropped before it ran: its function goes unrun.
    fn drop(&mut self) {
        // SAFETY: `function` is still the box `spawn` made (`thread_start` forgets a
        // `Start` it runs).
        unsafe { (self.discard)(self.function) }
    }
}

/// Frees the `F` boxed at `function` without running it.
///
/// # Safety
///
/// As for [`run_boxed`].
unsafe fn discard_boxed<F>(function: *mut ()) {
    // SAFETY: per the contract.
    drop(unsafe { Box::from_raw(function.cast::<F>()) });
}

// SAFETY: `function` is a `Box<F>` for an `F: Send`, owned by the `Start` alone.
unsafe impl Send for Start {}

/// Runs the `F` boxed at `function`.
///
/// # Safety
///
/// `function` comes from `Box::<F>::into_raw` and is not used again.
unsafe fn run_boxed<F: FnOnce()>(function: *mut ()) {
    // SAFETY: per the contract, a `Box<F>` nobody else owns; moving `F` out frees the box
    // here, before `F` runs.
    let f: F = *unsafe { Box::from_raw(function.cast::<F>()) };
    f();
}

// SAFETY: `rsp` is written only by the CPU suspending the thread, while it holds the thread's
// `running` flag, and read only by the CPU that claimed the flag next; the flag's
// acquire/release ordering orders the two.
unsafe impl Sync for Thread {}
// SAFETY: as above; the stack is owned memory that may be freed on any CPU.
unsafe impl Send for Thread {}

/// Why [`switch_to`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchError {
    /// The thread runs on a CPU (perhaps this one).
    Running,
    /// Its function has returned.
    Finished,
    /// This CPU has not started threading (hal starts it on each CPU at bring-up).
    NotReady,
}

/// The thread each CPU runs, and the one it just suspended (dropped once the switch is over).
struct CpuThreads {
    current: Option<Arc<Thread>>,
    previous: Option<Arc<Thread>>,
}

crate::cpu_local! {
    static CPUS: IrqMutex<CpuThreads> = IrqMutex::new(CpuThreads {
        current: None,
        previous: None,
    });
}

impl Thread {
    /// A new thread that will run `f` on its own stack when first switched to. `f` ends the
    /// thread with [`exit_to`] (returning from it is a kernel bug, and panics).
    pub fn spawn<F: FnOnce() + Send + 'static>(f: F) -> Result<Arc<Self>, crate::mm::MapError> {
        let stack = crate::mm::alloc_kernel_stack(STACK_PAGES)?;
        // The first switch "returns" into `thread_start` through this frame: six
        // callee-saved registers (zero) and the return address.
        let top = stack.top();
        let frame_rsp = top - 8 * 8;
        let thread = Arc::new(Self {
            rsp: UnsafeCell::new(frame_rsp),
            _stack: Some(stack),
            running: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            start: IrqMutex::new(Some(Start {
                run: run_boxed::<F>,
                discard: discard_boxed::<F>,
                function: Box::into_raw(Box::new(f)).cast::<()>(),
            })),
        });
        let words: [u64; 8] = [0, 0, 0, 0, 0, 0, thread_start as *const () as u64, 0];
        // SAFETY: the stack is mapped and writable, owned by the thread, which nothing runs
        // yet; the eight words lie just below its top.
        unsafe { core::ptr::copy_nonoverlapping(words.as_ptr(), frame_rsp as *mut u64, 8) };
        Ok(thread)
    }

    /// Whether its function has returned.
    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }
}

/// Makes the stack this CPU runs on its first thread (hal calls this at bring-up).
pub(crate) fn init_this_cpu() {
    let thread = Arc::new(Thread {
        _stack: None,
        rsp: UnsafeCell::new(0),
        running: AtomicBool::new(true),
        finished: AtomicBool::new(false),
        start: IrqMutex::new(None),
    });
    // Bring-up runs with interrupts off, before the CPU has any other thread.
    CPUS.here().lock().current = Some(thread);
}

/// The thread running on this CPU.
pub fn current() -> Option<Arc<Thread>> {
    let pinned = crate::percpu::PreemptGuard::new();
    CPUS.get(&pinned).lock().current.clone()
}

/// Suspends the running thread and runs `next` on this CPU; returns when something switches
/// back to the suspended thread (perhaps on another CPU).
pub fn switch_to(next: &Arc<Thread>) -> Result<(), SwitchError> {
    refuse_if_pinned();
    if next.is_finished() {
        return Err(SwitchError::Finished);
    }
    let were_enabled = crate::cpu::interrupts_enabled();
    crate::cpu::disable_interrupts();
    let result = switch_locked(Arc::clone(next)).map_err(|(error, _)| error);
    if were_enabled {
        crate::cpu::enable_interrupts();
    }
    result
}

/// Panics if the running task holds a preemption guard ([`crate::percpu::PreemptGuard`]): it
/// could resume on another CPU with the guard still counted on this one, and what it took
/// from this CPU's [`CpuLocal`](crate::percpu::CpuLocal)s would be another CPU's. Blocking
/// under a guard is a kernel bug (Linux's "scheduling while atomic").
fn refuse_if_pinned() {
    let count = crate::percpu::preempt_count();
    assert!(
        count == 0,
        "thread switch with {count} preemption guard(s) held on CPU {}",
        crate::percpu::current_index()
    );
}

/// Switches to `next`, whose reference becomes this CPU's `current`; on failure the
/// reference comes back with the reason.
fn switch_locked(next: Arc<Thread>) -> Result<(), (SwitchError, Arc<Thread>)> {
    let (prev_rsp, next_rsp) = {
        // Interrupts are off (the caller disabled them): nothing moves the task meanwhile.
        let mut cpu = CPUS.here().lock();
        let Some(current) = cpu.current.clone() else {
            return Err((SwitchError::NotReady, next));
        };
        if next
            .running
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err((SwitchError::Running, next));
        }
        let prev_rsp = current.rsp.get();
        // SAFETY: `next` is suspended (we just claimed its flag), so its saved `rsp` is
        // complete and nobody writes it.
        let next_rsp = unsafe { *next.rsp.get() };
        cpu.previous = cpu.current.replace(next);
        (prev_rsp, next_rsp)
    };
    // The suspended thread's user FPU state goes to its context: `next` may run another.
    crate::usermode::save_live_fpu();
    // SAFETY: `prev_rsp` is the running thread's own slot (its reference is held in
    // `previous` until the switch completes); `next_rsp` is a stack frame `hal_switch` or
    // `spawn` left on `next`'s stack, which `next` owns and no CPU is using.
    unsafe { hal_switch(prev_rsp, next_rsp) };
    finish_switch();
    Ok(())
}

/// The second half of every switch, on the thread that now runs: release the suspended
/// thread's flag (its registers are saved) and drop this CPU's reference to it.
fn finish_switch() {
    let previous = CPUS.here().lock().previous.take();
    if let Some(previous) = previous {
        previous.running.store(false, Ordering::Release);
        drop(previous);
    }
}

/// Ends the running thread and runs `next` on this CPU, waiting while `next` is still being
/// suspended elsewhere. The thread can never run again; its stack is freed once the last
/// reference to it goes (not before the switch is over). `next` is taken by value: nothing
/// may stay on a stack that never resumes. Returns only if `next` cannot run.
pub fn exit_to(next: Arc<Thread>) -> SwitchError {
    refuse_if_pinned();
    if next.is_finished() {
        return SwitchError::Finished;
    }
    let Some(current) = current() else {
        return SwitchError::NotReady;
    };
    if Arc::ptr_eq(&current, &next) {
        return SwitchError::Running;
    }
    crate::cpu::disable_interrupts();
    current.finished.store(true, Ordering::Release);
    drop(current);
    let mut next = next;
    loop {
        match switch_locked(next) {
            Ok(()) => unreachable!("a finished thread was resumed"),
            Err((SwitchError::Running, back)) => {
                next = back;
                // Interrupts are off: answer a TLB shootdown the CPU suspending `next` may
                // be waiting for.
                crate::apic::serve_shootdown();
                core::hint::spin_loop();
            }
            Err((error, _)) => return error,
        }
    }
}

/// Where a new thread starts (the first `hal_switch` to it returns here).
extern "C" fn thread_start() -> ! {
    finish_switch();
    crate::cpu::enable_interrupts();
    // Hold no reference to the thread while its function runs: it may end with `exit_to`,
    // and a reference kept on this stack would keep the stack alive for good.
    let start = current()
        .expect("a thread is switched to only after init_this_cpu")
        .start
        .lock()
        .take();
    if let Some(start) = start {
        let start = core::mem::ManuallyDrop::new(start);
        // SAFETY: `spawn` made the pair; it is taken out of the thread once, here, and not
        // dropped after (the function owns the box now).
        unsafe { (start.run)(start.function) };
    }
    panic!("a kernel thread's function returned; end a thread with hal::thread::exit_to");
}

/// Saves the callee-saved registers and the stack pointer into `*prev`, loads `next` and
/// restores the registers saved there, and returns on the other stack.
#[unsafe(naked)]
unsafe extern "C" fn hal_switch(prev: *mut u64, next: u64) {
    naked_asm!(
        "push rbp",
        "push rbx",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "mov [rdi], rsp",
        "mov rsp, rsi",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbx",
        "pop rbp",
        "ret",
    )
}
