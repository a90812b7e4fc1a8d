//! The AP trampoline page (below 1 MiB): the loader's real-mode → protected-mode → long-mode
//! code at offset 0, then a data block at [`DATA`] the code reads through fixed offsets.
//!
//! The constants below are page offsets shared with the loader's assembly. The code runs
//! with DS = CS = page >> 4 in real mode, so it reaches the block at the bare offsets; in
//! protected and long mode it adds the page's physical base. [`write_common`] fills the
//! fields every AP shares (once, after the page tables are built); [`write_ap`] sets the
//! per-AP fields before each start-up IPI. An AP sets [`BOOTED`] once it is parked and never
//! touches the page again.

use core::fmt;

use super::MAX_MTRR_MSRS;

/// Size of the trampoline page.
pub const PAGE: usize = 4096;
/// Offset of the data block; the code must fit below it.
pub const DATA: usize = 0xA00;
/// The GDT: the BSP's 7 descriptors (32-bit code 0x18, data 0x20; 64-bit code 0x28, data
/// 0x30).
pub const GDT: usize = DATA;
/// Real-mode GDTR: `u16` limit, `u32` base (the GDT's physical address).
pub const GDTR32: usize = DATA + 0x40;
/// Far pointer (`u32` offset, `u16` selector 0x18) to the 32-bit code.
pub const FAR32: usize = DATA + 0x48;
/// Far pointer (`u32` offset, `u16` selector 0x28) to the 64-bit code.
pub const FAR64: usize = DATA + 0x50;
/// Long-mode GDTR: `u16` limit, `u64` base (the BSP's GDT at its HHDM address).
pub const GDTR64: usize = DATA + 0x58;
/// IDTR to load (base 0, limit 0, as on the BSP).
pub const IDTR: usize = DATA + 0x68;
/// CR3 (the PML4, below 4 GiB).
pub const CR3: usize = DATA + 0x78;
/// CR4.
pub const CR4: usize = DATA + 0x80;
/// EFER (without LMA, which the CPU sets itself).
pub const EFER: usize = DATA + 0x88;
/// CR0 (with PG, which enters long mode).
pub const CR0: usize = DATA + 0x90;
/// The PAT MSR value.
pub const PAT: usize = DATA + 0x98;
/// Non-zero: write [`PAT`].
pub const HAS_PAT: usize = DATA + 0xA0;
/// One of [`APIC_KEEP`], [`APIC_X2APIC`], [`APIC_XAPIC`].
pub const APIC_MODE: usize = DATA + 0xA8;
/// HHDM address of this AP's `limine_mp_info` (per AP).
pub const INFO: usize = DATA + 0xB0;
/// HHDM address of the parking code.
pub const PARK: usize = DATA + 0xB8;
/// Set to 1 by the AP once parked (per AP; the BSP clears it).
pub const BOOTED: usize = DATA + 0xC0;
/// Number of `(msr, value)` pairs at [`MTRRS`].
pub const MTRR_COUNT: usize = DATA + 0xC8;
/// MTRRs to copy: [`MAX_MTRR_MSRS`] pairs of `u64` MSR number, `u64` value.
pub const MTRRS: usize = DATA + 0xD0;
/// End of the data block.
pub const DATA_END: usize = MTRRS + 16 * MAX_MTRR_MSRS;

/// [`APIC_MODE`]: leave the AP's local APIC in the mode it is in.
pub const APIC_KEEP: u64 = 0;
/// [`APIC_MODE`]: enable x2APIC mode.
pub const APIC_X2APIC: u64 = 1;
/// [`APIC_MODE`]: leave x2APIC mode for xAPIC mode if the AP is in it.
pub const APIC_XAPIC: u64 = 2;

/// GDT selector of the 32-bit code descriptor.
pub const CODE32_SELECTOR: u16 = 0x18;
/// GDT selector of the 64-bit code descriptor.
pub const CODE64_SELECTOR: u16 = 0x28;

/// EFER.LMA: set by the CPU when paging turns on with LME; read-only.
const EFER_LMA: u64 = 1 << 10;

const _: () = assert!(DATA_END <= PAGE, "trampoline data block overflows its page");

/// Everything all APs share.
#[derive(Clone, Copy, Debug)]
pub struct Common<'a> {
    /// Physical address of the trampoline page.
    pub page: u64,
    /// The trampoline code (position independent; copied to offset 0).
    pub code: &'a [u8],
    /// Offset of the 32-bit entry within `code`.
    pub prot32: usize,
    /// Offset of the 64-bit entry within `code`.
    pub long64: usize,
    /// The BSP's GDT descriptors.
    pub gdt: [u64; 7],
    /// HHDM address of the BSP's GDT (for the long-mode GDTR).
    pub gdt_hhdm: u64,
    /// CR3 (the loader's final PML4).
    pub cr3: u64,
    /// CR0, CR4 and EFER exactly as the BSP has them at entry.
    pub cr0: u64,
    /// See `cr0`.
    pub cr4: u64,
    /// See `cr0`.
    pub efer: u64,
    /// The PAT value, if the CPU has PAT.
    pub pat: Option<u64>,
    /// [`APIC_MODE`] value.
    pub apic_mode: u64,
    /// HHDM address of the parking code.
    pub park: u64,
    /// `(msr, value)` pairs to copy, IA32_MTRR_DEF_TYPE last.
    pub mtrrs: &'a [(u32, u64)],
}

/// Why the trampoline page cannot be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrampolineError {
    /// The page is not 4 KiB aligned below 1 MiB.
    PageNotLow(u64),
    /// The PML4 is not below 4 GiB (32-bit code loads CR3).
    Cr3High(u64),
    /// The code does not fit below the data block.
    CodeTooLong(usize),
    /// An entry offset lies outside the code.
    BadEntry(usize),
    /// More MTRRs than the block holds.
    TooManyMtrrs(usize),
    /// The buffer is not one page.
    PageSize(usize),
}

impl fmt::Display for TrampolineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrampolineError::PageNotLow(page) => {
                write!(
                    f,
                    "trampoline page {page:#x} is not a 4 KiB page below 1 MiB"
                )
            }
            TrampolineError::Cr3High(cr3) => write!(f, "PML4 {cr3:#x} is not below 4 GiB"),
            TrampolineError::CodeTooLong(len) => {
                write!(
                    f,
                    "trampoline code of {len} bytes does not fit below {DATA:#x}"
                )
            }
            TrampolineError::BadEntry(at) => write!(f, "trampoline entry {at:#x} outside code"),
            TrampolineError::TooManyMtrrs(n) => {
                write!(f, "{n} MTRRs to copy (at most {MAX_MTRR_MSRS})")
            }
            TrampolineError::PageSize(len) => write!(f, "trampoline buffer of {len} bytes"),
        }
    }
}

fn put(page: &mut [u8], at: usize, bytes: &[u8]) {
    page[at..at + bytes.len()].copy_from_slice(bytes);
}

fn put_u64(page: &mut [u8], at: usize, value: u64) {
    put(page, at, &value.to_le_bytes());
}

/// Writes the code and the shared fields into `page` (the whole trampoline page).
pub fn write_common(c: &Common<'_>, page: &mut [u8]) -> Result<(), TrampolineError> {
    if page.len() != PAGE {
        return Err(TrampolineError::PageSize(page.len()));
    }
    if super::sipi_vector(c.page).is_none() {
        return Err(TrampolineError::PageNotLow(c.page));
    }
    let Ok(cr3) = u32::try_from(c.cr3) else {
        return Err(TrampolineError::Cr3High(c.cr3));
    };
    if c.code.len() > DATA {
        return Err(TrampolineError::CodeTooLong(c.code.len()));
    }
    for entry in [c.prot32, c.long64] {
        if entry >= c.code.len() {
            return Err(TrampolineError::BadEntry(entry));
        }
    }
    if c.mtrrs.len() > MAX_MTRR_MSRS {
        return Err(TrampolineError::TooManyMtrrs(c.mtrrs.len()));
    }
    // The page is below 1 MiB, so every physical address in it fits in 32 bits.
    let base = c.page as u32;
    page.fill(0);
    put(page, 0, c.code);
    for (i, descriptor) in c.gdt.iter().enumerate() {
        put_u64(page, GDT + 8 * i, *descriptor);
    }
    let limit = (c.gdt.len() * 8 - 1) as u16;
    put(page, GDTR32, &limit.to_le_bytes());
    put(page, GDTR32 + 2, &(base + GDT as u32).to_le_bytes());
    put(page, FAR32, &(base + c.prot32 as u32).to_le_bytes());
    put(page, FAR32 + 4, &CODE32_SELECTOR.to_le_bytes());
    put(page, FAR64, &(base + c.long64 as u32).to_le_bytes());
    put(page, FAR64 + 4, &CODE64_SELECTOR.to_le_bytes());
    put(page, GDTR64, &limit.to_le_bytes());
    put_u64(page, GDTR64 + 2, c.gdt_hhdm);
    // IDTR stays all zero.
    put_u64(page, CR3, u64::from(cr3));
    put_u64(page, CR4, c.cr4);
    put_u64(page, EFER, c.efer & !EFER_LMA);
    put_u64(page, CR0, c.cr0);
    put_u64(page, PAT, c.pat.unwrap_or(0));
    put_u64(page, HAS_PAT, u64::from(c.pat.is_some()));
    put_u64(page, APIC_MODE, c.apic_mode);
    put_u64(page, PARK, c.park);
    put_u64(page, MTRR_COUNT, c.mtrrs.len() as u64);
    for (i, (msr, value)) in c.mtrrs.iter().enumerate() {
        put_u64(page, MTRRS + 16 * i, u64::from(*msr));
        put_u64(page, MTRRS + 16 * i + 8, *value);
    }
    Ok(())
}

/// Prepares the page for the next AP: its `limine_mp_info` (HHDM) and a cleared booted flag.
pub fn write_ap(info: u64, page: &mut [u8]) -> Result<(), TrampolineError> {
    if page.len() != PAGE {
        return Err(TrampolineError::PageSize(page.len()));
    }
    put_u64(page, INFO, info);
    put_u64(page, BOOTED, 0);
    Ok(())
}
