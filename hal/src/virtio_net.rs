//! virtio-net over the modern PCI transport, with the `virtio-drivers` crate.
//!
//! The platform side (DMA through bounce buffers, register windows checked against their
//! BARs, configuration access bound to one function) is shared with virtio-blk in
//! [`crate::virtio`]; this module wraps the crate's [`VirtIONet`] in [`VirtioNet`], whose
//! calls are all safe and copy frames in and out, so the network stack never holds a
//! buffer the device can still write.
//!
//! Receive buffers are the crate's: a queue's worth posted at start and recycled after each
//! frame is copied out. Sending waits for the device to take the frame (the crate's blocking
//! send; QEMU completes it at once). Only the receive queue interrupts, through MSI-X
//! entry 0: transmit completions are never waited for by interrupt.

use alloc::boxed::Box;
use core::fmt;

use virtio_drivers::{
    device::net::VirtIONet,
    transport::{
        DeviceType, Transport,
        pci::{
            PciTransport,
            bus::{DeviceFunction, PciRoot},
        },
    },
};

use crate::{
    pci::{self, Address, Msix, PciDevice},
    trap::Vector,
    virtio::{BlkError, OwnConfig, VENDOR, VirtioHal, common_config, premap, set_queue_vector},
};

/// The modern (virtio 1.0) network device's PCI device id.
pub const NET_DEVICE: u16 = 0x1041;
/// The transitional network device's id.
pub const NET_DEVICE_TRANSITIONAL: u16 = 0x1000;
/// Receive and transmit queue size.
const QUEUE_SIZE: usize = 16;
/// Bytes of each receive buffer: a whole Ethernet frame (1514) plus the virtio header, with
/// room to spare.
const RX_BUFFER: usize = 2048;
/// The largest frame [`VirtioNet::send`] takes (Ethernet header + 1500-byte MTU).
pub const MAX_FRAME: usize = 1514;
/// The receive queue's index.
const RECEIVE_QUEUE: u16 = 0;

/// Why a virtio-net operation failed.
pub type NetError = BlkError;

/// A virtio network device: its PCI function, the crate's driver and (once routed) MSI-X.
pub struct VirtioNet {
    net: Box<VirtIONet<VirtioHal, PciTransport, QUEUE_SIZE>>,
    device: &'static PciDevice,
    msix: Option<Msix>,
}

impl fmt::Debug for VirtioNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtioNet")
            .field("address", &self.device.info().address)
            .field("mac", &self.mac())
            .finish()
    }
}

impl VirtioNet {
    /// Opens the virtio network device at `address`, negotiates features and posts the
    /// receive buffers. The `PciDevice` stays open for good, as for virtio-blk.
    pub fn open(address: Address) -> Result<Self, NetError> {
        let device = pci::open(address)?;
        let info = device.info();
        if info.vendor != VENDOR || !matches!(info.device, NET_DEVICE | NET_DEVICE_TRANSITIONAL) {
            return Err(BlkError::Device("not a virtio network device"));
        }
        let device: &'static PciDevice = Box::leak(Box::new(device));
        let mut root = PciRoot::new(OwnConfig { address, device });
        let function = DeviceFunction {
            bus: address.bus,
            device: address.device,
            function: address.function,
        };
        premap(device)?;
        device.set_memory_decode(false)?;
        let transport = PciTransport::new::<VirtioHal, _>(&mut root, function).map_err(|e| {
            log::warn!("virtio {address}: {e}");
            BlkError::Device("the PCI transport is unusable")
        })?;
        if transport.device_type() != DeviceType::Network {
            return Err(BlkError::Device("not a virtio network device"));
        }
        device.enable_memory_and_dma()?;
        let net = Box::new(VirtIONet::new(transport, RX_BUFFER).map_err(|e| {
            log::warn!("virtio {address}: {e}");
            BlkError::Device("the device refused initialisation")
        })?);
        Ok(Self {
            net,
            device,
            msix: None,
        })
    }

    /// The PCI function.
    pub fn address(&self) -> Address {
        self.device.info().address
    }

    /// The device's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.net.mac_address()
    }

    /// Makes the receive queue interrupt through MSI-X entry 0 on `vector` at CPU `cpu`.
    pub fn use_interrupt(&mut self, vector: &Vector, cpu: usize) -> Result<(), NetError> {
        let msix = match self.msix.take() {
            Some(msix) => msix,
            None => self.device.enable_msix()?,
        };
        let routed = msix.route(0, vector, cpu);
        self.msix = Some(msix);
        routed?;
        set_queue_vector(&common_config(self.device)?, RECEIVE_QUEUE, 0)?;
        self.net.enable_interrupts();
        Ok(())
    }

    /// Whether a received frame is waiting.
    pub fn can_receive(&self) -> bool {
        self.net.can_recv()
    }

    /// Copies the next received frame into `buf` (truncating a longer one) and gives its
    /// buffer back to the device; `None` if nothing has arrived.
    pub fn receive(&mut self, buf: &mut [u8]) -> Option<usize> {
        let rx = self.net.receive().ok()?;
        let packet = rx.packet();
        let len = packet.len().min(buf.len());
        buf[..len].copy_from_slice(&packet[..len]);
        if let Err(e) = self.net.recycle_rx_buffer(rx) {
            log::warn!("virtio-net {}: receive buffer lost: {e}", self.address());
        }
        Some(len)
    }

    /// Whether the transmit queue has room.
    pub fn can_send(&self) -> bool {
        self.net.can_send()
    }

    /// Sends one Ethernet frame (without the virtio header), waiting until the device has
    /// taken it.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), NetError> {
        if frame.is_empty() || frame.len() > MAX_FRAME {
            return Err(BlkError::BadLength(frame.len()));
        }
        let mut tx = self.net.new_tx_buffer(frame.len());
        tx.packet_mut().copy_from_slice(frame);
        Ok(self.net.send(tx)?)
    }

    /// Acknowledges the device's interrupt (reads the ISR).
    pub fn ack_interrupt(&mut self) {
        let _ = self.net.ack_interrupt();
    }
}
