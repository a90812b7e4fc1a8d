//! TLB maintenance after a mapping is removed or weakened.
//!
//! The local CPU is flushed directly. Other CPUs are flushed by the shootdown function hal's
//! interrupt code registers with [`set_tlb_shootdown`] once IPIs work (it sends the
//! `TLB_SHOOTDOWN` IPI and waits for every CPU to run [`flush_local`]). Until then only the
//! local CPU is flushed, which is enough while the other CPUs touch no kernel mapping that
//! gets removed. A shootdown that some CPU never answered reports it, and the caller then
//! keeps the frames it unmapped (leaked, logged) rather than hand them out again while a
//! stale TLB entry may still reach them.

use spin::Once;
use x86_64::{VirtAddr, instructions::tlb, registers::control::Cr3};

use super::PAGE_SIZE;

/// Above this many pages a full flush is cheaper than page-by-page `invlpg`.
const FULL_FLUSH_PAGES: u64 = 64;

static SHOOTDOWN: Once<fn(u64, u64) -> bool> = Once::new();

/// Registers the function that flushes `[start, start + len)` on every *other* online CPU
/// and returns whether they all did. It is called with no mm lock held, possibly with
/// interrupts disabled on the calling CPU; it must not allocate from the heap. hal's APIC code
/// is the only caller.
pub(crate) fn set_tlb_shootdown(shootdown: fn(start: u64, len: u64) -> bool) {
    SHOOTDOWN.call_once(|| shootdown);
}

/// Flushes the TLB entries for `[start, start + len)` on this CPU (what a shootdown IPI
/// handler runs).
pub fn flush_local(start: u64, len: u64) {
    let first = start & !(PAGE_SIZE - 1);
    let pages = (start + len).div_ceil(PAGE_SIZE) - first / PAGE_SIZE;
    if pages > FULL_FLUSH_PAGES {
        let (frame, flags) = Cr3::read();
        // SAFETY: reloading CR3 with its current value only flushes non-global TLB entries.
        unsafe { Cr3::write(frame, flags) };
        return;
    }
    for page in 0..pages {
        tlb::flush(VirtAddr::new_truncate(first + page * PAGE_SIZE));
    }
}

/// Flushes `[start, start + len)` on this CPU and, once registered, on all others. Returns
/// `false` if some CPU did not confirm its flush in time: the range may still be cached.
#[must_use = "frames unmapped by an unconfirmed shootdown must not be freed"]
pub(super) fn shootdown(start: u64, len: u64) -> bool {
    flush_local(start, len);
    shootdown_others(start, len)
}

/// Flushes `[start, start + len)` on every other online CPU (not this one), once registered;
/// returns `false` if some CPU did not confirm in time.
#[must_use = "frames unmapped by an unconfirmed shootdown must not be freed"]
pub(super) fn shootdown_others(start: u64, len: u64) -> bool {
    match SHOOTDOWN.get() {
        Some(remote) if crate::percpu::online_count() > 1 => remote(start, len),
        _ => true,
    }
}
