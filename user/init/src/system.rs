//! Bringing the system up, as a small Linux's init does: `/tmp` on a tmpfs, the host name
//! from `/etc/hostname`, `/etc/rc` if there is one, then a login shell (`sh -l` with job
//! control, and the `motd` before it) on each terminal — COM1 (`/dev/ttyS0`) and the screen
//! (`/dev/tty1`) — each in a session of its own with that terminal as its controlling
//! terminal, started again when it ends. Meanwhile init reaps every orphan.
//!
//! Shutting down: busybox's `halt`, `poweroff` and `reboot` ask init with `SIGUSR1`,
//! `SIGUSR2` and `SIGTERM` (and the kernel sends `SIGINT` for Ctrl-Alt-Del). Init then asks
//! every process to end (`SIGTERM`), gives them a moment, ends the rest (`SIGKILL`), and
//! calls `reboot(2)`.

use std::{
    ffi::CString,
    io::{self, Write},
    process::Command,
    sync::atomic::{AtomicI32, Ordering},
    time::{Duration, Instant},
};

/// The terminals that get a shell, with the `TERM` each gets.
const TERMINALS: [(&str, &str); 2] = [("/dev/ttyS0", "vt100"), ("/dev/tty1", "linux")];
/// The script run once at boot, if present.
const RC: &str = "/etc/rc";
/// Shown on each terminal before its shell starts.
const MOTD: &str = "/etc/motd";
/// A shell that ends sooner than this after starting is restarted only after a pause, so a
/// broken one cannot take the CPU.
const QUICK_EXIT: Duration = Duration::from_secs(2);

/// The signal that asked for a shutdown (0: none yet).
static REQUEST: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_request(sig: libc::c_int) {
    REQUEST.store(sig, Ordering::SeqCst);
}

/// A running shell: its pid, its terminal, when it started.
struct Shell {
    pid: i32,
    terminal: usize,
    started: Instant,
}

/// Runs the system; never returns.
pub fn run() -> ! {
    for sig in [libc::SIGUSR1, libc::SIGUSR2, libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe; no
        // SA_RESTART, so a blocked `waitpid` returns EINTR and the loop sees the request.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_request as *const () as usize;
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
    mount_tmp();
    set_hostname();
    if std::path::Path::new(RC).exists() {
        let status = Command::new("/bin/sh")
            .arg(RC)
            .env("PATH", crate::PATH)
            .status();
        if let Err(error) = status {
            eprintln!("init: {RC}: {error}");
        }
    }
    let mut shells: Vec<Shell> = (0..TERMINALS.len())
        .filter_map(|t| {
            start_shell(t).map(|pid| Shell {
                pid,
                terminal: t,
                started: Instant::now(),
            })
        })
        .collect();
    loop {
        let request = REQUEST.load(Ordering::SeqCst);
        if request != 0 {
            shut_down(request);
        }
        let mut status = 0;
        // SAFETY: `status` is a live, writable c_int for the call.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid <= 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) {
                // No child at all (every terminal failed): wait for a request.
                std::thread::sleep(Duration::from_millis(500));
            }
            continue;
        }
        if let Some(i) = shells.iter().position(|s| s.pid == pid) {
            let ended = shells.remove(i);
            if ended.started.elapsed() < QUICK_EXIT {
                std::thread::sleep(QUICK_EXIT);
            }
            if REQUEST.load(Ordering::SeqCst) == 0
                && let Some(pid) = start_shell(ended.terminal)
            {
                shells.push(Shell {
                    pid,
                    terminal: ended.terminal,
                    started: Instant::now(),
                });
            }
        }
    }
}

/// Mounts a tmpfs on `/tmp` (world-writable, sticky).
fn mount_tmp() {
    let (fstype, target, options) = (c"tmpfs", c"/tmp", c"mode=1777");
    // SAFETY: the strings are NUL-terminated and outlive the call.
    let result = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            options.as_ptr().cast(),
        )
    };
    if result != 0 {
        eprintln!(
            "init: mounting tmpfs on /tmp: {}",
            io::Error::last_os_error()
        );
    }
}

/// Sets the host name from `/etc/hostname` (else `evergreen`).
fn set_hostname() {
    let name = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let name = name.trim();
    let name = if name.is_empty() { "evergreen" } else { name };
    // SAFETY: the pointer and length describe `name`'s bytes, alive for the call.
    if unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) } != 0 {
        eprintln!("init: sethostname: {}", io::Error::last_os_error());
    }
}

/// Starts a login shell on terminal `t`; its pid, or `None` if that cannot be done.
///
/// `fork` and `execve` by hand: the child must become a session leader and open its
/// terminal between the two, and everything it touches is prepared before the fork.
fn start_shell(t: usize) -> Option<i32> {
    let (device, term) = TERMINALS[t];
    if !std::path::Path::new(device).exists() {
        return None;
    }
    let cstr = |s: &str| CString::new(s).expect("no NUL in init's constant strings");
    let path = cstr(device);
    let motd = std::fs::read(MOTD).unwrap_or_default();
    let shell = cstr("/bin/sh");
    let argv = [cstr("-sh")];
    let envp = [
        cstr(&format!("PATH={}", crate::PATH)),
        cstr(&format!("HOME={}", crate::HOME)),
        cstr(&format!("TERM={term}")),
        cstr("SHELL=/bin/sh"),
        cstr("USER=root"),
        cstr("LOGNAME=root"),
    ];
    let home = cstr(crate::HOME);
    let argv_ptrs: Vec<*const libc::c_char> = argv
        .iter()
        .map(|a| a.as_ptr())
        .chain([std::ptr::null()])
        .collect();
    let envp_ptrs: Vec<*const libc::c_char> = envp
        .iter()
        .map(|a| a.as_ptr())
        .chain([std::ptr::null()])
        .collect();
    // SAFETY: init is single-threaded, so the child may run anything; it only makes system
    // calls on memory prepared above, and ends in execve or _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        eprintln!(
            "init: a shell on {device}: fork: {}",
            io::Error::last_os_error()
        );
        return None;
    }
    if pid > 0 {
        return Some(pid);
    }
    // SAFETY: as above: the child's system calls take pointers into live memory.
    unsafe {
        for sig in [libc::SIGUSR1, libc::SIGUSR2, libc::SIGTERM, libc::SIGINT] {
            libc::signal(sig, libc::SIG_DFL);
        }
        libc::setsid();
        // A session leader without a terminal acquires the one it opens.
        let fd = libc::open(path.as_ptr(), libc::O_RDWR);
        if fd < 0 {
            libc::_exit(126);
        }
        libc::ioctl(fd, libc::TIOCSCTTY, 0);
        for target in 0..3 {
            libc::dup2(fd, target);
        }
        if fd > 2 {
            libc::close(fd);
        }
        libc::chdir(home.as_ptr());
        libc::write(1, motd.as_ptr().cast(), motd.len());
        libc::execve(shell.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr());
        libc::_exit(127)
    }
}

/// Ends every process and then the machine, as `request` (the signal) asked.
fn shut_down(request: i32) -> ! {
    let (what, command) = match request {
        libc::SIGUSR1 => ("halt", libc::LINUX_REBOOT_CMD_HALT),
        libc::SIGUSR2 => ("power off", libc::LINUX_REBOOT_CMD_POWER_OFF),
        _ => ("reboot", libc::LINUX_REBOOT_CMD_RESTART),
    };
    let _ = writeln!(io::stderr(), "init: the system is going down to {what}");
    // SAFETY: plain system calls with no pointers besides `status`, a live c_int.
    unsafe {
        libc::kill(-1, libc::SIGTERM);
        libc::kill(-1, libc::SIGCONT);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            let mut status = 0;
            if libc::waitpid(-1, &mut status, libc::WNOHANG) < 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        libc::kill(-1, libc::SIGKILL);
        while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {}
        libc::sync();
        libc::reboot(command);
    }
    eprintln!("init: reboot(2): {}", io::Error::last_os_error());
    std::process::exit(1)
}
