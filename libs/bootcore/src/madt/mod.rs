//! The ACPI MADT ("APIC" table): the CPUs (Processor Local APIC and Local x2APIC entries),
//! the I/O APICs and the local APIC address. The loader finds the table through the RSDP and
//! hands its bytes here.
//!
//! A table with a wrong signature, a declared length outside the bytes given or a bad
//! checksum is refused. Inside a valid table, an entry with an impossible length ends the
//! walk (everything before it is kept); entries of unknown types or too short for their type
//! are skipped.

use alloc::vec::Vec;
use core::fmt;

/// Length of an ACPI system description table header.
pub const SDT_HEADER_LEN: usize = 36;
/// Offset of the first MADT entry (header, local APIC address, flags).
pub const ENTRIES_OFFSET: usize = 44;
/// The local APIC address when the table gives none.
pub const DEFAULT_LAPIC_ADDRESS: u64 = 0xFEE0_0000;

/// MADT entry type: Processor Local APIC.
pub const TYPE_LOCAL_APIC: u8 = 0;
/// MADT entry type: I/O APIC.
pub const TYPE_IO_APIC: u8 = 1;
/// MADT entry type: Local APIC Address Override.
pub const TYPE_LAPIC_OVERRIDE: u8 = 5;
/// MADT entry type: Processor Local x2APIC.
pub const TYPE_LOCAL_X2APIC: u8 = 9;

/// Local APIC flags bit 0: the processor is enabled.
pub const FLAG_ENABLED: u32 = 1;
/// Local APIC flags bit 1: the processor can be brought online (only meaningful when not
/// enabled).
pub const FLAG_ONLINE_CAPABLE: u32 = 2;

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

/// Whether `bytes` sum to zero modulo 256 (the ACPI checksum rule).
pub fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b)) == 0
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Parses a whole MADT (header included). Bytes past the declared length are ignored.
pub fn parse(table: &[u8]) -> Result<Madt, MadtError> {
    if table.get(..4) != Some(b"APIC") {
        return Err(MadtError::Signature);
    }
    let declared = u32_at(table, 4).map_or(0, |l| l as usize);
    if declared < ENTRIES_OFFSET || declared > table.len() {
        return Err(MadtError::Length {
            declared,
            available: table.len(),
        });
    }
    let t = &table[..declared];
    if !checksum_ok(t) {
        return Err(MadtError::Checksum);
    }
    let mut out = Madt {
        lapic_address: u32_at(t, SDT_HEADER_LEN).map_or(DEFAULT_LAPIC_ADDRESS, u64::from),
        ..Madt::default()
    };
    let mut at = ENTRIES_OFFSET;
    while at + 2 <= t.len() {
        let (kind, len) = (t[at], usize::from(t[at + 1]));
        if len < 2 || at + len > t.len() {
            break;
        }
        let e = &t[at..at + len];
        match (kind, len) {
            (TYPE_LOCAL_APIC, 8..) => out.cpus.push(Cpu {
                uid: u32::from(e[2]),
                apic_id: u32::from(e[3]),
                flags: u32_at(e, 4).unwrap_or(0),
                x2apic_entry: false,
            }),
            (TYPE_IO_APIC, 12..) => out.io_apics.push(IoApic {
                id: e[2],
                address: u64::from(u32_at(e, 4).unwrap_or(0)),
                gsi_base: u32_at(e, 8).unwrap_or(0),
            }),
            (TYPE_LAPIC_OVERRIDE, 12..) => {
                out.lapic_address = u64_at(e, 4).unwrap_or(out.lapic_address);
            }
            (TYPE_LOCAL_X2APIC, 16..) => out.cpus.push(Cpu {
                uid: u32_at(e, 12).unwrap_or(0),
                apic_id: u32_at(e, 4).unwrap_or(0),
                flags: u32_at(e, 8).unwrap_or(0),
                x2apic_entry: true,
            }),
            _ => {}
        }
        at += len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
