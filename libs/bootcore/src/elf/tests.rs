use std::{vec, vec::Vec};

use elf::abi::{
    DT_JMPREL, DT_NULL, DT_PLTREL, DT_PLTRELSZ, DT_RELA, DT_RELAENT, DT_RELASZ, DT_SYMENT,
    DT_SYMTAB, SHN_ABS, SHN_UNDEF,
};

use super::{reloc::*, *};

/// A program header for the test builder.
#[derive(Clone, Copy)]
struct Ph {
    ty: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
    memsz: u64,
    align: u64,
}

fn load(flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> Ph {
    Ph {
        ty: PT_LOAD,
        flags,
        offset,
        vaddr,
        filesz,
        memsz,
        align: 0x1000,
    }
}

fn put_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

fn get_u64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

/// Assembles an ELF64 x86-64 file: header, program headers at 64, `len` bytes in total,
/// with `chunks` copied to their file offsets.
fn build(e_type: u16, entry: u64, phs: &[Ph], len: usize, chunks: &[(usize, &[u8])]) -> Vec<u8> {
    let mut f = vec![0u8; len.max(64 + phs.len() * 56)];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // ELFCLASS64
    f[5] = 1; // little-endian
    f[6] = 1; // EV_CURRENT
    put_u16(&mut f, 16, e_type);
    put_u16(&mut f, 18, EM_X86_64);
    put_u32(&mut f, 20, 1);
    put_u64(&mut f, 24, entry);
    put_u64(&mut f, 32, 64);
    put_u16(&mut f, 52, 64);
    put_u16(&mut f, 54, 56);
    put_u16(&mut f, 56, phs.len() as u16);
    for (i, ph) in phs.iter().enumerate() {
        let o = 64 + i * 56;
        put_u32(&mut f, o, ph.ty);
        put_u32(&mut f, o + 4, ph.flags);
        put_u64(&mut f, o + 8, ph.offset);
        put_u64(&mut f, o + 16, ph.vaddr);
        put_u64(&mut f, o + 24, ph.vaddr);
        put_u64(&mut f, o + 32, ph.filesz);
        put_u64(&mut f, o + 40, ph.memsz);
        put_u64(&mut f, o + 48, ph.align);
    }
    for (off, bytes) in chunks {
        f[*off..*off + bytes.len()].copy_from_slice(bytes);
    }
    f
}

const KBASE: u64 = HIGHER_HALF_KERNEL_BASE;

/// A static kernel-like ET_EXEC: text (RX), rodata (R), data+bss (RW).
fn static_kernel() -> Vec<u8> {
    let phs = [
        load(PF_R | PF_X, 0x1000, KBASE, 0x10, 0x10),
        load(PF_R, 0x2000, KBASE + 0x1000, 0x8, 0x8),
        load(PF_R | PF_W, 0x3000, KBASE + 0x2000, 0x14, 0x3000),
    ];
    build(
        ET_EXEC,
        KBASE + 4,
        &phs,
        0x3014,
        &[
            (0x1000, &[0x90; 16]),
            (0x2000, b"rodata!!"),
            (0x3000, &[0x11; 0x14]),
        ],
    )
}

#[test]
fn parses_static_kernel() {
    let file = static_kernel();
    let exe = parse(&file).expect("valid kernel");
    assert!(!exe.is_relocatable());
    assert_eq!(exe.entry(), KBASE + 4);
    assert_eq!(exe.min_vaddr(), KBASE);
    assert_eq!(exe.max_vaddr(), KBASE + 0x5000);
    assert_eq!(exe.image_size(), 0x5000);
    assert_eq!(exe.max_align(), 0x1000);
    // File-backed part ends at 0x2000 + 0x14, aligned down to 8.
    assert_eq!(exe.scan_len(), 0x2010);
    let segs = exe.segments();
    assert_eq!(segs.len(), 3);
    assert!(segs[0].exec && !segs[0].write && segs[0].read);
    assert!(!segs[1].exec && !segs[1].write);
    assert!(segs[2].write && !segs[2].exec);
    assert_eq!(
        (segs[2].filesz, segs[2].memsz, segs[2].offset),
        (0x14, 0x3000, 0x3000)
    );
    assert_eq!(exe.slide_for(None), Ok(0));
    assert_eq!(
        exe.slide_for(Some(12345)),
        Ok(0),
        "no KASLR for static executables"
    );
    assert_eq!(exe.entry_point(0, None), Ok(KBASE + 4));
}

#[test]
fn loads_static_kernel_and_zeroes_bss() {
    let file = static_kernel();
    let exe = parse(&file).expect("valid kernel");
    let mut image = vec![0xee; exe.image_size() as usize];
    exe.load(&mut image, 0).expect("loads");
    assert_eq!(&image[..16], &[0x90; 16]);
    assert!(image[16..0x1000].iter().all(|&b| b == 0));
    assert_eq!(&image[0x1000..0x1008], b"rodata!!");
    assert_eq!(&image[0x2000..0x2014], &[0x11; 0x14]);
    assert!(
        image[0x2014..].iter().all(|&b| b == 0),
        ".bss and gaps are zero"
    );
    assert_eq!(
        exe.load(&mut image, 0x1000),
        Err(ElfError::BadSlide(0x1000))
    );
    let mut short = vec![0; 10];
    assert!(matches!(
        exe.load(&mut short, 0),
        Err(ElfError::ImageBufferSize { .. })
    ));
}

#[test]
fn entry_point_must_be_in_an_executable_segment() {
    let file = static_kernel();
    let exe = parse(&file).expect("valid kernel");
    assert_eq!(exe.entry_point(0, Some(KBASE + 8)), Ok(KBASE + 8));
    assert_eq!(
        exe.entry_point(0, Some(KBASE + 0x1000)),
        Err(ElfError::EntryOutsideImage(KBASE + 0x1000)),
        "rodata is not executable"
    );
    assert!(exe.entry_point(0, Some(0)).is_err());
}

fn expect_err(file: &[u8], want: ElfError) {
    match parse(file) {
        Err(e) => assert_eq!(e, want),
        Ok(_) => panic!("expected {want:?}"),
    }
}

#[test]
fn rejects_bad_identification() {
    let good = static_kernel();
    expect_err(&good[..63], ElfError::Truncated("ELF header"));
    expect_err(&[], ElfError::Truncated("ELF header"));
    let mut f = good.clone();
    f[0] = b'X';
    expect_err(&f, ElfError::BadMagic);
    let mut f = good.clone();
    f[4] = 1;
    expect_err(&f, ElfError::NotElf64);
    let mut f = good.clone();
    f[5] = 2;
    expect_err(&f, ElfError::NotLittleEndian);
    let mut f = good.clone();
    put_u16(&mut f, 18, 0x28);
    expect_err(&f, ElfError::WrongMachine(0x28));
    let mut f = good.clone();
    put_u16(&mut f, 16, 1);
    expect_err(&f, ElfError::WrongType(1));
    let mut f = good.clone();
    f[6] = 2;
    expect_err(&f, ElfError::BadHeader("EI_VERSION is not EV_CURRENT"));
    let mut f = good;
    put_u16(&mut f, 54, 32);
    expect_err(&f, ElfError::BadHeader("e_phentsize smaller than 56"));
}

#[test]
fn program_headers_may_be_spaced_wider_than_56_bytes() {
    let good = static_kernel();
    let mut f = good.clone();
    // Move each of the three entries to a 64-byte stride (last first: they overlap).
    for i in (0..3).rev() {
        let entry = good[64 + i * 56..64 + (i + 1) * 56].to_vec();
        f[64 + i * 64..64 + i * 64 + 56].copy_from_slice(&entry);
        f[64 + i * 64 + 56..64 + (i + 1) * 64].fill(0xee);
    }
    put_u16(&mut f, 54, 64);
    let wide = parse(&f).expect("valid with e_phentsize 64");
    let narrow = parse(&good).expect("valid kernel");
    assert_eq!(wide.segments(), narrow.segments());
}

#[test]
fn section_headers_are_not_needed_to_load() {
    // A loader reads program headers only; a section header table outside the file (as
    // after careless stripping) is no reason to refuse the kernel.
    let mut f = static_kernel();
    put_u64(&mut f, 40, u64::MAX - 8);
    put_u16(&mut f, 58, 64);
    put_u16(&mut f, 60, 5);
    let exe = parse(&f).expect("section headers are ignored");
    let mut image = vec![0; exe.image_size() as usize];
    exe.load(&mut image, 0).expect("loads");
}

#[test]
fn rejects_bad_segments() {
    let rx = PF_R | PF_X;
    let text = load(rx, 0x1000, KBASE, 0x10, 0x10);
    let len = 0x2000;
    let mk = |phs: &[Ph]| build(ET_EXEC, KBASE, phs, len, &[]);

    expect_err(
        &mk(&[load(rx, 0x1000, KBASE, 0x20, 0x10)]),
        ElfError::FileszExceedsMemsz { index: 0 },
    );
    expect_err(
        &mk(&[text, load(PF_R, 0x1f00, KBASE + 0x1000, 0x200, 0x200)]),
        ElfError::SegmentOutOfFile { index: 1 },
    );
    expect_err(
        &mk(&[load(PF_R, u64::MAX - 4, KBASE, 0x10, 0x10)]),
        ElfError::SegmentOutOfFile { index: 0 },
    );
    expect_err(
        &mk(&[text, load(rx, 0x1000, KBASE + 8, 0x8, 0x8)]),
        ElfError::SegmentsOverlap { a: 0, b: 1 },
    );
    expect_err(
        &mk(&[text, load(PF_R | PF_W, 0x1000, KBASE + 0x800, 0x8, 0x8)]),
        ElfError::PermissionsSharePage { a: 0, b: 1 },
    );
    expect_err(&mk(&[]), ElfError::NoLoadableSegments);
    expect_err(
        &mk(&[load(rx, 0x1000, KBASE, 0, 0)]),
        ElfError::NoLoadableSegments,
    );
    expect_err(
        &mk(&[load(rx, 0x1000, 0x20_0000, 0x10, 0x10)]),
        ElfError::NotInTopTwoGib,
    );
    expect_err(
        &mk(&[load(rx, 0x1000, 0xffff_8000_0000_0000, 0x10, 0x10)]),
        ElfError::NotInTopTwoGib,
    );
    expect_err(
        &mk(&[text, load(PF_R, 0x1000, 0x40_0000, 0x10, 0x10)]),
        ElfError::MixedHalves,
    );
    expect_err(
        &mk(&[load(rx, 0x1000, u64::MAX - 0x10, 0, 0x100)]),
        ElfError::SegmentAddressOverflow { index: 0 },
    );
    let mut odd_align = text;
    odd_align.align = 3;
    expect_err(&mk(&[odd_align]), ElfError::BadAlignment { index: 0 });
    // Same permissions may share a page.
    assert!(parse(&mk(&[text, load(rx, 0x1000, KBASE + 0x800, 0x8, 0x8)])).is_ok());
}

#[test]
fn rejects_dyn_without_dynamic() {
    let f = build(
        ET_DYN,
        0,
        &[load(PF_R | PF_X, 0x1000, 0, 0x10, 0x10)],
        0x1010,
        &[],
    );
    expect_err(&f, ElfError::DynWithoutDynamic);
}

#[test]
fn program_header_table_out_of_file() {
    let mut f = static_kernel();
    put_u64(&mut f, 32, u64::MAX - 8);
    expect_err(&f, ElfError::Truncated("program header table"));
    let mut f = static_kernel();
    put_u16(&mut f, 56, 0xfffe);
    expect_err(&f, ElfError::Truncated("program header table"));
    let mut f = static_kernel();
    put_u16(&mut f, 56, 0xffff);
    assert!(matches!(parse(&f), Err(ElfError::BadHeader(_))));
}

/// Tiny deterministic generator for fuzz-style tests.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 17
    }
}

#[test]
fn never_panics_on_truncated_or_mutated_files() {
    for file in [static_kernel(), dyn_kernel().0] {
        for len in 0..file.len().min(0x400) {
            let _ = parse(&file[..len]);
        }
        let mut rng = Lcg(7);
        for _ in 0..3000 {
            let mut f = file.clone();
            for _ in 0..1 + rng.next() % 4 {
                let i = (rng.next() as usize) % 0x500.min(f.len());
                f[i] = rng.next() as u8;
                if rng.next().is_multiple_of(4) {
                    // Hostile 64-bit values in header fields.
                    let o = (rng.next() as usize % 0x400).min(f.len() - 8);
                    put_u64(
                        &mut f,
                        o,
                        [u64::MAX, 1 << 63, 0, KBASE][rng.next() as usize % 4],
                    );
                }
            }
            if let Ok(exe) = parse(&f)
                && exe.image_size() <= 1 << 20
            {
                let mut image = vec![0; exe.image_size() as usize];
                if let Ok(slide) = exe.slide_for(Some(rng.next())) {
                    let _ = exe.load(&mut image, slide);
                }
            }
        }
    }
}

/// An ET_DYN linked at 0 with RELA, JMPREL and RELR relocations. Returns the file and the
/// expected relocated values as `(image offset, value without slide, slid)`.
fn dyn_kernel() -> (Vec<u8>, Vec<(usize, u64, bool)>) {
    // Data segment: vaddr 0x1000, file offset 0x2000, 0x1000 bytes in the file.
    let mut d = vec![0u8; 0x1000];
    let dv = 0x1000u64; // data vaddr
    // RELR targets with initial (unslid) values.
    put_u64(&mut d, 0x40, 0x100);
    put_u64(&mut d, 0x48, 0x200);
    put_u64(&mut d, 0x50, 0x999);
    put_u64(&mut d, 0x58, 0x300);
    // Dynamic section at 0x100.
    let dynamic = [
        (DT_RELA, dv + 0x200),
        (DT_RELASZ, 5 * 24),
        (DT_RELAENT, 24),
        (DT_JMPREL, dv + 0x300),
        (DT_PLTRELSZ, 24),
        (DT_PLTREL, DT_RELA as u64),
        (DT_RELR, dv + 0x380),
        (DT_RELRSZ, 16),
        (DT_RELRENT, 8),
        (DT_SYMTAB, dv + 0x400),
        (DT_SYMENT, 24),
        (DT_NULL, 0),
    ];
    for (i, (tag, val)) in dynamic.iter().enumerate() {
        put_u64(&mut d, 0x100 + i * 16, *tag as u64);
        put_u64(&mut d, 0x108 + i * 16, *val);
    }
    let rela = |d: &mut [u8], at: usize, offset: u64, sym: u64, ty: u64, addend: u64| {
        put_u64(d, at, offset);
        put_u64(d, at + 8, sym << 32 | ty);
        put_u64(d, at + 16, addend);
    };
    rela(&mut d, 0x200, 0, 0, 0, 0); // R_X86_64_NONE
    rela(&mut d, 0x218, dv, 0, 8, 0x40); // RELATIVE
    rela(&mut d, 0x230, dv + 8, 1, 1, 8); // 64 with sym1
    rela(&mut d, 0x248, dv + 0x10, 1, 6, 0); // GLOB_DAT sym1
    rela(&mut d, 0x260, dv + 0x20, 3, 1, 1); // 64 with absolute sym3
    rela(&mut d, 0x300, dv + 0x18, 2, 7, 0); // JUMP_SLOT weak undefined sym2
    // RELR: address entry, then a bitmap for +8 (bit 1) and +24 (bit 3).
    put_u64(&mut d, 0x380, dv + 0x40);
    put_u64(&mut d, 0x388, 0b1011);
    // Symbols: 0 null, 1 defined global at 0x10, 2 weak undefined, 3 absolute 0x1234.
    let sym = |d: &mut [u8], i: usize, info: u8, shndx: u16, value: u64| {
        let o = 0x400 + i * 24;
        d[o + 4] = info;
        put_u16(d, o + 6, shndx);
        put_u64(d, o + 8, value);
    };
    sym(&mut d, 1, 0x12, 1, 0x10);
    sym(&mut d, 2, 0x22, SHN_UNDEF, 0);
    sym(&mut d, 3, 0x10, SHN_ABS, 0x1234);

    let phs = [
        load(PF_R | PF_X, 0x1000, 0, 0x10, 0x10),
        load(PF_R | PF_W, 0x2000, dv, 0x1000, 0x2000),
        Ph {
            ty: PT_DYNAMIC,
            flags: PF_R | PF_W,
            offset: 0x2100,
            vaddr: dv + 0x100,
            filesz: 12 * 16,
            memsz: 12 * 16,
            align: 8,
        },
    ];
    let file = build(
        ET_DYN,
        0x4,
        &phs,
        0x3000,
        &[(0x1000, &[0xc3; 16]), (0x2000, &d)],
    );
    let expect = vec![
        (0x1000, 0x40, true),
        (0x1008, 0x10 + 8, true),
        (0x1010, 0x10, true),
        (0x1018, 0, false),
        (0x1020, 0x1235, false),
        (0x1040, 0x100, true),
        (0x1048, 0x200, true),
        (0x1050, 0x999, false),
        (0x1058, 0x300, true),
    ];
    (file, expect)
}

#[test]
fn relocates_pie_linked_at_zero() {
    let (file, expect) = dyn_kernel();
    let exe = parse(&file).expect("valid PIE");
    assert!(exe.is_relocatable());
    assert_eq!(exe.min_vaddr(), 0);
    assert_eq!(exe.image_size(), 0x3000);
    let slide = exe.slide_for(None).expect("fits");
    assert_eq!(slide, KBASE, "lower-half images slide to the top 2 GiB");
    let mut image = vec![0; 0x3000];
    exe.load(&mut image, slide).expect("loads");
    for (off, value, slid) in expect {
        let want = if slid { value + slide } else { value };
        assert_eq!(get_u64(&image, off), want, "at image offset {off:#x}");
    }
    assert_eq!(&image[..16], &[0xc3; 16]);
    assert_eq!(exe.entry_point(slide, None), Ok(KBASE + 4));
}

#[test]
fn kaslr_slides_are_aligned_and_keep_the_image_in_the_top_2_gib() {
    let (file, expect) = dyn_kernel();
    let exe = parse(&file).expect("valid PIE");
    let mut rng = Lcg(99);
    let mut distinct = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let slide = exe.slide_for(Some(rng.next())).expect("fits");
        assert_eq!(slide % exe.max_align(), 0);
        assert!(slide >= KBASE);
        assert!(u128::from(slide) + u128::from(exe.image_size()) <= 1 << 64);
        distinct.insert(slide);
    }
    assert!(distinct.len() > 150, "slides should vary");
    let slide = exe.slide_for(Some(u64::MAX)).expect("fits");
    let mut image = vec![0; 0x3000];
    exe.load(&mut image, slide).expect("loads");
    for (off, value, slid) in expect {
        let want = if slid {
            value.wrapping_add(slide)
        } else {
            value
        };
        assert_eq!(get_u64(&image, off), want);
    }
    assert_eq!(
        exe.load(&mut image, slide + 0x800),
        Err(ElfError::BadSlide(slide + 0x800))
    );
    assert_eq!(exe.load(&mut image, 0), Err(ElfError::BadSlide(0)));
}

#[test]
fn higher_half_pie_is_not_moved_without_kaslr() {
    let (mut file, _) = dyn_kernel();
    // Re-link the segments and tables at the top 2 GiB.
    for i in 0..3 {
        let o = 64 + i * 56 + 16;
        let v = get_u64(&file, o);
        put_u64(&mut file, o, v + KBASE);
    }
    for tag in [DT_RELA, DT_JMPREL, DT_RELR, DT_SYMTAB] {
        let v = (0..12)
            .map(|i| 0x2100 + i * 16)
            .find(|&o| get_u64(&file, o) == tag as u64);
        let v = get_u64(&file, v.expect("tag present") + 8);
        patch_dynamic(&mut file, tag, v + KBASE);
    }
    let exe = parse(&file).expect("valid PIE");
    assert_eq!(exe.min_vaddr(), KBASE);
    assert_eq!(exe.slide_for(None), Ok(0));
    let slide = exe.slide_for(Some(5)).expect("fits");
    assert_eq!(slide, 5 * exe.max_align(), "KASLR only moves up");
}

/// Patches the dynamic entry with tag `tag` in the `dyn_kernel` file.
fn patch_dynamic(file: &mut [u8], tag: i64, value: u64) {
    for i in 0..12 {
        let o = 0x2100 + i * 16;
        if get_u64(file, o) == tag as u64 {
            put_u64(file, o + 8, value);
            return;
        }
    }
    panic!("tag {tag} not found");
}

#[test]
fn rejects_bad_dynamic_sections() {
    let (mut f, _) = dyn_kernel();
    patch_dynamic(&mut f, DT_PLTREL, 17);
    expect_err(&f, ElfError::PltRelNotRela);

    let (mut f, _) = dyn_kernel();
    patch_dynamic(&mut f, DT_RELAENT, 16);
    expect_err(&f, ElfError::BadDynamic("DT_RELAENT is not 24"));

    let (mut f, _) = dyn_kernel();
    patch_dynamic(&mut f, DT_RELASZ, 1 << 40);
    expect_err(&f, ElfError::BadDynamic("DT_RELA table"));

    let (mut f, _) = dyn_kernel();
    patch_dynamic(&mut f, DT_RELR, u64::MAX - 4);
    expect_err(&f, ElfError::BadDynamic("DT_RELR table"));
}

#[test]
fn rejects_bad_relocations_at_load() {
    let load_err = |f: &[u8]| {
        let exe = parse(f).expect("parses");
        let mut image = vec![0; exe.image_size() as usize];
        exe.load(&mut image, KBASE).expect_err("load must fail")
    };
    // Unsupported type (R_X86_64_PC32 = 2) in the RELATIVE slot.
    let (mut f, _) = dyn_kernel();
    put_u64(&mut f, 0x2218 + 8, 2);
    assert_eq!(load_err(&f), ElfError::UnsupportedRelocation(2));
    // Target outside the image.
    let (mut f, _) = dyn_kernel();
    put_u64(&mut f, 0x2218, 0x2ffc);
    assert_eq!(
        load_err(&f),
        ElfError::RelocationOutOfImage { offset: 0x2ffc }
    );
    let (mut f, _) = dyn_kernel();
    put_u64(&mut f, 0x2380, u64::MAX - 3);
    assert_eq!(
        load_err(&f),
        ElfError::RelocationOutOfImage {
            offset: u64::MAX - 3
        }
    );
    // Symbol index beyond the file.
    let (mut f, _) = dyn_kernel();
    put_u64(&mut f, 0x2230 + 8, 0xffff_ffff << 32 | 1);
    assert_eq!(load_err(&f), ElfError::BadSymbol(0xffff_ffff));
    // Undefined non-weak symbol.
    let (mut f, _) = dyn_kernel();
    f[0x2400 + 2 * 24 + 4] = 0x12;
    assert_eq!(load_err(&f), ElfError::BadSymbol(2));
    // Just past the file part of the segment holding the symbol table (128 entries fit).
    let (mut f, _) = dyn_kernel();
    put_u64(&mut f, 0x2230 + 8, 128 << 32 | 1);
    assert_eq!(load_err(&f), ElfError::BadSymbol(128));
}

#[test]
fn symbol_table_reaches_to_the_end_of_its_segment() {
    // The last of the 128 entries that fit in the data segment's file part is readable.
    let (mut f, _) = dyn_kernel();
    let last = 0x2400 + 127 * 24;
    f[last + 4] = 0x12; // STB_GLOBAL, STT_FUNC
    put_u16(&mut f, last + 6, 1);
    put_u64(&mut f, last + 8, 0x20);
    put_u64(&mut f, 0x2230 + 8, 127 << 32 | 1); // R_X86_64_64, addend 8
    let exe = parse(&f).expect("valid PIE");
    let mut image = vec![0; exe.image_size() as usize];
    exe.load(&mut image, KBASE).expect("loads");
    assert_eq!(get_u64(&image, 0x1008), KBASE + 0x20 + 8);
}

#[test]
fn negative_addends_wrap() {
    // R_X86_64_RELATIVE with addend -8: the slide minus 8.
    let (mut f, _) = dyn_kernel();
    put_u64(&mut f, 0x2218 + 16, (-8i64) as u64);
    let exe = parse(&f).expect("valid PIE");
    let mut image = vec![0; exe.image_size() as usize];
    exe.load(&mut image, KBASE).expect("loads");
    assert_eq!(get_u64(&image, 0x1000), KBASE - 8);
}
