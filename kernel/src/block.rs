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
    /// Its GPT partitions (none without a valid GPT).
    pub partitions: Vec<crate::gpt::Partition>,
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
    let vector =
        crate::irq::allocate_msi().and_then(|vector| match device.use_interrupt(&vector, cpu) {
            Ok(()) => Some(vector),
            Err(e) => {
                log::warn!("virtio-blk {address}: no interrupt ({e}): batches poll");
                None
            }
        });
    let serial = device.serial();
    let sectors = device.sectors();
    log::info!(
        "virtio-blk {address}: {name}: {sectors} sectors ({} MiB){}{}, {}",
        (sectors * SECTOR as u64) >> 20,
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
    let partitions = partitions(&name, &mut device);
    Ok(Disk {
        name,
        serial,
        sectors,
        partitions,
        device: Mutex::new(device),
        vector,
    })
}

/// The disk's GPT partitions, logged as Linux does (`vda: vda1 vda2`); a missing table is
/// noted, a damaged one warned about, and either gives no partitions.
fn partitions(name: &str, device: &mut VirtioBlk) -> Vec<crate::gpt::Partition> {
    let sectors = device.sectors();
    match crate::gpt::read(sectors, |sector, buf| device.read(sector, buf).is_ok()) {
        Ok(found) => {
            let mut line = format!("{name}:");
            for p in &found {
                line.push_str(&format!(" {name}{}", p.number));
            }
            log::info!("{line}");
            found
        }
        Err(crate::gpt::GptError::NoSignature) => {
            log::debug!("{name}: no partition table");
            Vec::new()
        }
        Err(e) => {
            log::warn!("{name}: {e}: partition table ignored");
            Vec::new()
        }
    }
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

/// The most bytes one request of a block device file moves (larger reads and writes are
/// split).
const CHUNK: usize = 128 * 1024;
/// virtio-blk's device major (Linux gives `virtblk` a dynamic one; 254 on most systems).
pub const MAJOR: u64 = 254;
/// Minors per disk: the whole disk, then up to 15 partitions (as Linux's `virtblk`).
pub const MINORS: u64 = 16;

/// What a block device file reads and writes: a whole disk or one of its partitions.
#[derive(Clone, Copy)]
pub struct Extent {
    disk: &'static Disk,
    first: u64,
    sectors: u64,
}

/// The extent of disk `disk` (its index), partition `part` (0: the whole disk).
pub fn extent(disk: u8, part: u8) -> Option<Extent> {
    let d = disks().get(usize::from(disk))?;
    if part == 0 {
        return Some(Extent {
            disk: d,
            first: 0,
            sectors: d.sectors,
        });
    }
    let p = d.partitions.iter().find(|p| p.number == u32::from(part))?;
    Some(Extent {
        disk: d,
        first: p.first,
        sectors: p.sectors(),
    })
}

fn io_error(e: BlkError) -> u32 {
    log::warn!("block: {e:?}");
    linux_raw_sys::errno::EIO
}

impl Extent {
    /// Its size in bytes.
    pub fn bytes(&self) -> u64 {
        self.sectors * SECTOR as u64
    }

    /// The sectors covering bytes `pos..pos + len` (relative to the disk), and where `pos`
    /// falls in the first.
    fn span(&self, pos: u64, len: usize) -> (u64, usize, usize) {
        let sector = SECTOR as u64;
        let first = pos / sector;
        let last = (pos + len as u64).div_ceil(sector);
        (
            self.first + first,
            ((last - first) * sector) as usize,
            (pos % sector) as usize,
        )
    }

    /// `pread`: up to `out.len()` bytes at `pos`, fewer at the end, 0 past it.
    pub fn read_at(&self, pos: u64, out: &mut [u8]) -> Result<usize, u32> {
        let size = self.bytes();
        if pos >= size {
            return Ok(0);
        }
        let total = out.len().min((size - pos) as usize);
        let mut done = 0;
        while done < total {
            let len = (total - done).min(CHUNK);
            let at = pos + done as u64;
            let (sector, bytes, skip) = self.span(at, len);
            let mut bounce = alloc::vec![0u8; bytes];
            self.disk.read(sector, &mut bounce).map_err(io_error)?;
            out[done..done + len].copy_from_slice(&bounce[skip..skip + len]);
            done += len;
        }
        Ok(total)
    }

    /// `pwrite`: `data` at `pos`; a partial sector at either end is read, changed and
    /// written back. `ENOSPC` at or past the end; a write crossing it is cut short.
    pub fn write_at(&self, pos: u64, data: &[u8]) -> Result<usize, u32> {
        let size = self.bytes();
        if pos >= size && !data.is_empty() {
            return Err(linux_raw_sys::errno::ENOSPC);
        }
        let total = data.len().min((size.saturating_sub(pos)) as usize);
        let mut done = 0;
        while done < total {
            let len = (total - done).min(CHUNK);
            let at = pos + done as u64;
            let (sector, bytes, skip) = self.span(at, len);
            let mut bounce = alloc::vec![0u8; bytes];
            if skip != 0 || len != bytes {
                // Keep the bytes of the end sectors this write does not cover.
                let last = sector + (bytes / SECTOR) as u64 - 1;
                self.disk
                    .read(sector, &mut bounce[..SECTOR])
                    .map_err(io_error)?;
                if bytes > SECTOR {
                    self.disk
                        .read(last, &mut bounce[bytes - SECTOR..])
                        .map_err(io_error)?;
                }
            }
            bounce[skip..skip + len].copy_from_slice(&data[done..done + len]);
            self.disk.write(sector, &bounce).map_err(io_error)?;
            done += len;
        }
        Ok(total)
    }

    /// `fsync`: the device's write cache to its medium.
    pub fn flush(&self) -> Result<(), u32> {
        self.disk.flush().map_err(io_error)
    }
}

/// Tests of PCI, DMA buffers and the virtio disks (the runner attaches the boot disk with
/// serial `evergreen-boot` and a zeroed 4 MiB scratch disk with serial `evergreen-scratch`).
#[cfg(feature = "tests")]
mod tests {
    use alloc::{vec, vec::Vec};

    use hal::{
        pci::{self, Address, BarKind, Error as PciError},
        virtio::{BlkError, SECTOR},
    };

    use super::by_serial;
    use crate::{
        check,
        ktest::{TestResult, ktest},
    };

    fn at(bus: u8, device: u8, function: u8) -> Address {
        Address {
            bus,
            device,
            function,
        }
    }

    fn device(address: Address) -> Option<&'static pci::DeviceInfo> {
        pci::devices().iter().find(|d| d.address == address)
    }

    /// The q35 host bridge and LPC bridge are where q35 puts them, with their ids and classes.
    #[ktest("pci-q35-bridges")]
    pub fn q35_bridges() -> TestResult {
        let host = device(at(0, 0, 0));
        check!(
            host.is_some_and(
                |d| (d.vendor, d.device, d.class, d.header_type) == (0x8086, 0x29c0, (6, 0, 0), 0)
            ),
            "host bridge at 00:00.0: {host:?}"
        );
        let lpc = device(at(0, 0x1f, 0));
        check!(
            lpc.is_some_and(|d| (d.vendor, d.device, d.class) == (0x8086, 0x2918, (6, 1, 0))),
            "LPC bridge at 00:1f.0: {lpc:?}"
        );
        Ok(())
    }

    /// Both virtio disks are found as modern virtio-blk (1af4:1042, class 01.00), with
    /// MSI-X, virtio's vendor capabilities and QEMU's two memory BARs sized right.
    #[ktest("pci-virtio-blk-found")]
    pub fn virtio_found() -> TestResult {
        let disks: Vec<_> = pci::devices()
            .iter()
            .filter(|d| (d.vendor, d.device) == (0x1af4, 0x1042))
            .collect();
        check!(disks.len() == 2, "{} virtio-blk functions", disks.len());
        for d in disks {
            check!(d.class == (1, 0, 0), "{}: class {:?}", d.address, d.class);
            check!(
                d.capability(pci::CAP_MSIX).is_some(),
                "{}: no MSI-X",
                d.address
            );
            let vendor = d
                .capabilities
                .iter()
                .filter(|c| c.id == pci::CAP_VENDOR)
                .count();
            check!(vendor >= 4, "{}: {vendor} virtio capabilities", d.address);
            let msix_bar = d.bar(1);
            check!(
                msix_bar.is_some_and(|b| b.kind
                    == BarKind::Memory32 {
                        prefetchable: false
                    }
                    && b.size == 0x1000),
                "{}: BAR 1 {msix_bar:?}",
                d.address
            );
            let regs = d.bar(4);
            check!(
                regs.is_some_and(|b| b.kind == BarKind::Memory64 { prefetchable: true }
                    && b.size == 0x4000
                    && b.address.is_multiple_of(0x4000)),
                "{}: BAR 4 {regs:?}",
                d.address
            );
            check!(d.bar(0).is_none(), "{}: BAR 0 {:?}", d.address, d.bar(0));
        }
        Ok(())
    }

    /// The scan's BAR size matches sizing the register again by hand (the display adapter's
    /// 16 MiB framebuffer BAR), and the register is restored afterwards.
    #[ktest("pci-bar-sizing")]
    pub fn bar_sizing() -> TestResult {
        let Some(vga) = pci::find(0x1234, 0x1111) else {
            return Err("no QEMU display adapter".into());
        };
        let scanned = vga.bar(0).copied();
        check!(
            scanned.is_some_and(
                |b| b.size == 16 << 20 && b.kind == BarKind::Memory32 { prefetchable: true }
            ),
            "BAR 0 {scanned:?}"
        );
        let dev = pci::open(vga.address).map_err(|e| alloc::format!("{e}"))?;
        let err = |e: PciError| alloc::format!("{e}");
        dev.set_memory_decode(false).map_err(err)?;
        let original = dev.read_u32(0x10).map_err(err)?;
        dev.write_u32(0x10, u32::MAX).map_err(err)?;
        let mask = dev.read_u32(0x10).map_err(err)?;
        dev.write_u32(0x10, original).map_err(err)?;
        let restored = dev.read_u32(0x10).map_err(err)?;
        dev.set_memory_decode(true).map_err(err)?;
        let size = u64::from(!(mask & !0xf)) + 1;
        check!(
            scanned.is_some_and(|b| b.size == size),
            "by hand {size:#x}, scan {scanned:?}"
        );
        check!(
            restored == original,
            "BAR 0 {original:#x} became {restored:#x}"
        );
        check!(
            scanned.is_some_and(|b| b.address == u64::from(original & !0xf)),
            "address {original:#x} vs {scanned:?}"
        );
        Ok(())
    }

    /// Bad device data and bad requests are refused with errors: a 64-bit BAR in the last
    /// slot, a BAR past 4 GiB, capability pointers into the header or in a loop, config
    /// accesses outside the function, mapping outside a BAR, opening a function twice.
    #[ktest("pci-bad-data-refused")]
    pub fn bad_data_refused() -> TestResult {
        // Slot 0: 32-bit 4 KiB; 1: I/O 32 ports; 2: 32-bit 8 KiB at 0xffff_f000 (overflows
        // 4 GiB); 3, 4: nothing; 5: a 64-bit BAR with no slot for its upper half.
        let regs: [(u32, u32); 6] = [
            (0xfe00_0000, 0xffff_f000),
            (0xc001, 0xffff_ffe1),
            (0xffff_f000, 0xffff_e000),
            (0, 0),
            (0, 0),
            (0xe000_0004, 0xffff_c004),
        ];
        let got = pci::decode_bars(6, |offset| regs[usize::from((offset - 0x10) / 4)]);
        let Err((bars, refused)) = got else {
            return Err(alloc::format!("all accepted: {got:?}"));
        };
        check!(
            refused.iter().map(|r| r.0).collect::<Vec<_>>() == [2, 5],
            "refused {refused:?}"
        );
        check!(
            bars.len() == 2
                && bars[0].size == 0x1000
                && bars[0].address == 0xfe00_0000
                && bars[1].kind == BarKind::Io
                && bars[1].size == 0x20
                && bars[1].address == 0xc000,
            "accepted {bars:?}"
        );
        let caps = [(0x40u16, 0x5011u16), (0x50, 0x0009)];
        let read = |offset: u16| caps.iter().find(|c| c.0 == offset).map_or(0xffff, |c| c.1);
        let good = pci::walk_capabilities(0x40, read);
        check!(
            good.as_ref()
                .is_ok_and(|c| c.len() == 2 && c[0].id == 0x11 && c[1].offset == 0x50),
            "a good list gave {good:?}"
        );
        let into_header = pci::walk_capabilities(0x40, |_| 0x1009);
        check!(
            into_header.as_ref().is_err_and(|(c, _)| c.len() == 1),
            "a pointer into the header gave {into_header:?}"
        );
        let looped = pci::walk_capabilities(0x40, |_| 0x4009);
        check!(
            looped.as_ref().is_err_and(|(c, _)| c.len() == 48),
            "a loop gave {:?}",
            looped.map_err(|e| e.1)
        );
        let Some(vga) = pci::find(0x1234, 0x1111) else {
            return Err("no QEMU display adapter".into());
        };
        let dev = pci::open(vga.address).map_err(|e| alloc::format!("{e}"))?;
        let again = pci::open(vga.address);
        check!(
            matches!(again, Err(PciError::Busy(_))),
            "opened twice: {again:?}"
        );
        let len = dev.config_space_len();
        check!(len == 4096, "config space of {len} bytes through ECAM");
        check!(
            dev.read_u32(len) == Err(PciError::BadOffset(len))
                && dev.read_u16(len - 1) == Err(PciError::BadOffset(len - 1))
                && dev.read_u32(2) == Err(PciError::BadOffset(2))
                && dev.write_u8(u16::MAX, 0) == Err(PciError::BadOffset(u16::MAX)),
            "an out-of-range config access was allowed"
        );
        let outside = dev.map_bar(0, 16 << 20, 0x1000).map(|_| ());
        check!(
            outside == Err(PciError::OutsideBar(0)),
            "mapping past BAR 0 gave {outside:?}"
        );
        let none = dev.map_bar(1, 0, 0x1000).map(|_| ());
        check!(
            none == Err(PciError::NoSuchBar(1)),
            "mapping BAR 1 gave {none:?}"
        );
        let msix = dev.enable_msix().map(|_| ());
        check!(
            msix == Err(PciError::NoCapability(pci::CAP_MSIX)),
            "MSI-X without the capability gave {msix:?}"
        );
        let mmio = dev.map_bar(2, 0, 0x1000);
        check!(
            mmio.as_ref()
                .is_ok_and(|m| m.phys() == vga.bar(2).map_or(0, |b| b.address)),
            "mapping BAR 2 gave {mmio:?}"
        );
        drop(dev);
        check!(pci::open(vga.address).is_ok(), "not reopenable after drop");
        Ok(())
    }

    /// A DMA buffer is zeroed, page-aligned, as long as asked, and gives its frames back.
    #[ktest("dma-buffer")]
    pub fn dma_buffer() -> TestResult {
        check!(
            hal::mm::DmaBuffer::new(0).is_err(),
            "an empty DMA buffer was allocated"
        );
        let free = hal::mm::stats().frames.free;
        let mut buffer = hal::mm::DmaBuffer::new(5000).map_err(|e| alloc::format!("{e}"))?;
        check!(
            buffer.len() == 5000 && buffer.capacity() == 8192,
            "{buffer:?}"
        );
        check!(
            buffer.device_address().is_multiple_of(4096),
            "{buffer:?} is not page-aligned"
        );
        check!(buffer.as_slice().iter().all(|&b| b == 0), "not zeroed");
        check!(
            hal::mm::stats().frames.free == free - 2,
            "two frames were not taken"
        );
        buffer.as_mut_slice()[4999] = 7;
        let address = buffer.device_address();
        let second = hal::mm::phys_to_virt(address + 4096);
        check!(
            hal::mm::translate(second)
                .is_some_and(|m| m.phys + (second - m.virt) == address + 4096),
            "the second page is not where the HHDM maps it"
        );
        drop(buffer);
        check!(
            hal::mm::stats().frames.free == free,
            "the frames did not come back"
        );
        Ok(())
    }

    /// The boot disk's interrupt arrives through MSI-X: entry 0 is programmed with this
    /// CPU's APIC and the disk's vector, and a batch of reads raises the vector's count.
    #[ktest("pci-msix-delivery")]
    pub fn msix_delivery() -> TestResult {
        let Some(disk) = by_serial("evergreen-boot") else {
            return Err("no boot disk".into());
        };
        check!(disk.has_interrupt(), "{}: no MSI-X vector", disk.name);
        let apic = hal::percpu::lapic_id(0).unwrap_or(u32::MAX);
        let message = disk.msix_message();
        let vector = disk.vector().map_or(0, u32::from);
        check!(
            message == Some((0xfee0_0000 | u64::from(apic) << 12, vector, false)),
            "MSI-X entry 0 {message:x?}, expected APIC {apic}, vector {vector:#x}"
        );
        let before = disk.interrupts();
        let mut buffers = vec![vec![0u8; 8 * SECTOR]; 6];
        let mut requests: Vec<(u64, &mut [u8])> = buffers
            .iter_mut()
            .enumerate()
            .map(|(i, b)| (i as u64 * 64, b.as_mut_slice()))
            .collect();
        let read = disk.read_many(&mut requests);
        check!(read.is_ok(), "reads failed: {read:?}");
        // The batch only waits for the interrupt when it finds nothing completed, and a fast
        // device may finish every request first: the interrupt is then still pending in the
        // local APIC (ktests run with interrupts off) and arrives once they are on.
        let arrived = crate::irq::with_interrupts(|| {
            crate::irq::wait_until(1_000_000_000, || disk.interrupts() > before)
        });
        check!(arrived, "no interrupt arrived ({before} before and after)");
        // The batch read the same bytes as single reads.
        let mut one = vec![0u8; 8 * SECTOR];
        disk.read(64, &mut one).map_err(|e| alloc::format!("{e}"))?;
        check!(
            one == buffers[1],
            "a batched read differs from a single one"
        );
        Ok(())
    }

    /// The boot disk's sector 1 is a GPT header ("EFI PART", revision 1.0); bad requests are
    /// refused.
    #[ktest("virtio-blk-boot-gpt")]
    pub fn boot_gpt() -> TestResult {
        let Some(disk) = by_serial("evergreen-boot") else {
            return Err("no boot disk".into());
        };
        let mut sector = vec![0u8; SECTOR];
        disk.read(1, &mut sector)
            .map_err(|e| alloc::format!("{e}"))?;
        check!(
            &sector[..8] == b"EFI PART",
            "sector 1 starts {:x?}",
            &sector[..8]
        );
        let revision = u32::from_le_bytes([sector[8], sector[9], sector[10], sector[11]]);
        check!(revision == 0x0001_0000, "GPT revision {revision:#x}");
        let past = disk.read(disk.sectors, &mut sector);
        check!(
            past == Err(BlkError::OutOfRange(disk.sectors)),
            "reading past the end gave {past:?}"
        );
        let mut odd = [0u8; 100];
        let short = disk.read(0, &mut odd);
        check!(
            short == Err(BlkError::BadLength(100)),
            "reading 100 bytes gave {short:?}"
        );
        Ok(())
    }

    /// A pattern written to the scratch disk, flushed, reads back the same (single and
    /// batched reads), and the sectors around it stay zero.
    #[ktest("virtio-blk-scratch-roundtrip")]
    pub fn scratch_roundtrip() -> TestResult {
        let Some(disk) = by_serial("evergreen-scratch") else {
            return Err("no scratch disk".into());
        };
        check!(disk.sectors == 8192, "{} sectors", disk.sectors);
        // A pattern that differs from run to run, so an old image cannot pass.
        let mut state = hal::time::now_ns() | 1;
        let pattern: Vec<u8> = (0..64 * SECTOR)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let err = |e: BlkError| alloc::format!("{e}");
        disk.write(1000, &pattern).map_err(err)?;
        disk.write(disk.sectors - 1, &pattern[..SECTOR])
            .map_err(err)?;
        disk.flush().map_err(err)?;
        let mut back = vec![0u8; pattern.len()];
        disk.read(1000, &mut back).map_err(err)?;
        check!(back == pattern, "a single read differs");
        let mut parts = vec![vec![0u8; 8 * SECTOR]; 8];
        let mut requests: Vec<(u64, &mut [u8])> = parts
            .iter_mut()
            .enumerate()
            .rev()
            .map(|(i, b)| (1000 + 8 * i as u64, b.as_mut_slice()))
            .collect();
        disk.read_many(&mut requests).map_err(err)?;
        check!(parts.concat() == pattern, "batched reads differ");
        let mut last = vec![0u8; SECTOR];
        disk.read(disk.sectors - 1, &mut last).map_err(err)?;
        check!(last == pattern[..SECTOR], "the last sector differs");
        let mut around = vec![0u8; 2 * SECTOR];
        disk.read(999, &mut around[..SECTOR]).map_err(err)?;
        disk.read(1064, &mut around[SECTOR..]).map_err(err)?;
        check!(
            around.iter().all(|&b| b == 0),
            "a write spilled over its sectors"
        );
        Ok(())
    }
}
