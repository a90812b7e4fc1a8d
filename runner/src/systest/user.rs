//! Differential user-program cases: a static program — one of ours from `user/tests/` built
//! with `musl-gcc -static`, or Debian's `busybox` (static glibc; `BUSYBOX=path` overrides) —
//! runs on the host Linux and on Evergreen (as `init=`, with the same argv and the environment
//! Linux gives init), and its standard output and exit status must be the same on both. The
//! host is the oracle: nothing here says what the output should be.

use std::{
    os::unix::process::{CommandExt, ExitStatusExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

use super::{Outcome, Suite, stop_unless_exited};
use crate::{
    build,
    payload::ModuleFile,
    qemu::RunOptions,
    rootfs::{self, Rootfs},
    watch,
};

/// A user program case: the program and its arguments.
#[derive(Clone, Copy, Debug)]
pub(super) struct UserProgram {
    /// Which program.
    pub program: Program,
    /// The arguments after argv[0] (`$NAME:DEFAULT` is environment variable `NAME`, else
    /// `DEFAULT`).
    pub args: &'static [&'static str],
    /// For a program that must not run on the host (it would harm it): what its output must
    /// contain on Evergreen, where it must also exit with status 0. `None` compares with the
    /// host.
    pub guest_only: Option<&'static str>,
    /// Compare the system calls instead of the output: the kernel's built-in `strace` against
    /// `strace -f` on the host, call by call (names, and success or the errno name).
    pub strace: bool,
    /// CPUs the guest has.
    pub cpus: u8,
}

/// A static program to run.
#[derive(Clone, Copy, Debug)]
pub(super) enum Program {
    /// A C source file's name in `user/tests/` (the binary is named after its stem).
    C(&'static str),
    /// The host's static busybox (`/bin/busybox`, or `BUSYBOX`).
    Busybox,
    /// A binary of `user/rust-tests`, built for `x86_64-unknown-linux-musl` (Rust std).
    Rust(&'static str),
    /// A shell script's name in `user/tests/`, run by busybox `sh` (the script goes in as a
    /// second module, `/boot/NAME`, on Evergreen; the host runs it from the source tree).
    Script(&'static str),
    /// A C source file in `user/tests/` built as a dynamically linked musl program (its
    /// interpreter, `ld-musl-x86_64.so.1`, which is its C library too, goes into the root file
    /// system from the host), under a name of its own.
    CDynamic {
        /// The source file's name.
        source: &'static str,
        /// The binary's name.
        name: &'static str,
    },
    /// Like [`Program::Script`], with Debian's dynamically linked programs from the host in
    /// the root file system ([`super::dynamic`]).
    DynamicScript(&'static str),
}

/// An argument as given, or for `$NAME:DEFAULT` the environment variable `NAME` (a campaign's
/// size), else `DEFAULT`.
fn expand(arg: &str) -> String {
    match arg.strip_prefix('$').and_then(|a| a.split_once(':')) {
        Some((name, default)) => std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_owned()),
        None => arg.to_owned(),
    }
}

/// The variable naming the busybox binary to use.
const BUSYBOX_VAR: &str = "BUSYBOX";

/// The environment Linux gives init, which the kernel gives its init program too.
const INIT_ENV: [(&str, &str); 2] = [("HOME", "/"), ("TERM", "linux")];

impl UserProgram {
    fn name(self) -> &'static str {
        match self.program {
            Program::C(source) => source.strip_suffix(".c").unwrap_or(source),
            Program::CDynamic { name, .. } => name,
            Program::Busybox | Program::Script(_) | Program::DynamicScript(_) => "busybox",
            Program::Rust(name) => name,
        }
    }

    /// The arguments after argv[0], on Evergreen or on the host.
    fn argv(self, guest: bool) -> Result<Vec<String>> {
        let mut argv = Vec::new();
        if let Program::Script(script) | Program::DynamicScript(script) = self.program {
            argv.push("sh".to_owned());
            argv.push(if guest {
                format!("/boot/{script}")
            } else {
                script_path(script)?.display().to_string()
            });
        }
        argv.extend(self.args.iter().map(|a| expand(a)));
        Ok(argv)
    }

    /// Where the program lives on Evergreen (a module under `/boot/`), its argv[0].
    pub(super) fn guest_path(self) -> String {
        format!("/boot/{}", self.name())
    }

    /// The kernel command line that runs it.
    pub(super) fn cmdline(self) -> String {
        let trace = if self.strace { " strace" } else { "" };
        let mut cmdline = format!("test=exec{trace} init={} --", self.guest_path());
        for arg in self.argv(true).unwrap_or_default() {
            cmdline.push(' ');
            cmdline.push_str(&arg);
        }
        cmdline
    }

    /// Builds the program and returns the modules the kernel needs: the program; for a
    /// script the script and the root file system; for a dynamically linked program the root
    /// file system with its interpreter.
    pub(super) fn modules(self) -> Result<Vec<ModuleFile>> {
        let binary = self.build()?;
        let data =
            std::fs::read(&binary).with_context(|| format!("reading {}", binary.display()))?;
        let mut modules = vec![ModuleFile {
            file_name: self.name().into(),
            cmdline: self.name().into(),
            data,
        }];
        if let Program::Script(script) | Program::DynamicScript(script) = self.program {
            let path = script_path(script)?;
            let data =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            modules.push(ModuleFile {
                file_name: script.into(),
                cmdline: script.into(),
                data,
            });
            // The standard root file system: busybox's applet links in /bin, as on the host
            // (tar -z runs `gzip` through PATH).
            let adds = match self.program {
                Program::DynamicScript(_) => super::dynamic::adds(),
                _ => Vec::new(),
            };
            modules.push(rootfs::module(&Rootfs::gather(&adds)?.tree));
        }
        if let Program::CDynamic { name, .. } = self.program {
            // The standard tree with the program's interpreter, found as --add-with-libs
            // finds it.
            let add = rootfs::AddSpec {
                host: binary,
                guest: format!("/usr/local/bin/{name}"),
                with_libs: true,
            };
            modules.push(rootfs::module(&Rootfs::gather(&[add])?.tree));
        }
        Ok(modules)
    }

    /// The binary: built from our source, or the host's busybox.
    fn build(self) -> Result<PathBuf> {
        let (source, static_link) = match self.program {
            Program::C(source) => (
                build::workspace_root().join("user/tests").join(source),
                true,
            ),
            Program::CDynamic { source, .. } => (
                build::workspace_root().join("user/tests").join(source),
                false,
            ),
            Program::Busybox | Program::Script(_) | Program::DynamicScript(_) => return busybox(),
            Program::Rust(name) => return build_rust(name),
        };
        let out_dir = build::target_dir()?.join("user-tests");
        std::fs::create_dir_all(&out_dir)
            .with_context(|| format!("creating {}", out_dir.display()))?;
        let binary = out_dir.join(self.name());
        build_c_linked(&source, &binary, static_link)?;
        Ok(binary)
    }

    /// Runs the built program on the host: its output and exit status. Its standard input,
    /// output and error are one terminal (a pseudo-terminal of the console's size), as the
    /// console is on Evergreen; output is read in the order written, line ends as `\n`.
    fn run_on_host(self) -> Result<(String, u32)> {
        let binary = match self.program {
            Program::C(_) | Program::CDynamic { .. } => {
                build::target_dir()?.join("user-tests").join(self.name())
            }
            Program::Busybox | Program::Script(_) | Program::DynamicScript(_) => busybox()?,
            Program::Rust(name) => rust_binary(name)?,
        };
        let pty = console_like_pty()?;
        let terminal = |fd: &std::os::fd::OwnedFd| -> Result<Stdio> {
            Ok(Stdio::from(
                fd.try_clone().context("duplicating the terminal")?,
            ))
        };
        let mut child = Command::new(&binary)
            .arg0(self.guest_path())
            .args(self.argv(false)?)
            .env_clear()
            .envs(INIT_ENV)
            .stdin(terminal(&pty.slave)?)
            .stdout(terminal(&pty.slave)?)
            .stderr(terminal(&pty.slave)?)
            .spawn()
            .with_context(|| format!("running {} on the host", binary.display()))?;
        // Only the program (and its children) hold the terminal now: once they have all
        // closed it, reading the master fails with EIO, which is the end.
        drop(pty.slave);
        let stdout = read_terminal(pty.master).context("reading its output")?;
        let stdout = String::from_utf8_lossy(&stdout)
            .replace("\r\n", "\n")
            .into_bytes();
        let status = child.wait().context("waiting for it")?;
        let output = std::process::Output {
            status,
            stdout,
            stderr: Vec::new(),
        };
        let status = match (output.status.code(), output.status.signal()) {
            (Some(code), _) => code as u32,
            (None, Some(signal)) => 128 + signal as u32,
            _ => bail!("the host run ended in neither an exit nor a signal"),
        };
        Ok((String::from_utf8_lossy(&output.stdout).into_owned(), status))
    }
}

/// A pseudo-terminal of the Evergreen console's size (80 x 25), for a host run that must
/// see what a program run on the console sees.
fn console_like_pty() -> Result<nix::pty::OpenptyResult> {
    let size = nix::pty::Winsize {
        ws_row: 25,
        ws_col: 80,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    nix::pty::openpty(Some(&size), None).context("opening a pseudo-terminal")
}

/// Reads a pseudo-terminal's master until every holder of the slave has closed it (EIO).
fn read_terminal(master: std::os::fd::OwnedFd) -> std::io::Result<Vec<u8>> {
    let mut master = std::fs::File::from(master);
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match std::io::Read::read(&mut master, &mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.raw_os_error() == Some(nix::libc::EIO) => return Ok(out),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Builds the C program `source` into the static executable `binary` (`musl-gcc -static
/// -O2`).
pub(crate) fn build_c(source: &Path, binary: &Path) -> Result<()> {
    build_c_linked(source, binary, true)
}

/// Builds the C program `source` into `binary` with `musl-gcc -O2`, statically linked or
/// (`static_link` false) dynamically, with musl's `ld-musl-x86_64.so.1` as its interpreter.
fn build_c_linked(source: &Path, binary: &Path, static_link: bool) -> Result<()> {
    let status = Command::new("musl-gcc")
        .args(static_link.then_some("-static"))
        .args(["-O2", "-Wall", "-o"])
        .arg(binary)
        .arg(source)
        .status()
        .context("running musl-gcc (Debian: apt-get install musl-tools; scripts/setup.sh does)")?;
    if !status.success() {
        bail!("musl-gcc failed to build {} ({status})", source.display());
    }
    Ok(())
}

/// The target Rust user programs are built for.
const MUSL: &str = "x86_64-unknown-linux-musl";

/// Where `user/rust-tests`'s binary `name` is built.
fn rust_binary(name: &str) -> Result<PathBuf> {
    Ok(build::target_dir()?.join(MUSL).join("user").join(name))
}

/// Builds `user/rust-tests`'s binary `name` (static: the musl target links statically) with
/// the `user` profile (release, unwinding panics).
fn build_rust(name: &str) -> Result<PathBuf> {
    let status = build::cargo()
        .args([
            "build",
            "-q",
            "-p",
            "user-tests",
            "--profile",
            "user",
            "--target",
            MUSL,
            "--bin",
            name,
        ])
        .status()
        .context("running cargo to build a user program")?;
    if !status.success() {
        bail!("building user program {name} for {MUSL} failed ({status})");
    }
    rust_binary(name)
}

/// Where the test script `name` is in the source tree.
fn script_path(name: &str) -> Result<PathBuf> {
    let path = build::workspace_root().join("user/tests").join(name);
    if !path.is_file() {
        bail!("no test script {}", path.display());
    }
    Ok(path)
}

/// The static busybox to use.
pub(crate) fn busybox() -> Result<PathBuf> {
    let path = std::env::var_os(BUSYBOX_VAR)
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("/bin/busybox"), PathBuf::from);
    if !path.is_file() {
        bail!(
            "no busybox at {} (Debian: apt-get install busybox-static, which scripts/setup.sh \
             does; or set {BUSYBOX_VAR}=path)",
            path.display()
        );
    }
    Ok(path)
}

/// Boots the program on Evergreen and compares it with the host run.
pub(super) fn run(
    ctx: &Suite,
    opts: &RunOptions,
    log: &Path,
    program: UserProgram,
) -> Result<String> {
    if program.strace {
        return compare_traces(ctx, opts, log, program);
    }
    let (host_out, host_status) = match program.guest_only {
        Some(_) => (String::new(), 0),
        None => program.run_on_host()?,
    };
    let mut running = ctx.qemu.spawn(opts)?;
    let mut lines = Vec::new();
    let outcome = watch::watch(&mut running.child, Some(log), Some(ctx.timeout), |line| {
        lines.push(line.to_owned());
        false
    });
    match stop_unless_exited(&mut running.child, outcome)? {
        Outcome::Exited(_) => {}
        Outcome::TimedOut => bail!("no exit within {} s (QEMU stopped)", ctx.timeout.as_secs()),
        Outcome::Matched(line) => bail!("unexpected: {line}"),
        Outcome::Interrupted => bail!("interrupted"),
    }
    let (guest_out, guest_status) = guest_run(&lines, &program.guest_path())?;
    if let Some(expect) = program.guest_only {
        if guest_status != 0 || !guest_out.contains(expect) {
            bail!(
                "expected exit status 0 and `{expect}`, got status {guest_status} and:\n{guest_out}"
            );
        }
        return Ok(format!(": {}", guest_out.trim_end()));
    }
    if guest_out != host_out {
        bail!("stdout differs from the host's:\n--- host\n{host_out}--- evergreen\n{guest_out}---");
    }
    if guest_status != host_status {
        bail!("exit status {guest_status} on Evergreen, {host_status} on the host");
    }
    let lines = host_out.lines().count();
    Ok(format!(
        ": same stdout ({lines} line{}) and exit status {host_status} as on the host",
        if lines == 1 { "" } else { "s" }
    ))
}

/// Boots the program with the kernel's `strace` and compares its calls with `strace -f` of
/// the same binary on the host.
fn compare_traces(
    ctx: &Suite,
    opts: &RunOptions,
    log: &Path,
    program: UserProgram,
) -> Result<String> {
    let binary = program.build()?;
    let trace_file = log.with_extension("host-strace");
    // On a terminal, as the program is on Evergreen's console (its calls depend on that).
    let pty = console_like_pty()?;
    let terminal = |fd: &std::os::fd::OwnedFd| -> Result<Stdio> {
        Ok(Stdio::from(
            fd.try_clone().context("duplicating the terminal")?,
        ))
    };
    let mut child = Command::new("strace")
        .args(["-f", "-qq", "-o"])
        .arg(&trace_file)
        .arg(&binary)
        .args(program.argv(false)?)
        .env_clear()
        .envs(INIT_ENV)
        .stdin(terminal(&pty.slave)?)
        .stdout(terminal(&pty.slave)?)
        .spawn()
        .context(
            "running strace on the host (Debian: apt-get install strace; scripts/setup.sh does)",
        )?;
    drop(pty.slave);
    read_terminal(pty.master).context("reading the traced program's output")?;
    let status = child.wait().context("waiting for strace")?;
    if status.code().is_none() {
        bail!("strace on the host did not exit normally ({status})");
    }
    let host_text = std::fs::read_to_string(&trace_file)
        .with_context(|| format!("reading {}", trace_file.display()))?;
    // With `-f -o`, each line starts with the pid; the trace starts with the execve that
    // started the program.
    let host: Vec<(String, String)> = host_text
        .lines()
        .map(|l| l.trim_start_matches(|c: char| c.is_ascii_digit()))
        .filter_map(parse_call)
        .skip(1)
        .collect();
    let mut running = ctx.qemu.spawn(opts)?;
    let mut lines = Vec::new();
    let outcome = watch::watch(&mut running.child, Some(log), Some(ctx.timeout), |line| {
        lines.push(line.to_owned());
        false
    });
    match stop_unless_exited(&mut running.child, outcome)? {
        Outcome::Exited(_) => {}
        Outcome::TimedOut => bail!("no exit within {} s (QEMU stopped)", ctx.timeout.as_secs()),
        Outcome::Matched(line) => bail!("unexpected: {line}"),
        Outcome::Interrupted => bail!("interrupted"),
    }
    let guest: Vec<(String, String)> = lines
        .iter()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("strace: "))
        // Each guest line names its thread, `[pid N] `, as `strace -f` does.
        .map(
            |l| match l.strip_prefix("[pid ").and_then(|r| r.split_once("] ")) {
                Some((_, rest)) => rest,
                None => l,
            },
        )
        .filter_map(parse_call)
        // On the host these go through the vDSO and never reach strace; Evergreen has no
        // vDSO yet, so they are real calls there.
        .filter(|(name, _)| !VDSO_CALLS.contains(&name.as_str()))
        .collect();
    if guest.is_empty() {
        bail!("the kernel printed no trace (strace on its command line)");
    }
    for (i, (h, g)) in host.iter().zip(&guest).enumerate() {
        if h != g {
            bail!(
                "call {} differs: the host made {} = {}, Evergreen {} = {} (traces: {} and {})",
                i + 1,
                h.0,
                h.1,
                g.0,
                g.1,
                trace_file.display(),
                log.display()
            );
        }
    }
    if host.len() != guest.len() {
        bail!(
            "{} calls on the host, {} on Evergreen (traces: {} and {})",
            host.len(),
            guest.len(),
            trace_file.display(),
            log.display()
        );
    }
    Ok(format!(
        ": the same {} system calls and results as strace -f on the host",
        host.len()
    ))
}

/// The calls Linux's vDSO answers in user space.
const VDSO_CALLS: [&str; 4] = ["clock_gettime", "gettimeofday", "time", "getcpu"];

/// One traced call: its name and its outcome (`ok`, `?` for a call that does not return, or
/// `-1 ENAME`), the parts that do not depend on addresses or ids.
fn parse_call(line: &str) -> Option<(String, String)> {
    let line = line.trim();
    let open = line.find('(')?;
    let name = &line[..open];
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    let (_, result) = line.rsplit_once(" = ")?;
    let result = result.trim();
    let outcome = if result == "?" {
        "?".to_owned()
    } else if let Some(rest) = result.strip_prefix("-1 ") {
        format!("-1 {}", rest.split_whitespace().next().unwrap_or(""))
    } else {
        "ok".to_owned()
    };
    Some((name.to_owned(), outcome))
}

/// The program's output and status from the serial log: the lines between the kernel's
/// `init: running PATH` and `init: PATH exited with status N`, log lines left out.
pub(super) fn guest_run(lines: &[String], path: &str) -> Result<(String, u32), anyhow::Error> {
    let start_marker = format!("init: running {path}");
    let end_marker = format!("init: {path} exited with status ");
    if let Some(leak) = lines
        .iter()
        .find(|l| l.contains("init: memory not returned"))
    {
        bail!("the program's memory was not returned: {leak}");
    }
    let start = lines
        .iter()
        .position(|l| l.contains(&start_marker))
        .with_context(|| format!("the kernel never said `{start_marker}`"))?;
    let mut out = String::new();
    for line in &lines[start + 1..] {
        if let Some(rest) = line.split_once(&end_marker).map(|(_, r)| r) {
            let status = rest
                .split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("no status in `{line}`"))?;
            return Ok((out, status));
        }
        if is_log_line(line) {
            continue;
        }
        out.push_str(line.trim_end_matches('\r'));
        out.push('\n');
    }
    bail!("the program never ended (no `{end_marker}N` line)")
}

/// Whether a serial line is the kernel's log (`[    0.123456 0] [INFO ] ...`).
fn is_log_line(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with('[') && line.contains("] [")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_is_cut_out_of_the_log() {
        let lines: Vec<String> = [
            "[    0.1 0] [INFO ] init: running /boot/x",
            "hello\r",
            "[    0.2 1] [INFO ] cpu 1 online",
            "",
            "bye",
            "[    0.3 0] [INFO ] init: /boot/x exited with status 7 (Status(7))",
            "after",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let (out, status) = guest_run(&lines, "/boot/x").expect("a run");
        assert_eq!(out, "hello\n\nbye\n");
        assert_eq!(status, 7);
        assert!(guest_run(&lines[..3], "/boot/x").is_err());
        assert!(guest_run(&lines, "/boot/y").is_err());
    }

    #[test]
    fn traced_calls_keep_names_and_outcomes_only() {
        assert_eq!(
            parse_call("ioctl(1, TIOCGWINSZ, 0x7ffd)    = -1 ENOTTY (Inappropriate ioctl)"),
            Some(("ioctl".into(), "-1 ENOTTY".into()))
        );
        assert_eq!(
            parse_call("writev(1, [{iov_base=\"a = b\"}], 2) = 22"),
            Some(("writev".into(), "ok".into()))
        );
        assert_eq!(
            parse_call("exit_group(7)                           = ?"),
            Some(("exit_group".into(), "?".into()))
        );
        assert_eq!(parse_call("+++ exited with 7 +++"), None);
    }

    #[test]
    fn the_command_line_passes_the_arguments_after_dashes() {
        let p = UserProgram {
            program: Program::C("hello.c"),
            args: &["a", "b"],
            guest_only: None,
            strace: false,
            cpus: 2,
        };
        assert_eq!(p.cmdline(), "test=exec init=/boot/hello -- a b");
        assert_eq!(p.guest_path(), "/boot/hello");
    }
}
