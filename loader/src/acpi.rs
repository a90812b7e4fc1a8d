//! Just enough ACPI to find the CPUs and I/O APICs: RSDP → XSDT/RSDT → MADT.
//!
//! Tables are read through the firmware's identity map before ExitBootServices. Anything
//! malformed (bad checksum, truncated table) is treated as absent: the kernel reads ACPI
//! itself, the loader only needs the MADT for the MP response and I/O APIC masking.

use alloc::vec::Vec;

/// A Processor Local APIC (type 0) or Local x2APIC (type 9) MADT entry.
#[derive(Clone, Copy, Debug)]
pub struct Cpu {
    /// ACPI processor UID.
    pub uid: u32,
    /// (x2)APIC ID.
    pub apic_id: u32,
    /// Flags: bit 0 enabled, bit 1 online-capable.
    pub flags: u32,
}

/// An I/O APIC MADT entry (type 1).
#[derive(Clone, Copy, Debug)]
pub struct IoApic {
    /// I/O APIC ID.
    pub id: u8,
    /// Physical MMIO base.
    pub address: u64,
    /// First global system interrupt it handles.
    pub gsi_base: u32,
}

/// What the loader takes from the MADT.
#[derive(Debug, Default)]
pub struct Madt {
    /// Local APIC physical address (after any type-5 override).
    pub lapic_address: u64,
    /// CPUs in MADT order.
    pub cpus: Vec<Cpu>,
    /// I/O APICs in MADT order.
    pub io_apics: Vec<IoApic>,
}

impl Madt {
    /// Logs what was found (debug level).
    pub fn log(&self) {
        let startable = self.cpus.iter().filter(|c| c.startable()).count();
        log::debug!(
            "MADT: {} CPUs ({startable} startable), LAPIC at {:#x}",
            self.cpus.len(),
            self.lapic_address
        );
        for io in &self.io_apics {
            log::debug!(
                "MADT: I/O APIC {} at {:#x}, GSI base {}",
                io.id,
                io.address,
                io.gsi_base
            );
        }
    }
}

impl Cpu {
    /// Whether Limine would start this CPU: exactly one of Enabled and Online-Capable set.
    pub fn startable(&self) -> bool {
        (self.flags & 1 != 0) != (self.flags & 2 != 0)
    }
}

/// Reads `len` bytes of firmware memory at physical `addr`.
///
/// # Safety
///
/// `addr..addr + len` must be mapped (UEFI identity-maps all memory while boot services run)
/// and hold firmware tables that nothing modifies while the slice lives.
unsafe fn phys(addr: u64, len: usize) -> &'static [u8] {
    // SAFETY: Guaranteed by the caller.
    unsafe { core::slice::from_raw_parts(addr as *const u8, len) }
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b)) == 0
}

/// Reads a whole system description table (header + body) if its checksum holds.
fn table(addr: u64) -> Option<&'static [u8]> {
    if addr == 0 {
        return None;
    }
    // SAFETY: `addr` came from the RSDP/XSDT/RSDT the firmware published; ACPI tables live in
    // ACPI or reserved memory that UEFI keeps identity-mapped and does not change at boot.
    let header = unsafe { phys(addr, 36) };
    let len = u32_at(header, 4)? as usize;
    if !(36..=16 << 20).contains(&len) {
        return None;
    }
    // SAFETY: As above, for the length the header declares (bounded to 16 MiB).
    let bytes = unsafe { phys(addr, len) };
    checksum_ok(bytes).then_some(bytes)
}

/// Finds and parses the MADT starting from the RSDP at `rsdp`.
pub fn madt(rsdp: u64) -> Option<Madt> {
    // SAFETY: `rsdp` is the address the firmware published in its ACPI configuration table.
    let v1 = unsafe { phys(rsdp, 20) };
    if &v1[..8] != b"RSD PTR " || !checksum_ok(v1) {
        return None;
    }
    let revision = v1[15];
    let (root, entry_size) = if revision >= 2 {
        // SAFETY: An ACPI 2.0+ RSDP is 36 bytes long.
        let v2 = unsafe { phys(rsdp, 36) };
        (u64_at(v2, 24)?, 8)
    } else {
        (u64::from(u32_at(v1, 16)?), 4)
    };
    let root = table(root)?;
    let entries = root.get(36..)?;
    let madt = entries.chunks_exact(entry_size).find_map(|entry| {
        let addr = if entry_size == 8 {
            u64_at(entry, 0)?
        } else {
            u64::from(u32_at(entry, 0)?)
        };
        let t = table(addr)?;
        (&t[..4] == b"APIC").then_some(t)
    })?;
    Some(parse_madt(madt))
}

fn parse_madt(t: &[u8]) -> Madt {
    let mut out = Madt {
        lapic_address: u32_at(t, 36).map_or(0xFEE0_0000, u64::from),
        ..Madt::default()
    };
    let mut at = 44;
    while at + 2 <= t.len() {
        let (kind, len) = (t[at], t[at + 1] as usize);
        if len < 2 || at + len > t.len() {
            break;
        }
        let e = &t[at..at + len];
        match (kind, len) {
            (0, 8..) => out.cpus.push(Cpu {
                uid: u32::from(e[2]),
                apic_id: u32::from(e[3]),
                flags: u32_at(e, 4).unwrap_or(0),
            }),
            (1, 12..) => out.io_apics.push(IoApic {
                id: e[2],
                address: u64::from(u32_at(e, 4).unwrap_or(0)),
                gsi_base: u32_at(e, 8).unwrap_or(0),
            }),
            (5, 12..) => out.lapic_address = u64_at(e, 4).unwrap_or(out.lapic_address),
            (9, 16..) => out.cpus.push(Cpu {
                uid: u32_at(e, 12).unwrap_or(0),
                apic_id: u32_at(e, 4).unwrap_or(0),
                flags: u32_at(e, 8).unwrap_or(0),
            }),
            _ => {}
        }
        at += len;
    }
    out
}
