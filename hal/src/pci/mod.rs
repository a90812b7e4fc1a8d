//! PCI: enumeration, configuration space, BARs, capabilities, and MSI-X.
//!
//! [`init`] scans the buses once at boot — through ECAM when the ACPI MCFG gives a region for
//! segment 0, else through the legacy ports — following PCI-to-PCI bridges to their secondary
//! buses, and records each function's ids, class, BARs (decoded and sized while the function's
//! decoding is briefly off, as Linux does at boot) and capability list. Everything read from a
//! device is checked: a BAR that overflows, a 64-bit BAR in the last slot, a capability
//! pointer into the header or past the space, a capability list that loops — each is logged
//! and left out, never trusted.
//!
//! The kernel sees the result as [`DeviceInfo`] values and reaches a device only through a
//! [`PciDevice`], which [`open`] hands out once per function: its configuration reads and
//! writes are bounds-checked against that function's own space, its memory BARs are mapped
//! uncached through [`crate::mm::claim_mmio`], and MSI-X ([`msix`]) programs the local APIC
//! address itself. There is no INTx: routing it needs the ACPI `_PRT`, which needs AML.

mod config;
pub mod msix;

use alloc::{vec, vec::Vec};
use core::fmt;

use config::Mechanism;
pub use msix::Msix;
use spin::{Mutex, Once};

use crate::mm::{MapError, Mmio};

/// A function's bus, device and function numbers (segment 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Address {
    /// Bus number.
    pub bus: u8,
    /// Device number (0..32).
    pub device: u8,
    /// Function number (0..8).
    pub function: u8,
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "0000:{:02x}:{:02x}.{}",
            self.bus, self.device, self.function
        )
    }
}

/// What a BAR decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// I/O ports.
    Io,
    /// Memory below 4 GiB.
    Memory32 {
        /// Reads have no side effects.
        prefetchable: bool,
    },
    /// Memory anywhere (this BAR and the next slot form one 64-bit address).
    Memory64 {
        /// Reads have no side effects.
        prefetchable: bool,
    },
}

/// A decoded and sized base address register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    /// Its slot (0..6).
    pub index: u8,
    /// What it decodes.
    pub kind: BarKind,
    /// Its base (a port number for I/O).
    pub address: u64,
    /// Bytes (or ports) decoded: a power of two.
    pub size: u64,
}

/// A capability in a function's list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    /// Capability id (0x05 MSI, 0x09 vendor, 0x10 PCI Express, 0x11 MSI-X...).
    pub id: u8,
    /// Its offset in configuration space.
    pub offset: u8,
}

/// Capability id of MSI.
pub const CAP_MSI: u8 = 0x05;
/// Capability id of vendor-specific capabilities (virtio uses these).
pub const CAP_VENDOR: u8 = 0x09;
/// Capability id of MSI-X.
pub const CAP_MSIX: u8 = 0x11;

/// One function found by [`init`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Where it is.
    pub address: Address,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Base class, subclass and programming interface.
    pub class: (u8, u8, u8),
    /// Revision id.
    pub revision: u8,
    /// Header type (0 for endpoints, 1 for PCI-to-PCI bridges), without the multi-function bit.
    pub header_type: u8,
    /// Its BARs that decode something.
    pub bars: Vec<Bar>,
    /// Its capabilities, in list order.
    pub capabilities: Vec<Capability>,
}

impl DeviceInfo {
    /// The BAR in slot `index`, if it decodes anything.
    pub fn bar(&self, index: u8) -> Option<&Bar> {
        self.bars.iter().find(|b| b.index == index)
    }

    /// The first capability with id `id`.
    pub fn capability(&self, id: u8) -> Option<Capability> {
        self.capabilities.iter().copied().find(|c| c.id == id)
    }
}

/// Why a PCI operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// [`init`] has not run, or found no configuration mechanism.
    NoConfigSpace,
    /// No function at this address.
    NoDevice(Address),
    /// The function is already open.
    Busy(Address),
    /// A configuration access outside the function's space or misaligned.
    BadOffset(u16),
    /// The BAR slot does not decode memory.
    NoSuchBar(u8),
    /// A region does not fit inside its BAR.
    OutsideBar(u8),
    /// The function has no such capability.
    NoCapability(u8),
    /// A capability holds impossible values.
    BadCapability(u8),
    /// The MSI-X table has no such entry.
    NoEntry(u16),
    /// The target CPU's APIC id does not fit a message address (needs interrupt remapping).
    UnreachableCpu(u32),
    /// Mapping a BAR failed.
    Map(MapError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoConfigSpace => write!(f, "no PCI configuration space"),
            Self::NoDevice(a) => write!(f, "no PCI function at {a}"),
            Self::Busy(a) => write!(f, "PCI function {a} is already open"),
            Self::BadOffset(o) => write!(f, "configuration offset {o:#x} out of range"),
            Self::NoSuchBar(i) => write!(f, "BAR {i} decodes no memory"),
            Self::OutsideBar(i) => write!(f, "a region reaches outside BAR {i}"),
            Self::NoCapability(id) => write!(f, "no capability {id:#04x}"),
            Self::BadCapability(id) => write!(f, "capability {id:#04x} is malformed"),
            Self::NoEntry(e) => write!(f, "no MSI-X table entry {e}"),
            Self::UnreachableCpu(id) => write!(f, "APIC id {id} is out of MSI reach"),
            Self::Map(e) => write!(f, "mapping a BAR: {e}"),
        }
    }
}

impl From<MapError> for Error {
    fn from(e: MapError) -> Self {
        Self::Map(e)
    }
}

/// The configuration mechanism and everything the scan found.
struct Bus {
    mechanism: Mechanism,
    devices: Vec<DeviceInfo>,
    /// Which of `devices` are open.
    open: Mutex<Vec<bool>>,
}

static BUS: Once<Bus> = Once::new();

/// Configuration register offsets (type 0 and 1 headers).
mod reg {
    pub const ID: u16 = 0x00;
    pub const COMMAND: u16 = 0x04;
    pub const STATUS: u16 = 0x06;
    pub const CLASS: u16 = 0x08;
    pub const HEADER_TYPE: u16 = 0x0e;
    pub const BAR0: u16 = 0x10;
    pub const SECONDARY_BUS: u16 = 0x19;
    pub const CAPABILITIES: u16 = 0x34;
}

/// Command register: I/O space, memory space, bus master, INTx disable.
const COMMAND_IO: u16 = 1 << 0;
const COMMAND_MEMORY: u16 = 1 << 1;
const COMMAND_MASTER: u16 = 1 << 2;
const COMMAND_INTX_OFF: u16 = 1 << 10;
/// Status register: the capability list is present.
const STATUS_CAPABILITIES: u16 = 1 << 4;
/// Header type: the device has several functions.
const MULTI_FUNCTION: u8 = 0x80;
/// The most capabilities a list can hold (48 dwords after the 64-byte header).
const MAX_CAPABILITIES: usize = 48;

/// Scans the PCI buses (once; later calls return the first result) and logs one line per
/// function (and, at debug level, per BAR). ECAM from the MCFG's segment-0 region if there is one, else the
/// legacy ports. Returns the functions found, or `None` with no configuration mechanism.
pub fn init() -> Option<&'static [DeviceInfo]> {
    if let Some(bus) = BUS.get() {
        return Some(&bus.devices);
    }
    let region =
        crate::acpi::platform().and_then(|p| p.pcie.iter().find(|r| r.segment == 0).copied());
    let mechanism = match region {
        Some(region) => Mechanism::ecam(region),
        None => match Mechanism::legacy() {
            Some(legacy) => legacy,
            None => {
                log::warn!("pci: no MCFG and no legacy configuration ports: no PCI");
                return None;
            }
        },
    };
    log::info!("pci: configuration space through {}", mechanism.describe());
    let mut devices = Vec::new();
    let mut visited = vec![false; 256];
    scan_bus(&mechanism, 0, &mut visited, &mut devices);
    devices.sort_by_key(|d| d.address);
    for device in &devices {
        log_device(device);
    }
    let open = Mutex::new(vec![false; devices.len()]);
    let bus = BUS.call_once(|| Bus {
        mechanism,
        devices,
        open,
    });
    Some(&bus.devices)
}

/// The functions [`init`] found (empty before it ran).
pub fn devices() -> &'static [DeviceInfo] {
    BUS.get().map_or(&[], |b| &b.devices)
}

/// The first function with these ids.
pub fn find(vendor: u16, device: u16) -> Option<&'static DeviceInfo> {
    devices()
        .iter()
        .find(|d| d.vendor == vendor && d.device == device)
}

fn log_device(d: &DeviceInfo) {
    log::info!(
        "pci {} [{:04x}:{:04x}] type {:02x} class {:02x}.{:02x}.{:02x} rev {:02x}",
        d.address,
        d.vendor,
        d.device,
        d.header_type,
        d.class.0,
        d.class.1,
        d.class.2,
        d.revision
    );
    for bar in &d.bars {
        let kind = match bar.kind {
            BarKind::Io => "io",
            BarKind::Memory32 {
                prefetchable: false,
            } => "mem32",
            BarKind::Memory32 { prefetchable: true } => "mem32 pref",
            BarKind::Memory64 {
                prefetchable: false,
            } => "mem64",
            BarKind::Memory64 { prefetchable: true } => "mem64 pref",
        };
        log::debug!(
            "pci {}: BAR {} {kind} {:#x} size {:#x}",
            d.address,
            bar.index,
            bar.address,
            bar.size
        );
    }
}

/// Reads `len` bytes (1, 2 or 4) at `offset` from the dword that holds them.
fn read_sized(m: &Mechanism, at: Address, offset: u16, len: u16) -> u32 {
    let dword = m.read(at, offset & !3);
    let shift = u32::from(offset & 3) * 8;
    let mask = if len == 4 {
        u32::MAX
    } else {
        (1 << (len * 8)) - 1
    };
    (dword >> shift) & mask
}

/// Writes `len` bytes (1, 2 or 4) at `offset` by read-modify-write of their dword.
fn write_sized(m: &Mechanism, at: Address, offset: u16, len: u16, value: u32) {
    let aligned = offset & !3;
    let shift = u32::from(offset & 3) * 8;
    let dword = if len == 4 {
        value
    } else {
        let mask = ((1u32 << (len * 8)) - 1) << shift;
        (m.read(at, aligned) & !mask) | ((value << shift) & mask)
    };
    m.write(at, aligned, dword);
}

fn scan_bus(m: &Mechanism, bus: u8, visited: &mut [bool], out: &mut Vec<DeviceInfo>) {
    if core::mem::replace(&mut visited[usize::from(bus)], true) {
        log::warn!("pci: bus {bus:02x} is reached twice: a bridge loop, not scanned again");
        return;
    }
    for device in 0..32 {
        let first = Address {
            bus,
            device,
            function: 0,
        };
        if read_sized(m, first, reg::ID, 2) == 0xffff {
            continue;
        }
        let multi = read_sized(m, first, reg::HEADER_TYPE, 1) as u8 & MULTI_FUNCTION != 0;
        for function in 0..if multi { 8 } else { 1 } {
            let at = Address {
                bus,
                device,
                function,
            };
            if let Some(info) = probe(m, at) {
                let secondary =
                    (info.header_type == 1).then(|| read_sized(m, at, reg::SECONDARY_BUS, 1) as u8);
                out.push(info);
                if let Some(secondary) = secondary.filter(|&s| s > bus) {
                    scan_bus(m, secondary, visited, out);
                }
            }
        }
    }
}

/// Reads one function's identity, BARs and capabilities; `None` if nothing answers.
fn probe(m: &Mechanism, at: Address) -> Option<DeviceInfo> {
    let id = m.read(at, reg::ID);
    if id & 0xffff == 0xffff {
        return None;
    }
    let class = m.read(at, reg::CLASS);
    let header_type = read_sized(m, at, reg::HEADER_TYPE, 1) as u8 & !MULTI_FUNCTION;
    let bar_slots = match header_type {
        0 => 6,
        1 => 2,
        _ => 0,
    };
    Some(DeviceInfo {
        address: at,
        vendor: id as u16,
        device: (id >> 16) as u16,
        class: ((class >> 24) as u8, (class >> 16) as u8, (class >> 8) as u8),
        revision: class as u8,
        header_type,
        bars: size_bars(m, at, bar_slots),
        capabilities: capabilities(m, at),
    })
}

/// Decodes and sizes BARs `0..slots` with the function's decoding off meanwhile.
fn size_bars(m: &Mechanism, at: Address, slots: u8) -> Vec<Bar> {
    let command = read_sized(m, at, reg::COMMAND, 2) as u16;
    write_sized(
        m,
        at,
        reg::COMMAND,
        2,
        u32::from(command & !(COMMAND_IO | COMMAND_MEMORY)),
    );
    let bars = decode_bars(slots, |offset| {
        let original = m.read(at, offset);
        m.write(at, offset, u32::MAX);
        let mask = m.read(at, offset);
        m.write(at, offset, original);
        (original, mask)
    })
    .unwrap_or_else(|(bars, refused)| {
        for (index, why) in refused {
            log::warn!("pci {at}: BAR {index} refused: {why}");
        }
        bars
    });
    write_sized(m, at, reg::COMMAND, 2, u32::from(command));
    bars
}

/// BARs refused by [`decode_bars`]: slot and reason.
pub type RefusedBars = Vec<(u8, &'static str)>;

/// Decodes BARs `0..slots` (at most 6) from `probe(offset)`, which gives a BAR register's
/// value and what it reads after all ones were written (the size mask): the BARs that decode
/// something, or those and the refused ones with why.
pub fn decode_bars(
    slots: u8,
    mut probe: impl FnMut(u16) -> (u32, u32),
) -> Result<Vec<Bar>, (Vec<Bar>, RefusedBars)> {
    let (mut bars, mut refused) = (Vec::new(), Vec::new());
    let mut index = 0;
    while index < slots.min(6) {
        match size_bar(&mut probe, index, slots.min(6)) {
            Ok((bar, used)) => {
                bars.extend(bar);
                index += used;
            }
            Err(why) => {
                refused.push((index, why));
                index += 1;
            }
        }
    }
    if refused.is_empty() {
        Ok(bars)
    } else {
        Err((bars, refused))
    }
}

/// Sizes BAR `index`: the BAR (if it decodes anything) and how many slots it takes.
fn size_bar(
    probe: &mut impl FnMut(u16) -> (u32, u32),
    index: u8,
    slots: u8,
) -> Result<(Option<Bar>, u8), &'static str> {
    let offset = reg::BAR0 + 4 * u16::from(index);
    let (low, low_mask) = probe(offset);
    if low & 1 == 1 {
        let mask = low_mask & !3 & 0xffff;
        if mask == 0 {
            return Ok((None, 1));
        }
        let size = u64::from(!mask & 0xffff) + 1;
        let address = u64::from(low & !3);
        if !size.is_power_of_two() || address + size > 0x1_0000 {
            return Err("its port range is impossible");
        }
        return Ok((Some(bar(index, BarKind::Io, address, size)), 1));
    }
    let prefetchable = low & 8 != 0;
    let (kind, address, mask, used) = match (low >> 1) & 3 {
        0 => (
            BarKind::Memory32 { prefetchable },
            u64::from(low & !0xf),
            u64::from(low_mask & !0xf) | 0xffff_ffff_0000_0000,
            1,
        ),
        2 => {
            if index + 1 >= slots {
                return Err("a 64-bit BAR in the last slot");
            }
            let (high, high_mask) = probe(offset + 4);
            (
                BarKind::Memory64 { prefetchable },
                u64::from(high) << 32 | u64::from(low & !0xf),
                u64::from(high_mask) << 32 | u64::from(low_mask & !0xf),
                2,
            )
        }
        _ => return Err("a reserved memory type"),
    };
    if mask & !0xf == 0 || mask == 0xffff_ffff_0000_0000 {
        return Ok((None, used));
    }
    let size = (!mask | 0xf).wrapping_add(1);
    let limit = if used == 1 { 1 << 32 } else { u64::MAX };
    if !size.is_power_of_two() || address.checked_add(size).is_none_or(|end| end > limit) {
        return Err("its size or address is impossible");
    }
    Ok((Some(bar(index, kind, address, size)), used))
}

fn bar(index: u8, kind: BarKind, address: u64, size: u64) -> Bar {
    Bar {
        index,
        kind,
        address,
        size,
    }
}

/// Walks the capability list, refusing pointers into the header or past the space and
/// stopping at a loop.
fn capabilities(m: &Mechanism, at: Address) -> Vec<Capability> {
    let status = read_sized(m, at, reg::STATUS, 2) as u16;
    if status & STATUS_CAPABILITIES == 0 {
        return Vec::new();
    }
    let first = read_sized(m, at, reg::CAPABILITIES, 1) as u8;
    walk_capabilities(first, |offset| read_sized(m, at, offset, 2) as u16).unwrap_or_else(
        |(found, why)| {
            log::warn!("pci {at}: capability list cut short: {why}");
            found
        },
    )
}

/// The capability walk over `read16` (id in the low byte, next pointer in the high byte):
/// all capabilities, or those before the first bad pointer and why it is bad.
pub fn walk_capabilities(
    first: u8,
    mut read16: impl FnMut(u16) -> u16,
) -> Result<Vec<Capability>, (Vec<Capability>, &'static str)> {
    let mut found = Vec::new();
    let mut next = first;
    while next != 0 {
        if next < 0x40 {
            return Err((found, "a pointer into the header"));
        }
        if found.len() == MAX_CAPABILITIES {
            return Err((found, "more entries than fit: a loop"));
        }
        let offset = next & !3;
        if offset != next {
            return Err((found, "a misaligned pointer"));
        }
        let word = read16(u16::from(offset));
        found.push(Capability {
            id: word as u8,
            offset,
        });
        next = (word >> 8) as u8;
    }
    Ok(found)
}

/// An open PCI function: its configuration space, BARs and MSI-X, for its driver alone.
/// Dropping it lets the function be opened again.
#[derive(Debug)]
pub struct PciDevice {
    index: usize,
}

/// Opens the function at `address` for one driver.
pub fn open(address: Address) -> Result<PciDevice, Error> {
    let bus = BUS.get().ok_or(Error::NoConfigSpace)?;
    let index = bus
        .devices
        .iter()
        .position(|d| d.address == address)
        .ok_or(Error::NoDevice(address))?;
    let mut open = bus.open.lock();
    if core::mem::replace(&mut open[index], true) {
        return Err(Error::Busy(address));
    }
    Ok(PciDevice { index })
}

impl Drop for PciDevice {
    fn drop(&mut self) {
        if let Some(bus) = BUS.get() {
            bus.open.lock()[self.index] = false;
        }
    }
}

macro_rules! config_accessors {
    ($($ty:ty, $len:expr => $read:ident, $write:ident;)*) => {
        $(
            #[doc = concat!("Reads the `", stringify!($ty), "` at `offset` of this function's configuration space.")]
            pub fn $read(&self, offset: u16) -> Result<$ty, Error> {
                let (m, at) = self.checked(offset, $len)?;
                Ok(read_sized(m, at, offset, $len) as $ty)
            }

            #[doc = concat!("Writes the `", stringify!($ty), "` at `offset` of this function's configuration space.")]
            pub fn $write(&self, offset: u16, value: $ty) -> Result<(), Error> {
                let (m, at) = self.checked(offset, $len)?;
                write_sized(m, at, offset, $len, u32::from(value));
                Ok(())
            }
        )*
    };
}

impl PciDevice {
    fn bus(&self) -> &'static Bus {
        BUS.get().expect("a PciDevice exists only after init")
    }

    /// What the scan found about this function.
    pub fn info(&self) -> &'static DeviceInfo {
        &self.bus().devices[self.index]
    }

    /// The mechanism and address for an access of `len` bytes at `offset`, if it is inside
    /// this function's space and naturally aligned.
    fn checked(&self, offset: u16, len: u16) -> Result<(&'static Mechanism, Address), Error> {
        let bus = self.bus();
        if !offset.is_multiple_of(len) || offset.saturating_add(len) > bus.mechanism.space() {
            return Err(Error::BadOffset(offset));
        }
        Ok((&bus.mechanism, self.info().address))
    }

    config_accessors! {
        u8, 1 => read_u8, write_u8;
        u16, 2 => read_u16, write_u16;
        u32, 4 => read_u32, write_u32;
    }

    /// The size of this function's configuration space (4096 through ECAM, 256 through the
    /// legacy ports).
    pub fn config_space_len(&self) -> u16 {
        self.bus().mechanism.space()
    }

    /// Turns on memory decoding and bus mastering (DMA), and turns INTx off (MSI-X is the only
    /// interrupt Evergreen uses).
    pub fn enable_memory_and_dma(&self) -> Result<(), Error> {
        let command = self.read_u16(reg::COMMAND)?;
        self.write_u16(
            reg::COMMAND,
            command | COMMAND_MEMORY | COMMAND_MASTER | COMMAND_INTX_OFF,
        )
    }

    /// Maps `len` bytes at `offset` of memory BAR `index`, uncached.
    pub fn map_bar(&self, index: u8, offset: u64, len: u64) -> Result<Mmio, Error> {
        let bar = self
            .info()
            .bar(index)
            .filter(|b| b.kind != BarKind::Io)
            .ok_or(Error::NoSuchBar(index))?;
        let end = offset.checked_add(len).ok_or(Error::OutsideBar(index))?;
        if len == 0 || end > bar.size || bar.address == 0 {
            return Err(Error::OutsideBar(index));
        }
        Ok(crate::mm::claim_mmio(bar.address + offset, len)?)
    }

    /// Turns memory decoding off (while a driver sizes BARs itself) or on.
    pub fn set_memory_decode(&self, on: bool) -> Result<(), Error> {
        let command = self.read_u16(reg::COMMAND)?;
        let command = if on {
            command | COMMAND_MEMORY
        } else {
            command & !COMMAND_MEMORY
        };
        self.write_u16(reg::COMMAND, command)
    }
}
