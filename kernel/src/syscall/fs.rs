//! File, directory, pipe and descriptor calls.

use alloc::{string::String, sync::Arc, vec, vec::Vec};
use core::sync::atomic::Ordering;

use hal::user::{self, UserPtr};
use linux_raw_sys::{errno as e, general as g};

use super::{MAX_IO, SysResult, read_path, read_user};
use crate::{
    fs::{
        self, Kind, Node,
        file::{OpenFile, Target},
        pipe::Pipe,
    },
    process::Current,
    sched::{self, Wait},
    signal,
};

fn file(current: &Current, fd: u64) -> Result<Arc<OpenFile>, u32> {
    current.process().fds().lock().get(fd)
}

/// The directory a `*at` call's relative path starts from.
fn base(current: &Current, dirfd: u64) -> Result<Arc<Node>, u32> {
    if dirfd as i32 == g::AT_FDCWD {
        return Ok(Arc::clone(&current.process().cwd.lock().node));
    }
    let file = file(current, dirfd)?;
    let node = file.node().ok_or(e::ENOTDIR)?;
    if !node.is_dir() {
        return Err(e::ENOTDIR);
    }
    Ok(Arc::clone(node))
}

/// Resolves `path` (a user pointer) relative to `dirfd`.
fn resolve(current: &Current, dirfd: u64, path: &str, follow: bool) -> Result<Arc<Node>, u32> {
    if path.is_empty() {
        return Err(e::ENOENT);
    }
    if let Some(target) = proc_exe(current, path) {
        return if follow {
            fs::lookup(&fs::root(), &target, true)
        } else {
            Ok(Node::new_symlink(target))
        };
    }
    let start = if path.starts_with('/') {
        fs::root()
    } else {
        base(current, dirfd)?
    };
    fs::lookup_as(Some(who(current)), &start, path, follow)
}

/// Resolves `path` (already read in) from the caller's working directory.
pub fn resolve_path(current: &Current, path: &str, follow: bool) -> Result<Arc<Node>, u32> {
    resolve(current, g::AT_FDCWD as u64, path, follow)
}

/// The caller, as a path lookup needs it (`/proc/self`).
pub fn who(current: &Current) -> fs::proc::Who {
    fs::proc::Who {
        pid: current.process().pid,
        tid: current.thread.tid,
    }
}

fn resolve_parent<'p>(
    current: &Current,
    dirfd: u64,
    path: &'p str,
) -> Result<(Arc<Node>, &'p str), u32> {
    let start = if path.starts_with('/') {
        fs::root()
    } else {
        base(current, dirfd)?
    };
    fs::lookup_parent_as(Some(who(current)), &start, path)
}

/// `/proc/self/exe`, `/proc/thread-self/exe` and `/proc/PID/exe` — the part of procfs
/// programs need before procfs exists (busybox runs its applets through it, Rust's
/// `current_exe` reads it): the absolute path of the process's program.
pub fn proc_exe(current: &Current, path: &str) -> Option<String> {
    let rest = path.strip_prefix("/proc/")?;
    let (who, file) = rest.split_once('/')?;
    if file.trim_end_matches('/') != "exe" {
        return None;
    }
    let process = match who {
        "self" | "thread-self" => Arc::clone(current.process()),
        pid => crate::process::find(pid.parse().ok()?)?,
    };
    let exe = process.path.lock().clone();
    Some(exe)
}

/// A write that found no reader: `SIGPIPE` for the thread, then `EPIPE`.
fn pipe_error(current: &Current, result: Result<usize, u32>) -> SysResult {
    match result {
        Ok(n) => Ok(n as u64),
        Err(errno) if errno == e::EPIPE => {
            signal::send_thread(&current.thread, signal::SIGPIPE);
            Err(e::EPIPE)
        }
        Err(errno) if errno == e::EINTR => Err(signal::ERESTARTSYS),
        Err(errno) => Err(errno),
    }
}

fn read_result(result: Result<usize, u32>) -> SysResult {
    match result {
        Ok(n) => Ok(n as u64),
        Err(errno) if errno == e::EINTR => Err(signal::ERESTARTSYS),
        Err(errno) => Err(errno),
    }
}

/// Whether reads and writes of `file` go on past [`MAX_IO`] in one call (a regular file
/// or a disk never returns short, as on Linux; pipes and terminals do).
fn whole_transfers(file: &OpenFile) -> bool {
    matches!(&file.target, Target::Node(n)
        if matches!(n.kind, Kind::File(_) | Kind::Device(fs::Device::Block(..))))
}

/// `read`/`pread`: in [`MAX_IO`] pieces for files that do not return short.
fn read_into(current: &Current, file: &OpenFile, buf: u64, len: u64, at: Option<u64>) -> SysResult {
    let mut total = 0u64;
    loop {
        let want = ((len - total) as usize).min(MAX_IO);
        let mut data = vec![0u8; want];
        let n = match file.read(current, &mut data, at.map(|a| a + total)) {
            Ok(n) => n,
            Err(_) if total > 0 => return Ok(total),
            Err(errno) => return read_result(Err(errno)),
        };
        user::copy_to_user(buf + total, &data[..n]).map_err(|_| e::EFAULT)?;
        total += n as u64;
        if n < want || total == len || !whole_transfers(file) {
            return Ok(total);
        }
    }
}

/// `write`/`pwrite`: in [`MAX_IO`] pieces for files that do not return short.
fn write_from(
    current: &Current,
    file: &OpenFile,
    buf: u64,
    len: u64,
    at: Option<u64>,
) -> SysResult {
    let mut total = 0u64;
    loop {
        let data = read_user(buf + total, len - total)?;
        let n = match file.write(current, &data, at.map(|a| a + total)) {
            Ok(n) => n as u64,
            Err(_) if total > 0 => return Ok(total),
            Err(errno) => return pipe_error(current, Err(errno)),
        };
        total += n;
        if n < data.len() as u64 || total == len || !whole_transfers(file) {
            return Ok(total);
        }
    }
}

pub fn read(current: &Current, fd: u64, buf: u64, len: u64) -> SysResult {
    let file = file(current, fd)?;
    if let Target::SignalFd(sfd) = &file.target {
        return signalfd_read(current, &file, sfd, buf, len);
    }
    read_into(current, &file, buf, len, None)
}

pub fn write(current: &Current, fd: u64, buf: u64, len: u64) -> SysResult {
    let file = file(current, fd)?;
    write_from(current, &file, buf, len, None)
}

pub fn pread(current: &Current, fd: u64, buf: u64, len: u64, offset: u64) -> SysResult {
    let file = file(current, fd)?;
    if offset as i64 <= -1 {
        return Err(e::EINVAL);
    }
    if !matches!(file.target, Target::Node(_)) {
        return Err(e::ESPIPE);
    }
    read_into(current, &file, buf, len, Some(offset))
}

pub fn pwrite(current: &Current, fd: u64, buf: u64, len: u64, offset: u64) -> SysResult {
    let file = file(current, fd)?;
    if offset as i64 <= -1 {
        return Err(e::EINVAL);
    }
    if !matches!(file.target, Target::Node(_)) {
        return Err(e::ESPIPE);
    }
    write_from(current, &file, buf, len, Some(offset))
}

/// Reads an iovec array: (base, len) pairs.
fn iovecs(iov: u64, count: u64) -> Result<Vec<(u64, usize)>, u32> {
    if count > u64::from(g::UIO_MAXIOV) {
        return Err(e::EINVAL);
    }
    let mut out = Vec::new();
    let mut total = 0usize;
    for i in 0..count as usize {
        let [base, len] = UserPtr::<[u64; 2]>::new(iov)
            .offset(i)
            .and_then(UserPtr::read)
            .map_err(|_| e::EFAULT)?;
        if len as i64 > isize::MAX as i64 || len > (1 << 40) {
            return Err(e::EINVAL);
        }
        let len = (len as usize).min(MAX_IO - total.min(MAX_IO));
        total += len;
        out.push((base, len));
    }
    Ok(out)
}

pub fn readv(current: &Current, fd: u64, iov: u64, count: u64) -> SysResult {
    let file = file(current, fd)?;
    let vecs = iovecs(iov, count)?;
    let total: usize = vecs.iter().map(|v| v.1).sum();
    let mut data = vec![0u8; total];
    let n = read_result(file.read(current, &mut data, None))? as usize;
    let mut done = 0;
    for (base, len) in vecs {
        if done >= n {
            break;
        }
        let k = len.min(n - done);
        user::copy_to_user(base, &data[done..done + k]).map_err(|_| e::EFAULT)?;
        done += k;
    }
    Ok(n as u64)
}

pub fn writev(current: &Current, fd: u64, iov: u64, count: u64) -> SysResult {
    let file = file(current, fd)?;
    let mut data = Vec::new();
    for (base, len) in iovecs(iov, count)? {
        let start = data.len();
        data.resize(start + len, 0);
        user::copy_from_user(base, &mut data[start..]).map_err(|_| e::EFAULT)?;
    }
    pipe_error(current, file.write(current, &data, None))
}

pub fn openat(current: &Current, dirfd: u64, path: u64, flags: u64, mode: u64) -> SysResult {
    let path = read_path(path)?;
    let flags = flags as u32;
    let follow = flags & g::O_NOFOLLOW == 0;
    let node = match resolve(current, dirfd, &path, follow) {
        Ok(node) => {
            if flags & g::O_CREAT != 0 && flags & g::O_EXCL != 0 {
                return Err(e::EEXIST);
            }
            node
        }
        Err(errno) if errno == e::ENOENT && flags & g::O_CREAT != 0 => {
            let (mut dir, name) = resolve_parent(current, dirfd, &path)?;
            if path.ends_with('/') {
                return Err(e::EISDIR);
            }
            // Without O_EXCL, creating through a dangling symbolic link creates its target.
            let mut name = String::from(name);
            let mut hops = 0;
            while flags & g::O_EXCL == 0
                && let Ok(link) = dir.child(&name)
                && let Kind::Symlink(target) = &link.kind
            {
                hops += 1;
                if hops > 40 {
                    return Err(e::ELOOP);
                }
                let target = target.clone();
                let start = if target.starts_with('/') {
                    fs::root()
                } else {
                    dir
                };
                let (d, n) = fs::lookup_parent_as(Some(who(current)), &start, &target)?;
                dir = d;
                name = String::from(n);
            }
            let name = name.as_str();
            let umask = current.process().umask.load(Ordering::Relaxed);
            let node = Node::new_file(&[], mode as u32 & !umask)?;
            dir.link(name, Arc::clone(&node))?;
            node
        }
        Err(errno) => return Err(errno),
    };
    if let Kind::Symlink(_) = node.kind
        && flags & g::O_PATH == 0
    {
        return Err(e::ELOOP);
    }
    let access = flags & g::O_ACCMODE;
    if matches!(node.kind, Kind::Socket) && flags & g::O_PATH == 0 {
        return Err(e::ENXIO);
    }
    if node.is_dir() && (access != g::O_RDONLY || flags & g::O_CREAT != 0) {
        return Err(e::EISDIR);
    }
    if flags & g::O_DIRECTORY != 0 && !node.is_dir() {
        return Err(e::ENOTDIR);
    }
    if flags & g::O_TRUNC != 0
        && access != g::O_RDONLY
        && let Kind::File(data) = &node.kind
    {
        // Through `resize`, so the bytes go back to the file system's count.
        node.resize(&mut data.lock(), 0)?;
        node.touch();
    }
    let target = match node.kind {
        Kind::Device(fs::Device::Tty(id)) if flags & g::O_PATH == 0 => {
            crate::tty::open_target(Some(current), id, Arc::clone(&node), flags)?
        }
        _ => Target::Node(node),
    };
    let file = OpenFile::new(target, flags, path);
    current
        .process()
        .fds()
        .lock()
        .insert(file, flags & g::O_CLOEXEC != 0)
}

pub fn close(current: &Current, fd: u64) -> SysResult {
    let file = current.process().fds().lock().remove(fd)?;
    drop(file);
    Ok(0)
}

pub fn lseek(current: &Current, fd: u64, offset: u64, whence: u64) -> SysResult {
    let file = file(current, fd)?;
    let Target::Node(node) = &file.target else {
        return Err(e::ESPIPE);
    };
    let mut pos = file.offset.lock();
    let base = match whence as u32 {
        g::SEEK_SET => 0,
        g::SEEK_CUR => *pos as i64,
        g::SEEK_END => match node.kind {
            // A disk's end is its size (`stat` says 0, as Linux).
            Kind::Device(fs::Device::Block(disk, part)) => {
                crate::block::extent(disk, part).map_or(0, |x| x.bytes()) as i64
            }
            _ => node.size() as i64,
        },
        _ => return Err(e::EINVAL),
    };
    let new = base.checked_add(offset as i64).ok_or(e::EINVAL)?;
    if new < 0 {
        return Err(e::EINVAL);
    }
    *pos = new as u64;
    Ok(new as u64)
}

pub fn dup(current: &Current, fd: u64) -> SysResult {
    let fds = current.process().fds();
    let mut fds = fds.lock();
    let file = fds.get(fd)?;
    fds.insert(file, false)
}

pub fn dup3(current: &Current, old: u64, new: u64, flags: u64, dup2: bool) -> SysResult {
    if flags & !u64::from(g::O_CLOEXEC) != 0 {
        return Err(e::EINVAL);
    }
    let fds = current.process().fds();
    let mut fds = fds.lock();
    let file = fds.get(old)?;
    if old == new {
        return if dup2 { Ok(new) } else { Err(e::EINVAL) };
    }
    if new as usize >= fs::file::MAX_FDS {
        return Err(e::EBADF);
    }
    let closed = fds.remove(new).ok();
    fds.put(new as usize, file, flags != 0);
    drop(fds);
    drop(closed);
    Ok(new)
}

pub fn fcntl(current: &Current, fd: u64, command: u64, arg: u64) -> SysResult {
    let fds = current.process().fds();
    let mut fds = fds.lock();
    match command as u32 {
        g::F_DUPFD | g::F_DUPFD_CLOEXEC => {
            let file = fds.get(fd)?;
            if arg as usize >= fs::file::MAX_FDS {
                return Err(e::EINVAL);
            }
            fds.insert_from(arg as usize, file, command as u32 == g::F_DUPFD_CLOEXEC)
        }
        g::F_GETFD => Ok(u64::from(fds.slot_mut(fd)?.cloexec)),
        g::F_SETFD => {
            fds.slot_mut(fd)?.cloexec = arg & u64::from(g::FD_CLOEXEC) != 0;
            Ok(0)
        }
        g::F_GETFL => Ok(u64::from(fds.get(fd)?.flags.load(Ordering::Relaxed))),
        g::F_SETFL => {
            fds.get(fd)?.set_flags(arg as u32);
            Ok(0)
        }
        g::F_GETLK | g::F_SETLK | g::F_SETLKW => fds.get(fd).map(|_| 0),
        g::F_GETPIPE_SZ => match fds.get(fd)?.target {
            Target::PipeRead(_) | Target::PipeWrite(_) => Ok(fs::pipe::CAPACITY as u64),
            _ => Err(e::EBADF),
        },
        _ => {
            fds.get(fd)?;
            Err(e::EINVAL)
        }
    }
}

pub fn pipe2(current: &Current, fds_out: u64, flags: u64) -> SysResult {
    let flags = flags as u32;
    if flags & !(g::O_CLOEXEC | g::O_NONBLOCK | g::O_DIRECT) != 0 {
        return Err(e::EINVAL);
    }
    let pipe = Pipe::new();
    let nonblock = flags & g::O_NONBLOCK;
    let reader = OpenFile::new(
        Target::PipeRead(Arc::clone(&pipe)),
        g::O_RDONLY | nonblock,
        "pipe".into(),
    );
    let writer = OpenFile::new(
        Target::PipeWrite(pipe),
        g::O_WRONLY | nonblock,
        "pipe".into(),
    );
    let cloexec = flags & g::O_CLOEXEC != 0;
    let fds = current.process().fds();
    let mut fds = fds.lock();
    let r = fds.insert(reader, cloexec)?;
    let w = match fds.insert(writer, cloexec) {
        Ok(w) => w,
        Err(errno) => {
            let _ = fds.remove(r);
            return Err(errno);
        }
    };
    if UserPtr::<[u32; 2]>::new(fds_out)
        .write([r as u32, w as u32])
        .is_err()
    {
        let _ = fds.remove(r);
        let _ = fds.remove(w);
        return Err(e::EFAULT);
    }
    Ok(0)
}

/// What `stat` says about a node (or a pipe end, when `node` is `None`).
fn stat_words(node: Option<&Node>, pipe_ino: u64) -> [u64; 18] {
    let mut st = [0u64; 18];
    match node {
        Some(node) => {
            let mtime = node.mtime.load(Ordering::Relaxed);
            st[0] = match node.kind {
                Kind::Proc(_) => 0x16,
                _ => u64::from(node.fs.load(Ordering::Relaxed).wrapping_add(1)),
            }; // st_dev
            st[1] = node.ino;
            st[2] = if node.is_dir() {
                2
            } else {
                u64::from(node.nlink.load(Ordering::Relaxed))
            };
            st[3] = u64::from(node.st_mode());
            st[5] = match node.kind {
                Kind::Device(d) => d.rdev(),
                _ => 0,
            };
            st[6] = node.size();
            st[7] = 4096;
            st[8] = node.size().div_ceil(512);
            for i in [9, 11, 13] {
                st[i] = mtime / 1_000_000_000;
                st[i + 1] = mtime % 1_000_000_000;
            }
        }
        None => {
            st[0] = 0xc;
            st[1] = pipe_ino;
            st[2] = 1;
            st[3] = u64::from(g::S_IFIFO | 0o600);
            st[7] = 4096;
        }
    }
    st
}

/// What `stat` says about an anonymous-inode file (eventfd, epoll): Linux's `anon_inode`,
/// mode 0600 with no file type.
fn anon_stat(ino: u64) -> [u64; 18] {
    let mut st = stat_words(None, ino);
    st[0] = 0xe;
    st[3] = 0o600;
    st
}

fn file_stat(file: &OpenFile) -> [u64; 18] {
    match &file.target {
        Target::Node(node) => stat_words(Some(node), 0),
        Target::PipeRead(p) | Target::PipeWrite(p) => stat_words(None, Arc::as_ptr(p) as u64 >> 4),
        Target::EventFd(c) => anon_stat(Arc::as_ptr(c) as u64 >> 4),
        Target::Epoll(ep) => anon_stat(Arc::as_ptr(ep) as u64 >> 4),
        Target::TimerFd(t) => anon_stat(Arc::as_ptr(t) as u64 >> 4),
        Target::SignalFd(f) => anon_stat(Arc::as_ptr(f) as u64 >> 4),
        Target::Tty(_, node) | Target::PtyMaster(_, node) => stat_words(Some(node), 0),
        Target::Socket(s) => {
            let mut st = anon_stat(Arc::as_ptr(s) as u64 >> 4);
            st[0] = 0x8;
            st[3] = u64::from(g::S_IFSOCK | 0o777);
            st
        }
    }
}

pub fn fstat(current: &Current, fd: u64, buf: u64) -> SysResult {
    let file = file(current, fd)?;
    UserPtr::<[u64; 18]>::new(buf)
        .write(file_stat(&file))
        .map(|()| 0)
        .map_err(|_| e::EFAULT)
}

/// The stat words for `path` relative to `dirfd` (or the descriptor with `AT_EMPTY_PATH`).
fn stat_at(current: &Current, dirfd: u64, path: u64, flags: u64) -> Result<[u64; 18], u32> {
    let path = read_path(path)?;
    if path.is_empty() && flags & u64::from(g::AT_EMPTY_PATH) != 0 {
        if dirfd as i32 == g::AT_FDCWD {
            let cwd = Arc::clone(&current.process().cwd.lock().node);
            return Ok(stat_words(Some(&cwd), 0));
        }
        return Ok(file_stat(&*file(current, dirfd)?));
    }
    let follow = flags & u64::from(g::AT_SYMLINK_NOFOLLOW) == 0;
    let node = resolve(current, dirfd, &path, follow)?;
    Ok(stat_words(Some(&node), 0))
}

pub fn newfstatat(current: &Current, dirfd: u64, path: u64, buf: u64, flags: u64) -> SysResult {
    let st = stat_at(current, dirfd, path, flags)?;
    UserPtr::<[u64; 18]>::new(buf)
        .write(st)
        .map(|()| 0)
        .map_err(|_| e::EFAULT)
}

pub fn statx(
    current: &Current,
    dirfd: u64,
    path: u64,
    flags: u64,
    _mask: u64,
    buf: u64,
) -> SysResult {
    let st = stat_at(current, dirfd, path, flags)?;
    let mut out = [0u8; 256];
    let put32 =
        |out: &mut [u8; 256], at: usize, v: u32| out[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let put64 =
        |out: &mut [u8; 256], at: usize, v: u64| out[at..at + 8].copy_from_slice(&v.to_le_bytes());
    put32(&mut out, 0, 0x7ff); // STATX_BASIC_STATS
    put32(&mut out, 4, st[7] as u32);
    put32(&mut out, 16, st[2] as u32);
    out[28..30].copy_from_slice(&(st[3] as u16).to_le_bytes());
    put64(&mut out, 32, st[1]);
    put64(&mut out, 40, st[6]);
    put64(&mut out, 48, st[8]);
    for (at, i) in [(64, 9), (96, 13), (112, 11)] {
        put64(&mut out, at, st[i]);
        put32(&mut out, at + 8, st[i + 1] as u32);
    }
    put32(&mut out, 128, (st[5] >> 8) as u32);
    put32(&mut out, 132, (st[5] & 0xff) as u32);
    put32(&mut out, 136, 0);
    put32(&mut out, 140, st[0] as u32);
    user::copy_to_user(buf, &out)
        .map(|()| 0)
        .map_err(|_| e::EFAULT)
}

fn dirent_type(node: &Node) -> u8 {
    match node.kind {
        Kind::Dir { .. } => 4,
        Kind::File(_) => 8,
        Kind::Symlink(_) => 10,
        Kind::Device(_) => 2,
        Kind::Socket => 12,
        Kind::Proc(fs::proc::Entry::Dir(_)) => 4,
        Kind::Proc(fs::proc::Entry::File(_)) => 8,
    }
}

pub fn getdents64(current: &Current, fd: u64, buf: u64, len: u64) -> SysResult {
    let file = file(current, fd)?;
    let Some(dir) = file.node().filter(|n| n.is_dir()) else {
        return Err(e::ENOTDIR);
    };
    let dir = Arc::clone(dir);
    let mut offset = file.offset.lock();
    // Offsets count entries returned; where the last read stopped after a name, the next goes
    // on after that name (entries are sorted by name), whatever was removed before it.
    let resume = file
        .dir_cursor
        .lock()
        .clone()
        .filter(|(at, _)| *at == *offset && *at > 2)
        .map(|(_, name)| name);
    let mut entries: Vec<(String, u64, u8)> = vec![
        (".".into(), dir.ino, 4),
        ("..".into(), dir.parent().map_or(dir.ino, |p| p.ino), 4),
    ];
    // Where `entries` starts, as an offset.
    let mut first = 0usize;
    if let Some(list) = dir.entries() {
        let list = list.lock();
        if resume.is_some() {
            entries.clear();
            first = *offset as usize;
        }
        let mut add = |(name, node): (&String, &Arc<Node>)| {
            entries.push((name.clone(), node.ino, dirent_type(node)));
        };
        match &resume {
            Some(name) => list
                .range::<String, _>((
                    core::ops::Bound::Excluded(name),
                    core::ops::Bound::Unbounded,
                ))
                .for_each(&mut add),
            None => list.iter().for_each(&mut add),
        }
    } else if let Kind::Proc(fs::proc::Entry::Dir(d)) = dir.kind {
        entries.extend(fs::proc::list(d));
    }
    let mut out = Vec::new();
    let mut index = *offset as usize;
    let mut last = None;
    while let Some((name, ino, kind)) = entries.get(index - first) {
        let reclen = (19 + name.len() + 1).next_multiple_of(8);
        if out.len() + reclen > len as usize {
            break;
        }
        let start = out.len();
        out.extend_from_slice(&ino.to_le_bytes());
        out.extend_from_slice(&((index + 1) as u64).to_le_bytes());
        out.extend_from_slice(&(reclen as u16).to_le_bytes());
        out.push(*kind);
        out.extend_from_slice(name.as_bytes());
        out.resize(start + reclen, 0);
        last = Some(name);
        index += 1;
    }
    if out.is_empty() && index - first < entries.len() {
        return Err(e::EINVAL);
    }
    user::copy_to_user(buf, &out).map_err(|_| e::EFAULT)?;
    *offset = index as u64;
    if dir.entries().is_some()
        && let Some(name) = last
    {
        *file.dir_cursor.lock() = Some((index as u64, name.clone()));
    }
    Ok(out.len() as u64)
}

pub fn getcwd(current: &Current, buf: u64, size: u64) -> SysResult {
    let path = current.process().cwd.lock().path.clone();
    let mut bytes = path.into_bytes();
    bytes.push(0);
    if bytes.len() as u64 > size {
        return Err(e::ERANGE);
    }
    user::copy_to_user(buf, &bytes).map_err(|_| e::EFAULT)?;
    Ok(bytes.len() as u64)
}

fn set_cwd(current: &Current, node: Arc<Node>, path: &str) -> SysResult {
    if !node.is_dir() {
        return Err(e::ENOTDIR);
    }
    let mut cwd = current.process().cwd.lock();
    cwd.path = fs::normalise(&cwd.path, path);
    cwd.node = node;
    Ok(0)
}

pub fn chdir(current: &Current, path: u64) -> SysResult {
    let path = read_path(path)?;
    let node = resolve(current, g::AT_FDCWD as u64, &path, true)?;
    set_cwd(current, node, &path)
}

pub fn fchdir(current: &Current, fd: u64) -> SysResult {
    let file = file(current, fd)?;
    let node = Arc::clone(file.node().ok_or(e::ENOTDIR)?);
    let path = file.path.clone();
    set_cwd(current, node, &path)
}

pub fn mkdirat(current: &Current, dirfd: u64, path: u64, mode: u64) -> SysResult {
    let path = read_path(path)?;
    let (dir, name) = resolve_parent(current, dirfd, &path)?;
    if dir.child(name).is_ok() {
        return Err(e::EEXIST);
    }
    let umask = current.process().umask.load(Ordering::Relaxed);
    dir.link(name, Node::new_dir(Some(&dir), mode as u32 & !umask))?;
    Ok(0)
}

pub fn unlinkat(current: &Current, dirfd: u64, path: u64, flags: u64) -> SysResult {
    let path = read_path(path)?;
    let remove_dir = flags & u64::from(g::AT_REMOVEDIR) != 0;
    let (dir, name) = resolve_parent(current, dirfd, &path)?;
    if name == "." {
        return Err(e::EINVAL);
    }
    if name == ".." {
        return Err(e::ENOTEMPTY);
    }
    let entries = dir.entries().ok_or(e::ENOTDIR)?;
    let entries = entries.lock();
    let node = entries.get(name).ok_or(e::ENOENT)?;
    match (remove_dir, node.entries()) {
        (true, None) => return Err(e::ENOTDIR),
        (false, Some(_)) => return Err(e::EISDIR),
        (true, Some(children)) if !children.lock().is_empty() => return Err(e::ENOTEMPTY),
        _ => {}
    }
    if path.ends_with('/') && node.entries().is_none() {
        return Err(e::ENOTDIR);
    }
    drop(entries);
    dir.unlink(name);
    Ok(0)
}

/// `renameat2`'s flags.
const RENAME_NOREPLACE: u64 = 1;
const RENAME_EXCHANGE: u64 = 2;

pub fn renameat(
    current: &Current,
    olddir: u64,
    old: u64,
    newdir: u64,
    new: u64,
    flags: u64,
) -> SysResult {
    let old = read_path(old)?;
    let new = read_path(new)?;
    if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE | 4) != 0
        || flags & (RENAME_NOREPLACE | RENAME_EXCHANGE) == RENAME_NOREPLACE | RENAME_EXCHANGE
    {
        return Err(e::EINVAL);
    }
    let (from, old_name) = resolve_parent(current, olddir, &old)?;
    let (to, new_name) = resolve_parent(current, newdir, &new)?;
    if [old_name, new_name].iter().any(|n| *n == "." || *n == "..") {
        return Err(if old_name == "." || old_name == ".." {
            e::EBUSY
        } else {
            e::EINVAL
        });
    }
    let node = from.child(old_name)?;
    if (old.ends_with('/') || new.ends_with('/')) && !node.is_dir() {
        return Err(e::ENOTDIR);
    }
    if from.fs.load(Ordering::Relaxed) != to.fs.load(Ordering::Relaxed) {
        return Err(e::EXDEV);
    }
    let existing = to.child(new_name).ok();
    if flags & RENAME_EXCHANGE != 0 {
        let other = existing.ok_or(e::ENOENT)?;
        if node.is_dir() && to.is_within(&node) || other.is_dir() && from.is_within(&other) {
            return Err(e::EINVAL);
        }
        from.unlink(old_name);
        to.unlink(new_name);
        to.link(new_name, node)?;
        from.link(old_name, other)?;
        return Ok(0);
    }
    if node.is_dir() && to.is_within(&node) {
        return Err(e::EINVAL);
    }
    if let Some(existing) = existing {
        if flags & RENAME_NOREPLACE != 0 {
            return Err(e::EEXIST);
        }
        if Arc::ptr_eq(&existing, &node) {
            return Ok(0);
        }
        match (node.is_dir(), existing.entries()) {
            (false, Some(_)) => return Err(e::EISDIR),
            (true, None) => return Err(e::ENOTDIR),
            (true, Some(c)) if !c.lock().is_empty() => return Err(e::ENOTEMPTY),
            _ => {}
        }
        to.unlink(new_name);
    }
    from.unlink(old_name);
    to.link(new_name, node)?;
    Ok(0)
}

/// `fallocate`: mode 0 makes the file at least `offset + len` long (RAM files have no
/// holes to fill), `FALLOC_FL_KEEP_SIZE` alone changes nothing visible, a punched hole
/// (`PUNCH_HOLE | KEEP_SIZE`) and `ZERO_RANGE` read back as zeros; other modes are
/// `EOPNOTSUPP`, as on tmpfs.
pub fn fallocate(current: &Current, fd: u64, mode: u64, offset: u64, len: u64) -> SysResult {
    const KEEP_SIZE: u64 = 1;
    const PUNCH_HOLE: u64 = 2;
    const ZERO_RANGE: u64 = 0x10;
    let file = file(current, fd)?;
    if (offset as i64) < 0 || (len as i64) <= 0 {
        return Err(e::EINVAL);
    }
    let end = offset.checked_add(len).ok_or(e::EFBIG)?;
    if !file.writable() {
        return Err(e::EBADF);
    }
    let node = match &file.target {
        Target::Node(node) => node,
        Target::PipeRead(_) | Target::PipeWrite(_) => return Err(e::ESPIPE),
        _ => return Err(e::ENODEV),
    };
    let Kind::File(data) = &node.kind else {
        return Err(if node.is_dir() { e::EISDIR } else { e::ENODEV });
    };
    let mut data = data.lock();
    let size = data.len() as u64;
    match mode {
        0 if end > size => node.resize(&mut data, usize::try_from(end).map_err(|_| e::EFBIG)?)?,
        0 | KEEP_SIZE => {}
        m if m == PUNCH_HOLE | KEEP_SIZE || m & !KEEP_SIZE == ZERO_RANGE => {
            let stop = end.min(size) as usize;
            data.zero_range(offset as usize, stop);
            if m == ZERO_RANGE && end > size {
                node.resize(&mut data, end as usize)?;
            }
        }
        _ => return Err(e::EOPNOTSUPP),
    }
    drop(data);
    node.touch();
    Ok(0)
}

pub fn symlinkat(current: &Current, target: u64, dirfd: u64, path: u64) -> SysResult {
    let target = read_path(target)?;
    let path = read_path(path)?;
    let (dir, name) = resolve_parent(current, dirfd, &path)?;
    dir.link(name, Node::new_symlink(target))?;
    Ok(0)
}

pub fn linkat(current: &Current, olddir: u64, old: u64, newdir: u64, new: u64) -> SysResult {
    let old = read_path(old)?;
    let new = read_path(new)?;
    let node = resolve(current, olddir, &old, false)?;
    if node.is_dir() {
        return Err(e::EPERM);
    }
    let (dir, name) = resolve_parent(current, newdir, &new)?;
    if dir.fs.load(Ordering::Relaxed) != node.fs.load(Ordering::Relaxed) {
        return Err(e::EXDEV);
    }
    dir.link(name, node)?;
    Ok(0)
}

pub fn readlinkat(current: &Current, dirfd: u64, path: u64, buf: u64, size: u64) -> SysResult {
    let path = read_path(path)?;
    if size as i64 <= 0 {
        return Err(e::EINVAL);
    }
    let node = resolve(current, dirfd, &path, false)?;
    let Kind::Symlink(target) = &node.kind else {
        return Err(e::EINVAL);
    };
    let target = target.as_str();
    let n = target.len().min(size as usize);
    user::copy_to_user(buf, &target.as_bytes()[..n]).map_err(|_| e::EFAULT)?;
    Ok(n as u64)
}

pub fn faccessat(current: &Current, dirfd: u64, path: u64, mode: u64) -> SysResult {
    let path = read_path(path)?;
    if mode & !0o7 != 0 {
        return Err(e::EINVAL);
    }
    let node = resolve(current, dirfd, &path, true)?;
    // Root may read and write anything, and execute what has any execute bit.
    if mode & 1 != 0 && !node.is_dir() && node.mode.load(Ordering::Relaxed) & 0o111 == 0 {
        return Err(e::EACCES);
    }
    Ok(0)
}

pub fn fchmodat(current: &Current, dirfd: u64, path: u64, mode: u64) -> SysResult {
    let path = read_path(path)?;
    let node = resolve(current, dirfd, &path, true)?;
    node.mode.store(mode & 0o7777, Ordering::Relaxed);
    Ok(0)
}

pub fn fchmod(current: &Current, fd: u64, mode: u64) -> SysResult {
    let file = file(current, fd)?;
    if let Some(node) = file.node() {
        node.mode.store(mode & 0o7777, Ordering::Relaxed);
    }
    Ok(0)
}

pub fn utimensat(current: &Current, dirfd: u64, path: u64, times: u64, flags: u64) -> SysResult {
    let node = if path == 0 {
        Arc::clone(file(current, dirfd)?.node().ok_or(e::EBADF)?)
    } else {
        let path = read_path(path)?;
        resolve(
            current,
            dirfd,
            &path,
            flags & u64::from(g::AT_SYMLINK_NOFOLLOW) == 0,
        )?
    };
    let mtime = if times == 0 {
        crate::time::unix_time_ns()
    } else {
        let [_, [s, ns]] = UserPtr::<[[i64; 2]; 2]>::new(times)
            .read()
            .map_err(|_| e::EFAULT)?;
        match ns {
            n if n == i64::from(g::UTIME_OMIT as i32) || n == (1 << 30) - 2 => return Ok(0),
            n if n == (1 << 30) - 1 => crate::time::unix_time_ns(),
            n if (0..1_000_000_000).contains(&n) && s >= 0 => s as u64 * 1_000_000_000 + n as u64,
            _ => return Err(e::EINVAL),
        }
    };
    node.mtime.store(mtime, Ordering::Relaxed);
    Ok(0)
}

fn set_len(node: &Node, len: u64) -> SysResult {
    if len as i64 <= -1 {
        return Err(e::EINVAL);
    }
    match &node.kind {
        Kind::File(data) => {
            let len = usize::try_from(len).map_err(|_| e::EFBIG)?;
            node.resize(&mut data.lock(), len)?;
            node.touch();
            Ok(0)
        }
        Kind::Dir { .. } => Err(e::EISDIR),
        _ => Err(e::EINVAL),
    }
}

pub fn truncate(current: &Current, path: u64, len: u64) -> SysResult {
    let path = read_path(path)?;
    let node = resolve(current, g::AT_FDCWD as u64, &path, true)?;
    set_len(&node, len)
}

pub fn ftruncate(current: &Current, fd: u64, len: u64) -> SysResult {
    let file = file(current, fd)?;
    if !file.writable() {
        return Err(e::EINVAL);
    }
    set_len(file.node().ok_or(e::EINVAL)?, len)
}

pub fn fsync(current: &Current, fd: u64) -> SysResult {
    let file = file(current, fd)?;
    if let Some(node) = file.node()
        && let Kind::Device(fs::Device::Block(disk, part)) = node.kind
    {
        crate::block::extent(disk, part).ok_or(e::ENXIO)?.flush()?;
    }
    Ok(0)
}

/// Terminal ioctls (`TCGETS`, `TIOCGWINSZ`, …) and `FIONREAD`.
pub fn ioctl(current: &Current, fd: u64, request: u64, arg: u64) -> SysResult {
    const FIONREAD: u32 = 0x541b;
    const FIONBIO: u32 = 0x5421;
    const FIONCLEX: u32 = 0x5450;
    const FIOCLEX: u32 = 0x5451;
    let file = file(current, fd)?;
    match (&file.target, request as u32) {
        // What Linux answers for every file, before asking the file itself.
        (_, FIONBIO) => {
            let on = UserPtr::<i32>::new(arg).read().map_err(|_| e::EFAULT)? != 0;
            let flags = file.flags.load(Ordering::Relaxed) & !g::O_NONBLOCK;
            file.set_flags(if on { flags | g::O_NONBLOCK } else { flags });
            Ok(0)
        }
        (_, FIOCLEX | FIONCLEX) => {
            let fds = current.process().fds();
            let mut fds = fds.lock();
            fds.slot_mut(fd)?.cloexec = request as u32 == FIOCLEX;
            Ok(0)
        }
        (Target::Socket(sock), FIONREAD) => UserPtr::<u32>::new(arg)
            .write(sock.available() as u32)
            .map(|()| 0)
            .map_err(|_| e::EFAULT),
        (Target::PipeRead(p), FIONREAD) => UserPtr::<u32>::new(arg)
            .write(p.available() as u32)
            .map(|()| 0)
            .map_err(|_| e::EFAULT),
        (Target::Node(node), FIONREAD) if matches!(node.kind, Kind::File(_)) => {
            let left = node.size().saturating_sub(*file.offset.lock());
            UserPtr::<u32>::new(arg)
                .write(left as u32)
                .map(|()| 0)
                .map_err(|_| e::EFAULT)
        }
        (Target::Node(node), request)
            if matches!(node.kind, Kind::Device(fs::Device::Block(..))) =>
        {
            let Kind::Device(fs::Device::Block(disk, part)) = node.kind else {
                unreachable!("matched above")
            };
            let extent = crate::block::extent(disk, part).ok_or(e::ENXIO)?;
            const BLKGETSIZE: u32 = 0x1260;
            const BLKSSZGET: u32 = 0x1268;
            const BLKPBSZGET: u32 = 0x127b;
            const BLKGETSIZE64: u32 = 0x8008_1272;
            const BLKFLSBUF: u32 = 0x1261;
            let fault = |_| e::EFAULT;
            match request {
                BLKGETSIZE64 => UserPtr::<u64>::new(arg)
                    .write(extent.bytes())
                    .map_err(fault)?,
                BLKGETSIZE => UserPtr::<u64>::new(arg)
                    .write(extent.bytes() / 512)
                    .map_err(fault)?,
                BLKSSZGET | BLKPBSZGET => UserPtr::<i32>::new(arg).write(512).map_err(fault)?,
                BLKFLSBUF => extent.flush()?,
                _ => return Err(e::ENOTTY),
            }
            Ok(0)
        }
        (Target::Tty(tty, _), request) => tty.ioctl(current, request, arg),
        (Target::PtyMaster(pty, _), request) => pty.ioctl(current, request, arg),
        _ => Err(e::ENOTTY),
    }
}

/// Readiness of `fd` for `events` (`POLLIN`, `POLLOUT`), as `revents`.
fn poll_one(current: &Current, fd: i32, events: u16) -> u16 {
    let Ok(file) = file(current, fd as u64) else {
        return g::POLLNVAL as u16;
    };
    file.readiness() & (events | g::POLLHUP as u16 | g::POLLERR as u16)
}

/// Waits until `check` finds something ready or `deadline` passes: each round sleeps on the
/// pipes' queues (and at most 10 ms, for the console's input, which has no queue yet).
fn wait_ready(
    current: &Current,
    fds: &[i32],
    deadline: Option<u64>,
    mut check: impl FnMut() -> u64,
) -> SysResult {
    loop {
        let ready = check();
        if ready > 0 {
            return Ok(ready);
        }
        let now = crate::time::now_ns();
        if deadline.is_some_and(|d| now >= d) {
            return Ok(0);
        }
        let files: Vec<Arc<OpenFile>> = fds
            .iter()
            .filter_map(|&fd| file(current, fd as u64).ok())
            .collect();
        sleep_on(current, &files, deadline, &mut check)?;
    }
}

/// One round of waiting for `files`: sleeps on their queues until woken, `check` passes or
/// `deadline` (at most 10 ms, for files without a queue). `EINTR` if a signal came.
fn sleep_on(
    current: &Current,
    files: &[Arc<OpenFile>],
    deadline: Option<u64>,
    check: &mut impl FnMut() -> u64,
) -> Result<(), u32> {
    let mut queues = Vec::new();
    for f in files {
        f.wait_queues(&mut queues);
    }
    let step = crate::time::now_ns() + 10_000_000;
    let timers = files.iter().filter_map(|f| f.deadline()).min();
    let until = deadline.map_or(step, |d| d.min(step));
    let until = timers.map_or(until, |t| t.min(until));
    if sched::wait(&current.task, &queues, Some(until), || check() > 0) == Wait::Interrupted {
        return Err(e::EINTR);
    }
    Ok(())
}

fn poll_list(current: &Current, fds: u64, count: u64, deadline: Option<u64>) -> SysResult {
    if count > fs::file::MAX_FDS as u64 {
        return Err(e::EINVAL);
    }
    let mut entries: Vec<u64> = Vec::with_capacity(count as usize);
    for i in 0..count as usize {
        let slot = UserPtr::<u64>::new(fds).offset(i).map_err(|_| e::EFAULT)?;
        entries.push(slot.read().map_err(|_| e::EFAULT)?);
    }
    let numbers: Vec<i32> = entries.iter().map(|raw| *raw as u32 as i32).collect();
    let mut revents = vec![0u16; entries.len()];
    let ready = wait_ready(current, &numbers, deadline, || {
        let mut n = 0;
        for (i, raw) in entries.iter().enumerate() {
            let fd = *raw as u32 as i32;
            revents[i] = if fd < 0 {
                0
            } else {
                poll_one(current, fd, (*raw >> 32) as u16)
            };
            if revents[i] != 0 {
                n += 1;
            }
        }
        n
    })?;
    for (i, raw) in entries.iter().enumerate() {
        let updated = (raw & 0x0000_ffff_ffff_ffff) | (u64::from(revents[i]) << 48);
        UserPtr::<u64>::new(fds)
            .offset(i)
            .and_then(|p| p.write(updated))
            .map_err(|_| e::EFAULT)?;
    }
    Ok(ready)
}

pub fn poll(current: &Current, fds: u64, count: u64, timeout_ms: i64) -> SysResult {
    let deadline = (timeout_ms >= 0).then(|| crate::time::now_ns() + timeout_ms as u64 * 1_000_000);
    poll_list(current, fds, count, deadline)
}

pub fn ppoll(current: &Current, fds: u64, count: u64, timeout: u64) -> SysResult {
    let deadline = if timeout == 0 {
        None
    } else {
        Some(crate::time::now_ns().saturating_add(super::read_timespec(timeout)?))
    };
    poll_list(current, fds, count, deadline)
}

fn select_common(current: &Current, n: u64, sets: [u64; 3], deadline: Option<u64>) -> SysResult {
    if n > fs::file::MAX_FDS as u64 {
        return Err(e::EINVAL);
    }
    let words = (n as usize).div_ceil(64);
    let mut input = [vec![0u64; words], vec![0u64; words], vec![0u64; words]];
    for (set, ptr) in input.iter_mut().zip(sets) {
        for (i, w) in set.iter_mut().enumerate() {
            if ptr != 0 {
                *w = UserPtr::<u64>::new(ptr)
                    .offset(i)
                    .and_then(UserPtr::read)
                    .map_err(|_| e::EFAULT)?;
            }
        }
    }
    let wanted: Vec<i32> = (0..n as i32)
        .filter(|&fd| {
            input
                .iter()
                .any(|s| s[fd as usize / 64] & (1 << (fd % 64)) != 0)
        })
        .collect();
    for &fd in &wanted {
        if file(current, fd as u64).is_err() {
            return Err(e::EBADF);
        }
    }
    let mut output = [vec![0u64; words], vec![0u64; words], vec![0u64; words]];
    let ready = wait_ready(current, &wanted, deadline, || {
        let mut count = 0;
        for &fd in &wanted {
            let (w, b) = (fd as usize / 64, 1u64 << (fd % 64));
            let r = poll_one(current, fd, (g::POLLIN | g::POLLOUT) as u16);
            let hits = [
                r & (g::POLLIN | g::POLLHUP) as u16 != 0,
                r & g::POLLOUT as u16 != 0,
                false,
            ];
            for k in 0..3 {
                if input[k][w] & b != 0 && hits[k] {
                    output[k][w] |= b;
                    count += 1;
                } else {
                    output[k][w] &= !b;
                }
            }
        }
        count
    })?;
    for (set, ptr) in output.iter().zip(sets) {
        for (i, w) in set.iter().enumerate() {
            if ptr != 0 {
                UserPtr::<u64>::new(ptr)
                    .offset(i)
                    .and_then(|p| p.write(*w))
                    .map_err(|_| e::EFAULT)?;
            }
        }
    }
    Ok(ready)
}

pub fn select(current: &Current, n: u64, r: u64, w: u64, x: u64, timeout: u64) -> SysResult {
    let deadline = if timeout == 0 {
        None
    } else {
        let [s, us] = UserPtr::<[i64; 2]>::new(timeout)
            .read()
            .map_err(|_| e::EFAULT)?;
        if s < 0 || !(0..1_000_000).contains(&us) {
            return Err(e::EINVAL);
        }
        Some(crate::time::now_ns() + s as u64 * 1_000_000_000 + us as u64 * 1000)
    };
    select_common(current, n, [r, w, x], deadline)
}

pub fn pselect6(current: &Current, n: u64, r: u64, w: u64, x: u64, timeout: u64) -> SysResult {
    let deadline = if timeout == 0 {
        None
    } else {
        Some(crate::time::now_ns().saturating_add(super::read_timespec(timeout)?))
    };
    select_common(current, n, [r, w, x], deadline)
}

pub fn sendfile(
    current: &Current,
    out_fd: u64,
    in_fd: u64,
    offset_ptr: u64,
    count: u64,
) -> SysResult {
    let input = file(current, in_fd)?;
    let output = file(current, out_fd)?;
    let mut at = if offset_ptr != 0 {
        Some(
            UserPtr::<u64>::new(offset_ptr)
                .read()
                .map_err(|_| e::EFAULT)?,
        )
    } else {
        None
    };
    let count = (count as usize).min(MAX_IO);
    let mut buffer = vec![0u8; count.min(64 * 1024)];
    let mut done = 0usize;
    while done < count {
        let want = (count - done).min(buffer.len());
        let n = match input.read(current, &mut buffer[..want], at) {
            Ok(n) => n,
            Err(errno) if done == 0 => return read_result(Err(errno)),
            Err(_) => break,
        };
        if n == 0 {
            break;
        }
        match output.write(current, &buffer[..n], None) {
            Ok(_) => {}
            Err(errno) if done == 0 => return pipe_error(current, Err(errno)),
            Err(_) => break,
        }
        done += n;
        if let Some(a) = at.as_mut() {
            *a += n as u64;
        }
        // One chunk at a time from pipes and devices, as Linux returns partial counts.
        if !matches!(input.node().map(|n| &n.kind), Some(Kind::File(_))) {
            break;
        }
    }
    if let (Some(a), true) = (at, offset_ptr != 0) {
        UserPtr::<u64>::new(offset_ptr)
            .write(a)
            .map_err(|_| e::EFAULT)?;
    }
    Ok(done as u64)
}

/// `eventfd2(initval, flags)`: `EFD_CLOEXEC`, `EFD_NONBLOCK`, `EFD_SEMAPHORE`.
pub fn eventfd2(current: &Current, initial: u64, flags: u64) -> SysResult {
    const SEMAPHORE: u64 = 1;
    let known = u64::from(g::O_CLOEXEC | g::O_NONBLOCK) | SEMAPHORE;
    if flags & !known != 0 {
        return Err(e::EINVAL);
    }
    let counter = fs::eventfd::EventFd::new(initial as u32, flags & SEMAPHORE != 0);
    let file = OpenFile::new(
        Target::EventFd(counter),
        g::O_RDWR | (flags as u32 & g::O_NONBLOCK),
        "anon_inode:[eventfd]".into(),
    );
    let cloexec = flags & u64::from(g::O_CLOEXEC) != 0;
    current.process().fds().lock().insert(file, cloexec)
}

/// `epoll_create1(flags)` (and `epoll_create(size)`, whose size must be positive).
pub fn epoll_create1(current: &Current, flags: u64) -> SysResult {
    if flags & !u64::from(g::O_CLOEXEC) != 0 {
        return Err(e::EINVAL);
    }
    let file = OpenFile::new(
        Target::Epoll(fs::epoll::Epoll::new()),
        g::O_RDWR,
        "anon_inode:[eventpoll]".into(),
    );
    current.process().fds().lock().insert(file, flags != 0)
}

/// The epoll instance `epfd` names (`EBADF`, or `EINVAL` for another kind of file).
fn epoll_of(current: &Current, epfd: u64) -> Result<Arc<fs::epoll::Epoll>, u32> {
    match &file(current, epfd)?.target {
        Target::Epoll(ep) => Ok(Arc::clone(ep)),
        _ => Err(e::EINVAL),
    }
}

/// `epoll_ctl(epfd, op, fd, event)`.
pub fn epoll_ctl(current: &Current, epfd: u64, op: u64, fd: u64, event: u64) -> SysResult {
    use fs::epoll::Control;
    let ep = epoll_of(current, epfd)?;
    let target = file(current, fd)?;
    let op = match op as u32 {
        g::EPOLL_CTL_ADD => Control::Add,
        g::EPOLL_CTL_DEL => Control::Delete,
        g::EPOLL_CTL_MOD => Control::Modify,
        _ => return Err(e::EINVAL),
    };
    let (events, data) = if matches!(op, Control::Delete) {
        (0, 0)
    } else {
        let mut raw = [0u8; 12];
        user::copy_from_user(event, &mut raw).map_err(|_| e::EFAULT)?;
        (
            u32::from_ne_bytes(raw[..4].try_into().expect("4 bytes")),
            u64::from_ne_bytes(raw[4..].try_into().expect("8 bytes")),
        )
    };
    if fd == epfd {
        return Err(e::EINVAL);
    }
    ep.control(op, fd as i32, &target, events, data).map(|()| 0)
}

/// `epoll_wait(epfd, events, maxevents, timeout_ms)` (and `epoll_pwait`, whose signal mask
/// is not applied yet).
pub fn epoll_wait(
    current: &Current,
    epfd: u64,
    events: u64,
    max: u64,
    timeout_ms: i64,
) -> SysResult {
    let max = max as i32;
    if max <= 0 || max as usize > MAX_IO / 12 {
        return Err(e::EINVAL);
    }
    let ep = epoll_of(current, epfd)?;
    let deadline = (timeout_ms >= 0).then(|| crate::time::now_ns() + timeout_ms as u64 * 1_000_000);
    let ready = loop {
        let ready = ep.collect(max as usize);
        if !ready.is_empty() {
            break ready;
        }
        if deadline.is_some_and(|d| crate::time::now_ns() >= d) {
            return Ok(0);
        }
        let files = ep.files();
        let mut check = || u64::from(ep.any_ready());
        sleep_on(current, &files, deadline, &mut check)?;
    };
    let mut out = Vec::with_capacity(ready.len() * 12);
    for (bits, data) in &ready {
        out.extend_from_slice(&bits.to_ne_bytes());
        out.extend_from_slice(&data.to_ne_bytes());
    }
    user::copy_to_user(events, &out).map_err(|_| e::EFAULT)?;
    Ok(ready.len() as u64)
}

/// `timerfd_create(clockid, flags)`: `CLOCK_REALTIME`, `CLOCK_MONOTONIC`, `CLOCK_BOOTTIME`;
/// `TFD_CLOEXEC`, `TFD_NONBLOCK`.
pub fn timerfd_create(current: &Current, clock: u64, flags: u64) -> SysResult {
    let realtime = match clock as u32 {
        g::CLOCK_REALTIME => true,
        g::CLOCK_MONOTONIC | g::CLOCK_BOOTTIME => false,
        _ => return Err(e::EINVAL),
    };
    if flags & !u64::from(g::O_CLOEXEC | g::O_NONBLOCK) != 0 {
        return Err(e::EINVAL);
    }
    let file = OpenFile::new(
        Target::TimerFd(fs::timerfd::TimerFd::new(realtime)),
        g::O_RDWR | (flags as u32 & g::O_NONBLOCK),
        "anon_inode:[timerfd]".into(),
    );
    current
        .process()
        .fds()
        .lock()
        .insert(file, flags & u64::from(g::O_CLOEXEC) != 0)
}

fn timer_of(current: &Current, fd: u64) -> Result<Arc<fs::timerfd::TimerFd>, u32> {
    match &file(current, fd)?.target {
        Target::TimerFd(t) => Ok(Arc::clone(t)),
        _ => Err(e::EINVAL),
    }
}

fn write_itimerspec(at: u64, (interval, value): fs::timerfd::Setting) -> Result<(), u32> {
    let split = |ns: u64| [(ns / 1_000_000_000) as i64, (ns % 1_000_000_000) as i64];
    let [a, b] = split(interval);
    let [c, d] = split(value);
    UserPtr::<[i64; 4]>::new(at)
        .write([a, b, c, d])
        .map_err(|_| e::EFAULT)
}

/// `timerfd_settime(fd, flags, new, old)`: `TFD_TIMER_ABSTIME` (and `TFD_TIMER_CANCEL_ON_SET`,
/// accepted: the wall clock is never set here).
pub fn timerfd_settime(current: &Current, fd: u64, flags: u64, new: u64, old: u64) -> SysResult {
    const ABSTIME: u64 = 1;
    const CANCEL_ON_SET: u64 = 2;
    let timer = timer_of(current, fd)?;
    if flags & !(ABSTIME | CANCEL_ON_SET) != 0 {
        return Err(e::EINVAL);
    }
    let interval = super::read_timespec(new)?;
    let value = super::read_timespec(new + 16)?;
    let previous = timer.set(interval, value, flags & ABSTIME != 0);
    if old != 0 {
        write_itimerspec(old, previous)?;
    }
    Ok(0)
}

/// `timerfd_gettime(fd, curr)`.
pub fn timerfd_gettime(current: &Current, fd: u64, curr: u64) -> SysResult {
    let timer = timer_of(current, fd)?;
    write_itimerspec(curr, timer.get()).map(|()| 0)
}

/// `signalfd4(fd, mask, sizemask, flags)`: a new signalfd (`fd` -1) or a new mask for one.
pub fn signalfd4(current: &Current, fd: u64, mask: u64, size: u64, flags: u64) -> SysResult {
    if size != 8 || flags & !u64::from(g::O_CLOEXEC | g::O_NONBLOCK) != 0 {
        return Err(e::EINVAL);
    }
    let mask = UserPtr::<u64>::new(mask).read().map_err(|_| e::EFAULT)?;
    if fd as i32 != -1 {
        let file = file(current, fd)?;
        return match &file.target {
            Target::SignalFd(sfd) => {
                sfd.set_mask(mask);
                Ok(fd)
            }
            _ => Err(e::EINVAL),
        };
    }
    let file = OpenFile::new(
        Target::SignalFd(fs::signalfd::SignalFd::new(mask, current.process())),
        g::O_RDWR | (flags as u32 & g::O_NONBLOCK),
        "anon_inode:[signalfd]".into(),
    );
    current
        .process()
        .fds()
        .lock()
        .insert(file, flags & u64::from(g::O_CLOEXEC) != 0)
}

/// Takes the lowest signal of `mask` pending for the thread, then for the process.
fn take_signal(current: &Current, mask: u64) -> Option<u8> {
    let thread = &current.thread;
    for source in [&thread.pending, &thread.process.shared_pending] {
        let hits = source.load(Ordering::Acquire) & mask;
        if hits != 0 {
            let sig = hits.trailing_zeros() as u8 + 1;
            let bit = 1u64 << (sig - 1);
            if source.fetch_and(!bit, Ordering::AcqRel) & bit != 0 {
                return Some(sig);
            }
        }
    }
    None
}

/// `read` on a signalfd: as many 128-byte `signalfd_siginfo` records as fit and are
/// pending (at least one: blocks, or `EAGAIN` when non-blocking).
fn signalfd_read(
    current: &Current,
    file: &OpenFile,
    sfd: &fs::signalfd::SignalFd,
    buf: u64,
    len: u64,
) -> SysResult {
    const RECORD: usize = 128;
    let room = (len as usize).min(MAX_IO) / RECORD;
    if room == 0 {
        return Err(e::EINVAL);
    }
    let mut out = Vec::new();
    loop {
        while out.len() / RECORD < room {
            let Some(sig) = take_signal(current, sfd.mask()) else {
                break;
            };
            let info = current.thread.infos.lock()[usize::from(sig - 1)];
            let mut record = [0u8; RECORD];
            record[0..4].copy_from_slice(&u32::from(sig).to_ne_bytes());
            record[8..12].copy_from_slice(&info.code.to_ne_bytes());
            record[12..16].copy_from_slice(&info.pid.to_ne_bytes());
            record[72..80].copy_from_slice(&info.addr.to_ne_bytes());
            out.extend_from_slice(&record);
        }
        if !out.is_empty() {
            break;
        }
        if file.flags.load(Ordering::Relaxed) & g::O_NONBLOCK != 0 {
            return Err(e::EAGAIN);
        }
        let thread = &current.thread;
        let mask = sfd.mask();
        let pending = || {
            (thread.pending.load(Ordering::Acquire)
                | thread.process.shared_pending.load(Ordering::Acquire))
                & mask
                != 0
        };
        if sched::wait(&current.task, &[sfd.queue()], None, pending) == Wait::Interrupted
            && !pending()
        {
            return Err(e::EINTR);
        }
    }
    user::copy_to_user(buf, &out).map_err(|_| e::EFAULT)?;
    Ok(out.len() as u64)
}
