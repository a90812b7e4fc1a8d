//! A/B update slots: read the boot state, check both slots, write the decision, boot one.
//!
//! With `evergreen_slots: yes` in `limine.conf` the loader finds `EG_STATE`, `EG_SLOT_A` and
//! `EG_SLOT_B` by their GPT names (the firmware's PartitionInfo protocol), reads the state
//! record through DiskIo, opens each slot's FAT volume through the firmware's own FAT driver,
//! checks the manifest's signature with the key built into the loader and every payload's
//! SHA-256, and runs the slot choice of `libs/update`. The state that decision asks for (a trial's
//! tries decremented, a failed slot marked bad, a rollback) is written and flushed *before*
//! the chosen slot's kernel runs, so a crash or hang during the boot still counts; the steady
//! state (a normal boot of the good preferred slot) writes nothing. The kernel and initramfs
//! booted are the verified bytes, and the kernel learns its slot from `evergreen.slot=` and
//! friends on its command line. When no slot can boot the loader stops with an error.
//!
//! The key is built in: a release key's public half from `EVERGREEN_RELEASE_PUBKEY` at build
//! time, else the public TEST-ONLY development key (`runner/keys/dev-release-key.seed`). A
//! loader with a release key refuses test releases and says so.

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
    choice::{self, Decision, Verified},
    manifest::{self, Manifest, PublicKey},
    state::{self, BootKind, BootState, Current, Slot},
};

use crate::{cpu, error::Error, firmware, fs};

/// The release the loader boots: the chosen slot's verified kernel and initramfs.
pub struct SlotBoot {
    /// The decision of `libs/update` (slot, kind, version, tries left).
    pub decision: Decision,
    /// The kernel ELF, its SHA-256 checked against the signed manifest.
    pub kernel: Vec<u8>,
    /// The initramfs, its SHA-256 checked against the signed manifest.
    pub initramfs: Vec<u8>,
    /// The release's own command-line words (its signed `cmdline` payload; empty without).
    pub cmdline: String,
}

impl SlotBoot {
    /// What the kernel command line gets appended, so the kernel knows what it is without
    /// reading the disk: `evergreen.slot=B evergreen.version=2 evergreen.state=pending
    /// evergreen.tries=1`.
    pub fn cmdline_suffix(&self) -> String {
        let d = &self.decision;
        let state = match d.kind {
            BootKind::Trial => "pending",
            BootKind::Rollback => "rollback",
            BootKind::Recovered => "recovered",
            BootKind::Normal | BootKind::None => "good",
        };
        let mut out = format!(
            "evergreen.slot={} evergreen.version={} evergreen.state={state}",
            d.slot.name(),
            d.version
        );
        if let Some(tries) = d.tries_left {
            out.push_str(&format!(" evergreen.tries={tries}"));
        }
        if !self.cmdline.is_empty() {
            out.push(' ');
            out.push_str(&self.cmdline);
        }
        out
    }
}

/// Reads the state, verifies both slots, chooses one with `libs/update`, writes and flushes
/// the decision's state **before** anything of the slot runs, and returns the slot's files.
///
/// Both slots are verified (signature, then every payload's SHA-256) before the choice, so a
/// slot that fails verification is marked bad by the same decision that picks the other one,
/// and the files booted are exactly the bytes that were hashed (no second read).
pub fn select() -> Result<SlotBoot, Error> {
    let start = cpu::rdtsc();
    let key = release_key().ok_or_else(|| {
        slot_error("the built-in release key (EVERGREEN_RELEASE_PUBKEY) is malformed")
    })?;
    if key.is_test_only() {
        log::info!("slots: releases are checked with the TEST-ONLY development key");
    } else {
        log::info!("slots: releases are checked with a release key; test releases are refused");
    }
    let (state_handle, slot_handles) = find_partitions().map_err(slot_error)?;
    let area = read_area(state_handle).map_err(slot_error)?;
    let read = state::read_area(&area);
    match read.current {
        Some(c) => log::info!("slots: state copy {} (sequence {})", c.copy, c.seq),
        None => log::warn!("slots: both state copies are invalid; rebuilding from what verifies"),
    }
    let mut files: [Option<SlotFiles>; 2] = [None, None];
    let mut verified = [None, None];
    for slot in Slot::ALL {
        let i = slot.index();
        let Some(handle) = slot_handles[i] else {
            log::warn!("slots: slot {} has no partition", slot.name());
            continue;
        };
        match verify_slot(handle, &key) {
            Ok((v, slot_files)) => {
                log::info!("slots: slot {} v{} verifies", slot.name(), v.version);
                verified[i] = Some(v);
                files[i] = Some(slot_files);
            }
            Err(why) => log::info!("slots: slot {} does not verify: {why}", slot.name()),
        }
    }
    let current = read.current.map(|c| c.state);
    let ms = cpu::rdtsc().wrapping_sub(start) / (firmware::measure_tsc() / 1000).max(1);
    match choice::choose(current.as_ref(), verified) {
        Ok(decision) => {
            if let Some(next) = &decision.write {
                write_state(state_handle, read.current.as_ref(), next)?;
            }
            log::info!(
                "slots: booting slot {} (version {}, {:?}{}; checked in {ms} ms{})",
                decision.slot.name(),
                decision.version,
                decision.kind,
                decision
                    .tries_left
                    .map(|t| format!(", {t} tries left"))
                    .unwrap_or_default(),
                if decision.write.is_some() {
                    ", state written"
                } else {
                    ", state unchanged"
                }
            );
            let SlotFiles {
                kernel,
                initramfs,
                cmdline,
            } = files[decision.slot.index()]
                .take()
                .ok_or(Error::Internal("chosen slot without files"))?;
            if !cmdline.is_empty() {
                log::info!("slots: the release's command line: {cmdline}");
            }
            Ok(SlotBoot {
                decision,
                kernel,
                initramfs,
                cmdline,
            })
        }
        Err(none) => {
            // Slots that became bad are recorded even though nothing boots.
            if let Some(next) = &none.write {
                write_state(state_handle, read.current.as_ref(), next)?;
            }
            Err(Error::NoBootableSlot(format!("{none}")))
        }
    }
}

fn slot_error(why: impl Into<String>) -> Error {
    Error::Slots(why.into())
}

/// Writes `next` into the copy that does not hold `current`, then flushes the disk, so a torn
/// write leaves the previous state readable.
fn write_state(handle: Handle, current: Option<&Current>, next: &BootState) -> Result<(), Error> {
    let write = state::next_write(current, next);
    let mut block = firmware::shared_protocol::<BlockIO>(handle)
        .map_err(|e| slot_error(format!("EG_STATE: no block I/O ({:?})", e.status())))?;
    let media_id = block.media().media_id();
    let mut disk = firmware::shared_protocol::<DiskIo>(handle)
        .map_err(|e| slot_error(format!("EG_STATE: no disk I/O ({:?})", e.status())))?;
    disk.write_disk(media_id, write.offset as u64, &write.bytes)
        .map_err(|e| slot_error(format!("EG_STATE: write failed ({:?})", e.status())))?;
    block
        .flush_blocks()
        .map_err(|e| slot_error(format!("EG_STATE: flush failed ({:?})", e.status())))?;
    log::info!(
        "slots: state written to copy {} (sequence {})",
        write.copy,
        write.seq
    );
    Ok(())
}

/// The key releases must be signed with: the release key's public half when the loader was
/// built with `EVERGREEN_RELEASE_PUBKEY` (64 hex digits, as `release keygen` prints), else
/// the TEST-ONLY development key. `None` when the built-in text is malformed.
fn release_key() -> Option<PublicKey> {
    match option_env!("EVERGREEN_RELEASE_PUBKEY").filter(|t| !t.trim().is_empty()) {
        Some(text) => PublicKey::from_hex(text).ok(),
        None => PublicKey::from_bytes(&manifest::TEST_ONLY_KEY).ok(),
    }
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

/// A verified slot's files.
struct SlotFiles {
    kernel: Vec<u8>,
    initramfs: Vec<u8>,
    /// The release's command-line words (checked by `manifest::release_cmdline`).
    cmdline: String,
}

/// The slot's release and its files, if its manifest verifies with `key` and every payload
/// matches.
fn verify_slot(handle: Handle, key: &PublicKey) -> Result<(Verified, SlotFiles), String> {
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
    let m = Manifest::decode_release(&text, key).map_err(|e| format!("manifest: {e}"))?;
    let mut load = |what: &str, name: &CStr16| -> Result<Vec<u8>, String> {
        let payload = m
            .payload(what)
            .ok_or_else(|| format!("manifest lacks {what}"))?;
        let data = read(name, payload.size)?;
        payload.check(&data).map_err(|e| format!("{name}: {e}"))?;
        Ok(data)
    };
    let kernel = load("kernel", uefi::cstr16!("kernel"))?;
    let initramfs = load("initramfs", uefi::cstr16!("initramfs"))?;
    let cmdline = match m.payload(manifest::CMDLINE_PAYLOAD) {
        Some(_) => {
            let data = load(manifest::CMDLINE_PAYLOAD, uefi::cstr16!("cmdline"))?;
            manifest::release_cmdline(&data)
                .map_err(|e| format!("cmdline: {e}"))?
                .into()
        }
        None => String::new(),
    };
    let verified = Verified {
        version: m.version,
        rollback_index: m.rollback_index,
        boot_tries: m.boot_tries,
    };
    Ok((
        verified,
        SlotFiles {
            kernel,
            initramfs,
            cmdline,
        },
    ))
}
