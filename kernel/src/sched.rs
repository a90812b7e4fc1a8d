//! The scheduler: which task each CPU runs.
//!
//! A [`Task`] is a hal kernel thread with a scheduling state. Runnable tasks wait in run
//! queues, one per CPU (first in, first out); each CPU's first thread is its idle thread,
//! which takes tasks from the queues and halts when they are all empty. A task leaves the
//! CPU in three ways:
//!
//! - it blocks ([`wait`]): it sleeps until a [`WaitQueue`] it waits on is woken, a deadline
//!   passes, or it is interrupted (a signal) — no busy-waiting;
//! - it is preempted: user code interrupted by the timer tick calls [`preempt`], which gives
//!   the CPU to the next runnable task once the time slice (one tick) is used — unless the
//!   task holds a [`hal::percpu::PreemptGuard`], when the switch waits for a later tick
//!   (kernel code is not preempted at all; it gives the CPU up only when it blocks, yields
//!   or ends, which it must not do under a guard: hal's thread switch refuses);
//! - it ends ([`exit`]).
//!
//! Waking a task puts it at the back of the queue of the CPU it last ran on (its caches are
//! warm there) and, if that CPU is idle, sends it an IPI so it looks at once rather than at
//! its next tick; if that CPU is busy and another is idle, the idle one is sent the IPI
//! instead. Load balancing is by stealing: a CPU whose own queue is empty takes the oldest
//! task of the longest other queue, whenever it looks for work (idle, blocking, yielding or
//! ending a task), so no CPU idles while a task waits anywhere.

use alloc::{collections::VecDeque, sync::Arc, vec::Vec};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};

use hal::{
    percpu::MAX_CPUS,
    sync::IrqMutex,
    thread::{self, SwitchError, Thread},
    user::AddressSpace,
};

/// Runs on a CPU, or is about to (it is current somewhere, or switching).
const RUNNING: u8 = 0;
/// Waits to be woken.
const SLEEPING: u8 = 1;
/// Sits in the run queue.
const QUEUED: u8 = 2;

/// A schedulable kernel thread.
pub struct Task {
    thread: Arc<Thread>,
    state: AtomicU8,
    /// Set (and the task woken) when something must interrupt its waits: a signal.
    interrupted: AtomicBool,
    /// The CPU it last ran on.
    cpu: AtomicUsize,
    /// The tick count when it last got a CPU (its time slice starts there).
    slice_start: AtomicU64,
    /// The user address space it runs in, loaded again whenever it gets a CPU back (it may
    /// resume on a CPU that ran another process meanwhile).
    space: IrqMutex<Option<Arc<AddressSpace>>>,
}

hal::cpu_local! {
    /// Each CPU's run queue (other CPUs steal from it: reached by index).
    static QUEUES: IrqMutex<VecDeque<Arc<Task>>> = IrqMutex::new(VecDeque::new());
    /// Each CPU's idle thread (its first thread).
    static IDLE: IrqMutex<Option<Arc<Thread>>> = IrqMutex::new(None);
    /// Time-slice ends on each CPU whose switch was put off: the task held a preemption guard.
    static DEFERRED: AtomicU64 = AtomicU64::new(0);
    /// Nanoseconds each CPU has spent halted in its idle loop (`/proc/stat`, `uptime`).
    static IDLE_NS: AtomicU64 = AtomicU64::new(0);
}

/// Nanoseconds CPU `cpu` has spent idle since boot.
pub fn idle_ns(cpu: usize) -> u64 {
    IDLE_NS
        .for_cpu(cpu)
        .map_or(0, |n| n.load(Ordering::Relaxed))
}
/// Tasks queued, all queues together (a cheap "is there work anywhere" look).
static QUEUED_TASKS: AtomicUsize = AtomicUsize::new(0);
/// CPUs halted in their idle loop, one bit each.
static IDLE_CPUS: AtomicU64 = AtomicU64::new(0);
/// Tasks sleeping with a deadline (monotonic ns).
static TIMERS: IrqMutex<Vec<(u64, Arc<Task>)>> = IrqMutex::new(Vec::new());

impl Task {
    /// Runs this (the current) task in `space` from now on, or in none.
    pub fn set_space(&self, space: Option<&Arc<AddressSpace>>) {
        match space {
            Some(space) => AddressSpace::activate(space),
            None => hal::user::deactivate(),
        }
        let previous = core::mem::replace(&mut *self.space.lock(), space.cloned());
        drop(previous);
    }

    /// Runs this (the current) task in `space`: [`set_space`](Self::set_space), which costs
    /// little when it already does (the common case, before each return to user mode).
    pub fn use_space(&self, space: &Arc<AddressSpace>) {
        let same = self
            .space
            .lock()
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(s, space));
        if same {
            AddressSpace::activate(space);
        } else {
            self.set_space(Some(space));
        }
    }

    /// Loads the task's address space on this CPU (after it got the CPU back).
    fn resume_space(&self) {
        let space = self.space.lock().clone();
        if let Some(space) = space {
            AddressSpace::activate(&space);
        }
    }

    /// Whether it is on a CPU now (or switching to one): `R` in `ps`.
    pub fn is_running(&self) -> bool {
        self.state.load(Ordering::Acquire) == RUNNING
    }

    /// Whether a wait of this task is to be interrupted.
    pub fn is_interrupted(&self) -> bool {
        self.interrupted.load(Ordering::Acquire)
    }

    /// Interrupts the task's waits (it returns [`Wait::Interrupted`]) until
    /// [`clear_interrupt`](Self::clear_interrupt).
    pub fn interrupt(self: &Arc<Self>) {
        self.interrupted.store(true, Ordering::Release);
        wake(self);
    }

    /// Lets the task wait again.
    pub fn clear_interrupt(&self) {
        self.interrupted.store(false, Ordering::Release);
    }
}

/// Creates a task running `f` and makes it runnable. `f` ends with [`exit`].
pub fn spawn(f: impl FnOnce(Arc<Task>) + Send + 'static) -> Result<Arc<Task>, hal::mm::MapError> {
    let slot: Arc<IrqMutex<Option<Arc<Task>>>> = Arc::new(IrqMutex::new(None));
    let inner = Arc::clone(&slot);
    let thread = Thread::spawn(move || {
        let me = inner
            .lock()
            .take()
            .expect("the task is stored before it is queued");
        drop(inner);
        f(me);
    })?;
    let task = Arc::new(Task {
        thread,
        state: AtomicU8::new(QUEUED),
        interrupted: AtomicBool::new(false),
        cpu: AtomicUsize::new(hal::percpu::current_index()),
        slice_start: AtomicU64::new(0),
        space: IrqMutex::new(None),
    });
    *slot.lock() = Some(Arc::clone(&task));
    enqueue(Arc::clone(&task));
    Ok(task)
}

/// Queues `task` on the CPU it last ran on and makes sure an idle CPU looks at it.
fn enqueue(task: Arc<Task>) {
    let cpu = task.cpu.load(Ordering::Relaxed).min(MAX_CPUS - 1);
    push(cpu, task, false);
    core::sync::atomic::fence(Ordering::SeqCst);
    kick_idle_cpu(cpu);
}

/// CPU `cpu`'s run queue.
fn queue(cpu: usize) -> &'static IrqMutex<VecDeque<Arc<Task>>> {
    QUEUES.for_cpu(cpu).expect("CPU indices are below MAX_CPUS")
}

/// CPU `cpu`'s idle thread slot.
fn idle_slot(cpu: usize) -> &'static IrqMutex<Option<Arc<Thread>>> {
    IDLE.for_cpu(cpu).expect("CPU indices are below MAX_CPUS")
}

fn push(cpu: usize, task: Arc<Task>, front: bool) {
    let mut queue = queue(cpu).lock();
    if front {
        queue.push_front(task);
    } else {
        queue.push_back(task);
    }
    QUEUED_TASKS.fetch_add(1, Ordering::SeqCst);
}

/// The next task for this CPU: the front of its own queue, else the oldest task of the
/// longest other queue (stolen: it runs here from now on).
fn pop() -> Option<Arc<Task>> {
    if QUEUED_TASKS.load(Ordering::SeqCst) == 0 {
        return None;
    }
    let me = hal::percpu::current_index();
    if let Some(task) = queue(me).lock().pop_front() {
        QUEUED_TASKS.fetch_sub(1, Ordering::SeqCst);
        return Some(task);
    }
    let online = hal::percpu::online_count().clamp(1, MAX_CPUS);
    // Another CPU may empty the chosen queue first: look again while work is queued.
    while QUEUED_TASKS.load(Ordering::SeqCst) > 0 {
        let (busiest, len) = (0..online)
            .filter(|&cpu| cpu != me)
            .map(|cpu| (cpu, queue(cpu).lock().len()))
            .max_by_key(|&(_, len)| len)?;
        if len == 0 {
            // Only this CPU's queue, which was empty a moment ago.
            return queue(me).lock().pop_front().inspect(|_| {
                QUEUED_TASKS.fetch_sub(1, Ordering::SeqCst);
            });
        }
        if let Some(task) = queue(busiest).lock().pop_front() {
            QUEUED_TASKS.fetch_sub(1, Ordering::SeqCst);
            return Some(task);
        }
    }
    None
}

/// Sends an IPI so that new work on `cpu`'s queue is picked up now: to `cpu` if it is idle,
/// else to another idle CPU (which steals it); never to this CPU, which is running.
fn kick_idle_cpu(cpu: usize) {
    let me = hal::percpu::current_index();
    let idle = IDLE_CPUS.load(Ordering::SeqCst) & !(1u64 << me);
    if idle == 0 {
        return;
    }
    let cpu = if idle & (1 << cpu) != 0 {
        cpu
    } else {
        idle.trailing_zeros() as usize
    };
    if let Some(apic) = hal::percpu::lapic_id(cpu) {
        hal::apic::send_fixed(apic, hal::trap::vectors::PING);
    }
}

/// Makes `task` runnable if it sleeps (waking a running or queued task does nothing: it will
/// see the condition it waits for when it checks again).
pub fn wake(task: &Arc<Task>) {
    if task
        .state
        .compare_exchange(SLEEPING, QUEUED, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        enqueue(Arc::clone(task));
    }
}

/// Runs `next` on this CPU, suspending the caller until something switches back to it.
fn run_task(next: Arc<Task>) {
    next.state.store(RUNNING, Ordering::Release);
    next.cpu
        .store(hal::percpu::current_index(), Ordering::Relaxed);
    next.slice_start.store(
        crate::time::ticks(hal::percpu::current_index()),
        Ordering::Relaxed,
    );
    loop {
        match thread::switch_to(&next.thread) {
            // Still being suspended on another CPU (woken while it went to sleep): its
            // registers are saved within moments.
            Err(SwitchError::Running) => core::hint::spin_loop(),
            Ok(()) | Err(SwitchError::Finished | SwitchError::NotReady) => return,
        }
    }
}

/// Gives this CPU to the next runnable task, or to its idle thread; returns when `me` runs
/// again. `me`'s state says whether it comes back by itself (queued) or when woken.
fn switch_away(me: &Arc<Task>) {
    switch_away_inner(me);
    me.resume_space();
}

fn switch_away_inner(me: &Arc<Task>) {
    switch_to_next(me, pop());
}

/// Runs `next` (or the idle thread) instead of `me`.
fn switch_to_next(me: &Arc<Task>, next: Option<Arc<Task>>) {
    match next {
        // Woken (and queued) before it got away: it just goes on.
        Some(next) if Arc::ptr_eq(&next, me) => {
            me.state.store(RUNNING, Ordering::Release);
            return;
        }
        Some(next) => match try_run_task(next) {
            Ok(()) => return,
            // Still being suspended on another CPU: waiting for it here could wait for a
            // CPU that waits for `me` (each took the other from the queue). It goes back to
            // the front, and this CPU's idle thread, which nobody waits for, takes it.
            Err(next) => {
                next.state.store(QUEUED, Ordering::Release);
                push(hal::percpu::current_index(), next, true);
            }
        },
        None => {}
    }
    let idle = idle_slot(hal::percpu::current_index()).lock().clone();
    let Some(idle) = idle else {
        // No idle thread on this CPU: cannot happen once the CPU entered its loop.
        me.state.store(RUNNING, Ordering::Release);
        return;
    };
    let _ = thread::switch_to(&idle);
}

/// Runs `next` on this CPU like [`run_task`], or gives it back if its thread is still being
/// suspended elsewhere.
fn try_run_task(next: Arc<Task>) -> Result<(), Arc<Task>> {
    next.state.store(RUNNING, Ordering::Release);
    next.cpu
        .store(hal::percpu::current_index(), Ordering::Relaxed);
    next.slice_start.store(
        crate::time::ticks(hal::percpu::current_index()),
        Ordering::Relaxed,
    );
    match thread::switch_to(&next.thread) {
        Err(SwitchError::Running) => Err(next),
        Ok(()) | Err(SwitchError::Finished | SwitchError::NotReady) => Ok(()),
    }
}

/// Gives up the CPU if another task is waiting for one; `me` goes to the back of the queue.
pub fn yield_now(me: &Arc<Task>) {
    let Some(next) = pop() else {
        return;
    };
    if Arc::ptr_eq(&next, me) {
        // An entry left from a wake-up while it ran: used up, and it goes on.
        me.state.store(RUNNING, Ordering::Release);
        return;
    }
    me.state.store(QUEUED, Ordering::Release);
    push(hal::percpu::current_index(), Arc::clone(me), false);
    switch_to_next(me, Some(next));
    me.resume_space();
}

/// What [`preempt`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preempted {
    /// The time slice is not used up: the task goes on.
    NotDue,
    /// The slice is used up, but the task holds a preemption guard: it goes on, and the
    /// switch waits for a tick after the guard is dropped (the slice stays used up).
    Deferred,
    /// The slice was used up: the CPU was offered to the next runnable task (the task is
    /// back, perhaps on another CPU, with a new slice).
    Yielded,
}

/// Called when user code of `me` was interrupted by the timer tick: yields once its time
/// slice (a tick) is up, unless the task holds a [`hal::percpu::PreemptGuard`].
pub fn preempt(me: &Arc<Task>) -> Preempted {
    let cpu = hal::percpu::current_index();
    if crate::time::ticks(cpu) == me.slice_start.load(Ordering::Relaxed) {
        return Preempted::NotDue;
    }
    if hal::percpu::preempt_count() != 0 {
        if let Some(deferred) = DEFERRED.for_cpu(cpu) {
            deferred.fetch_add(1, Ordering::Relaxed);
        }
        return Preempted::Deferred;
    }
    yield_now(me);
    me.slice_start.store(
        crate::time::ticks(hal::percpu::current_index()),
        Ordering::Relaxed,
    );
    Preempted::Yielded
}

/// How many time-slice ends CPU `cpu` has put off because the task held a preemption guard.
pub fn deferred_preemptions(cpu: usize) -> u64 {
    DEFERRED
        .for_cpu(cpu)
        .map_or(0, |d| d.load(Ordering::Relaxed))
}

/// Ends `me`: its thread never runs again (its stack is freed once nothing refers to it).
pub fn exit(me: Arc<Task>) -> ! {
    // The CPU's own reference to the running thread keeps the stack alive until the switch.
    drop(me);
    hal::cpu::disable_interrupts();
    let next = pop();
    let next_thread = match next {
        Some(task) => {
            task.state.store(RUNNING, Ordering::Release);
            task.cpu
                .store(hal::percpu::current_index(), Ordering::Relaxed);
            // The task's own stack holds it; only its thread is needed to switch.
            Arc::clone(&task.thread)
        }
        None => idle_slot(hal::percpu::current_index())
            .lock()
            .clone()
            .expect("a task runs only on a CPU whose idle loop started"),
    };
    let error = thread::exit_to(next_thread);
    panic!("sched: ending a task: {error:?}")
}

/// How a [`wait`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// The condition holds.
    Ready,
    /// The deadline passed first.
    TimedOut,
    /// The task was interrupted (a signal) first.
    Interrupted,
}

/// Tasks waiting for something.
pub struct WaitQueue {
    waiters: IrqMutex<Vec<Arc<Task>>>,
    /// How many wake-ups the queue has had: an edge-triggered `epoll` reports a ready file
    /// again only after a new one (an event happened), as Linux's wake-up callback does.
    wakes: core::sync::atomic::AtomicU64,
}

impl Default for WaitQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl WaitQueue {
    /// An empty queue.
    pub const fn new() -> Self {
        Self {
            waiters: IrqMutex::new(Vec::new()),
            wakes: core::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many wake-ups the queue has had.
    pub fn wakes(&self) -> u64 {
        self.wakes.load(Ordering::Acquire)
    }

    /// Wakes every waiting task (each checks its condition again).
    pub fn wake_all(&self) {
        self.wakes.fetch_add(1, Ordering::AcqRel);
        let waiters = core::mem::take(&mut *self.waiters.lock());
        for task in &waiters {
            wake(task);
        }
    }

    fn remove(&self, me: &Arc<Task>) {
        self.waiters.lock().retain(|t| !Arc::ptr_eq(t, me));
    }
}

/// Blocks `me` until `ready()` holds (checked after each wake-up of any of `queues`), the
/// monotonic clock reaches `deadline`, or the task is interrupted. Whoever makes `ready`
/// true must then wake a queue `me` waits on.
pub fn wait(
    me: &Arc<Task>,
    queues: &[&WaitQueue],
    deadline: Option<u64>,
    mut ready: impl FnMut() -> bool,
) -> Wait {
    let result = loop {
        // SLEEPING before joining the queues: a waker that takes a queue's list with `me`
        // in it must find `me` asleep and queue it, since `me` is then off that list. (The
        // other order lost wake-ups: the waker found `me` still running, `me` found its
        // condition still false and slept, on a list nobody would wake again.)
        me.state.store(SLEEPING, Ordering::SeqCst);
        for queue in queues {
            queue.waiters.lock().push(Arc::clone(me));
        }
        if ready() {
            break Wait::Ready;
        }
        if me.is_interrupted() {
            break Wait::Interrupted;
        }
        if let Some(deadline) = deadline {
            if crate::time::now_ns() >= deadline {
                break Wait::TimedOut;
            }
            TIMERS.lock().push((deadline, Arc::clone(me)));
        }
        switch_away(me);
        for queue in queues {
            queue.remove(me);
        }
    };
    // Leaving without sleeping: a waker that saw SLEEPING has queued `me` (QUEUED), or a
    // CPU has already taken that entry and is switching to `me` (RUNNING). The entry must be
    // used up by a switch, or the task would sit in the queue while it runs (a CPU taking it
    // would then store RUNNING over a later SLEEPING and lose the wake-up that follows); and
    // a CPU committed to resuming `me` spins until `me` is off its CPU (with interrupts off
    // if it is ending a task, so it would not even answer a TLB shootdown). Giving up the
    // CPU once settles both.
    if me
        .state
        .compare_exchange(SLEEPING, RUNNING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        switch_away(me);
    }
    me.state.store(RUNNING, Ordering::Release);
    for queue in queues {
        queue.remove(me);
    }
    if deadline.is_some() {
        TIMERS.lock().retain(|(_, t)| !Arc::ptr_eq(t, me));
    }
    result
}

/// Sleeps until the monotonic clock reaches `deadline` (or an interrupt).
pub fn sleep_until(me: &Arc<Task>, deadline: u64) -> Wait {
    match wait(me, &[], Some(deadline), || false) {
        Wait::TimedOut => Wait::Ready,
        other => other,
    }
}

/// The timer tick (every CPU): wakes the tasks whose deadline has passed.
pub fn on_tick() {
    let now = crate::time::now_ns();
    let due: Vec<Arc<Task>> = {
        let Some(mut timers) = TIMERS.try_lock() else {
            return;
        };
        if timers.is_empty() {
            return;
        }
        let mut due = Vec::new();
        timers.retain(|(deadline, task)| {
            if *deadline <= now {
                due.push(Arc::clone(task));
                false
            } else {
                true
            }
        });
        due
    };
    for task in &due {
        wake(task);
    }
}

/// This CPU's idle loop: runs queued tasks, halts while there are none, and returns when
/// `done()` holds (checked after every wake-up).
pub fn idle_until(mut done: impl FnMut() -> bool) {
    let cpu = hal::percpu::current_index();
    if idle_slot(cpu).lock().is_none() {
        *idle_slot(cpu).lock() = thread::current();
    }
    while !done() {
        idle_once(cpu);
    }
}

/// Runs what is queued, or halts until the next interrupt.
pub fn idle_once(cpu: usize) {
    if idle_slot(cpu).lock().is_none() {
        *idle_slot(cpu).lock() = thread::current();
    }
    hal::cpu::disable_interrupts();
    // Say "idle" before looking at the queue: a task queued after the look then sees the bit
    // and sends the IPI that ends the halt (each side stores, then loads: SeqCst).
    IDLE_CPUS.fetch_or(1 << cpu, Ordering::SeqCst);
    let next = pop();
    match next {
        Some(task) => {
            IDLE_CPUS.fetch_and(!(1 << cpu), Ordering::SeqCst);
            hal::cpu::enable_interrupts();
            run_task(task);
        }
        None => {
            // An idle CPU holds no address space, so an ended program's memory is freed as
            // soon as its last thread is gone.
            hal::mm::deactivate();
            // Interrupts stay off from the check to the halt (`sti; hlt` is one step), so a
            // wake-up IPI sent in between still ends the halt.
            let halted = crate::time::now_ns();
            hal::cpu::idle();
            IDLE_CPUS.fetch_and(!(1 << cpu), Ordering::AcqRel);
            if let Some(idle) = IDLE_NS.for_cpu(cpu) {
                idle.fetch_add(crate::time::now_ns() - halted, Ordering::Relaxed);
            }
        }
    }
}
