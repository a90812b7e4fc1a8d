//! `cargo run -- exec -- CMD ARGS…`: boots Evergreen headless, runs one static program as
//! init, prints what it writes, and exits with its exit status (128 + the signal if it was
//! killed), like running the command on the host.
//!
//! The image boots with the standard initramfs (`runner::rootfs`): the kernel runs
//! `/sbin/init`, which runs the command written to `/etc/evergreen/command` and exits with its
//! status. CMD is a path to a static executable on the host (copied to `/usr/local/bin/NAME`),
//! or a name looked up in the image's `PATH`: `busybox`, a busybox applet (`echo`, `seq`, …;
//! the host's static busybox, `BUSYBOX=path` picks another) or a program put there with
//! `--add`. Arguments go in the command file, so they may hold spaces.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context, Result, bail};

use crate::{
    build::{self, Component, Profile},
    image, payload,
    qemu::{Qemu, RunOptions},
    rootfs::{self, AddSpec, Busybox, Rootfs},
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
    /// Host files and folders to copy into the initramfs (`--add`).
    pub adds: &'a [AddSpec],
}

/// The program a command names.
#[derive(Debug, PartialEq, Eq)]
enum Program {
    /// A host file (the command held a `/`): copied to [`HOST_PROGRAMS`]`/NAME`.
    Host(PathBuf),
    /// A bare name, run from the image's `PATH` (busybox applets, `--add`ed programs).
    InPath(String),
}

/// Where host programs go in the initramfs.
const HOST_PROGRAMS: &str = "/usr/local/bin";

/// The program of `command`, checked to exist when it is a host file, and the arguments
/// after argv[0].
fn resolve(command: &[String]) -> Result<(Program, &[String])> {
    let Some((cmd, rest)) = command.split_first() else {
        bail!("no command given: cargo run -- exec -- CMD [ARGS...]");
    };
    if !cmd.contains('/') {
        return Ok((Program::InPath(cmd.clone()), rest));
    }
    let path = PathBuf::from(cmd);
    if !path.is_file() {
        bail!("{cmd}: no such file on the host");
    }
    Ok((Program::Host(path), rest))
}

/// Puts `program` into `rootfs` (a host file at [`HOST_PROGRAMS`]`/NAME`; a bare name must be
/// in the image's `PATH`) and writes the command file init runs.
fn install(rootfs: &mut Rootfs, program: &Program, args: &[String]) -> Result<()> {
    let argv0 = match program {
        Program::Host(path) => {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .with_context(|| format!("{} has no UTF-8 file name", path.display()))?;
            let guest = format!("{HOST_PROGRAMS}/{name}");
            rootfs::add_host_path(&mut rootfs.tree, path, &guest)?;
            // A dynamically linked program comes with what it needs, as --add-with-libs.
            rootfs::add_libraries(&mut rootfs.tree, path)?;
            guest
        }
        Program::InPath(name) if rootfs::in_path(&rootfs.tree, name) => name.clone(),
        Program::InPath(name) if !rootfs.has_busybox => {
            bail!("{name}: not a path, and {}", Busybox::missing_message())
        }
        Program::InPath(name) => bail!(
            "{name}: not a busybox applet or a file in the image's PATH ({}); give a host \
             path (./{name}) or --add it",
            rootfs::PATH.join(":")
        ),
    };
    let argv: Vec<String> = std::iter::once(argv0).chain(args.iter().cloned()).collect();
    rootfs
        .tree
        .file(rootfs::COMMAND_FILE, rootfs::command_file(&argv)?, 0o644)?;
    Ok(())
}

/// Runs the request; the exit code is the program's.
pub fn run(request: &ExecRequest<'_>) -> Result<ExitCode> {
    let (program, args) = resolve(request.command)?;
    let mut rootfs = Rootfs::gather(request.adds)?;
    install(&mut rootfs, &program, args)?;
    let guest = rootfs::INIT_PATH;
    let trace = if request.strace { " strace" } else { "" };
    let cmdline = format!("init={guest}{trace}");
    let qemu = Qemu::locate()?;
    let kernel_path = build::build(Component::Kernel, request.profile)?;
    let loader = payload::our_loader(&build::build(Component::Loader, request.profile)?)?;
    let kernel = std::fs::read(&kernel_path)
        .with_context(|| format!("reading {}", kernel_path.display()))?;
    let target = build::target_dir()?;
    let image_path = target.join("exec.img");
    let log = target.join("exec.log");
    let spec = payload::standard_image(&loader, kernel, &cmdline, &[rootfs::module(&rootfs.tree)])?;
    image::write_image(&spec.with_factory_release()?.booting_slots(), &image_path)?;
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
    use crate::initramfs::Node;

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    fn rootfs(busybox: bool) -> Rootfs {
        let busybox = busybox.then(|| Busybox {
            data: b"busybox".to_vec(),
            applets: strings(&["bin/sh", "bin/echo", "usr/bin/seq"]),
        });
        Rootfs {
            tree: rootfs::standard_tree(b"init".to_vec(), busybox.as_ref()).expect("tree"),
            has_busybox: busybox.is_some(),
        }
    }

    fn command_file(rootfs: &Rootfs) -> Option<Vec<u8>> {
        match rootfs.tree.get(rootfs::COMMAND_FILE)? {
            Node::File { data, .. } => Some(data.clone()),
            _ => None,
        }
    }

    #[test]
    fn commands_resolve_to_a_host_file_or_a_name() {
        assert!(resolve(&[]).is_err());
        let missing = resolve(&strings(&["/no/such/program"])).expect_err("missing");
        assert!(missing.to_string().contains("no such file on the host"));
        let command = strings(&["/bin/sh", "-c", "x"]);
        let (program, args) = resolve(&command).expect("a host file");
        assert_eq!(program, Program::Host(PathBuf::from("/bin/sh")));
        assert_eq!(args, strings(&["-c", "x"]));
        let command = strings(&["seq", "1", "3"]);
        let (program, _) = resolve(&command).expect("a name");
        assert_eq!(program, Program::InPath("seq".into()));
    }

    #[test]
    fn a_host_program_goes_to_usr_local_bin() {
        let mut rootfs = rootfs(false);
        let program = Program::Host(PathBuf::from("/bin/sh"));
        install(&mut rootfs, &program, &strings(&["-c", "echo a  b"])).expect("installed");
        assert!(matches!(
            rootfs.tree.get("/usr/local/bin/sh"),
            Some(Node::File { .. })
        ));
        assert_eq!(
            command_file(&rootfs).expect("command file"),
            b"/usr/local/bin/sh\0-c\0echo a  b\0"
        );
        // A dynamically linked one brings its interpreter (and libraries) along.
        let data = std::fs::read("/bin/sh").expect("the host has /bin/sh");
        if let Some(interpreter) = rootfs::elf_interpreter(&data) {
            assert!(rootfs.tree.get(&interpreter).is_some(), "{interpreter}");
        }
    }

    #[test]
    fn names_must_be_in_the_image_path() {
        let mut rootfs = rootfs(true);
        install(
            &mut rootfs,
            &Program::InPath("seq".into()),
            &strings(&["-s", ","]),
        )
        .expect("applet");
        assert_eq!(
            command_file(&rootfs).expect("command file"),
            b"seq\0-s\0,\0"
        );
        let unknown =
            install(&mut rootfs, &Program::InPath("nope".into()), &[]).expect_err("not in PATH");
        assert!(
            unknown.to_string().contains("not a busybox applet"),
            "{unknown}"
        );
        let without = install(
            &mut self::rootfs(false),
            &Program::InPath("echo".into()),
            &[],
        )
        .expect_err("no busybox");
        assert!(without.to_string().contains("busybox-static"), "{without}");
    }
}
