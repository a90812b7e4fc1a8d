//! The Limine memory map and the EFI memory map copy: sized and allocated before
//! ExitBootServices, filled from the final EFI map after it (no allocation after that point).

use alloc::{vec, vec::Vec};

use bootcore::{
    memmap::{self, EfiRegion, MemmapError, Overlay, RawEfiMap},
    proto::{self, Encode, MemmapEntry, memmap_type},
};
use uefi::{
    boot::{self, MemoryType},
    mem::memory_map::{MemoryMap, MemoryMapOwned},
};

use crate::{
    arena::{Arena, Slot},
    error::Error,
    gop::Framebuffer,
    mem::{Allocations, Kind, Region, pages_for},
    strict,
};

/// Pre-allocated homes for the memory maps.
pub struct Prepared {
    /// Scratch for the conversion (loader-private pool memory).
    scratch: Vec<MemmapEntry>,
    /// Holds the pointer array followed by the entries.
    arena: Arena,
    /// The pointer array (one HHDM pointer per entry slot).
    pointers: Slot,
    /// The entry slots.
    slots: Vec<Slot>,
    /// Buffer for the raw final EFI map.
    efi_copy: Region,
    hhdm: u64,
}

/// The EFI map as it is now, as conversion input.
pub fn current_efi_map() -> Result<MemoryMapOwned, Error> {
    boot::memory_map(MemoryType::LOADER_DATA).map_err(|e| Error::Firmware {
        what: "reading the memory map",
        status: e.status(),
    })
}

/// The regions of an EFI map.
pub fn regions(map: &MemoryMapOwned) -> impl Iterator<Item = EfiRegion> + Clone + '_ {
    map.entries().map(|d| EfiRegion {
        ty: d.ty.0,
        phys_start: d.phys_start,
        pages: d.page_count,
    })
}

/// What the loader dictates on top of the EFI map: its allocations and the framebuffer.
pub fn overlays(allocs: &Allocations, fb: Option<&Framebuffer>) -> Vec<Overlay> {
    let mut out: Vec<Overlay> = allocs
        .regions()
        .iter()
        .map(|r| Overlay {
            base: r.base,
            len: r.pages * crate::mem::PAGE_SIZE,
            ty: match r.kind {
                Kind::ExecutableAndModules => memmap_type::EXECUTABLE_AND_MODULES,
                Kind::Reclaimable => memmap_type::BOOTLOADER_RECLAIMABLE,
            },
        })
        .collect();
    if let Some(fb) = fb {
        out.push(Overlay {
            base: fb.base,
            len: framebuffer_len(fb),
            ty: memmap_type::FRAMEBUFFER,
        });
    }
    out
}

/// Bytes of the framebuffer the kernel may touch.
pub fn framebuffer_len(fb: &Framebuffer) -> u64 {
    (fb.mode.pitch * fb.mode.height).max(1)
}

/// Allocates the memory-map arena and the EFI map copy for the worst case, given how many
/// descriptors the map has now and how many allocations the loader made.
pub fn prepare(
    allocs: &mut Allocations,
    hhdm: u64,
    efi_now: &MemoryMapOwned,
    overlay_count: usize,
) -> Result<Prepared, Error> {
    // Worst case for the final map: today's descriptors, two per allocation (each may split a
    // free range), the allocations still to come, and slack for the firmware's own changes.
    let efi_count = efi_now.len() + 2 * allocs.regions().len() + 64;
    let mut capacity = memmap::max_entries(efi_count, overlay_count + 8);
    if strict::on() {
        // Room for [`memmap::split_for_strict`] to halve every entry.
        capacity *= 2;
    }
    let arena_bytes = capacity * (8 + MemmapEntry::SIZE) + 64;
    let region = allocs.pages(
        pages_for(arena_bytes as u64),
        Kind::Reclaimable,
        "memory map",
    )?;
    let mut arena = Arena::new(region, hhdm);
    let pointers = arena.reserve(capacity * 8, 8)?;
    let slots = (0..capacity)
        .map(|_| arena.reserve(MemmapEntry::SIZE, 8))
        .collect::<Result<Vec<_>, _>>()?;
    let addresses: Vec<u64> = slots.iter().map(|s| s.virt).collect();
    arena.write_u64s(pointers, &addresses)?;
    let desc_size = efi_now.meta().desc_size as u64;
    let copy_bytes =
        efi_now.meta().map_size as u64 + desc_size * (efi_count - efi_now.len()) as u64;
    let efi_copy = allocs.pages(
        pages_for(copy_bytes),
        Kind::Reclaimable,
        "EFI memory map copy",
    )?;
    Ok(Prepared {
        scratch: vec![MemmapEntry::default(); capacity],
        arena,
        pointers,
        slots,
        efi_copy,
        hhdm,
    })
}

/// Why finishing the memory maps failed (after ExitBootServices, so only reported on serial).
#[derive(Debug)]
pub enum FinishError {
    /// The conversion failed.
    Convert(MemmapError),
    /// A pre-sized buffer was too small.
    Overflow(&'static str),
}

impl core::fmt::Display for FinishError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FinishError::Convert(e) => write!(f, "memory map conversion: {e}"),
            FinishError::Overflow(what) => write!(f, "pre-sized {what} too small"),
        }
    }
}

impl Prepared {
    /// Converts the final EFI map, writes the entries and the two responses (if requested).
    /// Returns the Limine entries (for the HHDM). Allocates nothing.
    pub fn finish(
        &mut self,
        final_map: &MemoryMapOwned,
        overlays: &[Overlay],
        responses: &mut Arena,
        memmap_response: Option<Slot>,
        efi_response: Option<Slot>,
    ) -> Result<&[MemmapEntry], FinishError> {
        let meta = final_map.meta();
        let raw =
            RawEfiMap::new(final_map.buffer(), meta.desc_size).map_err(FinishError::Convert)?;
        let mut count = memmap::convert_iter_into(raw.regions(), overlays, &mut self.scratch)
            .map_err(FinishError::Convert)?;
        if strict::on() {
            count =
                memmap::split_for_strict(&mut self.scratch, count).map_err(FinishError::Convert)?;
        }
        for (entry, slot) in self.scratch[..count].iter().zip(&self.slots) {
            self.arena
                .write(*slot, entry)
                .map_err(|_| FinishError::Overflow("memory map arena"))?;
        }
        if let Some(slot) = memmap_response {
            let response = proto::MemoryMapResponse {
                revision: 0,
                entry_count: count as u64,
                entries: self.pointers.virt,
            };
            responses
                .write(slot, &response)
                .map_err(|_| FinishError::Overflow("response arena"))?;
        }
        let bytes = final_map.buffer();
        let copy = self
            .efi_copy
            .bytes_mut()
            .get_mut(..bytes.len())
            .ok_or(FinishError::Overflow("EFI memory map copy"))?;
        copy.copy_from_slice(bytes);
        if let Some(slot) = efi_response {
            let response = proto::EfiMemoryMapResponse {
                revision: 0,
                memmap: self.hhdm + self.efi_copy.base(),
                memmap_size: bytes.len() as u64,
                desc_size: meta.desc_size as u64,
                desc_version: u64::from(meta.desc_version),
            };
            responses
                .write(slot, &response)
                .map_err(|_| FinishError::Overflow("response arena"))?;
        }
        Ok(&self.scratch[..count])
    }
}
