//! The boot-state record: encoding, corruption, torn writes and sequence numbers.

mod common;

use common::Rng;
use crc::{CRC_32_ISO_HDLC, Crc};
use update::{
    Error,
    state::{
        AREA_LEN, BootKind, BootState, COPY_STRIDE, Current, LastBoot, RECORD_LEN, Slot, SlotState,
        Status, decode_copy, encode_copy, fresh_area, next_write, read_area, seq_newer,
    },
};

fn sample() -> BootState {
    BootState {
        slots: [
            SlotState::good(7, 3),
            SlotState {
                status: Status::Pending { tries: 2 },
                version: 8,
                rollback_index: 4,
            },
        ],
        preferred: Slot::B,
        rollback_floor: 3,
        last_failed_version: 6,
        last_boot: LastBoot {
            kind: BootKind::Trial,
            slot: Slot::B,
        },
    }
}

/// Re-seals a copy after a test edited a field, so the field check (not the CRC) must refuse.
fn reseal(bytes: &mut [u8; RECORD_LEN]) {
    let crc = Crc::<u32>::new(&CRC_32_ISO_HDLC).checksum(&bytes[..RECORD_LEN - 4]);
    bytes[RECORD_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
}

fn write(area: &mut [u8], current: Option<&Current>, state: &BootState) {
    let w = next_write(current, state);
    area[w.offset..w.offset + RECORD_LEN].copy_from_slice(&w.bytes);
}

#[test]
fn fixed_layout_is_little_endian_with_magic_and_format() {
    let bytes = encode_copy(&sample(), 0x0102_0304);
    assert_eq!(&bytes[0..8], b"EGSTATE\0");
    assert_eq!(&bytes[8..10], &[1, 0]);
    assert_eq!(&bytes[12..16], &[4, 3, 2, 1]);
    assert_eq!(bytes[16], 3, "slot A good");
    assert_eq!(&bytes[24..32], &7u64.to_le_bytes());
    assert_eq!(&bytes[32..40], &3u64.to_le_bytes());
    assert_eq!((bytes[40], bytes[41]), (2, 2), "slot B pending, 2 tries");
    assert_eq!(bytes[64], 1, "preferred B");
    assert_eq!((bytes[65], bytes[66]), (2, 1), "last boot: trial of B");
    assert_eq!(&bytes[72..80], &3u64.to_le_bytes());
    assert_eq!(&bytes[80..88], &6u64.to_le_bytes());
}

#[test]
fn random_states_round_trip() {
    let mut rng = Rng::new(1);
    for _ in 0..20_000 {
        let state = rng.state();
        let seq = rng.next() as u32;
        let bytes = encode_copy(&state, seq);
        assert_eq!(decode_copy(&bytes), Ok((state, seq)));
    }
}

#[test]
fn every_byte_flip_and_truncation_is_detected() {
    let bytes = encode_copy(&sample(), 9);
    for offset in 0..RECORD_LEN {
        for bit in 0..8 {
            let mut bad = bytes;
            bad[offset] ^= 1 << bit;
            assert!(decode_copy(&bad).is_err(), "flip of bit {bit} at {offset}");
        }
        let mut bad = bytes;
        bad[offset] = bad[offset].wrapping_add(0x5a);
        assert!(decode_copy(&bad).is_err(), "byte changed at {offset}");
    }
    for len in 0..RECORD_LEN {
        assert_eq!(decode_copy(&bytes[..len]), Err(Error::Truncated), "{len}");
    }
    let mut longer = bytes.to_vec();
    longer.push(0);
    assert_eq!(decode_copy(&longer), Err(Error::TrailingBytes));
}

#[test]
fn every_field_is_checked_even_under_a_valid_checksum() {
    let good = encode_copy(&sample(), 1);
    let cases: &[(usize, u8, Error)] = &[
        (0, b'X', Error::BadMagic),
        (8, 2, Error::UnknownFormat(2)),
        (10, 1, Error::BadField("reserved bytes")),
        (16, 5, Error::BadField("slot status")),
        (17, 1, Error::BadField("slot status")), // tries on a good slot
        (41, 16, Error::BadField("slot status")), // more than MAX_TRIES
        (18, 1, Error::BadField("reserved bytes")),
        (45, 1, Error::BadField("reserved bytes")),
        (64, 2, Error::BadField("slot")),
        (65, 5, Error::BadField("last boot kind")),
        (66, 2, Error::BadField("slot")),
        (67, 1, Error::BadField("reserved bytes")),
        (71, 1, Error::BadField("reserved bytes")),
    ];
    for &(offset, value, ref error) in cases {
        let mut bad = good;
        bad[offset] = value;
        reseal(&mut bad);
        assert_eq!(decode_copy(&bad), Err(*error), "byte {offset} = {value}");
    }
    // "No boot yet" names no slot.
    let mut bad = good;
    bad[65] = 0;
    bad[66] = 1;
    reseal(&mut bad);
    assert_eq!(decode_copy(&bad), Err(Error::BadField("last boot slot")));
}

#[test]
fn reader_takes_the_newest_valid_copy() {
    let old = BootState::factory(1, 1);
    let new = sample();
    let mut area = [0u8; AREA_LEN];
    area[..RECORD_LEN].copy_from_slice(&encode_copy(&old, 4));
    area[COPY_STRIDE..COPY_STRIDE + RECORD_LEN].copy_from_slice(&encode_copy(&new, 5));
    let read = read_area(&area);
    assert_eq!(
        read.current,
        Some(Current {
            state: new,
            seq: 5,
            copy: 1
        })
    );
    // Swapped places: still the newer sequence wins.
    area[..RECORD_LEN].copy_from_slice(&encode_copy(&new, 5));
    area[COPY_STRIDE..COPY_STRIDE + RECORD_LEN].copy_from_slice(&encode_copy(&old, 4));
    assert_eq!(
        read_area(&area).current.map(|c| (c.state, c.copy)),
        Some((new, 0))
    );
}

#[test]
fn writer_alternates_copies_and_never_overwrites_the_current_one() {
    let mut area = fresh_area(&BootState::factory(1, 1));
    let mut rng = Rng::new(2);
    for i in 0..50u32 {
        let before = read_area(&area).current.expect("a valid state");
        let state = rng.state();
        let w = next_write(Some(&before), &state);
        assert_ne!(w.copy, before.copy, "write {i}");
        assert_eq!(w.offset, w.copy * COPY_STRIDE);
        assert_eq!(w.seq, before.seq.wrapping_add(1));
        write(&mut area, Some(&before), &state);
        let after = read_area(&area).current.expect("a valid state");
        assert_eq!((after.state, after.copy), (state, w.copy));
    }
}

#[test]
fn a_torn_or_lost_write_keeps_the_previous_state() {
    let mut rng = Rng::new(3);
    let mut area = fresh_area(&BootState::factory(1, 1));
    for round in 0..20 {
        let before = read_area(&area).current.expect("a valid state");
        let next = rng.state();
        let w = next_write(Some(&before), &next);
        // Torn to every prefix, over the old bytes or over garbage.
        for prefix in 0..RECORD_LEN {
            for garbage in [false, true] {
                let mut torn = area;
                let target = &mut torn[w.offset..w.offset + RECORD_LEN];
                if garbage {
                    target.iter_mut().for_each(|b| *b = rng.next() as u8);
                }
                target[..prefix].copy_from_slice(&w.bytes[..prefix]);
                let read = read_area(&torn).current.expect("the old copy is intact");
                assert_eq!(read, before, "round {round}, prefix {prefix}");
            }
        }
        write(&mut area, Some(&before), &next);
        assert_eq!(read_area(&area).current.map(|c| c.state), Some(next));
    }
}

#[test]
fn sequence_numbers_wrap_around() {
    assert!(seq_newer(0, u32::MAX));
    assert!(seq_newer(5, u32::MAX - 5));
    assert!(!seq_newer(u32::MAX, 0));
    assert!(!seq_newer(7, 7));
    let old = BootState::factory(1, 1);
    let new = sample();
    let mut area = [0u8; AREA_LEN];
    area[..RECORD_LEN].copy_from_slice(&encode_copy(&old, u32::MAX));
    let current = read_area(&area).current.expect("copy 0 valid");
    let w = next_write(Some(&current), &new);
    assert_eq!((w.copy, w.seq), (1, 0));
    write(&mut area, Some(&current), &new);
    let read = read_area(&area).current.expect("valid");
    assert_eq!((read.state, read.seq, read.copy), (new, 0, 1));
}

#[test]
fn both_copies_invalid_is_reported_and_the_next_write_starts_over() {
    let zeros = [0u8; AREA_LEN];
    let read = read_area(&zeros);
    assert_eq!(read.current, None);
    assert_eq!(read.copies, [Err(Error::BadMagic), Err(Error::BadMagic)]);
    assert_eq!(read_area(&[]).current, None, "an empty partition");
    let w = next_write(None, &sample());
    assert_eq!((w.copy, w.seq, w.offset), (0, 1, 0));
    let fresh = fresh_area(&sample());
    let read = read_area(&fresh);
    assert_eq!(
        read.current.map(|c| (c.state, c.seq, c.copy)),
        Some((sample(), 1, 0))
    );
    assert!(read.copies[1].is_err());
}

#[test]
fn install_commit_and_mark_good() {
    let factory = BootState::factory(1, 1);
    let mut running = factory;
    running.last_boot = LastBoot {
        kind: BootKind::Normal,
        slot: Slot::A,
    };
    assert!(
        running.begin_install(Slot::A).is_err(),
        "over the running slot"
    );
    let installing = running.begin_install(Slot::B).expect("B is free");
    assert_eq!(installing.slot(Slot::B).status, Status::Installing);
    assert_eq!(
        installing.preferred,
        Slot::A,
        "not preferred before the commit"
    );
    assert!(
        running.commit_install(Slot::B, 2, 2, 3).is_err(),
        "not installing"
    );
    assert!(
        installing.commit_install(Slot::B, 2, 0, 3).is_err(),
        "under the floor"
    );
    assert!(
        installing.commit_install(Slot::B, 2, 2, 0).is_err(),
        "no tries"
    );
    let mut failed = installing;
    failed.last_failed_version = 2;
    assert!(
        failed.commit_install(Slot::B, 2, 2, 3).is_err(),
        "the last failed version"
    );
    let committed = installing.commit_install(Slot::B, 2, 2, 3).expect("commit");
    assert_eq!(committed.slot(Slot::B).status, Status::Pending { tries: 3 });
    assert_eq!(committed.preferred, Slot::B);
    assert_eq!(committed.rollback_floor, 1, "the floor waits for mark-good");
    let good = committed.mark_good(Slot::B).expect("pending");
    assert_eq!(good.slot(Slot::B).status, Status::Good);
    assert_eq!(good.rollback_floor, 2);
    assert!(installing.mark_good(Slot::B).is_err(), "installing");
    // The floor never goes down.
    let mut high = good;
    high.rollback_floor = 9;
    assert_eq!(high.mark_good(Slot::B).expect("good").rollback_floor, 9);
}

/// The GUID's on-disk bytes are its text form with the first three fields byte-swapped.
#[test]
fn partition_type_bytes_match_the_text() {
    use update::state::{PARTITION_TYPE, PARTITION_TYPE_TEXT};
    let hex: String = PARTITION_TYPE_TEXT.chars().filter(|&c| c != '-').collect();
    let mut text = [0u8; 16];
    for (i, b) in text.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex digits");
    }
    text[..4].reverse();
    text[4..6].reverse();
    text[6..8].reverse();
    assert_eq!(text, PARTITION_TYPE);
}

/// Marking the trial good: B becomes good, the floor rises to B's rollback index, the write
/// goes to the other copy with the next sequence; a second mark-good writes nothing.
#[test]
fn mark_good_writes_once() {
    use update::state::mark_good_write;
    let state = sample();
    let area = fresh_area(&state);
    let read = read_area(&area);
    let write = mark_good_write(&read, Slot::B, 8)
        .expect("B is pending")
        .expect("a pending slot marked good changes the record");
    assert_eq!((write.copy, write.offset, write.seq), (1, COPY_STRIDE, 2));
    let (written, seq) = decode_copy(&write.bytes).expect("a valid copy");
    assert_eq!(seq, 2);
    let mut want = state;
    want.slots[1].status = Status::Good;
    want.rollback_floor = 4;
    assert_eq!(written, want);
    let mut after = area;
    after[write.offset..write.offset + RECORD_LEN].copy_from_slice(&write.bytes);
    let read = read_area(&after);
    assert_eq!(read.current.expect("the new copy").state, want);
    assert_eq!(mark_good_write(&read, Slot::B, 8), Ok(None));
}

/// Mark-good refuses a version other than the running one, a bad slot and an unreadable
/// record.
#[test]
fn mark_good_refusals() {
    use update::state::mark_good_write;
    let state = sample();
    let read = read_area(&fresh_area(&state));
    assert!(matches!(
        mark_good_write(&read, Slot::B, 9),
        Err(Error::NotAllowed(_))
    ));
    let mut bad = state;
    bad.slots[1].status = Status::Bad;
    assert!(matches!(
        mark_good_write(&read_area(&fresh_area(&bad)), Slot::B, 8),
        Err(Error::NotAllowed(_))
    ));
    assert!(matches!(
        mark_good_write(&read_area(&[0u8; AREA_LEN]), Slot::A, 7),
        Err(Error::NotAllowed(_))
    ));
}
