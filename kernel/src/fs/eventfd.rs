//! `eventfd`: a 64-bit counter as a file. A write adds to it (blocking while the sum would
//! pass `u64::MAX - 1`); a read takes it whole and leaves zero — or, in semaphore mode, takes
//! one — blocking while it is zero. Readable while non-zero, writable while a write of 1
//! would fit, as Linux's `fs/eventfd.c` defines it.

use alloc::sync::Arc;

use linux_raw_sys::errno as e;
use spin::Mutex;

use crate::sched::{self, Task, Wait, WaitQueue};

/// The largest value the counter holds.
const MAX: u64 = u64::MAX - 1;

/// An eventfd's counter and the tasks waiting on it.
pub struct EventFd {
    count: Mutex<u64>,
    semaphore: bool,
    /// Woken on every change (readers and writers both wait here).
    changed: WaitQueue,
}

impl EventFd {
    /// A counter starting at `initial`.
    pub fn new(initial: u32, semaphore: bool) -> Arc<Self> {
        Arc::new(Self {
            count: Mutex::new(u64::from(initial)),
            semaphore,
            changed: WaitQueue::new(),
        })
    }

    /// `read`: the 8-byte value into `out` (at least 8 bytes, else `EINVAL`).
    pub fn read(&self, me: &Arc<Task>, out: &mut [u8], nonblock: bool) -> Result<usize, u32> {
        if out.len() < 8 {
            return Err(e::EINVAL);
        }
        loop {
            {
                let mut count = self.count.lock();
                if *count > 0 {
                    let taken = if self.semaphore { 1 } else { *count };
                    *count -= taken;
                    drop(count);
                    out[..8].copy_from_slice(&taken.to_ne_bytes());
                    self.changed.wake_all();
                    return Ok(8);
                }
            }
            if nonblock {
                return Err(e::EAGAIN);
            }
            if sched::wait(me, &[&self.changed], None, || self.poll_read()) == Wait::Interrupted {
                return Err(e::EINTR);
            }
        }
    }

    /// `write`: adds the 8-byte value in `data` (`EINVAL` for fewer bytes or `u64::MAX`).
    pub fn write(&self, me: &Arc<Task>, data: &[u8], nonblock: bool) -> Result<usize, u32> {
        let value = data
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_ne_bytes)
            .ok_or(e::EINVAL)?;
        if value == u64::MAX {
            return Err(e::EINVAL);
        }
        loop {
            {
                let mut count = self.count.lock();
                if MAX - *count >= value {
                    *count += value;
                    drop(count);
                    if value > 0 {
                        self.changed.wake_all();
                    }
                    return Ok(8);
                }
            }
            if nonblock {
                return Err(e::EAGAIN);
            }
            let fits = || MAX - *self.count.lock() >= value;
            if sched::wait(me, &[&self.changed], None, fits) == Wait::Interrupted {
                return Err(e::EINTR);
            }
        }
    }

    /// Whether a read would not block.
    pub fn poll_read(&self) -> bool {
        *self.count.lock() > 0
    }

    /// Whether a write of 1 would not block.
    pub fn poll_write(&self) -> bool {
        *self.count.lock() < MAX
    }

    /// The queue a `poll` waits on.
    pub fn queue(&self) -> &WaitQueue {
        &self.changed
    }
}
