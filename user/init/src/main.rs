//! Evergreen's `/sbin/init`: the first program, pid 1.
//!
//! Without a command it brings the system up ([`system`]): file systems, host name,
//! `/etc/rc`, and a login shell on each terminal, restarted when it ends, until `poweroff`,
//! `reboot` or `halt`.
//!
//! With a command — argv[1..] if init was given arguments, else the NUL-terminated arguments
//! in `/etc/evergreen/command` (what `cargo run -- exec` writes) — it runs that one command
//! and, when it ends, exits with its status; the kernel logs the status and powers off. It runs with
//! `PATH` and `HOME` set for a root shell (the kernel's `TERM` is kept) and init's standard
//! input and output. Meanwhile init reaps every child that ends, since orphans are reparented
//! to pid 1 and would otherwise stay zombies. A command that cannot be found ends init with
//! status 127, one that cannot be run with 126 (as shells do); one killed by a signal with
//! 128 + the signal.

mod system;

use std::{
    ffi::{CString, OsStr, OsString},
    io,
    os::unix::{
        ffi::{OsStrExt, OsStringExt},
        process::{CommandExt, ExitStatusExt},
    },
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
};

/// The search path of every command init runs.
pub(crate) const PATH: &str = "/sbin:/usr/sbin:/bin:/usr/bin";
/// Root's home directory.
pub(crate) const HOME: &str = "/root";
/// Where the runner leaves the command for `cargo run -- exec`.
const COMMAND_FILE: &str = "/etc/evergreen/command";
/// What runs when nothing else is asked for.
const SHELL: &str = "/bin/sh";

fn main() {
    if std::process::id() == 1 {
        mount_pseudo_filesystems();
    }
    let argv = command(
        std::env::args_os().skip(1).collect(),
        std::fs::read(COMMAND_FILE).ok(),
    );
    match argv {
        Some(argv) => std::process::exit(run(&argv)),
        None if std::process::id() == 1 => system::run(),
        // Not pid 1 and nothing to run (a test on the host): the shell, as before.
        None => std::process::exit(run(&[SHELL.into()])),
    }
}

/// The command to run: init's own arguments, else the command file's; `None` for none.
fn command(args: Vec<OsString>, file: Option<Vec<u8>>) -> Option<Vec<OsString>> {
    if !args.is_empty() {
        return Some(args);
    }
    let from_file = file
        .map(|bytes| parse_command_file(&bytes))
        .unwrap_or_default();
    (!from_file.is_empty()).then_some(from_file)
}

/// The arguments of a command file: each one ends with a NUL (a missing last NUL is
/// forgiven); an argument may be empty.
fn parse_command_file(bytes: &[u8]) -> Vec<OsString> {
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes
        .split(|&b| b == 0)
        .map(|arg| OsString::from_vec(arg.to_vec()))
        .collect()
}

/// The file `name` names: itself when it holds a `/`, else the first file of that name in
/// `search` (a `PATH`).
fn lookup(name: &OsStr, search: &str) -> Option<PathBuf> {
    if name.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(name));
    }
    if name.is_empty() {
        return None;
    }
    search
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.is_file())
}

/// Runs `argv`, reaping every child meanwhile, and returns the status init exits with.
fn run(argv: &[OsString]) -> i32 {
    let name = argv[0].to_string_lossy();
    let Some(program) = lookup(&argv[0], PATH) else {
        eprintln!("init: {name}: not found");
        return 127;
    };
    let spawned = Command::new(&program)
        .arg0(&argv[0])
        .args(&argv[1..])
        .env("PATH", PATH)
        .env("HOME", HOME)
        .spawn();
    let child = match spawned {
        Ok(child) => child,
        Err(error) => {
            let (why, status) = match error.kind() {
                io::ErrorKind::NotFound => ("not found".to_owned(), 127),
                io::ErrorKind::PermissionDenied => ("permission denied".to_owned(), 126),
                _ => (error.to_string(), 126),
            };
            eprintln!("init: {name}: {why}");
            return status;
        }
    };
    let pid = i32::try_from(child.id()).expect("a pid fits in pid_t");
    match reap_until(pid) {
        Ok(status) => exit_code(status),
        Err(error) => {
            eprintln!("init: waiting for {name}: {error}");
            1
        }
    }
}

/// Reaps every child that ends until `pid` does, and returns how `pid` ended.
fn reap_until(pid: i32) -> io::Result<ExitStatus> {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a live, writable c_int for the duration of the call, and
        // waitpid writes nothing else.
        let reaped = unsafe { libc::waitpid(-1, &mut status, 0) };
        if reaped == pid {
            return Ok(ExitStatus::from_raw(status));
        }
        if reaped < 0 {
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }
}

/// The status a shell reports for `status`: the exit code, or 128 + the killing signal.
fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    }
}

/// Mounts `/proc`, `/sys` and `/dev` as Linux's init would. A kernel without `mount(2)`
/// (`ENOSYS`) or without the file system (`ENODEV`), or one that mounted it already
/// (`EBUSY`), is not an error: init goes on quietly, so the same init works before and after
/// Evergreen has these file systems.
fn mount_pseudo_filesystems() {
    for (fstype, target) in [
        ("proc", "/proc"),
        ("sysfs", "/sys"),
        ("devtmpfs", "/dev"),
        ("devpts", "/dev/pts"),
    ] {
        if let Err(error) = mount(fstype, target)
            && !matches!(
                error.raw_os_error(),
                Some(libc::ENOSYS | libc::ENODEV | libc::EBUSY)
            )
        {
            eprintln!("init: mounting {fstype} on {target}: {error}");
        }
    }
}

/// `mount(fstype, target, fstype, 0, NULL)`.
pub(crate) fn mount(fstype: &str, target: &str) -> io::Result<()> {
    let fstype = CString::new(fstype).expect("no NUL in a file system name");
    let target = CString::new(target).expect("no NUL in a mount point");
    // SAFETY: the three strings are NUL-terminated and outlive the call; a null `data` is
    // allowed for these file systems.
    let result = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn arguments_win_then_the_file_then_the_shell() {
        let file = Some(b"ls\0-l\0".to_vec());
        assert_eq!(
            command(os(&["echo", "hi"]), file.clone()),
            Some(os(&["echo", "hi"]))
        );
        assert_eq!(command(Vec::new(), file), Some(os(&["ls", "-l"])));
        assert_eq!(command(Vec::new(), Some(Vec::new())), None);
        assert_eq!(command(Vec::new(), None), None);
    }

    #[test]
    fn command_files_keep_empty_and_spaced_arguments() {
        assert_eq!(
            parse_command_file(b"sh\0-c\0echo a  b\0\0"),
            os(&["sh", "-c", "echo a  b", ""])
        );
        assert_eq!(parse_command_file(b"true"), os(&["true"]), "no final NUL");
        assert!(parse_command_file(b"\0").is_empty());
    }

    #[test]
    fn lookup_searches_the_path_for_bare_names_only() {
        let dir = std::env::temp_dir().join(format!("evergreen-init-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("b")).expect("mkdir");
        std::fs::write(dir.join("b/prog"), b"").expect("write");
        let search = format!("{}/a:{}/b", dir.display(), dir.display());
        assert_eq!(lookup("prog".as_ref(), &search), Some(dir.join("b/prog")));
        assert_eq!(lookup("nothing".as_ref(), &search), None);
        assert_eq!(lookup("".as_ref(), &search), None);
        assert_eq!(lookup("./x".as_ref(), &search), Some(PathBuf::from("./x")));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn statuses_are_what_a_shell_reports() {
        assert_eq!(run(&os(&["/no/such/program"])), 127);
        assert_eq!(run(&os(&["no-such-program-anywhere"])), 127);
        assert_eq!(run(&os(&["/"])), 126, "a directory cannot be run");
        assert_eq!(run(&os(&["sh", "-c", "exit 3"])), 3);
        assert_eq!(run(&os(&["sh", "-c", "kill -9 $$"])), 128 + 9);
    }
}
