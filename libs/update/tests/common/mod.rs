//! Helpers shared by the host tests: a small deterministic PRNG and random states.

#![allow(dead_code, reason = "each test file uses a different part")]

use update::state::{BootKind, BootState, LastBoot, MAX_TRIES, Slot, SlotState, Status};

/// xorshift64*: deterministic, so a failing case can be replayed from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn bool(&mut self) -> bool {
        self.next() & 1 == 1
    }

    /// Small numbers most of the time (collisions between slots matter), any u64 sometimes.
    pub fn number(&mut self) -> u64 {
        if self.below(8) == 0 {
            self.next()
        } else {
            self.below(5)
        }
    }

    pub fn slot(&mut self) -> Slot {
        if self.bool() { Slot::A } else { Slot::B }
    }

    pub fn status(&mut self) -> Status {
        match self.below(5) {
            0 => Status::Empty,
            1 => Status::Installing,
            2 => Status::Pending {
                tries: self.below(u64::from(MAX_TRIES) + 1) as u8,
            },
            3 => Status::Good,
            _ => Status::Bad,
        }
    }

    pub fn slot_state(&mut self) -> SlotState {
        SlotState {
            status: self.status(),
            version: self.number(),
            rollback_index: self.number(),
        }
    }

    pub fn state(&mut self) -> BootState {
        let kind = match self.below(5) {
            0 => BootKind::None,
            1 => BootKind::Normal,
            2 => BootKind::Trial,
            3 => BootKind::Rollback,
            _ => BootKind::Recovered,
        };
        let slot = if kind == BootKind::None {
            Slot::A
        } else {
            self.slot()
        };
        BootState {
            slots: [self.slot_state(), self.slot_state()],
            preferred: self.slot(),
            rollback_floor: self.number(),
            last_failed_version: self.number(),
            last_boot: LastBoot { kind, slot },
        }
    }
}
