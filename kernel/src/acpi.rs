//! ACPI at boot: parse the firmware's tables once and report what they describe.
//!
//! Missing or broken tables are not fatal: without a MADT the kernel runs on the bootstrap
//! CPU alone, without an HPET the TSC is calibrated against the PM timer or the PIT, without
//! a FADT there is no ACPI power-off.

use hal::acpi::{Platform, Processor};

/// Logs a summary of the ACPI tables `hal::init` parsed.
pub fn report(parsed: &Result<&'static Platform, hal::acpi::Error>) -> Option<&'static Platform> {
    let platform = match parsed {
        Ok(platform) => *platform,
        Err(error) => {
            log::warn!("acpi: {error}; continuing without ACPI (one CPU, PIT calibration)");
            return None;
        }
    };
    log::info!(
        "acpi: revision {}, tables {:?}",
        platform.rsdp_revision,
        platform.tables
    );
    if platform.has_madt {
        let enabled = platform.processors.iter().filter(|p| p.enabled).count();
        log::info!(
            "acpi: MADT: {} processor(s) ({enabled} enabled), {} I/O APIC(s), {} override(s), \
             8259 {}",
            platform.processors.len(),
            platform.io_apics.len(),
            platform.overrides.len(),
            if platform.has_8259 {
                "present"
            } else {
                "absent"
            },
        );
    } else {
        log::warn!("acpi: no usable MADT: one CPU, no I/O APIC");
    }
    match platform.fadt {
        Some(fadt) => log::info!(
            "acpi: FADT rev {}: PM timer {}, reset {}, S5 {}",
            fadt.revision,
            if fadt.pm_timer.is_some() { "yes" } else { "no" },
            if fadt.reset.is_some() { "yes" } else { "no" },
            if platform.s5.is_some() { "yes" } else { "no" },
        ),
        None => log::warn!("acpi: no FADT: no ACPI power-off, no PM timer"),
    }
    match platform.hpet {
        Some(hpet) => log::info!("acpi: HPET at {:#x}", hpet.address),
        None => log::info!("acpi: no HPET"),
    }
    for region in &platform.pcie {
        log::info!(
            "acpi: PCIe segment {} buses {}..={} at {:#x}",
            region.segment,
            region.bus_start,
            region.bus_end,
            region.address
        );
    }
    if platform.warnings > 0 {
        log::warn!(
            "acpi: {} problem(s) with the firmware tables",
            platform.warnings
        );
    }
    Some(platform)
}

/// The processors the MADT lists (ACPI UID, APIC id, enabled / online-capable), for SMP.
/// Empty without a MADT.
pub fn processors() -> &'static [Processor] {
    hal::acpi::platform().map_or(&[], |p| &p.processors)
}

/// Tests of the ACPI table parsing.
#[cfg(feature = "tests")]
pub mod tests {
    use crate::{
        check,
        ktest::{TestResult, ktest},
    };

    /// The MADT lists at least one enabled CPU, including the one running this.
    #[ktest("acpi-madt-cpus")]
    pub fn madt_lists_cpus() -> TestResult {
        let processors = super::processors();
        check!(!processors.is_empty(), "the MADT lists no processor");
        check!(
            processors.iter().any(|p| p.enabled),
            "no enabled processor in {processors:?}"
        );
        let me = hal::apic::id();
        check!(
            processors.iter().any(|p| p.apic_id == me),
            "this CPU's APIC id {me} is not in {processors:?}"
        );
        Ok(())
    }

    /// QEMU's q35 machine has a FADT with PM1a control and a PM timer, an HPET, an MCFG
    /// region and an I/O APIC.
    #[ktest("acpi-q35-tables")]
    pub fn q35_tables_present() -> TestResult {
        let Some(platform) = hal::acpi::platform() else {
            check!(false, "ACPI tables were not parsed");
            return Ok(());
        };
        let Some(fadt) = platform.fadt else {
            check!(false, "no FADT among {:?}", platform.tables);
            return Ok(());
        };
        check!(fadt.pm1a_control.is_some(), "FADT without PM1a control");
        check!(fadt.pm_timer.is_some(), "FADT without a PM timer");
        check!(
            platform.hpet.is_some(),
            "no HPET among {:?}",
            platform.tables
        );
        check!(!platform.pcie.is_empty(), "no MCFG region");
        check!(!platform.io_apics.is_empty(), "no I/O APIC in the MADT");
        check!(
            platform.warnings == 0,
            "{} table warnings",
            platform.warnings
        );
        Ok(())
    }

    /// The `\_S5` scan reads byte, zero and one encodings and rejects truncated input.
    #[ktest("acpi-s5-scan")]
    pub fn s5_scan() -> TestResult {
        use hal::acpi::{SleepType, find_s5};
        // Name(\_S5, Package(4) { 0x05, Zero, One, 0x07 }) after some unrelated bytes.
        let aml = [
            0x10, 0x20, 0x08, b'\\', b'_', b'S', b'5', b'_', 0x12, 0x0a, 0x04, 0x0a, 0x05, 0x00,
            0x01, 0x0a, 0x07,
        ];
        check!(
            find_s5(&aml) == Some(SleepType { a: 5, b: 0 }),
            "got {:?}",
            find_s5(&aml)
        );
        // Without the root prefix, with a word-sized value.
        let aml = [
            0x08, b'_', b'S', b'5', b'_', 0x12, 0x07, 0x02, 0x0b, 0x06, 0x00, 0x01,
        ];
        check!(
            find_s5(&aml) == Some(SleepType { a: 6, b: 1 }),
            "got {:?}",
            find_s5(&aml)
        );
        // A reference to _S5_ that is not a definition, and every truncation of a valid one.
        check!(
            find_s5(b"\x70_S5_\x60").is_none(),
            "accepted a non-definition"
        );
        let valid = [
            0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x02, 0x0a, 0x05, 0x0a,
        ];
        for end in 0..valid.len() {
            check!(
                find_s5(&valid[..end]).is_none(),
                "accepted {} truncated bytes",
                end
            );
        }
        Ok(())
    }

    /// Builds a table with signature `sig` and `body` into `out`; returns its length.
    fn table(sig: &[u8; 4], body: &[u8], out: &mut [u8; 256]) -> usize {
        let len = 36 + body.len();
        out.fill(0);
        out[..4].copy_from_slice(sig);
        out[4..8].copy_from_slice(&(len as u32).to_le_bytes());
        out[8] = 1;
        out[36..len].copy_from_slice(body);
        len
    }

    /// Malformed MADT, FADT, HPET and MCFG tables are decoded as far as they make sense,
    /// with warnings, never a hang or a crash.
    #[ktest("acpi-malformed-tables")]
    pub fn malformed_tables() -> TestResult {
        use hal::acpi::decode_table;
        let mut buf = [0u8; 256];
        const FIXED: [u8; 8] = [0, 0, 0xe0, 0xfe, 1, 0, 0, 0];
        // A good local APIC entry, then an entry of length 0 (which must not loop).
        let mut body = [0u8; 18];
        body[..8].copy_from_slice(&FIXED);
        body[8..16].copy_from_slice(&[0, 8, 0, 0, 1, 0, 0, 0]);
        let n = table(b"APIC", &body, &mut buf);
        let p = decode_table(&buf[..n]);
        check!(
            p.processors.len() == 1 && p.warnings >= 1,
            "zero-length entry: {} processors, {} warnings",
            p.processors.len(),
            p.warnings
        );
        // An entry claiming more bytes than the table has.
        let body = [0, 0, 0xe0, 0xfe, 1, 0, 0, 0, 0, 200, 0, 0, 1, 0, 0, 0];
        let n = table(b"APIC", &body, &mut buf);
        let p = decode_table(&buf[..n]);
        check!(
            p.processors.is_empty() && p.warnings == 1,
            "overlong entry: {:?}, {} warnings",
            p.processors,
            p.warnings
        );
        // A local APIC entry too short for its type, then an override with invalid flags
        // (polarity 0b10), then a valid override of IRQ 0 to GSI 2.
        let body = [
            0, 0, 0xe0, 0xfe, 1, 0, 0, 0, //
            0, 4, 0, 0, //
            2, 10, 0, 1, 1, 0, 0, 0, 0b10, 0, //
            2, 10, 0, 0, 2, 0, 0, 0, 0, 0,
        ];
        let n = table(b"APIC", &body, &mut buf);
        let p = decode_table(&buf[..n]);
        check!(
            p.processors.is_empty() && p.warnings == 2 && p.overrides.len() == 2,
            "short entry and bad flags: {:?} {:?}, {} warnings",
            p.processors,
            p.overrides,
            p.warnings
        );
        check!(
            p.isa_route(0).gsi == 2 && p.isa_route(4).gsi == 4 && !p.isa_route(1).signalling.level,
            "routes {:?} {:?}",
            p.isa_route(0),
            p.isa_route(4)
        );
        // A MADT cut inside its fixed part.
        let n = table(b"APIC", &FIXED[..4], &mut buf);
        let p = decode_table(&buf[..n]);
        check!(!p.has_madt && p.warnings == 1, "truncated MADT accepted");
        // A FADT of 44 bytes: everything beyond reads as absent.
        let n = table(b"FACP", &[0; 8], &mut buf);
        let p = decode_table(&buf[..n]);
        check!(
            p.fadt
                .is_some_and(|f| f.pm1a_control.is_none() && f.reset.is_none()),
            "short FADT: {:?}",
            p.fadt
        );
        // An HPET in I/O space, and one too short for its fields.
        let mut body = [0u8; 20];
        body[4] = 1;
        body[8..16].copy_from_slice(&0xfed0_0000u64.to_le_bytes());
        let n = table(b"HPET", &body, &mut buf);
        check!(
            decode_table(&buf[..n]).hpet.is_none(),
            "HPET in I/O space accepted"
        );
        let n = table(b"HPET", &body[..10], &mut buf);
        check!(
            decode_table(&buf[..n]).hpet.is_none(),
            "short HPET accepted"
        );
        // An MCFG with one and a half entries.
        let mut body = [0u8; 32];
        body[8..16].copy_from_slice(&0xb000_0000u64.to_le_bytes());
        body[19] = 255;
        let n = table(b"MCFG", &body, &mut buf);
        let p = decode_table(&buf[..n]);
        check!(p.pcie.len() == 1, "MCFG regions {:?}", p.pcie);
        Ok(())
    }

    /// Random bytes under every understood signature decode without a crash or hang.
    #[ktest("acpi-random-tables")]
    pub fn random_tables() -> TestResult {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut buf = [0u8; 256];
        let mut decoded = 0;
        for round in 0..2000 {
            let sig = [b"APIC", b"FACP", b"HPET", b"MCFG"][round % 4];
            let len = (next() % 257) as usize;
            for byte in buf.iter_mut() {
                *byte = next() as u8;
            }
            if len >= 4 {
                buf[..4].copy_from_slice(sig);
            }
            let p = hal::acpi::decode_table(&buf[..len]);
            decoded += usize::from(p.has_madt || p.fadt.is_some() || p.hpet.is_some());
            let _ = hal::acpi::find_s5(&buf[..len]);
        }
        check!(decoded > 0, "no random table decoded at all");
        Ok(())
    }
}
