//! DMA buffers: physically contiguous, zeroed memory a device reads and writes.
//!
//! A [`DmaBuffer`] owns a run of frames from the frame allocator. The CPU reaches it through
//! the HHDM (write-back: x86 DMA is cache-coherent, so no flushes are needed); the device is
//! given [`DmaBuffer::device_address`]. That address is the only physical address a driver
//! ever handles, and it can only come from a live buffer, which frees its frames exactly once
//! when dropped. A driver must stop the device from using a buffer before dropping it — as
//! with any DMA, hal cannot stop a device that was told an address.

use core::fmt;

use super::{PAGE_SIZE, frame};

/// Why a DMA buffer could not be allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaError {
    /// Zero bytes, or more than fits the address space.
    BadSize,
    /// No run of free frames that long.
    OutOfMemory,
}

impl fmt::Display for DmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadSize => write!(f, "impossible DMA buffer size"),
            Self::OutOfMemory => write!(f, "no physically contiguous memory that large"),
        }
    }
}

/// Physically contiguous, page-aligned, zeroed memory for a device.
pub struct DmaBuffer {
    phys: u64,
    pages: u64,
    len: usize,
}

impl fmt::Debug for DmaBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmaBuffer")
            .field("device_address", &format_args!("{:#x}", self.phys))
            .field("len", &self.len)
            .finish()
    }
}

impl DmaBuffer {
    /// Allocates `len` bytes (rounded up to whole pages), zeroed.
    pub fn new(len: usize) -> Result<Self, DmaError> {
        let pages = (len as u64).div_ceil(PAGE_SIZE);
        if len == 0 || pages > 1 << 20 {
            return Err(DmaError::BadSize);
        }
        let phys = frame::alloc_contiguous(pages, 1).ok_or(DmaError::OutOfMemory)?;
        let mut buffer = Self { phys, pages, len };
        buffer.as_mut_slice().fill(0);
        Ok(buffer)
    }

    /// The address the device uses for the first byte.
    pub fn device_address(&self) -> u64 {
        self.phys
    }

    /// The buffer's length in bytes (as asked for).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty (never: empty buffers are refused).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole page run's length (what the device may touch).
    pub fn capacity(&self) -> usize {
        (self.pages * PAGE_SIZE) as usize
    }

    fn base(&self) -> *mut u8 {
        super::phys_to_virt(self.phys) as *mut u8
    }

    /// The bytes, for the CPU.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the frames are this buffer's alone (allocated from the frame allocator and
        // freed only on drop), mapped in the HHDM, and `len` bytes long at least. A device
        // writing them concurrently is the driver's protocol to order (it reads after the
        // device reports completion), and any byte value is a valid `u8`.
        unsafe { core::slice::from_raw_parts(self.base(), self.len) }
    }

    /// The bytes, for the CPU to write.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as for `as_slice`; `&mut self` makes this the only CPU-side reference.
        unsafe { core::slice::from_raw_parts_mut(self.base(), self.len) }
    }

    /// A pointer to the first byte, for code (such as a driver crate's `Hal` glue inside hal)
    /// that hands the memory on.
    pub(crate) fn as_ptr(&self) -> core::ptr::NonNull<u8> {
        core::ptr::NonNull::new(self.base()).expect("the HHDM never maps address zero")
    }
}

impl Drop for DmaBuffer {
    fn drop(&mut self) {
        if let Err(e) = frame::free_contiguous(self.phys, self.pages) {
            log::error!("mm: freeing a DMA buffer at {:#x}: {e}", self.phys);
        }
    }
}

// SAFETY: the buffer owns its frames; moving it to another CPU moves that ownership.
unsafe impl Send for DmaBuffer {}
// SAFETY: shared access only reads (`as_slice`); writes need `&mut`.
unsafe impl Sync for DmaBuffer {}
