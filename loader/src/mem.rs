//! Page allocations made for the kernel, and the list that tags each one.
//!
//! Every allocation the kernel will see is LoaderData in the EFI map; this list records what it
//! really is (EXECUTABLE_AND_MODULES or BOOTLOADER_RECLAIMABLE) so the post-ExitBootServices
//! memory-map conversion can overlay it. Addresses are physical; UEFI identity-maps memory, so
//! they are also valid pointers until the hand-off.

use alloc::vec::Vec;

use uefi::{
    boot::{self, AllocateType, MemoryType},
    mem::memory_map::MemoryMap,
};

use crate::{error::Error, strict};

/// Size of a page.
pub const PAGE_SIZE: u64 = 4096;

/// What an allocation becomes in the Limine memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The kernel image, the raw kernel file and modules.
    ExecutableAndModules,
    /// Everything else handed to the kernel: responses, page tables, stacks, GDT, …
    Reclaimable,
}

/// One entry of the allocation list: where, how big, and what it becomes.
#[derive(Clone, Copy, Debug)]
pub struct Tagged {
    /// Physical base (4 KiB aligned).
    pub base: u64,
    /// Length in pages.
    pub pages: u64,
    /// Its Limine type.
    pub kind: Kind,
}

/// An owned page-granular allocation. Owning the `Region` is owning its memory: the byte view
/// borrows the `Region`, so Rust's borrow rules keep the views from aliasing.
#[derive(Debug)]
pub struct Region {
    base: u64,
    pages: u64,
}

impl Region {
    /// Physical base address (4 KiB aligned; also the identity-mapped pointer under UEFI).
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.pages * PAGE_SIZE
    }

    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.base + self.len()
    }

    /// The region's bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: The region is a live page allocation of `pages` pages at `base` that is never
        // freed while this `Region` exists (only `free_all` on a failed boot frees, after the
        // owners are gone), and it is identity-mapped while the firmware's page tables are
        // active, which lasts until the hand-off. Mutable views borrow `self` mutably.
        unsafe { core::slice::from_raw_parts(self.base as *const u8, self.len() as usize) }
    }

    /// The region's bytes, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: As in `bytes`; `&mut self` makes this the only view of the memory.
        unsafe { core::slice::from_raw_parts_mut(self.base as *mut u8, self.len() as usize) }
    }
}

impl Region {
    /// The region as page-table pages (4 KiB of `u64` each).
    pub fn tables_mut(&mut self) -> &mut [[u64; 512]] {
        let count = self.pages as usize;
        // SAFETY: As in `bytes_mut`; the base is 4 KiB aligned (more than `u64` needs), the
        // length is exactly `count` tables, and every bit pattern is a valid `u64`.
        unsafe { core::slice::from_raw_parts_mut(self.base as *mut [u64; 512], count) }
    }
}

/// Number of pages covering `bytes`.
pub fn pages_for(bytes: u64) -> u64 {
    bytes.div_ceil(PAGE_SIZE)
}

/// The loader's allocation list.
pub struct Allocations {
    list: Vec<Tagged>,
}

/// Enough entries that the list never reallocates (which would change the EFI map behind our
/// back late in the boot); [`Allocations::record`] refuses to grow past it.
const CAPACITY: usize = 512;

impl Allocations {
    /// An empty list with its capacity reserved.
    pub fn new() -> Self {
        Self {
            list: Vec::with_capacity(CAPACITY),
        }
    }

    /// Allocates `pages` zeroed pages anywhere.
    pub fn pages(&mut self, pages: u64, kind: Kind, what: &'static str) -> Result<Region, Error> {
        self.allocate(AllocateType::AnyPages, pages, kind, what)
    }

    /// Allocates `pages` zeroed pages that end at or below `max_address`.
    pub fn pages_below(
        &mut self,
        max_address: u64,
        pages: u64,
        kind: Kind,
        what: &'static str,
    ) -> Result<Region, Error> {
        self.allocate(AllocateType::MaxAddress(max_address - 1), pages, kind, what)
    }

    /// Allocates `pages` zeroed pages whose base is a multiple of `align` (a power of two of at
    /// least 4 KiB), by over-allocating and returning the excess to the firmware.
    pub fn aligned(
        &mut self,
        pages: u64,
        align: u64,
        kind: Kind,
        what: &'static str,
    ) -> Result<Region, Error> {
        if align <= PAGE_SIZE {
            return self.pages(pages, kind, what);
        }
        if let Some(base) = strict_placement(pages, align, u64::MAX)
            && let Ok(region) = self.allocate(AllocateType::Address(base), pages, kind, what)
        {
            return Ok(region);
        }
        let extra = align / PAGE_SIZE - 1;
        let total = pages
            .checked_add(extra)
            .ok_or(Error::OutOfMemory { what, pages })?;
        let raw = boot::allocate_pages(
            AllocateType::AnyPages,
            MemoryType::LOADER_DATA,
            total as usize,
        )
        .map_err(|_| Error::OutOfMemory { what, pages: total })?;
        let raw = raw.as_ptr() as u64;
        let base = raw.next_multiple_of(align);
        let head = (base - raw) / PAGE_SIZE;
        let tail = total - head - pages;
        free(raw, head);
        free(base + pages * PAGE_SIZE, tail);
        self.record(base, pages, kind, what)
    }

    fn allocate(
        &mut self,
        ty: AllocateType,
        pages: u64,
        kind: Kind,
        what: &'static str,
    ) -> Result<Region, Error> {
        let pages = pages.max(1);
        let limit = match ty {
            AllocateType::AnyPages => Some(u64::MAX),
            AllocateType::MaxAddress(max) => Some(max.saturating_add(1)),
            AllocateType::Address(_) => None,
        };
        let placed = limit
            .and_then(|limit| strict_placement(pages, PAGE_SIZE, limit))
            .and_then(|base| {
                boot::allocate_pages(
                    AllocateType::Address(base),
                    MemoryType::LOADER_DATA,
                    pages as usize,
                )
                .ok()
            });
        let ptr = match placed {
            Some(ptr) => ptr,
            None => boot::allocate_pages(ty, MemoryType::LOADER_DATA, pages as usize)
                .map_err(|_| Error::OutOfMemory { what, pages })?,
        };
        self.record(ptr.as_ptr() as u64, pages, kind, what)
    }

    fn record(
        &mut self,
        base: u64,
        pages: u64,
        kind: Kind,
        what: &'static str,
    ) -> Result<Region, Error> {
        if self.list.len() == self.list.capacity() {
            free(base, pages);
            return Err(Error::TooManyAllocations { what });
        }
        let mut region = Region { base, pages };
        region.bytes_mut().fill(0);
        self.list.push(Tagged { base, pages, kind });
        log::debug!("{what}: {pages} pages at {base:#x} ({kind:?})");
        Ok(region)
    }

    /// Returns `region` to the firmware and forgets it.
    pub fn release(&mut self, region: Region) {
        self.list.retain(|t| t.base != region.base);
        free(region.base, region.pages);
    }

    /// The recorded allocations.
    pub fn regions(&self) -> &[Tagged] {
        &self.list
    }

    /// Returns every recorded allocation to the firmware (on a failed boot).
    pub fn free_all(&mut self) {
        for region in self.list.drain(..) {
            free(region.base, region.pages);
        }
    }
}

/// In strict mode, the highest `align`-aligned base of `pages` free pages that end at or below
/// `limit`: the protocol promises no physical placement ("No specific physical memory
/// placement is guaranteed"), so strict mode puts everything as high as memory goes, above
/// 4 GiB when the machine has memory there. `None` outside strict mode or when nothing fits
/// (the caller then lets the firmware choose).
fn strict_placement(pages: u64, align: u64, limit: u64) -> Option<u64> {
    if !strict::on() {
        return None;
    }
    let bytes = pages.checked_mul(PAGE_SIZE)?;
    let map = boot::memory_map(MemoryType::LOADER_DATA).ok()?;
    map.entries()
        .filter(|d| d.ty == MemoryType::CONVENTIONAL)
        .filter_map(|d| {
            let end = d
                .phys_start
                .checked_add(d.page_count.checked_mul(PAGE_SIZE)?)?
                .min(limit);
            let base = end.checked_sub(bytes)? & !(align - 1);
            (base >= d.phys_start && base != 0).then_some(base)
        })
        .max()
}

fn free(base: u64, pages: u64) {
    let Some(ptr) = core::ptr::NonNull::new(base as *mut u8) else {
        return;
    };
    if pages == 0 {
        return;
    }
    // SAFETY: `base..base + pages` is part of an allocation we made with allocate_pages and
    // nothing refers to it any more (callers free only unused excess or everything on failure).
    let _ = unsafe { boot::free_pages(ptr, pages as usize) };
}
