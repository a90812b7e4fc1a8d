//! Memory management in the kernel: brings up `hal::mm` (frames, the kernel's page tables,
//! the heap) on the bootstrap CPU and reports what it set up. Its in-kernel tests live in
//! [`tests`], the frame-allocation benchmark in [`bench`].

pub mod bench;
#[cfg(feature = "tests")]
pub mod tests;
#[cfg(feature = "tests")]
pub mod user_tests;

/// Reports what `hal::init` set up: the frame allocator and the kernel's page tables.
pub fn report(summary: &hal::mm::InitSummary) {
    log::info!(
        "mm: {} MiB free, {} MiB held for the loader, {} KiB of frame bookkeeping",
        (summary.free_frames * hal::mm::PAGE_SIZE) >> 20,
        (summary.reserved_frames * hal::mm::PAGE_SIZE) >> 20,
        summary.metadata_bytes >> 10,
    );
    log::info!(
        "mm: kernel page tables loaded: HHDM {} MiB in pages up to {}, kernel image {} pages, {} table frames",
        summary.hhdm_bytes >> 20,
        match summary.hhdm_page {
            hal::mm::PageSize::Size1G => "1 GiB",
            hal::mm::PageSize::Size2M => "2 MiB",
            hal::mm::PageSize::Size4K => "4 KiB",
        },
        summary.kernel_pages,
        summary.table_frames,
    );
    let p = summary.protections;
    log::info!(
        "mm: protections: NX {}, WP {}, SMEP {}, SMAP {}, UMIP {}",
        on_off(p.nx),
        on_off(p.write_protect),
        on_off(p.smep),
        on_off(p.smap),
        on_off(p.umip),
    );
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}
