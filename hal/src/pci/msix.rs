//! MSI-X: a device's interrupts as memory writes to a local APIC.
//!
//! The MSI-X capability names a table (in one of the function's memory BARs) of 16-byte
//! entries: message address, message data, and a mask bit. Evergreen writes the x86 message
//! format — address `0xfee0_0000 | apic_id << 12` (physical destination, no redirection),
//! data = the vector, fixed delivery, edge-triggered — so an entry interrupts one CPU on a
//! vector from [`crate::trap::allocate`]. APIC ids above 255 would need interrupt remapping
//! and are refused.

use super::{CAP_MSIX, Error, PciDevice};
use crate::{mm::Mmio, trap::Vector};

/// Message control (at capability + 2): table size - 1, function mask, enable.
const CONTROL: u16 = 2;
const CONTROL_SIZE_MASK: u16 = 0x7ff;
const CONTROL_FUNCTION_MASK: u16 = 1 << 14;
const CONTROL_ENABLE: u16 = 1 << 15;
/// Table offset and BAR indicator (at capability + 4).
const TABLE: u16 = 4;
/// Bytes per table entry, and the fields inside one.
const ENTRY_BYTES: u64 = 16;
const ENTRY_ADDRESS_LOW: u64 = 0;
const ENTRY_ADDRESS_HIGH: u64 = 4;
const ENTRY_DATA: u64 = 8;
const ENTRY_CONTROL: u64 = 12;
const ENTRY_MASKED: u32 = 1;
/// The local APIC's message address window.
const MSI_ADDRESS: u32 = 0xfee0_0000;

/// A function's MSI-X table, mapped, with MSI-X enabled and every entry masked until routed.
#[derive(Debug)]
pub struct Msix {
    table: Mmio,
    entries: u16,
    capability: u16,
}

impl Msix {
    /// The number of table entries.
    pub fn len(&self) -> u16 {
        self.entries
    }

    /// Whether the table is empty (never: the size field counts from one).
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    fn entry(&self, entry: u16) -> Result<u64, Error> {
        if entry >= self.entries {
            return Err(Error::NoEntry(entry));
        }
        Ok(u64::from(entry) * ENTRY_BYTES)
    }

    /// Masks entry `entry`: the device holds its interrupts as pending.
    pub fn mask(&self, entry: u16) -> Result<(), Error> {
        let at = self.entry(entry)?;
        let control = self.table.read_u32(at + ENTRY_CONTROL);
        self.table
            .write_u32(at + ENTRY_CONTROL, control | ENTRY_MASKED);
        Ok(())
    }

    /// Points entry `entry` at `vector` on CPU `cpu` and unmasks it.
    pub fn route(&self, entry: u16, vector: &Vector, cpu: usize) -> Result<(), Error> {
        let at = self.entry(entry)?;
        let apic_id = crate::percpu::lapic_id(cpu).ok_or(Error::UnreachableCpu(u32::MAX))?;
        if apic_id > 0xff {
            return Err(Error::UnreachableCpu(apic_id));
        }
        self.mask(entry)?;
        self.table
            .write_u32(at + ENTRY_ADDRESS_LOW, MSI_ADDRESS | apic_id << 12);
        self.table.write_u32(at + ENTRY_ADDRESS_HIGH, 0);
        self.table
            .write_u32(at + ENTRY_DATA, u32::from(vector.number()));
        let control = self.table.read_u32(at + ENTRY_CONTROL);
        self.table
            .write_u32(at + ENTRY_CONTROL, control & !ENTRY_MASKED);
        Ok(())
    }

    /// Entry `entry`'s programmed message: (address, data, masked).
    pub fn message(&self, entry: u16) -> Result<(u64, u32, bool), Error> {
        let at = self.entry(entry)?;
        let address = u64::from(self.table.read_u32(at + ENTRY_ADDRESS_HIGH)) << 32
            | u64::from(self.table.read_u32(at + ENTRY_ADDRESS_LOW));
        let control = self.table.read_u32(at + ENTRY_CONTROL);
        Ok((
            address,
            self.table.read_u32(at + ENTRY_DATA),
            control & ENTRY_MASKED != 0,
        ))
    }
}

impl PciDevice {
    /// Maps the MSI-X table, masks every entry and enables MSI-X (which turns INTx and MSI
    /// off). Refused if the function has no MSI-X capability or its table lies outside its
    /// BAR.
    pub fn enable_msix(&self) -> Result<Msix, Error> {
        let capability = u16::from(
            self.info()
                .capability(CAP_MSIX)
                .ok_or(Error::NoCapability(CAP_MSIX))?
                .offset,
        );
        let control = self.read_u16(capability + CONTROL)?;
        let entries = (control & CONTROL_SIZE_MASK) + 1;
        let table = self.read_u32(capability + TABLE)?;
        let (bar, offset) = ((table & 7) as u8, u64::from(table & !7));
        let len = u64::from(entries) * ENTRY_BYTES;
        let table = self.map_bar(bar, offset, len).map_err(|e| match e {
            Error::NoSuchBar(_) | Error::OutsideBar(_) => {
                log::warn!(
                    "pci {}: MSI-X table at BAR {bar} + {offset:#x} ({entries} entries) is \
                     outside the BAR",
                    self.info().address
                );
                Error::BadCapability(CAP_MSIX)
            }
            other => other,
        })?;
        let msix = Msix {
            table,
            entries,
            capability,
        };
        // Enabled with the whole function masked, then each entry masked, then unmasked:
        // no entry can fire with an address firmware left behind.
        self.write_u16(
            capability + CONTROL,
            control | CONTROL_ENABLE | CONTROL_FUNCTION_MASK,
        )?;
        for entry in 0..entries {
            msix.mask(entry)?;
        }
        self.write_u16(
            capability + CONTROL,
            (control | CONTROL_ENABLE) & !CONTROL_FUNCTION_MASK,
        )?;
        Ok(msix)
    }

    /// Turns MSI-X off again (the table mapping in `msix` goes with it).
    pub fn disable_msix(&self, msix: Msix) -> Result<(), Error> {
        let control = self.read_u16(msix.capability + CONTROL)?;
        self.write_u16(msix.capability + CONTROL, control & !CONTROL_ENABLE)
    }
}
