//! The table walk: RSDP, XSDT/RSDT, then MADT, FADT, HPET, MCFG and the DSDT's `\_S5`.
//!
//! Every table is mapped read-only through `mm::map_firmware` with the length its header
//! claims (after a sanity bound), so all later reads are bounds-checked slice accesses. The
//! MADT's entries are read by the `madt` crate, the parser the loader uses too.

use core::mem::{MaybeUninit, size_of};

use acpi::{
    address::{AddressSpace, GenericAddress},
    rsdp::Rsdp,
    sdt::{SdtHeader, fadt::Fadt, hpet::HpetTable, mcfg::McfgEntry},
};
use madt::{Entry, EntryError, FLAG_ENABLED, FLAG_ONLINE_CAPABLE, FLAG_PCAT_COMPAT, Madt};

use super::{
    Error, FadtInfo, HpetDesc, IoApicDesc, IsaRoute, LocalNmi, PcieRegion, Platform, Processor,
    Register, Sig, Signalling,
};

/// The longest table accepted (the largest real DSDTs are a few hundred KiB).
const MAX_TABLE_LEN: u64 = 8 << 20;
const HEADER_LEN: usize = size_of::<SdtHeader>();
/// The MCFG's fixed part: header and 8 reserved bytes.
const MCFG_FIXED_LEN: usize = HEADER_LEN + 8;

/// Table types made only of integers (packed), so any byte pattern — including all zeros —
/// is a valid value.
///
/// # Safety
/// Implementors must have no padding-sensitive, pointer, reference, `bool`, `char` or enum
/// fields: every bit pattern must be a valid value.
unsafe trait Plain: Copy {}

// SAFETY: each of these is a `repr(C, packed)` struct of integers, byte arrays, integer
// newtypes and `MaybeUninit` integer wrappers (see the `acpi` crate's definitions).
unsafe impl Plain for Rsdp {}
// SAFETY: as above.
unsafe impl Plain for Fadt {}
// SAFETY: as above.
unsafe impl Plain for HpetTable {}
// SAFETY: as above.
unsafe impl Plain for McfgEntry {}

/// Reads a `T` from the start of `bytes`; bytes beyond the slice read as zero.
fn read<T: Plain>(bytes: &[u8]) -> T {
    let mut value = MaybeUninit::<T>::zeroed();
    let n = bytes.len().min(size_of::<T>());
    // SAFETY: `n` bytes fit both in `bytes` and in `value`; the rest of `value` stays zero, and
    // `T: Plain` makes any byte pattern (zero included) a valid `T`.
    unsafe {
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), value.as_mut_ptr().cast::<u8>(), n);
        value.assume_init()
    }
}

fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |sum, &b| sum.wrapping_add(b)) == 0
}

fn map(phys: u64, len: u64) -> Result<&'static [u8], Error> {
    crate::mm::map_firmware(phys, len).map_err(|_| Error::Map(phys))
}

/// Maps the whole table at `phys`, checking its length; a bad checksum is only a warning
/// (real firmware ships them, and every read is bounds-checked anyway).
fn map_table(phys: u64, platform: &mut Platform) -> Result<(Sig, &'static [u8]), Error> {
    if phys == 0 {
        return Err(Error::Map(0));
    }
    // Signature and length are the first 8 bytes of every table header.
    let header = map(phys, HEADER_LEN as u64)?;
    let sig = Sig([header[0], header[1], header[2], header[3]]);
    let length = u64::from(u32::from_le_bytes([
        header[4], header[5], header[6], header[7],
    ]));
    if length < HEADER_LEN as u64 || length > MAX_TABLE_LEN {
        return Err(Error::BadLength(sig.0, length));
    }
    let bytes = map(phys, length)?;
    if !checksum_ok(bytes) {
        platform.warn(format_args!(
            "acpi: table {sig} at {phys:#x} has a bad checksum; using it anyway"
        ));
    }
    Ok((sig, bytes))
}

/// Walks every table reachable from the RSDP at `rsdp_phys`.
pub(super) fn parse(rsdp_phys: u64) -> Result<Platform, Error> {
    let mut platform = Platform::default();
    let rsdp_v1 = map(rsdp_phys, 20)?;
    if &rsdp_v1[..8] != b"RSD PTR " || !checksum_ok(rsdp_v1) {
        return Err(Error::BadRsdp);
    }
    let mut rsdp: Rsdp = read(rsdp_v1);
    let mut root = u64::from(rsdp.rsdt_address());
    let mut entry_size = 4;
    if rsdp.revision() >= 2 {
        let extended = map(rsdp_phys, size_of::<Rsdp>() as u64)?;
        rsdp = read(extended);
        if checksum_ok(extended) && rsdp.xsdt_address() != 0 {
            root = rsdp.xsdt_address();
            entry_size = 8;
        } else {
            platform.warn(format_args!(
                "acpi: ACPI 2.0 RSDP without a valid XSDT; using the RSDT"
            ));
        }
    }
    platform.rsdp_revision = rsdp.revision();
    let (root_sig, root_bytes) = map_table(root, &mut platform)?;
    let expected = if entry_size == 8 { *b"XSDT" } else { *b"RSDT" };
    if root_sig.0 != expected {
        return Err(Error::BadSignature(expected));
    }
    let entries = root_bytes[HEADER_LEN..].chunks_exact(entry_size).map(|e| {
        let mut raw = [0u8; 8];
        raw[..entry_size].copy_from_slice(e);
        u64::from_le_bytes(raw)
    });
    for phys in entries {
        let (sig, bytes) = match map_table(phys, &mut platform) {
            Ok(table) => table,
            Err(error) => {
                platform.warn(format_args!(
                    "acpi: skipping the table at {phys:#x}: {error}"
                ));
                continue;
            }
        };
        platform.tables.push(sig);
        let seen = match &sig.0 {
            b"APIC" => platform.has_madt,
            b"FACP" => platform.fadt.is_some(),
            b"HPET" => platform.hpet.is_some(),
            _ => false,
        };
        if seen {
            platform.warn(format_args!("acpi: a second {sig} table is ignored"));
        } else {
            decode(sig, bytes, &mut platform);
        }
    }
    if let Some(dsdt) = platform.fadt.and_then(|f| f.dsdt) {
        match map_table(dsdt, &mut platform) {
            Ok((Sig(sig), bytes)) if &sig == b"DSDT" => {
                platform.s5 = super::find_s5(&bytes[HEADER_LEN..]);
                if platform.s5.is_none() {
                    platform.warn(format_args!(
                        "acpi: no \\_S5 package in the DSDT: ACPI power-off unavailable"
                    ));
                }
            }
            Ok((sig, _)) => {
                platform.warn(format_args!(
                    "acpi: the FADT's DSDT pointer leads to a {sig} table"
                ));
            }
            Err(error) => {
                platform.warn(format_args!("acpi: cannot read the DSDT: {error}"));
            }
        }
    }
    Ok(platform)
}

/// Decodes one table (header included) into `platform`; other signatures are ignored.
pub(super) fn decode(sig: Sig, bytes: &[u8], platform: &mut Platform) {
    match &sig.0 {
        b"APIC" => parse_madt(bytes, platform),
        b"FACP" => parse_fadt(bytes, platform),
        b"HPET" => parse_hpet(bytes, platform),
        b"MCFG" => parse_mcfg(bytes, platform),
        _ => {}
    }
}

fn signalling(flags: u16, platform: &mut Platform) -> Signalling {
    // "Same as bus" on ISA means active high and edge-triggered.
    let (polarity, trigger) = madt::inti_flags(flags).unwrap_or_else(|| {
        platform.warn(format_args!(
            "acpi: MADT interrupt flags {flags:#x} are invalid; assuming ISA defaults"
        ));
        (madt::Polarity::SameAsBus, madt::Trigger::SameAsBus)
    });
    Signalling {
        active_low: polarity == madt::Polarity::ActiveLow,
        level: trigger == madt::Trigger::Level,
    }
}

fn parse_madt(bytes: &[u8], platform: &mut Platform) {
    let table = match Madt::new(bytes) {
        Ok(table) => table,
        Err(error) => {
            platform.warn(format_args!("acpi: the MADT is unusable: {error}"));
            return;
        }
    };
    platform.has_madt = true;
    let address = table.local_apic_address();
    platform.local_apic_address = (address != 0).then_some(u64::from(address));
    platform.has_8259 = table.flags() & FLAG_PCAT_COMPAT != 0;
    for entry in table.entries() {
        match entry {
            Ok(entry) => madt_entry(entry, platform),
            Err(error @ EntryError::TooShort { .. }) => {
                platform.warn(format_args!("acpi: {error}; ignored"));
            }
            Err(error @ EntryError::BadLength { .. }) => {
                platform.warn(format_args!("acpi: {error}; ignoring the rest of the MADT"));
            }
        }
    }
}

/// Records one MADT entry.
fn madt_entry(entry: Entry, platform: &mut Platform) {
    let processor = |uid, apic_id, flags: u32| Processor {
        uid,
        apic_id,
        enabled: flags & FLAG_ENABLED != 0,
        online_capable: flags & FLAG_ONLINE_CAPABLE != 0,
    };
    match entry {
        Entry::LocalApic {
            uid,
            apic_id,
            flags,
        } => {
            let p = processor(u32::from(uid), u32::from(apic_id), flags);
            platform.processors.push(p);
        }
        Entry::LocalX2Apic {
            apic_id,
            flags,
            uid,
        } => {
            // An x2APIC entry may repeat a processor also listed as a local APIC.
            if !platform.processors.iter().any(|p| p.apic_id == apic_id) {
                platform.processors.push(processor(uid, apic_id, flags));
            }
        }
        Entry::IoApic {
            id,
            address,
            gsi_base,
        } => platform.io_apics.push(IoApicDesc {
            id,
            address: u64::from(address),
            gsi_base,
        }),
        Entry::InterruptOverride {
            bus,
            irq,
            gsi,
            flags,
        } => {
            if bus != 0 || irq >= 16 {
                platform.warn(format_args!(
                    "acpi: ignoring an interrupt override for bus {bus} IRQ {irq}"
                ));
            } else {
                let signalling = signalling(flags, platform);
                platform.overrides.retain(|o| o.irq != irq);
                platform.overrides.push(IsaRoute {
                    irq,
                    gsi,
                    signalling,
                });
            }
        }
        Entry::LocalApicNmi { uid, flags, lint } => {
            let signalling = signalling(flags, platform);
            platform.local_nmis.push(LocalNmi {
                uid: (uid != 0xff).then_some(u32::from(uid)),
                lint,
                signalling,
            });
        }
        Entry::X2ApicNmi { flags, uid, lint } => {
            let signalling = signalling(flags, platform);
            platform.local_nmis.push(LocalNmi {
                uid: (uid != u32::MAX).then_some(uid),
                lint,
                signalling,
            });
        }
        Entry::LapicAddressOverride { address } => platform.local_apic_address = Some(address),
        Entry::Other { .. } => {} // Other interrupt models (SAPIC, GIC) and reserved types.
    }
}

/// An I/O port or memory address from a generic address structure, if it names one.
fn register(gas: Result<GenericAddress, acpi::AcpiError>) -> Option<Register> {
    let gas = gas.ok()?;
    if gas.address == 0 {
        return None;
    }
    match gas.address_space {
        AddressSpace::SystemIo => u16::try_from(gas.address).ok().map(Register::Io),
        AddressSpace::SystemMemory => Some(Register::Memory(gas.address)),
        AddressSpace::PciConfigSpace => Some(Register::PciConfig {
            device: (gas.address >> 32) as u8,
            function: (gas.address >> 16) as u8,
            offset: gas.address as u16,
        }),
        _ => None,
    }
}

fn io_port(gas: Result<GenericAddress, acpi::AcpiError>) -> Option<u16> {
    match register(gas)? {
        Register::Io(port) => Some(port),
        _ => None,
    }
}

fn parse_fadt(bytes: &[u8], platform: &mut Platform) {
    let fadt: Fadt = read(bytes);
    let flags = fadt.flags;
    let hardware_reduced = flags.system_is_hw_reduced_acpi();
    let pm_timer = fadt
        .pm_timer_block()
        .ok()
        .flatten()
        .and_then(|gas| io_port(Ok(gas)))
        .map(|port| (port, flags.pm_timer_is_32_bit()));
    // The reset register exists from FADT revision 2; zeros (from a short table) read as none.
    let reset = if fadt.header.revision >= 2 {
        register(fadt.reset_register()).map(|reg| (reg, fadt.reset_value))
    } else {
        None
    };
    let (smi, enable) = (fadt.smi_cmd_port, fadt.acpi_enable);
    let info = FadtInfo {
        revision: fadt.header.revision,
        pm_timer,
        pm1a_control: io_port(fadt.pm1a_control_block()),
        pm1b_control: fadt
            .pm1b_control_block()
            .ok()
            .flatten()
            .and_then(|gas| io_port(Ok(gas))),
        reset,
        acpi_enable: (smi != 0 && enable != 0)
            .then(|| u16::try_from(smi).ok().map(|port| (port, enable)))
            .flatten(),
        sci_irq: fadt.sci_interrupt,
        century_register: fadt.century,
        has_8042: { fadt.iapc_boot_arch }.motherboard_implements_8042(),
        hardware_reduced,
        dsdt: fadt.dsdt_address().ok().map(|a| a as u64),
    };
    platform.fadt = Some(info);
}

fn parse_hpet(bytes: &[u8], platform: &mut Platform) {
    if bytes.len() < size_of::<HpetTable>() {
        platform.warn(format_args!(
            "acpi: the HPET table is too short ({} bytes)",
            bytes.len()
        ));
        return;
    }
    let hpet: HpetTable = read(bytes);
    let base = hpet.base_address;
    let (space, address) = (base.address_space, base.address);
    if space != 0 || address == 0 {
        platform.warn(format_args!(
            "acpi: the HPET is not in memory space (space {space}, address {address:#x})"
        ));
        return;
    }
    let id = hpet.event_timer_block_id;
    platform.hpet = Some(HpetDesc {
        address,
        comparators: ((id >> 8) & 0x1f) as u8 + 1,
        counter_64bit: id & (1 << 13) != 0,
    });
}

fn parse_mcfg(bytes: &[u8], platform: &mut Platform) {
    let Some(entries) = bytes.get(MCFG_FIXED_LEN..) else {
        platform.warn(format_args!(
            "acpi: the MCFG is too short ({} bytes)",
            bytes.len()
        ));
        return;
    };
    for raw in entries.chunks_exact(size_of::<McfgEntry>()) {
        let e: McfgEntry = read(raw);
        if e.bus_number_end < e.bus_number_start || e.base_address == 0 {
            platform.warn(format_args!("acpi: ignoring a malformed MCFG entry"));
            continue;
        }
        platform.pcie.push(PcieRegion {
            address: e.base_address,
            segment: e.pci_segment_group,
            bus_start: e.bus_number_start,
            bus_end: e.bus_number_end,
        });
    }
}
