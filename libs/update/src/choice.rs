//! Which slot to boot: boot counting and rollback as one pure function.
//!
//! [`choose`] takes the boot state (or `None` when both copies were invalid) and, per slot,
//! what its manifest said if the slot verified, and returns the slot to boot with the state
//! to write *before* booting it. Keeping it pure lets the host test every transition, and a
//! model checker crash the machine between any two steps, without a disk or a loader.
//!
//! The rules, in order:
//!
//! 1. Each slot is assessed. Empty, installing and bad slots never boot. A pending slot with
//!    no tries left becomes bad (its tries were used up without it being marked good) and its
//!    version becomes the last failed one. A pending or good slot that fails verification, or
//!    whose manifest names another version or rollback index than the record, becomes bad. A
//!    slot under the rollback floor does not boot but is left as it is.
//! 2. The preferred slot boots if it can, else the other one, which then becomes preferred.
//!    A pending slot boots as a trial: its tries go down by one in the state written before
//!    the boot, so a crash or hang during the trial still counts.
//! 3. The record notes the kind and slot of the boot. A write is due only when the record
//!    changes, so the steady state — the preferred slot good and the record already saying
//!    "normal boot of this slot" — writes nothing; the first normal boot after a trial or a
//!    rollback writes once.
//! 4. With no valid record, the newest slot that verifies boots. When the other slot verifies
//!    too, the newest goes on trial (with its manifest's tries) and the other is kept as the
//!    good fallback; alone, it is good. The rebuilt record is always written.
//! 5. When no slot can boot, the result is a [`NoBootableSlot`] saying why, per slot.

use crate::state::{BootKind, BootState, LastBoot, Slot, SlotState, Status};

/// What a slot's verified manifest says (the loader checked its signature and every payload).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Verified {
    /// The manifest's version.
    pub version: u64,
    /// The manifest's rollback index.
    pub rollback_index: u64,
    /// The manifest's boot tries.
    pub boot_tries: u8,
}

/// Why a slot does not boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// It holds no release.
    Empty,
    /// An install into it has not been committed.
    Installing,
    /// It was marked bad earlier.
    Bad,
    /// It was on trial and its tries ran out without it being marked good.
    TriesUsedUp,
    /// Its manifest's signature or a payload's hash did not verify.
    FailedVerification,
    /// Its manifest names another version or rollback index than the record.
    VersionMismatch,
    /// Its rollback index is under the rollback floor.
    BelowRollbackFloor,
}

impl Refusal {
    /// A short reason for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Installing => "installing (not committed)",
            Self::Bad => "marked bad",
            Self::TriesUsedUp => "tries used up without being marked good",
            Self::FailedVerification => "failed verification",
            Self::VersionMismatch => "manifest does not match the boot state",
            Self::BelowRollbackFloor => "rollback index under the floor",
        }
    }
}

/// The slot to boot and what to write first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The slot to boot.
    pub slot: Slot,
    /// The kind of boot.
    pub kind: BootKind,
    /// The release's version.
    pub version: u64,
    /// For a trial, the tries left after this one.
    pub tries_left: Option<u8>,
    /// The state to write and flush before booting, if it changed.
    pub write: Option<BootState>,
}

/// Neither slot can boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoBootableSlot {
    /// Why each slot (A, B) does not boot.
    pub reasons: [Refusal; 2],
    /// The state to write anyway (slots that became bad), if it changed.
    pub write: Option<BootState>,
}

impl core::fmt::Display for NoBootableSlot {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "no slot can boot: slot A {}, slot B {}",
            self.reasons[0].describe(),
            self.reasons[1].describe()
        )
    }
}

/// Chooses the slot to boot; see the module documentation for the rules.
pub fn choose(
    state: Option<&BootState>,
    verified: [Option<Verified>; 2],
) -> Result<Decision, NoBootableSlot> {
    match state {
        Some(state) => decide(state, verified),
        None => recover(verified),
    }
}

/// Rules 1 to 3 and 5.
fn decide(state: &BootState, verified: [Option<Verified>; 2]) -> Result<Decision, NoBootableSlot> {
    let mut next = *state;
    let reasons = Slot::ALL.map(|slot| assess(&mut next, slot, verified[slot.index()]));
    let order = [state.preferred, state.preferred.other()];
    let Some(slot) = order.into_iter().find(|s| reasons[s.index()].is_none()) else {
        return Err(NoBootableSlot {
            reasons: reasons.map(|r| r.expect("no slot is bootable")),
            write: (next != *state).then_some(next),
        });
    };
    let (kind, tries_left) = match next.slot(slot).status {
        Status::Pending { tries } => {
            let left = tries.saturating_sub(1);
            next.slot_mut(slot).status = Status::Pending { tries: left };
            (BootKind::Trial, Some(left))
        }
        _ if slot == state.preferred => (BootKind::Normal, None),
        _ => (BootKind::Rollback, None),
    };
    next.preferred = slot;
    next.last_boot = LastBoot { kind, slot };
    Ok(Decision {
        slot,
        kind,
        version: next.slot(slot).version,
        tries_left,
        write: (next != *state).then_some(next),
    })
}

/// Rule 1 for one slot: `None` when it may boot, else why not (marking it bad in `next`
/// where the rule says so).
fn assess(next: &mut BootState, slot: Slot, verified: Option<Verified>) -> Option<Refusal> {
    let entry = *next.slot(slot);
    let pending = matches!(entry.status, Status::Pending { .. });
    let refusal = match (entry.status, verified) {
        (Status::Empty, _) => return Some(Refusal::Empty),
        (Status::Installing, _) => return Some(Refusal::Installing),
        (Status::Bad, _) => return Some(Refusal::Bad),
        (Status::Pending { tries: 0 }, _) => Refusal::TriesUsedUp,
        (_, None) => Refusal::FailedVerification,
        (_, Some(v)) if v.version != entry.version || v.rollback_index != entry.rollback_index => {
            Refusal::VersionMismatch
        }
        _ if entry.rollback_index < next.rollback_floor => {
            return Some(Refusal::BelowRollbackFloor);
        }
        _ => return None,
    };
    next.slot_mut(slot).status = Status::Bad;
    if pending {
        next.last_failed_version = entry.version;
    }
    Some(refusal)
}

/// Rule 4: no valid record.
fn recover(verified: [Option<Verified>; 2]) -> Result<Decision, NoBootableSlot> {
    let newest = Slot::ALL
        .into_iter()
        .filter_map(|s| verified[s.index()].map(|v| (s, v)))
        .reduce(|best, cand| {
            if cand.1.version > best.1.version {
                cand
            } else {
                best
            }
        });
    let Some((slot, v)) = newest else {
        return Err(NoBootableSlot {
            reasons: [Refusal::FailedVerification; 2],
            write: None,
        });
    };
    let mut rebuilt = BootState {
        slots: [SlotState::EMPTY; 2],
        preferred: slot,
        rollback_floor: v.rollback_index,
        last_failed_version: 0,
        last_boot: LastBoot::NONE,
    };
    *rebuilt.slot_mut(slot) = SlotState::good(v.version, v.rollback_index);
    if let Some(o) = verified[slot.other().index()] {
        *rebuilt.slot_mut(slot.other()) = SlotState::good(o.version, o.rollback_index);
        rebuilt.slot_mut(slot).status = Status::Pending {
            tries: v.boot_tries,
        };
        rebuilt.rollback_floor = v.rollback_index.min(o.rollback_index);
    }
    let mut decision = decide(&rebuilt, verified)?;
    let mut written = decision.write.unwrap_or(rebuilt);
    written.last_boot.kind = BootKind::Recovered;
    decision.kind = BootKind::Recovered;
    decision.write = Some(written);
    Ok(decision)
}
