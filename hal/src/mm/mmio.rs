//! Device registers and firmware tables: memory the revision-3 HHDM does not map.
//!
//! [`claim_mmio`] hands the kernel an owned [`Mmio`] window onto a device range, mapped
//! uncached and non-executable in the MMIO window, with bounds-checked volatile accessors.
//! Each physical page is held by at most one window at a time: hal's own devices (local
//! APIC, I/O APICs, HPET) claim theirs through [`map_mmio`], and a kernel claim is refused
//! if it overlaps RAM, any memory-map entry (firmware tables, NVS, reserved ranges: memory
//! hal may have handed out as `&'static [u8]`), or a page already claimed. Dropping the
//! window unmaps it and releases the claim.
//!
//! [`map_firmware`] maps firmware tables (ACPI) read-only and write-back at their HHDM
//! address, where they then stay for good, so mapping the same table again is free.

use alloc::vec::Vec;
use core::{
    ops::Range,
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use frames::table::{Attributes, PageSize};
use spin::{Mutex, Once};

use super::{MMIO_BASE, MapError, PAGE_SIZE, WINDOW_BYTES, frame, tables};

/// Next free address in the MMIO window (bump allocation; a guard page follows each mapping).
static NEXT_MMIO: AtomicU64 = AtomicU64::new(MMIO_BASE);
static MMIO_BYTES: AtomicU64 = AtomicU64::new(0);

/// The CPU's physical address width.
fn phys_limit() -> u64 {
    let max_ext = core::arch::x86_64::__cpuid(0x8000_0000).eax;
    let bits = if max_ext >= 0x8000_0008 {
        core::arch::x86_64::__cpuid(0x8000_0008).eax & 0xff
    } else {
        36
    };
    1u64 << bits.clamp(32, 52)
}

/// The pages covering `[phys, phys + len)`: (first page, page count).
fn page_span(phys: u64, len: u64) -> Result<(u64, u64), MapError> {
    let end = phys.checked_add(len).ok_or(MapError::InvalidRange)?;
    if len == 0 || end > phys_limit() {
        return Err(MapError::InvalidRange);
    }
    let first = phys & !(PAGE_SIZE - 1);
    Ok((first, end.div_ceil(PAGE_SIZE) - first / PAGE_SIZE))
}

/// Physical page ranges held by a live [`Mmio`].
static CLAIMS: Mutex<Vec<Range<u64>>> = Mutex::new(Vec::new());

/// Every range the loader's memory map lists, whatever its type, copied at `hal::init`:
/// none of it is a device's to claim.
static MEMORY_MAP: Once<Vec<Range<u64>>> = Once::new();

/// Copies the memory map's ranges for [`claim_mmio`] (`hal::init` calls this while the
/// loader's responses are still there).
pub(crate) fn record_memory_map() {
    MEMORY_MAP.call_once(|| {
        crate::boot::live()
            .memory_map
            .map(|map| {
                map.entries()
                    .iter()
                    .map(|e| e.base..e.base.saturating_add(e.length))
                    .collect()
            })
            .unwrap_or_default()
    });
}

fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

/// Bytes of device memory currently mapped.
pub(super) fn mapped_bytes() -> u64 {
    MMIO_BYTES.load(Ordering::Relaxed)
}

/// A window onto device registers, mapped uncached. Accesses are volatile, naturally aligned
/// and bounds-checked against the length that was mapped.
#[derive(Debug)]
pub struct Mmio {
    /// Virtual address of `phys`.
    base: u64,
    phys: u64,
    len: u64,
    /// First mapped page and page count, for unmapping.
    pages: (u64, u64),
    /// The physical pages claimed.
    claim: Range<u64>,
}

// SAFETY: the mapping belongs to this value alone; device registers may be accessed from any
// CPU, and each access is a single volatile load or store.
unsafe impl Send for Mmio {}
// SAFETY: as above; concurrent accesses are ordinary device accesses, ordered by the device.
unsafe impl Sync for Mmio {}

/// Claims the device memory `[phys, phys + len)` for the caller alone and maps it uncached
/// (PAT UC) and non-executable.
///
/// Refused for empty or overflowing ranges, before `hal::init`, for RAM the kernel maps
/// write-back ([`MapError::Ram`]), for anything the loader's memory map lists — firmware
/// tables, NVS, reserved ranges ([`MapError::Firmware`]) — and for pages another window
/// holds, hal's own devices included ([`MapError::Claimed`]).
pub fn claim_mmio(phys: u64, len: u64) -> Result<Mmio, MapError> {
    let (first, count) = page_span(phys, len)?;
    let span = first..first + count * PAGE_SIZE;
    let map = MEMORY_MAP.get().ok_or(MapError::NotReady)?;
    if let Some(entry) = map.iter().find(|e| overlaps(e, &span)) {
        return Err(MapError::Firmware(entry.start.max(span.start)));
    }
    map_device(phys, len)
}

/// Maps one of hal's own devices (local APIC, I/O APIC, HPET) like [`claim_mmio`], without
/// the memory-map check: firmware commonly lists those registers as reserved.
pub(crate) fn map_mmio(phys: u64, len: u64) -> Result<Mmio, MapError> {
    map_device(phys, len)
}

fn map_device(phys: u64, len: u64) -> Result<Mmio, MapError> {
    let (first, count) = page_span(phys, len)?;
    let hhdm = super::hhdm_offset();
    for page in (0..count).map(|i| first + i * PAGE_SIZE) {
        if tables::translate(hhdm + page).is_some() {
            return Err(MapError::Ram(page));
        }
    }
    let claim = first..first + count * PAGE_SIZE;
    {
        let mut claims = CLAIMS.lock();
        if let Some(held) = claims.iter().find(|c| overlaps(c, &claim)) {
            return Err(MapError::Claimed(held.start.max(claim.start)));
        }
        claims.push(claim.clone());
    }
    let release = |claim: &Range<u64>| CLAIMS.lock().retain(|c| c != claim);
    // One unmapped guard page after each mapping catches overruns.
    let size = (count + 1) * PAGE_SIZE;
    let virt = NEXT_MMIO.fetch_add(size, Ordering::Relaxed);
    if virt + size > MMIO_BASE + WINDOW_BYTES {
        release(&claim);
        return Err(MapError::WindowFull);
    }
    for i in 0..count {
        let mapped = tables::with(|t, m| {
            let (v, p) = (virt + i * PAGE_SIZE, first + i * PAGE_SIZE);
            t.map(m, v, p, PageSize::Size4K, Attributes::MMIO)
        })
        .and_then(|r| r.map_err(MapError::from));
        if let Err(e) = mapped {
            unmap(virt, i);
            release(&claim);
            return Err(e);
        }
    }
    MMIO_BYTES.fetch_add(count * PAGE_SIZE, Ordering::Relaxed);
    Ok(Mmio {
        base: virt + (phys - first),
        phys,
        len,
        pages: (virt, count),
        claim,
    })
}

/// Removes `count` MMIO pages from `virt` (the frames are the device's, not freed).
fn unmap(virt: u64, count: u64) {
    let _ = tables::with(|t, m| {
        for i in 0..count {
            let _ = t.unmap(m, virt + i * PAGE_SIZE);
        }
    });
    // The virtual range is never handed out again (the window is a bump allocator), so an
    // unconfirmed flush can only leave a stale mapping of the same device pages.
    if !super::tlb::shootdown(virt, count * PAGE_SIZE) {
        log::warn!("mm: a CPU did not confirm the TLB shootdown of MMIO at {virt:#x}");
    }
}

macro_rules! accessors {
    ($($ty:ty => $read:ident, $write:ident;)*) => {
        $(
            #[doc = concat!("Reads the `", stringify!($ty), "` register at byte `offset`.")]
            ///
            /// # Panics
            /// If the access is misaligned or reaches past the mapped length.
            pub fn $read(&self, offset: u64) -> $ty {
                let address = self.address::<$ty>(offset);
                // SAFETY: `address` is inside this value's uncached mapping, which lives as
                // long as `self`, and is aligned for the type.
                unsafe { (address as *const $ty).read_volatile() }
            }

            #[doc = concat!("Writes the `", stringify!($ty), "` register at byte `offset`.")]
            ///
            /// # Panics
            /// If the access is misaligned or reaches past the mapped length.
            pub fn $write(&self, offset: u64, value: $ty) {
                let address = self.address::<$ty>(offset);
                // SAFETY: as for the read; the mapping is device memory, never Rust-owned
                // memory, so a write cannot break a Rust invariant.
                unsafe { (address as *mut $ty).write_volatile(value) }
            }
        )*
    };
}

impl Mmio {
    /// The virtual address of `offset`, checked.
    fn address<T>(&self, offset: u64) -> u64 {
        let size = size_of::<T>() as u64;
        assert!(
            offset.checked_add(size).is_some_and(|end| end <= self.len)
                && (self.base + offset).is_multiple_of(size),
            "MMIO access of {size} bytes at offset {offset:#x} outside {:#x} bytes at {:#x} or misaligned",
            self.len,
            self.phys
        );
        self.base + offset
    }

    /// The physical address mapped.
    pub fn phys(&self) -> u64 {
        self.phys
    }

    /// The virtual address of the first byte.
    pub fn virt(&self) -> u64 {
        self.base
    }

    /// The length mapped, in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the mapping is empty (never: empty ranges are refused).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    accessors! {
        u8 => read_u8, write_u8;
        u16 => read_u16, write_u16;
        u32 => read_u32, write_u32;
        u64 => read_u64, write_u64;
    }
}

impl Drop for Mmio {
    fn drop(&mut self) {
        let (virt, count) = self.pages;
        unmap(virt, count);
        MMIO_BYTES.fetch_sub(count * PAGE_SIZE, Ordering::Relaxed);
        CLAIMS.lock().retain(|c| *c != self.claim);
    }
}

/// Maps firmware memory `[phys, phys + len)` (ACPI tables, in ACPI, NVS or reserved memory)
/// read-only and write-back at its HHDM address, and returns that address. Pages already in
/// the HHDM are left as they are. Mappings are never removed, so the pointer stays valid.
///
/// Refused for memory the frame allocator hands out or the kernel maps writable (it is not
/// firmware's), and before [`super::init`].
pub fn map_firmware_raw(phys: u64, len: u64) -> Result<NonNull<u8>, MapError> {
    let (first, count) = page_span(phys, len)?;
    let hhdm = super::hhdm_offset();
    for page in (0..count).map(|i| first + i * PAGE_SIZE) {
        if frame::manages(page) {
            return Err(MapError::NotFirmware(page));
        }
    }
    tables::with(|t, m| {
        let pages = || (0..count).map(|i| first + i * PAGE_SIZE);
        // Writable HHDM pages are RAM the kernel uses (its image, modules, framebuffer).
        if let Some(page) = pages().find(|&p| t.translate(m, hhdm + p).is_some_and(|m| m.writable))
        {
            return Err(MapError::NotFirmware(page));
        }
        for page in pages() {
            if t.translate(m, hhdm + page).is_none() {
                t.map(
                    m,
                    hhdm + page,
                    page,
                    PageSize::Size4K,
                    Attributes::READ_ONLY,
                )?;
            }
        }
        Ok(())
    })??;
    NonNull::new((hhdm + phys) as *mut u8).ok_or(MapError::InvalidRange)
}

/// Maps firmware memory like [`map_firmware_raw`] and returns it as bytes.
///
/// The bytes are firmware tables, which nothing writes while the kernel runs.
pub fn map_firmware(phys: u64, len: u64) -> Result<&'static [u8], MapError> {
    let base = map_firmware_raw(phys, len)?;
    let len = usize::try_from(len).map_err(|_| MapError::InvalidRange)?;
    // SAFETY: `map_firmware_raw` mapped `len` bytes at `base` for good (mappings in the HHDM
    // are never removed), readable; the memory is firmware's, never handed out by the frame
    // allocator, so no Rust code writes it.
    Ok(unsafe { core::slice::from_raw_parts(base.as_ptr(), len) })
}
