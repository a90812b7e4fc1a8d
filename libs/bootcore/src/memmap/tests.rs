use std::{vec, vec::Vec};

use super::*;

const P: u64 = PAGE_SIZE;

fn efi(ty: u32, start_page: u64, pages: u64) -> EfiRegion {
    EfiRegion {
        ty,
        phys_start: start_page * P,
        pages,
    }
}

fn entry(base: u64, length: u64, ty: u64) -> MemmapEntry {
    MemmapEntry { base, length, ty }
}

#[test]
fn efi_types_map_to_limine_types() {
    use efi_type::*;
    let cases = [
        (LOADER_CODE, mt::BOOTLOADER_RECLAIMABLE),
        (LOADER_DATA, mt::BOOTLOADER_RECLAIMABLE),
        (BOOT_SERVICES_CODE, mt::BOOTLOADER_RECLAIMABLE),
        (BOOT_SERVICES_DATA, mt::BOOTLOADER_RECLAIMABLE),
        (RUNTIME_SERVICES_CODE, mt::RESERVED),
        (RUNTIME_SERVICES_DATA, mt::RESERVED),
        (CONVENTIONAL, mt::USABLE),
        (UNUSABLE, mt::BAD_MEMORY),
        (ACPI_RECLAIM, mt::ACPI_RECLAIMABLE),
        (ACPI_NVS, mt::ACPI_NVS),
        (RESERVED, mt::RESERVED),
        (MMIO, mt::RESERVED),
        (MMIO_PORT_SPACE, mt::RESERVED),
        (PAL_CODE, mt::RESERVED),
        (PERSISTENT, mt::RESERVED),
        (UNACCEPTED, mt::RESERVED),
        (0x8000_0001, mt::RESERVED),
    ];
    for (efi, limine) in cases {
        assert_eq!(limine_type_for_efi(efi), limine, "EFI type {efi}");
    }
}

#[test]
fn sorts_merges_and_resolves_overlaps() {
    use efi_type::*;
    let map = [
        efi(CONVENTIONAL, 0x110, 0x10),
        efi(BOOT_SERVICES_DATA, 0x108, 0x8),
        efi(LOADER_CODE, 0x100, 0x8),
        efi(CONVENTIONAL, 0, 0x9f),
        // Overlaps the conventional memory above: the reserved type wins.
        efi(RESERVED, 0x118, 0x4),
        efi(ACPI_NVS, 0x200, 1),
        efi(CONVENTIONAL, 0x300, 0),
    ];
    let out = convert(&map, &[]).expect("converts");
    assert_eq!(
        out,
        vec![
            entry(0, 0x9f * P, mt::USABLE),
            entry(0x100 * P, 0x10 * P, mt::BOOTLOADER_RECLAIMABLE),
            entry(0x110 * P, 8 * P, mt::USABLE),
            entry(0x118 * P, 4 * P, mt::RESERVED),
            entry(0x11c * P, 4 * P, mt::USABLE),
            entry(0x200 * P, P, mt::ACPI_NVS),
        ]
    );
}

#[test]
fn overlays_override_efi_types() {
    let map = [efi(efi_type::CONVENTIONAL, 0x100, 0x100)];
    let overlays = [
        Overlay {
            base: 0x110 * P,
            len: 4 * P,
            ty: mt::EXECUTABLE_AND_MODULES,
        },
        Overlay {
            base: 0x114 * P,
            len: 2 * P,
            ty: mt::BOOTLOADER_RECLAIMABLE,
        },
        Overlay {
            base: 0x180 * P,
            len: P,
            ty: mt::BOOTLOADER_RECLAIMABLE,
        },
    ];
    let out = convert(&map, &overlays).expect("converts");
    assert_eq!(
        out,
        vec![
            entry(0x100 * P, 0x10 * P, mt::USABLE),
            entry(0x110 * P, 4 * P, mt::EXECUTABLE_AND_MODULES),
            entry(0x114 * P, 2 * P, mt::BOOTLOADER_RECLAIMABLE),
            entry(0x116 * P, 0x6a * P, mt::USABLE),
            entry(0x180 * P, P, mt::BOOTLOADER_RECLAIMABLE),
            entry(0x181 * P, 0x7f * P, mt::USABLE),
        ]
    );
}

#[test]
fn framebuffer_trims_usable_and_reserved_by_whole_pages() {
    let fb_base = 0x8000_0800;
    let map = [
        efi(efi_type::CONVENTIONAL, 0x7fff0, 0x11),
        efi(efi_type::MMIO, 0x80001, 0x10),
    ];
    let fb = Overlay {
        base: fb_base,
        len: 0x2000,
        ty: mt::FRAMEBUFFER,
    };
    let out = convert(&map, &[fb]).expect("converts");
    assert_eq!(
        out,
        vec![
            entry(0x7fff_0000, 0x1_0000, mt::USABLE),
            entry(fb_base, 0x2000, mt::FRAMEBUFFER),
            entry(0x8000_3000, 0xe000, mt::RESERVED),
        ]
    );
    // A framebuffer outside any EFI region is reported as is.
    let out = convert(&[], &[fb]).expect("converts");
    assert_eq!(out, vec![entry(fb_base, 0x2000, mt::FRAMEBUFFER)]);
}

#[test]
fn framebuffer_sharing_a_page_with_other_types_is_an_error() {
    let fb = Overlay {
        base: 0x8000_0800,
        len: 0x1000,
        ty: mt::FRAMEBUFFER,
    };
    for ty in [
        efi_type::ACPI_NVS,
        efi_type::LOADER_DATA,
        efi_type::ACPI_RECLAIM,
    ] {
        let map = [efi(ty, 0x80001, 1)];
        assert_eq!(
            convert(&map, &[fb]),
            Err(MemmapError::FramebufferConflict {
                addr: 0x8000_1000,
                ty: limine_type_for_efi(ty)
            })
        );
    }
    let alloc = Overlay {
        base: 0x8000_0000,
        len: P,
        ty: mt::EXECUTABLE_AND_MODULES,
    };
    assert!(matches!(
        convert(&[], &[alloc, fb]),
        Err(MemmapError::FramebufferConflict { .. })
    ));
}

#[test]
fn usable_and_reclaimable_are_shrunk_to_whole_pages() {
    let map = [efi(efi_type::CONVENTIONAL, 0, 0x10)];
    let overlays = [
        Overlay {
            base: 0x1800,
            len: 0x2000,
            ty: mt::BOOTLOADER_RECLAIMABLE,
        },
        Overlay {
            base: 0x6800,
            len: 0x1000,
            ty: mt::ACPI_NVS,
        },
        Overlay {
            base: 0x9100,
            len: 0x100,
            ty: mt::BOOTLOADER_RECLAIMABLE,
        },
    ];
    let out = convert(&map, &overlays).expect("converts");
    assert_eq!(
        out,
        vec![
            entry(0, 0x1000, mt::USABLE),
            entry(0x2000, 0x1000, mt::BOOTLOADER_RECLAIMABLE),
            entry(0x4000, 0x2000, mt::USABLE),
            // Unaligned types other than USABLE/RECLAIMABLE stay as they are.
            entry(0x6800, 0x1000, mt::ACPI_NVS),
            entry(0x8000, 0x1000, mt::USABLE),
            entry(0xa000, 0x6000, mt::USABLE),
        ]
    );
}

#[test]
fn reports_a_too_small_output() {
    let map = [
        efi(efi_type::CONVENTIONAL, 0, 1),
        efi(efi_type::ACPI_NVS, 2, 1),
    ];
    let mut out = [MemmapEntry::default(); 1];
    assert_eq!(
        convert_into(&map, &[], &mut out),
        Err(MemmapError::TooManyEntries { capacity: 1 })
    );
    let mut out = [MemmapEntry::default(); 2];
    assert_eq!(convert_into(&map, &[], &mut out), Ok(2));
    assert_eq!(convert_into(&[], &[], &mut []), Ok(0));
}

#[test]
fn huge_regions_do_not_overflow() {
    let map = [efi(efi_type::CONVENTIONAL, 0xffff_ffff_fff0, u64::MAX)];
    let out = convert(&map, &[]).expect("converts");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].base, 0xffff_ffff_fff0 * P);
    assert_eq!(out[0].base + out[0].length, u64::MAX - 0xfff);
}

#[test]
fn raw_efi_map_parsing() {
    let desc_size = 48;
    let mut raw = vec![0u8; desc_size * 2 + 7];
    let put = |raw: &mut [u8], i: usize, ty: u32, start: u64, pages: u64| {
        let o = i * desc_size;
        raw[o..o + 4].copy_from_slice(&ty.to_le_bytes());
        raw[o + 8..o + 16].copy_from_slice(&start.to_le_bytes());
        raw[o + 16..o + 24].copy_from_slice(&0xdead_u64.to_le_bytes());
        raw[o + 24..o + 32].copy_from_slice(&pages.to_le_bytes());
    };
    put(&mut raw, 0, efi_type::CONVENTIONAL, 0x1000, 3);
    put(&mut raw, 1, efi_type::ACPI_NVS, 0x9000, 1);
    let map = RawEfiMap::new(&raw, desc_size).expect("valid size");
    assert_eq!(map.len(), 2);
    let regions: Vec<_> = map.regions().collect();
    assert_eq!(
        regions,
        vec![
            efi(efi_type::CONVENTIONAL, 1, 3),
            efi(efi_type::ACPI_NVS, 9, 1)
        ]
    );
    let mut out = [MemmapEntry::default(); 4];
    let n = convert_iter_into(map.regions(), &[], &mut out).expect("converts");
    assert_eq!(
        out[..n],
        [
            entry(0x1000, 0x3000, mt::USABLE),
            entry(0x9000, P, mt::ACPI_NVS)
        ]
    );
    assert_eq!(
        RawEfiMap::new(&raw, 24).map(|m| m.len()),
        Err(MemmapError::BadDescriptorSize(24))
    );
}

#[test]
fn hhdm_ranges_follow_the_revision() {
    let map = [
        entry(0, 0x9f000, mt::USABLE),
        entry(0x9f000, 0x1000, mt::RESERVED),
        entry(0x100000, 0x10000, mt::BOOTLOADER_RECLAIMABLE),
        entry(0x110000, 0x4000, mt::EXECUTABLE_AND_MODULES),
        entry(0x114000, 0x1000, mt::USABLE),
        entry(0x200000, 0x800, mt::ACPI_RECLAIMABLE),
        entry(0x200800, 0x800, mt::ACPI_NVS),
        entry(0x8000_0800, 0x2000, mt::FRAMEBUFFER),
        entry(0x8000_3000, 0x1000, mt::BAD_MEMORY),
    ];
    let r3: Vec<_> = hhdm_ranges(&map, 3).collect();
    assert_eq!(
        r3,
        vec![
            HhdmRange {
                base: 0,
                len: 0x9f000,
                write_combining: false
            },
            HhdmRange {
                base: 0x100000,
                len: 0x15000,
                write_combining: false
            },
            HhdmRange {
                base: 0x8000_0000,
                len: 0x3000,
                write_combining: true
            },
        ]
    );
    let r4: Vec<_> = hhdm_ranges(&map, 4).collect();
    assert_eq!(
        r4[2],
        HhdmRange {
            base: 0x200000,
            len: 0x1000,
            write_combining: false
        }
    );
    assert_eq!(r4.len(), 4);
    assert!(!hhdm_maps_type(mt::RESERVED, 3) && !hhdm_maps_type(mt::RESERVED, 4));
    assert!(hhdm_maps_type(mt::RESERVED_MAPPED, 4) && !hhdm_maps_type(mt::RESERVED_MAPPED, 3));
}

/// Tiny deterministic generator.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 17
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Brute-force model: the expected type of page `p`, or `Err` if it conflicts with the
/// framebuffer. `None` = hole. For framebuffer pages, returns the type at the page start.
fn model(p: u64, map: &[EfiRegion], overlays: &[Overlay]) -> Result<Option<u64>, ()> {
    let a = p * P;
    let inside = |base: u64, len: u64| base <= a && a < base + len;
    let overlay = overlays
        .iter()
        .filter(|o| o.ty != mt::FRAMEBUFFER && inside(o.base, o.len))
        .map(|o| o.ty)
        .max_by_key(|&t| strength(t));
    let base = overlay.or_else(|| {
        map.iter()
            .filter(|r| inside(r.phys_start, r.pages * P))
            .map(|r| limine_type_for_efi(r.ty))
            .max_by_key(|&t| strength(t))
    });
    let fb_page = overlays.iter().any(|o| {
        o.ty == mt::FRAMEBUFFER
            && align_down(o.base, P) <= a
            && a < (o.base + o.len).div_ceil(P) * P
    });
    if !fb_page {
        return Ok(base);
    }
    match base {
        None | Some(mt::USABLE) | Some(mt::RESERVED) => Ok(Some(mt::FRAMEBUFFER)),
        Some(_) => Err(()),
    }
}

#[test]
fn random_maps_convert_like_the_model() {
    use efi_type::*;
    let types = [
        CONVENTIONAL,
        CONVENTIONAL,
        CONVENTIONAL,
        LOADER_DATA,
        BOOT_SERVICES_CODE,
        RESERVED,
        ACPI_RECLAIM,
        ACPI_NVS,
        MMIO,
        UNUSABLE,
        RUNTIME_SERVICES_DATA,
    ];
    let mut rng = Lcg(2024);
    let pages = 256;
    let mut conflicts = 0;
    for round in 0..400 {
        let mut map = Vec::new();
        for _ in 0..1 + rng.below(12) {
            let ty = types[rng.below(types.len() as u64) as usize];
            map.push(efi(ty, rng.below(pages), rng.below(40)));
        }
        let mut overlays = Vec::new();
        for _ in 0..rng.below(5) {
            let ty =
                [mt::EXECUTABLE_AND_MODULES, mt::BOOTLOADER_RECLAIMABLE][rng.below(2) as usize];
            overlays.push(Overlay {
                base: rng.below(pages) * P,
                len: (1 + rng.below(8)) * P,
                ty,
            });
        }
        if round % 3 == 0 {
            // Unaligned framebuffer.
            let base = rng.below(pages) * P + rng.below(P);
            overlays.push(Overlay {
                base,
                len: 1 + rng.below(4 * P),
                ty: mt::FRAMEBUFFER,
            });
        }
        let mut out = vec![MemmapEntry::default(); max_entries(map.len(), overlays.len())];
        let result = convert_into(&map, &overlays, &mut out);
        let expected: Result<Vec<_>, ()> =
            (0..pages + 40).map(|p| model(p, &map, &overlays)).collect();
        let Ok(expected) = expected else {
            assert!(
                matches!(result, Err(MemmapError::FramebufferConflict { .. })),
                "round {round}: conflict expected, got {result:?}"
            );
            conflicts += 1;
            continue;
        };
        let n = result.unwrap_or_else(|e| panic!("round {round}: {e}"));
        let out = &out[..n];

        for pair in out.windows(2) {
            assert!(
                pair[0].base + pair[0].length <= pair[1].base,
                "round {round}: sorted, disjoint"
            );
            let touching = pair[0].base + pair[0].length == pair[1].base;
            assert!(
                !(touching && pair[0].ty == pair[1].ty),
                "round {round}: merged"
            );
        }
        for e in out {
            assert!(e.length > 0);
            if e.ty == mt::USABLE || e.ty == mt::BOOTLOADER_RECLAIMABLE {
                assert_eq!(e.base % P, 0, "round {round}: aligned base {e:?}");
                assert_eq!(e.length % P, 0, "round {round}: aligned length {e:?}");
            }
        }
        // Page by page, the output agrees with the model: no usable byte lost or invented.
        for (p, want) in expected.iter().enumerate() {
            let a = p as u64 * P;
            let covering = out
                .iter()
                .filter(|e| e.base < a + P && a < e.base + e.length);
            if *want == Some(mt::FRAMEBUFFER) {
                assert!(
                    covering.clone().all(|e| e.ty == mt::FRAMEBUFFER),
                    "round {round}: page {p:#x} shares with the framebuffer"
                );
                continue;
            }
            let got: Vec<_> = covering.collect();
            match want {
                None => assert!(
                    got.is_empty(),
                    "round {round}: page {p:#x} should be a hole: {got:?}"
                ),
                Some(ty) => {
                    assert_eq!(got.len(), 1, "round {round}: page {p:#x}: {got:?}");
                    assert_eq!(got[0].ty, *ty, "round {round}: page {p:#x}");
                    assert!(got[0].base <= a && a + P <= got[0].base + got[0].length);
                }
            }
        }
    }
    assert!(
        conflicts > 0 && conflicts < 130,
        "both outcomes exercised ({conflicts})"
    );
}

#[test]
fn strict_split_halves_usable_and_reclaimable_runs() {
    let mut out = vec![MemmapEntry::default(); 8];
    out[0] = entry(0, 0x1000, mt::USABLE); // one page: kept whole
    out[1] = entry(0x1000, 0x9f000, mt::USABLE);
    out[2] = entry(0xa0000, 0x60000, mt::RESERVED); // not split
    out[3] = entry(0x20_0000, 0x40_0000, mt::BOOTLOADER_RECLAIMABLE); // half point 2 MiB aligned
    let n = split_for_strict(&mut out, 4).expect("room");
    assert_eq!(n, 6);
    let got = &out[..n];
    assert_eq!(got[0], entry(0, 0x1000, mt::USABLE));
    assert_eq!(got[1], entry(0x1000, 0x4f000, mt::USABLE));
    assert_eq!(got[2], entry(0x50000, 0x50000, mt::USABLE));
    assert_eq!(got[3], entry(0xa0000, 0x60000, mt::RESERVED));
    // The cut avoids the 2 MiB boundary at 0x400000.
    assert_eq!(
        got[4],
        entry(0x20_0000, 0x20_1000, mt::BOOTLOADER_RECLAIMABLE)
    );
    assert_eq!(
        got[5],
        entry(0x40_1000, 0x1f_f000, mt::BOOTLOADER_RECLAIMABLE)
    );
    // Still sorted, aligned, disjoint and covering the same bytes.
    for pair in got.windows(2) {
        assert!(pair[0].base + pair[0].length <= pair[1].base);
    }
    assert!(
        got.iter()
            .all(|e| e.base % P == 0 && e.length % P == 0 && e.length > 0)
    );
}

#[test]
fn strict_split_refuses_without_room_and_changes_nothing() {
    let mut out = vec![
        entry(0x1000, 0x2000, mt::USABLE),
        entry(0x4000, 0x2000, mt::USABLE),
    ];
    let before = out.clone();
    assert!(matches!(
        split_for_strict(&mut out, 2),
        Err(MemmapError::TooManyEntries { capacity: 2 })
    ));
    assert_eq!(out, before);
}
