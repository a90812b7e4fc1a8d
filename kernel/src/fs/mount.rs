//! The mount table, and the file systems that can be mounted.
//!
//! A mount puts the root of a file system over a directory (its mount point). The path
//! walker asks [`descend`] after every step, so a walk that reaches a mount point carries on
//! in the mounted root, and [`climb`] before every `..`, so `..` from a mounted root leaves
//! through the mount point to the directory that holds it, as on Linux. Mounts stack: the
//! last one over a directory is the one seen, and `umount2` uncovers the one below.
//!
//! Each file system instance has a [`Super`] (Linux's superblock): its type, its flags and,
//! for tmpfs, a size limit. Regular files belong to the instance of the directory they were
//! first linked into, and charge their bytes to it, so a full tmpfs answers `ENOSPC` and a
//! removed file gives its bytes back when its last link and descriptor are gone.
//!
//! The types: `tmpfs` (the root, `/tmp`; a fresh empty tree per mount), `proc`
//! ([`super::proc`]), `devtmpfs` (the one device directory the kernel fills at boot; every
//! mount shows the same one, as on Linux), `devpts` and `sysfs` (directories of their own).

use alloc::{
    format,
    string::{String, ToString},
    sync::Arc,
    vec::Vec,
};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use linux_raw_sys::errno as e;
use spin::{Mutex, Once};

use super::{Kind, Node};

/// A file system type, as `/proc/filesystems` lists it.
pub struct FsType {
    /// Its name (`mount -t NAME`).
    pub name: &'static str,
    /// Whether it needs no device (`nodev` in `/proc/filesystems`).
    pub nodev: bool,
    /// `statfs`'s `f_type`.
    pub magic: u64,
}

/// The types Evergreen can mount.
pub const FILESYSTEMS: [FsType; 5] = [
    FsType {
        name: "tmpfs",
        nodev: true,
        magic: 0x0102_1994,
    },
    FsType {
        name: "proc",
        nodev: true,
        magic: 0x9fa0,
    },
    FsType {
        name: "devtmpfs",
        nodev: true,
        magic: 0x0102_1994,
    },
    FsType {
        name: "devpts",
        nodev: true,
        magic: 0x1cd1,
    },
    FsType {
        name: "sysfs",
        nodev: true,
        magic: 0x6265_6572,
    },
];

/// A file system instance.
pub struct Super {
    /// The most bytes its files may hold (`size=` for tmpfs), `u64::MAX` for no limit.
    pub limit: u64,
    /// The bytes its files hold now.
    pub used: AtomicU64,
}

/// Instances by id (a node's `fs`); 0 is the root tmpfs. Never removed: an unmounted tmpfs
/// can still hold open files.
static SUPERS: Mutex<Vec<Arc<Super>>> = Mutex::new(Vec::new());

/// A mounted file system.
struct Mount {
    source: String,
    /// The absolute path it is mounted on.
    target: String,
    fstype: &'static str,
    options: String,
    /// The directory it covers.
    point: Arc<Node>,
    /// The root it shows there.
    root: Arc<Node>,
    /// Its instance.
    fs: u32,
}

static MOUNTS: Mutex<Vec<Mount>> = Mutex::new(Vec::new());
/// How many mounts exist (the walker's fast path when there are none).
static COUNT: AtomicUsize = AtomicUsize::new(0);

/// The instance `id`.
pub fn instance(id: u32) -> Option<Arc<Super>> {
    SUPERS.lock().get(id as usize).cloned()
}

/// A new instance; its id.
pub fn new_instance(limit: u64) -> u32 {
    let mut supers = SUPERS.lock();
    supers.push(Arc::new(Super {
        limit,
        used: AtomicU64::new(0),
    }));
    (supers.len() - 1) as u32
}

/// The root file system's instance (made on first use: id 0).
pub fn root_instance() -> u32 {
    static ROOT: Once<u32> = Once::new();
    *ROOT.call_once(|| new_instance(default_tmpfs_limit()))
}

/// Linux's default tmpfs size: half of memory.
fn default_tmpfs_limit() -> u64 {
    hal::mm::stats().frames.managed * 4096 / 2
}

/// Takes `bytes` more for a file of instance `fs`: `ENOSPC` past its limit.
pub fn charge(fs: u32, bytes: u64) -> Result<(), u32> {
    let Some(sb) = instance(fs) else {
        return Ok(());
    };
    let mut used = sb.used.load(Ordering::Relaxed);
    loop {
        let new = used.checked_add(bytes).ok_or(e::ENOSPC)?;
        if new > sb.limit {
            return Err(e::ENOSPC);
        }
        match sb
            .used
            .compare_exchange_weak(used, new, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => return Ok(()),
            Err(now) => used = now,
        }
    }
}

/// Gives back `bytes` a file of instance `fs` no longer holds.
pub fn uncharge(fs: u32, bytes: u64) {
    if let Some(sb) = instance(fs) {
        let _ = sb
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                Some(u.saturating_sub(bytes))
            });
    }
}

/// Bytes held by every instance's files (for `/proc/meminfo`).
pub fn all_used() -> u64 {
    SUPERS
        .lock()
        .iter()
        .map(|s| s.used.load(Ordering::Relaxed))
        .sum()
}

fn same(a: &Arc<Node>, b: &Arc<Node>) -> bool {
    Arc::ptr_eq(a, b) || matches!((&a.kind, &b.kind), (Kind::Proc(x), Kind::Proc(y)) if x == y)
}

/// The root of the last mount over `node`, if any (else `node`).
pub fn descend(node: Arc<Node>) -> Arc<Node> {
    if COUNT.load(Ordering::Acquire) == 0 || !node.is_dir() {
        return node;
    }
    let mut node = node;
    let mounts = MOUNTS.lock();
    // A mount over a mounted root stacks: keep going while a later mount covers it (later
    // only: the same file system may be mounted over its own root).
    let mut from = 0;
    while let Some(i) = (from..mounts.len()).find(|&i| same(&mounts[i].point, &node)) {
        node = Arc::clone(&mounts[i].root);
        from = i + 1;
    }
    node
}

/// The mount point under `node` if it is the root of a mount (else `node`): where `..`
/// starts from.
pub fn climb(node: Arc<Node>) -> Arc<Node> {
    if COUNT.load(Ordering::Acquire) == 0 {
        return node;
    }
    let mut node = node;
    let mounts = MOUNTS.lock();
    // Down the stack: each step may only find an earlier mount.
    let mut below = mounts.len();
    while let Some(i) = (0..below).rev().find(|&i| same(&mounts[i].root, &node)) {
        node = Arc::clone(&mounts[i].point);
        below = i;
    }
    node
}

/// `MS_RDONLY`, `MS_NOSUID`, `MS_NODEV`, `MS_NOEXEC`: kept as options `/proc/mounts` shows.
const MS_RDONLY: u64 = 1;
const MS_NOSUID: u64 = 2;
const MS_NODEV: u64 = 4;
const MS_NOEXEC: u64 = 8;
const MS_REMOUNT: u64 = 32;
const MS_BIND: u64 = 4096;

/// Mounts a file system of type `fstype` on `point` (a directory at the absolute path
/// `target`), with `mount(2)`'s flags and data.
pub fn mount(
    source: &str,
    target: &str,
    point: &Arc<Node>,
    fstype: &str,
    flags: u64,
    data: &str,
) -> Result<(), u32> {
    if !point.is_dir() {
        return Err(e::ENOTDIR);
    }
    if flags & MS_REMOUNT != 0 {
        let mut mounts = MOUNTS.lock();
        let m = mounts
            .iter_mut()
            .rev()
            .find(|m| same(&m.root, point))
            .ok_or(e::EINVAL)?;
        m.options = options(flags, data, m.fstype);
        return Ok(());
    }
    if flags & MS_BIND != 0 {
        return Err(e::EINVAL);
    }
    let kind = FILESYSTEMS
        .iter()
        .find(|t| t.name == fstype)
        .ok_or(e::ENODEV)?;
    let (root, fs) = match kind.name {
        "tmpfs" => {
            let limit = tmpfs_size(data)?;
            let fs = new_instance(limit);
            let root = Node::new_dir(None, tmpfs_mode(data)?);
            root.fs.store(fs, Ordering::Relaxed);
            (root, fs)
        }
        "proc" => (super::proc::root(), u32::MAX),
        "devtmpfs" => (super::dev_root(), u32::MAX),
        "devpts" => (super::pts_root(), u32::MAX),
        _ => (sys_root(), u32::MAX),
    };
    let entry = Mount {
        source: source.to_string(),
        target: target.to_string(),
        fstype: kind.name,
        options: options(flags, data, kind.name),
        point: Arc::clone(point),
        root,
        fs,
    };
    MOUNTS.lock().push(entry);
    COUNT.fetch_add(1, Ordering::Release);
    Ok(())
}

/// Unmounts the file system whose root is `root` (what the target path resolved to).
pub fn umount(root: &Arc<Node>) -> Result<(), u32> {
    let mut mounts = MOUNTS.lock();
    let i = mounts
        .iter()
        .rposition(|m| same(&m.root, root))
        .ok_or(e::EINVAL)?;
    // Something mounted inside it keeps it busy, as on Linux.
    let inner = mounts
        .iter()
        .any(|m| m.target.starts_with(&mounts[i].target) && m.target != mounts[i].target);
    if inner {
        return Err(e::EBUSY);
    }
    mounts.remove(i);
    COUNT.fetch_sub(1, Ordering::Release);
    Ok(())
}

fn sys_root() -> Arc<Node> {
    static SYS: Once<Arc<Node>> = Once::new();
    Arc::clone(SYS.call_once(|| Node::new_dir(None, 0o555)))
}

fn options(flags: u64, data: &str, fstype: &str) -> String {
    let mut out = String::from(if flags & MS_RDONLY != 0 { "ro" } else { "rw" });
    for (bit, name) in [
        (MS_NOSUID, "nosuid"),
        (MS_NODEV, "nodev"),
        (MS_NOEXEC, "noexec"),
    ] {
        if flags & bit != 0 {
            out.push(',');
            out.push_str(name);
        }
    }
    let data = data.trim_matches(char::from(0));
    if !data.is_empty() && fstype != "proc" {
        out.push(',');
        out.push_str(data);
    }
    out
}

/// The `size=` of tmpfs mount data (`size=N[kmg]` or `size=N%` of memory).
fn tmpfs_size(data: &str) -> Result<u64, u32> {
    let Some(size) = option(data, "size") else {
        return Ok(default_tmpfs_limit());
    };
    let (digits, unit) = size.split_at(
        size.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(size.len()),
    );
    let n: u64 = digits.parse().map_err(|_| e::EINVAL)?;
    let bytes = match unit {
        "" => Some(n),
        "k" | "K" => n.checked_mul(1 << 10),
        "m" | "M" => n.checked_mul(1 << 20),
        "g" | "G" => n.checked_mul(1 << 30),
        "%" => Some(hal::mm::stats().frames.managed * 4096 / 100 * n.min(100)),
        _ => None,
    };
    bytes.ok_or(e::EINVAL)
}

fn tmpfs_mode(data: &str) -> Result<u32, u32> {
    match option(data, "mode") {
        Some(mode) => u32::from_str_radix(mode, 8).map_err(|_| e::EINVAL),
        None => Ok(0o1777),
    }
}

fn option<'d>(data: &'d str, key: &str) -> Option<&'d str> {
    data.trim_matches(char::from(0))
        .split(',')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// `/proc/mounts`: the root first, then every mount in the order made.
pub fn table_text() -> String {
    let mut out = String::from("tmpfs / tmpfs rw 0 0\n");
    for m in MOUNTS.lock().iter() {
        out.push_str(&format!(
            "{} {} {} {} 0 0\n",
            m.source, m.target, m.fstype, m.options
        ));
    }
    out
}

/// What `statfs` reports for the file system holding the absolute path `path`: its type's
/// magic and, for tmpfs, the block counts (4 KiB blocks) of its limit and use.
pub fn statfs_of(path: &str) -> (u64, u64, u64) {
    let mounts = MOUNTS.lock();
    let best = mounts
        .iter()
        .filter(|m| {
            path == m.target
                || m.target == "/"
                || path.starts_with(&format!("{}/", m.target.trim_end_matches('/')))
        })
        .max_by_key(|m| m.target.len());
    let (fstype, fs) = best.map_or(("tmpfs", root_instance()), |m| (m.fstype, m.fs));
    let magic = FILESYSTEMS
        .iter()
        .find(|t| t.name == fstype)
        .map_or(0, |t| t.magic);
    match instance(fs) {
        Some(sb) if fstype == "tmpfs" => (
            magic,
            sb.limit / 4096,
            sb.limit.saturating_sub(sb.used.load(Ordering::Relaxed)) / 4096,
        ),
        _ => (magic, 0, 0),
    }
}
