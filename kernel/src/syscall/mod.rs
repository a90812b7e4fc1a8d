//! The Linux x86-64 system calls: numbers, arguments, results and errno values as Linux has
//! them (`linux-raw-sys`). Every argument is checked; a call this kernel does not have yet
//! returns `ENOSYS` and is logged once per number. Nothing a program passes can panic the
//! kernel: user memory is only reached through `hal::user`, which turns bad pointers into
//! `EFAULT`.
//!
//! The calls live by family: [`fs`] (files, pipes, descriptors), [`mm`] (memory), [`proc`]
//! (processes, threads, signals, futexes); the small ones (clocks, `uname`, randomness,
//! limits) are here.

mod fs;
mod mm;
mod net;
mod proc;
mod vfs;
mod xattr;

use alloc::vec;
use core::sync::atomic::{AtomicU64, Ordering};

use hal::{
    user::{self, UserPtr},
    usermode::UserContext,
};
use linux_raw_sys::{errno as e, general as g};

use crate::{process::Current, sched, signal::ERESTARTSYS};

/// What the thread does after a call.
pub enum Flow {
    /// Goes on (the result is in `rax`).
    Continue,
    /// The thread ends with this status (`exit`).
    ExitThread(u8),
    /// The whole process ends with this status (`exit_group`).
    ExitGroup(u8),
}

/// The longest single read, write or iovec total handled at once (Linux caps at about 2 GiB).
const MAX_IO: usize = 1 << 20;

/// A call's result: a value, or an errno.
type SysResult = Result<u64, u32>;

/// Handles the syscall the current thread just made.
pub fn handle(current: &Current, context: &mut UserContext) -> Flow {
    let r = context.regs;
    let (nr, a) = (r.rax, [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9]);
    let traced = crate::strace::enabled().then(|| crate::strace::call(nr, a));
    let (flow, result) = dispatch(current, context, nr, a);
    if let Flow::Continue = flow {
        context.regs.rax = match result {
            Ok(value) => value,
            Err(ERESTARTSYS) => {
                // Delivery decides: restart the call, or fail it with EINTR.
                current.thread.restart_nr.store(nr, Ordering::Relaxed);
                (-i64::from(e::EINTR)) as u64
            }
            Err(errno) => (-i64::from(errno)) as u64,
        };
    }
    if let Some(call) = traced {
        let tid = current.thread.tid;
        match flow {
            Flow::Continue => crate::strace::result(tid, nr, &call, context.regs.rax),
            Flow::ExitThread(status) | Flow::ExitGroup(status) => {
                crate::strace::no_return(tid, &call, status)
            }
        }
    }
    flow
}

fn dispatch(current: &Current, ctx: &mut UserContext, nr: u64, a: [u64; 6]) -> (Flow, SysResult) {
    let result: SysResult = match nr as u32 {
        _ if nr > u64::from(u32::MAX) => Err(e::ENOSYS),
        g::__NR_exit => return (Flow::ExitThread(a[0] as u8), Ok(0)),
        g::__NR_exit_group => return (Flow::ExitGroup(a[0] as u8), Ok(0)),
        g::__NR_read => fs::read(current, a[0], a[1], a[2]),
        g::__NR_write => fs::write(current, a[0], a[1], a[2]),
        g::__NR_readv => fs::readv(current, a[0], a[1], a[2]),
        g::__NR_writev => fs::writev(current, a[0], a[1], a[2]),
        g::__NR_pread64 => fs::pread(current, a[0], a[1], a[2], a[3]),
        g::__NR_pwrite64 => fs::pwrite(current, a[0], a[1], a[2], a[3]),
        g::__NR_open => fs::openat(current, g::AT_FDCWD as u64, a[0], a[1], a[2]),
        g::__NR_openat => fs::openat(current, a[0], a[1], a[2], a[3]),
        g::__NR_creat => fs::openat(
            current,
            g::AT_FDCWD as u64,
            a[0],
            u64::from(g::O_CREAT | g::O_WRONLY | g::O_TRUNC),
            a[1],
        ),
        g::__NR_close => fs::close(current, a[0]),
        g::__NR_lseek => fs::lseek(current, a[0], a[1], a[2]),
        g::__NR_dup => fs::dup(current, a[0]),
        g::__NR_dup2 => fs::dup3(current, a[0], a[1], 0, true),
        g::__NR_dup3 => fs::dup3(current, a[0], a[1], a[2], false),
        g::__NR_fcntl => fs::fcntl(current, a[0], a[1], a[2]),
        g::__NR_pipe => fs::pipe2(current, a[0], 0),
        g::__NR_pipe2 => fs::pipe2(current, a[0], a[1]),
        g::__NR_fstat => fs::fstat(current, a[0], a[1]),
        g::__NR_stat => fs::newfstatat(current, g::AT_FDCWD as u64, a[0], a[1], 0),
        g::__NR_lstat => fs::newfstatat(
            current,
            g::AT_FDCWD as u64,
            a[0],
            a[1],
            u64::from(g::AT_SYMLINK_NOFOLLOW),
        ),
        g::__NR_newfstatat => fs::newfstatat(current, a[0], a[1], a[2], a[3]),
        g::__NR_statx => fs::statx(current, a[0], a[1], a[2], a[3], a[4]),
        g::__NR_getdents64 => fs::getdents64(current, a[0], a[1], a[2]),
        g::__NR_getcwd => fs::getcwd(current, a[0], a[1]),
        g::__NR_chdir => fs::chdir(current, a[0]),
        g::__NR_fchdir => fs::fchdir(current, a[0]),
        g::__NR_mkdir => fs::mkdirat(current, g::AT_FDCWD as u64, a[0], a[1]),
        g::__NR_mkdirat => fs::mkdirat(current, a[0], a[1], a[2]),
        g::__NR_unlink => fs::unlinkat(current, g::AT_FDCWD as u64, a[0], 0),
        g::__NR_rmdir => fs::unlinkat(
            current,
            g::AT_FDCWD as u64,
            a[0],
            u64::from(g::AT_REMOVEDIR),
        ),
        g::__NR_unlinkat => fs::unlinkat(current, a[0], a[1], a[2]),
        g::__NR_rename => fs::renameat(
            current,
            g::AT_FDCWD as u64,
            a[0],
            g::AT_FDCWD as u64,
            a[1],
            0,
        ),
        g::__NR_renameat => fs::renameat(current, a[0], a[1], a[2], a[3], 0),
        g::__NR_renameat2 => fs::renameat(current, a[0], a[1], a[2], a[3], a[4]),
        g::__NR_fallocate => fs::fallocate(current, a[0], a[1], a[2], a[3]),
        g::__NR_symlink => fs::symlinkat(current, a[0], g::AT_FDCWD as u64, a[1]),
        g::__NR_symlinkat => fs::symlinkat(current, a[0], a[1], a[2]),
        g::__NR_link => fs::linkat(current, g::AT_FDCWD as u64, a[0], g::AT_FDCWD as u64, a[1]),
        g::__NR_linkat => fs::linkat(current, a[0], a[1], a[2], a[3]),
        g::__NR_readlink => fs::readlinkat(current, g::AT_FDCWD as u64, a[0], a[1], a[2]),
        g::__NR_readlinkat => fs::readlinkat(current, a[0], a[1], a[2], a[3]),
        g::__NR_access => fs::faccessat(current, g::AT_FDCWD as u64, a[0], a[1]),
        g::__NR_faccessat | g::__NR_faccessat2 => fs::faccessat(current, a[0], a[1], a[2]),
        g::__NR_chmod => fs::fchmodat(current, g::AT_FDCWD as u64, a[0], a[1]),
        g::__NR_fchmodat => fs::fchmodat(current, a[0], a[1], a[2]),
        g::__NR_fchmod => fs::fchmod(current, a[0], a[1]),
        g::__NR_chown | g::__NR_lchown | g::__NR_fchown | g::__NR_fchownat => Ok(0),
        g::__NR_utimensat => fs::utimensat(current, a[0], a[1], a[2], a[3]),
        g::__NR_truncate => fs::truncate(current, a[0], a[1]),
        g::__NR_ftruncate => fs::ftruncate(current, a[0], a[1]),
        g::__NR_fsync | g::__NR_fdatasync => fs::fsync(current, a[0]),
        g::__NR_sync => Ok(0),
        g::__NR_ioctl => fs::ioctl(current, a[0], a[1], a[2]),
        g::__NR_timerfd_create => fs::timerfd_create(current, a[0], a[1]),
        g::__NR_timerfd_settime => fs::timerfd_settime(current, a[0], a[1], a[2], a[3]),
        g::__NR_timerfd_gettime => fs::timerfd_gettime(current, a[0], a[1]),
        g::__NR_signalfd => fs::signalfd4(current, a[0], a[1], a[2], 0),
        g::__NR_signalfd4 => fs::signalfd4(current, a[0], a[1], a[2], a[3]),
        g::__NR_eventfd => fs::eventfd2(current, a[0], 0),
        g::__NR_eventfd2 => fs::eventfd2(current, a[0], a[1]),
        g::__NR_epoll_create if a[0] as i32 > 0 => fs::epoll_create1(current, 0),
        g::__NR_epoll_create => Err(e::EINVAL),
        g::__NR_epoll_create1 => fs::epoll_create1(current, a[0]),
        g::__NR_epoll_ctl => fs::epoll_ctl(current, a[0], a[1], a[2], a[3]),
        g::__NR_epoll_wait | g::__NR_epoll_pwait => {
            fs::epoll_wait(current, a[0], a[1], a[2], a[3] as i32 as i64)
        }
        g::__NR_poll => fs::poll(current, a[0], a[1], a[2] as i32 as i64),
        g::__NR_ppoll => fs::ppoll(current, a[0], a[1], a[2]),
        g::__NR_select => fs::select(current, a[0], a[1], a[2], a[3], a[4]),
        g::__NR_pselect6 => fs::pselect6(current, a[0], a[1], a[2], a[3], a[4]),
        g::__NR_umask => Ok(u64::from(
            current
                .process()
                .umask
                .swap(a[0] as u32 & 0o777, Ordering::Relaxed),
        )),
        g::__NR_sendfile => fs::sendfile(current, a[0], a[1], a[2], a[3]),
        g::__NR_socket => net::socket(current, a[0], a[1], a[2]),
        g::__NR_socketpair => net::socketpair(current, a[0], a[1], a[2], a[3]),
        g::__NR_bind => net::bind(current, a[0], a[1], a[2]),
        g::__NR_listen => net::listen(current, a[0], a[1]),
        g::__NR_accept => net::accept4(current, a[0], a[1], a[2], 0),
        g::__NR_accept4 => net::accept4(current, a[0], a[1], a[2], a[3]),
        g::__NR_connect => net::connect(current, a[0], a[1], a[2]),
        g::__NR_sendto => net::sendto(current, a),
        g::__NR_recvfrom => net::recvfrom(current, a),
        g::__NR_sendmsg => net::sendmsg(current, a[0], a[1], a[2]),
        g::__NR_recvmsg => net::recvmsg(current, a[0], a[1], a[2]),
        g::__NR_shutdown => net::shutdown(current, a[0], a[1]),
        g::__NR_getsockname => net::getsockname(current, a[0], a[1], a[2]),
        g::__NR_getpeername => net::getpeername(current, a[0], a[1], a[2]),
        g::__NR_setsockopt => net::setsockopt(current, a[0], a[1], a[2], a[3], a[4]),
        g::__NR_getsockopt => net::getsockopt(current, a[0], a[1], a[2], a[3], a[4]),
        g::__NR_brk => Ok(mm::brk(current, a[0])),
        g::__NR_mmap => mm::mmap(current, a),
        g::__NR_munmap => mm::munmap(current, a[0], a[1]),
        g::__NR_mprotect => mm::mprotect(current, a[0], a[1], a[2]),
        g::__NR_mremap => mm::mremap(current, a[0], a[1], a[2], a[3], a[4]),
        g::__NR_madvise => mm::madvise(current, a[0], a[1], a[2]),
        g::__NR_getxattr => xattr::get(current, a[0], a[1], true),
        g::__NR_lgetxattr => xattr::get(current, a[0], a[1], false),
        g::__NR_fgetxattr => xattr::fget(current, a[0], a[1]),
        g::__NR_listxattr => xattr::list(current, a[0], true),
        g::__NR_llistxattr => xattr::list(current, a[0], false),
        g::__NR_flistxattr => xattr::flist(current, a[0]),
        g::__NR_msync => mm::msync(current, a[0], a[1], a[2]),
        g::__NR_mincore => mm::mincore(current, a[0], a[1], a[2]),
        g::__NR_fadvise64 => mm::fadvise(current, a[0], a[3]),
        g::__NR_mlock | g::__NR_munlock => Ok(0),
        g::__NR_membarrier => Ok(0),
        g::__NR_arch_prctl => proc::arch_prctl(ctx, a[0], a[1]),
        g::__NR_clone => proc::clone(current, ctx, a[0], a[1], a[2], a[3], a[4]),
        g::__NR_clone3 => Err(e::ENOSYS),
        g::__NR_fork => proc::clone(current, ctx, u64::from(g::SIGCHLD), 0, 0, 0, 0),
        g::__NR_vfork => proc::clone(
            current,
            ctx,
            u64::from(g::CLONE_VM | g::CLONE_VFORK | g::SIGCHLD),
            0,
            0,
            0,
            0,
        ),
        g::__NR_execve => proc::execve(current, ctx, g::AT_FDCWD as u64, a[0], a[1], a[2], 0),
        g::__NR_execveat => proc::execve(current, ctx, a[0], a[1], a[2], a[3], a[4]),
        g::__NR_wait4 => proc::wait4(current, a[0] as i32, a[1], a[2], a[3]),
        g::__NR_waitid => proc::waitid(current, a[0], a[1], a[2], a[3]),
        g::__NR_kill => proc::kill(current, a[0] as i32, a[1]),
        g::__NR_tkill => proc::tgkill(current, None, a[0], a[1]),
        g::__NR_tgkill => proc::tgkill(current, Some(a[0]), a[1], a[2]),
        g::__NR_rt_sigaction => proc::rt_sigaction(current, a[0], a[1], a[2], a[3]),
        g::__NR_rt_sigprocmask => proc::rt_sigprocmask(current, a[0], a[1], a[2], a[3]),
        g::__NR_rt_sigreturn => crate::signal::sigreturn(current, ctx),
        g::__NR_rt_sigpending => proc::rt_sigpending(current, a[0], a[1]),
        g::__NR_rt_sigsuspend => proc::rt_sigsuspend(current, a[0], a[1]),
        g::__NR_rt_sigtimedwait => proc::rt_sigtimedwait(current, a[0], a[1], a[2], a[3]),
        g::__NR_sigaltstack => proc::sigaltstack(current, a[0], a[1]),
        g::__NR_pause => proc::pause(current),
        g::__NR_futex => proc::futex(current, a),
        g::__NR_set_tid_address => {
            current
                .thread
                .clear_child_tid
                .store(a[0], Ordering::Relaxed);
            Ok(u64::from(current.thread.tid))
        }
        g::__NR_set_robust_list => {
            if a[1] == 24 {
                Ok(0)
            } else {
                Err(e::EINVAL)
            }
        }
        g::__NR_get_robust_list => Err(e::ENOSYS),
        g::__NR_rseq => Err(e::ENOSYS),
        g::__NR_getpid => Ok(u64::from(current.process().pid)),
        g::__NR_gettid => Ok(u64::from(current.thread.tid)),
        g::__NR_getppid => Ok(u64::from(current.process().ppid.load(Ordering::Relaxed))),
        g::__NR_getuid | g::__NR_geteuid | g::__NR_getgid | g::__NR_getegid => Ok(0),
        g::__NR_setuid | g::__NR_setgid | g::__NR_setreuid | g::__NR_setregid => {
            if a[0] == 0 {
                Ok(0)
            } else {
                Err(e::EPERM)
            }
        }
        g::__NR_getresuid | g::__NR_getresgid => getres_ids(&a[..3]),
        g::__NR_getgroups => Ok(0),
        g::__NR_setgroups => Ok(0),
        g::__NR_getpgid => proc::getpgid(a[0], |p| p.pgid.load(Ordering::Relaxed), current),
        g::__NR_getpgrp => Ok(u64::from(current.process().pgid.load(Ordering::Relaxed))),
        g::__NR_getsid => proc::getpgid(a[0], |p| p.sid.load(Ordering::Relaxed), current),
        g::__NR_setpgid => proc::setpgid(current, a[0], a[1]),
        g::__NR_setsid => proc::setsid(current),
        g::__NR_sched_yield => {
            sched::yield_now(&current.task);
            Ok(0)
        }
        g::__NR_sched_getaffinity => proc::sched_getaffinity(a[0], a[1], a[2]),
        g::__NR_sched_setaffinity => Ok(0),
        g::__NR_getcpu => proc::getcpu(a[0], a[1]),
        g::__NR_prlimit64 => prlimit64(a[0], a[1], a[2], a[3]),
        g::__NR_getrlimit => prlimit64(0, a[0], 0, a[1]),
        g::__NR_setrlimit => Ok(0),
        g::__NR_getrandom => getrandom(a[0], a[1], a[2]),
        g::__NR_setitimer => setitimer(current, a[0], a[1], a[2]),
        g::__NR_getitimer => getitimer(current, a[0], a[1]),
        g::__NR_alarm => Ok(alarm(current, a[0])),
        g::__NR_prctl => proc::prctl(current, a[0], a[1]),
        g::__NR_uname => uname(a[0]),
        g::__NR_sysinfo => proc::sysinfo(a[0]),
        g::__NR_times => proc::times(current, a[0]),
        g::__NR_getrusage => proc::getrusage(current, a[0] as i32, a[1]),
        g::__NR_reboot => proc::reboot(a[0], a[1], a[2]),
        g::__NR_clock_gettime => clock_gettime(a[0], a[1]),
        g::__NR_clock_getres => clock_getres(a[0], a[1]),
        g::__NR_gettimeofday => gettimeofday(a[0]),
        g::__NR_time => time(a[0]),
        g::__NR_nanosleep => nanosleep(current, a[0], a[1]),
        g::__NR_clock_nanosleep => clock_nanosleep(current, a[0], a[1], a[2], a[3]),
        g::__NR_mount => vfs::mount(current, a[0], a[1], a[2], a[3], a[4]),
        g::__NR_umount2 => vfs::umount2(current, a[0], a[1]),
        g::__NR_statfs => vfs::statfs(current, a[0], a[1]),
        g::__NR_fstatfs => vfs::fstatfs(current, a[0], a[1]),
        g::__NR_sethostname => vfs::sethostname(a[0], a[1]),
        g::__NR_syslog => vfs::syslog(a[0], a[1], a[2]),
        other => {
            log_unknown(other);
            Err(e::ENOSYS)
        }
    };
    (Flow::Continue, result)
}

/// Reads a `struct timeval` as ns, refusing a negative or out-of-range one.
fn read_timeval(address: u64) -> Result<u64, u32> {
    let [sec, usec] = UserPtr::<[u64; 2]>::new(address)
        .read()
        .map_err(|_| e::EFAULT)?;
    if sec as i64 > i64::MAX / 1_000_000_000 || usec >= 1_000_000 {
        return Err(e::EINVAL);
    }
    Ok(sec * 1_000_000_000 + usec * 1000)
}

fn timeval_words(ns: u64) -> [u64; 2] {
    [ns / 1_000_000_000, ns % 1_000_000_000 / 1000]
}

/// `struct itimerval` for a timer's (time left, interval).
fn itimerval(address: u64, (left, interval): (u64, u64)) -> Result<(), u32> {
    let [is, iu] = timeval_words(interval);
    // A timer about to fire reads as 1 us left, never 0 (0 means disarmed).
    let [ls, lu] = timeval_words(if left == 0 { 0 } else { left.max(1000) });
    UserPtr::<[u64; 4]>::new(address)
        .write([is, iu, ls, lu])
        .map_err(|_| e::EFAULT)
}

fn setitimer(current: &Current, which: u64, new: u64, old: u64) -> SysResult {
    if which != u64::from(g::ITIMER_REAL) {
        return Err(itimer_unsupported(which));
    }
    let (interval, value) = if new == 0 {
        (0, 0)
    } else {
        (read_timeval(new)?, read_timeval(new + 16)?)
    };
    let previous = crate::itimer::set(current.process(), value, interval)?;
    if old != 0 {
        itimerval(old, previous)?;
    }
    Ok(0)
}

fn getitimer(current: &Current, which: u64, out: u64) -> SysResult {
    if which != u64::from(g::ITIMER_REAL) {
        return Err(itimer_unsupported(which));
    }
    itimerval(out, crate::itimer::get(current.process()))?;
    Ok(0)
}

/// `ITIMER_VIRTUAL` and `ITIMER_PROF` (CPU-time timers) are not kept: `EINVAL`, logged.
fn itimer_unsupported(which: u64) -> u32 {
    if which <= 2 {
        log::warn!("setitimer: CPU-time timer {which} (ITIMER_VIRTUAL/PROF) not supported");
    }
    e::EINVAL
}

/// `alarm`: `SIGALRM` in `seconds` (0 cancels); returns the seconds the previous alarm had
/// left, rounded up as Linux does.
fn alarm(current: &Current, seconds: u64) -> u64 {
    let seconds = seconds.min(u64::from(u32::MAX));
    let (left, _) =
        crate::itimer::set(current.process(), seconds * 1_000_000_000, 0).unwrap_or((0, 0));
    left.div_ceil(1_000_000_000)
}

/// `getresuid`/`getresgid`: everyone is root, so all three ids are 0.
fn getres_ids(pointers: &[u64]) -> SysResult {
    for ptr in pointers {
        UserPtr::<u32>::new(*ptr).write(0).map_err(|_| e::EFAULT)?;
    }
    Ok(0)
}

/// Sleeps `me` until the monotonic clock reaches `deadline`; `ERESTARTSYS`-style
/// interruption becomes `EINTR` with the time left written to `rem`.
fn sleep(current: &Current, deadline: u64, rem: u64) -> SysResult {
    match sched::sleep_until(&current.task, deadline) {
        sched::Wait::Interrupted => {
            if rem != 0 {
                let left = deadline.saturating_sub(crate::time::now_ns());
                UserPtr::<[u64; 2]>::new(rem)
                    .write(split(left))
                    .map_err(|_| e::EFAULT)?;
            }
            Err(e::EINTR)
        }
        _ => Ok(0),
    }
}

fn nanosleep(current: &Current, req: u64, rem: u64) -> SysResult {
    let ns = read_timespec(req)?;
    sleep(current, crate::time::now_ns().saturating_add(ns), rem)
}

fn clock_nanosleep(current: &Current, clock: u64, flags: u64, req: u64, rem: u64) -> SysResult {
    let now = clock_now(clock)?;
    let ns = read_timespec(req)?;
    let absolute = flags & u64::from(g::TIMER_ABSTIME) != 0;
    let wait = if absolute { ns.saturating_sub(now) } else { ns };
    sleep(
        current,
        crate::time::now_ns().saturating_add(wait),
        if absolute { 0 } else { rem },
    )
}

/// Reads a `timespec`, refusing what Linux refuses (negative, or nanoseconds out of range).
fn read_timespec(ts: u64) -> Result<u64, u32> {
    let [s, ns] = UserPtr::<[i64; 2]>::new(ts).read().map_err(|_| e::EFAULT)?;
    if s < 0 || !(0..1_000_000_000).contains(&ns) {
        return Err(e::EINVAL);
    }
    Ok((s as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ns as u64))
}

/// Reads a user C string (a path) as UTF-8 (paths here are UTF-8).
fn read_path(address: u64) -> Result<alloc::string::String, u32> {
    let bytes = user::read_cstr(address, crate::fs::PATH_MAX).map_err(|err| match err {
        user::CStrError::Fault(_) => e::EFAULT,
        user::CStrError::TooLong => e::ENAMETOOLONG,
    })?;
    alloc::string::String::from_utf8(bytes).map_err(|_| e::ENOENT)
}

/// Copies `len` bytes of user memory at `address` in (at most [`MAX_IO`]).
fn read_user(address: u64, len: u64) -> Result<alloc::vec::Vec<u8>, u32> {
    let len = (len as usize).min(MAX_IO);
    let mut data = vec![0u8; len];
    user::copy_from_user(address, &mut data).map_err(|_| e::EFAULT)?;
    Ok(data)
}

/// Numbers already reported as unknown (the first 256 numbers, one bit each).
static REPORTED: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

fn log_unknown(nr: u32) {
    let (word, bit) = ((nr / 64) as usize, 1u64 << (nr % 64));
    let first = REPORTED
        .get(word)
        .is_none_or(|w| w.fetch_or(bit, Ordering::Relaxed) & bit == 0);
    if first {
        let name = crate::syscall_names::name(u64::from(nr)).unwrap_or("unknown");
        log::warn!("syscall {nr} ({name}) is not implemented: ENOSYS");
    }
}

/// `prlimit64(pid, resource, new, old)`: the limits Linux gives a process by default; they
/// cannot be changed yet.
fn prlimit64(pid: u64, resource: u64, new: u64, old: u64) -> Result<u64, u32> {
    if pid != 0 && crate::process::find(pid as u32).is_none() {
        return Err(e::ESRCH);
    }
    const INFINITY: u64 = u64::MAX;
    let (cur, max) = match resource as u32 {
        g::RLIMIT_STACK => (8 << 20, INFINITY),
        g::RLIMIT_NOFILE => (1024, 4096),
        g::RLIMIT_CORE => (0, INFINITY),
        r if r < g::RLIM_NLIMITS => (INFINITY, INFINITY),
        _ => return Err(e::EINVAL),
    };
    if new != 0 {
        return Err(e::EPERM);
    }
    if old != 0 {
        UserPtr::<[u64; 2]>::new(old)
            .write([cur, max])
            .map_err(|_| e::EFAULT)?;
    }
    Ok(0)
}

fn getrandom(buf: u64, len: u64, flags: u64) -> Result<u64, u32> {
    let known = u64::from(g::GRND_NONBLOCK | g::GRND_RANDOM | g::GRND_INSECURE);
    if flags & !known != 0 {
        return Err(e::EINVAL);
    }
    let len = (len as usize).min(MAX_IO);
    let mut done = 0;
    while done < len {
        let chunk = random_bytes::<64>();
        let n = (len - done).min(chunk.len());
        user::copy_to_user(buf + done as u64, &chunk[..n]).map_err(|_| e::EFAULT)?;
        done += n;
    }
    Ok(len as u64)
}

/// `uname`: Linux, the ABI Evergreen speaks, at a release new enough for today's libcs; the
/// version string names Evergreen.
fn uname(buf: u64) -> Result<u64, u32> {
    const FIELD: usize = 65;
    let host = crate::fs::proc::host_name();
    let fields = [
        "Linux",
        host.as_str(),
        crate::fs::proc::OSRELEASE,
        concat!("#1 SMP Evergreen ", env!("CARGO_PKG_VERSION")),
        "x86_64",
        "(none)",
    ];
    let mut out = [0u8; FIELD * 6];
    for (i, field) in fields.iter().enumerate() {
        out[i * FIELD..i * FIELD + field.len()].copy_from_slice(field.as_bytes());
    }
    user::copy_to_user(buf, &out)
        .map(|()| 0)
        .map_err(|_| e::EFAULT)
}

/// The clocks Linux has, as nanoseconds now: REALTIME is the wall clock, the others count
/// from boot (the process and thread clocks too: one program, running since boot, is the
/// closest this kernel can say yet).
fn clock_now(clock: u64) -> Result<u64, u32> {
    match clock as u32 {
        g::CLOCK_REALTIME | g::CLOCK_REALTIME_COARSE => Ok(crate::time::unix_time_ns()),
        g::CLOCK_MONOTONIC
        | g::CLOCK_MONOTONIC_RAW
        | g::CLOCK_MONOTONIC_COARSE
        | g::CLOCK_BOOTTIME
        | g::CLOCK_PROCESS_CPUTIME_ID
        | g::CLOCK_THREAD_CPUTIME_ID => Ok(crate::time::now_ns()),
        _ => Err(e::EINVAL),
    }
}

fn split(ns: u64) -> [u64; 2] {
    [ns / 1_000_000_000, ns % 1_000_000_000]
}

fn clock_gettime(clock: u64, ts: u64) -> Result<u64, u32> {
    let now = clock_now(clock)?;
    UserPtr::<[u64; 2]>::new(ts)
        .write(split(now))
        .map(|()| 0)
        .map_err(|_| e::EFAULT)
}

fn clock_getres(clock: u64, ts: u64) -> Result<u64, u32> {
    clock_now(clock)?;
    if ts == 0 {
        return Ok(0);
    }
    UserPtr::<[u64; 2]>::new(ts)
        .write([0, 1])
        .map(|()| 0)
        .map_err(|_| e::EFAULT)
}

fn gettimeofday(tv: u64) -> Result<u64, u32> {
    if tv == 0 {
        return Ok(0);
    }
    let [s, ns] = split(crate::time::unix_time_ns());
    UserPtr::<[u64; 2]>::new(tv)
        .write([s, ns / 1000])
        .map(|()| 0)
        .map_err(|_| e::EFAULT)
}

fn time(out: u64) -> Result<u64, u32> {
    let seconds = crate::time::unix_time_ns() / 1_000_000_000;
    if out != 0 {
        UserPtr::<u64>::new(out)
            .write(seconds)
            .map_err(|_| e::EFAULT)?;
    }
    Ok(seconds)
}

/// `N` bytes for `AT_RANDOM` and the like: RDRAND where the CPU has it, mixed with the clock.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    let mut state = hal::time::rdtsc() ^ 0x9e37_79b9_7f4a_7c15;
    for chunk in out.chunks_mut(8) {
        let hw = hal::cpu::rdrand().unwrap_or(0);
        // splitmix64 step.
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state ^ hw;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
    }
    out
}
