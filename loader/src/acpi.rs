//! Just enough ACPI to find the CPUs and I/O APICs: RSDP → XSDT/RSDT → MADT.
//!
//! Tables are read through the firmware's identity map before ExitBootServices. Anything
//! malformed (bad checksum, truncated table) is treated as absent: the kernel reads ACPI
//! itself, the loader only needs the MADT for the MP response and I/O APIC masking.

use bootcore::madt::checksum_ok;
pub use bootcore::madt::{IoApic, Madt};

/// Logs what the MADT holds (debug level).
pub fn log_madt(madt: &Madt) {
    let startable = madt.cpus.iter().filter(|c| c.startable()).count();
    log::debug!(
        "MADT: {} CPUs ({startable} startable), LAPIC at {:#x}",
        madt.cpus.len(),
        madt.lapic_address
    );
    for cpu in &madt.cpus {
        log::debug!(
            "MADT: CPU uid {} APIC id {} flags {:#x}{}",
            cpu.uid,
            cpu.apic_id,
            cpu.flags,
            if cpu.x2apic_entry {
                " (x2APIC entry)"
            } else {
                ""
            }
        );
    }
    for io in &madt.io_apics {
        log::debug!(
            "MADT: I/O APIC {} at {:#x}, GSI base {}",
            io.id,
            io.address,
            io.gsi_base
        );
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
    match bootcore::madt::parse(madt) {
        Ok(madt) => Some(madt),
        Err(e) => {
            log::warn!("ignoring the MADT: {e}");
            None
        }
    }
}
