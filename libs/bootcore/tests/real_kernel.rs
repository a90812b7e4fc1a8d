//! End-to-end check against the real kernel build, if one exists: parse, load, scan and
//! answer the base revision exactly as the loader does. Skipped when the kernel is absent.

use bootcore::{
    HIGHER_HALF_KERNEL_BASE, elf,
    proto::{Feature, req},
    requests,
};

fn kernel() -> Option<Vec<u8>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../target/x86_64-unknown-none/release/kernel"
    );
    match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(_) => {
            eprintln!("skipping: no kernel at {path}");
            None
        }
    }
}

#[test]
fn real_kernel_loads_and_has_revision_3_requests() {
    let Some(file) = kernel() else { return };
    let exe = elf::parse(&file).expect("the kernel is a valid Limine executable");
    assert!(!exe.is_relocatable(), "the kernel is a static ET_EXEC");
    assert!(exe.min_vaddr() >= HIGHER_HALF_KERNEL_BASE);
    let slide = exe.slide_for(None).expect("slide");
    assert_eq!(slide, 0);
    let entry = exe
        .entry_point(slide, None)
        .expect("entry in an executable segment");
    assert!(entry >= HIGHER_HALF_KERNEL_BASE);
    for s in exe.segments() {
        assert!(
            !(s.write && s.exec),
            "W^X: segment {} is writable and executable",
            s.index
        );
    }

    let mut image = vec![0u8; usize::try_from(exe.image_size()).expect("fits")];
    exe.load(&mut image, slide).expect("loads");
    let scan_len = usize::try_from(exe.scan_len()).expect("fits");
    let scan = requests::scan(&image, scan_len).expect("scan");
    assert!(
        scan.start_marker && scan.end_marker,
        "the kernel uses request markers"
    );
    let tag = scan.base_revision.expect("base revision tag");
    assert_eq!(requests::decide_revision(Some(tag.requested)), Ok(3));
    assert!(
        scan.find(Feature::Hhdm).is_some(),
        "the kernel asks for the HHDM"
    );
    assert!(
        scan.find(Feature::MemoryMap).is_some(),
        "the kernel asks for the memory map"
    );
    for r in &scan.requests {
        assert_eq!(
            requests::read_u64(&image, r.field(req::RESPONSE)),
            Ok(0),
            "NULL response"
        );
    }

    requests::write_base_revision(&mut image, &tag, true, 3).expect("in bounds");
    assert_eq!(requests::read_u64(&image, tag.offset + 8), Ok(3));
    assert_eq!(requests::read_u64(&image, tag.offset + 16), Ok(0));
}
