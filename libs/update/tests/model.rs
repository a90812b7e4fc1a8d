//! A small model check: two full update cycles (v1 → v2 good → v3 never healthy, rolled
//! back → v4 good), with the machine crashing at every state write — the write dropped, torn
//! to a prefix, or applied — and at the slot-data write of each install. After the crash the
//! machine only boots (nobody repairs anything); every following boot must reach a complete
//! release that is not marked bad, with the rollback floor never going down.

use update::{
    choice::{Verified, choose},
    state::{AREA_LEN, BootState, RECORD_LEN, Slot, Status, fresh_area, next_write, read_area},
};

/// Where the run crashes: at state write number `write`, after `prefix` bytes of it; or, for
/// `prefix == None`, while writing the slot data of install number `write`.
#[derive(Clone, Copy, Debug)]
struct Crash {
    write: usize,
    prefix: Option<usize>,
}

struct Machine {
    area: [u8; AREA_LEN],
    /// What each slot's data verifies as (None: empty, partial or corrupt).
    disk: [Option<Verified>; 2],
    writes: usize,
    installs: usize,
    crash: Crash,
}

struct Crashed;

impl Machine {
    fn state(&self) -> BootState {
        read_area(&self.area)
            .current
            .expect("one copy always stays valid")
            .state
    }

    fn write(&mut self, state: &BootState) -> Result<(), Crashed> {
        let current = read_area(&self.area).current;
        let w = next_write(current.as_ref(), state);
        let n = self.writes;
        self.writes += 1;
        let len = match self.crash {
            Crash {
                write,
                prefix: Some(p),
            } if write == n => p,
            _ => RECORD_LEN,
        };
        self.area[w.offset..w.offset + len].copy_from_slice(&w.bytes[..len]);
        if len < RECORD_LEN || self.crash.write == n && self.crash.prefix.is_some() {
            return Err(Crashed);
        }
        Ok(())
    }

    /// The loader: choose, write, "boot". Returns the booted slot.
    fn boot(&mut self) -> Result<Slot, Crashed> {
        let before = self.state();
        let d = choose(Some(&before), self.disk).expect("a release always boots");
        let release = self.disk[d.slot.index()].expect("booted slot verifies");
        assert_eq!(release.version, before.slot(d.slot).version);
        assert_ne!(before.slot(d.slot).status, Status::Bad);
        if let Some(w) = d.write {
            assert!(w.rollback_floor >= before.rollback_floor);
            self.write(&w)?;
        }
        Ok(d.slot)
    }

    /// The agent: installs `version` into the slot that is not running.
    fn install(&mut self, running: Slot, version: u64, ri: u64) -> Result<(), Crashed> {
        let target = running.other();
        let s = self.state().begin_install(target).expect("not running");
        self.write(&s)?;
        self.disk[target.index()] = None;
        let n = self.installs;
        self.installs += 1;
        if self.crash.prefix.is_none() && self.crash.write == n {
            return Err(Crashed);
        }
        self.disk[target.index()] = Some(Verified {
            version,
            rollback_index: ri,
            boot_tries: 2,
        });
        let s = self
            .state()
            .commit_install(target, version, ri, 2)
            .expect("commit");
        self.write(&s)
    }

    fn mark_good(&mut self, slot: Slot) -> Result<(), Crashed> {
        let s = self.state().mark_good(slot).expect("on trial");
        self.write(&s)
    }

    /// The whole script; stops at the crash.
    fn script(&mut self) -> Result<(), Crashed> {
        let a = self.boot()?;
        self.install(a, 2, 2)?;
        let b = self.boot()?;
        self.mark_good(b)?;
        let b = self.boot()?;
        self.install(b, 3, 2)?;
        for _ in 0..3 {
            self.boot()?;
        }
        let running = self.boot()?;
        self.install(running, 4, 3)?;
        let new = self.boot()?;
        self.mark_good(new)?;
        self.boot()?;
        Ok(())
    }
}

fn run(crash: Crash) -> (Machine, bool) {
    let mut m = Machine {
        area: fresh_area(&BootState::factory(1, 1)),
        disk: [
            Some(Verified {
                version: 1,
                rollback_index: 1,
                boot_tries: 2,
            }),
            None,
        ],
        writes: 0,
        installs: 0,
        crash,
    };
    let crashed = m.script().is_err();
    (m, crashed)
}

#[test]
fn every_crash_point_leaves_a_bootable_good_release() {
    let (clean, crashed) = run(Crash {
        write: usize::MAX,
        prefix: Some(0),
    });
    assert!(!crashed);
    let end = clean.state();
    assert_eq!(end.slot(end.preferred).version, 4);
    assert_eq!(end.last_failed_version, 3);
    assert_eq!(end.rollback_floor, 3);
    let total = clean.writes;
    let mut crashes = 0;
    let points = (0..total)
        .flat_map(|w| {
            [0, 1, 12, 16, 50, RECORD_LEN - 1, RECORD_LEN].map(move |p| Crash {
                write: w,
                prefix: Some(p),
            })
        })
        .chain((0..3).map(|i| Crash {
            write: i,
            prefix: None,
        }));
    for crash in points {
        let (mut m, crashed) = run(crash);
        assert!(crashed, "{crash:?} not reached");
        crashes += 1;
        // Nobody repairs anything: it just boots, again and again.
        m.crash.write = usize::MAX;
        let floor = m.state().rollback_floor;
        for _ in 0..6 {
            assert!(m.boot().is_ok());
            assert!(m.state().rollback_floor >= floor);
        }
        // And it settles: the steady state writes nothing.
        let before = m.writes;
        m.boot().ok();
        assert_eq!(m.writes, before, "{crash:?}: no steady state");
    }
    assert!(crashes > 100);
}
