//! The kernel's page tables, built after ExitBootServices in a pool allocated before it.
//!
//! Layout: kernel segments with their own permissions (4 KiB pages, write-back); the HHDM for
//! the memory-map types base revision 3 maps (large pages where whole ones fit, the framebuffer
//! write-combining); a temporary identity map of the loader image, the stack, the hand-off
//! page and the AP trampoline page that the hand-off stub removes once it runs in the higher
//! half (after every AP has parked in HHDM code).

use alloc::vec::Vec;

use bootcore::{
    PAGE_SIZE, align_down, align_up,
    memmap::hhdm_ranges,
    paging::{self, Attributes, Cache, MapPlan, Mapper, PagePool, PagingError, RWX},
    proto::MemmapEntry,
};

use crate::kernel::Kernel;

/// A physical range to identity-map for the hand-off.
#[derive(Clone, Copy, Debug)]
pub struct Identity {
    /// Start (any alignment; rounded outward).
    pub base: u64,
    /// Length in bytes.
    pub len: u64,
}

/// The kernel's segments as `(va, pa, len, attributes)`, page-rounded.
fn kernel_mappings<'k>(
    kernel: &'k Kernel<'_>,
    nx: bool,
) -> impl Iterator<Item = (u64, u64, u64, Attributes)> + 'k {
    kernel.segments().iter().map(move |s| {
        let start = align_down(s.vaddr.wrapping_add(kernel.slide), PAGE_SIZE);
        let end = align_up(s.vaddr.wrapping_add(kernel.slide) + s.memsz, PAGE_SIZE).unwrap_or(0);
        let attributes = Attributes {
            writable: s.write,
            // Without NX support every page must be executable (the NX bit would be reserved).
            executable: s.exec || !nx,
            cache: Cache::WriteBack,
            user: false,
        };
        (
            start,
            kernel.phys_base + (start - kernel.virt_base),
            end.wrapping_sub(start),
            attributes,
        )
    })
}

fn page_round(base: u64, len: u64) -> (u64, u64) {
    let start = align_down(base, PAGE_SIZE);
    let end = align_up(base + len, PAGE_SIZE).unwrap_or(!(PAGE_SIZE - 1));
    (start, end - start)
}

/// Pool pages to allocate: a pessimistic count for these inputs, doubled, because the final
/// memory map (known only after ExitBootServices) may be more fragmented than `entries`.
pub fn pool_pages(
    kernel: &Kernel,
    entries: &[MemmapEntry],
    revision: u64,
    hhdm: u64,
    identity: &[Identity],
) -> u64 {
    let mut ranges: Vec<MapPlan> = Vec::new();
    ranges.extend(
        kernel_mappings(kernel, true).map(|(va, pa, len, _)| MapPlan {
            va,
            pa,
            len,
            large: false,
        }),
    );
    ranges.extend(hhdm_ranges(entries, revision).map(|r| MapPlan {
        va: hhdm + r.base,
        pa: r.base,
        len: r.len,
        large: true,
    }));
    ranges.extend(identity.iter().map(|i| {
        let (base, len) = page_round(i.base, i.len);
        MapPlan {
            va: base,
            pa: base,
            len,
            large: false,
        }
    }));
    (paging::pages_needed(ranges) as u64) * 2 + 16
}

/// Builds the tables in `pool` (at physical `pool_base`); returns the PML4's physical address.
#[expect(
    clippy::too_many_arguments,
    reason = "each input is a distinct part of the layout"
)]
pub fn build(
    pool: &mut [[u64; 512]],
    pool_base: u64,
    kernel: &Kernel,
    entries: &[MemmapEntry],
    revision: u64,
    hhdm: u64,
    identity: &[Identity],
    features: (bool, bool),
) -> Result<u64, PagingError> {
    let (nx, gib_pages) = features;
    let mut pool = PagePool::new(pool_base, pool)?;
    let mut mapper = Mapper::new(&mut pool)?;
    for (va, pa, len, attributes) in kernel_mappings(kernel, nx) {
        mapper.map(va, pa, len, attributes)?;
    }
    for range in hhdm_ranges(entries, revision) {
        let attributes = if range.write_combining {
            Attributes {
                executable: !nx,
                ..Attributes::FRAMEBUFFER
            }
        } else {
            RWX
        };
        mapper.map_large(
            hhdm + range.base,
            range.base,
            range.len,
            attributes,
            gib_pages,
        )?;
    }
    for i in identity {
        let (base, len) = page_round(i.base, i.len);
        mapper.map(base, base, len, RWX)?;
    }
    let root = mapper.root();
    log::debug!(
        "page tables: {} of {} pool pages",
        pool.used(),
        pool.capacity()
    );
    Ok(root)
}
