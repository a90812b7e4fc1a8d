//! The CMOS real-time clock: the wall-clock time when the loader gave none.
//!
//! The RTC ticks once a second and may be read mid-update, so [`read`] waits for the
//! update-in-progress flag to clear and reads until two consecutive reads agree.

use crate::{port::Port8, sync::IrqMutex};

const INDEX: u16 = 0x70;
const DATA: u16 = 0x71;
const SECONDS: u8 = 0x00;
const MINUTES: u8 = 0x02;
const HOURS: u8 = 0x04;
const DAY: u8 = 0x07;
const MONTH: u8 = 0x08;
const YEAR: u8 = 0x09;
const STATUS_A: u8 = 0x0a;
const STATUS_B: u8 = 0x0b;
/// Status A: an update is in progress.
const UPDATING: u8 = 1 << 7;
/// Status B: values are binary (else BCD).
const BINARY: u8 = 1 << 2;
/// Status B: 24-hour mode (else 12-hour with bit 7 of the hour meaning PM).
const HOURS_24: u8 = 1 << 1;

/// A calendar date and time of day, as the RTC keeps it (usually UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    /// Full year, e.g. 2026.
    pub year: u16,
    /// 1..=12.
    pub month: u8,
    /// 1..=31.
    pub day: u8,
    /// 0..=23.
    pub hour: u8,
    /// 0..=59.
    pub minute: u8,
    /// 0..=59.
    pub second: u8,
}

/// The CMOS index/data port pair (index then data must not be split).
struct Cmos {
    index: Port8,
    data: Port8,
}

impl Cmos {
    fn read(&mut self, register: u8) -> u8 {
        // Bit 7 of the index would disable NMIs: keep it clear.
        self.index.write(register & 0x7f);
        self.data.read()
    }

    fn raw(&mut self) -> [u8; 6] {
        [SECONDS, MINUTES, HOURS, DAY, MONTH, YEAR].map(|r| self.read(r))
    }
}

// SAFETY: 0x70/0x71 are the CMOS index and data ports of every PC; hal owns them here alone,
// and reading clock registers has no side effects.
static CMOS: IrqMutex<Cmos> = IrqMutex::new(unsafe {
    Cmos {
        index: Port8::new(INDEX),
        data: Port8::new(DATA),
    }
});

fn from_bcd(value: u8) -> u8 {
    (value >> 4) * 10 + (value & 0x0f)
}

/// Reads the RTC. `century_register` is the FADT's CMOS century index (0 if none: the
/// 21st century is assumed). `None` if the clock never settles or reads nonsense.
pub fn read(century_register: u8) -> Option<DateTime> {
    let mut cmos = CMOS.lock();
    let mut previous = None;
    for _ in 0..8 {
        let mut settled = false;
        for _ in 0..1_000_000 {
            if cmos.read(STATUS_A) & UPDATING == 0 {
                settled = true;
                break;
            }
            core::hint::spin_loop();
        }
        if !settled {
            return None;
        }
        let raw = cmos.raw();
        let century = (century_register != 0).then(|| cmos.read(century_register));
        if previous == Some((raw, century)) {
            let status_b = cmos.read(STATUS_B);
            drop(cmos);
            return decode(raw, century, status_b);
        }
        previous = Some((raw, century));
    }
    None
}

fn decode(raw: [u8; 6], century: Option<u8>, status_b: u8) -> Option<DateTime> {
    let convert = |v: u8| {
        if status_b & BINARY != 0 {
            v
        } else {
            from_bcd(v)
        }
    };
    let [second, minute, hour_raw, day, month, year] = raw;
    let pm = status_b & HOURS_24 == 0 && hour_raw & 0x80 != 0;
    let mut hour = convert(hour_raw & 0x7f);
    if status_b & HOURS_24 == 0 {
        hour %= 12;
        if pm {
            hour += 12;
        }
    }
    let century = century.map_or(20, convert);
    let date = DateTime {
        year: u16::from(century) * 100 + u16::from(convert(year)),
        month: convert(month),
        day: convert(day),
        hour,
        minute: convert(minute),
        second: convert(second),
    };
    let valid = (1..=12).contains(&date.month)
        && (1..=31).contains(&date.day)
        && date.hour < 24
        && date.minute < 60
        && date.second < 60
        && (1970..2200).contains(&date.year);
    valid.then_some(date)
}
