//! Request discovery in the loaded image and the base revision policy, as Limine's
//! `PROTOCOL.md` describes them in "Features" (8-byte aligned request IDs, one of each),
//! "Requests Delimiters" (the last start marker, the first end marker) and "Base protocol
//! revisions" (the base revision tag and how the loader answers it).
//!
//! The scan walks the relocated image in 8-byte steps up to the end of its file-backed part.
//! A start marker discards everything found before it; the first end marker stops the scan.

use alloc::vec::Vec;
use core::fmt;

use crate::proto::{
    BASE_REVISION_MAGIC, BASE_REVISION_TAG_SIZE, COMMON_MAGIC, END_MARKER, Feature, START_MARKER,
    req,
};

/// The only base revision this loader implements.
pub const SUPPORTED_REVISION: u64 = 3;

/// Most requests accepted (as Limine v8).
pub const MAX_REQUESTS: usize = 128;

/// Where the base revision tag is and which revision it asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TagInfo {
    /// Byte offset of the tag in the image.
    pub offset: usize,
    /// `tag[2]` as found: the requested revision.
    pub requested: u64,
}

/// A request found in the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FoundRequest {
    /// Byte offset of the request's `id[0]` in the image.
    pub offset: usize,
    /// The feature, if known.
    pub feature: Option<Feature>,
    /// Words 2 and 3 of the identifier.
    pub id: [u64; 2],
    /// The request's `revision` field (0 if the request runs past the scanned part).
    pub revision: u64,
}

impl FoundRequest {
    /// Image offset of the request field at `field` (one of [`crate::proto::req`]).
    pub fn field(&self, field: usize) -> usize {
        self.offset.saturating_add(field)
    }
}

/// The result of a scan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// The base revision tag, if any (none means revision 0).
    pub base_revision: Option<TagInfo>,
    /// Requests in image order.
    pub requests: Vec<FoundRequest>,
    /// Whether a start marker was seen.
    pub start_marker: bool,
    /// Whether an end marker was seen.
    pub end_marker: bool,
}

impl Scan {
    /// The request for `feature`, if present.
    pub fn find(&self, feature: Feature) -> Option<&FoundRequest> {
        self.requests.iter().find(|r| r.feature == Some(feature))
    }
}

/// Why scanning or writing back failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanError {
    /// Two base revision tags (byte offsets).
    DuplicateBaseRevision {
        /// First tag.
        first: usize,
        /// Second tag.
        second: usize,
    },
    /// Two requests with the same identifier.
    DuplicateRequest {
        /// Words 2 and 3 of the identifier.
        id: [u64; 2],
        /// First request offset.
        first: usize,
        /// Second request offset.
        second: usize,
    },
    /// More than [`MAX_REQUESTS`] requests.
    TooManyRequests,
    /// `scan_len` exceeds the image.
    ScanLenBeyondImage {
        /// Requested scan length.
        scan_len: usize,
        /// Image length.
        image_len: usize,
    },
    /// An access at this offset would leave the image.
    OutOfBounds(usize),
    /// The executable asks for a base revision other than [`SUPPORTED_REVISION`]
    /// (`None`: no tag, i.e. revision 0).
    UnsupportedRevision(Option<u64>),
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ScanError::DuplicateBaseRevision { first, second } => write!(
                f,
                "two base revision tags (image offsets {first:#x} and {second:#x})"
            ),
            ScanError::DuplicateRequest { id, first, second } => write!(
                f,
                "duplicate request {:#018x}:{:#018x} (image offsets {first:#x} and {second:#x})",
                id[0], id[1]
            ),
            ScanError::TooManyRequests => write!(f, "more than {MAX_REQUESTS} requests"),
            ScanError::ScanLenBeyondImage {
                scan_len,
                image_len,
            } => {
                write!(
                    f,
                    "scan length {scan_len:#x} exceeds image size {image_len:#x}"
                )
            }
            ScanError::OutOfBounds(off) => {
                write!(f, "access at image offset {off:#x} out of bounds")
            }
            ScanError::UnsupportedRevision(None) => write!(
                f,
                "executable has no base revision tag (revision 0); this loader implements only \
                 base revision {SUPPORTED_REVISION}"
            ),
            ScanError::UnsupportedRevision(Some(r)) => write!(
                f,
                "executable requests base revision {r}; this loader implements only base \
                 revision {SUPPORTED_REVISION}"
            ),
        }
    }
}

/// Whether the words at `offset` equal `words`.
fn words_at(image: &[u8], offset: usize, words: &[u64]) -> bool {
    words.iter().enumerate().all(|(i, &w)| {
        offset
            .checked_add(i * 8)
            .and_then(|o| read_u64(image, o).ok())
            .is_some_and(|v| v == w)
    })
}

/// Scans `image[..scan_len]` for markers, the base revision tag and requests.
///
/// Structures are recognised when their magic words start inside `image[..scan_len]` at an
/// 8-byte aligned offset; the rest of a structure may lie beyond `scan_len` as long as it is
/// inside `image`. After a match the scan continues behind the structure's header. A start
/// marker discards what was found before it; the first end marker stops the scan. What
/// remains must have at most one tag, at most [`MAX_REQUESTS`] requests and no duplicate
/// request identifiers.
pub fn scan(image: &[u8], scan_len: usize) -> Result<Scan, ScanError> {
    if scan_len > image.len() {
        return Err(ScanError::ScanLenBeyondImage {
            scan_len,
            image_len: image.len(),
        });
    }
    let mut found = Scan::default();
    // A second tag since the last start marker (checked once the scan is over).
    let mut duplicate_tag = None;
    let mut offset = 0;
    while offset + 8 <= scan_len {
        if words_at(image, offset, &START_MARKER) {
            found.base_revision = None;
            found.requests.clear();
            duplicate_tag = None;
            found.start_marker = true;
            offset += START_MARKER.len() * 8;
            continue;
        }
        if words_at(image, offset, &END_MARKER) {
            found.end_marker = true;
            break;
        }
        if words_at(image, offset, &BASE_REVISION_MAGIC) {
            let requested = read_u64(image, offset + 16)?;
            match found.base_revision {
                Some(first) => duplicate_tag = duplicate_tag.or(Some((first.offset, offset))),
                None => found.base_revision = Some(TagInfo { offset, requested }),
            }
            offset += BASE_REVISION_TAG_SIZE;
            continue;
        }
        if words_at(image, offset, &COMMON_MAGIC) {
            let id = [read_u64(image, offset + 16)?, read_u64(image, offset + 24)?];
            let revision = read_u64(image, offset + req::REVISION)?;
            // The response pointer must be inside the image too: the loader writes it.
            read_u64(image, offset + req::RESPONSE)?;
            found.requests.push(FoundRequest {
                offset,
                feature: Feature::from_id(id),
                id,
                revision,
            });
            offset += req::HEADER_LEN;
            continue;
        }
        offset += 8;
    }
    if let Some((first, second)) = duplicate_tag {
        return Err(ScanError::DuplicateBaseRevision { first, second });
    }
    if found.requests.len() > MAX_REQUESTS {
        return Err(ScanError::TooManyRequests);
    }
    for (i, second) in found.requests.iter().enumerate() {
        if let Some(first) = found.requests[..i].iter().find(|r| r.id == second.id) {
            return Err(ScanError::DuplicateRequest {
                id: second.id,
                first: first.offset,
                second: second.offset,
            });
        }
    }
    Ok(found)
}

/// The revision to boot with for a requested one (`None` = no tag = revision 0).
///
/// Policy: this loader implements exactly revision [`SUPPORTED_REVISION`] and refuses every
/// other request, as the specification encourages, rather than booting with a revision the
/// executable did not ask for.
pub fn decide_revision(requested: Option<u64>) -> Result<u64, ScanError> {
    match requested {
        Some(SUPPORTED_REVISION) => Ok(SUPPORTED_REVISION),
        other => Err(ScanError::UnsupportedRevision(other)),
    }
}

/// Writes the loader's answer into the tag: `tag[2] = 0` if `supported`, and always
/// `tag[1] = used_revision` (required from revision 3 on).
pub fn write_base_revision(
    image: &mut [u8],
    tag: &TagInfo,
    supported: bool,
    used_revision: u64,
) -> Result<(), ScanError> {
    // Check the whole tag first so that a failure leaves the image untouched.
    read_u64(
        image,
        tag.offset
            .checked_add(16)
            .ok_or(ScanError::OutOfBounds(tag.offset))?,
    )?;
    write_u64(image, tag.offset + 8, used_revision)?;
    if supported {
        write_u64(image, tag.offset + 16, 0)?;
    }
    Ok(())
}

/// Reads a little-endian `u64` at `offset`.
pub fn read_u64(image: &[u8], offset: usize) -> Result<u64, ScanError> {
    offset
        .checked_add(8)
        .and_then(|end| image.get(offset..end))
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or(ScanError::OutOfBounds(offset))
}

/// Writes a little-endian `u64` at `offset`.
pub fn write_u64(image: &mut [u8], offset: usize, value: u64) -> Result<(), ScanError> {
    offset
        .checked_add(8)
        .and_then(|end| image.get_mut(offset..end))
        .ok_or(ScanError::OutOfBounds(offset))?
        .copy_from_slice(&value.to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests;
