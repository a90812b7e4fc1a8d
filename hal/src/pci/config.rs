//! Configuration-space access: PCI Express ECAM (the MCFG's memory windows) or, without an
//! MCFG, the legacy `0xCF8`/`0xCFC` port pair.
//!
//! ECAM gives every function a 4 KiB page at `base + (bus << 20 | device << 15 | function
//! << 12)`. Mapping a segment's whole 256 MiB would waste the MMIO window, so each bus's
//! 1 MiB is mapped (uncached, through [`crate::mm`]) the first time it is touched; a bus
//! outside the MCFG's range reads as absent. The port pair reaches only the first 256 bytes
//! of each function and needs its two accesses under one lock.

use alloc::vec::Vec;

use spin::Mutex;

use super::Address;
use crate::{acpi::PcieRegion, mm::Mmio, port::Port32};

/// Bytes of configuration space per function through ECAM.
pub const ECAM_SPACE: u16 = 4096;
/// Bytes of configuration space per function through the legacy ports.
pub const LEGACY_SPACE: u16 = 256;
/// ECAM bytes per bus (32 devices of 8 functions of 4 KiB).
const BUS_BYTES: u64 = 1 << 20;

/// How configuration space is reached.
pub(super) enum Mechanism {
    /// Memory-mapped, from one MCFG region (segment 0).
    Ecam {
        region: PcieRegion,
        /// Buses mapped so far.
        buses: Mutex<Vec<(u8, Mmio)>>,
    },
    /// The `0xCF8` address and `0xCFC` data ports.
    Legacy(Mutex<(Port32, Port32)>),
}

impl Mechanism {
    /// ECAM through `region`.
    pub(super) fn ecam(region: PcieRegion) -> Self {
        Self::Ecam {
            region,
            buses: Mutex::new(Vec::new()),
        }
    }

    /// The legacy ports, if they answer: the address port reads back what was written.
    pub(super) fn legacy() -> Option<Self> {
        // SAFETY: 0xCF8/0xCFC are the PC's PCI configuration mechanism #1; writing the address
        // register and reading or writing the data register touch only configuration space,
        // which cannot break memory safety by itself (hal decides what is written).
        let (mut address, data) = unsafe { (Port32::new(0xcf8), Port32::new(0xcfc)) };
        let saved = address.read();
        address.write(0x8000_0000);
        let answers = address.read() == 0x8000_0000;
        address.write(saved);
        answers.then(|| Self::Legacy(Mutex::new((address, data))))
    }

    /// The size of each function's configuration space.
    pub(super) fn space(&self) -> u16 {
        match self {
            Self::Ecam { .. } => ECAM_SPACE,
            Self::Legacy(_) => LEGACY_SPACE,
        }
    }

    /// A short name for the boot log.
    pub(super) fn describe(&self) -> alloc::string::String {
        match self {
            Self::Ecam { region, .. } => alloc::format!(
                "ECAM at {:#x}, buses {:02x}-{:02x}",
                region.address,
                region.bus_start,
                region.bus_end
            ),
            Self::Legacy(_) => "legacy ports 0xcf8/0xcfc".into(),
        }
    }

    /// Reads the aligned dword at `offset` (< [`Self::space`], a multiple of 4); all ones
    /// where nothing answers.
    pub(super) fn read(&self, at: Address, offset: u16) -> u32 {
        debug_assert!(offset.is_multiple_of(4) && offset < self.space());
        match self {
            Self::Ecam { region, buses } => with_bus(region, buses, at.bus, |mmio| {
                mmio.read_u32(function_offset(at) + u64::from(offset))
            })
            .unwrap_or(u32::MAX),
            Self::Legacy(ports) => {
                let mut ports = ports.lock();
                ports.0.write(legacy_address(at, offset));
                ports.1.read()
            }
        }
    }

    /// Writes the aligned dword at `offset`; ignored where nothing answers.
    pub(super) fn write(&self, at: Address, offset: u16, value: u32) {
        debug_assert!(offset.is_multiple_of(4) && offset < self.space());
        match self {
            Self::Ecam { region, buses } => {
                let _ = with_bus(region, buses, at.bus, |mmio| {
                    mmio.write_u32(function_offset(at) + u64::from(offset), value);
                });
            }
            Self::Legacy(ports) => {
                let mut ports = ports.lock();
                ports.0.write(legacy_address(at, offset));
                ports.1.write(value);
            }
        }
    }
}

/// The legacy address register's value for `offset` of `at`.
fn legacy_address(at: Address, offset: u16) -> u32 {
    0x8000_0000
        | u32::from(at.bus) << 16
        | u32::from(at.device) << 11
        | u32::from(at.function) << 8
        | u32::from(offset & 0xfc)
}

/// The offset of `at`'s page inside its bus's ECAM window.
fn function_offset(at: Address) -> u64 {
    u64::from(at.device) << 15 | u64::from(at.function) << 12
}

/// Runs `f` on bus `bus`'s ECAM window, mapping it first if needed; `None` if the bus is
/// outside the region or cannot be mapped.
fn with_bus<T>(
    region: &PcieRegion,
    buses: &Mutex<Vec<(u8, Mmio)>>,
    bus: u8,
    f: impl FnOnce(&Mmio) -> T,
) -> Option<T> {
    if !(region.bus_start..=region.bus_end).contains(&bus) {
        return None;
    }
    let mut buses = buses.lock();
    if let Some((_, mmio)) = buses.iter().find(|(b, _)| *b == bus) {
        return Some(f(mmio));
    }
    let phys = region.address.checked_add(u64::from(bus) * BUS_BYTES)?;
    // Firmware lists the ECAM window as reserved memory, so it is mapped as one of hal's own
    // devices rather than through the kernel's claim.
    match crate::mm::map_mmio(phys, BUS_BYTES) {
        Ok(mmio) => {
            let result = f(&mmio);
            buses.push((bus, mmio));
            Some(result)
        }
        Err(e) => {
            log::warn!("pci: cannot map the ECAM window of bus {bus:02x} at {phys:#x}: {e}");
            None
        }
    }
}
