//! x86-64 4-level page tables built in a pool of 4 KiB pages at known physical addresses.
//!
//! The loader hands over a pre-allocated, zeroed region as `&mut [[u64; 512]]` plus its
//! physical base; tables refer to each other by physical address, so the result is valid
//! once loaded into CR3. Leaf entries: supervisor only, `P`, `W` if writable, NX (bit 63) if
//! not executable, PAT index 5 for write-combining (4 KiB: PAT bit 7 + PWT; 2 MiB / 1 GiB:
//! PAT bit 12 + PWT). Intermediate entries are `P | W` and never NX, so leaves decide.
//!
//! Dropping the lower half (PML4 entries 0..256) happens in the loader's hand-off stub after
//! it has jumped to the higher half, as real Limine does; [`Mapper::clear_lower_half`] does
//! the same on the pool for loaders that prefer to prepare a second root.

use core::fmt;

use crate::PAGE_SIZE;

/// Entries per table.
pub const ENTRIES: usize = 512;
/// A page table page.
pub type Table = [u64; ENTRIES];

/// 2 MiB.
pub const SIZE_2M: u64 = 2 << 20;
/// 1 GiB.
pub const SIZE_1G: u64 = 1 << 30;

/// Present.
pub const PTE_PRESENT: u64 = 1 << 0;
/// Writable.
pub const PTE_WRITABLE: u64 = 1 << 1;
/// User accessible (never set by this module).
pub const PTE_USER: u64 = 1 << 2;
/// Page-level write-through (PAT index bit 0).
pub const PTE_PWT: u64 = 1 << 3;
/// Page-level cache disable (PAT index bit 1).
pub const PTE_PCD: u64 = 1 << 4;
/// Large page (in PDPT/PD entries).
pub const PTE_HUGE: u64 = 1 << 7;
/// PAT index bit 2 in a 4 KiB PTE.
pub const PTE_PAT_4K: u64 = 1 << 7;
/// PAT index bit 2 in a 2 MiB / 1 GiB entry.
pub const PTE_PAT_LARGE: u64 = 1 << 12;
/// No execute.
pub const PTE_NX: u64 = 1 << 63;
/// Physical address bits of an entry pointing to a table or 4 KiB page.
pub const PTE_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Memory type of a mapping (the PAT layout the loader programs: PA0 = WB, PA5 = WC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cache {
    /// PAT index 0.
    WriteBack,
    /// PAT index 5.
    WriteCombining,
}

/// Permissions and caching of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flags {
    /// Writable.
    pub writable: bool,
    /// Executable (otherwise NX).
    pub executable: bool,
    /// Memory type.
    pub cache: Cache,
}

impl Flags {
    /// Read/write/execute, write-back: HHDM and identity mappings.
    pub const RWX: Flags = Flags {
        writable: true,
        executable: true,
        cache: Cache::WriteBack,
    };
    /// Read/write, not executable, write-combining: the framebuffer.
    pub const FRAMEBUFFER: Flags = Flags {
        writable: true,
        executable: false,
        cache: Cache::WriteCombining,
    };
}

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
        }
    }
}

/// One past the highest physical address a page table entry can hold.
const PHYS_LIMIT: u64 = 1 << 52;
/// Address bits of a 2 MiB leaf.
const ADDR_MASK_2M: u64 = 0x000f_ffff_ffe0_0000;
/// Address bits of a 1 GiB leaf.
const ADDR_MASK_1G: u64 = 0x000f_ffff_c000_0000;

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
        let end = (pages.len() as u64)
            .checked_mul(PAGE_SIZE)
            .and_then(|len| phys_base.checked_add(len))
            .filter(|&end| end <= PHYS_LIMIT)
            .ok_or(PagingError::PhysTooLarge(phys_base))?;
        let _ = end;
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

    /// Hands out the next zeroed page.
    fn alloc(&mut self) -> Result<u64, PagingError> {
        if self.used == self.pages.len() {
            return Err(PagingError::PoolExhausted);
        }
        let phys = self.phys_base + self.used as u64 * PAGE_SIZE;
        self.used += 1;
        Ok(phys)
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

    fn table_mut(&mut self, phys: u64) -> Result<&mut Table, PagingError> {
        let idx = self.index(phys).ok_or(PagingError::ForeignTable(phys))?;
        self.pages
            .get_mut(idx)
            .ok_or(PagingError::ForeignTable(phys))
    }
}

/// What a virtual address maps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// Physical address of the byte.
    pub phys: u64,
    /// Permissions and caching.
    pub flags: Flags,
    /// Size of the page holding it (4 KiB, 2 MiB or 1 GiB).
    pub page_size: u64,
    /// The raw leaf entry.
    pub raw: u64,
}

/// Whether `va` is canonical for 4-level paging (bits 63..47 all equal).
pub fn is_canonical(va: u64) -> bool {
    let top = va >> 47;
    top == 0 || top == 0x1_ffff
}

fn index_at(va: u64, level: usize) -> usize {
    // Level 0 = PML4 (bits 47..39), 1 = PDPT, 2 = PD, 3 = PT (bits 20..12).
    ((va >> (39 - 9 * level)) & 0x1ff) as usize
}

/// Leaf entry bits for `flags` (`large` for 2 MiB / 1 GiB leaves).
fn leaf_bits(flags: Flags, large: bool) -> u64 {
    let mut bits = PTE_PRESENT;
    if flags.writable {
        bits |= PTE_WRITABLE;
    }
    if !flags.executable {
        bits |= PTE_NX;
    }
    if flags.cache == Cache::WriteCombining {
        bits |= PTE_PWT
            | if large {
                PTE_PAT_LARGE | PTE_HUGE
            } else {
                PTE_PAT_4K
            };
    } else if large {
        bits |= PTE_HUGE;
    }
    bits
}

fn decode_flags(raw: u64, large: bool) -> Flags {
    let pat = if large {
        raw & PTE_PAT_LARGE != 0
    } else {
        raw & PTE_PAT_4K != 0
    };
    let index =
        u8::from(pat) << 2 | u8::from(raw & PTE_PCD != 0) << 1 | u8::from(raw & PTE_PWT != 0);
    Flags {
        writable: raw & PTE_WRITABLE != 0,
        executable: raw & PTE_NX == 0,
        cache: if index == 5 {
            Cache::WriteCombining
        } else {
            Cache::WriteBack
        },
    }
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
    root: u64,
}

impl<'p, 'a> Mapper<'p, 'a> {
    /// Takes a PML4 from the pool.
    pub fn new(pool: &'p mut PagePool<'a>) -> Result<Self, PagingError> {
        let root = pool.alloc()?;
        Ok(Mapper { pool, root })
    }

    /// Physical address of the PML4 (the CR3 value).
    pub fn root(&self) -> u64 {
        self.root
    }

    /// The pool (to query usage).
    pub fn pool(&self) -> &PagePool<'a> {
        self.pool
    }

    /// Physical address of the table at `level` (1 = PDPT, 2 = PD, 3 = PT) for `va`,
    /// creating missing tables on the way. Fails if a large leaf is in the way.
    fn table_for(&mut self, va: u64, level: usize) -> Result<u64, PagingError> {
        let mut table = self.root;
        for l in 0..level {
            let idx = index_at(va, l);
            let entry = self.pool.table_mut(table)?[idx];
            table = if entry & PTE_PRESENT == 0 {
                let new = self.pool.alloc()?;
                self.pool.table_mut(table)?[idx] = new | PTE_PRESENT | PTE_WRITABLE;
                new
            } else if entry & PTE_HUGE != 0 && l > 0 {
                return Err(PagingError::AlreadyMapped(va));
            } else {
                entry & PTE_ADDR_MASK
            };
        }
        Ok(table)
    }

    /// Writes a leaf at `level` (1 = 1 GiB, 2 = 2 MiB, 3 = 4 KiB). Returns `Ok(false)`
    /// without writing if a finer table already occupies a large slot.
    fn set_leaf(
        &mut self,
        va: u64,
        pa: u64,
        level: usize,
        flags: Flags,
    ) -> Result<bool, PagingError> {
        let large = level < 3;
        let table = self.table_for(va, level)?;
        let idx = index_at(va, level);
        let new = pa | leaf_bits(flags, large);
        let slot = &mut self.pool.table_mut(table)?[idx];
        if *slot & PTE_PRESENT == 0 {
            *slot = new;
            Ok(true)
        } else if *slot == new {
            Ok(true)
        } else if large && *slot & PTE_HUGE == 0 {
            Ok(false)
        } else {
            Err(PagingError::AlreadyMapped(va))
        }
    }

    /// Maps `[va, va+len)` to `[pa, pa+len)` with 4 KiB pages. All three must be 4 KiB
    /// aligned. Re-mapping a page identically is allowed (also under an identical large
    /// page); differently is an error.
    pub fn map(&mut self, va: u64, pa: u64, len: u64, flags: Flags) -> Result<(), PagingError> {
        check_range(va, pa, len)?;
        for off in (0..len).step_by(PAGE_SIZE as usize) {
            self.map_4k(va + off, pa + off, flags)?;
        }
        Ok(())
    }

    fn map_4k(&mut self, va: u64, pa: u64, flags: Flags) -> Result<(), PagingError> {
        match self.translate(va) {
            Some(t) if t.page_size > PAGE_SIZE && t.phys == pa && t.flags == flags => Ok(()),
            _ => self.set_leaf(va, pa, 3, flags).map(drop),
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
        flags: Flags,
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
            off += if allow_1g && fits(SIZE_1G) && self.set_leaf(v, p, 1, flags)? {
                SIZE_1G
            } else if fits(SIZE_2M) && self.set_leaf(v, p, 2, flags)? {
                SIZE_2M
            } else {
                self.map_4k(v, p, flags)?;
                PAGE_SIZE
            };
        }
        Ok(())
    }

    /// Walks the tables for `va`.
    pub fn translate(&self, va: u64) -> Option<Translation> {
        if !is_canonical(va) {
            return None;
        }
        let mut table = self.root;
        for level in 0..4 {
            let entry = self.pool.table(table)?[index_at(va, level)];
            if entry & PTE_PRESENT == 0 {
                return None;
            }
            let (mask, size) = match level {
                1 => (ADDR_MASK_1G, SIZE_1G),
                2 => (ADDR_MASK_2M, SIZE_2M),
                _ => (PTE_ADDR_MASK, PAGE_SIZE),
            };
            if level == 3 || (level > 0 && entry & PTE_HUGE != 0) {
                return Some(Translation {
                    phys: (entry & mask) + (va & (size - 1)),
                    flags: decode_flags(entry, level < 3),
                    page_size: size,
                    raw: entry,
                });
            }
            table = entry & PTE_ADDR_MASK;
        }
        None
    }

    /// Clears PML4 entries 0..256 (the lower half).
    pub fn clear_lower_half(&mut self) {
        if let Ok(root) = self.pool.table_mut(self.root) {
            root[..ENTRIES / 2].fill(0);
        }
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
