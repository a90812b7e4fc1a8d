use std::{vec, vec::Vec};

use frames::table::{
    ADDRESS_MASK as PTE_ADDR_MASK, HUGE as PTE_HUGE, NO_CACHE as PTE_PCD, NO_EXECUTE as PTE_NX,
    PAT_4K as PTE_PAT_4K, PAT_LARGE as PTE_PAT_LARGE, PRESENT as PTE_PRESENT,
    WRITABLE as PTE_WRITABLE, WRITE_THROUGH as PTE_PWT,
};

use super::*;

const POOL_BASE: u64 = 0x10_0000;
const KBASE: u64 = 0xffff_ffff_8000_0000;
const HHDM: u64 = 0xffff_8000_0000_0000;

fn pages(n: usize) -> Vec<Table> {
    vec![[0xdead_beef; ENTRIES]; n]
}

const RX: Attributes = Attributes {
    writable: false,
    executable: true,
    cache: Cache::WriteBack,
    user: false,
};
const RO: Attributes = Attributes {
    writable: false,
    executable: false,
    cache: Cache::WriteBack,
    user: false,
};
const RW: Attributes = Attributes {
    writable: true,
    executable: false,
    cache: Cache::WriteBack,
    user: false,
};

#[test]
fn maps_kernel_segments_with_their_permissions() {
    let mut mem = pages(16);
    let mut pool = PagePool::new(POOL_BASE, &mut mem).expect("aligned");
    let mut m = Mapper::new(&mut pool).expect("root");
    assert_eq!(m.root(), POOL_BASE);
    let phys = 0x20_0000;
    m.map(KBASE, phys, 0x2000, RX).expect("text");
    m.map(KBASE + 0x2000, phys + 0x2000, 0x1000, RO)
        .expect("rodata");
    m.map(KBASE + 0x3000, phys + 0x3000, 0x3000, RW)
        .expect("data");
    // PML4 + PDPT + PD + PT.
    assert_eq!(m.pool().used(), 4);

    let t = m.translate(KBASE + 0x1234).expect("mapped");
    assert_eq!(
        (t.phys, t.flags, t.page_size),
        (phys + 0x1234, RX, PAGE_SIZE)
    );
    assert_eq!(t.raw, (phys + 0x1000) | PTE_PRESENT, "RX: no W, no NX");
    let t = m.translate(KBASE + 0x2008).expect("mapped");
    assert_eq!(t.raw, (phys + 0x2000) | PTE_PRESENT | PTE_NX);
    let t = m.translate(KBASE + 0x5fff).expect("mapped");
    assert_eq!(t.raw, (phys + 0x5000) | PTE_PRESENT | PTE_WRITABLE | PTE_NX);
    assert_eq!(t.flags, RW);
    assert_eq!(m.translate(KBASE + 0x6000), None);
    assert_eq!(m.translate(KBASE - 0x1000), None);

    // Intermediate entries are P|W, supervisor, never NX; the root is at index 511.
    let root = m.pool().table(m.root()).expect("root");
    let pml4e = root[511];
    assert_eq!(pml4e & !PTE_ADDR_MASK, PTE_PRESENT | PTE_WRITABLE);
    assert_eq!(
        root.iter().filter(|&&e| e != 0).count(),
        1,
        "pool pages were zeroed"
    );
}

#[test]
fn remapping_identically_is_allowed_differently_is_not() {
    let mut mem = pages(8);
    let mut pool = PagePool::new(POOL_BASE, &mut mem).expect("aligned");
    let mut m = Mapper::new(&mut pool).expect("root");
    m.map(KBASE, 0x20_0000, 0x1000, RX).expect("first");
    m.map(KBASE, 0x20_0000, 0x1000, RX)
        .expect("identical again");
    assert_eq!(
        m.map(KBASE, 0x30_0000, 0x1000, RX),
        Err(PagingError::AlreadyMapped(KBASE))
    );
    assert_eq!(
        m.map(KBASE, 0x20_0000, 0x1000, RW),
        Err(PagingError::AlreadyMapped(KBASE))
    );
}

#[test]
fn hhdm_uses_large_pages_only_where_they_fit() {
    let mut mem = pages(32);
    let mut pool = PagePool::new(POOL_BASE, &mut mem).expect("aligned");
    let mut m = Mapper::new(&mut pool).expect("root");
    // 0x1000 .. 3 GiB + 0x3000: unaligned head and tail.
    let (pa, len) = (0x1000u64, 3 * SIZE_1G + 0x2000);
    m.map_large(HHDM + pa, pa, len, RWX, true).expect("maps");

    let page = |va: u64| m.translate(va).map(|t| (t.phys, t.page_size));
    assert_eq!(page(HHDM), None, "page 0 is outside the range");
    assert_eq!(page(HHDM + 0x1000), Some((0x1000, PAGE_SIZE)));
    assert_eq!(page(HHDM + 0x1f_f000), Some((0x1f_f000, PAGE_SIZE)));
    assert_eq!(page(HHDM + 0x20_0000), Some((0x20_0000, SIZE_2M)));
    assert_eq!(page(HHDM + SIZE_1G - 1), Some((SIZE_1G - 1, SIZE_2M)));
    assert_eq!(page(HHDM + SIZE_1G + 5), Some((SIZE_1G + 5, SIZE_1G)));
    assert_eq!(page(HHDM + 2 * SIZE_1G), Some((2 * SIZE_1G, SIZE_1G)));
    assert_eq!(page(HHDM + 3 * SIZE_1G), Some((3 * SIZE_1G, PAGE_SIZE)));
    assert_eq!(
        page(HHDM + 3 * SIZE_1G + 0x2fff),
        Some((3 * SIZE_1G + 0x2fff, PAGE_SIZE))
    );
    assert_eq!(page(HHDM + 3 * SIZE_1G + 0x3000), None);

    let t = m.translate(HHDM + SIZE_1G).expect("mapped");
    assert_eq!(t.raw, SIZE_1G | PTE_PRESENT | PTE_WRITABLE | PTE_HUGE);
    assert_eq!(t.flags, RWX);
    // Root, PDPT, PD for GiB 0, PT for its head, PD + PT for GiB 3.
    assert_eq!(m.pool().used(), 6);

    // Without 1 GiB pages the middle uses 2 MiB pages.
    let mut mem = pages(32);
    let mut pool = PagePool::new(POOL_BASE, &mut mem).expect("aligned");
    let mut m = Mapper::new(&mut pool).expect("root");
    m.map_large(HHDM, 0, 2 * SIZE_1G, RWX, false).expect("maps");
    assert_eq!(
        m.translate(HHDM + SIZE_1G).map(|t| t.page_size),
        Some(SIZE_2M)
    );
}

#[test]
fn large_pages_need_congruent_addresses() {
    let mut mem = pages(8);
    let mut pool = PagePool::new(POOL_BASE, &mut mem).expect("aligned");
    let mut m = Mapper::new(&mut pool).expect("root");
    m.map_large(HHDM + SIZE_2M, SIZE_2M + 0x1000, SIZE_2M, RWX, true)
        .expect("maps");
    let t = m.translate(HHDM + SIZE_2M + 0x10).expect("mapped");
    assert_eq!((t.phys, t.page_size), (SIZE_2M + 0x1010, PAGE_SIZE));
}

#[test]
fn large_mapping_falls_back_next_to_existing_small_pages() {
    let mut mem = pages(16);
    let mut pool = PagePool::new(POOL_BASE, &mut mem).expect("aligned");
    let mut m = Mapper::new(&mut pool).expect("root");
    // A 4 KiB mapping inside the first 2 MiB, then an overlapping identical large map.
    m.map(HHDM + 0x5000, 0x5000, 0x1000, RWX).expect("small");
    m.map_large(HHDM, 0, 2 * SIZE_2M, RWX, true).expect("large");
    assert_eq!(
        m.translate(HHDM + 0x5000).map(|t| t.page_size),
        Some(PAGE_SIZE)
    );
    assert_eq!(
        m.translate(HHDM + 0x6000).map(|t| t.page_size),
        Some(PAGE_SIZE)
    );
    assert_eq!(
        m.translate(HHDM + SIZE_2M).map(|t| t.page_size),
        Some(SIZE_2M)
    );
    // Small identical mappings inside an existing large page are fine; different are not.
    m.map(HHDM + SIZE_2M + 0x3000, SIZE_2M + 0x3000, 0x1000, RWX)
        .expect("identical");
    assert_eq!(
        m.map(HHDM + SIZE_2M, SIZE_2M, 0x1000, RW),
        Err(PagingError::AlreadyMapped(HHDM + SIZE_2M))
    );
}

#[test]
fn framebuffer_is_write_combining() {
    let mut mem = pages(16);
    let mut pool = PagePool::new(POOL_BASE, &mut mem).expect("aligned");
    let mut m = Mapper::new(&mut pool).expect("root");
    let fb = 0x8000_0000u64;
    m.map_large(
        HHDM + fb,
        fb,
        SIZE_2M + 0x3000,
        Attributes::FRAMEBUFFER,
        true,
    )
    .expect("maps");
    let large = m.translate(HHDM + fb).expect("mapped");
    assert_eq!(large.page_size, SIZE_2M);
    assert_eq!(
        large.raw,
        fb | PTE_PRESENT | PTE_WRITABLE | PTE_HUGE | PTE_PAT_LARGE | PTE_PWT | PTE_NX
    );
    assert_eq!(large.flags, Attributes::FRAMEBUFFER);
    let small = m.translate(HHDM + fb + SIZE_2M + 0x2000).expect("mapped");
    assert_eq!(small.page_size, PAGE_SIZE);
    assert_eq!(
        small.raw,
        (fb + SIZE_2M + 0x2000) | PTE_PRESENT | PTE_WRITABLE | PTE_PAT_4K | PTE_PWT | PTE_NX
    );
    assert_eq!(small.raw & PTE_PCD, 0);
    assert_eq!(small.flags.cache, Cache::WriteCombining);
}

#[test]
fn rejects_bad_requests() {
    let mut mem = pages(2);
    assert_eq!(
        PagePool::new(0x1234, &mut mem).err(),
        Some(PagingError::UnalignedPool)
    );
    let mut pool = PagePool::new(POOL_BASE, &mut mem).expect("aligned");
    let mut m = Mapper::new(&mut pool).expect("root");
    assert_eq!(m.map(KBASE + 1, 0, 0x1000, RW), Err(PagingError::Unaligned));
    assert_eq!(m.map(KBASE, 0, 0x800, RW), Err(PagingError::Unaligned));
    assert_eq!(
        m.map(0x0000_8000_0000_0000, 0, 0x1000, RW),
        Err(PagingError::NonCanonical(0x0000_8000_0000_0000))
    );
    // Crossing the canonical hole or wrapping around.
    assert!(matches!(
        m.map(0x7fff_ffff_f000, 0, 0x2000, RW),
        Err(PagingError::NonCanonical(_))
    ));
    assert!(matches!(
        m.map(u64::MAX - 0xfff, 0, 0x2000, RW),
        Err(PagingError::NonCanonical(_))
    ));
    assert!(matches!(
        m.map(KBASE, 1 << 52, 0x1000, RW),
        Err(PagingError::PhysTooLarge(_))
    ));
    assert_eq!(m.map(KBASE, 0, 0, RW), Ok(()));
    // One page left: PDPT fits, PD does not.
    assert_eq!(m.map(KBASE, 0, 0x1000, RW), Err(PagingError::PoolExhausted));
}

#[test]
fn clear_lower_half_drops_identity_mappings_only() {
    let mut mem = pages(16);
    let mut pool = PagePool::new(POOL_BASE, &mut mem).expect("aligned");
    let mut m = Mapper::new(&mut pool).expect("root");
    m.map(0x10_0000, 0x10_0000, 0x1000, RWX).expect("identity");
    m.map(HHDM + 0x10_0000, 0x10_0000, 0x1000, RWX)
        .expect("hhdm");
    assert!(m.translate(0x10_0000).is_some());
    m.clear_lower_half().expect("the root is in the pool");
    assert!(m.translate(0x10_0000).is_none());
    assert_eq!(
        m.translate(HHDM + 0x10_0000).map(|t| t.phys),
        Some(0x10_0000)
    );
}

#[test]
fn page_estimate_is_sufficient() {
    let plans = [
        MapPlan {
            va: KBASE,
            pa: 0x20_0000,
            len: 0x1_0000,
            large: false,
        },
        MapPlan {
            va: HHDM + 0x1000,
            pa: 0x1000,
            len: 3 * SIZE_1G + 0x2000,
            large: true,
        },
        MapPlan {
            va: HHDM + 0x8000_0000,
            pa: 0x8000_0000,
            len: 0x30_0000,
            large: true,
        },
        MapPlan {
            va: 0x10_0000,
            pa: 0x10_0000,
            len: 0x40_0000,
            large: false,
        },
        MapPlan {
            va: HHDM + 0x3_0000_1000,
            pa: 0x3_0000_1000,
            len: SIZE_1G * 2,
            large: true,
        },
    ];
    let need = pages_needed(plans);
    let mut mem = pages(need);
    let mut pool = PagePool::new(POOL_BASE, &mut mem).expect("aligned");
    let mut m = Mapper::new(&mut pool).expect("root");
    for p in plans {
        if p.large {
            m.map_large(p.va, p.pa, p.len, RWX, true)
                .expect("fits in the estimate");
        } else {
            m.map(p.va, p.pa, p.len, RWX).expect("fits in the estimate");
        }
    }
    assert!(m.pool().used() <= need);
    // Unaligned large plans are counted as 4 KiB mappings.
    let skew = MapPlan {
        va: HHDM,
        pa: 0x1000,
        len: 4 * SIZE_2M,
        large: true,
    };
    assert_eq!(pages_needed([skew]), 1 + 1 + 1 + 4);
    assert_eq!(pages_needed([]), 1);
}
