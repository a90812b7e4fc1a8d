//! Network ktests. They need the runner's network cases (`kernel-tests`, `net`): a card on
//! QEMU's restricted user network and the host echo server at 10.0.2.100:7.

use alloc::{vec, vec::Vec};
use core::net::Ipv4Addr;

use smoltcp::{
    socket::{icmp, tcp, udp},
    wire::{Icmpv4Packet, Icmpv4Repr, IpAddress},
};

use super::{Link, Net, SocketId, Source, poll, with};
use crate::{
    check,
    ktest::{TestResult, ktest},
};

/// Where the runner's echo server appears to the guest.
const ECHO: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 0, 2, 100), 7);
/// How long one test waits for the network.
const TIMEOUT_NS: u64 = 60_000_000_000;

/// Polls until `done` holds on the stack or the timeout passes; returns whether it held.
fn poll_until(mut done: impl FnMut(&mut Net) -> bool) -> bool {
    crate::irq::wait_until(TIMEOUT_NS, || {
        poll();
        with(&mut done).unwrap_or(false)
    })
}

fn tcp_socket(size: usize) -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; size]),
        tcp::SocketBuffer::new(vec![0; size]),
    )
}

/// A pattern no two nearby offsets share (a shifted or repeated chunk shows).
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Sends `data` on `out` and reads as many bytes back on `back` (which may be `out`).
fn transfer(out: SocketId, back: SocketId, data: &[u8]) -> Result<Vec<u8>, alloc::string::String> {
    let (mut sent, mut received) = (0, Vec::with_capacity(data.len()));
    let ok = poll_until(|net| {
        let (s, _) = net.socket::<tcp::Socket>(out);
        if sent < data.len() && s.can_send() {
            sent += s.send_slice(&data[sent..]).unwrap_or(0);
        }
        let (r, _) = net.socket::<tcp::Socket>(back);
        while r.can_recv() {
            let got = r.recv(|b| (b.len(), b.to_vec())).unwrap_or_default();
            if got.is_empty() {
                break;
            }
            received.extend_from_slice(&got);
        }
        received.len() >= data.len()
    });
    if !ok {
        return Err(alloc::format!(
            "{sent} of {} bytes sent, {} received back",
            data.len(),
            received.len()
        ));
    }
    Ok(received)
}

/// slirp's DHCP server gives the first client 10.0.2.15/24; under `restrict=on` it names no
/// router, so the gateway is the command line's `gw=` (the runner's network cases pass
/// `gw=10.0.2.2`) or none.
#[ktest("net-dhcp-lease")]
fn dhcp_lease() -> TestResult {
    check!(super::eth_mac().is_some(), "no network card");
    check!(
        poll_until(|net| net.eth.as_ref().is_some_and(|e| e.config.is_some())),
        "no DHCP lease"
    );
    let config = super::eth_config().ok_or("no configuration")?;
    check!(config.source == Source::Dhcp, "source {:?}", config.source);
    check!(
        config.address.address() == Ipv4Addr::new(10, 0, 2, 15)
            && config.address.prefix_len() == 24,
        "address {}",
        config.address
    );
    let expected = crate::cmdline::Options::parse(hal::boot::cmdline(), |_| {})
        .gw
        .and_then(|gw| gw.parse::<Ipv4Addr>().ok());
    check!(
        config.gateway == expected,
        "gateway {:?}, expected {expected:?}",
        config.gateway
    );
    Ok(())
}

/// A TCP connection through `guestfwd` to the host's echo server: 256 KiB out, the same
/// bytes back, then a clean close.
#[ktest("net-tcp-echo-host")]
fn tcp_echo_host() -> TestResult {
    check!(
        poll_until(|net| net.eth.as_ref().is_some_and(|e| e.config.is_some())),
        "no address"
    );
    let id = with(|net| net.add(Link::Eth, tcp_socket(64 * 1024)))
        .flatten()
        .ok_or("no eth0")?;
    let result = (|| {
        with(|net| {
            let (s, cx) = net.socket::<tcp::Socket>(id);
            s.connect(cx, (IpAddress::Ipv4(ECHO.0), ECHO.1), 49_152)
        })
        .ok_or("no stack")?
        .map_err(|e| alloc::format!("connect: {e}"))?;
        check!(
            poll_until(|net| net.socket::<tcp::Socket>(id).0.may_send()),
            "not connected"
        );
        let data = pattern(256 * 1024);
        let back = transfer(id, id, &data)?;
        check!(back == data, "echoed bytes differ");
        Ok(())
    })();
    with(|net| {
        net.socket::<tcp::Socket>(id).0.abort();
    });
    poll();
    with(|net| net.remove(id));
    result
}

/// A listener and a client on 127.0.0.1 exchange 64 KiB each way.
#[ktest("net-tcp-loopback")]
fn tcp_loopback() -> TestResult {
    let (server, client) = with(|net| {
        let server = net.add(Link::Loopback, tcp_socket(16 * 1024));
        let client = net.add(Link::Loopback, tcp_socket(16 * 1024));
        (server, client)
    })
    .ok_or("no stack")?;
    let (server, client) = (server.ok_or("no lo")?, client.ok_or("no lo")?);
    let result = (|| {
        let queues = with(|net| (net.queue(server), net.queue(client))).ok_or("no stack")?;
        check!(
            matches!(&queues, (Some(a), Some(b)) if !alloc::sync::Arc::ptr_eq(a, b)),
            "each socket needs a wait queue of its own"
        );
        with(|net| net.socket::<tcp::Socket>(server).0.listen(5000))
            .ok_or("no stack")?
            .map_err(|e| alloc::format!("listen: {e}"))?;
        with(|net| {
            let (s, cx) = net.socket::<tcp::Socket>(client);
            s.connect(cx, (IpAddress::Ipv4(Ipv4Addr::LOCALHOST), 5000), 49_153)
        })
        .ok_or("no stack")?
        .map_err(|e| alloc::format!("connect: {e}"))?;
        check!(
            poll_until(|net| net.socket::<tcp::Socket>(client).0.may_send()
                && net.socket::<tcp::Socket>(server).0.may_send()),
            "not connected"
        );
        let data = pattern(64 * 1024);
        let there = transfer(client, server, &data)?;
        check!(there == data, "client to server bytes differ");
        let reply: Vec<u8> = data.iter().rev().copied().collect();
        let back = transfer(server, client, &reply)?;
        check!(back == reply, "server to client bytes differ");
        Ok(())
    })();
    with(|net| {
        net.remove(server);
        net.remove(client);
    });
    result
}

/// Echo requests to the gateway, which slirp answers itself.
fn ping_gateway() -> TestResult {
    let id = with(|net| {
        let socket = icmp::Socket::new(
            icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 1024]),
            icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 1024]),
        );
        net.add(Link::Eth, socket)
    })
    .flatten()
    .ok_or("no eth0")?;
    let gateway = IpAddress::Ipv4(Ipv4Addr::new(10, 0, 2, 2));
    let result = (|| {
        with(|net| {
            net.socket::<icmp::Socket>(id)
                .0
                .bind(icmp::Endpoint::Ident(0x4567))
        })
        .ok_or("no stack")?
        .map_err(|e| alloc::format!("bind: {e}"))?;
        let (mut sent, mut replied) = (false, false);
        let ok = poll_until(|net| {
            let (s, _) = net.socket::<icmp::Socket>(id);
            if !sent && s.can_send() {
                let repr = Icmpv4Repr::EchoRequest {
                    ident: 0x4567,
                    seq_no: 1,
                    data: b"evergreen",
                };
                if let Ok(buf) = s.send(repr.buffer_len(), gateway) {
                    let mut packet = Icmpv4Packet::new_unchecked(buf);
                    repr.emit(&mut packet, &Default::default());
                    sent = true;
                }
            }
            while let Ok((data, _)) = s.recv() {
                if let Ok(packet) = Icmpv4Packet::new_checked(data)
                    && packet.msg_type() == smoltcp::wire::Icmpv4Message::EchoReply
                    && packet.echo_ident() == 0x4567
                    && packet.data() == b"evergreen"
                {
                    replied = true;
                }
            }
            replied
        });
        check!(ok, "no echo reply from 10.0.2.2 (sent: {sent})");
        Ok(())
    })();
    with(|net| net.remove(id));
    result
}

#[ktest("net-icmp-ping-gateway")]
fn icmp_ping_gateway() -> TestResult {
    check!(
        poll_until(|net| net.eth.as_ref().is_some_and(|e| e.config.is_some())),
        "no address"
    );
    ping_gateway()
}

/// Malformed frames on the receive path are counted and dropped, and the stack still
/// answers afterwards (a ping of the gateway).
#[ktest("net-bad-frames-dropped")]
fn bad_frames_dropped() -> TestResult {
    check!(
        poll_until(|net| net.eth.as_ref().is_some_and(|e| e.config.is_some())),
        "no address"
    );
    let mac = super::eth_mac().ok_or("no card")?;
    let ether = |ethertype: [u8; 2], payload: &[u8]| {
        let mut f = Vec::new();
        f.extend_from_slice(&mac);
        f.extend_from_slice(&[0x52, 0x55, 10, 0, 2, 2]);
        f.extend_from_slice(&ethertype);
        f.extend_from_slice(payload);
        f
    };
    // An IPv4 header to 10.0.2.15 with protocol `proto`, total length `len`.
    let ipv4 = |proto: u8, len: u16, checksum_ok: bool, rest: &[u8]| {
        let mut h = vec![
            0x45,
            0,
            (len >> 8) as u8,
            len as u8,
            0,
            1,
            0,
            0,
            64,
            proto,
            0,
            0,
            10,
            0,
            2,
            2,
            10,
            0,
            2,
            15,
        ];
        if checksum_ok {
            let mut sum: u32 = h
                .chunks(2)
                .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
                .sum();
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            h[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        }
        h.extend_from_slice(rest);
        h
    };
    let bogus_tcp = [
        0x30, 0x39, 0x13, 0x88, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0xff, 0, 0, 0, 0, 0, 0,
    ];
    let frames: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0xff; 5],
        ether([0x08, 0x00], &[]),
        ether([0x08, 0x00], &[0x45, 0x00]),
        ether([0x08, 0x06], &[0, 1, 8, 0, 6]),
        ether([0x08, 0x00], &ipv4(6, 40, false, &bogus_tcp)),
        ether([0x08, 0x00], &ipv4(6, 40, true, &bogus_tcp)),
        ether([0x08, 0x00], &ipv4(6, 60000, true, &bogus_tcp)),
        ether(
            [0x08, 0x00],
            &ipv4(17, 28, true, &[0, 1, 0, 2, 0, 200, 0, 0]),
        ),
        ether([0x08, 0x00], &ipv4(1, 21, true, &[8])),
        ether([0x86, 0xdd], &[0x60; 30]),
        pattern(1514),
        pattern(3000),
    ];
    let before = super::eth_counters().ok_or("no counters")?;
    for frame in &frames {
        check!(
            with(|net| net.inject(frame)) == Some(true),
            "no eth0 to inject into"
        );
        poll();
    }
    let after = super::eth_counters().ok_or("no counters")?;
    check!(
        after.rx_packets >= before.rx_packets + frames.len() as u64,
        "{} frames received of {} injected",
        after.rx_packets - before.rx_packets,
        frames.len()
    );
    ping_gateway()
}

/// `/proc/net/dev`'s eth0 line carries the card's counters, which traffic moves.
#[ktest("net-proc-net-dev")]
fn proc_net_dev_counts() -> TestResult {
    check!(
        poll_until(|net| net.eth.as_ref().is_some_and(|e| e.config.is_some())),
        "no address"
    );
    let before = super::eth_counters().ok_or("no counters")?;
    ping_gateway()?;
    let after = super::eth_counters().ok_or("no counters")?;
    check!(
        after.tx_packets > before.tx_packets && after.rx_packets > before.rx_packets,
        "a ping moved no counter: {before:?} then {after:?}"
    );
    let text = super::proc_net_dev();
    let lines: Vec<&str> = text.lines().collect();
    check!(lines.len() == 3, "{} lines: {text}", lines.len());
    let fields: Vec<&str> = lines[2].split_ascii_whitespace().collect();
    check!(
        fields.len() == 17 && fields[0] == "eth0:",
        "eth0 line: {}",
        lines[2]
    );
    let rx_bytes: u64 = fields[1].parse().map_err(|_| "rx bytes")?;
    let tx_packets: u64 = fields[10].parse().map_err(|_| "tx packets")?;
    check!(
        rx_bytes >= after.rx_bytes && tx_packets >= after.tx_packets,
        "eth0 line {} behind the counters {after:?}",
        lines[2]
    );
    Ok(())
}

fn udp_socket() -> udp::Socket<'static> {
    udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 8192]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 8192]),
    )
}

/// A UDP datagram to 127.0.0.1 arrives whole with its sender, and the reply comes back.
/// (Through QEMU a UDP round trip to the host is not possible: `guestfwd` relays TCP only.)
#[ktest("net-udp-loopback")]
fn udp_loopback() -> TestResult {
    let ids = with(|net| {
        (
            net.add(Link::Loopback, udp_socket()),
            net.add(Link::Loopback, udp_socket()),
        )
    })
    .ok_or("no stack")?;
    let (a, b) = (ids.0.ok_or("no lo")?, ids.1.ok_or("no lo")?);
    let result = (|| {
        with(|net| {
            net.socket::<udp::Socket>(a).0.bind(6000)?;
            net.socket::<udp::Socket>(b).0.bind(6001)
        })
        .ok_or("no stack")?
        .map_err(|e| alloc::format!("bind: {e}"))?;
        let local = IpAddress::Ipv4(Ipv4Addr::LOCALHOST);
        let data = pattern(1200);
        with(|net| {
            net.socket::<udp::Socket>(a)
                .0
                .send_slice(&data, (local, 6001))
        })
        .ok_or("no stack")?
        .map_err(|e| alloc::format!("send: {e}"))?;
        let mut got = None;
        check!(
            poll_until(|net| {
                let (s, _) = net.socket::<udp::Socket>(b);
                if let Ok((bytes, meta)) = s.recv() {
                    got = Some((bytes.to_vec(), meta.endpoint.port));
                }
                got.is_some()
            }),
            "no datagram on port 6001"
        );
        let (bytes, from) = got.ok_or("no datagram")?;
        check!(
            bytes == data && from == 6000,
            "{} bytes from port {from}",
            bytes.len()
        );
        with(|net| {
            net.socket::<udp::Socket>(b)
                .0
                .send_slice(b"pong", (local, from))
        })
        .ok_or("no stack")?
        .map_err(|e| alloc::format!("reply: {e}"))?;
        let mut reply = Vec::new();
        check!(
            poll_until(|net| {
                if let Ok((bytes, _)) = net.socket::<udp::Socket>(a).0.recv() {
                    reply = bytes.to_vec();
                }
                !reply.is_empty()
            }),
            "no reply"
        );
        check!(reply == b"pong", "reply {reply:?}");
        Ok(())
    })();
    with(|net| {
        net.remove(a);
        net.remove(b);
    });
    result
}
