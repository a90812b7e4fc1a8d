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
use crate::{
    qemu::{self, RunOptions, Serial},
    qmp::Qmp,
};

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
                // What it wrote last may have reached the log after the look above.
                let bytes = std::fs::read(&self.log).unwrap_or_default();
                let rest = String::from_utf8_lossy(&bytes[self.seen.min(bytes.len())..]);
                if let Some(at) = rest.find(needle) {
                    let before = rest[..at].to_owned();
                    self.seen += rest[..at + needle.len()].len();
                    return Ok(before);
                }
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

/// Which terminal a session case plays on.
#[derive(Clone, Copy, Debug)]
pub(super) enum Terminal {
    /// COM1 (`/dev/ttyS0`).
    Serial,
    /// The screen and keyboard (`/dev/tty1`): keys through QMP, checked through the
    /// screen's text (`/dev/vcs1`, read from the serial shell) and screendumps.
    Screen,
}

/// A session case.
pub(super) fn run(
    ctx: &Suite,
    opts: &RunOptions,
    log: &Path,
    terminal: Terminal,
) -> Result<String> {
    let deadline = Instant::now() + ctx.timeout;
    let sockets = tempfile::tempdir().context("creating a directory for the input pipe")?;
    let mut opts = opts.clone();
    let pipe = sockets.path().join("serial");
    let qmp_socket = sockets.path().join("qmp.sock");
    opts.serial = Serial::FileWithInput {
        log: log.to_path_buf(),
        input: pipe.clone(),
    };
    if matches!(terminal, Terminal::Screen) {
        opts.qmp = Some(qmp_socket.clone());
    }
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
        if let Terminal::Screen = terminal {
            let mut qmp = Qmp::connect(&qmp_socket, Duration::from_secs(10))?;
            let pictures = log.with_extension("");
            let note = screen_script(&mut s, &mut qmp, &pictures)?;
            return Ok(note);
        }
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
    // busybox shows the terminal as major,minor (4,64 is ttyS0), as on Linux.
    s.check("ps -o pid,stat,tty,comm | grep 'slee[p]'", &[" T ", "4,64"])?;
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

/// What the screen shows, as lines (read through `/dev/vcs1` from the serial shell).
fn screen_lines(s: &mut Session<'_>) -> Result<Vec<String>> {
    let size = s.check("stty -F /dev/tty1 size", &[])?;
    let cols: usize = size
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("stty size of tty1: {size:?}"))?;
    let text = s.check("cat /dev/vcs1; echo", &[])?;
    let text = text.replace('\n', "");
    Ok(text
        .as_bytes()
        .chunks(cols.max(1))
        .map(|row| String::from_utf8_lossy(row).trim_end().to_owned())
        .collect())
}

/// Waits until the screen shows a line holding `needle`.
fn wait_for_screen(s: &mut Session<'_>, needle: &str) -> Result<Vec<String>> {
    wait_for_screen_to(s, needle, |lines| lines.iter().any(|l| l.contains(needle)))
}

/// Waits until what the screen shows passes `done` (`what` names it for the report).
fn wait_for_screen_to(
    s: &mut Session<'_>,
    what: &str,
    done: impl Fn(&[String]) -> bool,
) -> Result<Vec<String>> {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let lines = screen_lines(s)?;
        if done(&lines) {
            return Ok(lines);
        }
        if Instant::now() >= until {
            bail!(
                "the screen never showed {what}; it shows:\n{}",
                lines.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The session on the screen: a command typed on the keyboard, `vi` editing and saving a
/// file, `top` drawing; screendumps of each (`<log>-shell.png`, `-vi.png`, `-top.png`).
fn screen_script(s: &mut Session<'_>, qmp: &mut Qmp, pictures: &Path) -> Result<String> {
    let picture = |name: &str| PathBuf::from(format!("{}-{name}.png", pictures.display()));
    wait_for_screen(s, PROMPT.trim_end())?;
    qmp.type_text("echo typed on the keyboard $((6*7))\r")?;
    wait_for_screen(s, "typed on the keyboard 42")?;
    qmp.screendump(&picture("shell"))?;
    // vi draws its screen, takes text and saves it with :wq.
    qmp.type_text("vi /tmp/notes\r")?;
    // An empty file: vi marks every line past its end with `~`.
    wait_for_screen_to(s, "vi's empty-line markers", |lines| {
        lines.iter().filter(|l| l.starts_with('~')).count() > 10
    })?;
    qmp.type_text("iWritten in vi on the Evergreen screen.\x1b")?;
    wait_for_screen(s, "Written in vi on the Evergreen screen.")?;
    qmp.screendump(&picture("vi"))?;
    qmp.type_text(":wq\r")?;
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let (text, _) = s.run("cat /tmp/notes")?;
        if text.contains("Written in vi on the Evergreen screen.") {
            break;
        }
        ensure!(
            Instant::now() < until,
            "/tmp/notes after :wq holds {text:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // top draws its table; q leaves it.
    qmp.type_text("top\r")?;
    let lines = wait_for_screen(s, "Mem:")?;
    ensure!(
        lines
            .iter()
            .any(|l| l.contains("PID") && l.contains("COMMAND")),
        "top drew no header:\n{}",
        lines.join("\n")
    );
    qmp.screendump(&picture("top"))?;
    qmp.type_text("q")?;
    wait_for_screen(s, PROMPT.trim_end())?;
    Ok(format!(
        ": keyboard, vi and top on the screen; pictures {}-{{shell,vi,top}}.png",
        pictures.display()
    ))
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
