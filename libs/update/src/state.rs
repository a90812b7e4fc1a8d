//! The boot-state record: which release each slot holds, how far each got, and which to boot.
//!
//! The record lives at the start of the raw `EG_STATE` partition in two copies,
//! [`COPY_STRIDE`] bytes apart so that each sits in its own block even on 4 KiB-sector disks.
//! Each copy carries a sequence number and a CRC-32 (the ISO-HDLC polynomial, as in zlib and
//! GPT). Reading takes the valid copy with the newer sequence number (serial-number arithmetic,
//! so the counter may wrap); writing always targets the *other* copy with the next sequence
//! number. A write torn at any byte, or lost entirely, therefore leaves the previous state
//! readable: the commit point of a change is the moment its copy becomes valid.
//!
//! A copy is [`RECORD_LEN`] bytes, all little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `EGSTATE\0` |
//! | 8 | 2 | format version (1) |
//! | 10 | 2 | reserved, zero |
//! | 12 | 4 | sequence number |
//! | 16 | 24 | slot A: status, tries, 6 reserved zero bytes, version (u64), rollback index (u64) |
//! | 40 | 24 | slot B, the same |
//! | 64 | 1 | preferred slot (0 = A, 1 = B) |
//! | 65 | 1 | last boot's kind (0 none, 1 normal, 2 trial, 3 rollback, 4 recovered) |
//! | 66 | 1 | last boot's slot (0 = A, 1 = B; 0 when the kind is none) |
//! | 67 | 5 | reserved, zero |
//! | 72 | 8 | rollback floor |
//! | 80 | 8 | last failed version (0 = none) |
//! | 88 | 4 | CRC-32 of bytes 0..88 |
//!
//! Status bytes: 0 empty, 1 installing, 2 pending (with the tries byte: boots left, 1 to
//! [`MAX_TRIES`]), 3 good, 4 bad. Reserved bytes and the tries byte of a non-pending slot
//! must be zero, so every encoding decodes to exactly one state and back.

use crc::{CRC_32_ISO_HDLC, Crc};

use crate::{
    Error, Result,
    wire::{Reader, Writer},
};

/// The first bytes of every copy.
pub const MAGIC: [u8; 8] = *b"EGSTATE\0";
/// The layout version this code writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes of one copy, checksum included.
pub const RECORD_LEN: usize = 92;
/// Distance between the starts of the two copies in the state partition.
pub const COPY_STRIDE: usize = 4096;
/// Bytes of the state partition the record uses (both copies).
pub const AREA_LEN: usize = 2 * COPY_STRIDE;
/// The most boot attempts a pending slot may have.
pub const MAX_TRIES: u8 = 15;
/// `EG_STATE`'s GPT partition type GUID (Evergreen's own, random), as text.
pub const PARTITION_TYPE_TEXT: &str = "5E6A1C52-5D3B-4C0E-9A0B-2F1E8D7C6B01";
/// [`PARTITION_TYPE_TEXT`] as a GPT entry stores it: the first three fields little-endian,
/// the last two as written.
pub const PARTITION_TYPE: [u8; 16] = [
    0x52, 0x1c, 0x6a, 0x5e, 0x3b, 0x5d, 0x0e, 0x4c, 0x9a, 0x0b, 0x2f, 0x1e, 0x8d, 0x7c, 0x6b, 0x01,
];

const CRC32: Crc<u32> = Crc::<u32>::new(&CRC_32_ISO_HDLC);

/// One of the two release slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    /// Slot A, the factory release.
    A,
    /// Slot B.
    B,
}

impl Slot {
    /// Both slots, A first.
    pub const ALL: [Slot; 2] = [Slot::A, Slot::B];

    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// 0 for A, 1 for B.
    pub fn index(self) -> usize {
        match self {
            Slot::A => 0,
            Slot::B => 1,
        }
    }

    /// `"A"` or `"B"`, as on the kernel command line (`evergreen.slot=A`).
    pub fn name(self) -> &'static str {
        match self {
            Slot::A => "A",
            Slot::B => "B",
        }
    }

    fn from_byte(b: u8) -> Result<Slot> {
        match b {
            0 => Ok(Slot::A),
            1 => Ok(Slot::B),
            _ => Err(Error::BadField("slot")),
        }
    }
}

/// How far a slot's release got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// Holds no release.
    Empty,
    /// An update is being written into it: never boot it.
    Installing,
    /// A complete release on trial, with this many boot attempts left (0 = used up).
    Pending {
        /// Boot attempts left.
        tries: u8,
    },
    /// A release that booted and was marked healthy.
    Good,
    /// A release that failed (verification, or its tries ran out): never booted again
    /// until something is installed over it.
    Bad,
}

/// What the record knows about one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SlotState {
    /// How far its release got.
    pub status: Status,
    /// Its release's version (from the manifest; 0 when empty).
    pub version: u64,
    /// Its release's rollback index (from the manifest).
    pub rollback_index: u64,
}

impl SlotState {
    /// An empty slot.
    pub const EMPTY: SlotState = SlotState {
        status: Status::Empty,
        version: 0,
        rollback_index: 0,
    };

    /// A good slot holding `version` with `rollback_index`.
    pub fn good(version: u64, rollback_index: u64) -> SlotState {
        SlotState {
            status: Status::Good,
            version,
            rollback_index,
        }
    }
}

/// What kind of boot the loader last started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BootKind {
    /// No boot recorded yet (a factory image).
    None,
    /// A good slot, the preferred one.
    Normal,
    /// A pending slot, one of its tries.
    Trial,
    /// The other slot, because the preferred one could not boot.
    Rollback,
    /// Both copies of the record were invalid: the record was rebuilt from what verifies.
    Recovered,
}

/// The last boot the loader started: its kind and its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LastBoot {
    /// What kind of boot.
    pub kind: BootKind,
    /// Which slot (A when the kind is [`BootKind::None`]).
    pub slot: Slot,
}

impl LastBoot {
    /// No boot recorded.
    pub const NONE: LastBoot = LastBoot {
        kind: BootKind::None,
        slot: Slot::A,
    };
}

/// The whole boot state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BootState {
    /// Slot A then slot B; index with [`BootState::slot`].
    pub slots: [SlotState; 2],
    /// The slot to try first.
    pub preferred: Slot,
    /// No release with a lower rollback index boots; only ever raised.
    pub rollback_floor: u64,
    /// The version that last failed its trial (0 = none), so an agent does not reinstall it.
    pub last_failed_version: u64,
    /// The last boot the loader started.
    pub last_boot: LastBoot,
}

impl BootState {
    /// The factory state: `version` good in slot A, slot B empty, A preferred.
    pub fn factory(version: u64, rollback_index: u64) -> BootState {
        BootState {
            slots: [SlotState::good(version, rollback_index), SlotState::EMPTY],
            preferred: Slot::A,
            rollback_floor: rollback_index,
            last_failed_version: 0,
            last_boot: LastBoot::NONE,
        }
    }

    /// What the record says about `slot`.
    pub fn slot(&self, slot: Slot) -> &SlotState {
        &self.slots[slot.index()]
    }

    /// Mutable access to `slot`'s entry.
    pub fn slot_mut(&mut self, slot: Slot) -> &mut SlotState {
        &mut self.slots[slot.index()]
    }

    /// Starts writing a release into `slot`: it becomes installing, so nothing boots it
    /// half-written. Refused for the slot that booted last (it may be running).
    pub fn begin_install(&self, slot: Slot) -> Result<BootState> {
        if self.last_boot.kind != BootKind::None && self.last_boot.slot == slot {
            return Err(Error::NotAllowed("installing over the running slot"));
        }
        let mut next = *self;
        *next.slot_mut(slot) = SlotState {
            status: Status::Installing,
            version: 0,
            rollback_index: 0,
        };
        Ok(next)
    }

    /// Finishes an install into `slot`: the release (`version`, `rollback_index`) becomes
    /// pending with `tries` boots and the preferred slot. Refused unless the slot is
    /// installing, for a rollback index under the floor and for the last failed version.
    pub fn commit_install(
        &self,
        slot: Slot,
        version: u64,
        rollback_index: u64,
        tries: u8,
    ) -> Result<BootState> {
        if self.slot(slot).status != Status::Installing {
            return Err(Error::NotAllowed(
                "committing a slot that is not installing",
            ));
        }
        if rollback_index < self.rollback_floor {
            return Err(Error::NotAllowed("rollback index under the floor"));
        }
        if version != 0 && version == self.last_failed_version {
            return Err(Error::NotAllowed(
                "reinstalling the version that last failed",
            ));
        }
        if !(1..=MAX_TRIES).contains(&tries) {
            return Err(Error::BadField("tries"));
        }
        let mut next = *self;
        *next.slot_mut(slot) = SlotState {
            status: Status::Pending { tries },
            version,
            rollback_index,
        };
        next.preferred = slot;
        Ok(next)
    }

    /// Marks the running `slot` good after its health checks, and raises the rollback floor
    /// to its rollback index. Refused unless the slot is pending or good.
    pub fn mark_good(&self, slot: Slot) -> Result<BootState> {
        let entry = self.slot(slot);
        if !matches!(entry.status, Status::Pending { .. } | Status::Good) {
            return Err(Error::NotAllowed(
                "marking a slot good that is not on trial",
            ));
        }
        let mut next = *self;
        next.slot_mut(slot).status = Status::Good;
        next.rollback_floor = next.rollback_floor.max(entry.rollback_index);
        Ok(next)
    }
}

/// `a` is newer than `b` in serial-number arithmetic (RFC 1982): the counter may wrap.
pub fn seq_newer(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 1 << 31
}

/// Encodes one copy of `state` with sequence number `seq`.
pub fn encode_copy(state: &BootState, seq: u32) -> [u8; RECORD_LEN] {
    let mut out = [0u8; RECORD_LEN];
    write_copy(state, seq, &mut out).expect("RECORD_LEN holds exactly one copy");
    out
}

fn write_copy(state: &BootState, seq: u32, out: &mut [u8; RECORD_LEN]) -> Result<()> {
    let mut w = Writer::new(out);
    w.bytes(&MAGIC)?;
    w.u16(FORMAT_VERSION)?;
    w.u16(0)?;
    w.u32(seq)?;
    for slot in &state.slots {
        let (status, tries) = match slot.status {
            Status::Empty => (0, 0),
            Status::Installing => (1, 0),
            Status::Pending { tries } => (2, tries),
            Status::Good => (3, 0),
            Status::Bad => (4, 0),
        };
        w.u8(status)?;
        w.u8(tries)?;
        w.bytes(&[0; 6])?;
        w.u64(slot.version)?;
        w.u64(slot.rollback_index)?;
    }
    w.u8(state.preferred.index() as u8)?;
    let kind = match state.last_boot.kind {
        BootKind::None => 0,
        BootKind::Normal => 1,
        BootKind::Trial => 2,
        BootKind::Rollback => 3,
        BootKind::Recovered => 4,
    };
    w.u8(kind)?;
    w.u8(state.last_boot.slot.index() as u8)?;
    w.bytes(&[0; 5])?;
    w.u64(state.rollback_floor)?;
    w.u64(state.last_failed_version)?;
    let body = w.len();
    let crc = CRC32.checksum(&out[..body]);
    out[body..].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Decodes one copy: its state and sequence number. `bytes` is exactly one copy
/// ([`RECORD_LEN`] bytes).
pub fn decode_copy(bytes: &[u8]) -> Result<(BootState, u32)> {
    if bytes.len() < RECORD_LEN {
        return Err(Error::Truncated);
    }
    if bytes.len() > RECORD_LEN {
        return Err(Error::TrailingBytes);
    }
    let (body, crc) = bytes.split_at(RECORD_LEN - 4);
    let mut r = Reader::new(body);
    if r.array::<8>()? != MAGIC {
        return Err(Error::BadMagic);
    }
    // The checksum before any other field: a torn copy is "invalid", not "bad field".
    if CRC32.checksum(body).to_le_bytes() != crc {
        return Err(Error::BadChecksum);
    }
    let format = r.u16()?;
    if format != FORMAT_VERSION {
        return Err(Error::UnknownFormat(format));
    }
    zero(r.bytes(2)?)?;
    let seq = r.u32()?;
    let slots = [read_slot(&mut r)?, read_slot(&mut r)?];
    let preferred = Slot::from_byte(r.u8()?)?;
    let kind = match r.u8()? {
        0 => BootKind::None,
        1 => BootKind::Normal,
        2 => BootKind::Trial,
        3 => BootKind::Rollback,
        4 => BootKind::Recovered,
        _ => return Err(Error::BadField("last boot kind")),
    };
    let slot = Slot::from_byte(r.u8()?)?;
    if kind == BootKind::None && slot != Slot::A {
        return Err(Error::BadField("last boot slot"));
    }
    zero(r.bytes(5)?)?;
    let rollback_floor = r.u64()?;
    let last_failed_version = r.u64()?;
    r.finish()?;
    let state = BootState {
        slots,
        preferred,
        rollback_floor,
        last_failed_version,
        last_boot: LastBoot { kind, slot },
    };
    Ok((state, seq))
}

fn read_slot(r: &mut Reader<'_>) -> Result<SlotState> {
    let status = r.u8()?;
    let tries = r.u8()?;
    zero(r.bytes(6)?)?;
    let status = match (status, tries) {
        (0, 0) => Status::Empty,
        (1, 0) => Status::Installing,
        (2, t) if t <= MAX_TRIES => Status::Pending { tries: t },
        (3, 0) => Status::Good,
        (4, 0) => Status::Bad,
        _ => return Err(Error::BadField("slot status")),
    };
    Ok(SlotState {
        status,
        version: r.u64()?,
        rollback_index: r.u64()?,
    })
}

fn zero(bytes: &[u8]) -> Result<()> {
    if bytes.iter().all(|&b| b == 0) {
        Ok(())
    } else {
        Err(Error::BadField("reserved bytes"))
    }
}

/// The state read from the area, and where it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Current {
    /// The state.
    pub state: BootState,
    /// Its sequence number.
    pub seq: u32,
    /// The copy (0 or 1) that holds it.
    pub copy: usize,
}

/// What reading the state area found: per copy its decode result, and the current state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadResult {
    /// Each copy's decoded state and sequence, or why it is invalid.
    pub copies: [Result<(BootState, u32)>; 2],
    /// The valid copy with the newest sequence; `None` when both are invalid (the caller
    /// falls back, see [`crate::choice`]).
    pub current: Option<Current>,
}

/// Reads the state area (the first [`AREA_LEN`] bytes of the state partition; shorter input
/// makes the missing copies invalid).
pub fn read_area(area: &[u8]) -> ReadResult {
    let copy = |i: usize| {
        let start = i * COPY_STRIDE;
        let bytes = area
            .get(start..start + RECORD_LEN)
            .ok_or(Error::Truncated)?;
        decode_copy(bytes)
    };
    let copies = [copy(0), copy(1)];
    let current = match (&copies[0], &copies[1]) {
        (Ok((a, sa)), Ok((_, sb))) if !seq_newer(*sb, *sa) => Some((a, *sa, 0)),
        (Ok(_), Ok((b, sb))) => Some((b, *sb, 1)),
        (Ok((a, sa)), Err(_)) => Some((a, *sa, 0)),
        (Err(_), Ok((b, sb))) => Some((b, *sb, 1)),
        (Err(_), Err(_)) => None,
    }
    .map(|(state, seq, copy)| Current {
        state: *state,
        seq,
        copy,
    });
    ReadResult { copies, current }
}

/// One write to make: `bytes` go at byte `offset` of the state partition, then a flush.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingWrite {
    /// Byte offset in the state partition (a multiple of [`COPY_STRIDE`]).
    pub offset: usize,
    /// The copy which is being replaced (0 or 1).
    pub copy: usize,
    /// Its sequence number.
    pub seq: u32,
    /// The encoded copy.
    pub bytes: [u8; RECORD_LEN],
}

/// The write that replaces `current` with `state`: always into the copy that does not hold
/// `current`, with the next sequence number. With no current state (both copies invalid)
/// it goes into copy 0 with sequence 1.
pub fn next_write(current: Option<&Current>, state: &BootState) -> PendingWrite {
    let (copy, seq) = match current {
        Some(c) => (1 - c.copy, c.seq.wrapping_add(1)),
        None => (0, 1),
    };
    PendingWrite {
        offset: copy * COPY_STRIDE,
        copy,
        seq,
        bytes: encode_copy(state, seq),
    }
}

/// A fresh state area holding `state` in copy 0 (sequence 1) and an invalid copy 1, as the
/// image writer puts on a new disk.
pub fn fresh_area(state: &BootState) -> [u8; AREA_LEN] {
    let mut area = [0u8; AREA_LEN];
    let write = next_write(None, state);
    area[write.offset..write.offset + RECORD_LEN].copy_from_slice(&write.bytes);
    area
}

/// Marks the running release good on the disk: given what was read from the state area, the
/// slot that booted and the version it runs, the write to make — `None` when the record
/// already says so (a second mark-good writes nothing). Refused when no copy is valid, when
/// the record holds another version in that slot than the one running (the disk changed under
/// it), and where [`BootState::mark_good`] refuses.
pub fn mark_good_write(
    read: &ReadResult,
    slot: Slot,
    version: u64,
) -> Result<Option<PendingWrite>> {
    let current = read
        .current
        .as_ref()
        .ok_or(Error::NotAllowed("no valid copy of the boot state"))?;
    if current.state.slot(slot).version != version {
        return Err(Error::NotAllowed(
            "the slot holds another version than the one running",
        ));
    }
    let next = current.state.mark_good(slot)?;
    Ok((next != current.state).then(|| next_write(Some(current), &next)))
}
