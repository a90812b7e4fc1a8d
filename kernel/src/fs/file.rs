//! Open files and file descriptor tables.
//!
//! An [`OpenFile`] is Linux's "open file description": a node or a pipe end, the offset and
//! the status flags. Descriptors refer to open files; `dup` and `fork` share them (and so
//! their offset), `open` makes a new one.

use alloc::{string::String, sync::Arc, vec::Vec};
use core::sync::atomic::{AtomicU32, Ordering};

use linux_raw_sys::{errno as e, general as g};
use spin::Mutex;

use super::{
    Device, Kind, Node, epoll::Epoll, eventfd::EventFd, pipe::Pipe, signalfd::SignalFd,
    timerfd::TimerFd,
};
use crate::{
    net::socket::{self, Socket},
    process::Current,
    sched::{self, Task, Wait, WaitQueue},
};

/// What an open file reads and writes.
pub enum Target {
    /// A node of the file system (file, directory, device).
    Node(Arc<Node>),
    /// A pipe's read end.
    PipeRead(Arc<Pipe>),
    /// A pipe's write end.
    PipeWrite(Arc<Pipe>),
    /// An `eventfd` counter.
    EventFd(Arc<EventFd>),
    /// An `epoll` instance.
    Epoll(Arc<Epoll>),
    /// A `timerfd` timer.
    TimerFd(Arc<TimerFd>),
    /// A `signalfd` (read by the syscall layer, which knows the reading thread).
    SignalFd(Arc<SignalFd>),
    /// A terminal, opened through this device node.
    Tty(Arc<crate::tty::Tty>, Arc<Node>),
    /// A pseudo-terminal's master side (each open of `/dev/ptmx` makes one).
    PtyMaster(Arc<crate::tty::pty::Pty>, Arc<Node>),
    /// A socket (`read`/`write` are `recv`/`send` without flags).
    Socket(Arc<Socket>),
}

/// An open file description.
pub struct OpenFile {
    /// What it reads and writes.
    pub target: Target,
    /// The offset (regular files and directories).
    pub offset: Mutex<u64>,
    /// The status flags (`O_ACCMODE`, `O_APPEND`, `O_NONBLOCK`).
    pub flags: AtomicU32,
    /// The path it was opened by (for `/proc`-style reports and strace).
    pub path: String,
    /// A directory read's place: the offset `getdents64` last left and the last name it
    /// returned, so a read goes on after that name even when entries before it were removed
    /// meanwhile (`rm -rf` deletes what it has read).
    pub dir_cursor: Mutex<Option<(u64, String)>>,
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        match &self.target {
            Target::PipeRead(p) => p.close_end(true),
            Target::PipeWrite(p) => p.close_end(false),
            Target::Tty(tty, _) => tty.closed(),
            Target::PtyMaster(..)
            | Target::Node(_)
            | Target::EventFd(_)
            | Target::Epoll(_)
            | Target::TimerFd(_)
            | Target::SignalFd(_)
            | Target::Socket(_) => {}
        }
    }
}

/// Flags `fcntl(F_SETFL)` may change.
const SETTABLE: u32 = g::O_APPEND | g::O_NONBLOCK;

impl OpenFile {
    /// A new open file.
    pub fn new(target: Target, flags: u32, path: String) -> Arc<Self> {
        Arc::new(Self {
            target,
            offset: Mutex::new(0),
            flags: AtomicU32::new(flags & (g::O_ACCMODE | SETTABLE)),
            path,
            dir_cursor: Mutex::new(None),
        })
    }

    /// Whether `O_NONBLOCK` is set.
    pub fn nonblock(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & g::O_NONBLOCK != 0
    }

    /// A socket call's flags from the file's (`O_NONBLOCK`).
    pub fn socket_flags(&self) -> socket::Flags {
        socket::Flags {
            nonblock: self.nonblock(),
            ..socket::Flags::default()
        }
    }

    /// Whether it was opened for reading.
    pub fn readable(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & g::O_ACCMODE != g::O_WRONLY
    }

    /// Whether it was opened for writing.
    pub fn writable(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & g::O_ACCMODE != g::O_RDONLY
    }

    /// Sets the flags `F_SETFL` may change.
    pub fn set_flags(&self, flags: u32) {
        let old = self.flags.load(Ordering::Relaxed);
        self.flags
            .store((old & !SETTABLE) | (flags & SETTABLE), Ordering::Relaxed);
    }

    /// The node, if it is one.
    pub fn node(&self) -> Option<&Arc<Node>> {
        match &self.target {
            Target::Node(n) => Some(n),
            _ => None,
        }
    }

    /// What `poll` reports for it now: `POLLIN`, `POLLOUT`, `POLLHUP` bits (all of them, the
    /// caller masks).
    pub fn readiness(&self) -> u16 {
        let (pollin, pollout, pollhup) = (g::POLLIN as u16, g::POLLOUT as u16, g::POLLHUP as u16);
        let bit = |yes: bool, b: u16| if yes { b } else { 0 };
        match &self.target {
            // As Linux's `pipe_poll`: data is POLLIN, no writer left is POLLHUP.
            Target::PipeRead(p) => bit(p.available() > 0, pollin) | bit(p.writers_gone(), pollhup),
            Target::PipeWrite(p) => bit(p.poll_write(), pollout),
            Target::EventFd(c) => bit(c.poll_read(), pollin) | bit(c.poll_write(), pollout),
            Target::Epoll(ep) => bit(ep.any_ready(), pollin),
            Target::TimerFd(t) => bit(t.readable(), pollin),
            Target::SignalFd(f) => bit(f.readable(), pollin),
            Target::Tty(tty, _) => bit(tty.readable(), pollin) | pollout,
            Target::PtyMaster(p, _) => p.readiness(),
            Target::Socket(s) => s.readiness(),
            Target::Node(_) => pollin | pollout,
        }
    }

    /// The queues a wait for this file's readiness sleeps on. An epoll instance (watched by
    /// `poll` or another epoll) has none: its waiters look again every few milliseconds.
    pub fn wait_queues<'a>(&'a self, out: &mut Vec<&'a WaitQueue>) {
        match &self.target {
            Target::PipeRead(p) => out.push(p.queues()[0]),
            Target::PipeWrite(p) => out.push(p.queues()[1]),
            Target::EventFd(c) => out.push(c.queue()),
            Target::TimerFd(t) => out.push(t.queue()),
            Target::SignalFd(f) => out.push(f.queue()),
            Target::Tty(tty, _) => out.push(tty.queue()),
            Target::PtyMaster(p, _) => out.push(p.queue()),
            Target::Socket(s) => s.wait_queues(out),
            Target::Epoll(_) | Target::Node(_) => {}
        }
    }

    /// When a waiter must look at it again even if no queue wakes it (a timer's expiry).
    pub fn deadline(&self) -> Option<u64> {
        match &self.target {
            Target::TimerFd(t) => t.deadline(),
            _ => None,
        }
    }

    /// A count that grows with every event on the file (queue wake-ups, timer expirations):
    /// what an edge-triggered epoll entry compares.
    pub fn events_so_far(&self) -> u64 {
        let mut queues = Vec::new();
        self.wait_queues(&mut queues);
        let woken = queues.iter().map(|q| q.wakes()).fold(0, u64::wrapping_add);
        match &self.target {
            Target::TimerFd(t) => woken.wrapping_add(t.expirations()),
            _ => woken,
        }
    }

    /// Reads into `out` at the file offset (or at `at`, for `pread`).
    pub fn read(&self, current: &Current, out: &mut [u8], at: Option<u64>) -> Result<usize, u32> {
        if !self.readable() {
            return Err(e::EBADF);
        }
        let me = &current.task;
        match &self.target {
            Target::Tty(tty, _) => tty.read(current, out, self.nonblock()),
            Target::PtyMaster(p, _) => p.read(current, out, self.nonblock()),
            Target::PipeRead(p) => p.read(me, out, self.nonblock()),
            Target::EventFd(c) => c.read(me, out, self.nonblock()),
            Target::TimerFd(t) => t.read(me, out, self.nonblock()),
            Target::Socket(s) => s.recv(me, out, self.socket_flags()).map(|got| got.len),
            Target::PipeWrite(_) | Target::Epoll(_) | Target::SignalFd(_) => Err(e::EINVAL),
            Target::Node(node) => match &node.kind {
                Kind::Dir { .. } => Err(e::EISDIR),
                Kind::Symlink(_) => Err(e::EINVAL),
                Kind::File(data) => {
                    let mut offset = self.offset.lock();
                    let pos = at.unwrap_or(*offset);
                    let n = data
                        .lock()
                        .read_at(usize::try_from(pos).unwrap_or(usize::MAX), out);
                    if at.is_none() {
                        *offset = pos + n as u64;
                    }
                    Ok(n)
                }
                Kind::Device(Device::Kmsg) => self.read_kmsg(me, out),
                Kind::Device(Device::Vcs) => {
                    let text = crate::console::screen_text();
                    let mut offset = self.offset.lock();
                    let pos = at.unwrap_or(*offset) as usize;
                    let start = pos.min(text.len());
                    let n = out.len().min(text.len() - start);
                    out[..n].copy_from_slice(&text[start..start + n]);
                    if at.is_none() {
                        *offset = (start + n) as u64;
                    }
                    Ok(n)
                }
                Kind::Device(Device::Block(disk, part)) => {
                    let extent = crate::block::extent(*disk, *part).ok_or(e::ENXIO)?;
                    let mut offset = self.offset.lock();
                    let n = extent.read_at(at.unwrap_or(*offset), out)?;
                    if at.is_none() {
                        *offset += n as u64;
                    }
                    Ok(n)
                }
                Kind::Device(device) => read_device(*device, out),
                Kind::Proc(super::proc::Entry::File(f)) => {
                    // Rendered afresh each read, at the offset asked for (as `seq_file`).
                    let text = super::proc::render(*f)?;
                    let mut offset = self.offset.lock();
                    let pos = at.unwrap_or(*offset) as usize;
                    let start = pos.min(text.len());
                    let n = out.len().min(text.len() - start);
                    out[..n].copy_from_slice(&text[start..start + n]);
                    if at.is_none() {
                        *offset = (start + n) as u64;
                    }
                    Ok(n)
                }
                Kind::Proc(super::proc::Entry::Dir(_)) => Err(e::EISDIR),
                Kind::Socket => Err(e::ENXIO),
            },
        }
    }

    /// Reads the next kernel log record at or after the sequence number kept as the offset:
    /// one record per read, `EINVAL` if it does not fit, `EAGAIN` (non-blocking) or a wait at
    /// the end, as Linux's `/dev/kmsg`.
    fn read_kmsg(&self, me: &Arc<Task>, out: &mut [u8]) -> Result<usize, u32> {
        loop {
            let seq = *self.offset.lock();
            if let Some((line, next)) = crate::kmsg::record_from(seq) {
                if line.len() > out.len() {
                    return Err(e::EINVAL);
                }
                out[..line.len()].copy_from_slice(line.as_bytes());
                *self.offset.lock() = next;
                return Ok(line.len());
            }
            if self.nonblock() {
                return Err(e::EAGAIN);
            }
            // New lines are looked for every 50 ms (the logger cannot wake from every context).
            let deadline = crate::time::now_ns() + 50_000_000;
            if sched::sleep_until(me, deadline) == Wait::Interrupted {
                return Err(e::EINTR);
            }
        }
    }

    /// Writes `data` at the file offset (or the end with `O_APPEND`, or at `at`).
    pub fn write(&self, current: &Current, data: &[u8], at: Option<u64>) -> Result<usize, u32> {
        if !self.writable() {
            return Err(e::EBADF);
        }
        let me = &current.task;
        match &self.target {
            Target::Tty(tty, _) => tty.write(current, data, self.nonblock()),
            Target::PtyMaster(p, _) => p.write(data),
            Target::PipeWrite(p) => p.write(me, data, self.nonblock()),
            Target::EventFd(c) => c.write(me, data, self.nonblock()),
            Target::Socket(s) => s.send(
                me,
                &socket::unix::NO_PATHS,
                data,
                None,
                Vec::new(),
                self.socket_flags(),
            ),
            Target::PipeRead(_) | Target::Epoll(_) | Target::TimerFd(_) | Target::SignalFd(_) => {
                Err(e::EINVAL)
            }
            Target::Node(node) => match &node.kind {
                Kind::Dir { .. } => Err(e::EISDIR),
                Kind::Symlink(_) => Err(e::EINVAL),
                Kind::File(bytes) => {
                    let mut offset = self.offset.lock();
                    let mut bytes = bytes.lock();
                    let append = self.flags.load(Ordering::Relaxed) & g::O_APPEND != 0;
                    let pos = match at {
                        Some(at) => at as usize,
                        None if append => bytes.len(),
                        None => *offset as usize,
                    };
                    let end = pos.checked_add(data.len()).ok_or(e::EFBIG)?;
                    if bytes.len() < end {
                        node.resize(&mut bytes, end)?;
                    }
                    bytes.write_at(pos, data)?;
                    if at.is_none() {
                        *offset = end as u64;
                    }
                    drop(bytes);
                    node.touch();
                    Ok(data.len())
                }
                Kind::Device(Device::Block(disk, part)) => {
                    let extent = crate::block::extent(*disk, *part).ok_or(e::ENXIO)?;
                    let mut offset = self.offset.lock();
                    let n = extent.write_at(at.unwrap_or(*offset), data)?;
                    if at.is_none() {
                        *offset += n as u64;
                    }
                    Ok(n)
                }
                Kind::Device(Device::Full) => Err(e::ENOSPC),
                Kind::Device(device) => Ok(write_device(*device, data)),
                Kind::Proc(super::proc::Entry::File(f)) => super::proc::write(*f, data),
                Kind::Proc(super::proc::Entry::Dir(_)) => Err(e::EISDIR),
                Kind::Socket => Err(e::ENXIO),
            },
        }
    }
}

fn write_device(device: Device, data: &[u8]) -> usize {
    if device == Device::Kmsg {
        crate::kmsg::user_write(data);
    }
    data.len()
}

fn read_device(device: Device, out: &mut [u8]) -> Result<usize, u32> {
    match device {
        Device::Null => Ok(0),
        Device::Zero | Device::Full => {
            out.fill(0);
            Ok(out.len())
        }
        Device::Random => {
            for chunk in out.chunks_mut(64) {
                let bytes = crate::syscall::random_bytes::<64>();
                chunk.copy_from_slice(&bytes[..chunk.len()]);
            }
            Ok(out.len())
        }
        Device::Kmsg => Err(e::EINVAL),
        // Opened as terminals (`Target::Tty`), never read as plain device nodes; disks are
        // read at the file's offset, above.
        Device::Tty(_) | Device::Block(..) | Device::Vcs => Err(e::ENXIO),
    }
}

/// A descriptor slot: the open file and the close-on-exec flag.
#[derive(Clone)]
pub struct Slot {
    /// The open file.
    pub file: Arc<OpenFile>,
    /// `FD_CLOEXEC`.
    pub cloexec: bool,
}

/// The most descriptors a process may have (`RLIMIT_NOFILE`'s default).
pub const MAX_FDS: usize = 1024;

/// A process's file descriptors.
#[derive(Clone, Default)]
pub struct FdTable {
    slots: Vec<Option<Slot>>,
}

impl FdTable {
    /// The open file behind `fd`.
    pub fn get(&self, fd: u64) -> Result<Arc<OpenFile>, u32> {
        self.slots
            .get(usize::try_from(fd).map_err(|_| e::EBADF)?)
            .and_then(Option::as_ref)
            .map(|s| Arc::clone(&s.file))
            .ok_or(e::EBADF)
    }

    /// The slot behind `fd`.
    pub fn slot_mut(&mut self, fd: u64) -> Result<&mut Slot, u32> {
        self.slots
            .get_mut(usize::try_from(fd).map_err(|_| e::EBADF)?)
            .and_then(Option::as_mut)
            .ok_or(e::EBADF)
    }

    /// Installs `file` at the lowest free descriptor at or above `min`.
    pub fn insert_from(
        &mut self,
        min: usize,
        file: Arc<OpenFile>,
        cloexec: bool,
    ) -> Result<u64, u32> {
        let fd = (min..MAX_FDS)
            .find(|&fd| self.slots.get(fd).is_none_or(Option::is_none))
            .ok_or(e::EMFILE)?;
        self.put(fd, file, cloexec);
        Ok(fd as u64)
    }

    /// Installs `file` at the lowest free descriptor.
    pub fn insert(&mut self, file: Arc<OpenFile>, cloexec: bool) -> Result<u64, u32> {
        self.insert_from(0, file, cloexec)
    }

    /// Puts `file` at `fd`, closing what was there.
    pub fn put(&mut self, fd: usize, file: Arc<OpenFile>, cloexec: bool) {
        if self.slots.len() <= fd {
            self.slots.resize(fd + 1, None);
        }
        self.slots[fd] = Some(Slot { file, cloexec });
    }

    /// Closes `fd`; returns its open file (dropped by the caller, outside any lock).
    pub fn remove(&mut self, fd: u64) -> Result<Arc<OpenFile>, u32> {
        let slot = self
            .slots
            .get_mut(usize::try_from(fd).map_err(|_| e::EBADF)?)
            .and_then(Option::take)
            .ok_or(e::EBADF)?;
        Ok(slot.file)
    }

    /// Closes every close-on-exec descriptor (at `execve`).
    pub fn close_on_exec(&mut self) -> Vec<Arc<OpenFile>> {
        let mut closed = Vec::new();
        for slot in &mut self.slots {
            if slot.as_ref().is_some_and(|s| s.cloexec)
                && let Some(s) = slot.take()
            {
                closed.push(s.file);
            }
        }
        closed
    }

    /// The descriptors in use, lowest first.
    pub fn open_fds(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&fd| self.slots[fd].is_some())
            .collect()
    }

    /// Closes everything (at exit).
    pub fn clear(&mut self) -> Vec<Arc<OpenFile>> {
        self.slots.drain(..).flatten().map(|s| s.file).collect()
    }
}
