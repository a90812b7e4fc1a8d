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

impl TableMemory for FakeMemory {
    fn read(&self, table: u64, index: usize) -> u64 {
        self.tables.get(&table).expect("a table page")[index]
    }
    fn write(&mut self, table: u64, index: usize, value: u64) {
        self.tables.get_mut(&table).expect("a table page")[index] = value;
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
            pat_index: 0,
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
        Err(Error::BadAddress)
    );
    assert_eq!(
        tables.map(&mut mem, KERNEL, 1 << 52, PageSize::Size4K, rw),
        Err(Error::BadAddress)
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
    let pml4e = mem.read(tables.root(), 256);
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
        mem.read(tables.root(), 256),
        pml4e,
        "the PDPT was not replaced"
    );
}
