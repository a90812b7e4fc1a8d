//! Bringing memory management up: the frame allocator from the memory map, the kernel's
//! page tables, the switch away from the loader's tables, and the same switch on each AP.

use core::{
    fmt,
    sync::atomic::{AtomicBool, Ordering},
};

use frames::{
    FrameAllocator, align_down, align_up,
    buddy::MAX_FRAMES,
    table::{Attributes, Cache, PageSize, PageTables},
};
use x86_64::{
    PhysAddr,
    registers::control::{Cr3, Cr3Flags},
    structures::paging::PhysFrame,
};

use super::{
    FrameError, HEAP_BASE, MapError, PAGE_SIZE, Protections, frame, protect, share,
    tables::{self, Hhdm},
};
use crate::{
    boot::{MemoryMapEntry, MemoryType},
    paging::ActiveTables,
};

static STARTED: AtomicBool = AtomicBool::new(false);

/// Why [`init`] failed. The kernel cannot run without memory management, so each of these
/// is fatal; the message says what the loader got wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// `init` was called before.
    AlreadyDone,
    /// The loader gave no memory map.
    NoMemoryMap,
    /// The loader gave no HHDM offset.
    NoHhdm,
    /// No usable region can hold the frame allocator's bookkeeping of this many bytes.
    NoRoomForMetadata(u64),
    /// The frame allocator refused the memory map.
    Frames(FrameError),
    /// Building the page tables failed.
    Map(MapError),
    /// The HHDM would reach into the kernel's windows (ends at this address).
    HhdmTooLarge(u64),
    /// The current stack is not covered by the new tables.
    StackNotMapped(u64),
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyDone => write!(f, "memory management already initialised"),
            Self::NoMemoryMap => write!(f, "the loader gave no memory map"),
            Self::NoHhdm => write!(f, "the loader gave no HHDM offset"),
            Self::NoRoomForMetadata(n) => {
                write!(f, "no usable region holds {n} bytes of frame bookkeeping")
            }
            Self::Frames(e) => write!(f, "frame allocator: {e}"),
            Self::Map(e) => write!(f, "building page tables: {e}"),
            Self::HhdmTooLarge(end) => write!(f, "the HHDM reaches {end:#x}, into the heap window"),
            Self::StackNotMapped(rsp) => write!(f, "the boot stack {rsp:#x} is not mapped"),
        }
    }
}

impl From<FrameError> for InitError {
    fn from(e: FrameError) -> Self {
        Self::Frames(e)
    }
}

impl From<MapError> for InitError {
    fn from(e: MapError) -> Self {
        Self::Map(e)
    }
}

impl From<frames::table::Error> for InitError {
    fn from(e: frames::table::Error) -> Self {
        Self::Map(e.into())
    }
}

/// What [`init`] set up.
#[derive(Clone, Copy, Debug)]
pub struct InitSummary {
    /// Frames handed to the allocator as free.
    pub free_frames: u64,
    /// Bootloader-reclaimable frames held back until [`super::reclaim_bootloader_memory`].
    pub reserved_frames: u64,
    /// Bytes of frame bookkeeping: the allocator's, and the reference counts of shared frames.
    pub metadata_bytes: u64,
    /// Bytes of physical memory mapped in the HHDM.
    pub hhdm_bytes: u64,
    /// The largest page size the HHDM uses.
    pub hhdm_page: PageSize,
    /// 4 KiB pages of the kernel image mapped.
    pub kernel_pages: u64,
    /// Page-table frames after the build.
    pub table_frames: u64,
    /// Protections now enabled.
    pub protections: Protections,
}

/// Builds the frame allocator and the kernel's page tables, switches to them and enables the
/// paging protections. Call once on the bootstrap CPU, after its GDT and IDT are loaded and
/// before any AP is released.
pub(crate) fn init() -> Result<InitSummary, InitError> {
    if STARTED.swap(true, Ordering::AcqRel) {
        return Err(InitError::AlreadyDone);
    }
    let r = crate::boot::live();
    let map = r.memory_map.ok_or(InitError::NoMemoryMap)?.entries();
    let hhdm = r.hhdm.ok_or(InitError::NoHhdm)?.offset();
    super::HHDM_OFFSET.store(hhdm, Ordering::Relaxed);
    let protections = Protections::supported();
    protect::prepare_for_tables(protections);

    let (metadata_bytes, free_frames, reserved_frames) = build_frame_allocator(map, hhdm)?;
    let span = frame::span().ok_or(InitError::NoMemoryMap)?;
    let share_bytes = (span.end - span.start) / PAGE_SIZE * 4;
    if !share::init(span) {
        return Err(InitError::NoRoomForMetadata(share_bytes));
    }
    let metadata_bytes = metadata_bytes + share_bytes.next_multiple_of(PAGE_SIZE);

    let mut memory = Hhdm::new(hhdm);
    let tables = PageTables::create(&mut memory, protections.nx)?;
    for slot in 256..512u64 {
        tables.prepare_top_level(&mut memory, 0xffff_0000_0000_0000 | (slot << 39))?;
    }
    let hhdm_page = if crate::cpu::Features::read().page1g {
        PageSize::Size1G
    } else {
        PageSize::Size2M
    };
    let hhdm_bytes = map_hhdm(&tables, &mut memory, map, hhdm, hhdm_page)?;
    let kernel_pages = map_kernel_image(&tables, &mut memory)?;

    let rsp = crate::cpu::stack_pointer();
    if tables.translate(&memory, rsp).is_none() {
        return Err(InitError::StackNotMapped(rsp));
    }
    load(tables.root());
    protect::enable(protections);
    tables::install(tables);
    crate::mm_hooks::set_ap_start(ap_start);

    Ok(InitSummary {
        free_frames,
        reserved_frames,
        metadata_bytes,
        hhdm_bytes,
        hhdm_page,
        kernel_pages,
        table_frames: tables::table_frames(),
        protections: Protections::active(),
    })
}

/// Loads `root` into CR3.
fn load(root: u64) {
    let frame = PhysFrame::from_start_address(PhysAddr::new(root))
        .expect("page tables are page-aligned frames");
    // SAFETY: `root` is the kernel hierarchy, which maps everything this CPU uses at the same
    // virtual addresses as before: the kernel image (same frames), and through the HHDM the
    // loader's stacks, responses and tables, the framebuffer, and all page tables. Its
    // intermediate tables stay allocated for as long as the kernel runs.
    unsafe { Cr3::write(frame, Cr3Flags::empty()) };
}

/// What every AP runs first: the PAT/NX set-up, the kernel's tables and the protections.
fn ap_start() {
    let root = tables::kernel_root();
    if root == 0 {
        return;
    }
    let protections = Protections::supported();
    protect::prepare_for_tables(protections);
    load(root);
    protect::enable(protections);
}

fn is_managed(entry: &MemoryMapEntry) -> bool {
    entry.entry_type == MemoryType::USABLE || entry.entry_type == MemoryType::BOOTLOADER_RECLAIMABLE
}

/// Builds the global frame allocator; returns (metadata bytes, free frames, reserved frames).
fn build_frame_allocator(map: &[&MemoryMapEntry], hhdm: u64) -> Result<(u64, u64, u64), InitError> {
    let managed = || map.iter().filter(|e| is_managed(e));
    let start = managed()
        .map(|e| e.base)
        .min()
        .ok_or(InitError::NoMemoryMap)?;
    // One allocator covers at most MAX_FRAMES frames from a 1 GiB boundary; memory beyond
    // that (over 1 TiB of address space) is left unused.
    let limit = align_down(start, 1 << 30) + MAX_FRAMES * PAGE_SIZE;
    let end = managed()
        .map(|e| e.base.saturating_add(e.length))
        .max()
        .ok_or(InitError::NoMemoryMap)?;
    if end > limit {
        log::warn!("mm: ignoring memory above {limit:#x} (frame allocator span limit)");
    }
    let end = end.min(limit);
    let words = FrameAllocator::metadata_words(start, end)?;
    let bytes =
        align_up(words as u64 * 8, PAGE_SIZE).ok_or(InitError::NoRoomForMetadata(u64::MAX))?;
    let region = map
        .iter()
        .filter(|e| e.entry_type == MemoryType::USABLE && e.length >= bytes + PAGE_SIZE)
        .max_by_key(|e| e.length)
        .ok_or(InitError::NoRoomForMetadata(bytes))?;
    // The bookkeeping takes the top of the region, so the region's low part stays free.
    let metadata = region.base + region.length - bytes;
    // SAFETY: `[metadata, metadata + bytes)` is usable RAM nothing else uses: the allocator
    // below never hands it out (it is cut from the region before adding it), the loader
    // maps it in the HHDM and so will the kernel, it is 8-byte aligned, and this slice is
    // the only reference ever made to it.
    let meta = unsafe { core::slice::from_raw_parts_mut((hhdm + metadata) as *mut u64, words) };
    let mut frames = FrameAllocator::new(meta, start, end)?;
    let (mut free, mut reserved) = (0, 0);
    for entry in map {
        let range_end = if entry.base == region.base {
            metadata
        } else {
            entry.base + entry.length
        };
        // Frame 0 stays out: a zero physical address is too easily a bug.
        let range = entry.base.max(PAGE_SIZE)..range_end.min(end);
        if entry.entry_type == MemoryType::USABLE {
            free += frames.add_free(range)?;
        } else if entry.entry_type == MemoryType::BOOTLOADER_RECLAIMABLE {
            reserved += frames.add_reserved(range)?;
        }
    }
    frame::install(frames);
    Ok((bytes, free, reserved))
}

/// Maps the memory-map regions the HHDM covers (the revision-3 set), merging neighbours of
/// the same memory type so large pages can be used; then any framebuffer not in the map.
/// Returns the bytes mapped.
fn map_hhdm(
    tables: &PageTables,
    memory: &mut Hhdm,
    map: &[&MemoryMapEntry],
    hhdm: u64,
    largest: PageSize,
) -> Result<u64, InitError> {
    let mut mapped = 0;
    let mut map_run = |start: u64, end: u64, cache: Cache| -> Result<(), InitError> {
        if hhdm + end > HEAP_BASE {
            return Err(InitError::HhdmTooLarge(hhdm + end));
        }
        let attributes = if cache == Cache::WriteCombining {
            Attributes::FRAMEBUFFER
        } else {
            Attributes::READ_WRITE
        };
        tables.map_range(
            memory,
            hhdm + start,
            start,
            end - start,
            attributes,
            largest,
        )?;
        mapped += end - start;
        Ok(())
    };
    let mut run: Option<(u64, u64, Cache)> = None;
    for entry in map {
        let cache = match entry.entry_type {
            MemoryType::USABLE
            | MemoryType::BOOTLOADER_RECLAIMABLE
            | MemoryType::EXECUTABLE_AND_MODULES => Cache::WriteBack,
            MemoryType::FRAMEBUFFER => Cache::WriteCombining,
            _ => continue,
        };
        let mut start = align_down(entry.base, PAGE_SIZE);
        let end = align_up(entry.base.saturating_add(entry.length), PAGE_SIZE)
            .ok_or(MapError::InvalidRange)?;
        match run {
            Some((s, e, c)) if start <= e && c == cache => run = Some((s, e.max(end), c)),
            Some((s, e, c)) => {
                map_run(s, e, c)?;
                start = start.max(e);
                run = (start < end).then_some((start, end, cache));
            }
            None => run = (start < end).then_some((start, end, cache)),
        }
    }
    if let Some((s, e, c)) = run {
        map_run(s, e, c)?;
    }
    // A loader may leave the framebuffer out of the memory map; the console still uses it.
    if let Some(response) = crate::boot::framebuffer_response() {
        for fb in response.framebuffers() {
            let phys = (fb.addr() as u64).wrapping_sub(hhdm);
            let len = fb.pitch().saturating_mul(fb.height());
            let first = align_down(phys, PAGE_SIZE);
            for page in (first..phys.saturating_add(len)).step_by(PAGE_SIZE as usize) {
                if tables.translate(memory, hhdm + page).is_none() {
                    let attributes = Attributes::FRAMEBUFFER;
                    tables.map(memory, hhdm + page, page, PageSize::Size4K, attributes)?;
                    mapped += PAGE_SIZE;
                }
            }
        }
    }
    Ok(mapped)
}

/// Maps the kernel image at the frames the loader put it in, with permissions from the
/// linker's section symbols: `.text` RX, `.rodata` R, the requests and data RW + NX. A page
/// outside every known section keeps the loader's permissions, but never W + X. Returns the
/// pages mapped.
fn map_kernel_image(tables: &PageTables, memory: &mut Hhdm) -> Result<u64, InitError> {
    let layout = crate::image::layout();
    let loader = ActiveTables::current();
    let touches = |range: &core::ops::Range<u64>, page: u64| {
        range.start < range.end
            && page < align_up(range.end, PAGE_SIZE).unwrap_or(u64::MAX)
            && page + PAGE_SIZE > range.start
    };
    let requests = layout.image.start..layout.text.start;
    let data = layout.data.start..layout.image.end;
    let end = align_up(layout.image.end, PAGE_SIZE).ok_or(MapError::InvalidRange)?;
    let mut pages = 0;
    for page in (align_down(layout.image.start, PAGE_SIZE)..end).step_by(PAGE_SIZE as usize) {
        let Some(m) = loader.translate(page) else {
            continue; // alignment gap between segments
        };
        let attributes = if touches(&layout.text, page) {
            Attributes::CODE
        } else if touches(&requests, page) || touches(&data, page) {
            Attributes::READ_WRITE
        } else if touches(&layout.rodata, page) {
            Attributes::READ_ONLY
        } else if m.writable {
            Attributes::READ_WRITE
        } else if m.executable {
            Attributes::CODE
        } else {
            Attributes::READ_ONLY
        };
        let phys = m.phys + (page - m.virt);
        tables.map(memory, page, phys, PageSize::Size4K, attributes)?;
        pages += 1;
    }
    Ok(pages)
}
