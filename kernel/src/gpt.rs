//! GUID partition tables: a disk's partitions, from its primary GPT.
//!
//! The header (sector 1) and the entry array are checked as UEFI says — signature, header
//! size, both CRC32s, the header's own LBA — and every used entry must lie inside the usable
//! range and overlap no other. A table that fails any check is reported and ignored as a
//! whole (as Linux does without `gpt` forcing): a disk with a damaged table has no
//! partitions rather than wrong ones. The backup table is not consulted.

use alloc::vec::Vec;
use core::fmt;

/// Bytes per sector (the only size virtio-blk reports here).
pub const SECTOR: usize = 512;
const SIGNATURE: &[u8; 8] = b"EFI PART";
/// The smallest header (UEFI 2.x: 92 bytes).
const MIN_HEADER: usize = 92;
/// The smallest entry.
const MIN_ENTRY: usize = 128;
/// The largest entry array read (UEFI's usual 128 entries of 128 bytes is 16 KiB).
const MAX_ENTRY_BYTES: usize = 1 << 20;

/// A partition: its number (from 1, its slot in the array) and sector range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    /// Slot in the entry array, from 1 (Linux's `vda1`...).
    pub number: u32,
    /// First sector.
    pub first: u64,
    /// Last sector (inclusive).
    pub last: u64,
    /// Partition type GUID, as stored (mixed-endian).
    pub type_guid: [u8; 16],
}

impl Partition {
    /// Length in sectors.
    pub fn sectors(&self) -> u64 {
        self.last - self.first + 1
    }
}

/// Why a table was ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GptError {
    /// No "EFI PART" signature (not a GPT disk).
    NoSignature,
    /// The header's size field is impossible.
    BadHeaderSize(u32),
    /// The header CRC does not match.
    BadHeaderCrc,
    /// The header does not say it is at sector 1.
    BadLba(u64),
    /// The entry size or count is impossible, or the array lies outside the disk.
    BadEntryArray,
    /// The entry array's CRC does not match.
    BadEntryCrc,
    /// An entry is outside the usable range or ends before it starts.
    BadEntry(u32),
    /// Two entries overlap.
    Overlap(u32, u32),
    /// Reading the disk failed.
    Read,
}

impl fmt::Display for GptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSignature => write!(f, "no GPT signature"),
            Self::BadHeaderSize(n) => write!(f, "impossible GPT header size {n}"),
            Self::BadHeaderCrc => write!(f, "GPT header CRC mismatch"),
            Self::BadLba(lba) => write!(f, "GPT header claims to be at LBA {lba}"),
            Self::BadEntryArray => write!(f, "impossible GPT entry array"),
            Self::BadEntryCrc => write!(f, "GPT entry array CRC mismatch"),
            Self::BadEntry(n) => write!(f, "partition {n} is outside the usable sectors"),
            Self::Overlap(a, b) => write!(f, "partitions {a} and {b} overlap"),
            Self::Read => write!(f, "cannot read the GPT"),
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("four bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("eight bytes"))
}

/// Where the entry array is, from a checked header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// First sector of the entry array.
    pub entries_lba: u64,
    /// Number of entries.
    pub count: u32,
    /// Bytes per entry.
    pub entry_size: u32,
    entries_crc: u32,
    first_usable: u64,
    last_usable: u64,
}

impl Header {
    /// The entry array's length in bytes.
    pub fn entry_bytes(&self) -> usize {
        self.count as usize * self.entry_size as usize
    }
}

/// Checks the header in `sector` (sector 1 of a disk of `sectors` sectors).
pub fn parse_header(sector: &[u8], sectors: u64) -> Result<Header, GptError> {
    if sector.len() < SECTOR || &sector[..8] != SIGNATURE {
        return Err(GptError::NoSignature);
    }
    let size = u32_at(sector, 12);
    if !(MIN_HEADER..=SECTOR).contains(&(size as usize)) {
        return Err(GptError::BadHeaderSize(size));
    }
    let mut copy = [0u8; SECTOR];
    copy[..size as usize].copy_from_slice(&sector[..size as usize]);
    copy[16..20].fill(0);
    if crc32fast::hash(&copy[..size as usize]) != u32_at(sector, 16) {
        return Err(GptError::BadHeaderCrc);
    }
    let my_lba = u64_at(sector, 24);
    if my_lba != 1 {
        return Err(GptError::BadLba(my_lba));
    }
    let header = Header {
        first_usable: u64_at(sector, 40),
        last_usable: u64_at(sector, 48),
        entries_lba: u64_at(sector, 72),
        count: u32_at(sector, 80),
        entry_size: u32_at(sector, 84),
        entries_crc: u32_at(sector, 88),
    };
    let entry_size = header.entry_size as usize;
    let array_sectors = header.entry_bytes().div_ceil(SECTOR) as u64;
    if entry_size < MIN_ENTRY
        || !entry_size.is_power_of_two()
        || header.entry_bytes() > MAX_ENTRY_BYTES
        || header.entries_lba < 2
        || header
            .entries_lba
            .checked_add(array_sectors)
            .is_none_or(|end| end > sectors)
        || header.first_usable > header.last_usable
        || header.last_usable >= sectors
    {
        return Err(GptError::BadEntryArray);
    }
    Ok(header)
}

/// Checks the entry array `entries` (at least [`Header::entry_bytes`] long) against `header`
/// and returns the used entries.
pub fn parse_entries(header: &Header, entries: &[u8]) -> Result<Vec<Partition>, GptError> {
    let entries = entries
        .get(..header.entry_bytes())
        .ok_or(GptError::BadEntryArray)?;
    if crc32fast::hash(entries) != header.entries_crc {
        return Err(GptError::BadEntryCrc);
    }
    let mut found: Vec<Partition> = Vec::new();
    for (slot, entry) in entries.chunks_exact(header.entry_size as usize).enumerate() {
        let type_guid: [u8; 16] = entry[..16].try_into().expect("sixteen bytes");
        if type_guid == [0; 16] {
            continue;
        }
        let number = slot as u32 + 1;
        let (first, last) = (u64_at(entry, 32), u64_at(entry, 40));
        if first > last || first < header.first_usable || last > header.last_usable {
            return Err(GptError::BadEntry(number));
        }
        if let Some(other) = found.iter().find(|p| first <= p.last && p.first <= last) {
            return Err(GptError::Overlap(other.number, number));
        }
        found.push(Partition {
            number,
            first,
            last,
            type_guid,
        });
    }
    Ok(found)
}

/// Reads and checks the primary GPT through `read(sector, buf)`.
pub fn read(
    sectors: u64,
    mut read: impl FnMut(u64, &mut [u8]) -> bool,
) -> Result<Vec<Partition>, GptError> {
    let mut sector = alloc::vec![0u8; SECTOR];
    if !read(1, &mut sector) {
        return Err(GptError::Read);
    }
    let header = parse_header(&sector, sectors)?;
    if header.entry_bytes() == 0 {
        return Ok(Vec::new());
    }
    let mut entries = alloc::vec![0u8; header.entry_bytes().div_ceil(SECTOR) * SECTOR];
    if !read(header.entries_lba, &mut entries) {
        return Err(GptError::Read);
    }
    parse_entries(&header, &entries)
}

/// Tests of the GPT checks, on the boot disk's real table and damaged copies of it.
#[cfg(feature = "tests")]
mod tests {
    use alloc::{format, vec, vec::Vec};

    use super::{GptError, SECTOR, parse_entries, parse_header};
    use crate::{
        check,
        ktest::{TestResult, ktest},
    };

    /// The EFI system partition's type GUID as stored on disk.
    const ESP: [u8; 16] = [
        0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9,
        0x3b,
    ];

    /// The boot disk's header sector and entry array.
    fn boot_table() -> Result<(u64, Vec<u8>, Vec<u8>), alloc::string::String> {
        let disk = crate::block::by_serial("evergreen-boot").ok_or("no boot disk")?;
        let mut header = vec![0u8; SECTOR];
        disk.read(1, &mut header).map_err(|e| format!("{e}"))?;
        let parsed = parse_header(&header, disk.sectors).map_err(|e| format!("{e}"))?;
        let mut entries = vec![0u8; parsed.entry_bytes().div_ceil(SECTOR) * SECTOR];
        disk.read(parsed.entries_lba, &mut entries)
            .map_err(|e| format!("{e}"))?;
        Ok((disk.sectors, header, entries))
    }

    /// Re-seals a header after an edit (its CRC over the header size, CRC field zeroed).
    fn seal(header: &mut [u8], entries: &[u8]) {
        let count = super::u32_at(header, 80) as usize;
        let size = super::u32_at(header, 84) as usize;
        header[88..92].copy_from_slice(&crc32fast::hash(&entries[..count * size]).to_le_bytes());
        header[16..20].fill(0);
        let len = super::u32_at(header, 12) as usize;
        let crc = crc32fast::hash(&header[..len]);
        header[16..20].copy_from_slice(&crc.to_le_bytes());
    }

    /// The boot disk has a valid GPT whose first partition is the EFI system partition, as
    /// `block::init` found it.
    #[ktest("gpt-boot-disk")]
    pub fn boot_disk() -> TestResult {
        let disk = crate::block::by_serial("evergreen-boot").ok_or("no boot disk")?;
        let first = disk.partitions.first();
        check!(
            first.is_some_and(|p| p.number == 1 && p.type_guid == ESP && p.sectors() > 0),
            "partitions {:?}",
            disk.partitions
        );
        let (sectors, header, entries) = boot_table()?;
        let parsed = parse_header(&header, sectors).map_err(|e| format!("{e}"))?;
        let again = parse_entries(&parsed, &entries);
        check!(again.as_ref() == Ok(&disk.partitions), "reparsed {again:?}");
        Ok(())
    }

    /// Damaged tables are refused with the reason: a flipped header byte, a flipped entry
    /// byte, overlapping partitions (with valid CRCs), a partition past the usable range,
    /// and an absurd entry size.
    #[ktest("gpt-damage-refused")]
    pub fn damage_refused() -> TestResult {
        let (sectors, header, entries) = boot_table()?;
        let mut bad = header.clone();
        bad[40] ^= 1;
        let got = parse_header(&bad, sectors);
        check!(
            got == Err(GptError::BadHeaderCrc),
            "flipped header: {got:?}"
        );
        let parsed = parse_header(&header, sectors).map_err(|e| format!("{e}"))?;
        let mut bad_entries = entries.clone();
        bad_entries[40] ^= 1;
        let got = parse_entries(&parsed, &bad_entries);
        check!(got == Err(GptError::BadEntryCrc), "flipped entry: {got:?}");
        let size = parsed.entry_size as usize;
        // A second partition on top of the first, the table re-sealed.
        let mut overlap = entries.clone();
        let (one, rest) = overlap.split_at_mut(size);
        let slot = (1..parsed.count as usize)
            .find(|i| rest[(i - 1) * size..(i - 1) * size + 16] == [0; 16])
            .ok_or("no free slot")?;
        rest[(slot - 1) * size..slot * size].copy_from_slice(one);
        let mut sealed = header.clone();
        seal(&mut sealed, &overlap);
        let resealed = parse_header(&sealed, sectors).map_err(|e| format!("{e}"))?;
        let got = parse_entries(&resealed, &overlap);
        check!(
            got == Err(GptError::Overlap(1, slot as u32 + 1)),
            "overlap: {got:?}"
        );
        // The first partition moved past the last usable sector.
        let mut outside = entries.clone();
        outside[40..48].copy_from_slice(&(sectors + 5).to_le_bytes());
        let mut sealed = header.clone();
        seal(&mut sealed, &outside);
        let resealed = parse_header(&sealed, sectors).map_err(|e| format!("{e}"))?;
        let got = parse_entries(&resealed, &outside);
        check!(got == Err(GptError::BadEntry(1)), "outside: {got:?}");
        let mut odd = header.clone();
        odd[84..88].copy_from_slice(&100u32.to_le_bytes());
        seal(&mut odd, &[0; 1 << 16]);
        let got = parse_header(&odd, sectors);
        check!(
            got == Err(GptError::BadEntryArray),
            "entry size 100: {got:?}"
        );
        Ok(())
    }
}
