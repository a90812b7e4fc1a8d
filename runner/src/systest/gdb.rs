//! The gdb case: the README's debugging recipe, run unattended. QEMU starts as
//! `cargo run -- --gdb` starts it (CPUs halted, gdbstub listening), and `gdb -batch` with the
//! kernel ELF attaches with `target remote :PORT`, sets a breakpoint on a function the normal
//! boot reaches, continues, and prints a backtrace when it is hit. The case passes when GDB's
//! own transcript says the breakpoint stopped in that function and the backtrace names it with
//! its source file and line: proof that the gdbstub works, that the kernel's symbols and line
//! tables survive the release build, and that the recipe users are told to type is right.
//!
//! A plain `break` suffices although the kernel is not in memory when GDB sets it (the CPU is
//! still at the reset vector): GDB asks the stub for it with a `Z0` packet, and QEMU under TCG
//! keeps such breakpoints in its own list and checks them as it translates guest code, so
//! nothing is written to guest memory. GDB needs no `set architecture`: it takes x86-64 from
//! the ELF, and QEMU's target description agrees.
//!
//! Everything has a deadline: GDB blocks in `continue` until the breakpoint is hit, so a
//! breakpoint that is never reached ends in the case's timeout, after which GDB and QEMU are
//! stopped. The port is a free one picked per run, so a user's own `--gdb` session on 1234
//! is left alone. GDB's transcript is kept as `target/test-logs/gdb.gdb.log`.

use std::{
    ffi::OsString,
    fs,
    net::{Ipv4Addr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::{Suite, remaining, with_qemu};
use crate::{
    qemu::{self, RunOptions},
    watch::{self, Outcome},
};

/// The Debian/Ubuntu package that provides `gdb`.
pub const GDB_PACKAGE: &str = "gdb";

/// How long a stopped GDB gets to exit after SIGTERM before it is killed.
const GRACE: Duration = Duration::from_secs(3);

/// How many of GDB's last lines a failure quotes.
const QUOTED_LINES: usize = 15;

/// Boots normally under GDB with a breakpoint on `function`, and checks GDB's transcript.
pub(super) fn run(ctx: &Suite, opts: &RunOptions, log: &Path, function: &str) -> Result<String> {
    let deadline = Instant::now() + ctx.timeout;
    let transcript = transcript_path(log);
    // A failure before QEMU and GDB start (no gdb, say) must not be shown an earlier run's
    // messages as its own.
    for old in [transcript.clone(), qemu::qemu_messages_path(log)] {
        if old.exists() {
            fs::remove_file(&old).with_context(|| format!("removing the old {}", old.display()))?;
        }
    }
    let gdb = find_gdb(std::env::var_os("PATH"))?;
    // GDB reads the very bytes QEMU boots, even if the kernel is rebuilt meanwhile.
    let dir = tempfile::tempdir().context("creating a directory for the kernel ELF")?;
    let kernel = dir.path().join("kernel");
    fs::write(&kernel, &ctx.kernel).with_context(|| format!("writing {}", kernel.display()))?;
    let port = free_port()?;
    let mut opts = opts.clone();
    opts.gdb = Some(port);
    with_qemu(ctx, &opts, |_qemu| {
        let mut session = Session::spawn(&gdb, &gdb_args(&kernel, port, function), &transcript)?;
        let mut lines = Vec::new();
        let outcome = watch::watch(
            &mut session.child,
            Some(&transcript),
            Some(remaining(deadline)),
            |line| {
                lines.push(line.to_owned());
                is_fatal(line)
            },
        )?;
        let quote = || quote_tail(&lines, &transcript);
        match outcome {
            Outcome::Exited(_) => check_transcript(&lines, function)
                .map_err(|e| anyhow::anyhow!("{e}; GDB said{}", quote())),
            Outcome::Matched(line) => {
                bail!("GDB could not set the breakpoint on {function}: {line}")
            }
            Outcome::TimedOut if set_breakpoint(&lines).is_some() => bail!(
                "the breakpoint on {function} was not hit within {} s of starting QEMU (GDB \
                 and QEMU stopped); GDB said{}",
                ctx.timeout.as_secs(),
                quote()
            ),
            Outcome::TimedOut => bail!(
                "GDB set no breakpoint within {} s (GDB and QEMU stopped); GDB said{}",
                ctx.timeout.as_secs(),
                quote()
            ),
            Outcome::Interrupted => bail!("interrupted"),
        }
    })
}

/// Finds `gdb` in the directories of `path`, or says which package provides it.
fn find_gdb(path: Option<OsString>) -> Result<PathBuf> {
    qemu::find_in_path("gdb", path).with_context(|| {
        format!(
            "gdb not found on PATH: install it with `sudo apt-get install {GDB_PACKAGE}` \
             (Debian/Ubuntu) or run scripts/setup.sh"
        )
    })
}

/// A TCP port nothing listens on right now, for QEMU's gdbstub. (Another program could take
/// it before QEMU does; QEMU then fails to start and says so in its log.)
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0))
        .context("finding a free TCP port for QEMU's gdbstub")?;
    Ok(listener
        .local_addr()
        .context("reading the free port's number")?
        .port())
}

/// Where GDB's output goes: `gdb.log` → `gdb.gdb.log`.
fn transcript_path(serial_log: &Path) -> PathBuf {
    serial_log.with_extension("gdb.log")
}

/// GDB's command line: the README's `gdb KERNEL -ex 'target remote :PORT'`, made unattended.
fn gdb_args(kernel: &Path, port: u16, function: &str) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        // Batch: run the commands, then exit; no questions (they get their default answer).
        "-batch".into(),
        // No ~/.gdbinit: a user's init file (a GDB dashboard, say) must not change the output.
        "-nx".into(),
        kernel.into(),
    ];
    let commands = [
        // -batch implies both; said explicitly because a pager or a question would wait for
        // a terminal that is not there.
        "set pagination off".to_owned(),
        "set confirm off".to_owned(),
        // QEMU may take a moment to listen: retry a refused connection (GDB's default, made
        // explicit) for a bounded time.
        "set tcp auto-retry on".to_owned(),
        "set tcp connect-timeout 30".to_owned(),
        format!("target remote :{port}"),
        format!("break {function}"),
        "continue".to_owned(),
        "bt".to_owned(),
        // QEMU exits when GDB kills the target.
        "kill".to_owned(),
    ];
    for command in commands {
        args.push("-ex".into());
        args.push(command.into());
    }
    args
}

/// Transcript lines after which waiting is pointless: the breakpoint cannot be set.
fn is_fatal(line: &str) -> bool {
    (line.starts_with("Function \"") && line.ends_with("not defined."))
        || line.starts_with("No symbol table is loaded")
}

/// A running GDB, stopped when this is dropped (on every path out of the case).
struct Session {
    child: Child,
}

impl Session {
    /// Starts GDB with `args`, its stdout and stderr both going to `transcript`.
    fn spawn(gdb: &Path, args: &[OsString], transcript: &Path) -> Result<Self> {
        let out = fs::File::create(transcript)
            .with_context(|| format!("creating {}", transcript.display()))?;
        let err = out
            .try_clone()
            .context("sharing GDB's transcript with its stderr")?;
        let child = Command::new(gdb)
            .args(args)
            // No terminal: GDB must never wait for input.
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // A debuginfod server would make GDB ask whether to download symbols.
            .env_remove("DEBUGINFOD_URLS")
            .spawn()
            .with_context(|| format!("starting {}", gdb.display()))?;
        Ok(Self { child })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Nothing to report from here: a GDB that outlives SIGTERM is killed regardless.
        let _ = watch::terminate(&mut self.child, GRACE);
    }
}

/// The `Breakpoint 1 at 0x...: file F, line L.` line of a successful `break`.
fn set_breakpoint(lines: &[String]) -> Option<&str> {
    lines
        .iter()
        .map(|l| l.trim())
        .find(|l| l.starts_with("Breakpoint 1 at "))
}

/// One frame of a backtrace: `#1  0xffffffff8000b629 in f () at hal/src/entry.rs:162`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Frame<'a> {
    /// The frame's number.
    number: u32,
    /// The function's name as GDB prints it (`kernel::main`; `??` when unknown).
    function: &'a str,
    /// `FILE:LINE`, when GDB knows the source.
    source: Option<&'a str>,
}

impl<'a> Frame<'a> {
    /// Parses a backtrace line; `None` if `line` is not one.
    fn parse(line: &'a str) -> Option<Self> {
        let (number, rest) = line.strip_prefix('#')?.split_once(' ')?;
        let number = number.parse().ok()?;
        let (function, source) = function_and_source(rest.trim_start());
        Some(Self {
            number,
            function,
            source,
        })
    }
}

/// Splits `[0xADDR in ]FUNCTION (ARGS)[ at FILE:LINE]` (a frame line after its number, or
/// a breakpoint stop after `Breakpoint 1, `) into the function and `FILE:LINE`.
fn function_and_source(text: &str) -> (&str, Option<&str>) {
    let text = match text.split_once(" in ") {
        Some((address, rest)) if address.starts_with("0x") => rest,
        _ => text,
    };
    let function = text.split_once(" (").map_or(text, |(f, _)| f);
    let source = text
        .rsplit_once(") at ")
        .map(|(_, source)| source.trim())
        .filter(|s| is_source_location(s));
    (function, source)
}

/// Whether `text` is `FILE.rs:LINE`.
fn is_source_location(text: &str) -> bool {
    text.rsplit_once(':').is_some_and(|(file, line)| {
        file.ends_with(".rs") && !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Checks GDB's transcript: breakpoint 1 was set, hit in `function`, and the backtrace's
/// frame #0 is `function` with its source file and line. `Ok` carries a note for PASS.
fn check_transcript(lines: &[String], function: &str) -> Result<String, String> {
    if set_breakpoint(lines).is_none() {
        return Err(format!(
            "GDB did not set the breakpoint (no `Breakpoint 1 at ...` after `break {function}`)"
        ));
    }
    let stop = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("Breakpoint 1, "))
        .ok_or("the breakpoint was never hit (no `Breakpoint 1, ...` line)")?;
    let (stopped_in, _) = function_and_source(stop);
    if stopped_in != function {
        return Err(format!(
            "breakpoint 1 stopped in {stopped_in:?}, not in {function}"
        ));
    }
    let frames: Vec<Frame<'_>> = lines.iter().filter_map(|l| Frame::parse(l)).collect();
    let top = frames
        .iter()
        .find(|f| f.number == 0)
        .ok_or("no backtrace after the stop (no `#0 ...` frame)")?;
    if top.function != function {
        return Err(format!(
            "frame #0 of the backtrace is {:?}, not {function}",
            top.function
        ));
    }
    let source = top
        .source
        .ok_or_else(|| format!("frame #0 ({function}) has no `at FILE.rs:LINE`"))?;
    Ok(format!(
        ": stopped at {function} ({source}), backtrace of {} frames",
        frames.len()
    ))
}

/// The end of GDB's transcript, one quoted line each, for a failure message.
fn quote_tail(lines: &[String], transcript: &Path) -> String {
    if lines.is_empty() {
        return format!(" nothing ({} is empty)", transcript.display());
    }
    let start = lines.len().saturating_sub(QUOTED_LINES);
    let mut text = format!(" ({}):", transcript.display());
    for line in &lines[start..] {
        text.push_str("\n    | ");
        text.push_str(line);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    /// What GDB 13 printed in a real run of this case.
    const GOOD: &str = "\
0x000000000000fff0 in ?? ()
Breakpoint 1 at 0xffffffff800095c0: file kernel/src/main.rs, line 38.

Breakpoint 1, kernel::main () at kernel/src/main.rs:38
38\t    if !hal::boot::base_revision_supported() {
#0  kernel::main () at kernel/src/main.rs:38
#1  0xffffffff8000b629 in kernel::__evergreen_kernel_main () at hal/src/entry.rs:162
#2  0xffffffff80033e1e in hal::entry::rust_entry () at hal/src/entry.rs:152
#3  0xffffffff800331c3 in hal[ac39f40eef5e1fdb]::entry::entry_common ()
#4  0x0000000000000046 in ?? ()
Backtrace stopped: previous frame inner to this frame (corrupt stack?)
Kill the program being debugged? (y or n) [answered Y; input not from terminal]
[Inferior 1 (process 1) killed]";

    #[test]
    fn a_real_transcript_passes() {
        let note = check_transcript(&lines(GOOD), "kernel::main").expect("passes");
        assert_eq!(
            note,
            ": stopped at kernel::main (kernel/src/main.rs:38), backtrace of 5 frames"
        );
    }

    #[test]
    fn transcripts_that_must_fail() {
        let without = |needle: &str| -> Vec<String> {
            lines(GOOD)
                .into_iter()
                .filter(|l| !l.contains(needle))
                .collect()
        };
        let fails = |lines: &[String], function: &str, why: &str| {
            let err = check_transcript(lines, function).expect_err(why);
            assert!(err.contains(why), "{err:?} should say {why:?}");
        };
        fails(&lines(GOOD), "kernel::other", "not in kernel::other");
        fails(&without("Breakpoint 1 at"), "kernel::main", "did not set");
        fails(&without("Breakpoint 1, "), "kernel::main", "never hit");
        fails(&without("#"), "kernel::main", "no backtrace");
        let no_source: Vec<String> = lines(GOOD)
            .into_iter()
            .map(|l| {
                l.replace(
                    "#0  kernel::main () at kernel/src/main.rs:38",
                    "#0  kernel::main ()",
                )
            })
            .collect();
        fails(&no_source, "kernel::main", "no `at FILE.rs:LINE`");
        // What GDB prints when QEMU never answered: nothing was hit.
        let refused = lines(
            ":40999: Connection timed out.\nBreakpoint 1 at 0xffffffff800095c0: file \
             kernel/src/main.rs, line 38.\nThe program is not being run.\nNo stack.",
        );
        fails(&refused, "kernel::main", "never hit");
    }

    #[test]
    fn frames_parse() {
        assert_eq!(
            Frame::parse("#1  0xffffffff8000b629 in kernel::f () at hal/src/entry.rs:162"),
            Some(Frame {
                number: 1,
                function: "kernel::f",
                source: Some("hal/src/entry.rs:162"),
            })
        );
        assert_eq!(
            Frame::parse("#12 0x0000000000000046 in ?? ()"),
            Some(Frame {
                number: 12,
                function: "??",
                source: None,
            })
        );
        // Trait impls have spaces in their names; only the argument list ends them.
        assert_eq!(
            Frame::parse("#0  <a::B as core::ops::Drop>::drop (self=0x1) at a/src/b.rs:7"),
            Some(Frame {
                number: 0,
                function: "<a::B as core::ops::Drop>::drop",
                source: Some("a/src/b.rs:7"),
            })
        );
        assert_eq!(Frame::parse("38\t    if x {"), None);
        assert_eq!(Frame::parse("#include"), None);
        assert!(!is_source_location("entry.rs:"));
        assert!(!is_source_location("libfoo.so"));
    }

    #[test]
    fn gdb_runs_the_readme_recipe_unattended() {
        let args: Vec<String> = gdb_args(Path::new("/t/kernel"), 40123, "kernel::main")
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args[..3], ["-batch", "-nx", "/t/kernel"]);
        let commands: Vec<&str> = args[3..]
            .chunks(2)
            .map(|pair| {
                assert_eq!(pair[0], "-ex", "{args:?}");
                pair[1].as_str()
            })
            .collect();
        let at = |c: &str| commands.iter().position(|x| *x == c).expect(c);
        assert!(at("set pagination off") < at("target remote :40123"));
        assert!(at("set confirm off") < at("target remote :40123"));
        assert!(at("target remote :40123") < at("break kernel::main"));
        assert!(at("break kernel::main") < at("continue"));
        assert!(at("continue") < at("bt"));
        assert_eq!(commands.last(), Some(&"kill"));
    }

    #[test]
    fn an_unknown_function_fails_fast() {
        assert!(is_fatal(r#"Function "kernel::nope" not defined."#));
        assert!(is_fatal(
            "No symbol table is loaded.  Use the \"file\" command."
        ));
        assert!(!is_fatal("Breakpoint 1 at 0x1: file a.rs, line 1."));
    }

    #[test]
    fn missing_gdb_names_its_package() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = find_gdb(Some(dir.path().as_os_str().to_owned())).expect_err("no gdb there");
        assert!(
            format!("{err:#}").contains("apt-get install gdb"),
            "{err:#}"
        );
        fs::write(dir.path().join("gdb"), b"").expect("write");
        assert_eq!(
            find_gdb(Some(dir.path().as_os_str().to_owned())).expect("found"),
            dir.path().join("gdb")
        );
    }

    #[test]
    fn free_ports_and_file_names() {
        let port = free_port().expect("a free port");
        assert_ne!(port, 0);
        // Free means QEMU can listen on it.
        TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).expect("the port is free");
        assert_eq!(
            transcript_path(Path::new("/t/test-logs/gdb.log")),
            Path::new("/t/test-logs/gdb.gdb.log")
        );
        let names: Vec<_> = super::super::select(Some("gdb"))
            .iter()
            .map(super::super::Test::name)
            .collect();
        assert_eq!(names, ["gdb"]);
    }
}
