//! The input cases: after the normal boot (`boot complete`) the kernel echoes what it receives
//! on COM1 and the PS/2 keyboard to the screen and to serial, turning Enter into a line break.
//! A line is typed through a FIFO into the serial port, or as QMP `send-key`s, and its echo
//! must come back on serial as a line of its own.
//!
//! The kernel's log records (a status line every few seconds) can land in the middle of an
//! echoed line; [`EchoLines`] cuts them out before lines are compared.

use std::{fs::OpenOptions, io::Write, path::Path, time::Instant};

use anyhow::{Context, Result};

use super::{BOOT_COMPLETE, Suite, remaining, wait_for_boot_complete, with_qemu};
use crate::{
    qemu::{self, GuestExit, RunOptions, Serial},
    qmp::Qmp,
    watch::{self, Outcome},
};

/// What the cases type (then Enter).
const TEXT: &str = "hello evergreen";

/// Where the typed line comes from.
#[derive(Clone, Copy, Debug)]
pub(super) enum Source {
    /// Bytes written into COM1's receive side.
    Serial,
    /// Key presses on the PS/2 keyboard (QMP `send-key`).
    Keyboard,
}

/// Boots normally, types [`TEXT`] and Enter after `boot complete`, and waits for the echo.
pub(super) fn run(ctx: &Suite, opts: &RunOptions, log: &Path, source: Source) -> Result<String> {
    let deadline = Instant::now() + ctx.timeout;
    let sockets = tempfile::tempdir().context("creating a directory for the input pipe")?;
    let mut opts = opts.clone();
    let pipe = sockets.path().join("serial");
    let qmp_socket = sockets.path().join("qmp.sock");
    match source {
        Source::Serial => {
            opts.serial = Serial::FileWithInput {
                log: log.to_path_buf(),
                input: pipe.clone(),
            };
        }
        Source::Keyboard => opts.qmp = Some(qmp_socket.clone()),
    }
    with_qemu(ctx, &opts, |child| {
        wait_for_boot_complete(child, log, deadline, |_| {})?;
        let typed = Instant::now();
        match source {
            Source::Serial => {
                // Read-write: opening a FIFO this way never blocks (QEMU holds the read end).
                let mut fifo = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(qemu::input_fifo(&pipe))
                    .context("opening the serial input FIFO")?;
                fifo.write_all(format!("{TEXT}\r").as_bytes())
                    .context("writing to the serial input FIFO")?;
            }
            Source::Keyboard => {
                let mut qmp = Qmp::connect(&qmp_socket, remaining(deadline))?;
                qmp.type_text(&format!("{TEXT}\r"))
                    .context("typing through QMP send-key")?;
            }
        }
        wait_for_echo(child, log, deadline, typed)
    })
}

/// Follows the serial log until a reassembled line is exactly [`TEXT`].
fn wait_for_echo(
    child: &mut std::process::Child,
    log: &Path,
    deadline: Instant,
    typed: Instant,
) -> Result<String> {
    let mut echo = EchoLines::default();
    let mut after_boot: Option<Vec<String>> = None;
    let outcome = watch::watch(child, Some(log), Some(remaining(deadline)), |line| {
        let text = echo.push(line);
        match (&mut after_boot, &text) {
            (Some(seen), Some(text)) => seen.push(text.clone()),
            (None, _) if line.contains(BOOT_COMPLETE) => after_boot = Some(Vec::new()),
            _ => {}
        }
        text.as_deref() == Some(TEXT)
    })?;
    let seen = after_boot.unwrap_or_default();
    let seen = if seen.is_empty() {
        "nothing".to_owned()
    } else {
        seen.iter()
            .map(|l| format!("{l:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match outcome {
        Outcome::Matched(_) => Ok(format!(
            ": {TEXT:?} echoed {:.1} s after typing",
            typed.elapsed().as_secs_f64()
        )),
        Outcome::Exited(status) => anyhow::bail!(
            "expected the echo {TEXT:?} on serial, but QEMU exited first: {}; echoed after \
             `{BOOT_COMPLETE}`: {seen}",
            GuestExit::from_status(status).describe()
        ),
        Outcome::TimedOut => anyhow::bail!(
            "expected the echo {TEXT:?} as a line on serial within {:.0} s of typing it; echoed \
             after `{BOOT_COMPLETE}` (log records removed): {seen}",
            typed.elapsed().as_secs_f64()
        ),
        Outcome::Interrupted => anyhow::bail!("interrupted"),
    }
}

/// Reassembles the echoed text from serial lines: a kernel log record that interrupts an
/// echoed line is cut out, and the text before it is joined to the next line.
#[derive(Debug, Default)]
pub(super) struct EchoLines {
    pending: String,
}

impl EchoLines {
    /// Takes the next serial line; returns a completed line of text outside log records,
    /// or `None` if the line ends in a log record (which runs to the end of its line).
    pub(super) fn push(&mut self, line: &str) -> Option<String> {
        match log_record_start(line) {
            Some(at) => {
                self.pending.push_str(&line[..at]);
                None
            }
            None => {
                let mut text = std::mem::take(&mut self.pending);
                text.push_str(line);
                Some(text)
            }
        }
    }
}

/// Where the first kernel log record in `line` starts: `[<secs>.<6 digits> <cpu>] [<LEVEL>]`
/// with the seconds right-aligned in at least five places (see `kernel/src/logger.rs`).
pub(super) fn log_record_start(line: &str) -> Option<usize> {
    line.match_indices('[')
        .map(|(at, _)| at)
        .find(|&at| is_log_record(&line[at..]))
}

fn is_log_record(text: &str) -> bool {
    let Some(rest) = text.strip_prefix('[') else {
        return false;
    };
    let rest = rest.trim_start_matches(' ');
    let (secs, rest) = split_digits(rest);
    let Some(rest) = rest.strip_prefix('.') else {
        return false;
    };
    let (micros, rest) = split_digits(rest);
    let Some(rest) = rest.strip_prefix(' ') else {
        return false;
    };
    let (cpu, rest) = split_digits(rest);
    let Some(rest) = rest.strip_prefix("] [") else {
        return false;
    };
    let level = rest.get(..6);
    !secs.is_empty()
        && micros.len() == 6
        && !cpu.is_empty()
        && ["ERROR]", "WARN ]", "INFO ]", "DEBUG]", "TRACE]"]
            .iter()
            .any(|l| level == Some(*l))
}

/// Splits `text` after its leading ASCII digits.
fn split_digits(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text.split_at(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_log_records() {
        let record = "[    5.000123 0] [INFO ] uptime 5 s, ticks: cpu0=500";
        assert_eq!(log_record_start(record), Some(0));
        assert_eq!(log_record_start(&format!("hello ev{record}")), Some(8));
        assert_eq!(
            log_record_start("[12345678.000001 15] [WARN ] x"),
            Some(0),
            "wide seconds and CPU numbers"
        );
        for not_a_record in [
            "hello evergreen",
            "[hello] [INFO ]",
            "[    5.00012 0] [INFO ] five decimals",
            "[    5.000123 0] [NOTE ] unknown level",
            "[    5.000123] [INFO ] no cpu",
            "[",
            "",
        ] {
            assert_eq!(log_record_start(not_a_record), None, "{not_a_record:?}");
        }
        // A bracket in echoed text before the record is skipped.
        assert_eq!(log_record_start("a[b [    0.100000 1] [DEBUG] x"), Some(4));
    }

    #[test]
    fn echo_lines_skip_interleaved_log_records() {
        let mut echo = EchoLines::default();
        let serial = [
            "[    4.900000 0] [INFO ] boot complete; echoing keyboard and serial input",
            "hello ev[    5.000000 0] [INFO ] uptime 5 s, ticks: cpu0=500, input dropped 0",
            "ergreen",
            "[   10.000000 0] [INFO ] uptime 10 s",
            "",
        ];
        let out: Vec<Option<String>> = serial.iter().map(|l| echo.push(l)).collect();
        assert_eq!(
            out,
            [
                None,
                None,
                Some("hello evergreen".to_owned()),
                None,
                Some(String::new())
            ]
        );
        // A record right before the line break leaves the echo whole.
        let mut echo = EchoLines::default();
        assert_eq!(
            echo.push("hello evergreen[    5.000000 0] [INFO ] up"),
            None
        );
        assert_eq!(echo.push("").as_deref(), Some("hello evergreen"));
        // Plain lines pass through.
        assert_eq!(echo.push("BdsDxe: x").as_deref(), Some("BdsDxe: x"));
    }

    #[test]
    fn the_typed_text_has_keys() {
        assert!(
            format!("{TEXT}\r")
                .chars()
                .all(|c| crate::qmp::qcode(c).is_some())
        );
    }
}
