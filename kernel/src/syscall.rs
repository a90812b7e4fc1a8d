//! The Linux x86-64 system calls: numbers, arguments, results and errno values as Linux has
//! them (`linux-raw-sys`). Every argument is checked; a call this kernel does not have yet
//! returns `ENOSYS` and is logged once per number. Nothing a program passes can panic the
//! kernel: user memory is only reached through `hal::user`, which turns bad pointers into
//! `EFAULT`.

use alloc::{string::String, vec};
use core::sync::atomic::{AtomicU64, Ordering};

use hal::{
    mm::PAGE_SIZE,
    user::{self, Access, UserPtr},
};
use linux_raw_sys::{errno as e, general as g};

use crate::process::Process;

/// What the program does after a call.
pub enum Flow {
    /// Goes on (the result is in `rax`).
    Continue,
    /// Has ended with this status.
    Exit(u8),
}

/// The longest single write or iovec total handled at once (Linux caps at about 2 GiB).
const MAX_IO: usize = 1 << 20;

/// Handles the syscall `process`'s thread just made.
pub fn handle(process: &mut Process) -> Flow {
    let r = process.context.regs;
    let (nr, a) = (r.rax, [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9]);
    let traced = crate::strace::enabled().then(|| crate::strace::call(nr, a));
    let flow = dispatch(process, nr, a);
    if let Some(call) = traced {
        match flow {
            Flow::Continue => crate::strace::result(nr, &call, process.context.regs.rax),
            Flow::Exit(status) => crate::strace::no_return(&call, status),
        }
    }
    flow
}

fn dispatch(process: &mut Process, nr: u64, a: [u64; 6]) -> Flow {
    let result: Result<u64, u32> = match nr as u32 {
        _ if nr > u64::from(u32::MAX) => Err(e::ENOSYS),
        g::__NR_exit | g::__NR_exit_group => return Flow::Exit(a[0] as u8),
        g::__NR_write => write(a[0], a[1], a[2]),
        g::__NR_writev => writev(a[0], a[1], a[2]),
        g::__NR_arch_prctl => arch_prctl(process, a[0], a[1]),
        g::__NR_set_tid_address | g::__NR_getpid | g::__NR_gettid => Ok(1),
        g::__NR_getppid => Ok(0),
        g::__NR_getuid | g::__NR_geteuid | g::__NR_getgid | g::__NR_getegid => Ok(0),
        g::__NR_ioctl => ioctl(a[0], a[1]),
        g::__NR_brk => Ok(brk(process, a[0])),
        g::__NR_mmap => mmap(process, a),
        g::__NR_munmap => munmap(process, a[0], a[1]),
        g::__NR_mprotect => mprotect(process, a[0], a[1], a[2]),
        // No signals are delivered yet: every disposition reads back as the default, every
        // mask as empty, and changes are accepted (and have no effect yet).
        g::__NR_rt_sigaction => zero_out(a[2], 32, a[0] >= 1 && a[0] <= 64 && a[3] == 8),
        g::__NR_rt_sigprocmask => zero_out(a[2], 8, a[0] <= 2 && a[3] == 8),
        g::__NR_sigaltstack => sigaltstack(a[1]),
        g::__NR_poll => poll(a[0], a[1], a[2]),
        // One thread: no robust futex list to walk at exit yet.
        g::__NR_set_robust_list => Ok(0),
        g::__NR_prlimit64 => prlimit64(a[0], a[1], a[2], a[3]),
        g::__NR_getrandom => getrandom(a[0], a[1], a[2]),
        g::__NR_prctl => prctl(process, a[0], a[1]),
        g::__NR_uname => uname(a[0]),
        g::__NR_fcntl => fcntl(a[0], a[1]),
        g::__NR_clock_gettime => clock_gettime(a[0], a[1]),
        g::__NR_clock_getres => clock_getres(a[0], a[1]),
        g::__NR_gettimeofday => gettimeofday(a[0]),
        g::__NR_time => time(a[0]),
        g::__NR_nanosleep => nanosleep(a[0], a[1]),
        g::__NR_clock_nanosleep => clock_nanosleep(a[0], a[1], a[2], a[3]),
        g::__NR_fstat => fstat(a[0], a[1]),
        g::__NR_newfstatat => newfstatat(a[0], a[1], a[2], a[3]),
        other => {
            log_unknown(other);
            Err(e::ENOSYS)
        }
    };
    process.context.regs.rax = match result {
        Ok(value) => value,
        Err(errno) => (-i64::from(errno)) as u64,
    };
    Flow::Continue
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

/// Output of a program (fds 1 and 2) goes to serial and the screen console.
fn console_write(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    hal::serial::write_str(&text);
    crate::console::write_str(&text);
}

fn write(fd: u64, buf: u64, len: u64) -> Result<u64, u32> {
    if fd != 1 && fd != 2 {
        return Err(e::EBADF);
    }
    let len = (len as usize).min(MAX_IO);
    let mut data = vec![0u8; len];
    user::copy_from_user(buf, &mut data).map_err(|_| e::EFAULT)?;
    console_write(&data);
    Ok(len as u64)
}

fn writev(fd: u64, iov: u64, count: u64) -> Result<u64, u32> {
    if fd != 1 && fd != 2 {
        return Err(e::EBADF);
    }
    if count > u64::from(g::UIO_MAXIOV) {
        return Err(e::EINVAL);
    }
    let mut data = vec::Vec::new();
    for i in 0..count as usize {
        let entry = UserPtr::<[u64; 2]>::new(iov)
            .offset(i)
            .and_then(UserPtr::read)
            .map_err(|_| e::EFAULT)?;
        let [base, len] = entry;
        let len = len as usize;
        if len > MAX_IO || data.len() + len > MAX_IO {
            return Err(e::EINVAL);
        }
        let start = data.len();
        data.resize(start + len, 0);
        user::copy_from_user(base, &mut data[start..]).map_err(|_| e::EFAULT)?;
    }
    console_write(&data);
    Ok(data.len() as u64)
}

/// `arch_prctl` code (asm/prctl.h; not in linux-raw-sys's general module).
const ARCH_GET_FS: u32 = 0x1003;

fn arch_prctl(process: &mut Process, code: u64, address: u64) -> Result<u64, u32> {
    match code as u32 {
        g::ARCH_SET_FS => {
            if address >= hal::user::USER_END {
                return Err(e::EPERM);
            }
            process.context.fs_base = address;
            Ok(0)
        }
        ARCH_GET_FS => UserPtr::<u64>::new(address)
            .write(process.context.fs_base)
            .map(|()| 0)
            .map_err(|_| e::EFAULT),
        _ => Err(e::EINVAL),
    }
}

fn ioctl(fd: u64, _request: u64) -> Result<u64, u32> {
    // No terminal yet: every request on the console is "not a tty", as for a pipe.
    if fd <= 2 {
        Err(e::ENOTTY)
    } else {
        Err(e::EBADF)
    }
}

/// `brk(addr)`: moves the break if it can and returns the break (Linux returns the old one
/// on failure, never an error).
fn brk(process: &mut Process, requested: u64) -> u64 {
    if requested < process.brk_start || requested >= process.mmap_next {
        return process.brk;
    }
    let old_end = process.brk.next_multiple_of(PAGE_SIZE);
    let new_end = requested.next_multiple_of(PAGE_SIZE);
    if new_end > old_end {
        if process
            .space
            .map_zeroed(old_end, new_end - old_end, Access::READ_WRITE)
            .is_err()
        {
            return process.brk;
        }
    } else if new_end < old_end {
        let _ = process.space.unmap(new_end, old_end - new_end);
    }
    process.brk = requested;
    requested
}

fn access_of(prot: u64) -> Result<Option<Access>, u32> {
    let known = u64::from(g::PROT_READ | g::PROT_WRITE | g::PROT_EXEC);
    if prot & !known != 0 {
        return Err(e::EINVAL);
    }
    if prot == 0 {
        return Ok(None);
    }
    Ok(Some(Access {
        write: prot & u64::from(g::PROT_WRITE) != 0,
        execute: prot & u64::from(g::PROT_EXEC) != 0,
    }))
}

/// Anonymous private mappings only, for now (`MAP_FIXED` included).
fn mmap(process: &mut Process, a: [u64; 6]) -> Result<u64, u32> {
    let [addr, len, prot, flags, _fd, offset] = a;
    if len == 0 || !offset.is_multiple_of(PAGE_SIZE) {
        return Err(e::EINVAL);
    }
    let len = len.checked_next_multiple_of(PAGE_SIZE).ok_or(e::ENOMEM)?;
    let flags = flags as u32;
    if flags & g::MAP_ANONYMOUS == 0 {
        return Err(e::ENODEV); // No files to map yet.
    }
    let access = access_of(prot)?;
    let fixed = flags & (g::MAP_FIXED | g::MAP_FIXED_NOREPLACE) != 0;
    let at = if fixed {
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(e::EINVAL);
        }
        if flags & g::MAP_FIXED_NOREPLACE != 0 && process.space.query(addr).is_some() {
            return Err(e::EEXIST);
        }
        let _ = process.space.unmap(addr, len);
        addr
    } else {
        let at = process.mmap_next.checked_sub(len).ok_or(e::ENOMEM)?;
        if at <= process.brk_start {
            return Err(e::ENOMEM);
        }
        process.mmap_next = at;
        at
    };
    // PROT_NONE pages are kept out of the tables (a touch faults, as it should).
    let map = access.unwrap_or(Access::READ);
    process
        .space
        .map_zeroed(at, len, map)
        .map_err(|_| e::ENOMEM)?;
    if access.is_none() {
        let _ = process.space.unmap(at, len);
    }
    Ok(at)
}

fn munmap(process: &mut Process, addr: u64, len: u64) -> Result<u64, u32> {
    if !addr.is_multiple_of(PAGE_SIZE) || len == 0 {
        return Err(e::EINVAL);
    }
    let len = len.checked_next_multiple_of(PAGE_SIZE).ok_or(e::EINVAL)?;
    process
        .space
        .unmap(addr, len)
        .map(|_| 0)
        .map_err(|_| e::EINVAL)
}

fn mprotect(process: &mut Process, addr: u64, len: u64, prot: u64) -> Result<u64, u32> {
    if !addr.is_multiple_of(PAGE_SIZE) {
        return Err(e::EINVAL);
    }
    let len = len.checked_next_multiple_of(PAGE_SIZE).ok_or(e::ENOMEM)?;
    if len == 0 {
        return Ok(0);
    }
    match access_of(prot)? {
        Some(access) => process.space.protect(addr, len, access),
        // A shortcut until hal can keep a page with no user access: PROT_NONE unmaps, so
        // the contents are lost if the program later makes the pages accessible again.
        None => process.space.unmap(addr, len).map(|_| ()),
    }
    .map(|()| 0)
    .map_err(|_| e::ENOMEM)
}

/// `prlimit64(pid, resource, new, old)`: the limits Linux gives a process by default; they
/// cannot be changed yet.
fn prlimit64(pid: u64, resource: u64, new: u64, old: u64) -> Result<u64, u32> {
    if pid != 0 && pid != 1 {
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

fn prctl(process: &mut Process, option: u64, arg: u64) -> Result<u64, u32> {
    match option as u32 {
        linux_raw_sys::prctl::PR_SET_NAME => {
            let name = user::read_cstr(arg, 4096).map_err(|_| e::EFAULT)?;
            let mut comm = [0u8; 16];
            let n = name.len().min(15);
            comm[..n].copy_from_slice(&name[..n]);
            process.comm = comm;
            Ok(0)
        }
        linux_raw_sys::prctl::PR_GET_NAME => user::copy_to_user(arg, &process.comm)
            .map(|()| 0)
            .map_err(|_| e::EFAULT),
        _ => Err(e::EINVAL),
    }
}

/// `uname`: Linux, the ABI Evergreen speaks, at a release new enough for today's libcs; the
/// version string names Evergreen.
fn uname(buf: u64) -> Result<u64, u32> {
    const FIELD: usize = 65;
    let fields = [
        "Linux",
        "evergreen",
        "6.6.0-evergreen",
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

/// The console's file descriptors: 0, 1 and 2 (no file table yet).
fn console_fd(fd: u64) -> Result<(), u32> {
    if fd <= 2 { Ok(()) } else { Err(e::EBADF) }
}

fn fcntl(fd: u64, command: u64) -> Result<u64, u32> {
    console_fd(fd)?;
    match command as u32 {
        g::F_GETFD | g::F_SETFD | g::F_SETFL => Ok(0),
        g::F_GETFL => Ok(u64::from(g::O_RDWR)),
        _ => Err(e::EINVAL),
    }
}

/// The console as `stat` describes it: a character device (`/dev/console`, 5:1), read-write
/// for its owner and group.
fn console_stat() -> [u64; 18] {
    let mut st = [0u64; 18];
    st[0] = 0x6; // st_dev: devtmpfs-like
    st[1] = 1; // st_ino
    st[2] = 1; // st_nlink
    st[3] = u64::from(g::S_IFCHR | 0o620); // st_mode (st_uid = 0 in the high half)
    st[5] = (5 << 8) | 1; // st_rdev
    st[7] = 1024; // st_blksize
    st
}

fn fstat(fd: u64, buf: u64) -> Result<u64, u32> {
    console_fd(fd)?;
    UserPtr::<[u64; 18]>::new(buf)
        .write(console_stat())
        .map(|()| 0)
        .map_err(|_| e::EFAULT)
}

fn newfstatat(dirfd: u64, path: u64, buf: u64, flags: u64) -> Result<u64, u32> {
    let path = user::read_cstr(path, 4096).map_err(|err| match err {
        user::CStrError::Fault(_) => e::EFAULT,
        user::CStrError::TooLong => e::ENAMETOOLONG,
    })?;
    if path.is_empty() && flags & u64::from(g::AT_EMPTY_PATH) != 0 {
        return fstat(dirfd, buf);
    }
    // No file system yet.
    Err(e::ENOENT)
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

/// Sleeps until the monotonic clock reaches `deadline`, halting between timer ticks.
fn sleep_until_monotonic(deadline: u64) {
    while crate::time::now_ns() < deadline {
        hal::cpu::idle();
    }
    hal::cpu::disable_interrupts();
}

fn nanosleep(req: u64, _rem: u64) -> Result<u64, u32> {
    let ns = read_timespec(req)?;
    sleep_until_monotonic(crate::time::now_ns().saturating_add(ns));
    Ok(0)
}

fn clock_nanosleep(clock: u64, flags: u64, req: u64, _rem: u64) -> Result<u64, u32> {
    let now = clock_now(clock)?;
    let ns = read_timespec(req)?;
    let wait = if flags & u64::from(g::TIMER_ABSTIME) != 0 {
        ns.saturating_sub(now)
    } else {
        ns
    };
    sleep_until_monotonic(crate::time::now_ns().saturating_add(wait));
    Ok(0)
}

/// Checks `valid`, then fills the `len` bytes at `out` (if not null) with zeros: the old
/// value of something that holds its default.
fn zero_out(out: u64, len: usize, valid: bool) -> Result<u64, u32> {
    if !valid {
        return Err(e::EINVAL);
    }
    if out != 0 {
        user::copy_to_user(out, &vec![0u8; len]).map_err(|_| e::EFAULT)?;
    }
    Ok(0)
}

/// `sigaltstack(new, old)`: reports no alternate stack (`SS_DISABLE`); a new one is accepted
/// (signals are not delivered yet).
fn sigaltstack(old: u64) -> Result<u64, u32> {
    if old != 0 {
        // stack_t: ss_sp, ss_flags (int, padded), ss_size.
        UserPtr::<[u64; 3]>::new(old)
            .write([0, u64::from(g::SS_DISABLE), 0])
            .map_err(|_| e::EFAULT)?;
    }
    Ok(0)
}

/// `poll` over the console's descriptors: output is always ready, input never yet (no
/// terminal driver), other descriptors are invalid (`POLLNVAL`).
fn poll(fds: u64, count: u64, timeout_ms: u64) -> Result<u64, u32> {
    if count > 1024 {
        return Err(e::EINVAL);
    }
    let mut ready = 0;
    for i in 0..count as usize {
        let slot = UserPtr::<u64>::new(fds).offset(i).map_err(|_| e::EFAULT)?;
        let raw = slot.read().map_err(|_| e::EFAULT)?;
        let fd = raw as u32 as i32;
        let events = (raw >> 32) as u16;
        let revents: u16 = match fd {
            f if f < 0 => 0,
            0 => 0,
            1 | 2 => events & (g::POLLOUT as u16),
            _ => g::POLLNVAL as u16,
        };
        if revents != 0 {
            ready += 1;
        }
        let updated = (raw & 0x0000_ffff_ffff_ffff) | (u64::from(revents) << 48);
        slot.write(updated).map_err(|_| e::EFAULT)?;
    }
    // A negative timeout (wait for ever) with nothing that can become ready returns at once
    // for now: no descriptor here can ever become readable.
    let timeout = timeout_ms as i32;
    if ready == 0 && timeout > 0 {
        sleep_until_monotonic(crate::time::now_ns() + u64::from(timeout as u32) * 1_000_000);
    }
    Ok(ready)
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
