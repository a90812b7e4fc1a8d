//! Mount and file-system calls: `mount`, `umount2`, `statfs`, `fstatfs`, `sethostname`,
//! `syslog`.

use alloc::string::String;

use hal::user;
use linux_raw_sys::errno as e;

use super::{SysResult, read_path};
use crate::{fs, process::Current};

/// A user string of at most `max` bytes (`mount`'s source and type), or empty for NULL.
fn read_name(address: u64, max: usize) -> Result<String, u32> {
    if address == 0 {
        return Ok(String::new());
    }
    let bytes = user::read_cstr(address, max).map_err(|err| match err {
        user::CStrError::Fault(_) => e::EFAULT,
        user::CStrError::TooLong => e::ENAMETOOLONG,
    })?;
    String::from_utf8(bytes).map_err(|_| e::EINVAL)
}

/// The absolute form of `path` from the caller's working directory.
fn absolute(current: &Current, path: &str) -> String {
    fs::normalise(&current.process().cwd.lock().path, path)
}

pub fn mount(
    current: &Current,
    source: u64,
    target: u64,
    fstype: u64,
    flags: u64,
    data: u64,
) -> SysResult {
    let source = read_name(source, 4096)?;
    let target = read_path(target)?;
    let fstype = read_name(fstype, 64)?;
    // Mount data is a page of text at most (Linux copies one page).
    let data = read_name(data, 4095).unwrap_or_default();
    let point = super::fs::resolve_path(current, &target, true)?;
    let path = absolute(current, &target);
    fs::mount::mount(&source, &path, &point, &fstype, flags, &data)?;
    log::debug!("mount: {fstype} {source} on {path}");
    Ok(0)
}

pub fn umount2(current: &Current, target: u64, flags: u64) -> SysResult {
    const KNOWN: u64 = 1 | 2 | 4 | 8; // MNT_FORCE, MNT_DETACH, MNT_EXPIRE, UMOUNT_NOFOLLOW
    if flags & !KNOWN != 0 {
        return Err(e::EINVAL);
    }
    let target = read_path(target)?;
    let root = super::fs::resolve_path(current, &target, flags & 8 == 0)?;
    fs::mount::umount(&root)?;
    Ok(0)
}

/// `struct statfs` (120 bytes).
fn write_statfs(buf: u64, (magic, blocks, free): (u64, u64, u64)) -> SysResult {
    let words: [u64; 15] = [
        magic, 4096,   // f_bsize
        blocks, // f_blocks
        free,   // f_bfree
        free,   // f_bavail
        0,      // f_files
        0,      // f_ffree
        0,      // f_fsid
        255,    // f_namelen
        4096,   // f_frsize
        0x20,   // f_flags: ST_RELATIME
        0, 0, 0, 0,
    ];
    let mut out = [0u8; 120];
    for (i, w) in words.iter().enumerate() {
        out[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    user::copy_to_user(buf, &out)
        .map(|()| 0)
        .map_err(|_| e::EFAULT)
}

pub fn statfs(current: &Current, path: u64, buf: u64) -> SysResult {
    let path = read_path(path)?;
    super::fs::resolve_path(current, &path, true)?;
    write_statfs(buf, fs::mount::statfs_of(&absolute(current, &path)))
}

pub fn fstatfs(current: &Current, fd: u64, buf: u64) -> SysResult {
    let file = current.process().fds().lock().get(fd)?;
    let path = if file.node().is_some() {
        absolute(current, &file.path)
    } else {
        String::from("/")
    };
    write_statfs(buf, fs::mount::statfs_of(&path))
}

/// `syslog(2)` (`klogctl`): what busybox `dmesg` reads the kernel log with.
pub fn syslog(action: u64, buf: u64, len: u64) -> SysResult {
    const READ: u64 = 2;
    const READ_ALL: u64 = 3;
    const READ_CLEAR: u64 = 4;
    const CLEAR: u64 = 5;
    const SIZE_UNREAD: u64 = 9;
    const SIZE_BUFFER: u64 = 10;
    match action {
        0 | 1 => Ok(0),
        // Console off, on, and a level (what `dmesg -n` sets).
        6 => {
            crate::logger::set_console_level(1);
            Ok(0)
        }
        7 => {
            crate::logger::set_console_level(crate::logger::DEFAULT_CONSOLE_LEVEL);
            Ok(0)
        }
        8 if (1..=8).contains(&len) => {
            crate::logger::set_console_level(len as u8);
            Ok(0)
        }
        8 => Err(e::EINVAL),
        READ | READ_ALL | READ_CLEAR => {
            if (len as i64) < 0 {
                return Err(e::EINVAL);
            }
            let text = crate::kmsg::text_since_clear();
            // The newest part when the buffer is short, as Linux gives it.
            let bytes = text.as_bytes();
            let n = bytes.len().min(len as usize);
            let tail = &bytes[bytes.len() - n..];
            user::copy_to_user(buf, tail).map_err(|_| e::EFAULT)?;
            if action != READ_ALL {
                crate::kmsg::clear();
            }
            Ok(n as u64)
        }
        CLEAR => {
            crate::kmsg::clear();
            Ok(0)
        }
        SIZE_UNREAD => Ok(crate::kmsg::text_since_clear().len() as u64),
        SIZE_BUFFER => Ok(crate::kmsg::CAPACITY as u64),
        _ => Err(e::EINVAL),
    }
}

pub fn sethostname(name: u64, len: u64) -> SysResult {
    if len > 64 {
        return Err(e::EINVAL);
    }
    let mut bytes = alloc::vec![0u8; len as usize];
    user::copy_from_user(name, &mut bytes).map_err(|_| e::EFAULT)?;
    fs::proc::set_host_name(&bytes)?;
    Ok(0)
}
