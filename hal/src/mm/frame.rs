//! The global physical frame allocator and the ways to get frames from it.
//!
//! Three kinds of owner keep each other's frames apart (the allocator checks the owner on
//! every free):
//! - raw frame numbers ([`alloc_frame`], [`alloc_contiguous`]): safe code can hold and free
//!   them but never dereference them, so a wrong free cannot corrupt memory;
//! - [`Frame`]: an owned frame readable and writable through the HHDM, freed on drop;
//! - hal itself (page tables, heap, stacks), which safe code cannot free at all.

use alloc::vec::Vec;
use core::{
    ops::Range,
    sync::atomic::{AtomicBool, Ordering},
};

pub use frames::Error as FrameError;
use frames::{FrameAllocator, Owner};

use super::PAGE_SIZE;
use crate::{
    boot::MemoryType,
    sync::{IrqMutex, IrqMutexGuard},
};

/// Raw frame numbers handed to callers.
const RAW: Owner = Owner(1);
/// [`Frame`] values.
const OWNED: Owner = Owner(2);
/// Frames hal uses for its own structures.
pub(super) const HAL: Owner = Owner(3);

/// The allocator, once [`super::init`] has built it.
static FRAMES: IrqMutex<Option<FrameAllocator<'static>>> = IrqMutex::new(None);

/// Installs the allocator built by `init`.
pub(super) fn install(allocator: FrameAllocator<'static>) {
    *FRAMES.lock() = Some(allocator);
}

fn locked() -> IrqMutexGuard<'static, Option<FrameAllocator<'static>>> {
    FRAMES.lock()
}

/// Allocates `pages` contiguous frames aligned to `align_pages` for `owner`.
pub(super) fn alloc_for(pages: u64, align_pages: u64, owner: Owner) -> Option<u64> {
    locked()
        .as_mut()?
        .alloc_contiguous(pages, align_pages, owner)
}

/// Frames user pages may not take: the last 4 MiB stay for the kernel (its heap, page tables,
/// kernel stacks), so a program that eats all memory is refused its next page — and killed
/// for it — before the kernel runs short, as Linux keeps `min_free_kbytes` back.
pub const USER_RESERVE: u64 = 1024;

/// Allocates one frame for a user page (owner `hal`), unless only the [`USER_RESERVE`] is
/// left.
pub(super) fn alloc_user() -> Option<u64> {
    let mut frames = locked();
    let frames = frames.as_mut()?;
    if frames.stats().free <= USER_RESERVE {
        return None;
    }
    frames.alloc_contiguous(1, 1, HAL)
}

/// Frees frames allocated with [`alloc_for`].
pub(super) fn free_for(phys: u64, pages: u64, owner: Owner) -> Result<(), FrameError> {
    match locked().as_mut() {
        Some(frames) => frames.free_contiguous(phys, pages, owner),
        None => Err(FrameError::NotManaged(phys)),
    }
}

/// Whether the frame allocator manages `phys` (now or after reclaiming loader memory).
pub(super) fn manages(phys: u64) -> bool {
    locked().as_ref().is_some_and(|f| f.manages(phys))
}

/// The physical range the allocator covers.
pub(super) fn span() -> Option<Range<u64>> {
    locked().as_ref().map(|f| f.span())
}

/// Frame counts.
pub(super) fn stats() -> frames::Stats {
    locked().as_ref().map(|f| f.stats()).unwrap_or_default()
}

/// Allocates one 4 KiB frame and returns its physical address.
pub fn alloc_frame() -> Option<u64> {
    alloc_for(1, 1, RAW)
}

/// Returns a frame from [`alloc_frame`]. Double frees and frames not from `alloc_frame` are
/// refused with an error and change nothing.
pub fn free_frame(phys: u64) -> Result<(), FrameError> {
    free_for(phys, 1, RAW)
}

/// Allocates `pages` physically contiguous frames starting at a multiple of `align_pages`
/// frames (a power of two), for DMA. Returns the first frame's physical address.
pub fn alloc_contiguous(pages: u64, align_pages: u64) -> Option<u64> {
    alloc_for(pages, align_pages, RAW)
}

/// Returns a run from [`alloc_contiguous`], with the same `pages`.
pub fn free_contiguous(phys: u64, pages: u64) -> Result<(), FrameError> {
    free_for(phys, pages, RAW)
}

static RECLAIMED: AtomicBool = AtomicBool::new(false);

/// Whether [`reclaim_bootloader_memory`] has run: from then on the loader's responses are
/// gone (`hal::boot` must not read them).
pub fn bootloader_memory_reclaimed() -> bool {
    RECLAIMED.load(Ordering::Acquire)
}

/// Why [`reclaim_bootloader_memory`] refused. The memory then stays the loader's for good
/// (the token is gone either way, so nothing can read the responses afterwards).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReclaimError {
    /// `hal::init` has not run (no frame allocator, and this CPU may still use the loader's
    /// GDT and IDT).
    NotInitialised,
    /// An AP may still run in the loader's memory: the APs were never released, or one did not
    /// leave in time.
    CpusInLoaderMemory,
    /// The calling CPU's stack (at this physical address) is in the loader's memory.
    StackInLoaderMemory(u64),
    /// The loader gave no memory map.
    NoMemoryMap,
    /// The frame allocator refused a range.
    Frames(FrameError),
}

impl core::fmt::Display for ReclaimError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotInitialised => write!(f, "hal::init has not run"),
            Self::CpusInLoaderMemory => {
                write!(f, "an application processor may still run in loader memory")
            }
            Self::StackInLoaderMemory(a) => {
                write!(f, "this CPU's stack ({a:#x}) is in loader memory")
            }
            Self::NoMemoryMap => write!(f, "the loader gave no memory map"),
            Self::Frames(e) => write!(f, "frame allocator: {e}"),
        }
    }
}

/// Hands the bootloader-reclaimable memory to the frame allocator, consuming the [`Boot`]
/// token: no reference into the loader's responses can outlive this call.
///
/// Refused, with the memory left alone, unless `hal::init` has run, every AP has left the
/// loader's memory (hal tracks each one: `hal::smp`), and the calling CPU's stack is not in
/// it. Returns the number of frames reclaimed.
///
/// [`Boot`]: crate::boot::Boot
pub fn reclaim_bootloader_memory(boot: crate::boot::Boot) -> Result<u64, ReclaimError> {
    if !crate::init::done() {
        return Err(ReclaimError::NotInitialised);
    }
    if !crate::smp::all_left_loader_memory() {
        return Err(ReclaimError::CpusInLoaderMemory);
    }
    let map = boot
        .responses()
        .memory_map
        .ok_or(ReclaimError::NoMemoryMap)?;
    let rsp = crate::cpu::stack_pointer().wrapping_sub(super::hhdm_offset());
    let reclaimable = || {
        map.entries()
            .iter()
            .filter(|e| e.entry_type == MemoryType::BOOTLOADER_RECLAIMABLE)
    };
    if reclaimable().any(|e| (e.base..e.base + e.length).contains(&rsp)) {
        return Err(ReclaimError::StackInLoaderMemory(rsp));
    }
    // The files the kernel keeps using (its own ELF for symbols, the modules) may live in
    // reclaimable memory: their records are copied and their pages stay reserved.
    crate::boot::preserve();
    let kept = crate::boot::preserved_file_pages();
    // The memory map itself lives in reclaimable memory: hold the lock (so nothing can be
    // handed out and overwritten) until the last entry has been read.
    let mut guard = locked();
    let frames = guard.as_mut().ok_or(ReclaimError::NotInitialised)?;
    let (mut total, mut held) = (0, 0);
    for entry in reclaimable() {
        // The same clipping as at set-up: frame 0 was never handed to the allocator.
        let start = entry.base.max(PAGE_SIZE);
        let end = (entry.base + entry.length).max(start);
        for piece in subtract(start..end, &kept) {
            total += frames
                .release_reserved(piece)
                .map_err(ReclaimError::Frames)?;
        }
        held += kept
            .iter()
            .map(|k| k.end.min(end).saturating_sub(k.start.max(start)))
            .sum::<u64>();
    }
    RECLAIMED.store(true, Ordering::Release);
    drop(guard);
    log::info!(
        "mm: reclaimed {} KiB of bootloader memory ({} KiB kept: boot files in it)",
        total * PAGE_SIZE / 1024,
        held / 1024
    );
    Ok(total)
}

/// The parts of `range` outside every range of `holes`, in order.
fn subtract(range: Range<u64>, holes: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut pieces = alloc::vec![range];
    for hole in holes {
        pieces = pieces
            .into_iter()
            .flat_map(|p| {
                let below = p.start..p.end.min(hole.start);
                let above = p.start.max(hole.end)..p.end;
                [below, above]
            })
            .filter(|p| p.start < p.end)
            .collect();
    }
    pieces
}

/// A 4 KiB physical frame this value owns, readable and writable through the HHDM; freed
/// when dropped.
#[derive(Debug)]
pub struct Frame {
    phys: u64,
}

impl Frame {
    /// Allocates a frame (its contents are whatever was there).
    pub fn alloc() -> Option<Self> {
        alloc_for(1, 1, OWNED).map(|phys| Self { phys })
    }

    /// Allocates a frame filled with zeros.
    pub fn alloc_zeroed() -> Option<Self> {
        let mut frame = Self::alloc()?;
        frame.fill(0);
        Some(frame)
    }

    /// Physical address of the frame.
    pub fn phys(&self) -> u64 {
        self.phys
    }

    fn slot(&self, offset: usize) -> *mut u64 {
        assert!(
            offset.is_multiple_of(8) && offset + 8 <= PAGE_SIZE as usize,
            "offset {offset:#x} is not an aligned u64 inside a frame"
        );
        (super::phys_to_virt(self.phys) + offset as u64) as *mut u64
    }

    /// Reads the `u64` at byte `offset` (a multiple of 8 below 4096).
    ///
    /// # Panics
    /// If `offset` is out of the frame or unaligned.
    pub fn read_u64(&self, offset: usize) -> u64 {
        let slot = self.slot(offset);
        // SAFETY: the frame is usable RAM (mapped in the HHDM) that only this value owns:
        // frames are handed out once, and only `Drop` can free an `OWNED` frame.
        unsafe { slot.read_volatile() }
    }

    /// Writes the `u64` at byte `offset` (a multiple of 8 below 4096).
    ///
    /// # Panics
    /// If `offset` is out of the frame or unaligned.
    pub fn write_u64(&mut self, offset: usize, value: u64) {
        let slot = self.slot(offset);
        // SAFETY: as in `read_u64`; `&mut self` makes this the only access.
        unsafe { slot.write_volatile(value) }
    }

    /// Fills the frame with `byte`.
    pub fn fill(&mut self, byte: u8) {
        let base = self.slot(0).cast::<u8>();
        // SAFETY: as in `write_u64`, for the whole 4 KiB.
        unsafe { core::ptr::write_bytes(base, byte, PAGE_SIZE as usize) }
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        if let Err(e) = free_for(self.phys, 1, OWNED) {
            log::error!("mm: freeing owned frame {:#x}: {e}", self.phys);
        }
    }
}
