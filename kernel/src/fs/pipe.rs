//! Pipes: a 64 KiB buffer between a read end and a write end, with Linux's semantics —
//! reads block while it is empty and a writer exists (then return what there is), writes
//! block while it is full, a write with no reader left fails with `EPIPE` (and `SIGPIPE`),
//! writes of up to `PIPE_BUF` bytes are never split.

use alloc::{collections::VecDeque, sync::Arc};

use linux_raw_sys::errno as e;
use spin::Mutex;

use crate::sched::{self, Task, Wait, WaitQueue};

/// How much a pipe holds.
pub const CAPACITY: usize = 64 * 1024;
/// Writes up to this size are atomic.
const PIPE_BUF: usize = 4096;

/// A pipe's shared state.
pub struct Pipe {
    state: Mutex<State>,
    /// Woken when data arrives or the last writer goes.
    readable: WaitQueue,
    /// Woken when room appears or the last reader goes.
    writable: WaitQueue,
}

struct State {
    buffer: VecDeque<u8>,
    readers: usize,
    writers: usize,
}

impl Pipe {
    /// A new pipe with one reader and one writer.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                buffer: VecDeque::new(),
                readers: 1,
                writers: 1,
            }),
            readable: WaitQueue::new(),
            writable: WaitQueue::new(),
        })
    }

    /// An end is closed (its open file is gone).
    pub fn close_end(&self, read: bool) {
        let mut s = self.state.lock();
        if read {
            s.readers -= 1;
        } else {
            s.writers -= 1;
        }
        drop(s);
        self.readable.wake_all();
        self.writable.wake_all();
    }

    /// Reads up to `out.len()` bytes: 0 at end of file (no writers and empty).
    pub fn read(&self, me: &Arc<Task>, out: &mut [u8], nonblock: bool) -> Result<usize, u32> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            {
                let mut s = self.state.lock();
                if !s.buffer.is_empty() {
                    let n = out.len().min(s.buffer.len());
                    // Two slice copies (the ring's two halves), not a byte at a time.
                    let (front, back) = s.buffer.as_slices();
                    let first = n.min(front.len());
                    out[..first].copy_from_slice(&front[..first]);
                    out[first..n].copy_from_slice(&back[..n - first]);
                    s.buffer.drain(..n);
                    drop(s);
                    self.writable.wake_all();
                    return Ok(n);
                }
                if s.writers == 0 {
                    return Ok(0);
                }
            }
            if nonblock {
                return Err(e::EAGAIN);
            }
            let ready = || {
                let s = self.state.lock();
                !s.buffer.is_empty() || s.writers == 0
            };
            if sched::wait(me, &[&self.readable], None, ready) == Wait::Interrupted {
                return Err(e::EINTR);
            }
        }
    }

    /// Writes all of `data` (blocking while full); `EPIPE` if no reader is left. A write
    /// interrupted after some bytes went in returns how many did.
    pub fn write(&self, me: &Arc<Task>, data: &[u8], nonblock: bool) -> Result<usize, u32> {
        let mut done = 0;
        while done < data.len() {
            {
                let mut s = self.state.lock();
                if s.readers == 0 {
                    return Err(e::EPIPE);
                }
                let room = CAPACITY - s.buffer.len();
                let rest = data.len() - done;
                // Small writes go in whole or not at all.
                let fits = if rest <= PIPE_BUF {
                    room >= rest
                } else {
                    room > 0
                };
                if fits {
                    let n = rest.min(room);
                    s.buffer.extend(&data[done..done + n]);
                    done += n;
                    drop(s);
                    self.readable.wake_all();
                    continue;
                }
            }
            if nonblock {
                return if done > 0 { Ok(done) } else { Err(e::EAGAIN) };
            }
            let need = (data.len() - done).min(PIPE_BUF);
            let ready = || {
                let s = self.state.lock();
                s.readers == 0 || CAPACITY - s.buffer.len() >= need
            };
            if sched::wait(me, &[&self.writable], None, ready) == Wait::Interrupted {
                return if done > 0 { Ok(done) } else { Err(e::EINTR) };
            }
        }
        Ok(done)
    }

    /// Bytes waiting to be read.
    pub fn available(&self) -> usize {
        self.state.lock().buffer.len()
    }

    /// Whether every write end is closed.
    pub fn writers_gone(&self) -> bool {
        self.state.lock().writers == 0
    }

    /// Whether a write would not block (room, or no reader left).
    pub fn poll_write(&self) -> bool {
        let s = self.state.lock();
        s.readers == 0 || s.buffer.len() < CAPACITY
    }

    /// The queues a `poll` waits on.
    pub fn queues(&self) -> [&WaitQueue; 2] {
        [&self.readable, &self.writable]
    }
}
