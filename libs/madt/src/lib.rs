//! The ACPI MADT ("APIC" table, ACPI 6.5 §5.2.12): the one parser of its entries, used by the
//! loader (through `bootcore::madt`, to start CPUs and mask I/O APICs) and by hal (`hal::acpi`,
//! for the kernel's machine description). No `unsafe`, no allocation, host-tested.
//!
//! Firmware tables are untrusted input. [`Madt::new`] accepts a table only if its signature
//! is `APIC` and its declared length covers the fixed part and fits the bytes given; bytes
//! past the declared length are ignored. The checksum is left to the caller
//! ([`Madt::checksum_ok`]): the loader refuses a bad one, hal warns and reads on. The
//! [`Entries`] walk yields each entry decoded, or why it could not be: an entry too short for
//! its type is reported and skipped ([`EntryError::TooShort`]), an entry whose length is
//! impossible (below 2, or past the table's end) is reported and ends the walk
//! ([`EntryError::BadLength`]), so no table can make it loop or read out of bounds.
#![no_std]
#![forbid(unsafe_code)]

use core::fmt;

#[cfg(test)]
mod tests;

/// Length of an ACPI system description table header.
pub const SDT_HEADER_LEN: usize = 36;
/// Offset of the first entry (header, local APIC address, flags).
pub const ENTRIES_OFFSET: usize = SDT_HEADER_LEN + 8;

/// Entry type: Processor Local APIC.
pub const TYPE_LOCAL_APIC: u8 = 0;
/// Entry type: I/O APIC.
pub const TYPE_IO_APIC: u8 = 1;
/// Entry type: Interrupt Source Override.
pub const TYPE_INTERRUPT_OVERRIDE: u8 = 2;
/// Entry type: Local APIC NMI.
pub const TYPE_LOCAL_APIC_NMI: u8 = 4;
/// Entry type: Local APIC Address Override.
pub const TYPE_LAPIC_OVERRIDE: u8 = 5;
/// Entry type: Processor Local x2APIC.
pub const TYPE_LOCAL_X2APIC: u8 = 9;
/// Entry type: Local x2APIC NMI.
pub const TYPE_X2APIC_NMI: u8 = 0xa;

/// Local APIC flags bit 0: the processor is enabled.
pub const FLAG_ENABLED: u32 = 1;
/// Local APIC flags bit 1: the processor can be brought online (only meaningful when not
/// enabled).
pub const FLAG_ONLINE_CAPABLE: u32 = 2;
/// MADT flags bit 0 (PCAT_COMPAT): the machine also has the dual 8259 PICs.
pub const FLAG_PCAT_COMPAT: u32 = 1;

/// Why a table is not a MADT this parser can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The signature is not `APIC`.
    Signature,
    /// The declared length is shorter than the fixed part or longer than the bytes given.
    Length {
        /// Length in the header.
        declared: usize,
        /// Bytes available.
        available: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Signature => write!(f, "signature is not APIC"),
            Self::Length {
                declared,
                available,
            } => write!(
                f,
                "declared length {declared} does not fit (minimum {ENTRIES_OFFSET}, \
                 {available} bytes available)"
            ),
        }
    }
}

/// Why one entry could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryError {
    /// An entry of a known type is shorter than that type's fields; it is skipped.
    TooShort {
        /// Entry type.
        kind: u8,
        /// Its length.
        len: usize,
    },
    /// An entry's length is below 2 or runs past the table's end; the walk ends here.
    BadLength {
        /// Entry type.
        kind: u8,
        /// Its length.
        len: usize,
        /// Bytes left in the table from its start.
        left: usize,
    },
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { kind, len } => {
                write!(f, "MADT entry of type {kind} is too short ({len} bytes)")
            }
            Self::BadLength { kind, len, left } => write!(
                f,
                "MADT entry of type {kind} has length {len} with {left} bytes left"
            ),
        }
    }
}

/// One MADT entry, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Processor Local APIC (type 0).
    LocalApic {
        /// ACPI processor UID.
        uid: u8,
        /// APIC ID.
        apic_id: u8,
        /// Flags: [`FLAG_ENABLED`], [`FLAG_ONLINE_CAPABLE`].
        flags: u32,
    },
    /// I/O APIC (type 1).
    IoApic {
        /// I/O APIC ID.
        id: u8,
        /// Physical address of its registers.
        address: u32,
        /// First global system interrupt it serves.
        gsi_base: u32,
    },
    /// Interrupt Source Override (type 2).
    InterruptOverride {
        /// Bus (0 = ISA).
        bus: u8,
        /// Bus-relative IRQ.
        irq: u8,
        /// The global system interrupt it arrives at.
        gsi: u32,
        /// MPS INTI flags (see [`inti_flags`]).
        flags: u16,
    },
    /// Local APIC NMI (type 4).
    LocalApicNmi {
        /// ACPI processor UID, 0xff for all processors.
        uid: u8,
        /// MPS INTI flags (see [`inti_flags`]).
        flags: u16,
        /// LINT input (0 or 1).
        lint: u8,
    },
    /// Local APIC Address Override (type 5).
    LapicAddressOverride {
        /// 64-bit physical address of the local APIC.
        address: u64,
    },
    /// Processor Local x2APIC (type 9).
    LocalX2Apic {
        /// x2APIC ID.
        apic_id: u32,
        /// Flags, as for [`Entry::LocalApic`].
        flags: u32,
        /// ACPI processor UID.
        uid: u32,
    },
    /// Local x2APIC NMI (type 0xa).
    X2ApicNmi {
        /// MPS INTI flags (see [`inti_flags`]).
        flags: u16,
        /// ACPI processor UID, `u32::MAX` for all processors.
        uid: u32,
        /// LINT input (0 or 1).
        lint: u8,
    },
    /// Any other type (other interrupt models such as SAPIC or GIC, and reserved types).
    Other {
        /// Entry type.
        kind: u8,
    },
}

/// Polarity of an interrupt input (MPS INTI flags bits 0..2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polarity {
    /// Conforms to the bus (ISA: active high).
    SameAsBus,
    /// Active high.
    ActiveHigh,
    /// Active low.
    ActiveLow,
}

/// Trigger mode of an interrupt input (MPS INTI flags bits 2..4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Conforms to the bus (ISA: edge).
    SameAsBus,
    /// Edge-triggered.
    Edge,
    /// Level-triggered.
    Level,
}

/// Decodes MPS INTI flags; `None` if either field holds the reserved value 0b10.
pub const fn inti_flags(flags: u16) -> Option<(Polarity, Trigger)> {
    let polarity = match flags & 0b11 {
        0b00 => Polarity::SameAsBus,
        0b01 => Polarity::ActiveHigh,
        0b11 => Polarity::ActiveLow,
        _ => return None,
    };
    let trigger = match (flags >> 2) & 0b11 {
        0b00 => Trigger::SameAsBus,
        0b01 => Trigger::Edge,
        0b11 => Trigger::Level,
        _ => return None,
    };
    Some((polarity, trigger))
}

/// Whether `bytes` sum to zero modulo 256 (the ACPI checksum rule).
pub fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b)) == 0
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    let mut raw = [0; 2];
    raw.copy_from_slice(&bytes[at..at + 2]);
    u16::from_le_bytes(raw)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut raw = [0; 4];
    raw.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(raw)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(raw)
}

/// A MADT whose signature and length have been checked: exactly its declared bytes.
#[derive(Clone, Copy, Debug)]
pub struct Madt<'a> {
    bytes: &'a [u8],
}

impl<'a> Madt<'a> {
    /// The MADT at the start of `table` (header included).
    pub fn new(table: &'a [u8]) -> Result<Self, Error> {
        if table.get(..4) != Some(b"APIC") {
            return Err(Error::Signature);
        }
        let declared = table.get(4..8).map_or(0, |_| u32_at(table, 4) as usize);
        if declared < ENTRIES_OFFSET || declared > table.len() {
            return Err(Error::Length {
                declared,
                available: table.len(),
            });
        }
        Ok(Self {
            bytes: &table[..declared],
        })
    }

    /// The table's bytes, as declared.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Whether the checksum holds.
    pub fn checksum_ok(&self) -> bool {
        checksum_ok(self.bytes)
    }

    /// The 32-bit local APIC address of the fixed part (an [`Entry::LapicAddressOverride`]
    /// takes precedence).
    pub fn local_apic_address(&self) -> u32 {
        u32_at(self.bytes, SDT_HEADER_LEN)
    }

    /// The MADT flags ([`FLAG_PCAT_COMPAT`]).
    pub fn flags(&self) -> u32 {
        u32_at(self.bytes, SDT_HEADER_LEN + 4)
    }

    /// The entries, in table order.
    pub fn entries(&self) -> Entries<'a> {
        Entries {
            rest: &self.bytes[ENTRIES_OFFSET..],
        }
    }
}

/// The walk over a MADT's entries (see the [crate] docs for how malformed ones end up).
#[derive(Clone, Debug)]
pub struct Entries<'a> {
    rest: &'a [u8],
}

impl Iterator for Entries<'_> {
    type Item = Result<Entry, EntryError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, &len) = match self.rest {
            [kind, len, ..] => (kind, len),
            _ => return None,
        };
        let len = usize::from(len);
        if len < 2 || len > self.rest.len() {
            let left = self.rest.len();
            self.rest = &[];
            return Some(Err(EntryError::BadLength { kind, len, left }));
        }
        let (entry, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(decode(kind, entry))
    }
}

/// The minimum length of entries of type `kind`, if it is one this parser decodes.
const fn min_len(kind: u8) -> Option<usize> {
    match kind {
        TYPE_LOCAL_APIC => Some(8),
        TYPE_IO_APIC => Some(12),
        TYPE_INTERRUPT_OVERRIDE => Some(10),
        TYPE_LOCAL_APIC_NMI => Some(6),
        TYPE_LAPIC_OVERRIDE => Some(12),
        TYPE_LOCAL_X2APIC => Some(16),
        TYPE_X2APIC_NMI => Some(12),
        _ => None,
    }
}

/// Decodes the entry `e` (its type and length bytes included) of type `kind`.
fn decode(kind: u8, e: &[u8]) -> Result<Entry, EntryError> {
    let Some(min) = min_len(kind) else {
        return Ok(Entry::Other { kind });
    };
    if e.len() < min {
        return Err(EntryError::TooShort { kind, len: e.len() });
    }
    Ok(match kind {
        TYPE_LOCAL_APIC => Entry::LocalApic {
            uid: e[2],
            apic_id: e[3],
            flags: u32_at(e, 4),
        },
        TYPE_IO_APIC => Entry::IoApic {
            id: e[2],
            address: u32_at(e, 4),
            gsi_base: u32_at(e, 8),
        },
        TYPE_INTERRUPT_OVERRIDE => Entry::InterruptOverride {
            bus: e[2],
            irq: e[3],
            gsi: u32_at(e, 4),
            flags: u16_at(e, 8),
        },
        TYPE_LOCAL_APIC_NMI => Entry::LocalApicNmi {
            uid: e[2],
            flags: u16_at(e, 3),
            lint: e[5],
        },
        TYPE_LAPIC_OVERRIDE => Entry::LapicAddressOverride {
            address: u64_at(e, 4),
        },
        TYPE_LOCAL_X2APIC => Entry::LocalX2Apic {
            apic_id: u32_at(e, 4),
            flags: u32_at(e, 8),
            uid: u32_at(e, 12),
        },
        _ => Entry::X2ApicNmi {
            flags: u16_at(e, 2),
            uid: u32_at(e, 4),
            lint: e[8],
        },
    })
}
