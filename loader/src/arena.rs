//! The response arena: one bootloader-reclaimable allocation that receives every response,
//! string, array and table the kernel is handed, written through its physical address.
//!
//! Handing out offsets (and HHDM addresses for the kernel) rather than references keeps the
//! arena the single owner of its memory; structures are serialised with `bootcore`'s
//! [`Encode`], so no Rust type is ever placed over the memory.

use bootcore::proto::{Encode, encode_u64s};

use crate::{error::Error, mem::Region};

/// A bump allocator over a [`Region`].
pub struct Arena {
    region: Region,
    used: usize,
    hhdm: u64,
}

/// A place in the arena: offset for the loader, HHDM address for the kernel.
#[derive(Clone, Copy, Debug)]
pub struct Slot {
    /// Offset from the start of the arena.
    pub offset: usize,
    /// Address the kernel sees (HHDM).
    pub virt: u64,
}

impl Arena {
    /// An empty arena over `region`; the kernel will see it at `hhdm + phys`.
    pub fn new(region: Region, hhdm: u64) -> Self {
        Self {
            region,
            used: 0,
            hhdm,
        }
    }

    /// Reserves `size` zeroed bytes aligned to `align` (a power of two).
    pub fn reserve(&mut self, size: usize, align: usize) -> Result<Slot, Error> {
        let offset = self.used.next_multiple_of(align);
        let end = offset
            .checked_add(size)
            .ok_or(Error::Internal("response arena overflow"))?;
        if end as u64 > self.region.len() {
            return Err(Error::Internal("response arena too small"));
        }
        self.used = end;
        let phys = self.region.base() + offset as u64;
        Ok(Slot {
            offset,
            virt: self.hhdm + phys,
        })
    }

    /// Writes a structure into a fresh slot.
    pub fn put<T: Encode>(&mut self, value: &T) -> Result<Slot, Error> {
        let slot = self.reserve(T::SIZE, 8)?;
        self.write(slot, value)?;
        Ok(slot)
    }

    /// Writes a structure into an already reserved slot.
    pub fn write<T: Encode>(&mut self, slot: Slot, value: &T) -> Result<(), Error> {
        let out = self
            .region
            .bytes_mut()
            .get_mut(slot.offset..)
            .ok_or(Error::Internal("arena slot out of range"))?;
        value
            .encode(out)
            .map_err(|_| Error::Internal("arena slot too small"))
    }

    /// Copies bytes into a fresh slot.
    pub fn put_bytes(&mut self, bytes: &[u8], align: usize) -> Result<Slot, Error> {
        let slot = self.reserve(bytes.len(), align)?;
        self.region.bytes_mut()[slot.offset..slot.offset + bytes.len()].copy_from_slice(bytes);
        Ok(slot)
    }

    /// Copies a string plus a terminating NUL into a fresh slot; returns its HHDM address.
    pub fn put_str(&mut self, s: &str) -> Result<u64, Error> {
        let slot = self.reserve(s.len() + 1, 1)?;
        self.region.bytes_mut()[slot.offset..slot.offset + s.len()].copy_from_slice(s.as_bytes());
        Ok(slot.virt)
    }

    /// Writes an array of `u64` into an already reserved slot.
    pub fn write_u64s(&mut self, slot: Slot, values: &[u64]) -> Result<(), Error> {
        let out = self
            .region
            .bytes_mut()
            .get_mut(slot.offset..)
            .ok_or(Error::Internal("arena slot out of range"))?;
        encode_u64s(values, out).map_err(|_| Error::Internal("arena slot too small"))
    }

    /// Writes an array of `u64` (usually HHDM pointers) into a fresh slot.
    pub fn put_u64s(&mut self, values: &[u64]) -> Result<Slot, Error> {
        let slot = self.reserve(values.len() * 8, 8)?;
        encode_u64s(values, &mut self.region.bytes_mut()[slot.offset..])
            .map_err(|_| Error::Internal("arena slot too small"))?;
        Ok(slot)
    }
}
