//! Reference counts for user frames mapped in more than one address space: pages shared
//! copy-on-write after `fork`, read-only pages shared outright, `MAP_SHARED` memory.
//!
//! One `AtomicU32` per frame of the allocator's span, in frames taken from the allocator once
//! at [`init`]: 4 bytes per 4 KiB frame (0.1 % of RAM), and no lock, heap allocation or
//! search on the page-fault path. A counter holds the number of *extra* mappings: 0 for a
//! frame mapped once, n for one mapped n + 1 times. A freshly allocated frame therefore needs
//! no set-up, and the mapping that finds 0 when it lets go is the last one and frees the
//! frame. Only the frames `space` maps into user address spaces use the counters.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use spin::Once;

use super::{PAGE_SIZE, frame};

/// The counters, one per frame from `base` on.
struct Counts {
    base: u64,
    counts: &'static [AtomicU32],
}

static COUNTS: Once<Counts> = Once::new();
/// Extra mappings in all (the sum of the counters), for the statistics and tests.
static EXTRA: AtomicU64 = AtomicU64::new(0);

/// Allocates and zeroes a counter for every frame in `span`; `false` if the allocator has no
/// room for them.
pub(super) fn init(span: core::ops::Range<u64>) -> bool {
    let frames = (span.end - span.start) / PAGE_SIZE;
    let bytes = frames * size_of::<AtomicU32>() as u64;
    let pages = bytes.div_ceil(PAGE_SIZE);
    let Some(phys) = frame::alloc_for(pages, 1, frame::HAL) else {
        return false;
    };
    let base = super::phys_to_virt(phys) as *mut AtomicU32;
    // SAFETY: `[phys, phys + pages * 4 KiB)` was just allocated for hal and is never freed,
    // so this slice is the only reference to it for good; it is usable RAM mapped in the
    // HHDM, page-aligned, and zeroing it first makes every element a valid `AtomicU32`.
    let counts = unsafe {
        core::ptr::write_bytes(base.cast::<u8>(), 0, (pages * PAGE_SIZE) as usize);
        core::slice::from_raw_parts(base, frames as usize)
    };
    COUNTS.call_once(|| Counts {
        base: span.start,
        counts,
    });
    true
}

fn counter(phys: u64) -> Option<&'static AtomicU32> {
    let c = COUNTS.get()?;
    let index = phys.checked_sub(c.base)? / PAGE_SIZE;
    c.counts.get(usize::try_from(index).ok()?)
}

/// Records one more mapping of the frame at `phys`; `false` (nothing recorded) if it is no
/// frame the allocator manages.
pub(super) fn share(phys: u64) -> bool {
    let Some(c) = counter(phys) else {
        return false;
    };
    c.fetch_add(1, Ordering::AcqRel);
    EXTRA.fetch_add(1, Ordering::Relaxed);
    true
}

/// Whether the frame at `phys` is mapped more than once.
pub(super) fn is_shared(phys: u64) -> bool {
    counter(phys).is_some_and(|c| c.load(Ordering::Acquire) != 0)
}

/// Drops one mapping of the frame at `phys` and frees it if that was the last. The caller
/// has flushed the mapping from every TLB.
pub(super) fn put(phys: u64) {
    let shared = counter(phys).is_some_and(|c| {
        c.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    });
    if shared {
        EXTRA.fetch_sub(1, Ordering::Relaxed);
    } else if let Err(e) = frame::free_for(phys, 1, frame::HAL) {
        log::error!("mm: freeing user frame {phys:#x}: {e}");
    }
}

/// Extra mappings of shared frames in all address spaces.
pub(super) fn extra_mappings() -> u64 {
    EXTRA.load(Ordering::Relaxed)
}
