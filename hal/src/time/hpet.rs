//! The High Precision Event Timer's main counter, used as a calibration reference.

use crate::{acpi::HpetDesc, mm::Mmio};

/// General capabilities and id: counter period (fs) in bits 32-63, 64-bit counter in bit 13.
const CAPABILITIES: u64 = 0x000;
/// General configuration: bit 0 enables the main counter.
const CONFIGURATION: u64 = 0x010;
const MAIN_COUNTER: u64 = 0x0f0;
const ENABLE: u64 = 1 << 0;
const COUNTER_64BIT: u64 = 1 << 13;
/// The specification's longest allowed period: 100 ns.
const MAX_PERIOD_FS: u64 = 100_000_000;

/// A running HPET main counter.
pub(super) struct Hpet {
    mmio: Mmio,
    period_fs: u64,
    wide: bool,
}

impl Hpet {
    /// Maps the HPET the ACPI table describes, checks its period and starts its main counter.
    pub(super) fn new(desc: &HpetDesc) -> Result<Self, &'static str> {
        let mmio = crate::mm::map_mmio(desc.address, 0x400).map_err(|_| "cannot map it")?;
        let capabilities = mmio.read_u64(CAPABILITIES);
        let period_fs = capabilities >> 32;
        if period_fs == 0 || period_fs > MAX_PERIOD_FS {
            return Err("implausible counter period");
        }
        let configuration = mmio.read_u64(CONFIGURATION);
        if configuration & ENABLE == 0 {
            mmio.write_u64(CONFIGURATION, configuration | ENABLE);
        }
        Ok(Self {
            mmio,
            period_fs,
            wide: capabilities & COUNTER_64BIT != 0,
        })
    }

    /// The main counter.
    pub(super) fn counter(&self) -> u64 {
        if self.wide {
            self.mmio.read_u64(MAIN_COUNTER)
        } else {
            u64::from(self.mmio.read_u32(MAIN_COUNTER))
        }
    }

    /// The value the counter wraps at.
    pub(super) fn mask(&self) -> u64 {
        if self.wide {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        }
    }

    /// Counter ticks per second.
    pub(super) fn frequency(&self) -> u64 {
        1_000_000_000_000_000 / self.period_fs
    }
}
