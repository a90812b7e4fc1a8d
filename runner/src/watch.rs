//! Watching a running child process through the log file it writes.
//!
//! QEMU writes the guest's serial port to a file; [`watch`] follows that file line by line
//! until a line satisfies a predicate, the process exits, the time runs out or the user presses
//! Ctrl-C — whichever comes first. Firmware console output mixes ANSI escape sequences and
//! carriage returns into the serial stream, so lines are cleaned before they are matched.

use std::{
    fs::File,
    io::{ErrorKind, Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    process::{Child, ExitStatus},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use crate::interrupt;

/// How often the log and the process are looked at.
const POLL: Duration = Duration::from_millis(50);

/// Why [`watch`] returned.
#[derive(Debug)]
pub enum Outcome {
    /// This (cleaned) line satisfied the predicate; the process may still be running.
    Matched(String),
    /// The process exited before any line matched.
    Exited(ExitStatus),
    /// The timeout passed; the process is still running.
    TimedOut,
    /// The user pressed Ctrl-C; the process may still be running.
    Interrupted,
}

/// Follows `log` while `child` runs, until a line makes `until` return true.
///
/// Without a log this just waits for the process (or the timeout, or Ctrl-C); without a
/// timeout it waits as long as it takes. Every complete line is passed to `until` once, in order; a final line without a newline is
/// passed when the process has exited. Lines written just before the process exits are still
/// seen: the log is read to its end after the exit is noticed.
pub fn watch(
    child: &mut Child,
    log: Option<&Path>,
    timeout: Option<Duration>,
    mut until: impl FnMut(&str) -> bool,
) -> Result<Outcome> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut tail = log.map(LogTail::new);
    loop {
        let exited = child.try_wait().context("checking on the child process")?;
        let lines = match &mut tail {
            Some(tail) => tail.read_lines()?,
            None => Vec::new(),
        };
        for line in lines {
            if until(&line) {
                return Ok(Outcome::Matched(line));
            }
        }
        if let Some(status) = exited {
            if let Some(line) = tail.as_mut().and_then(LogTail::take_partial)
                && until(&line)
            {
                return Ok(Outcome::Matched(line));
            }
            return Ok(Outcome::Exited(status));
        }
        if interrupt::interrupted() {
            return Ok(Outcome::Interrupted);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(Outcome::TimedOut);
        }
        thread::sleep(POLL);
    }
}

/// Stops `child`: SIGTERM first (QEMU then restores the terminal), SIGKILL after `grace`.
pub fn terminate(child: &mut Child, grace: Duration) -> Result<ExitStatus> {
    if let Some(status) = child.try_wait().context("checking on the child process")? {
        return Ok(status);
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        // The child may exit between try_wait and kill; then there is nothing to stop.
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().context("checking on the child process")? {
            return Ok(status);
        }
        thread::sleep(POLL);
    }
    child.kill().ok();
    child.wait().context("waiting for the killed child process")
}

/// Reads the lines appended to a file since the last call.
#[derive(Debug)]
pub struct LogTail {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl LogTail {
    /// Starts at the beginning of `path` (which need not exist yet).
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            offset: 0,
            partial: Vec::new(),
        }
    }

    /// The complete lines appended since the last call, cleaned by [`clean_line`].
    pub fn read_lines(&mut self) -> Result<Vec<String>> {
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("opening {}", self.path.display())),
        };
        file.seek(SeekFrom::Start(self.offset))
            .context("seeking in the log")?;
        let mut fresh = Vec::new();
        file.read_to_end(&mut fresh)
            .with_context(|| format!("reading {}", self.path.display()))?;
        self.offset += fresh.len() as u64;
        self.partial.extend_from_slice(&fresh);
        let mut lines = Vec::new();
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = self.partial.drain(..=end).collect();
            lines.push(clean_line(&raw[..end]));
        }
        Ok(lines)
    }

    /// The text after the last newline, if any (consumed).
    pub fn take_partial(&mut self) -> Option<String> {
        if self.partial.is_empty() {
            return None;
        }
        let line = clean_line(&self.partial);
        self.partial.clear();
        Some(line)
    }
}

/// Turns raw serial bytes into text: ANSI escape sequences and control characters other than
/// tab are dropped, invalid UTF-8 is replaced.
pub fn clean_line(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI runs up to a final byte in @..=~; other escapes are two characters.
                if chars.next() == Some('[') {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
            }
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use super::*;

    /// A fake QEMU: a shell script writing lines to `log` with pauses in between.
    fn fake_child(script: &str, log: &Path) -> Child {
        Command::new("sh")
            .args(["-c", script, "fake-qemu"])
            .arg(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("sh runs")
    }

    #[test]
    fn stops_at_the_matching_line_while_the_child_runs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("serial.log");
        let mut child = fake_child(
            r#"printf 'BdsDxe: loading\r\n' > "$1"; sleep 0.3
               printf '\033[2J\033[01;01Hloader: error: no kernel\r\nPress any key' >> "$1"
               exec sleep 30"#,
            &log,
        );
        let start = Instant::now();
        let mut seen = Vec::new();
        let outcome = watch(
            &mut child,
            Some(&log),
            Some(Duration::from_secs(20)),
            |line| {
                seen.push(line.to_owned());
                line.starts_with("loader: error:")
            },
        )
        .expect("watch works");
        assert!(
            matches!(&outcome, Outcome::Matched(l) if l == "loader: error: no kernel"),
            "{outcome:?}"
        );
        assert_eq!(seen, ["BdsDxe: loading", "loader: error: no kernel"]);
        assert!(start.elapsed() < Duration::from_secs(10));
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "child should still run"
        );
        let status = terminate(&mut child, Duration::from_secs(5)).expect("terminate");
        assert!(!status.success());
    }

    #[test]
    fn reports_the_exit_status_and_reads_the_last_lines() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("serial.log");
        let mut child = fake_child(r#"printf 'one\ntwo\nlast' > "$1"; exit 33"#, &log);
        let mut seen = Vec::new();
        let outcome = watch(
            &mut child,
            Some(&log),
            Some(Duration::from_secs(20)),
            |line| {
                seen.push(line.to_owned());
                false
            },
        )
        .expect("watch works");
        assert!(
            matches!(outcome, Outcome::Exited(s) if s.code() == Some(33)),
            "{outcome:?}"
        );
        assert_eq!(seen, ["one", "two", "last"]);
    }

    #[test]
    fn a_line_written_just_before_exit_still_matches() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("serial.log");
        let mut child = fake_child(r#"printf 'loader: error: x' > "$1"; exit 1"#, &log);
        let outcome = watch(&mut child, Some(&log), Some(Duration::from_secs(20)), |l| {
            l.starts_with("loader:")
        })
        .expect("watch works");
        assert!(matches!(outcome, Outcome::Matched(_)), "{outcome:?}");
    }

    #[test]
    fn times_out_when_nothing_matches() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("never-written.log");
        let mut child = fake_child("exec sleep 30", &log);
        let start = Instant::now();
        let outcome = watch(
            &mut child,
            Some(&log),
            Some(Duration::from_millis(300)),
            |_| true,
        )
        .expect("watch works");
        assert!(matches!(outcome, Outcome::TimedOut), "{outcome:?}");
        assert!(start.elapsed() >= Duration::from_millis(300));
        terminate(&mut child, Duration::from_secs(5)).expect("terminate");
        assert!(child.try_wait().expect("try_wait").is_some());
    }

    #[test]
    fn cleans_escape_sequences_and_controls() {
        assert_eq!(clean_line(b"\x1b[0m\x1b[01;01Hloader: hi\r"), "loader: hi");
        assert_eq!(clean_line(b"a\x1bcb\x07\tc"), "ab\tc");
        assert_eq!(clean_line(b"bad \xff byte"), "bad \u{fffd} byte");
    }
}
