//! EFI memory map to Limine memory map conversion, and HHDM range selection.
//!
//! What the result must satisfy is the "Memory Map Feature" of Limine's `PROTOCOL.md`: entries
//! sorted by base, USABLE and BOOTLOADER_RECLAIMABLE entries 4 KiB aligned and overlapping
//! nothing, the kernel and modules marked EXECUTABLE_AND_MODULES, nothing below 0x1000 usable.
//! Which EFI type becomes which Limine type the protocol leaves to the loader
//! ([`limine_type_for_efi`]).
//!
//! The conversion runs after ExitBootServices, so it never allocates: it writes into a
//! caller-provided slice sized with [`max_entries`]. It works as a sweep over every boundary
//! of the inputs: each elementary interval gets the type of the strongest source covering it
//! (framebuffer > other overlays > EFI regions, and among overlapping EFI regions the most
//! restrictive type), runs are merged, and USABLE / BOOTLOADER_RECLAIMABLE entries are then
//! shrunk inward to whole pages. Cost is O(boundaries × inputs), a few hundred thousand steps
//! for real maps.

use alloc::vec::Vec;
use core::fmt;

use crate::{
    PAGE_SIZE, align_down,
    proto::{MemmapEntry, memmap_type as mt},
};

/// UEFI memory types (`EFI_MEMORY_TYPE`).
pub mod efi_type {
    /// EfiReservedMemoryType.
    pub const RESERVED: u32 = 0;
    /// EfiLoaderCode.
    pub const LOADER_CODE: u32 = 1;
    /// EfiLoaderData.
    pub const LOADER_DATA: u32 = 2;
    /// EfiBootServicesCode.
    pub const BOOT_SERVICES_CODE: u32 = 3;
    /// EfiBootServicesData.
    pub const BOOT_SERVICES_DATA: u32 = 4;
    /// EfiRuntimeServicesCode.
    pub const RUNTIME_SERVICES_CODE: u32 = 5;
    /// EfiRuntimeServicesData.
    pub const RUNTIME_SERVICES_DATA: u32 = 6;
    /// EfiConventionalMemory.
    pub const CONVENTIONAL: u32 = 7;
    /// EfiUnusableMemory.
    pub const UNUSABLE: u32 = 8;
    /// EfiACPIReclaimMemory.
    pub const ACPI_RECLAIM: u32 = 9;
    /// EfiACPIMemoryNVS.
    pub const ACPI_NVS: u32 = 10;
    /// EfiMemoryMappedIO.
    pub const MMIO: u32 = 11;
    /// EfiMemoryMappedIOPortSpace.
    pub const MMIO_PORT_SPACE: u32 = 12;
    /// EfiPalCode.
    pub const PAL_CODE: u32 = 13;
    /// EfiPersistentMemory.
    pub const PERSISTENT: u32 = 14;
    /// EfiUnacceptedMemoryType.
    pub const UNACCEPTED: u32 = 15;
}

/// One EFI memory descriptor, reduced to what the conversion needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EfiRegion {
    /// `EFI_MEMORY_TYPE` ([`efi_type`]).
    pub ty: u32,
    /// Physical start.
    pub phys_start: u64,
    /// Number of 4 KiB pages.
    pub pages: u64,
}

/// A range whose Limine type the loader dictates (its allocations, the framebuffer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overlay {
    /// Physical base.
    pub base: u64,
    /// Length in bytes.
    pub len: u64,
    /// Limine type ([`crate::proto::memmap_type`]). FRAMEBUFFER is special: USABLE and
    /// RESERVED memory sharing a page with it is trimmed, anything else is an error.
    pub ty: u64,
}

/// Why the conversion failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemmapError {
    /// The output slice is too small.
    TooManyEntries {
        /// Its length.
        capacity: usize,
    },
    /// Memory of type `ty` shares a page with the framebuffer at `addr`.
    FramebufferConflict {
        /// An address on the shared page.
        addr: u64,
        /// The other Limine type.
        ty: u64,
    },
    /// A raw descriptor buffer with a descriptor size smaller than 40 bytes.
    BadDescriptorSize(usize),
}

impl fmt::Display for MemmapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MemmapError::TooManyEntries { capacity } => {
                write!(f, "memory map needs more than {capacity} entries")
            }
            MemmapError::FramebufferConflict { addr, ty } => write!(
                f,
                "memory of type {ty} at {addr:#x} shares a page with the framebuffer"
            ),
            MemmapError::BadDescriptorSize(size) => {
                write!(f, "EFI memory descriptor size {size} is smaller than 40")
            }
        }
    }
}

/// The Limine type for an EFI type. `PROTOCOL.md` ("Memory Map Feature") names the types but
/// not this mapping: memory the firmware and the loader only needed while booting (loader and
/// boot-services code and data) is BOOTLOADER_RECLAIMABLE, free memory USABLE, the ACPI types
/// keep their meaning, unusable memory is BAD_MEMORY, and everything else (runtime services,
/// MMIO, unknown types) RESERVED so that the kernel never takes it. The loader's own
/// allocations are laid over this with the types it recorded for them.
pub fn limine_type_for_efi(ty: u32) -> u64 {
    match ty {
        efi_type::LOADER_CODE
        | efi_type::LOADER_DATA
        | efi_type::BOOT_SERVICES_CODE
        | efi_type::BOOT_SERVICES_DATA => mt::BOOTLOADER_RECLAIMABLE,
        efi_type::CONVENTIONAL => mt::USABLE,
        efi_type::UNUSABLE => mt::BAD_MEMORY,
        efi_type::ACPI_RECLAIM => mt::ACPI_RECLAIMABLE,
        efi_type::ACPI_NVS => mt::ACPI_NVS,
        _ => mt::RESERVED,
    }
}

/// How strongly a type wins where sources of the same class overlap: the more restrictive
/// type wins, so overlapping input never turns reserved memory into usable memory.
fn strength(ty: u64) -> u8 {
    match ty {
        mt::USABLE => 0,
        mt::BOOTLOADER_RECLAIMABLE => 1,
        mt::EXECUTABLE_AND_MODULES => 2,
        mt::ACPI_RECLAIMABLE => 3,
        mt::RESERVED_MAPPED => 4,
        mt::ACPI_NVS => 5,
        mt::RESERVED => 6,
        mt::BAD_MEMORY => 7,
        _ => 8,
    }
}

/// Worst-case number of entries [`convert_into`] can produce for these input counts.
///
/// Every input contributes at most two boundaries (a framebuffer overlay four, with its
/// page-rounded edges), and there is at most one entry per gap between boundaries.
pub fn max_entries(efi_count: usize, overlay_count: usize) -> usize {
    efi_count
        .saturating_mul(2)
        .saturating_add(overlay_count.saturating_mul(4))
}

/// A half-open physical range.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: u64,
    end: u64,
}

impl Span {
    fn contains(&self, x: u64) -> bool {
        self.start <= x && x < self.end
    }
}

fn efi_span(r: &EfiRegion) -> Span {
    Span {
        start: r.phys_start,
        end: r
            .phys_start
            .saturating_add(r.pages.saturating_mul(PAGE_SIZE)),
    }
}

fn overlay_span(o: &Overlay) -> Span {
    Span {
        start: o.base,
        end: o.base.saturating_add(o.len),
    }
}

/// The framebuffer rounded outward to whole pages.
fn page_span(o: &Overlay) -> Span {
    let s = overlay_span(o);
    Span {
        start: align_down(s.start, PAGE_SIZE),
        end: crate::align_up(s.end, PAGE_SIZE).unwrap_or(u64::MAX),
    }
}

/// Converts `efi` plus `overlays` into `out`, returning the number of entries written.
/// Never allocates. `out` should hold [`max_entries`] entries.
pub fn convert_into(
    efi: &[EfiRegion],
    overlays: &[Overlay],
    out: &mut [MemmapEntry],
) -> Result<usize, MemmapError> {
    convert_iter_into(efi.iter().copied(), overlays, out)
}

/// [`convert_into`] for any re-iterable source of EFI regions (e.g. [`RawEfiMap::regions`]).
pub fn convert_iter_into<I>(
    efi: I,
    overlays: &[Overlay],
    out: &mut [MemmapEntry],
) -> Result<usize, MemmapError>
where
    I: Iterator<Item = EfiRegion> + Clone,
{
    let is_fb = |o: &&Overlay| o.ty == mt::FRAMEBUFFER;
    let efi_spans = || {
        efi.clone()
            .filter(|r| r.pages > 0)
            .map(|r| (efi_span(&r), r.ty))
    };
    let boundaries = || {
        let efi = efi_spans().flat_map(|(s, _)| [s.start, s.end]);
        let ovl = overlays.iter().filter(|o| o.len > 0).flat_map(|o| {
            let (s, p) = (overlay_span(o), page_span(o));
            [s.start, s.end, p.start, p.end]
        });
        efi.chain(ovl)
    };

    let mut count = 0;
    let Some(mut x) = boundaries().min() else {
        return Ok(0);
    };
    while let Some(next) = boundaries().filter(|&b| b > x).min() {
        // Inputs are constant over [x, next): every start and end is a boundary.
        let overlay = overlays
            .iter()
            .filter(|o| !is_fb(o) && overlay_span(o).contains(x))
            .map(|o| o.ty)
            .max_by_key(|&t| strength(t));
        let base = overlay.or_else(|| {
            efi_spans()
                .filter(|(s, _)| s.contains(x))
                .map(|(_, t)| limine_type_for_efi(t))
                .max_by_key(|&t| strength(t))
        });
        let fbs = || overlays.iter().filter(is_fb);
        let ty = if fbs().any(|o| page_span(o).contains(x)) {
            match base {
                None | Some(mt::USABLE) | Some(mt::RESERVED) => {}
                Some(ty) => return Err(MemmapError::FramebufferConflict { addr: x, ty }),
            }
            fbs()
                .any(|o| overlay_span(o).contains(x))
                .then_some(mt::FRAMEBUFFER)
        } else {
            base
        };
        if let Some(ty) = ty {
            push(
                out,
                &mut count,
                MemmapEntry {
                    base: x,
                    length: next - x,
                    ty,
                },
            )?;
        }
        x = next;
    }
    Ok(align_entries(&mut out[..count]))
}

/// Appends `e` to `out[..count]`, merging it with the previous entry when contiguous and of
/// the same type.
fn push(out: &mut [MemmapEntry], count: &mut usize, e: MemmapEntry) -> Result<(), MemmapError> {
    if let Some(last) = count.checked_sub(1).and_then(|i| out.get_mut(i))
        && last.ty == e.ty
        && last.base.checked_add(last.length) == Some(e.base)
    {
        last.length += e.length;
        return Ok(());
    }
    let capacity = out.len();
    *out.get_mut(*count)
        .ok_or(MemmapError::TooManyEntries { capacity })? = e;
    *count += 1;
    Ok(())
}

/// Shrinks USABLE and BOOTLOADER_RECLAIMABLE entries inward to whole pages, dropping those
/// left empty; returns the new count. The entries are disjoint, so shrinking keeps them so.
fn align_entries(entries: &mut [MemmapEntry]) -> usize {
    let mut kept = 0;
    for i in 0..entries.len() {
        let mut e = entries[i];
        if e.ty == mt::USABLE || e.ty == mt::BOOTLOADER_RECLAIMABLE {
            let end = align_down(e.base.saturating_add(e.length), PAGE_SIZE);
            let Some(base) = crate::align_up(e.base, PAGE_SIZE) else {
                continue;
            };
            if end <= base {
                continue;
            }
            e = MemmapEntry {
                base,
                length: end - base,
                ty: e.ty,
            };
        }
        entries[kept] = e;
        kept += 1;
    }
    kept
}

/// Strict mode: splits every USABLE and BOOTLOADER_RECLAIMABLE entry of two pages or more in
/// two, at a page boundary that is not 2 MiB aligned, so the map has adjacent entries of the
/// same type and runs that do not start on large-page boundaries. The protocol promises only
/// that such entries are sorted, 4 KiB aligned and disjoint ("Memory Map Feature"), never
/// that neighbours are merged. Works in place in `out[..count]`; returns the new count, or
/// `TooManyEntries` when `out` cannot hold the halves (nothing is changed then).
pub fn split_for_strict(out: &mut [MemmapEntry], count: usize) -> Result<usize, MemmapError> {
    let splits = |e: &MemmapEntry| {
        (e.ty == mt::USABLE || e.ty == mt::BOOTLOADER_RECLAIMABLE) && e.length >= 2 * PAGE_SIZE
    };
    let count = count.min(out.len());
    let extra = out[..count].iter().filter(|e| splits(e)).count();
    let total = count + extra;
    if total > out.len() {
        return Err(MemmapError::TooManyEntries {
            capacity: out.len(),
        });
    }
    // From the back, so every entry moves only into slots already read.
    let mut to = total;
    for from in (0..count).rev() {
        let e = out[from];
        if splits(&e) {
            let mut cut = e.base + (e.length / PAGE_SIZE / 2) * PAGE_SIZE;
            if cut.is_multiple_of(LARGE_PAGE) {
                cut += PAGE_SIZE;
            }
            if cut >= e.base + e.length {
                cut = e.base + PAGE_SIZE;
            }
            to -= 1;
            out[to] = MemmapEntry {
                base: cut,
                length: e.base + e.length - cut,
                ty: e.ty,
            };
            to -= 1;
            out[to] = MemmapEntry {
                base: e.base,
                length: cut - e.base,
                ty: e.ty,
            };
        } else {
            to -= 1;
            out[to] = e;
        }
    }
    Ok(total)
}

/// 2 MiB, the size of a large page.
const LARGE_PAGE: u64 = 2 << 20;

/// [`convert_into`] into a fresh vector (allocates; for use before ExitBootServices/tests).
pub fn convert(efi: &[EfiRegion], overlays: &[Overlay]) -> Result<Vec<MemmapEntry>, MemmapError> {
    let mut out = alloc::vec![MemmapEntry::default(); max_entries(efi.len(), overlays.len())];
    let n = convert_into(efi, overlays, &mut out)?;
    out.truncate(n);
    Ok(out)
}

/// Size of the fields of `EFI_MEMORY_DESCRIPTOR` (firmware may use a larger stride).
pub const EFI_DESCRIPTOR_MIN_SIZE: usize = 40;

/// A raw EFI memory map: descriptors of `desc_size` bytes each (`EFI_MEMORY_DESCRIPTOR`:
/// `u32 type, u32 pad, u64 phys_start, u64 virt_start, u64 pages, u64 attribute`).
#[derive(Clone, Copy, Debug)]
pub struct RawEfiMap<'a> {
    bytes: &'a [u8],
    desc_size: usize,
}

impl<'a> RawEfiMap<'a> {
    /// Wraps `bytes`; trailing bytes short of a whole descriptor are ignored.
    pub fn new(bytes: &'a [u8], desc_size: usize) -> Result<Self, MemmapError> {
        if desc_size < EFI_DESCRIPTOR_MIN_SIZE {
            return Err(MemmapError::BadDescriptorSize(desc_size));
        }
        Ok(RawEfiMap { bytes, desc_size })
    }

    /// Number of descriptors.
    pub fn len(&self) -> usize {
        self.bytes.len() / self.desc_size
    }

    /// Whether there are no descriptors.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The descriptors as regions.
    pub fn regions(&self) -> impl Iterator<Item = EfiRegion> + Clone + 'a {
        self.bytes.chunks_exact(self.desc_size).map(|d| {
            let u64_at = |o: usize| {
                d.get(o..o + 8)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u64::from_le_bytes)
            };
            EfiRegion {
                ty: u64_at(0) as u32,
                phys_start: u64_at(8),
                pages: u64_at(24),
            }
        })
    }
}

/// A physical range to map in the HHDM, page-rounded, with its caching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HhdmRange {
    /// Physical base (4 KiB aligned).
    pub base: u64,
    /// Length (multiple of 4 KiB).
    pub len: u64,
    /// Write-combining (framebuffer) rather than write-back.
    pub write_combining: bool,
}

/// Whether entries of Limine type `ty` are HHDM-mapped under base `revision`.
///
/// Revision 3: USABLE, BOOTLOADER_RECLAIMABLE, EXECUTABLE_AND_MODULES, FRAMEBUFFER;
/// revision >= 4 adds RESERVED_MAPPED, ACPI_RECLAIMABLE and ACPI_NVS. For revisions 0-2 this
/// answers "every type but RESERVED and BAD_MEMORY"; those revisions also need 0-4 GiB
/// mapped unconditionally, which is left to the caller (this loader refuses them anyway).
pub fn hhdm_maps_type(ty: u64, revision: u64) -> bool {
    match ty {
        mt::USABLE | mt::BOOTLOADER_RECLAIMABLE | mt::EXECUTABLE_AND_MODULES | mt::FRAMEBUFFER => {
            true
        }
        mt::RESERVED_MAPPED | mt::ACPI_RECLAIMABLE | mt::ACPI_NVS => revision != 3,
        _ => revision < 3,
    }
}

/// The HHDM ranges for a sorted Limine memory map under base `revision`: entries of mapped
/// types rounded outward to 4 KiB and merged when they touch or overlap with equal caching.
/// Does not allocate. Ranges with different caching never overlap for a map produced by
/// [`convert_into`], which refuses mapped types sharing a page with the framebuffer.
pub fn hhdm_ranges(entries: &[MemmapEntry], revision: u64) -> HhdmRanges<'_> {
    HhdmRanges {
        entries: entries.iter(),
        revision,
        pending: None,
    }
}

/// Iterator returned by [`hhdm_ranges`].
#[derive(Clone, Debug)]
pub struct HhdmRanges<'a> {
    entries: core::slice::Iter<'a, MemmapEntry>,
    revision: u64,
    pending: Option<HhdmRange>,
}

impl Iterator for HhdmRanges<'_> {
    type Item = HhdmRange;

    fn next(&mut self) -> Option<HhdmRange> {
        for e in self.entries.by_ref() {
            if e.length == 0 || !hhdm_maps_type(e.ty, self.revision) {
                continue;
            }
            let base = align_down(e.base, PAGE_SIZE);
            let end = e
                .base
                .checked_add(e.length)
                .and_then(|end| crate::align_up(end, PAGE_SIZE))
                .unwrap_or(align_down(u64::MAX, PAGE_SIZE));
            let r = HhdmRange {
                base,
                len: end - base,
                write_combining: e.ty == mt::FRAMEBUFFER,
            };
            match &mut self.pending {
                Some(p) if p.write_combining == r.write_combining && r.base <= p.base + p.len => {
                    p.len = p.len.max(end - p.base);
                }
                _ => {
                    if let Some(done) = self.pending.replace(r) {
                        return Some(done);
                    }
                }
            }
        }
        self.pending.take()
    }
}

#[cfg(test)]
mod tests;
