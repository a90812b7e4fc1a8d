use std::{vec, vec::Vec};

use super::*;

/// A MADT with a valid header and checksum around `entries`.
fn table(lapic: u32, entries: &[Vec<u8>]) -> Vec<u8> {
    let mut t = vec![0u8; ENTRIES_OFFSET];
    t[..4].copy_from_slice(b"APIC");
    t[SDT_HEADER_LEN..SDT_HEADER_LEN + 4].copy_from_slice(&lapic.to_le_bytes());
    for e in entries {
        t.extend_from_slice(e);
    }
    let len = t.len() as u32;
    t[4..8].copy_from_slice(&len.to_le_bytes());
    fix_checksum(&mut t);
    t
}

fn fix_checksum(t: &mut [u8]) {
    t[9] = 0;
    let sum = t.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    t[9] = 0u8.wrapping_sub(sum);
}

fn lapic(uid: u8, id: u8, flags: u32) -> Vec<u8> {
    let mut e = vec![TYPE_LOCAL_APIC, 8, uid, id];
    e.extend_from_slice(&flags.to_le_bytes());
    e
}

fn x2apic(uid: u32, id: u32, flags: u32) -> Vec<u8> {
    let mut e = vec![TYPE_LOCAL_X2APIC, 16, 0, 0];
    e.extend_from_slice(&id.to_le_bytes());
    e.extend_from_slice(&flags.to_le_bytes());
    e.extend_from_slice(&uid.to_le_bytes());
    e
}

fn io_apic(id: u8, address: u32, gsi: u32) -> Vec<u8> {
    let mut e = vec![TYPE_IO_APIC, 12, id, 0];
    e.extend_from_slice(&address.to_le_bytes());
    e.extend_from_slice(&gsi.to_le_bytes());
    e
}

#[test]
fn parses_cpus_io_apics_and_override_in_order() {
    let mut over = vec![TYPE_LAPIC_OVERRIDE, 12, 0, 0];
    over.extend_from_slice(&0x1_FEE0_0000u64.to_le_bytes());
    let t = table(
        0xFEE0_0000,
        &[
            lapic(0, 0, 1),
            io_apic(2, 0xFEC0_0000, 0),
            lapic(1, 3, 2),
            x2apic(7, 300, 1),
            over,
        ],
    );
    let madt = parse(&t).expect("valid table");
    assert_eq!(madt.lapic_address, 0x1_FEE0_0000);
    assert_eq!(
        madt.cpus,
        [
            Cpu {
                uid: 0,
                apic_id: 0,
                flags: 1,
                x2apic_entry: false
            },
            Cpu {
                uid: 1,
                apic_id: 3,
                flags: 2,
                x2apic_entry: false
            },
            Cpu {
                uid: 7,
                apic_id: 300,
                flags: 1,
                x2apic_entry: true
            },
        ]
    );
    assert_eq!(
        madt.io_apics,
        [IoApic {
            id: 2,
            address: 0xFEC0_0000,
            gsi_base: 0
        }]
    );
}

#[test]
fn lapic_address_defaults_from_header() {
    let madt = parse(&table(0xFEE0_0000, &[])).expect("valid table");
    assert_eq!(madt.lapic_address, 0xFEE0_0000);
    assert!(madt.cpus.is_empty() && madt.io_apics.is_empty());
}

#[test]
fn refuses_bad_signature_length_and_checksum() {
    let good = table(0xFEE0_0000, &[lapic(0, 0, 1)]);
    let mut bad = good.clone();
    bad[..4].copy_from_slice(b"FACP");
    assert_eq!(parse(&bad), Err(MadtError::Signature));

    let mut bad = good.clone();
    bad[9] ^= 1;
    assert_eq!(parse(&bad), Err(MadtError::Checksum));

    let mut long = good.clone();
    let declared = good.len() as u32 + 4;
    long[4..8].copy_from_slice(&declared.to_le_bytes());
    assert_eq!(
        parse(&long),
        Err(MadtError::Length {
            declared: good.len() + 4,
            available: good.len()
        })
    );

    let mut short = good.clone();
    short[4..8].copy_from_slice(&10u32.to_le_bytes());
    assert!(matches!(parse(&short), Err(MadtError::Length { .. })));
    assert_eq!(parse(&good[..3]), Err(MadtError::Signature));
}

#[test]
fn stops_at_an_impossible_entry_length_and_skips_short_ones() {
    // A type-0 entry claiming length 4 is too short to use; it is skipped. A zero length ends
    // the walk, so the CPU after it is not seen.
    let t = table(
        0xFEE0_0000,
        &[
            lapic(0, 0, 1),
            vec![TYPE_LOCAL_APIC, 4, 9, 9],
            lapic(1, 1, 1),
            vec![0x7F, 0],
            lapic(2, 2, 1),
        ],
    );
    let madt = parse(&t).expect("valid table");
    let ids: Vec<u32> = madt.cpus.iter().map(|c| c.apic_id).collect();
    assert_eq!(ids, [0, 1]);

    // An entry running past the table's end also ends the walk.
    let t = table(
        0xFEE0_0000,
        &[lapic(0, 0, 1), vec![TYPE_LOCAL_APIC, 8, 1, 1]],
    );
    let madt = parse(&t).expect("valid table");
    assert_eq!(madt.cpus.len(), 1);
}

#[test]
fn ignores_bytes_past_the_declared_length() {
    let mut t = table(0xFEE0_0000, &[lapic(0, 0, 1)]);
    t.extend_from_slice(&lapic(1, 1, 1));
    let madt = parse(&t).expect("valid table");
    assert_eq!(madt.cpus.len(), 1);
}

#[test]
fn startable_needs_exactly_one_of_enabled_and_online_capable() {
    let cpu = |flags| Cpu {
        uid: 0,
        apic_id: 0,
        flags,
        x2apic_entry: false,
    };
    assert!(!cpu(0).startable());
    assert!(cpu(1).startable());
    assert!(cpu(2).startable());
    assert!(!cpu(3).startable());
    assert!(cpu(1 | 4).startable());
}
