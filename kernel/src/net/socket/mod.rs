//! Sockets: what a socket descriptor reads and writes, for `AF_UNIX` ([`unix`]: in-kernel
//! byte streams and datagram queues, path and abstract names, descriptors passed along) and
//! `AF_INET` ([`inet`]: TCP and UDP on smoltcp, over loopback and eth0).
//!
//! A [`Socket`] is the part every family shares: its type, the options `setsockopt` keeps
//! and the family's own state. The system-call layer (`syscall::net`) decodes addresses and
//! messages and calls these methods; readiness for `poll`, `select` and `epoll` comes from
//! [`Socket::readiness`] and the wait queues [`Socket::wait_queues`] names, the same scan
//! and sleep that pipes use.

pub mod inet;
pub mod unix;

use alloc::{string::String, sync::Arc, vec::Vec};
use core::net::Ipv4Addr;

use linux_raw_sys::{errno as e, general as g, net as n};
use spin::Mutex;

use crate::{
    fs::file::OpenFile,
    sched::{Task, Wait, WaitQueue},
};

/// A socket address, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// `AF_UNSPEC` (a `connect` that dissolves a datagram association).
    Unspecified,
    /// `AF_UNIX`.
    Unix(unix::Name),
    /// `AF_INET`: address and port.
    Inet(Ipv4Addr, u16),
}

/// The socket types this kernel has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    /// `SOCK_STREAM`.
    Stream,
    /// `SOCK_DGRAM`.
    Datagram,
}

impl Type {
    /// The `SOCK_*` number.
    pub fn number(self) -> u32 {
        match self {
            Self::Stream => n::SOCK_STREAM,
            Self::Datagram => n::SOCK_DGRAM,
        }
    }
}

/// `setsockopt` state every family keeps.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// `SO_REUSEADDR`.
    pub reuse_addr: bool,
    /// `SO_KEEPALIVE`.
    pub keepalive: bool,
    /// `TCP_NODELAY`.
    pub nodelay: bool,
    /// `SO_RCVTIMEO` in ns (0: none).
    pub rcv_timeout: u64,
    /// `SO_SNDTIMEO` in ns (0: none).
    pub snd_timeout: u64,
    /// `SO_RCVBUF` as `getsockopt` reports it (the doubled value, as Linux keeps it).
    pub rcvbuf: u32,
    /// `SO_SNDBUF`, likewise.
    pub sndbuf: u32,
}

/// Flags of one `send`/`recv` call that the socket layer acts on.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flags {
    /// `O_NONBLOCK` or `MSG_DONTWAIT`.
    pub nonblock: bool,
    /// `MSG_PEEK`.
    pub peek: bool,
    /// `MSG_WAITALL`.
    pub waitall: bool,
}

/// What a receive got.
#[derive(Default)]
pub struct Received {
    /// Bytes copied out.
    pub len: usize,
    /// The datagram's whole length (more than `len` when it was truncated).
    pub full_len: usize,
    /// The sender's address, where the family knows it.
    pub from: Option<Address>,
    /// Open files passed along (`SCM_RIGHTS`).
    pub rights: Vec<Arc<OpenFile>>,
}

/// A family's own state.
pub enum Family {
    /// `AF_UNIX`.
    Unix(Arc<unix::Unix>),
    /// `AF_INET`.
    Inet(inet::Inet),
}

/// A socket.
pub struct Socket {
    /// Its type.
    pub ty: Type,
    /// The family's state.
    pub family: Family,
    /// `setsockopt` state.
    pub options: Mutex<Options>,
}

/// Linux's `net.core.rmem_max`/`wmem_max` (what `SO_RCVBUF`/`SO_SNDBUF` are capped at).
const BUF_MAX: u32 = 212_992;

impl Socket {
    fn with_family(ty: Type, family: Family) -> Arc<Self> {
        let (rcvbuf, sndbuf) = match (&family, ty) {
            (Family::Inet(_), Type::Stream) => (131_072, 16_384),
            _ => (BUF_MAX, BUF_MAX),
        };
        Arc::new(Self {
            ty,
            family,
            options: Mutex::new(Options {
                reuse_addr: false,
                keepalive: false,
                nodelay: false,
                rcv_timeout: 0,
                snd_timeout: 0,
                rcvbuf,
                sndbuf,
            }),
        })
    }

    /// A new `AF_UNIX` socket.
    pub fn new_unix(ty: Type) -> Arc<Self> {
        Self::with_family(ty, Family::Unix(unix::Unix::new(ty)))
    }

    /// A new `AF_INET` socket.
    pub fn new_inet(ty: Type) -> Arc<Self> {
        Self::with_family(ty, Family::Inet(inet::Inet::new(ty)))
    }

    /// Two connected `AF_UNIX` sockets (`socketpair`).
    pub fn unix_pair(ty: Type) -> (Arc<Self>, Arc<Self>) {
        let (a, b) = unix::Unix::pair(ty);
        (
            Self::with_family(ty, Family::Unix(a)),
            Self::with_family(ty, Family::Unix(b)),
        )
    }

    /// The family number (`SO_DOMAIN`).
    pub fn domain(&self) -> u32 {
        match self.family {
            Family::Unix(_) => n::AF_UNIX,
            Family::Inet(_) => n::AF_INET,
        }
    }

    /// `bind`.
    pub fn bind(&self, paths: &unix::Paths, address: Address) -> Result<(), u32> {
        match (&self.family, address) {
            (Family::Unix(u), Address::Unix(name)) => u.bind(paths, name),
            (Family::Inet(i), Address::Inet(ip, port)) => {
                i.bind(ip, port, self.options.lock().reuse_addr)
            }
            _ => Err(e::EINVAL),
        }
    }

    /// `listen`.
    pub fn listen(&self, backlog: i32) -> Result<(), u32> {
        if self.ty != Type::Stream {
            return Err(e::EOPNOTSUPP);
        }
        let backlog = backlog.clamp(0, 4096) as usize;
        match &self.family {
            Family::Unix(u) => u.listen(backlog),
            Family::Inet(i) => i.listen(backlog),
        }
    }

    /// `accept`: a new connected socket and its peer's address.
    pub fn accept(&self, me: &Arc<Task>, nonblock: bool) -> Result<(Arc<Self>, Address), u32> {
        if self.ty != Type::Stream {
            return Err(e::EOPNOTSUPP);
        }
        let deadline = self.deadline(true);
        let (family, peer) = match &self.family {
            Family::Unix(u) => {
                let (s, peer) = u.accept(me, nonblock, deadline)?;
                (Family::Unix(s), peer)
            }
            Family::Inet(i) => {
                let (s, peer) = i.accept(me, nonblock, deadline)?;
                (Family::Inet(s), peer)
            }
        };
        let socket = Self::with_family(self.ty, family);
        *socket.options.lock() = *self.options.lock();
        Ok((socket, peer))
    }

    /// `connect`.
    pub fn connect(
        &self,
        me: &Arc<Task>,
        paths: &unix::Paths,
        address: Address,
        nonblock: bool,
    ) -> Result<(), u32> {
        let deadline = self.deadline(false);
        match &self.family {
            Family::Unix(u) => u.connect(me, paths, address, nonblock, deadline),
            Family::Inet(i) => i.connect(me, address, nonblock, deadline),
        }
    }

    /// When a blocking receive (or send) gives up (`SO_RCVTIMEO`, `SO_SNDTIMEO`).
    fn deadline(&self, receive: bool) -> Option<u64> {
        let o = self.options.lock();
        let t = if receive {
            o.rcv_timeout
        } else {
            o.snd_timeout
        };
        (t != 0).then(|| crate::time::now_ns().saturating_add(t))
    }

    /// `send`/`sendto`/`sendmsg`: `data` (and `rights`) to the connected peer or `to`.
    pub fn send(
        &self,
        me: &Arc<Task>,
        paths: &unix::Paths,
        data: &[u8],
        to: Option<Address>,
        rights: Vec<Arc<OpenFile>>,
        flags: Flags,
    ) -> Result<usize, u32> {
        let deadline = self.deadline(false);
        match &self.family {
            Family::Unix(u) => u.send(me, paths, data, to, rights, flags, deadline),
            Family::Inet(i) => i.send(me, data, to, flags, deadline),
        }
    }

    /// `recv`/`recvfrom`/`recvmsg` into `out`.
    pub fn recv(&self, me: &Arc<Task>, out: &mut [u8], flags: Flags) -> Result<Received, u32> {
        let deadline = self.deadline(true);
        match &self.family {
            Family::Unix(u) => u.recv(me, out, flags, deadline),
            Family::Inet(i) => i.recv(me, out, flags, deadline),
        }
    }

    /// `shutdown(how)`: `SHUT_RD`, `SHUT_WR`, `SHUT_RDWR`.
    pub fn shutdown(&self, how: u32) -> Result<(), u32> {
        let (read, write) = match how {
            n::SHUT_RD => (true, false),
            n::SHUT_WR => (false, true),
            n::SHUT_RDWR => (true, true),
            _ => return Err(e::EINVAL),
        };
        match &self.family {
            Family::Unix(u) => u.shutdown(read, write),
            Family::Inet(i) => i.shutdown(read, write),
        }
    }

    /// `getsockname`.
    pub fn local_address(&self) -> Address {
        match &self.family {
            Family::Unix(u) => Address::Unix(u.name()),
            Family::Inet(i) => i.local(),
        }
    }

    /// `getpeername` (`ENOTCONN` without a peer).
    pub fn peer_address(&self) -> Result<Address, u32> {
        match &self.family {
            Family::Unix(u) => u.peer_name().map(Address::Unix),
            Family::Inet(i) => i.peer(),
        }
    }

    /// Takes the pending error (`SO_ERROR`).
    pub fn take_error(&self) -> u32 {
        match &self.family {
            Family::Unix(_) => 0,
            Family::Inet(i) => i.take_error(),
        }
    }

    /// Whether it is listening (`SO_ACCEPTCONN`).
    pub fn listening(&self) -> bool {
        match &self.family {
            Family::Unix(u) => u.listening(),
            Family::Inet(i) => i.listening(),
        }
    }

    /// Bytes waiting to be read (`FIONREAD`).
    pub fn available(&self) -> usize {
        match &self.family {
            Family::Unix(u) => u.available(),
            Family::Inet(i) => i.available(),
        }
    }

    /// What `poll` reports for it now (all bits; the caller masks).
    pub fn readiness(&self) -> u16 {
        match &self.family {
            Family::Unix(u) => u.readiness(),
            Family::Inet(i) => i.readiness(),
        }
    }

    /// The queues a wait for its readiness sleeps on.
    pub fn wait_queues<'a>(&'a self, out: &mut Vec<&'a WaitQueue>) {
        match &self.family {
            Family::Unix(u) => u.wait_queues(out),
            Family::Inet(i) => i.wait_queues(out),
        }
    }

    /// A short name for `/proc/PID/fd` (`socket:[N]`).
    pub fn describe(self: &Arc<Self>) -> String {
        alloc::format!("socket:[{}]", Arc::as_ptr(self) as usize >> 4)
    }
}

/// Poll bits as `u16`.
pub(crate) mod bits {
    use super::g;
    /// `POLLIN | POLLRDNORM`.
    pub const IN: u16 = (g::POLLIN | g::POLLRDNORM) as u16;
    /// `POLLOUT | POLLWRNORM | POLLWRBAND`.
    pub const OUT: u16 = (g::POLLOUT | g::POLLWRNORM | g::POLLWRBAND) as u16;
    /// `POLLHUP`.
    pub const HUP: u16 = g::POLLHUP as u16;
    /// `POLLERR`.
    pub const ERR: u16 = g::POLLERR as u16;
    /// `POLLRDHUP`.
    pub const RDHUP: u16 = 0x2000;
}

/// One blocking step: sleeps on `queues` until `ready`, `deadline` or a signal. `EAGAIN` at
/// the deadline (as a socket timeout reports it), `EINTR` for a signal.
pub(crate) fn block(
    me: &Arc<Task>,
    queues: &[&WaitQueue],
    deadline: Option<u64>,
    ready: impl FnMut() -> bool,
) -> Result<(), u32> {
    match crate::sched::wait(me, queues, deadline, ready) {
        Wait::Ready => Ok(()),
        Wait::TimedOut => Err(e::EAGAIN),
        Wait::Interrupted => Err(e::EINTR),
    }
}
