//! Read-only walks of the active 4-level page tables, through the HHDM.
//!
//! Used by diagnostics and by the loader conformance probe to check what is mapped, where, and
//! with which permissions and caching.

use x86_64::{registers::control::Cr3, structures::paging::PageTableFlags as F};

const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;
/// The PAT bit of a 4 KiB entry (bit 7; in larger pages bit 7 means "huge").
const PAT_4K: u64 = 1 << 7;
/// The PAT bit of a 2 MiB or 1 GiB entry.
const PAT_LARGE: u64 = 1 << 12;

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

    fn narrowed_by(self, entry: u64) -> Self {
        let flags = F::from_bits_truncate(entry);
        Self {
            writable: self.writable && flags.contains(F::WRITABLE),
            executable: self.executable && !flags.contains(F::NO_EXECUTE),
            user: self.user && flags.contains(F::USER_ACCESSIBLE),
        }
    }
}

/// Whether `entry`, found at `level` (3 = PML4 .. 0 = PT), maps a page itself.
fn is_leaf(entry: u64, level: u32) -> bool {
    level == 0 || (level < 3 && F::from_bits_truncate(entry).contains(F::HUGE_PAGE))
}

/// Decodes the leaf `entry` at `level` covering `virt`.
fn leaf(virt: u64, level: u32, entry: u64, access: Access) -> Mapping {
    let size = 1u64 << (12 + 9 * level);
    let (pat_bit, phys_mask) = if level == 0 {
        (PAT_4K, ADDRESS_MASK)
    } else {
        (PAT_LARGE, ADDRESS_MASK & !(size - 1))
    };
    let flags = F::from_bits_truncate(entry);
    Mapping {
        virt: virt & !(size - 1),
        phys: entry & phys_mask,
        size,
        writable: access.writable,
        executable: access.executable,
        user: access.user,
        pat_index: (u8::from(entry & pat_bit != 0) << 2)
            | (u8::from(flags.contains(F::NO_CACHE)) << 1)
            | u8::from(flags.contains(F::WRITE_THROUGH)),
    }
}

/// One leaf mapping: a 4 KiB, 2 MiB or 1 GiB page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First virtual address of the page.
    pub virt: u64,
    /// First physical address of the page.
    pub phys: u64,
    /// Page size in bytes.
    pub size: u64,
    /// Writable at every level.
    pub writable: bool,
    /// Executable (no NX bit at any level).
    pub executable: bool,
    /// User-accessible at every level.
    pub user: bool,
    /// PAT index (0..8) selected by the PAT/PCD/PWT bits.
    pub pat_index: u8,
}

/// The page tables active on this CPU, read through the HHDM at `hhdm_offset`.
pub struct ActiveTables {
    hhdm: u64,
    root: u64,
}

impl ActiveTables {
    /// The tables in CR3, read through the HHDM at `hhdm_offset`.
    pub fn current(hhdm_offset: u64) -> Self {
        let (frame, _) = Cr3::read();
        Self {
            hhdm: hhdm_offset,
            root: frame.start_address().as_u64(),
        }
    }

    /// Physical address of the top-level table.
    pub fn root(&self) -> u64 {
        self.root
    }

    fn entry(&self, table: u64, index: u64) -> u64 {
        let address = self.hhdm + table + index * 8;
        // SAFETY: `table` came from CR3 or from a present non-leaf entry, so it is a page table
        // of the active hierarchy; the protocol (and later the kernel) keeps those in memory the
        // HHDM maps. Reading an entry has no side effects.
        unsafe { core::ptr::read_volatile(address as *const u64) }
    }

    /// Translates `virt` to its mapping, if it has one.
    pub fn translate(&self, virt: u64) -> Option<Mapping> {
        let mut table = self.root;
        let mut access = Access::ALL;
        for level in (0..4u32).rev() {
            let entry = self.entry(table, (virt >> (12 + 9 * level)) & 0x1ff);
            if entry & F::PRESENT.bits() == 0 {
                return None;
            }
            access = access.narrowed_by(entry);
            if is_leaf(entry, level) {
                return Some(leaf(virt, level, entry, access));
            }
            table = entry & ADDRESS_MASK;
        }
        None
    }

    /// Whether any entry of the lower half (PML4 entries 0..256) is present.
    pub fn lower_half_mapped(&self) -> bool {
        (0..256).any(|i| self.entry(self.root, i) & F::PRESENT.bits() != 0)
    }

    /// Calls `f` for every leaf mapping whose virtual address lies in `[start, end)`, in
    /// address order. `start` and `end` are canonical higher- or lower-half addresses.
    pub fn for_each_mapping(&self, start: u64, end: u64, mut f: impl FnMut(Mapping)) {
        self.walk(self.root, 3, 0, (start, end), Access::ALL, &mut f);
    }

    fn walk(
        &self,
        table: u64,
        level: u32,
        base: u64,
        (start, end): (u64, u64),
        access: Access,
        f: &mut impl FnMut(Mapping),
    ) {
        let shift = 12 + 9 * level;
        let size = 1u64 << shift;
        for index in 0..512u64 {
            let mut virt = base | (index << shift);
            if level == 3 && index >= 256 {
                virt |= 0xffff_0000_0000_0000; // sign-extend into the higher half
            }
            if virt.saturating_add(size - 1) < start || virt >= end {
                continue;
            }
            let entry = self.entry(table, index);
            if entry & F::PRESENT.bits() == 0 {
                continue;
            }
            let access = access.narrowed_by(entry);
            if is_leaf(entry, level) {
                f(leaf(virt, level, entry, access));
            } else {
                self.walk(
                    entry & ADDRESS_MASK,
                    level - 1,
                    virt,
                    (start, end),
                    access,
                    f,
                );
            }
        }
    }
}
