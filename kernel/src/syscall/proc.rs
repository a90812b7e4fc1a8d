//! Process, thread, signal and futex calls.

use alloc::{string::String, sync::Arc, vec::Vec};
use core::sync::atomic::Ordering;

use hal::{
    user::{self, UserPtr},
    usermode::UserContext,
};
use linux_raw_sys::{errno as e, general as g};
use spin::Mutex;

use super::{SysResult, read_path};
use crate::{
    fs::{self, Kind},
    process::{self, Current, Exit, JobChange, Mm, Process},
    sched::{self, Wait},
    signal::{self, ERESTARTSYS, SigAction},
};

/// `arch_prctl` code (asm/prctl.h; not in linux-raw-sys's general module).
const ARCH_GET_FS: u32 = 0x1003;

pub fn arch_prctl(ctx: &mut UserContext, code: u64, address: u64) -> SysResult {
    match code as u32 {
        g::ARCH_SET_FS => {
            if address >= hal::user::USER_END {
                return Err(e::EPERM);
            }
            ctx.fs_base = address;
            Ok(0)
        }
        ARCH_GET_FS => UserPtr::<u64>::new(address)
            .write(ctx.fs_base)
            .map(|()| 0)
            .map_err(|_| e::EFAULT),
        _ => Err(e::EINVAL),
    }
}

/// `clone(flags, stack, parent_tid, child_tid, tls)`, and `fork`/`vfork` through it.
pub fn clone(
    current: &Current,
    ctx: &UserContext,
    flags: u64,
    stack: u64,
    parent_tid: u64,
    child_tid: u64,
    tls: u64,
) -> SysResult {
    let flags = flags as u32;
    let process = current.process();
    let thread = flags & g::CLONE_THREAD != 0;
    let vm = flags & g::CLONE_VM != 0;
    // Linux's consistency rules.
    if thread && flags & g::CLONE_SIGHAND == 0 || flags & g::CLONE_SIGHAND != 0 && !vm {
        return Err(e::EINVAL);
    }
    let known = g::CLONE_VM
        | g::CLONE_FS
        | g::CLONE_FILES
        | g::CLONE_SIGHAND
        | g::CLONE_THREAD
        | g::CLONE_SYSVSEM
        | g::CLONE_SETTLS
        | g::CLONE_PARENT_SETTID
        | g::CLONE_CHILD_CLEARTID
        | g::CLONE_CHILD_SETTID
        | g::CLONE_VFORK
        | g::CLONE_DETACHED
        | 0xff;
    if flags & !known != 0 {
        return Err(e::EINVAL);
    }
    let mut child = ctx.clone();
    child.regs.rax = 0;
    if stack != 0 {
        child.regs.rsp = stack;
    }
    if flags & g::CLONE_SETTLS != 0 {
        if tls >= hal::user::USER_END {
            return Err(e::EPERM);
        }
        child.fs_base = tls;
    }
    let sigmask = current.thread.sigmask.load(Ordering::Relaxed);
    let (tid, new_thread, child_process) = if thread {
        let tid = process::new_tid();
        let t = process::start_thread(process, tid, child, sigmask)?;
        (tid, t, None)
    } else {
        let mm = if vm {
            process.memory()
        } else {
            process.memory().duplicate().inspect_err(|_| {
                log::warn!("{}: fork: out of memory", process.path.lock());
            })?
        };
        let files = if flags & g::CLONE_FILES != 0 {
            process.fds()
        } else {
            Arc::new(Mutex::new(process.fds().lock().clone()))
        };
        let (p, t) = process::spawn_child(process, mm, files, child, sigmask)?;
        (p.pid, t, Some(p))
    };
    if flags & g::CLONE_PARENT_SETTID != 0 {
        let _ = UserPtr::<u32>::new(parent_tid).write(tid);
    }
    if flags & g::CLONE_CHILD_CLEARTID != 0 {
        new_thread
            .clear_child_tid
            .store(child_tid, Ordering::Relaxed);
    }
    if flags & g::CLONE_CHILD_SETTID != 0 {
        // The child's memory is ours (shared) or a copy made just now.
        let mm = new_thread.process.memory();
        let _ = mm.space.write(child_tid, &tid.to_le_bytes());
    }
    if flags & g::CLONE_VFORK != 0
        && let Some(child) = child_process
    {
        // The parent waits (uninterruptibly, as Linux's vfork) until the child has called
        // execve or ended: until then they share memory.
        let _ = sched::wait(&current.task, &[&child.vfork_wait], None, || {
            child.vfork_done.load(Ordering::Acquire)
        });
        while !child.vfork_done.load(Ordering::Acquire) {
            let _ = sched::wait(&current.task, &[&child.vfork_wait], None, || {
                child.vfork_done.load(Ordering::Acquire)
            });
            current.task.clear_interrupt();
        }
        if signal::has_deliverable(&current.thread) {
            current.task.interrupt();
        }
    }
    Ok(u64::from(tid))
}

/// Reads a NULL-terminated array of C strings (argv, envp).
fn read_strings(mut address: u64) -> Result<Vec<String>, u32> {
    let mut out = Vec::new();
    if address == 0 {
        return Ok(out);
    }
    let mut total = 0;
    loop {
        let ptr = UserPtr::<u64>::new(address).read().map_err(|_| e::EFAULT)?;
        if ptr == 0 {
            return Ok(out);
        }
        let bytes = user::read_cstr(ptr, 128 * 1024).map_err(|err| match err {
            user::CStrError::Fault(_) => e::EFAULT,
            user::CStrError::TooLong => e::E2BIG,
        })?;
        total += bytes.len() + 1;
        if total > 2 << 20 || out.len() > 65536 {
            return Err(e::E2BIG);
        }
        out.push(String::from_utf8_lossy(&bytes).into_owned());
        address += 8;
    }
}

/// `execve`: replaces the process's program. A `#!` script runs its interpreter with the
/// script's path (and the one optional argument on the `#!` line) in front of argv.
pub fn execve(
    current: &Current,
    ctx: &mut UserContext,
    dirfd: u64,
    path: u64,
    argv: u64,
    envp: u64,
    flags: u64,
) -> SysResult {
    let path = read_path(path)?;
    let mut argv = read_strings(argv)?;
    let envp = read_strings(envp)?;
    if flags & !u64::from(g::AT_EMPTY_PATH | g::AT_SYMLINK_NOFOLLOW) != 0 {
        return Err(e::EINVAL);
    }
    let process = current.process();
    let base = if path.starts_with('/') || dirfd as i32 == g::AT_FDCWD {
        Arc::clone(&process.cwd.lock().node)
    } else {
        Arc::clone(process.fds().lock().get(dirfd)?.node().ok_or(e::ENOTDIR)?)
    };
    if path.is_empty() {
        return Err(e::ENOENT);
    }
    let mut exec_path = super::fs::proc_exe(current, &path).unwrap_or_else(|| path.clone());
    let mut node = executable(&base, &exec_path)?;
    // Scripts: at most four levels of interpreter (Linux allows a few).
    for _ in 0..4 {
        let mut head = [0u8; 256];
        let n = contents(&node).lock().read_at(0, &mut head);
        let Some((interp, arg)) = script_interpreter(&head[..n])? else {
            break;
        };
        let mut new_argv = Vec::new();
        new_argv.push(interp.clone());
        if let Some(arg) = arg {
            new_argv.push(arg);
        }
        new_argv.push(exec_path.clone());
        new_argv.extend(argv.into_iter().skip(1));
        argv = new_argv;
        exec_path = super::fs::proc_exe(current, &interp).unwrap_or(interp);
        node = executable(&base, &exec_path)?;
    }
    let argv_refs: Vec<&str> = argv.iter().map(String::as_str).collect();
    let envp_refs: Vec<&str> = envp.iter().map(String::as_str).collect();
    // The headers are read; the segments map the file's pages (copy-on-write).
    let mut data = contents(&node).lock();
    let mut head = alloc::vec![0u8; data.len().min(EXEC_HEAD)];
    data.read_at(0, &mut head);
    if head.len() < data.len() && head.len() >= 64 && head.starts_with(b"\x7fELF") {
        // Loading needs no sections, and their table lies past what was read: this copy's
        // header says there is none (e_shoff, e_shnum, e_shstrndx).
        head[0x28..0x30].fill(0);
        head[0x3c..0x40].fill(0);
    }
    // A relative PT_INTERP is looked up from the working directory (Linux's `open_exec`).
    let cwd = Arc::clone(&process.cwd.lock().node);
    let loaded = crate::exec::load(
        &path,
        &head,
        Some(&mut data),
        &argv_refs,
        &envp_refs,
        &mut |interp| crate::exec::read_interpreter(&cwd, interp, &node),
    );
    drop(data);
    let image = loaded.map_err(|err| match err {
        crate::exec::ExecError::NoExec(why) => {
            log::debug!("execve {path}: {why}");
            e::ENOEXEC
        }
        crate::exec::ExecError::NoMemory => e::ENOMEM,
        crate::exec::ExecError::TooBig => e::E2BIG,
        crate::exec::ExecError::Interpreter(errno) => errno,
    })?;
    // The point of no return: the old program is gone.
    if process.threads.lock().len() > 1 {
        // Other threads end (Linux's de_thread); this one carries on as the process.
        for t in process.threads.lock().iter() {
            if !Arc::ptr_eq(t, &current.thread)
                && let Some(task) = t.task.get()
            {
                task.interrupt();
            }
        }
        log::warn!("execve from a multi-threaded process: other threads are not waited for yet");
    }
    *process.mm.lock() = Mm::new(&image);
    process.mm_generation.fetch_add(1, Ordering::AcqRel);
    current.task.set_space(Some(&image.space));
    *ctx = image.context;
    // What /proc/self/exe names: the absolute path of the program (the interpreter of a
    // script), as Linux keeps it.
    let exe = if exec_path.starts_with('/') {
        fs::normalise("/", &exec_path)
    } else {
        fs::normalise(&process.cwd.lock().path, &exec_path)
    };
    *process.path.lock() = exe;
    *process.comm.lock() = crate::exec::comm_of(&path);
    process.set_arguments(&argv_refs, &envp_refs);
    let closed = process.fds().lock().close_on_exec();
    drop(closed);
    // Handlers do not survive exec (the code is gone); ignored signals stay ignored.
    for action in process.sigactions.lock().0.iter_mut() {
        if action.handler > 1 {
            *action = SigAction::default();
        }
    }
    *current.thread.altstack.lock() = (0, 0, g::SS_DISABLE);
    current.thread.clear_child_tid.store(0, Ordering::Relaxed);
    process.vfork_done.store(true, Ordering::Release);
    process.vfork_wait.wake_all();
    Ok(0)
}

/// The regular file at `path`, checked executable.
fn executable(base: &Arc<fs::Node>, path: &str) -> Result<Arc<fs::Node>, u32> {
    let node = fs::lookup(base, path, true)?;
    match &node.kind {
        Kind::File(_) if node.mode.load(Ordering::Relaxed) & 0o111 != 0 => Ok(node),
        _ => Err(e::EACCES),
    }
}

/// The bytes of a node [`executable`] returned.
/// How much of a program `execve` reads for its ELF and program headers (and the
/// `PT_INTERP` path); its segments are mapped from the file.
const EXEC_HEAD: usize = 64 * 1024;

fn contents(node: &fs::Node) -> &Mutex<fs::data::FileData> {
    match &node.kind {
        Kind::File(data) => data,
        _ => unreachable!("executable() returns regular files only"),
    }
}

/// For a `#!` script, its interpreter and the optional argument (the line is cut at 256
/// bytes, as Linux does); `None` for anything else.
fn script_interpreter(data: &[u8]) -> Result<Option<(String, Option<String>)>, u32> {
    if !data.starts_with(b"#!") {
        return Ok(None);
    }
    let line_end = data
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(data.len())
        .min(256);
    let line = core::str::from_utf8(&data[2..line_end]).map_err(|_| e::ENOEXEC)?;
    let line = line.trim();
    let (interp, arg) = match line.split_once([' ', '\t']) {
        Some((i, a)) => (i, Some(a.trim())),
        None => (line, None),
    };
    if interp.is_empty() {
        return Err(e::ENOEXEC);
    }
    Ok(Some((
        String::from(interp),
        arg.filter(|a| !a.is_empty()).map(String::from),
    )))
}

/// Whether `child` is one `wait4(pid)` asks about.
fn matches(current: &Current, child: &Process, pid: i32) -> bool {
    match pid {
        -1 => true,
        0 => child.pgid.load(Ordering::Relaxed) == current.process().pgid.load(Ordering::Relaxed),
        p if p > 0 => child.pid == p as u32,
        p => child.pgid.load(Ordering::Relaxed) == p.unsigned_abs(),
    }
}

/// What `wait4` may report about a child.
#[derive(Clone, Copy)]
enum Found {
    /// It ended (and is reaped unless the caller keeps it).
    Exited(Exit),
    /// It stopped or continued (job control).
    Changed(JobChange),
}

impl Found {
    /// The status word `wait4` writes.
    fn wait_status(self) -> u32 {
        match self {
            Self::Exited(exit) => exit.wait_status(),
            Self::Changed(JobChange::Stopped(sig)) => (u32::from(sig) << 8) | 0x7f,
            Self::Changed(JobChange::Continued) => 0xffff,
        }
    }
}

/// What a wait asks for.
#[derive(Clone, Copy)]
struct WaitFor {
    /// Return at once if nothing is ready (`WNOHANG`).
    nohang: bool,
    /// Leave what is found to be found again (`WNOWAIT`).
    keep: bool,
    /// Report ends (`WEXITED`; always for `wait4`).
    exited: bool,
    /// Report stops (`WUNTRACED`/`WSTOPPED`).
    stopped: bool,
    /// Report continues (`WCONTINUED`).
    continued: bool,
}

/// Waits for a child that `pid` matches to end (or stop or continue, if asked); returns it
/// (reaped unless `keep`).
fn wait_child(
    current: &Current,
    pid: i32,
    want: WaitFor,
) -> Result<Option<(Arc<Process>, Found)>, u32> {
    let process = current.process();
    let mut found = None;
    let mut ready = || -> Result<bool, u32> {
        let mut children = process.children.lock();
        if !children.iter().any(|c| matches(current, c, pid)) {
            return Err(e::ECHILD);
        }
        for i in 0..children.len() {
            let child = Arc::clone(&children[i]);
            if !matches(current, &child, pid) {
                continue;
            }
            let exit = *child.exit.lock();
            if want.exited
                && let Some(exit) = exit
            {
                if !want.keep {
                    children.remove(i);
                }
                found = Some((child, Found::Exited(exit)));
                return Ok(true);
            }
            let mut job = child.job.lock();
            let change = match job.report {
                Some(c @ JobChange::Stopped(_)) if want.stopped => c,
                Some(c @ JobChange::Continued) if want.continued => c,
                _ => continue,
            };
            if !want.keep {
                job.report = None;
            }
            drop(job);
            found = Some((child, Found::Changed(change)));
            return Ok(true);
        }
        Ok(false)
    };
    loop {
        if ready()? {
            break;
        }
        if want.nohang {
            return Ok(None);
        }
        let mut error = None;
        let result = sched::wait(
            &current.task,
            &[&process.child_exited],
            None,
            || match ready() {
                Ok(r) => r,
                Err(errno) => {
                    error = Some(errno);
                    true
                }
            },
        );
        if let Some(errno) = error {
            return Err(errno);
        }
        match result {
            Wait::Ready => break,
            Wait::Interrupted => return Err(ERESTARTSYS),
            Wait::TimedOut => {}
        }
    }
    let (child, what) = found.ok_or(e::ECHILD)?;
    if !want.keep && matches!(what, Found::Exited(_)) {
        process
            .children_cpu_ns
            .fetch_add(child.cpu_ns.load(Ordering::Relaxed), Ordering::Relaxed);
        process::reap(&child);
    }
    Ok(Some((child, what)))
}

pub fn wait4(current: &Current, pid: i32, status: u64, options: u64, rusage: u64) -> SysResult {
    let known = u64::from(g::WNOHANG | g::WUNTRACED | g::WCONTINUED | g::__WALL | g::__WCLONE);
    if options & !known != 0 || pid == i32::MIN {
        return Err(e::EINVAL);
    }
    let options = options as u32;
    let want = WaitFor {
        nohang: options & g::WNOHANG != 0,
        keep: false,
        exited: true,
        stopped: options & g::WUNTRACED != 0,
        continued: options & g::WCONTINUED != 0,
    };
    let Some((child, what)) = wait_child(current, pid, want)? else {
        return Ok(0);
    };
    if status != 0 {
        UserPtr::<u32>::new(status)
            .write(what.wait_status())
            .map_err(|_| e::EFAULT)?;
    }
    if rusage != 0 {
        write_rusage(rusage, child.cpu_ns.load(Ordering::Relaxed))?;
    }
    Ok(u64::from(child.pid))
}

pub fn waitid(current: &Current, idtype: u64, id: u64, info: u64, options: u64) -> SysResult {
    const P_ALL: u64 = 0;
    const P_PID: u64 = 1;
    const P_PGID: u64 = 2;
    let pid = match idtype {
        P_ALL => -1,
        P_PID => id as i32,
        P_PGID => -(id as i32),
        _ => return Err(e::EINVAL),
    };
    let options = options as u32;
    if options & (g::WEXITED | g::WSTOPPED | g::WCONTINUED) == 0 {
        return Err(e::EINVAL);
    }
    let want = WaitFor {
        nohang: options & g::WNOHANG != 0,
        keep: options & g::WNOWAIT != 0,
        exited: options & g::WEXITED != 0,
        stopped: options & g::WSTOPPED != 0,
        continued: options & g::WCONTINUED != 0,
    };
    let found = wait_child(current, pid, want)?;
    if info != 0 {
        let mut words = [0u64; 16];
        if let Some((child, what)) = &found {
            const CLD_EXITED: u64 = 1;
            const CLD_KILLED: u64 = 2;
            const CLD_STOPPED: u64 = 5;
            const CLD_CONTINUED: u64 = 6;
            let (code, status) = match what {
                Found::Exited(Exit::Status(s)) => (CLD_EXITED, u64::from(*s)),
                Found::Exited(Exit::Signal(s)) => (CLD_KILLED, u64::from(*s)),
                Found::Changed(JobChange::Stopped(s)) => (CLD_STOPPED, u64::from(*s)),
                Found::Changed(JobChange::Continued) => (CLD_CONTINUED, u64::from(g::SIGCONT)),
            };
            words[0] = u64::from(g::SIGCHLD);
            words[1] = code;
            words[2] = u64::from(child.pid);
            words[3] = status;
        }
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        user::copy_to_user(info, &bytes).map_err(|_| e::EFAULT)?;
    }
    Ok(0)
}

pub fn kill(current: &Current, pid: i32, sig: u64) -> SysResult {
    let sig = signal::valid(sig)?;
    let targets: Vec<Arc<Process>> = match pid {
        p if p > 0 => vec_of(process::find(p as u32).filter(|p| p.exit.lock().is_none())),
        0 => {
            let pgid = current.process().pgid.load(Ordering::Relaxed);
            process::all()
                .into_iter()
                .filter(|p| p.pgid.load(Ordering::Relaxed) == pgid)
                .collect()
        }
        -1 => process::all()
            .into_iter()
            .filter(|p| p.pid != 1 && p.pid != current.process().pid)
            .collect(),
        p => process::all()
            .into_iter()
            .filter(|q| q.pgid.load(Ordering::Relaxed) == p.unsigned_abs())
            .collect(),
    };
    if targets.is_empty() {
        return Err(e::ESRCH);
    }
    if let Some(sig) = sig {
        for target in &targets {
            // Init only gets signals it has a handler for or blocks (as on Linux, where a
            // blocked signal is never ignored: a handler may be set before it is unblocked).
            if target.pid == 1
                && target.sigactions.lock().0[usize::from(sig - 1)].handler <= 1
                && !target
                    .threads
                    .lock()
                    .iter()
                    .any(|t| t.sigmask.load(Ordering::Acquire) & (1 << (sig - 1)) != 0)
            {
                continue;
            }
            if let Some(t) = target.threads.lock().first() {
                signal::set_info(
                    t,
                    sig,
                    signal::Info {
                        code: 0,
                        pid: current.process().pid,
                        addr: 0,
                    },
                );
            }
            signal::send_process(target, sig);
        }
    }
    Ok(0)
}

fn vec_of<T>(item: Option<T>) -> Vec<T> {
    item.into_iter().collect()
}

pub fn tgkill(current: &Current, tgid: Option<u64>, tid: u64, sig: u64) -> SysResult {
    let sig = signal::valid(sig)?;
    if tid as i32 <= 0 || tgid.is_some_and(|t| t as i32 <= 0) {
        return Err(e::EINVAL);
    }
    let process = process::find(tid as u32).ok_or(e::ESRCH)?;
    if tgid.is_some_and(|t| t as u32 != process.pid) {
        return Err(e::ESRCH);
    }
    let thread = process
        .threads
        .lock()
        .iter()
        .find(|t| u64::from(t.tid) == tid)
        .cloned()
        .ok_or(e::ESRCH)?;
    if let Some(sig) = sig {
        // SI_TKILL
        signal::set_info(
            &thread,
            sig,
            signal::Info {
                code: -6,
                pid: current.process().pid,
                addr: 0,
            },
        );
        signal::send_thread(&thread, sig);
    }
    Ok(0)
}

pub fn rt_sigaction(current: &Current, sig: u64, new: u64, old: u64, size: u64) -> SysResult {
    if size != 8 || !(1..=64).contains(&sig) {
        return Err(e::EINVAL);
    }
    let index = sig as usize - 1;
    let new = if new != 0 {
        if sig == u64::from(signal::SIGKILL) || sig == 19 {
            return Err(e::EINVAL);
        }
        Some(signal::read_action(new)?)
    } else {
        None
    };
    let process = current.process();
    let previous = process.sigactions.lock().0[index];
    if old != 0 {
        signal::write_action(old, &previous)?;
    }
    if let Some(action) = new {
        process.sigactions.lock().0[index] = action;
        // Setting a signal to be ignored discards it if pending.
        if action.handler == 1 || (action.handler == 0 && matches!(sig, 17 | 23 | 28)) {
            let bit = !(1u64 << index);
            process.shared_pending.fetch_and(bit, Ordering::AcqRel);
            for t in process.threads.lock().iter() {
                t.pending.fetch_and(bit, Ordering::AcqRel);
            }
        }
    }
    Ok(0)
}

pub fn rt_sigprocmask(current: &Current, how: u64, set: u64, old: u64, size: u64) -> SysResult {
    if size != 8 {
        return Err(e::EINVAL);
    }
    let thread = &current.thread;
    let previous = thread.sigmask.load(Ordering::Acquire);
    if set != 0 {
        let set = UserPtr::<u64>::new(set).read().map_err(|_| e::EFAULT)?;
        let mask = match how as u32 {
            g::SIG_BLOCK => previous | set,
            g::SIG_UNBLOCK => previous & !set,
            g::SIG_SETMASK => set,
            _ => return Err(e::EINVAL),
        };
        thread
            .sigmask
            .store(signal::blockable(mask), Ordering::Release);
        if signal::has_deliverable(thread) {
            current.task.interrupt();
        }
    }
    if old != 0 {
        UserPtr::<u64>::new(old)
            .write(previous)
            .map_err(|_| e::EFAULT)?;
    }
    Ok(0)
}

pub fn rt_sigpending(current: &Current, set: u64, size: u64) -> SysResult {
    if size != 8 {
        return Err(e::EINVAL);
    }
    let thread = &current.thread;
    let pending = (thread.pending.load(Ordering::Acquire)
        | thread.process.shared_pending.load(Ordering::Acquire))
        & thread.sigmask.load(Ordering::Acquire);
    UserPtr::<u64>::new(set)
        .write(pending)
        .map(|()| 0)
        .map_err(|_| e::EFAULT)
}

pub fn rt_sigsuspend(current: &Current, set: u64, size: u64) -> SysResult {
    if size != 8 {
        return Err(e::EINVAL);
    }
    let mask = UserPtr::<u64>::new(set).read().map_err(|_| e::EFAULT)?;
    let thread = &current.thread;
    let old = thread
        .sigmask
        .swap(signal::blockable(mask), Ordering::AcqRel);
    *thread.saved_mask.lock() = Some(old);
    loop {
        if signal::has_deliverable(thread) {
            current.task.interrupt();
            return Err(e::EINTR);
        }
        let _ = sched::wait(&current.task, &[], None, || signal::has_deliverable(thread));
    }
}

pub fn pause(current: &Current) -> SysResult {
    loop {
        if sched::wait(&current.task, &[], None, || false) == Wait::Interrupted {
            return Err(e::EINTR);
        }
    }
}

pub fn rt_sigtimedwait(
    current: &Current,
    set: u64,
    info: u64,
    timeout: u64,
    size: u64,
) -> SysResult {
    if size != 8 {
        return Err(e::EINVAL);
    }
    let set = UserPtr::<u64>::new(set).read().map_err(|_| e::EFAULT)?;
    let deadline = if timeout == 0 {
        None
    } else {
        Some(crate::time::now_ns().saturating_add(super::read_timespec(timeout)?))
    };
    let thread = &current.thread;
    let take = || -> Option<u8> {
        for source in [&thread.pending, &thread.process.shared_pending] {
            let hits = source.load(Ordering::Acquire) & set;
            if hits != 0 {
                let sig = hits.trailing_zeros() as u8 + 1;
                if source.fetch_and(!(1 << (sig - 1)), Ordering::AcqRel) & (1 << (sig - 1)) != 0 {
                    return Some(sig);
                }
            }
        }
        None
    };
    loop {
        if let Some(sig) = take() {
            if info != 0 {
                let mut words = [0u64; 16];
                words[0] = u64::from(sig);
                let i = thread.infos.lock()[usize::from(sig - 1)];
                words[1] = u64::from(i.code as u32);
                words[2] = u64::from(i.pid);
                let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
                user::copy_to_user(info, &bytes).map_err(|_| e::EFAULT)?;
            }
            return Ok(u64::from(sig));
        }
        let pending_any = || {
            (thread.pending.load(Ordering::Acquire)
                | thread.process.shared_pending.load(Ordering::Acquire))
                & set
                != 0
        };
        match sched::wait(
            &current.task,
            &[&*thread.process.signalled],
            deadline,
            pending_any,
        ) {
            Wait::TimedOut => return Err(e::EAGAIN),
            Wait::Interrupted if !pending_any() => return Err(e::EINTR),
            _ => {}
        }
    }
}

pub fn sigaltstack(current: &Current, new: u64, old: u64) -> SysResult {
    let thread = &current.thread;
    let (base, size, flags) = *thread.altstack.lock();
    if old != 0 {
        UserPtr::<[u64; 3]>::new(old)
            .write([base, u64::from(flags), size])
            .map_err(|_| e::EFAULT)?;
    }
    if new != 0 {
        let [sp, flags, size] = UserPtr::<[u64; 3]>::new(new)
            .read()
            .map_err(|_| e::EFAULT)?;
        let flags = flags as u32;
        if flags & g::SS_DISABLE != 0 {
            *thread.altstack.lock() = (0, 0, g::SS_DISABLE);
        } else {
            if flags & !(g::SS_AUTODISARM) != 0 {
                return Err(e::EINVAL);
            }
            if size < u64::from(g::MINSIGSTKSZ) {
                return Err(e::ENOMEM);
            }
            *thread.altstack.lock() = (sp, size, 0);
        }
    }
    Ok(0)
}

pub fn futex(current: &Current, a: [u64; 6]) -> SysResult {
    let [address, op, value, timeout, address2, value3] = a;
    let op = op as u32;
    let command = op & (g::FUTEX_CMD_MASK as u32);
    let realtime = op & g::FUTEX_CLOCK_REALTIME != 0;
    let deadline = |absolute: bool| -> Result<Option<u64>, u32> {
        if timeout == 0 {
            return Ok(None);
        }
        let ns = super::read_timespec(timeout)?;
        let now = crate::time::now_ns();
        Ok(Some(if absolute {
            let clock_now = if realtime {
                crate::time::unix_time_ns()
            } else {
                now
            };
            now.saturating_add(ns.saturating_sub(clock_now))
        } else {
            now.saturating_add(ns)
        }))
    };
    let process = current.process();
    match command {
        g::FUTEX_WAIT => {
            crate::futex::wait(current, address, value as u32, deadline(false)?, u32::MAX)
        }
        g::FUTEX_WAIT_BITSET => crate::futex::wait(
            current,
            address,
            value as u32,
            deadline(true)?,
            value3 as u32,
        ),
        g::FUTEX_WAKE => Ok(crate::futex::wake(process, address, value as u32)),
        g::FUTEX_WAKE_BITSET => {
            if value3 as u32 == 0 {
                return Err(e::EINVAL);
            }
            Ok(crate::futex::wake_bitset(
                process,
                address,
                value as u32,
                value3 as u32,
            ))
        }
        g::FUTEX_REQUEUE => crate::futex::requeue(
            process,
            address,
            address2,
            value as u32,
            timeout as u32,
            None,
        ),
        g::FUTEX_CMP_REQUEUE => crate::futex::requeue(
            process,
            address,
            address2,
            value as u32,
            timeout as u32,
            Some(value3 as u32),
        ),
        _ => Err(e::ENOSYS),
    }
}

pub fn getpgid(pid: u64, field: impl Fn(&Process) -> u32, current: &Current) -> SysResult {
    if pid == 0 {
        return Ok(u64::from(field(current.process())));
    }
    let p = process::find(pid as u32).ok_or(e::ESRCH)?;
    Ok(u64::from(field(&p)))
}

pub fn setpgid(current: &Current, pid: u64, pgid: u64) -> SysResult {
    if pgid as i32 <= -1 {
        return Err(e::EINVAL);
    }
    let me = current.process();
    let target = if pid == 0 || pid as u32 == me.pid {
        Arc::clone(me)
    } else {
        let child = process::find(pid as u32).ok_or(e::ESRCH)?;
        if child.ppid.load(Ordering::Relaxed) != me.pid {
            return Err(e::ESRCH);
        }
        child
    };
    if target.sid.load(Ordering::Relaxed) == target.pid {
        return Err(e::EPERM);
    }
    let pgid = if pgid == 0 { target.pid } else { pgid as u32 };
    // Joining a group: it must exist in the same session.
    let sid = target.sid.load(Ordering::Relaxed);
    if pgid != target.pid
        && !process::all()
            .iter()
            .any(|p| p.pgid.load(Ordering::Relaxed) == pgid && p.sid.load(Ordering::Relaxed) == sid)
    {
        return Err(e::EPERM);
    }
    target.pgid.store(pgid, Ordering::Relaxed);
    Ok(0)
}

pub fn setsid(current: &Current) -> SysResult {
    let me = current.process();
    let pid = me.pid;
    if process::all()
        .iter()
        .any(|p| p.pgid.load(Ordering::Relaxed) == pid)
        && me.pgid.load(Ordering::Relaxed) == pid
    {
        return Err(e::EPERM);
    }
    me.pgid.store(pid, Ordering::Relaxed);
    me.sid.store(pid, Ordering::Relaxed);
    *me.ctty.lock() = None;
    Ok(u64::from(pid))
}

pub fn sched_getaffinity(pid: u64, size: u64, mask: u64) -> SysResult {
    if pid != 0 && process::find(pid as u32).is_none() {
        return Err(e::ESRCH);
    }
    let cpus = hal::percpu::online_count();
    let bytes = cpus.div_ceil(64) * 8;
    if (size as usize) < bytes || !size.is_multiple_of(8) {
        return Err(e::EINVAL);
    }
    let mut out = alloc::vec![0u8; bytes];
    for cpu in 0..cpus {
        out[cpu / 8] |= 1 << (cpu % 8);
    }
    user::copy_to_user(mask, &out).map_err(|_| e::EFAULT)?;
    Ok(bytes as u64)
}

pub fn getcpu(cpu: u64, node: u64) -> SysResult {
    if cpu != 0 {
        UserPtr::<u32>::new(cpu)
            .write(hal::percpu::current_index() as u32)
            .map_err(|_| e::EFAULT)?;
    }
    if node != 0 {
        UserPtr::<u32>::new(node).write(0).map_err(|_| e::EFAULT)?;
    }
    Ok(0)
}

pub fn prctl(current: &Current, option: u64, arg: u64) -> SysResult {
    let process = current.process();
    match option as u32 {
        linux_raw_sys::prctl::PR_SET_NAME => {
            let name = user::read_cstr(arg, 4096).map_err(|_| e::EFAULT)?;
            let mut comm = [0u8; 16];
            let n = name.len().min(15);
            comm[..n].copy_from_slice(&name[..n]);
            *process.comm.lock() = comm;
            Ok(0)
        }
        linux_raw_sys::prctl::PR_GET_NAME => user::copy_to_user(arg, &*process.comm.lock())
            .map(|()| 0)
            .map_err(|_| e::EFAULT),
        linux_raw_sys::prctl::PR_SET_PDEATHSIG | linux_raw_sys::prctl::PR_SET_DUMPABLE => Ok(0),
        linux_raw_sys::prctl::PR_GET_DUMPABLE => Ok(1),
        _ => Err(e::EINVAL),
    }
}

pub fn sysinfo(info: u64) -> SysResult {
    let stats = hal::mm::stats();
    let uptime = crate::time::now_ns() / 1_000_000_000;
    let mut words = [0u64; 14];
    words[0] = uptime;
    words[4] = stats.frames.managed * 4096; // totalram
    words[5] = stats.frames.free * 4096; // freeram
    words[10] = process::all().len() as u64 & 0xffff; // procs (u16) + padding
    words[13] = 1; // mem_unit (u32) at offset 104
    let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    bytes.resize(112, 0);
    user::copy_to_user(info, &bytes)
        .map(|()| 0)
        .map_err(|_| e::EFAULT)
}

/// Clock ticks (`AT_CLKTCK`, 100 per second) in `ns`.
fn ticks(ns: u64) -> u64 {
    ns / 10_000_000
}

pub fn times(current: &Current, buf: u64) -> SysResult {
    let p = current.process();
    if buf != 0 {
        let mine = ticks(p.cpu_ns.load(Ordering::Relaxed));
        let children = ticks(p.children_cpu_ns.load(Ordering::Relaxed));
        UserPtr::<[u64; 4]>::new(buf)
            .write([mine, 0, children, 0])
            .map_err(|_| e::EFAULT)?;
    }
    Ok(ticks(crate::time::now_ns()))
}

fn write_rusage(address: u64, cpu_ns: u64) -> Result<(), u32> {
    let mut words = [0u64; 18];
    words[0] = cpu_ns / 1_000_000_000;
    words[1] = cpu_ns % 1_000_000_000 / 1000;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    user::copy_to_user(address, &bytes).map_err(|_| e::EFAULT)
}

pub fn getrusage(current: &Current, who: i32, usage: u64) -> SysResult {
    let p = current.process();
    let ns = match who {
        0 | 1 => p.cpu_ns.load(Ordering::Relaxed),
        -1 => p.children_cpu_ns.load(Ordering::Relaxed),
        _ => return Err(e::EINVAL),
    };
    write_rusage(usage, ns).map(|()| 0)
}

pub fn reboot(magic1: u64, magic2: u64, command: u64) -> SysResult {
    const MAGIC1: u64 = 0xfee1_dead;
    const MAGIC2: [u64; 4] = [672_274_793, 85_072_278, 369_367_448, 537_993_216];
    if magic1 != MAGIC1 || !MAGIC2.contains(&magic2) {
        return Err(e::EINVAL);
    }
    match command as u32 {
        0x4321_fedc => {
            log::info!("reboot: power off requested");
            crate::power::shutdown()
        }
        0x0123_4567 | 0xa1b2_c3d4 => {
            log::info!("reboot: restart requested");
            crate::power::reboot()
        }
        0xcdef_0123 => {
            log::info!("reboot: halt requested");
            crate::power::shutdown()
        }
        0x89ab_cdef | 0 => Ok(0),
        _ => Err(e::EINVAL),
    }
}
