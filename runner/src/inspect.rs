//! `cargo run -- inspect IMAGE`: the update partitions of a disk image, decoded for a person.
//!
//! It finds `EG_STATE`, `EG_SLOT_A` and `EG_SLOT_B` by name in the GPT, decodes both copies
//! of the boot-state record, checks each slot's release against the key, and says what the
//! loader's rules ([`update::choice`]) would boot next — the same code the loader runs, so
//! a test can check a disk from the host after QEMU wrote to it.

use std::{fmt::Write as _, fs, path::Path};

use anyhow::{Context, Result};
use gpt::{GptConfig, disk::LogicalBlockSize};
use update::{
    choice::{self, Verified},
    manifest::PublicKey,
    state::{self, BootKind, BootState, ReadResult, Slot, SlotState, Status},
};

use crate::{
    image::{SLOT_NAMES, STATE_NAME},
    release::{SlotContents, read_slot},
};

/// Everything `inspect` found.
#[derive(Debug)]
pub struct DiskReport {
    /// What the state partition holds.
    pub state: ReadResult,
    /// What each slot holds.
    pub slots: [SlotContents; 2],
}

impl DiskReport {
    /// Reads the update partitions of the disk image at `path`, checking releases with `key`.
    pub fn read(path: &Path, key: &PublicKey) -> Result<DiskReport> {
        let disk = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let gpt = GptConfig::new()
            .writable(false)
            .logical_block_size(LogicalBlockSize::Lb512)
            .open(path)
            .with_context(|| format!("{}: no valid GPT", path.display()))?;
        let partition = |name: &str| -> Result<&[u8]> {
            let p = gpt
                .partitions()
                .values()
                .find(|p| p.is_used() && p.name == name)
                .with_context(|| {
                    format!(
                        "{}: no partition {name} (an image from before A/B slots?)",
                        path.display()
                    )
                })?;
            let start = p.bytes_start(LogicalBlockSize::Lb512)?;
            let len = p.bytes_len(LogicalBlockSize::Lb512)?;
            let start = usize::try_from(start)?;
            let end = start + usize::try_from(len)?;
            disk.get(start..end)
                .with_context(|| format!("{name} runs past the end of the image"))
        };
        let state_bytes = partition(STATE_NAME)?;
        let area = &state_bytes[..state_bytes.len().min(state::AREA_LEN)];
        let state = state::read_area(area);
        let slots = [
            read_slot(partition(SLOT_NAMES[0])?, key),
            read_slot(partition(SLOT_NAMES[1])?, key),
        ];
        Ok(DiskReport { state, slots })
    }

    /// What each slot's verification gives the slot choice.
    pub fn verified(&self) -> [Option<Verified>; 2] {
        [0, 1].map(|i| {
            self.slots[i].verified().map(|m| Verified {
                version: m.version,
                rollback_index: m.rollback_index,
                boot_tries: m.boot_tries,
            })
        })
    }

    /// The report as text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_state(&mut out);
        for slot in Slot::ALL {
            render_slot(&mut out, slot, &self.slots[slot.index()]);
        }
        let current = self.state.current.map(|c| c.state);
        let line = match choice::choose(current.as_ref(), self.verified()) {
            Ok(d) => {
                let tries = d
                    .tries_left
                    .map_or(String::new(), |t| format!(", {t} tries left after it"));
                let write = if d.write.is_some() {
                    "writes the state first"
                } else {
                    "writes nothing"
                };
                format!(
                    "slot {}, version {}, {}{tries}; {write}",
                    d.slot.name(),
                    d.version,
                    kind_name(d.kind)
                )
            }
            Err(e) => e.to_string(),
        };
        let _ = writeln!(out, "next boot (the loader's rules): {line}");
        out
    }

    fn render_state(&self, out: &mut String) {
        let _ = writeln!(out, "boot state ({STATE_NAME}):");
        for (i, copy) in self.state.copies.iter().enumerate() {
            let text = match copy {
                Ok((_, seq)) => format!("valid, sequence {seq}"),
                Err(e) => format!("invalid ({e})"),
            };
            let _ = writeln!(out, "  copy {i}: {text}");
        }
        let Some(current) = self.state.current else {
            let _ = writeln!(
                out,
                "  current: none — both copies invalid; the loader boots the newest slot that \
                 verifies and rewrites the state"
            );
            return;
        };
        let s: &BootState = &current.state;
        let _ = writeln!(
            out,
            "  current: copy {}, sequence {}",
            current.copy, current.seq
        );
        for slot in Slot::ALL {
            let _ = writeln!(
                out,
                "  slot {}: {}",
                slot.name(),
                describe_slot(s.slot(slot))
            );
        }
        let _ = writeln!(out, "  preferred slot: {}", s.preferred.name());
        let _ = writeln!(out, "  rollback floor: {}", s.rollback_floor);
        let failed = match s.last_failed_version {
            0 => "none".to_owned(),
            v => v.to_string(),
        };
        let _ = writeln!(out, "  last failed version: {failed}");
        let last = match s.last_boot.kind {
            BootKind::None => "none yet".to_owned(),
            kind => format!("slot {}, {}", s.last_boot.slot.name(), kind_name(kind)),
        };
        let _ = writeln!(out, "  last boot: {last}");
    }
}

fn describe_slot(slot: &SlotState) -> String {
    let release = format!(
        "version {}, rollback index {}",
        slot.version, slot.rollback_index
    );
    match slot.status {
        Status::Empty => "empty".to_owned(),
        Status::Installing => "installing (not committed)".to_owned(),
        Status::Pending { tries } => format!("pending ({tries} tries left), {release}"),
        Status::Good => format!("good, {release}"),
        Status::Bad => format!("bad, {release}"),
    }
}

fn kind_name(kind: BootKind) -> &'static str {
    match kind {
        BootKind::None => "none",
        BootKind::Normal => "normal",
        BootKind::Trial => "trial",
        BootKind::Rollback => "rollback",
        BootKind::Recovered => "recovered (state rebuilt)",
    }
}

fn render_slot(out: &mut String, slot: Slot, contents: &SlotContents) {
    let name = SLOT_NAMES[slot.index()];
    match contents {
        SlotContents::Empty => {
            let _ = writeln!(out, "slot {} ({name}): empty", slot.name());
        }
        SlotContents::Unreadable(why) => {
            let _ = writeln!(out, "slot {} ({name}): unreadable: {why}", slot.name());
        }
        SlotContents::BadManifest(why) => {
            let _ = writeln!(
                out,
                "slot {} ({name}): manifest refused: {why}",
                slot.name()
            );
        }
        SlotContents::Release {
            manifest: m,
            payloads,
        } => {
            let _ = writeln!(
                out,
                "slot {} ({name}): release {} version {}, rollback index {}, {} boot tries, \
                 created {}; signature valid",
                slot.name(),
                m.product.as_str(),
                m.version,
                m.rollback_index,
                m.boot_tries,
                utc(m.created)
            );
            for (p, (_, check)) in m.payloads().zip(payloads) {
                let hash: String = p.sha256[..8].iter().map(|b| format!("{b:02x}")).collect();
                let verdict = match check {
                    Ok(()) => "ok".to_owned(),
                    Err(e) => format!("FAILED: {e}"),
                };
                let _ = writeln!(
                    out,
                    "  {:<10} {:>10} bytes  sha256 {hash}…  {verdict}",
                    p.name.as_str(),
                    p.size
                );
            }
        }
    }
}

/// `secs` since the Unix epoch as a UTC date and time (the civil-from-days conversion of
/// the proleptic Gregorian calendar, after H. Hinnant's "chrono-Compatible Low-Level Date
/// Algorithms").
fn utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2) + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let t = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creation_times_read_as_utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(4_102_444_799), "2099-12-31 23:59:59 UTC");
    }
    use crate::{
        image::{self, ImageSpec},
        release::{ReleaseInfo, ReleaseKey, build_slot_image},
        rootfs,
    };

    fn spec() -> ImageSpec {
        ImageSpec::new(
            b"MZ app".to_vec(),
            "timeout: 0\n".into(),
            b"\x7fELF kernel".to_vec(),
        )
        .with_file(format!("boot/{}", rootfs::MODULE_NAME), vec![0x42; 300_000])
    }

    #[test]
    fn a_written_image_inspects_as_the_factory_layout() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("disk.img");
        let spec = spec().with_factory_release().expect("release built");
        image::write_image(&spec, &path).expect("written");
        let key = ReleaseKey::development().expect("dev key").public();
        let report = DiskReport::read(&path, &key).expect("inspected");
        let current = report.state.current.expect("a valid state");
        assert_eq!((current.copy, current.seq), (0, 1));
        assert_eq!(current.state.slot(Slot::A), &SlotState::good(1, 1));
        assert_eq!(current.state.slot(Slot::B), &SlotState::EMPTY);
        assert!(report.state.copies[1].is_err());
        let m = report.slots[0].verified().expect("slot A verifies");
        assert_eq!((m.version, m.rollback_index), (1, 1));
        assert!(matches!(report.slots[1], SlotContents::Empty));
        let text = report.render();
        for want in [
            "slot A: good, version 1, rollback index 1",
            "slot B: empty",
            "preferred slot: A",
            "slot A (EG_SLOT_A): release evergreen version 1",
            "initramfs",
            "slot B (EG_SLOT_B): empty",
            "next boot (the loader's rules): slot A, version 1, normal",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
    }

    #[test]
    fn inspect_sees_both_slots_and_a_broken_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("disk.img");
        let key = ReleaseKey::development().expect("dev key");
        let mut spec = spec().with_factory_release().expect("release built");
        let info = ReleaseInfo {
            version: 2,
            rollback_index: 1,
            tries: 3,
            created: 5,
        };
        let v2 = build_slot_image(&info, b"kernel two", &[7; 1000], &key.key).expect("v2");
        spec.slots[1] = Some(v2);
        let layout = image::write_image(&spec, &path).expect("written");
        let report = DiskReport::read(&path, &key.public()).expect("inspected");
        assert_eq!(report.slots[1].verified().map(|m| m.version), Some(2));
        let state = report.state.current.expect("valid").state;
        assert_eq!(state.slot(Slot::B), &SlotState::good(2, 1));
        // A byte flipped in slot B's kernel and both state copies zeroed: the report shows the
        // failed payload and the fallback.
        let mut disk = fs::read(&path).expect("read back");
        let b = usize::try_from(layout.slot_offsets[1]).expect("offset");
        let at = b + disk[b..]
            .windows(10)
            .position(|w| w == b"kernel two")
            .expect("stored");
        disk[at] ^= 0xff;
        let s = usize::try_from(layout.state_offset).expect("offset");
        disk[s..s + state::AREA_LEN].fill(0);
        fs::write(&path, &disk).expect("written");
        let report = DiskReport::read(&path, &key.public()).expect("inspected");
        assert!(report.slots[1].verified().is_none());
        let text = report.render();
        assert!(text.contains("FAILED"), "{text}");
        assert!(text.contains("both copies invalid"), "{text}");
        assert!(
            text.contains("next boot (the loader's rules): slot A, version 1, recovered"),
            "{text}"
        );
    }

    #[test]
    fn an_image_without_update_partitions_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("junk.img");
        fs::write(&path, vec![0u8; 1 << 20]).expect("written");
        let key = ReleaseKey::development().expect("dev key").public();
        let err = DiskReport::read(&path, &key).expect_err("no GPT");
        assert!(format!("{err:#}").contains("no valid GPT"), "{err:#}");
    }
}
