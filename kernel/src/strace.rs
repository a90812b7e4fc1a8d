//! Built-in tracing (`strace` on the kernel command line): every system call of the user
//! program, printed on serial as `strace -f` prints it — the name, the arguments (strings
//! for the buffers and paths the common calls take, numbers otherwise), and the result
//! (`= 3`, `= 0x7f0000000000`, `= -1 ENOENT (No such file or directory)`). Each line starts
//! with `strace: [pid N] ` (the thread id, as `strace -f` shows it once there are several) so
//! it can be told from the program's own output.

use alloc::{format, string::String, vec::Vec};
use core::sync::atomic::{AtomicBool, Ordering};

use linux_raw_sys::general as g;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns tracing on.
pub fn enable() {
    ENABLED.store(true, Ordering::Release);
}

/// Whether calls are traced.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Acquire)
}

/// How an argument is shown.
#[derive(Clone, Copy)]
enum Arg {
    /// A signed number.
    Int,
    /// An address (`NULL` for 0).
    Ptr,
    /// A buffer whose length is argument `n`, shown as a string.
    Buf(usize),
    /// A NUL-terminated string (a path or name).
    Str,
}

/// The arguments of the calls shown in detail; others show six hex words' worth as strace
/// does for unknown calls (their registers).
fn signature(nr: u32) -> Option<&'static [Arg]> {
    use Arg::*;
    Some(match nr {
        g::__NR_write => &[Int, Buf(2), Int],
        g::__NR_read => &[Int, Ptr, Int],
        g::__NR_writev | g::__NR_readv => &[Int, Ptr, Int],
        g::__NR_openat => &[Int, Str, Int, Int],
        g::__NR_open | g::__NR_access | g::__NR_stat | g::__NR_lstat => &[Str, Int],
        g::__NR_newfstatat => &[Int, Str, Ptr, Int],
        g::__NR_fstat => &[Int, Ptr],
        g::__NR_close | g::__NR_exit | g::__NR_exit_group => &[Int],
        g::__NR_brk => &[Ptr],
        g::__NR_mmap => &[Ptr, Int, Int, Int, Int, Int],
        g::__NR_munmap => &[Ptr, Int],
        g::__NR_mprotect => &[Ptr, Int, Int],
        g::__NR_arch_prctl => &[Int, Ptr],
        g::__NR_set_tid_address => &[Ptr],
        g::__NR_ioctl => &[Int, Int, Ptr],
        g::__NR_uname => &[Ptr],
        g::__NR_getrandom => &[Ptr, Int, Int],
        g::__NR_clock_gettime | g::__NR_clock_getres => &[Int, Ptr],
        g::__NR_nanosleep | g::__NR_sigaltstack => &[Ptr, Ptr],
        g::__NR_rt_sigaction | g::__NR_rt_sigprocmask => &[Int, Ptr, Ptr, Int],
        g::__NR_poll => &[Ptr, Int, Int],
        g::__NR_prlimit64 => &[Int, Int, Ptr, Ptr],
        g::__NR_getpid
        | g::__NR_gettid
        | g::__NR_getuid
        | g::__NR_geteuid
        | g::__NR_getgid
        | g::__NR_getegid
        | g::__NR_getppid => &[],
        _ => return None,
    })
}

/// Calls whose result is an address.
fn returns_address(nr: u32) -> bool {
    matches!(nr, g::__NR_brk | g::__NR_mmap)
}

/// Formats the call `name(args`, reading strings from user memory as the call starts.
pub fn call(nr: u64, args: [u64; 6]) -> String {
    let name = crate::syscall_names::name(nr).unwrap_or("syscall");
    let shown: Vec<String> = match u32::try_from(nr).ok().and_then(signature) {
        Some(kinds) => kinds
            .iter()
            .enumerate()
            .map(|(i, kind)| show(*kind, args[i], &args))
            .collect(),
        None => args.iter().map(|a| format!("{a:#x}")).collect(),
    };
    format!("{name}({}", shown.join(", "))
}

fn show(kind: Arg, value: u64, args: &[u64; 6]) -> String {
    match kind {
        Arg::Int => format!("{}", value as i64),
        Arg::Ptr if value == 0 => "NULL".into(),
        Arg::Ptr => format!("{value:#x}"),
        Arg::Buf(len) => {
            let len = args[len] as usize;
            let mut bytes = alloc::vec![0u8; len.min(32)];
            match hal::user::copy_from_user(value, &mut bytes) {
                Ok(()) => quote(&bytes, len > 32),
                Err(_) => format!("{value:#x}"),
            }
        }
        Arg::Str => match hal::user::read_cstr(value, 4096) {
            Ok(bytes) => quote(&bytes, false),
            Err(_) => format!("{value:#x}"),
        },
    }
}

/// A string as strace quotes it (C escapes; `...` when cut).
fn quote(bytes: &[u8], cut: bool) -> String {
    let mut out = String::from("\"");
    for &b in bytes {
        match b {
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..0x7f => out.push(b as char),
            _ => out.push_str(&format!("\\{b:o}")),
        }
    }
    out.push('"');
    if cut {
        out.push_str("...");
    }
    out
}

/// Prints the finished call with its raw result (`rax`).
pub fn result(tid: u32, nr: u64, call: &str, rax: u64) {
    let value = rax as i64;
    let shown = if (-4095..0).contains(&value) {
        let errno = (-value) as u32;
        match crate::errno_names::describe(errno) {
            (Some(name), Some(message)) => format!("-1 {name} ({message})"),
            (Some(name), None) => format!("-1 {name}"),
            _ => format!("-1 errno {errno}"),
        }
    } else if u32::try_from(nr).is_ok_and(returns_address) {
        format!("{rax:#x}")
    } else {
        format!("{value}")
    };
    hal::serial::write_fmt(format_args!("strace: [pid {tid}] {call}) = {shown}\n"));
}

/// Prints a call that does not return (`exit_group`), and how the program ended.
pub fn no_return(tid: u32, call: &str, status: u8) {
    hal::serial::write_fmt(format_args!(
        "strace: [pid {tid}] {call}) = ?\nstrace: [pid {tid}] +++ exited with {status} +++\n"
    ));
}
