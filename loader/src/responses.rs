//! Answering the kernel's requests: every response goes into the [`Arena`] and its HHDM
//! address into the request's `response` field, written through the image's physical pages
//! (the kernel may have put its requests on read-only pages).
//!
//! Everything known before ExitBootServices is answered here; the Memory Map and EFI Memory
//! Map responses get their slots now and their contents from [`crate::memory`] afterwards.

use alloc::vec::Vec;

use bootcore::{
    proto::{self, Encode, Feature, req},
    requests::{Scan, write_u64},
};
use uefi::Guid;

use crate::{
    arena::{Arena, Slot},
    error::Error,
    firmware::Firmware,
    fs::LoadedFile,
    gop::Framebuffer,
    kernel::Kernel,
    modules::Module,
    mp,
};

/// Name reported in the Bootloader Info response.
pub const NAME: &str = "Evergreen loader";
/// Version reported in the Bootloader Info response.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Everything the responses are made of.
pub struct Context<'a> {
    /// HHDM offset.
    pub hhdm: u64,
    /// The raw kernel file.
    pub kernel_file: &'a LoadedFile,
    /// Its path on the boot volume.
    pub kernel_path: &'a str,
    /// The kernel command line.
    pub cmdline: &'a str,
    /// 1-based ESP partition number (0 if unknown).
    pub partition: u32,
    /// The ESP's GPT partition GUID.
    pub part_guid: Option<Guid>,
    /// Loaded modules, internal ones first.
    pub modules: &'a [Module],
    /// Firmware facts.
    pub firmware: &'a Firmware,
    /// The framebuffer.
    pub framebuffer: Option<&'a Framebuffer>,
    /// The MP plan, if the kernel asked for MP.
    pub mp: Option<&'a mp::Plan>,
}

/// Slots filled in after ExitBootServices.
#[derive(Default)]
pub struct Pending {
    /// The MP response, completed once the APs have been started.
    pub mp: Option<mp::Pending>,
    /// The Memory Map response, if requested.
    pub memmap: Option<Slot>,
    /// The EFI Memory Map response, if requested.
    pub efi_memmap: Option<Slot>,
}

/// Writes responses for the kernel and points its requests at them.
pub struct Responder<'a, 'f> {
    /// Where responses live.
    pub arena: Arena,
    kernel: &'a mut Kernel<'f>,
    scan: &'a Scan,
    answered: usize,
}

impl<'a, 'f> Responder<'a, 'f> {
    /// A responder for `kernel`'s requests found in `scan`.
    pub fn new(arena: Arena, kernel: &'a mut Kernel<'f>, scan: &'a Scan) -> Self {
        Self {
            arena,
            kernel,
            scan,
            answered: 0,
        }
    }

    /// Number of requests answered so far.
    pub fn answered(&self) -> usize {
        self.answered
    }

    /// Whether the kernel asked for `feature`.
    fn wants(&self, feature: Feature) -> bool {
        self.scan.find(feature).is_some()
    }

    /// Stores `response` and links it to the request for `feature` (if there is one).
    pub fn answer<T: Encode>(
        &mut self,
        feature: Feature,
        response: &T,
    ) -> Result<Option<Slot>, Error> {
        let Some(request) = self.scan.find(feature) else {
            return Ok(None);
        };
        let slot = self.arena.put(response)?;
        write_u64(
            self.kernel.image.bytes_mut(),
            request.field(req::RESPONSE),
            slot.virt,
        )?;
        self.answered += 1;
        Ok(Some(slot))
    }
}

/// Answers every request that can be answered before ExitBootServices.
pub fn answer_all(r: &mut Responder<'_, '_>, ctx: &Context<'_>) -> Result<Pending, Error> {
    let hhdm = ctx.hhdm;
    if r.wants(Feature::BootloaderInfo) {
        let name = r.arena.put_str(NAME)?;
        let version = r.arena.put_str(VERSION)?;
        r.answer(
            Feature::BootloaderInfo,
            &proto::BootloaderInfoResponse {
                revision: 0,
                name,
                version,
            },
        )?;
    }
    r.answer(
        Feature::FirmwareType,
        &proto::FirmwareTypeResponse {
            revision: 0,
            firmware_type: proto::FIRMWARE_TYPE_EFI64,
        },
    )?;
    r.answer(
        Feature::StackSize,
        &proto::StackSizeResponse { revision: 0 },
    )?;
    r.answer(
        Feature::Hhdm,
        &proto::HhdmResponse {
            revision: 0,
            offset: hhdm,
        },
    )?;
    r.answer(
        Feature::PagingMode,
        &proto::PagingModeResponse {
            revision: 0,
            mode: proto::PAGING_MODE_4LVL,
        },
    )?;
    r.answer(
        Feature::EntryPoint,
        &proto::EntryPointResponse { revision: 0 },
    )?;

    // The command line lives once: the Executable Cmdline response and the executable file's
    // string share it.
    let cmdline = r.arena.put_str(ctx.cmdline)?;
    r.answer(
        Feature::ExecutableCmdline,
        &proto::ExecutableCmdlineResponse {
            revision: 0,
            cmdline,
        },
    )?;
    if r.wants(Feature::ExecutableFile) {
        let file = file_struct(r, ctx, ctx.kernel_file, ctx.kernel_path, Some(cmdline), "")?;
        let file = r.arena.put(&file)?;
        r.answer(
            Feature::ExecutableFile,
            &proto::ExecutableFileResponse {
                revision: 0,
                executable_file: file.virt,
            },
        )?;
    }
    let (physical_base, virtual_base) = (r.kernel.phys_base, r.kernel.virt_base);
    r.answer(
        Feature::ExecutableAddress,
        &proto::ExecutableAddressResponse {
            revision: 0,
            physical_base,
            virtual_base,
        },
    )?;

    if r.wants(Feature::Module) && !ctx.modules.is_empty() {
        let mut pointers = Vec::with_capacity(ctx.modules.len());
        for module in ctx.modules {
            let file = file_struct(r, ctx, &module.file, &module.path, None, &module.string)?;
            pointers.push(r.arena.put(&file)?.virt);
        }
        let modules = r.arena.put_u64s(&pointers)?.virt;
        r.answer(
            Feature::Module,
            &proto::ModuleResponse {
                revision: 1,
                module_count: pointers.len() as u64,
                modules,
            },
        )?;
    }

    let fw = ctx.firmware;
    // Base revision 3: RSDP, SMBIOS and the EFI system table are physical addresses.
    if let Some(address) = fw.rsdp {
        r.answer(
            Feature::Rsdp,
            &proto::RsdpResponse {
                revision: 0,
                address,
            },
        )?;
    }
    if fw.smbios32.is_some() || fw.smbios64.is_some() {
        r.answer(
            Feature::Smbios,
            &proto::SmbiosResponse {
                revision: 0,
                entry_32: fw.smbios32.unwrap_or(0),
                entry_64: fw.smbios64.unwrap_or(0),
            },
        )?;
    }
    if let Some(address) = fw.system_table {
        r.answer(
            Feature::EfiSystemTable,
            &proto::EfiSystemTableResponse {
                revision: 0,
                address,
            },
        )?;
    }
    if let Some(timestamp) = fw.unix_time {
        r.answer(
            Feature::DateAtBoot,
            &proto::DateAtBootResponse {
                revision: 0,
                timestamp,
            },
        )?;
    }

    if let Some(fb) = ctx.framebuffer
        && r.wants(Feature::Framebuffer)
    {
        let response = framebuffer(r, fb, hhdm)?;
        r.answer(Feature::Framebuffer, &response)?;
    }

    let mp = match ctx.mp {
        Some(plan) => {
            let (response, mut pending) = mp::respond(plan, &mut r.arena, hhdm)?;
            pending.link(r.answer(Feature::Mp, &response)?);
            Some(pending)
        }
        None => None,
    };

    Ok(Pending {
        memmap: r.answer(Feature::MemoryMap, &proto::MemoryMapResponse::default())?,
        efi_memmap: r.answer(
            Feature::EfiMemoryMap,
            &proto::EfiMemoryMapResponse::default(),
        )?,
        mp,
    })
}

/// A `limine_file` for a file the loader read (its strings go into the arena).
fn file_struct(
    r: &mut Responder<'_, '_>,
    ctx: &Context<'_>,
    file: &LoadedFile,
    path: &str,
    string: Option<u64>,
    string_text: &str,
) -> Result<proto::File, Error> {
    let path = r.arena.put_str(path)?;
    let string = match string {
        Some(s) => s,
        None => r.arena.put_str(string_text)?,
    };
    Ok(proto::File {
        revision: 0,
        address: ctx.hhdm + file.region.base(),
        size: file.size,
        path,
        string,
        media_type: proto::MEDIA_TYPE_GENERIC,
        partition_index: ctx.partition,
        gpt_part_uuid: ctx.part_guid.map(uuid).unwrap_or_default(),
        ..proto::File::default()
    })
}

/// A GUID in `limine_uuid` form (the same mixed-endian layout as `EFI_GUID`).
fn uuid(guid: Guid) -> proto::Uuid {
    let b = guid.to_bytes();
    proto::Uuid {
        a: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        b: u16::from_le_bytes([b[4], b[5]]),
        c: u16::from_le_bytes([b[6], b[7]]),
        d: [b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]],
    }
}

/// The Framebuffer response with one framebuffer, its mode list and EDID.
fn framebuffer(
    r: &mut Responder<'_, '_>,
    fb: &Framebuffer,
    hhdm: u64,
) -> Result<proto::FramebufferResponse, Error> {
    let mut mode_pointers = Vec::with_capacity(fb.modes.len());
    for mode in &fb.modes {
        let m = mode.pixels.masks;
        let video = proto::VideoMode {
            pitch: mode.pitch,
            width: mode.width,
            height: mode.height,
            bpp: mode.pixels.bpp,
            memory_model: proto::FRAMEBUFFER_RGB,
            red_mask_size: m[0],
            red_mask_shift: m[1],
            green_mask_size: m[2],
            green_mask_shift: m[3],
            blue_mask_size: m[4],
            blue_mask_shift: m[5],
        };
        mode_pointers.push(r.arena.put(&video)?.virt);
    }
    let modes = r.arena.put_u64s(&mode_pointers)?.virt;
    let (edid_size, edid) = match &fb.edid {
        Some(bytes) => (bytes.len() as u64, r.arena.put_bytes(bytes, 8)?.virt),
        None => (0, 0),
    };
    let m = fb.mode.pixels.masks;
    let entry = proto::Framebuffer {
        address: hhdm + fb.base,
        width: fb.mode.width,
        height: fb.mode.height,
        pitch: fb.mode.pitch,
        bpp: fb.mode.pixels.bpp,
        memory_model: proto::FRAMEBUFFER_RGB,
        red_mask_size: m[0],
        red_mask_shift: m[1],
        green_mask_size: m[2],
        green_mask_shift: m[3],
        blue_mask_size: m[4],
        blue_mask_shift: m[5],
        unused: [0; 7],
        edid_size,
        edid,
        mode_count: mode_pointers.len() as u64,
        modes,
    };
    let entry = r.arena.put(&entry)?;
    let list = r.arena.put_u64s(&[entry.virt])?;
    Ok(proto::FramebufferResponse {
        revision: 1,
        framebuffer_count: 1,
        framebuffers: list.virt,
    })
}

/// Bytes the arena needs for this context (generous; unused space is merely reclaimable).
pub fn arena_size(ctx: &Context<'_>) -> u64 {
    let strings: usize = ctx
        .modules
        .iter()
        .map(|m| m.path.len() + m.string.len() + 2)
        .sum();
    let files = (ctx.modules.len() + 1) * (proto::File::SIZE + 16);
    let fb = ctx.framebuffer.map_or(0, |fb| {
        fb.modes.len() * (proto::VideoMode::SIZE + 16) + fb.edid.as_ref().map_or(0, Vec::len) + 256
    });
    let cpus = ctx
        .mp
        .map_or(0, |plan| plan.cpus.len() * (proto::MpInfo::SIZE + 8));
    (16 * 1024 + ctx.cmdline.len() + ctx.kernel_path.len() + strings + files + fb + cpus) as u64
}
