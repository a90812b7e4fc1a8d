//! What the loader takes from the ACPI MADT ("APIC" table): the CPUs (Processor Local APIC
//! and Local x2APIC entries), the I/O APICs and the local APIC address. The loader finds the
//! table through the RSDP and hands its bytes here.
//!
//! The entries are read by the `madt` crate, the one MADT parser, which hal uses too. The
//! loader's policy on top: a table with a wrong signature, a declared length outside the
//! bytes given or a bad checksum is refused. Inside a valid table, an entry with an
//! impossible length ends the walk (everything before it is kept); entries of unknown types
//! or too short for their type are skipped.

use alloc::vec::Vec;
use core::fmt;

pub use madt::{
    ENTRIES_OFFSET, FLAG_ENABLED, FLAG_ONLINE_CAPABLE, SDT_HEADER_LEN, TYPE_IO_APIC,
    TYPE_LAPIC_OVERRIDE, TYPE_LOCAL_APIC, TYPE_LOCAL_X2APIC, checksum_ok,
};
use madt::{Entry, Madt as Table};

/// The local APIC address when the table gives none.
pub const DEFAULT_LAPIC_ADDRESS: u64 = 0xFEE0_0000;

/// A Processor Local APIC (type 0) or Local x2APIC (type 9) entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpu {
    /// ACPI processor UID.
    pub uid: u32,
    /// (x2)APIC ID.
    pub apic_id: u32,
    /// Flags: bit 0 enabled, bit 1 online-capable.
    pub flags: u32,
    /// Whether it came from a Local x2APIC (type 9) entry.
    pub x2apic_entry: bool,
}

impl Cpu {
    /// Whether Limine would start this CPU: exactly one of Enabled and Online-Capable set.
    pub fn startable(&self) -> bool {
        (self.flags & FLAG_ENABLED != 0) != (self.flags & FLAG_ONLINE_CAPABLE != 0)
    }
}

/// An I/O APIC entry (type 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoApic {
    /// I/O APIC ID.
    pub id: u8,
    /// Physical MMIO base.
    pub address: u64,
    /// First global system interrupt it handles.
    pub gsi_base: u32,
}

/// What the loader takes from the MADT.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Madt {
    /// Local APIC physical address (after any type-5 override).
    pub lapic_address: u64,
    /// CPUs in MADT order.
    pub cpus: Vec<Cpu>,
    /// I/O APICs in MADT order.
    pub io_apics: Vec<IoApic>,
}

/// Why a MADT was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MadtError {
    /// The signature is not `APIC`.
    Signature,
    /// The declared length is shorter than the fixed part or longer than the bytes given.
    Length {
        /// Length in the header.
        declared: usize,
        /// Bytes available.
        available: usize,
    },
    /// The bytes do not sum to zero.
    Checksum,
}

impl fmt::Display for MadtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MadtError::Signature => write!(f, "signature is not APIC"),
            MadtError::Length {
                declared,
                available,
            } => write!(
                f,
                "declared length {declared} does not fit (minimum {ENTRIES_OFFSET}, \
                 {available} bytes available)"
            ),
            MadtError::Checksum => write!(f, "checksum mismatch"),
        }
    }
}

impl From<madt::Error> for MadtError {
    fn from(e: madt::Error) -> Self {
        match e {
            madt::Error::Signature => Self::Signature,
            madt::Error::Length {
                declared,
                available,
            } => Self::Length {
                declared,
                available,
            },
        }
    }
}

/// Parses a whole MADT (header included). Bytes past the declared length are ignored.
pub fn parse(table: &[u8]) -> Result<Madt, MadtError> {
    let table = Table::new(table)?;
    if !table.checksum_ok() {
        return Err(MadtError::Checksum);
    }
    let mut out = Madt {
        lapic_address: u64::from(table.local_apic_address()),
        ..Madt::default()
    };
    // Malformed entries are skipped, and the walk itself ends at an impossible length.
    for entry in table.entries().flatten() {
        match entry {
            Entry::LocalApic {
                uid,
                apic_id,
                flags,
            } => out.cpus.push(Cpu {
                uid: u32::from(uid),
                apic_id: u32::from(apic_id),
                flags,
                x2apic_entry: false,
            }),
            Entry::IoApic {
                id,
                address,
                gsi_base,
            } => out.io_apics.push(IoApic {
                id,
                address: u64::from(address),
                gsi_base,
            }),
            Entry::LapicAddressOverride { address } => out.lapic_address = address,
            Entry::LocalX2Apic {
                apic_id,
                flags,
                uid,
            } => out.cpus.push(Cpu {
                uid,
                apic_id,
                flags,
                x2apic_entry: true,
            }),
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
