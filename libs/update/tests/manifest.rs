//! Release manifests: encoding, signatures and parsers under attack.

mod common;

use common::Rng;
use update::{
    Error,
    manifest::{
        DOMAIN, MAX_BODY_LEN, MAX_LEN, MAX_NAME_LEN, MAX_PAYLOAD_SIZE, MAX_PAYLOADS,
        MAX_PRODUCT_LEN, Manifest, Payload, PublicKey, SecretKey, sha256,
    },
};

fn key(seed: u8) -> SecretKey {
    SecretKey::from_bytes(&[seed; 32])
}

fn sample() -> Manifest {
    let mut m = Manifest::new("evergreen", 2, 1, 1_700_000_000, 3).expect("valid");
    m.add_payload(Payload::of("kernel", b"kernel bytes").expect("small"))
        .expect("room");
    m.add_payload(Payload::of("initramfs", &[7; 1000]).expect("small"))
        .expect("room");
    m
}

fn encode(m: &Manifest, k: &SecretKey) -> Vec<u8> {
    let mut out = vec![0; MAX_LEN];
    let len = m.encode_signed(k, &mut out).expect("fits");
    out.truncate(len);
    out
}

/// Signs arbitrary `body` bytes in the manifest framing, as a key holder making a malformed
/// manifest could.
fn sign_raw(body: &[u8], k: &SecretKey) -> Vec<u8> {
    use ed25519_dalek::Signer;
    let mut out = DOMAIN.to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    let sig = k.sign(&out).to_bytes();
    out.extend_from_slice(&sig);
    out
}

/// A body built field by field, for malformed-but-signed tests.
fn body(product: &[u8], tries: u8, payloads: &[(&[u8], u64)]) -> Vec<u8> {
    let mut b = vec![product.len() as u8];
    b.extend_from_slice(product);
    for v in [2u64, 1, 1_700_000_000] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.push(tries);
    b.push(payloads.len() as u8);
    for (name, size) in payloads {
        b.push(name.len() as u8);
        b.extend_from_slice(name);
        b.extend_from_slice(&size.to_le_bytes());
        b.extend_from_slice(&[0xab; 32]);
    }
    b
}

#[test]
fn round_trip_with_the_right_key() {
    let k = key(1);
    let m = sample();
    let bytes = encode(&m, &k);
    assert!(bytes.starts_with(DOMAIN));
    let back = Manifest::decode(&bytes, &PublicKey::of(&k)).expect("verifies");
    assert_eq!(back, m);
    assert_eq!(back.product.as_str(), "evergreen");
    let names: Vec<_> = back.payloads().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["kernel", "initramfs"]);
    // The same manifest and key always give the same bytes (canonical, deterministic).
    assert_eq!(encode(&m, &k), bytes);
    // And the raw builder agrees with the encoder about the format.
    let raw = body(b"evergreen", 3, &[(b"k", 5)]);
    let decoded = Manifest::decode(&sign_raw(&raw, &k), &PublicKey::of(&k)).expect("valid");
    assert_eq!(decoded.payload("k").map(|p| p.size), Some(5));
}

#[test]
fn a_flipped_byte_at_every_offset_is_refused() {
    let k = key(1);
    let public = PublicKey::of(&k);
    let bytes = encode(&sample(), &k);
    for offset in 0..bytes.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut bad = bytes.clone();
            bad[offset] ^= flip;
            assert!(
                Manifest::decode(&bad, &public).is_err(),
                "flip {flip:#x} at {offset} accepted"
            );
        }
    }
}

#[test]
fn every_truncation_and_extension_is_refused() {
    let k = key(1);
    let public = PublicKey::of(&k);
    let bytes = encode(&sample(), &k);
    for len in 0..bytes.len() {
        assert!(Manifest::decode(&bytes[..len], &public).is_err(), "{len}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        Manifest::decode(&longer, &public),
        Err(Error::TrailingBytes)
    );
}

#[test]
fn random_mutations_never_panic_and_never_verify() {
    let k = key(1);
    let public = PublicKey::of(&k);
    let bytes = encode(&sample(), &k);
    let mut rng = Rng::new(4);
    for _ in 0..3000 {
        let mut bad = bytes.clone();
        for _ in 0..1 + rng.below(4) {
            match rng.below(3) {
                0 if !bad.is_empty() => {
                    let i = rng.below(bad.len() as u64) as usize;
                    bad[i] = rng.next() as u8;
                }
                1 => bad.truncate(rng.below(bad.len() as u64 + 1) as usize),
                _ => bad.insert(rng.below(bad.len() as u64 + 1) as usize, rng.next() as u8),
            }
        }
        if bad != bytes {
            assert!(Manifest::decode(&bad, &public).is_err());
        }
    }
}

#[test]
fn wrong_key_and_swapped_signatures_are_refused() {
    let k = key(1);
    let bytes = encode(&sample(), &k);
    assert_eq!(
        Manifest::decode(&bytes, &PublicKey::of(&key(2))),
        Err(Error::BadSignature)
    );
    // Another manifest's valid signature under the same key does not fit this one.
    let mut other = sample();
    other.version = 3;
    let other_bytes = encode(&other, &k);
    let mut swapped = bytes.clone();
    let sig_at = swapped.len() - 64;
    swapped[sig_at..].copy_from_slice(&other_bytes[other_bytes.len() - 64..]);
    assert_eq!(
        Manifest::decode(&swapped, &PublicKey::of(&k)),
        Err(Error::BadSignature)
    );
    // A signature over the body alone (no domain string) does not verify.
    use ed25519_dalek::Signer;
    let body_only = &bytes[DOMAIN.len() + 4..bytes.len() - 64];
    let mut undomained = bytes.clone();
    undomained[sig_at..].copy_from_slice(&k.sign(body_only).to_bytes());
    assert_eq!(
        Manifest::decode(&undomained, &PublicKey::of(&k)),
        Err(Error::BadSignature)
    );
}

#[test]
fn oversize_lengths_are_refused_even_when_signed() {
    let k = key(1);
    let public = PublicKey::of(&k);
    let decode = |body: &[u8]| Manifest::decode(&sign_raw(body, &k), &public);
    // The length field is checked before anything is read or verified.
    let mut huge = DOMAIN.to_vec();
    huge.extend_from_slice(&(MAX_BODY_LEN as u32 + 1).to_le_bytes());
    huge.resize(huge.len() + MAX_BODY_LEN + 1 + 64, 0);
    assert_eq!(Manifest::decode(&huge, &public), Err(Error::TooLong));
    let mut lying = DOMAIN.to_vec();
    lying.extend_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(Manifest::decode(&lying, &public), Err(Error::TooLong));
    let long_product = vec![b'a'; MAX_PRODUCT_LEN + 1];
    assert_eq!(
        decode(&body(&long_product, 3, &[(b"k", 1)])),
        Err(Error::BadField("product"))
    );
    let long_name = vec![b'n'; MAX_NAME_LEN + 1];
    assert_eq!(
        decode(&body(b"evergreen", 3, &[(&long_name, 1)])),
        Err(Error::BadField("payload name"))
    );
    assert_eq!(
        decode(&body(b"evergreen", 3, &[(b"k", MAX_PAYLOAD_SIZE + 1)])),
        Err(Error::TooLong)
    );
    let names: Vec<Vec<u8>> = (0..=MAX_PAYLOADS).map(|i| vec![b'a' + i as u8]).collect();
    let many: Vec<(&[u8], u64)> = names.iter().map(|n| (n.as_slice(), 1)).collect();
    assert_eq!(
        decode(&body(b"evergreen", 3, &many)),
        Err(Error::BadField("payload count"))
    );
    assert_eq!(
        decode(&body(b"evergreen", 3, &many[..MAX_PAYLOADS])).map(|m| m.payloads().count()),
        Ok(MAX_PAYLOADS),
        "exactly at the cap is fine"
    );
}

#[test]
fn malformed_fields_are_refused_even_when_signed() {
    let k = key(1);
    let public = PublicKey::of(&k);
    let decode = |body: &[u8]| Manifest::decode(&sign_raw(body, &k), &public);
    assert_eq!(
        decode(&body(b"", 3, &[(b"k", 1)])),
        Err(Error::BadField("product"))
    );
    assert_eq!(
        decode(&body(b"Ever", 3, &[(b"k", 1)])),
        Err(Error::BadField("product"))
    );
    assert_eq!(
        decode(&body(b"evergreen", 0, &[(b"k", 1)])),
        Err(Error::BadField("boot tries"))
    );
    assert_eq!(
        decode(&body(b"evergreen", 16, &[(b"k", 1)])),
        Err(Error::BadField("boot tries"))
    );
    assert_eq!(
        decode(&body(b"evergreen", 3, &[])),
        Err(Error::BadField("payload count"))
    );
    assert_eq!(
        decode(&body(b"evergreen", 3, &[(b"../k", 1)])),
        Err(Error::BadField("payload name"))
    );
    assert_eq!(
        decode(&body(b"evergreen", 3, &[(b"k", 1), (b"k", 2)])),
        Err(Error::DuplicatePayload)
    );
    let mut trailing = body(b"evergreen", 3, &[(b"k", 1)]);
    trailing.push(0);
    assert_eq!(decode(&trailing), Err(Error::TrailingBytes));
    let short = body(b"evergreen", 3, &[(b"k", 1)]);
    assert_eq!(decode(&short[..short.len() - 1]), Err(Error::Truncated));
}

#[test]
fn builder_refuses_what_the_decoder_would() {
    assert!(Manifest::new("Evergreen", 1, 1, 0, 3).is_err());
    assert!(Manifest::new("evergreen", 1, 1, 0, 0).is_err());
    assert!(Payload::of("a/b", b"").is_err());
    let mut m = Manifest::new("evergreen", 1, 1, 0, 3).expect("valid");
    let mut out = vec![0; MAX_LEN];
    assert!(m.encode_signed(&key(1), &mut out).is_err(), "no payloads");
    for i in 0..MAX_PAYLOADS {
        m.add_payload(Payload::of(&format!("p{i}"), b"x").expect("ok"))
            .expect("room");
    }
    assert_eq!(
        m.add_payload(Payload::of("p0", b"x").expect("ok")),
        Err(Error::DuplicatePayload)
    );
    assert_eq!(
        m.add_payload(Payload::of("extra", b"x").expect("ok")),
        Err(Error::TooLong)
    );
    assert_eq!(
        m.encode_signed(&key(1), &mut [0; 100]),
        Err(Error::BufferTooSmall)
    );
}

#[test]
fn payloads_are_checked_by_size_and_hash() {
    let p = Payload::of("kernel", b"kernel bytes").expect("small");
    assert_eq!(p.check(b"kernel bytes"), Ok(()));
    assert_eq!(p.check(b"kernel bytez"), Err(Error::PayloadMismatch));
    assert_eq!(p.check(b"kernel byte"), Err(Error::PayloadMismatch));
    // FIPS 180-2's "abc" vector.
    assert_eq!(
        hex(&sha256(b"abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn rfc8032_test_vectors() {
    use ed25519_dalek::{Signature, Signer};
    // RFC 8032, section 7.1, TEST 1 and TEST 2.
    let vectors = [
        (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
    ];
    for (secret, public, message, signature) in vectors {
        let secret: [u8; 32] = unhex(secret).try_into().expect("32 bytes");
        let k = SecretKey::from_bytes(&secret);
        assert_eq!(hex(&PublicKey::of(&k).to_bytes()), public);
        let message = unhex(message);
        let sig = k.sign(&message);
        assert_eq!(hex(&sig.to_bytes()), signature);
        let public: [u8; 32] = unhex(public).try_into().expect("32 bytes");
        let verifying = ed25519_dalek::VerifyingKey::from_bytes(&public).expect("valid point");
        let sig_bytes: [u8; 64] = unhex(signature).try_into().expect("64 bytes");
        assert!(
            verifying
                .verify_strict(&message, &Signature::from_bytes(&sig_bytes))
                .is_ok()
        );
    }
}

#[test]
fn weak_and_invalid_public_keys_are_refused() {
    // The identity point (small order) and a y coordinate that is not on the curve.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert_eq!(PublicKey::from_bytes(&identity), Err(Error::BadKey));
    let real = PublicKey::of(&key(1)).to_bytes();
    assert_eq!(PublicKey::from_bytes(&real).map(|k| k.to_bytes()), Ok(real));
}

/// A release's command line: printable words, no init arguments, no word the loader says.
#[test]
fn release_cmdline_checked() {
    use update::manifest::{MAX_CMDLINE_LEN, release_cmdline};
    assert_eq!(
        release_cmdline(b"evergreen.test=panic panic=reboot\n"),
        Ok("evergreen.test=panic panic=reboot")
    );
    assert_eq!(release_cmdline(b""), Ok(""));
    for bad in [
        &b"a -- b"[..],
        b"evergreen.slot=A",
        b"x evergreen.tries=9",
        b"tab\there",
        b"two\nlines",
        b"\xff",
    ] {
        assert!(release_cmdline(bad).is_err(), "{bad:?} accepted");
    }
    assert_eq!(
        release_cmdline(b"evergreen.slots=x"),
        Ok("evergreen.slots=x")
    );
    assert_eq!(
        release_cmdline(&[b'a'; MAX_CMDLINE_LEN + 1]),
        Err(Error::TooLong)
    );
}

/// The TEST-ONLY key's seed, read from the repository's file (so the constant cannot drift).
fn test_only_key() -> SecretKey {
    let text = include_str!("../../../runner/keys/dev-release-key.seed");
    let digits: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<String>()
        .trim()
        .to_owned();
    let seed: [u8; 32] = unhex(&digits).try_into().expect("a 32-byte seed");
    SecretKey::from_bytes(&seed)
}

/// `TEST_ONLY_KEY` is the public half of the repository's development seed.
#[test]
fn test_only_key_is_the_development_seeds() {
    let public = PublicKey::of(&test_only_key());
    assert_eq!(public.to_bytes(), update::manifest::TEST_ONLY_KEY);
    assert!(public.is_test_only());
    assert!(!PublicKey::of(&key(3)).is_test_only());
}

/// A device with a release key refuses a manifest signed with the TEST-ONLY key and says so;
/// it accepts its own; a third key's signature stays a bad signature; a device with the
/// TEST-ONLY key (development builds) accepts test releases.
#[test]
fn a_release_key_refuses_the_test_only_key() {
    let release = key(9);
    let release_public = PublicKey::of(&release);
    let test = test_only_key();
    let test_public = PublicKey::of(&test);
    let by_test = encode(&sample(), &test);
    assert_eq!(
        Manifest::decode_release(&by_test, &release_public),
        Err(Error::TestOnlyKey)
    );
    assert!(Error::TestOnlyKey.to_string().contains("TEST-ONLY"));
    assert_eq!(
        Manifest::decode_release(&encode(&sample(), &release), &release_public),
        Ok(sample())
    );
    assert_eq!(
        Manifest::decode_release(&encode(&sample(), &key(4)), &release_public),
        Err(Error::BadSignature)
    );
    assert_eq!(
        Manifest::decode_release(&by_test, &test_public),
        Ok(sample())
    );
    // A flipped byte of a test-signed manifest is a bad signature, not "the test key".
    let mut flipped = by_test.clone();
    flipped[DOMAIN.len() + 6] ^= 1;
    assert!(Manifest::decode_release(&flipped, &release_public).is_err());
    assert_ne!(
        Manifest::decode_release(&flipped, &release_public),
        Err(Error::TestOnlyKey)
    );
}
