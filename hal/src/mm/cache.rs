//! Page-cache frames: the pages a RAM file's data lives in, which user address spaces may map
//! directly (`mmap` of a file), so that `read`, `write` and every mapping see one copy.
//!
//! A [`CacheFrame`] is a zeroed user frame the file holds one reference to (the counters of
//! [`super::share`]); each mapping of it holds another, so the frame outlives a truncation
//! that drops it from the file while a program still maps it, and is freed by whichever
//! reference goes last. The kernel reaches the bytes only through bounds-checked copies: user
//! mode may write them at the same time, and they are plain bytes either way.

use super::{PAGE_SIZE, frame, share};

/// One page of a file's data.
pub struct CacheFrame {
    /// The frame (allocated for hal as a user frame; this value holds one reference).
    phys: u64,
}

impl CacheFrame {
    /// A zeroed page, unless user memory is exhausted.
    pub fn new() -> Option<Self> {
        let phys = frame::alloc_user()?;
        super::tables::Hhdm::new(super::hhdm_offset()).zero(phys);
        Some(Self { phys })
    }

    /// The frame's physical address (for a mapping, which takes a reference of its own).
    pub(super) fn phys(&self) -> u64 {
        self.phys
    }

    /// Copies the bytes at `offset` into `out`; at most to the end of the page. Returns how
    /// many were copied.
    pub fn read(&self, offset: usize, out: &mut [u8]) -> usize {
        let n = out.len().min((PAGE_SIZE as usize).saturating_sub(offset));
        if n > 0 {
            // SAFETY: the frame is allocated while `self` holds its reference, mapped in the
            // HHDM, and `offset + n` stays inside its page; `out` is `n` bytes at least.
            // Mappings may write the frame meanwhile: plain bytes, no Rust invariant.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    (super::phys_to_virt(self.phys) as *const u8).add(offset),
                    out.as_mut_ptr(),
                    n,
                );
            }
        }
        n
    }

    /// Copies `data` to `offset`; at most to the end of the page. Returns how many bytes were
    /// copied.
    pub fn write(&self, offset: usize, data: &[u8]) -> usize {
        let n = data.len().min((PAGE_SIZE as usize).saturating_sub(offset));
        if n > 0 {
            // SAFETY: as in `read`, writing the frame from `data`.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    data.as_ptr(),
                    (super::phys_to_virt(self.phys) as *mut u8).add(offset),
                    n,
                );
            }
        }
        n
    }

    /// Zeroes the page from `offset` to its end.
    pub fn zero_from(&self, offset: usize) {
        let n = (PAGE_SIZE as usize).saturating_sub(offset);
        if n > 0 {
            // SAFETY: as in `write`.
            unsafe {
                core::ptr::write_bytes(
                    (super::phys_to_virt(self.phys) as *mut u8).add(offset),
                    0,
                    n,
                );
            }
        }
    }
}

impl Drop for CacheFrame {
    fn drop(&mut self) {
        // The file's reference; a mapping that still has the frame keeps it.
        share::put(self.phys);
    }
}
