//! The power cases: how a run ended, told from what QEMU reports rather than from what the
//! kernel printed.
//!
//! Under `-no-reboot` QEMU exits with status 0 after a power-off, a reset and a triple fault
//! alike, and a kernel that logs `power: switching off` may still do any of them. So each
//! power case starts QEMU paused, records its QMP events from the first instruction on, and
//! has it log CPU resets (`-d cpu_reset`); then it classifies the end:
//!
//! - ACPI S5 makes QEMU send `SHUTDOWN` with reason `guest-shutdown` (so does S4, which
//!   announces itself with `SUSPEND_DISK` first and is not a power-off).
//! - A reset (the FADT reset register, the keyboard controller) sends `SHUTDOWN` with reason
//!   `guest-reset` under `-no-reboot`, or `RESET` with that reason without it.
//! - A triple fault is reported exactly like a reset (QEMU's `SHUTDOWN_CAUSE_GUEST_RESET`).
//!   What tells it apart is the `Triple fault` line TCG writes to the CPU-reset log just
//!   before. That log only counts as evidence if it holds the `CPU Reset` dumps of power-on:
//!   a log QEMU never wrote must not pass for one without a triple fault.
//!
//! The `triple-fault-not-reset` case guards the verdicts themselves: a real triple-faulting
//! run must be classified as one, and both the power-off and the reset verdict must refuse it.

use std::{fs, path::Path, time::Duration};

use anyhow::{Context, Result, anyhow, bail, ensure};

use super::{LOADER_ERROR, Suite, check_kernel_log};
use crate::{
    qemu::{Accel, GuestExit, RunOptions},
    qmp::{Event, Qmp},
    watch::{self, Outcome},
};

/// How long QEMU may take to create its QMP socket.
const QMP_WAIT: Duration = Duration::from_secs(10);
/// The line TCG logs (with `-d cpu_reset`) when a CPU triple-faults.
const TRIPLE_FAULT: &str = "Triple fault";
/// The start of the line QEMU logs (with `-d cpu_reset`) before each CPU reset's register dump.
const CPU_RESET: &str = "CPU Reset (CPU ";

/// How a run ended, as far as the power cases care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ending {
    /// The guest switched the machine off (ACPI S5).
    PowerOff,
    /// The guest reset the machine, and not by a triple fault.
    Reset,
    /// A CPU triple-faulted, which reset the machine.
    TripleFault,
}

/// A power case: the kernel command line, what its log must hold and how the run must end.
/// The machine has 2 CPUs and 512 MiB.
#[derive(Clone, Copy, Debug)]
pub(super) struct PowerRun {
    /// The kernel command line.
    pub(super) cmdline: &'static str,
    /// Every one of these must appear in some serial line.
    pub(super) expect: &'static [&'static str],
    /// How QEMU must say the run ended.
    pub(super) end: Ending,
}

/// What QEMU reported about the end of a run.
#[derive(Clone, Debug, Default)]
pub(super) struct RunEnd {
    /// Every QMP event of the run, in order.
    pub(super) events: Vec<Event>,
    /// QEMU's CPU-reset log (`-d cpu_reset`), if it could be read.
    pub(super) reset_log: Option<String>,
}

impl RunEnd {
    /// The event that ended the run: the first `SHUTDOWN` or `RESET`.
    fn end_event(&self) -> Option<&Event> {
        self.events
            .iter()
            .find(|e| e.name == "SHUTDOWN" || e.name == "RESET")
    }

    /// Whether the CPU-reset log shows a triple fault; `None` if there is no usable log.
    fn triple_fault(&self) -> Option<bool> {
        let log = self.reset_log.as_deref()?;
        if log.lines().any(|l| l.trim() == TRIPLE_FAULT) {
            Some(true)
        } else if log.lines().any(|l| l.starts_with(CPU_RESET)) {
            Some(false)
        } else {
            None
        }
    }

    /// How the run ended, if it is one of the endings the power cases know.
    pub(super) fn classify(&self) -> Option<Ending> {
        let event = self.end_event()?;
        if event.data["guest"] != true {
            return None;
        }
        let hibernated = self.events.iter().any(|e| e.name == "SUSPEND_DISK");
        match (event.name.as_str(), reason(event), self.triple_fault()) {
            ("SHUTDOWN", "guest-shutdown", None | Some(false)) if !hibernated => {
                Some(Ending::PowerOff)
            }
            ("SHUTDOWN" | "RESET", "guest-reset", Some(false)) => Some(Ending::Reset),
            ("SHUTDOWN" | "RESET", "guest-reset", Some(true)) => Some(Ending::TripleFault),
            _ => None,
        }
    }

    /// What was seen, for a verdict: the ending events, the reset log's evidence and the
    /// classification, e.g. "SHUTDOWN (reason guest-reset) and `Triple fault` in QEMU's
    /// CPU-reset log: a triple fault".
    pub(super) fn describe(&self) -> String {
        let events: Vec<String> = self
            .events
            .iter()
            .filter(|e| matches!(e.name.as_str(), "SHUTDOWN" | "RESET" | "SUSPEND_DISK"))
            .map(|e| {
                let by = if e.data["guest"] == true {
                    ""
                } else {
                    ", not the guest's"
                };
                match e.data.get("reason") {
                    Some(_) => format!("{} (reason {}{by})", e.name, reason(e)),
                    None => e.name.clone(),
                }
            })
            .collect();
        let events = if self.end_event().is_none() {
            let mut seen = events;
            seen.push("no SHUTDOWN or RESET event".into());
            seen.join(", ")
        } else {
            events.join(", then ")
        };
        let log = match (self.triple_fault(), &self.reset_log) {
            (Some(true), _) => format!("`{TRIPLE_FAULT}` in QEMU's CPU-reset log"),
            (Some(false), _) => "no triple fault in QEMU's CPU-reset log".into(),
            (None, Some(_)) => format!("a CPU-reset log without a `{CPU_RESET}` line"),
            (None, None) => "no CPU-reset log".into(),
        };
        let what = match self.classify() {
            Some(Ending::PowerOff) => "an ACPI power-off",
            Some(Ending::Reset) => "a reset",
            Some(Ending::TripleFault) => "a triple fault",
            None => "none of power-off, reset, triple fault",
        };
        format!("{events} and {log}: {what}")
    }
}

/// The `reason` of a `SHUTDOWN` or `RESET` event (`none` if it has none).
fn reason(event: &Event) -> &str {
    event.data["reason"].as_str().unwrap_or("none")
}

/// The power-off verdict: the guest switched the machine off through ACPI.
pub(super) fn check_power_off(end: &RunEnd) -> Result<String, String> {
    match end.classify() {
        Some(Ending::PowerOff) => Ok(format!(": {}", end.describe())),
        _ => Err(format!(
            "expected an ACPI power-off (SHUTDOWN reason guest-shutdown), saw {}",
            end.describe()
        )),
    }
}

/// The reset verdict: the guest reset the machine, and it was not a triple fault.
pub(super) fn check_reset(end: &RunEnd) -> Result<String, String> {
    match end.classify() {
        Some(Ending::Reset) => Ok(format!(": {}", end.describe())),
        _ => Err(format!(
            "expected a reset that was not a triple fault (SHUTDOWN or RESET reason \
             guest-reset, no `{TRIPLE_FAULT}` in QEMU's CPU-reset log), saw {}",
            end.describe()
        )),
    }
}

/// The triple-fault case's verdict: the run is classified as a triple fault and neither the
/// power-off nor the reset verdict accepts it.
pub(super) fn check_triple_fault(end: &RunEnd) -> Result<String, String> {
    if end.classify() != Some(Ending::TripleFault) {
        return Err(format!("expected a triple fault, saw {}", end.describe()));
    }
    if check_power_off(end).is_ok() {
        return Err(format!(
            "the power-off verdict accepts a triple fault: {}",
            end.describe()
        ));
    }
    if check_reset(end).is_ok() {
        return Err(format!(
            "the reset verdict accepts a triple fault: {}",
            end.describe()
        ));
    }
    Ok(format!(
        ": {}; the power-off and reset verdicts both refuse it",
        end.describe()
    ))
}

impl Ending {
    /// The verdict that a run ended this way.
    fn check(self, end: &RunEnd) -> Result<String, String> {
        match self {
            Self::PowerOff => check_power_off(end),
            Self::Reset => check_reset(end),
            Self::TripleFault => check_triple_fault(end),
        }
    }
}

/// Boots a power case with its end recorded, and checks the log and how the run ended.
pub(super) fn run(ctx: &Suite, opts: &RunOptions, log: &Path, run: PowerRun) -> Result<String> {
    ensure!(
        opts.accel == Accel::Tcg,
        "the power cases need TCG: only its CPU-reset log tells a triple fault from a reset"
    );
    let sockets = tempfile::tempdir().context("creating a directory for the QMP socket")?;
    let socket = sockets.path().join("qmp.sock");
    let reset_log = log.with_extension("resets.log");
    if reset_log.exists() {
        fs::remove_file(&reset_log)
            .with_context(|| format!("removing the old {}", reset_log.display()))?;
    }
    let mut opts = opts.clone();
    opts.qmp = Some(socket.clone());
    opts.paused = true;
    opts.reset_log = Some(reset_log.clone());

    let mut running = ctx.qemu.spawn(&opts)?;
    let mut lines = Vec::new();
    let watched = Qmp::connect(&socket, QMP_WAIT)
        .and_then(Qmp::resume_and_record)
        .context("recording QMP events")
        .and_then(|recorder| {
            let outcome = watch::watch(&mut running.child, Some(log), Some(ctx.timeout), |l| {
                lines.push(l.to_owned());
                l.trim_start().starts_with(LOADER_ERROR)
            })?;
            Ok((recorder, outcome))
        });
    let stopped = watch::terminate(&mut running.child, Duration::from_secs(3));
    let (recorder, outcome) = watched?;
    stopped.context("stopping QEMU")?;
    // QEMU has exited or been stopped, so the recorder has seen the connection close.
    let events = recorder
        .join()
        .map_err(|_| anyhow!("the QMP recorder thread panicked"))??;

    match outcome {
        Outcome::Exited(status) => {
            let exit = GuestExit::from_status(status);
            let end = RunEnd {
                events,
                reset_log: fs::read_to_string(&reset_log).ok(),
            };
            let verdict = check_kernel_log(&lines, run.expect).and_then(|_| run.end.check(&end));
            if exit != GuestExit::Quit {
                let why = verdict
                    .err()
                    .map(|e| format!("; also {e}"))
                    .unwrap_or_default();
                bail!(
                    "{} (expected: {}){why}",
                    exit.describe(),
                    GuestExit::Quit.describe()
                );
            }
            verdict.map_err(anyhow::Error::msg)
        }
        Outcome::Matched(line) => bail!("the loader failed: {line}"),
        Outcome::TimedOut => bail!("no exit within {} s (QEMU stopped)", ctx.timeout.as_secs()),
        Outcome::Interrupted => bail!("interrupted"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// The start of a real `-d cpu_reset` log: one dump per CPU at power-on.
    const POWER_ON: &str = "CPU Reset (CPU 0)\nEAX=00000000 EBX=00000000 ECX=00000000\n\
                            CPU Reset (CPU 1)\nEAX=00000000 EBX=00000000 ECX=00000000\n";

    fn event(name: &str, data: Value) -> Event {
        Event {
            name: name.into(),
            data,
        }
    }

    fn shutdown(reason: &str) -> Event {
        event("SHUTDOWN", json!({"guest": true, "reason": reason}))
    }

    fn run_end(events: Vec<Event>, reset_log: Option<&str>) -> RunEnd {
        RunEnd {
            events: [event("RESUME", Value::Null)]
                .into_iter()
                .chain(events)
                .collect(),
            reset_log: reset_log.map(str::to_owned),
        }
    }

    fn triple_faulted() -> RunEnd {
        run_end(
            vec![shutdown("guest-reset")],
            Some(&format!("{POWER_ON}XMM07=0000000000000000\nTriple fault\n")),
        )
    }

    #[test]
    fn acpi_power_off_is_told_apart() {
        let off = run_end(vec![shutdown("guest-shutdown")], Some(POWER_ON));
        assert_eq!(off.classify(), Some(Ending::PowerOff));
        let note = check_power_off(&off).expect("a power-off");
        assert!(note.contains("SHUTDOWN (reason guest-shutdown)"), "{note}");
        let err = check_reset(&off).expect_err("not a reset");
        assert!(
            err.starts_with("expected a reset that was not a triple fault")
                && err.contains("saw SHUTDOWN (reason guest-shutdown)"),
            "{err}"
        );
        // A power-off needs no reset log: a triple fault cannot look like one.
        let off = run_end(vec![shutdown("guest-shutdown")], None);
        assert_eq!(off.classify(), Some(Ending::PowerOff));
        // S4 (hibernation) also shuts QEMU down with reason guest-shutdown.
        let s4 = run_end(
            vec![
                event("SUSPEND_DISK", Value::Null),
                shutdown("guest-shutdown"),
            ],
            Some(POWER_ON),
        );
        let err = check_power_off(&s4).expect_err("S4 is not S5");
        assert!(err.contains("SUSPEND_DISK, then SHUTDOWN"), "{err}");
    }

    #[test]
    fn a_reset_needs_a_clean_reset_log() {
        let reset = run_end(vec![shutdown("guest-reset")], Some(POWER_ON));
        assert_eq!(reset.classify(), Some(Ending::Reset));
        assert!(check_reset(&reset).is_ok());
        let err = check_power_off(&reset).expect_err("not a power-off");
        assert!(
            err.starts_with("expected an ACPI power-off (SHUTDOWN reason guest-shutdown), saw ")
                && err.contains("SHUTDOWN (reason guest-reset)")
                && err.ends_with(": a reset"),
            "{err}"
        );
        // Without -no-reboot a reset is a RESET event.
        let rebooted = run_end(
            vec![event(
                "RESET",
                json!({"guest": true, "reason": "guest-reset"}),
            )],
            Some(POWER_ON),
        );
        assert_eq!(rebooted.classify(), Some(Ending::Reset));
        // Without a log QEMU demonstrably wrote, a triple fault cannot be ruled out.
        for log in [None, Some(""), Some("qemu: something else\n")] {
            let unproven = run_end(vec![shutdown("guest-reset")], log);
            assert_eq!(unproven.classify(), None, "{log:?}");
            let err = check_reset(&unproven).expect_err("unproven");
            assert!(err.contains("CPU-reset log"), "{err}");
        }
    }

    #[test]
    fn a_triple_fault_is_neither_a_power_off_nor_a_reset() {
        let fault = triple_faulted();
        assert_eq!(fault.classify(), Some(Ending::TripleFault));
        for err in [
            check_power_off(&fault).expect_err("power-off verdict"),
            check_reset(&fault).expect_err("reset verdict"),
        ] {
            assert!(
                err.contains(
                    "saw SHUTDOWN (reason guest-reset) and `Triple fault` in QEMU's \
                     CPU-reset log: a triple fault"
                ),
                "{err}"
            );
        }
        let note = check_triple_fault(&fault).expect("the regression case passes");
        assert!(note.contains("both refuse it"), "{note}");
        // The regression case itself refuses runs that are not triple faults.
        let reset = run_end(vec![shutdown("guest-reset")], Some(POWER_ON));
        let off = run_end(vec![shutdown("guest-shutdown")], Some(POWER_ON));
        for other in [reset, off, run_end(vec![], None)] {
            let err = check_triple_fault(&other).expect_err("not a triple fault");
            assert!(err.starts_with("expected a triple fault, saw "), "{err}");
        }
    }

    #[test]
    fn other_endings_are_refused_and_described() {
        let cases = [
            (
                run_end(vec![], Some(POWER_ON)),
                "no SHUTDOWN or RESET event",
            ),
            (
                run_end(
                    vec![event(
                        "SHUTDOWN",
                        json!({"guest": false, "reason": "host-qmp-quit"}),
                    )],
                    Some(POWER_ON),
                ),
                "SHUTDOWN (reason host-qmp-quit, not the guest's)",
            ),
            (
                run_end(vec![shutdown("guest-panic")], Some(POWER_ON)),
                "SHUTDOWN (reason guest-panic)",
            ),
        ];
        for (end, seen) in cases {
            assert_eq!(end.classify(), None, "{seen}");
            for err in [
                check_power_off(&end).expect_err(seen),
                check_reset(&end).expect_err(seen),
            ] {
                assert!(
                    err.contains(&format!(
                        "saw {seen} and no triple fault in QEMU's CPU-reset log: none of"
                    )),
                    "{err}"
                );
            }
        }
        let lost = run_end(vec![], None);
        assert!(
            lost.describe()
                .starts_with("no SHUTDOWN or RESET event and no CPU-reset log"),
            "{}",
            lost.describe()
        );
    }
}
