//! Strict mode (`evergreen_strict: yes` in `limine.conf`; the runner's `--loader-strict`).
//!
//! Wherever the Limine protocol leaves a choice to the loader, strict mode makes the choice a
//! kernel is least likely to expect, so that a kernel leaning on something the protocol does
//! not promise fails here, in CI, instead of under real Limine on somebody's PC. Every choice
//! and the protocol text that permits it is listed in `loader/README.md` ("Strict mode"); the
//! code that makes each choice asks [`on`].
//!
//! The setting is a process-wide flag because it is read once from the config, before any of
//! the choices, and never changes afterwards.

use core::sync::atomic::{AtomicBool, Ordering};

use bootcore::{
    HHDM_BASE_4LVL,
    proto::{MemmapEntry, memmap_type},
};

static ON: AtomicBool = AtomicBool::new(false);

/// Turns strict mode on (from the config).
pub fn enable() {
    ON.store(true, Ordering::Relaxed);
    log::info!("strict mode: every choice the protocol leaves open is made against the kernel");
}

/// Whether strict mode is on.
pub fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// The HHDM base in strict mode: the top of the range our `randomise_hhdm_base` draws from
/// (32 TiB above the usual base, less 1 GiB), so it is neither the customary
/// `0xffff800000000000` nor aligned to a PML4 slot (512 GiB).
pub const HHDM_BASE: u64 = HHDM_BASE_4LVL + (32 * 1024 - 1) * (1 << 30);

/// RFLAGS bits set at entry in strict mode besides the reserved bit 1: AC (alignment check /
/// SMAP override). The protocol fixes only IF, VM and DF ("Other flags undefined"); a kernel
/// that enables SMAP without clearing AC has no SMAP at all.
pub const ENTRY_RFLAGS_EXTRA: u64 = 1 << 18;

/// The byte strict mode fills usable memory with: the protocol never promises that usable
/// memory is zeroed, so a kernel that uses a fresh frame without clearing it sees this.
pub const POISON: u8 = 0xa5;

/// How much usable memory [`poison_usable`] fills whole; beyond it, only the first
/// [`POISON_HEAD`] bytes of every page (filling 5 GiB whole costs half a minute under TCG).
pub const POISON_WHOLE_BUDGET: u64 = 1 << 30;

/// The bytes at the start of each page poisoned beyond the budget.
pub const POISON_HEAD: usize = 64;

/// Fills usable memory with [`POISON`]: whole pages up to [`POISON_WHOLE_BUDGET`], then the
/// first [`POISON_HEAD`] bytes of every further page. Runs after ExitBootServices on the
/// firmware's page tables, which identity-map all memory.
pub fn poison_usable(entries: &[MemmapEntry]) {
    let mut whole_left = POISON_WHOLE_BUDGET;
    for e in entries.iter().filter(|e| e.ty == memmap_type::USABLE) {
        // Page 0 stays as it is: a null pointer cannot be written through in Rust.
        let mut page = e.base.max(PAGE);
        while page < e.base + e.length {
            let len = if whole_left > 0 {
                whole_left -= PAGE;
                PAGE as usize
            } else {
                POISON_HEAD
            };
            // SAFETY: USABLE entries are EFI conventional memory (boot-services memory, where
            // the loader's stack still lives, is reported bootloader-reclaimable), so after
            // ExitBootServices nothing owns them: no loader allocation, no firmware data. The
            // firmware's page tables, still active, identity-map all memory, so `page` (never
            // 0, page aligned, inside the entry) points to `len` <= 4096 writable bytes.
            unsafe { core::ptr::write_bytes(page as *mut u8, POISON, len) };
            page += PAGE;
        }
    }
}

const PAGE: u64 = 4096;
