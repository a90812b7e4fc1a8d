//! Real-time interval timers — `setitimer(ITIMER_REAL)`, `getitimer` and `alarm`: each
//! process has one, and when it expires the process gets `SIGALRM` (and the timer re-arms
//! with its interval). One kernel task sleeps until the earliest deadline and sends the
//! signals, so nothing is signalled from the timer interrupt (where a lock an interrupted
//! thread holds could not be taken). The timer is not inherited by `fork` and survives
//! `execve`, as on Linux.

use alloc::{
    collections::BTreeMap,
    sync::{Arc, Weak},
    vec::Vec,
};
use core::sync::atomic::{AtomicU64, Ordering};

use linux_raw_sys::errno as e;
use spin::{Mutex, Once};

use crate::{process::Process, sched::WaitQueue, signal};

/// One armed timer.
struct Timer {
    process: Weak<Process>,
    /// Monotonic ns when it fires.
    deadline: u64,
    /// Re-armed with this after firing (0: once).
    interval: u64,
}

/// Armed timers by process id.
static TIMERS: Mutex<BTreeMap<u32, Timer>> = Mutex::new(BTreeMap::new());
/// Bumped (and the task woken) whenever the set of timers changes.
static GENERATION: AtomicU64 = AtomicU64::new(0);
static CHANGED: WaitQueue = WaitQueue::new();
/// Whether the timer task started (and if it could).
static TASK: Once<bool> = Once::new();

/// Arms (`value` > 0) or disarms (`value` = 0) `process`'s timer; returns what it had (time
/// left, interval), in ns.
pub fn set(process: &Arc<Process>, value: u64, interval: u64) -> Result<(u64, u64), u32> {
    if value > 0 && !*TASK.call_once(start_task) {
        return Err(e::EAGAIN);
    }
    let now = crate::time::now_ns();
    let mut timers = TIMERS.lock();
    let old = timers
        .remove(&process.pid)
        .map_or((0, 0), |t| (t.deadline.saturating_sub(now), t.interval));
    if value > 0 {
        timers.insert(
            process.pid,
            Timer {
                process: Arc::downgrade(process),
                deadline: now.saturating_add(value),
                interval,
            },
        );
    }
    drop(timers);
    GENERATION.fetch_add(1, Ordering::AcqRel);
    CHANGED.wake_all();
    Ok(old)
}

/// `process`'s timer: (time left, interval) in ns, zeros when disarmed.
/// Drops the timer of a process that ended (its entry would otherwise keep the process's
/// memory until the timer task next looks, which a far deadline puts off for good).
pub fn forget(process: &Process) {
    if TIMERS.lock().remove(&process.pid).is_some() {
        GENERATION.fetch_add(1, Ordering::AcqRel);
        CHANGED.wake_all();
    }
}

pub fn get(process: &Process) -> (u64, u64) {
    let now = crate::time::now_ns();
    TIMERS
        .lock()
        .get(&process.pid)
        .map_or((0, 0), |t| (t.deadline.saturating_sub(now), t.interval))
}

/// Starts the timer task (at boot, so its stack is not counted against the first program).
pub fn init() {
    TASK.call_once(start_task);
}

fn start_task() -> bool {
    match crate::sched::spawn(run) {
        Ok(_) => true,
        Err(err) => {
            log::error!("itimer: cannot start the timer task: {err:?}");
            false
        }
    }
}

/// The timer task: fire what is due, sleep until the next deadline or a change.
fn run(me: Arc<crate::sched::Task>) {
    loop {
        let generation = GENERATION.load(Ordering::Acquire);
        let now = crate::time::now_ns();
        let mut due: Vec<Arc<Process>> = Vec::new();
        let next = {
            let mut timers = TIMERS.lock();
            timers.retain(|_, t| {
                let Some(process) = t.process.upgrade() else {
                    return false;
                };
                if process.exit.lock().is_some() {
                    return false;
                }
                if t.deadline > now {
                    return true;
                }
                due.push(process);
                if t.interval == 0 {
                    return false;
                }
                // Missed periods are skipped, not queued up.
                let late = now - t.deadline;
                t.deadline += (late / t.interval + 1) * t.interval;
                true
            });
            timers.values().map(|t| t.deadline).min()
        };
        for process in &due {
            signal::send_process(process, signal::SIGALRM);
        }
        drop(due);
        crate::sched::wait(&me, &[&CHANGED], next, || {
            GENERATION.load(Ordering::Acquire) != generation
        });
    }
}
