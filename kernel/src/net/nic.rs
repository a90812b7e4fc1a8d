//! The virtio-net card as a smoltcp [`Device`], with per-interface counters.
//!
//! Frames are copied out of the device's receive buffers (hal hands out copies only), so a
//! token owns its bytes and smoltcp may drop it unread. Test builds can queue frames to be
//! "received" before the card's own ([`Nic::inject`]): that is how malformed input reaches
//! the real receive path without a host tool.

use alloc::{collections::VecDeque, vec, vec::Vec};

use hal::virtio_net::{MAX_FRAME, VirtioNet};
use smoltcp::{
    phy::{self, Device, DeviceCapabilities, Medium},
    time::Instant,
};

/// Packet and byte counts of one interface, as `/proc/net/dev` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames refused before the stack saw them (too long for the MTU).
    pub rx_dropped: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames the device refused.
    pub tx_errors: u64,
}

/// The network card and what passed through it.
pub struct Nic {
    hw: VirtioNet,
    counters: Counters,
    /// Frames to deliver before the card's (tests only fill it).
    injected: VecDeque<Vec<u8>>,
}

impl Nic {
    /// Wraps an opened card.
    pub fn new(hw: VirtioNet) -> Self {
        Self {
            hw,
            counters: Counters::default(),
            injected: VecDeque::new(),
        }
    }

    /// The card's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.hw.mac()
    }

    /// Acknowledges the card's interrupt.
    pub fn ack_interrupt(&mut self) {
        self.hw.ack_interrupt();
    }

    /// The card itself (for interrupt routing).
    pub fn hw(&mut self) -> &mut VirtioNet {
        &mut self.hw
    }

    /// The counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Queues `frame` to be received as if it came from the wire.
    #[cfg_attr(
        not(feature = "tests"),
        expect(dead_code, reason = "used by the ktests")
    )]
    pub fn inject(&mut self, frame: &[u8]) {
        self.injected.push_back(frame.to_vec());
    }

    fn next_frame(&mut self) -> Option<Vec<u8>> {
        if let Some(frame) = self.injected.pop_front() {
            return Some(frame);
        }
        let mut buf = vec![0u8; MAX_FRAME + 64];
        let len = self.hw.receive(&mut buf)?;
        if len > MAX_FRAME {
            self.counters.rx_dropped += 1;
            return None;
        }
        buf.truncate(len);
        Some(buf)
    }
}

/// A received frame.
pub struct RxToken(Vec<u8>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

/// Room to send one frame.
pub struct TxToken<'a> {
    hw: &'a mut VirtioNet,
    counters: &'a mut Counters,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let result = f(&mut frame);
        match self.hw.send(&frame) {
            Ok(()) => {
                self.counters.tx_packets += 1;
                self.counters.tx_bytes += len as u64;
            }
            Err(_) => self.counters.tx_errors += 1,
        }
        result
    }
}

impl Device for Nic {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken, TxToken<'_>)> {
        let frame = self.next_frame()?;
        self.counters.rx_packets += 1;
        self.counters.rx_bytes += frame.len() as u64;
        Some((
            RxToken(frame),
            TxToken {
                hw: &mut self.hw,
                counters: &mut self.counters,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        if !self.hw.can_send() {
            return None;
        }
        Some(TxToken {
            hw: &mut self.hw,
            counters: &mut self.counters,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        caps.max_burst_size = Some(1);
        caps
    }
}
