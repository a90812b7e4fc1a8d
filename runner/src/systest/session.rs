//! The interactive session cases: Evergreen boots as `cargo run` does (init brings up a
//! login shell on each terminal), and a person's session is played on the serial terminal:
//! commands typed into COM1, their output read back from the serial log.
//!
//! Each command is followed by `echo :$?:END`, so the end of its output (and its status) is
//! recognised without guessing at prompts: the typed line echoes `:$?:END` literally, the
//! shell's answer has the number. Control characters (^C, ^Z) are typed as a terminal sends
//! them, and the line discipline turns them into signals for the foreground job.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    process::Child,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};

use super::{Suite, with_qemu};
use crate::qemu::{self, RunOptions, Serial};

/// What the shell prints as its prompt (`PS1` in the image's `/etc/profile`).
const PROMPT: &str = "root@evergreen:~# ";

/// A shell session over the serial terminal.
struct Session<'a> {
    child: &'a mut Child,
    log: PathBuf,
    fifo: File,
    /// How much of the log has been looked at.
    seen: usize,
    deadline: Instant,
    /// What was said, for the failure report.
    transcript: String,
}

impl Session<'_> {
    /// Types `text` on the terminal.
    fn type_text(&mut self, text: &str) -> Result<()> {
        self.fifo
            .write_all(text.as_bytes())
            .context("writing to the serial input FIFO")
    }

    /// Waits until the log, past what was seen, holds `needle`; returns the text before it
    /// and moves past it.
    fn expect(&mut self, needle: &str, within: Duration) -> Result<String> {
        let until = (Instant::now() + within).min(self.deadline);
        loop {
            let bytes = std::fs::read(&self.log).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes[self.seen.min(bytes.len())..]).into_owned();
            if let Some(at) = text.find(needle) {
                let before = text[..at].to_owned();
                self.seen += text[..at + needle.len()].len();
                self.transcript.push_str(&text[..at + needle.len()]);
                return Ok(before);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!(
                    "QEMU exited ({status}) while waiting for {needle:?}; the terminal showed:\n{}{text}",
                    self.transcript
                );
            }
            if Instant::now() >= until {
                bail!(
                    "no {needle:?} within {} s; the terminal showed:\n{}{text}",
                    within.as_secs(),
                    self.transcript
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `command` and returns its output (lines joined with `\n`) and exit status.
    fn run(&mut self, command: &str) -> Result<(String, i32)> {
        self.type_text(&format!("{command}; echo :$?:END\r"))?;
        // The echo of the typed line, then the output, then the status.
        self.expect(":$?:END", Duration::from_secs(30))?;
        let output = self.expect(":END", Duration::from_secs(60))?;
        let (output, status) = output
            .rsplit_once(':')
            .with_context(|| format!("{command}: no status in {output:?}"))?;
        let status: i32 = status
            .trim()
            .parse()
            .with_context(|| format!("{command}: status {status:?}"))?;
        Ok((clean(output), status))
    }

    /// Runs `command`, which must succeed, and checks its output holds every one of `want`.
    fn check(&mut self, command: &str, want: &[&str]) -> Result<String> {
        let (output, status) = self.run(command)?;
        ensure!(
            status == 0,
            "`{command}` exited with {status}; it printed:\n{output}"
        );
        for w in want {
            ensure!(
                output.contains(w),
                "`{command}` printed no {w:?}; it printed:\n{output}"
            );
        }
        Ok(output)
    }
}

/// Terminal output as lines: `\r\n` to `\n`, the echo's leftovers trimmed.
fn clean(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace('\r', "")
        .trim_matches('\n')
        .to_owned()
}

/// The serial session case.
pub(super) fn run(ctx: &Suite, opts: &RunOptions, log: &Path) -> Result<String> {
    let deadline = Instant::now() + ctx.timeout;
    let sockets = tempfile::tempdir().context("creating a directory for the input pipe")?;
    let mut opts = opts.clone();
    let pipe = sockets.path().join("serial");
    opts.serial = Serial::FileWithInput {
        log: log.to_path_buf(),
        input: pipe.clone(),
    };
    with_qemu(ctx, &opts, |child| {
        // Read-write: opening a FIFO this way never blocks (QEMU holds the read end).
        let fifo = OpenOptions::new()
            .read(true)
            .write(true)
            .open(qemu::input_fifo(&pipe))
            .context("opening the serial input FIFO")?;
        let mut s = Session {
            child,
            log: log.to_path_buf(),
            fifo,
            seen: 0,
            deadline,
            transcript: String::new(),
        };
        s.expect("Welcome to Evergreen", Duration::from_secs(120))?;
        s.expect(PROMPT, Duration::from_secs(30))?;
        script(&mut s)?;
        // busybox's poweroff asks init (SIGUSR2), which ends everything and powers off.
        s.type_text("poweroff\r")?;
        s.expect("going down to power off", Duration::from_secs(20))?;
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = s.child.try_wait()? {
                ensure!(
                    crate::qemu::GuestExit::from_status(status) == crate::qemu::GuestExit::Quit,
                    "after poweroff QEMU ended with {status}"
                );
                break;
            }
            ensure!(
                Instant::now() < until,
                "poweroff did not power the machine off"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(": the scripted serial session passed, and poweroff powered off".into())
    })
}

/// The session itself.
fn script(s: &mut Session<'_>) -> Result<()> {
    // A terminal with job control.
    s.check("tty", &["/dev/ttyS0"])?;
    s.check("ls -l /etc", &["motd", "passwd", "-rw-"])?;
    s.check("echo some text > /tmp/file; cat /tmp/file", &["some text"])?;
    s.check(
        "touch /tmp/g1.txt /tmp/g2.txt /tmp/h.txt; echo /tmp/g*.txt",
        &["/tmp/g1.txt /tmp/g2.txt"],
    )?;
    // A here-document: the shell asks for more lines with its second prompt.
    s.type_text("cat <<EOF\rfirst line\rsecond line\rEOF\r")?;
    s.expect("> EOF", Duration::from_secs(30))?;
    let here = s.expect(PROMPT, Duration::from_secs(30))?;
    ensure!(
        here.contains("first line\r\nsecond line"),
        "the here-document printed {here:?}"
    );
    s.check(
        "count() { i=0; while test $i -lt $1; do echo n$i; i=$((i+1)); done; }; count 3",
        &["n0\nn1\nn2"],
    )?;
    // ^C ends the foreground job: status 130, the prompt comes back.
    s.type_text("sleep 100\r")?;
    s.expect("sleep 100", Duration::from_secs(20))?;
    std::thread::sleep(Duration::from_secs(1));
    s.type_text("\x03")?;
    s.expect(PROMPT, Duration::from_secs(20))?;
    s.check("echo status $?", &["status 130"])?;
    // ^Z stops it; jobs, bg, fg and kill %1 manage it.
    s.type_text("sleep 100\r")?;
    s.expect("sleep 100", Duration::from_secs(20))?;
    std::thread::sleep(Duration::from_secs(1));
    s.type_text("\x1a")?;
    s.expect("Stopped", Duration::from_secs(20))?;
    s.expect(PROMPT, Duration::from_secs(20))?;
    s.check("jobs", &["[1]+", "Stopped", "sleep 100"])?;
    s.check("bg", &["sleep 100"])?;
    s.check("jobs", &["Running", "sleep 100"])?;
    s.type_text("fg\r")?;
    s.expect("sleep 100", Duration::from_secs(20))?;
    std::thread::sleep(Duration::from_secs(1));
    s.type_text("\x1a")?;
    s.expect("Stopped", Duration::from_secs(20))?;
    s.check("kill %1; sleep 0.5; jobs; echo after", &["after"])?;
    let (jobs, _) = s.run("jobs")?;
    ensure!(
        !jobs.contains("sleep 100"),
        "after kill %1, jobs shows {jobs:?}"
    );
    // What the system shows about itself.
    s.check("ps", &["PID", "init", "-sh", "ps"])?;
    s.check("top -b -n 1", &["Mem:", "PID", "top"])?;
    s.check("free", &["Mem:"])?;
    s.check("uptime", &["load average"])?;
    s.check("df", &["Filesystem", "/tmp"])?;
    s.check(
        "mount",
        &["proc on /proc", "tmpfs on /tmp", "devpts on /dev/pts"],
    )?;
    s.check("dmesg | head -n 3", &["Evergreen"])?;
    // Archives round trip in /tmp.
    s.check(
        "cd /tmp && mkdir -p d/e && echo data > d/e/x && tar czf d.tgz d && rm -r d \
         && tar xzf d.tgz && cat d/e/x && gzip -k d.tgz && gunzip -c d.tgz.gz | tar tzf -; cd",
        &["data", "d/e/x"],
    )?;
    // The same digest as the host's for the same data.
    let data: String = (1..=2000).map(|i| format!("{i}\n")).collect();
    let host = host_sha256(data.as_bytes())?;
    s.check("seq 1 2000 | sha256sum", &[&host])?;
    Ok(())
}

/// The host's `sha256sum` of `data`.
fn host_sha256(data: &[u8]) -> Result<String> {
    use std::process::{Command, Stdio};
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running the host's sha256sum")?;
    child
        .stdin
        .take()
        .context("sha256sum's stdin")?
        .write_all(data)?;
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}
