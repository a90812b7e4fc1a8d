//! A minimal writer of `newc` cpio archives, the format Linux unpacks as its initramfs
//! (Linux's `Documentation/driver-api/early-userspace/buffer-format.rst`): per entry a
//! 110-byte ASCII header (`070701` and 13 eight-digit hex fields), the NUL-terminated name,
//! then the data, each padded to 4 bytes; the archive ends with an entry named `TRAILER!!!`.
//!
//! Private to the benchmarks, which need a one-file initramfs for Linux. It should give way
//! to `crate::initramfs` once that lands (another engineer is writing it).

/// File type bits of `st_mode`.
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFCHR: u32 = 0o020_000;

/// An archive being written.
#[derive(Debug, Default)]
pub struct Cpio {
    bytes: Vec<u8>,
    next_inode: u32,
}

impl Cpio {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a directory (`name` without a leading `/`).
    pub fn dir(&mut self, name: &str, permissions: u32) -> &mut Self {
        self.entry(name, S_IFDIR | permissions, 2, (0, 0), &[])
    }

    /// Adds a regular file.
    pub fn file(&mut self, name: &str, permissions: u32, data: &[u8]) -> &mut Self {
        self.entry(name, S_IFREG | permissions, 1, (0, 0), data)
    }

    /// Adds a character device node with device number `(major, minor)`.
    pub fn char_device(&mut self, name: &str, permissions: u32, device: (u32, u32)) -> &mut Self {
        self.entry(name, S_IFCHR | permissions, 1, device, &[])
    }

    /// Ends the archive and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.next_inode = 0;
        self.header("TRAILER!!!", 0, 1, (0, 0), 0, 0);
        self.bytes
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        links: u32,
        device: (u32, u32),
        data: &[u8],
    ) -> &mut Self {
        self.next_inode += 1;
        let size = u32::try_from(data.len()).expect("a cpio member is smaller than 4 GiB");
        self.header(name, mode, links, device, size, self.next_inode);
        self.bytes.extend_from_slice(data);
        self.pad();
        self
    }

    fn header(
        &mut self,
        name: &str,
        mode: u32,
        links: u32,
        (major, minor): (u32, u32),
        size: u32,
        inode: u32,
    ) {
        let name_size = u32::try_from(name.len() + 1).expect("a short name");
        // ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
        // rdevminor, namesize, check.
        let fields = [
            inode, mode, 0, 0, links, 0, size, 0, 0, major, minor, name_size, 0,
        ];
        self.bytes.extend_from_slice(b"070701");
        for field in fields {
            self.bytes
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry read back: name, mode, rdev and data.
    type Entry = (String, u32, (u32, u32), Vec<u8>);

    /// Reads an archive back, the trailer left out.
    fn entries(mut bytes: &[u8]) -> Vec<Entry> {
        let field = |header: &[u8], i: usize| {
            let text = std::str::from_utf8(&header[6 + 8 * i..14 + 8 * i]).expect("ASCII");
            u32::from_str_radix(text, 16).expect("hex")
        };
        let padded = |n: usize| n.next_multiple_of(4);
        let mut out = Vec::new();
        loop {
            assert_eq!(&bytes[..6], b"070701");
            let name_size = field(bytes, 11) as usize;
            let size = field(bytes, 6) as usize;
            let name = std::str::from_utf8(&bytes[110..110 + name_size - 1]).expect("name");
            assert_eq!(bytes[110 + name_size - 1], 0, "NUL-terminated");
            let data_at = padded(110 + name_size);
            if name == "TRAILER!!!" {
                assert_eq!(bytes.len(), data_at, "nothing after the trailer");
                return out;
            }
            out.push((
                name.to_owned(),
                field(bytes, 1),
                (field(bytes, 9), field(bytes, 10)),
                bytes[data_at..data_at + size].to_vec(),
            ));
            bytes = &bytes[data_at + padded(size)..];
        }
    }

    #[test]
    fn an_initramfs_reads_back() {
        let mut cpio = Cpio::new();
        cpio.dir("dev", 0o755)
            .char_device("dev/console", 0o600, (5, 1))
            .file("init", 0o755, b"hello");
        let bytes = cpio.finish();
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(
            entries(&bytes),
            vec![
                ("dev".into(), 0o040_755, (0, 0), vec![]),
                ("dev/console".into(), 0o020_600, (5, 1), vec![]),
                ("init".into(), 0o100_755, (0, 0), b"hello".to_vec()),
            ]
        );
    }
}
