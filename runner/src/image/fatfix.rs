//! Repairs the `.` and `..` entries of directories created by `fatfs` 0.3.6.
//!
//! That version writes each of them with a long-name entry in front (so `.` is not the first
//! slot) and gives `..` of a top-level directory the root's cluster number, where the FAT
//! specification wants 0. EDK2's FAT driver copes, `fsck.fat` and stricter firmware do not.
//! After the files are written this pass walks the directory tree and rewrites the first slots
//! of every subdirectory as `.`, `..`, then deleted entries. It reads FAT32 (the ESP of the
//! disk image) and FAT16 (the small El Torito boot image of an ISO), whose root directory is a
//! fixed region in front of the clusters rather than a cluster chain.

use std::ops::Range;

use anyhow::{Context, Result, bail, ensure};

const SLOT: usize = 32;
const ATTR_LONG_NAME: u8 = 0x0f;
const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_DIRECTORY: u8 = 0x10;
const DELETED: u8 = 0xe5;
const DOT: &[u8; 11] = b".          ";
const DOTDOT: &[u8; 11] = b"..         ";
/// Deepest directory nesting followed (the images we write are two levels deep).
const MAX_DEPTH: usize = 16;
/// Fewer clusters than this make a volume FAT12, which this pass does not read.
const MIN_FAT16_CLUSTERS: usize = 4085;

/// Where the root directory lives.
#[derive(Debug)]
enum Root {
    /// FAT16: a fixed byte range between the FATs and the first cluster.
    Region(Range<usize>),
    /// FAT32: a cluster chain starting at this cluster.
    Chain(u32),
}

/// Where things are in a FAT16 or FAT32 volume.
#[derive(Debug)]
struct Geometry {
    fat_offset: usize,
    /// Bytes per FAT entry: 2 (FAT16) or 4 (FAT32).
    entry_size: usize,
    root: Root,
    data_offset: usize,
    cluster_size: usize,
    cluster_count: u32,
}

impl Geometry {
    fn parse(volume: &[u8]) -> Result<Self> {
        ensure!(volume.len() >= 512, "volume too small for a boot sector");
        let u16_at = |o: usize| usize::from(u16::from_le_bytes([volume[o], volume[o + 1]]));
        let u32_at =
            |o: usize| u32::from_le_bytes([volume[o], volume[o + 1], volume[o + 2], volume[o + 3]]);
        let bytes_per_sector = u16_at(11);
        let sectors_per_cluster = usize::from(volume[13]);
        let reserved = u16_at(14);
        let fats = usize::from(volume[16]);
        ensure!(
            bytes_per_sector >= 512 && sectors_per_cluster > 0,
            "bad BPB"
        );
        // A FAT16 BPB gives the FAT size in 16 bits; FAT32 sets that to 0 and uses 32.
        let (fat_sectors, entry_size) = match u16_at(22) {
            0 => (u32_at(36) as usize, 4),
            n => (n, 2),
        };
        ensure!(fat_sectors > 0, "the BPB gives no FAT size");
        let fat_offset = reserved * bytes_per_sector;
        let root_offset = fat_offset + fats * fat_sectors * bytes_per_sector;
        let root_bytes = (u16_at(17) * SLOT).next_multiple_of(bytes_per_sector);
        let data_offset = root_offset + root_bytes;
        ensure!(data_offset < volume.len(), "FATs larger than the volume");
        let cluster_size = sectors_per_cluster * bytes_per_sector;
        let clusters = (volume.len() - data_offset) / cluster_size;
        let root = if entry_size == 4 {
            ensure!(root_bytes == 0, "a FAT32 BPB with a fixed root directory");
            Root::Chain(u32_at(44))
        } else {
            ensure!(root_bytes > 0, "a FAT16 BPB without a root directory");
            ensure!(
                clusters >= MIN_FAT16_CLUSTERS,
                "a FAT12 volume ({clusters} clusters), which this pass does not read"
            );
            Root::Region(root_offset..data_offset)
        };
        Ok(Self {
            fat_offset,
            entry_size,
            root,
            data_offset,
            cluster_size,
            cluster_count: u32::try_from(clusters)?,
        })
    }

    /// Byte range of cluster `n` (numbered from 2).
    fn cluster(&self, n: u32) -> Result<Range<usize>> {
        ensure!(
            n >= 2 && n - 2 < self.cluster_count,
            "cluster {n} out of range"
        );
        let start = self.data_offset + (n as usize - 2) * self.cluster_size;
        Ok(start..start + self.cluster_size)
    }

    /// The FAT entry of cluster `n`: the next cluster, or `None` at the end of a chain.
    fn next(&self, volume: &[u8], n: u32) -> Result<Option<u32>> {
        let at = self.fat_offset + n as usize * self.entry_size;
        let entry = volume
            .get(at..at + self.entry_size)
            .context("FAT entry beyond the volume")?;
        Ok(match *entry {
            [a, b] => Some(u32::from(u16::from_le_bytes([a, b]))).filter(|&n| n < 0xfff8),
            [a, b, c, d] => {
                Some(u32::from_le_bytes([a, b, c, d]) & 0x0fff_ffff).filter(|&n| n < 0x0fff_fff8)
            }
            _ => bail!("FAT entries of {} bytes", self.entry_size),
        })
    }

    /// The clusters of the chain starting at `first`.
    fn chain(&self, volume: &[u8], first: u32) -> Result<Vec<u32>> {
        let mut chain = vec![first];
        let mut n = first;
        while let Some(next) = self.next(volume, n)? {
            ensure!(
                chain.len() <= self.cluster_count as usize,
                "cluster chain loops"
            );
            self.cluster(next)?;
            chain.push(next);
            n = next;
        }
        Ok(chain)
    }

    /// The byte ranges holding directory `dir`'s entries (`None`: the root directory).
    fn directory(&self, volume: &[u8], dir: Option<u32>) -> Result<Vec<Range<usize>>> {
        let first = match (dir, &self.root) {
            (Some(first), _) | (None, &Root::Chain(first)) => first,
            (None, Root::Region(region)) => return Ok(vec![region.clone()]),
        };
        self.chain(volume, first)?
            .into_iter()
            .map(|n| self.cluster(n))
            .collect()
    }
}

/// First cluster recorded in a directory entry.
fn first_cluster(slot: &[u8]) -> u32 {
    u32::from(u16::from_le_bytes([slot[20], slot[21]])) << 16
        | u32::from(u16::from_le_bytes([slot[26], slot[27]]))
}

fn set_first_cluster(slot: &mut [u8], cluster: u32) {
    let [a, b, c, d] = cluster.to_le_bytes();
    slot[20..22].copy_from_slice(&[c, d]);
    slot[26..28].copy_from_slice(&[a, b]);
}

/// Rewrites the `.`/`..` entries of every directory of the FAT16 or FAT32 `volume`; returns
/// how many directories were visited.
pub fn fix_dot_entries(volume: &mut [u8]) -> Result<usize> {
    let geo = Geometry::parse(volume)?;
    let mut visited = 0;
    walk(volume, &geo, None, 0, &mut visited)?;
    Ok(visited)
}

/// Fixes the subdirectories of the directory `dir` (`None`: the root) at nesting `depth`.
fn walk(
    volume: &mut [u8],
    geo: &Geometry,
    dir: Option<u32>,
    depth: usize,
    visited: &mut usize,
) -> Result<()> {
    ensure!(
        depth <= MAX_DEPTH,
        "directories nested deeper than {MAX_DEPTH}"
    );
    let mut subdirs = Vec::new();
    'chain: for range in geo.directory(volume, dir)? {
        for slot in volume[range].chunks_exact(SLOT) {
            match slot[0] {
                0 => break 'chain,
                DELETED => continue,
                _ => {}
            }
            let attr = slot[11];
            let name = &slot[..11];
            if attr == ATTR_LONG_NAME || attr & ATTR_VOLUME_ID != 0 || name == DOT || name == DOTDOT
            {
                continue;
            }
            if attr & ATTR_DIRECTORY != 0 {
                subdirs.push(first_cluster(slot));
            }
        }
    }
    // `..` of a top-level directory names the root as cluster 0.
    let parent = dir.unwrap_or(0);
    for sub in subdirs {
        fix_directory(volume, geo, sub, parent)?;
        *visited += 1;
        walk(volume, geo, Some(sub), depth + 1, visited)?;
    }
    Ok(())
}

/// Makes slot 0 of directory `dir` its `.` entry and slot 1 its `..` entry (pointing at
/// `parent`), deleting the long-name entries fatfs put in front of them.
fn fix_directory(volume: &mut [u8], geo: &Geometry, dir: u32, parent: u32) -> Result<()> {
    let range = geo.cluster(dir)?;
    let slots = &mut volume[range];
    let find = |slots: &[u8], name: &[u8; 11]| {
        slots
            .chunks_exact(SLOT)
            .take(8)
            .position(|s| &s[..11] == name && s[11] != ATTR_LONG_NAME)
    };
    let (Some(dot), Some(dotdot)) = (find(slots, DOT), find(slots, DOTDOT)) else {
        bail!("directory at cluster {dir} has no . and .. entries");
    };
    ensure!(dot < dotdot, "directory at cluster {dir}: .. before .");
    // Everything before `..` other than `.` must be long-name entries we may delete.
    for (i, slot) in slots.chunks_exact(SLOT).take(dotdot).enumerate() {
        ensure!(
            i == dot || slot[11] == ATTR_LONG_NAME,
            "unexpected entry {i} in directory {dir}"
        );
    }
    let mut dot_entry = [0u8; SLOT];
    dot_entry.copy_from_slice(&slots[dot * SLOT..(dot + 1) * SLOT]);
    let mut dotdot_entry = [0u8; SLOT];
    dotdot_entry.copy_from_slice(&slots[dotdot * SLOT..(dotdot + 1) * SLOT]);
    set_first_cluster(&mut dot_entry, dir);
    set_first_cluster(&mut dotdot_entry, parent);
    for i in 2..=dotdot {
        slots[i * SLOT] = DELETED;
    }
    slots[..SLOT].copy_from_slice(&dot_entry);
    slots[SLOT..2 * SLOT].copy_from_slice(&dotdot_entry);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Read, Write};

    use fatfs::{FatType, FileSystem, FormatVolumeOptions, FsOptions};

    use super::*;

    /// A fresh volume of `mib` MiB with nested directories, written by fatfs.
    fn volume(fat_type: FatType, mib: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; mib * 1024 * 1024];
        let opts = FormatVolumeOptions::new()
            .fat_type(fat_type)
            .bytes_per_cluster(512);
        fatfs::format_volume(Cursor::new(&mut bytes[..]), opts).expect("format");
        {
            let fs = FileSystem::new(Cursor::new(&mut bytes[..]), FsOptions::new()).expect("mount");
            assert_eq!(fs.fat_type(), fat_type);
            let deep = fs
                .root_dir()
                .create_dir("a")
                .and_then(|a| a.create_dir("bb"))
                .expect("dirs");
            deep.create_dir("ccc").expect("dir");
            deep.create_file("file.txt")
                .and_then(|mut f| f.write_all(b"hello"))
                .expect("file");
            fs.root_dir().create_dir("EFI").expect("dir");
            drop(deep);
            fs.unmount().expect("unmount");
        }
        bytes
    }

    /// A FAT32 volume (the ESP's type) and a FAT16 one (the El Torito image's).
    fn volumes() -> [Vec<u8>; 2] {
        [volume(FatType::Fat32, 40), volume(FatType::Fat16, 8)]
    }

    fn dir_cluster(bytes: &[u8], geo: &Geometry, parent: Option<u32>, name: &[u8; 11]) -> u32 {
        let ranges = geo.directory(bytes, parent).expect("directory");
        let slot = ranges
            .into_iter()
            .flat_map(|r| bytes[r].chunks_exact(SLOT))
            .find(|s| &s[..11] == name && s[11] & ATTR_DIRECTORY != 0)
            .expect("directory entry");
        first_cluster(slot)
    }

    #[test]
    fn dot_entries_come_first_and_point_right() {
        for mut bytes in volumes() {
            assert_eq!(fix_dot_entries(&mut bytes).expect("fixed"), 4);
            let geo = Geometry::parse(&bytes).expect("geometry");
            let a = dir_cluster(&bytes, &geo, None, b"A          ");
            let bb = dir_cluster(&bytes, &geo, Some(a), b"BB         ");
            let ccc = dir_cluster(&bytes, &geo, Some(bb), b"CCC        ");
            let efi = dir_cluster(&bytes, &geo, None, b"EFI        ");
            for (dir, parent) in [(a, 0), (bb, a), (ccc, bb), (efi, 0)] {
                let slots = &bytes[geo.cluster(dir).expect("cluster")];
                assert_eq!(&slots[..11], DOT);
                assert_eq!(first_cluster(&slots[..SLOT]), dir);
                assert_eq!(&slots[SLOT..SLOT + 11], DOTDOT);
                assert_eq!(first_cluster(&slots[SLOT..2 * SLOT]), parent);
            }
            // fatfs still reads everything.
            let fs = FileSystem::new(Cursor::new(&mut bytes[..]), FsOptions::new()).expect("mount");
            let mut text = String::new();
            fs.root_dir()
                .open_file("a/bb/file.txt")
                .expect("file")
                .read_to_string(&mut text)
                .expect("read");
            assert_eq!(text, "hello");
            let names: Vec<String> = fs
                .root_dir()
                .open_dir("a/bb")
                .expect("dir")
                .iter()
                .map(|e| e.expect("entry").file_name())
                .collect();
            assert_eq!(names, [".", "..", "ccc", "file.txt"]);
        }
    }

    #[test]
    fn running_twice_changes_nothing() {
        for mut bytes in volumes() {
            fix_dot_entries(&mut bytes).expect("first pass");
            let once = bytes.clone();
            fix_dot_entries(&mut bytes).expect("second pass");
            assert!(once == bytes);
        }
    }

    #[test]
    fn garbage_and_fat12_are_errors_not_panics() {
        assert!(fix_dot_entries(&mut [0u8; 100]).is_err());
        assert!(fix_dot_entries(&mut vec![0u8; 4096]).is_err());
        let mut fat12 = vec![0u8; 1024 * 1024];
        fatfs::format_volume(
            Cursor::new(&mut fat12[..]),
            FormatVolumeOptions::new().fat_type(FatType::Fat12),
        )
        .expect("format");
        let err = fix_dot_entries(&mut fat12).expect_err("FAT12 refused");
        assert!(format!("{err}").contains("FAT12"), "{err}");
    }
}
