//! Extended attributes: tmpfs keeps none, so reading one fails with `ENODATA` and a list is
//! empty, as on a Linux tmpfs without a security module — after the path or descriptor is
//! checked, so a missing file still gets `ENOENT` and a bad descriptor `EBADF`. (`ls -l` asks
//! for `security.selinux` and POSIX ACLs of every file.)

use linux_raw_sys::errno as e;

use super::{SysResult, fs::resolve_path, read_path};
use crate::process::Current;

/// The longest attribute name (Linux's `XATTR_NAME_MAX`).
const NAME_MAX: usize = 255;

/// `getxattr`/`lgetxattr` (`follow` false): no attribute of that name.
pub fn get(current: &Current, path: u64, name: u64, follow: bool) -> SysResult {
    let path = read_path(path)?;
    resolve_path(current, &path, follow)?;
    check_name(name)?;
    Err(e::ENODATA)
}

/// `fgetxattr`.
pub fn fget(current: &Current, fd: u64, name: u64) -> SysResult {
    current.process().fds().lock().get(fd)?;
    check_name(name)?;
    Err(e::ENODATA)
}

/// `listxattr`/`llistxattr`: an empty list.
pub fn list(current: &Current, path: u64, follow: bool) -> SysResult {
    let path = read_path(path)?;
    resolve_path(current, &path, follow)?;
    Ok(0)
}

/// `flistxattr`.
pub fn flist(current: &Current, fd: u64) -> SysResult {
    current.process().fds().lock().get(fd)?;
    Ok(0)
}

/// A name must be readable and 1 to 255 bytes long (`ERANGE` otherwise, as Linux).
fn check_name(name: u64) -> Result<(), u32> {
    let bytes = hal::user::read_cstr(name, NAME_MAX + 1).map_err(|err| match err {
        hal::user::CStrError::Fault(_) => e::EFAULT,
        hal::user::CStrError::TooLong => e::ERANGE,
    })?;
    if bytes.is_empty() {
        return Err(e::ERANGE);
    }
    Ok(())
}
