//! Limine boot protocol logic that needs no firmware: config parsing, ELF loading, request
//! scanning, memory-map conversion and page-table construction. Host-tested.
//!
//! The loader (`loader/`) does the firmware work and calls in here for every decision that
//! can be made on plain bytes, so that the decisions get unit tests:
//!
//! - [`config`]: `limine.conf` parsing and entry selection.
//! - [`elf`]: executable validation, loading and relocation (Limine's policy; the bytes are
//!   read by the crates.io `elf` crate).
//! - [`requests`]: marker-aware request scanning and base revision policy.
//! - [`proto`]: protocol constants and response layouts with a safe byte encoding.
//! - [`madt`]: the ACPI MADT's CPUs, I/O APICs and local APIC address.
//! - [`mp`]: which APs to start, APIC mode, INIT-SIPI-SIPI values, AP trampoline layout.
//! - [`memmap`]: EFI memory map to Limine memory map conversion; HHDM range selection.
//! - [`paging`]: the kernel's first page tables, built in a pool of physical pages on the
//!   page-table core `frames::table` shares with hal.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

#[cfg(test)]
extern crate std;

pub mod config;
pub mod elf;
pub mod madt;
pub mod memmap;
pub mod mp;
pub mod paging;
pub mod proto;
pub mod requests;

/// Size of a small page.
pub const PAGE_SIZE: u64 = 4096;

/// Lowest address of the top 2 GiB, where every executable image must end up.
pub const HIGHER_HALF_KERNEL_BASE: u64 = 0xffff_ffff_8000_0000;

/// HHDM base for 4-level paging (before any randomisation).
pub const HHDM_BASE_4LVL: u64 = 0xffff_8000_0000_0000;

/// `value` rounded down to a multiple of `align` (a power of two).
pub const fn align_down(value: u64, align: u64) -> u64 {
    value & !(align - 1)
}

/// `value` rounded up to a multiple of `align` (a power of two), or `None` on overflow.
pub const fn align_up(value: u64, align: u64) -> Option<u64> {
    match value.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}
