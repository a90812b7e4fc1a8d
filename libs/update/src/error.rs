//! The crate's one error type: what was wrong with a record, a manifest or a request.

use core::fmt;

/// Why a record or manifest was refused, or a state change was not allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The input ended before the structure did.
    Truncated,
    /// Bytes follow the end of the structure.
    TrailingBytes,
    /// The magic bytes or the domain string are not this structure's.
    BadMagic,
    /// A format version this code does not know.
    UnknownFormat(u16),
    /// The checksum does not match the contents.
    BadChecksum,
    /// The ed25519 signature does not verify with the given key.
    BadSignature,
    /// Signed with the public TEST-ONLY development key, which a release device refuses.
    TestOnlyKey,
    /// The public key is not a valid ed25519 point.
    BadKey,
    /// A length field exceeds its cap.
    TooLong,
    /// A field holds a value outside its range (the name says which).
    BadField(&'static str),
    /// Two payloads have the same name.
    DuplicatePayload,
    /// The output buffer is too small.
    BufferTooSmall,
    /// A payload's size or SHA-256 differs from the manifest's.
    PayloadMismatch,
    /// The state change is not allowed from the current state (the name says which).
    NotAllowed(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("truncated"),
            Self::TrailingBytes => f.write_str("unexpected bytes after the end"),
            Self::BadMagic => f.write_str("wrong magic (not this kind of data)"),
            Self::UnknownFormat(v) => write!(f, "unknown format version {v}"),
            Self::BadChecksum => f.write_str("checksum mismatch"),
            Self::BadSignature => f.write_str("signature does not verify"),
            Self::TestOnlyKey => f.write_str(
                "signed with the TEST-ONLY development key, which this release key refuses",
            ),
            Self::BadKey => f.write_str("invalid ed25519 public key"),
            Self::TooLong => f.write_str("a length exceeds its limit"),
            Self::BadField(name) => write!(f, "invalid {name}"),
            Self::DuplicatePayload => f.write_str("two payloads share a name"),
            Self::BufferTooSmall => f.write_str("output buffer too small"),
            Self::PayloadMismatch => f.write_str("payload size or SHA-256 mismatch"),
            Self::NotAllowed(what) => write!(f, "not allowed: {what}"),
        }
    }
}

impl core::error::Error for Error {}

/// The crate's result type.
pub type Result<T> = core::result::Result<T, Error>;
