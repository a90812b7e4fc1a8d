use std::{string::ToString, vec, vec::Vec};

use super::*;
use crate::proto::id;

/// Builds an image word by word.
#[derive(Default)]
struct Image(Vec<u64>);

impl Image {
    fn words(mut self, w: &[u64]) -> Self {
        self.0.extend_from_slice(w);
        self
    }

    fn pad(self, n: usize) -> Self {
        self.words(&vec![0; n])
    }

    fn start(self) -> Self {
        self.words(&START_MARKER)
    }

    fn end(self) -> Self {
        self.words(&END_MARKER)
    }

    fn tag(self, revision: u64) -> Self {
        self.words(&BASE_REVISION_MAGIC).words(&[revision])
    }

    /// A request with `extra` words after the header.
    fn request(self, id: [u64; 2], revision: u64, extra: &[u64]) -> Self {
        self.words(&COMMON_MAGIC)
            .words(&id)
            .words(&[revision, 0])
            .words(extra)
    }

    /// Word index where the next word goes, as a byte offset.
    fn here(&self) -> usize {
        self.0.len() * 8
    }

    fn bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|w| w.to_le_bytes()).collect()
    }
}

#[test]
fn finds_tag_and_requests_between_markers() {
    let img = Image::default().pad(3).start().pad(1);
    let tag_at = img.here();
    let img = img.tag(3);
    let hhdm_at = img.here();
    let img = img.request(id::HHDM, 0, &[]);
    let stack_at = img.here();
    let img = img
        .request(id::STACK_SIZE, 0, &[0x40000])
        .request([1, 2], 7, &[])
        .end();
    let img = img.request(id::RSDP, 0, &[]).pad(2);
    let bytes = img.bytes();

    let scan = scan(&bytes, bytes.len()).expect("valid");
    assert!(scan.start_marker && scan.end_marker);
    assert_eq!(
        scan.base_revision,
        Some(TagInfo {
            offset: tag_at,
            requested: 3
        })
    );
    assert_eq!(
        scan.requests.len(),
        3,
        "the request after the end marker is ignored"
    );
    let hhdm = scan.find(Feature::Hhdm).expect("hhdm");
    assert_eq!(hhdm.offset, hhdm_at);
    let stack = scan.find(Feature::StackSize).expect("stack size");
    assert_eq!(stack.offset, stack_at);
    assert_eq!(
        read_u64(&bytes, stack.field(crate::proto::req::STACK_SIZE)),
        Ok(0x40000)
    );
    let unknown = &scan.requests[2];
    assert_eq!(
        (unknown.feature, unknown.id, unknown.revision),
        (None, [1, 2], 7)
    );
    assert!(scan.find(Feature::Rsdp).is_none());
}

#[test]
fn start_marker_discards_earlier_findings() {
    // A tag and a duplicate pair before the last start marker are forgotten.
    let img = Image::default()
        .tag(1)
        .request(id::HHDM, 0, &[])
        .request(id::HHDM, 0, &[])
        .start()
        .request(id::MEMORY_MAP, 0, &[])
        .start();
    let hhdm_at = img.here();
    let bytes = img.request(id::HHDM, 0, &[]).end().bytes();
    let scan = scan(&bytes, bytes.len()).expect("valid");
    assert_eq!(scan.base_revision, None);
    assert_eq!(scan.requests.len(), 1);
    assert_eq!(scan.requests[0].offset, hhdm_at);
}

#[test]
fn works_without_markers() {
    let bytes = Image::default()
        .pad(1)
        .request(id::HHDM, 0, &[])
        .tag(3)
        .bytes();
    let scan = scan(&bytes, bytes.len()).expect("valid");
    assert!(!scan.start_marker && !scan.end_marker);
    assert_eq!(scan.requests.len(), 1);
    assert_eq!(scan.base_revision.map(|t| t.requested), Some(3));
}

#[test]
fn rejects_duplicates() {
    let img = Image::default().start().request(id::HHDM, 0, &[]);
    let second = img.here();
    let bytes = img.request(id::HHDM, 1, &[]).end().bytes();
    assert_eq!(
        scan(&bytes, bytes.len()),
        Err(ScanError::DuplicateRequest {
            id: id::HHDM,
            first: 32,
            second
        })
    );
    let bytes = Image::default().tag(3).pad(1).tag(3).bytes();
    assert_eq!(
        scan(&bytes, bytes.len()),
        Err(ScanError::DuplicateBaseRevision {
            first: 0,
            second: 32
        })
    );
}

#[test]
fn caps_the_request_count() {
    let mut img = Image::default();
    for i in 0..MAX_REQUESTS as u64 {
        img = img.request([i, i], 0, &[]);
    }
    let bytes = img.bytes();
    assert_eq!(
        scan(&bytes, bytes.len()).map(|s| s.requests.len()),
        Ok(MAX_REQUESTS)
    );
    let bytes = img.request([999, 999], 0, &[]).bytes();
    assert_eq!(scan(&bytes, bytes.len()), Err(ScanError::TooManyRequests));
}

#[test]
fn honours_scan_len_and_alignment() {
    let img = Image::default().pad(2);
    let at = img.here();
    let bytes = img.request(id::HHDM, 0, &[]).bytes();
    // Magic starting at or after scan_len is not seen.
    assert!(scan(&bytes, at).expect("valid").requests.is_empty());
    // The rest of a request may lie beyond scan_len.
    assert_eq!(scan(&bytes, at + 8).expect("valid").requests.len(), 1);
    assert!(matches!(
        scan(&bytes, bytes.len() + 1),
        Err(ScanError::ScanLenBeyondImage { .. })
    ));
    // Misaligned magic is not a request.
    let mut shifted = vec![0u8; 4];
    shifted.extend_from_slice(&bytes);
    shifted.extend_from_slice(&[0; 4]);
    assert!(
        scan(&shifted, shifted.len())
            .expect("valid")
            .requests
            .is_empty()
    );
    // A request cut off by the end of the image is an error, not a panic.
    let cut = &bytes[..at + 24];
    assert!(matches!(
        scan(cut, cut.len()),
        Err(ScanError::OutOfBounds(_))
    ));
    assert!(scan(&[], 0).expect("empty").requests.is_empty());
    assert!(scan(&[0; 7], 7).expect("short").requests.is_empty());
}

#[test]
fn base_revision_write_back() {
    let img = Image::default().pad(1);
    let at = img.here();
    let mut bytes = img.tag(3).bytes();
    let tag = scan(&bytes, bytes.len())
        .expect("valid")
        .base_revision
        .expect("tag");
    write_base_revision(&mut bytes, &tag, true, 3).expect("in bounds");
    assert_eq!(read_u64(&bytes, at), Ok(BASE_REVISION_MAGIC[0]));
    assert_eq!(read_u64(&bytes, at + 8), Ok(3), "tag[1] = revision used");
    assert_eq!(read_u64(&bytes, at + 16), Ok(0), "tag[2] = 0: supported");

    let mut bytes = Image::default().tag(9).bytes();
    let tag = TagInfo {
        offset: 0,
        requested: 9,
    };
    write_base_revision(&mut bytes, &tag, false, 3).expect("in bounds");
    assert_eq!(read_u64(&bytes, 8), Ok(3));
    assert_eq!(
        read_u64(&bytes, 16),
        Ok(9),
        "unsupported: tag[2] left alone"
    );

    let mut short = Image::default().tag(3).bytes();
    short.truncate(20);
    let before = short.clone();
    let tag = TagInfo {
        offset: 0,
        requested: 3,
    };
    assert!(write_base_revision(&mut short, &tag, true, 3).is_err());
    assert_eq!(short, before, "a failed write leaves the image alone");
    let far = TagInfo {
        offset: usize::MAX - 4,
        requested: 3,
    };
    assert!(write_base_revision(&mut short, &far, true, 3).is_err());
}

#[test]
fn revision_policy_accepts_only_3() {
    assert_eq!(decide_revision(Some(3)), Ok(3));
    for r in [
        Some(0),
        Some(1),
        Some(2),
        Some(4),
        Some(6),
        Some(u64::MAX),
        None,
    ] {
        assert_eq!(decide_revision(r), Err(ScanError::UnsupportedRevision(r)));
    }
    let msg = decide_revision(Some(6)).expect_err("refused").to_string();
    assert!(
        msg.contains("revision 6") && msg.contains("only base revision 3"),
        "{msg}"
    );
    let msg = decide_revision(None).expect_err("refused").to_string();
    assert!(msg.contains("no base revision tag"), "{msg}");
}

#[test]
fn u64_accessors_are_bounds_checked() {
    let mut buf = [0u8; 16];
    write_u64(&mut buf, 8, 0x0102_0304_0506_0708).expect("fits");
    assert_eq!(buf[8], 8);
    assert_eq!(read_u64(&buf, 8), Ok(0x0102_0304_0506_0708));
    assert_eq!(read_u64(&buf, 9), Err(ScanError::OutOfBounds(9)));
    assert_eq!(
        read_u64(&buf, usize::MAX),
        Err(ScanError::OutOfBounds(usize::MAX))
    );
    assert_eq!(
        write_u64(&mut buf, usize::MAX - 3, 1),
        Err(ScanError::OutOfBounds(usize::MAX - 3))
    );
}
