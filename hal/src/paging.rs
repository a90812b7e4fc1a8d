//! Read-only walks of the active 4-level page tables, through the HHDM.
//!
//! Used by diagnostics and by the loader conformance probe to check what is mapped, where, and
//! with which permissions and caching.

use x86_64::registers::control::Cr3;

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const PWT: u64 = 1 << 3;
const PCD: u64 = 1 << 4;
const HUGE: u64 = 1 << 7;
const NO_EXECUTE: u64 = 1 << 63;
const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;

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
        let mut writable = true;
        let mut user = true;
        let mut executable = true;
        for level in (0..4u32).rev() {
            let shift = 12 + 9 * level;
            let entry = self.entry(table, (virt >> shift) & 0x1ff);
            if entry & PRESENT == 0 {
                return None;
            }
            writable &= entry & WRITABLE != 0;
            user &= entry & USER != 0;
            executable &= entry & NO_EXECUTE == 0;
            let leaf = level == 0 || (level < 3 && entry & HUGE != 0);
            if leaf {
                let size = 1u64 << shift;
                let pat_bit = if level == 0 { 1 << 7 } else { 1 << 12 };
                let pat_index = (u8::from(entry & pat_bit != 0) << 2)
                    | (u8::from(entry & PCD != 0) << 1)
                    | u8::from(entry & PWT != 0);
                let phys_mask = if level == 0 {
                    ADDRESS_MASK
                } else {
                    ADDRESS_MASK & !(size - 1)
                };
                return Some(Mapping {
                    virt: virt & !(size - 1),
                    phys: entry & phys_mask,
                    size,
                    writable,
                    executable,
                    user,
                    pat_index,
                });
            }
            table = entry & ADDRESS_MASK;
        }
        None
    }

    /// Whether any entry of the lower half (PML4 entries 0..256) is present.
    pub fn lower_half_mapped(&self) -> bool {
        (0..256).any(|i| self.entry(self.root, i) & PRESENT != 0)
    }

    /// Calls `f` for every leaf mapping whose virtual address lies in `[start, end)`, in
    /// address order. `start` and `end` are canonical higher- or lower-half addresses.
    pub fn for_each_mapping(&self, start: u64, end: u64, mut f: impl FnMut(Mapping)) {
        self.walk(self.root, 3, 0, start, end, (true, true, true), &mut f);
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "a recursive walk carries its context"
    )]
    fn walk(
        &self,
        table: u64,
        level: u32,
        base: u64,
        start: u64,
        end: u64,
        perms: (bool, bool, bool),
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
            if entry & PRESENT == 0 {
                continue;
            }
            let perms = (
                perms.0 && entry & WRITABLE != 0,
                perms.1 && entry & NO_EXECUTE == 0,
                perms.2 && entry & USER != 0,
            );
            if level == 0 || (level < 3 && entry & HUGE != 0) {
                let pat_bit = if level == 0 { 1 << 7 } else { 1 << 12 };
                let mask = if level == 0 {
                    ADDRESS_MASK
                } else {
                    ADDRESS_MASK & !(size - 1)
                };
                f(Mapping {
                    virt,
                    phys: entry & mask,
                    size,
                    writable: perms.0,
                    executable: perms.1,
                    user: perms.2,
                    pat_index: (u8::from(entry & pat_bit != 0) << 2)
                        | (u8::from(entry & PCD != 0) << 1)
                        | u8::from(entry & PWT != 0),
                });
            } else {
                self.walk(entry & ADDRESS_MASK, level - 1, virt, start, end, perms, f);
            }
        }
    }
}
