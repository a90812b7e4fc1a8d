//! Files: the VFS, with a RAM file system (tmpfs) as `/`, filled from the initramfs at boot.
//!
//! Every file of tmpfs lives in memory as a [`Node`]: a directory (names to nodes), a regular
//! file (its bytes), a symbolic link, or a device (`/dev/console`, `/dev/null`, …). procfs
//! nodes ([`proc`]) are made on lookup and render their text when read. Paths resolve from
//! the root or a working directory, following symbolic links as Linux does (at most 40 on one
//! lookup, `ELOOP` beyond) and crossing mounts ([`mount`]) both ways.

pub mod cpio;
pub mod data;
pub mod epoll;
pub mod eventfd;
pub mod file;
pub mod mount;
pub mod pipe;
pub mod proc;
pub mod signalfd;
pub mod timerfd;

use alloc::{
    collections::BTreeMap,
    string::{String, ToString},
    sync::{Arc, Weak},
    vec::Vec,
};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use linux_raw_sys::{errno as e, general as g};
use spin::{Mutex, Once};

/// A device a node stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// A terminal ([`crate::tty`]).
    Tty(TtyId),
    /// The screen's text (`/dev/vcs` and `/dev/vcs1`, 7:0 and 7:1).
    Vcs,
    /// A disk (partition 0) or one of its partitions: disk index, partition number
    /// (`vda`, `vda1`, ...; [`crate::block`]).
    Block(u8, u8),
    /// Discards writes, reads as end of file (1:3).
    Null,
    /// Reads as zeros (1:5).
    Zero,
    /// Reads as zeros, and every write fails with `ENOSPC` (1:7).
    Full,
    /// Random bytes (1:8 `random`, 1:9 `urandom`).
    Random,
    /// The kernel log, one record per read (1:11).
    Kmsg,
}

impl Device {
    /// Its device number (`st_rdev`: major << 8 | minor, as Linux encodes small numbers).
    pub fn rdev(self) -> u64 {
        match self {
            Self::Tty(id) => id.rdev(),
            Self::Vcs => (7 << 8) | 1,
            Self::Block(disk, part) => {
                (crate::block::MAJOR << 8)
                    | (u64::from(disk) * crate::block::MINORS + u64::from(part))
            }
            Self::Null => (1 << 8) | 3,
            Self::Zero => (1 << 8) | 5,
            Self::Full => (1 << 8) | 7,
            Self::Random => (1 << 8) | 9,
            Self::Kmsg => (1 << 8) | 11,
        }
    }
}

/// Which terminal a device node opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TtyId {
    /// `/dev/console` (5:1): the kernel console.
    Console,
    /// `/dev/tty` (5:0): the opener's controlling terminal.
    Current,
    /// `/dev/ttyS0` (4:64): COM1.
    Serial,
    /// `/dev/tty1` (4:1) and `/dev/tty0` (4:0): the screen and keyboard.
    Screen(u8),
    /// `/dev/ptmx` (5:2): a new pseudo-terminal pair's master.
    Ptmx,
    /// `/dev/pts/N` (136:N): a pseudo-terminal's slave.
    Pts(u32),
}

impl TtyId {
    /// Its device number.
    pub fn rdev(self) -> u64 {
        match self {
            Self::Console => (5 << 8) | 1,
            Self::Current => 5 << 8,
            Self::Serial => (4 << 8) | 64,
            Self::Screen(n) => (4 << 8) | u64::from(n),
            Self::Ptmx => (5 << 8) | 2,
            Self::Pts(n) => (136 << 8) | u64::from(n),
        }
    }
}

/// What a node is.
pub enum Kind {
    /// A directory: its entries by name, and its parent.
    Dir {
        /// Entries (without `.` and `..`).
        entries: Mutex<BTreeMap<String, Arc<Node>>>,
        /// The directory it is in (the root's is itself).
        parent: Mutex<Weak<Node>>,
    },
    /// A regular file's bytes, in pages `mmap` maps.
    File(Mutex<data::FileData>),
    /// A symbolic link's target.
    Symlink(String),
    /// A character device.
    Device(Device),
    /// A procfs directory or file (made on lookup, rendered when read).
    Proc(proc::Entry),
    /// A socket's name in the file system (`bind` to a path makes it; it cannot be opened).
    Socket,
}

/// A file of any kind, with its metadata.
pub struct Node {
    /// Its inode number (unique).
    pub ino: u64,
    /// What it is.
    pub kind: Kind,
    /// Permission bits (the low 12 bits of `st_mode`).
    pub mode: AtomicU64,
    /// Last modification, Unix ns.
    pub mtime: AtomicU64,
    /// The file system instance it belongs to ([`mount::Super`]), set when it is first
    /// linked into a directory ([`UNSET`] before).
    pub fs: AtomicU32,
    /// Names it has in directories (`st_nlink` of a file).
    pub nlink: AtomicU32,
}

/// `Node::fs` of a node not yet linked anywhere.
pub const UNSET: u32 = u32::MAX;

impl Drop for Node {
    fn drop(&mut self) {
        // The last link and descriptor are gone: its bytes go back to its file system.
        let fs = *self.fs.get_mut();
        if let Kind::File(data) = &mut self.kind {
            mount::uncharge(fs, data.get_mut().len() as u64);
        }
    }
}

static NEXT_INO: AtomicU64 = AtomicU64::new(1);
static ROOT: Once<Arc<Node>> = Once::new();

/// The longest path accepted (Linux's `PATH_MAX`).
pub const PATH_MAX: usize = 4096;
/// The largest RAM file (a runaway writer fails with `EFBIG` before memory runs out).
pub const MAX_FILE: usize = 256 << 20;
/// Symbolic links followed in one lookup before `ELOOP`.
const MAX_LINKS: u32 = 40;

impl Node {
    fn new(kind: Kind, mode: u32) -> Arc<Self> {
        Arc::new(Self {
            ino: NEXT_INO.fetch_add(1, Ordering::Relaxed),
            kind,
            mode: AtomicU64::new(u64::from(mode & 0o7777)),
            mtime: AtomicU64::new(crate::time::unix_time_ns()),
            fs: AtomicU32::new(UNSET),
            nlink: AtomicU32::new(0),
        })
    }

    /// A new empty directory inside `parent` (not yet linked there).
    pub fn new_dir(parent: Option<&Arc<Node>>, mode: u32) -> Arc<Self> {
        let node = Self::new(
            Kind::Dir {
                entries: Mutex::new(BTreeMap::new()),
                parent: Mutex::new(Weak::new()),
            },
            mode,
        );
        if let Kind::Dir { parent: p, .. } = &node.kind {
            *p.lock() = parent.map_or_else(|| Arc::downgrade(&node), Arc::downgrade);
        }
        node
    }

    /// A new regular file with `data` (`ENOSPC` if memory ran out).
    pub fn new_file(data: &[u8], mode: u32) -> Result<Arc<Self>, u32> {
        let data = data::FileData::from_bytes(data).ok_or(e::ENOSPC)?;
        Ok(Self::new(Kind::File(Mutex::new(data)), mode))
    }

    /// A new symbolic link to `target`.
    pub fn new_symlink(target: String) -> Arc<Self> {
        Self::new(Kind::Symlink(target), 0o777)
    }

    /// A new device node.
    pub fn new_device(device: Device, mode: u32) -> Arc<Self> {
        Self::new(Kind::Device(device), mode)
    }

    /// A new socket file.
    pub fn new_socket(mode: u32) -> Arc<Self> {
        Self::new(Kind::Socket, mode)
    }

    /// Whether it is a device.
    pub fn is_device(&self) -> bool {
        matches!(self.kind, Kind::Device(_))
    }

    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        matches!(
            self.kind,
            Kind::Dir { .. } | Kind::Proc(proc::Entry::Dir(_))
        )
    }

    /// Sets a regular file's length to `len` (zeros fill a growth), charging or refunding the
    /// difference to its file system: `ENOSPC` when that is full, `EFBIG` past [`MAX_FILE`].
    pub fn resize(&self, data: &mut data::FileData, len: usize) -> Result<(), u32> {
        if len > MAX_FILE {
            return Err(e::EFBIG);
        }
        let old = data.len();
        let fs = self.fs.load(Ordering::Relaxed);
        if len > old {
            mount::charge(fs, (len - old) as u64)?;
            if data.try_reserve(len - old).is_err() {
                mount::uncharge(fs, (len - old) as u64);
                return Err(e::ENOSPC);
            }
        } else {
            mount::uncharge(fs, (old - len) as u64);
        }
        data.set_len(len);
        Ok(())
    }

    /// `st_mode`: the file type and permission bits.
    pub fn st_mode(&self) -> u32 {
        let kind = match self.kind {
            Kind::Dir { .. } => g::S_IFDIR,
            Kind::File(_) => g::S_IFREG,
            Kind::Symlink(_) => g::S_IFLNK,
            Kind::Device(Device::Block(..)) => g::S_IFBLK,
            Kind::Device(_) => g::S_IFCHR,
            Kind::Socket => g::S_IFSOCK,
            Kind::Proc(proc::Entry::Dir(_)) => g::S_IFDIR,
            Kind::Proc(proc::Entry::File(_)) => g::S_IFREG,
        };
        kind | self.mode.load(Ordering::Relaxed) as u32
    }

    /// Its size in bytes, as `stat` reports it.
    pub fn size(&self) -> u64 {
        match &self.kind {
            Kind::File(data) => data.lock().len() as u64,
            Kind::Symlink(target) => target.len() as u64,
            Kind::Dir { entries, .. } => 4096.max(entries.lock().len() as u64 * 32),
            Kind::Device(_) | Kind::Proc(_) | Kind::Socket => 0,
        }
    }

    /// The directory's entries, if it is one.
    pub fn entries(&self) -> Option<&Mutex<BTreeMap<String, Arc<Node>>>> {
        match &self.kind {
            Kind::Dir { entries, .. } => Some(entries),
            _ => None,
        }
    }

    /// The directory's parent, if it is one.
    pub fn parent(self: &Arc<Self>) -> Option<Arc<Node>> {
        match &self.kind {
            Kind::Dir { parent, .. } => Some(parent.lock().upgrade().unwrap_or_else(root)),
            Kind::Proc(proc::Entry::Dir(dir)) => Some(proc::parent(*dir).unwrap_or_else(root)),
            _ => None,
        }
    }

    /// Looks up `name` in this directory.
    pub fn child(self: &Arc<Self>, name: &str) -> Result<Arc<Node>, u32> {
        self.child_as(name, None)
    }

    /// Looks up `name` in this directory for `who` (what `/proc/self` means).
    pub fn child_as(
        self: &Arc<Self>,
        name: &str,
        who: Option<proc::Who>,
    ) -> Result<Arc<Node>, u32> {
        if !self.is_dir() {
            return Err(e::ENOTDIR);
        }
        match name {
            "" | "." => Ok(Arc::clone(self)),
            ".." => Ok(self.parent().unwrap_or_else(root)),
            _ => match &self.kind {
                Kind::Proc(proc::Entry::Dir(dir)) => proc::child(*dir, name, who),
                _ => self
                    .entries()
                    .ok_or(e::ENOTDIR)?
                    .lock()
                    .get(name)
                    .cloned()
                    .ok_or(e::ENOENT),
            },
        }
    }

    /// Links `node` into this directory as `name`; `EEXIST` if the name is taken.
    pub fn link(self: &Arc<Self>, name: &str, node: Arc<Node>) -> Result<(), u32> {
        let entries = self.entries().ok_or(e::ENOTDIR)?;
        if name.is_empty() || name == "." || name == ".." {
            return Err(e::EEXIST);
        }
        if name.len() > 255 {
            return Err(e::ENAMETOOLONG);
        }
        let mut entries = entries.lock();
        if entries.contains_key(name) {
            return Err(e::EEXIST);
        }
        // A node joins the file system of the first directory it is linked into, and its
        // bytes count there from then on.
        let fs = self.fs.load(Ordering::Relaxed);
        if node.fs.load(Ordering::Relaxed) == UNSET {
            if let Kind::File(data) = &node.kind {
                mount::charge(fs, data.lock().len() as u64)?;
            }
            node.fs.store(fs, Ordering::Relaxed);
        }
        if let Kind::Dir { parent, .. } = &node.kind {
            *parent.lock() = Arc::downgrade(self);
        }
        node.nlink.fetch_add(1, Ordering::Relaxed);
        entries.insert(name.to_string(), node);
        self.touch();
        Ok(())
    }

    /// Removes the entry `name` from this directory; the node it named, if any.
    pub fn unlink(&self, name: &str) -> Option<Arc<Node>> {
        let node = self.entries()?.lock().remove(name)?;
        node.nlink.fetch_sub(1, Ordering::Relaxed);
        self.touch();
        Some(node)
    }

    /// Whether `self` is `other` or inside it (a directory moved into itself is refused).
    pub fn is_within(self: &Arc<Self>, other: &Arc<Node>) -> bool {
        let mut at = Arc::clone(self);
        for _ in 0..4096 {
            if Arc::ptr_eq(&at, other) {
                return true;
            }
            match at.parent() {
                Some(up) if !Arc::ptr_eq(&up, &at) => at = up,
                _ => return false,
            }
        }
        false
    }

    /// Marks it modified now.
    pub fn touch(&self) {
        self.mtime
            .store(crate::time::unix_time_ns(), Ordering::Relaxed);
    }
}

/// The root directory.
pub fn root() -> Arc<Node> {
    Arc::clone(ROOT.call_once(|| {
        let root = Node::new_dir(None, 0o755);
        root.fs.store(mount::root_instance(), Ordering::Relaxed);
        root
    }))
}

/// The device directory (devtmpfs: one instance, filled at boot, mounted on `/dev`).
pub fn dev_root() -> Arc<Node> {
    static DEV: Once<Arc<Node>> = Once::new();
    Arc::clone(DEV.call_once(|| {
        let dev = Node::new_dir(None, 0o755);
        dev.fs
            .store(mount::new_instance(1 << 20), Ordering::Relaxed);
        dev
    }))
}

/// The directory devpts shows (`/dev/pts`).
pub fn pts_root() -> Arc<Node> {
    static PTS: Once<Arc<Node>> = Once::new();
    Arc::clone(PTS.call_once(|| Node::new_dir(None, 0o755)))
}

/// Bytes held by regular files of every file system.
pub fn ram_file_bytes() -> u64 {
    mount::all_used()
}

/// Splits `path` into its directory part and last component (`"a/b/c"` → `("a/b", "c")`;
/// trailing slashes are ignored).
pub fn split_last(path: &str) -> (&str, &str) {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return (if path.starts_with('/') { "/" } else { "" }, ".");
    }
    match trimmed.rfind('/') {
        Some(0) => ("/", &trimmed[1..]),
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => ("", trimmed),
    }
}

/// Resolves `path` from `cwd` (or the root for an absolute path). `follow` says whether a
/// symbolic link as the last component is followed.
pub fn lookup(cwd: &Arc<Node>, path: &str, follow: bool) -> Result<Arc<Node>, u32> {
    lookup_as(None, cwd, path, follow)
}

/// [`lookup`] for `who` (the process whose `/proc/self` it is).
pub fn lookup_as(
    who: Option<proc::Who>,
    cwd: &Arc<Node>,
    path: &str,
    follow: bool,
) -> Result<Arc<Node>, u32> {
    let mut links = 0;
    lookup_counted(who, cwd, path, follow, &mut links)
}

fn lookup_counted(
    who: Option<proc::Who>,
    cwd: &Arc<Node>,
    path: &str,
    follow: bool,
    links: &mut u32,
) -> Result<Arc<Node>, u32> {
    if path.len() > PATH_MAX {
        return Err(e::ENAMETOOLONG);
    }
    let mut node = if path.starts_with('/') {
        mount::descend(root())
    } else {
        Arc::clone(cwd)
    };
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let must_be_dir = path.ends_with('/');
    for (i, part) in parts.iter().enumerate() {
        if part.len() > 255 {
            return Err(e::ENAMETOOLONG);
        }
        if *part == ".." {
            node = mount::climb(node);
        }
        let next = mount::descend(node.child_as(part, who)?);
        let last = i + 1 == parts.len();
        if let Kind::Symlink(target) = &next.kind
            && (!last || follow || must_be_dir)
        {
            *links += 1;
            if *links > MAX_LINKS {
                return Err(e::ELOOP);
            }
            node = lookup_counted(who, &node, target, true, links)?;
            continue;
        }
        node = next;
    }
    if must_be_dir && !node.is_dir() {
        return Err(e::ENOTDIR);
    }
    Ok(node)
}

/// Resolves the directory that would hold `path`'s last component, and that component, for
/// `who`.
pub fn lookup_parent_as<'p>(
    who: Option<proc::Who>,
    cwd: &Arc<Node>,
    path: &'p str,
) -> Result<(Arc<Node>, &'p str), u32> {
    if path.is_empty() {
        return Err(e::ENOENT);
    }
    let (dir, name) = split_last(path);
    let dir = lookup_as(who, cwd, if dir.is_empty() { "." } else { dir }, true)?;
    if !dir.is_dir() {
        return Err(e::ENOTDIR);
    }
    Ok((dir, name))
}

/// Makes `path` (and missing parents) a directory; used when unpacking.
pub fn mkdir_all(path: &str, mode: u32) -> Result<Arc<Node>, u32> {
    let mut node = root();
    for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
        node = match node.child(part).map(mount::descend) {
            Ok(child) => child,
            Err(_) => {
                let dir = Node::new_dir(Some(&node), mode);
                node.link(part, Arc::clone(&dir))?;
                dir
            }
        };
    }
    Ok(node)
}

/// Puts `node` at `path`, replacing what was there (directories are kept and merged).
pub fn install(path: &str, node: Arc<Node>) -> Result<(), u32> {
    let (dir, name) = split_last(path);
    let dir = mkdir_all(dir, 0o755)?;
    let entries = dir.entries().ok_or(e::ENOTDIR)?;
    if node.is_dir() && entries.lock().get(name).is_some_and(|n| n.is_dir()) {
        return Ok(());
    }
    dir.unlink(name);
    dir.link(name, node)
}

/// Fills the root: `/dev` with its devices, every boot module under `/boot/`, and the
/// initramfs (the module named `initramfs.cpio`) unpacked over it all.
pub fn init() {
    proc::init();
    for dir in ["/dev", "/tmp", "/proc", "/sys", "/boot"] {
        let _ = mkdir_all(dir, if dir == "/tmp" { 0o1777 } else { 0o755 });
    }
    let dev = dev_root();
    for (name, device, mode) in [
        ("console", Device::Tty(TtyId::Console), 0o600),
        ("tty", Device::Tty(TtyId::Current), 0o666),
        ("tty0", Device::Tty(TtyId::Screen(0)), 0o620),
        ("tty1", Device::Tty(TtyId::Screen(1)), 0o620),
        ("ttyS0", Device::Tty(TtyId::Serial), 0o660),
        ("ptmx", Device::Tty(TtyId::Ptmx), 0o666),
        ("vcs", Device::Vcs, 0o620),
        ("vcs1", Device::Vcs, 0o620),
        ("null", Device::Null, 0o666),
        ("zero", Device::Zero, 0o666),
        ("full", Device::Full, 0o666),
        ("random", Device::Random, 0o666),
        ("urandom", Device::Random, 0o666),
        ("kmsg", Device::Kmsg, 0o644),
    ] {
        let _ = dev.link(name, Node::new_device(device, mode));
    }
    for (index, disk) in crate::block::disks().iter().enumerate().take(26) {
        let index = index as u8;
        let _ = dev.link(&disk.name, Node::new_device(Device::Block(index, 0), 0o660));
        for p in disk
            .partitions
            .iter()
            .filter(|p| u64::from(p.number) < crate::block::MINORS)
        {
            let name = alloc::format!("{}{}", disk.name, p.number);
            let node = Node::new_device(Device::Block(index, p.number as u8), 0o660);
            let _ = dev.link(&name, node);
        }
    }
    let _ = dev.link("pts", Node::new_dir(Some(&dev), 0o755));
    let _ = dev.link("fd", Node::new_symlink("/proc/self/fd".into()));
    for (n, name) in ["stdin", "stdout", "stderr"].iter().enumerate() {
        let _ = dev.link(name, Node::new_symlink(alloc::format!("/proc/self/fd/{n}")));
    }
    for module in hal::boot::modules() {
        let path = module.path.strip_prefix("boot():").unwrap_or(module.path);
        if path.ends_with("/initramfs.cpio") {
            match cpio::unpack(module.data) {
                Ok(count) => log::info!("fs: initramfs {path}: {count} entries unpacked to /"),
                Err(why) => log::error!("fs: initramfs {path} refused: {why}"),
            }
        } else if let Err(errno) =
            Node::new_file(module.data, 0o755).and_then(|node| install(path, node))
        {
            log::warn!("fs: module {path} not installed: errno {errno}");
        }
    }
    // The kernel mounts devtmpfs on /dev itself (Linux's `devtmpfs.mount=1`), so a program
    // started as init finds its devices; init mounts the rest (`/proc`, `/sys`, `/tmp`).
    let mounted = lookup(&root(), "/dev", true)
        .and_then(|point| mount::mount("devtmpfs", "/dev", &point, "devtmpfs", 0, ""));
    if let Err(errno) = mounted {
        log::error!("fs: mounting devtmpfs on /dev failed: errno {errno}");
    }
}

/// The absolute, normalised form of `path` relative to `cwd` (an absolute path): `.`, `..`
/// and repeated slashes removed, without following links.
pub fn normalise(cwd: &str, path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let start = if path.starts_with('/') { "" } else { cwd };
    for part in start.split('/').chain(path.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let mut out = String::new();
    for p in &parts {
        out.push('/');
        out.push_str(p);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}
