//! Processes and their threads.
//!
//! A [`Process`] owns what its threads share: the address space and its layout ([`Mm`]), the
//! descriptor table, the working directory, its children and, once it has ended, its exit
//! status (a zombie until its parent waits for it). A [`Thread`] is one scheduler task
//! running user code: its loop enters user mode, handles what brought it back (a syscall, an
//! exception, an interrupt) and goes again, until the thread or its whole process ends.
//!
//! Process 1 is init. When it ends the kernel reports its status and powers off (Linux
//! panics instead); orphans are given to it, as on Linux.

use alloc::{
    collections::BTreeMap,
    string::String,
    sync::{Arc, Weak},
    vec::Vec,
};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use hal::{
    user::AddressSpace,
    usermode::{Event, UserContext},
};
use spin::{Mutex, Once};

use crate::{
    fs::{self, Node, file::FdTable},
    sched::{self, Task, WaitQueue},
    signal::{self, SigActions},
    syscall::{self, Flow},
};

/// An address space and its layout, shared by the threads of a process (and by a `vfork`
/// child until it calls `execve`).
pub struct Mm {
    /// The page tables.
    pub space: Arc<AddressSpace>,
    /// Where things are in it.
    pub layout: Mutex<Layout>,
}

/// The layout of a user address space.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// The program break (`brk`).
    pub brk: u64,
    /// Where the heap starts (the break cannot go below it).
    pub brk_start: u64,
    /// Where the next `mmap` without an address goes (growing down).
    pub mmap_next: u64,
}

impl Mm {
    /// The memory of a freshly loaded program.
    pub fn new(image: &crate::exec::Image) -> Arc<Self> {
        Arc::new(Self {
            space: Arc::clone(&image.space),
            layout: Mutex::new(Layout {
                brk: image.brk,
                brk_start: image.brk,
                mmap_next: image.mmap_top,
            }),
        })
    }

    /// What a zombie keeps in place of its memory: one shared, empty address space, so an
    /// ended process's pages and tables go back at once rather than when it is reaped.
    fn released() -> Option<Arc<Self>> {
        static EMPTY: Once<Option<Arc<Mm>>> = Once::new();
        EMPTY
            .call_once(|| {
                let space = AddressSpace::new().ok()?;
                Some(Arc::new(Mm {
                    space,
                    layout: Mutex::new(Layout {
                        brk: 0,
                        brk_start: 0,
                        mmap_next: 0,
                    }),
                }))
            })
            .clone()
    }

    /// A copy for `fork`: private pages shared copy-on-write, `MAP_SHARED` pages shared.
    pub fn duplicate(&self) -> Result<Arc<Self>, u32> {
        let space = self
            .space
            .duplicate()
            .map_err(|_| linux_raw_sys::errno::ENOMEM)?;
        Ok(Arc::new(Self {
            space,
            layout: Mutex::new(*self.layout.lock()),
        }))
    }
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// `exit`/`exit_group` with this status (0..=255).
    Status(u8),
    /// Killed by this signal.
    Signal(u8),
}

impl Exit {
    /// The status a shell reports: the exit status, or 128 + the signal.
    pub fn shell_status(self) -> u32 {
        match self {
            Self::Status(s) => u32::from(s),
            Self::Signal(s) => 128 + u32::from(s),
        }
    }

    /// The status `wait4` reports (`WEXITSTATUS`/`WTERMSIG` encoding).
    pub fn wait_status(self) -> u32 {
        match self {
            Self::Status(s) => u32::from(s) << 8,
            Self::Signal(s) => u32::from(s),
        }
    }
}

/// The working directory: its path and its node.
#[derive(Clone)]
pub struct Cwd {
    /// The absolute path.
    pub path: String,
    /// The directory.
    pub node: Arc<Node>,
}

/// A process.
pub struct Process {
    /// Its id.
    pub pid: u32,
    /// Its parent's id (1 once orphaned).
    pub ppid: AtomicU32,
    /// Its process group.
    pub pgid: AtomicU32,
    /// Its session.
    pub sid: AtomicU32,
    /// Its memory.
    pub mm: Mutex<Arc<Mm>>,
    /// Bumped whenever `mm` is replaced (`execve`, the end): a thread looks at `mm` again on
    /// its way back to user mode only when this changed.
    pub mm_generation: AtomicU64,
    /// Its descriptors (shared with `CLONE_FILES`).
    pub files: Mutex<Arc<Mutex<FdTable>>>,
    /// Its working directory.
    pub cwd: Mutex<Cwd>,
    /// Its file mode creation mask.
    pub umask: AtomicU32,
    /// The path of the program it runs.
    pub path: Mutex<String>,
    /// Its name (`prctl(PR_SET_NAME)`; Linux's `comm`, 15 bytes and a NUL).
    pub comm: Mutex<[u8; 16]>,
    /// Its children, ended or not.
    pub children: Mutex<Vec<Arc<Process>>>,
    /// Woken when a child ends (for `wait4`).
    pub child_exited: WaitQueue,
    /// Its running threads.
    pub threads: Mutex<Vec<Arc<Thread>>>,
    /// How it ended, once it has (a zombie until its parent reaps it).
    pub exit: Mutex<Option<Exit>>,
    /// Set by `exit_group` or a fatal signal: every thread is to end, with this status.
    pub group_exit: Mutex<Option<Exit>>,
    /// Whether `group_exit` is set (looked at before each return to user mode, lock-free).
    pub exiting: AtomicBool,
    /// Its signal dispositions (shared by its threads).
    pub sigactions: Mutex<SigActions>,
    /// Signals sent to the process as a whole, not yet taken by a thread.
    pub shared_pending: AtomicU64,
    /// For a `vfork` child: set when it has called `execve` or ended, so its parent goes on.
    pub vfork_done: AtomicBool,
    /// Woken when `vfork_done` is set.
    pub vfork_wait: WaitQueue,
    /// Woken whenever a signal becomes pending for the process or one of its threads, blocked
    /// or not (`rt_sigtimedwait` waits for blocked ones).
    pub signalled: Arc<WaitQueue>,
    /// CPU time used by its threads, in ns (user and system together).
    pub cpu_ns: AtomicU64,
    /// CPU time of its reaped children.
    pub children_cpu_ns: AtomicU64,
    /// When it was made, ns since boot (`/proc/<pid>/stat`'s start time).
    pub started_ns: u64,
    /// Its program's arguments, each ending in NUL (`/proc/<pid>/cmdline`).
    pub cmdline: Mutex<Vec<u8>>,
    /// Its program's environment, each ending in NUL (`/proc/<pid>/environ`).
    pub environ: Mutex<Vec<u8>>,
    /// Job control: whether it is stopped, and what its parent has not yet been told.
    pub job: Mutex<Job>,
    /// Its session's controlling terminal (inherited by `fork`, dropped by `setsid`).
    pub ctty: Mutex<Option<Arc<crate::tty::Tty>>>,
}

/// A process's job-control state.
#[derive(Clone, Copy, Debug, Default)]
pub struct Job {
    /// Stopped by a signal, until `SIGCONT` (or `SIGKILL`).
    pub stopped: bool,
    /// A change `wait4(WUNTRACED | WCONTINUED)` has not reported yet.
    pub report: Option<JobChange>,
}

/// A job-control change a parent may wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobChange {
    /// Stopped by this signal.
    Stopped(u8),
    /// Continued by `SIGCONT`.
    Continued,
}

/// `Thread::restart_nr` when no call waits to be restarted (no syscall has this number).
pub const NO_RESTART: u64 = u64::MAX;

/// A thread of a process.
pub struct Thread {
    /// Its id (the process's id for its first thread).
    pub tid: u32,
    /// Its process.
    pub process: Arc<Process>,
    /// Its scheduler task.
    pub task: Once<Arc<Task>>,
    /// `set_tid_address`/`CLONE_CHILD_CLEARTID`: zeroed and woken (futex) when it ends.
    pub clear_child_tid: AtomicU64,
    /// Its blocked signals.
    pub sigmask: AtomicU64,
    /// Signals sent to this thread only.
    pub pending: AtomicU64,
    /// The alternate signal stack (base, size, flags).
    pub altstack: Mutex<(u64, u64, u32)>,
    /// A mask to restore after the next signal delivery (`rt_sigsuspend`).
    pub saved_mask: Mutex<Option<u64>>,
    /// The number of a syscall interrupted by a signal, to restart if no handler says no
    /// ([`NO_RESTART`] if none).
    pub restart_nr: AtomicU64,
    /// What each pending signal carries.
    pub infos: Mutex<[signal::Info; signal::NSIG]>,
}

static NEXT_PID: AtomicU32 = AtomicU32::new(1);
/// Every process and thread id in use, to its process.
static TABLE: Mutex<BTreeMap<u32, Weak<Process>>> = Mutex::new(BTreeMap::new());
/// Init's exit, once it has ended.
static INIT_EXIT: Once<Exit> = Once::new();

/// The process with id `pid`, if it exists.
pub fn find(pid: u32) -> Option<Arc<Process>> {
    TABLE.lock().get(&pid).and_then(Weak::upgrade)
}

/// Every live process.
pub fn all() -> Vec<Arc<Process>> {
    TABLE
        .lock()
        .values()
        .filter_map(Weak::upgrade)
        .filter(|p| p.exit.lock().is_none())
        .collect()
}

/// Init's exit status, once init has ended.
pub fn init_exit() -> Option<Exit> {
    INIT_EXIT.get().copied()
}

fn new_id() -> u32 {
    NEXT_PID.fetch_add(1, Ordering::Relaxed)
}

impl Process {
    fn new(
        pid: u32,
        parent: Option<&Process>,
        mm: Arc<Mm>,
        files: Arc<Mutex<FdTable>>,
    ) -> Arc<Self> {
        let (cmdline, environ) = parent.map_or((Vec::new(), Vec::new()), |p| {
            (p.cmdline.lock().clone(), p.environ.lock().clone())
        });
        let ctty = parent.and_then(|p| p.ctty.lock().clone());
        let (ppid, pgid, sid, cwd, umask, path, comm, actions) = match parent {
            Some(p) => (
                p.pid,
                p.pgid.load(Ordering::Relaxed),
                p.sid.load(Ordering::Relaxed),
                p.cwd.lock().clone(),
                p.umask.load(Ordering::Relaxed),
                p.path.lock().clone(),
                *p.comm.lock(),
                p.sigactions.lock().clone(),
            ),
            None => (
                0,
                pid,
                pid,
                Cwd {
                    path: "/".into(),
                    node: fs::root(),
                },
                0o022,
                String::new(),
                [0; 16],
                SigActions::default(),
            ),
        };
        let process = Arc::new(Self {
            pid,
            ppid: AtomicU32::new(ppid),
            pgid: AtomicU32::new(pgid),
            sid: AtomicU32::new(sid),
            mm: Mutex::new(mm),
            mm_generation: AtomicU64::new(0),
            files: Mutex::new(files),
            cwd: Mutex::new(cwd),
            umask: AtomicU32::new(umask),
            path: Mutex::new(path),
            comm: Mutex::new(comm),
            children: Mutex::new(Vec::new()),
            child_exited: WaitQueue::new(),
            threads: Mutex::new(Vec::new()),
            exit: Mutex::new(None),
            group_exit: Mutex::new(None),
            exiting: AtomicBool::new(false),
            sigactions: Mutex::new(actions),
            shared_pending: AtomicU64::new(0),
            vfork_done: AtomicBool::new(false),
            vfork_wait: WaitQueue::new(),
            signalled: Arc::new(WaitQueue::new()),
            cpu_ns: AtomicU64::new(0),
            children_cpu_ns: AtomicU64::new(0),
            started_ns: crate::time::now_ns(),
            cmdline: Mutex::new(cmdline),
            environ: Mutex::new(environ),
            job: Mutex::new(Job::default()),
            ctty: Mutex::new(ctty),
        });
        TABLE.lock().insert(pid, Arc::downgrade(&process));
        process
    }

    /// Records the arguments and environment of the program it now runs (for `/proc`).
    pub fn set_arguments<S: AsRef<str>>(&self, argv: &[S], envp: &[S]) {
        let joined = |list: &[S]| {
            let mut out = Vec::new();
            for s in list {
                out.extend_from_slice(s.as_ref().as_bytes());
                out.push(0);
            }
            out
        };
        *self.cmdline.lock() = joined(argv);
        *self.environ.lock() = joined(envp);
    }

    /// Its parent, if it is still there.
    pub fn parent(&self) -> Option<Arc<Process>> {
        find(self.ppid.load(Ordering::Relaxed))
    }

    /// The descriptor table.
    pub fn fds(&self) -> Arc<Mutex<FdTable>> {
        Arc::clone(&self.files.lock())
    }

    /// The memory.
    pub fn memory(&self) -> Arc<Mm> {
        Arc::clone(&self.mm.lock())
    }

    /// Ends every thread of the process with `exit` (the first reason given wins).
    pub fn exit_group(&self, exit: Exit) {
        {
            let mut group = self.group_exit.lock();
            if group.is_some() {
                return;
            }
            *group = Some(exit);
            self.exiting.store(true, Ordering::Release);
        }
        for thread in self.threads.lock().iter() {
            if let Some(task) = thread.task.get() {
                task.interrupt();
            }
        }
    }
}

impl Thread {
    fn new(tid: u32, process: Arc<Process>, sigmask: u64) -> Arc<Self> {
        Arc::new(Self {
            tid,
            process,
            task: Once::new(),
            clear_child_tid: AtomicU64::new(0),
            sigmask: AtomicU64::new(sigmask),
            pending: AtomicU64::new(0),
            altstack: Mutex::new((0, 0, linux_raw_sys::general::SS_DISABLE)),
            saved_mask: Mutex::new(None),
            restart_nr: AtomicU64::new(NO_RESTART),
            infos: Mutex::new([signal::Info::default(); signal::NSIG]),
        })
    }
}

/// The running thread, as syscalls see it.
pub struct Current {
    /// The scheduler task.
    pub task: Arc<Task>,
    /// The thread.
    pub thread: Arc<Thread>,
}

impl Current {
    /// The process.
    pub fn process(&self) -> &Arc<Process> {
        &self.thread.process
    }
}

/// Starts a thread of `process` that runs `context`.
pub fn start_thread(
    process: &Arc<Process>,
    tid: u32,
    context: UserContext,
    sigmask: u64,
) -> Result<Arc<Thread>, u32> {
    let thread = Thread::new(tid, Arc::clone(process), sigmask);
    if tid != process.pid {
        TABLE.lock().insert(tid, Arc::downgrade(process));
    }
    process.threads.lock().push(Arc::clone(&thread));
    let for_task = Arc::clone(&thread);
    match sched::spawn(move |task| thread_main(task, for_task, context)) {
        Ok(task) => {
            thread.task.call_once(|| task);
            Ok(thread)
        }
        Err(_) => {
            process.threads.lock().retain(|t| !Arc::ptr_eq(t, &thread));
            Err(linux_raw_sys::errno::EAGAIN)
        }
    }
}

/// Creates init (process 1) running `path` with `argv`.
pub fn start_init(path: &str, argv: &[&str], envp: &[&str]) -> Result<Arc<Process>, String> {
    let node = fs::lookup(&fs::root(), path, true).map_err(|errno| {
        let (name, message) = crate::errno_names::describe(errno);
        alloc::format!(
            "{path}: {} ({})",
            message.unwrap_or("error"),
            name.unwrap_or("?")
        )
    })?;
    let fs::Kind::File(data) = &node.kind else {
        return Err(alloc::format!("{path}: not a regular file"));
    };
    let root = fs::root();
    let image = crate::exec::load(
        path,
        &data.lock().to_vec(),
        None,
        argv,
        envp,
        &mut |interp| crate::exec::read_interpreter(&root, interp, &node),
    )
    .map_err(|e| alloc::format!("{path}: {e}"))?;
    let pid = new_id();
    let mut files = FdTable::default();
    let node = fs::lookup(&fs::root(), "/dev/console", true).map_err(|_| "no /dev/console")?;
    let target = crate::tty::open_target(
        None,
        fs::TtyId::Console,
        node,
        linux_raw_sys::general::O_RDWR,
    )
    .map_err(|_| "/dev/console cannot be opened")?;
    let console = fs::file::OpenFile::new(
        target,
        linux_raw_sys::general::O_RDWR,
        "/dev/console".into(),
    );
    for fd in 0..3 {
        files.put(fd, Arc::clone(&console), false);
    }
    let process = Process::new(pid, None, Mm::new(&image), Arc::new(Mutex::new(files)));
    *process.path.lock() = path.into();
    *process.comm.lock() = crate::exec::comm_of(path);
    process.set_arguments(argv, envp);
    start_thread(&process, pid, image.context, 0).map_err(|_| "out of memory")?;
    Ok(process)
}

/// A new process (`fork`, `vfork`, `clone` without `CLONE_THREAD`): the child of `parent`,
/// with `mm` and `files`, starting with `context`.
pub fn spawn_child(
    parent: &Arc<Process>,
    mm: Arc<Mm>,
    files: Arc<Mutex<FdTable>>,
    context: UserContext,
    sigmask: u64,
) -> Result<(Arc<Process>, Arc<Thread>), u32> {
    let pid = new_id();
    let child = Process::new(pid, Some(parent), mm, files);
    parent.children.lock().push(Arc::clone(&child));
    match start_thread(&child, pid, context, sigmask) {
        Ok(thread) => Ok((child, thread)),
        Err(errno) => {
            parent.children.lock().retain(|c| !Arc::ptr_eq(c, &child));
            TABLE.lock().remove(&pid);
            Err(errno)
        }
    }
}

/// A new thread id (`clone` with `CLONE_THREAD`).
pub fn new_tid() -> u32 {
    new_id()
}

/// A thread's life: run user code, handle what brings it back, until it ends.
fn thread_main(task: Arc<Task>, thread: Arc<Thread>, mut context: UserContext) {
    let current = Current { task, thread };
    let process = Arc::clone(current.process());
    let mut generation = u64::MAX;
    let exit = loop {
        if process.exiting.load(Ordering::Acquire)
            && let Some(exit) = *process.group_exit.lock()
        {
            break ThreadEnd::Group(exit);
        }
        if let Some(end) = signal::deliver(&current, &mut context) {
            break end;
        }
        // The task's space is loaded whenever it gets a CPU back (the scheduler does that):
        // only a new `mm` needs a look here.
        let now = process.mm_generation.load(Ordering::Acquire);
        if now != generation {
            let mm = process.memory();
            current.task.use_space(&mm.space);
            generation = now;
        }
        let started = hal::time::now_ns();
        let event = context.run();
        process.cpu_ns.fetch_add(
            hal::time::now_ns().saturating_sub(started),
            Ordering::Relaxed,
        );
        match event {
            Event::Syscall => match syscall::handle(&current, &mut context) {
                Flow::Continue => {}
                Flow::ExitThread(status) => break ThreadEnd::Thread(status),
                Flow::ExitGroup(status) => {
                    process.exit_group(Exit::Status(status));
                }
            },
            Event::Interrupt(vector) => {
                if vector == hal::trap::vectors::TIMER {
                    let _ = sched::preempt(&current.task);
                }
            }
            Event::Exception {
                vector,
                error_code,
                address,
            } => signal::fault(&current, &context, vector, error_code, address),
        }
    };
    // end_thread does not return: what this frame owns goes now.
    drop(process);
    drop(context);
    end_thread(current, exit);
}

/// Why a thread's loop ended.
pub enum ThreadEnd {
    /// `exit` of this thread, with a status (the process ends with it if it was the last).
    Thread(u8),
    /// The whole process ends (`exit_group`, a fatal signal).
    Group(Exit),
}

fn end_thread(current: Current, end: ThreadEnd) -> ! {
    let Current { task, thread } = current;
    let process = Arc::clone(&thread.process);
    // CLONE_CHILD_CLEARTID: a joiner waits on this word.
    let ctid = thread.clear_child_tid.load(Ordering::Relaxed);
    if ctid != 0 && hal::user::UserPtr::<u32>::new(ctid).write(0).is_ok() {
        crate::futex::wake(&process, ctid, 1);
    }
    let last = {
        let mut threads = process.threads.lock();
        threads.retain(|t| !Arc::ptr_eq(t, &thread));
        threads.is_empty()
    };
    if thread.tid != process.pid {
        TABLE.lock().remove(&thread.tid);
    }
    drop(thread);
    // Off its tables before they go (the active slot would keep them alive).
    task.set_space(None);
    if last {
        let exit = match end {
            ThreadEnd::Group(exit) => exit,
            ThreadEnd::Thread(status) => process.group_exit.lock().unwrap_or(Exit::Status(status)),
        };
        end_process(&process, exit);
    }
    drop(process);
    hal::user::deactivate();
    sched::exit(task)
}

/// The last thread of `process` has ended: close what it had, hand its children to init,
/// become a zombie and tell the parent.
fn end_process(process: &Arc<Process>, exit: Exit) {
    let closed = process.fds().lock().clear();
    drop(closed);
    crate::itimer::forget(process);
    if let Some(empty) = Mm::released() {
        let memory = core::mem::replace(&mut *process.mm.lock(), empty);
        process.mm_generation.fetch_add(1, Ordering::AcqRel);
        drop(memory);
    }
    process.vfork_done.store(true, Ordering::Release);
    process.vfork_wait.wake_all();
    if process.sid.load(Ordering::Relaxed) == process.pid {
        crate::tty::session_ended(process);
    }
    let ctty = process.ctty.lock().take();
    drop(ctty);
    let orphans = core::mem::take(&mut *process.children.lock());
    if !orphans.is_empty()
        && let Some(init) = find(1).filter(|i| !Arc::ptr_eq(i, process))
    {
        for orphan in &orphans {
            orphan.ppid.store(1, Ordering::Relaxed);
        }
        init.children.lock().extend(orphans);
        init.child_exited.wake_all();
    }
    *process.exit.lock() = Some(exit);
    if process.pid == 1 {
        INIT_EXIT.call_once(|| exit);
        return;
    }
    if let Some(parent) = process.parent() {
        parent.child_exited.wake_all();
        signal::send_process(&parent, signal::SIGCHLD);
    }
}

/// Removes a reaped child from the id table.
pub fn reap(child: &Arc<Process>) {
    TABLE.lock().remove(&child.pid);
}
