//! Block devices: the virtio-blk disks on the PCI bus.
//!
//! [`init`] opens every virtio block device hal's PCI scan found, in PCI order, names them
//! as Linux does (`vda`, `vdb`, ...), routes each one's request queue to an MSI-X vector of
//! its own on the bootstrap CPU, and logs its size. Single requests wait by polling (they are
//! short and the crate's blocking calls spin on the used ring); batches keep several requests
//! in flight and wait for the device's interrupt between completions.

use alloc::{format, string::String, vec::Vec};

use hal::{
    trap::Vector,
    virtio::{BlkError, SECTOR, VirtioBlk},
};
use spin::{Mutex, Once};

/// How long a batch waits for one completion before the device is declared dead.
const REQUEST_TIMEOUT_NS: u64 = 5_000_000_000;
/// How long one wait for the interrupt lasts before the used ring is looked at again (a
/// coalesced or lost interrupt then costs this, not the whole timeout).
const WAIT_SLICE_NS: u64 = 10_000_000;

/// One disk.
pub struct Disk {
    /// `vda`, `vdb`, ...
    pub name: String,
    /// The device's serial number (may be empty).
    pub serial: String,
    /// Size in sectors.
    pub sectors: u64,
    device: Mutex<VirtioBlk>,
    /// Its MSI-X vector, if routing worked (else batches poll).
    vector: Option<Vector>,
}

static DISKS: Once<Vec<Disk>> = Once::new();

/// Finds and opens the disks (once). Needs `hal::pci::init` to have run.
pub fn init() {
    DISKS.call_once(|| {
        let mut disks = Vec::new();
        let found = hal::pci::devices().iter().filter(|d| {
            d.vendor == hal::virtio::VENDOR
                && matches!(
                    d.device,
                    hal::virtio::BLOCK_DEVICE | hal::virtio::BLOCK_DEVICE_TRANSITIONAL
                )
        });
        for info in found {
            let name = format!("vd{}", char::from(b'a' + (disks.len() as u8 % 26)));
            match open(info.address, name) {
                Ok(disk) => disks.push(disk),
                Err(e) => log::warn!("virtio-blk {}: {e}", info.address),
            }
        }
        disks
    });
}

fn open(address: hal::pci::Address, name: String) -> Result<Disk, BlkError> {
    let mut device = VirtioBlk::open(address)?;
    let cpu = hal::percpu::current_index();
    let vector = crate::irq::allocate_msi().and_then(|vector| {
        match device.use_interrupt(&vector, cpu) {
            Ok(()) => Some(vector),
            Err(e) => {
                log::warn!("virtio-blk {address}: no interrupt ({e}): batches poll");
                None
            }
        }
    });
    let serial = device.serial();
    let sectors = device.sectors();
    log::info!(
        "virtio-blk {address}: {name}: {sectors} sectors ({} MiB){}{}, {}",
        sectors * SECTOR as u64 >> 20,
        if device.readonly() { ", read-only" } else { "" },
        if serial.is_empty() {
            String::new()
        } else {
            format!(", serial {serial}")
        },
        match &vector {
            Some(v) => format!("MSI-X vector {:#x} on cpu {cpu}", v.number()),
            None => "polled".into(),
        }
    );
    Ok(Disk {
        name,
        serial,
        sectors,
        device: Mutex::new(device),
        vector,
    })
}

/// The disks found, in PCI order.
pub fn disks() -> &'static [Disk] {
    DISKS.get().map_or(&[], |d| d)
}

/// The disk with serial number `serial`.
pub fn by_serial(serial: &str) -> Option<&'static Disk> {
    disks().iter().find(|d| d.serial == serial)
}

impl Disk {
    /// Reads whole sectors from `sector` into `buf`.
    pub fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), BlkError> {
        self.device.lock().read(sector, buf)
    }

    /// Writes whole sectors from `sector`.
    pub fn write(&self, sector: u64, buf: &[u8]) -> Result<(), BlkError> {
        self.device.lock().write(sector, buf)
    }

    /// Makes completed writes durable.
    pub fn flush(&self) -> Result<(), BlkError> {
        self.device.lock().flush()
    }

    /// Reads several ranges at once, waiting for the device's interrupt between completions.
    pub fn read_many(&self, requests: &mut [(u64, &mut [u8])]) -> Result<(), BlkError> {
        let start = crate::time::now_ns();
        let mut seen = self.interrupts();
        let wait = || {
            let got = crate::irq::with_interrupts(|| {
                crate::irq::wait_until(WAIT_SLICE_NS, || self.interrupts() != seen)
            });
            if got {
                seen = self.interrupts();
            }
            crate::time::now_ns() - start < REQUEST_TIMEOUT_NS
        };
        self.device.lock().read_many(requests, wait)
    }

    /// Interrupts the device has delivered (0 if it has no vector).
    pub fn interrupts(&self) -> u64 {
        self.vector.as_ref().map_or(0, crate::irq::msi_count)
    }

    /// Whether the device interrupts (else batches poll).
    pub fn has_interrupt(&self) -> bool {
        self.vector.is_some()
    }

    /// The MSI-X entry 0's message (address, data, masked), if routed.
    pub fn msix_message(&self) -> Option<(u64, u32, bool)> {
        self.device.lock().msix().and_then(|m| m.message(0).ok())
    }

    /// The vector number, if any.
    pub fn vector(&self) -> Option<u8> {
        self.vector.as_ref().map(Vector::number)
    }
}
