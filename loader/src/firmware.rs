//! Facts from the firmware, gathered while boot services run: ACPI RSDP, SMBIOS entry points,
//! the EFI system table, the RTC time and the TSC rate.

use core::time::Duration;

use uefi::{boot, runtime, system, table::cfg};

use crate::cpu;

/// Firmware tables and time, all physical addresses.
#[derive(Debug, Default)]
pub struct Firmware {
    /// ACPI RSDP (ACPI 2.0 table preferred over 1.0).
    pub rsdp: Option<u64>,
    /// SMBIOS 2.x (32-bit) entry point.
    pub smbios32: Option<u64>,
    /// SMBIOS 3.x (64-bit) entry point.
    pub smbios64: Option<u64>,
    /// The EFI system table.
    pub system_table: Option<u64>,
    /// RTC time at boot, UNIX seconds.
    pub unix_time: Option<i64>,
    /// Measured TSC frequency in Hz (for delays after ExitBootServices).
    pub tsc_hz: u64,
}

impl Firmware {
    /// Gathers everything; absent items stay `None`.
    pub fn gather() -> Self {
        let mut fw = Self::default();
        system::with_config_table(|entries| {
            let find = |guid| {
                entries
                    .iter()
                    .find(|e| e.guid == guid)
                    .map(|e| e.address as u64)
                    .filter(|&a| a != 0)
            };
            fw.rsdp = find(cfg::ConfigTableEntry::ACPI2_GUID)
                .or_else(|| find(cfg::ConfigTableEntry::ACPI_GUID));
            fw.smbios32 = find(cfg::ConfigTableEntry::SMBIOS_GUID);
            fw.smbios64 = find(cfg::ConfigTableEntry::SMBIOS3_GUID);
        });
        fw.system_table = uefi::table::system_table_raw().map(|p| p.as_ptr() as u64);
        fw.unix_time = runtime::get_time().ok().and_then(|t| {
            unix_seconds(
                i64::from(t.year()),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
            )
        });
        fw.tsc_hz = measure_tsc();
        fw
    }
}

/// TSC ticks per second, measured over a 10 ms firmware stall.
pub fn measure_tsc() -> u64 {
    let start = cpu::rdtsc();
    boot::stall(Duration::from_millis(10));
    cpu::rdtsc().wrapping_sub(start) * 100
}

/// Converts a calendar date and time (taken as UTC, as Limine does) to UNIX seconds.
pub fn unix_seconds(year: i64, month: u8, day: u8, hour: u8, min: u8, sec: u8) -> Option<i64> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    // Days from 1970-01-01 to the date, proleptic Gregorian (the civil-from-days inverse).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + i64::from(hour) * 3600 + i64::from(min) * 60 + i64::from(sec))
}

/// Opens protocol `P` on `handle` without taking it away from the driver that manages it (a
/// GET_PROTOCOL open): the graphics console keeps working while we look at the GOP.
pub fn shared_protocol<P: uefi::proto::ProtocolPointer + ?Sized>(
    handle: uefi::Handle,
) -> uefi::Result<boot::ScopedProtocol<P>> {
    let params = boot::OpenProtocolParams {
        handle,
        agent: boot::image_handle(),
        controller: None,
    };
    // SAFETY: GET_PROTOCOL opens are not tracked by the firmware, so the protocol could be
    // uninstalled under us; the loader only uses such protocols briefly, before
    // ExitBootServices, and connects or disconnects no drivers in between.
    unsafe { boot::open_protocol::<P>(params, boot::OpenProtocolAttributes::GetProtocol) }
}
