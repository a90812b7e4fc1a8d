//! Physical memory logic for the Evergreen kernel, with no `unsafe` and host tests.
//!
//! - [`buddy`]: a buddy allocator for 4 KiB physical frames. Its bookkeeping lives in a
//!   caller-provided `&mut [u64]` (one word per frame of the span it covers), so it needs no
//!   heap and never writes into the frames it hands out.
//! - [`table`]: the one x86-64 4-level page-table core (entry encoding, walks, map, unmap,
//!   translate) through an abstract view of physical memory ([`table::TableMemory`]): hal
//!   implements that view over the HHDM, `bootcore::paging` over the loader's page pool.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod buddy;
pub mod table;

pub use buddy::{Error, FrameAllocator, Owner, Stats};

/// Size of a page frame.
pub const PAGE_SIZE: u64 = 4096;

/// `value` rounded up to a multiple of `align` (a power of two), or `None` on overflow.
pub const fn align_up(value: u64, align: u64) -> Option<u64> {
    match value.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// `value` rounded down to a multiple of `align` (a power of two).
pub const fn align_down(value: u64, align: u64) -> u64 {
    value & !(align - 1)
}
