//! Read-only walks of the page tables active on this CPU, through the HHDM.
//!
//! Used by diagnostics and by the loader conformance probe to check what is mapped, where, and
//! with which permissions and caching. The walk itself is the page-table core's
//! ([`frames::table`]), the same that builds and edits the tables; this module only reads
//! entries.
//!
//! [`ActiveTables`] takes no address from its caller and holds none: every call reads CR3
//! and the HHDM offset afresh, so it can only ever walk the hierarchy this CPU is using.

pub use frames::table::Mapping;
use frames::table::{ENTRIES, Error as TableError, PageTables, TableRead};
use x86_64::registers::control::Cr3;

/// Page-table pages of the active hierarchy, read through the HHDM.
struct ActiveMemory {
    hhdm: u64,
}

impl TableRead for ActiveMemory {
    fn read(&self, table: u64, index: usize) -> Result<u64, TableError> {
        if index >= ENTRIES {
            return Err(TableError::ForeignTable(table));
        }
        let address = self.hhdm + table + index as u64 * 8;
        // SAFETY: the core calls this only with the root that `walker` just read from CR3 or an
        // address from a present non-leaf entry below it, so `table` is a page table of the
        // hierarchy this CPU is using (page tables are never freed while a CPU uses them), and
        // `index` is in range. The protocol (and later the kernel) keeps page tables in memory
        // the HHDM at `hhdm` maps (its offset is hal's own copy of the loader's answer).
        // Reading an entry has no side effects.
        Ok(unsafe { core::ptr::read_volatile(address as *const u64) })
    }
}

/// The active hierarchy and the memory to read it through.
fn walker() -> (PageTables, ActiveMemory) {
    let (frame, _) = Cr3::read();
    // NX only matters when making entries, which a read-only walk never does.
    let tables = PageTables::new(frame.start_address().as_u64(), true);
    let memory = ActiveMemory {
        hhdm: crate::mm::hhdm_offset(),
    };
    (tables, memory)
}

/// The page tables active on this CPU: each call walks whatever CR3 holds at that moment.
#[derive(Clone, Copy, Debug)]
pub struct ActiveTables {
    _private: (),
}

impl ActiveTables {
    /// The tables in CR3, read through the HHDM.
    pub fn current() -> Self {
        Self { _private: () }
    }

    /// Physical address of the top-level table.
    pub fn root(&self) -> u64 {
        walker().0.root()
    }

    /// Translates `virt` to its mapping, if it has one. Permissions are those of every level
    /// together, as the CPU applies them.
    pub fn translate(&self, virt: u64) -> Option<Mapping> {
        let (tables, memory) = walker();
        tables.translate(&memory, virt)
    }

    /// Whether any entry of the lower half (PML4 entries 0..256) is present.
    pub fn lower_half_mapped(&self) -> bool {
        let (tables, memory) = walker();
        tables.lower_half_mapped(&memory)
    }

    /// Calls `f` for every leaf mapping whose virtual range meets `[start, end)`, in address
    /// order.
    pub fn for_each_mapping(&self, start: u64, end: u64, f: impl FnMut(Mapping)) {
        let (tables, memory) = walker();
        tables.for_each_mapping(&memory, start, end, f);
    }
}
