//! ACPI: the firmware's description of the machine (processors, interrupt controllers,
//! timers, PCI configuration space, power control).
//!
//! Firmware tables are input like any other: [`init`] walks the RSDP and the XSDT/RSDT itself,
//! bounds-checks every table and every MADT entry against the bytes it actually mapped, and
//! decodes the MADT with the `madt` crate (the parser the loader uses too) and the FADT, HPET
//! and MCFG through the `acpi` crate's table types read from zero-padded copies (a table
//! shorter than its revision promises reads as zeros, never past its end). The `acpi` crate's
//! own walkers are not used: its XSDT walk dereferences unaligned 64-bit entries and its MADT
//! iterator trusts entry lengths (a zero-length entry loops forever). A missing or malformed
//! table is reported and left out; the rest of the machine description still stands.

mod aml;
mod tables;

extern crate alloc;

use alloc::vec::Vec;
use core::fmt;

pub use aml::find_s5;
use spin::Once;

/// Why the ACPI tables could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The loader gave no RSDP.
    NoRsdp,
    /// Mapping firmware memory failed.
    Map(u64),
    /// The RSDP signature or checksum is wrong.
    BadRsdp,
    /// A table's length is impossible (shorter than its header, or absurdly long).
    BadLength([u8; 4], u64),
    /// A table does not carry the signature it was looked up by.
    BadSignature([u8; 4]),
    /// [`init`] already ran.
    AlreadyInitialised,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRsdp => write!(f, "the loader gave no RSDP"),
            Self::Map(phys) => write!(f, "cannot map firmware memory at {phys:#x}"),
            Self::BadRsdp => write!(f, "the RSDP has a bad signature or checksum"),
            Self::BadLength(sig, len) => {
                write!(f, "table {} has an impossible length {len}", Sig(*sig))
            }
            Self::BadSignature(sig) => write!(f, "expected table {}", Sig(*sig)),
            Self::AlreadyInitialised => write!(f, "ACPI tables already parsed"),
        }
    }
}

/// Formats a table signature (non-printable bytes as `?`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sig(pub [u8; 4]);

impl fmt::Display for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in &self.0 {
            let c = if b.is_ascii_graphic() { b as char } else { '?' };
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// A processor listed in the MADT (local APIC or local x2APIC entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Processor {
    /// ACPI processor UID.
    pub uid: u32,
    /// Local APIC id.
    pub apic_id: u32,
    /// Usable now.
    pub enabled: bool,
    /// Not enabled now but may be brought online (hot-plug).
    pub online_capable: bool,
}

/// An I/O APIC listed in the MADT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoApicDesc {
    /// Its I/O APIC id.
    pub id: u8,
    /// Physical address of its registers.
    pub address: u64,
    /// The first global system interrupt (GSI) it serves.
    pub gsi_base: u32,
}

/// How an interrupt line signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signalling {
    /// Active low (else active high).
    pub active_low: bool,
    /// Level-triggered (else edge-triggered).
    pub level: bool,
}

/// Where a legacy ISA IRQ arrives: its GSI and signalling, after interrupt source overrides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IsaRoute {
    /// The ISA IRQ (0..16).
    pub irq: u8,
    /// The global system interrupt it is wired to.
    pub gsi: u32,
    /// How it signals.
    pub signalling: Signalling,
}

/// A local APIC input wired to NMI (MADT local APIC NMI entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalNmi {
    /// The processor UID it applies to; `None` for all processors.
    pub uid: Option<u32>,
    /// LINT0 or LINT1.
    pub lint: u8,
    /// How it signals.
    pub signalling: Signalling,
}

/// An I/O port, or a memory address, from a generic address structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Register {
    /// An I/O port.
    Io(u16),
    /// Physical memory.
    Memory(u64),
    /// PCI configuration space of segment 0, bus 0: device, function, register offset.
    PciConfig {
        /// Device number.
        device: u8,
        /// Function number.
        function: u8,
        /// Register offset.
        offset: u16,
    },
}

/// What Evergreen uses from the FADT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FadtInfo {
    /// FADT revision.
    pub revision: u8,
    /// The ACPI PM timer port and whether it is 32 bits wide (else 24).
    pub pm_timer: Option<(u16, bool)>,
    /// PM1a control block port.
    pub pm1a_control: Option<u16>,
    /// PM1b control block port.
    pub pm1b_control: Option<u16>,
    /// The reset register and the value to write to it.
    pub reset: Option<(Register, u8)>,
    /// SMI command port and the value that switches the firmware to ACPI mode.
    pub acpi_enable: Option<(u16, u8)>,
    /// The SCI interrupt (an ISA IRQ number).
    pub sci_irq: u16,
    /// The RTC's CMOS century register (0 if none).
    pub century_register: u8,
    /// The firmware says an 8042 keyboard controller exists (IA-PC boot architecture flags).
    pub has_8042: bool,
    /// Hardware-reduced ACPI (no PM1 control, no PM timer).
    pub hardware_reduced: bool,
    /// Physical address of the DSDT.
    pub dsdt: Option<u64>,
}

/// What Evergreen uses from the HPET table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HpetDesc {
    /// Physical address of the register block.
    pub address: u64,
    /// Number of comparators the table announces.
    pub comparators: u8,
    /// The main counter is 64 bits wide.
    pub counter_64bit: bool,
}

/// A PCI Express enhanced configuration space region (MCFG entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcieRegion {
    /// Physical base address (of bus 0 of the segment, even if `bus_start` > 0).
    pub address: u64,
    /// PCI segment group.
    pub segment: u16,
    /// First bus decoded.
    pub bus_start: u8,
    /// Last bus decoded.
    pub bus_end: u8,
}

/// The `\_S5` sleep type values: what to write to SLP_TYP in PM1a/PM1b control for soft-off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SleepType {
    /// SLP_TYPa.
    pub a: u8,
    /// SLP_TYPb.
    pub b: u8,
}

/// Everything Evergreen learned from the ACPI tables.
#[derive(Clone, Debug, Default)]
pub struct Platform {
    /// ACPI revision of the RSDP (0 for ACPI 1.0, 2 for 2.0+).
    pub rsdp_revision: u8,
    /// Where the RSDP is (physical).
    pub rsdp_address: u64,
    /// The signatures of every table listed in the RSDT/XSDT, in order.
    pub tables: Vec<Sig>,
    /// Warnings about malformed or missing tables (also logged).
    pub warnings: usize,
    /// Whether a MADT was found and parsed.
    pub has_madt: bool,
    /// Processors, in MADT order.
    pub processors: Vec<Processor>,
    /// Physical address of the local APIC registers (MADT, after any address override).
    pub local_apic_address: Option<u64>,
    /// The machine also has the legacy dual 8259 PIC (which must be masked).
    pub has_8259: bool,
    /// I/O APICs.
    pub io_apics: Vec<IoApicDesc>,
    /// ISA IRQs whose wiring the MADT overrides.
    pub overrides: Vec<IsaRoute>,
    /// Local APIC NMI inputs.
    pub local_nmis: Vec<LocalNmi>,
    /// The FADT, if present and sane.
    pub fadt: Option<FadtInfo>,
    /// The HPET, if present and in memory space.
    pub hpet: Option<HpetDesc>,
    /// PCI Express configuration regions.
    pub pcie: Vec<PcieRegion>,
    /// The `\_S5` sleep type found in the DSDT.
    pub s5: Option<SleepType>,
    /// Count problems without logging them ([`decode_table`] on untrusted test input).
    quiet: bool,
}

impl Platform {
    /// Records a problem with the tables, logging it unless quiet.
    fn warn(&mut self, message: fmt::Arguments<'_>) {
        self.warnings += 1;
        if !self.quiet {
            log::warn!("{message}");
        }
    }

    /// Where ISA IRQ `irq` arrives: the MADT's override, or identity-mapped, active-high and
    /// edge-triggered (the ISA defaults).
    pub fn isa_route(&self, irq: u8) -> IsaRoute {
        self.overrides
            .iter()
            .find(|o| o.irq == irq)
            .copied()
            .unwrap_or(IsaRoute {
                irq,
                gsi: u32::from(irq),
                signalling: Signalling {
                    active_low: false,
                    level: false,
                },
            })
    }
}

static PLATFORM: Once<Platform> = Once::new();

/// Parses the ACPI tables from the RSDP the loader reported (its physical address under base
/// revision 3). Table-level problems are logged as warnings and leave the affected part out;
/// an error means nothing usable was found at all.
pub(crate) fn init() -> Result<&'static Platform, Error> {
    if PLATFORM.is_completed() {
        return Err(Error::AlreadyInitialised);
    }
    let rsdp = crate::boot::live().rsdp.ok_or(Error::NoRsdp)?;
    let mut platform = tables::parse(rsdp.address() as u64)?;
    platform.rsdp_address = rsdp.address() as u64;
    Ok(PLATFORM.call_once(|| platform))
}

/// Decodes one table from its bytes (header included) the way [`init`] does, into an
/// otherwise empty [`Platform`]: MADT, FADT, HPET and MCFG are understood, anything else is
/// ignored. Any byte string is safe input; problems are counted in `warnings`, not logged.
pub fn decode_table(bytes: &[u8]) -> Platform {
    let mut platform = Platform {
        quiet: true,
        ..Platform::default()
    };
    if let Some(&[a, b, c, d]) = bytes.first_chunk::<4>() {
        tables::decode(Sig([a, b, c, d]), bytes, &mut platform);
    }
    platform
}

/// The parsed tables, once [`init`] succeeded.
pub fn platform() -> Option<&'static Platform> {
    PLATFORM.get()
}
