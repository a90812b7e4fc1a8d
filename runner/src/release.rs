//! Releases: signing keys, slot images and reading them back.
//!
//! A release is one slot image: a small FAT16 volume holding `kernel`, `initramfs` and
//! `manifest` (the signed manifest of `libs/update`, naming the other two with their sizes and
//! SHA-256). FAT because the loader can then read a slot through the firmware's own FAT
//! driver, and because an update writes the image whole, as raw blocks: no FAT metadata is
//! ever a commit point (the state record is).
//!
//! Keys are ed25519 seeds, 64 hex digits in a text file (`#` starts a comment line). Without
//! `--key` or `EVERGREEN_RELEASE_KEY`, releases are signed with the *development* key in
//! `runner/keys/dev-release-key.seed`, which is public: it is what `cargo run` and the tests
//! use, and nothing signed with it is a real release.

use std::{
    fs,
    io::{Cursor, Read},
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail, ensure};
use fatfs::{FileSystem, FsOptions};
use update::manifest::{self, MAX_LEN, Manifest, Payload, PublicKey, SecretKey};

use crate::{
    build,
    image::{self, ImageSpec, SlotImage},
    rootfs,
};

/// The environment variable naming a key file to use instead of the development key.
pub const KEY_ENV: &str = "EVERGREEN_RELEASE_KEY";
/// The development key's seed file, relative to the workspace root.
pub const DEV_KEY_PATH: &str = "runner/keys/dev-release-key.seed";
/// The manifest's file name in a slot image.
pub const MANIFEST_FILE: &str = "manifest";
/// The kernel's file name in a slot image (and its payload name).
pub const KERNEL_FILE: &str = "kernel";
/// The initramfs's file name in a slot image (and its payload name).
pub const INITRAMFS_FILE: &str = "initramfs";
/// The factory release: version 1, rollback index 1.
pub const FACTORY_VERSION: u64 = 1;
/// The kernel command-line word of a release built to panic at boot (`--panic-at-boot`).
pub const PANIC_AT_BOOT: &str = "evergreen.test=panic";
/// The kernel command-line word of a release built to hang at boot (`--hang-at-boot`).
pub const HANG_AT_BOOT: &str = "evergreen.test=hang";
/// Boot tries a release gets on trial unless told otherwise.
pub const DEFAULT_TRIES: u8 = 3;

/// A signing key and where it came from.
pub struct ReleaseKey {
    /// The key.
    pub key: SecretKey,
    /// Its file, for messages.
    pub source: PathBuf,
    /// Whether it is the public development key.
    pub development: bool,
}

impl ReleaseKey {
    /// The key `path` names, else the one `EVERGREEN_RELEASE_KEY` names, else the
    /// development key.
    pub fn load(path: Option<&Path>) -> Result<ReleaseKey> {
        let from_env = std::env::var_os(KEY_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        match path.map(Path::to_path_buf).or(from_env) {
            Some(path) => Self::from_file(&path, false),
            None => Self::development(),
        }
    }

    /// The development key (public; never for a real release).
    pub fn development() -> Result<ReleaseKey> {
        Self::from_file(&build::workspace_root().join(DEV_KEY_PATH), true)
    }

    fn from_file(path: &Path, development: bool) -> Result<ReleaseKey> {
        let text = fs::read_to_string(path)
            .with_context(|| format!("reading the release key {}", path.display()))?;
        let seed = parse_seed(&text).with_context(|| format!("in {}", path.display()))?;
        let key = SecretKey::from_bytes(&seed);
        if !development && PublicKey::of(&key).is_test_only() {
            bail!(
                "{} holds the TEST-ONLY development key, not a release key",
                path.display()
            );
        }
        Ok(ReleaseKey {
            key,
            source: path.to_path_buf(),
            development,
        })
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey::of(&self.key)
    }

    /// A short description for messages: the file, and "development key" when it is that.
    pub fn describe(&self) -> String {
        let kind = if self.development {
            "the development key, public: not for real releases"
        } else {
            "release key"
        };
        format!("{} ({kind})", self.source.display())
    }
}

/// Makes a new release key at `path`: 32 bytes from the system's random source as an ed25519
/// seed (64 hex digits after a comment), created with mode 0600 and never over an existing
/// file, nor inside the repository outside `target/` (a key there is one `git add` from
/// being public). Returns the public half in hex.
pub fn keygen(path: &Path) -> Result<String> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};

    refuse_inside_repository(path)?;
    let mut seed = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .context("reading /dev/urandom")?;
    let public = PublicKey::of(&SecretKey::from_bytes(&seed));
    ensure!(
        !public.is_test_only(),
        "the random source gave the TEST-ONLY key's seed"
    );
    let mut text = String::from(
        "# Evergreen release key (ed25519 seed). SECRET: keep it out of the repository.\n",
    );
    text.extend(seed.iter().map(|b| format!("{b:02x}")));
    text.push('\n');
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            format!(
                "creating {} (an existing key is never replaced)",
                path.display()
            )
        })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(hex(&public.to_bytes()))
}

/// Refuses `path` when it lies inside the workspace but not under its `target/`.
fn refuse_inside_repository(path: &Path) -> Result<()> {
    let root = build::workspace_root();
    let root = root.canonicalize().unwrap_or(root);
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = parent
        .canonicalize()
        .with_context(|| format!("the folder of {} does not exist", path.display()))?;
    if dir.starts_with(&root) && !dir.starts_with(root.join("target")) {
        bail!(
            "{} is inside the repository ({}): keep release keys out of it (e.g. in ~)",
            path.display(),
            root.display()
        );
    }
    Ok(())
}

/// Lower-case hex digits of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The 32-byte seed in a key file: 64 hex digits, ignoring blank and `#` lines.
pub fn parse_seed(text: &str) -> Result<[u8; 32]> {
    let digits: String = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    if digits.len() != 64 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("a key file holds one ed25519 seed as 64 hex digits (`#` lines are comments)");
    }
    let mut seed = [0u8; 32];
    for (i, byte) in seed.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).expect("checked hex digits");
    }
    Ok(seed)
}

/// What a release says about itself (besides its files).
#[derive(Clone, Copy, Debug)]
pub struct ReleaseInfo {
    /// Its version.
    pub version: u64,
    /// Its rollback index.
    pub rollback_index: u64,
    /// Boot tries on trial.
    pub tries: u8,
    /// Creation time, Unix seconds.
    pub created: u64,
}

impl ReleaseInfo {
    /// `version` with `rollback_index` and `tries`, created now (or at `SOURCE_DATE_EPOCH`,
    /// for reproducible images).
    pub fn new(version: u64, rollback_index: u64, tries: u8) -> Self {
        let created = std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            });
        Self {
            version,
            rollback_index,
            tries,
            created,
        }
    }
}

/// Builds the slot image of a release of `kernel` and `initramfs`, signed with `key`.
pub fn build_slot_image(
    info: &ReleaseInfo,
    kernel: &[u8],
    initramfs: &[u8],
    key: &SecretKey,
) -> Result<SlotImage> {
    build_slot_image_with_cmdline(info, kernel, initramfs, "", key)
}

/// Like [`build_slot_image`], with the release's own kernel command-line words in a signed
/// `cmdline` payload (none when `cmdline` is empty), which our loader adds to the ESP entry's.
pub fn build_slot_image_with_cmdline(
    info: &ReleaseInfo,
    kernel: &[u8],
    initramfs: &[u8],
    cmdline: &str,
    key: &SecretKey,
) -> Result<SlotImage> {
    let mut m = Manifest::new(
        manifest::PRODUCT,
        info.version,
        info.rollback_index,
        info.created,
        info.tries,
    )
    .map_err(|e| anyhow::anyhow!("release manifest: {e}"))?;
    let mut files: Vec<(&str, &[u8])> = vec![(KERNEL_FILE, kernel), (INITRAMFS_FILE, initramfs)];
    if !cmdline.is_empty() {
        manifest::release_cmdline(cmdline.as_bytes())
            .map_err(|e| anyhow::anyhow!("the release's command line {cmdline:?}: {e}"))?;
        files.push((manifest::CMDLINE_PAYLOAD, cmdline.as_bytes()));
    }
    for &(name, data) in &files {
        let payload =
            Payload::of(name, data).map_err(|e| anyhow::anyhow!("payload {name}: {e}"))?;
        m.add_payload(payload)
            .map_err(|e| anyhow::anyhow!("payload {name}: {e}"))?;
    }
    let mut signed = vec![0u8; MAX_LEN];
    let len = m
        .encode_signed(key, &mut signed)
        .map_err(|e| anyhow::anyhow!("encoding the manifest: {e}"))?;
    signed.truncate(len);
    files.insert(0, (MANIFEST_FILE, &signed));
    Ok(SlotImage {
        image: image::fat16_volume(&files, "the slot image")?,
        version: info.version,
        rollback_index: info.rollback_index,
    })
}

/// The factory release of an image: its ESP's kernel and initramfs as version 1, signed with
/// the key of `EVERGREEN_RELEASE_KEY`, else the development key; `None` when the ESP lacks
/// either (the images of loader-error tests).
pub fn factory_slot(spec: &ImageSpec) -> Result<Option<SlotImage>> {
    let initramfs = format!("boot/{}", rootfs::MODULE_NAME);
    let (Some(kernel), Some(initramfs)) = (spec.file(image::KERNEL_PATH), spec.file(&initramfs))
    else {
        return Ok(None);
    };
    let info = ReleaseInfo::new(FACTORY_VERSION, 1, DEFAULT_TRIES);
    // The release key when one is set, so a loader built for it boots the factory release.
    let key = ReleaseKey::load(None)?;
    build_slot_image(&info, kernel, initramfs, &key.key).map(Some)
}

/// A slot image from a file (made by `release`), refused unless it verifies with `key`.
pub fn slot_image_from_file(path: &Path, key: &PublicKey) -> Result<SlotImage> {
    let image = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let manifest = match read_slot(&image, key) {
        SlotContents::Release { manifest, payloads } => {
            if let Some((name, Err(e))) = payloads.iter().find(|(_, r)| r.is_err()) {
                bail!(
                    "{}: payload {name} does not match its manifest: {e}",
                    path.display()
                );
            }
            manifest
        }
        SlotContents::Empty => bail!("{}: an empty slot image", path.display()),
        SlotContents::Unreadable(e) | SlotContents::BadManifest(e) => {
            bail!(
                "{}: not a release signed with this key: {e}",
                path.display()
            )
        }
    };
    Ok(SlotImage {
        image,
        version: manifest.version,
        rollback_index: manifest.rollback_index,
    })
}

/// What a slot partition holds.
#[derive(Debug)]
pub enum SlotContents {
    /// Nothing: its first block is zero.
    Empty,
    /// Not a FAT volume with a manifest.
    Unreadable(String),
    /// A manifest that does not decode or verify with the key.
    BadManifest(String),
    /// A release whose manifest verifies; each payload checked.
    Release {
        /// The verified manifest (boxed: it holds its payloads inline).
        manifest: Box<Manifest>,
        /// Per payload: its name, and whether the file matches.
        payloads: Vec<(String, Result<(), String>)>,
    },
}

impl SlotContents {
    /// Whether the slot is a release that verifies completely (manifest and every payload).
    pub fn verified(&self) -> Option<&Manifest> {
        match self {
            Self::Release { manifest, payloads } if payloads.iter().all(|(_, r)| r.is_ok()) => {
                Some(manifest)
            }
            _ => None,
        }
    }
}

/// Reads and checks the release in a slot partition's bytes against `key`.
pub fn read_slot(partition: &[u8], key: &PublicKey) -> SlotContents {
    if partition.iter().take(512).all(|&b| b == 0) {
        return SlotContents::Empty;
    }
    let mut bytes = partition.to_vec();
    let fs = match FileSystem::new(Cursor::new(&mut bytes[..]), FsOptions::new()) {
        Ok(fs) => fs,
        Err(e) => return SlotContents::Unreadable(format!("not a FAT volume: {e}")),
    };
    let read = |name: &str, limit: u64| -> Result<Vec<u8>> {
        let mut data = Vec::new();
        fs.root_dir()
            .open_file(name)
            .with_context(|| format!("no file {name}"))?
            .take(limit)
            .read_to_end(&mut data)
            .with_context(|| format!("reading {name}"))?;
        Ok(data)
    };
    let text = match read(MANIFEST_FILE, MAX_LEN as u64 + 1) {
        Ok(text) => text,
        Err(e) => return SlotContents::Unreadable(format!("{e:#}")),
    };
    let manifest = match Manifest::decode_release(&text, key) {
        Ok(m) => m,
        Err(e) => return SlotContents::BadManifest(e.to_string()),
    };
    let payloads = manifest
        .payloads()
        .map(|p| {
            let name = p.name.as_str().to_owned();
            let check = read(&name, p.size + 1)
                .map_err(|e| format!("{e:#}"))
                .and_then(|data| p.check(&data).map_err(|e| e.to_string()));
            (name, check)
        })
        .collect();
    SlotContents::Release {
        manifest: Box::new(manifest),
        payloads,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> ReleaseInfo {
        ReleaseInfo {
            version: 7,
            rollback_index: 2,
            tries: 4,
            created: 1_800_000_000,
        }
    }

    /// A scratch folder under `target/` (keys may live there, outside the repository's files).
    fn scratch(name: &str) -> PathBuf {
        let dir = build::workspace_root()
            .join("target")
            .join("release-tests")
            .join(format!("{name}-{}", std::process::id()));
        fs::remove_dir_all(&dir).ok();
        fs::create_dir_all(&dir).expect("scratch folder");
        dir
    }

    #[test]
    fn keygen_makes_a_private_key_file_and_never_overwrites() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("keygen");
        let path = dir.join("release.key");
        let public = keygen(&path).expect("a new key");
        let mode = fs::metadata(&path).expect("written").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key file must be private");
        let loaded = ReleaseKey::load(Some(&path)).expect("the key file loads");
        assert!(!loaded.development);
        assert_eq!(hex(&loaded.public().to_bytes()), public);
        assert_eq!(
            PublicKey::from_hex(&public).expect("hex").to_bytes(),
            loaded.public().to_bytes()
        );
        assert!(!loaded.public().is_test_only());
        let again = keygen(&path).expect_err("an existing key must not be replaced");
        assert!(format!("{again:#}").contains("never replaced"), "{again:#}");
        let other = keygen(&dir.join("second.key")).expect("a second key");
        assert_ne!(
            other, public,
            "two keys from the random source are the same"
        );
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn keygen_refuses_the_repository() {
        let inside = build::workspace_root()
            .join("runner")
            .join("keys")
            .join("x.key");
        let err = keygen(&inside).expect_err("a key inside the repository");
        assert!(
            format!("{err:#}").contains("inside the repository"),
            "{err:#}"
        );
        assert!(!inside.exists());
    }

    #[test]
    fn a_release_key_file_holding_the_test_key_is_refused() {
        let dir = scratch("testkey");
        let path = dir.join("copy.key");
        fs::copy(build::workspace_root().join(DEV_KEY_PATH), &path).expect("copy");
        let err = ReleaseKey::load(Some(&path))
            .err()
            .expect("the TEST-ONLY key as a release key");
        assert!(format!("{err:#}").contains("TEST-ONLY"), "{err:#}");
        fs::remove_dir_all(&dir).ok();
    }

    /// A release key refuses a slot signed with the TEST-ONLY key, and says so.
    #[test]
    fn a_release_key_refuses_test_releases() {
        let dev = ReleaseKey::development().expect("dev key in the repository");
        let slot = build_slot_image(&info(), b"\x7fELF k", b"cpio", &dev.key).expect("built");
        let release = SecretKey::from_bytes(&[0x42; 32]);
        match read_slot(&slot.image, &PublicKey::of(&release)) {
            SlotContents::BadManifest(why) => assert!(why.contains("TEST-ONLY"), "{why}"),
            other => panic!("a test release verified with a release key: {other:?}"),
        }
        let own = build_slot_image(&info(), b"\x7fELF k", b"cpio", &release).expect("built");
        assert!(
            read_slot(&own.image, &PublicKey::of(&release))
                .verified()
                .is_some()
        );
    }

    #[test]
    fn a_release_cmdline_is_a_signed_payload() {
        let key = ReleaseKey::development().expect("dev key in the repository");
        let slot =
            build_slot_image_with_cmdline(&info(), b"\x7fELF k", b"cpio", PANIC_AT_BOOT, &key.key)
                .expect("built");
        let contents = read_slot(&slot.image, &key.public());
        let manifest = contents.verified().expect("verifies");
        let payload = manifest
            .payload(manifest::CMDLINE_PAYLOAD)
            .expect("a cmdline payload");
        assert_eq!(payload.size, PANIC_AT_BOOT.len() as u64);
        assert!(build_slot_image_with_cmdline(&info(), b"k", b"c", "a -- b", &key.key).is_err());
    }

    #[test]
    fn a_slot_image_reads_back_and_verifies() {
        let key = ReleaseKey::development().expect("dev key in the repository");
        let kernel = b"\x7fELF a kernel".to_vec();
        let initramfs: Vec<u8> = (0..200_000u32).map(|i| ((i * 7) >> 3) as u8).collect();
        let slot = build_slot_image(&info(), &kernel, &initramfs, &key.key).expect("built");
        assert_eq!((slot.version, slot.rollback_index), (7, 2));
        let SlotContents::Release { manifest, payloads } = read_slot(&slot.image, &key.public())
        else {
            panic!("not a release");
        };
        assert_eq!((manifest.version, manifest.rollback_index), (7, 2));
        assert_eq!((manifest.boot_tries, manifest.created), (4, 1_800_000_000));
        assert_eq!(
            manifest.payload("kernel").map(|p| p.size),
            Some(kernel.len() as u64)
        );
        assert_eq!(payloads.len(), 2);
        assert!(payloads.iter().all(|(_, r)| r.is_ok()), "{payloads:?}");
    }

    #[test]
    fn a_wrong_key_or_a_changed_payload_is_caught() {
        let key = ReleaseKey::development().expect("dev key");
        let kernel = vec![0x5a; 5000];
        let slot = build_slot_image(&info(), &kernel, b"initramfs", &key.key).expect("built");
        let other = PublicKey::of(&SecretKey::from_bytes(&[9; 32]));
        assert!(matches!(
            read_slot(&slot.image, &other),
            SlotContents::BadManifest(_)
        ));
        // Flip one byte of the kernel's data inside the FAT volume.
        let mut image = slot.image.clone();
        let at = image
            .windows(kernel.len())
            .position(|w| w == kernel.as_slice())
            .expect("kernel stored contiguously");
        image[at + 100] ^= 1;
        let contents = read_slot(&image, &key.public());
        assert!(contents.verified().is_none());
        let SlotContents::Release { payloads, .. } = contents else {
            panic!("manifest still verifies");
        };
        assert!(
            payloads[0].1.is_err() && payloads[1].1.is_ok(),
            "{payloads:?}"
        );
        assert!(matches!(
            read_slot(&[0; 4096], &key.public()),
            SlotContents::Empty
        ));
        assert!(matches!(
            read_slot(&[1; 4096], &key.public()),
            SlotContents::Unreadable(_)
        ));
    }

    #[test]
    fn key_files_are_64_hex_digits_with_comments() {
        let seed = parse_seed(
            "# comment\n\n00112233445566778899aabbccddeeff\n00112233445566778899AABBCCDDEEFF\n",
        )
        .expect("valid");
        assert_eq!(seed[1], 0x11);
        assert_eq!(seed[31], 0xff);
        assert!(parse_seed("0011").is_err());
        assert!(parse_seed(&"zz".repeat(32)).is_err());
        let dev = ReleaseKey::development().expect("dev key");
        assert!(dev.development && dev.describe().contains("development"));
    }
}
