//! GPT disk images with an EFI System Partition and the update partitions, written without
//! root or external tools, and the FAT image an ISO boots from under UEFI.
//!
//! The whole disk is built in memory: a protective MBR and GPT (crate `gpt`) around the ESP,
//! whose FAT32 file system (crate `fatfs`) is formatted directly inside the disk buffer, and
//! the three partitions of automatic updates (`libs/update`): `EG_STATE`, a small raw
//! partition holding the boot-state record, and `EG_SLOT_A` / `EG_SLOT_B`, each a release's
//! slot image (a small FAT volume, see [`crate::release`]) written whole, or zeros for an empty
//! slot. With a release in slot A the image's config turns on our loader's slot boot
//! ([`ImageSpec::booting_slots`]); without one the ESP's kernel boots. The
//! buffer is then written to a temporary file next to the destination and renamed over it, so
//! a reader never sees half an image. The same FAT writer makes the El Torito EFI boot image
//! of an ISO ([`efi_boot_image`]), as FAT16: El Torito counts that image in 16 bits of
//! 512-byte sectors, too few for FAT32's minimum of 65525 clusters.

use std::{
    collections::BTreeSet,
    fs,
    io::{Cursor, Write},
    os::unix::fs::PermissionsExt,
    path::Path,
};

use anyhow::{Context, Result, bail};
use fatfs::{FatType, FileSystem, FormatVolumeOptions, FsOptions};
use gpt::{GptConfig, disk::LogicalBlockSize, mbr::ProtectiveMBR, partition_types};

mod fatfix;

/// Bytes per logical block of the images we write.
pub const SECTOR_SIZE: u64 = 512;
/// The ESP starts 1 MiB into the disk, the usual alignment.
pub const ESP_OFFSET: u64 = 1024 * 1024;
/// The smallest ESP we write: FAT32 needs at least 65525 clusters, and firmware expects ESPs
/// to be FAT32, so the partition is big enough for that with 512-byte clusters and room to spare.
pub const MIN_ESP_SIZE: u64 = 64 * 1024 * 1024;
/// Space left after the ESP for the backup GPT (33 sectors), rounded up to 1 MiB.
const TAIL_SIZE: u64 = 1024 * 1024;
/// The largest El Torito boot image: its boot catalog entry counts 512-byte sectors in 16 bits.
pub const MAX_EL_TORITO_SIZE: u64 = 65535 * SECTOR_SIZE;
/// The smallest El Torito image we write: comfortably above FAT16's 4085-cluster minimum.
const MIN_EL_TORITO_SIZE: u64 = 4 * 1024 * 1024;
/// Where the firmware looks for a removable medium's boot loader.
pub const EFI_APP_PATH: &str = "EFI/BOOT/BOOTX64.EFI";
/// The loader's configuration file at the ESP's root.
pub const CONFIG_PATH: &str = "limine.conf";
/// The `limine.conf` option that makes our loader boot the update slots.
pub const SLOTS_OPTION: &str = "evergreen_slots:";
/// The kernel ELF.
pub const KERNEL_PATH: &str = "boot/kernel";
/// GPT partition names of the update partitions (the loader finds them by name).
pub const STATE_NAME: &str = "EG_STATE";
/// GPT partition names of slots A and B.
pub const SLOT_NAMES: [&str; 2] = ["EG_SLOT_A", "EG_SLOT_B"];
/// Size of the state partition: far more than the record's two copies need, so that a later
/// format has room.
pub const STATE_SIZE: u64 = 1024 * 1024;
/// The smallest slot partition: room for a release larger than today's.
pub const MIN_SLOT_SIZE: u64 = 16 * 1024 * 1024;
/// Partition type GUID of `EG_STATE` (Evergreen's own, random).
pub const STATE_TYPE_GUID: &str = "5E6A1C52-5D3B-4C0E-9A0B-2F1E8D7C6B01";
/// Partition type GUID of `EG_SLOT_A` and `EG_SLOT_B` (Evergreen's own, random).
pub const SLOT_TYPE_GUID: &str = "5E6A1C52-5D3B-4C0E-9A0B-2F1E8D7C6B02";

/// The contents of a disk image: paths are relative to the ESP's root, `/`-separated.
#[derive(Clone, Debug, Default)]
pub struct ImageSpec {
    /// The UEFI application stored as `EFI/BOOT/BOOTX64.EFI`.
    pub efi_app: Vec<u8>,
    /// The text stored as `limine.conf`.
    pub config: String,
    /// Further files, normally `boot/kernel` and modules under `boot/`.
    pub files: Vec<(String, Vec<u8>)>,
    /// The slot images of slots A and B (`None`: empty); see [`ImageSpec::with_factory_release`].
    pub slots: [Option<SlotImage>; 2],
}

/// A release's slot image and what the boot state records about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotImage {
    /// The image, written whole at the start of the slot partition.
    pub image: Vec<u8>,
    /// Its manifest's version.
    pub version: u64,
    /// Its manifest's rollback index.
    pub rollback_index: u64,
}

impl ImageSpec {
    /// The usual image: loader, config and kernel at their fixed paths.
    pub fn new(efi_app: Vec<u8>, config: String, kernel: Vec<u8>) -> Self {
        Self {
            efi_app,
            config,
            files: vec![(KERNEL_PATH.to_owned(), kernel)],
            slots: [None, None],
        }
    }

    /// The file at `path` on the ESP, if any.
    pub fn file(&self, path: &str) -> Option<&[u8]> {
        self.all_files().find(|(p, _)| *p == path).map(|(_, d)| d)
    }

    /// The factory layout: the ESP's kernel and initramfs as release v1 (signed with the
    /// development key) in slot A, slot B empty. An image without both files keeps both slots
    /// empty; a spec whose slots were already given keeps them.
    pub fn with_factory_release(mut self) -> Result<Self> {
        if self.slots.iter().all(Option::is_none) {
            self.slots = [crate::release::factory_slot(&self)?, None];
        }
        Ok(self)
    }

    /// Makes our loader boot from the update slots (`evergreen_slots: yes`) when slot A holds
    /// a release; an image without releases keeps booting the ESP's kernel. Real Limine
    /// ignores the option and boots the ESP entry.
    pub fn booting_slots(mut self) -> Self {
        if self.slots[0].is_some() && !self.config.contains(SLOTS_OPTION) {
            self.config = format!("{SLOTS_OPTION} yes\n{}", self.config);
        }
        self
    }

    /// Adds a file at `path` (relative to the ESP's root).
    pub fn with_file(mut self, path: impl Into<String>, data: Vec<u8>) -> Self {
        self.files.push((path.into(), data));
        self
    }

    /// Every file of the ESP, the fixed ones first.
    pub fn all_files(&self) -> impl Iterator<Item = (&str, &[u8])> {
        [
            (EFI_APP_PATH, self.efi_app.as_slice()),
            (CONFIG_PATH, self.config.as_bytes()),
        ]
        .into_iter()
        .chain(self.files.iter().map(|(p, d)| (p.as_str(), d.as_slice())))
    }
}

/// Where things ended up in a written image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageLayout {
    /// Size of the whole disk image in bytes.
    pub disk_size: u64,
    /// Byte offset of the ESP.
    pub esp_offset: u64,
    /// Size of the ESP in bytes.
    pub esp_size: u64,
    /// Byte offset of `EG_STATE` ([`STATE_SIZE`] bytes).
    pub state_offset: u64,
    /// Byte offsets of `EG_SLOT_A` and `EG_SLOT_B`.
    pub slot_offsets: [u64; 2],
    /// Size of each slot partition in bytes.
    pub slot_size: u64,
}

impl ImageLayout {
    /// Where everything goes for an ESP of `esp_size` bytes and slots of `slot_size`.
    fn new(esp_size: u64, slot_size: u64) -> Self {
        let state_offset = ESP_OFFSET + esp_size;
        let slot_a = state_offset + STATE_SIZE;
        let slot_b = slot_a + slot_size;
        Self {
            disk_size: slot_b + slot_size + TAIL_SIZE,
            esp_offset: ESP_OFFSET,
            esp_size,
            state_offset,
            slot_offsets: [slot_a, slot_b],
            slot_size,
        }
    }
}

/// Builds the image described by `spec` in memory and writes it to `out`.
pub fn write_image(spec: &ImageSpec, out: &Path) -> Result<ImageLayout> {
    let (disk, layout) = build_image(spec)?;
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(&disk).context("writing the disk image")?;
    // Temporary files are private (0600); an image is an ordinary file.
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))
        .context("setting the image's permissions")?;
    tmp.as_file()
        .sync_all()
        .context("flushing the disk image")?;
    tmp.persist(out)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(layout)
}

/// Builds the image described by `spec` and returns its bytes.
pub fn build_image(spec: &ImageSpec) -> Result<(Vec<u8>, ImageLayout)> {
    check_paths(spec)?;
    let esp_size = esp_size_for(spec);
    let layout = ImageLayout::new(esp_size, slot_size_for(spec));
    let len = usize::try_from(layout.disk_size).context("disk image too large for this host")?;
    let mut disk = vec![0u8; len];

    write_partition_table(&mut disk, layout)?;
    write_esp(range(&mut disk, ESP_OFFSET, esp_size)?, spec, esp_size)?;
    let area = update::state::fresh_area(&factory_state(spec));
    range(&mut disk, layout.state_offset, area.len() as u64)?.copy_from_slice(&area);
    for (slot, offset) in spec.slots.iter().zip(layout.slot_offsets) {
        if let Some(slot) = slot {
            range(&mut disk, offset, slot.image.len() as u64)?.copy_from_slice(&slot.image);
        }
    }
    Ok((disk, layout))
}

/// The `len` bytes of `disk` at `offset`.
fn range(disk: &mut [u8], offset: u64, len: u64) -> Result<&mut [u8]> {
    let start = usize::try_from(offset).context("offset")?;
    let end = usize::try_from(offset + len).context("length")?;
    disk.get_mut(start..end)
        .context("a partition's contents run past the end of the disk")
}

/// The boot state of a new disk: each slot's release good (A preferred when both are), or
/// empty.
pub fn factory_state(spec: &ImageSpec) -> update::state::BootState {
    use update::state::{BootState, Slot, SlotState};
    let [a, b] = &spec.slots;
    let entry = |s: &Option<SlotImage>| {
        s.as_ref().map_or(SlotState::EMPTY, |s| {
            SlotState::good(s.version, s.rollback_index)
        })
    };
    let floor = spec
        .slots
        .iter()
        .flatten()
        .map(|s| s.rollback_index)
        .min()
        .unwrap_or(0);
    let mut state = BootState::factory(0, floor);
    state.slots = [entry(a), entry(b)];
    state.preferred = if a.is_none() && b.is_some() {
        Slot::B
    } else {
        Slot::A
    };
    state
}

/// Slot size: twice the largest slot image (room for a larger update), whole MiB, at least
/// [`MIN_SLOT_SIZE`].
fn slot_size_for(spec: &ImageSpec) -> u64 {
    const MIB: u64 = 1024 * 1024;
    let largest = spec
        .slots
        .iter()
        .flatten()
        .map(|s| s.image.len() as u64)
        .max();
    (2 * largest.unwrap_or(0))
        .div_ceil(MIB)
        .saturating_mul(MIB)
        .max(MIN_SLOT_SIZE)
}

/// ESP size: at least [`MIN_ESP_SIZE`], else the files plus a quarter for FAT overhead,
/// rounded up to whole MiB.
fn esp_size_for(spec: &ImageSpec) -> u64 {
    const MIB: u64 = 1024 * 1024;
    let payload: u64 = spec.all_files().map(|(_, d)| d.len() as u64).sum();
    let wanted = payload + payload / 4 + 8 * MIB;
    wanted.div_ceil(MIB).saturating_mul(MIB).max(MIN_ESP_SIZE)
}

/// Rejects paths fatfs would misread or that would collide.
pub fn check_paths(spec: &ImageSpec) -> Result<()> {
    let mut seen = BTreeSet::new();
    for (path, _) in spec.all_files() {
        let ok = !path.is_empty()
            && !path.starts_with('/')
            && path
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..");
        if !ok {
            bail!("bad ESP path {path:?}: use a relative path like \"boot/initramfs\"");
        }
        if !seen.insert(path.to_ascii_lowercase()) {
            bail!("ESP path {path:?} appears twice (FAT names are case-insensitive)");
        }
    }
    Ok(())
}

/// Writes the protective MBR, the primary and the backup GPT: the ESP and the update
/// partitions.
fn write_partition_table(disk: &mut [u8], layout: ImageLayout) -> Result<()> {
    let sectors = layout.disk_size / SECTOR_SIZE;
    let mut device = Cursor::new(disk);
    let mbr_size = u32::try_from(sectors - 1).unwrap_or(u32::MAX);
    ProtectiveMBR::with_lb_size(mbr_size)
        .overwrite_lba0(&mut device)
        .context("writing the protective MBR")?;
    let mut gpt = GptConfig::new()
        .writable(true)
        .logical_block_size(LogicalBlockSize::Lb512)
        .create_from_device(device, None)
        .context("creating the GPT")?;
    gpt.add_partition_at(
        "EFI System Partition",
        1,
        layout.esp_offset / SECTOR_SIZE,
        layout.esp_size / SECTOR_SIZE,
        partition_types::EFI,
        0,
    )
    .context("adding the ESP to the GPT")?;
    let state_type = custom_type(STATE_TYPE_GUID)?;
    let slot_type = custom_type(SLOT_TYPE_GUID)?;
    gpt.add_partition_at(
        STATE_NAME,
        2,
        layout.state_offset / SECTOR_SIZE,
        STATE_SIZE / SECTOR_SIZE,
        state_type,
        0,
    )
    .context("adding EG_STATE to the GPT")?;
    for (i, (name, offset)) in SLOT_NAMES.iter().zip(layout.slot_offsets).enumerate() {
        gpt.add_partition_at(
            name,
            3 + i as u32,
            offset / SECTOR_SIZE,
            layout.slot_size / SECTOR_SIZE,
            slot_type.clone(),
            0,
        )
        .with_context(|| format!("adding {name} to the GPT"))?;
    }
    gpt.write().context("writing the GPT")?;
    Ok(())
}

/// A partition type of Evergreen's own.
fn custom_type(guid: &str) -> Result<partition_types::Type> {
    Ok(partition_types::Type {
        guid: guid.parse().context("partition type GUID")?,
        os: partition_types::OperatingSystem::Custom("Evergreen".to_owned()),
    })
}

/// Cluster size keeping a FAT32 volume of `size` bytes well above the 65525-cluster minimum.
fn cluster_size_for(size: u64) -> u32 {
    let mut cluster = 512u32;
    while cluster < 4096 && size / u64::from(cluster * 2) >= 131_072 {
        cluster *= 2;
    }
    cluster
}

/// Formats `esp` as FAT32 and copies the files in.
fn write_esp(esp: &mut [u8], spec: &ImageSpec, esp_size: u64) -> Result<()> {
    write_fat(
        esp,
        spec.all_files(),
        FatType::Fat32,
        cluster_size_for(esp_size),
        "the ESP",
    )
}

/// A FAT16 image holding the files of `spec`, to be an ISO's El Torito EFI boot image: UEFI
/// firmware reads no ISO 9660, so it starts `EFI/BOOT/BOOTX64.EFI` from this image, and our
/// loader reads `limine.conf` and the kernel from the same volume.
pub fn efi_boot_image(spec: &ImageSpec) -> Result<Vec<u8>> {
    const MIB: u64 = 1024 * 1024;
    check_paths(spec)?;
    let payload: u64 = spec.all_files().map(|(_, d)| d.len() as u64).sum();
    // The FATs take 1/128 of the volume with 512-byte clusters; a file wastes under a cluster.
    let wanted = payload + payload / 32 + MIB;
    if wanted > MAX_EL_TORITO_SIZE {
        bail!(
            "the boot files ({} MiB) do not fit in an El Torito boot image (at most 32 MiB): \
             boot the disk image instead (`cargo run -- image`), which has no such limit",
            payload.div_ceil(MIB)
        );
    }
    let size = wanted
        .next_multiple_of(MIB)
        .clamp(MIN_EL_TORITO_SIZE, MAX_EL_TORITO_SIZE);
    let mut volume = vec![0u8; usize::try_from(size).context("El Torito image size")?];
    write_fat(
        &mut volume,
        spec.all_files(),
        FatType::Fat16,
        512,
        "the El Torito image",
    )?;
    Ok(volume)
}

/// A FAT16 volume holding `files` (paths relative to its root), as small as fits them: a
/// release's slot image, which the loader reads through UEFI's FAT driver.
pub fn fat16_volume<'a>(files: &[(&'a str, &'a [u8])], what: &str) -> Result<Vec<u8>> {
    const MIB: u64 = 1024 * 1024;
    let payload: u64 = files.iter().map(|(_, d)| d.len() as u64).sum();
    let size = (payload + payload / 16 + MIB)
        .next_multiple_of(MIB)
        .max(MIN_EL_TORITO_SIZE);
    // FAT16 counts at most 65524 clusters: grow the cluster until the volume fits.
    let mut cluster = 512u32;
    while size / u64::from(cluster) > 65_000 {
        cluster *= 2;
        if cluster > 32 * 1024 {
            bail!(
                "{what}: {} MiB of files are too many for FAT16",
                payload / MIB
            );
        }
    }
    let mut volume = vec![0u8; usize::try_from(size).context("volume size")?];
    write_fat(
        &mut volume,
        files.iter().copied(),
        FatType::Fat16,
        cluster,
        what,
    )?;
    Ok(volume)
}

/// Formats `volume` as `fat_type` with `cluster`-byte clusters and copies the files in;
/// `what` names the volume in errors.
fn write_fat<'a>(
    volume: &mut [u8],
    files: impl Iterator<Item = (&'a str, &'a [u8])>,
    fat_type: FatType,
    cluster: u32,
    what: &str,
) -> Result<()> {
    let options = FormatVolumeOptions::new()
        .fat_type(fat_type)
        .bytes_per_cluster(cluster)
        .volume_label(*b"EVERGREEN  ");
    fatfs::format_volume(Cursor::new(&mut *volume), options)
        .with_context(|| format!("formatting {what} as {fat_type:?}"))?;
    let fs = FileSystem::new(Cursor::new(&mut *volume), FsOptions::new())
        .with_context(|| format!("mounting {what}"))?;
    if fs.fat_type() != fat_type {
        bail!("{what} came out as {:?}, not {fat_type:?}", fs.fat_type());
    }
    for (path, data) in files {
        add_file(&fs, path, data).with_context(|| format!("adding /{path} to {what}"))?;
    }
    // Records the free-cluster count in FSInfo (fatfs leaves it "unknown").
    fs.stats().context("counting free clusters")?;
    fs.unmount().with_context(|| format!("unmounting {what}"))?;
    fatfix::fix_dot_entries(volume)
        .with_context(|| format!("repairing the directory entries of {what}"))?;
    Ok(())
}

/// Creates the parents of `path` and writes `data` to it.
fn add_file<T: fatfs::ReadWriteSeek>(fs: &FileSystem<T>, path: &str, data: &[u8]) -> Result<()> {
    let mut dir = fs.root_dir();
    let mut parts: Vec<&str> = path.split('/').collect();
    let name = parts.pop().context("empty path")?;
    for part in parts {
        dir = dir
            .create_dir(part)
            .with_context(|| format!("creating directory {part}"))?;
    }
    let mut file = dir.create_file(name).context("creating the file")?;
    file.truncate().context("truncating the file")?;
    file.write_all(data).context("writing the file")?;
    file.flush().context("flushing the file")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, SeekFrom};

    use super::*;

    fn read_file<T: fatfs::ReadWriteSeek>(fs: &FileSystem<T>, path: &str) -> Vec<u8> {
        let mut out = Vec::new();
        fs.root_dir()
            .open_file(path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .read_to_end(&mut out)
            .expect("readable file");
        out
    }

    fn sample_spec() -> ImageSpec {
        let module: Vec<u8> = (0..300_001u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        ImageSpec::new(
            b"MZ fake efi app".to_vec(),
            "timeout: 0\n".into(),
            b"\x7fELF kernel".to_vec(),
        )
        .with_file("boot/testmod.bin", module)
    }

    #[test]
    fn slot_boot_only_with_a_release_in_slot_a() {
        let plain = sample_spec().booting_slots();
        assert_eq!(plain.config, "timeout: 0\n", "no release: the ESP boots");
        let mut released = sample_spec();
        released.slots[0] = Some(SlotImage {
            image: vec![1; 512],
            version: 1,
            rollback_index: 1,
        });
        let released = released.booting_slots().booting_slots();
        assert_eq!(released.config, "evergreen_slots: yes\ntimeout: 0\n");
    }

    #[test]
    fn image_reads_back_with_gpt_and_fatfs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("sub/disk.img");
        let spec = sample_spec();
        let layout = write_image(&spec, &out).expect("image written");
        assert_eq!(
            fs::metadata(&out).expect("image exists").len(),
            layout.disk_size
        );

        // Protective MBR: one 0xEE partition covering the disk.
        let mut file = fs::File::open(&out).expect("open image");
        let mbr = ProtectiveMBR::from_disk(&mut file, LogicalBlockSize::Lb512).expect("valid MBR");
        let record = mbr.partition(0).expect("first MBR record");
        assert_eq!(record.os_type, 0xEE);
        assert_eq!(record.lb_start, 1);

        // GPT: both headers valid, the ESP first at the recorded offset, then the update
        // partitions in order, none overlapping.
        let gpt = GptConfig::new()
            .only_valid_headers(true)
            .logical_block_size(LogicalBlockSize::Lb512)
            .open(&out)
            .expect("valid GPT");
        let used: Vec<_> = gpt.partitions().values().filter(|p| p.is_used()).collect();
        let names: Vec<&str> = used.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["EFI System Partition", "EG_STATE", "EG_SLOT_A", "EG_SLOT_B"]
        );
        let extents: Vec<(u64, u64)> = used
            .iter()
            .map(|p| {
                let lb = LogicalBlockSize::Lb512;
                (
                    p.bytes_start(lb).expect("start"),
                    p.bytes_len(lb).expect("len"),
                )
            })
            .collect();
        assert_eq!(
            extents[1..],
            [
                (layout.state_offset, STATE_SIZE),
                (layout.slot_offsets[0], layout.slot_size),
                (layout.slot_offsets[1], layout.slot_size)
            ]
        );
        for pair in extents.windows(2) {
            assert!(pair[0].0 + pair[0].1 <= pair[1].0, "{pair:?} overlap");
        }
        let guid = |p: &gpt::partition::Partition| p.part_type_guid.guid.to_string().to_uppercase();
        assert_eq!(guid(used[1]), STATE_TYPE_GUID);
        assert_eq!(guid(used[2]), SLOT_TYPE_GUID);
        let esp = used[0];
        assert_eq!(esp.part_type_guid, partition_types::EFI);
        assert_eq!(
            esp.part_type_guid.guid.to_string().to_uppercase(),
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
        );
        assert_eq!(
            esp.bytes_start(LogicalBlockSize::Lb512).expect("start"),
            layout.esp_offset
        );
        assert_eq!(
            esp.bytes_len(LogicalBlockSize::Lb512).expect("len"),
            layout.esp_size
        );
        assert!(layout.slot_offsets[1] + layout.slot_size <= layout.disk_size - 33 * SECTOR_SIZE);

        // FAT32 with the files byte for byte.
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(0)).expect("seek");
        file.read_to_end(&mut bytes).expect("read image");
        let start = usize::try_from(layout.esp_offset).expect("offset");
        let end = start + usize::try_from(layout.esp_size).expect("size");
        let fs = FileSystem::new(Cursor::new(&mut bytes[start..end]), FsOptions::new())
            .expect("ESP mounts");
        assert_eq!(fs.fat_type(), FatType::Fat32);
        assert!(fs.stats().expect("stats").total_clusters() >= 65_525);
        assert_eq!(read_file(&fs, "EFI/BOOT/BOOTX64.EFI"), spec.efi_app);
        assert_eq!(read_file(&fs, "limine.conf"), spec.config.as_bytes());
        for (path, data) in &spec.files {
            assert_eq!(&read_file(&fs, path), data, "{path}");
        }
    }

    #[test]
    fn esp_grows_with_its_contents() {
        let big = vec![0xA5; 100 * 1024 * 1024];
        let spec = ImageSpec::new(vec![1], String::new(), vec![2]).with_file("boot/big", big);
        let (bytes, layout) = build_image(&spec).expect("image built");
        assert!(layout.esp_size > 100 * 1024 * 1024);
        let start = usize::try_from(layout.esp_offset).expect("offset");
        let end = start + usize::try_from(layout.esp_size).expect("size");
        let mut bytes = bytes;
        let fs = FileSystem::new(Cursor::new(&mut bytes[start..end]), FsOptions::new())
            .expect("ESP mounts");
        assert_eq!(fs.fat_type(), FatType::Fat32);
        assert_eq!(read_file(&fs, "boot/big").len(), 100 * 1024 * 1024);
    }

    #[test]
    fn bad_and_duplicate_paths_are_rejected() {
        for bad in ["/boot/x", "boot//x", "../x", "boot/", ""] {
            let spec = ImageSpec::new(vec![], String::new(), vec![]).with_file(bad, vec![1]);
            assert!(build_image(&spec).is_err(), "{bad:?} accepted");
        }
        let spec = ImageSpec::new(vec![], String::new(), vec![]).with_file("BOOT/KERNEL", vec![1]);
        assert!(
            build_image(&spec).is_err(),
            "case-insensitive duplicate accepted"
        );
    }

    #[test]
    fn el_torito_image_is_small_fat16_with_every_file() {
        let spec = sample_spec();
        let mut bytes = efi_boot_image(&spec).expect("image built");
        assert!(bytes.len() as u64 <= MAX_EL_TORITO_SIZE);
        assert_eq!(bytes.len() as u64, MIN_EL_TORITO_SIZE);
        let fs = FileSystem::new(Cursor::new(&mut bytes[..]), FsOptions::new()).expect("mounts");
        assert_eq!(fs.fat_type(), FatType::Fat16);
        assert_eq!(read_file(&fs, "EFI/BOOT/BOOTX64.EFI"), spec.efi_app);
        assert_eq!(read_file(&fs, "limine.conf"), spec.config.as_bytes());
        for (path, data) in &spec.files {
            assert_eq!(&read_file(&fs, path), data, "{path}");
        }
        // The largest payload that fits comes out at most 65535 sectors; a bigger one is an
        // error that says what to do instead.
        let near_max = ImageSpec::new(vec![1], String::new(), vec![0x5a; 30 * 1024 * 1024]);
        let mut bytes = efi_boot_image(&near_max).expect("30 MiB fits");
        assert_eq!(bytes.len() as u64, MAX_EL_TORITO_SIZE);
        let fs = FileSystem::new(Cursor::new(&mut bytes[..]), FsOptions::new()).expect("mounts");
        assert_eq!(fs.fat_type(), FatType::Fat16);
        assert_eq!(read_file(&fs, "boot/kernel").len(), 30 * 1024 * 1024);
        let too_big = ImageSpec::new(vec![1], String::new(), vec![0; 32 * 1024 * 1024]);
        let err = efi_boot_image(&too_big).expect_err("32 MiB of files do not fit");
        assert!(format!("{err}").contains("cargo run -- image"), "{err}");
    }

    #[test]
    fn cluster_size_keeps_fat32_valid() {
        for mib in [64u64, 100, 128, 300, 1024, 4096] {
            let size = mib * 1024 * 1024;
            let clusters = size / u64::from(cluster_size_for(size));
            assert!(
                clusters >= 131_072 || cluster_size_for(size) == 4096,
                "{mib} MiB"
            );
            assert!(clusters > 65_525, "{mib} MiB");
        }
    }
}
