//! `signalfd`: pending signals read as `struct signalfd_siginfo` records. A read takes
//! signals in the file's mask from the reading thread's pending set, then the process's
//! (as `rt_sigtimedwait` does), and blocks until one is pending. The signals are normally
//! blocked by the program, so nothing else takes them first.
//!
//! `poll`/`epoll` readiness is judged against the process that created the file (Linux
//! judges against the polling thread; they differ only for a file shared across `fork`).

use alloc::sync::{Arc, Weak};
use core::sync::atomic::{AtomicU64, Ordering};

use crate::{process::Process, sched::WaitQueue};

/// A signalfd: its mask and the process it watches for readiness.
pub struct SignalFd {
    mask: AtomicU64,
    process: Weak<Process>,
    /// The process's queue woken when a signal becomes pending.
    signalled: Arc<WaitQueue>,
}

impl SignalFd {
    /// A signalfd for `mask` (SIGKILL and SIGSTOP are dropped from it, as Linux does).
    pub fn new(mask: u64, process: &Arc<Process>) -> Arc<Self> {
        Arc::new(Self {
            mask: AtomicU64::new(clean(mask)),
            process: Arc::downgrade(process),
            signalled: Arc::clone(&process.signalled),
        })
    }

    /// The signals it reads (bit `n - 1` for signal `n`).
    pub fn mask(&self) -> u64 {
        self.mask.load(Ordering::Acquire)
    }

    /// `signalfd4` on an existing one: a new mask.
    pub fn set_mask(&self, mask: u64) {
        self.mask.store(clean(mask), Ordering::Release);
    }

    /// Whether a signal in the mask is pending for the process or one of its threads.
    pub fn readable(&self) -> bool {
        let Some(process) = self.process.upgrade() else {
            return false;
        };
        let threads = process
            .threads
            .lock()
            .iter()
            .fold(0, |all, t| all | t.pending.load(Ordering::Acquire));
        (threads | process.shared_pending.load(Ordering::Acquire)) & self.mask() != 0
    }

    /// The queue woken when a signal becomes pending.
    pub fn queue(&self) -> &WaitQueue {
        &self.signalled
    }
}

fn clean(mask: u64) -> u64 {
    const SIGKILL: u64 = 1 << 8;
    const SIGSTOP: u64 = 1 << 18;
    mask & !(SIGKILL | SIGSTOP)
}
