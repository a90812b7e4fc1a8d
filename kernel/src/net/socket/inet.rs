//! `AF_INET` sockets on smoltcp: TCP streams and UDP datagrams over loopback and eth0.
//!
//! smoltcp sockets belong to one interface each, and a smoltcp TCP socket that listens takes
//! one connection and becomes it; so a listening descriptor keeps a pool of listening smoltcp
//! sockets on every interface its address covers, and `accept` takes an established one out
//! and puts a fresh listener in its place. A UDP socket bound to `INADDR_ANY` likewise has a
//! smoltcp socket on each interface. Ports are this module's: a table of bound ports gives
//! `EADDRINUSE`, and ephemeral ports come from Linux's range. A closed TCP socket stays in
//! the stack until its FIN exchange ends (it is reaped then), or is aborted (RST) when unread
//! data remains, as Linux does.

use alloc::{collections::BTreeMap, sync::Arc, vec, vec::Vec};
use core::net::Ipv4Addr;

use linux_raw_sys::errno as e;
use smoltcp::{
    socket::{tcp, udp},
    wire::{IpAddress, IpEndpoint, IpListenEndpoint},
};
use spin::Mutex;

use super::{Address, Flags, Received, Type, bits, block};
use crate::{
    net::{self, Link, Net, SocketId},
    sched::{Task, WaitQueue},
};

/// Receive and send buffers of a connecting TCP socket.
const TCP_RX: usize = 256 * 1024;
const TCP_TX: usize = 64 * 1024;
/// Buffers of each listening socket in a pool (what an accepted connection gets).
const POOL_RX: usize = 32 * 1024;
const POOL_TX: usize = 16 * 1024;
/// The most idle listening smoltcp sockets one descriptor keeps per interface (a burst of
/// connection requests larger than this meets RSTs).
const POOL_MAX: usize = 64;
/// A UDP socket's queues (datagrams, payload bytes) per interface.
const UDP_SLOTS: usize = 64;
const UDP_BYTES: usize = 128 * 1024;
/// How many polls a close makes for the ACK of its FIN when the peer had closed first.
const LAST_ACK_POLLS: usize = 4;
/// Linux's default ephemeral port range (`net.ipv4.ip_local_port_range`).
const EPHEMERAL: (u16, u16) = (32_768, 60_999);

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Proto {
    Tcp,
    Udp,
}

struct PortUse {
    users: usize,
    reuse: bool,
    listening: bool,
}

/// Bound ports by protocol.
static PORTS: Mutex<BTreeMap<(Proto, u16), PortUse>> = Mutex::new(BTreeMap::new());
/// Where the next ephemeral port search starts.
static NEXT_PORT: Mutex<u16> = Mutex::new(EPHEMERAL.0);
/// Closed TCP sockets finishing their FIN exchange, with when they are given up on.
static CLOSING: Mutex<Vec<(SocketId, u64)>> = Mutex::new(Vec::new());
/// How long a closed socket may wait in FIN-WAIT-2 for the peer's FIN. Linux waits 60 s
/// (`tcp_fin_timeout`); QEMU's `guestfwd` never relays the host's FIN, so every download
/// through it would hold its buffers that long.
const ORPHAN_FIN_WAIT_NS: u64 = 1_000_000_000;
/// How long a closed socket may take for the rest of its goodbye (unanswered FINs).
const ORPHAN_NS: u64 = 60_000_000_000;

/// Queues a closed socket for reaping.
fn closing(id: SocketId) {
    CLOSING
        .lock()
        .push((id, crate::time::now_ns().saturating_add(ORPHAN_NS)));
}
/// Every listening descriptor's pool, refilled after each poll (a backlog, as Linux keeps).
static POOLS: Mutex<Vec<alloc::sync::Weak<Mutex<Pool>>>> = Mutex::new(Vec::new());

/// A listening descriptor's smoltcp sockets: idle listeners, and connections not yet
/// accepted.
struct Pool {
    ip: Ipv4Addr,
    port: u16,
    links: Vec<Link>,
    backlog: usize,
    ids: Vec<SocketId>,
    changed: Arc<WaitQueue>,
    /// Its descriptor is closing: no more listeners.
    closed: bool,
    /// The peers of the last connections taken out (a duplicate of one is dropped).
    accepted: alloc::collections::VecDeque<IpEndpoint>,
    /// The sockets that were idle listeners at the last look.
    idle: Vec<SocketId>,
}

/// How many accepted peers a pool remembers.
const ACCEPTED_MEMORY: usize = 256;

fn is_waiting(state: tcp::State) -> bool {
    matches!(state, tcp::State::Listen | tcp::State::SynReceived)
}

impl Pool {
    /// Tops every interface up to its idle listeners, while the not-yet-accepted
    /// connections stay within the backlog.
    fn refill(&mut self, net: &mut Net) {
        if self.closed {
            return;
        }
        self.drop_duplicates(net);
        let idle_target = (self.backlog + 1).clamp(2, POOL_MAX);
        for &link in &self.links {
            let mut idle = 0;
            let mut pending = 0;
            for &id in self.ids.iter().filter(|id| id.link == link) {
                match net.socket::<tcp::Socket>(id).0.state() {
                    tcp::State::Listen => idle += 1,
                    _ => pending += 1,
                }
            }
            while idle < idle_target && pending + idle < self.backlog.max(1) + idle_target {
                let mut s = tcp_socket(POOL_RX, POOL_TX);
                let addr = (!self.ip.is_unspecified()).then_some(IpAddress::Ipv4(self.ip));
                if s.listen(IpListenEndpoint {
                    addr,
                    port: self.port,
                })
                .is_err()
                {
                    break;
                }
                match net.add_waking(link, s, Arc::clone(&self.changed)) {
                    Some(id) => self.ids.push(id),
                    None => break,
                }
                idle += 1;
            }
        }
        self.idle.clear();
        for &id in &self.ids {
            if net.socket::<tcp::Socket>(id).0.state() == tcp::State::Listen {
                self.idle.push(id);
            }
        }
    }

    /// Listening sockets share a port and smoltcp hands a SYN to the first that takes it,
    /// in slot order: a retransmitted SYN can reach an idle listener rather than the socket
    /// already answering it. Such a newcomer (idle at the last look, now holding a peer
    /// another socket has) is dropped without a word, before its SYN-ACK goes out (an RST
    /// would end the real connection, which has the same addresses). Closed listeners go
    /// too.
    fn drop_duplicates(&mut self, net: &mut Net) {
        let mut newcomers = Vec::new();
        let mut others: Vec<IpEndpoint> = self.accepted.iter().copied().collect();
        let mut closed = Vec::new();
        for &id in &self.ids {
            let s = net.socket::<tcp::Socket>(id).0;
            match (s.state(), s.remote_endpoint()) {
                (tcp::State::Listen, _) => {}
                (tcp::State::Closed, _) => closed.push(id),
                (_, Some(ep)) if self.idle.contains(&id) => newcomers.push((id, ep)),
                (_, Some(ep)) => others.push(ep),
                (_, None) => {}
            }
        }
        for (id, ep) in newcomers {
            if others.contains(&ep) {
                closed.push(id);
            } else {
                others.push(ep);
            }
        }
        for id in closed {
            net.remove(id);
            self.ids.retain(|&other| other != id);
        }
    }

    /// An established connection, taken out.
    fn take(&mut self, net: &mut Net) -> Option<SocketId> {
        let index = self
            .ids
            .iter()
            .position(|&id| !is_waiting(net.socket::<tcp::Socket>(id).0.state()))?;
        let id = self.ids.swap_remove(index);
        if let Some(ep) = net.socket::<tcp::Socket>(id).0.remote_endpoint() {
            if self.accepted.len() == ACCEPTED_MEMORY {
                self.accepted.pop_front();
            }
            self.accepted.push_back(ep);
        }
        self.refill(net);
        Some(id)
    }

    fn has_established(&self, net: &mut Net) -> bool {
        self.ids
            .iter()
            .any(|&id| !is_waiting(net.socket::<tcp::Socket>(id).0.state()))
    }
}

/// Refills every pool. Pools and [`POOLS`] are only ever locked with the stack locked
/// first (inside [`net::with`]), so this cannot deadlock with their users.
pub fn refill_pools(net: &mut Net) {
    POOLS.lock().retain(|weak| {
        let Some(pool) = weak.upgrade() else {
            return false;
        };
        pool.lock().refill(net);
        true
    });
}

fn proto(ty: Type) -> Proto {
    match ty {
        Type::Stream => Proto::Tcp,
        Type::Datagram => Proto::Udp,
    }
}

/// Takes `port` (0: an ephemeral one) for `proto`; `EADDRINUSE` if taken.
fn claim(proto: Proto, port: u16, reuse: bool) -> Result<u16, u32> {
    let mut ports = PORTS.lock();
    if port != 0 {
        if let Some(used) = ports.get_mut(&(proto, port)) {
            if !(reuse && used.reuse && !used.listening) {
                return Err(e::EADDRINUSE);
            }
            used.users += 1;
            return Ok(port);
        }
        ports.insert(
            (proto, port),
            PortUse {
                users: 1,
                reuse,
                listening: false,
            },
        );
        return Ok(port);
    }
    let mut next = NEXT_PORT.lock();
    for _ in EPHEMERAL.0..=EPHEMERAL.1 {
        let candidate = *next;
        *next = if candidate >= EPHEMERAL.1 {
            EPHEMERAL.0
        } else {
            candidate + 1
        };
        if let alloc::collections::btree_map::Entry::Vacant(slot) = ports.entry((proto, candidate))
        {
            slot.insert(PortUse {
                users: 1,
                reuse,
                listening: false,
            });
            return Ok(candidate);
        }
    }
    Err(e::EADDRINUSE)
}

fn release(proto: Proto, port: u16) {
    let mut ports = PORTS.lock();
    if let Some(used) = ports.get_mut(&(proto, port)) {
        used.users -= 1;
        if used.users == 0 {
            ports.remove(&(proto, port));
        }
    }
}

/// The interface that reaches `ip`.
fn link_for(ip: Ipv4Addr) -> Link {
    if ip.is_loopback() {
        Link::Loopback
    } else {
        Link::Eth
    }
}

/// The interfaces a local address covers: both for `INADDR_ANY`.
fn links_for_local(net: &mut Net, ip: Ipv4Addr) -> Vec<Link> {
    let mut links = Vec::new();
    if ip.is_unspecified() || ip.is_loopback() {
        links.push(Link::Loopback);
    }
    if (ip.is_unspecified() || !ip.is_loopback()) && net.has_link(Link::Eth) {
        links.push(Link::Eth);
    }
    links
}

/// Lets the stack run after a change: loopback traffic takes a few rounds (out, in, ACK).
fn flush() {
    for _ in 0..8 {
        if !net::poll() {
            break;
        }
    }
}

/// Removes closed sockets whose goodbye is over or given up on, and tops up the listening
/// pools (the stack calls it after each poll).
pub fn reap(net: &mut Net) {
    refill_pools(net);
    let now = crate::time::now_ns();
    let mut closing = CLOSING.lock();
    closing.retain_mut(|(id, deadline)| {
        let s = net.socket::<tcp::Socket>(*id).0;
        let state = s.state();
        if state == tcp::State::FinWait2 {
            *deadline = (*deadline).min(now.saturating_add(ORPHAN_FIN_WAIT_NS));
        }
        let done = matches!(state, tcp::State::Closed | tcp::State::TimeWait);
        if !done && now >= *deadline {
            s.abort();
        }
        if done || now >= *deadline {
            net.remove(*id);
            return false;
        }
        true
    });
}

fn tcp_socket(rx: usize, tx: usize) -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; rx]),
        tcp::SocketBuffer::new(vec![0; tx]),
    );
    // ACKs go out at once: a socket reaped in TIME-WAIT must not take a delayed ACK of the
    // peer's FIN with it (the peer would sit in LAST-ACK until its retransmission).
    s.set_ack_delay(None);
    s
}

fn udp_socket() -> udp::Socket<'static> {
    udp::Socket::new(
        udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; UDP_SLOTS],
            vec![0; UDP_BYTES],
        ),
        udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; UDP_SLOTS],
            vec![0; UDP_BYTES],
        ),
    )
}

fn ipv4(addr: IpAddress) -> Ipv4Addr {
    match addr {
        IpAddress::Ipv4(a) => a,
    }
}

enum Phase {
    Idle,
    Listening(Arc<Mutex<Pool>>),
    Connecting(SocketId),
    Connected(SocketId),
    /// UDP: its smoltcp sockets, one per interface (none before a bind).
    Datagram(Vec<SocketId>),
}

struct State {
    /// The bound address and port (the port claimed in [`PORTS`]).
    local: Option<(Ipv4Addr, u16)>,
    /// A UDP socket's connected peer.
    remote: Option<(Ipv4Addr, u16)>,
    phase: Phase,
    /// The error `SO_ERROR` reports next.
    error: u32,
    read_shut: bool,
    write_shut: bool,
    /// A non-blocking connect finished: the next `connect` returns 0 (then `EISCONN`).
    unreported: bool,
}

/// An `AF_INET` socket.
pub struct Inet {
    ty: Type,
    state: Mutex<State>,
    /// Woken whenever any of its smoltcp sockets may have changed.
    changed: Arc<WaitQueue>,
}

impl Drop for Inet {
    fn drop(&mut self) {
        let state = self.state.get_mut();
        let phase = core::mem::replace(&mut state.phase, Phase::Idle);
        let local = state.local.take();
        let mut last_ack = None;
        net::with(|net| {
            let listening = match &phase {
                Phase::Listening(pool) => {
                    let mut pool = pool.lock();
                    pool.closed = true;
                    core::mem::take(&mut pool.ids)
                }
                _ => Vec::new(),
            };
            for id in listening {
                net.socket::<tcp::Socket>(id).0.abort();
                closing(id);
            }
            match phase {
                Phase::Idle | Phase::Listening(_) => {}
                Phase::Connecting(id) | Phase::Connected(id) => {
                    let s = net.socket::<tcp::Socket>(id).0;
                    if s.can_recv() {
                        s.abort();
                    } else {
                        if s.state() == tcp::State::CloseWait {
                            last_ack = Some(id);
                        }
                        s.close();
                    }
                    closing(id);
                }
                Phase::Datagram(ids) => {
                    for id in ids {
                        net.remove(id);
                    }
                }
            }
            reap(net);
        });
        if let Some((_, port)) = local {
            release(proto(self.ty), port);
        }
        flush();
        // The peer has closed already: its ACK of our FIN is one round trip away; a few
        // polls usually take it in, freeing the buffers now rather than at a later poll.
        if let Some(id) = last_ack {
            for _ in 0..LAST_ACK_POLLS {
                if CLOSING.lock().iter().all(|&(c, _)| c != id) {
                    break;
                }
                net::poll();
            }
        }
    }
}

impl Inet {
    /// A new unbound socket.
    pub fn new(ty: Type) -> Self {
        Self {
            ty,
            state: Mutex::new(State {
                local: None,
                remote: None,
                phase: if ty == Type::Datagram {
                    Phase::Datagram(Vec::new())
                } else {
                    Phase::Idle
                },
                error: 0,
                read_shut: false,
                write_shut: false,
                unreported: false,
            }),
            changed: Arc::new(WaitQueue::new()),
        }
    }

    /// An accepted connection; it keeps the queue its smoltcp socket was added with.
    fn connected(ty: Type, id: SocketId, changed: Arc<WaitQueue>) -> Self {
        let mut socket = Self::new(ty);
        socket.state.get_mut().phase = Phase::Connected(id);
        socket.changed = changed;
        socket
    }

    /// `bind`: `EINVAL` if already bound, `EADDRINUSE`, `EADDRNOTAVAIL` for an address that
    /// is not this machine's.
    pub fn bind(&self, ip: Ipv4Addr, port: u16, reuse: bool) -> Result<(), u32> {
        let mut state = self.state.lock();
        if state.local.is_some() {
            return Err(e::EINVAL);
        }
        let ours = ip.is_unspecified()
            || ip.is_loopback()
            || net::eth_config().is_some_and(|c| c.address.address() == ip);
        if !ours {
            return Err(e::EADDRNOTAVAIL);
        }
        let port = claim(proto(self.ty), port, reuse)?;
        state.local = Some((ip, port));
        if self.ty == Type::Datagram {
            self.open_udp(&mut state, ip, port)?;
        }
        Ok(())
    }

    /// A UDP socket's smoltcp sockets for a bound address.
    fn open_udp(&self, state: &mut State, ip: Ipv4Addr, port: u16) -> Result<(), u32> {
        let ids = net::with(|net| {
            let mut ids = Vec::new();
            for link in links_for_local(net, ip) {
                let mut s = udp_socket();
                let addr = (!ip.is_unspecified()).then_some(IpAddress::Ipv4(ip));
                if s.bind(IpListenEndpoint { addr, port }).is_err() {
                    continue;
                }
                if let Some(id) = net.add_waking(link, s, Arc::clone(&self.changed)) {
                    ids.push(id);
                }
            }
            ids
        })
        .ok_or(e::ENETDOWN)?;
        state.phase = Phase::Datagram(ids);
        Ok(())
    }

    /// Binds an unbound socket to `INADDR_ANY` and an ephemeral port (before a send or a
    /// connect).
    fn autobind(&self, state: &mut State) -> Result<(Ipv4Addr, u16), u32> {
        if let Some(local) = state.local {
            return Ok(local);
        }
        let port = claim(proto(self.ty), 0, false)?;
        state.local = Some((Ipv4Addr::UNSPECIFIED, port));
        if self.ty == Type::Datagram {
            self.open_udp(state, Ipv4Addr::UNSPECIFIED, port)?;
        }
        Ok((Ipv4Addr::UNSPECIFIED, port))
    }

    /// `listen`: a pool of listening sockets on every interface the address covers.
    pub fn listen(&self, backlog: usize) -> Result<(), u32> {
        let mut state = self.state.lock();
        match &state.phase {
            Phase::Idle => {}
            Phase::Listening(pool) => {
                net::with(|_| pool.lock().backlog = backlog);
                return Ok(());
            }
            _ => return Err(e::EINVAL),
        }
        let (ip, port) = self.autobind(&mut state)?;
        if let Some(used) = PORTS.lock().get_mut(&(Proto::Tcp, port)) {
            used.listening = true;
        }
        let pool = Arc::new(Mutex::new(Pool {
            ip,
            port,
            links: Vec::new(),
            backlog,
            ids: Vec::new(),
            changed: Arc::clone(&self.changed),
            closed: false,
            accepted: alloc::collections::VecDeque::new(),
            idle: Vec::new(),
        }));
        net::with(|net| {
            let mut p = pool.lock();
            p.links = links_for_local(net, ip);
            p.refill(net);
            POOLS.lock().push(Arc::downgrade(&pool));
        })
        .ok_or(e::ENETDOWN)?;
        state.phase = Phase::Listening(pool);
        Ok(())
    }

    /// `accept`: an established connection out of the pool, a new listener in its place.
    pub fn accept(
        &self,
        me: &Arc<Task>,
        nonblock: bool,
        deadline: Option<u64>,
    ) -> Result<(Self, Address), u32> {
        loop {
            if let Some(found) = self.take_established()? {
                return Ok(found);
            }
            if nonblock {
                return Err(e::EAGAIN);
            }
            block(me, &[&self.changed], deadline, || self.has_established())?;
        }
    }

    fn pool(&self) -> Option<Arc<Mutex<Pool>>> {
        match &self.state.lock().phase {
            Phase::Listening(pool) => Some(Arc::clone(pool)),
            _ => None,
        }
    }

    fn has_established(&self) -> bool {
        let Some(pool) = self.pool() else {
            return true;
        };
        net::with(|net| pool.lock().has_established(net)).unwrap_or(true)
    }

    fn take_established(&self) -> Result<Option<(Self, Address)>, u32> {
        let pool = self.pool().ok_or(e::EINVAL)?;
        let taken = net::with(|net| {
            let id = pool.lock().take(net)?;
            let s = net.socket::<tcp::Socket>(id).0;
            let peer = s
                .remote_endpoint()
                .map_or(Address::Inet(Ipv4Addr::UNSPECIFIED, 0), |ep| {
                    Address::Inet(ipv4(ep.addr), ep.port)
                });
            Some((id, peer))
        })
        .flatten();
        Ok(taken.map(|(id, peer)| {
            let queue = net::with(|net| net.queue(id))
                .flatten()
                .unwrap_or_else(|| Arc::clone(&self.changed));
            (Self::connected(self.ty, id, queue), peer)
        }))
    }

    /// `connect`: TCP opens a connection (waiting for it unless non-blocking:
    /// `EINPROGRESS`); UDP sets the default peer.
    pub fn connect(
        &self,
        me: &Arc<Task>,
        address: Address,
        nonblock: bool,
        deadline: Option<u64>,
    ) -> Result<(), u32> {
        let (ip, port) = match address {
            Address::Inet(ip, port) => (ip, port),
            Address::Unspecified if self.ty == Type::Datagram => {
                self.state.lock().remote = None;
                return Ok(());
            }
            _ => return Err(e::EAFNOSUPPORT),
        };
        let mut state = self.state.lock();
        if self.ty == Type::Datagram {
            self.autobind(&mut state)?;
            state.remote = Some((ip, port));
            return Ok(());
        }
        self.refresh(&mut state);
        match state.phase {
            Phase::Idle => {}
            Phase::Connecting(_) => return Err(e::EALREADY),
            Phase::Connected(_) => {
                return if core::mem::take(&mut state.unreported) {
                    Ok(())
                } else {
                    Err(e::EISCONN)
                };
            }
            _ => return Err(e::EINVAL),
        }
        if port == 0 {
            return Err(e::ECONNREFUSED);
        }
        let ip = if ip.is_unspecified() {
            Ipv4Addr::LOCALHOST
        } else {
            ip
        };
        let (_, local_port) = self.autobind(&mut state)?;
        let link = link_for(ip);
        let id = net::with(|net| {
            reap(net);
            if !net.has_link(link) {
                return Err(e::ENETUNREACH);
            }
            let mut s = tcp_socket(TCP_RX, TCP_TX);
            s.set_nagle_enabled(false);
            let id = net
                .add_waking(link, s, Arc::clone(&self.changed))
                .ok_or(e::ENETUNREACH)?;
            let (s, cx) = net.socket::<tcp::Socket>(id);
            if s.connect(cx, (IpAddress::Ipv4(ip), port), local_port)
                .is_err()
            {
                net.remove(id);
                return Err(e::ENETUNREACH);
            }
            Ok(id)
        })
        .ok_or(e::ENETDOWN)??;
        state.phase = Phase::Connecting(id);
        state.unreported = nonblock;
        drop(state);
        flush();
        if nonblock {
            return Err(e::EINPROGRESS);
        }
        let result = block(me, &[&self.changed], deadline, || {
            let mut state = self.state.lock();
            self.refresh(&mut state);
            !matches!(state.phase, Phase::Connecting(_))
        });
        let mut state = self.state.lock();
        self.refresh(&mut state);
        match (&state.phase, result) {
            (Phase::Connected(_), _) => Ok(()),
            (Phase::Connecting(_), Err(err)) => Err(if err == e::EAGAIN {
                e::EINPROGRESS
            } else {
                err
            }),
            _ => match core::mem::take(&mut state.error) {
                0 => Err(e::ECONNREFUSED),
                err => Err(err),
            },
        }
    }

    /// Moves a connecting socket on: connected, or failed (its error kept for `SO_ERROR`).
    fn refresh(&self, state: &mut State) {
        let Phase::Connecting(id) = state.phase else {
            return;
        };
        let now = net::with(|net| net.socket::<tcp::Socket>(id).0.state());
        match now {
            Some(tcp::State::SynSent | tcp::State::SynReceived) => {}
            Some(tcp::State::Closed) | None => {
                net::with(|net| net.remove(id));
                state.phase = Phase::Idle;
                state.error = e::ECONNREFUSED;
            }
            Some(_) => state.phase = Phase::Connected(id),
        }
    }

    /// The connection's smoltcp socket, if connected.
    fn connection(&self) -> Option<SocketId> {
        let mut state = self.state.lock();
        self.refresh(&mut state);
        match state.phase {
            Phase::Connected(id) => Some(id),
            _ => None,
        }
    }

    /// `send`: TCP writes all it can (waiting for room; `EPIPE` once the connection cannot
    /// send); UDP sends one datagram to `to` or the connected peer.
    pub fn send(
        &self,
        me: &Arc<Task>,
        data: &[u8],
        to: Option<Address>,
        flags: Flags,
        deadline: Option<u64>,
    ) -> Result<usize, u32> {
        if self.ty == Type::Datagram {
            return self.send_udp(me, data, to, flags, deadline);
        }
        let Some(id) = self.connection() else {
            let mut state = self.state.lock();
            let err = core::mem::take(&mut state.error);
            return Err(if err != 0 { err } else { e::EPIPE });
        };
        if self.state.lock().write_shut {
            return Err(e::EPIPE);
        }
        let mut done = 0;
        loop {
            let sent = net::with(|net| {
                let s = net.socket::<tcp::Socket>(id).0;
                if !s.may_send() {
                    return Err(e::EPIPE);
                }
                Ok(s.send_slice(&data[done..]).unwrap_or(0))
            })
            .unwrap_or(Err(e::ENETDOWN));
            match sent {
                Ok(n) => done += n,
                Err(err) => return if done > 0 { Ok(done) } else { Err(err) },
            }
            if done > 0 {
                flush();
            }
            if done == data.len() {
                return Ok(done);
            }
            if flags.nonblock {
                return if done > 0 { Ok(done) } else { Err(e::EAGAIN) };
            }
            let room = || {
                net::with(|net| {
                    let s = net.socket::<tcp::Socket>(id).0;
                    s.can_send() || !s.may_send()
                })
                .unwrap_or(true)
            };
            if let Err(err) = block(me, &[&self.changed], deadline, room) {
                return if done > 0 { Ok(done) } else { Err(err) };
            }
        }
    }

    fn send_udp(
        &self,
        me: &Arc<Task>,
        data: &[u8],
        to: Option<Address>,
        flags: Flags,
        deadline: Option<u64>,
    ) -> Result<usize, u32> {
        let mut state = self.state.lock();
        let (ip, port) = match to {
            Some(Address::Inet(ip, port)) => (ip, port),
            Some(_) => return Err(e::EAFNOSUPPORT),
            None => state.remote.ok_or(e::EDESTADDRREQ)?,
        };
        if port == 0 {
            return Err(e::EINVAL);
        }
        if data.len() > UDP_BYTES {
            return Err(e::EMSGSIZE);
        }
        self.autobind(&mut state)?;
        let link = link_for(ip);
        let Phase::Datagram(ids) = &state.phase else {
            return Err(e::EINVAL);
        };
        let id = *ids
            .iter()
            .find(|id| id.link == link)
            .ok_or(e::ENETUNREACH)?;
        drop(state);
        let endpoint = IpEndpoint::new(IpAddress::Ipv4(ip), port);
        loop {
            let sent = net::with(|net| {
                let s = net.socket::<udp::Socket>(id).0;
                if !s.can_send() {
                    return Ok(false);
                }
                s.send_slice(data, endpoint)
                    .map(|()| true)
                    .map_err(|_| e::EMSGSIZE)
            })
            .unwrap_or(Err(e::ENETDOWN))?;
            if sent {
                flush();
                return Ok(data.len());
            }
            if flags.nonblock {
                return Err(e::EAGAIN);
            }
            let room =
                || net::with(|net| net.socket::<udp::Socket>(id).0.can_send()).unwrap_or(true);
            block(me, &[&self.changed], deadline, room)?;
        }
    }

    /// `recv`: TCP reads what has arrived (0 at the peer's FIN); UDP one datagram.
    pub fn recv(
        &self,
        me: &Arc<Task>,
        out: &mut [u8],
        flags: Flags,
        deadline: Option<u64>,
    ) -> Result<Received, u32> {
        if self.ty == Type::Datagram {
            return self.recv_udp(me, out, flags, deadline);
        }
        let Some(id) = self.connection() else {
            return Err(e::ENOTCONN);
        };
        let mut got = Received::default();
        loop {
            if self.state.lock().read_shut {
                return Ok(got);
            }
            let step = net::with(|net| {
                let s = net.socket::<tcp::Socket>(id).0;
                if s.can_recv() {
                    let rest = &mut out[got.len..];
                    let n = if flags.peek {
                        s.peek_slice(rest).unwrap_or(0)
                    } else {
                        s.recv_slice(rest).unwrap_or(0)
                    };
                    return Some(n);
                }
                // Nothing buffered: end of file once the peer can send no more.
                (!s.may_recv()).then_some(0)
            })
            .flatten();
            match step {
                Some(0) => {
                    got.full_len = got.len;
                    return Ok(got);
                }
                Some(n) => {
                    got.len += n;
                    got.full_len = got.len;
                    if !flags.peek {
                        flush();
                    }
                    if !flags.waitall || flags.peek || got.len == out.len() {
                        return Ok(got);
                    }
                    continue;
                }
                None => {}
            }
            if out.is_empty() {
                return Ok(got);
            }
            if flags.nonblock {
                return if got.len > 0 { Ok(got) } else { Err(e::EAGAIN) };
            }
            let ready = || {
                net::with(|net| {
                    let s = net.socket::<tcp::Socket>(id).0;
                    s.can_recv() || !s.may_recv()
                })
                .unwrap_or(true)
            };
            if let Err(err) = block(me, &[&self.changed], deadline, ready) {
                return if got.len > 0 { Ok(got) } else { Err(err) };
            }
        }
    }

    fn recv_udp(
        &self,
        me: &Arc<Task>,
        out: &mut [u8],
        flags: Flags,
        deadline: Option<u64>,
    ) -> Result<Received, u32> {
        loop {
            let (ids, remote) = {
                let mut state = self.state.lock();
                self.autobind(&mut state)?;
                let ids = match &state.phase {
                    Phase::Datagram(ids) => ids.clone(),
                    _ => Vec::new(),
                };
                (ids, state.remote)
            };
            let got = net::with(|net| {
                for &id in &ids {
                    let s = net.socket::<udp::Socket>(id).0;
                    while s.can_recv() {
                        let result = if flags.peek {
                            s.peek().map(|(data, meta)| (data, meta.endpoint))
                        } else {
                            s.recv().map(|(data, meta)| (data, meta.endpoint))
                        };
                        let Ok((data, from)) = result else {
                            break;
                        };
                        let from = (ipv4(from.addr), from.port);
                        if remote.is_some_and(|r| r != from) {
                            if flags.peek {
                                // Not ours: take it out so the next one can be looked at.
                                let _ = s.recv();
                            }
                            continue;
                        }
                        let n = out.len().min(data.len());
                        out[..n].copy_from_slice(&data[..n]);
                        return Some(Received {
                            len: n,
                            full_len: data.len(),
                            from: Some(Address::Inet(from.0, from.1)),
                            rights: Vec::new(),
                        });
                    }
                }
                None
            })
            .flatten();
            if let Some(got) = got {
                return Ok(got);
            }
            if flags.nonblock {
                return Err(e::EAGAIN);
            }
            let ready = || {
                net::with(|net| {
                    ids.iter()
                        .any(|&id| net.socket::<udp::Socket>(id).0.can_recv())
                })
                .unwrap_or(true)
            };
            block(me, &[&self.changed], deadline, ready)?;
        }
    }

    /// `shutdown`: writing ends with a FIN; reading ends here (later reads return 0).
    pub fn shutdown(&self, read: bool, write: bool) -> Result<(), u32> {
        if self.ty == Type::Datagram {
            let mut state = self.state.lock();
            state.read_shut |= read;
            state.write_shut |= write;
            return Ok(());
        }
        let Some(id) = self.connection() else {
            return Err(e::ENOTCONN);
        };
        {
            let mut state = self.state.lock();
            state.read_shut |= read;
            state.write_shut |= write;
        }
        if write {
            net::with(|net| net.socket::<tcp::Socket>(id).0.close());
            flush();
        }
        self.changed.wake_all();
        Ok(())
    }

    /// `getsockname`.
    pub fn local(&self) -> Address {
        let state = self.state.lock();
        let endpoint = match state.phase {
            Phase::Connected(id) | Phase::Connecting(id) => {
                net::with(|net| net.socket::<tcp::Socket>(id).0.local_endpoint()).flatten()
            }
            _ => None,
        };
        match (endpoint, state.local) {
            (Some(ep), _) => Address::Inet(ipv4(ep.addr), ep.port),
            (None, Some((ip, port))) => Address::Inet(ip, port),
            (None, None) => Address::Inet(Ipv4Addr::UNSPECIFIED, 0),
        }
    }

    /// `getpeername`.
    pub fn peer(&self) -> Result<Address, u32> {
        if self.ty == Type::Datagram {
            let state = self.state.lock();
            return state
                .remote
                .map(|(ip, port)| Address::Inet(ip, port))
                .ok_or(e::ENOTCONN);
        }
        let id = self.connection().ok_or(e::ENOTCONN)?;
        net::with(|net| net.socket::<tcp::Socket>(id).0.remote_endpoint())
            .flatten()
            .map(|ep| Address::Inet(ipv4(ep.addr), ep.port))
            .ok_or(e::ENOTCONN)
    }

    /// Takes the pending error (`SO_ERROR`).
    pub fn take_error(&self) -> u32 {
        let mut state = self.state.lock();
        self.refresh(&mut state);
        core::mem::take(&mut state.error)
    }

    /// Whether it listens.
    pub fn listening(&self) -> bool {
        matches!(self.state.lock().phase, Phase::Listening { .. })
    }

    /// Bytes waiting to be read.
    pub fn available(&self) -> usize {
        let state = self.state.lock();
        match &state.phase {
            Phase::Connected(id) => {
                net::with(|net| net.socket::<tcp::Socket>(*id).0.recv_queue()).unwrap_or(0)
            }
            Phase::Datagram(ids) => net::with(|net| {
                ids.iter()
                    .find_map(|&id| {
                        net.socket::<udp::Socket>(id)
                            .0
                            .peek()
                            .ok()
                            .map(|(d, _)| d.len())
                    })
                    .unwrap_or(0)
            })
            .unwrap_or(0),
            _ => 0,
        }
    }

    /// Readiness as Linux's `tcp_poll` and `udp_poll` report it.
    pub fn readiness(&self) -> u16 {
        let mut state = self.state.lock();
        self.refresh(&mut state);
        let err = if state.error != 0 { bits::ERR } else { 0 };
        let (read_shut, write_shut) = (state.read_shut, state.write_shut);
        match &state.phase {
            Phase::Idle if self.ty == Type::Stream => {
                // Never connected, or a connect that failed.
                let failed = if err != 0 {
                    bits::IN | bits::RDHUP | bits::OUT
                } else {
                    bits::OUT
                };
                failed | bits::HUP | err
            }
            Phase::Idle => bits::OUT,
            Phase::Connecting(_) => err,
            Phase::Listening(pool) => {
                let pool = Arc::clone(pool);
                drop(state);
                let any = net::with(|net| pool.lock().has_established(net)).unwrap_or(false);
                if any { bits::IN } else { 0 }
            }
            Phase::Connected(id) => {
                let id = *id;
                net::with(|net| {
                    let s = net.socket::<tcp::Socket>(id).0;
                    let peer_done = !s.may_recv() || read_shut;
                    let mut mask = err;
                    if s.can_recv() || peer_done {
                        mask |= bits::IN;
                    }
                    if peer_done {
                        mask |= bits::RDHUP;
                    }
                    if s.can_send() || !s.may_send() || write_shut {
                        mask |= bits::OUT;
                    }
                    if s.state() == tcp::State::Closed
                        || (peer_done && (!s.may_send() || write_shut))
                    {
                        mask |= bits::HUP;
                    }
                    mask
                })
                .unwrap_or(bits::HUP)
            }
            Phase::Datagram(ids) => {
                let readable = net::with(|net| {
                    ids.iter()
                        .any(|&id| net.socket::<udp::Socket>(id).0.can_recv())
                })
                .unwrap_or(false);
                (if readable { bits::IN } else { 0 }) | bits::OUT | err
            }
        }
    }

    /// Its queue.
    pub fn wait_queues<'a>(&'a self, out: &mut Vec<&'a WaitQueue>) {
        out.push(&self.changed);
    }
}
