//! x86-64 4-level page tables: the one place that encodes entries and walks, maps, unmaps and
//! translates them.
//!
//! Three users share it: the loader builds the kernel's first tables with it (through
//! `bootcore::paging`, in a pool of pages), `hal::mm` edits the kernel's own tables, and
//! `hal::paging` walks whatever tables are active, read-only, for diagnostics and the
//! conformance probe. Tables are reached through [`TableRead`] (read one entry of the table at
//! a physical address) and [`TableMemory`] (also write entries and allocate zeroed tables):
//! hal implements them over the HHDM, bootcore over its pool, the tests over a map of fake
//! pages. Everything here is plain logic on `u64`s.
//!
//! Entries made here are supervisor-only. Intermediate entries are `present | writable` and
//! never NX, so the leaf alone decides a page's permissions and caching. Walks still narrow
//! the permissions level by level, as the CPU does, so tables made elsewhere (by another
//! loader) are reported as the CPU sees them. Caching follows the PAT layout both Limine and
//! Evergreen program: index 0 write-back, 3 uncached, 5 write-combining.

use core::fmt;

#[cfg(test)]
mod tests;

/// Entry bit: present.
pub const PRESENT: u64 = 1 << 0;
/// Entry bit: writable.
pub const WRITABLE: u64 = 1 << 1;
/// Entry bit: user-accessible (never set by this module).
pub const USER: u64 = 1 << 2;
/// Entry bit: page-level write-through (PAT index bit 0).
pub const WRITE_THROUGH: u64 = 1 << 3;
/// Entry bit: page-level cache disable (PAT index bit 1).
pub const NO_CACHE: u64 = 1 << 4;
/// Entry bit of a page-directory-pointer or page-directory entry: it maps a 1 GiB or
/// 2 MiB page itself instead of pointing at a table.
pub const HUGE: u64 = 1 << 7;
/// Entry bit of a 4 KiB page: PAT index bit 2 (the bit that means [`HUGE`] one level up).
pub const PAT_4K: u64 = 1 << 7;
/// Entry bit of a 2 MiB or 1 GiB page: PAT index bit 2.
pub const PAT_LARGE: u64 = 1 << 12;
/// Entry bits the CPU ignores in a present leaf (bits 9..=11), free for the kernel's own
/// bookkeeping: [`leaf_entry`](PageTables::leaf_entry) never sets them and walks report them
/// in [`Mapping::entry`].
pub const SOFTWARE: u64 = 0b111 << 9;
/// Entry bit: no instruction fetches (only where EFER.NXE is set; reserved otherwise).
pub const NO_EXECUTE: u64 = 1 << 63;
/// The physical address bits of an entry pointing at a table or a 4 KiB page.
pub const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Physical addresses are at most 52 bits wide.
const PHYS_LIMIT: u64 = 1 << 52;

/// Entries per table.
pub const ENTRIES: usize = 512;

/// Reading page-table pages by physical address.
pub trait TableRead {
    /// Entry `index` (< 512) of the table at physical address `table`, or
    /// [`Error::ForeignTable`] if `table` is not a table page this memory holds.
    fn read(&self, table: u64, index: usize) -> Result<u64, Error>;
}

/// Reading, writing and allocating page-table pages by physical address.
pub trait TableMemory: TableRead {
    /// Writes entry `index` (< 512) of the table at physical address `table`, or returns
    /// [`Error::ForeignTable`] if `table` is not a table page this memory holds.
    fn write(&mut self, table: u64, index: usize, value: u64) -> Result<(), Error>;
    /// A new zeroed table page, or `None` when memory is exhausted.
    fn alloc_table(&mut self) -> Option<u64>;
}

/// The size of one mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PageSize {
    /// 4 KiB, a page-table entry.
    Size4K,
    /// 2 MiB, a page-directory entry.
    Size2M,
    /// 1 GiB, a page-directory-pointer entry.
    Size1G,
}

impl PageSize {
    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            Self::Size4K => 1 << 12,
            Self::Size2M => 1 << 21,
            Self::Size1G => 1 << 30,
        }
    }

    /// The table level holding this size's leaves (0 = page table).
    const fn level(self) -> u32 {
        match self {
            Self::Size4K => 0,
            Self::Size2M => 1,
            Self::Size1G => 2,
        }
    }

    const fn at_level(level: u32) -> Self {
        match level {
            0 => Self::Size4K,
            1 => Self::Size2M,
            _ => Self::Size1G,
        }
    }
}

/// The memory type of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cache {
    /// Normal memory (PAT index 0).
    WriteBack,
    /// Device registers (PAT index 3, strong UC).
    Uncached,
    /// Framebuffers (PAT index 5).
    WriteCombining,
}

impl Cache {
    /// The PAT index selecting this type.
    pub const fn pat_index(self) -> u8 {
        match self {
            Self::WriteBack => 0,
            Self::Uncached => 3,
            Self::WriteCombining => 5,
        }
    }

    /// The type PAT index `index` selects, if it is one this module makes.
    pub const fn from_pat_index(index: u8) -> Option<Self> {
        match index {
            0 => Some(Self::WriteBack),
            3 => Some(Self::Uncached),
            5 => Some(Self::WriteCombining),
            _ => None,
        }
    }
}

/// Permissions and memory type of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attributes {
    /// Writes allowed.
    pub writable: bool,
    /// Instruction fetches allowed (otherwise NX, where the CPU has it).
    pub executable: bool,
    /// Memory type.
    pub cache: Cache,
    /// User mode may access it (only ever in the lower half).
    pub user: bool,
}

impl Attributes {
    /// Kernel code: read and execute.
    pub const CODE: Self = Self::new(false, true, Cache::WriteBack);
    /// Read-only data.
    pub const READ_ONLY: Self = Self::new(false, false, Cache::WriteBack);
    /// Read-write data.
    pub const READ_WRITE: Self = Self::new(true, false, Cache::WriteBack);
    /// Device registers: read-write, uncached.
    pub const MMIO: Self = Self::new(true, false, Cache::Uncached);
    /// A framebuffer: read-write, write-combining.
    pub const FRAMEBUFFER: Self = Self::new(true, false, Cache::WriteCombining);

    const fn new(writable: bool, executable: bool, cache: Cache) -> Self {
        Self {
            writable,
            executable,
            cache,
            user: false,
        }
    }

    /// User memory: write-back, user-accessible, with the given permissions.
    pub const fn user(writable: bool, executable: bool) -> Self {
        Self {
            user: true,
            ..Self::new(writable, executable, Cache::WriteBack)
        }
    }
}

/// One leaf mapping as found in the tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First virtual address of the page.
    pub virt: u64,
    /// First physical address of the page.
    pub phys: u64,
    /// Page size.
    pub size: PageSize,
    /// Writable at every level.
    pub writable: bool,
    /// Executable: no NX bit at any level.
    pub executable: bool,
    /// User-accessible at every level.
    pub user: bool,
    /// PAT index (0..8) selected by the leaf's PAT, PCD and PWT bits.
    pub pat_index: u8,
    /// The raw leaf entry.
    pub entry: u64,
}

impl Mapping {
    /// The permissions and memory type, if the PAT index is one [`Cache`] names.
    pub const fn attributes(&self) -> Option<Attributes> {
        match Cache::from_pat_index(self.pat_index) {
            Some(cache) => Some(Attributes {
                user: self.user,
                ..Attributes::new(self.writable, self.executable, cache)
            }),
            None => None,
        }
    }
}

/// Why a mapping operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// An address is not aligned to the page size, or a length is not a page multiple.
    Misaligned,
    /// The virtual address is not canonical.
    NonCanonical(u64),
    /// The physical address is beyond 52 bits.
    PhysTooLarge(u64),
    /// Something is already mapped there.
    AlreadyMapped(u64),
    /// A table of smaller pages occupies the slot a larger page at this address would take.
    FinerTable(u64),
    /// Nothing is mapped there.
    NotMapped(u64),
    /// A larger page covers the address, so it cannot be changed at this size.
    InsideLargePage(u64),
    /// No memory for a page table.
    OutOfMemory,
    /// An entry points at this address, which is not a page-table page the memory holds
    /// (corrupt or foreign tables).
    ForeignTable(u64),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Misaligned => write!(f, "address or length not aligned to the page size"),
            Self::NonCanonical(v) => write!(f, "virtual address {v:#x} is not canonical"),
            Self::PhysTooLarge(p) => write!(f, "physical address {p:#x} is beyond 52 bits"),
            Self::AlreadyMapped(v) => write!(f, "{v:#x} is already mapped"),
            Self::FinerTable(v) => write!(f, "smaller pages are mapped around {v:#x}"),
            Self::NotMapped(v) => write!(f, "{v:#x} is not mapped"),
            Self::InsideLargePage(v) => write!(f, "{v:#x} lies inside a larger page"),
            Self::OutOfMemory => write!(f, "out of memory for page tables"),
            Self::ForeignTable(p) => {
                write!(f, "a page-table entry points outside the tables ({p:#x})")
            }
        }
    }
}

/// Whether `virt` is a canonical 48-bit address.
pub const fn is_canonical(virt: u64) -> bool {
    let top = virt >> 47;
    top == 0 || top == 0x1_ffff
}

fn index(virt: u64, level: u32) -> usize {
    ((virt >> (12 + 9 * level)) & 0x1ff) as usize
}

/// Whether `entry`, present at `level` (3 = top .. 0 = page table), maps a page itself. In a
/// top-level entry bit 7 is reserved, never "huge".
const fn is_leaf(entry: u64, level: u32) -> bool {
    level == 0 || (level < 3 && entry & HUGE != 0)
}

/// Permissions accumulated down the hierarchy: a page is only writable, executable or
/// user-accessible if every level says so.
#[derive(Clone, Copy)]
struct Access {
    writable: bool,
    executable: bool,
    user: bool,
}

impl Access {
    const ALL: Self = Self {
        writable: true,
        executable: true,
        user: true,
    };

    const fn narrowed_by(self, entry: u64) -> Self {
        Self {
            writable: self.writable && entry & WRITABLE != 0,
            executable: self.executable && entry & NO_EXECUTE == 0,
            user: self.user && entry & USER != 0,
        }
    }
}

/// Decodes the leaf `entry` found at `level` for `virt`, reached with `access`.
fn decode(virt: u64, level: u32, entry: u64, access: Access) -> Mapping {
    let size = PageSize::at_level(level);
    let (pat_bit, phys_mask) = if level == 0 {
        (PAT_4K, ADDRESS_MASK)
    } else {
        (PAT_LARGE, ADDRESS_MASK & !(size.bytes() - 1))
    };
    Mapping {
        virt: virt & !(size.bytes() - 1),
        phys: entry & phys_mask,
        size,
        writable: access.writable,
        executable: access.executable,
        user: access.user,
        pat_index: (u8::from(entry & pat_bit != 0) << 2)
            | (u8::from(entry & NO_CACHE != 0) << 1)
            | u8::from(entry & WRITE_THROUGH != 0),
        entry,
    }
}

/// A 4-level hierarchy, named by the physical address of its top table.
#[derive(Clone, Copy, Debug)]
pub struct PageTables {
    root: u64,
    nx: bool,
}

impl PageTables {
    /// The tables under `root`. `nx` says whether the CPU has NX (EFER.NXE set): without it
    /// bit 63 is reserved, so non-executable mappings are made executable instead.
    pub const fn new(root: u64, nx: bool) -> Self {
        Self { root, nx }
    }

    /// A new empty hierarchy.
    pub fn create(memory: &mut impl TableMemory, nx: bool) -> Result<Self, Error> {
        let root = memory.alloc_table().ok_or(Error::OutOfMemory)?;
        Ok(Self::new(root, nx))
    }

    /// Physical address of the top table (the CR3 value).
    pub const fn root(&self) -> u64 {
        self.root
    }

    /// Makes sure the top-level entry covering `virt` points at a table, so that every
    /// hierarchy sharing this top-level entry sees later mappings below it.
    pub fn prepare_top_level(&self, memory: &mut impl TableMemory, virt: u64) -> Result<(), Error> {
        self.table_for(memory, virt, 2).map(|_| ())
    }

    /// The leaf entry mapping `phys` as one page of `size` with `attributes`.
    pub fn leaf_entry(&self, phys: u64, size: PageSize, attributes: Attributes) -> u64 {
        let mut entry = phys | PRESENT;
        if attributes.writable {
            entry |= WRITABLE;
        }
        if attributes.user {
            entry |= USER;
        }
        if !attributes.executable && self.nx {
            entry |= NO_EXECUTE;
        }
        if size != PageSize::Size4K {
            entry |= HUGE;
        }
        let pat = attributes.cache.pat_index();
        if pat & 1 != 0 {
            entry |= WRITE_THROUGH;
        }
        if pat & 2 != 0 {
            entry |= NO_CACHE;
        }
        if pat & 4 != 0 {
            entry |= if size == PageSize::Size4K {
                PAT_4K
            } else {
                PAT_LARGE
            };
        }
        entry
    }

    /// The table at `level` covering `virt`, creating the tables above it as needed.
    fn table_for(
        &self,
        memory: &mut impl TableMemory,
        virt: u64,
        level: u32,
    ) -> Result<u64, Error> {
        let mut table = self.root;
        for upper in (level + 1..=3).rev() {
            let slot = index(virt, upper);
            let entry = memory.read(table, slot)?;
            table = if entry & PRESENT == 0 {
                let new = memory.alloc_table().ok_or(Error::OutOfMemory)?;
                // Tables of the lower half allow user access; each leaf then decides. The
                // higher half never does.
                let user = if virt < 1 << 47 { USER } else { 0 };
                memory.write(table, slot, new | PRESENT | WRITABLE | user)?;
                new
            } else if is_leaf(entry, upper) {
                return Err(Error::InsideLargePage(virt));
            } else {
                entry & ADDRESS_MASK
            };
        }
        Ok(table)
    }

    /// Maps one page of `size` at `virt` to `phys`. Refused if anything is mapped in its
    /// slot: a page ([`Error::AlreadyMapped`]), a table of smaller pages
    /// ([`Error::FinerTable`]) or a larger page around it ([`Error::InsideLargePage`]).
    pub fn map(
        &self,
        memory: &mut impl TableMemory,
        virt: u64,
        phys: u64,
        size: PageSize,
        attributes: Attributes,
    ) -> Result<(), Error> {
        if !virt.is_multiple_of(size.bytes()) || !phys.is_multiple_of(size.bytes()) {
            return Err(Error::Misaligned);
        }
        if !is_canonical(virt) {
            return Err(Error::NonCanonical(virt));
        }
        if phys >= PHYS_LIMIT {
            return Err(Error::PhysTooLarge(phys));
        }
        self.map_entry(memory, virt, size, self.leaf_entry(phys, size, attributes))
    }

    /// Maps one page of `size` at `virt` with the leaf entry `entry` as it stands (made by
    /// [`leaf_entry`](Self::leaf_entry), perhaps with [`SOFTWARE`] bits added). Refused like
    /// [`map`](Self::map) if anything is mapped in its slot.
    pub fn map_entry(
        &self,
        memory: &mut impl TableMemory,
        virt: u64,
        size: PageSize,
        entry: u64,
    ) -> Result<(), Error> {
        if !virt.is_multiple_of(size.bytes()) {
            return Err(Error::Misaligned);
        }
        if !is_canonical(virt) {
            return Err(Error::NonCanonical(virt));
        }
        let level = size.level();
        let table = self.table_for(memory, virt, level)?;
        let slot = index(virt, level);
        let old = memory.read(table, slot)?;
        if old & PRESENT != 0 {
            return Err(if is_leaf(old, level) {
                Error::AlreadyMapped(virt)
            } else {
                Error::FinerTable(virt)
            });
        }
        memory.write(table, slot, entry)
    }

    /// Replaces the leaf entry of the page mapped at `virt` (its first address) with `entry`
    /// and returns what it mapped before. The caller flushes the TLB.
    pub fn replace_leaf(
        &self,
        memory: &mut impl TableMemory,
        virt: u64,
        entry: u64,
    ) -> Result<Mapping, Error> {
        let (table, slot, mapping) = self.find(memory, virt)?;
        if mapping.virt != virt {
            return Err(Error::InsideLargePage(virt));
        }
        memory.write(table, slot, entry)?;
        Ok(mapping)
    }

    /// Maps `len` bytes at `virt` to `phys` with the largest pages up to `largest` that
    /// alignment allows. On an error, the pages mapped before it stay mapped.
    pub fn map_range(
        &self,
        memory: &mut impl TableMemory,
        virt: u64,
        phys: u64,
        len: u64,
        attributes: Attributes,
        largest: PageSize,
    ) -> Result<(), Error> {
        if !len.is_multiple_of(PageSize::Size4K.bytes()) {
            return Err(Error::Misaligned);
        }
        let mut done = 0;
        while done < len {
            let (v, p) = (virt.wrapping_add(done), phys + done);
            let size = [PageSize::Size1G, PageSize::Size2M, PageSize::Size4K]
                .into_iter()
                .find(|s| {
                    *s <= largest
                        && v % s.bytes() == 0
                        && p % s.bytes() == 0
                        && len - done >= s.bytes()
                })
                .unwrap_or(PageSize::Size4K);
            self.map(memory, v, p, size, attributes)?;
            done += size.bytes();
        }
        Ok(())
    }

    /// Removes the page mapped at `virt` (its first address) and returns what it mapped.
    /// Page tables left empty are kept for later mappings.
    pub fn unmap(&self, memory: &mut impl TableMemory, virt: u64) -> Result<Mapping, Error> {
        let (table, slot, mapping) = self.find(memory, virt)?;
        if mapping.virt != virt {
            return Err(Error::InsideLargePage(virt));
        }
        memory.write(table, slot, 0)?;
        Ok(mapping)
    }

    /// The raw 4 KiB leaf entry for `virt`, present or not (a not-present entry may carry the
    /// owner's own encoding, which the CPU ignores); 0 when no table reaches that far, and
    /// `None` when a larger page covers `virt` or a table cannot be read.
    pub fn raw_leaf(&self, memory: &impl TableRead, virt: u64) -> Option<u64> {
        if !is_canonical(virt) {
            return None;
        }
        let mut table = self.root;
        for level in (1..=3u32).rev() {
            let entry = memory.read(table, index(virt, level)).ok()?;
            if entry & PRESENT == 0 {
                return Some(0);
            }
            if is_leaf(entry, level) {
                return None;
            }
            table = entry & ADDRESS_MASK;
        }
        memory.read(table, index(virt, 0)).ok()
    }

    /// Writes the raw 4 KiB leaf entry for `virt` (page-aligned), creating the tables above
    /// it as needed, and returns the entry it replaces. Unlike [`map_entry`](Self::map_entry)
    /// it writes whatever stands there; the caller keeps the books (and flushes the TLB if a
    /// present entry changed).
    pub fn write_raw_leaf(
        &self,
        memory: &mut impl TableMemory,
        virt: u64,
        entry: u64,
    ) -> Result<u64, Error> {
        if !virt.is_multiple_of(PageSize::Size4K.bytes()) {
            return Err(Error::Misaligned);
        }
        if !is_canonical(virt) {
            return Err(Error::NonCanonical(virt));
        }
        let table = self.table_for(memory, virt, 0)?;
        let slot = index(virt, 0);
        let old = memory.read(table, slot)?;
        memory.write(table, slot, entry)?;
        Ok(old)
    }

    /// The mapping covering `virt`, if any. Tables the memory cannot read count as unmapped.
    pub fn translate(&self, memory: &impl TableRead, virt: u64) -> Option<Mapping> {
        self.find(memory, virt).ok().map(|(_, _, mapping)| mapping)
    }

    /// Finds the leaf covering `virt`: its table, slot and decoded mapping.
    fn find(&self, memory: &impl TableRead, virt: u64) -> Result<(u64, usize, Mapping), Error> {
        if !is_canonical(virt) {
            return Err(Error::NonCanonical(virt));
        }
        let mut table = self.root;
        let mut access = Access::ALL;
        for level in (0..=3u32).rev() {
            let slot = index(virt, level);
            let entry = memory.read(table, slot)?;
            if entry & PRESENT == 0 {
                return Err(Error::NotMapped(virt));
            }
            access = access.narrowed_by(entry);
            if is_leaf(entry, level) {
                return Ok((table, slot, decode(virt, level, entry, access)));
            }
            table = entry & ADDRESS_MASK;
        }
        unreachable!("level 0 entries are always leaves")
    }

    /// Calls `f` for every leaf mapping whose virtual range meets `[start, end)`, in address
    /// order. Tables the memory cannot read count as empty.
    pub fn for_each_mapping(
        &self,
        memory: &impl TableRead,
        start: u64,
        end: u64,
        mut f: impl FnMut(Mapping),
    ) {
        walk(memory, self.root, 3, 0, (start, end), Access::ALL, &mut f);
    }

    /// Calls `f(virt, entry)` for every non-zero 4 KiB leaf entry in `[start, end)`, present
    /// or not (a not-present entry carries its owner's encoding), in address order; larger
    /// pages are left out.
    pub fn for_each_raw_leaf(
        &self,
        memory: &impl TableRead,
        start: u64,
        end: u64,
        mut f: impl FnMut(u64, u64),
    ) {
        walk_raw(memory, self.root, 3, 0, (start, end), &mut f);
    }

    /// Whether any entry of the lower half (top-level entries 0..256) is present.
    pub fn lower_half_mapped(&self, memory: &impl TableRead) -> bool {
        (0..ENTRIES / 2).any(|i| memory.read(self.root, i).is_ok_and(|e| e & PRESENT != 0))
    }

    /// Clears top-level entries 0..256, dropping every lower-half mapping (the tables below
    /// them are left to whoever owns their memory).
    pub fn clear_lower_half(&self, memory: &mut impl TableMemory) -> Result<(), Error> {
        (0..ENTRIES / 2).try_for_each(|i| memory.write(self.root, i, 0))
    }
}

/// Visits the leaves of `table` at `level`, whose first virtual address is `base`, that meet
/// `[start, end)`.
/// [`PageTables::for_each_raw_leaf`]'s walk: tables through present entries, every non-zero
/// 4 KiB leaf.
fn walk_raw(
    memory: &impl TableRead,
    table: u64,
    level: u32,
    base: u64,
    (start, end): (u64, u64),
    f: &mut impl FnMut(u64, u64),
) {
    let shift = 12 + 9 * level;
    let size = 1u64 << shift;
    for slot in 0..ENTRIES {
        let mut virt = base | ((slot as u64) << shift);
        if level == 3 && slot >= ENTRIES / 2 {
            virt |= 0xffff_0000_0000_0000;
        }
        if virt.saturating_add(size - 1) < start || virt >= end {
            continue;
        }
        let Ok(entry) = memory.read(table, slot) else {
            return;
        };
        if level == 0 {
            if entry != 0 {
                f(virt, entry);
            }
        } else if entry & PRESENT != 0 && !is_leaf(entry, level) {
            walk_raw(
                memory,
                entry & ADDRESS_MASK,
                level - 1,
                virt,
                (start, end),
                f,
            );
        }
    }
}

fn walk(
    memory: &impl TableRead,
    table: u64,
    level: u32,
    base: u64,
    (start, end): (u64, u64),
    access: Access,
    f: &mut impl FnMut(Mapping),
) {
    let shift = 12 + 9 * level;
    let size = 1u64 << shift;
    for slot in 0..ENTRIES {
        let mut virt = base | ((slot as u64) << shift);
        if level == 3 && slot >= ENTRIES / 2 {
            virt |= 0xffff_0000_0000_0000; // sign-extend into the higher half
        }
        if virt.saturating_add(size - 1) < start || virt >= end {
            continue;
        }
        let Ok(entry) = memory.read(table, slot) else {
            return;
        };
        if entry & PRESENT == 0 {
            continue;
        }
        let access = access.narrowed_by(entry);
        if is_leaf(entry, level) {
            f(decode(virt, level, entry, access));
        } else {
            let next = entry & ADDRESS_MASK;
            walk(memory, next, level - 1, virt, (start, end), access, f);
        }
    }
}
