//! Validation, loading and relocation of the kernel's ELF64 file, with the checks Limine's
//! `common/lib/elf.c` makes (the protocol's "Entry memory layout" section states the rule
//! they enforce: the image ends up at or above `0xffffffff80000000`).
//!
//! The bytes are read by the crates.io `elf` crate, the one ELF reader of the workspace: the
//! kernel reads its own symbol table with it (`kernel/src/symbols.rs`), and a future user-space
//! `exec` of a static Linux ELF will read its header, program headers and entry the same way,
//! with its own policy (ET_EXEC, user half) in place of Limine's. It was chosen over a crate of
//! our own in `libs/` because it already is what such a crate would have to be: `no_std`,
//! without allocation, without `unsafe` (`#![forbid(unsafe_code)]`), every read bounds-checked
//! with checked arithmetic, fuzzed upstream, and it decodes every structure used here (file
//! header, program headers, dynamic entries, RELA entries, symbols, section headers, string
//! tables). A crate of our own would re-implement all of that; with `elf` nothing here decodes
//! an ELF structure by hand. What stays in this module is policy: which files Limine accepts
//! and how it places and relocates them. The one format detail left is RELR, which the crate
//! does not know; its entries are plain little-endian words.
//!
//! Only the file header and the program headers matter for loading: section headers are never
//! read, so a stripped or damaged section header table does not stop a boot (Limine reads them
//! only for base revision 0's `.limine_reqs`). One check goes beyond Limine's: `EI_VERSION`
//! must be `EV_CURRENT` (1), as the crate insists; every linker writes 1 there.
//!
//! The file is untrusted: every offset and size is checked with overflow-safe arithmetic and
//! every access is bounds-checked, so malformed input yields an [`ElfError`], never a panic.

use alloc::vec::Vec;
use core::fmt;

use elf::{
    ParseError,
    abi::{EI_NIDENT, EM_X86_64, ET_DYN, ET_EXEC, PN_XNUM, PT_DYNAMIC, PT_LOAD},
    endian::LittleEndian,
    file::{Class, FileHeader, parse_ident},
    parse::ParseAt,
    segment::ProgramHeader,
};

use self::reloc::Dynamic;
use crate::{HIGHER_HALF_KERNEL_BASE, PAGE_SIZE, align_down};

/// `PF_X`.
pub const PF_X: u32 = elf::abi::PF_X;
/// `PF_W`.
pub const PF_W: u32 = elf::abi::PF_W;
/// `PF_R`.
pub const PF_R: u32 = elf::abi::PF_R;

/// Why an executable was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Shorter than an ELF header, or a table lies outside the file.
    Truncated(&'static str),
    /// Not `\x7fELF`.
    BadMagic,
    /// Not ELFCLASS64.
    NotElf64,
    /// Not little-endian.
    NotLittleEndian,
    /// `e_machine` is not x86-64.
    WrongMachine(u16),
    /// `e_type` is neither ET_EXEC nor ET_DYN.
    WrongType(u16),
    /// A header field has a size the parser cannot use.
    BadHeader(&'static str),
    /// ET_DYN without a non-empty PT_DYNAMIC.
    DynWithoutDynamic,
    /// `p_filesz > p_memsz` in program header `index`.
    FileszExceedsMemsz {
        /// Program header index.
        index: usize,
    },
    /// A segment's file range is outside the file.
    SegmentOutOfFile {
        /// Program header index.
        index: usize,
    },
    /// A segment's address range wraps or does not fit the address space.
    SegmentAddressOverflow {
        /// Program header index.
        index: usize,
    },
    /// `p_align` is not zero or a power of two.
    BadAlignment {
        /// Program header index.
        index: usize,
    },
    /// Two PT_LOAD segments overlap.
    SegmentsOverlap {
        /// First program header index.
        a: usize,
        /// Second program header index.
        b: usize,
    },
    /// Two segments with different permissions share a 4 KiB page.
    PermissionsSharePage {
        /// First program header index.
        a: usize,
        /// Second program header index.
        b: usize,
    },
    /// No PT_LOAD with `p_memsz > 0`.
    NoLoadableSegments,
    /// A non-relocatable executable has a segment below `0xffffffff80000000`.
    NotInTopTwoGib,
    /// Segments both below and above `0xffffffff80000000`.
    MixedHalves,
    /// A relocatable lower-half image bigger than 2 GiB.
    TooLarge,
    /// The entry point lies outside every executable segment.
    EntryOutsideImage(u64),
    /// The dynamic section or a table it points to is malformed.
    BadDynamic(&'static str),
    /// `DT_PLTREL` is not `DT_RELA`.
    PltRelNotRela,
    /// A relocation type this loader does not implement.
    UnsupportedRelocation(u32),
    /// A relocation targets memory outside the image.
    RelocationOutOfImage {
        /// `r_offset` (unslid virtual address).
        offset: u64,
    },
    /// A symbol index beyond the symbol table, or an undefined non-weak symbol.
    BadSymbol(u32),
    /// `load` was given a buffer whose length is not `image_size()`.
    ImageBufferSize {
        /// Required length.
        expected: u64,
        /// Given length.
        actual: usize,
    },
    /// `slide` would move the image out of the top 2 GiB, or break alignment.
    BadSlide(u64),
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ElfError::Truncated(what) => write!(f, "truncated ELF file: {what} out of bounds"),
            ElfError::BadMagic => f.write_str("not an ELF file (bad magic)"),
            ElfError::NotElf64 => f.write_str("not a 64-bit ELF file"),
            ElfError::NotLittleEndian => f.write_str("not a little-endian ELF file"),
            ElfError::WrongMachine(m) => write!(f, "ELF machine {m:#x} is not x86-64"),
            ElfError::WrongType(t) => write!(f, "ELF type {t} is neither ET_EXEC nor ET_DYN"),
            ElfError::BadHeader(what) => write!(f, "bad ELF header: {what}"),
            ElfError::DynWithoutDynamic => f.write_str("ET_DYN executable without PT_DYNAMIC"),
            ElfError::FileszExceedsMemsz { index } => {
                write!(f, "program header {index}: p_filesz > p_memsz")
            }
            ElfError::SegmentOutOfFile { index } => {
                write!(f, "program header {index}: file range outside the file")
            }
            ElfError::SegmentAddressOverflow { index } => {
                write!(f, "program header {index}: address range overflows")
            }
            ElfError::BadAlignment { index } => {
                write!(f, "program header {index}: p_align is not a power of two")
            }
            ElfError::SegmentsOverlap { a, b } => {
                write!(f, "program headers {a} and {b} overlap")
            }
            ElfError::PermissionsSharePage { a, b } => write!(
                f,
                "program headers {a} and {b} have different permissions but share a 4 KiB page"
            ),
            ElfError::NoLoadableSegments => f.write_str("no loadable segments"),
            ElfError::NotInTopTwoGib => {
                f.write_str("non-relocatable executable has segments below 0xffffffff80000000")
            }
            ElfError::MixedHalves => {
                f.write_str("segments both below and above 0xffffffff80000000")
            }
            ElfError::TooLarge => f.write_str("image does not fit in the top 2 GiB"),
            ElfError::EntryOutsideImage(va) => {
                write!(f, "entry point {va:#x} is not in an executable segment")
            }
            ElfError::BadDynamic(what) => write!(f, "bad dynamic section: {what}"),
            ElfError::PltRelNotRela => f.write_str("DT_PLTREL is not DT_RELA"),
            ElfError::UnsupportedRelocation(t) => write!(f, "unsupported relocation type {t}"),
            ElfError::RelocationOutOfImage { offset } => {
                write!(f, "relocation at {offset:#x} is outside the image")
            }
            ElfError::BadSymbol(i) => write!(f, "bad or undefined symbol {i} in relocation"),
            ElfError::ImageBufferSize { expected, actual } => {
                write!(f, "image buffer is {actual} bytes, expected {expected}")
            }
            ElfError::BadSlide(s) => write!(f, "slide {s:#x} is not usable for this image"),
        }
    }
}

/// A PT_LOAD segment with `p_memsz > 0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Program header index.
    pub index: usize,
    /// `p_vaddr` (unslid).
    pub vaddr: u64,
    /// `p_memsz` (> 0).
    pub memsz: u64,
    /// `p_filesz` (<= memsz).
    pub filesz: u64,
    /// `p_offset`.
    pub offset: u64,
    /// `p_align` (0 or a power of two).
    pub align: u64,
    /// `PF_R` (read access is granted by the mapping anyway).
    pub read: bool,
    /// `PF_W`.
    pub write: bool,
    /// `PF_X`.
    pub exec: bool,
}

impl Segment {
    /// End of the segment in memory (exclusive), as u128 so that `2^64` is representable.
    fn end(&self) -> u128 {
        u128::from(self.vaddr) + u128::from(self.memsz)
    }

    fn same_permissions(&self, other: &Segment) -> bool {
        (self.read, self.write, self.exec) == (other.read, other.write, other.exec)
    }
}

/// Size of the ELF64 file header.
const EHDR_SIZE: usize = 64;
/// Size of an ELF64 program header: the smallest `e_phentsize` that holds one.
const PHDR_SIZE: usize = 56;

/// `b[off..off+len]`, or `None` if out of bounds or overflowing.
fn slice(b: &[u8], off: u64, len: u64) -> Option<&[u8]> {
    let off = usize::try_from(off).ok()?;
    let len = usize::try_from(len).ok()?;
    b.get(off..off.checked_add(len)?)
}

/// Why the identification bytes were refused, in the words of this module's errors.
fn ident_error(error: ParseError) -> ElfError {
    match error {
        ParseError::BadMagic(_) => ElfError::BadMagic,
        ParseError::UnsupportedElfClass(_) => ElfError::NotElf64,
        ParseError::UnsupportedElfEndianness(_) => ElfError::NotLittleEndian,
        ParseError::UnsupportedVersion(_) => ElfError::BadHeader("EI_VERSION is not EV_CURRENT"),
        _ => ElfError::Truncated("ELF header"),
    }
}

/// The file header of a little-endian ELF64 file for x86-64, of type ET_EXEC or ET_DYN.
fn file_header(file: &[u8]) -> Result<FileHeader<LittleEndian>, ElfError> {
    let truncated = ElfError::Truncated("ELF header");
    let ident = file.get(..EI_NIDENT).ok_or(truncated)?;
    let tail = file.get(EI_NIDENT..EHDR_SIZE).ok_or(truncated)?;
    let ident = parse_ident::<LittleEndian>(ident).map_err(ident_error)?;
    if ident.1 != Class::ELF64 {
        return Err(ElfError::NotElf64);
    }
    let header = FileHeader::parse_tail(ident, tail).map_err(|_| truncated)?;
    if header.e_machine != EM_X86_64 {
        return Err(ElfError::WrongMachine(header.e_machine));
    }
    if header.e_type != ET_EXEC && header.e_type != ET_DYN {
        return Err(ElfError::WrongType(header.e_type));
    }
    Ok(header)
}

/// The program headers, in table order, each read when the caller gets to it (so the first
/// problem in table order is the one reported). `e_phentsize` may exceed 56: the entries are
/// then spaced that far apart.
fn program_headers<'f>(
    file: &'f [u8],
    header: &FileHeader<LittleEndian>,
) -> Result<impl Iterator<Item = Result<ProgramHeader, ElfError>> + 'f, ElfError> {
    if usize::from(header.e_phentsize) < PHDR_SIZE {
        return Err(ElfError::BadHeader("e_phentsize smaller than 56"));
    }
    if header.e_phnum == PN_XNUM {
        return Err(ElfError::BadHeader(
            "extended program header count (PN_XNUM)",
        ));
    }
    let (phoff, phentsize) = (header.e_phoff, u64::from(header.e_phentsize));
    Ok((0..u64::from(header.e_phnum)).map(move |index| {
        let truncated = ElfError::Truncated("program header table");
        let mut at = index
            .checked_mul(phentsize)
            .and_then(|o| o.checked_add(phoff))
            .and_then(|o| usize::try_from(o).ok())
            .ok_or(truncated)?;
        ProgramHeader::parse_at(LittleEndian, Class::ELF64, &mut at, file).map_err(|_| truncated)
    }))
}

/// A validated executable borrowing its file.
#[derive(Clone, Debug)]
pub struct Executable<'a> {
    file: &'a [u8],
    entry: u64,
    segments: Vec<Segment>,
    min_vaddr: u64,
    max_vaddr: u64,
    max_align: u64,
    scan_len: u64,
    dynamic: Option<Dynamic>,
}

/// Parses and validates an executable: a little-endian ELF64 x86-64 ET_EXEC or ET_DYN file
/// whose loadable segments satisfy Limine's rules (the protocol's "Entry memory layout": the
/// image must end up at or above `0xffffffff80000000`; only relocatable ones may be linked
/// below and slid there).
pub fn parse(file: &[u8]) -> Result<Executable<'_>, ElfError> {
    let header = file_header(file)?;
    let e_type = header.e_type;
    let entry = header.e_entry;
    let mut segments = Vec::new();
    let mut dynamic_range = None;
    for (index, ph) in program_headers(file, &header)?.enumerate() {
        let ProgramHeader {
            p_type,
            p_flags,
            p_offset: offset,
            p_vaddr: vaddr,
            p_filesz: filesz,
            p_memsz: memsz,
            p_align: align,
            ..
        } = ph?;
        match p_type {
            PT_DYNAMIC if filesz > 0 => {
                slice(file, offset, filesz).ok_or(ElfError::SegmentOutOfFile { index })?;
                dynamic_range = Some((offset, filesz));
            }
            PT_LOAD if memsz > 0 => {
                if filesz > memsz {
                    return Err(ElfError::FileszExceedsMemsz { index });
                }
                slice(file, offset, filesz).ok_or(ElfError::SegmentOutOfFile { index })?;
                if align != 0 && !align.is_power_of_two() {
                    return Err(ElfError::BadAlignment { index });
                }
                let seg = Segment {
                    index,
                    vaddr,
                    memsz,
                    filesz,
                    offset,
                    align,
                    read: p_flags & PF_R != 0,
                    write: p_flags & PF_W != 0,
                    exec: p_flags & PF_X != 0,
                };
                // The page-rounded end must stay below 2^64 so that `max_vaddr` is a u64.
                if seg.end() + u128::from(PAGE_SIZE - 1) > u128::from(u64::MAX) {
                    return Err(ElfError::SegmentAddressOverflow { index });
                }
                segments.push(seg);
            }
            _ => {}
        }
    }
    if segments.is_empty() {
        return Err(ElfError::NoLoadableSegments);
    }
    if e_type == ET_DYN && dynamic_range.is_none() {
        return Err(ElfError::DynWithoutDynamic);
    }
    let relocatable = e_type == ET_DYN;

    let mut sorted = segments.clone();
    sorted.sort_by_key(|s| s.vaddr);
    for pair in sorted.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.end() > u128::from(b.vaddr) {
            return Err(ElfError::SegmentsOverlap {
                a: a.index,
                b: b.index,
            });
        }
        // `a.end() - 1` fits in u64: the segment is non-empty and ends below 2^64.
        let a_last_page = (a.end() - 1) as u64 / PAGE_SIZE;
        if !a.same_permissions(b) && a_last_page == b.vaddr / PAGE_SIZE {
            return Err(ElfError::PermissionsSharePage {
                a: a.index,
                b: b.index,
            });
        }
    }

    let higher = |s: &Segment| s.vaddr >= HIGHER_HALF_KERNEL_BASE;
    let all_higher = segments.iter().all(higher);
    let any_higher = segments.iter().any(higher);
    if any_higher && !all_higher {
        return Err(ElfError::MixedHalves);
    }
    if !all_higher && !relocatable {
        return Err(ElfError::NotInTopTwoGib);
    }

    let min_vaddr = align_down(sorted.first().map_or(0, |s| s.vaddr), PAGE_SIZE);
    let end = sorted.iter().map(Segment::end).max().unwrap_or(0);
    // Checked above: the rounded end of every segment is below 2^64.
    let max_vaddr = ((end + u128::from(PAGE_SIZE - 1)) & !u128::from(PAGE_SIZE - 1)) as u64;
    let max_align = segments
        .iter()
        .map(|s| s.align)
        .max()
        .unwrap_or(0)
        .max(PAGE_SIZE);
    let file_end = segments
        .iter()
        .map(|s| s.vaddr - min_vaddr + s.filesz)
        .max()
        .unwrap_or(0);
    let scan_len = align_down(file_end, 8);
    if !all_higher && max_vaddr - min_vaddr > 0u64.wrapping_sub(HIGHER_HALF_KERNEL_BASE) {
        return Err(ElfError::TooLarge);
    }

    let mut exe = Executable {
        file,
        entry,
        segments,
        min_vaddr,
        max_vaddr,
        max_align,
        scan_len,
        dynamic: None,
    };
    if relocatable && let Some((offset, size)) = dynamic_range {
        exe.dynamic = Some(exe.parse_dynamic(offset, size)?);
    }
    Ok(exe)
}

impl<'a> Executable<'a> {
    /// `e_entry` (unslid).
    pub fn entry(&self) -> u64 {
        self.entry
    }

    /// Loadable segments in program header order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Lowest segment address, rounded down to 4 KiB.
    pub fn min_vaddr(&self) -> u64 {
        self.min_vaddr
    }

    /// End of the highest segment, rounded up to 4 KiB (exclusive).
    pub fn max_vaddr(&self) -> u64 {
        self.max_vaddr
    }

    /// Largest `p_align` (at least 4 KiB): alignment of the physical allocation and of
    /// every slide.
    pub fn max_align(&self) -> u64 {
        self.max_align
    }

    /// ET_DYN with a non-empty PT_DYNAMIC.
    pub fn is_relocatable(&self) -> bool {
        self.dynamic.is_some()
    }

    /// `max_vaddr - min_vaddr`: bytes of the contiguous image.
    pub fn image_size(&self) -> u64 {
        self.max_vaddr - self.min_vaddr
    }

    /// End of the file-backed part of the image (relative to `min_vaddr`), aligned down to 8:
    /// how far the request scan goes.
    pub fn scan_len(&self) -> u64 {
        self.scan_len
    }

    /// The raw file.
    pub fn file(&self) -> &'a [u8] {
        self.file
    }

    /// Smallest and largest slide keeping the image in the top 2 GiB, both multiples of
    /// `max_align` (slides never move an image down).
    fn slide_range(&self) -> Result<(u64, u64), ElfError> {
        let align = u128::from(self.max_align);
        let min = u128::from(self.min_vaddr);
        let lo = u128::from(HIGHER_HALF_KERNEL_BASE)
            .saturating_sub(min)
            .div_ceil(align)
            * align;
        let top = (1u128 << 64)
            .checked_sub(u128::from(self.image_size()) + min)
            .ok_or(ElfError::TooLarge)?;
        let hi = top / align * align;
        if hi < lo {
            return Err(ElfError::TooLarge);
        }
        // Both are below 2^64: `hi <= 2^64 - image_size - min_vaddr`.
        Ok((lo as u64, hi as u64))
    }

    /// The slide to load at. Non-relocatable images get 0. Relocatable ones linked in the
    /// lower half get the smallest `max_align`-aligned slide that moves them to
    /// `>= 0xffffffff80000000`; higher-half ones get 0. With `kaslr_random = Some(r)` a
    /// relocatable image instead gets a uniformly chosen (modulo bias) slide derived from
    /// `r`, aligned to `max_align`, keeping the image inside the top 2 GiB.
    pub fn slide_for(&self, kaslr_random: Option<u64>) -> Result<u64, ElfError> {
        if !self.is_relocatable() {
            return Ok(0);
        }
        let (lo, hi) = self.slide_range()?;
        let Some(r) = kaslr_random else { return Ok(lo) };
        let choices = (hi - lo) / self.max_align + 1;
        Ok(lo + (r % choices) * self.max_align)
    }

    /// Checks that `slide` is one [`Executable::slide_for`] could return.
    fn check_slide(&self, slide: u64) -> Result<(), ElfError> {
        let ok = if self.is_relocatable() {
            let (lo, hi) = self.slide_range()?;
            slide.is_multiple_of(self.max_align) && (lo..=hi).contains(&slide)
        } else {
            slide == 0
        };
        if ok {
            Ok(())
        } else {
            Err(ElfError::BadSlide(slide))
        }
    }

    /// The address execution starts at: `requested` (the Entry Point request's `entry`,
    /// already slid because it was read from the relocated image) or `e_entry + slide`.
    /// Either must lie inside an executable segment.
    pub fn entry_point(&self, slide: u64, requested: Option<u64>) -> Result<u64, ElfError> {
        let va = requested.unwrap_or(self.entry.wrapping_add(slide));
        let unslid = va.wrapping_sub(slide);
        let inside = self
            .segments
            .iter()
            .any(|s| s.exec && unslid >= s.vaddr && u128::from(unslid) < s.end());
        if inside {
            Ok(va)
        } else {
            Err(ElfError::EntryOutsideImage(va))
        }
    }

    /// Copies the segments into `image` (which must be `image_size()` bytes and becomes the
    /// memory at `min_vaddr + slide`), zeroes the rest, and applies RELA and RELR relocations
    /// for `slide`.
    pub fn load(&self, image: &mut [u8], slide: u64) -> Result<(), ElfError> {
        if image.len() as u64 != self.image_size() {
            return Err(ElfError::ImageBufferSize {
                expected: self.image_size(),
                actual: image.len(),
            });
        }
        self.check_slide(slide)?;
        image.fill(0);
        for s in &self.segments {
            let src = slice(self.file, s.offset, s.filesz)
                .ok_or(ElfError::SegmentOutOfFile { index: s.index })?;
            let dst = slice_mut(image, s.vaddr - self.min_vaddr, s.filesz)
                .ok_or(ElfError::SegmentOutOfFile { index: s.index })?;
            dst.copy_from_slice(src);
        }
        if let Some(dynamic) = self.dynamic {
            self.relocate(&dynamic, image, slide)?;
        }
        Ok(())
    }

    /// File bytes backing `[va, va+len)` (unslid), if one segment's file part holds them.
    fn file_bytes(&self, va: u64, len: u64) -> Option<&'a [u8]> {
        let end = va.checked_add(len)?;
        let seg = self.segments.iter().find(|s| {
            va >= s.vaddr && u128::from(end) <= u128::from(s.vaddr) + u128::from(s.filesz)
        })?;
        slice(self.file, seg.offset.checked_add(va - seg.vaddr)?, len)
    }

    /// File bytes from `va` (unslid) to the end of the file part of the segment holding it:
    /// the bytes a table of unknown length (DT_SYMTAB) can use.
    fn file_bytes_from(&self, va: u64) -> Option<&'a [u8]> {
        let seg = self.segments.iter().find(|s| {
            va >= s.vaddr && u128::from(va) < u128::from(s.vaddr) + u128::from(s.filesz)
        })?;
        self.file_bytes(va, seg.filesz - (va - seg.vaddr))
    }
}

/// `b[off..off+len]` mutably, or `None` if out of bounds or overflowing.
fn slice_mut(b: &mut [u8], off: u64, len: u64) -> Option<&mut [u8]> {
    let off = usize::try_from(off).ok()?;
    let len = usize::try_from(len).ok()?;
    b.get_mut(off..off.checked_add(len)?)
}

mod reloc;

#[cfg(test)]
mod tests;
