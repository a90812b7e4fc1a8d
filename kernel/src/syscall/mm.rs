//! Memory calls: `brk`, `mmap`, `munmap`, `mprotect`, `mremap`, `madvise`, `msync`,
//! `mincore` and `fadvise64`.
//!
//! Private anonymous memory is reserved at `mmap`/`brk` time and paged in on its first touch
//! (hal's `AddressSpace` keeps the reservation in the page tables); `fork` shares pages
//! copy-on-write, except `MAP_SHARED` memory, which is mapped at once and stays shared. A
//! file mapping maps the file's own pages ([`crate::fs::data`]) at once: that is the page
//! cache `read` and `write` use too.

use alloc::sync::Arc;

use hal::{
    mm::PAGE_SIZE,
    user::{Access, AddressSpace},
};
use linux_raw_sys::{errno as e, general as g};

use super::SysResult;
use crate::{
    fs::{Device, Kind, Node, file::Target},
    process::Current,
};

/// `brk(addr)`: moves the break if it can and returns the break (Linux returns the old one
/// on failure, never an error).
pub fn brk(current: &Current, requested: u64) -> u64 {
    let mm = current.process().memory();
    let mut layout = mm.layout.lock();
    if requested < layout.brk_start || requested >= layout.mmap_next {
        return layout.brk;
    }
    let old_end = layout.brk.next_multiple_of(PAGE_SIZE);
    let new_end = requested.next_multiple_of(PAGE_SIZE);
    if new_end > old_end {
        if !could_fit(new_end - old_end)
            || mm
                .space
                .map_zeroed(old_end, new_end - old_end, Access::READ_WRITE)
                .is_err()
        {
            return layout.brk;
        }
    } else if new_end < old_end {
        let _ = mm.space.unmap(new_end, old_end - new_end);
    }
    layout.brk = requested;
    requested
}

/// Whether `len` bytes could be mapped at all: more than the free memory fails at once, as
/// Linux's overcommit heuristic refuses an allocation larger than the machine, instead of
/// zeroing every free frame first to find out.
fn could_fit(len: u64) -> bool {
    len / PAGE_SIZE <= hal::mm::stats().frames.free
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

/// Anonymous mappings (private, or shared: with the children `fork` makes too) and mappings
/// of regular files (the file's own pages: `MAP_SHARED` writes reach the file at once,
/// `MAP_PRIVATE` ones are copied on write), `MAP_FIXED` included.
pub fn mmap(current: &Current, a: [u64; 6]) -> SysResult {
    let [addr, len, prot, flags, fd, offset] = a;
    if len == 0 || !offset.is_multiple_of(PAGE_SIZE) {
        return Err(e::EINVAL);
    }
    let len = len.checked_next_multiple_of(PAGE_SIZE).ok_or(e::ENOMEM)?;
    let flags = flags as u32;
    if flags & (g::MAP_PRIVATE | g::MAP_SHARED) == 0 {
        return Err(e::EINVAL);
    }
    let access = access_of(prot)?;
    let source = if flags & g::MAP_ANONYMOUS == 0 {
        file_source(current, fd, flags, prot)?
    } else {
        None
    };
    // As Linux's overcommit heuristic, MAP_NORESERVE and PROT_NONE mappings are not counted
    // (they are how programs reserve address space).
    if flags & g::MAP_NORESERVE == 0 && access.is_some() && !could_fit(len) {
        return Err(e::ENOMEM);
    }
    let mm = current.process().memory();
    let fixed = flags & (g::MAP_FIXED | g::MAP_FIXED_NOREPLACE) != 0;
    let at = if fixed {
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(e::EINVAL);
        }
        if addr
            .checked_add(len)
            .is_none_or(|end| end > hal::user::USER_END)
            || addr < PAGE_SIZE
        {
            return Err(e::ENOMEM);
        }
        if flags & g::MAP_FIXED_NOREPLACE != 0
            && (0..len / PAGE_SIZE).any(|i| mm.space.is_occupied(addr + i * PAGE_SIZE))
        {
            return Err(e::EEXIST);
        }
        let _ = mm.space.unmap(addr, len);
        addr
    } else {
        let mut layout = mm.layout.lock();
        let at = layout.mmap_next.checked_sub(len).ok_or(e::ENOMEM)?;
        if at <= layout.brk_start.max(layout.brk) + (1 << 30).min(at / 2) {
            return Err(e::ENOMEM);
        }
        layout.mmap_next = at;
        at
    };
    // PROT_NONE pages are reserved without user access, so a touch faults and a later
    // mprotect finds them.
    let map = access.unwrap_or(Access::READ);
    let shared = flags & g::MAP_SHARED != 0;
    let mapped = match &source {
        Some((node, may_write)) => {
            map_file(&mm.space, node, at, len, offset, map, shared, *may_write)
        }
        None if shared => mm.space.map_zeroed_shared(at, len, map).map_err(|_| ()),
        None => mm.space.map_zeroed(at, len, map).map_err(|_| ()),
    };
    if mapped.is_err() {
        static REPORTS: crate::logger::RateLimit = crate::logger::RateLimit::new(10, 5_000_000_000);
        if REPORTS.check().is_some() {
            log::warn!(
                "{}: mmap of {len:#x} bytes failed: out of memory",
                current.process().path.lock()
            );
        }
        return Err(e::ENOMEM);
    }
    if access.is_none() {
        let _ = mm.space.protect_none(at, len);
    }
    Ok(at)
}

/// The file `fd` names for a mapping, checked as Linux's `do_mmap` does: `EBADF` for no file,
/// `EACCES` for a shared writable mapping of a file not open for writing or any mapping of
/// one not open for reading, `ENODEV` for what cannot be mapped (pipes, directories, most
/// devices). `None` for `/dev/zero`, which maps as anonymous memory; else the file, and
/// whether it is open for writing (a shared mapping may become writable only then).
fn file_source(
    current: &Current,
    fd: u64,
    flags: u32,
    prot: u64,
) -> Result<Option<(Arc<Node>, bool)>, u32> {
    let file = current.process().fds().lock().get(fd)?;
    if flags & g::MAP_SHARED != 0 && prot & u64::from(g::PROT_WRITE) != 0 && !file.writable() {
        return Err(e::EACCES);
    }
    if !file.readable() {
        return Err(e::EACCES);
    }
    let node = file.node().ok_or(e::ENODEV)?;
    match node.kind {
        Kind::File(_) => Ok(Some((Arc::clone(node), file.writable()))),
        Kind::Device(Device::Zero) => Ok(None),
        _ => Err(e::ENODEV),
    }
}

/// Maps the pages of `node` from `offset` at `at`: the file's own pages (shared, or
/// copy-on-write for `MAP_PRIVATE`), and fresh zeroed pages past its last page (where Linux
/// would raise `SIGBUS`). On an error nothing of the range stays mapped.
#[expect(
    clippy::too_many_arguments,
    reason = "mmap's own arguments, which the caller has checked"
)]
fn map_file(
    space: &AddressSpace,
    node: &Node,
    at: u64,
    len: u64,
    offset: u64,
    access: Access,
    shared: bool,
    may_write: bool,
) -> Result<(), ()> {
    let Kind::File(data) = &node.kind else {
        return Err(());
    };
    let mut data = data.lock();
    let first = usize::try_from(offset / PAGE_SIZE).map_err(|_| ())?;
    let count = len / PAGE_SIZE;
    let mut result = Ok(());
    let mut i = 0;
    while i < count && result.is_ok() {
        let Some(page) = first.checked_add(i as usize).and_then(|p| data.page(p)) else {
            break;
        };
        result = space
            .map_cache(at + i * PAGE_SIZE, page, access, shared, may_write)
            .map_err(|_| ());
        i += 1;
    }
    if result.is_ok() && i < count {
        let (tail, tail_len) = (at + i * PAGE_SIZE, (count - i) * PAGE_SIZE);
        // Past the file's last page: the file has nothing to share there.
        result = if data.pages() <= first.saturating_add(i as usize) {
            if shared {
                space.map_zeroed_shared(tail, tail_len, access)
            } else {
                space.map_zeroed(tail, tail_len, access)
            }
            .map_err(|_| ())
        } else {
            // A hole that could not get a frame.
            Err(())
        };
    }
    if result.is_err() {
        let _ = space.unmap(at, len);
    }
    result
}

/// `msync`: the file's pages are the mapping's, so there is nothing to write back; what is
/// checked is what Linux checks (alignment, flags, a mapped range).
pub fn msync(current: &Current, addr: u64, len: u64, flags: u64) -> SysResult {
    let known = u64::from(g::MS_ASYNC | g::MS_SYNC | g::MS_INVALIDATE);
    let both = u64::from(g::MS_ASYNC | g::MS_SYNC);
    if !addr.is_multiple_of(PAGE_SIZE) || flags & !known != 0 || flags & both == both {
        return Err(e::EINVAL);
    }
    let len = len.checked_next_multiple_of(PAGE_SIZE).ok_or(e::ENOMEM)?;
    let end = addr.checked_add(len).ok_or(e::ENOMEM)?;
    let space = &current.process().memory().space;
    if (addr..end)
        .step_by(PAGE_SIZE as usize)
        .any(|page| !space.is_occupied(page))
    {
        return Err(e::ENOMEM);
    }
    Ok(0)
}

pub fn munmap(current: &Current, addr: u64, len: u64) -> SysResult {
    if !addr.is_multiple_of(PAGE_SIZE) || len == 0 {
        return Err(e::EINVAL);
    }
    let len = len.checked_next_multiple_of(PAGE_SIZE).ok_or(e::EINVAL)?;
    current
        .process()
        .memory()
        .space
        .unmap(addr, len)
        .map(|_| 0)
        .map_err(|_| e::EINVAL)
}

pub fn mprotect(current: &Current, addr: u64, len: u64, prot: u64) -> SysResult {
    if !addr.is_multiple_of(PAGE_SIZE) {
        return Err(e::EINVAL);
    }
    let len = len.checked_next_multiple_of(PAGE_SIZE).ok_or(e::ENOMEM)?;
    if len == 0 {
        return Ok(0);
    }
    let mm = current.process().memory();
    match access_of(prot)? {
        Some(access) => mm.space.protect(addr, len, access),
        None => mm.space.protect_none(addr, len),
    }
    .map(|()| 0)
    .map_err(|err| match err {
        // A shared mapping of a file not open for writing.
        hal::mm::MapError::NotWritable(_) => e::EACCES,
        _ => e::ENOMEM,
    })
}

/// `mremap`: shrinks in place, grows in place when the pages after are free, or moves
/// (with `MREMAP_MAYMOVE`). Unmapped source pages fail with `EFAULT`, as musl's stack probe
/// expects (it calls `mremap` until it fails).
pub fn mremap(
    current: &Current,
    old: u64,
    old_len: u64,
    new_len: u64,
    flags: u64,
    _new: u64,
) -> SysResult {
    const MAYMOVE: u64 = 1;
    if !old.is_multiple_of(PAGE_SIZE) || new_len == 0 || flags & !MAYMOVE != 0 {
        return Err(e::EINVAL);
    }
    let old_len = old_len
        .checked_next_multiple_of(PAGE_SIZE)
        .ok_or(e::EINVAL)?;
    let new_len = new_len
        .checked_next_multiple_of(PAGE_SIZE)
        .ok_or(e::EINVAL)?;
    let mm = current.process().memory();
    let pages = old_len / PAGE_SIZE;
    let first = mm.space.query(old).ok_or(e::EFAULT)?;
    if (0..pages).any(|i| mm.space.query(old + i * PAGE_SIZE).is_none()) {
        return Err(e::EFAULT);
    }
    if new_len <= old_len {
        if new_len < old_len {
            let _ = mm.space.unmap(old + new_len, old_len - new_len);
        }
        return Ok(old);
    }
    let grow = new_len - old_len;
    // Before the page-by-page look at the tail below, which a huge length would make last.
    if !could_fit(grow) {
        return Err(e::ENOMEM);
    }
    let tail = old + old_len;
    let tail_free = tail
        .checked_add(grow)
        .is_some_and(|end| end <= hal::user::USER_END)
        && (0..grow / PAGE_SIZE).all(|i| !mm.space.is_occupied(tail + i * PAGE_SIZE));
    if tail_free && mm.space.map_zeroed(tail, grow, first).is_ok() {
        return Ok(old);
    }
    if flags & MAYMOVE == 0 {
        return Err(e::ENOMEM);
    }
    let at = {
        let mut layout = mm.layout.lock();
        let at = layout.mmap_next.checked_sub(new_len).ok_or(e::ENOMEM)?;
        layout.mmap_next = at;
        at
    };
    // The pages themselves move (frames, reservations, sharing and all), then the new tail
    // is reserved with the first page's access.
    mm.space
        .move_range(old, at, old_len)
        .map_err(|_| e::ENOMEM)?;
    if mm.space.map_zeroed(at + old_len, grow, first).is_err() {
        // Put the pages back where they were.
        let _ = mm.space.move_range(at, old, old_len);
        return Err(e::ENOMEM);
    }
    Ok(at)
}

/// `madvise`: `MADV_DONTNEED` drops the private pages of the range (they read back as fresh
/// zeroed pages; `MAP_SHARED` pages keep their contents, as on Linux); other advice is
/// accepted and has no effect.
pub fn madvise(current: &Current, addr: u64, len: u64, advice: u64) -> SysResult {
    if !addr.is_multiple_of(PAGE_SIZE) {
        return Err(e::EINVAL);
    }
    let len = len.checked_next_multiple_of(PAGE_SIZE).ok_or(e::EINVAL)?;
    if advice as u32 == g::MADV_DONTNEED && len > 0 {
        current
            .process()
            .memory()
            .space
            .discard(addr, len)
            .map_err(|_| e::EINVAL)?;
    }
    Ok(0)
}

/// `fadvise64(fd, offset, len, advice)`: advice about a file's page cache, which holds every
/// page of a RAM file anyway; checked as Linux does (`EBADF`, `ESPIPE` for a pipe, `EINVAL`
/// for unknown advice) and otherwise without effect.
pub fn fadvise(current: &Current, fd: u64, advice: u64) -> SysResult {
    const LAST_ADVICE: u64 = 5; // POSIX_FADV_NOREUSE
    let file = current.process().fds().lock().get(fd)?;
    if matches!(file.target, Target::PipeRead(_) | Target::PipeWrite(_)) {
        return Err(e::ESPIPE);
    }
    if advice > LAST_ADVICE {
        return Err(e::EINVAL);
    }
    Ok(0)
}

/// `mincore(addr, len, vec)`: one byte per page, 1 where the page has its frame (a private
/// page never touched has none yet); `ENOMEM` if a page of the range is not mapped.
pub fn mincore(current: &Current, addr: u64, len: u64, vec: u64) -> SysResult {
    if !addr.is_multiple_of(PAGE_SIZE) {
        return Err(e::EINVAL);
    }
    let len = len.checked_next_multiple_of(PAGE_SIZE).ok_or(e::ENOMEM)?;
    let end = addr.checked_add(len).ok_or(e::ENOMEM)?;
    if end > hal::user::USER_END {
        return Err(e::ENOMEM);
    }
    let space = &current.process().memory().space;
    // In pieces, so a huge range needs no huge buffer.
    const CHUNK: u64 = 4096;
    let mut page = addr;
    let mut out = vec;
    while page < end {
        let count = ((end - page) / PAGE_SIZE).min(CHUNK);
        let mut bytes = alloc::vec::Vec::with_capacity(count as usize);
        for i in 0..count {
            let at = page + i * PAGE_SIZE;
            if !space.is_occupied(at) {
                return Err(e::ENOMEM);
            }
            bytes.push(u8::from(space.is_resident(at)));
        }
        hal::user::copy_to_user(out, &bytes).map_err(|_| e::EFAULT)?;
        page += count * PAGE_SIZE;
        out += count;
    }
    Ok(0)
}
