//! Pseudo-terminals: opening `/dev/ptmx` makes a pair, the master (that open file) and a
//! slave terminal at `/dev/pts/N`. What the master writes is the slave's input (through its
//! line discipline); what the slave writes, the master reads. The slave starts locked
//! (`TIOCSPTLCK`, which `unlockpt` clears), as on Linux.
//!
//! Closing the master hangs the slave up (its readers see end of file, its session gets
//! `SIGHUP`); once every slave file is closed, the master's reads fail with `EIO`.

use alloc::{collections::VecDeque, format, sync::Arc};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use linux_raw_sys::{errno as e, ioctl as io};
use spin::Mutex;

use super::{Output, Tty};
use crate::{
    process::Current,
    sched::{self, Wait, WaitQueue},
    signal,
};

/// The most output the master side holds unread; the slave's writers wait beyond it.
const CAPACITY: usize = 16 * 1024;
/// The most pseudo-terminals at once.
const MAX_PTYS: u32 = 256;

/// A pseudo-terminal pair.
pub struct Pty {
    /// `N` in `/dev/pts/N`.
    pub index: u32,
    slave: Arc<Tty>,
    /// The slave's output, for the master to read.
    out: Mutex<VecDeque<u8>>,
    /// Woken when the master may read (or the slave side went away).
    master_queue: WaitQueue,
    /// Woken when the master read (slave writers wait for room).
    room: WaitQueue,
    locked: AtomicBool,
    /// Whether a slave open has happened (a master read before any fails only after).
    slave_seen: AtomicBool,
}

static NEXT: AtomicU32 = AtomicU32::new(0);
/// The live pairs by index.
static TABLE: Mutex<alloc::collections::BTreeMap<u32, alloc::sync::Weak<Pty>>> =
    Mutex::new(alloc::collections::BTreeMap::new());

impl Pty {
    /// Makes a pair and its `/dev/pts/N` node.
    pub fn create() -> Result<Arc<Self>, u32> {
        let index = {
            let table = TABLE.lock();
            let start = NEXT.load(Ordering::Relaxed);
            (0..MAX_PTYS)
                .map(|i| (start + i) % MAX_PTYS)
                .find(|i| !table.contains_key(i))
                .ok_or(e::ENOSPC)?
        };
        NEXT.store(index + 1, Ordering::Relaxed);
        let pty = Arc::new_cyclic(|me| Self {
            index,
            slave: Arc::new(Tty::new(&format!("pts/{index}"), Output::Pty(me.clone()))),
            out: Mutex::new(VecDeque::new()),
            master_queue: WaitQueue::new(),
            room: WaitQueue::new(),
            locked: AtomicBool::new(true),
            slave_seen: AtomicBool::new(false),
        });
        TABLE.lock().insert(index, Arc::downgrade(&pty));
        let node = crate::fs::Node::new_device(
            crate::fs::Device::Tty(crate::fs::TtyId::Pts(index)),
            0o620,
        );
        let _ = crate::fs::pts_root().link(&format!("{index}"), node);
        Ok(pty)
    }

    /// The pair with this index, if it is there.
    pub fn find(index: u32) -> Option<Arc<Self>> {
        TABLE
            .lock()
            .get(&index)
            .and_then(alloc::sync::Weak::upgrade)
    }

    /// Opening the slave: refused while locked.
    pub fn open_slave(&self) -> Result<Arc<Tty>, u32> {
        if self.locked.load(Ordering::Acquire) {
            return Err(e::EIO);
        }
        self.slave_seen.store(true, Ordering::Release);
        Ok(Arc::clone(&self.slave))
    }

    /// Slave output arriving for the master.
    pub(super) fn to_master(&self, bytes: &[u8]) {
        self.out.lock().extend(bytes.iter().copied());
        self.master_queue.wake_all();
    }

    /// Whether the slave side is gone (opened once, no open file left).
    fn slave_gone(&self) -> bool {
        self.slave_seen.load(Ordering::Acquire) && self.slave.open_count() == 0
    }

    /// The master's `read`.
    pub fn read(&self, current: &Current, out: &mut [u8], nonblock: bool) -> Result<usize, u32> {
        loop {
            let wakes = self.master_queue.wakes();
            {
                let mut q = self.out.lock();
                if !q.is_empty() {
                    let n = out.len().min(q.len());
                    for (slot, b) in out.iter_mut().zip(q.drain(..n)) {
                        *slot = b;
                    }
                    drop(q);
                    self.room.wake_all();
                    self.slave.queue().wake_all();
                    return Ok(n);
                }
            }
            if self.slave_gone() {
                return Err(e::EIO);
            }
            if nonblock {
                return Err(e::EAGAIN);
            }
            let ready = || self.master_queue.wakes() != wakes;
            if sched::wait(&current.task, &[&self.master_queue], None, ready) == Wait::Interrupted {
                return Err(signal::ERESTARTSYS);
            }
        }
    }

    /// The master's `write`: input for the slave.
    pub fn write(&self, data: &[u8]) -> Result<usize, u32> {
        self.slave.receive(data);
        Ok(data.len())
    }

    /// What `poll` sees on the master: `POLLIN`, `POLLOUT`, `POLLHUP`.
    pub fn readiness(&self) -> u16 {
        use linux_raw_sys::general as g;
        let mut r = g::POLLOUT as u16;
        if !self.out.lock().is_empty() {
            r |= g::POLLIN as u16;
        }
        if self.slave_gone() {
            r |= g::POLLHUP as u16;
        }
        r
    }

    /// The queue a master's poller sleeps on.
    pub fn queue(&self) -> &WaitQueue {
        &self.master_queue
    }

    /// Whether the slave's writer must wait (the master has not read enough).
    pub fn full(&self) -> bool {
        self.out.lock().len() >= CAPACITY
    }

    /// The queue a slave writer waiting for room sleeps on.
    pub fn room(&self) -> &WaitQueue {
        &self.room
    }

    /// Master ioctls: its own (`TIOCGPTN`, `TIOCSPTLCK`), the rest on the slave.
    pub fn ioctl(&self, current: &Current, request: u32, arg: u64) -> Result<u64, u32> {
        use hal::user::UserPtr;
        match request {
            io::TIOCGPTN => UserPtr::<u32>::new(arg)
                .write(self.index)
                .map(|()| 0)
                .map_err(|_| e::EFAULT),
            io::TIOCSPTLCK => {
                let lock = UserPtr::<i32>::new(arg).read().map_err(|_| e::EFAULT)?;
                self.locked.store(lock != 0, Ordering::Release);
                Ok(0)
            }
            io::FIONREAD => UserPtr::<i32>::new(arg)
                .write(self.out.lock().len() as i32)
                .map(|()| 0)
                .map_err(|_| e::EFAULT),
            // The master has no session of its own: job control is the slave's.
            io::TIOCSCTTY | io::TIOCNOTTY | io::TIOCGPGRP | io::TIOCSPGRP | io::TIOCGSID => {
                if request == io::TIOCGPGRP {
                    return UserPtr::<i32>::new(arg)
                        .write(self.slave.pgrp() as i32)
                        .map(|()| 0)
                        .map_err(|_| e::EFAULT);
                }
                Err(e::ENOTTY)
            }
            _ => self.slave.ioctl(current, request, arg),
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        TABLE.lock().remove(&self.index);
        crate::fs::pts_root().unlink(&format!("{}", self.index));
        self.slave.hang_up();
    }
}
