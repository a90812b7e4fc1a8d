//! A release's signed manifest: what the release is and what its files must hash to.
//!
//! The loader boots a slot only when its manifest verifies with the public key built into the
//! loader and every file it loads has the size and SHA-256 the manifest names. The manifest
//! file is
//!
//! ```text
//! DOMAIN                      "evergreen release manifest v1\n" (30 bytes)
//! u32 body length             at most MAX_BODY_LEN
//! body                        the canonical encoding below
//! [u8; 64] ed25519 signature  over everything before it (DOMAIN, length and body)
//! ```
//!
//! and the body, little-endian, every length capped:
//!
//! ```text
//! u8 product length (1..=MAX_PRODUCT_LEN), product bytes ([a-z0-9-])
//! u64 version, u64 rollback index, u64 creation time (Unix seconds)
//! u8 boot tries (1..=MAX_TRIES)
//! u8 payload count (1..=MAX_PAYLOADS), then per payload:
//!   u8 name length (1..=MAX_NAME_LEN), name bytes ([a-z0-9._-]), u64 size, [u8; 32] SHA-256
//! ```
//!
//! The domain string separates this signature from any other the same key makes (a "latest"
//! document, say): a signature over one can never be replayed as the other. The decoder reads
//! only the framing (domain, length, signature position) before checking the signature, and
//! decodes the body only after it verifies. The encoding is canonical: one manifest has
//! exactly one encoding, and the decoder refuses anything the encoder would not produce.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::{
    Error, Result,
    state::MAX_TRIES,
    wire::{Reader, Writer},
};

/// The domain-separation string at the start of every manifest (and of what it signs).
pub const DOMAIN: &[u8; 30] = b"evergreen release manifest v1\n";
/// Longest product name.
pub const MAX_PRODUCT_LEN: usize = 32;
/// Longest payload name.
pub const MAX_NAME_LEN: usize = 64;
/// Most payloads in one release.
pub const MAX_PAYLOADS: usize = 8;
/// Largest payload (1 GiB): a slot is far smaller, and a larger claim is a lie.
pub const MAX_PAYLOAD_SIZE: u64 = 1 << 30;
/// Longest body: everything at its cap.
pub const MAX_BODY_LEN: usize =
    1 + MAX_PRODUCT_LEN + 3 * 8 + 1 + 1 + MAX_PAYLOADS * (1 + MAX_NAME_LEN + 8 + 32);
/// Longest manifest file.
pub const MAX_LEN: usize = DOMAIN.len() + 4 + MAX_BODY_LEN + SIGNATURE_LEN;
/// Bytes of an ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// The product name of Evergreen's own releases.
pub const PRODUCT: &str = "evergreen";

/// A short name held inline (no allocator needed): a product or payload name.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Name<const N: usize> {
    len: u8,
    bytes: [u8; N],
}

impl<const N: usize> Name<N> {
    /// `text` as a name, if it is 1 to `N` bytes of `[a-z0-9._-]` (`dot` allows `.` and `_`).
    fn parse(text: &[u8], dot: bool, what: &'static str) -> Result<Self> {
        if text.is_empty() || text.len() > N {
            return Err(Error::BadField(what));
        }
        let allowed = |c: u8| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || c == b'-'
                || dot && (c == b'.' || c == b'_')
        };
        if !text.iter().all(|&c| allowed(c)) {
            return Err(Error::BadField(what));
        }
        let mut bytes = [0; N];
        bytes[..text.len()].copy_from_slice(text);
        Ok(Self {
            len: text.len() as u8,
            bytes,
        })
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever accepted.
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl<const N: usize> core::fmt::Debug for Name<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// One file of a release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Payload {
    /// Its file name in the slot (`kernel`, `initramfs`).
    pub name: Name<MAX_NAME_LEN>,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: [u8; 32],
}

impl Payload {
    /// Describes `data` as the payload `name`.
    pub fn of(name: &str, data: &[u8]) -> Result<Payload> {
        let size = u64::try_from(data.len()).map_err(|_| Error::TooLong)?;
        if size > MAX_PAYLOAD_SIZE {
            return Err(Error::TooLong);
        }
        Ok(Payload {
            name: Name::parse(name.as_bytes(), true, "payload name")?,
            size,
            sha256: sha256(data),
        })
    }

    /// Checks that `data` is this payload: its size, then its SHA-256.
    pub fn check(&self, data: &[u8]) -> Result<()> {
        if data.len() as u64 != self.size || sha256(data) != self.sha256 {
            return Err(Error::PayloadMismatch);
        }
        Ok(())
    }
}

/// The public half of the TEST-ONLY development key (`runner/keys/dev-release-key.seed`,
/// public in the repository): the test suite signs with it, so anyone can. A device built
/// with a release key of its own refuses what it signed ([`Manifest::decode_release`]).
pub const TEST_ONLY_KEY: [u8; 32] = [
    0x5f, 0x59, 0xa9, 0xd2, 0xf8, 0xdd, 0xfc, 0x07, 0x03, 0xba, 0x46, 0x80, 0x5d, 0x79, 0x6b, 0x38,
    0x85, 0x73, 0xee, 0x98, 0xab, 0x84, 0x1c, 0x16, 0x3f, 0xff, 0x34, 0xea, 0x93, 0xf1, 0x96, 0x9f,
];

/// The optional payload holding the release's own kernel command-line words (signed like the
/// kernel: a release that needs `panic=reboot` or a test word carries it, not the ESP).
pub const CMDLINE_PAYLOAD: &str = "cmdline";
/// Longest release command line.
pub const MAX_CMDLINE_LEN: usize = 256;

/// The release command line in `data` (the [`CMDLINE_PAYLOAD`] file, its hash already
/// checked): at most [`MAX_CMDLINE_LEN`] bytes of printable ASCII and spaces, a trailing
/// newline allowed, and no `--` word (which would start init's arguments) nor `evergreen.`
/// word the loader itself says (`slot`, `version`, `state`, `tries`).
pub fn release_cmdline(data: &[u8]) -> Result<&str> {
    if data.len() > MAX_CMDLINE_LEN {
        return Err(Error::TooLong);
    }
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    if !data.iter().all(|&c| c == b' ' || c.is_ascii_graphic()) {
        return Err(Error::BadField("release command line"));
    }
    let text = core::str::from_utf8(data).map_err(|_| Error::BadField("release command line"))?;
    let loader_word = |w: &str| {
        ["slot", "version", "state", "tries"].iter().any(|k| {
            w.strip_prefix("evergreen.")
                .and_then(|r| r.strip_prefix(k))
                .is_some_and(|r| r.starts_with('='))
        })
    };
    if text.split(' ').any(|w| w == "--" || loader_word(w)) {
        return Err(Error::BadField("release command line"));
    }
    Ok(text.trim())
}

/// The SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// What a release is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Manifest {
    /// The product it is a release of.
    pub product: Name<MAX_PRODUCT_LEN>,
    /// Its version: updates only go up.
    pub version: u64,
    /// Its rollback index: no release under the floor boots.
    pub rollback_index: u64,
    /// When it was made (Unix seconds).
    pub created: u64,
    /// How many boots it gets on trial before it is marked bad.
    pub boot_tries: u8,
    payload_count: u8,
    payloads: [Option<Payload>; MAX_PAYLOADS],
}

impl Manifest {
    /// A manifest without payloads; add them with [`Manifest::add_payload`].
    pub fn new(
        product: &str,
        version: u64,
        rollback_index: u64,
        created: u64,
        boot_tries: u8,
    ) -> Result<Manifest> {
        if !(1..=MAX_TRIES).contains(&boot_tries) {
            return Err(Error::BadField("boot tries"));
        }
        Ok(Manifest {
            product: Name::parse(product.as_bytes(), false, "product")?,
            version,
            rollback_index,
            created,
            boot_tries,
            payload_count: 0,
            payloads: [None; MAX_PAYLOADS],
        })
    }

    /// Adds a payload; refused beyond [`MAX_PAYLOADS`] or for a name already present.
    pub fn add_payload(&mut self, payload: Payload) -> Result<()> {
        if self.payload(payload.name.as_str()).is_some() {
            return Err(Error::DuplicatePayload);
        }
        let slot = self
            .payloads
            .get_mut(usize::from(self.payload_count))
            .ok_or(Error::TooLong)?;
        *slot = Some(payload);
        self.payload_count += 1;
        Ok(())
    }

    /// The payloads, in manifest order.
    pub fn payloads(&self) -> impl Iterator<Item = &Payload> {
        self.payloads.iter().flatten()
    }

    /// The payload called `name`.
    pub fn payload(&self, name: &str) -> Option<&Payload> {
        self.payloads().find(|p| p.name.as_str() == name)
    }

    /// Writes the signed manifest file into `out` and returns its length.
    pub fn encode_signed(&self, key: &SigningKey, out: &mut [u8]) -> Result<usize> {
        let unsigned = self.encode_unsigned(out)?;
        let signature = key.sign(&out[..unsigned]).to_bytes();
        let end = unsigned + SIGNATURE_LEN;
        out.get_mut(unsigned..end)
            .ok_or(Error::BufferTooSmall)?
            .copy_from_slice(&signature);
        Ok(end)
    }

    /// Writes the domain, length and body (what the signature covers); returns their length.
    fn encode_unsigned(&self, out: &mut [u8]) -> Result<usize> {
        let mut body = [0u8; MAX_BODY_LEN];
        let body_len = self.encode_body(&mut body)?;
        let mut w = Writer::new(out);
        w.bytes(DOMAIN)?;
        w.u32(body_len as u32)?;
        w.bytes(&body[..body_len])?;
        Ok(w.len())
    }

    fn encode_body(&self, out: &mut [u8]) -> Result<usize> {
        if self.payload_count == 0 {
            return Err(Error::BadField("payload count"));
        }
        let mut w = Writer::new(out);
        w.u8(self.product.len)?;
        w.bytes(self.product.as_str().as_bytes())?;
        w.u64(self.version)?;
        w.u64(self.rollback_index)?;
        w.u64(self.created)?;
        w.u8(self.boot_tries)?;
        w.u8(self.payload_count)?;
        for p in self.payloads() {
            w.u8(p.name.len)?;
            w.bytes(p.name.as_str().as_bytes())?;
            w.u64(p.size)?;
            w.bytes(&p.sha256)?;
        }
        Ok(w.len())
    }

    /// Decodes a manifest file, checking its signature with `key` before reading any field
    /// of the body.
    pub fn decode(bytes: &[u8], key: &PublicKey) -> Result<Manifest> {
        if bytes.len() > MAX_LEN {
            return Err(Error::TooLong);
        }
        let mut r = Reader::new(bytes);
        if r.bytes(DOMAIN.len())? != DOMAIN {
            return Err(Error::BadMagic);
        }
        let body_len = r.u32()? as usize;
        if body_len > MAX_BODY_LEN {
            return Err(Error::TooLong);
        }
        let body = r.bytes(body_len)?;
        let signature = r.array::<SIGNATURE_LEN>()?;
        r.finish()?;
        let signed = &bytes[..bytes.len() - SIGNATURE_LEN];
        key.0
            .verify_strict(signed, &Signature::from_bytes(&signature))
            .map_err(|_| Error::BadSignature)?;
        Self::decode_body(body)
    }

    /// [`Manifest::decode`] for a device that trusts `key`: when `key` is a release key (not
    /// [`TEST_ONLY_KEY`]) and the manifest does not verify with it but does with the TEST-ONLY
    /// key, the error says so ([`Error::TestOnlyKey`]) instead of a bare bad signature.
    pub fn decode_release(bytes: &[u8], key: &PublicKey) -> Result<Manifest> {
        match Manifest::decode(bytes, key) {
            Err(Error::BadSignature) if !key.is_test_only() => {
                let test = PublicKey::from_bytes(&TEST_ONLY_KEY)?;
                match Manifest::decode(bytes, &test) {
                    Ok(_) => Err(Error::TestOnlyKey),
                    Err(_) => Err(Error::BadSignature),
                }
            }
            other => other,
        }
    }

    fn decode_body(body: &[u8]) -> Result<Manifest> {
        let mut r = Reader::new(body);
        let product_len = usize::from(r.u8()?);
        let product = Name::parse(r.bytes(product_len)?, false, "product")?;
        let version = r.u64()?;
        let rollback_index = r.u64()?;
        let created = r.u64()?;
        let boot_tries = r.u8()?;
        if !(1..=MAX_TRIES).contains(&boot_tries) {
            return Err(Error::BadField("boot tries"));
        }
        let count = usize::from(r.u8()?);
        if count == 0 || count > MAX_PAYLOADS {
            return Err(Error::BadField("payload count"));
        }
        let mut manifest = Manifest {
            product,
            version,
            rollback_index,
            created,
            boot_tries,
            payload_count: 0,
            payloads: [None; MAX_PAYLOADS],
        };
        for _ in 0..count {
            let name_len = usize::from(r.u8()?);
            let name = Name::parse(r.bytes(name_len)?, true, "payload name")?;
            let size = r.u64()?;
            if size > MAX_PAYLOAD_SIZE {
                return Err(Error::TooLong);
            }
            let sha256 = r.array()?;
            manifest.add_payload(Payload { name, size, sha256 })?;
        }
        r.finish()?;
        Ok(manifest)
    }
}

/// An ed25519 public key that releases are checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// The key from its 32-byte encoding; refused when it is not a valid curve point or is
    /// of small order (a weak key anyone could forge for).
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PublicKey> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| Error::BadKey)?;
        if key.is_weak() {
            return Err(Error::BadKey);
        }
        Ok(PublicKey(key))
    }

    /// The public half of a signing key.
    pub fn of(key: &SigningKey) -> PublicKey {
        PublicKey(key.verifying_key())
    }

    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// A key written as 64 hex digits (surrounding whitespace ignored), as `release keygen`
    /// prints it.
    pub fn from_hex(text: &str) -> Result<PublicKey> {
        let text = text.trim().as_bytes();
        if text.len() != 64 {
            return Err(Error::BadKey);
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            let pair = core::str::from_utf8(&text[2 * i..2 * i + 2]).map_err(|_| Error::BadKey)?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| Error::BadKey)?;
        }
        PublicKey::from_bytes(&bytes)
    }

    /// Whether this is the public TEST-ONLY development key.
    pub fn is_test_only(&self) -> bool {
        self.to_bytes() == TEST_ONLY_KEY
    }
}

/// Re-exported so that callers sign with the same crate version this one verifies with.
pub use ed25519_dalek::SigningKey as SecretKey;
