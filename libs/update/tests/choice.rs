//! The slot choice: a table of every transition, whole update cycles, and random states.

mod common;

use common::Rng;
use update::{
    choice::{Decision, NoBootableSlot, Refusal, Verified, choose},
    state::{BootKind, BootState, LastBoot, Slot, SlotState, Status, decode_copy, encode_copy},
};

fn v(version: u64, rollback_index: u64) -> Option<Verified> {
    Some(Verified {
        version,
        rollback_index,
        boot_tries: 3,
    })
}

fn pending(version: u64, ri: u64, tries: u8) -> SlotState {
    SlotState {
        status: Status::Pending { tries },
        version,
        rollback_index: ri,
    }
}

fn with(status: Status, version: u64, ri: u64) -> SlotState {
    SlotState {
        status,
        version,
        rollback_index: ri,
    }
}

fn state(a: SlotState, b: SlotState, preferred: Slot) -> BootState {
    BootState {
        slots: [a, b],
        preferred,
        rollback_floor: 1,
        last_failed_version: 0,
        last_boot: LastBoot {
            kind: BootKind::Normal,
            slot: preferred,
        },
    }
}

fn ok(s: &BootState, verified: [Option<Verified>; 2]) -> Decision {
    choose(Some(s), verified).unwrap_or_else(|e| panic!("{e} for {s:?}"))
}

#[test]
fn a_normal_boot_of_a_good_slot_writes_nothing() {
    let s = state(SlotState::good(1, 1), SlotState::EMPTY, Slot::A);
    let d = ok(&s, [v(1, 1), None]);
    assert_eq!((d.slot, d.kind, d.write), (Slot::A, BootKind::Normal, None));
    // The factory record has no boot yet: the first boot records itself, once.
    let factory = BootState::factory(1, 1);
    let first = ok(&factory, [v(1, 1), None]);
    let written = first.write.expect("first boot recorded");
    assert_eq!(
        written.last_boot,
        LastBoot {
            kind: BootKind::Normal,
            slot: Slot::A
        }
    );
    assert_eq!(ok(&written, [v(1, 1), None]).write, None);
}

#[test]
fn a_pending_slot_is_tried_with_its_tries_decremented_first() {
    let s = state(SlotState::good(1, 1), pending(2, 1, 3), Slot::B);
    let d = ok(&s, [v(1, 1), v(2, 1)]);
    assert_eq!(
        (d.slot, d.kind, d.tries_left, d.version),
        (Slot::B, BootKind::Trial, Some(2), 2)
    );
    let w = d.write.expect("tries go down before the boot");
    assert_eq!(w.slot(Slot::B).status, Status::Pending { tries: 2 });
    assert_eq!(
        w.last_boot,
        LastBoot {
            kind: BootKind::Trial,
            slot: Slot::B
        }
    );
    assert_eq!(w.slot(Slot::A), s.slot(Slot::A));
}

#[test]
fn tries_used_up_make_the_slot_bad_and_the_other_boots() {
    let s = state(SlotState::good(1, 1), pending(2, 1, 0), Slot::B);
    let d = ok(&s, [v(1, 1), v(2, 1)]);
    assert_eq!((d.slot, d.kind), (Slot::A, BootKind::Rollback));
    let w = d.write.expect("B becomes bad");
    assert_eq!(w.slot(Slot::B).status, Status::Bad);
    assert_eq!(w.last_failed_version, 2);
    assert_eq!(w.preferred, Slot::A);
    // The next boot is normal (one write to say so), then nothing.
    let next = ok(&w, [v(1, 1), v(2, 1)]);
    assert_eq!((next.slot, next.kind), (Slot::A, BootKind::Normal));
    let w2 = next.write.expect("records the normal boot");
    assert_eq!(ok(&w2, [v(1, 1), v(2, 1)]).write, None);
}

#[test]
fn a_release_never_marked_good_gets_exactly_its_tries() {
    for tries in 1..=5u8 {
        let mut s = state(SlotState::good(1, 1), pending(2, 2, tries), Slot::B);
        let mut trials = 0;
        loop {
            let d = ok(&s, [v(1, 1), v(2, 2)]);
            if d.slot == Slot::A {
                assert_eq!(d.kind, BootKind::Rollback);
                break;
            }
            trials += 1;
            assert!(trials <= tries, "more trials than tries");
            s = d.write.expect("every trial writes");
        }
        assert_eq!(trials, tries);
    }
}

#[test]
fn a_slot_that_fails_verification_becomes_bad() {
    // Pending B with a flipped payload: bad, its version failed, A boots.
    let s = state(SlotState::good(1, 1), pending(2, 1, 3), Slot::B);
    let d = ok(&s, [v(1, 1), None]);
    assert_eq!((d.slot, d.kind), (Slot::A, BootKind::Rollback));
    let w = d.write.expect("B marked bad");
    assert_eq!(w.slot(Slot::B).status, Status::Bad);
    assert_eq!(w.last_failed_version, 2);
    // A good slot that rots is bad too (but its version did not "fail a trial").
    let s = state(SlotState::good(1, 1), SlotState::good(2, 1), Slot::B);
    let w = ok(&s, [v(1, 1), None]).write.expect("B marked bad");
    assert_eq!(w.slot(Slot::B).status, Status::Bad);
    assert_eq!(w.last_failed_version, 0);
}

#[test]
fn a_manifest_that_does_not_match_the_record_is_refused() {
    let s = state(SlotState::good(1, 1), SlotState::good(2, 1), Slot::B);
    for wrong in [v(3, 1), v(2, 5)] {
        let d = ok(&s, [v(1, 1), wrong]);
        assert_eq!(d.slot, Slot::A);
        assert_eq!(d.write.expect("B bad").slot(Slot::B).status, Status::Bad);
    }
}

#[test]
fn slots_under_the_rollback_floor_do_not_boot_and_are_left_alone() {
    let mut s = state(SlotState::good(1, 1), SlotState::good(2, 2), Slot::A);
    s.rollback_floor = 2;
    let d = ok(&s, [v(1, 1), v(2, 2)]);
    assert_eq!((d.slot, d.kind), (Slot::B, BootKind::Rollback));
    let w = d.write.expect("preferred moves to B");
    assert_eq!(w.slot(Slot::A).status, Status::Good, "not marked bad");
    assert_eq!(w.rollback_floor, 2);
}

#[test]
fn empty_installing_and_bad_slots_never_boot() {
    for status in [Status::Empty, Status::Installing, Status::Bad] {
        let s = state(with(status, 2, 1), SlotState::good(1, 1), Slot::A);
        let d = ok(&s, [v(2, 1), v(1, 1)]);
        assert_eq!(
            (d.slot, d.kind),
            (Slot::B, BootKind::Rollback),
            "{status:?}"
        );
        let w = d.write.expect("preferred moves to B");
        assert_eq!(w.slot(Slot::A), s.slot(Slot::A), "{status:?} left as it is");
        assert_eq!(w.preferred, Slot::B);
    }
}

#[test]
fn the_other_slot_on_trial_boots_when_the_preferred_cannot() {
    let s = state(with(Status::Bad, 1, 1), pending(2, 1, 2), Slot::A);
    let d = ok(&s, [v(1, 1), v(2, 1)]);
    assert_eq!(
        (d.slot, d.kind, d.tries_left),
        (Slot::B, BootKind::Trial, Some(1))
    );
}

#[test]
fn neither_slot_bootable_is_a_clear_error() {
    let s = state(with(Status::Bad, 1, 1), pending(2, 1, 0), Slot::B);
    let err = choose(Some(&s), [v(1, 1), v(2, 1)]).expect_err("nothing boots");
    assert_eq!(err.reasons, [Refusal::Bad, Refusal::TriesUsedUp]);
    let w = err.write.expect("B still becomes bad");
    assert_eq!(w.slot(Slot::B).status, Status::Bad);
    let msg = err.to_string();
    assert!(
        msg.contains("slot A marked bad") && msg.contains("tries used up"),
        "{msg}"
    );
    let empty = state(SlotState::EMPTY, SlotState::EMPTY, Slot::A);
    assert_eq!(
        choose(Some(&empty), [None, None]),
        Err(NoBootableSlot {
            reasons: [Refusal::Empty; 2],
            write: None
        })
    );
}

#[test]
fn without_a_record_the_newest_verifying_slot_boots() {
    // Only one verifies: it is rebuilt as good.
    let d = choose(None, [None, v(4, 2)]).expect("B verifies");
    assert_eq!((d.slot, d.kind), (Slot::B, BootKind::Recovered));
    let w = d.write.expect("always rewritten");
    assert_eq!(w.slot(Slot::B), &SlotState::good(4, 2));
    assert_eq!(w.slot(Slot::A), &SlotState::EMPTY);
    assert_eq!((w.preferred, w.rollback_floor), (Slot::B, 2));
    assert_eq!(
        w.last_boot,
        LastBoot {
            kind: BootKind::Recovered,
            slot: Slot::B
        }
    );
    // Both verify: the newest goes on trial, the other is kept as the good fallback.
    let d = choose(None, [v(5, 3), v(4, 2)]).expect("both verify");
    assert_eq!(
        (d.slot, d.kind, d.tries_left),
        (Slot::A, BootKind::Recovered, Some(2))
    );
    let w = d.write.expect("always rewritten");
    assert_eq!(w.slot(Slot::A).status, Status::Pending { tries: 2 });
    assert_eq!(w.slot(Slot::B), &SlotState::good(4, 2));
    assert_eq!(w.rollback_floor, 2, "the floor keeps the fallback bootable");
    // A tie goes to A; nothing verifies: an error.
    assert_eq!(
        choose(None, [v(4, 2), v(4, 2)]).map(|d| d.slot),
        Ok(Slot::A)
    );
    assert!(choose(None, [None, None]).is_err());
}

/// Whether `slot` may boot by the rules, judged independently of the implementation.
fn bootable(s: &BootState, slot: Slot, verified: Option<Verified>) -> bool {
    let e = s.slot(slot);
    let status_ok = matches!(e.status, Status::Good | Status::Pending { tries: 1.. });
    status_ok
        && verified.is_some_and(|v| v.version == e.version && v.rollback_index == e.rollback_index)
        && e.rollback_index >= s.rollback_floor
}

#[test]
fn random_states_keep_the_invariants() {
    let mut rng = Rng::new(5);
    for case in 0..200_000 {
        let s = rng.state();
        let verified = Slot::ALL.map(|slot| {
            let e = s.slot(slot);
            match rng.below(4) {
                0 => None,
                1 => v(rng.number(), rng.number()),
                _ => v(e.version, e.rollback_index),
            }
        });
        let ok_slots = Slot::ALL.map(|slot| bootable(&s, slot, verified[slot.index()]));
        match choose(Some(&s), verified) {
            Ok(d) => {
                assert!(
                    ok_slots[d.slot.index()],
                    "case {case}: booted an unbootable slot"
                );
                if d.slot != s.preferred {
                    assert!(
                        !ok_slots[s.preferred.index()],
                        "case {case}: skipped the preferred"
                    );
                }
                let w = d.write.unwrap_or(s);
                assert_eq!(w.preferred, d.slot);
                assert_eq!(
                    w.rollback_floor, s.rollback_floor,
                    "case {case}: floor changed"
                );
                assert_eq!(w.last_boot.slot, d.slot);
                match s.slot(d.slot).status {
                    Status::Pending { tries } => {
                        assert_eq!(d.kind, BootKind::Trial);
                        assert_eq!(w.slot(d.slot).status, Status::Pending { tries: tries - 1 });
                    }
                    Status::Good => assert_eq!(w.slot(d.slot).status, Status::Good),
                    other => panic!("case {case}: booted a slot that is {other:?}"),
                }
                let other = d.slot.other();
                let steady = s.slot(d.slot).status == Status::Good
                    && d.slot == s.preferred
                    && s.last_boot
                        == LastBoot {
                            kind: BootKind::Normal,
                            slot: d.slot,
                        }
                    && w.slot(other) == s.slot(other);
                if steady {
                    assert_eq!(d.write, None, "case {case}: a steady normal boot wrote");
                }
                check_slots_changed_only_to_bad(case, &s, &w, Some(d.slot));
                assert_eq!(decode_copy(&encode_copy(&w, 1)), Ok((w, 1)), "case {case}");
            }
            Err(e) => {
                assert_eq!(
                    ok_slots,
                    [false, false],
                    "case {case}: refused a bootable slot"
                );
                let w = e.write.unwrap_or(s);
                check_slots_changed_only_to_bad(case, &s, &w, None);
            }
        }
    }
}

/// The loader only ever marks slots bad (or decrements the booted slot's tries); it never
/// revives a bad slot, never touches versions.
fn check_slots_changed_only_to_bad(
    case: u32,
    before: &BootState,
    after: &BootState,
    booted: Option<Slot>,
) {
    for slot in Slot::ALL {
        let (b, a) = (before.slot(slot), after.slot(slot));
        assert_eq!(
            (a.version, a.rollback_index),
            (b.version, b.rollback_index),
            "case {case}"
        );
        let allowed = a == b
            || a.status == Status::Bad
            || booted == Some(slot)
                && matches!((b.status, a.status),
                (Status::Pending { tries: t }, Status::Pending { tries: u }) if u + 1 == t);
        assert!(allowed, "case {case}: {slot:?} went from {b:?} to {a:?}");
    }
    for slot in Slot::ALL {
        if before.slot(slot).status == Status::Bad {
            assert_eq!(after.slot(slot).status, Status::Bad, "case {case}: revived");
        }
    }
}

/// Two full update cycles by the state helpers and the loader: v1 → v2 (good) → v3 (fails,
/// rolls back to v2) → v4 (good). The booted release is always a complete one and the floor
/// only goes up.
#[test]
fn two_update_cycles_end_to_end() {
    let mut disk: [Option<Verified>; 2] = [v(1, 1), None];
    let mut s = BootState::factory(1, 1);
    let boot = |s: &mut BootState, disk: &[Option<Verified>; 2]| {
        let d = choose(Some(s), *disk).expect("something boots");
        if let Some(w) = d.write {
            *s = w;
        }
        d
    };
    let install = |s: &mut BootState, disk: &mut [Option<Verified>; 2], version, ri| {
        let running = s.last_boot.slot;
        let target = running.other();
        *s = s.begin_install(target).expect("other slot is free");
        disk[target.index()] = v(version, ri);
        *s = s.commit_install(target, version, ri, 2).expect("commit");
        target
    };
    assert_eq!(boot(&mut s, &disk).slot, Slot::A);
    // v2 into B, marked good on its first trial.
    let b = install(&mut s, &mut disk, 2, 2);
    let d = boot(&mut s, &disk);
    assert_eq!((d.slot, d.kind, d.version), (b, BootKind::Trial, 2));
    s = s.mark_good(b).expect("on trial");
    assert_eq!(s.rollback_floor, 2);
    assert_eq!(boot(&mut s, &disk).kind, BootKind::Normal);
    // v3 into A, never healthy: two trials, then v2 again.
    let a = install(&mut s, &mut disk, 3, 2);
    assert_eq!(a, Slot::A);
    assert_eq!(boot(&mut s, &disk).slot, Slot::A);
    assert_eq!(boot(&mut s, &disk).slot, Slot::A);
    let d = boot(&mut s, &disk);
    assert_eq!(
        (d.slot, d.kind, d.version),
        (Slot::B, BootKind::Rollback, 2)
    );
    assert_eq!(s.last_failed_version, 3);
    assert!(
        s.begin_install(Slot::A)
            .and_then(|t| t.commit_install(Slot::A, 3, 2, 2))
            .is_err()
    );
    // v4 into A, good.
    install(&mut s, &mut disk, 4, 3);
    assert_eq!(boot(&mut s, &disk).version, 4);
    s = s.mark_good(Slot::A).expect("on trial");
    assert_eq!(s.rollback_floor, 3);
    let d = boot(&mut s, &disk);
    assert_eq!((d.slot, d.kind, d.version), (Slot::A, BootKind::Normal, 4));
    assert_eq!(boot(&mut s, &disk).write, None);
}
