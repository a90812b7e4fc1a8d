//! The initramfs format: a `newc` cpio archive (what Linux unpacks into its rootfs), read
//! here by hand: it is 110-byte ASCII headers, names and data padded to four bytes, which no
//! `no_std` crate reads with the refusals wanted here (every field checked, a malformed
//! archive refused with a reason and nothing half-installed beyond what was valid).

use alloc::{string::String, vec::Vec};

use linux_raw_sys::general as g;

use super::{Node, install, mkdir_all};

/// Why an archive was refused.
pub type Refusal = &'static str;

struct Header {
    mode: u32,
    filesize: usize,
    namesize: usize,
}

fn hex(field: &[u8]) -> Result<u32, Refusal> {
    let text = core::str::from_utf8(field).map_err(|_| "a header field is not ASCII")?;
    u32::from_str_radix(text, 16).map_err(|_| "a header field is not hexadecimal")
}

fn parse_header(bytes: &[u8]) -> Result<Header, Refusal> {
    if bytes.len() < 110 {
        return Err("truncated header");
    }
    if &bytes[..6] != b"070701" && &bytes[..6] != b"070702" {
        return Err("not a newc cpio archive (bad magic)");
    }
    let field = |i: usize| hex(&bytes[6 + i * 8..14 + i * 8]);
    Ok(Header {
        mode: field(1)?,
        filesize: field(6)? as usize,
        namesize: field(11)? as usize,
    })
}

/// One archive member: its path, `st_mode` and contents.
pub type Entry<'a> = (String, u32, &'a [u8]);

/// What one step through the archive found: the member at `at` (or why that member alone is
/// unusable) and where the next starts; `None` at the trailer. An `Err` is the archive's
/// structure broken there: nothing after it can be found.
type Step<'a> = Result<Option<(Result<Entry<'a>, Refusal>, usize)>, Refusal>;

fn step(archive: &[u8], at: usize) -> Step<'_> {
    let header = parse_header(archive.get(at..).ok_or("truncated archive")?)?;
    let name_start = at + 110;
    let name_end = name_start
        .checked_add(header.namesize)
        .ok_or("name size overflows")?;
    let name = archive
        .get(name_start..name_end)
        .ok_or("truncated name")?
        .strip_suffix(&[0])
        .ok_or("a name without its NUL")?;
    let data_start = name_end.next_multiple_of(4);
    let data_end = data_start
        .checked_add(header.filesize)
        .ok_or("file size overflows")?;
    let data = archive
        .get(data_start..data_end)
        .ok_or("truncated file data")?;
    let next = data_end.next_multiple_of(4);
    let entry = match core::str::from_utf8(name) {
        Ok("TRAILER!!!") => return Ok(None),
        Ok(name) if name.split('/').any(|p| p == "..") => Err("a name with '..'"),
        Ok(name) => Ok((String::from(name), header.mode, data)),
        Err(_) => Err("a name is not UTF-8"),
    };
    Ok(Some((entry, next)))
}

/// Parses the whole archive into entries, or refuses it (strictly: any bad member).
pub fn entries(archive: &[u8]) -> Result<Vec<Entry<'_>>, Refusal> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while let Some((entry, next)) = step(archive, at)? {
        out.push(entry?);
        at = next;
    }
    Ok(out)
}

/// Unpacks `archive` into the root; returns the number of entries installed. A member that
/// cannot be installed (a bad name, a link target that is not UTF-8, a path through a file)
/// is skipped with a warning; a break in the archive's structure keeps what came before it
/// (as Linux's unpacker does) and is refused only if nothing came before.
pub fn unpack(archive: &[u8]) -> Result<usize, Refusal> {
    let mut at = 0usize;
    let mut count = 0;
    loop {
        match step(archive, at) {
            Ok(None) => return Ok(count),
            Ok(Some((entry, next))) => {
                at = next;
                match entry.and_then(|e| install_entry(&e)) {
                    Ok(()) => count += 1,
                    Err(why) => log::warn!("fs: initramfs: an entry at byte {at} skipped: {why}"),
                }
            }
            Err(why) if count == 0 => return Err(why),
            Err(why) => {
                log::warn!("fs: initramfs: {why} at byte {at}; {count} entries before it kept");
                return Ok(count);
            }
        }
    }
}

fn install_entry((name, mode, data): &Entry<'_>) -> Result<(), Refusal> {
    let path = alloc::format!("/{}", name.trim_start_matches("./").trim_start_matches('/'));
    if path == "/" || path == "/." {
        return Ok(());
    }
    let node = match mode & g::S_IFMT {
        g::S_IFDIR => {
            return mkdir_all(&path, *mode)
                .map(|_| ())
                .map_err(|_| "a directory on a path through a file");
        }
        g::S_IFREG => Node::new_file(data, *mode).map_err(|_| "out of memory")?,
        g::S_IFLNK => Node::new_symlink(
            String::from_utf8(data.to_vec()).map_err(|_| "a link target is not UTF-8")?,
        ),
        // Device nodes, FIFOs and sockets: the kernel makes /dev itself.
        _ => return Ok(()),
    };
    install(&path, node).map_err(|_| "an entry's directory is not a directory")
}

/// Tests of the cpio reader.
#[cfg(feature = "tests")]
pub mod tests {
    use alloc::{format, vec::Vec};

    use super::{entries, unpack};
    use crate::{
        check,
        ktest::{TestResult, ktest},
    };

    fn record(name: &str, mode: u32, data: &[u8]) -> Vec<u8> {
        let mut out = format!(
            "070701{:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            1,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        )
        .into_bytes();
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend_from_slice(data);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }

    /// A well-formed archive reads back entry by entry; truncations and corruptions of it are
    /// refused with a reason, never a panic.
    #[ktest("cpio-reads-and-refuses")]
    pub fn reads_and_refuses() -> TestResult {
        let mut archive = record("bin", 0o040755, b"");
        archive.extend(record("bin/hello", 0o100755, b"hello world"));
        archive.extend(record("bin/sh", 0o120777, b"busybox"));
        archive.extend(record("TRAILER!!!", 0, b""));
        let got = entries(&archive).map_err(|e| format!("refused: {e}"))?;
        check!(got.len() == 3, "{} entries", got.len());
        check!(
            got[1].0 == "bin/hello" && got[1].2 == b"hello world",
            "the file"
        );
        check!(got[2].2 == b"busybox", "the link");
        for len in 0..archive.len() {
            check!(
                entries(&archive[..len]).is_err(),
                "a {len}-byte prefix was accepted"
            );
        }
        let mut bad = archive.clone();
        bad[0] = b'1';
        check!(entries(&bad).is_err(), "a bad magic was accepted");
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut copy = archive.clone();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let at = (state % copy.len() as u64) as usize;
            copy[at] = (state >> 40) as u8;
            let _ = entries(&copy);
        }
        Ok(())
    }

    /// A bad member is skipped with a warning and the members around it are installed; a
    /// broken tail keeps what came before it.
    #[ktest("cpio-skips-bad-entries")]
    pub fn skips_bad_entries() -> TestResult {
        let mut archive = record("tmp/cpio-test", 0o040755, b"");
        archive.extend(record("tmp/cpio-test/good", 0o100644, b"ok"));
        archive.extend(record("tmp/cpio-test/../evil", 0o100644, b"no"));
        archive.extend(record("tmp/cpio-test/good/under", 0o100644, b"no"));
        archive.extend(record("tmp/cpio-test/link", 0o120777, &[0xff, 0xfe]));
        archive.extend(record("tmp/cpio-test/after", 0o100644, b"yes"));
        archive.extend(b"070701garbage");
        let count = unpack(&archive).map_err(|e| format!("refused: {e}"))?;
        check!(count == 3, "{count} entries installed, not 3");
        let root = crate::fs::root();
        let read = |path: &str| {
            let node = crate::fs::lookup(&root, path, true).ok()?;
            match &node.kind {
                crate::fs::Kind::File(d) => Some(d.lock().to_vec()),
                _ => None,
            }
        };
        check!(
            read("/tmp/cpio-test/good").as_deref() == Some(&b"ok"[..]),
            "good"
        );
        check!(
            read("/tmp/cpio-test/after").as_deref() == Some(&b"yes"[..]),
            "after"
        );
        check!(read("/tmp/evil").is_none(), "a '..' name was installed");
        check!(
            read("/tmp/cpio-test/link").is_none(),
            "a bad link was installed"
        );
        check!(
            unpack(b"070701garbage").is_err(),
            "garbage alone was accepted"
        );
        Ok(())
    }
}
