//! `fork`'s copy of an address space, shared copy-on-write, and the write faults that break
//! the sharing.
//!
//! [`AddressSpace::duplicate`] copies the page tables, not the pages: every frame gets one
//! more reference, and private writable pages become read-only [`COW`] pages in both spaces
//! (the parent's TLB entries are flushed before the child can run). The first write to such
//! a page faults; [`resolve_write_fault`] gives the writing space a copy of the frame — or the
//! frame itself, writable again, if no other space maps it any more — and the instruction is
//! retried. Kernel writes into user memory (the user-copy routine, [`AddressSpace::write`])
//! go the same way, so a `read` into a page shared since `fork` works as it did before.

use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use frames::table::{ADDRESS_MASK, PRESENT, PageTables, TableMemory, TableRead, WRITABLE};

use super::{ACTIVE, AddressSpace, COW, LAZY, SHARED, USER_END};
use crate::mm::{MapError, PAGE_SIZE, frame, share, tables::Hhdm};

/// Page-fault error-code bits.
const FAULT_PRESENT: u64 = 1 << 0;
const FAULT_WRITE: u64 = 1 << 1;

/// What [`share_tables`] found.
#[derive(Default)]
struct Shared {
    /// Leaves mapped in the copy.
    pages: u64,
    /// Whether a leaf of the original was made read-only (its TLB entries are stale).
    weakened: bool,
}

impl AddressSpace {
    /// A copy of this space for `fork`: the same frames at the same addresses with the same
    /// access, private writable pages copy-on-write in both spaces, `MAP_SHARED` pages shared
    /// for good. On an error the copy is dropped, letting go of what it had.
    pub fn duplicate(&self) -> Result<Arc<Self>, MapError> {
        let copy = Self::new()?;
        let (floor, bottom) = self.stack();
        copy.set_stack(floor, bottom);
        let _guard = self.lock();
        let mut memory = Hhdm::new(crate::mm::hhdm_offset());
        let mut shared = Shared::default();
        let result = share_tables(&mut memory, self.root, copy.root, 3, &mut shared);
        copy.pages.fetch_add(shared.pages, Ordering::Relaxed);
        if shared.weakened {
            // Before the child can write a shared frame, no CPU may still write it through
            // a writable entry of ours.
            self.flush(PAGE_SIZE, USER_END - PAGE_SIZE, &[]);
        }
        result.map(|()| copy)
    }

    /// Makes the frame of the page at `virt` (mapped, page-aligned) this space's own for a
    /// write, under the space's lock. A [`COW`] page becomes writable (on a copy of its frame
    /// if another space still maps it); for a kernel write (`user_write` false) a shared
    /// frame of a read-only or inaccessible page is copied too, keeping the page's access.
    /// `MAP_SHARED` pages and frames no other space maps are left as they are. Returns
    /// whether a user write may now go ahead.
    pub(super) fn make_private(
        &self,
        tables: &PageTables,
        memory: &mut Hhdm,
        virt: u64,
        user_write: bool,
    ) -> Result<bool, MapError> {
        let Some(m) = tables.translate(memory, virt) else {
            return Ok(false);
        };
        if user_write && !m.user {
            return Ok(false);
        }
        let cow = m.entry & COW != 0;
        if !cow && (user_write || m.entry & SHARED != 0 || !share::is_shared(m.phys)) {
            // Not ours to fix — or, for a user write, already fixed by another CPU.
            return Ok(m.user && m.writable);
        }
        let flags = if cow {
            (m.entry & !COW) | WRITABLE
        } else {
            m.entry
        } & !ADDRESS_MASK;
        if !share::is_shared(m.phys) {
            // The last mapping: write in place. Read-only to writable needs no flush (a
            // stale entry only faults again, and finds the page writable).
            tables.replace_leaf(memory, virt, flags | m.phys)?;
            return Ok(true);
        }
        let phys = frame::alloc_user().ok_or(MapError::OutOfMemory)?;
        // SAFETY: `m.phys` is a frame this space maps (its lock is held, and this space's
        // reference keeps the frame allocated), `phys` one just allocated for hal; both are
        // usable RAM in the HHDM, a page long, and distinct. Other spaces may write `m.phys`
        // meanwhile only if it is not copy-on-write for them either: plain bytes.
        unsafe {
            core::ptr::copy_nonoverlapping(
                crate::mm::phys_to_virt(m.phys) as *const u8,
                crate::mm::phys_to_virt(phys) as *mut u8,
                PAGE_SIZE as usize,
            );
        }
        tables.replace_leaf(memory, virt, flags | phys)?;
        // The old frame is let go once no TLB of ours can reach it.
        self.flush(virt, PAGE_SIZE, &[m.phys]);
        Ok(true)
    }
}

/// Makes the leaves under the original's `table` at `level` (3 = top, lower half only)
/// appear under the copy's `copy` table too, creating the copy's tables on the way.
fn share_tables(
    memory: &mut Hhdm,
    table: u64,
    copy: u64,
    level: u32,
    shared: &mut Shared,
) -> Result<(), MapError> {
    let slots = if level == 3 { 0..256 } else { 0..512 };
    for slot in slots {
        let entry = memory.read(table, slot)?;
        if entry & PRESENT == 0 {
            if level == 0 && entry & LAZY != 0 {
                // Reserved, never touched: the copy gets its own zeroed page when it touches
                // it.
                memory.write(copy, slot, entry)?;
            }
            continue;
        }
        let phys = entry & ADDRESS_MASK;
        if level > 0 {
            if entry & frames::table::HUGE != 0 && level < 3 {
                // Only 4 KiB pages are mapped in user space.
                continue;
            }
            let below = memory.alloc_table().ok_or(MapError::OutOfMemory)?;
            // Linked first, so that dropping the copy on an error frees it.
            memory.write(copy, slot, (entry & !ADDRESS_MASK) | below)?;
            share_tables(memory, phys, below, level - 1, shared)?;
            continue;
        }
        if !share::share(phys) {
            return Err(MapError::NotReady);
        }
        let leaf = if entry & SHARED == 0 && entry & WRITABLE != 0 {
            let weakened = (entry & !WRITABLE) | COW;
            memory.write(table, slot, weakened)?;
            shared.weakened = true;
            weakened
        } else {
            entry
        };
        memory.write(copy, slot, leaf)?;
        shared.pages += 1;
    }
    Ok(())
}

/// Resolves a page fault with `error_code` on `address` in the space this CPU runs, if it is
/// a write to a copy-on-write page (from user mode, or from the kernel's user-copy routine):
/// `true` if the faulting instruction can be retried. Called by the trap path with
/// interrupts disabled.
pub(crate) fn resolve_write_fault(error_code: u64, address: u64) -> bool {
    if error_code & (FAULT_PRESENT | FAULT_WRITE) != FAULT_PRESENT | FAULT_WRITE
        || address >= USER_END
    {
        return false;
    }
    // Wait for the slot rather than give up: another CPU's shootdown looks at it (briefly,
    // with `try_lock`), and a fault that gave up would kill the program for nothing. This
    // CPU never holds its own slot across a user access.
    let Some(space) = ACTIVE.here().lock().as_ref().map(Arc::clone) else {
        return false;
    };
    if !space.is_active_here() {
        return false;
    }
    let _guard = space.lock();
    let tables = space.tables();
    let mut memory = Hhdm::new(crate::mm::hhdm_offset());
    space
        .make_private(&tables, &mut memory, address & !(PAGE_SIZE - 1), true)
        .unwrap_or(false)
}

/// Resolves a page fault with `error_code` on `address` in the space this CPU runs, if it is
/// the first touch of a reserved page: the page gets its zeroed frame and `true` says the
/// instruction can be retried. Called by the trap path with interrupts disabled.
pub(crate) fn resolve_lazy_fault(error_code: u64, address: u64) -> bool {
    if error_code & FAULT_PRESENT != 0 || address >= USER_END {
        return false;
    }
    // As in `resolve_write_fault`.
    let Some(space) = ACTIVE.here().lock().as_ref().map(Arc::clone) else {
        return false;
    };
    if !space.is_active_here() {
        return false;
    }
    let _guard = space.lock();
    let tables = space.tables();
    let mut memory = Hhdm::new(crate::mm::hhdm_offset());
    space
        .fill(&tables, &mut memory, address & !(PAGE_SIZE - 1))
        .unwrap_or(false)
}

/// Resolves a page fault with `error_code` on `address` in the space this CPU runs, if it is
/// a not-present fault in the space's stack reserve: the stack grows to cover it and `true`
/// says the instruction can be retried. Called by the trap path with interrupts disabled.
pub(crate) fn resolve_stack_fault(error_code: u64, address: u64) -> bool {
    if error_code & FAULT_PRESENT != 0 || address >= USER_END {
        return false;
    }
    // As in `resolve_write_fault`.
    let Some(space) = ACTIVE.here().lock().as_ref().map(Arc::clone) else {
        return false;
    };
    space.is_active_here() && space.grow_stack(address)
}
