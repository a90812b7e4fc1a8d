//! The network: smoltcp on the virtio-net card (`eth0`) and a loopback interface (`lo`).
//!
//! One [`Net`] behind one lock owns everything smoltcp keeps: each interface with its own
//! [`SocketSet`] (an interface polls every socket of its set, so a socket lives in the set of
//! the interface it talks through, and loopback traffic never leaks onto the wire), the DHCP
//! client, and a [`WaitQueue`] per socket for the blocking calls the sockets layer will make.
//! After every poll that changed socket state, every socket's queue is woken and each waiter
//! checks its own condition (as pipes do).
//!
//! Addresses: DHCP (smoltcp's client) unless the command line gives `ip=ADDR/PREFIX` and
//! optionally `gw=ADDR`, as a static configuration; `gw=` alone is the gateway when the lease
//! has none (QEMU's DHCP server sends no router option under `restrict=on`). Polling: a
//! kernel task polls when the card's receive queue interrupts (MSI-X; the handler only
//! counts and wakes the task) and at each deadline smoltcp asks for, at the latest every
//! [`POLL_NS`]. Callers that wait for the network (the ktests,
//! later blocking socket calls) may call [`poll`] themselves.

mod nic;
pub mod socket;
#[cfg(feature = "tests")]
mod tests;

use alloc::{sync::Arc, vec::Vec};
use core::{
    net::Ipv4Addr,
    sync::atomic::{AtomicU64, Ordering},
};

use hal::trap::Vector;
pub use nic::Counters;
use nic::Nic;
use smoltcp::{
    iface::{Config, Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet},
    phy::{Loopback, Medium},
    socket::{AnySocket, dhcpv4},
    time::Instant,
    wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Cidr},
};
use spin::{Mutex, Once};

use crate::sched::WaitQueue;

/// Sockets an interface's set has room for before it grows.
const SOCKET_SLOTS: usize = 256;
/// The longest the poll task sleeps between polls.
const POLL_NS: u64 = 10_000_000;
/// How long boot waits for a DHCP lease before going on (the lease may still come later).
const DHCP_BOOT_WAIT_NS: u64 = 3_000_000_000;

/// Which interface a socket talks through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// The network card.
    Eth,
    /// 127.0.0.0/8.
    Loopback,
}

/// A socket in the stack: its interface and smoltcp handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketId {
    /// The interface whose set holds it.
    pub link: Link,
    handle: SocketHandle,
}

/// How eth0 got its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A DHCP lease.
    Dhcp,
    /// `ip=` on the command line.
    Static,
}

/// eth0's address configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Config {
    /// Address and prefix.
    pub address: Ipv4Cidr,
    /// Default gateway.
    pub gateway: Option<Ipv4Addr>,
    /// Where it came from.
    pub source: Source,
}

/// One interface and its sockets.
struct Iface {
    iface: Interface,
    sockets: SocketSet<'static>,
    waiters: Vec<(SocketHandle, Arc<WaitQueue>)>,
}

impl Iface {
    fn new(iface: Interface) -> Self {
        Self {
            iface,
            // Room for a busy server's listeners and connections from the start (the set
            // never shrinks, so growth under one program would look like a leak after it).
            sockets: SocketSet::new(Vec::with_capacity(SOCKET_SLOTS)),
            waiters: Vec::with_capacity(SOCKET_SLOTS),
        }
    }

    fn wake_all(&self) {
        for (_, queue) in &self.waiters {
            queue.wake_all();
        }
    }
}

/// eth0: the card, its interface and its address.
struct Eth {
    nic: Nic,
    net: Iface,
    dhcp: Option<SocketHandle>,
    config: Option<Ipv4Config>,
    /// `gw=` without `ip=`: the gateway when the lease names none (slirp's DHCP server
    /// leaves the router option out under `restrict=on`).
    fallback_gw: Option<Ipv4Addr>,
    vector: Option<Vector>,
}

/// Everything the network stack holds.
pub struct Net {
    eth: Option<alloc::boxed::Box<Eth>>,
    lo_device: Loopback,
    lo: Iface,
}

static NET: Once<Mutex<alloc::boxed::Box<Net>>> = Once::new();
/// Receive interrupts taken (the poll task compares it with what it has seen).
static RX_INTERRUPTS: AtomicU64 = AtomicU64::new(0);
/// Woken by the card's receive interrupt; the poll task waits on it.
static RX_QUEUE: WaitQueue = WaitQueue::new();

/// The card's receive interrupt: count and wake the poll task (no locks held long, no
/// logging, as every handler).
fn on_receive(_frame: &hal::trap::TrapFrame) {
    RX_INTERRUPTS.fetch_add(1, Ordering::Relaxed);
    RX_QUEUE.wake_all();
}
/// Woken whenever a poll changed socket state (for waiters on no socket in particular).
static CHANGED: WaitQueue = WaitQueue::new();

/// smoltcp's clock: the monotonic clock.
fn now() -> Instant {
    Instant::from_micros((crate::time::now_ns() / 1000) as i64)
}

/// Parses `ip=10.0.2.15/24` and `gw=10.0.2.2`; `None` (with a warning) if malformed.
pub fn parse_static(ip: &str, gw: Option<&str>) -> Option<(Ipv4Cidr, Option<Ipv4Addr>)> {
    let (addr, prefix) = ip.split_once('/').unwrap_or((ip, "24"));
    let addr: Ipv4Addr = addr.parse().ok()?;
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
    let gateway = match gw {
        Some(gw) => Some(gw.parse().ok()?),
        None => None,
    };
    Some((Ipv4Cidr::new(addr, prefix), gateway))
}

/// Brings up loopback and the first virtio-net card, configures eth0 (statically from
/// `ip=`/`gw=`, else by DHCP, waiting a little for the lease) and starts the poll task.
pub fn init(ip: Option<&str>, gw: Option<&str>) {
    let statics = ip.and_then(|ip| {
        let parsed = parse_static(ip, gw);
        if parsed.is_none() {
            log::warn!("net: ip={ip} gw={gw:?} is not ADDR/PREFIX and ADDR: using DHCP");
        }
        parsed
    });
    let fallback_gw = if statics.is_none() {
        gw.and_then(|gw| gw.parse().ok())
    } else {
        None
    };
    NET.call_once(|| Mutex::new(Net::new(statics, fallback_gw)));
    if let Some(net) = NET.get() {
        let has_dhcp = net.lock().eth.as_ref().is_some_and(|e| e.config.is_none());
        if has_dhcp {
            let deadline = crate::time::now_ns() + DHCP_BOOT_WAIT_NS;
            let got = crate::irq::wait_until(DHCP_BOOT_WAIT_NS, || {
                poll();
                eth_config().is_some() || crate::time::now_ns() > deadline
            });
            if !got || eth_config().is_none() {
                log::warn!("net: eth0: no DHCP lease yet (still asking)");
            }
        }
    }
    if let Err(e) = crate::sched::spawn(poll_task) {
        log::error!("net: cannot start the poll task: {e:?}");
    }
}

/// Polls, then sleeps until a receive interrupt or smoltcp's next deadline (at most
/// [`POLL_NS`]).
fn poll_task(me: Arc<crate::sched::Task>) {
    log::debug!("net: poll task running");
    let mut reported = false;
    loop {
        let seen = RX_INTERRUPTS.load(Ordering::Relaxed);
        if seen > 0 && !reported {
            log::debug!("net: receive interrupts arrive ({seen} so far)");
            reported = true;
        }
        poll();
        let delay = with(|net| net.poll_delay_ns()).unwrap_or(POLL_NS);
        let deadline = crate::time::now_ns() + delay.clamp(1_000_000, POLL_NS);
        crate::sched::wait(&me, &[&RX_QUEUE], Some(deadline), || {
            RX_INTERRUPTS.load(Ordering::Relaxed) != seen
        });
        me.clear_interrupt();
    }
}

/// Runs `f` on the stack (`None` before [`init`]).
pub fn with<T>(f: impl FnOnce(&mut Net) -> T) -> Option<T> {
    NET.get().map(|net| f(&mut net.lock()))
}

/// Processes what has arrived and what is due on every interface; returns whether socket
/// state changed (then every socket's queue has been woken).
pub fn poll() -> bool {
    with(|net| net.poll()).unwrap_or(false)
}

/// eth0's address, once it has one.
pub fn eth_config() -> Option<Ipv4Config> {
    with(|net| net.eth.as_ref().and_then(|e| e.config)).flatten()
}

/// eth0's MAC address, if there is a card.
pub fn eth_mac() -> Option<[u8; 6]> {
    with(|net| net.eth.as_ref().map(|e| e.nic.mac())).flatten()
}

/// eth0's counters, if there is a card.
pub fn eth_counters() -> Option<Counters> {
    with(|net| net.eth.as_ref().map(|e| e.nic.counters())).flatten()
}

/// eth0's counters in the layout of Linux's `/proc/net/dev` (its two header lines, then
/// one line per interface; the columns Evergreen does not track read 0). For the procfs
/// file a later slice adds. `lo` is not listed yet: the loopback device is not counted.
pub fn proc_net_dev() -> alloc::string::String {
    let mut text = alloc::string::String::from(
        "Inter-|   Receive                                                |  Transmit\n \
         face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets \
         errs drop fifo colls carrier compressed\n",
    );
    if let Some(c) = eth_counters() {
        text.push_str(&alloc::format!(
            "  eth0: {:>7} {:>7} {:>4} {:>4} {:>4} {:>5} {:>10} {:>9} {:>8} {:>7} {:>4} {:>4} \
             {:>4} {:>5} {:>7} {:>10}\n",
            c.rx_bytes,
            c.rx_packets,
            0,
            c.rx_dropped,
            0,
            0,
            0,
            0,
            c.tx_bytes,
            c.tx_packets,
            c.tx_errors,
            0,
            0,
            0,
            0,
            0
        ));
    }
    text
}

fn format_mac(mac: [u8; 6]) -> alloc::string::String {
    alloc::format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        mac[0],
        mac[1],
        mac[2],
        mac[3],
        mac[4],
        mac[5]
    )
}

impl Net {
    /// Built in place on the heap: smoltcp's interfaces are large for a kernel stack.
    fn new(
        statics: Option<(Ipv4Cidr, Option<Ipv4Addr>)>,
        fallback_gw: Option<Ipv4Addr>,
    ) -> alloc::boxed::Box<Self> {
        let lo_device = Loopback::new(Medium::Ip);
        let mut net = alloc::boxed::Box::new(Self {
            eth: None,
            lo_device,
            lo: Iface::new(Interface::new(
                Config::new(HardwareAddress::Ip),
                &mut Loopback::new(Medium::Ip),
                now(),
            )),
        });
        net.lo.iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(Ipv4Addr::LOCALHOST.into(), 8));
        });
        log::debug!("net: lo 127.0.0.1/8");
        net.eth = open_eth(statics, fallback_gw);
        net
    }

    fn poll(&mut self) -> bool {
        let now = now();
        let mut changed = false;
        if let Some(eth) = &mut self.eth {
            eth.nic.ack_interrupt();
            eth.net.iface.poll_maintenance(now);
        }
        // Frames one at a time, so listening sockets are topped up between connection
        // requests (a burst of SYNs would otherwise meet RSTs once the idle listeners ran
        // out).
        while let Some(eth) = &mut self.eth {
            match eth
                .net
                .iface
                .poll_ingress_single(now, &mut eth.nic, &mut eth.net.sockets)
            {
                PollIngressSingleResult::None => break,
                PollIngressSingleResult::PacketProcessed => {}
                PollIngressSingleResult::SocketStateChanged => {
                    changed = true;
                    socket::inet::refill_pools(self);
                }
            }
        }
        if let Some(eth) = &mut self.eth {
            while eth
                .net
                .iface
                .poll_egress(now, &mut eth.nic, &mut eth.net.sockets)
                == PollResult::SocketStateChanged
            {
                changed = true;
            }
            eth.dhcp_events();
            if changed {
                eth.net.wake_all();
            }
        }
        let lo_changed = self
            .lo
            .iface
            .poll(now, &mut self.lo_device, &mut self.lo.sockets)
            == PollResult::SocketStateChanged;
        if lo_changed {
            self.lo.wake_all();
        }
        if changed || lo_changed {
            CHANGED.wake_all();
        }
        socket::inet::reap(self);
        changed || lo_changed
    }

    fn poll_delay_ns(&mut self) -> u64 {
        let now = now();
        let mut delay = POLL_NS;
        if let Some(eth) = &mut self.eth
            && let Some(d) = eth.net.iface.poll_delay(now, &eth.net.sockets)
        {
            delay = delay.min(d.total_micros() * 1000);
        }
        if let Some(d) = self.lo.iface.poll_delay(now, &self.lo.sockets) {
            delay = delay.min(d.total_micros() * 1000);
        }
        delay
    }

    fn iface(&mut self, link: Link) -> Option<&mut Iface> {
        match link {
            Link::Eth => self.eth.as_mut().map(|e| &mut e.net),
            Link::Loopback => Some(&mut self.lo),
        }
    }

    /// Adds `socket` to `link`'s set with a wait queue of its own; `None` without that link.
    pub fn add<S: AnySocket<'static>>(&mut self, link: Link, socket: S) -> Option<SocketId> {
        self.add_waking(link, socket, Arc::new(WaitQueue::new()))
    }

    /// Adds `socket` to `link`'s set, waking `queue` when its state may have changed (a
    /// descriptor's sockets on several interfaces share one queue).
    pub fn add_waking<S: AnySocket<'static>>(
        &mut self,
        link: Link,
        socket: S,
        queue: Arc<WaitQueue>,
    ) -> Option<SocketId> {
        let iface = self.iface(link)?;
        let handle = iface.sockets.add(socket);
        iface.waiters.push((handle, queue));
        Some(SocketId { link, handle })
    }

    /// Whether `link` exists (eth0 needs a card).
    pub fn has_link(&mut self, link: Link) -> bool {
        self.iface(link).is_some()
    }

    /// Removes a socket (dropping its buffers; a TCP connection is not closed gracefully).
    pub fn remove(&mut self, id: SocketId) {
        if let Some(iface) = self.iface(id.link) {
            iface.sockets.remove(id.handle);
            iface.waiters.retain(|(h, _)| *h != id.handle);
        }
    }

    /// The socket `id` with its interface's context (for `connect`).
    ///
    /// # Panics
    /// If `id` is not a socket of type `S` in the stack (ids come only from [`Self::add`]).
    pub fn socket<S: AnySocket<'static>>(
        &mut self,
        id: SocketId,
    ) -> (&mut S, &mut smoltcp::iface::Context) {
        let iface = self
            .iface(id.link)
            .expect("a SocketId's interface exists while the socket does");
        (iface.sockets.get_mut::<S>(id.handle), iface.iface.context())
    }

    /// The queue woken when socket `id`'s state may have changed.
    pub fn queue(&mut self, id: SocketId) -> Option<Arc<WaitQueue>> {
        let iface = self.iface(id.link)?;
        iface
            .waiters
            .iter()
            .find(|(h, _)| *h == id.handle)
            .map(|(_, q)| Arc::clone(q))
    }

    /// Queues a frame on eth0's receive path as if the card had received it (tests).
    #[cfg_attr(
        not(feature = "tests"),
        expect(dead_code, reason = "used by the ktests")
    )]
    pub fn inject(&mut self, frame: &[u8]) -> bool {
        match &mut self.eth {
            Some(eth) => {
                eth.nic.inject(frame);
                true
            }
            None => false,
        }
    }
}

/// Opens the first virtio-net card as eth0; `None` (logged) without one.
fn open_eth(
    statics: Option<(Ipv4Cidr, Option<Ipv4Addr>)>,
    fallback_gw: Option<Ipv4Addr>,
) -> Option<alloc::boxed::Box<Eth>> {
    let info = hal::pci::devices().iter().find(|d| {
        d.vendor == hal::virtio::VENDOR
            && matches!(
                d.device,
                hal::virtio_net::NET_DEVICE | hal::virtio_net::NET_DEVICE_TRANSITIONAL
            )
    });
    let Some(info) = info else {
        log::debug!("net: no network card");
        return None;
    };
    let hw = match hal::virtio_net::VirtioNet::open(info.address) {
        Ok(hw) => hw,
        Err(e) => {
            log::warn!("virtio-net {}: {e}", info.address);
            return None;
        }
    };
    let mut nic = Nic::new(hw);
    let cpu = hal::percpu::current_index();
    let vector =
        hal::trap::allocate(on_receive).and_then(|v| match nic.hw().use_interrupt(&v, cpu) {
            Ok(()) => Some(v),
            Err(e) => {
                log::warn!("virtio-net {}: no interrupt ({e}): polled", info.address);
                None
            }
        });
    let mac = nic.mac();
    log::debug!(
        "virtio-net {}: eth0 {}, {}",
        info.address,
        format_mac(mac),
        match &vector {
            Some(v) => alloc::format!("MSI-X vector {:#x} on cpu {cpu}", v.number()),
            None => "polled".into(),
        }
    );
    let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
    config.random_seed = crate::time::now_ns()
        ^ u64::from_le_bytes([0, 0, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]]);
    let iface = Interface::new(config, &mut nic, now());
    let mut eth = alloc::boxed::Box::new(Eth {
        nic,
        net: Iface::new(iface),
        dhcp: None,
        config: None,
        fallback_gw,
        vector,
    });
    match statics {
        Some((address, gateway)) => eth.configure(Ipv4Config {
            address,
            gateway,
            source: Source::Static,
        }),
        None => eth.dhcp = Some(eth.net.sockets.add(dhcpv4::Socket::new())),
    }
    Some(eth)
}

impl Eth {
    /// Applies what the DHCP client reports.
    fn dhcp_events(&mut self) {
        let Some(handle) = self.dhcp else {
            return;
        };
        let event = self.net.sockets.get_mut::<dhcpv4::Socket>(handle).poll();
        match event {
            None => {}
            Some(dhcpv4::Event::Configured(lease)) => {
                let config = Ipv4Config {
                    address: lease.address,
                    gateway: lease.router.or(self.fallback_gw),
                    source: Source::Dhcp,
                };
                if self.config != Some(config) {
                    self.configure(config);
                }
            }
            // The client's first event is a Deconfigured: only a held lease can be lost.
            Some(dhcpv4::Event::Deconfigured) => {
                if self.config.is_some() {
                    log::warn!("net: eth0: DHCP lease lost");
                }
                self.config = None;
                self.net.iface.update_ip_addrs(|a| a.clear());
                self.net.iface.routes_mut().remove_default_ipv4_route();
            }
        }
    }

    fn configure(&mut self, config: Ipv4Config) {
        self.net.iface.update_ip_addrs(|addrs| {
            addrs.clear();
            let _ = addrs.push(IpCidr::Ipv4(config.address));
        });
        let routes = self.net.iface.routes_mut();
        routes.remove_default_ipv4_route();
        if let Some(gw) = config.gateway {
            let _ = routes.add_default_ipv4_route(gw);
        }
        self.config = Some(config);
        log::info!(
            "net: eth0 {} {}{} ({})",
            format_mac(self.nic.mac()),
            config.address,
            match config.gateway {
                Some(gw) => alloc::format!(" via {gw}"),
                None => alloc::string::String::new(),
            },
            match config.source {
                Source::Dhcp => "DHCP",
                Source::Static => "static",
            }
        );
        let _ = &self.vector;
    }
}
