//! The kernel heap: the global allocator, [`talc`] over the heap window, growing on demand.
//!
//! When talc runs out of memory it asks its [`Source`] for more; [`GrowHeap`] then maps fresh
//! frames at the end of the heap and extends it. The heap never shrinks. The lock keeps
//! interrupts disabled while held, so interrupt handlers may allocate (they must not while
//! their CPU is inside the allocator, which the disabled interrupts guarantee). Before
//! [`super::init`] every allocation fails.

use core::{
    alloc::Layout,
    ptr::NonNull,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

use frames::{align_up, table::Attributes};
use talc::{
    TalcLock,
    base::{Talc, binning::Binning},
    source::Source,
};
use x86_64::instructions::interrupts;

use super::{HEAP_BASE, PAGE_SIZE, WINDOW_BYTES, tables};

/// The heap grows by at least this much at a time.
const GROW_MIN: u64 = 256 * 1024;

static MAPPED: AtomicU64 = AtomicU64::new(0);

/// Bytes of the heap window mapped so far.
pub(super) fn mapped_bytes() -> u64 {
    MAPPED.load(Ordering::Relaxed)
}

/// A spinlock that disables interrupts on its CPU while held (for `lock_api`, which talc
/// uses); the interrupt flag in force before locking is restored on unlock.
struct IrqSpinlock {
    locked: AtomicBool,
    restore_interrupts: AtomicBool,
}

// SAFETY: `lock` returns only once this CPU has swapped `locked` from false to true, and
// `unlock` clears it, so at most one holder exists at a time; Acquire/Release orderings make
// the protected data's accesses happen-after the previous holder's.
unsafe impl talc::lock_api::RawMutex for IrqSpinlock {
    const INIT: Self = Self {
        locked: AtomicBool::new(false),
        restore_interrupts: AtomicBool::new(false),
    };

    type GuardMarker = talc::lock_api::GuardNoSend;

    fn lock(&self) {
        let were_enabled = interrupts::are_enabled();
        loop {
            interrupts::disable();
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                break;
            }
            // Let interrupts in while waiting.
            if were_enabled {
                interrupts::enable();
            }
            while self.locked.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
        self.restore_interrupts
            .store(were_enabled, Ordering::Relaxed);
    }

    fn try_lock(&self) -> bool {
        let were_enabled = interrupts::are_enabled();
        interrupts::disable();
        let taken = self
            .locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        if taken {
            self.restore_interrupts
                .store(were_enabled, Ordering::Relaxed);
        } else if were_enabled {
            interrupts::enable();
        }
        taken
    }

    unsafe fn unlock(&self) {
        let restore = self.restore_interrupts.load(Ordering::Relaxed);
        self.locked.store(false, Ordering::Release);
        if restore {
            interrupts::enable();
        }
    }
}

/// Grows the heap by mapping frames at its end.
#[derive(Debug)]
struct GrowHeap {
    /// The end talc knows of (`None` before the first claim).
    heap_end: Option<NonNull<u8>>,
    /// End of the mapped part of the window.
    mapped_end: u64,
}

// SAFETY: the pointer is only an address in the heap window, used under the heap lock.
unsafe impl Send for GrowHeap {}

// SAFETY: `acquire` never touches the global allocator: it maps pages through `tables`,
// which allocates frames from the frame allocator, neither of which uses the heap.
unsafe impl Source for GrowHeap {
    fn acquire<B: Binning>(talc: &mut Talc<Self, B>, layout: Layout) -> Result<(), ()> {
        if tables::kernel_root() == 0 {
            return Err(()); // Before `mm::init`: no tables to map into.
        }
        let first = talc.source.heap_end.is_none();
        let overhead = if first {
            talc::min_first_heap_size::<B>() as u64
        } else {
            0
        };
        let need = (layout.size() + layout.align()) as u64 + overhead + 64;
        let current = talc.source.mapped_end - HEAP_BASE;
        let grow = align_up(need.max(GROW_MIN).max(current / 4), PAGE_SIZE).ok_or(())?;
        let start = talc.source.mapped_end;
        if start + grow > HEAP_BASE + WINDOW_BYTES {
            return Err(());
        }
        tables::map_fresh(start, grow / PAGE_SIZE, Attributes::READ_WRITE).map_err(|_| ())?;
        talc.source.mapped_end = start + grow;
        MAPPED.store(talc.source.mapped_end - HEAP_BASE, Ordering::Relaxed);
        let end = match talc.source.heap_end {
            // SAFETY: `[HEAP_BASE, start + grow)` was just mapped read-write from fresh frames
            // and is used by nothing but this heap, for the kernel's lifetime.
            None => unsafe { talc.claim(HEAP_BASE as *mut u8, grow as usize) }.ok_or(())?,
            // SAFETY: `heap_end` is the end talc returned for this heap; the memory up to
            // `start + grow` was just mapped from fresh frames and belongs to the heap alone.
            Some(end) => unsafe { talc.extend(end, (start + grow) as *mut u8) },
        };
        talc.source.heap_end = Some(end);
        Ok(())
    }
}

#[global_allocator]
static HEAP: CountingHeap = CountingHeap(TalcLock::new(GrowHeap {
    heap_end: None,
    mapped_end: HEAP_BASE,
}));

/// Bytes handed out by the heap and not yet given back.
static IN_USE: AtomicU64 = AtomicU64::new(0);

/// Bytes allocated from the heap and not freed (what a leak check compares; the mapped
/// size only grows).
pub(super) fn in_use_bytes() -> u64 {
    IN_USE.load(Ordering::Relaxed)
}

/// talc, counting the bytes in use.
struct CountingHeap(TalcLock<IrqSpinlock, GrowHeap>);

// SAFETY: every call is passed on to talc unchanged; the counter only observes sizes.
unsafe impl core::alloc::GlobalAlloc for CountingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc`, passed on.
        let ptr = unsafe { self.0.alloc(layout) };
        if !ptr.is_null() {
            IN_USE.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract for `dealloc`, passed on.
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract for `realloc`, passed on.
        let new = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            IN_USE.fetch_add(new_size as u64, Ordering::Relaxed);
            IN_USE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        }
        new
    }
}
