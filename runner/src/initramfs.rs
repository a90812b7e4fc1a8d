//! The initramfs writer: a `newc` cpio archive (the format Linux unpacks into its rootfs and
//! Evergreen's `kernel/src/fs/cpio.rs` reads), built in memory from a tree of directories,
//! files and symbolic links.
//!
//! Written by hand rather than with a crate: a `newc` record is a 110-byte ASCII header of
//! thirteen 8-digit hex fields, the NUL-terminated name and the data, each padded to four
//! bytes, and the archive ends with a record named `TRAILER!!!` — shorter than any
//! dependency. Entries are kept sorted by path, and every missing parent directory is made
//! (mode 0755), so an archive always lists a directory before what it holds.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

/// The `st_mode` type bits of a directory, a regular file and a symbolic link.
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

/// The permission bits a mode may carry (with set-uid, set-gid and sticky).
const PERMISSIONS: u32 = 0o7777;

/// One member of the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// A directory with its permission bits.
    Dir {
        /// Permission bits (e.g. `0o1777` for `/tmp`).
        mode: u32,
    },
    /// A regular file.
    File {
        /// The contents.
        data: Vec<u8>,
        /// Permission bits.
        mode: u32,
    },
    /// A symbolic link to `target` (kept as written: absolute or relative).
    Symlink {
        /// What the link points at.
        target: String,
    },
}

impl Node {
    /// The full `st_mode`: type and permission bits.
    pub fn st_mode(&self) -> u32 {
        match self {
            Self::Dir { mode } => S_IFDIR | (mode & PERMISSIONS),
            Self::File { mode, .. } => S_IFREG | (mode & PERMISSIONS),
            Self::Symlink { .. } => S_IFLNK | 0o777,
        }
    }

    /// The bytes stored after the header: a file's contents or a link's target.
    fn data(&self) -> &[u8] {
        match self {
            Self::Dir { .. } => &[],
            Self::File { data, .. } => data,
            Self::Symlink { target } => target.as_bytes(),
        }
    }
}

/// A file tree to be written as an initramfs. Paths are absolute (`/bin/sh`); adding a path
/// again replaces what was there, so later additions (`--add`) override the standard tree.
#[derive(Clone, Debug, Default)]
pub struct Initramfs {
    /// Members by normalised path without the leading `/` (`bin/sh`).
    nodes: BTreeMap<String, Node>,
}

/// `path` without leading, trailing or repeated slashes and `.` parts; refuses relative
/// paths, `..` and the root itself.
pub fn normalise(path: &str) -> Result<String> {
    if !path.starts_with('/') {
        bail!("{path:?} is not an absolute path");
    }
    let mut parts = Vec::new();
    for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if part == ".." {
            bail!("{path:?} contains `..`");
        }
        parts.push(part);
    }
    if parts.is_empty() {
        bail!("{path:?} names the root directory, not an entry in it");
    }
    Ok(parts.join("/"))
}

impl Initramfs {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the directory `path` with permission bits `mode` (and its missing parents).
    pub fn dir(&mut self, path: &str, mode: u32) -> Result<&mut Self> {
        self.insert(path, Node::Dir { mode })
    }

    /// Adds the regular file `path`.
    pub fn file(&mut self, path: &str, data: Vec<u8>, mode: u32) -> Result<&mut Self> {
        self.insert(path, Node::File { data, mode })
    }

    /// Adds the symbolic link `path` pointing at `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<&mut Self> {
        if target.is_empty() {
            bail!("the link {path:?} has an empty target");
        }
        self.insert(
            path,
            Node::Symlink {
                target: target.to_owned(),
            },
        )
    }

    /// Adds `node` at `path`, making missing parents; a parent that is not a directory is an
    /// error.
    pub fn insert(&mut self, path: &str, node: Node) -> Result<&mut Self> {
        let path = normalise(path)?;
        for (slash, _) in path.match_indices('/') {
            let parent = &path[..slash];
            match self.nodes.get(parent) {
                None => {
                    self.nodes
                        .insert(parent.to_owned(), Node::Dir { mode: 0o755 });
                }
                Some(Node::Dir { .. }) => {}
                Some(_) => bail!("cannot add /{path}: /{parent} is not a directory"),
            }
        }
        // A directory added over a directory keeps what it holds; anything else replaces.
        if !matches!(node, Node::Dir { .. })
            || !matches!(self.nodes.get(&path), Some(Node::Dir { .. }))
        {
            let prefix = format!("{path}/");
            self.nodes.retain(|p, _| !p.starts_with(&prefix));
        }
        self.nodes.insert(path, node);
        Ok(self)
    }

    /// The member at the absolute `path`, if any.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(&normalise(path).ok()?)
    }

    /// Every member: its path (absolute) and node, parents before children.
    pub fn entries(&self) -> impl Iterator<Item = (String, &Node)> {
        self.nodes.iter().map(|(p, n)| (format!("/{p}"), n))
    }

    /// The `newc` archive of the tree.
    pub fn to_cpio(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (ino, (path, node)) in (1u32..).zip(&self.nodes) {
            let links = if matches!(node, Node::Dir { .. }) {
                2
            } else {
                1
            };
            record(&mut out, ino, path, node.st_mode(), links, node.data());
        }
        record(&mut out, 0, "TRAILER!!!", 0, 1, &[]);
        out
    }
}

/// Appends one `newc` record: header, name, data, each padded to four bytes.
fn record(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, nlink: u32, data: &[u8]) {
    let fields = [
        ino,
        mode,
        0, // uid: everything belongs to root
        0, // gid
        nlink,
        0, // mtime: fixed, so the same tree gives the same bytes
        u32::try_from(data.len()).expect("an initramfs member is smaller than 4 GiB"),
        0, // devmajor
        0, // devminor
        0, // rdevmajor
        0, // rdevminor
        u32::try_from(name.len() + 1).expect("a path is shorter than 4 GiB"),
        0, // check: always 0 for magic 070701
    ];
    out.extend_from_slice(b"070701");
    for field in fields {
        out.extend_from_slice(format!("{field:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad(out);
    out.extend_from_slice(data);
    pad(out);
}

fn pad(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(4), 0);
}

#[cfg(test)]
mod tests {
    use std::{path::Path, process::Command};

    use super::*;

    /// One parsed record: name, mode, nlink, data.
    type Parsed = (String, u32, u32, Vec<u8>);

    /// A strict reader of what [`record`] writes, checking every rule of the format.
    fn parse(archive: &[u8]) -> Vec<Parsed> {
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            assert_eq!(at % 4, 0, "records start on four-byte boundaries");
            let header = &archive[at..at + 110];
            assert_eq!(&header[..6], b"070701");
            let field = |i: usize| {
                let text = std::str::from_utf8(&header[6 + 8 * i..14 + 8 * i]).expect("ASCII");
                assert!(text.bytes().all(|b| b.is_ascii_hexdigit()), "{text}");
                u32::from_str_radix(text, 16).expect("hex")
            };
            let (mode, nlink, size, namesize) =
                (field(1), field(4), field(6) as usize, field(11) as usize);
            assert_eq!(field(12), 0, "check field");
            let name = &archive[at + 110..at + 110 + namesize];
            assert_eq!(name.last(), Some(&0), "names end in NUL");
            let name = String::from_utf8(name[..namesize - 1].to_vec()).expect("UTF-8");
            let data_start = (at + 110 + namesize).next_multiple_of(4);
            assert!(
                archive[at + 110 + namesize..data_start]
                    .iter()
                    .all(|&b| b == 0),
                "name padding is zeros"
            );
            let data = archive[data_start..data_start + size].to_vec();
            at = (data_start + size).next_multiple_of(4);
            assert!(
                archive[data_start + size..at].iter().all(|&b| b == 0),
                "data padding is zeros"
            );
            if name == "TRAILER!!!" {
                assert_eq!(at, archive.len(), "nothing after the trailer");
                return out;
            }
            out.push((name, mode, nlink, data));
        }
    }

    fn sample() -> Initramfs {
        let mut tree = Initramfs::new();
        tree.dir("/tmp", 0o1777).expect("dir");
        tree.file("/bin/busybox", b"\x7fELF12345".to_vec(), 0o755)
            .expect("file");
        tree.symlink("/bin/sh", "busybox").expect("link");
        tree.file("/etc/hostname", b"evergreen\n".to_vec(), 0o644)
            .expect("file");
        tree
    }

    #[test]
    fn records_follow_the_newc_format() {
        let got = parse(&sample().to_cpio());
        let names: Vec<_> = got.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(
            names,
            ["bin", "bin/busybox", "bin/sh", "etc", "etc/hostname", "tmp"],
            "sorted, parents made and listed first"
        );
        assert_eq!(got[0].1, 0o040755);
        assert_eq!(got[0].2, 2, "a directory has two links");
        assert_eq!(
            got[1],
            ("bin/busybox".into(), 0o100755, 1, b"\x7fELF12345".to_vec())
        );
        assert_eq!(got[2], ("bin/sh".into(), 0o120777, 1, b"busybox".to_vec()));
        assert_eq!(got[5].1, 0o041777, "the sticky bit survives");
    }

    #[test]
    fn every_name_and_data_length_pads_to_four_bytes() {
        for len in 1..9 {
            let mut tree = Initramfs::new();
            let name = format!("/{}", "x".repeat(len));
            tree.file(&name, vec![b'a'; len], 0o600).expect("file");
            let archive = tree.to_cpio();
            assert_eq!(archive.len() % 4, 0);
            let got = parse(&archive);
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].3.len(), len);
        }
        assert_eq!(parse(&Initramfs::new().to_cpio()), [], "just the trailer");
    }

    #[test]
    fn paths_are_checked_and_replaced() {
        let mut tree = sample();
        assert!(tree.file("bin/x", vec![], 0o644).is_err(), "relative");
        assert!(tree.file("/bin/../x", vec![], 0o644).is_err(), "..");
        assert!(tree.dir("/", 0o755).is_err(), "the root");
        assert!(tree.symlink("/bin/y", "").is_err(), "empty target");
        assert!(
            tree.file("/etc/hostname/x", vec![], 0o644).is_err(),
            "a file as a parent"
        );
        tree.file("//bin/./sh/", b"mine".to_vec(), 0o700)
            .expect("replace");
        assert_eq!(
            tree.get("/bin/sh"),
            Some(&Node::File {
                data: b"mine".to_vec(),
                mode: 0o700
            })
        );
        tree.dir("/bin", 0o700).expect("a dir over a dir");
        assert!(tree.get("/bin/busybox").is_some(), "keeps its contents");
        tree.file("/bin", vec![], 0o644).expect("a file over a dir");
        assert!(tree.get("/bin/busybox").is_none(), "drops its contents");
    }

    #[test]
    fn the_same_tree_gives_the_same_bytes() {
        assert_eq!(sample().to_cpio(), sample().to_cpio());
    }

    /// The host's GNU cpio lists and unpacks the archive (skipped where cpio is not installed;
    /// Debian: apt-get install cpio).
    #[test]
    fn host_cpio_reads_the_archive() {
        if !Path::new("/usr/bin/cpio").is_file() && !Path::new("/bin/cpio").is_file() {
            eprintln!("cpio is not installed: skipped");
            return;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let archive = dir.path().join("initramfs.cpio");
        std::fs::write(&archive, sample().to_cpio()).expect("write");
        let list = Command::new("cpio")
            .args(["-t", "--quiet", "-F"])
            .arg(&archive)
            .output()
            .expect("cpio -t");
        assert!(list.status.success(), "{list:?}");
        assert_eq!(
            String::from_utf8_lossy(&list.stdout),
            "bin\nbin/busybox\nbin/sh\netc\netc/hostname\ntmp\n"
        );
        let out = dir.path().join("root");
        std::fs::create_dir(&out).expect("mkdir");
        let unpack = Command::new("cpio")
            .args(["-idv", "--quiet", "--no-absolute-filenames", "-F"])
            .arg(&archive)
            .current_dir(&out)
            .output()
            .expect("cpio -idv");
        assert!(unpack.status.success(), "{unpack:?}");
        assert_eq!(
            std::fs::read(out.join("bin/busybox")).expect("file"),
            b"\x7fELF12345"
        );
        assert_eq!(
            std::fs::read_link(out.join("bin/sh")).expect("link"),
            Path::new("busybox")
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| {
            std::fs::symlink_metadata(out.join(p))
                .expect("stat")
                .permissions()
                .mode()
        };
        assert_eq!(mode("bin/busybox") & 0o7777, 0o755);
        assert_eq!(mode("etc/hostname") & 0o7777, 0o644);
    }
}
