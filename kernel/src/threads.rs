//! Kernel threads: the scheduler will live here; for now, the tests of hal's switch.

/// Tests of kernel threads and the context switch.
#[cfg(feature = "tests")]
pub mod tests {
    use alloc::sync::Arc;
    use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

    use hal::thread::{self, SwitchError, Thread};
    use spin::Mutex;

    use crate::{
        check,
        ktest::{TestResult, ktest},
    };

    /// Where the ping-pong thread goes back to after each round.
    static BACK: Mutex<Option<Arc<Thread>>> = Mutex::new(None);
    static ROUNDS: AtomicU64 = AtomicU64::new(0);
    static LAST_CPU: AtomicUsize = AtomicUsize::new(usize::MAX);
    static STOP: AtomicBool = AtomicBool::new(false);

    fn ping_pong() {
        loop {
            ROUNDS.fetch_add(1, Ordering::AcqRel);
            LAST_CPU.store(hal::percpu::current_index(), Ordering::Release);
            let back = BACK
                .lock()
                .take()
                .expect("the caller says where to go back to");
            if STOP.load(Ordering::Acquire) {
                let error = thread::exit_to(back);
                panic!("threads: the caller cannot be resumed: {error:?}");
            }
            thread::switch_to(&back).expect("the caller is suspended, not running");
        }
    }

    fn round(t: &Arc<Thread>) -> Result<(), SwitchError> {
        *BACK.lock() = thread::current();
        thread::switch_to(t)
    }

    /// A thread and its creator switch back and forth a thousand times; the running thread,
    /// a finished one, and one running elsewhere are refused; a thread suspended on one CPU
    /// resumes on another; its stack is freed when it ends.
    #[ktest("thread-switch")]
    pub fn switch() -> TestResult {
        let stacks_before = hal::mm::stats().kernel_stacks;
        ROUNDS.store(0, Ordering::Release);
        STOP.store(false, Ordering::Release);
        let t = Thread::spawn(ping_pong).map_err(|e| alloc::format!("spawn: {e}"))?;
        for _ in 0..1000 {
            round(&t).map_err(|e| alloc::format!("switching to the thread: {e:?}"))?;
        }
        check!(
            ROUNDS.load(Ordering::Acquire) == 1000,
            "{} rounds",
            ROUNDS.load(Ordering::Acquire)
        );
        let me = thread::current().ok_or("no current thread")?;
        check!(
            thread::switch_to(&me) == Err(SwitchError::Running),
            "switching to the running thread"
        );
        // Resume it on another CPU, if there is one.
        if hal::percpu::online_count() > 1 {
            static MIGRATED: Mutex<Option<Arc<Thread>>> = Mutex::new(None);
            *MIGRATED.lock() = Some(Arc::clone(&t));
            crate::smp::run_on_all(
                |cpu| {
                    if cpu == 1 {
                        let t = MIGRATED.lock().take().expect("set above");
                        let _ = round(&t);
                    }
                },
                5_000_000_000,
            );
            check!(
                LAST_CPU.load(Ordering::Acquire) == 1,
                "the thread last ran on CPU {}, not 1",
                LAST_CPU.load(Ordering::Acquire)
            );
        }
        STOP.store(true, Ordering::Release);
        round(&t).map_err(|e| alloc::format!("the last switch: {e:?}"))?;
        check!(t.is_finished(), "the thread did not finish");
        check!(
            thread::switch_to(&t) == Err(SwitchError::Finished),
            "switching to a finished thread"
        );
        drop(t);
        let stacks_after = hal::mm::stats().kernel_stacks;
        check!(
            stacks_after == stacks_before,
            "{stacks_before} kernel stacks before, {stacks_after} after the thread ended"
        );
        Ok(())
    }
}
