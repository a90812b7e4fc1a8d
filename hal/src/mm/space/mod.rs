//! User address spaces: a top-level table of its own for the lower half, the kernel's higher
//! half shared.
//!
//! Every higher-half top-level entry of the kernel's tables points at a table from the start
//! (`init` prepares all 256), so copying those 256 entries once shares every kernel mapping
//! made later. The lower half belongs to the space: its pages and tables are frames hal
//! allocated for it, freed when the last reference goes — which cannot happen while a CPU
//! runs on it, because the CPU's active slot holds a reference.
//!
//! A page's frame may be mapped in several spaces (`fork` shares them: [`cow`]); each mapping
//! holds a reference ([`super::share`]) and the last one frees the frame. Two software bits
//! of a leaf say how a shared frame is to be written: [`COW`] (the page is writable but
//! mapped read-only while shared; a write copies it) and [`SHARED`] (`MAP_SHARED` memory:
//! writable in every space that maps it, shared again by `fork`).
//!
//! Private anonymous memory is paged in on demand: [`map_zeroed`](AddressSpace::map_zeroed)
//! only writes *reserved* leaves — not present, so the CPU ignores them, with the [`LAZY`]
//! bit and the access the page will have — and the first touch (from user mode, or a kernel
//! copy to or from user memory) faults; [`resolve_lazy_fault`] then gives the page a zeroed
//! frame and the instruction is retried, as Linux does on its first fault of an anonymous
//! page. Keeping the reservation in the leaf itself, rather than in a separate list of
//! ranges, means every operation (unmap, protect, fork's copy, mremap's move, query) sees
//! one truth. `MAP_SHARED` memory is mapped at once (its frames must exist to be shared by
//! `fork`).
//!
//! TLB flushes happen with the space's lock held, so that no CPU can use a stale entry after
//! the lock is released. A CPU waiting for the lock serves shootdowns while it spins (the
//! holder may be waiting for its flush), and only CPUs running the space are asked.

mod cow;

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

pub(crate) use cow::{resolve_lazy_fault, resolve_stack_fault, resolve_write_fault};
use frames::table::{
    ADDRESS_MASK, Attributes, PRESENT, PageSize, PageTables, TableMemory, TableRead,
};
use x86_64::{
    PhysAddr,
    registers::control::{Cr3, Cr3Flags},
    structures::paging::PhysFrame,
};

use super::{MapError, PAGE_SIZE, frame, share, tables::Hhdm};
use crate::{
    percpu::PreemptGuard,
    sync::{IrqMutex, IrqMutexGuard},
};

/// Leaf software bit: the page is writable, but mapped read-only because its frame may be
/// shared; the first write gets a frame of its own (or the same one, if no longer shared).
const COW: u64 = 1 << 9;
/// Leaf software bit: `MAP_SHARED` memory, writable in place by every space that maps it.
const SHARED: u64 = 1 << 10;
/// Leaf software bit of a *not-present* entry: the page is reserved (zero-filled on its first
/// touch); the entry's other bits are those the page will have, less the frame.
const LAZY: u64 = 1 << 11;
/// Leaf software bit (one the CPU ignores): a `MAP_SHARED` page of a file not open for
/// writing, which may never be made writable ([`MapError::NotWritable`]), as Linux clears
/// `VM_MAYWRITE` for it.
const NO_WRITE: u64 = 1 << 52;
/// The accessed and dirty bits, which a reservation made from a mapped page drops.
const ACCESSED_DIRTY: u64 = (1 << 5) | (1 << 6);

/// The first address past user space: the lower canonical half, less its top page (as in
/// Linux, so no user mapping touches the non-canonical boundary).
pub const USER_END: u64 = 0x0000_7fff_ffff_f000;

/// A run of user pages with one access ([`AddressSpace::regions`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First address.
    pub start: u64,
    /// First address past it.
    pub end: u64,
    /// Readable (any user page but `PROT_NONE`).
    pub read: bool,
    /// Writable (copy-on-write counts).
    pub write: bool,
    /// Executable.
    pub execute: bool,
    /// `MAP_SHARED`.
    pub shared: bool,
}

impl Region {
    fn same_access(&self, other: &Self) -> bool {
        (self.read, self.write, self.execute, self.shared)
            == (other.read, other.write, other.execute, other.shared)
    }
}

/// What user mode may do with a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Writes allowed.
    pub write: bool,
    /// Instruction fetches allowed.
    pub execute: bool,
}

impl Access {
    /// Read-only.
    pub const READ: Self = Self {
        write: false,
        execute: false,
    };
    /// Read and write.
    pub const READ_WRITE: Self = Self {
        write: true,
        execute: false,
    };
    /// Read and execute.
    pub const READ_EXECUTE: Self = Self {
        write: false,
        execute: true,
    };

    fn attributes(self) -> Attributes {
        Attributes::user(self.write, self.execute)
    }
}

/// A user address space.
pub struct AddressSpace {
    /// The top-level table (the CR3 value).
    root: u64,
    /// Serialises edits of the lower half.
    lock: IrqMutex<()>,
    /// Pages mapped (4 KiB each).
    pages: AtomicU64,
    /// The grow-down stack: a fault in `[stack_floor, stack_bottom)` maps the pages from the
    /// faulting one up to `stack_bottom` (0, 0: none). See [`set_stack`](Self::set_stack).
    stack_floor: AtomicU64,
    stack_bottom: AtomicU64,
    /// Serialises stack growth (two threads may fault on it at once).
    stack_growth: IrqMutex<()>,
}

crate::cpu_local! {
    /// The user address space each CPU runs on, if any (it holds a reference, so the space
    /// outlives its use).
    static ACTIVE: IrqMutex<Option<Arc<AddressSpace>>> = IrqMutex::new(None);
}

fn user_range(virt: u64, len: u64) -> Result<(u64, u64), MapError> {
    let end = virt.checked_add(len).ok_or(MapError::InvalidRange)?;
    if len == 0 || !virt.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
        return Err(MapError::InvalidRange);
    }
    if virt < PAGE_SIZE || end > USER_END {
        return Err(MapError::OutsideWindow(virt));
    }
    Ok((virt, len / PAGE_SIZE))
}

impl AddressSpace {
    /// A new address space with nothing mapped in the lower half.
    pub fn new() -> Result<Arc<Self>, MapError> {
        let kernel_root = super::tables::kernel_root();
        if kernel_root == 0 {
            return Err(MapError::NotReady);
        }
        let mut memory = Hhdm::new(super::hhdm_offset());
        let root = memory.alloc_table().ok_or(MapError::OutOfMemory)?;
        for slot in 256..512 {
            let entry = memory.read(kernel_root, slot)?;
            memory.write(root, slot, entry)?;
        }
        Ok(Arc::new(Self {
            root,
            lock: IrqMutex::new(()),
            pages: AtomicU64::new(0),
            stack_floor: AtomicU64::new(0),
            stack_bottom: AtomicU64::new(0),
            stack_growth: IrqMutex::new(()),
        }))
    }

    /// Makes `[floor, bottom)` the reserve of a stack whose mapped part starts at `bottom`:
    /// a page fault there (from user mode, or a kernel copy to or from user memory) maps
    /// fresh zeroed read-write pages from the faulting page up to the mapped part, as Linux
    /// grows a main stack down to its `RLIMIT_STACK`. A page already mapped in between
    /// (a `MAP_FIXED` mapping) stops the growth there: the fault is then the program's.
    pub fn set_stack(&self, floor: u64, bottom: u64) {
        self.stack_floor.store(floor, Ordering::Relaxed);
        self.stack_bottom.store(bottom, Ordering::Release);
    }

    /// The stack reserve, `(floor, bottom)` (for a copy of the space).
    pub(super) fn stack(&self) -> (u64, u64) {
        (
            self.stack_floor.load(Ordering::Relaxed),
            self.stack_bottom.load(Ordering::Acquire),
        )
    }

    /// Grows the stack down to the page holding `address`, if it lies in the reserve;
    /// whether the address is mapped now.
    fn grow_stack(&self, address: u64) -> bool {
        let _growth = self.stack_growth.lock();
        let (floor, bottom) = self.stack();
        if address < floor || address >= bottom {
            // Grown past it meanwhile by another thread, or not the stack's.
            return address >= bottom && address < USER_END && self.query(address).is_some();
        }
        let page = address & !(PAGE_SIZE - 1);
        if self
            .map_zeroed(page, bottom - page, Access::READ_WRITE)
            .is_err()
        {
            return false;
        }
        self.stack_bottom.store(page, Ordering::Release);
        true
    }

    fn tables(&self) -> PageTables {
        PageTables::new(self.root, crate::mm::Protections::active().nx)
    }

    /// Maps `len` bytes of fresh zeroed memory at `virt` (page-aligned, inside user space)
    /// with `access`, paged in on demand (each page gets its frame at its first touch).
    /// Refused if any page of the range is mapped or reserved already; on an error nothing of
    /// the range stays mapped.
    pub fn map_zeroed(&self, virt: u64, len: u64, access: Access) -> Result<(), MapError> {
        self.map_fresh(virt, len, access, 0)
    }

    /// Like [`map_zeroed`](Self::map_zeroed), for `MAP_SHARED` memory: the pages stay shared
    /// (the same frames, writable in place) with the spaces [`duplicate`](Self::duplicate)
    /// makes from this one, instead of being copied on write.
    pub fn map_zeroed_shared(&self, virt: u64, len: u64, access: Access) -> Result<(), MapError> {
        self.map_fresh(virt, len, access, SHARED)
    }

    /// Maps the file page `page` at the empty page `virt` with `access`. `shared`
    /// (`MAP_SHARED`): writes go to the page itself, seen by `read` and by every space that
    /// maps it, `fork`'s copies included. Otherwise (`MAP_PRIVATE`) the page shows the file's
    /// bytes until the first write, which gets a copy of its own (copy-on-write: the file
    /// holds a reference, so the frame counts as shared). A shared page of a file not open
    /// for writing (`may_write` false) can never be made writable.
    pub fn map_cache(
        &self,
        virt: u64,
        page: &super::CacheFrame,
        access: Access,
        shared: bool,
        may_write: bool,
    ) -> Result<(), MapError> {
        let (virt, _) = user_range(virt, PAGE_SIZE)?;
        let _guard = self.lock();
        let tables = self.tables();
        let mut memory = Hhdm::new(super::hhdm_offset());
        match tables.raw_leaf(&memory, virt) {
            Some(0) => {}
            Some(_) => return Err(MapError::Table(frames::table::Error::AlreadyMapped(virt))),
            None => return Err(MapError::Table(frames::table::Error::InsideLargePage(virt))),
        }
        if shared && access.write && !may_write {
            return Err(MapError::NotWritable(virt));
        }
        let (attributes, bits) = if shared {
            (
                access.attributes(),
                if may_write { SHARED } else { SHARED | NO_WRITE },
            )
        } else if access.write {
            let read_only = Access {
                write: false,
                ..access
            };
            (read_only.attributes(), COW)
        } else {
            (access.attributes(), 0)
        };
        let phys = page.phys();
        if !share::share(phys) {
            return Err(MapError::NotReady);
        }
        let entry = tables.leaf_entry(phys, PageSize::Size4K, attributes);
        if let Err(e) = tables.map_entry(&mut memory, virt, PageSize::Size4K, entry | bits) {
            // Never visible to user mode: no flush needed before letting go.
            share::put(phys);
            return Err(e.into());
        }
        self.pages.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn map_fresh(&self, virt: u64, len: u64, access: Access, bits: u64) -> Result<(), MapError> {
        let (virt, count) = user_range(virt, len)?;
        let _guard = self.lock();
        let tables = self.tables();
        let mut memory = Hhdm::new(super::hhdm_offset());
        let attributes = access.attributes();
        for i in 0..count {
            let v = virt + i * PAGE_SIZE;
            let result = if bits & SHARED == 0 {
                Self::reserve(&tables, &mut memory, v, attributes)
            } else {
                self.map_frame(&tables, &mut memory, v, attributes, bits)
            };
            if let Err(e) = result {
                // Nothing of the new range was visible to user mode yet: no flush needed.
                for j in 0..i {
                    if let Ok(old) = tables.write_raw_leaf(&mut memory, virt + j * PAGE_SIZE, 0)
                        && old & PRESENT != 0
                    {
                        let _ = frame::free_for(old & ADDRESS_MASK, 1, frame::HAL);
                        self.pages.fetch_sub(1, Ordering::Relaxed);
                    }
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Reserves the empty page at `v`: a not-present [`LAZY`] leaf with `attributes`.
    fn reserve(
        tables: &PageTables,
        memory: &mut Hhdm,
        v: u64,
        attributes: Attributes,
    ) -> Result<(), MapError> {
        match tables.raw_leaf(memory, v) {
            Some(0) => {}
            Some(_) => return Err(MapError::Table(frames::table::Error::AlreadyMapped(v))),
            None => return Err(MapError::Table(frames::table::Error::InsideLargePage(v))),
        }
        let entry = tables.leaf_entry(0, PageSize::Size4K, attributes);
        tables.write_raw_leaf(memory, v, (entry & !PRESENT) | LAZY)?;
        Ok(())
    }

    /// Maps a fresh zeroed frame at the empty page `v`.
    fn map_frame(
        &self,
        tables: &PageTables,
        memory: &mut Hhdm,
        v: u64,
        attributes: Attributes,
        bits: u64,
    ) -> Result<(), MapError> {
        let phys = frame::alloc_user().ok_or(MapError::OutOfMemory)?;
        memory.zero(phys);
        let entry = tables.leaf_entry(phys, PageSize::Size4K, attributes);
        tables
            .map_entry(memory, v, PageSize::Size4K, entry | bits)
            .map_err(|e| {
                let _ = frame::free_for(phys, 1, frame::HAL);
                MapError::from(e)
            })?;
        self.pages.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Gives the reserved page at `v` (page-aligned) its zeroed frame, under the space's
    /// lock. Whether the page is mapped now (`false`: nothing is reserved there).
    fn fill(&self, tables: &PageTables, memory: &mut Hhdm, v: u64) -> Result<bool, MapError> {
        let raw = tables.raw_leaf(memory, v).unwrap_or(0);
        if raw & PRESENT != 0 {
            // Filled by another thread meanwhile.
            return Ok(true);
        }
        if raw & LAZY == 0 {
            return Ok(false);
        }
        let phys = frame::alloc_user().ok_or(MapError::OutOfMemory)?;
        memory.zero(phys);
        // Not present to present: no TLB holds the old entry.
        tables.write_raw_leaf(memory, v, (raw & !LAZY) | PRESENT | phys)?;
        self.pages.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Drops the frames of the mapped private pages of `[virt, virt + len)` and reserves the
    /// pages again with their access, so they read back as fresh zeroed memory
    /// (`MADV_DONTNEED`). `MAP_SHARED` pages keep their contents, as Linux's shared memory
    /// does.
    pub fn discard(&self, virt: u64, len: u64) -> Result<(), MapError> {
        let (virt, count) = user_range(virt, len)?;
        let _guard = self.lock();
        let tables = self.tables();
        let mut memory = Hhdm::new(super::hhdm_offset());
        let mut freed = alloc::vec::Vec::new();
        for i in 0..count {
            let v = virt + i * PAGE_SIZE;
            let Some(m) = tables.translate(&memory, v) else {
                continue;
            };
            if m.entry & SHARED != 0 {
                continue;
            }
            let mut flags = m.entry & !(ADDRESS_MASK | PRESENT | ACCESSED_DIRTY);
            if flags & COW != 0 {
                flags = (flags & !COW) | frames::table::WRITABLE;
            }
            tables.write_raw_leaf(&mut memory, v, flags | LAZY)?;
            freed.push(m.phys);
        }
        self.flush(virt, len, &freed);
        self.pages.fetch_sub(freed.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Moves every page of `[from, from + len)` — mapped or reserved, frames and all — to
    /// `[to, to + len)`, which must be empty (`mremap`'s move: nothing is copied, so shared
    /// pages stay shared). On an error nothing has moved.
    pub fn move_range(&self, from: u64, to: u64, len: u64) -> Result<(), MapError> {
        let (from, count) = user_range(from, len)?;
        let (to, _) = user_range(to, len)?;
        if from.abs_diff(to) < len {
            return Err(MapError::InvalidRange);
        }
        let _guard = self.lock();
        let tables = self.tables();
        let mut memory = Hhdm::new(super::hhdm_offset());
        // First make sure every target slot exists and is empty, so the move cannot fail.
        for i in 0..count {
            let v = to + i * PAGE_SIZE;
            if tables.raw_leaf(&memory, v) != Some(0) {
                return Err(MapError::Table(frames::table::Error::AlreadyMapped(v)));
            }
            tables.write_raw_leaf(&mut memory, v, 0)?;
        }
        for i in 0..count {
            let offset = i * PAGE_SIZE;
            let entry = tables.write_raw_leaf(&mut memory, from + offset, 0)?;
            if entry != 0 {
                tables.write_raw_leaf(&mut memory, to + offset, entry)?;
            }
        }
        // A CPU writing through a stale entry of the old range writes the same frame.
        self.flush(from, len, &[]);
        Ok(())
    }

    /// Whether a page fault with `error_code` at `address` failed for want of memory: the
    /// page is reserved (or in the stack's reserve) but has no frame, or it is a write to a
    /// copy-on-write page that could not be copied. The kernel then ends the program as
    /// Linux's OOM killer does, instead of reporting a `SIGSEGV` the program did not earn.
    pub fn fault_out_of_memory(&self, error_code: u64, address: u64) -> bool {
        if address >= USER_END {
            return false;
        }
        let memory = Hhdm::new(super::hhdm_offset());
        let raw = self
            .tables()
            .raw_leaf(&memory, address & !(PAGE_SIZE - 1))
            .unwrap_or(0);
        let (floor, bottom) = self.stack();
        let write = error_code & 2 != 0;
        if raw & PRESENT == 0 {
            raw & LAZY != 0 || (raw == 0 && address >= floor && address < bottom)
        } else {
            write && raw & COW != 0 && raw & frames::table::USER != 0
        }
    }

    /// Unmaps every mapped or reserved page of `[virt, virt + len)` and lets go of its frame once no TLB
    /// can reach it (freed if no other space maps it; kept, and counted as such, if a CPU does
    /// not confirm the flush). Unmapped pages in
    /// the range are skipped. Returns how many pages were unmapped.
    pub fn unmap(&self, virt: u64, len: u64) -> Result<u64, MapError> {
        let (virt, count) = user_range(virt, len)?;
        let _guard = self.lock();
        let tables = self.tables();
        let mut memory = Hhdm::new(super::hhdm_offset());
        let mut freed = alloc::vec::Vec::new();
        let mut reserved = 0;
        for i in 0..count {
            let v = virt + i * PAGE_SIZE;
            let raw = tables.raw_leaf(&memory, v).unwrap_or(0);
            if raw & PRESENT != 0 {
                if let Ok(m) = tables.unmap(&mut memory, v) {
                    freed.push(m.phys);
                }
            } else if raw & LAZY != 0 && tables.write_raw_leaf(&mut memory, v, 0).is_ok() {
                reserved += 1;
            }
        }
        self.flush(virt, len, &freed);
        self.pages.fetch_sub(freed.len() as u64, Ordering::Relaxed);
        Ok(freed.len() as u64 + reserved)
    }

    /// Changes the access of every mapped page of `[virt, virt + len)`.
    pub fn protect(&self, virt: u64, len: u64, access: Access) -> Result<(), MapError> {
        self.remap(virt, len, access.attributes())
    }

    /// Takes user mode's access to the mapped pages in `[virt, virt + len)` away while
    /// keeping them and their contents (`PROT_NONE`): they stay mapped for the kernel only,
    /// so a user access faults as a protection fault, and [`protect`](Self::protect) gives
    /// the access back.
    pub fn protect_none(&self, virt: u64, len: u64) -> Result<(), MapError> {
        self.remap(virt, len, Attributes::READ_ONLY)
    }

    /// Gives the mapped pages of `[virt, virt + len)` `attributes`, keeping their frames. A
    /// page made writable whose frame is shared (and not `MAP_SHARED`) becomes copy-on-write.
    /// Nothing changes if a page may not be made writable ([`MapError::NotWritable`]).
    fn remap(&self, virt: u64, len: u64, attributes: Attributes) -> Result<(), MapError> {
        let (virt, count) = user_range(virt, len)?;
        let _guard = self.lock();
        let tables = self.tables();
        let mut memory = Hhdm::new(super::hhdm_offset());
        if attributes.writable {
            let sealed = (0..count).map(|i| virt + i * PAGE_SIZE).find(|&v| {
                tables
                    .translate(&memory, v)
                    .is_some_and(|m| m.entry & NO_WRITE != 0)
            });
            if let Some(v) = sealed {
                return Err(MapError::NotWritable(v));
            }
        }
        let reserved = (tables.leaf_entry(0, PageSize::Size4K, attributes) & !PRESENT) | LAZY;
        for i in 0..count {
            let v = virt + i * PAGE_SIZE;
            let Some(m) = tables.translate(&memory, v) else {
                if tables.raw_leaf(&memory, v).unwrap_or(0) & LAZY != 0 {
                    // Not present: no TLB entry to flush.
                    tables.write_raw_leaf(&mut memory, v, reserved)?;
                }
                continue;
            };
            let kept = m.entry & (SHARED | NO_WRITE);
            let mut entry = tables.leaf_entry(m.phys, PageSize::Size4K, attributes) | kept;
            if attributes.writable && kept == 0 && share::is_shared(m.phys) {
                entry = (entry & !frames::table::WRITABLE) | COW;
            }
            tables.replace_leaf(&mut memory, v, entry)?;
        }
        self.flush(virt, len, &[]);
        Ok(())
    }

    /// The access user mode has to the page holding `virt`, if it is mapped or reserved.
    pub fn query(&self, virt: u64) -> Option<Access> {
        if virt >= USER_END {
            return None;
        }
        let memory = Hhdm::new(super::hhdm_offset());
        let tables = self.tables();
        let Some(m) = tables.translate(&memory, virt) else {
            let raw = tables.raw_leaf(&memory, virt & !(PAGE_SIZE - 1))?;
            return (raw & LAZY != 0 && raw & frames::table::USER != 0).then_some(Access {
                write: raw & frames::table::WRITABLE != 0,
                execute: raw & frames::table::NO_EXECUTE == 0,
            });
        };
        m.user.then_some(Access {
            write: m.writable || m.entry & COW != 0,
            execute: m.executable,
        })
    }

    /// The user mappings, as `/proc/PID/maps` lists them: runs of pages with the same
    /// access, mapped or only reserved, in address order.
    pub fn regions(&self) -> alloc::vec::Vec<Region> {
        let memory = Hhdm::new(super::hhdm_offset());
        let tables = self.tables();
        let mut out: alloc::vec::Vec<Region> = alloc::vec::Vec::new();
        tables.for_each_raw_leaf(&memory, 0, USER_END, |virt, entry| {
            let present = entry & frames::table::PRESENT != 0;
            if !present && entry & LAZY == 0 {
                return;
            }
            let user = entry & frames::table::USER != 0;
            let region = Region {
                start: virt,
                end: virt + PAGE_SIZE,
                read: user,
                write: user && (entry & frames::table::WRITABLE != 0 || entry & COW != 0),
                execute: user && entry & frames::table::NO_EXECUTE == 0,
                shared: entry & SHARED != 0,
            };
            match out.last_mut() {
                Some(last) if last.end == region.start && last.same_access(&region) => {
                    last.end = region.end;
                }
                _ => out.push(region),
            }
        });
        out
    }

    /// Whether the page holding `virt` has its frame (`mincore`): mapped, not merely
    /// reserved.
    pub fn is_resident(&self, virt: u64) -> bool {
        if virt >= USER_END {
            return false;
        }
        let memory = Hhdm::new(super::hhdm_offset());
        self.tables().translate(&memory, virt).is_some()
    }

    /// Whether anything occupies the page holding `virt`: mapped or reserved, with any access
    /// (`PROT_NONE` pages too, which [`query`](Self::query) reports as inaccessible).
    pub fn is_occupied(&self, virt: u64) -> bool {
        if virt >= USER_END {
            return false;
        }
        let memory = Hhdm::new(super::hhdm_offset());
        self.tables()
            .raw_leaf(&memory, virt & !(PAGE_SIZE - 1))
            .is_none_or(|raw| raw & (PRESENT | LAZY) != 0)
    }

    /// Pages mapped (with a frame; reserved pages not yet touched do not count).
    pub fn mapped_pages(&self) -> u64 {
        self.pages.load(Ordering::Relaxed)
    }

    /// Copies `data` into the space at `virt` whatever the pages' access (a loader writes
    /// program text this way), through the direct map: the space need not be active. A page
    /// whose frame other spaces share (other than `MAP_SHARED` memory) gets a copy of its own
    /// first. Fails at the first page that is not mapped (or cannot be copied), with its
    /// address. Reserved pages get their frames first.
    pub fn write(&self, virt: u64, data: &[u8]) -> Result<(), u64> {
        self.each_chunk(virt, data.len(), true, |phys, offset, len| {
            let bytes = &data[offset..offset + len];
            // SAFETY: `phys` is a frame of this space (hal allocated it for the space and it
            // stays until unmapped under the lock we hold), mapped in the HHDM; `len` stays
            // inside it. User mode may read it concurrently: plain bytes, no Rust invariant.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    super::phys_to_virt(phys) as *mut u8,
                    len,
                );
            }
        })
    }

    /// Copies bytes of the space at `virt` into `out`, like [`write`](Self::write).
    pub fn read(&self, virt: u64, out: &mut [u8]) -> Result<(), u64> {
        let out_ptr = out.as_mut_ptr();
        self.each_chunk(virt, out.len(), false, |phys, offset, len| {
            // SAFETY: as in `write`, reading; `out[offset..offset + len]` is in bounds.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    super::phys_to_virt(phys) as *const u8,
                    out_ptr.add(offset),
                    len,
                );
            }
        })
    }

    /// Calls `f(phys, offset, len)` for each page-sized piece of `[virt, virt + len)`; to
    /// `write` them, after making each page's frame this space's own.
    fn each_chunk(
        &self,
        virt: u64,
        len: usize,
        write: bool,
        mut f: impl FnMut(u64, usize, usize),
    ) -> Result<(), u64> {
        let end = virt.checked_add(len as u64).ok_or(virt)?;
        if end > USER_END {
            return Err(virt.max(USER_END));
        }
        let _guard = self.lock();
        let mut memory = Hhdm::new(super::hhdm_offset());
        let tables = self.tables();
        let mut at = virt;
        while at < end {
            self.fill(&tables, &mut memory, at & !(PAGE_SIZE - 1))
                .map_err(|_| at)?;
            if write {
                self.make_private(&tables, &mut memory, at & !(PAGE_SIZE - 1), false)
                    .map_err(|_| at)?;
            }
            let m = tables.translate(&memory, at).filter(|m| m.user).ok_or(at)?;
            let in_page = at & (PAGE_SIZE - 1);
            let n = (PAGE_SIZE - in_page).min(end - at);
            f(m.phys + in_page, (at - virt) as usize, n as usize);
            at += n;
        }
        Ok(())
    }

    /// Takes the space's lock ([`IrqMutex::lock`] serves TLB shootdowns while it waits: its
    /// holder may be waiting for this CPU's flush).
    fn lock(&self) -> IrqMutexGuard<'_, ()> {
        self.lock.lock()
    }

    /// Flushes `[virt, virt + len)` from every TLB that may hold it, then drops this space's
    /// references to `frames` (or keeps them if a CPU did not confirm).
    fn flush(&self, virt: u64, len: u64, frames: &[u64]) {
        if self.is_active_here() {
            super::tlb::flush_local(virt, len);
        }
        // Other CPUs running this space (threads) are asked to flush too; a CPU that switched
        // away from it flushed its user entries then.
        if !self.active_elsewhere() || super::tlb::shootdown_others(virt, len) {
            for &phys in frames {
                share::put(phys);
            }
        } else if !frames.is_empty() {
            super::tables::count_kept(frames.len() as u64);
            log::error!(
                "mm: a CPU did not confirm the flush of user pages {virt:#x}+{len:#x}; keeping \
                 {} frame(s)",
                frames.len()
            );
        }
    }

    fn is_active_here(&self) -> bool {
        Cr3::read().0.start_address().as_u64() == self.root
    }

    /// Whether another CPU may run on this space (or hold entries of it in its TLB).
    fn active_elsewhere(&self) -> bool {
        // Our page-table writes are visible before any other CPU's slot is read: a CPU that
        // loads this space after the check walks the new entries.
        core::sync::atomic::fence(Ordering::SeqCst);
        let here = crate::percpu::current_index();
        ACTIVE.iter().any(|(cpu, slot)| {
            cpu != here
                && slot.try_lock().is_none_or(|active| {
                    active
                        .as_ref()
                        .is_some_and(|a| core::ptr::eq(Arc::as_ptr(a), self))
                })
        })
    }

    /// Runs this CPU on `space` (its lower half becomes the user half) until [`deactivate`]
    /// or another `activate`.
    pub fn activate(space: &Arc<Self>) {
        let pinned = PreemptGuard::new();
        let mut slot = ACTIVE.get(&pinned).lock();
        if slot.as_ref().is_some_and(|a| Arc::ptr_eq(a, space)) && space.is_active_here() {
            return;
        }
        load_root(space.root);
        // The previous space (if any) is dropped after the switch: never while loaded.
        let _previous = slot.replace(Arc::clone(space));
    }
}

/// Puts this CPU back on the kernel's own tables (an empty lower half).
pub fn deactivate() {
    let pinned = PreemptGuard::new();
    let mut slot = ACTIVE.get(&pinned).lock();
    load_root(super::tables::kernel_root());
    let _previous = slot.take();
}

fn load_root(root: u64) {
    let frame = PhysFrame::containing_address(PhysAddr::new(root));
    // SAFETY: `root` is the kernel's top-level table or an address space's, whose higher half
    // is the kernel's: the code, stack and data running now stay mapped the same way.
    unsafe { Cr3::write(frame, Cr3Flags::empty()) };
}

impl Drop for AddressSpace {
    fn drop(&mut self) {
        // No CPU has it loaded (each active slot holds a reference), and every CPU that ran it
        // flushed its non-global (user) entries when it switched away.
        let mut memory = Hhdm::new(super::hhdm_offset());
        let freed = free_lower_half(&mut memory, self.root, 3);
        memory.free_table(self.root);
        self.pages.fetch_sub(freed, Ordering::Relaxed);
    }
}

/// Frees every page and table below `table` (at `level`, 3 = top) in the lower half; returns
/// how many pages were freed.
fn free_lower_half(memory: &mut Hhdm, table: u64, level: u32) -> u64 {
    let slots = if level == 3 { 0..256 } else { 0..512 };
    let mut freed = 0;
    for slot in slots {
        let Ok(entry) = memory.read(table, slot) else {
            continue;
        };
        if entry & PRESENT == 0 {
            continue;
        }
        let phys = entry & ADDRESS_MASK;
        if level == 0 {
            share::put(phys);
            freed += 1;
        } else {
            // Only 4 KiB pages are mapped in user space: every upper entry is a table.
            freed += free_lower_half(memory, phys, level - 1);
            memory.free_table(phys);
        }
    }
    freed
}
