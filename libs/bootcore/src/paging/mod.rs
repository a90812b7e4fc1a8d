//! The kernel's first page tables, built by the loader in a pool of 4 KiB pages at known
//! physical addresses.
//!
//! Entries, walks and single mappings come from the one page-table core,
//! [`frames::table`], which hal uses for the kernel's own tables too. This module adds what
//! building from scratch needs: the pool ([`PagePool`], the core's [`TableMemory`] over a
//! pre-allocated, zeroed region handed over as `&mut [[u64; 512]]` plus its physical base;
//! tables refer to each other by physical address, so the result is valid once loaded into
//! CR3), the loader's mapping policy ([`Mapper`]: identical overlapping requests are fine,
//! ranges take the largest pages that fit around what is already mapped) and a pessimistic
//! page budget ([`pages_needed`]). Leaves are as the core makes them: supervisor only, `W`
//! if writable, NX if not executable, PAT index 5 for write-combining; intermediate entries
//! are `P | W` and never NX, so leaves decide.
//!
//! Dropping the lower half (PML4 entries 0..256) happens in the loader's hand-off stub after
//! it has jumped to the higher half, as real Limine does; [`Mapper::clear_lower_half`] does
//! the same on the pool for loaders that prefer to prepare a second root.

use core::fmt;

pub use frames::table::{Attributes, Cache, ENTRIES, Error as TableError};
use frames::table::{PageSize, PageTables, TableMemory, TableRead};

use crate::PAGE_SIZE;

/// A page table page.
pub type Table = [u64; ENTRIES];

/// 2 MiB.
pub const SIZE_2M: u64 = 2 << 20;
/// 1 GiB.
pub const SIZE_1G: u64 = 1 << 30;

/// Read/write/execute, write-back: the HHDM and identity mappings, as the protocol has them.
pub const RWX: Attributes = Attributes {
    writable: true,
    executable: true,
    cache: Cache::WriteBack,
    user: false,
};

/// Why a mapping failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingError {
    /// The pool has no free page left.
    PoolExhausted,
    /// Address or length not 4 KiB aligned.
    Unaligned,
    /// Virtual address not canonical (or range crosses the canonical hole / wraps).
    NonCanonical(u64),
    /// Physical address beyond 52 bits.
    PhysTooLarge(u64),
    /// `va` is already mapped differently.
    AlreadyMapped(u64),
    /// A table entry points outside the pool (corrupt or foreign table).
    ForeignTable(u64),
    /// The pool's physical base is not 4 KiB aligned.
    UnalignedPool,
    /// Another refusal of the page-table core.
    Table(TableError),
}

impl fmt::Display for PagingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PagingError::PoolExhausted => f.write_str("page table pool exhausted"),
            PagingError::Unaligned => f.write_str("mapping not 4 KiB aligned"),
            PagingError::NonCanonical(va) => write!(f, "virtual address {va:#x} not canonical"),
            PagingError::PhysTooLarge(pa) => {
                write!(f, "physical address {pa:#x} beyond 52 bits")
            }
            PagingError::AlreadyMapped(va) => write!(f, "{va:#x} is already mapped differently"),
            PagingError::ForeignTable(pa) => {
                write!(f, "page table entry points outside the pool ({pa:#x})")
            }
            PagingError::UnalignedPool => f.write_str("page table pool not 4 KiB aligned"),
            PagingError::Table(e) => write!(f, "page tables: {e}"),
        }
    }
}

impl From<TableError> for PagingError {
    fn from(e: TableError) -> Self {
        match e {
            TableError::OutOfMemory => Self::PoolExhausted,
            TableError::Misaligned => Self::Unaligned,
            TableError::NonCanonical(va) => Self::NonCanonical(va),
            TableError::PhysTooLarge(pa) => Self::PhysTooLarge(pa),
            TableError::AlreadyMapped(va)
            | TableError::InsideLargePage(va)
            | TableError::FinerTable(va) => Self::AlreadyMapped(va),
            TableError::ForeignTable(pa) => Self::ForeignTable(pa),
            other => Self::Table(other),
        }
    }
}

/// One past the highest physical address a page table entry can hold.
const PHYS_LIMIT: u64 = 1 << 52;

/// Zeroed 4 KiB pages at `phys_base + i * 4096`, handed out in order.
#[derive(Debug)]
pub struct PagePool<'a> {
    phys_base: u64,
    pages: &'a mut [Table],
    used: usize,
}

impl<'a> PagePool<'a> {
    /// A pool over `pages`, the first of which sits at physical `phys_base`. The pages are
    /// zeroed here, so the caller need not.
    pub fn new(phys_base: u64, pages: &'a mut [Table]) -> Result<Self, PagingError> {
        if !phys_base.is_multiple_of(PAGE_SIZE) {
            return Err(PagingError::UnalignedPool);
        }
        (pages.len() as u64)
            .checked_mul(PAGE_SIZE)
            .and_then(|len| phys_base.checked_add(len))
            .filter(|&end| end <= PHYS_LIMIT)
            .ok_or(PagingError::PhysTooLarge(phys_base))?;
        for page in pages.iter_mut() {
            page.fill(0);
        }
        Ok(PagePool {
            phys_base,
            pages,
            used: 0,
        })
    }

    /// Pages handed out so far.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Total pages.
    pub fn capacity(&self) -> usize {
        self.pages.len()
    }

    /// Physical base.
    pub fn phys_base(&self) -> u64 {
        self.phys_base
    }

    fn index(&self, phys: u64) -> Option<usize> {
        let off = phys.checked_sub(self.phys_base)?;
        let idx = usize::try_from(off / PAGE_SIZE).ok()?;
        (off % PAGE_SIZE == 0 && idx < self.used).then_some(idx)
    }

    /// The table at `phys`, if it is a page this pool handed out.
    pub fn table(&self, phys: u64) -> Option<&Table> {
        self.pages.get(self.index(phys)?)
    }
}

impl TableRead for PagePool<'_> {
    fn read(&self, table: u64, index: usize) -> Result<u64, TableError> {
        self.table(table)
            .and_then(|t| t.get(index))
            .copied()
            .ok_or(TableError::ForeignTable(table))
    }
}

impl TableMemory for PagePool<'_> {
    fn write(&mut self, table: u64, index: usize, value: u64) -> Result<(), TableError> {
        let slot = self
            .index(table)
            .and_then(|i| self.pages.get_mut(i))
            .and_then(|t| t.get_mut(index))
            .ok_or(TableError::ForeignTable(table))?;
        *slot = value;
        Ok(())
    }

    /// The next page; it was zeroed when the pool was made.
    fn alloc_table(&mut self) -> Option<u64> {
        if self.used == self.pages.len() {
            return None;
        }
        let phys = self.phys_base + self.used as u64 * PAGE_SIZE;
        self.used += 1;
        Some(phys)
    }
}

/// What a virtual address maps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// Physical address of the byte.
    pub phys: u64,
    /// Permissions and caching.
    pub flags: Attributes,
    /// Size of the page holding it (4 KiB, 2 MiB or 1 GiB).
    pub page_size: u64,
    /// The raw leaf entry.
    pub raw: u64,
}

/// Whether `va` is canonical for 4-level paging (bits 63..47 all equal).
pub fn is_canonical(va: u64) -> bool {
    frames::table::is_canonical(va)
}

/// Checks alignment and address ranges of a mapping request.
fn check_range(va: u64, pa: u64, len: u64) -> Result<(), PagingError> {
    if !va.is_multiple_of(PAGE_SIZE)
        || !pa.is_multiple_of(PAGE_SIZE)
        || !len.is_multiple_of(PAGE_SIZE)
    {
        return Err(PagingError::Unaligned);
    }
    if len == 0 {
        return Ok(());
    }
    let last = va
        .checked_add(len - 1)
        .ok_or(PagingError::NonCanonical(va))?;
    // Both ends canonical and in the same half: the range does not cross the hole.
    if !is_canonical(va) || !is_canonical(last) || (va >> 63) != (last >> 63) {
        return Err(PagingError::NonCanonical(va));
    }
    match pa.checked_add(len) {
        Some(end) if end <= PHYS_LIMIT => Ok(()),
        _ => Err(PagingError::PhysTooLarge(pa)),
    }
}

/// Builds one address space in a [`PagePool`].
#[derive(Debug)]
pub struct Mapper<'p, 'a> {
    pool: &'p mut PagePool<'a>,
    tables: PageTables,
}

impl<'p, 'a> Mapper<'p, 'a> {
    /// Takes a PML4 from the pool. Mappings get exactly the permissions asked for: a
    /// loader on a CPU without NX asks for executable pages only.
    pub fn new(pool: &'p mut PagePool<'a>) -> Result<Self, PagingError> {
        let tables = PageTables::create(pool, true)?;
        Ok(Mapper { pool, tables })
    }

    /// Physical address of the PML4 (the CR3 value).
    pub fn root(&self) -> u64 {
        self.tables.root()
    }

    /// The pool (to query usage).
    pub fn pool(&self) -> &PagePool<'a> {
        self.pool
    }

    /// Writes one leaf of `size`. Returns `Ok(false)` without writing if a table of smaller
    /// pages already occupies a large slot; an identical leaf already there is fine.
    fn set_leaf(
        &mut self,
        va: u64,
        pa: u64,
        size: PageSize,
        flags: Attributes,
    ) -> Result<bool, PagingError> {
        match self.tables.map(self.pool, va, pa, size, flags) {
            Ok(()) => Ok(true),
            Err(TableError::FinerTable(_)) => Ok(false),
            Err(TableError::AlreadyMapped(_))
                if self
                    .tables
                    .translate(&*self.pool, va)
                    .is_some_and(|m| m.entry == self.tables.leaf_entry(pa, size, flags)) =>
            {
                Ok(true)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Maps `[va, va+len)` to `[pa, pa+len)` with 4 KiB pages. All three must be 4 KiB
    /// aligned. Re-mapping a page identically is allowed (also under an identical large
    /// page); differently is an error.
    pub fn map(
        &mut self,
        va: u64,
        pa: u64,
        len: u64,
        flags: Attributes,
    ) -> Result<(), PagingError> {
        check_range(va, pa, len)?;
        for off in (0..len).step_by(PAGE_SIZE as usize) {
            self.map_4k(va + off, pa + off, flags)?;
        }
        Ok(())
    }

    fn map_4k(&mut self, va: u64, pa: u64, flags: Attributes) -> Result<(), PagingError> {
        match self.translate(va) {
            Some(t) if t.page_size > PAGE_SIZE && t.phys == pa && t.flags == flags => Ok(()),
            _ => self.set_leaf(va, pa, PageSize::Size4K, flags).map(drop),
        }
    }

    /// Like [`Mapper::map`] but uses 2 MiB pages (and 1 GiB pages if `allow_1g`) wherever a
    /// whole large page lies inside the range with matching alignment of `va` and `pa` and
    /// nothing finer is mapped there yet. Parts already mapped identically (by small or
    /// large pages) are left as they are, so overlapping identical ranges are fine.
    pub fn map_large(
        &mut self,
        va: u64,
        pa: u64,
        len: u64,
        flags: Attributes,
        allow_1g: bool,
    ) -> Result<(), PagingError> {
        check_range(va, pa, len)?;
        let mut off = 0;
        while off < len {
            let (v, p, left) = (va + off, pa + off, len - off);
            // Inside an identical large page already: skip to its end.
            if let Some(t) = self.translate(v)
                && t.page_size > PAGE_SIZE
                && t.phys == p
                && t.flags == flags
            {
                let page_end = (v & !(t.page_size - 1)).wrapping_add(t.page_size);
                off += page_end.wrapping_sub(v).min(left);
                continue;
            }
            let fits = |size: u64| v % size == 0 && p % size == 0 && left >= size;
            off += if allow_1g && fits(SIZE_1G) && self.set_leaf(v, p, PageSize::Size1G, flags)? {
                SIZE_1G
            } else if fits(SIZE_2M) && self.set_leaf(v, p, PageSize::Size2M, flags)? {
                SIZE_2M
            } else {
                self.map_4k(v, p, flags)?;
                PAGE_SIZE
            };
        }
        Ok(())
    }

    /// Walks the tables for `va`. `None` if nothing maps it, or if its memory type is none
    /// of [`Cache`] (which the core never writes).
    pub fn translate(&self, va: u64) -> Option<Translation> {
        let m = self.tables.translate(&*self.pool, va)?;
        Some(Translation {
            phys: m.phys + (va - m.virt),
            flags: m.attributes()?,
            page_size: m.size.bytes(),
            raw: m.entry,
        })
    }

    /// Clears PML4 entries 0..256 (the lower half).
    pub fn clear_lower_half(&mut self) -> Result<(), PagingError> {
        Ok(self.tables.clear_lower_half(self.pool)?)
    }
}

/// A mapping to budget pool pages for (see [`pages_needed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapPlan {
    /// Virtual base.
    pub va: u64,
    /// Physical base.
    pub pa: u64,
    /// Length in bytes.
    pub len: u64,
    /// Mapped with [`Mapper::map_large`] (else [`Mapper::map`]).
    pub large: bool,
}

/// Number of `granule`-sized, `granule`-aligned blocks `[va, va+len)` touches.
fn blocks(va: u64, len: u64, shift: u32) -> usize {
    let last = va.saturating_add(len - 1);
    ((last >> shift) - (va >> shift) + 1) as usize
}

/// Pessimistic count of pool pages (including the PML4) needed for these mappings. Each
/// mapping is counted on its own, so tables shared between mappings are counted twice.
pub fn pages_needed(plans: impl IntoIterator<Item = MapPlan>) -> usize {
    let mut pages = 1usize;
    for p in plans {
        if p.len == 0 {
            continue;
        }
        let pts = blocks(p.va, p.len, 21);
        // With large pages only the unaligned head and tail need page tables, provided
        // `va` and `pa` are congruent modulo 2 MiB (otherwise everything is 4 KiB).
        let pts = if p.large && (p.va ^ p.pa) % SIZE_2M == 0 {
            pts.min(2)
        } else {
            pts
        };
        pages = pages
            .saturating_add(blocks(p.va, p.len, 39))
            .saturating_add(blocks(p.va, p.len, 30))
            .saturating_add(pts);
    }
    pages
}

#[cfg(test)]
mod tests;
