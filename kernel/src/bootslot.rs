//! Which update slot this kernel was booted from, as the loader says on the command line.
//!
//! With A/B update slots the loader decides what boots (and writes the boot state before it
//! does), then tells the kernel on its command line: `evergreen.slot=A|B`, and with it
//! `evergreen.version=N`, `evergreen.state=good|pending|rollback|recovered` and, for a trial,
//! `evergreen.tries=T` (the tries left after this one). The kernel only reports it, so the
//! log says what runs without reading the disk; [`running`] gives the slot and version to
//! [`crate::update`], which reads and marks the state partition. It runs before the kernel
//! heap exists, so it allocates nothing. A malformed word is reported and ignored, never
//! fatal.

use core::fmt;

/// The prefix of every option this module owns.
const PREFIX: &str = "evergreen.";

/// What the loader said about the boot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct BootSlot<'a> {
    slot: Option<&'a str>,
    version: Option<u64>,
    state: Option<&'a str>,
    tries: Option<u64>,
    /// `evergreen.test=panic`: a release built to fail, to see the rollback.
    panic: bool,
    /// `evergreen.test=hang`: a release built to hang, to see the watchdog roll it back.
    hang: bool,
}

/// Whether `word` is one of the loader's `evergreen.*` options (so it is not "unknown").
pub fn is_option(word: &str) -> bool {
    word.starts_with(PREFIX)
}

/// Logs `boot: slot B, version 2, pending (1 tries left)`, or nothing when the kernel was
/// not booted from a slot (the ESP or real Limine).
pub fn log(cmdline: &str) {
    let (info, bad) = parse(cmdline);
    if let Some(word) = bad {
        log::warn!("boot: ignoring malformed option '{word}'");
    }
    if let Some(slot) = info.slot {
        log::info!("{}", Line(slot, &info));
    }
}

/// The slot this kernel was booted from and the version the loader said it holds; `None`
/// when the kernel was not booted from a slot (or the loader's words are malformed).
pub fn running() -> Option<(update::state::Slot, u64)> {
    let (info, _) = parse(hal::boot::cmdline());
    let slot = match info.slot? {
        "A" => update::state::Slot::A,
        _ => update::state::Slot::B,
    };
    Some((slot, info.version?))
}

/// Whether this boot is a trial (the loader said `evergreen.state=pending`): a panic must
/// then reset the machine, so the loader counts the try and in the end rolls back.
pub fn is_trial() -> bool {
    parse(hal::boot::cmdline()).0.state == Some("pending")
}

/// Whether the release was built to panic at boot (`evergreen.test=panic`, which
/// `release --panic-at-boot` puts in its signed command line).
pub fn panic_at_boot() -> bool {
    parse(hal::boot::cmdline()).0.panic
}

/// Whether the release was built to hang at boot (`evergreen.test=hang`, from `release
/// --hang-at-boot`).
pub fn hang_at_boot() -> bool {
    parse(hal::boot::cmdline()).0.hang
}

/// The loader's options in `cmdline` (before any ` -- `), and the first malformed one.
fn parse(cmdline: &str) -> (BootSlot<'_>, Option<&str>) {
    let kernel_part = cmdline.split(" -- ").next().unwrap_or_default();
    let mut info = BootSlot::default();
    let mut bad = None;
    for word in kernel_part.split_ascii_whitespace() {
        let Some((key, value)) = word.strip_prefix(PREFIX).and_then(|w| w.split_once('=')) else {
            continue;
        };
        let ok = match key {
            "slot" if matches!(value, "A" | "B") => {
                info.slot = Some(value);
                true
            }
            "version" => value.parse().map(|v| info.version = Some(v)).is_ok(),
            "state" if matches!(value, "good" | "pending" | "rollback" | "recovered") => {
                info.state = Some(value);
                true
            }
            "tries" => value.parse().map(|t| info.tries = Some(t)).is_ok(),
            "test" if value == "panic" => {
                info.panic = true;
                true
            }
            "test" if value == "hang" => {
                info.hang = true;
                true
            }
            _ => false,
        };
        if !ok && bad.is_none() {
            bad = Some(word);
        }
    }
    (info, bad)
}

/// The log line (`Display`, so nothing is allocated: this runs before the kernel heap).
struct Line<'a>(&'a str, &'a BootSlot<'a>);

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Line(slot, info) = self;
        write!(f, "boot: slot {slot}")?;
        if let Some(version) = info.version {
            write!(f, ", version {version}")?;
        }
        if let Some(state) = info.state {
            write!(f, ", {state}")?;
        }
        if let Some(tries) = info.tries {
            write!(f, " ({tries} tries left)")?;
        }
        Ok(())
    }
}
