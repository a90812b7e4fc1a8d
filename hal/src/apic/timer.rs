//! The local APIC timer: a per-CPU down-counter that raises [`vectors::TIMER`] when it reaches
//! zero, once (one-shot) or repeatedly (periodic).
//!
//! Its input clock is not architecturally known, so [`calibrate_timer`] measures it once
//! against the calibrated TSC (every CPU's APIC timer runs from the same bus clock).

use core::sync::atomic::{AtomicU64, Ordering};

use super::{LVT_MASKED, lapic, reg};
use crate::trap::vectors;

/// Divide configuration value for "divide by 16".
const DIVIDE_BY_16: u32 = 0b0011;
/// LVT timer mode: periodic (one-shot is 0).
const PERIODIC: u32 = 1 << 17;
/// How long the calibration measures.
const CALIBRATION_NS: u64 = 20_000_000;

/// Counter decrements per second (after the divide-by-16), 0 until calibrated.
static FREQUENCY: AtomicU64 = AtomicU64::new(0);

/// Measures the APIC timer's rate against the TSC (call after [`crate::time::init`], with
/// this CPU's APIC enabled). Returns the rate in counter ticks per second.
pub(crate) fn calibrate_timer() -> Option<u64> {
    let lapic = lapic()?;
    if !crate::time::calibrated() {
        return None;
    }
    lapic.write(reg::LVT_TIMER, LVT_MASKED | u32::from(vectors::TIMER));
    lapic.write(reg::TIMER_DIVIDE, DIVIDE_BY_16);
    let start = crate::time::now_ns();
    lapic.write(reg::TIMER_INITIAL, u32::MAX);
    crate::time::delay_ns(CALIBRATION_NS);
    let remaining = lapic.read(reg::TIMER_CURRENT);
    let elapsed = crate::time::now_ns().saturating_sub(start).max(1);
    lapic.write(reg::TIMER_INITIAL, 0);
    let counted = u64::from(u32::MAX - remaining);
    let hz = u64::try_from(u128::from(counted) * 1_000_000_000 / u128::from(elapsed)).ok()?;
    if hz == 0 {
        return None;
    }
    FREQUENCY.store(hz, Ordering::Relaxed);
    Some(hz)
}

/// The calibrated timer rate in ticks per second (after the divider), if known.
pub fn timer_frequency() -> Option<u64> {
    match FREQUENCY.load(Ordering::Relaxed) {
        0 => None,
        hz => Some(hz),
    }
}

/// Converts nanoseconds to timer ticks, at least 1 and at most `u32::MAX`.
fn ticks_for(ns: u64) -> Option<u32> {
    let hz = timer_frequency()?;
    let ticks = u128::from(ns) * u128::from(hz) / 1_000_000_000;
    Some(u32::try_from(ticks).unwrap_or(u32::MAX).max(1))
}

/// Starts this CPU's timer raising [`vectors::TIMER`] `hz` times per second. Returns false
/// if the timer is not calibrated.
pub fn timer_periodic(hz: u32) -> bool {
    let (Some(lapic), Some(ticks)) = (lapic(), ticks_for(1_000_000_000 / u64::from(hz.max(1))))
    else {
        return false;
    };
    lapic.write(reg::TIMER_DIVIDE, DIVIDE_BY_16);
    lapic.write(reg::LVT_TIMER, PERIODIC | u32::from(vectors::TIMER));
    lapic.write(reg::TIMER_INITIAL, ticks);
    true
}

/// Arms this CPU's timer to raise [`vectors::TIMER`] once, `ns` nanoseconds from now
/// (rounded to the timer's resolution; long delays are capped at the counter's range).
/// Returns false if the timer is not calibrated.
pub fn timer_oneshot_ns(ns: u64) -> bool {
    let (Some(lapic), Some(ticks)) = (lapic(), ticks_for(ns)) else {
        return false;
    };
    lapic.write(reg::TIMER_DIVIDE, DIVIDE_BY_16);
    lapic.write(reg::LVT_TIMER, u32::from(vectors::TIMER));
    lapic.write(reg::TIMER_INITIAL, ticks);
    true
}

/// Nanoseconds until this CPU's timer next fires (0 if stopped or not calibrated).
pub fn timer_remaining_ns() -> u64 {
    let (Some(lapic), Some(hz)) = (lapic(), timer_frequency()) else {
        return 0;
    };
    let ticks = u64::from(lapic.read(reg::TIMER_CURRENT));
    (u128::from(ticks) * 1_000_000_000 / u128::from(hz)) as u64
}

/// Stops this CPU's timer.
pub fn timer_stop() {
    if let Some(lapic) = lapic() {
        lapic.write(reg::LVT_TIMER, LVT_MASKED | u32::from(vectors::TIMER));
        lapic.write(reg::TIMER_INITIAL, 0);
    }
}
