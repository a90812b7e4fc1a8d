extern crate std;

use std::{vec, vec::Vec};

use super::*;

/// A MADT with local APIC address `lapic`, `flags`, a valid checksum and `entries`.
fn table(lapic: u32, flags: u32, entries: &[Vec<u8>]) -> Vec<u8> {
    let mut t = vec![0u8; ENTRIES_OFFSET];
    t[..4].copy_from_slice(b"APIC");
    t[SDT_HEADER_LEN..SDT_HEADER_LEN + 4].copy_from_slice(&lapic.to_le_bytes());
    t[SDT_HEADER_LEN + 4..ENTRIES_OFFSET].copy_from_slice(&flags.to_le_bytes());
    for e in entries {
        t.extend_from_slice(e);
    }
    let len = t.len() as u32;
    t[4..8].copy_from_slice(&len.to_le_bytes());
    let sum = t.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    t[9] = 0u8.wrapping_sub(sum);
    t
}

fn entries(t: &[u8]) -> Vec<Result<Entry, EntryError>> {
    Madt::new(t).expect("a valid MADT").entries().collect()
}

#[test]
fn decodes_every_entry_type_in_order() {
    let mut over = vec![TYPE_LAPIC_OVERRIDE, 12, 0, 0];
    over.extend_from_slice(&0x1_FEE0_0000u64.to_le_bytes());
    let mut x2 = vec![TYPE_LOCAL_X2APIC, 16, 0, 0];
    for v in [300u32, 1, 7] {
        x2.extend_from_slice(&v.to_le_bytes());
    }
    let mut x2nmi = vec![TYPE_X2APIC_NMI, 12, 0x0d, 0];
    x2nmi.extend_from_slice(&u32::MAX.to_le_bytes());
    x2nmi.extend_from_slice(&[1, 0, 0, 0]);
    let t = table(
        0xFEE0_0000,
        FLAG_PCAT_COMPAT,
        &[
            vec![TYPE_LOCAL_APIC, 8, 3, 4, 1, 0, 0, 0],
            vec![TYPE_IO_APIC, 12, 2, 0, 0, 0, 0xC0, 0xFE, 24, 0, 0, 0],
            vec![TYPE_INTERRUPT_OVERRIDE, 10, 0, 0, 2, 0, 0, 0, 0x0f, 0],
            vec![TYPE_LOCAL_APIC_NMI, 6, 0xff, 0x05, 0, 1],
            over,
            x2,
            x2nmi,
            vec![0x7f, 4, 0, 0],
        ],
    );
    let madt = Madt::new(&t).expect("valid");
    assert!(madt.checksum_ok());
    assert_eq!(madt.local_apic_address(), 0xFEE0_0000);
    assert_eq!(madt.flags(), FLAG_PCAT_COMPAT);
    assert_eq!(
        entries(&t),
        [
            Ok(Entry::LocalApic {
                uid: 3,
                apic_id: 4,
                flags: FLAG_ENABLED
            }),
            Ok(Entry::IoApic {
                id: 2,
                address: 0xFEC0_0000,
                gsi_base: 24
            }),
            Ok(Entry::InterruptOverride {
                bus: 0,
                irq: 0,
                gsi: 2,
                flags: 0x0f
            }),
            Ok(Entry::LocalApicNmi {
                uid: 0xff,
                flags: 0x05,
                lint: 1
            }),
            Ok(Entry::LapicAddressOverride {
                address: 0x1_FEE0_0000
            }),
            Ok(Entry::LocalX2Apic {
                apic_id: 300,
                flags: 1,
                uid: 7
            }),
            Ok(Entry::X2ApicNmi {
                flags: 0x0d,
                uid: u32::MAX,
                lint: 1
            }),
            Ok(Entry::Other { kind: 0x7f }),
        ]
    );
}

#[test]
fn refuses_a_bad_signature_or_length_but_leaves_the_checksum_to_the_caller() {
    let good = table(
        0xFEE0_0000,
        0,
        &[vec![TYPE_LOCAL_APIC, 8, 0, 0, 1, 0, 0, 0]],
    );
    let mut bad = good.clone();
    bad[..4].copy_from_slice(b"FACP");
    assert_eq!(Madt::new(&bad).err(), Some(Error::Signature));
    assert_eq!(Madt::new(&good[..3]).err(), Some(Error::Signature));
    assert_eq!(
        Madt::new(&good[..6]).err(),
        Some(Error::Length {
            declared: 0,
            available: 6
        })
    );

    let mut long = good.clone();
    long[4..8].copy_from_slice(&(good.len() as u32 + 1).to_le_bytes());
    assert_eq!(
        Madt::new(&long).err(),
        Some(Error::Length {
            declared: good.len() + 1,
            available: good.len()
        })
    );
    let mut short = good.clone();
    short[4..8].copy_from_slice(&(ENTRIES_OFFSET as u32 - 1).to_le_bytes());
    assert!(matches!(Madt::new(&short), Err(Error::Length { .. })));

    let mut sum = good.clone();
    sum[9] ^= 1;
    let madt = Madt::new(&sum).expect("the checksum is not checked here");
    assert!(!madt.checksum_ok());
    assert_eq!(madt.entries().count(), 1);
}

#[test]
fn bytes_past_the_declared_length_are_not_entries() {
    let mut t = table(0, 0, &[]);
    t.extend_from_slice(&[TYPE_LOCAL_APIC, 8, 0, 0, 1, 0, 0, 0]);
    let madt = Madt::new(&t).expect("valid");
    assert_eq!(madt.bytes().len(), ENTRIES_OFFSET);
    assert_eq!(madt.entries().count(), 0);
}

#[test]
fn short_entries_are_skipped_and_impossible_lengths_end_the_walk() {
    let lapic = |id| vec![TYPE_LOCAL_APIC, 8, id, id, 1, 0, 0, 0];
    let t = table(
        0,
        0,
        &[
            lapic(0),
            vec![TYPE_LOCAL_APIC, 4, 9, 9],
            vec![TYPE_INTERRUPT_OVERRIDE, 8, 0, 0, 0, 0, 0, 0],
            lapic(1),
            vec![0x7f, 0],
            lapic(2),
        ],
    );
    let all = entries(&t);
    assert_eq!(all.len(), 5, "{all:?}");
    assert_eq!(
        all[1],
        Err(EntryError::TooShort {
            kind: TYPE_LOCAL_APIC,
            len: 4
        })
    );
    assert_eq!(
        all[2],
        Err(EntryError::TooShort {
            kind: TYPE_INTERRUPT_OVERRIDE,
            len: 8
        })
    );
    assert!(matches!(all[3], Ok(Entry::LocalApic { apic_id: 1, .. })));
    assert_eq!(
        all[4],
        Err(EntryError::BadLength {
            kind: 0x7f,
            len: 0,
            left: 10
        })
    );

    // Length 1, and a length past the end, end the walk too; so does a lone type byte.
    for tail in [
        vec![TYPE_LOCAL_APIC, 1],
        vec![TYPE_LOCAL_APIC, 9, 0, 0, 0, 0, 0, 0],
    ] {
        let t = table(0, 0, &[lapic(0), tail]);
        let all = entries(&t);
        assert_eq!(all.len(), 2);
        assert!(matches!(all[1], Err(EntryError::BadLength { .. })));
    }
    let t = table(0, 0, &[lapic(0), vec![TYPE_LOCAL_APIC]]);
    assert_eq!(entries(&t).len(), 1);
}

#[test]
fn every_truncation_and_random_table_is_walked_without_panic() {
    let t = table(
        0xFEE0_0000,
        1,
        &[
            vec![TYPE_LOCAL_APIC, 8, 0, 0, 1, 0, 0, 0],
            vec![TYPE_INTERRUPT_OVERRIDE, 10, 0, 0, 2, 0, 0, 0, 0x0f, 0],
        ],
    );
    for end in 0..t.len() {
        let mut cut = t[..end].to_vec();
        if cut.len() >= 8 {
            cut[4..8].copy_from_slice(&(end as u32).to_le_bytes());
        }
        if let Ok(madt) = Madt::new(&cut) {
            assert!(madt.entries().count() <= 2);
        }
    }
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..2000 {
        let mut bytes = [0u8; 128];
        for b in bytes.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = state as u8;
        }
        bytes[..4].copy_from_slice(b"APIC");
        let len = usize::from(bytes[4]);
        bytes[5..8].fill(0);
        if let Ok(madt) = Madt::new(&bytes) {
            assert_eq!(madt.bytes().len(), len);
            assert!(madt.entries().count() <= (len - ENTRIES_OFFSET) / 2 + 1);
        }
    }
}

#[test]
fn inti_flags_decode_and_refuse_reserved_values() {
    assert_eq!(
        inti_flags(0),
        Some((Polarity::SameAsBus, Trigger::SameAsBus))
    );
    assert_eq!(
        inti_flags(0b0101),
        Some((Polarity::ActiveHigh, Trigger::Edge))
    );
    assert_eq!(
        inti_flags(0b1111),
        Some((Polarity::ActiveLow, Trigger::Level))
    );
    assert_eq!(inti_flags(0b0010), None, "reserved polarity");
    assert_eq!(inti_flags(0b1000), None, "reserved trigger");
    assert_eq!(
        inti_flags(0xfff0),
        Some((Polarity::SameAsBus, Trigger::SameAsBus)),
        "reserved upper bits are ignored"
    );
}
