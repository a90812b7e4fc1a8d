//! CPU-local variables: one instance of a value per CPU.
//!
//! A [`CpuLocal<T>`] holds `MAX_CPUS` instances in a static array, each on its own cache line
//! ([`CacheAligned`]) so that CPUs updating their own counters never share a line. This CPU's
//! instance is the one at [`current_index`](super::current_index), which is one `gs:`-relative
//! load. Why an array rather than Linux's per-CPU linker section (copied once per CPU at
//! bring-up and reached through a per-CPU offset): the array needs no linker-script support,
//! no allocation while CPUs come up and no pointer arithmetic, so both ways in — this CPU's
//! instance and another CPU's by index — are plain bounds-checked indexing in safe code. Its
//! cost is static memory for all `MAX_CPUS` instances, which is small for what hal and the
//! kernel keep per CPU (counters, a run queue head, a slot for the active address space).
//!
//! **What a guard guarantees.** [`CpuLocal::get`] takes a [`Pinned`] guard and ties the
//! reference it returns to that guard's lifetime. A guard ([`PreemptGuard`](super::PreemptGuard)
//! or [`IrqGuard`](super::IrqGuard)) is not `Send`, it stops the timer tick from switching the
//! CPU to another task while it lives, and hal refuses to switch threads at all on a CPU
//! whose task holds one (it panics: a task that blocks under a guard is a kernel bug). So for
//! as long as safe code holds the reference, it runs on the CPU the instance belongs to.
//! Interrupt handlers on the same CPU may still run in between (under a `PreemptGuard`), so
//! instances are `Sync` types — atomics or interrupt-safe locks — and the guard is about
//! *which* instance, not about exclusive access.
//!
//! [`CpuLocal::for_cpu`] reaches any CPU's instance by index, for the few readers that
//! legitimately look at other CPUs: run-queue stealing, a TLB shootdown's scan, statistics.

use super::MAX_CPUS;

/// A value aligned (and padded) to a cache line, so neighbouring CPUs' instances never
/// share one.
#[repr(C, align(64))]
pub struct CacheAligned<T>(T);

impl<T> CacheAligned<T> {
    /// Wraps `value` (used by [`cpu_local!`](crate::cpu_local)).
    pub const fn new(value: T) -> Self {
        Self(value)
    }
}

/// A proof that the running task stays on this CPU while the value lives: a
/// [`PreemptGuard`](super::PreemptGuard) or an [`IrqGuard`](super::IrqGuard). Sealed: only hal
/// makes such proofs.
pub trait Pinned: sealed::Sealed {
    /// The CPU the task is pinned to.
    fn cpu(&self) -> usize;
}

pub(super) mod sealed {
    /// Keeps [`Pinned`](super::Pinned) implementations inside hal.
    pub trait Sealed {}
}

/// One `T` per CPU. Declare with [`cpu_local!`](crate::cpu_local).
pub struct CpuLocal<T> {
    slots: [CacheAligned<T>; MAX_CPUS],
}

impl<T: Sync> CpuLocal<T> {
    /// The instances, one per CPU (build them with [`cpu_local!`](crate::cpu_local)).
    pub const fn new(slots: [CacheAligned<T>; MAX_CPUS]) -> Self {
        Self { slots }
    }

    /// This CPU's instance, for as long as `guard` keeps the task on this CPU.
    #[inline]
    pub fn get<'a>(&'a self, guard: &'a impl Pinned) -> &'a T {
        &self.slots[guard.cpu() % MAX_CPUS].0
    }

    /// CPU `index`'s instance (`None` past [`MAX_CPUS`]), for code that looks at other CPUs.
    #[inline]
    pub fn for_cpu(&self, index: usize) -> Option<&T> {
        self.slots.get(index).map(|slot| &slot.0)
    }

    /// Every CPU's instance, with its index (all `MAX_CPUS` of them, online or not).
    pub fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.slots.iter().map(|slot| &slot.0).enumerate()
    }

    /// This CPU's instance without a guard, for hal code that runs with interrupts off by
    /// construction (trap handlers, the thread switch, the user-mode entry and exit), where
    /// nothing can move it to another CPU.
    #[inline]
    pub(crate) fn here(&self) -> &T {
        &self.slots[super::current_index() % MAX_CPUS].0
    }
}

/// Declares CPU-local statics: `cpu_local! { static NAME: Type = initialiser; }`, where the
/// initialiser is a constant expression evaluated once per CPU.
#[macro_export]
macro_rules! cpu_local {
    ($($(#[$attr:meta])* $vis:vis static $name:ident: $ty:ty = $init:expr;)+) => {
        $(
            $(#[$attr])*
            $vis static $name: $crate::percpu::CpuLocal<$ty> = $crate::percpu::CpuLocal::new(
                [const { $crate::percpu::CacheAligned::new($init) }; $crate::percpu::MAX_CPUS],
            );
        )+
    };
}
