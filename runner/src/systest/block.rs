//! The block-device case: a user program (`user/tests/block.c`) writes and checks a
//! partition of a scratch disk through `/dev/vdb2`, and after the machine is off the runner
//! reads the disk image and finds what the program says it wrote (its FNV-1a hash). Two more
//! disks carry damaged GPTs (a bad header CRC, overlapping entries): the kernel must warn
//! about each and go on.

use std::{io::Cursor, path::Path};

use anyhow::{Context, Result, bail, ensure};
use gpt::{GptConfig, disk::LogicalBlockSize, mbr::ProtectiveMBR, partition_types};

use super::{Suite, user};
use crate::qemu::RunOptions;

const SECTOR: u64 = 512;
/// The scratch disk: 16 MiB, partition 1 at 1 MiB (1 MiB long), partition 2 after it.
const DISK_BYTES: u64 = 16 << 20;
const P1: (u64, u64) = (2048, 2048);
const P2: (u64, u64) = (4096, 16384);

/// A GPT disk image of [`DISK_BYTES`] with the two partitions.
fn gpt_disk() -> Result<Vec<u8>> {
    let mut disk = vec![0u8; DISK_BYTES as usize];
    let mut device = Cursor::new(&mut disk[..]);
    ProtectiveMBR::with_lb_size((DISK_BYTES / SECTOR - 1) as u32)
        .overwrite_lba0(&mut device)
        .context("writing the protective MBR")?;
    let mut table = GptConfig::new()
        .writable(true)
        .logical_block_size(LogicalBlockSize::Lb512)
        .create_from_device(device, None)
        .context("creating the GPT")?;
    for (n, (first, len)) in [(1, P1), (2, P2)] {
        table
            .add_partition_at(
                &format!("scratch{n}"),
                n,
                first,
                len,
                partition_types::LINUX_FS,
                0,
            )
            .context("adding a partition")?;
    }
    table.write().context("writing the GPT")?;
    Ok(disk)
}

/// FNV-1a, 64 bits.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

pub(super) fn run(
    ctx: &Suite,
    opts: &RunOptions,
    log: &Path,
    program: user::UserProgram,
) -> Result<String> {
    let dir = log.parent().context("the log's directory")?;
    let scratch = dir.join("block-scratch.img");
    std::fs::write(&scratch, gpt_disk()?).context("writing the scratch disk")?;
    // A header whose CRC does not match, and a table whose entries overlap (re-sealed, so
    // only the overlap is wrong).
    let mut bad_crc = gpt_disk()?;
    bad_crc[512 + 16] ^= 0xff;
    let bad_crc_path = dir.join("block-bad-crc.img");
    std::fs::write(&bad_crc_path, &bad_crc)?;
    let overlap_path = dir.join("block-overlap.img");
    std::fs::write(&overlap_path, overlapping()?)?;
    let mut opts = opts.clone();
    opts.scratch_disk = Some(scratch.clone());
    opts.extra_disks = vec![
        (bad_crc_path, "evergreen-bad-crc".into()),
        (overlap_path, "evergreen-overlap".into()),
    ];
    let note = user::run(ctx, &opts, log, program)?;
    let text = std::fs::read_to_string(log).context("reading the serial log")?;
    for disk in ["vdc", "vdd"] {
        ensure!(
            text.lines()
                .any(|l| l.contains("WARN") && l.contains(&format!("{disk}:"))),
            "no warning about the damaged GPT of {disk}"
        );
    }
    let said = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("block: fnv1a "))
        .context("the program printed no hash")?;
    let image = std::fs::read(&scratch).context("reading the scratch disk back")?;
    let part = &image[(P2.0 * SECTOR) as usize..((P2.0 + P2.1) * SECTOR) as usize];
    let found = format!("{:016x}", fnv1a(part));
    if said.trim() != found {
        bail!("the guest wrote data hashing to {said}, the image on the host holds {found}");
    }
    Ok(format!(
        "{note}; the disk image holds what was written (fnv1a {found}); both damaged GPTs warned about"
    ))
}

/// A GPT whose second entry overlaps the first, with both CRCs made right again.
fn overlapping() -> Result<Vec<u8>> {
    let mut disk = gpt_disk()?;
    let u32_at = |d: &[u8], at: usize| u32::from_le_bytes(d[at..at + 4].try_into().expect("4"));
    let header = 512;
    let entries =
        (u64::from_le_bytes(disk[header + 72..header + 80].try_into()?) * SECTOR) as usize;
    let size = u32_at(&disk, header + 84) as usize;
    let count = u32_at(&disk, header + 80) as usize;
    // Entry 2 starts inside entry 1.
    let start = entries + size + 32;
    disk[start..start + 8].copy_from_slice(&(P1.0 + 16).to_le_bytes());
    let crc = crc32(&disk[entries..entries + count * size]);
    disk[header + 88..header + 92].copy_from_slice(&crc.to_le_bytes());
    disk[header + 16..header + 20].fill(0);
    let len = u32_at(&disk, header + 12) as usize;
    let crc = crc32(&disk[header..header + len]);
    disk[header + 16..header + 20].copy_from_slice(&crc.to_le_bytes());
    Ok(disk)
}

/// CRC-32 (IEEE), as GPT uses.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
