//! `cargo run -- exec -- CMD ARGS…`: boots Evergreen headless, runs one static program as
//! init, prints what it writes, and exits with its exit status (128 + the signal if it was
//! killed), like running the command on the host.
//!
//! CMD is a path to a static executable on the host (it goes into the image as a module), or
//! `busybox`, or the name of a busybox applet (`echo`, `seq`, …), run by the host's static
//! busybox (`BUSYBOX=path` picks another). Until Evergreen has its initramfs, those are the
//! programs it can find.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context, Result, bail};

use crate::{
    build::{self, Component, Profile},
    image,
    payload::{self, ModuleFile},
    qemu::{Qemu, RunOptions},
    watch::{self, Outcome},
};

/// What `exec` runs and how.
pub struct ExecRequest<'a> {
    /// The command and its arguments.
    pub command: &'a [String],
    /// Print every system call (the kernel's `strace`) on stderr.
    pub strace: bool,
    /// CPUs and memory of the machine.
    pub smp: u8,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Give up after this long.
    pub timeout: Duration,
    /// Build with the dev profile.
    pub profile: Profile,
}

/// The program file and the argv after argv[0].
fn resolve(command: &[String]) -> Result<(PathBuf, Vec<String>)> {
    let Some((cmd, rest)) = command.split_first() else {
        bail!("no command given: cargo run -- exec -- CMD [ARGS...]");
    };
    if cmd.contains('/') {
        let path = PathBuf::from(cmd);
        if !path.is_file() {
            bail!("{cmd}: no such file");
        }
        return Ok((path, rest.to_vec()));
    }
    let busybox = std::env::var_os("BUSYBOX")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("/bin/busybox"), PathBuf::from);
    if !busybox.is_file() {
        bail!(
            "{cmd}: not a path, and no busybox at {} to run it (install busybox-static, as \
             scripts/setup.sh does, or set BUSYBOX=path)",
            busybox.display()
        );
    }
    let mut args = Vec::new();
    if cmd != "busybox" {
        args.push(cmd.clone());
    }
    args.extend(rest.iter().cloned());
    Ok((busybox, args))
}

/// Runs the request; the exit code is the program's.
pub fn run(request: &ExecRequest<'_>) -> Result<ExitCode> {
    let (program, args) = resolve(request.command)?;
    if let Some(bad) = args
        .iter()
        .find(|a| a.is_empty() || a.contains(char::is_whitespace))
    {
        bail!(
            "argument {bad:?}: the kernel command line cannot pass empty arguments or ones with spaces yet"
        );
    }
    let module = ModuleFile::from_host_file(&program)?;
    let guest = format!("/boot/{}", module.file_name);
    let trace = if request.strace { " strace" } else { "" };
    let mut cmdline = format!("init={guest}{trace}");
    if !args.is_empty() {
        cmdline.push_str(" -- ");
        cmdline.push_str(&args.join(" "));
    }
    let qemu = Qemu::locate()?;
    let kernel_path = build::build(Component::Kernel, request.profile)?;
    let loader = payload::our_loader(&build::build(Component::Loader, request.profile)?)?;
    let kernel = std::fs::read(&kernel_path)
        .with_context(|| format!("reading {}", kernel_path.display()))?;
    let target = build::target_dir()?;
    let image_path = target.join("exec.img");
    let log = target.join("exec.log");
    let spec = payload::standard_image(&loader, kernel, &cmdline, &[module])?;
    image::write_image(&spec, &image_path)?;
    let _ = std::fs::remove_file(&log);
    let mut opts = RunOptions::headless(image_path, log.clone());
    opts.smp = request.smp;
    opts.memory_mib = request.memory_mib;
    let mut running = qemu.spawn(&opts)?;
    let start_marker = format!("init: running {guest}");
    let end_marker = format!("init: {guest} exited with status ");
    let (mut started, mut status, mut errors) = (false, None, Vec::new());
    let mut stdout = std::io::stdout();
    let outcome = watch::watch(
        &mut running.child,
        Some(&log),
        Some(request.timeout),
        |line| {
            let line = line.trim_end_matches('\r');
            if let Some(rest) = line.split_once(&end_marker).map(|(_, r)| r) {
                status = rest
                    .split_whitespace()
                    .next()
                    .and_then(|s| s.parse::<u8>().ok());
                return true;
            }
            if line.contains(&start_marker) {
                started = true;
            } else if let Some(call) = line.strip_prefix("strace: ") {
                eprintln!("{call}");
            } else if line.trim_start().starts_with('[') && line.contains("] [") {
                if line.contains("[ERROR]") || (started && line.contains("[WARN ]")) {
                    errors.push(line.to_owned());
                }
            } else if started {
                let _ = writeln!(stdout, "{line}");
            }
            false
        },
    )?;
    let _ = running.child.kill();
    let _ = running.child.wait();
    match (outcome, status) {
        (_, Some(code)) => Ok(ExitCode::from(code)),
        (Outcome::TimedOut, None) => bail!(
            "{} did not finish within {} s (see {})",
            request.command[0],
            request.timeout.as_secs(),
            show(&log)
        ),
        (_, None) => {
            for e in &errors {
                eprintln!("{e}");
            }
            bail!(
                "{} did not run (the kernel's log: {})",
                request.command[0],
                show(&log)
            )
        }
    }
}

fn show(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn commands_resolve_to_a_file_and_its_arguments() {
        assert!(resolve(&[]).is_err());
        assert!(resolve(&strings(&["/no/such/program"])).is_err());
        let (file, args) = resolve(&strings(&["/bin/sh", "-c", "x"])).expect("a host file");
        assert_eq!(file, PathBuf::from("/bin/sh"));
        assert_eq!(args, strings(&["-c", "x"]));
        if Path::new("/bin/busybox").is_file() && std::env::var_os("BUSYBOX").is_none() {
            let (file, args) = resolve(&strings(&["seq", "1", "3"])).expect("an applet");
            assert_eq!(file, PathBuf::from("/bin/busybox"));
            assert_eq!(args, strings(&["seq", "1", "3"]));
            let (_, args) = resolve(&strings(&["busybox", "true"])).expect("busybox itself");
            assert_eq!(args, strings(&["true"]));
        }
    }
}
