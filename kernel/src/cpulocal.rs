//! Tests of hal's CPU-local variables and preemption guard (`hal::percpu`), which the
//! scheduler, the clock and the interrupt counters are built on: each CPU reaches its own
//! instance, other CPUs' instances are reachable by index, and the scheduler does not take
//! the CPU away from a task on a timer tick while it holds a guard.

/// The tests (feature `tests`).
#[cfg(feature = "tests")]
pub mod tests {
    use alloc::{format, string::String, sync::Arc};
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use hal::percpu::{IrqGuard, MAX_CPUS, PreemptGuard};
    use spin::Mutex;

    use crate::{
        check,
        ktest::{TestResult, ktest},
        sched::{self, Preempted, Task},
    };

    hal::cpu_local! {
        /// Written by each CPU with a value only it computes.
        static MINE: AtomicU64 = AtomicU64::new(0);
        /// What each CPU found when it looked (1: as expected; 2..: what went wrong).
        static VERDICT: AtomicU64 = AtomicU64::new(0);
    }

    /// The value CPU `cpu` stores in its instance of [`MINE`].
    fn signature(cpu: usize) -> u64 {
        0x5eed_0000 + cpu as u64 * 7
    }

    /// On CPU `cpu`: stores its signature in its own instance, and checks that the guard,
    /// `current_index` and the work's index agree and that the count went up and down.
    fn store_own(cpu: usize) {
        let before = hal::percpu::preempt_count();
        let verdict = {
            let pinned = PreemptGuard::new();
            MINE.get(&pinned).store(signature(cpu), Ordering::Release);
            if pinned.cpu() != cpu || hal::percpu::current_index() != cpu {
                2
            } else if hal::percpu::preempt_count() != before + 1 {
                3
            } else {
                1
            }
        };
        let verdict = if hal::percpu::preempt_count() == before {
            verdict
        } else {
            4
        };
        if let Some(slot) = VERDICT.for_cpu(cpu) {
            slot.store(verdict, Ordering::Release);
        }
    }

    /// Every online CPU writes its own instance through `get` (under a guard); this CPU then
    /// reads each of them through `for_cpu` and finds each CPU's own value, and the instances
    /// of CPUs that are not online untouched.
    #[ktest("percpu-own-instance")]
    pub fn own_instance() -> TestResult {
        for (_, slot) in MINE.iter().chain(VERDICT.iter()) {
            slot.store(0, Ordering::Release);
        }
        let online = hal::percpu::online_count();
        let ran = crate::smp::run_on_all(store_own, 10_000_000_000);
        check!(ran == online, "{ran} of {online} CPUs ran the work");
        for cpu in 0..MAX_CPUS {
            let value = MINE.for_cpu(cpu).map(|m| m.load(Ordering::Acquire));
            let verdict = VERDICT.for_cpu(cpu).map(|v| v.load(Ordering::Acquire));
            if hal::percpu::is_online(cpu) {
                check!(verdict == Some(1), "CPU {cpu}: verdict {verdict:?}");
                check!(
                    value == Some(signature(cpu)),
                    "CPU {cpu}'s instance holds {value:x?}, not {:#x}",
                    signature(cpu)
                );
            } else {
                check!(
                    value == Some(0),
                    "offline CPU {cpu}'s instance holds {value:x?}"
                );
            }
        }
        check!(
            MINE.for_cpu(MAX_CPUS).is_none(),
            "an instance past MAX_CPUS"
        );
        Ok(())
    }

    /// Guards nest and count; an `IrqGuard` disables interrupts and restores them as they
    /// were; the reference `get` gives is this CPU's instance.
    #[ktest("percpu-guards-nest")]
    pub fn guards_nest() -> TestResult {
        let base = hal::percpu::preempt_count();
        let outer = PreemptGuard::new();
        check!(hal::percpu::preempt_count() == base + 1, "one guard");
        {
            let inner = PreemptGuard::new();
            check!(hal::percpu::preempt_count() == base + 2, "two guards");
            check!(inner.cpu() == outer.cpu(), "the guards disagree on the CPU");
            check!(
                core::ptr::eq(MINE.get(&inner), MINE.get(&outer)),
                "two guards on one CPU reach different instances"
            );
        }
        check!(
            hal::percpu::preempt_count() == base + 1,
            "the nested guard's drop"
        );
        let this = hal::percpu::current_index();
        check!(
            MINE.for_cpu(this)
                .is_some_and(|m| core::ptr::eq(m, MINE.get(&outer))),
            "`get` is not CPU {this}'s instance"
        );
        drop(outer);
        check!(
            hal::percpu::preempt_count() == base,
            "the outer guard's drop"
        );
        crate::irq::with_interrupts(|| {
            let irqs_off = IrqGuard::new();
            check!(
                !hal::cpu::interrupts_enabled(),
                "interrupts on under an IrqGuard"
            );
            check!(
                hal::percpu::preempt_count() == base + 1,
                "an IrqGuard does not pin the task"
            );
            drop(irqs_off);
            check!(
                hal::cpu::interrupts_enabled(),
                "the IrqGuard did not turn interrupts back on"
            );
            Ok(())
        })?;
        check!(
            !hal::cpu::interrupts_enabled(),
            "interrupts on after the test"
        );
        Ok(())
    }

    /// How the preemption task went, for the test to report.
    static OUTCOME: Mutex<Option<Result<String, String>>> = Mutex::new(None);
    static FINISHED: AtomicBool = AtomicBool::new(false);

    /// Timer ticks to hold the guard across.
    const HELD_TICKS: u64 = 3;
    const TICK_WAIT_NS: u64 = 2_000_000_000;

    /// Waits (interrupts on) for the next tick on `cpu`; false if none came.
    fn next_tick(cpu: usize) -> bool {
        let before = crate::time::ticks(cpu);
        crate::irq::with_interrupts(|| {
            crate::irq::wait_until(TICK_WAIT_NS, || crate::time::ticks(cpu) > before)
        })
    }

    /// The task: under a guard, every tick that ends its slice is deferred (it stays on its
    /// CPU and the CPU counts the deferral); once the guard is gone, the next one yields.
    fn held_across_ticks(me: &Arc<Task>) -> Result<String, String> {
        let pinned = PreemptGuard::new();
        let cpu = pinned.cpu();
        let deferred_before = sched::deferred_preemptions(cpu);
        for tick in 0..HELD_TICKS {
            if !next_tick(cpu) {
                return Err(format!("CPU {cpu}: no tick {tick} under the guard"));
            }
            let decision = sched::preempt(me);
            if decision != Preempted::Deferred {
                return Err(format!(
                    "tick {tick} under the guard: {decision:?}, not Deferred"
                ));
            }
            if hal::percpu::current_index() != cpu {
                return Err(format!(
                    "moved from CPU {cpu} to {} under the guard",
                    hal::percpu::current_index()
                ));
            }
        }
        let deferred = sched::deferred_preemptions(cpu) - deferred_before;
        if deferred != HELD_TICKS {
            return Err(format!(
                "CPU {cpu} recorded {deferred} deferred switches, not {HELD_TICKS}"
            ));
        }
        drop(pinned);
        // The slice is still used up: the first look without the guard yields.
        let decision = sched::preempt(me);
        if decision != Preempted::Yielded {
            return Err(format!("after the guard: {decision:?}, not Yielded"));
        }
        Ok(format!(
            "CPU {cpu}: {deferred} ticks deferred, then yielded"
        ))
    }

    /// A task holding a preemption guard across several timer ticks keeps its CPU: each
    /// tick's switch is deferred (and counted); dropping the guard lets the next one happen.
    #[ktest("sched-preempt-deferred-under-guard")]
    pub fn preempt_deferred() -> TestResult {
        *OUTCOME.lock() = None;
        FINISHED.store(false, Ordering::Release);
        sched::spawn(|me| {
            let outcome = held_across_ticks(&me);
            *OUTCOME.lock() = Some(outcome);
            FINISHED.store(true, Ordering::Release);
            sched::exit(me)
        })
        .map_err(|e| format!("spawn: {e}"))?;
        let deadline = crate::time::now_ns() + 4 * TICK_WAIT_NS * HELD_TICKS;
        sched::idle_until(|| FINISHED.load(Ordering::Acquire) || crate::time::now_ns() > deadline);
        hal::cpu::disable_interrupts();
        check!(
            FINISHED.load(Ordering::Acquire),
            "the task did not finish in time"
        );
        let outcome = OUTCOME.lock().take().ok_or("the task left no outcome")?;
        let summary = outcome?;
        log::info!("percpu: {summary}");
        check!(
            hal::percpu::preempt_count() == 0,
            "a preemption guard is still counted on this CPU"
        );
        Ok(())
    }
}
