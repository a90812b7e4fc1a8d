//! A/B update slots, first step: read the boot state, check both slots, say what to boot.
//!
//! With `evergreen_slots: yes` in `limine.conf` the loader finds `EG_STATE`, `EG_SLOT_A` and
//! `EG_SLOT_B` by their GPT names (the firmware's PartitionInfo protocol), reads the state
//! record through DiskIo, opens each slot's FAT volume through the firmware's own FAT driver,
//! checks the manifest's signature with the key built into the loader and every payload's
//! SHA-256, and runs the slot choice of `libs/update`. For now this is a dry run: it logs the
//! decision and how long the checks took, writes nothing, and the entry from the ESP boots as
//! before. Booting the chosen slot (and writing the state first) is the next step.
//!
//! The key is the public development key (`runner/keys/dev-release-key.seed`); a real key
//! will come from the build.

use alloc::{format, string::String, vec, vec::Vec};

use uefi::{
    CStr16, Handle, boot,
    proto::media::{
        block::BlockIO,
        disk::DiskIo,
        file::{File, FileAttribute, FileMode},
        fs::SimpleFileSystem,
        partition::PartitionInfo,
    },
};
use update::{
    choice::{self, Verified},
    manifest::{self, Manifest, PublicKey, SecretKey},
    state::{self, Slot},
};

use crate::{cpu, firmware, fs};

/// The development key's seed; the loader checks releases against its public half.
const DEV_KEY_SEED: &str = include_str!("../../runner/keys/dev-release-key.seed");

/// Logs what the slots hold and which one the rules of `libs/update` would boot.
pub fn dry_run() {
    let start = cpu::rdtsc();
    let report = check();
    let ticks = cpu::rdtsc().wrapping_sub(start);
    let ms = ticks / (firmware::measure_tsc() / 1000).max(1);
    match report {
        Ok(line) => {
            log::info!("slots: {line} (checked in {ms} ms; dry run, booting the ESP entry)")
        }
        Err(why) => log::warn!("slots: {why} (dry run, booting the ESP entry)"),
    }
}

fn check() -> Result<String, String> {
    let key = dev_key().ok_or("the built-in release key is malformed")?;
    let (state_handle, slot_handles) = find_partitions()?;
    let area = read_area(state_handle)?;
    let read = state::read_area(&area);
    let verified = slot_handles.map(|h| h.and_then(|h| verify_slot(h, &key).ok()));
    let current = read.current.map(|c| c.state);
    let state_text = match read.current {
        Some(c) => format!("state copy {} (sequence {})", c.copy, c.seq),
        None => String::from("both state copies invalid"),
    };
    let verdict = |i: usize| match verified[i] {
        Some(v) => format!("v{} verifies", v.version),
        None => String::from("does not verify"),
    };
    let choice = match choice::choose(current.as_ref(), verified) {
        Ok(d) => format!(
            "would boot slot {} (version {}, {:?}{})",
            d.slot.name(),
            d.version,
            d.kind,
            if d.write.is_some() {
                ", after a state write"
            } else {
                ""
            }
        ),
        Err(e) => format!("{e}"),
    };
    Ok(format!(
        "{state_text}; slot A {}, slot B {}; {choice}",
        verdict(0),
        verdict(1)
    ))
}

fn dev_key() -> Option<PublicKey> {
    let digits: Vec<u8> = DEV_KEY_SEED
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .flat_map(str::bytes)
        .collect();
    if digits.len() != 64 {
        return None;
    }
    let mut seed = [0u8; 32];
    for (i, byte) in seed.iter_mut().enumerate() {
        let text = core::str::from_utf8(&digits[2 * i..2 * i + 2]).ok()?;
        *byte = u8::from_str_radix(text, 16).ok()?;
    }
    Some(PublicKey::of(&SecretKey::from_bytes(&seed)))
}

/// The handles of `EG_STATE` and of the two slot partitions, by GPT name.
fn find_partitions() -> Result<(Handle, [Option<Handle>; 2]), String> {
    let handles = boot::find_handles::<PartitionInfo>()
        .map_err(|e| format!("no partitions ({:?})", e.status()))?;
    let mut state = None;
    let mut slots = [None, None];
    for handle in handles {
        let Ok(info) = firmware::shared_protocol::<PartitionInfo>(handle) else {
            continue;
        };
        let Some(entry) = info.gpt_partition_entry() else {
            continue;
        };
        let raw = entry.partition_name;
        let name: String = raw
            .iter()
            .map(|&c| u16::from(c))
            .take_while(|&c| c != 0)
            .map(|c| char::from_u32(u32::from(c)).unwrap_or('?'))
            .collect();
        match name.as_str() {
            "EG_STATE" => state = Some(handle),
            "EG_SLOT_A" => slots[Slot::A.index()] = Some(handle),
            "EG_SLOT_B" => slots[Slot::B.index()] = Some(handle),
            _ => {}
        }
    }
    Ok((state.ok_or("no EG_STATE partition")?, slots))
}

/// The state area at the start of the state partition.
fn read_area(handle: Handle) -> Result<Vec<u8>, String> {
    let media_id = firmware::shared_protocol::<BlockIO>(handle)
        .map_err(|e| format!("EG_STATE: no block I/O ({:?})", e.status()))?
        .media()
        .media_id();
    let disk = firmware::shared_protocol::<DiskIo>(handle)
        .map_err(|e| format!("EG_STATE: no disk I/O ({:?})", e.status()))?;
    let mut area = vec![0u8; state::AREA_LEN];
    disk.read_disk(media_id, 0, &mut area)
        .map_err(|e| format!("EG_STATE: read failed ({:?})", e.status()))?;
    Ok(area)
}

/// The slot's release, if its manifest verifies with `key` and every payload matches.
fn verify_slot(handle: Handle, key: &PublicKey) -> Result<Verified, String> {
    let mut sfs = firmware::shared_protocol::<SimpleFileSystem>(handle)
        .map_err(|_| String::from("no FAT volume"))?;
    let mut root = sfs
        .open_volume()
        .map_err(|_| String::from("unreadable volume"))?;
    let mut read = |name: &CStr16, limit: u64| -> Result<Vec<u8>, String> {
        let file = root
            .open(name, FileMode::Read, FileAttribute::empty())
            .map_err(|_| format!("no file {name}"))?;
        let mut file = file.into_regular_file().ok_or("not a file")?;
        let path = "slot file";
        let size = fs::file_size(&mut file, path).map_err(|_| "unreadable size")?;
        if size > limit {
            return Err(format!("{name} is too large"));
        }
        let mut data = vec![0u8; usize::try_from(size).map_err(|_| "too large")?];
        fs::read_all(&mut file, &mut data, path).map_err(|_| "read failed")?;
        Ok(data)
    };
    let text = read(uefi::cstr16!("manifest"), manifest::MAX_LEN as u64)?;
    let m = Manifest::decode(&text, key).map_err(|e| format!("manifest: {e}"))?;
    for (payload, name) in [
        (m.payload("kernel"), uefi::cstr16!("kernel")),
        (m.payload("initramfs"), uefi::cstr16!("initramfs")),
    ] {
        let payload = payload.ok_or("manifest lacks a payload")?;
        let data = read(name, payload.size)?;
        payload.check(&data).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(Verified {
        version: m.version,
        rollback_index: m.rollback_index,
        boot_tries: m.boot_tries,
    })
}
