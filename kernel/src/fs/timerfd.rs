//! `timerfd`: a timer as a file. Reading gives the number of expirations since the last read
//! (blocking until there is one); `poll` and `epoll` see it readable meanwhile. Expirations
//! are counted lazily from the clock whenever the timer is looked at — no kernel timer fires
//! — so a waiter sleeps until the next expiry ([`TimerFd::deadline`]) rather than on a queue
//! alone. Times are kept on the monotonic clock; an absolute `CLOCK_REALTIME` time is
//! converted when it is set.

use alloc::sync::Arc;

use linux_raw_sys::errno as e;
use spin::Mutex;

use crate::sched::{self, Task, Wait, WaitQueue};

#[derive(Default)]
struct State {
    /// The next expiry (monotonic ns), if armed.
    next: Option<u64>,
    /// The period (0: one shot).
    interval: u64,
    /// Expirations not yet read.
    pending: u64,
    /// Expirations ever (an edge for `EPOLLET`).
    total: u64,
}

impl State {
    /// Counts the expirations up to `now`.
    fn settle(&mut self, now: u64) {
        let Some(next) = self.next else { return };
        if now < next {
            return;
        }
        let n = match (now - next).checked_div(self.interval) {
            None => {
                // One shot.
                self.next = None;
                1
            }
            Some(periods) => {
                let n = periods + 1;
                self.next = Some(next.saturating_add(n.saturating_mul(self.interval)));
                n
            }
        };
        self.pending = self.pending.saturating_add(n);
        self.total = self.total.wrapping_add(n);
    }
}

/// A timer file.
pub struct TimerFd {
    realtime: bool,
    state: Mutex<State>,
    /// Woken when the timer is set (a reader's deadline changes).
    set: WaitQueue,
}

/// `(interval, remaining)` in nanoseconds, as `struct itimerspec` carries them.
pub type Setting = (u64, u64);

impl TimerFd {
    /// A disarmed timer on `CLOCK_REALTIME` (`realtime`) or a monotonic clock.
    pub fn new(realtime: bool) -> Arc<Self> {
        Arc::new(Self {
            realtime,
            state: Mutex::new(State::default()),
            set: WaitQueue::new(),
        })
    }

    /// `timerfd_gettime`: the period and the time left to the next expiry (0: disarmed).
    pub fn get(&self) -> Setting {
        let now = crate::time::now_ns();
        let mut s = self.state.lock();
        s.settle(now);
        (
            s.interval,
            s.next.map_or(0, |next| next.saturating_sub(now)),
        )
    }

    /// `timerfd_settime`: arms (or with `value` 0 disarms) the timer, `value` after now or,
    /// with `absolute`, at that time of the timer's clock; returns the old setting.
    pub fn set(&self, interval: u64, value: u64, absolute: bool) -> Setting {
        let old = self.get();
        let now = crate::time::now_ns();
        let next = match (value, absolute) {
            (0, _) => None,
            (at, true) if self.realtime => {
                let offset = crate::time::unix_time_ns().saturating_sub(now);
                Some(at.saturating_sub(offset).max(1))
            }
            (at, true) => Some(at),
            (after, false) => Some(now.saturating_add(after)),
        };
        {
            let mut s = self.state.lock();
            *s = State {
                next,
                interval,
                pending: 0,
                total: s.total,
            };
        }
        self.set.wake_all();
        old
    }

    /// `read`: the expirations since the last read, as 8 bytes.
    pub fn read(&self, me: &Arc<Task>, out: &mut [u8], nonblock: bool) -> Result<usize, u32> {
        if out.len() < 8 {
            return Err(e::EINVAL);
        }
        loop {
            let deadline = {
                let mut s = self.state.lock();
                s.settle(crate::time::now_ns());
                if s.pending > 0 {
                    out[..8].copy_from_slice(&s.pending.to_ne_bytes());
                    s.pending = 0;
                    return Ok(8);
                }
                s.next
            };
            if nonblock {
                return Err(e::EAGAIN);
            }
            if sched::wait(me, &[&self.set], deadline, || self.readable()) == Wait::Interrupted {
                return Err(e::EINTR);
            }
        }
    }

    /// Whether a read would not block.
    pub fn readable(&self) -> bool {
        let mut s = self.state.lock();
        s.settle(crate::time::now_ns());
        s.pending > 0
    }

    /// When it next expires (monotonic ns), if armed: a waiter looks again then.
    pub fn deadline(&self) -> Option<u64> {
        self.state.lock().next
    }

    /// Expirations ever (an edge for edge-triggered epoll).
    pub fn expirations(&self) -> u64 {
        let mut s = self.state.lock();
        s.settle(crate::time::now_ns());
        s.total
    }

    /// The queue a waiter sleeps on.
    pub fn queue(&self) -> &WaitQueue {
        &self.set
    }
}
