//! Time: the TSC as a monotonic nanosecond clock, calibrated once against a reference timer.
//!
//! The reference is the first that works of the HPET (from the ACPI HPET table), the ACPI PM
//! timer (from the FADT) and the PIT's channel 2. [`now_ns`] scales the TSC with a fixed-point
//! multiplier and never returns less than any value it returned before, on any CPU: if TSCs
//! are offset between CPUs (or not invariant), time stands still for a moment rather than
//! going backwards.

mod hpet;
mod pit;
mod pmtimer;

use core::{
    fmt,
    sync::atomic::{AtomicU64, Ordering},
};

use spin::Once;

use self::{hpet::Hpet, pmtimer::PmTimer};

/// The timer the TSC was calibrated against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reference {
    /// The High Precision Event Timer.
    Hpet,
    /// The ACPI power-management timer (3.579545 MHz).
    PmTimer,
    /// The 8254 PIT's channel 2 (1.193182 MHz).
    Pit,
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Hpet => "HPET",
            Self::PmTimer => "ACPI PM timer",
            Self::Pit => "PIT",
        })
    }
}

/// The outcome of [`init`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Calibration {
    /// TSC ticks per second.
    pub tsc_hz: u64,
    /// What it was measured against.
    pub reference: Reference,
    /// Whether CPUID reports an invariant TSC (constant rate in every power state).
    pub invariant: bool,
    /// Reference timers that were tried first and failed, with the reason.
    pub fallbacks: [Option<(Reference, &'static str)>; 2],
}

/// Why the TSC could not be calibrated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// No reference timer gave a plausible measurement.
    NoReference,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoReference => write!(f, "no reference timer gave a plausible TSC rate"),
        }
    }
}

/// A reference timer that can be read (the PIT can only time one interval, see [`pit`]).
enum Counter {
    Hpet(Hpet),
    PmTimer(PmTimer),
}

impl Counter {
    /// The current count, and the mask it wraps at.
    fn read(&self) -> (u64, u64) {
        match self {
            Self::Hpet(h) => (h.counter(), h.mask()),
            Self::PmTimer(p) => (p.counter(), p.mask()),
        }
    }

    fn hz(&self) -> u64 {
        match self {
            Self::Hpet(h) => h.frequency(),
            Self::PmTimer(_) => pmtimer::FREQUENCY,
        }
    }

    fn kind(&self) -> Reference {
        match self {
            Self::Hpet(_) => Reference::Hpet,
            Self::PmTimer(_) => Reference::PmTimer,
        }
    }
}

static CALIBRATION: Once<Calibration> = Once::new();
static REFERENCE: Once<Counter> = Once::new();
/// TSC value that is time 0.
static TSC_BASE: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds per TSC tick, as a 32.32 fixed-point number (0 until calibrated).
static NS_PER_TICK: AtomicU64 = AtomicU64::new(0);
/// The largest value [`now_ns`] has returned.
static LAST_NS: AtomicU64 = AtomicU64::new(0);

/// The plausible TSC range: 100 MHz to 20 GHz.
const TSC_HZ_RANGE: core::ops::RangeInclusive<u64> = 100_000_000..=20_000_000_000;
/// Length of one calibration window.
const WINDOW_NS: u64 = 10_000_000;
const ROUNDS: usize = 3;

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC exists on every x86-64 CPU and only reads the counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Whether CPUID reports an invariant TSC (leaf 0x8000_0007, EDX bit 8).
pub fn tsc_invariant() -> bool {
    let max = core::arch::x86_64::__cpuid(0x8000_0000).eax;
    max >= 0x8000_0007 && core::arch::x86_64::__cpuid(0x8000_0007).edx & (1 << 8) != 0
}

/// Measures the TSC over `WINDOW_NS` of `counter`; returns TSC ticks per second.
fn measure(counter: &Counter) -> Option<u64> {
    let hz = counter.hz();
    let window = hz / (1_000_000_000 / WINDOW_NS);
    let (start, mask) = counter.read();
    let tsc_start = rdtsc();
    // Bound the wait by TSC ticks too (20 GHz for 100 ms), in case the counter is stuck.
    let limit = tsc_start + 2_000_000_000;
    loop {
        let (now, _) = counter.read();
        let tsc = rdtsc();
        let elapsed = now.wrapping_sub(start) & mask;
        if elapsed >= window {
            return u64::try_from(
                u128::from(tsc.wrapping_sub(tsc_start)) * u128::from(hz) / u128::from(elapsed),
            )
            .ok();
        }
        if tsc > limit {
            return None;
        }
        core::hint::spin_loop();
    }
}

/// The median of `ROUNDS` measurements, if it is plausible.
fn calibrate_with(measure_once: impl Fn() -> Option<u64>) -> Result<u64, &'static str> {
    let mut samples = [0u64; ROUNDS];
    for sample in &mut samples {
        *sample = measure_once().ok_or("the counter did not advance")?;
    }
    samples.sort_unstable();
    let median = samples[ROUNDS / 2];
    if TSC_HZ_RANGE.contains(&median) {
        Ok(median)
    } else {
        Err("implausible TSC rate")
    }
}

/// Calibrates the TSC against the best reference timer the ACPI tables offer (call after
/// `acpi::init`; without ACPI only the PIT is tried), and starts the clock: it counts from
/// kernel entry (the entry stub's TSC reading), so log timestamps are time since boot.
pub(crate) fn init() -> Result<Calibration, Error> {
    if let Some(calibration) = CALIBRATION.get() {
        return Ok(*calibration);
    }
    let platform = crate::acpi::platform();
    let mut fallbacks = [None; 2];
    let mut failed = 0;
    let mut note = |reference, why| {
        if let Some(slot) = fallbacks.get_mut(failed) {
            *slot = Some((reference, why));
        }
        failed += 1;
    };
    let mut found = None;
    if let Some(desc) = platform.and_then(|p| p.hpet) {
        match Hpet::new(&desc) {
            Ok(hpet) => {
                let counter = Counter::Hpet(hpet);
                match calibrate_with(|| measure(&counter)) {
                    Ok(hz) => found = Some((hz, counter)),
                    Err(why) => note(Reference::Hpet, why),
                }
            }
            Err(why) => note(Reference::Hpet, why),
        }
    }
    if found.is_none()
        && let Some((port, wide)) = platform.and_then(|p| p.fadt).and_then(|f| f.pm_timer)
    {
        let counter = Counter::PmTimer(PmTimer::new(port, wide));
        match calibrate_with(|| measure(&counter)) {
            Ok(hz) => found = Some((hz, counter)),
            Err(why) => note(Reference::PmTimer, why),
        }
    }
    let (tsc_hz, reference) = match found {
        Some((hz, counter)) => {
            let kind = counter.kind();
            REFERENCE.call_once(|| counter);
            (hz, kind)
        }
        None => (
            calibrate_with(pit::measure_tsc).map_err(|_| Error::NoReference)?,
            Reference::Pit,
        ),
    };
    let ns_per_tick = ((1_000_000_000u128 << 32) / u128::from(tsc_hz)) as u64;
    // Count from kernel entry when the entry stub recorded the TSC (it always does; the
    // fallback only guards against a TSC that went backwards).
    let now = rdtsc();
    let entry = crate::entry::entry_state().tsc;
    let base = if entry != 0 && entry <= now {
        entry
    } else {
        now
    };
    TSC_BASE.store(base, Ordering::Relaxed);
    NS_PER_TICK.store(ns_per_tick, Ordering::Release);
    let calibration = Calibration {
        tsc_hz,
        reference,
        invariant: tsc_invariant(),
        fallbacks,
    };
    Ok(*CALIBRATION.call_once(|| calibration))
}

/// The calibration, once [`init`] succeeded.
pub fn calibration() -> Option<Calibration> {
    CALIBRATION.get().copied()
}

/// Whether the clock runs (it reads 0 until [`init`] succeeds).
pub fn calibrated() -> bool {
    NS_PER_TICK.load(Ordering::Acquire) != 0
}

/// Nanoseconds since kernel entry (0 until [`init`] has run); never less than a value returned
/// before, on any CPU.
pub fn now_ns() -> u64 {
    let per_tick = NS_PER_TICK.load(Ordering::Acquire);
    if per_tick == 0 {
        return 0;
    }
    // A CPU whose TSC lags the one that set the base sees a "negative" delta: clamp to 0.
    let delta = rdtsc().saturating_sub(TSC_BASE.load(Ordering::Relaxed));
    let ns = ((u128::from(delta) * u128::from(per_tick)) >> 32) as u64;
    // An atomic read-modify-write always sees the latest value, so this is monotonic across
    // CPUs even with relaxed ordering.
    LAST_NS.fetch_max(ns, Ordering::Relaxed).max(ns)
}

/// Spins for at least `ns` nanoseconds (roughly, before the clock is calibrated).
pub fn delay_ns(ns: u64) {
    let per_tick = NS_PER_TICK.load(Ordering::Acquire);
    if per_tick == 0 {
        // Uncalibrated: a PAUSE takes at least a few nanoseconds on any CPU.
        for _ in 0..ns {
            core::hint::spin_loop();
        }
        return;
    }
    let ticks = ((u128::from(ns) << 32) / u128::from(per_tick)) as u64;
    let start = rdtsc();
    while rdtsc().wrapping_sub(start) < ticks {
        core::hint::spin_loop();
    }
}

/// Times `ms` milliseconds on the reference timer and on [`now_ns`]; returns both durations
/// in nanoseconds (reference, clock). `None` when the reference cannot be re-read (the PIT,
/// or no calibration).
pub fn cross_check(ms: u64) -> Option<(u64, u64)> {
    let counter = REFERENCE.get()?;
    if !calibrated() {
        return None;
    }
    let hz = counter.hz();
    let wanted = hz * ms / 1000;
    let (start, mask) = counter.read();
    let clock_start = now_ns();
    let deadline = clock_start + ms * 10 * 1_000_000;
    loop {
        let (now, _) = counter.read();
        let clock = now_ns();
        let elapsed = now.wrapping_sub(start) & mask;
        if elapsed >= wanted {
            let reference_ns = u128::from(elapsed) * 1_000_000_000 / u128::from(hz);
            return Some((reference_ns as u64, clock - clock_start));
        }
        if clock > deadline {
            return None;
        }
        core::hint::spin_loop();
    }
}
