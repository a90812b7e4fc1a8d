//! virtio-blk over the modern PCI transport, with the `virtio-drivers` crate.
//!
//! The crate does the virtqueue and device protocol; this module gives it what it asks of a
//! platform (its [`Hal`] trait) and wraps its block driver in [`VirtioBlk`], whose calls are
//! all safe:
//!
//! - **DMA** comes from [`DmaBuffer`]: queue memory from `dma_alloc`, and every buffer the
//!   crate shares (request headers, data, status bytes) is *bounced* through a fresh
//!   `DmaBuffer` — copied in on share, out on unshare. A caller's buffer may be heap memory
//!   spanning non-contiguous frames, and the device never sees it: it only ever holds the
//!   addresses of bounce buffers, which stay allocated until their request completes, so a
//!   request that never completes cannot make the device write freed memory.
//! - **Registers**: before the crate sees the device, every virtio structure capability is
//!   checked against its BAR and those BARs are mapped (uncached, through
//!   [`PciDevice::map_bar`]) and kept for good; the crate's requests are served from them.
//! - **Configuration space**: the crate gets an accessor bound to its own function only.
//! - **Interrupts**: the crate does not program MSI-X vectors into the device, so
//!   [`VirtioBlk::use_interrupt`] writes the queue's `queue_msix_vector` in the common
//!   configuration itself and routes the MSI-X table entry to the kernel's vector.
//!
//! Single requests wait by polling the used ring (the crate's blocking calls); batches
//! ([`VirtioBlk::read_many`]) keep up to a queue's worth in flight and wait between
//! completions with the caller's function (the kernel waits for the interrupt).

use alloc::vec::Vec;
use core::{fmt, ptr::NonNull};

use spin::Mutex;
use virtio_drivers::{
    BufferDirection, Hal, PhysAddr,
    device::blk::{BlkReq, BlkResp, SECTOR_SIZE, VirtIOBlk},
    transport::{
        DeviceType, Transport,
        pci::{
            PciTransport,
            bus::{ConfigurationAccess, DeviceFunction, PciRoot},
        },
    },
};

use crate::{
    mm::{DmaBuffer, Mmio},
    pci::{self, Address, CAP_VENDOR, Msix, PciDevice},
    trap::Vector,
};

/// The virtio PCI vendor id.
pub const VENDOR: u16 = 0x1af4;
/// The modern (virtio 1.0) block device's PCI device id.
pub const BLOCK_DEVICE: u16 = 0x1042;
/// The transitional block device's id (QEMU's default `virtio-blk-pci`).
pub const BLOCK_DEVICE_TRANSITIONAL: u16 = 0x1001;
/// Bytes per sector.
pub const SECTOR: usize = SECTOR_SIZE;

/// DMA memory the crate allocated, by device address.
static ALLOCATIONS: Mutex<Vec<DmaBuffer>> = Mutex::new(Vec::new());
/// Bounce buffers of shared memory, by device address.
static BOUNCES: Mutex<Vec<DmaBuffer>> = Mutex::new(Vec::new());
/// Register windows the crate mapped.
static WINDOWS: Mutex<Vec<Mmio>> = Mutex::new(Vec::new());

/// The crate's platform: DMA, register mapping and buffer sharing.
pub struct VirtioHal;

fn take(list: &Mutex<Vec<DmaBuffer>>, paddr: PhysAddr) -> Option<DmaBuffer> {
    let mut list = list.lock();
    let index = list.iter().position(|b| b.device_address() == paddr)?;
    Some(list.swap_remove(index))
}

// SAFETY: `dma_alloc` returns zeroed, page-aligned, physically contiguous memory owned by a
// `DmaBuffer` kept in ALLOCATIONS until `dma_dealloc`; `mmio_phys_to_virt` returns addresses
// inside uncached windows held for good in WINDOWS (claim_mmio refuses RAM and claimed pages,
// so they alias nothing); `share` returns the address of a bounce buffer nothing else uses.
unsafe impl Hal for VirtioHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        match DmaBuffer::new(pages * crate::mm::PAGE_SIZE as usize) {
            Ok(buffer) => {
                let result = (buffer.device_address(), buffer.as_ptr());
                ALLOCATIONS.lock().push(buffer);
                result
            }
            // The crate treats a zero address as an allocation failure.
            Err(_) => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, _pages: usize) -> i32 {
        match take(&ALLOCATIONS, paddr) {
            Some(buffer) => {
                drop(buffer);
                0
            }
            None => -1,
        }
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        let size = size as u64;
        let windows = WINDOWS.lock();
        if let Some(w) = windows
            .iter()
            .find(|w| paddr >= w.phys() && paddr + size <= w.phys() + w.len())
        {
            return NonNull::new((w.virt() + (paddr - w.phys())) as *mut u8)
                .expect("MMIO windows are never at address zero");
        }
        // `premap` mapped every BAR a structure capability names and checked each structure
        // lies inside its BAR, and the crate asks only for those structures.
        panic!("virtio: registers at {paddr:#x} ({size:#x} bytes) outside the checked BARs")
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let len = buffer.len();
        let Ok(mut bounce) = DmaBuffer::new(len.max(1)) else {
            // No error path either: zero makes the device fail the request.
            return 0;
        };
        if direction != BufferDirection::DeviceToDriver {
            // SAFETY: the caller guarantees `buffer` is valid and not accessed by anyone else
            // for the duration of this call.
            let source = unsafe { buffer.as_ref() };
            bounce.as_mut_slice()[..len].copy_from_slice(source);
        }
        let paddr = bounce.device_address();
        BOUNCES.lock().push(bounce);
        paddr
    }

    unsafe fn unshare(paddr: PhysAddr, mut buffer: NonNull<[u8]>, direction: BufferDirection) {
        let Some(bounce) = take(&BOUNCES, paddr) else {
            return;
        };
        if direction != BufferDirection::DriverToDevice {
            // SAFETY: as for `share`: valid, and ours alone for the duration of the call.
            let target = unsafe { buffer.as_mut() };
            let len = target.len();
            target.copy_from_slice(&bounce.as_slice()[..len]);
        }
    }
}

/// Configuration access for one function: other functions read as absent, writes to them
/// are dropped.
pub(crate) struct OwnConfig {
    pub(crate) address: Address,
    pub(crate) device: &'static PciDevice,
}

impl ConfigurationAccess for OwnConfig {
    fn read_word(&self, at: DeviceFunction, offset: u8) -> u32 {
        if !self.is(at) {
            return u32::MAX;
        }
        self.device.read_u32(u16::from(offset)).unwrap_or(u32::MAX)
    }

    fn write_word(&mut self, at: DeviceFunction, offset: u8, data: u32) {
        if self.is(at) {
            let _ = self.device.write_u32(u16::from(offset), data);
        }
    }

    unsafe fn unsafe_clone(&self) -> Self {
        Self {
            address: self.address,
            device: self.device,
        }
    }
}

impl OwnConfig {
    fn is(&self, at: DeviceFunction) -> bool {
        (at.bus, at.device, at.function)
            == (self.address.bus, self.address.device, self.address.function)
    }
}

/// Checks every virtio structure capability against its BAR and maps the BARs they use into
/// [`WINDOWS`], so the crate's `mmio_phys_to_virt` only ever finds windows that exist (it
/// has no way to report an error). A structure outside its BAR is refused here.
pub(crate) fn premap(device: &PciDevice) -> Result<(), BlkError> {
    let info = device.info();
    let mut bars: Vec<u8> = Vec::new();
    for cap in info.capabilities.iter().filter(|c| c.id == CAP_VENDOR) {
        let base = u16::from(cap.offset);
        let cfg_type = device.read_u8(base + 3)?;
        if !(1..=4).contains(&cfg_type) {
            continue; // Not a structure in memory (e.g. the PCI configuration access).
        }
        let bar = device.read_u8(base + 4)?;
        let offset = u64::from(device.read_u32(base + 8)?);
        let len = u64::from(device.read_u32(base + 12)?);
        let fits = info.bar(bar).is_some_and(|b| {
            b.kind != pci::BarKind::Io && offset.checked_add(len).is_some_and(|e| e <= b.size)
        });
        if !fits {
            log::warn!(
                "virtio {}: structure {cfg_type} at BAR {bar} + {offset:#x} ({len:#x} bytes)                  is outside its BAR: refused",
                info.address
            );
            return Err(BlkError::Pci(pci::Error::OutsideBar(bar)));
        }
        if !bars.contains(&bar) {
            bars.push(bar);
        }
    }
    for bar in bars {
        let size = info.bar(bar).map_or(0, |b| b.size);
        let window = device.map_bar(bar, 0, size)?;
        WINDOWS.lock().push(window);
    }
    Ok(())
}

/// Why a virtio-blk operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlkError {
    /// A PCI problem (no such device, a bad BAR or capability...).
    Pci(pci::Error),
    /// The function is not a virtio block device.
    NotBlock,
    /// The crate refused the transport or the device.
    Device(&'static str),
    /// A buffer that is empty or not a whole number of sectors.
    BadLength(usize),
    /// A request reaching past the end of the disk.
    OutOfRange(u64),
    /// The device reported an I/O error or refused the request.
    Io,
    /// The device stopped answering (it is unusable from now on).
    Timeout,
}

impl fmt::Display for BlkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pci(e) => write!(f, "{e}"),
            Self::NotBlock => write!(f, "not a virtio block device"),
            Self::Device(why) => write!(f, "virtio: {why}"),
            Self::BadLength(n) => write!(f, "{n} bytes is not a whole number of sectors"),
            Self::OutOfRange(s) => write!(f, "sector {s} is past the end of the disk"),
            Self::Io => write!(f, "the device reported an I/O error"),
            Self::Timeout => write!(f, "the device stopped answering"),
        }
    }
}

impl From<pci::Error> for BlkError {
    fn from(e: pci::Error) -> Self {
        Self::Pci(e)
    }
}

impl From<virtio_drivers::Error> for BlkError {
    fn from(e: virtio_drivers::Error) -> Self {
        match e {
            virtio_drivers::Error::IoError => Self::Io,
            virtio_drivers::Error::Unsupported => Self::Device("unsupported request"),
            _ => Self::Device("request refused"),
        }
    }
}

/// Common configuration offsets (virtio 1.x, 4.1.4.3).
const COMMON_QUEUE_SELECT: u64 = 0x16;
const COMMON_QUEUE_MSIX_VECTOR: u64 = 0x1a;
/// The vendor capability's type byte for the common configuration.
const CAP_COMMON_CFG: u8 = 1;
/// "No MSI-X vector".
const NO_VECTOR: u16 = 0xffff;

/// A virtio block device: its PCI function, the crate's driver, and (once routed) MSI-X.
pub struct VirtioBlk {
    blk: VirtIOBlk<VirtioHal, PciTransport>,
    device: &'static PciDevice,
    msix: Option<Msix>,
    broken: bool,
}

impl fmt::Debug for VirtioBlk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtioBlk")
            .field("address", &self.device.info().address)
            .field("sectors", &self.blk.capacity())
            .finish()
    }
}

impl VirtioBlk {
    /// Opens the virtio block device at `address` and initialises it (features, queue).
    ///
    /// The `PciDevice` stays open for good: the crate's transport keeps the device's register
    /// windows and configuration accessor for the rest of the boot.
    pub fn open(address: Address) -> Result<Self, BlkError> {
        let device = pci::open(address)?;
        let info = device.info();
        if info.vendor != VENDOR || !matches!(info.device, BLOCK_DEVICE | BLOCK_DEVICE_TRANSITIONAL)
        {
            return Err(BlkError::NotBlock);
        }
        let device: &'static PciDevice = alloc::boxed::Box::leak(alloc::boxed::Box::new(device));
        let mut root = PciRoot::new(OwnConfig { address, device });
        let function = DeviceFunction {
            bus: address.bus,
            device: address.device,
            function: address.function,
        };
        premap(device)?;
        // The crate sizes the BARs again itself: not while they decode.
        device.set_memory_decode(false)?;
        let transport = PciTransport::new::<VirtioHal, _>(&mut root, function).map_err(|e| {
            log::warn!("virtio {address}: {e}");
            BlkError::Device("the PCI transport is unusable")
        })?;
        if transport.device_type() != DeviceType::Block {
            return Err(BlkError::NotBlock);
        }
        device.enable_memory_and_dma()?;
        let blk = VirtIOBlk::new(transport).map_err(|e| {
            log::warn!("virtio {address}: {e}");
            BlkError::Device("the device refused initialisation")
        })?;
        Ok(Self {
            blk,
            device,
            msix: None,
            broken: false,
        })
    }

    /// The PCI function.
    pub fn address(&self) -> Address {
        self.device.info().address
    }

    /// The disk's size in sectors.
    pub fn sectors(&self) -> u64 {
        self.blk.capacity()
    }

    /// The device's serial number (QEMU's `serial=` property), empty if it has none.
    pub fn serial(&mut self) -> alloc::string::String {
        let mut id = [0u8; 20];
        match self.blk.device_id(&mut id) {
            Ok(len) => id[..len.min(20)]
                .iter()
                .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
                .collect(),
            Err(_) => alloc::string::String::new(),
        }
    }

    /// Whether the device is read-only.
    pub fn readonly(&self) -> bool {
        self.blk.readonly()
    }

    /// Makes the request queue interrupt through MSI-X entry 0 on `vector` at CPU `cpu`.
    pub fn use_interrupt(&mut self, vector: &Vector, cpu: usize) -> Result<(), BlkError> {
        let msix = match self.msix.take() {
            Some(msix) => msix,
            None => self.device.enable_msix()?,
        };
        let routed = msix.route(0, vector, cpu);
        self.msix = Some(msix);
        routed?;
        set_queue_vector(&self.common_config()?, 0, 0)?;
        self.blk.enable_interrupts();
        Ok(())
    }

    /// The MSI-X table, once [`Self::use_interrupt`] enabled it.
    pub fn msix(&self) -> Option<&Msix> {
        self.msix.as_ref()
    }

    fn common_config(&self) -> Result<CommonConfig, BlkError> {
        common_config(self.device)
    }

    fn check(&self, sector: u64, len: usize) -> Result<(), BlkError> {
        if self.broken {
            return Err(BlkError::Timeout);
        }
        if len == 0 || !len.is_multiple_of(SECTOR) {
            return Err(BlkError::BadLength(len));
        }
        let count = (len / SECTOR) as u64;
        if sector
            .checked_add(count)
            .is_none_or(|end| end > self.sectors())
        {
            return Err(BlkError::OutOfRange(sector));
        }
        Ok(())
    }

    /// Reads sectors from `sector` into `buf` (a whole number of sectors), waiting by polling.
    pub fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BlkError> {
        self.check(sector, buf.len())?;
        Ok(self.blk.read_blocks(sector as usize, buf)?)
    }

    /// Writes `buf` (a whole number of sectors) from `sector`, waiting by polling.
    pub fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), BlkError> {
        self.check(sector, buf.len())?;
        if self.readonly() {
            return Err(BlkError::Io);
        }
        Ok(self.blk.write_blocks(sector as usize, buf)?)
    }

    /// Asks the device to make every completed write durable.
    pub fn flush(&mut self) -> Result<(), BlkError> {
        if self.broken {
            return Err(BlkError::Timeout);
        }
        Ok(self.blk.flush()?)
    }

    /// Reads several ranges with as many requests in flight as the queue holds. Between
    /// completions it calls `wait`, which returns `false` once it gave up (then the device is
    /// marked unusable and [`BlkError::Timeout`] returned). Every range is checked first;
    /// the first error of any request is returned after all have finished.
    pub fn read_many(
        &mut self,
        requests: &mut [(u64, &mut [u8])],
        mut wait: impl FnMut() -> bool,
    ) -> Result<(), BlkError> {
        for (sector, buf) in requests.iter() {
            self.check(*sector, buf.len())?;
        }
        let mut slots: Vec<(BlkReq, BlkResp, Option<u16>)> = (0..requests.len())
            .map(|_| (BlkReq::default(), BlkResp::default(), None))
            .collect();
        let (mut next, mut done, mut first_error) = (0, 0, None);
        while done < requests.len() {
            // Submit until the queue is full.
            while next < requests.len() {
                let (sector, buf) = &mut requests[next];
                let (req, resp, token) = &mut slots[next];
                // SAFETY: `req`, `buf` and `resp` stay borrowed by this call until the request
                // is completed below (the loop does not end before every submitted request
                // is), and with VirtioHal the device only sees bounce copies of them.
                match unsafe { self.blk.read_blocks_nb(*sector as usize, req, buf, resp) } {
                    Ok(t) => {
                        *token = Some(t);
                        next += 1;
                    }
                    Err(virtio_drivers::Error::QueueFull) if next > done => break,
                    Err(e) => {
                        first_error.get_or_insert(BlkError::from(e));
                        next += 1;
                        done += 1;
                    }
                }
            }
            if done == requests.len() {
                break;
            }
            let Some(used) = self.blk.peek_used() else {
                if !wait() && self.blk.peek_used().is_none() {
                    self.broken = true;
                    return Err(BlkError::Timeout);
                }
                continue;
            };
            let Some(index) = slots.iter().position(|s| s.2 == Some(used)) else {
                self.broken = true;
                return Err(BlkError::Device("completion of an unknown request"));
            };
            let (req, resp, token) = &mut slots[index];
            *token = None;
            // SAFETY: the same buffers as were passed to `read_blocks_nb` for this token.
            let result = unsafe {
                self.blk
                    .complete_read_blocks(used, req, requests[index].1, resp)
            };
            if let Err(e) = result {
                first_error.get_or_insert(BlkError::from(e));
            }
            done += 1;
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Acknowledges the device's interrupt (for MSI-X nothing needs doing at the device; this
    /// reads the ISR, which also serves polling).
    pub fn ack_interrupt(&mut self) {
        let _ = self.blk.ack_interrupt();
    }
}

/// A window onto `device`'s common configuration (through a window the crate mapped).
pub(crate) fn common_config(device: &PciDevice) -> Result<CommonConfig, BlkError> {
    let bad = BlkError::Pci(pci::Error::BadCapability(CAP_VENDOR));
    let info = device.info();
    let cap = info
        .capabilities
        .iter()
        .filter(|c| c.id == CAP_VENDOR)
        .find(|c| device.read_u8(u16::from(c.offset) + 3) == Ok(CAP_COMMON_CFG))
        .ok_or(bad)?;
    let bar = device.read_u8(u16::from(cap.offset) + 4)?;
    let offset = device.read_u32(u16::from(cap.offset) + 8)?;
    let base = info.bar(bar).ok_or(bad)?.address + u64::from(offset);
    let windows = WINDOWS.lock();
    let window = windows
        .iter()
        .position(|w| base >= w.phys() && base + 0x20 <= w.phys() + w.len())
        .ok_or(bad)?;
    Ok(CommonConfig {
        window,
        offset: base - windows[window].phys(),
    })
}

/// Points queue `queue`'s interrupts at MSI-X table entry `entry`; fails if the device
/// refuses (reads back "no vector").
pub(crate) fn set_queue_vector(
    common: &CommonConfig,
    queue: u16,
    entry: u16,
) -> Result<(), BlkError> {
    common.write_u16(COMMON_QUEUE_SELECT, queue);
    common.write_u16(COMMON_QUEUE_MSIX_VECTOR, entry);
    if common.read_u16(COMMON_QUEUE_MSIX_VECTOR) == NO_VECTOR {
        return Err(BlkError::Device("the device refused the MSI-X vector"));
    }
    Ok(())
}

/// The common configuration inside one of the crate's windows.
pub(crate) struct CommonConfig {
    window: usize,
    offset: u64,
}

impl CommonConfig {
    fn write_u16(&self, at: u64, value: u16) {
        WINDOWS.lock()[self.window].write_u16(self.offset + at, value);
    }

    fn read_u16(&self, at: u64) -> u16 {
        WINDOWS.lock()[self.window].read_u16(self.offset + at)
    }
}
