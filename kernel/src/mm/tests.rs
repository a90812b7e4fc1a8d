//! In-kernel tests of memory management (run by `test=kernel`).

use alloc::{boxed::Box, vec::Vec};
use core::sync::atomic::{AtomicU64, Ordering};

use hal::{
    mm::{self, Frame, MapError, PAGE_SIZE},
    trap::probe_read,
};

use crate::{
    check,
    ktest::{TestResult, ktest},
};

/// A test failure reason.
fn why(args: core::fmt::Arguments<'_>) -> alloc::string::String {
    alloc::fmt::format(args)
}

/// Frames come out page-aligned and distinct; bad frees are refused.
#[ktest("mm-frames-distinct")]
pub fn frames_distinct() -> TestResult {
    let before = mm::stats().frames;
    let mut frames = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let Some(frame) = mm::alloc_frame() else {
            return Err(why(format_args!("out of frames after {}", frames.len())));
        };
        check!(frame % PAGE_SIZE == 0 && frame != 0, "frame {frame:#x}");
        frames.push(frame);
    }
    let allocated = mm::stats().frames.allocated - before.allocated;
    check!(allocated >= 1000, "allocated count grew by {allocated}");
    let mut sorted = frames.clone();
    sorted.sort_unstable();
    sorted.dedup();
    check!(
        sorted.len() == 1000,
        "only {} distinct frames",
        sorted.len()
    );
    for &frame in &frames {
        check!(mm::free_frame(frame).is_ok(), "freeing {frame:#x}");
    }
    let again = mm::free_frame(frames[0]);
    check!(again.is_err(), "double free of {:#x} accepted", frames[0]);
    // The page-table root belongs to hal, not to raw-frame callers.
    let root = hal::paging::ActiveTables::current().root();
    check!(
        mm::free_frame(root).is_err(),
        "freeing the page-table root accepted"
    );
    check!(
        mm::free_frame(root + 12).is_err(),
        "misaligned free accepted"
    );
    Ok(())
}

/// Allocating until memory runs out hands out every free frame once, then nothing; a frame
/// freed then is the next one handed out.
#[ktest("mm-frames-exhaust-reuse")]
pub fn frames_exhaust_and_reuse() -> TestResult {
    // Room for every frame's number, allocated before the frames run out.
    let mut taken = Vec::with_capacity(mm::stats().frames.free as usize + 1024);
    let free_before = mm::stats().frames.free;
    while taken.len() < taken.capacity() {
        match mm::alloc_frame() {
            Some(frame) => taken.push(frame),
            None => break,
        }
    }
    let exhausted = mm::alloc_frame().is_none() && mm::alloc_contiguous(1, 1).is_none();
    let count = taken.len() as u64;
    let last = taken.last().copied();
    let reused = last.map(|frame| {
        let _ = mm::free_frame(frame);
        mm::alloc_frame()
    });
    // Nothing may allocate while memory is exhausted: sort in place, count without a copy.
    taken.sort_unstable();
    let distinct = taken.len() - taken.windows(2).filter(|w| w[0] == w[1]).count();
    for frame in taken {
        let _ = mm::free_frame(frame);
    }
    check!(exhausted, "allocation still succeeded after {count} frames");
    check!(
        count == free_before,
        "{count} frames handed out, {free_before} were free"
    );
    check!(
        distinct as u64 == count,
        "{count} frames, {distinct} distinct"
    );
    check!(
        reused == Some(last),
        "after freeing {last:x?} the next frame was {reused:x?}"
    );
    check!(
        mm::stats().frames.free == free_before,
        "free count {} after freeing all, was {free_before}",
        mm::stats().frames.free
    );
    Ok(())
}

/// Contiguous runs are aligned, disjoint, and must be freed whole with the right size.
#[ktest("mm-frames-contiguous")]
pub fn frames_contiguous() -> TestResult {
    let requests = [(5, 8), (512, 512), (3, 1), (64, 16)];
    let mut runs = [(0u64, 0u64); 4];
    for (run, &(pages, align)) in runs.iter_mut().zip(&requests) {
        let Some(start) = mm::alloc_contiguous(pages, align) else {
            return Err(why(format_args!(
                "no run of {pages} pages aligned to {align}"
            )));
        };
        check!(
            start % (align * PAGE_SIZE) == 0,
            "run {start:#x} not aligned to {align} pages"
        );
        *run = (start, pages);
    }
    let mut sorted = runs;
    sorted.sort_unstable();
    for pair in sorted.windows(2) {
        check!(
            pair[0].0 + pair[0].1 * PAGE_SIZE <= pair[1].0,
            "runs overlap: {pair:x?}"
        );
    }
    let (start, pages) = runs[0];
    check!(
        mm::free_contiguous(start, pages - 1).is_err(),
        "partial free accepted"
    );
    check!(
        mm::free_frame(start).is_err(),
        "single-frame free of a run accepted"
    );
    for (start, pages) in runs {
        check!(
            mm::free_contiguous(start, pages).is_ok(),
            "freeing run {start:#x}"
        );
    }
    check!(
        mm::free_contiguous(start, pages).is_err(),
        "double free of a run accepted"
    );
    Ok(())
}

/// A frame mapped in the scratch window reads back through the mapping; after unmapping the
/// address faults, and a new mapping there shows the new frame (the TLB was flushed).
#[ktest("mm-map-unmap")]
pub fn map_unmap() -> TestResult {
    let virt = mm::SCRATCH_BASE + 0x1234_5000;
    let (Some(mut a), Some(mut b)) = (Frame::alloc(), Frame::alloc()) else {
        return Err(why(format_args!("no frames")));
    };
    a.write_u64(0x18, 0xaaaa_5555_0000_0001);
    b.write_u64(0x18, 0xbbbb_6666_0000_0002);

    check!(mm::map_page(virt, a.phys()).is_ok(), "mapping {virt:#x}");
    let read = probe_read(virt + 0x18);
    check!(
        read == Ok(0xaaaa_5555_0000_0001),
        "read {read:x?} through the mapping"
    );
    let mapping = mm::translate(virt);
    check!(
        mapping.is_some_and(|m| m.phys == a.phys() && !m.writable && !m.executable),
        "mapping {mapping:x?}"
    );
    check!(
        mm::map_page(virt, b.phys()).is_err(),
        "mapping over a mapped page accepted"
    );
    let unmapped = mm::unmap_page(virt);
    check!(unmapped == Ok(a.phys()), "unmap returned {unmapped:x?}");
    match probe_read(virt) {
        Ok(v) => return Err(why(format_args!("read {v:#x} after unmapping"))),
        Err(fault) => check!(fault.address == virt, "fault at {:#x}", fault.address),
    }
    check!(mm::map_page(virt, b.phys()).is_ok(), "remapping {virt:#x}");
    let read = probe_read(virt + 0x18);
    check!(
        read == Ok(0xbbbb_6666_0000_0002),
        "stale TLB: read {read:x?}"
    );
    check!(mm::unmap_page(virt).is_ok(), "second unmap");
    check!(
        mm::unmap_page(virt) == Err(MapError::Table(hal::mm::TableError::NotMapped(virt))),
        "unmapping twice accepted"
    );
    let outside = mm::map_page(mm::HEAP_BASE, a.phys());
    check!(
        outside == Err(MapError::OutsideWindow(mm::HEAP_BASE)),
        "mapping outside the scratch window: {outside:?}"
    );
    Ok(())
}

/// A kernel stack is mapped read-write and NX with an unmapped guard page below it, and is
/// unmapped again when dropped.
#[ktest("mm-stack-guard-page")]
pub fn stack_guard_page() -> TestResult {
    let live = mm::stats().kernel_stacks;
    let stack = match mm::alloc_kernel_stack(4) {
        Ok(stack) => stack,
        Err(e) => return Err(why(format_args!("allocating a stack: {e}"))),
    };
    let (top, bottom, guard) = (stack.top(), stack.bottom(), stack.guard_page());
    check!(
        top % 16 == 0 && top - bottom == 4 * PAGE_SIZE,
        "stack {bottom:#x}..{top:#x}"
    );
    for page in (bottom..top).step_by(PAGE_SIZE as usize) {
        let m = mm::translate(page);
        check!(
            m.is_some_and(|m| m.writable && !m.executable),
            "stack page {page:#x}: {m:x?}"
        );
    }
    check!(probe_read(top - 8).is_ok(), "top of the stack unreadable");
    check!(
        probe_read(guard).is_err() && mm::translate(guard).is_none(),
        "guard page {guard:#x} is mapped"
    );
    check!(mm::stats().kernel_stacks == live + 1, "stack not counted");
    drop(stack);
    check!(
        probe_read(top - 8).is_err(),
        "stack still mapped after drop"
    );
    check!(mm::stats().kernel_stacks == live, "stack count after drop");
    check!(
        mm::alloc_kernel_stack(0).is_err() && mm::alloc_kernel_stack(1 << 20).is_err(),
        "bad stack sizes accepted"
    );
    Ok(())
}

/// The heap serves many small and some large allocations, growing the mapped heap, and
/// reuses freed memory.
#[ktest("mm-heap-grows")]
pub fn heap_grows() -> TestResult {
    let boxes: Vec<Box<u64>> = (0..20_000u64).map(|i| Box::new(i * 3)).collect();
    check!(
        boxes.iter().enumerate().all(|(i, b)| **b == i as u64 * 3),
        "small allocations corrupted"
    );
    let before = mm::stats().heap_bytes;
    // 8 MiB in one piece.
    let mut big = Vec::<u64>::with_capacity(1 << 20);
    big.extend((0..1u64 << 20).map(|i| i ^ 0x5a5a));
    let grown = mm::stats().heap_bytes;
    check!(
        grown >= 8 << 20 && (before >= 8 << 20 || grown > before),
        "heap went from {before} to {grown} bytes for an 8 MiB allocation"
    );
    check!(
        big.iter().enumerate().all(|(i, &v)| v == i as u64 ^ 0x5a5a),
        "large allocation corrupted"
    );
    drop(big);
    drop(boxes);
    let again = Vec::<u64>::with_capacity(1 << 20);
    check!(
        mm::stats().heap_bytes == grown,
        "freed heap memory was not reused"
    );
    drop(again);
    Ok(())
}

static WRITABLE_STATIC: AtomicU64 = AtomicU64::new(7);

/// The kernel runs on its own tables with W^X: code read-only and executable, data and the
/// HHDM non-executable, no page both writable and executable; NX, WP, SMEP, SMAP and UMIP
/// are on wherever the CPU has them.
#[ktest("mm-kernel-tables-wx")]
pub fn kernel_tables_wx() -> TestResult {
    let supported = mm::Protections::supported();
    let active = mm::Protections::active();
    check!(
        active.write_protect && active.nx == supported.nx,
        "{active:?}"
    );
    check!(
        active.smep == supported.smep
            && active.smap == supported.smap
            && active.umip == supported.umip,
        "supported {supported:?}, active {active:?}"
    );
    let code = kernel_tables_wx as fn() -> TestResult as usize as u64;
    let m = mm::translate(code);
    check!(
        m.is_some_and(|m| m.executable && !m.writable),
        "code {m:x?}"
    );
    let rodata = "read-only data".as_ptr() as u64;
    let m = mm::translate(rodata);
    check!(
        m.is_some_and(|m| !m.executable && !m.writable),
        "rodata {m:x?}"
    );
    WRITABLE_STATIC.fetch_add(1, Ordering::Relaxed);
    let data = core::ptr::from_ref(&WRITABLE_STATIC) as u64;
    let m = mm::translate(data);
    check!(
        m.is_some_and(|m| !m.executable && m.writable),
        "data {m:x?}"
    );
    let frame = Frame::alloc();
    let hhdm = frame.as_ref().map(|f| mm::phys_to_virt(f.phys()));
    let m = hhdm.and_then(mm::translate);
    check!(
        m.is_some_and(|m| !m.executable && m.writable && m.pat_index == 0),
        "HHDM {m:x?}"
    );
    let image = hal::image::layout().image;
    for page in (image.start..image.end).step_by(PAGE_SIZE as usize) {
        if let Some(m) = mm::translate(page) {
            check!(
                !(m.writable && m.executable),
                "kernel page {page:#x} is W+X"
            );
        }
    }
    Ok(())
}

/// Device memory is claimed by one window at a time and maps uncached and NX; hal's own
/// devices, memory-map ranges and RAM are refused; firmware tables map read-only.
#[ktest("mm-mmio-claims")]
pub fn mmio_claims() -> TestResult {
    // hal's own local APIC (xAPIC mode: the loader leaves x2APIC off) and I/O APIC.
    if !hal::smp::x2apic_enabled() {
        let lapic = mm::claim_mmio(0xfee0_0000, 0x400);
        check!(
            matches!(lapic, Err(MapError::Claimed(_))),
            "hal's local APIC was handed out: {lapic:?}"
        );
        let version = hal::apic::version().unwrap_or(0) & 0xff;
        check!(
            (0x10..=0x15).contains(&version),
            "local APIC version {version:#x} through hal's own window"
        );
    }
    for ioapic in hal::acpi::platform().map_or(&[][..], |p| &p.io_apics) {
        let claim = mm::claim_mmio(ioapic.address, 0x20);
        check!(
            matches!(claim, Err(MapError::Claimed(_) | MapError::Firmware(_))),
            "hal's I/O APIC at {:#x} was handed out: {claim:?}",
            ioapic.address
        );
    }
    // A device range nobody holds: in the 32-bit PCI hole, in no memory-map entry.
    let Some(free) = [0xfe00_0000u64, 0xfd00_0000, 0xfc00_0000]
        .into_iter()
        .find(|&p| mm::claim_mmio(p, 0x1000).is_ok())
    else {
        return Err(why(format_args!("no free device range to claim")));
    };
    let window = match mm::claim_mmio(free, 0x1000) {
        Ok(mmio) => mmio,
        Err(e) => return Err(why(format_args!("claiming {free:#x}: {e}"))),
    };
    let m = mm::translate(window.virt());
    check!(
        m.is_some_and(|m| m.pat_index == 3 && !m.executable && m.writable),
        "MMIO mapping {m:x?}"
    );
    let second = mm::claim_mmio(free + 0x800, 0x10);
    check!(
        matches!(second, Err(MapError::Claimed(_))),
        "the same device page was handed out twice: {second:?}"
    );
    let virt = window.virt();
    drop(window);
    check!(
        mm::translate(virt).is_none(),
        "MMIO still mapped after drop"
    );
    check!(
        mm::claim_mmio(free, 0x1000).is_ok(),
        "the range could not be claimed again after its window was dropped"
    );
    let Some(frame) = Frame::alloc() else {
        return Err(why(format_args!("no frame")));
    };
    let ram = mm::claim_mmio(frame.phys(), 8);
    check!(
        matches!(ram, Err(MapError::Ram(_) | MapError::Firmware(_))),
        "RAM mapped as MMIO: {ram:?}"
    );
    check!(
        mm::claim_mmio(free, 0).is_err(),
        "empty MMIO range accepted"
    );
    if let Some(rsdp) = hal::acpi::platform().map(|p| p.rsdp_address) {
        let claim = mm::claim_mmio(rsdp, 20);
        check!(
            matches!(claim, Err(MapError::Firmware(_) | MapError::Ram(_))),
            "the RSDP's page was handed out as MMIO: {claim:?}"
        );
    }
    let firmware = mm::map_firmware(frame.phys(), 8);
    check!(
        matches!(firmware, Err(MapError::NotFirmware(_))),
        "RAM mapped as firmware: {firmware:?}"
    );
    if let Some(rsdp) = hal::acpi::platform().map(|p| p.rsdp_address) {
        let bytes = mm::map_firmware(rsdp, 20);
        check!(
            bytes.is_ok_and(|b| b.starts_with(b"RSD PTR ")),
            "RSDP at {rsdp:#x}: {bytes:?}"
        );
        let m = mm::translate(mm::phys_to_virt(rsdp));
        check!(m.is_some_and(|m| !m.writable), "RSDP mapping {m:x?}");
        check!(mm::map_firmware(rsdp, 20).is_ok(), "mapping the RSDP twice");
    }
    Ok(())
}

/// Once every CPU has left the loader's stacks, the loader's memory has been handed to the
/// frame allocator; what the kernel still needs from the loader was copied first.
#[ktest("mm-bootloader-memory-reclaimed")]
pub fn bootloader_memory_reclaimed() -> TestResult {
    check!(
        mm::bootloader_memory_reclaimed(),
        "bootloader-reclaimable memory was not reclaimed"
    );
    // The responses are reachable only through the `Boot` token, which the reclaim consumed
    // (so code that reads them afterwards does not compile).
    check!(
        !hal::boot::cmdline().is_empty(),
        "the command line was lost (tests run with test=...)"
    );
    let file = hal::boot::executable_file();
    check!(
        file.is_some_and(|f| f.data.starts_with(b"\x7fELF") && f.path.ends_with("kernel")),
        "the kernel's ELF file record was lost"
    );
    // The symbol table sits at the far end of the file from its header: both survive.
    let here = bootloader_memory_reclaimed as fn() -> TestResult as usize as u64;
    let name = crate::symbols::lookup(here)
        .map(|s| alloc::format!("{s}"))
        .unwrap_or_default();
    check!(
        name.contains("bootloader_memory_reclaimed"),
        "symbols no longer resolve after reclaim: {here:#x} gives {name:?}"
    );
    Ok(())
}
