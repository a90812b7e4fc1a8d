//! The kernel's page tables: one hierarchy shared by every CPU, edited under one lock
//! through the HHDM.
//!
//! Lock order: the heap lock, then this one, then the frame allocator's. Nothing here
//! allocates from the heap.

use core::sync::atomic::{AtomicU64, Ordering};

use frames::table::{
    Attributes, Error as TableError, Mapping, PageSize, PageTables, TableMemory, TableRead,
};

use super::{MapError, PAGE_SIZE, frame};
use crate::sync::IrqMutex;

/// The kernel hierarchy, once built and loaded.
static KERNEL_TABLES: IrqMutex<Option<PageTables>> = IrqMutex::new(None);
/// Its root, for CPUs switching to it (0 until built).
static KERNEL_ROOT: AtomicU64 = AtomicU64::new(0);
/// Frames holding page tables.
static TABLE_FRAMES: AtomicU64 = AtomicU64::new(0);

/// Page-table pages reached through the HHDM, allocated from the frame allocator.
pub(super) struct Hhdm {
    offset: u64,
}

impl Hhdm {
    /// Access through the HHDM at `offset` (the loader's, which the kernel keeps).
    pub(super) fn new(offset: u64) -> Self {
        Self { offset }
    }

    fn entry(&self, table: u64, index: usize) -> *mut u64 {
        assert!(index < frames::table::ENTRIES, "page-table index {index}");
        (self.offset + table + index as u64 * 8) as *mut u64
    }
}

impl TableRead for Hhdm {
    fn read(&self, table: u64, index: usize) -> Result<u64, TableError> {
        // SAFETY: `table` is the root or came from a present non-leaf entry, so it is a
        // page-table page; those are usable RAM, mapped in the HHDM by the loader and by the
        // kernel. Entries are aligned u64s.
        Ok(unsafe { self.entry(table, index).read_volatile() })
    }
}

impl TableMemory for Hhdm {
    fn write(&mut self, table: u64, index: usize, value: u64) -> Result<(), TableError> {
        // SAFETY: as in `read`; the caller holds the page-table lock (or is building tables
        // no CPU uses yet), so no other writer races, and an aligned u64 store is atomic for
        // the CPU's page walker.
        unsafe { self.entry(table, index).write_volatile(value) };
        Ok(())
    }

    fn alloc_table(&mut self) -> Option<u64> {
        let phys = frame::alloc_for(1, 1, frame::HAL)?;
        // SAFETY: the frame was just allocated for hal, so nothing else uses it, and it is
        // usable RAM mapped in the HHDM.
        unsafe { core::ptr::write_bytes((self.offset + phys) as *mut u8, 0, PAGE_SIZE as usize) };
        TABLE_FRAMES.fetch_add(1, Ordering::Relaxed);
        Some(phys)
    }
}

impl Hhdm {
    /// Fills the frame at `phys` with zeros.
    pub(super) fn zero(&mut self, phys: u64) {
        // SAFETY: callers pass a frame hal just allocated, so nothing else uses it; usable RAM
        // is mapped in the HHDM.
        unsafe { core::ptr::write_bytes((self.offset + phys) as *mut u8, 0, PAGE_SIZE as usize) };
    }

    /// Returns a page-table frame made by `alloc_table` that no hierarchy uses any more.
    pub(super) fn free_table(&mut self, phys: u64) {
        if frame::free_for(phys, 1, frame::HAL).is_ok() {
            TABLE_FRAMES.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Counts frames kept out of the allocator after an unconfirmed shootdown.
pub(super) fn count_kept(frames: u64) {
    LEAKED_FRAMES.fetch_add(frames, core::sync::atomic::Ordering::Relaxed);
}

/// Records the hierarchy `init` built and loaded.
pub(super) fn install(tables: PageTables) {
    KERNEL_ROOT.store(tables.root(), Ordering::Release);
    *KERNEL_TABLES.lock() = Some(tables);
}

/// Physical address of the kernel's top-level table (0 before `init`).
pub(super) fn kernel_root() -> u64 {
    KERNEL_ROOT.load(Ordering::Acquire)
}

/// Frames holding page tables.
pub(super) fn table_frames() -> u64 {
    TABLE_FRAMES.load(Ordering::Relaxed)
}

/// Runs `f` on the kernel tables under their lock.
pub(super) fn with<R>(f: impl FnOnce(&PageTables, &mut Hhdm) -> R) -> Result<R, MapError> {
    let guard = KERNEL_TABLES.lock();
    let tables = guard.as_ref().ok_or(MapError::NotReady)?;
    let mut memory = Hhdm::new(super::hhdm_offset());
    Ok(f(tables, &mut memory))
}

/// Maps `pages` fresh frames (owned by hal) at `virt` with `attributes`, zeroed: no stale
/// data reaches a kernel stack or the heap, and under QEMU's emulation a frame that last held
/// code (firmware's, in reclaimed loader memory) stops slowing every later write to it (a
/// write to a page with translated code takes the emulator's slow path until all of it has
/// been written). On failure, what was mapped is unmapped and freed again.
pub(super) fn map_fresh(virt: u64, pages: u64, attributes: Attributes) -> Result<(), MapError> {
    for done in 0..pages {
        let result = frame::alloc_for(1, 1, frame::HAL)
            .ok_or(MapError::OutOfMemory)
            .and_then(|phys| {
                Hhdm::new(super::hhdm_offset()).zero(phys);
                let v = virt + done * PAGE_SIZE;
                let mapped = with(|t, m| t.map(m, v, phys, PageSize::Size4K, attributes))?;
                mapped.map_err(|e| {
                    let _ = frame::free_for(phys, 1, frame::HAL);
                    MapError::from(e)
                })
            });
        if let Err(e) = result {
            unmap_and_free(virt, done);
            return Err(e);
        }
    }
    Ok(())
}

/// Frames kept out of the allocator because a shootdown was not confirmed.
static LEAKED_FRAMES: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// How many frames were kept (never freed) because a CPU did not confirm a TLB shootdown.
pub fn frames_kept_after_failed_shootdowns() -> u64 {
    LEAKED_FRAMES.load(core::sync::atomic::Ordering::Relaxed)
}

/// Unmaps `pages` pages from `virt` (mapped by [`map_fresh`]), flushes them from every
/// CPU's TLB, then frees their frames (or keeps them if a CPU did not confirm the flush).
pub(super) fn unmap_and_free(virt: u64, pages: u64) {
    let mut freed = [0u64; 64];
    let mut start = 0;
    while start < pages {
        let count = (pages - start).min(freed.len() as u64);
        let base = virt + start * PAGE_SIZE;
        let _ = with(|t, m| {
            for i in 0..count {
                freed[i as usize] = t.unmap(m, base + i * PAGE_SIZE).map_or(0, |m| m.phys);
            }
        });
        // Frames are reused only after no TLB can still reach them: if a CPU never confirmed
        // its flush, they stay allocated for good.
        if !super::tlb::shootdown(base, count * PAGE_SIZE) {
            let kept = freed
                .iter()
                .take(count as usize)
                .filter(|&&p| p != 0)
                .count();
            LEAKED_FRAMES.fetch_add(kept as u64, core::sync::atomic::Ordering::Relaxed);
            log::error!(
                "mm: a CPU did not confirm the TLB shootdown of {base:#x}+{:#x}; keeping its \
                 {kept} frame(s) out of the allocator",
                count * PAGE_SIZE
            );
            start += count;
            continue;
        }
        for &phys in freed.iter().take(count as usize).filter(|&&p| p != 0) {
            if let Err(e) = frame::free_for(phys, 1, frame::HAL) {
                log::error!("mm: freeing unmapped frame {phys:#x}: {e}");
            }
        }
        start += count;
    }
}

/// The mapping covering `virt` in the kernel tables, if any.
pub fn translate(virt: u64) -> Option<Mapping> {
    with(|t, m| t.translate(m, virt)).ok().flatten()
}

#[cfg(feature = "test-hooks")]
fn check_scratch(virt: u64) -> Result<(), MapError> {
    if (super::SCRATCH_BASE..super::SCRATCH_BASE + super::WINDOW_BYTES).contains(&virt) {
        Ok(())
    } else {
        Err(MapError::OutsideWindow(virt))
    }
}

/// Test hook: maps the 4 KiB frame at `phys` read-only at `virt`, which must lie in the
/// scratch window ([`SCRATCH_BASE`](super::SCRATCH_BASE)). Read it with
/// [`crate::trap::probe_read`].
#[cfg(feature = "test-hooks")]
pub fn map_page(virt: u64, phys: u64) -> Result<(), MapError> {
    check_scratch(virt)?;
    with(|t, m| t.map(m, virt, phys, PageSize::Size4K, Attributes::READ_ONLY))??;
    Ok(())
}

/// Test hook: unmaps the scratch page at `virt`, flushes it from every CPU's TLB, and
/// returns the physical address it mapped.
#[cfg(feature = "test-hooks")]
pub fn unmap_page(virt: u64) -> Result<u64, MapError> {
    check_scratch(virt)?;
    let mapping = with(|t, m| t.unmap(m, virt))??;
    if !super::tlb::shootdown(virt, PAGE_SIZE) {
        return Err(MapError::ShootdownIncomplete(virt));
    }
    Ok(mapping.phys)
}
