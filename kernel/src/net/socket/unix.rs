//! `AF_UNIX` sockets: streams and datagrams between processes of this machine, kept
//! entirely in the kernel.
//!
//! Each socket owns a receive [`Queue`] of segments (bytes, the sender's name, and open
//! files passed along with `SCM_RIGHTS`); a stream's peer writes into it and a datagram
//! sender pushes whole messages into it. A closed queue takes no more writes (`EPIPE`) and
//! reads as end of file once drained: that is how `shutdown` and the last `close` reach the
//! other end. Names live in one table: an abstract name (a leading NUL byte) by its bytes, a
//! path name by the inode of the socket file `bind` creates — so a socket is found only
//! through its file, and removing the file unnames it, as on Linux.

use alloc::{
    collections::{BTreeMap, VecDeque},
    string::String,
    sync::{Arc, Weak},
    vec::Vec,
};

use linux_raw_sys::errno as e;
use spin::Mutex;

use super::{Address, Flags, Received, Type, bits, block};
use crate::{
    fs::{Node, file::OpenFile},
    sched::{Task, WaitQueue},
};

/// How many bytes a receive queue holds (Linux's default socket buffer).
const CAPACITY: usize = 212_992;

/// An `AF_UNIX` name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Name {
    /// No name (an unbound socket).
    Unnamed,
    /// A path in the file system, as given to `bind`.
    Path(String),
    /// An abstract name: the bytes after the leading NUL.
    Abstract(Vec<u8>),
}

/// How the socket layer reaches the file system for path names (the caller's working
/// directory and permissions stay with the system-call layer).
pub struct Paths<'a> {
    /// Makes a socket file at a path (`EADDRINUSE` if something is there).
    pub create: &'a dyn Fn(&str) -> Result<Arc<Node>, u32>,
    /// Finds the file at a path.
    pub find: &'a dyn Fn(&str) -> Result<Arc<Node>, u32>,
}

fn no_path(_: &str) -> Result<Arc<Node>, u32> {
    Err(e::ENOENT)
}

/// For calls that never name a path (`write` on a socket).
pub const NO_PATHS: Paths<'static> = Paths {
    create: &no_path,
    find: &no_path,
};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Abstract(Vec<u8>),
    Inode(u64),
}

/// Every bound socket, by name.
static NAMES: Mutex<BTreeMap<Key, Weak<Unix>>> = Mutex::new(BTreeMap::new());

struct Segment {
    data: Vec<u8>,
    rights: Vec<Arc<OpenFile>>,
    from: Name,
}

/// A receive queue and the tasks waiting on it (readers for data, writers for room).
pub struct Queue {
    state: Mutex<QueueState>,
    changed: WaitQueue,
}

#[derive(Default)]
struct QueueState {
    segments: VecDeque<Segment>,
    bytes: usize,
    closed: bool,
}

impl Queue {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(QueueState::default()),
            changed: WaitQueue::new(),
        })
    }

    /// Takes no more writes; `drop_data` also throws away what is unread (its reader is
    /// gone).
    fn close(&self, drop_data: bool) {
        let dropped = {
            let mut s = self.state.lock();
            s.closed = true;
            if drop_data {
                s.bytes = 0;
                core::mem::take(&mut s.segments)
            } else {
                VecDeque::new()
            }
        };
        // Open files in flight are closed here, outside the lock (one may be a socket whose
        // own close takes other queues' locks).
        drop(dropped);
        self.changed.wake_all();
    }

    fn has_room(&self, need: usize) -> bool {
        let s = self.state.lock();
        s.closed || CAPACITY - s.bytes >= need.min(CAPACITY)
    }

    fn readable(&self) -> bool {
        let s = self.state.lock();
        !s.segments.is_empty() || s.closed
    }
}

enum Conn {
    Idle,
    Listening {
        backlog: usize,
        pending: VecDeque<Arc<Unix>>,
    },
    Connected {
        peer: Weak<Unix>,
        peer_rx: Arc<Queue>,
        peer_name: Name,
    },
}

struct State {
    name: Name,
    key: Option<Key>,
    conn: Conn,
}

/// An `AF_UNIX` socket.
pub struct Unix {
    ty: Type,
    rx: Arc<Queue>,
    state: Mutex<State>,
}

impl Drop for Unix {
    fn drop(&mut self) {
        let state = self.state.get_mut();
        if let Some(key) = state.key.take() {
            let mut names = NAMES.lock();
            if names.get(&key).is_some_and(|w| w.strong_count() == 0) {
                names.remove(&key);
            }
        }
        if let Conn::Connected { peer_rx, .. } = &state.conn
            && self.ty == Type::Stream
        {
            peer_rx.close(false);
        }
        let conn = core::mem::replace(&mut state.conn, Conn::Idle);
        self.rx.close(true);
        // Connections nobody accepted end here: their clients read end of file.
        drop(conn);
    }
}

impl Unix {
    /// A new unbound socket.
    pub fn new(ty: Type) -> Arc<Self> {
        Arc::new(Self {
            ty,
            rx: Queue::new(),
            state: Mutex::new(State {
                name: Name::Unnamed,
                key: None,
                conn: Conn::Idle,
            }),
        })
    }

    /// Two sockets connected to each other.
    pub fn pair(ty: Type) -> (Arc<Self>, Arc<Self>) {
        let (a, b) = (Self::new(ty), Self::new(ty));
        a.connect_to(&b, Name::Unnamed);
        b.connect_to(&a, Name::Unnamed);
        (a, b)
    }

    fn connect_to(&self, peer: &Arc<Self>, peer_name: Name) {
        self.state.lock().conn = Conn::Connected {
            peer: Arc::downgrade(peer),
            peer_rx: Arc::clone(&peer.rx),
            peer_name,
        };
    }

    /// Its name.
    pub fn name(&self) -> Name {
        self.state.lock().name.clone()
    }

    /// Its peer's name (`ENOTCONN` without one).
    pub fn peer_name(&self) -> Result<Name, u32> {
        match &self.state.lock().conn {
            Conn::Connected { peer_name, .. } => Ok(peer_name.clone()),
            _ => Err(e::ENOTCONN),
        }
    }

    /// Whether it listens.
    pub fn listening(&self) -> bool {
        matches!(self.state.lock().conn, Conn::Listening { .. })
    }

    /// `bind`: `EINVAL` if already named, `EADDRINUSE` if the name is taken.
    pub fn bind(self: &Arc<Self>, paths: &Paths, name: Name) -> Result<(), u32> {
        if self.state.lock().name != Name::Unnamed {
            return Err(e::EINVAL);
        }
        let key = match &name {
            Name::Unnamed => return Err(e::EINVAL),
            Name::Abstract(bytes) => {
                let key = Key::Abstract(bytes.clone());
                let mut names = NAMES.lock();
                if names.get(&key).is_some_and(|w| w.strong_count() > 0) {
                    return Err(e::EADDRINUSE);
                }
                names.insert(key.clone(), Arc::downgrade(self));
                key
            }
            Name::Path(path) => {
                let node = (paths.create)(path)?;
                let key = Key::Inode(node.ino);
                NAMES.lock().insert(key.clone(), Arc::downgrade(self));
                key
            }
        };
        let mut state = self.state.lock();
        state.name = name;
        state.key = Some(key);
        Ok(())
    }

    /// The socket bound to `name`: `ECONNREFUSED` if none (or the file is no socket's).
    fn find(paths: &Paths, name: &Name) -> Result<Arc<Self>, u32> {
        let key = match name {
            Name::Unnamed => return Err(e::EINVAL),
            Name::Abstract(bytes) => Key::Abstract(bytes.clone()),
            Name::Path(path) => {
                let node = (paths.find)(path)?;
                if !matches!(node.kind, crate::fs::Kind::Socket) {
                    return Err(e::ECONNREFUSED);
                }
                Key::Inode(node.ino)
            }
        };
        NAMES
            .lock()
            .get(&key)
            .and_then(Weak::upgrade)
            .ok_or(e::ECONNREFUSED)
    }

    /// `listen`: `EINVAL` on a connected socket; a second `listen` changes the backlog.
    pub fn listen(&self, backlog: usize) -> Result<(), u32> {
        let mut state = self.state.lock();
        if state.name == Name::Unnamed {
            return Err(e::EINVAL);
        }
        match &mut state.conn {
            Conn::Listening { backlog: b, .. } => *b = backlog,
            Conn::Connected { .. } => return Err(e::EINVAL),
            Conn::Idle => {
                state.conn = Conn::Listening {
                    backlog,
                    pending: VecDeque::new(),
                }
            }
        }
        drop(state);
        self.rx.changed.wake_all();
        Ok(())
    }

    /// `accept`: the next connection's server end and its client's name.
    pub fn accept(
        &self,
        me: &Arc<Task>,
        nonblock: bool,
        deadline: Option<u64>,
    ) -> Result<(Arc<Self>, Address), u32> {
        loop {
            {
                let mut state = self.state.lock();
                let Conn::Listening { pending, .. } = &mut state.conn else {
                    return Err(e::EINVAL);
                };
                if let Some(server) = pending.pop_front() {
                    drop(state);
                    self.rx.changed.wake_all();
                    let peer = server.peer_name().unwrap_or(Name::Unnamed);
                    return Ok((server, Address::Unix(peer)));
                }
            }
            if nonblock {
                return Err(e::EAGAIN);
            }
            block(me, &[&self.rx.changed], deadline, || {
                matches!(&self.state.lock().conn,
                    Conn::Listening { pending, .. } if !pending.is_empty())
            })?;
        }
    }

    /// `connect`: a stream joins a listener's queue (waiting while it is full); a datagram
    /// socket sets its default destination (`AF_UNSPEC` clears it).
    pub fn connect(
        self: &Arc<Self>,
        me: &Arc<Task>,
        paths: &Paths,
        address: Address,
        nonblock: bool,
        deadline: Option<u64>,
    ) -> Result<(), u32> {
        let name = match address {
            Address::Unix(name) => name,
            Address::Unspecified if self.ty == Type::Datagram => {
                self.state.lock().conn = Conn::Idle;
                return Ok(());
            }
            _ => return Err(e::EINVAL),
        };
        if self.ty == Type::Stream {
            match self.state.lock().conn {
                Conn::Idle => {}
                Conn::Connected { .. } => return Err(e::EISCONN),
                Conn::Listening { .. } => return Err(e::EINVAL),
            }
        }
        let target = Self::find(paths, &name)?;
        if target.ty != self.ty {
            return Err(e::EPROTOTYPE);
        }
        if self.ty == Type::Datagram {
            self.connect_to(&target, target.name());
            return Ok(());
        }
        loop {
            {
                let mut state = target.state.lock();
                let Conn::Listening { backlog, pending } = &mut state.conn else {
                    return Err(e::ECONNREFUSED);
                };
                if pending.len() <= *backlog {
                    let server = Self::new(Type::Stream);
                    let listener_name = state.name.clone();
                    server.state.lock().name = listener_name.clone();
                    server.connect_to(self, self.name());
                    self.connect_to(&server, listener_name);
                    if let Conn::Listening { pending, .. } = &mut state.conn {
                        pending.push_back(server);
                    }
                    drop(state);
                    target.rx.changed.wake_all();
                    return Ok(());
                }
            }
            if nonblock {
                return Err(e::EAGAIN);
            }
            block(me, &[&target.rx.changed], deadline, || {
                match &target.state.lock().conn {
                    Conn::Listening { backlog, pending } => pending.len() <= *backlog,
                    _ => true,
                }
            })?;
        }
    }

    /// Where a send goes: the connected peer's queue, or for a datagram with an address the
    /// queue of the socket bound there.
    fn destination(&self, paths: &Paths, to: Option<Address>) -> Result<Arc<Queue>, u32> {
        let state = self.state.lock();
        if self.ty == Type::Stream {
            return match (&state.conn, to) {
                (Conn::Connected { .. }, Some(_)) => Err(e::EISCONN),
                (_, Some(_)) => Err(e::EOPNOTSUPP),
                (Conn::Connected { peer_rx, .. }, None) => Ok(Arc::clone(peer_rx)),
                _ => Err(e::ENOTCONN),
            };
        }
        let connected = match &state.conn {
            Conn::Connected { peer, .. } => Some(peer.clone()),
            _ => None,
        };
        drop(state);
        let target = match to {
            Some(Address::Unix(name)) => Self::find(paths, &name)?,
            Some(_) => return Err(e::EINVAL),
            None => connected
                .ok_or(e::ENOTCONN)?
                .upgrade()
                .ok_or(e::ECONNREFUSED)?,
        };
        if target.ty != Type::Datagram {
            return Err(e::EPROTOTYPE);
        }
        // A datagram socket connected elsewhere takes nothing from us.
        if let Conn::Connected { peer, .. } = &target.state.lock().conn
            && !core::ptr::eq(peer.as_ptr(), self)
        {
            return Err(e::EPERM);
        }
        Ok(Arc::clone(&target.rx))
    }

    /// `send`: a stream writes all of `data` (waiting for room, `EPIPE` once the other end
    /// is closed); a datagram goes whole or not at all (to `to`, found through `paths`).
    #[expect(
        clippy::too_many_arguments,
        reason = "send's arguments and the path resolver"
    )]
    pub fn send(
        &self,
        me: &Arc<Task>,
        paths: &Paths,
        data: &[u8],
        to: Option<Address>,
        mut rights: Vec<Arc<OpenFile>>,
        flags: Flags,
        deadline: Option<u64>,
    ) -> Result<usize, u32> {
        let queue = self.destination(paths, to)?;
        let stream = self.ty == Type::Stream;
        if !stream && data.len() > CAPACITY {
            return Err(e::EMSGSIZE);
        }
        let from = self.name();
        let mut done = 0;
        loop {
            {
                let mut s = queue.state.lock();
                if s.closed {
                    return if done > 0 { Ok(done) } else { Err(e::EPIPE) };
                }
                let room = CAPACITY - s.bytes;
                let rest = data.len() - done;
                let fits = if stream { room > 0 } else { room >= rest };
                if fits {
                    let n = rest.min(room);
                    let chunk = &data[done..done + n];
                    let rights = core::mem::take(&mut rights);
                    match s.segments.back_mut() {
                        Some(last) if stream && rights.is_empty() && last.rights.is_empty() => {
                            last.data.extend_from_slice(chunk);
                        }
                        _ => s.segments.push_back(Segment {
                            data: chunk.to_vec(),
                            rights,
                            from: from.clone(),
                        }),
                    }
                    s.bytes += n;
                    done += n;
                    drop(s);
                    queue.changed.wake_all();
                    if done == data.len() {
                        return Ok(done);
                    }
                    continue;
                }
            }
            if flags.nonblock {
                return if done > 0 { Ok(done) } else { Err(e::EAGAIN) };
            }
            let need = if stream { 1 } else { data.len() - done };
            if let Err(err) = block(me, &[&queue.changed], deadline, || queue.has_room(need)) {
                return if done > 0 { Ok(done) } else { Err(err) };
            }
        }
    }

    /// `recv`: a stream reads what there is (up to the next segment carrying files), a
    /// datagram socket one whole message (the rest of a longer one is lost).
    pub fn recv(
        &self,
        me: &Arc<Task>,
        out: &mut [u8],
        flags: Flags,
        deadline: Option<u64>,
    ) -> Result<Received, u32> {
        if self.ty == Type::Stream && !matches!(self.state.lock().conn, Conn::Connected { .. }) {
            return Err(e::EINVAL);
        }
        let mut got = Received::default();
        loop {
            {
                let mut s = self.rx.state.lock();
                if !s.segments.is_empty() {
                    self.take(&mut s, out, flags, &mut got);
                    drop(s);
                    if !flags.peek {
                        self.rx.changed.wake_all();
                    }
                    let more = flags.waitall
                        && self.ty == Type::Stream
                        && !flags.peek
                        && got.len < out.len();
                    if !more {
                        return Ok(got);
                    }
                    continue;
                }
                if s.closed || out.is_empty() && self.ty == Type::Stream {
                    return Ok(got);
                }
            }
            if flags.nonblock {
                return if got.len > 0 { Ok(got) } else { Err(e::EAGAIN) };
            }
            if let Err(err) = block(me, &[&self.rx.changed], deadline, || self.rx.readable()) {
                return if got.len > 0 { Ok(got) } else { Err(err) };
            }
        }
    }

    /// Copies from the queue's front into `out` after the `got.len` bytes already there.
    fn take(&self, s: &mut QueueState, out: &mut [u8], flags: Flags, got: &mut Received) {
        if self.ty == Type::Datagram {
            let Some(segment) = (if flags.peek {
                s.segments.front().map(|seg| Segment {
                    data: seg.data.clone(),
                    rights: seg.rights.clone(),
                    from: seg.from.clone(),
                })
            } else {
                s.segments.pop_front()
            }) else {
                return;
            };
            if !flags.peek {
                s.bytes -= segment.data.len();
            }
            let n = out.len().min(segment.data.len());
            out[..n].copy_from_slice(&segment.data[..n]);
            got.len = n;
            got.full_len = segment.data.len();
            got.from = Some(Address::Unix(segment.from));
            got.rights = segment.rights;
            return;
        }
        let mut index = 0;
        while got.len < out.len() {
            let Some(segment) = s.segments.get_mut(index) else {
                break;
            };
            // Files travel with the first byte of their segment; a read stops before the
            // next segment that carries some.
            if !segment.rights.is_empty() {
                if got.len > 0 || !got.rights.is_empty() {
                    break;
                }
                got.rights = if flags.peek {
                    segment.rights.clone()
                } else {
                    core::mem::take(&mut segment.rights)
                };
            }
            let n = (out.len() - got.len).min(segment.data.len());
            out[got.len..got.len + n].copy_from_slice(&segment.data[..n]);
            got.len += n;
            if flags.peek {
                index += 1;
                continue;
            }
            segment.data.drain(..n);
            s.bytes -= n;
            if segment.data.is_empty() {
                s.segments.pop_front();
            }
        }
        got.full_len = got.len;
    }

    /// `shutdown`: reading ends (our queue closes), writing ends (the peer's closes).
    pub fn shutdown(&self, read: bool, write: bool) -> Result<(), u32> {
        let state = self.state.lock();
        let peer_rx = match &state.conn {
            Conn::Connected { peer_rx, .. } => Some(Arc::clone(peer_rx)),
            _ if self.ty == Type::Stream => return Err(e::ENOTCONN),
            _ => None,
        };
        drop(state);
        if read {
            self.rx.close(false);
        }
        if write && let Some(peer_rx) = peer_rx {
            peer_rx.close(false);
        }
        Ok(())
    }

    /// Bytes waiting (`FIONREAD`: a datagram socket's next message).
    pub fn available(&self) -> usize {
        let s = self.rx.state.lock();
        match self.ty {
            Type::Stream => s.bytes,
            Type::Datagram => s.segments.front().map_or(0, |seg| seg.data.len()),
        }
    }

    /// Readiness as Linux's `unix_poll` and `unix_dgram_poll` report it.
    pub fn readiness(&self) -> u16 {
        let state = self.state.lock();
        let peer_rx = match &state.conn {
            Conn::Listening { pending, .. } => {
                return if pending.is_empty() { 0 } else { bits::IN };
            }
            Conn::Connected { peer_rx, .. } => Some(Arc::clone(peer_rx)),
            Conn::Idle => None,
        };
        drop(state);
        let (data, read_shut) = {
            let s = self.rx.state.lock();
            (!s.segments.is_empty(), s.closed)
        };
        let mut mask = 0;
        if data || read_shut {
            mask |= bits::IN;
        }
        if read_shut {
            mask |= bits::RDHUP;
        }
        match peer_rx {
            Some(peer) => {
                let (write_shut, writable) = {
                    let s = peer.state.lock();
                    (s.closed, s.closed || s.bytes * 4 <= CAPACITY)
                };
                if read_shut && write_shut {
                    mask |= bits::HUP;
                }
                if writable {
                    mask |= bits::OUT;
                }
            }
            None if self.ty == Type::Stream => mask |= bits::OUT | bits::HUP,
            None => mask |= bits::OUT,
        }
        mask
    }

    /// Its own queue (data, connections) and the peer's (room).
    pub fn wait_queues<'a>(&'a self, out: &mut Vec<&'a WaitQueue>) {
        out.push(&self.rx.changed);
        // The peer's queue is borrowed from the peer's Arc, which may go: room appearing
        // there is seen at the next look (poll waits at most a few ms per round).
    }
}
