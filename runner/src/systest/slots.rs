//! The update-slot cases: our loader boots the slot `libs/update` chooses, with boot counting
//! and rollback, and the disk tells what it wrote.
//!
//! Each case builds one disk image (slot A holds release v1, slot B what the scenario needs),
//! may overwrite the boot-state area from the host, then boots the same image once or a few
//! times. After every boot the state partition is decoded with the `inspect` code — the host
//! side of the record, independent of the loader's writing of it — and compared with what the
//! rules say that boot must have written; the serial log must show the loader's choice and the
//! kernel's `boot: slot …` line. The slot's initramfs holds no `/sbin/init`, so the kernel runs
//! `test=boot` and exits. Boots cost firmware time, so each case makes only the boots its
//! story needs, and the cases run in parallel like any others.

use std::{
    fs,
    io::{Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, anyhow, bail, ensure};
use gpt::{GptConfig, disk::LogicalBlockSize};
use update::state::{
    self, BootKind, BootState, COPY_STRIDE, LastBoot, RECORD_LEN, Slot, SlotState, Status,
};

use super::{LOADER_ERROR, Suite, stop_unless_exited};
use crate::{
    image::{ImageSpec, STATE_NAME},
    initramfs::Initramfs,
    inspect::DiskReport,
    payload,
    qemu::{GuestExit, RunOptions, Serial},
    release::{self, ReleaseInfo, ReleaseKey},
    rootfs::{self, Busybox},
    watch::{self, Outcome},
};

/// The story a slot case tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// A factory image boots slot A v1; a second boot writes nothing.
    Factory,
    /// Slot B holds v2 pending with 2 tries: two trials, each counted on disk before it
    /// boots, then the rollback to A with B marked bad.
    Trial,
    /// Slot B's kernel has a flipped byte: B is marked bad and A boots.
    BadPayload,
    /// Slot A is bad and slot B empty: a clear loader error, no hang.
    NothingBootable,
    /// The newer state copy is torn (garbage after its first bytes): the older one is used
    /// and the next write replaces the torn copy.
    TornState,
    /// Slot B holds v2 pending, whose init marks it good through `/proc/evergreen/boot`: B is
    /// good on disk after its first trial and the floor rises to its rollback index; the
    /// second boot is a normal one of B, and the kernel writes nothing.
    MarkGood,
    /// Slot B holds v2 built to panic at boot, pending with 2 tries: each trial panics and
    /// resets (`panic=reboot` on a trial), counted on disk; then A boots and B is bad.
    PanicTrial,
    /// Slot B holds v2 built to hang at boot, pending with 1 try: the loader's watchdog
    /// resets the hung machine, the try is counted; then A boots and B is bad.
    HangTrial,
}

/// The version in slot A and in slot B (when the scenario fills it).
const V1: u64 = 1;
const V2: u64 = 2;
/// Boot tries of the trial release.
const TRIES: u8 = 2;
/// Boot tries of the release that hangs (each costs the watchdog's whole timeout).
const HANG_TRIES: u8 = 1;
/// Rollback index of the release that marks itself good (above the factory's 1).
const MARK_GOOD_INDEX: u64 = 2;

/// Where slot B's initramfs in [`Scenario::MarkGood`] keeps its script.
const MARK_GOOD_SCRIPT: &str = "/etc/mark-good.sh";
/// The command line of [`Scenario::MarkGood`]: the script as init, through busybox's shell
/// (slot A, never booted there, has no busybox).
const MARK_GOOD_CMDLINE: &str = "test=boot init=/bin/busybox -- sh /etc/mark-good.sh";
/// Slot B's init script in [`Scenario::MarkGood`]: the state before and after it says
/// "good", and a write of anything else must be refused; on the trial it then outlives the
/// loader's watchdog timeout (about 19 s), which the kernel must keep feeding.
const MARK_GOOD_INIT: &str = "\
mount -t proc proc /proc\n\
echo '--- before'; cat /proc/evergreen/boot\n\
echo good > /proc/evergreen/boot || echo \"mark-good failed: $?\"\n\
echo '--- after'; cat /proc/evergreen/boot\n\
echo bad > /proc/evergreen/boot 2>/dev/null && echo 'writing bad was accepted'\n\
grep -q evergreen.state=pending /proc/cmdline && sleep 21 && echo 'still fed after 21 s'\n\
true\n";

/// The image of a scenario: our loader, `test=boot` on the ESP, v1 in slot A.
pub fn spec(ctx: &Suite, scenario: Scenario) -> Result<ImageSpec> {
    let cmdline = if scenario == Scenario::MarkGood {
        MARK_GOOD_CMDLINE
    } else {
        "test=boot"
    };
    let mut spec = payload::standard_image(&ctx.loader, ctx.kernel.clone(), cmdline, &[])?;
    spec.config = format!("evergreen_slots: yes\n{}", spec.config);
    let key = ReleaseKey::development()?;
    let slot = |version: u64| {
        release::build_slot_image(
            &ReleaseInfo::new(version, 1, TRIES),
            &ctx.kernel,
            &tiny_initramfs(version)?,
            &key.key,
        )
    };
    spec.slots[0] = Some(slot(V1)?);
    if scenario == Scenario::MarkGood {
        let busybox = Busybox::from_host()?.ok_or_else(|| anyhow!(Busybox::missing_message()))?;
        let mut tree = rootfs::standard_tree(Vec::new(), Some(&busybox))?;
        tree.file(MARK_GOOD_SCRIPT, MARK_GOOD_INIT.as_bytes().to_vec(), 0o755)?;
        spec.slots[1] = Some(release::build_slot_image(
            &ReleaseInfo::new(V2, MARK_GOOD_INDEX, TRIES),
            &ctx.kernel,
            &tree.to_cpio(),
            &key.key,
        )?);
    }
    let failing = match scenario {
        Scenario::PanicTrial => Some((release::PANIC_AT_BOOT, TRIES)),
        Scenario::HangTrial => Some((release::HANG_AT_BOOT, HANG_TRIES)),
        _ => None,
    };
    if let Some((word, tries)) = failing {
        spec.slots[1] = Some(release::build_slot_image_with_cmdline(
            &ReleaseInfo::new(V2, 1, tries),
            &ctx.kernel,
            &tiny_initramfs(V2)?,
            word,
            &key.key,
        )?);
    }
    if matches!(scenario, Scenario::Trial | Scenario::BadPayload) {
        let mut b = slot(V2)?;
        if scenario == Scenario::BadPayload {
            flip_kernel_byte(&mut b.image, &ctx.kernel)?;
        }
        spec.slots[1] = Some(b);
    }
    Ok(spec)
}

/// An initramfs without `/sbin/init` (the kernel then finishes `test=boot`), told apart by
/// version.
fn tiny_initramfs(version: u64) -> Result<Vec<u8>> {
    let mut tree = Initramfs::new();
    tree.file(
        "/etc/evergreen-release",
        format!("{version}\n").into_bytes(),
        0o644,
    )?;
    Ok(tree.to_cpio())
}

/// Flips one byte of the kernel file inside a slot image (found by a window of its bytes).
fn flip_kernel_byte(image: &mut [u8], kernel: &[u8]) -> Result<()> {
    let window = kernel
        .get(4096..4160)
        .context("the kernel is too small to corrupt")?;
    let at = image
        .windows(window.len())
        .position(|w| w == window)
        .context("the kernel's bytes are not in the slot image")?;
    image[at + 10] ^= 0x40;
    Ok(())
}

/// Runs the scenario on the image at `opts.image`; `log` gets every boot's serial output.
pub fn run(ctx: &Suite, opts: &RunOptions, log: &Path, scenario: Scenario) -> Result<String> {
    let case = Case { ctx, opts, log };
    let result = match scenario {
        Scenario::Factory => factory(&case),
        Scenario::Trial => trial(&case),
        Scenario::BadPayload => bad_payload(&case),
        Scenario::NothingBootable => nothing_bootable(&case),
        Scenario::TornState => torn_state(&case),
        Scenario::MarkGood => mark_good(&case),
        Scenario::PanicTrial => panic_trial(&case),
        Scenario::HangTrial => hang_trial(&case),
    };
    case.gather_logs()?;
    result
}

fn factory(case: &Case) -> Result<String> {
    let before = case.state()?;
    let lines = case.boot_ok(1)?;
    expect_line(&lines, "boot: slot A, version 1, good")?;
    let after = case.state()?;
    let mut want = before;
    want.last_boot = LastBoot {
        kind: BootKind::Normal,
        slot: Slot::A,
    };
    ensure!(
        after == want,
        "boot 1: the state should only note the normal boot of A: {after:?}"
    );
    // The steady state: the same boot again writes nothing at all.
    let area = case.area()?;
    let lines = case.boot_ok(2)?;
    expect_line(&lines, "boot: slot A, version 1, good")?;
    expect_line(&lines, "state unchanged")?;
    ensure!(
        case.area()? == area,
        "boot 2: a normal boot of a good slot wrote the state area"
    );
    Ok(": A v1 booted, then booted again without a write".into())
}

fn trial_state() -> BootState {
    BootState {
        slots: [
            SlotState::good(V1, 1),
            SlotState {
                status: Status::Pending { tries: TRIES },
                version: V2,
                rollback_index: 1,
            },
        ],
        preferred: Slot::B,
        rollback_floor: 1,
        last_failed_version: 0,
        last_boot: LastBoot::NONE,
    }
}

/// The state after B failed (its tries or its check) and A booted as the rollback.
fn rolled_back() -> BootState {
    let mut want = trial_state();
    want.slots[1].status = Status::Bad;
    want.preferred = Slot::A;
    want.last_failed_version = V2;
    want.last_boot = LastBoot {
        kind: BootKind::Rollback,
        slot: Slot::A,
    };
    want
}

fn trial(case: &Case) -> Result<String> {
    case.set_area(&state::fresh_area(&trial_state()))?;
    let mut want = trial_state();
    for boot in 1..=u32::from(TRIES) {
        let left = TRIES - boot as u8;
        let lines = case.boot_ok(boot)?;
        expect_line(
            &lines,
            &format!("boot: slot B, version 2, pending ({left} tries left)"),
        )?;
        want.slots[1].status = Status::Pending { tries: left };
        want.last_boot = LastBoot {
            kind: BootKind::Trial,
            slot: Slot::B,
        };
        let got = case.state()?;
        ensure!(
            got == want,
            "boot {boot}: B's tries must be counted on disk: {got:?}"
        );
    }
    // Nothing marked B good: its tries are used up, so it becomes bad and A boots.
    let lines = case.boot_ok(u32::from(TRIES) + 1)?;
    expect_line(&lines, "boot: slot A, version 1, rollback")?;
    let got = case.state()?;
    ensure!(
        got == rolled_back(),
        "after the tries: B must be bad and A preferred: {got:?}"
    );
    Ok(format!(": B tried {TRIES} times, then rolled back to A"))
}

fn panic_trial(case: &Case) -> Result<String> {
    case.set_area(&state::fresh_area(&trial_state()))?;
    let mut want = trial_state();
    for boot in 1..=u32::from(TRIES) {
        let left = TRIES - boot as u8;
        let lines = case.boot_reset(boot)?;
        expect_line(
            &lines,
            &format!("boot: slot B, version 2, pending ({left} tries left)"),
        )?;
        expect_line(&lines, "KERNEL PANIC")?;
        expect_line(&lines, "evergreen.test=panic: this release panics at boot")?;
        want.slots[1].status = Status::Pending { tries: left };
        want.last_boot = LastBoot {
            kind: BootKind::Trial,
            slot: Slot::B,
        };
        let got = case.state()?;
        ensure!(
            got == want,
            "boot {boot}: the panicking trial must be counted on disk: {got:?}"
        );
    }
    let lines = case.boot_ok(u32::from(TRIES) + 1)?;
    expect_line(&lines, "boot: slot A, version 1, rollback")?;
    ensure!(
        !lines.iter().any(|l| l.contains("KERNEL PANIC")),
        "slot A panicked too"
    );
    let got = case.state()?;
    ensure!(
        got == rolled_back(),
        "after the panicking tries: B must be bad and A preferred: {got:?}"
    );
    Ok(format!(
        ": B panicked and reset {TRIES} times, then A booted and B is bad"
    ))
}

fn hang_trial(case: &Case) -> Result<String> {
    let mut want = trial_state();
    want.slots[1].status = Status::Pending { tries: HANG_TRIES };
    case.set_area(&state::fresh_area(&want))?;
    let (outcome, lines) = case.boot(1)?;
    expect_line(&lines, "watchdog: TCO armed")?;
    expect_line(&lines, "boot: slot B, version 2, pending (0 tries left)")?;
    expect_line(&lines, "evergreen.test=hang: this release hangs at boot")?;
    match outcome {
        Outcome::Exited(status) if GuestExit::from_status(status) == GuestExit::Quit => {}
        Outcome::Exited(status) => bail!(
            "boot 1: the watchdog's reset was due, but {}",
            GuestExit::from_status(status).describe()
        ),
        Outcome::TimedOut => bail!(
            "boot 1: the hung release was not reset within {} s: no watchdog",
            case.ctx.timeout.as_secs()
        ),
        Outcome::Matched(line) => bail!("boot 1: the loader failed: {line}"),
        Outcome::Interrupted => bail!("interrupted"),
    }
    ensure!(
        !lines.iter().any(|l| l.contains("KERNEL PANIC")),
        "the hang release panicked instead of hanging"
    );
    want.slots[1].status = Status::Pending { tries: 0 };
    want.last_boot = LastBoot {
        kind: BootKind::Trial,
        slot: Slot::B,
    };
    let got = case.state()?;
    ensure!(
        got == want,
        "boot 1: the hung trial must be counted on disk: {got:?}"
    );
    let lines = case.boot_ok(2)?;
    expect_line(&lines, "boot: slot A, version 1, rollback")?;
    let got = case.state()?;
    ensure!(
        got == rolled_back(),
        "after the hung try: B must be bad and A preferred: {got:?}"
    );
    Ok(": B hung, the watchdog reset it, then A booted and B is bad".into())
}

fn bad_payload(case: &Case) -> Result<String> {
    case.set_area(&state::fresh_area(&trial_state()))?;
    let lines = case.boot_ok(1)?;
    let reason = expect_line(&lines, "slots: slot B does not verify: kernel")?;
    expect_line(&lines, "boot: slot A, version 1, rollback")?;
    let got = case.state()?;
    ensure!(
        got == rolled_back(),
        "B must be marked bad and A preferred: {got:?}"
    );
    Ok(format!(": {}", reason.trim()))
}

fn nothing_bootable(case: &Case) -> Result<String> {
    let mut dead = BootState::factory(V1, 1);
    dead.slots[0].status = Status::Bad;
    case.set_area(&state::fresh_area(&dead))?;
    let area = case.area()?;
    let line = case.boot_error(1)?;
    ensure!(
        line.contains("nothing to boot: no slot can boot: slot A marked bad, slot B empty"),
        "the loader's error does not say why nothing boots: {line}"
    );
    ensure!(
        case.area()? == area,
        "the state changed although nothing booted"
    );
    Ok(format!(": {}", line.trim()))
}

fn torn_state(case: &Case) -> Result<String> {
    let old = BootState::factory(V1, 1);
    let mut area = state::fresh_area(&old);
    // A write of sequence 2 into copy 1 that stopped after 16 bytes.
    let mut newer = old;
    newer.preferred = Slot::B;
    let torn = state::encode_copy(&newer, 2);
    area[COPY_STRIDE..COPY_STRIDE + RECORD_LEN].fill(0xa5);
    area[COPY_STRIDE..COPY_STRIDE + 16].copy_from_slice(&torn[..16]);
    case.set_area(&area)?;
    let lines = case.boot_ok(1)?;
    expect_line(&lines, "slots: state copy 0 (sequence 1)")?;
    expect_line(&lines, "boot: slot A, version 1, good")?;
    let report = case.report()?;
    let current = report
        .state
        .current
        .ok_or_else(|| anyhow!("no valid state copy after the boot"))?;
    let mut want = old;
    want.last_boot = LastBoot {
        kind: BootKind::Normal,
        slot: Slot::A,
    };
    ensure!(
        current.copy == 1 && current.seq == 2 && current.state == want,
        "the write must replace the torn copy 1 with sequence 2: {current:?}"
    );
    ensure!(
        matches!(report.state.copies[0], Ok((s, 1)) if s == old),
        "copy 0 (the previous state) must be left alone: {:?}",
        report.state.copies[0]
    );
    Ok(": the torn copy was ignored and then replaced".into())
}

fn mark_good(case: &Case) -> Result<String> {
    let mut want = trial_state();
    want.slots[1].rollback_index = MARK_GOOD_INDEX;
    case.set_area(&state::fresh_area(&want))?;
    let lines = case.boot_ok(1)?;
    expect_line(&lines, "boot: slot B, version 2, pending (1 tries left)")?;
    // What user space read before and after its write.
    let text = lines.join("\n");
    for (what, needle) in [
        ("the trial", "--- before"),
        ("the trial", "status: pending"),
        ("the tries left", "tries: 1"),
        ("the other slot", "other: A"),
        ("the good slot", "--- after"),
        ("the good slot", "status: good"),
    ] {
        ensure!(
            text.contains(needle),
            "/proc/evergreen/boot did not show {what} ({needle:?})"
        );
    }
    ensure!(
        !text.contains("mark-good failed") && !text.contains("writing bad was accepted"),
        "writing /proc/evergreen/boot went wrong: {:?}",
        lines
            .iter()
            .filter(|l| l.contains("mark-good") || l.contains("bad was"))
            .collect::<Vec<_>>()
    );
    expect_line(
        &lines,
        "update: slot B (version 2) marked good; rollback floor 2",
    )?;
    want.slots[1].status = Status::Good;
    want.rollback_floor = MARK_GOOD_INDEX;
    want.last_boot = LastBoot {
        kind: BootKind::Trial,
        slot: Slot::B,
    };
    let report = case.report()?;
    let first = report
        .state
        .current
        .ok_or_else(|| anyhow!("no valid state copy after the mark-good boot"))?;
    // Sequence 1 was the host's, 2 the loader's count of the trial, 3 the kernel's mark.
    ensure!(
        first.state == want && first.seq == 3,
        "after the trial B must be good with the floor raised, written once by the kernel \
         (sequence 3): {first:?}"
    );
    // The next boot is B's first normal one: the loader notes it (one write), and marking
    // the slot good again writes nothing.
    let lines = case.boot_ok(2)?;
    expect_line(&lines, "boot: slot B, version 2, good")?;
    expect_line(
        &lines,
        "update: the running slot is already good: nothing written",
    )?;
    want.last_boot.kind = BootKind::Normal;
    let second = case
        .report()?
        .state
        .current
        .ok_or_else(|| anyhow!("no valid state copy after the second boot"))?;
    ensure!(
        second.state == want && second.seq == 4,
        "boot 2: only the loader's note of the normal boot (sequence 4) may be written: \
         {second:?}"
    );
    Ok(
        ": B marked good by its init (floor 1 -> 2), then booted normally without a kernel write"
            .into(),
    )
}

/// The line containing `want`, or an error quoting the loader's slot lines.
fn expect_line<'a>(lines: &'a [String], want: &str) -> Result<&'a String> {
    lines.iter().find(|l| l.contains(want)).ok_or_else(|| {
        let said: Vec<&str> = lines
            .iter()
            .filter(|l| l.contains("slots:") || l.contains("boot: slot"))
            .map(|l| l.trim())
            .collect();
        anyhow!("no line {want:?}; the loader and kernel said {said:?}")
    })
}

/// One case's image, options and log.
struct Case<'a> {
    ctx: &'a Suite,
    opts: &'a RunOptions,
    log: &'a Path,
}

impl Case<'_> {
    fn boot_log(&self, boot: u32) -> PathBuf {
        self.log.with_extension(format!("boot{boot}.log"))
    }

    /// Boots the image; the lines up to the loader's error or QEMU's exit.
    fn boot(&self, boot: u32) -> Result<(Outcome, Vec<String>)> {
        let log = self.boot_log(boot);
        fs::remove_file(&log).ok();
        let mut opts = self.opts.clone();
        opts.serial = Serial::File(log.clone());
        let mut running = self.ctx.qemu.spawn(&opts)?;
        let mut lines = Vec::new();
        let outcome = watch::watch(
            &mut running.child,
            Some(&log),
            Some(self.ctx.timeout),
            |line| {
                lines.push(line.to_owned());
                line.trim_start().starts_with(LOADER_ERROR)
            },
        );
        let outcome = stop_unless_exited(&mut running.child, outcome)?;
        Ok((outcome, lines))
    }

    /// A boot that must end with the kernel's `test=boot` success.
    fn boot_ok(&self, boot: u32) -> Result<Vec<String>> {
        let (outcome, lines) = self.boot(boot)?;
        match outcome {
            Outcome::Exited(status) => {
                let exit = GuestExit::from_status(status);
                ensure!(
                    exit == GuestExit::Success,
                    "boot {boot}: {}",
                    exit.describe()
                );
                Ok(lines)
            }
            Outcome::Matched(line) => bail!("boot {boot}: the loader failed: {line}"),
            Outcome::TimedOut => bail!(
                "boot {boot}: no exit within {} s (QEMU stopped)",
                self.ctx.timeout.as_secs()
            ),
            Outcome::Interrupted => bail!("interrupted"),
        }
    }

    /// A boot that must end in a reset (QEMU runs with `-no-reboot`, so it exits) after the
    /// kernel's `panic=reboot` line.
    fn boot_reset(&self, boot: u32) -> Result<Vec<String>> {
        let (outcome, lines) = self.boot(boot)?;
        match outcome {
            Outcome::Exited(status) => {
                let exit = GuestExit::from_status(status);
                ensure!(
                    exit == GuestExit::Quit,
                    "boot {boot}: a reset was due, but {}",
                    exit.describe()
                );
                expect_line(&lines, "panic: rebooting (panic=reboot)")?;
                Ok(lines)
            }
            Outcome::Matched(line) => bail!("boot {boot}: the loader failed: {line}"),
            Outcome::TimedOut => bail!(
                "boot {boot}: no reset within {} s (QEMU stopped)",
                self.ctx.timeout.as_secs()
            ),
            Outcome::Interrupted => bail!("interrupted"),
        }
    }

    /// A boot that must stop with a loader error (QEMU is then stopped); the error line.
    fn boot_error(&self, boot: u32) -> Result<String> {
        match self.boot(boot)?.0 {
            Outcome::Matched(line) => Ok(line),
            Outcome::Exited(status) => bail!(
                "boot {boot}: no `{LOADER_ERROR}` line before QEMU exited: {}",
                GuestExit::from_status(status).describe()
            ),
            Outcome::TimedOut => bail!(
                "boot {boot}: no `{LOADER_ERROR}` line within {} s: a hang",
                self.ctx.timeout.as_secs()
            ),
            Outcome::Interrupted => bail!("interrupted"),
        }
    }

    /// The disk as `inspect` decodes it.
    fn report(&self) -> Result<DiskReport> {
        DiskReport::read(&self.opts.image, &ReleaseKey::development()?.public())
    }

    /// The current boot state (a valid copy must exist).
    fn state(&self) -> Result<BootState> {
        self.report()?
            .state
            .current
            .map(|c| c.state)
            .ok_or_else(|| anyhow!("no valid copy of the boot state on the disk"))
    }

    /// Byte offset of `EG_STATE` in the image.
    fn state_offset(&self) -> Result<u64> {
        let gpt = GptConfig::new()
            .writable(false)
            .logical_block_size(LogicalBlockSize::Lb512)
            .open(&self.opts.image)
            .context("the case image has no valid GPT")?;
        let part = gpt
            .partitions()
            .values()
            .find(|p| p.is_used() && p.name == STATE_NAME)
            .context("the case image has no EG_STATE")?;
        Ok(part.bytes_start(LogicalBlockSize::Lb512)?)
    }

    /// The raw state area.
    fn area(&self) -> Result<Vec<u8>> {
        let disk = fs::read(&self.opts.image).context("reading the case image")?;
        let start = usize::try_from(self.state_offset()?)?;
        disk.get(start..start + state::AREA_LEN)
            .map(<[u8]>::to_vec)
            .context("the state area runs past the image")
    }

    /// Overwrites the state area, as a host tool (or a torn write) would.
    fn set_area(&self, area: &[u8]) -> Result<()> {
        let offset = self.state_offset()?;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .open(&self.opts.image)
            .context("opening the case image")?;
        file.seek(SeekFrom::Start(offset))?;
        file.write_all(area)?;
        file.sync_all()?;
        Ok(())
    }

    /// Puts every boot's serial output into the case's log, in order.
    fn gather_logs(&self) -> Result<()> {
        let mut all = String::new();
        for boot in 1.. {
            let Ok(text) = fs::read_to_string(self.boot_log(boot)) else {
                break;
            };
            all.push_str(&format!("===== boot {boot} =====\n{text}"));
            fs::remove_file(self.boot_log(boot)).ok();
        }
        fs::write(self.log, all).with_context(|| format!("writing {}", self.log.display()))
    }
}
