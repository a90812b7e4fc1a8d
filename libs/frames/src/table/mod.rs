//! Editing x86-64 4-level page tables.
//!
//! The tables are reached through [`TableMemory`], which reads and writes one entry of the
//! table at a physical address and allocates zeroed tables: `hal::mm` implements it over the
//! HHDM, the tests over a map of fake pages. Everything here is plain logic on `u64`s.
//!
//! Entries made here are supervisor-only. Intermediate entries are `present | writable` and
//! never NX, so the leaf alone decides a page's permissions and caching. Caching follows the
//! PAT layout both Limine and Evergreen program: index 0 write-back, 3 uncached, 5
//! write-combining.

use core::fmt;

#[cfg(test)]
mod tests;

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const PWT: u64 = 1 << 3;
const PCD: u64 = 1 << 4;
const HUGE: u64 = 1 << 7;
const PAT_4K: u64 = 1 << 7;
const PAT_LARGE: u64 = 1 << 12;
const NO_EXECUTE: u64 = 1 << 63;
const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Physical addresses are at most 52 bits wide.
const PHYS_LIMIT: u64 = 1 << 52;

/// Entries per table.
pub const ENTRIES: usize = 512;

/// Access to page-table pages by physical address.
pub trait TableMemory {
    /// Reads entry `index` (< 512) of the table at physical address `table`.
    fn read(&self, table: u64, index: usize) -> u64;
    /// Writes entry `index` of the table at physical address `table`.
    fn write(&mut self, table: u64, index: usize, value: u64);
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
    /// Writable.
    pub writable: bool,
    /// Executable (no NX bit).
    pub executable: bool,
    /// PAT index (0..8) selected by the entry.
    pub pat_index: u8,
}

/// Why a mapping operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// An address is not aligned to the page size, or a length is not a page multiple.
    Misaligned,
    /// The virtual address is not canonical, or the physical one is beyond 52 bits.
    BadAddress,
    /// Something is already mapped there.
    AlreadyMapped(u64),
    /// Nothing is mapped there.
    NotMapped(u64),
    /// A larger page covers the address, so it cannot be changed at this size.
    InsideLargePage(u64),
    /// No memory for a page table.
    OutOfMemory,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Misaligned => write!(f, "address or length not aligned to the page size"),
            Self::BadAddress => write!(f, "non-canonical virtual or too-wide physical address"),
            Self::AlreadyMapped(v) => write!(f, "{v:#x} is already mapped"),
            Self::NotMapped(v) => write!(f, "{v:#x} is not mapped"),
            Self::InsideLargePage(v) => write!(f, "{v:#x} lies inside a larger page"),
            Self::OutOfMemory => write!(f, "out of memory for page tables"),
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

    /// The leaf entry for `attributes` at `size`.
    fn leaf(&self, phys: u64, size: PageSize, attributes: Attributes) -> u64 {
        let (pat, pcd, pwt) = match attributes.cache.pat_index() {
            0 => (false, false, false),
            3 => (false, true, true),
            _ => (true, false, true),
        };
        let mut entry = phys | PRESENT;
        if attributes.writable {
            entry |= WRITABLE;
        }
        if !attributes.executable && self.nx {
            entry |= NO_EXECUTE;
        }
        if pwt {
            entry |= PWT;
        }
        if pcd {
            entry |= PCD;
        }
        if size != PageSize::Size4K {
            entry |= HUGE;
        }
        if pat {
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
            let entry = memory.read(table, slot);
            table = if entry & PRESENT == 0 {
                let new = memory.alloc_table().ok_or(Error::OutOfMemory)?;
                memory.write(table, slot, new | PRESENT | WRITABLE);
                new
            } else if entry & HUGE != 0 {
                return Err(Error::InsideLargePage(virt));
            } else {
                entry & ADDRESS_MASK
            };
        }
        Ok(table)
    }

    /// Maps one page of `size` at `virt` to `phys`.
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
        if !is_canonical(virt) || phys >= PHYS_LIMIT {
            return Err(Error::BadAddress);
        }
        let table = self.table_for(memory, virt, size.level())?;
        let slot = index(virt, size.level());
        if memory.read(table, slot) & PRESENT != 0 {
            return Err(Error::AlreadyMapped(virt));
        }
        memory.write(table, slot, self.leaf(phys, size, attributes));
        Ok(())
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
        memory.write(table, slot, 0);
        Ok(mapping)
    }

    /// The mapping covering `virt`, if any.
    pub fn translate(&self, memory: &impl TableMemory, virt: u64) -> Option<Mapping> {
        self.find(memory, virt).ok().map(|(_, _, mapping)| mapping)
    }

    /// Finds the leaf covering `virt`: its table, slot and decoded mapping.
    fn find(&self, memory: &impl TableMemory, virt: u64) -> Result<(u64, usize, Mapping), Error> {
        if !is_canonical(virt) {
            return Err(Error::BadAddress);
        }
        let mut table = self.root;
        for level in (0..=3u32).rev() {
            let slot = index(virt, level);
            let entry = memory.read(table, slot);
            if entry & PRESENT == 0 {
                return Err(Error::NotMapped(virt));
            }
            if level == 0 || (level < 3 && entry & HUGE != 0) {
                return Ok((table, slot, decode(virt, level, entry)));
            }
            table = entry & ADDRESS_MASK;
        }
        unreachable!("level 0 entries are always leaves")
    }
}

/// Decodes the leaf `entry` found at `level` for `virt`.
fn decode(virt: u64, level: u32, entry: u64) -> Mapping {
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
        writable: entry & WRITABLE != 0,
        executable: entry & NO_EXECUTE == 0,
        pat_index: (u8::from(entry & pat_bit != 0) << 2)
            | (u8::from(entry & PCD != 0) << 1)
            | u8::from(entry & PWT != 0),
    }
}
