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

/// Tests of file pages: bytes across page boundaries, holes, cuts, and mappings that share
/// the pages with `read` and `write`.
#[cfg(feature = "tests")]
pub mod tests {
    use alloc::{format, vec};

    use hal::user::{Access, AddressSpace};

    use super::{FileData, PAGE};
    use crate::{
        check,
        ktest::{TestResult, ktest},
    };

    /// Writes across page boundaries read back; a hole reads as zeros and takes no frame;
    /// a cut and a growth read zeros where the cut was, also inside the last page; every
    /// frame comes back when the file goes.
    #[ktest("file-pages")]
    pub fn pages() -> TestResult {
        // Made first: heap growth would take frames too.
        let bytes: vec::Vec<u8> = (0..PAGE + 100).map(|i| (i % 251) as u8).collect();
        let mut back = vec![0u8; bytes.len()];
        let mut hole = vec![1u8; 64];
        let mut cut = vec![1u8; 200];
        let free = hal::mm::stats().frames.free;
        {
            let mut file = FileData::default();
            file.set_len(5 * PAGE);
            check!(
                hal::mm::stats().frames.free == free,
                "a grown file took frames for its holes"
            );
            file.write_at(PAGE - 50, &bytes)
                .map_err(|e| format!("write: {e}"))?;
            check!(
                file.read_at(PAGE - 50, &mut back) == bytes.len(),
                "short read"
            );
            check!(back == bytes, "the bytes across pages differ");
            file.read_at(4 * PAGE, &mut hole);
            check!(hole.iter().all(|&b| b == 0), "a hole is not zeros");
            file.set_len(PAGE + 10);
            file.set_len(3 * PAGE);
            check!(
                file.read_at(PAGE, &mut cut) == 200,
                "short read after the cut"
            );
            check!(
                cut[..10] == bytes[50..60] && cut[10..].iter().all(|&b| b == 0),
                "a cut and a growth do not read zeros past the cut"
            );
            check!(
                file.read_at(3 * PAGE, &mut cut) == 0,
                "a read at the end returned bytes"
            );
            check!(
                file.write_at(3 * PAGE - 1, b"xy").is_err(),
                "a write past the length was taken"
            );
            file.zero_range(PAGE, PAGE + 5);
            file.read_at(PAGE, &mut cut[..10]);
            check!(
                cut[..5] == [0; 5] && cut[5..10] == bytes[55..60],
                "zero_range"
            );
        }
        check!(
            hal::mm::stats().frames.free == free,
            "the file's frames did not all come back"
        );
        Ok(())
    }

    /// A shared mapping writes the file's page itself; a private one copies it on the first
    /// write and leaves the file as it was, yet sees the file's writes until then; a page
    /// dropped from the file stays with the mapping until the space goes.
    #[ktest("file-pages-mapped")]
    pub fn mapped() -> TestResult {
        const AT: u64 = 0x40_0000;
        let contents = vec![b'f'; 2 * PAGE];
        let free = hal::mm::stats().frames.free;
        let shared_before = hal::mm::stats().shared_mappings;
        {
            let mut file = FileData::from_bytes(&contents).ok_or("no memory")?;
            let space = AddressSpace::new().map_err(|e| format!("new space: {e}"))?;
            let page = file.page(0).ok_or("page 0")?;
            space
                .map_cache(AT, page, Access::READ_WRITE, true, true)
                .map_err(|e| format!("shared map: {e}"))?;
            let page = file.page(1).ok_or("page 1")?;
            space
                .map_cache(AT + 4096, page, Access::READ_WRITE, false, true)
                .map_err(|e| format!("private map: {e}"))?;
            check!(
                space.query(AT + 4096) == Some(Access::READ_WRITE),
                "a private writable page does not report writable"
            );
            space
                .write(AT + 1, b"S")
                .map_err(|a| format!("write at {a:#x}"))?;
            let mut byte = [0u8; 1];
            file.read_at(1, &mut byte);
            check!(byte == *b"S", "a shared mapping's write missed the file");
            file.write_at(PAGE + 2, b"W").map_err(|e| format!("{e}"))?;
            space
                .read(AT + 4096 + 2, &mut byte)
                .map_err(|a| format!("read at {a:#x}"))?;
            check!(
                byte == *b"W",
                "a private mapping missed a write before its own"
            );
            space
                .write(AT + 4096 + 3, b"P")
                .map_err(|a| format!("write at {a:#x}"))?;
            file.read_at(PAGE + 3, &mut byte);
            check!(byte == *b"f", "a private mapping's write reached the file");
            file.write_at(PAGE + 4, b"L").map_err(|e| format!("{e}"))?;
            space
                .read(AT + 4096 + 4, &mut byte)
                .map_err(|a| format!("read at {a:#x}"))?;
            check!(byte == *b"f", "a private copy saw the file's later write");
            // The file shrinks to nothing; the shared page stays mapped with its bytes.
            file.set_len(0);
            space
                .read(AT + 1, &mut byte)
                .map_err(|a| format!("read at {a:#x}"))?;
            check!(
                byte == *b"S",
                "a mapped page lost its bytes when the file was cut"
            );
        }
        check!(
            hal::mm::stats().shared_mappings == shared_before,
            "references to the file's frames were left"
        );
        check!(
            hal::mm::stats().frames.free == free,
            "frames of the file or the space did not come back"
        );
        Ok(())
    }
}
