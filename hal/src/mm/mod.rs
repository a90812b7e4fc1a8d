//! Memory management: physical frames, the kernel's page tables, MMIO and firmware mappings,
//! kernel stacks with guard pages, and the kernel heap.
//!
//! [`init`] runs once on the bootstrap CPU, on the loader's page tables: it builds the frame
//! allocator from the memory map (bookkeeping carved from the largest usable region), builds
//! the kernel's own page tables, switches CR3 and turns on the protections the CPU has (NX,
//! WP, SMEP, SMAP, UMIP). Each AP does the same switch first thing (registered with
//! [`crate::mm_hooks`]).
//!
//! Kernel virtual address space (4-level paging, higher half):
//!
//! ```text
//!  HHDM offset (from the loader) ..   physical memory: usable, bootloader-reclaimable,
//!                                     kernel and modules (RW, NX, write-back), framebuffer
//!                                     (write-combining), firmware tables mapped on request
//!                                     (read-only)
//!  0xffff_c000_0000_0000  512 GiB     kernel heap, grows on demand
//!  0xffff_c080_0000_0000  512 GiB     MMIO mappings (uncached, NX), a guard page between each
//!  0xffff_c100_0000_0000  512 GiB     kernel stacks: 1 MiB slots, unmapped below each stack
//!  0xffff_c180_0000_0000  512 GiB     scratch window for the mapping tests
//!  0xffff_ffff_8000_0000    2 GiB     kernel image: .text RX, .rodata R, data RW+NX
//! ```
//!
//! Every top-level entry of the higher half points at a table from the start, so mappings
//! made later are seen through every CR3 that copies the higher half.

mod cache;
mod dma;
mod frame;
mod heap;
mod mmio;
mod protect;
mod setup;
mod share;
mod space;
mod stack;
mod tables;
mod tlb;

use core::{
    fmt,
    sync::atomic::{AtomicU64, Ordering},
};

pub use cache::CacheFrame;
pub use dma::{DmaBuffer, DmaError};
pub use frame::{
    Frame, FrameError, ReclaimError, alloc_contiguous, alloc_frame, bootloader_memory_reclaimed,
    free_contiguous, free_frame, reclaim_bootloader_memory,
};
pub use frames::table::{Error as TableError, Mapping, PageSize};
#[cfg(not(feature = "test-hooks"))]
pub(crate) use mmio::map_firmware;
pub use mmio::{Mmio, claim_mmio};
#[cfg(feature = "test-hooks")]
pub use mmio::{map_firmware, map_firmware_raw};
pub(crate) use mmio::{map_mmio, record_memory_map};
pub use protect::Protections;
pub(crate) use setup::init;
pub use setup::{InitError, InitSummary};
pub use space::{Access, AddressSpace, Region, USER_END, deactivate};
pub(crate) use space::{resolve_lazy_fault, resolve_stack_fault, resolve_write_fault};
pub use stack::{KernelStack, MAX_STACK_PAGES, alloc_kernel_stack};
pub use tables::{frames_kept_after_failed_shootdowns, translate};
#[cfg(feature = "test-hooks")]
pub use tables::{map_page, unmap_page};
pub use tlb::flush_local;
pub(crate) use tlb::set_tlb_shootdown;

/// Size of a page.
pub const PAGE_SIZE: u64 = frames::PAGE_SIZE;

/// Size of each window: what one top-level (PML4) entry covers.
pub const WINDOW_BYTES: u64 = 1 << 39;
/// Start of the kernel heap window.
pub const HEAP_BASE: u64 = 0xffff_c000_0000_0000;
/// Start of the MMIO window.
pub const MMIO_BASE: u64 = HEAP_BASE + WINDOW_BYTES;
/// Start of the kernel stack window.
pub const STACK_BASE: u64 = MMIO_BASE + WINDOW_BYTES;
/// Start of the scratch window [`map_page`] and [`unmap_page`] work in.
pub const SCRATCH_BASE: u64 = STACK_BASE + WINDOW_BYTES;

/// Why a mapping request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// [`init`] has not run yet.
    NotReady,
    /// Zero length, an overflowing range, or an address beyond the CPU's physical width.
    InvalidRange,
    /// The address is outside the window this call may change.
    OutsideWindow(u64),
    /// The range covers RAM the kernel maps write-back; it cannot also be mapped uncached.
    Ram(u64),
    /// The range covers memory the frame allocator hands out, which is not firmware's.
    NotFirmware(u64),
    /// The range covers memory the loader's memory map lists (firmware's, not a device's).
    Firmware(u64),
    /// Another MMIO window (perhaps one of hal's own devices) holds this page.
    Claimed(u64),
    /// The virtual window is full.
    WindowFull,
    /// No memory left for page tables or frames.
    OutOfMemory,
    /// A page-table edit failed.
    Table(frames::table::Error),
    /// The page at this address was unmapped, but a CPU did not confirm flushing it.
    ShootdownIncomplete(u64),
    /// The page at this address may not be made writable (a shared mapping of a file not
    /// open for writing).
    NotWritable(u64),
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotReady => write!(f, "memory management is not initialised"),
            Self::InvalidRange => write!(f, "empty, overflowing or too-wide address range"),
            Self::OutsideWindow(a) => write!(f, "{a:#x} is outside the permitted window"),
            Self::Ram(a) => write!(f, "{a:#x} is RAM, not device memory"),
            Self::NotFirmware(a) => write!(f, "{a:#x} is allocatable memory, not firmware's"),
            Self::Firmware(a) => {
                write!(f, "{a:#x} is in the memory map: firmware's, not a device's")
            }
            Self::Claimed(a) => write!(f, "{a:#x} is already claimed by another MMIO window"),
            Self::WindowFull => write!(f, "the virtual window is full"),
            Self::OutOfMemory => write!(f, "out of physical memory"),
            Self::Table(e) => write!(f, "page tables: {e}"),
            Self::NotWritable(a) => write!(f, "{a:#x} may not be made writable"),
            Self::ShootdownIncomplete(a) => {
                write!(
                    f,
                    "{a:#x} was unmapped but a CPU did not confirm the TLB flush"
                )
            }
        }
    }
}

impl From<frames::table::Error> for MapError {
    fn from(e: frames::table::Error) -> Self {
        match e {
            frames::table::Error::OutOfMemory => Self::OutOfMemory,
            other => Self::Table(other),
        }
    }
}

/// The HHDM offset, copied from the loader's response by [`init`] (the response itself lives
/// in memory that is reclaimed later).
static HHDM_OFFSET: AtomicU64 = AtomicU64::new(0);

/// The HHDM address of physical address `phys`.
///
/// # Panics
/// If the loader gave no HHDM offset (a revision-3 loader always does).
pub fn phys_to_virt(phys: u64) -> u64 {
    hhdm_offset() + phys
}

/// The HHDM offset.
pub(crate) fn hhdm_offset() -> u64 {
    match HHDM_OFFSET.load(Ordering::Relaxed) {
        0 => {
            let offset = crate::boot::live()
                .hhdm
                .expect("the loader answers the HHDM request")
                .offset();
            HHDM_OFFSET.store(offset, Ordering::Relaxed);
            offset
        }
        offset => offset,
    }
}

/// Memory statistics.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Frame counts (frames of 4 KiB).
    pub frames: frames::Stats,
    /// Frames holding the kernel's page tables.
    pub page_table_frames: u64,
    /// Bytes of the heap window mapped.
    pub heap_bytes: u64,
    /// Bytes of the heap allocated and not freed.
    pub heap_in_use: u64,
    /// Kernel stacks currently allocated.
    pub kernel_stacks: u64,
    /// Bytes of device memory mapped (hal's devices and [`claim_mmio`]) and not yet unmapped.
    pub mmio_bytes: u64,
    /// Extra mappings of user frames mapped in several address spaces (copy-on-write after
    /// `fork`, shared memory): 0 once no frame is shared.
    pub shared_mappings: u64,
}

/// Current memory statistics.
pub fn stats() -> Stats {
    Stats {
        frames: frame::stats(),
        page_table_frames: tables::table_frames(),
        heap_bytes: heap::mapped_bytes(),
        heap_in_use: heap::in_use_bytes(),
        kernel_stacks: stack::live_stacks(),
        mmio_bytes: mmio::mapped_bytes(),
        shared_mappings: share::extra_mappings(),
    }
}
