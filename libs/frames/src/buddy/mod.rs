//! A buddy allocator for 4 KiB physical frames.
//!
//! Memory is handed out in naturally aligned blocks of 2^order frames, order 0..=[`MAX_ORDER`].
//! Each order has a doubly linked free list; the links live in the metadata slice, one `u64`
//! word per frame of the covered span, next to the frame's state:
//!
//! ```text
//!  bits  0..2   state: 0 none (interior of a block, or unmanaged), 1 free block head,
//!               2 allocated block head, 3 reserved (managed, held back until released)
//!  bit   2      managed: the frame belongs to memory added with `add_free`/`add_reserved`
//!  bits  3..8   order of the block headed here
//!  bits  8..36  free head: previous free block of the same order (frame index, NIL = none)
//!               allocated head: 0 if it starts an allocation, 1 if it continues one
//!  bits 36..64  free head: next free block of the same order
//!               allocated head: the allocation's owner tag
//! ```
//!
//! Every allocation carries an [`Owner`] tag, and a free must name the same owner: a caller
//! that hands raw frame numbers to safe code (as `hal::mm` does) can keep that code from
//! freeing frames it does not own, such as page tables.
//!
//! A contiguous run of a size that is not a power of two is kept as the aligned blocks it
//! decomposes into (3 pages: a 2-page block and a 1-page block); the "continues" mark on all
//! but the first lets `free_contiguous` insist on freeing exactly what was allocated.
//!
//! Allocation pops the smallest non-empty order at or above the one wanted (a bit mask finds
//! it in O(1)) and splits it; freeing merges with the buddy while the buddy is a free block of
//! the same order. Both are O([`MAX_ORDER`]). Every free is validated against the state words
//! (double frees and frames never handed out are errors that change nothing), and the
//! allocator never touches the frames themselves, so it works before they are mapped.
//!
//! The span starts at a multiple of 2^MAX_ORDER frames (1 GiB), so an index aligned to a
//! block size is also physically aligned to it: contiguous runs for DMA come out aligned.

use core::{fmt, ops::Range};

use crate::{PAGE_SIZE, align_down, align_up};

#[cfg(test)]
mod tests;

/// The largest block order: 2^18 frames = 1 GiB.
pub const MAX_ORDER: u32 = 18;
const ORDERS: usize = MAX_ORDER as usize + 1;

/// The most frames one allocator can cover (28-bit links), a 1 TiB span.
pub const MAX_FRAMES: u64 = (1 << 28) - 1;

const STATE_MASK: u64 = 0b11;
const STATE_NONE: u64 = 0;
const STATE_FREE: u64 = 1;
const STATE_ALLOCATED: u64 = 2;
const STATE_RESERVED: u64 = 3;
const MANAGED: u64 = 1 << 2;
const ORDER_SHIFT: u32 = 3;
const ORDER_MASK: u64 = 0x1f;
const PREV_SHIFT: u32 = 8;
const NEXT_SHIFT: u32 = 36;
const LINK_MASK: u64 = (1 << 28) - 1;
const NIL: usize = LINK_MASK as usize;
/// Allocated-head marks (kept in the `prev` field).
const RUN_START: usize = 0;
const RUN_CONTINUES: usize = 1;

/// Who an allocation belongs to; a free must name the same owner. At most 2^28 - 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner(pub u32);

/// Why a frame operation was refused. The allocator is unchanged after an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The address is not a multiple of the page size.
    Misaligned(u64),
    /// The frame is not memory this allocator manages.
    NotManaged(u64),
    /// The frame is not the start of an allocated block of that size: a double free, a frame
    /// never handed out, or a size different from the allocation's.
    NotAllocated(u64),
    /// The block was allocated for a different owner.
    WrongOwner(u64),
    /// A range to add contains a frame that is already managed.
    AlreadyManaged(u64),
    /// A frame to release was not reserved.
    NotReserved(u64),
    /// A range lies partly outside the span the metadata covers.
    OutsideSpan(u64),
    /// The span would cover more than [`MAX_FRAMES`] frames.
    SpanTooLarge,
    /// The metadata slice is shorter than the span needs.
    MetadataTooSmall {
        /// Words needed.
        needed: usize,
        /// Words given.
        given: usize,
    },
    /// Zero pages, or an alignment that is not a power of two.
    InvalidArgument,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Misaligned(a) => write!(f, "address {a:#x} is not page-aligned"),
            Self::NotManaged(a) => write!(f, "frame {a:#x} is not managed memory"),
            Self::NotAllocated(a) => {
                write!(
                    f,
                    "frame {a:#x} does not start an allocated block of that size"
                )
            }
            Self::WrongOwner(a) => write!(f, "frame {a:#x} belongs to another owner"),
            Self::AlreadyManaged(a) => write!(f, "frame {a:#x} is already managed"),
            Self::NotReserved(a) => write!(f, "frame {a:#x} is not reserved"),
            Self::OutsideSpan(a) => write!(f, "address {a:#x} is outside the allocator's span"),
            Self::SpanTooLarge => write!(f, "span larger than {MAX_FRAMES} frames"),
            Self::MetadataTooSmall { needed, given } => {
                write!(f, "metadata needs {needed} words, got {given}")
            }
            Self::InvalidArgument => write!(f, "zero pages or alignment not a power of two"),
        }
    }
}

/// Counts of frames by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames managed (free, allocated or reserved).
    pub managed: u64,
    /// Frames free.
    pub free: u64,
    /// Frames held back by [`FrameAllocator::add_reserved`] and not yet released.
    pub reserved: u64,
    /// Frames handed out.
    pub allocated: u64,
    /// The largest order with a free block, if any frame is free.
    pub largest_free_order: Option<u32>,
}

/// One frame's metadata word.
#[derive(Clone, Copy)]
struct Word(u64);

impl Word {
    fn state(self) -> u64 {
        self.0 & STATE_MASK
    }
    fn managed(self) -> bool {
        self.0 & MANAGED != 0
    }
    fn order(self) -> u32 {
        ((self.0 >> ORDER_SHIFT) & ORDER_MASK) as u32
    }
    fn prev(self) -> usize {
        ((self.0 >> PREV_SHIFT) & LINK_MASK) as usize
    }
    fn next(self) -> usize {
        ((self.0 >> NEXT_SHIFT) & LINK_MASK) as usize
    }
    fn is(self, state: u64, order: u32) -> bool {
        self.managed() && self.state() == state && self.order() == order
    }
    /// A managed frame in `state`, heading a block of `order`, with the given links.
    fn new(state: u64, order: u32, prev: usize, next: usize) -> Self {
        Self(
            state
                | MANAGED
                | (u64::from(order) << ORDER_SHIFT)
                | ((prev as u64 & LINK_MASK) << PREV_SHIFT)
                | ((next as u64 & LINK_MASK) << NEXT_SHIFT),
        )
    }
    fn with_prev(self, prev: usize) -> Self {
        Self((self.0 & !(LINK_MASK << PREV_SHIFT)) | ((prev as u64 & LINK_MASK) << PREV_SHIFT))
    }
    fn with_next(self, next: usize) -> Self {
        Self((self.0 & !(LINK_MASK << NEXT_SHIFT)) | ((next as u64 & LINK_MASK) << NEXT_SHIFT))
    }
}

/// Splits `count` frames from `start` into maximal naturally aligned blocks, lowest first.
fn blocks(start: usize, count: usize) -> impl Iterator<Item = (usize, u32)> {
    let end = start + count;
    let mut at = start;
    core::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let align = if at == 0 {
            MAX_ORDER
        } else {
            at.trailing_zeros().min(MAX_ORDER)
        };
        let fits = (end - at).ilog2();
        let order = align.min(fits);
        let block = (at, order);
        at += 1 << order;
        Some(block)
    })
}

/// The order of the smallest block holding `pages` frames.
fn order_for(pages: u64) -> u32 {
    if pages <= 1 {
        0
    } else {
        64 - (pages - 1).leading_zeros()
    }
}

/// A buddy allocator over the frames of one physical span. See the module docs.
pub struct FrameAllocator<'m> {
    meta: &'m mut [u64],
    /// Physical address of frame index 0 (a multiple of 2^MAX_ORDER frames).
    base: u64,
    /// Frames in the span.
    frames: usize,
    heads: [usize; ORDERS],
    /// Bit `o` set when the order-`o` free list is not empty.
    nonempty: u32,
    managed: u64,
    free: u64,
    reserved: u64,
}

impl<'m> FrameAllocator<'m> {
    /// The span (base, frames) covering physical addresses `[start, end)`.
    fn span_of(start: u64, end: u64) -> Result<(u64, usize), Error> {
        let base = align_down(start, PAGE_SIZE << MAX_ORDER);
        let end = align_up(end, PAGE_SIZE).ok_or(Error::SpanTooLarge)?;
        let frames = end.saturating_sub(base) / PAGE_SIZE;
        if frames > MAX_FRAMES {
            return Err(Error::SpanTooLarge);
        }
        Ok((base, frames as usize))
    }

    /// How many metadata words an allocator covering physical `[start, end)` needs.
    pub fn metadata_words(start: u64, end: u64) -> Result<usize, Error> {
        Self::span_of(start, end).map(|(_, frames)| frames)
    }

    /// An empty allocator whose span covers physical `[start, end)`, keeping its bookkeeping
    /// in `meta` (at least [`metadata_words`](Self::metadata_words) long). Add memory with
    /// [`add_free`](Self::add_free) and [`add_reserved`](Self::add_reserved).
    pub fn new(meta: &'m mut [u64], start: u64, end: u64) -> Result<Self, Error> {
        let (base, frames) = Self::span_of(start, end)?;
        if meta.len() < frames {
            return Err(Error::MetadataTooSmall {
                needed: frames,
                given: meta.len(),
            });
        }
        meta[..frames].fill(0);
        Ok(Self {
            meta,
            base,
            frames,
            heads: [NIL; ORDERS],
            nonempty: 0,
            managed: 0,
            free: 0,
            reserved: 0,
        })
    }

    /// The physical range the metadata covers.
    pub fn span(&self) -> Range<u64> {
        self.base..self.base + self.frames as u64 * PAGE_SIZE
    }

    /// Whether `phys` lies in a frame this allocator manages (free, allocated or reserved).
    pub fn manages(&self, phys: u64) -> bool {
        self.index_of(align_down(phys, PAGE_SIZE))
            .is_ok_and(|i| self.word(i).managed())
    }

    /// Whether the frame at `phys` is currently free.
    pub fn is_free(&self, phys: u64) -> bool {
        let Ok(index) = self.index_of(align_down(phys, PAGE_SIZE)) else {
            return false;
        };
        (0..=MAX_ORDER).any(|order| {
            let head = index & !((1 << order) - 1);
            let word = self.word(head);
            word.managed() && word.state() == STATE_FREE && head + (1usize << word.order()) > index
        })
    }

    /// Counts of frames by state.
    pub fn stats(&self) -> Stats {
        Stats {
            managed: self.managed,
            free: self.free,
            reserved: self.reserved,
            allocated: self.managed - self.free - self.reserved,
            largest_free_order: (self.nonempty != 0).then(|| 31 - self.nonempty.leading_zeros()),
        }
    }

    /// Adds the whole frames inside `range` as free memory. Returns how many were added.
    pub fn add_free(&mut self, range: Range<u64>) -> Result<u64, Error> {
        let (start, count) = self.claim(range)?;
        for (index, order) in blocks(start, count) {
            self.insert(index, order);
        }
        self.managed += count as u64;
        Ok(count as u64)
    }

    /// Adds the whole frames inside `range` as managed but held back: they are not handed
    /// out until [`release_reserved`](Self::release_reserved) frees them (bootloader memory
    /// still in use at boot). Returns how many were added.
    pub fn add_reserved(&mut self, range: Range<u64>) -> Result<u64, Error> {
        let (start, count) = self.claim(range)?;
        for index in start..start + count {
            self.set(index, Word::new(STATE_RESERVED, 0, NIL, NIL));
        }
        self.managed += count as u64;
        self.reserved += count as u64;
        Ok(count as u64)
    }

    /// Frees the reserved frames inside `range` for allocation. Every whole frame in the range
    /// must be reserved. Returns how many were released.
    pub fn release_reserved(&mut self, range: Range<u64>) -> Result<u64, Error> {
        let (start, count) = self.whole_frames(range)?;
        if let Some(bad) = (start..start + count).find(|&i| self.word(i).state() != STATE_RESERVED)
        {
            return Err(Error::NotReserved(self.phys_of(bad)));
        }
        for index in start..start + count {
            self.set(index, Word::new(STATE_NONE, 0, NIL, NIL));
        }
        for (index, order) in blocks(start, count) {
            self.insert(index, order);
        }
        self.reserved -= count as u64;
        Ok(count as u64)
    }

    /// Hands out one frame to `owner`.
    pub fn alloc(&mut self, owner: Owner) -> Option<u64> {
        self.alloc_contiguous(1, 1, owner)
    }

    /// Hands out `pages` physically contiguous frames whose first address is a multiple of
    /// `align_pages` frames (a power of two), to `owner`. Free them with
    /// [`free_contiguous`](Self::free_contiguous) and the same `pages` and owner.
    pub fn alloc_contiguous(&mut self, pages: u64, align_pages: u64, owner: Owner) -> Option<u64> {
        if pages == 0 || !align_pages.is_power_of_two() || owner.0 as u64 > LINK_MASK {
            return None;
        }
        let order = order_for(pages).max(align_pages.ilog2());
        if order > MAX_ORDER {
            return None;
        }
        let head = self.alloc_block(order)?;
        let pages = pages as usize;
        let size = 1usize << order;
        if pages < size {
            // Keep the blocks `pages` decomposes into, give the tail back.
            for (index, piece) in blocks(head, pages) {
                let mark = if index == head {
                    RUN_START
                } else {
                    RUN_CONTINUES
                };
                self.set(
                    index,
                    Word::new(STATE_ALLOCATED, piece, mark, owner.0 as usize),
                );
            }
            for (index, piece) in blocks(head + pages, size - pages) {
                self.set(index, Word::new(STATE_NONE, 0, NIL, NIL));
                self.insert(index, piece);
            }
        }
        if pages == size {
            self.set(
                head,
                Word::new(STATE_ALLOCATED, order, RUN_START, owner.0 as usize),
            );
        }
        Some(self.phys_of(head))
    }

    /// Takes back the frame at `phys`, handed out by [`alloc`](Self::alloc) to `owner`.
    pub fn free(&mut self, phys: u64, owner: Owner) -> Result<(), Error> {
        self.free_contiguous(phys, 1, owner)
    }

    /// Takes back `pages` frames from `phys`, handed out together by
    /// [`alloc_contiguous`](Self::alloc_contiguous) to `owner`. Nothing changes unless the run
    /// is exactly one live allocation of that owner.
    pub fn free_contiguous(&mut self, phys: u64, pages: u64, owner: Owner) -> Result<(), Error> {
        if pages == 0 {
            return Err(Error::InvalidArgument);
        }
        let start = self.index_of(phys)?;
        let end = pages
            .checked_mul(PAGE_SIZE)
            .and_then(|len| phys.checked_add(len))
            .ok_or(Error::OutsideSpan(phys))?;
        if end > self.span().end {
            return Err(Error::OutsideSpan(phys));
        }
        let count = pages as usize;
        for (index, order) in blocks(start, count) {
            let word = self.word(index);
            if !word.managed() {
                return Err(Error::NotManaged(self.phys_of(index)));
            }
            let mark = if index == start {
                RUN_START
            } else {
                RUN_CONTINUES
            };
            if !word.is(STATE_ALLOCATED, order) || word.prev() != mark {
                return Err(Error::NotAllocated(self.phys_of(index)));
            }
            if word.next() != owner.0 as usize {
                return Err(Error::WrongOwner(self.phys_of(index)));
            }
        }
        // The run must end here too: the next block must not continue it.
        let after = start + count;
        if after < self.frames {
            let word = self.word(after);
            if word.state() == STATE_ALLOCATED && word.prev() == RUN_CONTINUES {
                return Err(Error::NotAllocated(phys));
            }
        }
        for (index, order) in blocks(start, count) {
            self.set(index, Word::new(STATE_NONE, 0, NIL, NIL));
            self.insert(index, order);
        }
        Ok(())
    }

    fn phys_of(&self, index: usize) -> u64 {
        self.base + index as u64 * PAGE_SIZE
    }

    fn index_of(&self, phys: u64) -> Result<usize, Error> {
        if !phys.is_multiple_of(PAGE_SIZE) {
            return Err(Error::Misaligned(phys));
        }
        if phys < self.base {
            return Err(Error::NotManaged(phys));
        }
        let index = (phys - self.base) / PAGE_SIZE;
        if index >= self.frames as u64 {
            return Err(Error::NotManaged(phys));
        }
        Ok(index as usize)
    }

    /// The frame indices of the whole frames inside `range`, checked against the span.
    fn whole_frames(&self, range: Range<u64>) -> Result<(usize, usize), Error> {
        let start = align_up(range.start, PAGE_SIZE).ok_or(Error::OutsideSpan(range.start))?;
        let end = align_down(range.end, PAGE_SIZE);
        if end <= start {
            return Ok((0, 0));
        }
        if start < self.base || end > self.span().end {
            return Err(Error::OutsideSpan(start.max(self.base)));
        }
        Ok((self.index_of(start)?, ((end - start) / PAGE_SIZE) as usize))
    }

    /// Checks that no frame of `range` is managed yet, marks them managed (state none).
    fn claim(&mut self, range: Range<u64>) -> Result<(usize, usize), Error> {
        let (start, count) = self.whole_frames(range)?;
        if let Some(taken) = (start..start + count).find(|&i| self.word(i).managed()) {
            return Err(Error::AlreadyManaged(self.phys_of(taken)));
        }
        for index in start..start + count {
            self.set(index, Word::new(STATE_NONE, 0, NIL, NIL));
        }
        Ok((start, count))
    }

    fn word(&self, index: usize) -> Word {
        Word(self.meta[index])
    }

    fn set(&mut self, index: usize, word: Word) {
        self.meta[index] = word.0;
    }

    /// Puts the block at `index` on the order's free list.
    fn push(&mut self, index: usize, order: u32) {
        let head = self.heads[order as usize];
        self.set(index, Word::new(STATE_FREE, order, NIL, head));
        if head != NIL {
            let word = self.word(head).with_prev(index);
            self.set(head, word);
        }
        self.heads[order as usize] = index;
        self.nonempty |= 1 << order;
        self.free += 1 << order;
    }

    /// Takes the free block at `index` off its list; its word becomes "none".
    fn remove(&mut self, index: usize, order: u32) {
        let word = self.word(index);
        let (prev, next) = (word.prev(), word.next());
        if prev == NIL {
            self.heads[order as usize] = next;
        } else {
            let p = self.word(prev).with_next(next);
            self.set(prev, p);
        }
        if next != NIL {
            let n = self.word(next).with_prev(prev);
            self.set(next, n);
        }
        if self.heads[order as usize] == NIL {
            self.nonempty &= !(1 << order);
        }
        self.set(index, Word::new(STATE_NONE, 0, NIL, NIL));
        self.free -= 1 << order;
    }

    /// Frees the block at `index` (whose word is "none"), merging it with free buddies.
    fn insert(&mut self, mut index: usize, mut order: u32) {
        while order < MAX_ORDER {
            let buddy = index ^ (1 << order);
            if buddy >= self.frames || !self.word(buddy).is(STATE_FREE, order) {
                break;
            }
            self.remove(buddy, order);
            index = index.min(buddy);
            order += 1;
        }
        self.push(index, order);
    }

    /// Allocates a block of `order`, splitting a larger one if needed.
    fn alloc_block(&mut self, order: u32) -> Option<usize> {
        let candidates = self.nonempty >> order;
        if candidates == 0 {
            return None;
        }
        let mut current = order + candidates.trailing_zeros();
        let index = self.heads[current as usize];
        self.remove(index, current);
        while current > order {
            current -= 1;
            self.push(index + (1 << current), current);
        }
        self.set(index, Word::new(STATE_ALLOCATED, order, RUN_START, NIL));
        Some(index)
    }
}
