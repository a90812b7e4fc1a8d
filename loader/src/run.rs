//! The boot sequence: everything is read, loaded, answered and allocated while boot
//! services run; after ExitBootServices only pure work on pre-allocated memory remains.

use alloc::{string::String, vec, vec::Vec};
use core::convert::Infallible;

use bootcore::{HHDM_BASE_4LVL, memmap};

use crate::{
    acpi,
    arena::Arena,
    conf,
    cpu::{self, CR4_LA57, Features},
    error::Error,
    firmware::Firmware,
    fs::{BootVolume, LoadedFile},
    gop, kernel,
    launch::{self, Launch},
    mem::{Allocations, Kind, pages_for},
    memory, modules, mp, out,
    responses::{self, Context, Responder},
    slots, strict,
    tables::{self, Identity},
    wants,
};

/// The page-table pool (the PML4 is its first page) must sit below 4 GiB.
const POOL_LIMIT: u64 = 1 << 32;
/// The path the kernel is told for a slot's kernel (the Executable File response).
const SLOT_KERNEL_PATH: &str = "/kernel";
/// The path a slot's initramfs gets: the kernel unpacks the module ending in this name.
const SLOT_INITRAMFS_PATH: &str = "/boot/initramfs.cpio";

/// Boots the configured kernel; returns only on failure (before ExitBootServices).
pub fn run(allocs: &mut Allocations) -> Result<Infallible, Error> {
    let features = Features::detect();
    if cpu::cr4() & CR4_LA57 != 0 {
        return Err(Error::FirmwareLa57);
    }
    let mut volume = BootVolume::open()?;

    // Config and entry.
    let loaded = conf::load(&mut volume)?;
    let config_path = loaded.path;
    out::set_verbose(loaded.config.verbose);
    if loaded.config.strict {
        strict::enable();
    }
    let (entry, limine) = loaded
        .config
        .entry_to_boot()
        .map_err(|error| Error::Config {
            path: config_path,
            error,
        })?;
    log::info!("config {config_path}, entry '{}'", entry.title);
    conf::countdown(loaded.config.timeout, &entry.title);
    // With update slots the kernel and initramfs come from the chosen slot (after its state
    // was written); the entry still gives the protocol options and the command line.
    let slot_boot = if loaded.config.slots {
        let boot = slots::select()?;
        // From here a hang counts: it ends in a reset, and the next boot counts the try.
        crate::watchdog::arm();
        Some(boot)
    } else {
        None
    };
    let kernel_conf_path = limine
        .path
        .as_ref()
        .ok_or(Error::Internal("entry without path"))?;
    let kernel_path = match &slot_boot {
        Some(_) => String::from(SLOT_KERNEL_PATH),
        None => conf::resolve(&volume, kernel_conf_path)?,
    };
    let cmdline = match &slot_boot {
        Some(boot) => with_slot_options(&limine.cmdline, &boot.cmdline_suffix()),
        None => limine.cmdline.clone(),
    };

    // Kernel file and image. The raw file is handed to the kernel (Executable File feature)
    // but is not the loaded image; strict mode puts it in reclaimable memory, as real Limine
    // does ("All responses and associated data structures are placed in bootloader-reclaimable
    // memory regions").
    let file_kind = if strict::on() {
        Kind::Reclaimable
    } else {
        Kind::ExecutableAndModules
    };
    let kernel_file = match &slot_boot {
        Some(boot) => LoadedFile::copy_of(&boot.kernel, allocs, file_kind, "kernel file")?,
        None => volume
            .read_into_pages(&kernel_path, allocs, file_kind, "kernel file")?
            .ok_or_else(|| Error::FileNotFound {
                what: "kernel",
                path: conf::display(kernel_conf_path),
            })?,
    };
    log::info!(
        "kernel {} ({} bytes)",
        match &slot_boot {
            Some(_) => String::from(SLOT_KERNEL_PATH),
            None => conf::display(kernel_conf_path),
        },
        kernel_file.size
    );
    let file_bytes = &kernel_file.region.bytes()[..kernel_file.size as usize];
    let mut kernel = kernel::load(file_bytes, &kernel_path, limine.kaslr, &features, allocs)?;
    log::info!(
        "kernel image {:#x} -> phys {:#x} ({} KiB, slide {:#x})",
        kernel.virt_base,
        kernel.phys_base,
        kernel.size / 1024,
        kernel.slide
    );

    // Requests and base revision.
    let wants = wants::read(&mut kernel, &kernel_path)?;
    let (scan, revision, entry_point) = (&wants.scan, wants.revision, wants.entry);

    // HHDM base, randomised in 1 GiB steps within 32 TiB if configured.
    let hhdm = if strict::on() {
        strict::HHDM_BASE
    } else if limine.randomise_hhdm() {
        HHDM_BASE_4LVL + (kernel::random_u64(&features) % (32 * 1024)) * (1 << 30)
    } else {
        HHDM_BASE_4LVL
    };

    // Firmware facts.
    let firmware = Firmware::gather();
    let madt = firmware.rsdp.and_then(acpi::madt);
    match &madt {
        Some(madt) => acpi::log_madt(madt),
        None => log::warn!("no usable ACPI MADT; I/O APICs stay as the firmware left them"),
    }
    let resolution = limine.resolution.map(|r| {
        (
            u64::from(r.width),
            u64::from(r.height),
            r.bpp.map(|b| b as u16),
        )
    });
    let framebuffer = gop::framebuffer(resolution);
    if let Some(fb) = &framebuffer {
        log::info!(
            "framebuffer {}x{} {} bpp at {:#x}",
            fb.mode.width,
            fb.mode.height,
            fb.mode.pixels.bpp,
            fb.base
        );
    }
    let mp_plan = wants
        .mp_flags
        .map(|flags| {
            mp::plan(
                &features,
                madt.as_ref(),
                flags,
                wants.stack_size,
                firmware.tsc_hz,
                allocs,
            )
        })
        .transpose()?;

    // Modules.
    let modules = match &slot_boot {
        Some(boot) => slot_modules(
            &mut volume,
            scan,
            &kernel,
            &kernel_path,
            limine,
            boot,
            allocs,
        )?,
        None => modules::load(&mut volume, scan, &kernel, &kernel_path, limine, allocs)?,
    };

    // Responses.
    let ctx = Context {
        hhdm,
        kernel_file: &kernel_file,
        kernel_path: &kernel_path,
        cmdline: &cmdline,
        partition: volume.partition,
        part_guid: volume.part_guid,
        modules: &modules,
        firmware: &firmware,
        framebuffer: framebuffer.as_ref(),
        mp: mp_plan.as_ref(),
    };
    let arena_region = allocs.pages(
        pages_for(responses::arena_size(&ctx)),
        Kind::Reclaimable,
        "responses",
    )?;
    let mut responder = Responder::new(Arena::new(arena_region, hhdm), &mut kernel, scan);
    let pending = responses::answer_all(&mut responder, &ctx)?;
    log::info!("{} requests answered", responder.answered());
    let response_arena = responder.arena;

    // Stack, hand-off page, page-table pool, memory-map buffers.
    let stack = allocs.pages(pages_for(wants.stack_size), Kind::Reclaimable, "stack")?;
    let handoff_page = allocs.pages(1, Kind::Reclaimable, "GDT and hand-off page")?;
    let mut identity = vec![
        Identity {
            base: volume.image.0,
            len: volume.image.1,
        },
        Identity {
            base: stack.base(),
            len: stack.len(),
        },
        Identity {
            base: handoff_page.base(),
            len: handoff_page.len(),
        },
    ];
    // APs run the trampoline at its physical address on the final tables.
    identity.extend(mp_plan.as_ref().and_then(mp::Plan::identity));
    let efi_now = memory::current_efi_map()?;
    // The pool is sized from today's map; the final one differs only by a few entries.
    let efi_regions: Vec<_> = memory::regions(&efi_now).collect();
    let entries_now = memmap::convert(
        &efi_regions,
        &memory::overlays(allocs, framebuffer.as_ref()),
    )
    .map_err(|_| Error::Internal("memory map estimate"))?;
    let pool_pages = tables::pool_pages(&kernel, &entries_now, revision, hhdm, &identity);
    let pool = allocs.pages_below(POOL_LIMIT, pool_pages, Kind::Reclaimable, "page tables")?;
    let memmaps = memory::prepare(allocs, hhdm, &efi_now, allocs.regions().len() + 8)?;
    drop(efi_now);
    let overlays = memory::overlays(allocs, framebuffer.as_ref());
    let launch = Launch {
        features,
        revision,
        hhdm,
        kernel: &kernel,
        entry: entry_point,
        memmaps,
        overlays,
        responses: response_arena,
        pending,
        pool,
        identity,
        stack,
        handoff_page,
        mp: mp_plan,
        io_apics: madt.map(|m| m.io_apics).unwrap_or_default(),
    };
    log::info!("entering kernel at {entry_point:#x}");
    launch::exit_and_enter(launch)
}

/// The modules of a slot boot: the slot's initramfs in place of the ESP's, then the entry's
/// other modules from the ESP (extra files a developer added with `--module`).
fn slot_modules(
    volume: &mut BootVolume,
    scan: &bootcore::requests::Scan,
    kernel: &kernel::Kernel,
    kernel_path: &str,
    limine: &bootcore::config::LimineEntry,
    boot: &slots::SlotBoot,
    allocs: &mut Allocations,
) -> Result<Vec<modules::Module>, Error> {
    if scan.find(bootcore::proto::Feature::Module).is_none() {
        return Ok(Vec::new());
    }
    let is_initramfs = |m: &bootcore::config::Module| m.path.path.ends_with("/initramfs.cpio");
    let string = limine
        .modules
        .iter()
        .find(|m| is_initramfs(m))
        .map_or_else(|| String::from("initramfs.cpio"), |m| m.string.clone());
    let mut others = limine.clone();
    others.modules.retain(|m| !is_initramfs(m));
    let file = LoadedFile::copy_of(
        &boot.initramfs,
        allocs,
        Kind::ExecutableAndModules,
        "module",
    )?;
    log::info!(
        "module {SLOT_INITRAMFS_PATH} ({} bytes, slot {})",
        file.size,
        boot.decision.slot.name()
    );
    let mut out = vec![modules::Module {
        file,
        path: String::from(SLOT_INITRAMFS_PATH),
        string,
    }];
    out.extend(modules::load(
        volume,
        scan,
        kernel,
        kernel_path,
        &others,
        allocs,
    )?);
    Ok(out)
}

/// `cmdline` with the slot options added to the kernel's part: before a ` -- `, whose words
/// belong to the init program.
fn with_slot_options(cmdline: &str, options: &str) -> String {
    let (kernel, init) = match cmdline.split_once(" -- ") {
        Some((kernel, init)) => (kernel, Some(init)),
        None => (cmdline, None),
    };
    let mut out = String::from(kernel.trim_end());
    if !out.is_empty() {
        out.push(' ');
    }
    out.push_str(options);
    if let Some(init) = init {
        out.push_str(" -- ");
        out.push_str(init);
    }
    out
}
