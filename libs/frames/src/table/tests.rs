use std::{collections::BTreeMap, vec, vec::Vec};

use super::*;

/// Fake physical memory: table pages at made-up addresses, with a page budget.
struct FakeMemory {
    tables: BTreeMap<u64, Vec<u64>>,
    next: u64,
    budget: usize,
}

impl FakeMemory {
    fn new(budget: usize) -> Self {
        Self {
            tables: BTreeMap::new(),
            next: 0x10_0000,
            budget,
        }
    }
}

impl TableRead for FakeMemory {
    fn read(&self, table: u64, index: usize) -> Result<u64, Error> {
        let page = self.tables.get(&table).ok_or(Error::ForeignTable(table))?;
        Ok(page[index])
    }
}

impl TableMemory for FakeMemory {
    fn write(&mut self, table: u64, index: usize, value: u64) -> Result<(), Error> {
        let page = self
            .tables
            .get_mut(&table)
            .ok_or(Error::ForeignTable(table))?;
        page[index] = value;
        Ok(())
    }
    fn alloc_table(&mut self) -> Option<u64> {
        if self.tables.len() >= self.budget {
            return None;
        }
        let page = self.next;
        self.next += 0x1000;
        self.tables.insert(page, vec![0; ENTRIES]);
        Some(page)
    }
}

const KERNEL: u64 = 0xffff_ffff_8000_0000;
const HHDM: u64 = 0xffff_8000_0000_0000;

#[test]
fn maps_translates_and_unmaps_4k_pages() {
    let mut mem = FakeMemory::new(16);
    let tables = PageTables::create(&mut mem, true).expect("room for the root");
    tables
        .map(
            &mut mem,
            KERNEL,
            0x20_0000,
            PageSize::Size4K,
            Attributes::CODE,
        )
        .expect("empty tables");
    tables
        .map(
            &mut mem,
            KERNEL + 0x1000,
            0x30_0000,
            PageSize::Size4K,
            Attributes::READ_WRITE,
        )
        .expect("empty slot");
    assert_eq!(mem.tables.len(), 4, "root + PDPT + PD + PT");
    let code = tables.translate(&mem, KERNEL + 0x123).expect("mapped");
    assert_eq!(
        code,
        Mapping {
            virt: KERNEL,
            phys: 0x20_0000,
            size: PageSize::Size4K,
            writable: false,
            executable: true,
            user: false,
            pat_index: 0,
            entry: 0x20_0000 | PRESENT,
        }
    );
    let data = tables.translate(&mem, KERNEL + 0x1fff).expect("mapped");
    assert!(data.writable && !data.executable);
    assert_eq!(
        tables.map(
            &mut mem,
            KERNEL,
            0x40_0000,
            PageSize::Size4K,
            Attributes::CODE
        ),
        Err(Error::AlreadyMapped(KERNEL))
    );
    assert_eq!(tables.unmap(&mut mem, KERNEL), Ok(code));
    assert_eq!(tables.translate(&mem, KERNEL), None);
    assert_eq!(
        tables.unmap(&mut mem, KERNEL),
        Err(Error::NotMapped(KERNEL))
    );
    assert!(
        tables.translate(&mem, KERNEL + 0x1000).is_some(),
        "neighbour untouched"
    );
}

#[test]
fn caching_and_nx_bits_follow_the_pat_layout() {
    let mut mem = FakeMemory::new(16);
    let tables = PageTables::create(&mut mem, true).expect("room for the root");
    let cases = [
        (Attributes::MMIO, PageSize::Size4K, 0, 3),
        (Attributes::FRAMEBUFFER, PageSize::Size4K, 0x1000, 5),
        (Attributes::FRAMEBUFFER, PageSize::Size2M, 0x20_0000, 5),
        (Attributes::READ_ONLY, PageSize::Size2M, 0x40_0000, 0),
    ];
    for (attributes, size, offset, pat) in cases {
        tables
            .map(
                &mut mem,
                HHDM + offset,
                0x8000_0000 + offset,
                size,
                attributes,
            )
            .expect("free slot");
        let m = tables.translate(&mem, HHDM + offset).expect("mapped");
        assert_eq!((m.pat_index, m.size), (pat, size), "{attributes:?}");
        assert_eq!(
            m.phys,
            0x8000_0000 + offset,
            "PAT bit must not leak into the address"
        );
        assert!(!m.executable);
    }
    // Without NX, bit 63 is reserved: data becomes executable rather than faulting.
    let plain = PageTables::create(&mut mem, false).expect("room");
    plain
        .map(&mut mem, HHDM, 0, PageSize::Size4K, Attributes::READ_ONLY)
        .expect("empty");
    assert!(plain.translate(&mem, HHDM).expect("mapped").executable);
}

#[test]
fn large_pages_cover_their_range_and_block_small_ones() {
    let mut mem = FakeMemory::new(16);
    let tables = PageTables::create(&mut mem, true).expect("room for the root");
    tables
        .map(
            &mut mem,
            HHDM + (1 << 30),
            1 << 30,
            PageSize::Size1G,
            Attributes::READ_WRITE,
        )
        .expect("empty");
    let inside = HHDM + (1 << 30) + 0x12_3456;
    let m = tables.translate(&mem, inside).expect("covered");
    assert_eq!(
        (m.virt, m.phys, m.size),
        (HHDM + (1 << 30), 1 << 30, PageSize::Size1G)
    );
    assert_eq!(
        tables.map(
            &mut mem,
            inside & !0xfff,
            0,
            PageSize::Size4K,
            Attributes::READ_WRITE
        ),
        Err(Error::InsideLargePage(inside & !0xfff))
    );
    assert_eq!(
        tables.unmap(&mut mem, inside & !0xfff),
        Err(Error::InsideLargePage(inside & !0xfff))
    );
    assert!(tables.unmap(&mut mem, HHDM + (1 << 30)).is_ok());
}

#[test]
fn map_range_uses_the_largest_aligned_pages() {
    let mut mem = FakeMemory::new(64);
    let tables = PageTables::create(&mut mem, true).expect("room for the root");
    // 4 KiB head, 2 MiB pages, a 1 GiB page, 2 MiB pages, 4 KiB tail.
    let start = (1 << 30) - (2 << 20) - 0x1000;
    let len = 0x1000 + (2 << 20) + (1 << 30) + (4 << 20) + 0x3000;
    tables
        .map_range(
            &mut mem,
            HHDM + start,
            start,
            len,
            Attributes::READ_WRITE,
            PageSize::Size1G,
        )
        .expect("enough tables");
    let size_at = |offset: u64| {
        tables
            .translate(&mem, HHDM + start + offset)
            .map(|m| m.size)
    };
    assert_eq!(size_at(0), Some(PageSize::Size4K));
    assert_eq!(size_at(0x1000), Some(PageSize::Size2M));
    assert_eq!(size_at(0x1000 + (2 << 20)), Some(PageSize::Size1G));
    assert_eq!(
        size_at(0x1000 + (2 << 20) + (1 << 30)),
        Some(PageSize::Size2M)
    );
    assert_eq!(size_at(len - 0x1000), Some(PageSize::Size4K));
    assert_eq!(size_at(len), None);
    for offset in (0..len).step_by(0x7_f000) {
        let m = tables
            .translate(&mem, HHDM + start + offset)
            .expect("mapped");
        assert_eq!(m.phys + (HHDM + start + offset - m.virt), start + offset);
    }
    // Capped at 2 MiB, the 1 GiB stretch uses 2 MiB pages.
    let capped = PageTables::create(&mut mem, true).expect("room");
    capped
        .map_range(
            &mut mem,
            HHDM,
            0,
            1 << 30,
            Attributes::READ_WRITE,
            PageSize::Size2M,
        )
        .expect("enough tables");
    assert_eq!(
        capped.translate(&mem, HHDM).map(|m| m.size),
        Some(PageSize::Size2M)
    );
}

#[test]
fn bad_requests_are_refused() {
    let mut mem = FakeMemory::new(3);
    let tables = PageTables::create(&mut mem, true).expect("room for the root");
    let rw = Attributes::READ_WRITE;
    assert_eq!(
        tables.map(&mut mem, KERNEL + 1, 0, PageSize::Size4K, rw),
        Err(Error::Misaligned)
    );
    assert_eq!(
        tables.map(&mut mem, KERNEL, 0x1000, PageSize::Size2M, rw),
        Err(Error::Misaligned)
    );
    assert_eq!(
        tables.map(&mut mem, 0x0000_8000_0000_0000, 0, PageSize::Size4K, rw),
        Err(Error::NonCanonical(0x0000_8000_0000_0000))
    );
    assert_eq!(
        tables.map(&mut mem, KERNEL, 1 << 52, PageSize::Size4K, rw),
        Err(Error::PhysTooLarge(1 << 52))
    );
    assert_eq!(
        tables.map(&mut mem, KERNEL, 0, PageSize::Size4K, rw),
        Err(Error::OutOfMemory),
        "budget of 3 tables: root, PDPT, PD — no page table"
    );
    assert_eq!(tables.translate(&mem, 0x0000_8000_0000_0000), None);
}

#[test]
fn prepared_top_level_entries_are_shared() {
    let mut mem = FakeMemory::new(16);
    let tables = PageTables::create(&mut mem, true).expect("room for the root");
    tables.prepare_top_level(&mut mem, HHDM).expect("room");
    let pml4e = mem.read(tables.root(), 256).expect("the root");
    assert_eq!(pml4e & 1, 1);
    tables
        .map(
            &mut mem,
            HHDM + 0x5000,
            0x5000,
            PageSize::Size4K,
            Attributes::READ_WRITE,
        )
        .expect("room");
    assert_eq!(
        mem.read(tables.root(), 256).expect("the root"),
        pml4e,
        "the PDPT was not replaced"
    );
}

#[test]
fn leaf_entries_have_exactly_the_bits_asked_for() {
    let mut mem = FakeMemory::new(16);
    let tables = PageTables::create(&mut mem, true).expect("room for the root");
    let cases = [
        (Attributes::CODE, PageSize::Size4K, 0, PRESENT),
        (
            Attributes::READ_WRITE,
            PageSize::Size4K,
            0x1000,
            PRESENT | WRITABLE | NO_EXECUTE,
        ),
        (
            Attributes::MMIO,
            PageSize::Size4K,
            0x2000,
            PRESENT | WRITABLE | NO_EXECUTE | NO_CACHE | WRITE_THROUGH,
        ),
        (
            Attributes::FRAMEBUFFER,
            PageSize::Size4K,
            0x3000,
            PRESENT | WRITABLE | NO_EXECUTE | PAT_4K | WRITE_THROUGH,
        ),
        (
            Attributes::FRAMEBUFFER,
            PageSize::Size2M,
            0x20_0000,
            PRESENT | WRITABLE | NO_EXECUTE | HUGE | PAT_LARGE | WRITE_THROUGH,
        ),
        (
            Attributes::READ_ONLY,
            PageSize::Size1G,
            1 << 30,
            PRESENT | NO_EXECUTE | HUGE,
        ),
    ];
    for (attributes, size, offset, bits) in cases {
        let phys = (1 << 32) + offset;
        tables
            .map(&mut mem, HHDM + offset, phys, size, attributes)
            .expect("free slot");
        let m = tables.translate(&mem, HHDM + offset).expect("mapped");
        assert_eq!(m.entry, phys | bits, "{attributes:?} at {size:?}");
        assert_eq!(m.attributes(), Some(attributes));
        assert_eq!(tables.leaf_entry(phys, size, attributes), phys | bits);
    }
    // Intermediate entries are present and writable, supervisor-only, never NX.
    for slot in [256, 511] {
        let entry = mem.read(tables.root(), slot).expect("the root");
        if entry & PRESENT != 0 {
            assert_eq!(entry & !ADDRESS_MASK, PRESENT | WRITABLE);
        }
    }
}

#[test]
fn walks_narrow_permissions_level_by_level() {
    let mut mem = FakeMemory::new(16);
    let tables = PageTables::create(&mut mem, true).expect("room for the root");
    let rwx = Attributes {
        writable: true,
        executable: true,
        cache: Cache::WriteBack,
        user: false,
    };
    tables
        .map(&mut mem, 0x40_0000, 0x40_0000, PageSize::Size4K, rwx)
        .expect("empty");
    let m = tables.translate(&mem, 0x40_0000).expect("mapped");
    assert!(m.writable && m.executable && !m.user);
    // The path: root[0] -> PDPT[0] -> PD[2] -> PT[0].
    let pdpt = mem.read(tables.root(), 0).expect("root") & ADDRESS_MASK;
    let pd = mem.read(pdpt, 0).expect("PDPT") & ADDRESS_MASK;
    let pt = mem.read(pd, 2).expect("PD") & ADDRESS_MASK;
    let edit = |mem: &mut FakeMemory, table: u64, slot: usize, set: u64, clear: u64| {
        let entry = mem.read(table, slot).expect("a table");
        mem.write(table, slot, (entry | set) & !clear)
            .expect("a table");
    };
    edit(&mut mem, tables.root(), 0, 0, WRITABLE);
    edit(&mut mem, pdpt, 0, NO_EXECUTE, 0);
    let m = tables.translate(&mem, 0x40_0000).expect("mapped");
    assert!(!m.writable, "a read-only top-level entry wins");
    assert!(!m.executable, "an NX directory entry wins");
    for (table, slot) in [(tables.root(), 0), (pdpt, 0), (pd, 2)] {
        edit(&mut mem, table, slot, USER, 0);
    }
    assert!(
        !tables.translate(&mem, 0x40_0000).expect("mapped").user,
        "user only if the leaf says so too"
    );
    edit(&mut mem, pt, 0, USER, 0);
    assert!(tables.translate(&mem, 0x40_0000).expect("mapped").user);
    let mut seen = Vec::new();
    tables.for_each_mapping(&mem, 0, u64::MAX, |m| seen.push(m));
    assert_eq!(seen.len(), 1);
    assert!(seen[0].user && !seen[0].writable && !seen[0].executable);
}

#[test]
fn for_each_mapping_visits_leaves_in_order_within_the_range() {
    let mut mem = FakeMemory::new(32);
    let tables = PageTables::create(&mut mem, true).expect("room for the root");
    let rw = Attributes::READ_WRITE;
    let pages = [
        (0x1000, PageSize::Size4K),
        (HHDM, PageSize::Size2M),
        (HHDM + (2 << 20), PageSize::Size4K),
        (HHDM + (1 << 30), PageSize::Size1G),
        (KERNEL, PageSize::Size4K),
    ];
    for (virt, size) in pages {
        tables
            .map(&mut mem, virt, 0x4000_0000, size, rw)
            .expect("free slot");
    }
    let visit = |start: u64, end: u64| {
        let mut seen = Vec::new();
        tables.for_each_mapping(&mem, start, end, |m| seen.push((m.virt, m.size)));
        seen
    };
    assert_eq!(visit(0, u64::MAX), pages.to_vec(), "every leaf, in order");
    // A range reaching into a page includes it; one ending at a page's start does not.
    assert_eq!(
        visit(HHDM + 0x1000, HHDM + (1 << 30)),
        [pages[1], pages[2]].to_vec()
    );
    assert_eq!(visit(HHDM + (3 << 20), KERNEL), [pages[3]].to_vec());
    assert_eq!(visit(0x2000, HHDM), Vec::new());
}

#[test]
fn the_lower_half_is_reported_and_cleared() {
    let mut mem = FakeMemory::new(16);
    let tables = PageTables::create(&mut mem, true).expect("room for the root");
    let rw = Attributes::READ_WRITE;
    tables
        .map(&mut mem, HHDM, 0, PageSize::Size4K, rw)
        .expect("empty");
    assert!(!tables.lower_half_mapped(&mem));
    tables
        .map(&mut mem, 0x7fff_ffff_f000, 0, PageSize::Size4K, rw)
        .expect("empty");
    assert!(tables.lower_half_mapped(&mem));
    tables.clear_lower_half(&mut mem).expect("the root");
    assert!(!tables.lower_half_mapped(&mem));
    assert_eq!(tables.translate(&mem, 0x7fff_ffff_f000), None);
    assert!(tables.translate(&mem, HHDM).is_some(), "higher half kept");
}

#[test]
fn a_large_page_is_refused_over_a_table_of_small_ones() {
    let mut mem = FakeMemory::new(16);
    let tables = PageTables::create(&mut mem, true).expect("room for the root");
    let rw = Attributes::READ_WRITE;
    tables
        .map(&mut mem, HHDM + 0x5000, 0x5000, PageSize::Size4K, rw)
        .expect("empty");
    assert_eq!(
        tables.map(&mut mem, HHDM, 0, PageSize::Size2M, rw),
        Err(Error::FinerTable(HHDM))
    );
    assert_eq!(
        tables.map(&mut mem, HHDM, 0, PageSize::Size1G, rw),
        Err(Error::FinerTable(HHDM))
    );
    assert_eq!(tables.translate(&mem, HHDM), None, "nothing changed");
}

#[test]
fn entries_pointing_outside_the_tables_are_errors() {
    let mut mem = FakeMemory::new(16);
    let tables = PageTables::create(&mut mem, true).expect("room for the root");
    let bogus = 0xdead_0000;
    mem.write(tables.root(), 511, bogus | PRESENT | WRITABLE)
        .expect("the root");
    assert_eq!(
        tables.map(&mut mem, KERNEL, 0, PageSize::Size4K, Attributes::CODE),
        Err(Error::ForeignTable(bogus))
    );
    assert_eq!(tables.translate(&mem, KERNEL), None);
    let mut seen = 0;
    tables.for_each_mapping(&mem, 0, u64::MAX, |_| seen += 1);
    assert_eq!(seen, 0);
    assert_eq!(
        tables.unmap(&mut mem, KERNEL),
        Err(Error::ForeignTable(bogus))
    );
}

#[test]
fn user_pages_are_user_only_in_the_lower_half() {
    let mut mem = FakeMemory::new(16);
    let tables = PageTables::create(&mut mem, true).expect("room for the root");
    let user = Attributes::user(true, false);
    tables
        .map(&mut mem, 0x40_0000, 0x30_0000, PageSize::Size4K, user)
        .expect("a user page");
    let m = tables.translate(&mem, 0x40_0123).expect("mapped");
    assert!(m.user && m.writable && !m.executable);
    assert_eq!(m.attributes(), Some(user));
    // A kernel page in the lower half is not user-accessible, though its tables allow it.
    tables
        .map(
            &mut mem,
            0x40_1000,
            0x30_1000,
            PageSize::Size4K,
            Attributes::READ_WRITE,
        )
        .expect("a kernel page");
    assert!(!tables.translate(&mem, 0x40_1000).expect("mapped").user);
    // Higher-half tables never allow user access, whatever the leaf says.
    tables
        .map(&mut mem, KERNEL, 0x31_0000, PageSize::Size4K, user)
        .expect("mapped");
    assert!(!tables.translate(&mem, KERNEL).expect("mapped").user);
    let top = mem.read(tables.root(), 511).expect("top entry");
    assert_eq!(
        top & USER,
        0,
        "a higher-half table entry allows user access"
    );
}

#[test]
fn raw_entries_keep_their_software_bits_and_replace_in_place() {
    let mut mem = FakeMemory::new(16);
    let tables = PageTables::create(&mut mem, true).expect("room for the root");
    let user = 0x40_0000;
    let entry = tables.leaf_entry(0x30_0000, PageSize::Size4K, Attributes::user(false, false));
    assert_eq!(entry & SOFTWARE, 0, "leaf_entry sets no software bit");
    tables
        .map_entry(&mut mem, user, PageSize::Size4K, entry | 1 << 9)
        .expect("maps");
    let m = tables.translate(&mem, user).expect("mapped");
    assert_eq!(
        (m.phys, m.writable, m.entry & SOFTWARE),
        (0x30_0000, false, 1 << 9)
    );
    assert_eq!(
        tables.map_entry(&mut mem, user, PageSize::Size4K, entry),
        Err(Error::AlreadyMapped(user))
    );
    let writable = tables.leaf_entry(0x50_0000, PageSize::Size4K, Attributes::user(true, false));
    let old = tables
        .replace_leaf(&mut mem, user, writable)
        .expect("replaces");
    assert_eq!(old.entry, entry | 1 << 9);
    let m = tables.translate(&mem, user).expect("still mapped");
    assert_eq!(
        (m.phys, m.writable, m.entry & SOFTWARE),
        (0x50_0000, true, 0)
    );
    assert_eq!(
        tables.replace_leaf(&mut mem, user + 0x1000, writable),
        Err(Error::NotMapped(user + 0x1000))
    );
    assert_eq!(
        tables.map_entry(&mut mem, user + 1, PageSize::Size4K, entry),
        Err(Error::Misaligned)
    );
}

#[test]
fn raw_leaves_hold_not_present_entries_and_report_large_pages() {
    let mut mem = FakeMemory::new(16);
    let tables = PageTables::create(&mut mem, true).expect("room for the root");
    let virt = 0x40_0000;
    assert_eq!(
        tables.raw_leaf(&mem, virt),
        Some(0),
        "no table yet reads as empty"
    );
    let marker = 1 << 11 | WRITABLE; // not present: the owner's encoding
    assert_eq!(tables.write_raw_leaf(&mut mem, virt, marker), Ok(0));
    assert_eq!(tables.raw_leaf(&mem, virt), Some(marker));
    assert_eq!(
        tables.translate(&mem, virt),
        None,
        "a not-present leaf maps nothing"
    );
    assert_eq!(tables.write_raw_leaf(&mut mem, virt, 0), Ok(marker));
    assert_eq!(
        tables.write_raw_leaf(&mut mem, virt + 1, 0),
        Err(Error::Misaligned)
    );
    assert_eq!(
        tables.write_raw_leaf(&mut mem, 0x8000_0000_0000, 0),
        Err(Error::NonCanonical(0x8000_0000_0000))
    );
    tables
        .map(
            &mut mem,
            0x4000_0000,
            0x4000_0000,
            PageSize::Size2M,
            Attributes::READ_WRITE,
        )
        .expect("a 2 MiB page");
    assert_eq!(
        tables.raw_leaf(&mem, 0x4000_1000),
        None,
        "inside a large page"
    );
    assert_eq!(
        tables.write_raw_leaf(&mut mem, 0x4000_1000, marker),
        Err(Error::InsideLargePage(0x4000_1000))
    );
}

#[test]
fn for_each_raw_leaf_sees_present_and_not_present_4k_entries_only() {
    let mut mem = FakeMemory::new(32);
    let tables = PageTables::create(&mut mem, true).expect("room for the root");
    let rw = Attributes::READ_WRITE;
    tables
        .map(&mut mem, 0x1000, 0x4000_0000, PageSize::Size4K, rw)
        .expect("free slot");
    tables
        .map(&mut mem, HHDM, 0x4000_0000, PageSize::Size2M, rw)
        .expect("free slot");
    // A not-present entry with an owner's encoding (a reserved page).
    tables
        .write_raw_leaf(&mut mem, 0x3000, 0x800)
        .expect("the table of 0x1000 reaches 0x3000");
    let mut seen = Vec::new();
    tables.for_each_raw_leaf(&mem, 0, u64::MAX, |virt, entry| {
        seen.push((virt, entry & PRESENT))
    });
    assert_eq!(
        seen,
        [(0x1000, PRESENT), (0x3000, 0)],
        "4 KiB leaves only, in order"
    );
    let mut none = Vec::new();
    tables.for_each_raw_leaf(&mem, 0x4000, HHDM, |virt, _| none.push(virt));
    assert!(none.is_empty());
}
