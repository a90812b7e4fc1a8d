//! The boot state for user space: `/proc/evergreen/boot`, and marking the running slot good.
//!
//! The loader decides what boots and writes the boot state before it does; a release on
//! trial then has to say it is healthy, or its tries run out and the loader rolls back. The
//! kernel does not decide health: a user program (the update agent, or an init script) does,
//! and says so by writing `good` to `/proc/evergreen/boot`. Reading the file gives the record
//! as it is on the disk now.
//!
//! Marking good reads the `EG_STATE` partition of the boot disk, applies `libs/update`'s
//! mark-good transition (the slot becomes good, the rollback floor rises to its rollback
//! index) and writes the copy that does not hold the current state, then flushes — the same
//! commit rule as the loader's, so a torn write leaves the trial state, which is safe. When
//! the record already says good, nothing is written. The slot and version come from the
//! loader's command line ([`crate::bootslot::running`]): a record naming another version in
//! that slot than the one running is refused, never overwritten.
//!
//! The watchdog our loader arms before booting a slot ([`hal::watchdog`]) is fed here, by a
//! task of its own every [`FEED_INTERVAL_NS`]: as long as the scheduler runs tasks the system
//! counts as alive. A kernel that hangs — interrupts off, or spinning where nothing else gets
//! to run — stops feeding, the chipset resets the machine, and the loader counts the try.

use alloc::{format, string::String, vec, vec::Vec};

use ::update::state::{self, AREA_LEN, BootState, ReadResult, SlotState, Status};
use linux_raw_sys::errno as e;
use spin::Mutex;

use crate::block::{self, Extent};

/// The serial number the runner gives the boot disk; other disks are looked at after it.
const BOOT_DISK_SERIAL: &str = "evergreen-boot";

/// Held across a mark-good's read, write and flush, so two writers cannot both pick the
/// same copy.
static MARKING: Mutex<()> = Mutex::new(());

/// How often the watchdog is fed (its timeout is the loader's, about 19 s).
const FEED_INTERVAL_NS: u64 = 1_000_000_000;

/// Adds `/proc/evergreen/boot`.
pub fn init() {
    crate::fs::proc::register("evergreen/boot", render, Some(take));
}

/// Starts feeding the chipset watchdog if the loader armed it (needs the PCI scan).
pub fn start_watchdog() {
    let Some(mut tco) = hal::watchdog::Tco::armed() else {
        log::debug!("watchdog: not armed");
        return;
    };
    tco.feed();
    let feeder = move |me: alloc::sync::Arc<crate::sched::Task>| loop {
        tco.feed();
        crate::sched::sleep_until(&me, crate::time::now_ns() + FEED_INTERVAL_NS);
        me.clear_interrupt();
    };
    match crate::sched::spawn(feeder) {
        Ok(_) => log::info!("watchdog: TCO armed by the loader; fed while tasks run"),
        Err(e) => log::error!("watchdog: cannot start the feeding task: {e:?}"),
    }
}

/// Why the state could not be read or written.
#[derive(Debug)]
enum Error {
    /// No disk has an `EG_STATE` partition.
    NoStatePartition,
    /// The kernel was not booted from a slot.
    NotBootedFromSlot,
    /// A read, write or flush failed (the errno of the block layer).
    Disk(u32),
    /// The record does not allow the change.
    Refused(::update::Error),
}

impl Error {
    fn errno(&self) -> u32 {
        match self {
            Self::NoStatePartition | Self::NotBootedFromSlot => e::ENODEV,
            Self::Disk(errno) => *errno,
            Self::Refused(_) => e::EPERM,
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoStatePartition => f.write_str("no disk has an EG_STATE partition"),
            Self::NotBootedFromSlot => f.write_str("the kernel was not booted from a slot"),
            Self::Disk(errno) => write!(f, "disk error (errno {errno})"),
            Self::Refused(why) => write!(f, "{why}"),
        }
    }
}

/// The `EG_STATE` partition: on the boot disk if it has one, else on the first disk that
/// does.
fn state_partition() -> Result<Extent, Error> {
    let disks = block::disks();
    let mut order: Vec<usize> = (0..disks.len()).collect();
    order.sort_by_key(|&i| disks[i].serial != BOOT_DISK_SERIAL);
    for index in order {
        let disk = &disks[index];
        let Some(part) = disk
            .partitions
            .iter()
            .find(|p| p.type_guid == state::PARTITION_TYPE)
        else {
            continue;
        };
        let (Ok(index), Ok(number)) = (u8::try_from(index), u8::try_from(part.number)) else {
            continue;
        };
        if let Some(extent) = block::extent(index, number) {
            return Ok(extent);
        }
    }
    Err(Error::NoStatePartition)
}

/// Both copies of the record as they are on the disk.
fn read(extent: &Extent) -> Result<ReadResult, Error> {
    let mut area = vec![0u8; AREA_LEN];
    let got = extent.read_at(0, &mut area).map_err(Error::Disk)?;
    Ok(state::read_area(&area[..got]))
}

/// Marks the running slot good: the copy written and its sequence, or `None` when the record
/// already said so.
fn mark_good() -> Result<Option<(BootState, usize, u32)>, Error> {
    let (slot, version) = crate::bootslot::running().ok_or(Error::NotBootedFromSlot)?;
    let extent = state_partition()?;
    let _writing = MARKING.lock();
    let current = read(&extent)?;
    let Some(write) = state::mark_good_write(&current, slot, version).map_err(Error::Refused)?
    else {
        return Ok(None);
    };
    extent
        .write_at(write.offset as u64, &write.bytes)
        .map_err(Error::Disk)?;
    extent.flush().map_err(Error::Disk)?;
    let (written, _) = state::decode_copy(&write.bytes).expect("a copy just encoded decodes");
    Ok(Some((written, write.copy, write.seq)))
}

/// A write to `/proc/evergreen/boot`: `good` (a trailing newline allowed) marks the running
/// slot good; anything else is `EINVAL`.
fn take(data: &[u8]) -> Result<(), u32> {
    if data.strip_suffix(b"\n").unwrap_or(data) != b"good" {
        return Err(e::EINVAL);
    }
    match mark_good() {
        Ok(Some((written, copy, seq))) => {
            let (slot, version) = crate::bootslot::running().expect("checked by mark_good");
            log::info!(
                "update: slot {} (version {version}) marked good; rollback floor {}; state copy \
                 {copy}, sequence {seq}",
                slot.name(),
                written.rollback_floor
            );
            Ok(())
        }
        Ok(None) => {
            log::info!("update: the running slot is already good: nothing written");
            Ok(())
        }
        Err(why) => {
            log::warn!("update: not marked good: {why}");
            Err(why.errno())
        }
    }
}

/// The text of `/proc/evergreen/boot`: the slot booted and what the disk says about it and
/// the other slot, one `key: value` per line.
fn render() -> String {
    let Some((slot, version)) = crate::bootslot::running() else {
        return "slot: none\n".into();
    };
    let mut out = format!("slot: {}\nversion: {version}\n", slot.name());
    let current = state_partition().and_then(|extent| read(&extent));
    match current.as_ref().map(|r| r.current.as_ref()) {
        Ok(Some(c)) => {
            let here = c.state.slot(slot);
            let other = c.state.slot(slot.other());
            out.push_str(&format!(
                "status: {}\ntries: {}\nother: {}\nother_version: {}\nother_status: {}\n\
                 preferred: {}\nrollback_floor: {}\nlast_failed_version: {}\n",
                status(here),
                tries(here),
                slot.other().name(),
                other.version,
                status(other),
                c.state.preferred.name(),
                c.state.rollback_floor,
                c.state.last_failed_version,
            ));
        }
        Ok(None) => out.push_str("status: unknown (no valid copy of the boot state)\n"),
        Err(why) => out.push_str(&format!("status: unknown ({why})\n")),
    }
    out
}

fn status(slot: &SlotState) -> &'static str {
    match slot.status {
        Status::Empty => "empty",
        Status::Installing => "installing",
        Status::Pending { .. } => "pending",
        Status::Good => "good",
        Status::Bad => "bad",
    }
}

/// Boots left for a pending slot, 0 for any other.
fn tries(slot: &SlotState) -> u8 {
    match slot.status {
        Status::Pending { tries } => tries,
        _ => 0,
    }
}
