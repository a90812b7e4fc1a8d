//! procfs: the kernel's state as files, made when they are read.
//!
//! Nothing here is stored. A lookup under `/proc` makes a fresh [`Node`] whose kind is an
//! [`Entry`] (a directory or a file of procfs), and reading the file renders its text from
//! the live kernel at that moment, as Linux's `seq_file` does: a reader sees the offset it
//! asks for in the text as it is now. Two kinds of file exist:
//!
//! - **global files** (`meminfo`, `uptime`, `sys/kernel/hostname`, `net/dev`, …) are a table
//!   of paths with a render function and, for the few that take writes, a write function.
//!   Other parts of the kernel add theirs with [`register`] (the boot-slot code adds
//!   `evergreen/boot`), as a driver calls `proc_create` on Linux;
//! - **per-process files** under `/proc/<pid>/` (`stat`, `status`, `cmdline`, `fd/`, …),
//!   rendered from the process table; `self` and `thread-self` are symbolic links to the
//!   caller's ids, which is why a lookup carries who asks ([`Who`]).
//!
//! The formats are Linux's, field for field, because busybox `ps`, `top`, `free`, `uptime`,
//! `pidof` and `pkill` parse them. Where Evergreen does not keep a number Linux reports
//! (page faults, nice values, split user/system time) the field is 0 or the whole; the
//! comments say so.

use alloc::{
    format,
    string::{String, ToString},
    sync::Arc,
    vec::Vec,
};
use core::{fmt::Write, sync::atomic::Ordering};

use linux_raw_sys::errno as e;
use spin::Mutex;

use super::{Kind, Node};
use crate::process::{self, Process};

/// Who is looking a path up: what `/proc/self` and `/proc/thread-self` point to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Who {
    /// The caller's process id.
    pub pid: u32,
    /// The caller's thread id.
    pub tid: u32,
}

/// A procfs node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A directory.
    Dir(Dir),
    /// A file.
    File(File),
}

/// A procfs directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// `/proc` itself.
    Root,
    /// A directory of global files (`sys`, `sys/kernel`, `net`, …): the path below `/proc`.
    Named(&'static str),
    /// `/proc/<pid>` (also `/proc/<pid>/task/<tid>`, which shows the same process).
    Process(u32),
    /// `/proc/<pid>/task`.
    Tasks(u32),
    /// `/proc/<pid>/fd`.
    Fds(u32),
}

/// A procfs file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum File {
    /// A global file: its index in the table.
    Global(usize),
    /// A file of a process.
    Process(u32, ProcessFile),
}

/// The files in `/proc/<pid>/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessFile {
    Stat,
    Statm,
    Status,
    Cmdline,
    Comm,
    Environ,
    Mounts,
    Maps,
}

const PROCESS_FILES: [(&str, ProcessFile); 8] = [
    ("stat", ProcessFile::Stat),
    ("statm", ProcessFile::Statm),
    ("status", ProcessFile::Status),
    ("cmdline", ProcessFile::Cmdline),
    ("comm", ProcessFile::Comm),
    ("environ", ProcessFile::Environ),
    ("mounts", ProcessFile::Mounts),
    ("maps", ProcessFile::Maps),
];

/// The symbolic links in `/proc/<pid>/`.
const PROCESS_LINKS: [&str; 3] = ["exe", "cwd", "root"];

/// Renders a global file.
pub type Render = fn() -> String;
/// Takes a write to a global file: the bytes written, or an errno.
pub type Take = fn(&[u8]) -> Result<(), u32>;

struct Global {
    path: &'static str,
    render: Render,
    take: Option<Take>,
}

static GLOBALS: Mutex<Vec<Global>> = Mutex::new(Vec::new());

/// Adds the global file `/proc/<path>` (directories in `path` appear as needed): reading it
/// gives `render()`, writing it calls `take` (no `take`: the file is read-only, `EACCES`
/// for writers). A path registered twice keeps its first registration.
pub fn register(path: &'static str, render: Render, take: Option<Take>) {
    let mut globals = GLOBALS.lock();
    if globals.iter().any(|g| g.path == path) {
        log::warn!("proc: /proc/{path} registered twice; the second is ignored");
        return;
    }
    globals.push(Global { path, render, take });
}

/// The kernel's own global files.
pub fn init() {
    register("meminfo", meminfo, None);
    register("cpuinfo", cpuinfo, None);
    register("stat", stat, None);
    register("uptime", uptime, None);
    register("loadavg", loadavg, None);
    register("version", version, None);
    register("filesystems", filesystems, None);
    register("mounts", mounts, None);
    register("cmdline", cmdline, None);
    register("sys/kernel/hostname", hostname, Some(set_hostname));
    register("sys/kernel/osrelease", || format!("{}\n", OSRELEASE), None);
    register("sys/kernel/ostype", || "Linux\n".into(), None);
    register("sys/kernel/pid_max", || "4194304\n".into(), None);
    register("net/dev", crate::net::proc_net_dev, None);
}

/// The root of procfs, to mount on `/proc`.
pub fn root() -> Arc<Node> {
    node(Entry::Dir(Dir::Root))
}

fn node(entry: Entry) -> Arc<Node> {
    let mode = match entry {
        Entry::Dir(_) => 0o555,
        Entry::File(File::Global(i)) => {
            if GLOBALS.lock().get(i).is_some_and(|g| g.take.is_some()) {
                0o644
            } else {
                0o444
            }
        }
        Entry::File(File::Process(_, ProcessFile::Environ)) => 0o400,
        Entry::File(_) => 0o444,
    };
    Node::new(Kind::Proc(entry), mode)
}

/// Looks `name` up in the procfs directory `dir`.
pub fn child(dir: Dir, name: &str, who: Option<Who>) -> Result<Arc<Node>, u32> {
    match dir {
        Dir::Root => {
            match name {
                "self" => return who.map(|w| link(w.pid.to_string())).ok_or(e::ENOENT),
                "thread-self" => {
                    return who
                        .map(|w| link(format!("{}/task/{}", w.pid, w.tid)))
                        .ok_or(e::ENOENT);
                }
                _ => {}
            }
            if let Ok(pid) = name.parse::<u32>() {
                return live(pid).map(|p| node(Entry::Dir(Dir::Process(p.pid))));
            }
            named_child("", name)
        }
        Dir::Named(prefix) => named_child(prefix, name),
        Dir::Process(pid) => {
            let process = live(pid)?;
            if let Some((_, file)) = PROCESS_FILES.iter().find(|(n, _)| *n == name) {
                return Ok(node(Entry::File(File::Process(pid, *file))));
            }
            match name {
                "exe" => Ok(link(process.path.lock().clone())),
                "cwd" => Ok(link(process.cwd.lock().path.clone())),
                "root" => Ok(link("/".into())),
                "fd" => Ok(node(Entry::Dir(Dir::Fds(pid)))),
                "task" => Ok(node(Entry::Dir(Dir::Tasks(pid)))),
                _ => Err(e::ENOENT),
            }
        }
        Dir::Tasks(pid) => {
            let process = live(pid)?;
            let tid: u32 = name.parse().map_err(|_| e::ENOENT)?;
            if process.threads.lock().iter().any(|t| t.tid == tid) {
                Ok(node(Entry::Dir(Dir::Process(pid))))
            } else {
                Err(e::ENOENT)
            }
        }
        Dir::Fds(pid) => {
            let process = live(pid)?;
            let fd: u64 = name.parse().map_err(|_| e::ENOENT)?;
            let file = process.fds().lock().get(fd).map_err(|_| e::ENOENT)?;
            Ok(link(describe_open_file(&file)))
        }
    }
}

/// What `/proc/<pid>/fd/N` points to: the path it was opened by, or Linux's
/// `type:[inode]` for what has none.
fn describe_open_file(file: &super::file::OpenFile) -> String {
    use super::file::Target;
    match &file.target {
        Target::Node(_) => file.path.clone(),
        Target::PipeRead(_) | Target::PipeWrite(_) => "pipe:[0]".into(),
        _ if !file.path.is_empty() => file.path.clone(),
        _ => "anon_inode:[unknown]".into(),
    }
}

fn link(target: String) -> Arc<Node> {
    Node::new_symlink(target)
}

/// A process that exists (zombies included, as on Linux) with `pid` as its id. Thread ids
/// resolve only through `task/`.
fn live(pid: u32) -> Result<Arc<Process>, u32> {
    process::find(pid).filter(|p| p.pid == pid).ok_or(e::ENOENT)
}

/// A global file or directory `name` under the directory `prefix` ("" for `/proc`).
fn named_child(prefix: &'static str, name: &str) -> Result<Arc<Node>, u32> {
    let globals = GLOBALS.lock();
    for (i, global) in globals.iter().enumerate() {
        let Some(rest) = below(global.path, prefix) else {
            continue;
        };
        match rest.split_once('/') {
            None if rest == name => {
                drop(globals);
                return Ok(node(Entry::File(File::Global(i))));
            }
            Some((dir, _)) if dir == name => {
                let len = global.path.len() - rest.len() + dir.len();
                let path = &global.path[..len];
                drop(globals);
                return Ok(node(Entry::Dir(Dir::Named(path))));
            }
            _ => {}
        }
    }
    Err(e::ENOENT)
}

/// `path` with the directory `prefix/` taken off, if it is below it.
fn below(path: &'static str, prefix: &str) -> Option<&'static str> {
    if prefix.is_empty() {
        return Some(path);
    }
    path.strip_prefix(prefix)?.strip_prefix('/')
}

/// The parent of a procfs directory (`/proc`'s is the directory it is mounted in).
pub fn parent(dir: Dir) -> Option<Arc<Node>> {
    match dir {
        Dir::Root => None,
        Dir::Named(path) => Some(match path.rsplit_once('/') {
            Some((up, _)) => node(Entry::Dir(Dir::Named(up))),
            None => root(),
        }),
        Dir::Process(_) => Some(root()),
        Dir::Tasks(pid) | Dir::Fds(pid) => Some(node(Entry::Dir(Dir::Process(pid)))),
    }
}

/// A directory entry as `getdents64` reports it: name, inode, `d_type`.
pub type DirEntry = (String, u64, u8);

const DT_DIR: u8 = 4;
const DT_REG: u8 = 8;
const DT_LNK: u8 = 10;

/// The entries of a procfs directory (without `.` and `..`), in a stable order.
pub fn list(dir: Dir) -> Vec<DirEntry> {
    let mut out = Vec::new();
    match dir {
        Dir::Root => {
            out.extend(named_entries(""));
            out.push(("self".into(), 1, DT_LNK));
            out.push(("thread-self".into(), 2, DT_LNK));
            for p in process::all()
                .iter()
                .filter(|p| process::find(p.pid).is_some())
            {
                out.push((p.pid.to_string(), pid_ino(p.pid), DT_DIR));
            }
        }
        Dir::Named(prefix) => out.extend(named_entries(prefix)),
        Dir::Process(pid) => {
            for (name, _) in PROCESS_FILES {
                out.push((name.into(), pid_ino(pid) + 1, DT_REG));
            }
            for name in PROCESS_LINKS {
                out.push((name.into(), pid_ino(pid) + 2, DT_LNK));
            }
            out.push(("fd".into(), pid_ino(pid) + 3, DT_DIR));
            out.push(("task".into(), pid_ino(pid) + 4, DT_DIR));
        }
        Dir::Tasks(pid) => {
            if let Ok(p) = live(pid) {
                for t in p.threads.lock().iter() {
                    out.push((t.tid.to_string(), pid_ino(t.tid), DT_DIR));
                }
            }
        }
        Dir::Fds(pid) => {
            if let Ok(p) = live(pid) {
                for fd in p.fds().lock().open_fds() {
                    out.push((fd.to_string(), pid_ino(pid) + 5, DT_LNK));
                }
            }
        }
    }
    out
}

/// Inode numbers procfs reports for a process's entries (high, away from tmpfs's).
fn pid_ino(pid: u32) -> u64 {
    (1 << 40) | (u64::from(pid) << 4)
}

fn named_entries(prefix: &str) -> Vec<DirEntry> {
    let mut out: Vec<DirEntry> = Vec::new();
    for global in GLOBALS.lock().iter() {
        let Some(rest) = below(global.path, prefix) else {
            continue;
        };
        let (name, kind) = match rest.split_once('/') {
            Some((dir, _)) => (dir, DT_DIR),
            None => (rest, DT_REG),
        };
        if !out.iter().any(|(n, _, _)| n == name) {
            out.push((name.into(), 3 + out.len() as u64, kind));
        }
    }
    out
}

/// The text of a procfs file now (an errno if its process has gone).
pub fn render(file: File) -> Result<Vec<u8>, u32> {
    match file {
        File::Global(i) => {
            let render = GLOBALS.lock().get(i).map(|g| g.render).ok_or(e::ENOENT)?;
            Ok(render().into_bytes())
        }
        File::Process(pid, which) => {
            let p = live(pid).map_err(|_| e::ESRCH)?;
            Ok(match which {
                ProcessFile::Stat => process_stat(&p).into_bytes(),
                ProcessFile::Statm => process_statm(&p).into_bytes(),
                ProcessFile::Maps => process_maps(&p).into_bytes(),
                ProcessFile::Status => process_status(&p).into_bytes(),
                ProcessFile::Cmdline => p.cmdline.lock().clone(),
                ProcessFile::Environ => p.environ.lock().clone(),
                ProcessFile::Comm => {
                    let mut name = comm(&p).into_bytes();
                    name.push(b'\n');
                    name
                }
                ProcessFile::Mounts => mounts().into_bytes(),
            })
        }
    }
}

/// A write to a procfs file.
pub fn write(file: File, data: &[u8]) -> Result<usize, u32> {
    match file {
        File::Global(i) => {
            let take = GLOBALS.lock().get(i).and_then(|g| g.take);
            take.ok_or(e::EACCES)?(data)?;
            Ok(data.len())
        }
        File::Process(pid, ProcessFile::Comm) => {
            let p = live(pid).map_err(|_| e::ESRCH)?;
            let text = data.strip_suffix(b"\n").unwrap_or(data);
            let mut comm = [0u8; 16];
            let n = text.len().min(15);
            comm[..n].copy_from_slice(&text[..n]);
            *p.comm.lock() = comm;
            Ok(data.len())
        }
        File::Process(..) => Err(e::EACCES),
    }
}

fn comm(p: &Process) -> String {
    let comm = *p.comm.lock();
    let len = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..len]).into_owned()
}

/// Linux's one-letter process state: Z once ended, R for the caller's own process is not
/// knowable here, so a live process is S (sleeping) unless one of its threads is running.
fn state(p: &Process) -> char {
    if p.exit.lock().is_some() {
        'Z'
    } else if p.job.lock().stopped {
        'T'
    } else if p
        .threads
        .lock()
        .iter()
        .any(|t| t.task.get().is_some_and(|t| t.is_running()))
    {
        'R'
    } else {
        'S'
    }
}

/// Clock ticks (`USER_HZ`, 100 a second) in `ns` nanoseconds.
fn ticks(ns: u64) -> u64 {
    ns / 10_000_000
}

fn rss_pages(p: &Process) -> u64 {
    p.memory().space.mapped_pages()
}

fn vsize(p: &Process) -> u64 {
    // The break and what mmap placed (the layout's bounds), as a program's span: Evergreen
    // keeps no list of mappings, so this counts the pages that exist or are reserved.
    p.memory().space.mapped_pages() * 4096
}

fn process_stat(p: &Process) -> String {
    let threads = p.threads.lock().len().max(1);
    let state = state(p);
    let start = ticks(p.started_ns);
    // The controlling terminal's number and foreground group (a guard dropped first).
    let tty = p.ctty.lock().clone().map(|t| (t.rdev, t.pgrp()));
    // Fields as proc(5) lists them; those Evergreen does not count are 0.
    format!(
        "{pid} ({comm}) {state} {ppid} {pgrp} {session} {tty} {tpgid} 4194560 0 0 0 0 {utime} 0 \
         {cutime} 0 20 0 {threads} 0 {start} {vsize} {rss} 18446744073709551615 0 0 0 0 0 0 \
         0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
        pid = p.pid,
        comm = comm(p),
        ppid = p.ppid.load(Ordering::Relaxed),
        pgrp = p.pgid.load(Ordering::Relaxed),
        session = p.sid.load(Ordering::Relaxed),
        tty = tty.map_or(0, |(rdev, _)| rdev),
        tpgid = tty.map_or(-1, |(_, pgrp)| i64::from(pgrp)),
        utime = ticks(p.cpu_ns.load(Ordering::Relaxed)),
        cutime = ticks(p.children_cpu_ns.load(Ordering::Relaxed)),
        vsize = vsize(p),
        rss = rss_pages(p),
    )
}

/// `/proc/PID/maps`: one line per run of pages with the same access (from the page tables:
/// Evergreen keeps no list of mappings), the heap and the stack named; file mappings show no
/// file name (the tables do not record which file a page came from).
fn process_maps(p: &Process) -> String {
    let mm = p.memory();
    let layout = *mm.layout.lock();
    let mut out = String::new();
    // The heap is its own line even where it continues the data right below it.
    let mut regions = alloc::vec::Vec::new();
    for r in mm.space.regions() {
        if r.start < layout.brk_start && layout.brk_start < r.end && layout.brk > layout.brk_start {
            regions.push(hal::mm::Region {
                end: layout.brk_start,
                ..r
            });
            regions.push(hal::mm::Region {
                start: layout.brk_start,
                ..r
            });
        } else {
            regions.push(r);
        }
    }
    for r in regions {
        let perms = [
            if r.read { 'r' } else { '-' },
            if r.write { 'w' } else { '-' },
            if r.execute { 'x' } else { '-' },
            if r.shared { 's' } else { 'p' },
        ];
        let name = if r.start >= layout.brk_start && r.end <= layout.brk.max(layout.brk_start) {
            "[heap]"
        } else if r.end == crate::exec::STACK_TOP {
            "[stack]"
        } else {
            ""
        };
        let perms: String = perms.iter().collect();
        let line = format!("{:08x}-{:08x} {perms} 00000000 00:00 0", r.start, r.end);
        if name.is_empty() {
            let _ = writeln!(out, "{line}");
        } else {
            let _ = writeln!(out, "{line:<72} {name}");
        }
    }
    out
}

fn process_statm(p: &Process) -> String {
    let rss = rss_pages(p);
    format!("{} {rss} 0 0 0 {rss} 0\n", vsize(p) / 4096)
}

fn process_status(p: &Process) -> String {
    let state = match state(p) {
        'R' => "R (running)",
        'Z' => "Z (zombie)",
        'T' => "T (stopped)",
        _ => "S (sleeping)",
    };
    // Each lock taken and released before the next (a guard in a format argument lives to
    // the end of the statement).
    let (threads, pending) = {
        let threads = p.threads.lock();
        let pending = threads
            .iter()
            .fold(0, |m, t| m | t.pending.load(Ordering::Relaxed));
        (threads.len(), pending)
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "Name:\t{}\nUmask:\t{:04o}\nState:\t{state}\nTgid:\t{pid}\nNgid:\t0\nPid:\t{pid}\n\
         PPid:\t{}\nTracerPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nFDSize:\t64\n\
         Groups:\t\nVmSize:\t{} kB\nVmRSS:\t{} kB\nThreads:\t{}\nSigPnd:\t{:016x}\n\
         ShdPnd:\t{:016x}\n",
        comm(p),
        p.umask.load(Ordering::Relaxed),
        p.ppid.load(Ordering::Relaxed),
        vsize(p) / 1024,
        rss_pages(p) * 4,
        threads,
        pending,
        p.shared_pending.load(Ordering::Relaxed),
        pid = p.pid,
    );
    out
}

fn kb(frames: u64) -> u64 {
    frames * 4
}

fn meminfo() -> String {
    let stats = hal::mm::stats();
    let total = stats.frames.managed;
    let free = stats.frames.free;
    let files = super::ram_file_bytes() / 1024;
    let mut out = String::new();
    for (name, value) in [
        ("MemTotal", kb(total)),
        ("MemFree", kb(free)),
        ("MemAvailable", kb(free)),
        ("Buffers", 0),
        ("Cached", files),
        ("SwapCached", 0),
        ("Active", 0),
        ("Inactive", 0),
        ("SwapTotal", 0),
        ("SwapFree", 0),
        ("Shmem", files),
        ("Slab", stats.heap_in_use / 1024),
        ("SReclaimable", 0),
        ("PageTables", kb(stats.page_table_frames)),
    ] {
        let _ = writeln!(out, "{:<16}{value:>8} kB", format!("{name}:"));
    }
    out
}

fn cpuinfo() -> String {
    let mut out = String::new();
    let model = hal::cpu::brand_string();
    let cpus = hal::percpu::online_count();
    for cpu in 0..cpus {
        let _ = write!(
            out,
            "processor\t: {cpu}\nvendor_id\t: {}\nmodel name\t: {model}\ncpu MHz\t\t: {}\n\
             physical id\t: 0\nsiblings\t: {cpus}\ncore id\t\t: {cpu}\ncpu cores\t: {cpus}\n\
             flags\t\t: fpu pae msr apic sse sse2 syscall nx lm\n\n",
            hal::cpu::vendor_string(),
            hal::cpu::tsc_mhz(),
        );
    }
    out
}

/// `/proc/stat`: CPU time in ticks (idle measured by the idle loop; busy time is all
/// reported as user time, since Evergreen does not split user from system time), and the
/// counts `top` and `vmstat` read.
fn stat() -> String {
    let uptime = crate::time::now_ns();
    let cpus = hal::percpu::online_count();
    let mut lines = String::new();
    let (mut all_busy, mut all_idle) = (0, 0);
    for cpu in 0..cpus {
        let idle = crate::sched::idle_ns(cpu).min(uptime);
        let busy = uptime - idle;
        all_busy += busy;
        all_idle += idle;
        let _ = writeln!(
            lines,
            "cpu{cpu} {} 0 0 {} 0 0 0 0 0 0",
            ticks(busy),
            ticks(idle)
        );
    }
    let processes = process::all().len();
    let running = process::all()
        .iter()
        .filter(|p| state(p) == 'R')
        .count()
        .max(1);
    format!(
        "cpu  {} 0 0 {} 0 0 0 0 0 0\n{lines}intr 0\nctxt 0\nbtime {}\nprocesses {processes}\n\
         procs_running {running}\nprocs_blocked 0\n",
        ticks(all_busy),
        ticks(all_idle),
        crate::time::unix_time_ns() / 1_000_000_000 - uptime / 1_000_000_000,
    )
}

fn uptime() -> String {
    let up = crate::time::now_ns();
    let cpus = hal::percpu::online_count();
    let idle: u64 = (0..cpus).map(crate::sched::idle_ns).sum();
    format!(
        "{}.{:02} {}.{:02}\n",
        up / 1_000_000_000,
        up / 10_000_000 % 100,
        idle / 1_000_000_000,
        idle / 10_000_000 % 100
    )
}

/// `/proc/loadavg`: Evergreen keeps no load average yet (0.00), but the running and total
/// task counts and the last pid are real.
fn loadavg() -> String {
    let all = process::all();
    let running = all.iter().filter(|p| state(p) == 'R').count().max(1);
    let last = all.iter().map(|p| p.pid).max().unwrap_or(1);
    format!("0.00 0.00 0.00 {running}/{} {last}\n", all.len())
}

/// The release `uname` and `/proc/sys/kernel/osrelease` report.
pub const OSRELEASE: &str = "6.6.0-evergreen";

fn version() -> String {
    format!(
        "Linux version {OSRELEASE} (Evergreen {}) #1 SMP\n",
        env!("CARGO_PKG_VERSION")
    )
}

fn filesystems() -> String {
    let mut out = String::new();
    for fs in super::mount::FILESYSTEMS {
        let _ = writeln!(out, "{}\t{}", if fs.nodev { "nodev" } else { "" }, fs.name);
    }
    out
}

fn mounts() -> String {
    super::mount::table_text()
}

fn cmdline() -> String {
    format!("{}\n", hal::boot::cmdline())
}

static HOSTNAME: Mutex<String> = Mutex::new(String::new());

/// The host name (`uname`'s nodename): "evergreen" until set.
pub fn host_name() -> String {
    let name = HOSTNAME.lock();
    if name.is_empty() {
        "evergreen".into()
    } else {
        name.clone()
    }
}

/// Sets the host name (`sethostname`, `/proc/sys/kernel/hostname`): at most 64 bytes.
pub fn set_host_name(name: &[u8]) -> Result<(), u32> {
    let name = core::str::from_utf8(name).map_err(|_| e::EINVAL)?;
    if name.len() > 64 {
        return Err(e::EINVAL);
    }
    *HOSTNAME.lock() = name.into();
    Ok(())
}

fn hostname() -> String {
    format!("{}\n", host_name())
}

fn set_hostname(data: &[u8]) -> Result<(), u32> {
    set_host_name(data.strip_suffix(b"\n").unwrap_or(data))
}
