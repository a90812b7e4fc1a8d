//! A RAM file's bytes, kept in page-sized frames ([`hal::mm::CacheFrame`]) that `mmap` maps
//! directly: `read`, `write` and every mapping of the file share one copy (the page cache,
//! which for tmpfs is the file itself). A page never written is a hole, read as zeros; it
//! gets a frame when it is written or mapped.

use alloc::vec::Vec;

use hal::mm::{CacheFrame, PAGE_SIZE};
use linux_raw_sys::errno as e;

const PAGE: usize = PAGE_SIZE as usize;

/// The bytes of a regular file.
#[derive(Default)]
pub struct FileData {
    /// The file's length in bytes.
    len: usize,
    /// Its pages, up to the page holding the last byte; `None` is a hole.
    pages: Vec<Option<CacheFrame>>,
}

impl FileData {
    /// A file holding `bytes`; `None` if memory ran out.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let mut data = Self::default();
        data.set_len(bytes.len());
        data.write_at(0, bytes).ok()?;
        Some(data)
    }

    /// Its length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// How many pages it has (the last one partly past the end).
    pub fn pages(&self) -> usize {
        self.pages.len()
    }

    /// Copies the bytes from `pos` into `out`, up to the end of the file; how many.
    pub fn read_at(&self, pos: usize, out: &mut [u8]) -> usize {
        let n = out.len().min(self.len.saturating_sub(pos));
        let mut done = 0;
        while done < n {
            let at = pos + done;
            let chunk = (PAGE - at % PAGE).min(n - done);
            let out = &mut out[done..done + chunk];
            match self.pages.get(at / PAGE).and_then(Option::as_ref) {
                Some(page) => {
                    page.read(at % PAGE, out);
                }
                None => out.fill(0),
            }
            done += chunk;
        }
        n
    }

    /// All its bytes (a program being loaded).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = alloc::vec![0; self.len];
        self.read_at(0, &mut out);
        out
    }

    /// Writes `bytes` at `pos`, inside the file's length (the caller grows it first);
    /// `ENOSPC` when no frame is left for a page (what was written before stays).
    pub fn write_at(&mut self, pos: usize, bytes: &[u8]) -> Result<(), u32> {
        let end = pos.checked_add(bytes.len()).ok_or(e::EFBIG)?;
        if end > self.len {
            return Err(e::EFBIG);
        }
        let mut done = 0;
        while done < bytes.len() {
            let at = pos + done;
            let chunk = (PAGE - at % PAGE).min(bytes.len() - done);
            let page = self.page(at / PAGE).ok_or(e::ENOSPC)?;
            page.write(at % PAGE, &bytes[done..done + chunk]);
            done += chunk;
        }
        Ok(())
    }

    /// Zeroes `[start, end)` (clamped to the file).
    pub fn zero_range(&mut self, start: usize, end: usize) {
        let end = end.min(self.len);
        let zeros = [0u8; PAGE];
        let mut at = start;
        while at < end {
            let chunk = (PAGE - at % PAGE).min(end - at);
            if let Some(Some(page)) = self.pages.get(at / PAGE) {
                page.write(at % PAGE, &zeros[..chunk]);
            }
            at += chunk;
        }
    }

    /// Sets the length: a growth reads as zeros (holes, nothing allocated); a cut drops the
    /// pages past the end and zeroes the rest of the last one, so a later growth reads zeros
    /// there too. A mapping keeps a dropped page until it is unmapped.
    pub fn set_len(&mut self, len: usize) {
        if len < self.len {
            let pages = len.div_ceil(PAGE);
            self.pages.truncate(pages);
            if !len.is_multiple_of(PAGE)
                && let Some(Some(page)) = self.pages.last()
            {
                page.zero_from(len % PAGE);
            }
        }
        self.pages.resize_with(len.div_ceil(PAGE), || None);
        self.len = len;
    }

    /// Empties the file.
    pub fn clear(&mut self) {
        self.set_len(0);
    }

    /// The page `index` (allocated if it was a hole) for a mapping or a write; `None` past
    /// the end of the file's pages or when memory ran out.
    pub fn page(&mut self, index: usize) -> Option<&CacheFrame> {
        let slot = self.pages.get_mut(index)?;
        if slot.is_none() {
            *slot = Some(CacheFrame::new()?);
        }
        slot.as_ref()
    }

    /// Whether the pages can be allocated at all: `set_len` only counts them.
    pub fn try_reserve(&mut self, len: usize) -> Result<(), ()> {
        self.pages
            .try_reserve(len.div_ceil(PAGE).saturating_sub(self.pages.len()))
            .map_err(|_| ())
    }
}
