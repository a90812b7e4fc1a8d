//! The preemption guard: while a task holds one, its CPU does not leave it.
//!
//! Each CPU counts the guards its running task holds in its per-CPU block. The count goes
//! up and down with one `gs:`-relative `add`/`sub`, a single instruction an interrupt cannot
//! split, so taking a guard needs no lock and cannot race with a migration: once the count
//! is raised, the task is pinned. What honours it:
//!
//! - the kernel's scheduler checks [`preempt_count`] before it gives the CPU away on a
//!   timer tick, and defers that switch (to a later tick) while the count is not zero;
//! - hal's thread switch refuses (panics) on a CPU whose count is not zero: a task that
//!   blocks or yields under a guard would resume elsewhere with the guard still counted
//!   here, which is a kernel bug (Linux's "scheduling while atomic").
//!
//! Interrupts stay enabled under a [`PreemptGuard`]; an [`IrqGuard`] also disables them.

use core::{arch::asm, marker::PhantomData};

use super::{PREEMPT_COUNT_OFFSET, current_index, local};

/// Keeps the running task on this CPU until dropped (see the module doc). Not `Send`: it is
/// dropped on the CPU it was taken on. Guards nest.
#[must_use = "the task can migrate again as soon as the guard is dropped"]
pub struct PreemptGuard {
    cpu: u32,
    /// Not `Send` or `Sync`.
    _pinned: PhantomData<*const ()>,
}

impl PreemptGuard {
    /// Pins the running task to this CPU.
    #[inline]
    pub fn new() -> Self {
        raise();
        Self {
            cpu: current_index() as u32,
            _pinned: PhantomData,
        }
    }

    /// The CPU the task is pinned to.
    #[inline]
    pub fn cpu(&self) -> usize {
        self.cpu as usize
    }
}

impl Default for PreemptGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PreemptGuard {
    #[inline]
    fn drop(&mut self) {
        debug_assert_eq!(current_index(), self.cpu as usize, "a pinned task migrated");
        lower();
    }
}

impl local::sealed::Sealed for PreemptGuard {}

impl local::Pinned for PreemptGuard {
    fn cpu(&self) -> usize {
        PreemptGuard::cpu(self)
    }
}

/// Disables interrupts on this CPU until dropped (then restores the interrupt flag as it
/// was), and pins the task like a [`PreemptGuard`]. Not `Send`.
#[must_use = "interrupts are restored as soon as the guard is dropped"]
pub struct IrqGuard {
    were_enabled: bool,
    preempt: PreemptGuard,
}

impl IrqGuard {
    /// Disables interrupts and pins the running task to this CPU.
    pub fn new() -> Self {
        let were_enabled = crate::cpu::interrupts_enabled();
        crate::cpu::disable_interrupts();
        Self {
            were_enabled,
            preempt: PreemptGuard::new(),
        }
    }

    /// The CPU the task is pinned to.
    pub fn cpu(&self) -> usize {
        self.preempt.cpu()
    }
}

impl Default for IrqGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for IrqGuard {
    fn drop(&mut self) {
        // The preemption count drops with `self.preempt`, after the flag is restored: an
        // interrupt in between still sees the task pinned.
        if self.were_enabled {
            crate::cpu::enable_interrupts();
        }
    }
}

impl local::sealed::Sealed for IrqGuard {}

impl local::Pinned for IrqGuard {
    fn cpu(&self) -> usize {
        IrqGuard::cpu(self)
    }
}

/// How many guards the task running on this CPU holds (0: it may be preempted).
#[inline]
pub fn preempt_count() -> u32 {
    let count: u32;
    // SAFETY: the GS base points at this CPU's `PerCpu` block (module doc of `percpu`), whose
    // `preempt_count` field is a `u32` at this offset; only this CPU writes it.
    unsafe {
        asm!(
            "mov {count:e}, dword ptr gs:[{offset}]",
            count = out(reg) count,
            offset = const PREEMPT_COUNT_OFFSET,
            options(nostack, preserves_flags, readonly),
        );
    }
    count
}

fn raise() {
    // SAFETY: as in `preempt_count`; one instruction, so an interrupt on this CPU sees the
    // count before or after, never half-updated, and no other CPU writes it. Compiler
    // ordering: the asm may touch memory, so accesses after the guard are not moved before.
    unsafe {
        asm!(
            "add dword ptr gs:[{offset}], 1",
            offset = const PREEMPT_COUNT_OFFSET,
            options(nostack),
        );
    }
}

fn lower() {
    // SAFETY: as in `raise`; the count is above zero (a guard raised it on this CPU).
    unsafe {
        asm!(
            "sub dword ptr gs:[{offset}], 1",
            offset = const PREEMPT_COUNT_OFFSET,
            options(nostack),
        );
    }
}
