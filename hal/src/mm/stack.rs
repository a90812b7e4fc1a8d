//! Kernel stacks with guard pages.
//!
//! The stack window is cut into 1 MiB slots. A stack occupies the top of its slot; everything
//! below it in the slot stays unmapped, so running off the bottom of a stack faults on a
//! guard page (at least one 4 KiB page, since a stack is at most [`MAX_STACK_PAGES`]) instead
//! of overwriting a neighbour.

use core::sync::atomic::{AtomicU64, Ordering};

use frames::table::Attributes;

use super::{MapError, PAGE_SIZE, STACK_BASE, tables};
use crate::sync::IrqMutex;

/// Bytes of virtual space per stack.
const SLOT_SIZE: u64 = 1 << 20;
/// The largest stack in pages (one page of the slot stays a guard).
pub const MAX_STACK_PAGES: u64 = SLOT_SIZE / PAGE_SIZE - 1;
/// Slots available (4 GiB of the window).
const SLOTS: usize = 4096;

/// Bit `i` set when slot `i` is in use.
static SLOT_MAP: IrqMutex<[u64; SLOTS / 64]> = IrqMutex::new([0; SLOTS / 64]);
static LIVE: AtomicU64 = AtomicU64::new(0);

/// Kernel stacks currently allocated.
pub(super) fn live_stacks() -> u64 {
    LIVE.load(Ordering::Relaxed)
}

fn take_slot() -> Option<usize> {
    let mut map = SLOT_MAP.lock();
    let (word, bits) = map
        .iter_mut()
        .enumerate()
        .find(|(_, bits)| **bits != u64::MAX)?;
    let bit = bits.trailing_ones() as usize;
    *bits |= 1 << bit;
    Some(word * 64 + bit)
}

fn release_slot(slot: usize) {
    SLOT_MAP.lock()[slot / 64] &= !(1 << (slot % 64));
}

/// A mapped kernel stack with an unmapped guard page below it; unmapped and freed on drop.
#[derive(Debug)]
pub struct KernelStack {
    slot: usize,
    pages: u64,
}

impl KernelStack {
    fn slot_base(&self) -> u64 {
        STACK_BASE + self.slot as u64 * SLOT_SIZE
    }

    /// One past the highest byte: the initial stack pointer (16-byte aligned).
    pub fn top(&self) -> u64 {
        self.slot_base() + SLOT_SIZE
    }

    /// The lowest mapped byte.
    pub fn bottom(&self) -> u64 {
        self.top() - self.pages * PAGE_SIZE
    }

    /// The address of the guard page just below [`bottom`](Self::bottom).
    pub fn guard_page(&self) -> u64 {
        self.bottom() - PAGE_SIZE
    }

    /// Size in pages.
    pub fn pages(&self) -> u64 {
        self.pages
    }
}

impl Drop for KernelStack {
    fn drop(&mut self) {
        tables::unmap_and_free(self.bottom(), self.pages);
        release_slot(self.slot);
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Allocates a kernel stack of `pages` pages (1..=[`MAX_STACK_PAGES`]), mapped read-write
/// and non-executable, with a guard page below it.
pub fn alloc_kernel_stack(pages: u64) -> Result<KernelStack, MapError> {
    if pages == 0 || pages > MAX_STACK_PAGES {
        return Err(MapError::InvalidRange);
    }
    let slot = take_slot().ok_or(MapError::WindowFull)?;
    let stack = KernelStack { slot, pages };
    if let Err(e) = tables::map_fresh(stack.bottom(), pages, Attributes::READ_WRITE) {
        release_slot(slot);
        core::mem::forget(stack);
        return Err(e);
    }
    LIVE.fetch_add(1, Ordering::Relaxed);
    Ok(stack)
}
