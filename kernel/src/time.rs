//! Kernel time: the monotonic clock, the per-CPU timer tick, and wall-clock time.
//!
//! The monotonic clock is hal's calibrated TSC ([`hal::time::now_ns`]). Every CPU runs its
//! local APIC timer periodically at [`TICK_HZ`] and counts its ticks in [`ticks`]. Wall-clock
//! time is the loader's date-at-boot (or the CMOS RTC) plus the monotonic time since.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hal::{percpu::PreemptGuard, trap::TrapFrame};

/// Timer interrupts per second on each CPU.
pub const TICK_HZ: u32 = 100;

hal::cpu_local! {
    /// Timer ticks each CPU has taken.
    static TICKS: AtomicU64 = AtomicU64::new(0);
}
/// Unix time (seconds) at monotonic time 0, if known.
static EPOCH_AT_ZERO: AtomicU64 = AtomicU64::new(0);
static HAVE_WALL_CLOCK: AtomicBool = AtomicBool::new(false);

/// Reports the clock's calibration (done by `hal::init`) and sets the wall clock. Failures
/// degrade, they do not stop the boot.
pub fn init(
    boot: &hal::boot::Boot,
    calibration: &Result<hal::time::Calibration, hal::time::Error>,
) {
    match calibration {
        Ok(c) => {
            for (reference, why) in c.fallbacks.iter().flatten() {
                log::warn!("time: could not calibrate against the {reference}: {why}");
            }
            log::info!(
                "time: TSC {}.{:03} MHz (calibrated against the {}), {}",
                c.tsc_hz / 1_000_000,
                c.tsc_hz / 1_000 % 1_000,
                c.reference,
                if c.invariant {
                    "invariant"
                } else {
                    "not reported invariant"
                }
            );
            if !c.invariant {
                log::warn!(
                    "time: the CPU does not promise a constant TSC rate; the clock stays \
                     monotonic but may drift if the CPU changes frequency"
                );
            }
        }
        Err(error) => log::warn!("time: {error}; the monotonic clock stands still at 0"),
    }
    init_wall_clock(boot);
}

/// The loader's date at boot (Unix seconds), if it gave one.
static LOADER_DATE: AtomicU64 = AtomicU64::new(0);

fn init_wall_clock(boot: &hal::boot::Boot) {
    let loader_date = boot
        .responses()
        .date_at_boot
        .map(|d| d.timestamp().as_secs());
    LOADER_DATE.store(loader_date.unwrap_or(0), Ordering::Relaxed);
    let (seconds, source) = if let Some(date) = loader_date {
        (date, "loader")
    } else {
        let century = hal::acpi::platform()
            .and_then(|p| p.fadt)
            .map_or(0, |f| f.century_register);
        match hal::rtc::read(century) {
            Some(date) => (unix_seconds(&date), "RTC"),
            None => {
                log::warn!("time: no date from the loader and the RTC is unreadable");
                return;
            }
        }
    };
    let since_zero = hal::time::now_ns() / 1_000_000_000;
    EPOCH_AT_ZERO.store(seconds.saturating_sub(since_zero), Ordering::Relaxed);
    HAVE_WALL_CLOCK.store(true, Ordering::Release);
    let (y, mo, d, h, mi, s) = civil_from_unix(seconds);
    log::info!("time: {y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC (from the {source})");
}

/// Nanoseconds since the clock started; never goes backwards, on any CPU.
pub fn now_ns() -> u64 {
    hal::time::now_ns()
}

/// Nanoseconds since 1970-01-01 UTC (0-based at boot if the wall clock is unknown).
pub fn unix_time_ns() -> u64 {
    EPOCH_AT_ZERO.load(Ordering::Relaxed) * 1_000_000_000 + now_ns()
}

/// Seconds since 1970-01-01 UTC, if the wall clock is known.
pub fn unix_time() -> Option<u64> {
    HAVE_WALL_CLOCK
        .load(Ordering::Acquire)
        .then(|| EPOCH_AT_ZERO.load(Ordering::Relaxed) + now_ns() / 1_000_000_000)
}

/// Timer ticks CPU `cpu` has taken.
pub fn ticks(cpu: usize) -> u64 {
    TICKS.for_cpu(cpu).map_or(0, |t| t.load(Ordering::Relaxed))
}

/// The timer interrupt handler (every CPU).
pub fn on_tick(_frame: &TrapFrame) {
    let pinned = PreemptGuard::new();
    TICKS.get(&pinned).fetch_add(1, Ordering::Relaxed);
    if pinned.cpu() == 0 {
        crate::input::poll_if_needed();
    }
    crate::sched::on_tick();
}

/// Starts this CPU's periodic tick; returns false if the APIC timer is not calibrated.
pub fn start_tick() -> bool {
    hal::apic::timer_periodic(TICK_HZ)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Seconds since 1970 of an RTC date (dates before 1970 read as 0).
pub fn unix_seconds(date: &hal::rtc::DateTime) -> u64 {
    let days = days_from_civil(
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    let seconds = days * 86_400
        + i64::from(date.hour) * 3_600
        + i64::from(date.minute) * 60
        + i64::from(date.second);
    u64::try_from(seconds).unwrap_or(0)
}

/// The calendar date and time of day of a Unix time: (year, month, day, hour, minute, second).
pub fn civil_from_unix(seconds: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (seconds / 86_400) as i64 + 719_468;
    let rest = seconds % 86_400;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (rest / 3_600) as u32,
        (rest / 60 % 60) as u32,
        (rest % 60) as u32,
    )
}

/// Tests of the clock, the tick and the calendar.
#[cfg(feature = "tests")]
pub mod tests {
    use core::sync::atomic::Ordering;

    use super::{civil_from_unix, ticks};
    use crate::{
        check,
        ktest::{TestResult, ktest},
    };

    /// A million reads of the clock never go backwards, and the clock advances.
    #[ktest("time-monotonic")]
    pub fn monotonic() -> TestResult {
        let first = super::now_ns();
        let mut previous = first;
        for i in 0..1_000_000u32 {
            let now = super::now_ns();
            check!(
                now >= previous,
                "read {i} went back from {previous} to {now}"
            );
            previous = now;
        }
        check!(previous > first, "the clock stood still at {first} ns");
        Ok(())
    }

    /// The TSC rate is plausible, and 50 ms on the reference timer are 50 ms on the clock
    /// (within 2%).
    #[ktest("time-tsc-calibrated")]
    pub fn tsc_calibrated() -> TestResult {
        let Some(c) = hal::time::calibration() else {
            check!(false, "the TSC was not calibrated");
            return Ok(());
        };
        check!(
            (100_000_000..=20_000_000_000).contains(&c.tsc_hz),
            "implausible TSC rate {} Hz",
            c.tsc_hz
        );
        if let Some((reference, clock)) = hal::time::cross_check(50) {
            let error = reference.abs_diff(clock);
            check!(
                error * 50 <= reference,
                "{reference} ns on the {} read as {clock} ns on the clock",
                c.reference
            );
        }
        Ok(())
    }

    /// Timer interrupts arrive on this CPU.
    #[ktest("timer-tick-this-cpu")]
    pub fn tick_this_cpu() -> TestResult {
        let cpu = hal::percpu::current_index();
        let before = ticks(cpu);
        let arrived = crate::irq::with_interrupts(|| {
            crate::irq::wait_until(1_000_000_000, || ticks(cpu) >= before + 3)
        });
        check!(
            arrived,
            "CPU {cpu}: ticks went {before} -> {} in 1 s",
            ticks(cpu)
        );
        Ok(())
    }

    /// A one-shot timer fires exactly once, after roughly the time asked for; the periodic
    /// tick resumes afterwards.
    #[ktest("timer-oneshot")]
    pub fn oneshot() -> TestResult {
        let cpu = hal::percpu::current_index();
        hal::apic::timer_stop();
        // Stopping the timer does not withdraw a tick it already raised: if the test before
        // this one kept interrupts off for longer than a tick period, that tick waits in the
        // local APIC and would be counted as the one-shot. Let it arrive first.
        crate::irq::with_interrupts(|| crate::irq::wait_until(1_000_000, || false));
        let before = ticks(cpu);
        let start = super::now_ns();
        check!(
            hal::apic::timer_oneshot_ns(5_000_000),
            "the APIC timer is not calibrated"
        );
        let fired = crate::irq::with_interrupts(|| {
            let fired = crate::irq::wait_until(1_000_000_000, || ticks(cpu) > before);
            let elapsed = super::now_ns() - start;
            // Then nothing more for 30 ms.
            crate::irq::wait_until(30_000_000, || false);
            fired.then_some(elapsed)
        });
        let after = ticks(cpu);
        super::start_tick();
        let Some(elapsed) = fired else {
            check!(false, "the one-shot timer never fired");
            return Ok(());
        };
        check!(
            after == before + 1,
            "one-shot fired {} times",
            after - before
        );
        check!(
            (4_000_000..500_000_000).contains(&elapsed),
            "5 ms one-shot fired after {elapsed} ns"
        );
        Ok(())
    }

    /// Timer interrupts arrive on every online CPU.
    #[ktest("timer-tick-every-cpu")]
    pub fn tick_every_cpu() -> TestResult {
        let online = (0..hal::percpu::MAX_CPUS).filter(|&c| hal::percpu::is_online(c));
        let mut before = [0u64; hal::percpu::MAX_CPUS];
        for cpu in online.clone() {
            before[cpu] = ticks(cpu);
        }
        let all = crate::irq::with_interrupts(|| {
            crate::irq::wait_until(2_000_000_000, || {
                online.clone().all(|cpu| ticks(cpu) >= before[cpu] + 3)
            })
        });
        for cpu in online {
            check!(
                all || ticks(cpu) >= before[cpu] + 3,
                "CPU {cpu}: ticks went {} -> {} in 2 s",
                before[cpu],
                ticks(cpu)
            );
        }
        Ok(())
    }

    /// Unix time <-> calendar conversion at known points, and the wall clock is plausible.
    #[ktest("time-calendar")]
    pub fn calendar() -> TestResult {
        check!(
            civil_from_unix(0) == (1970, 1, 1, 0, 0, 0),
            "{:?}",
            civil_from_unix(0)
        );
        // 2000-02-29 12:34:56 (a leap day in a century leap year).
        check!(
            civil_from_unix(951_827_696) == (2000, 2, 29, 12, 34, 56),
            "{:?}",
            civil_from_unix(951_827_696)
        );
        let date = hal::rtc::DateTime {
            year: 2038,
            month: 1,
            day: 19,
            hour: 3,
            minute: 14,
            second: 8,
        };
        check!(
            super::unix_seconds(&date) == 1 << 31,
            "2038-01-19 03:14:08 -> {}",
            super::unix_seconds(&date)
        );
        if let Some(now) = super::unix_time() {
            // After 2024-01-01 and before 2200.
            check!(
                (1_704_067_200..7_258_118_400).contains(&now),
                "implausible wall clock {now}"
            );
        }
        Ok(())
    }

    /// The CMOS RTC reads a plausible date that agrees with the loader's date-at-boot.
    #[ktest("time-rtc")]
    pub fn rtc_reads() -> TestResult {
        let century = hal::acpi::platform()
            .and_then(|p| p.fadt)
            .map_or(0, |f| f.century_register);
        let Some(date) = hal::rtc::read(century) else {
            check!(false, "the RTC did not give a valid date");
            return Ok(());
        };
        let rtc = super::unix_seconds(&date);
        check!(rtc >= 1_704_067_200, "RTC date {date:?} is before 2024");
        let boot = super::LOADER_DATE.load(Ordering::Relaxed);
        if boot != 0 {
            let uptime = super::now_ns() / 1_000_000_000;
            // The RTC read now; the loader read it before the clock started.
            check!(
                rtc + 60 >= boot && rtc <= boot + uptime + 600,
                "RTC {rtc} vs loader {boot} (+{uptime} s)"
            );
        }
        Ok(())
    }
}
