//! The boot sequence: everything is read, loaded, answered and allocated while boot
//! services run; after ExitBootServices only pure work on pre-allocated memory remains.

use alloc::{vec, vec::Vec};
use core::convert::Infallible;

use bootcore::{HHDM_BASE_4LVL, memmap};

use crate::{
    acpi,
    arena::Arena,
    conf,
    cpu::{self, CR4_LA57, Features},
    error::Error,
    firmware::Firmware,
    fs::BootVolume,
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
    if loaded.config.slots {
        slots::dry_run();
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
    let kernel_conf_path = limine
        .path
        .as_ref()
        .ok_or(Error::Internal("entry without path"))?;
    let kernel_path = conf::resolve(&volume, kernel_conf_path)?;

    // Kernel file and image. The raw file is handed to the kernel (Executable File feature)
    // but is not the loaded image; strict mode puts it in reclaimable memory, as real Limine
    // does ("All responses and associated data structures are placed in bootloader-reclaimable
    // memory regions").
    let file_kind = if strict::on() {
        Kind::Reclaimable
    } else {
        Kind::ExecutableAndModules
    };
    let kernel_file = volume
        .read_into_pages(&kernel_path, allocs, file_kind, "kernel file")?
        .ok_or_else(|| Error::FileNotFound {
            what: "kernel",
            path: conf::display(kernel_conf_path),
        })?;
    log::info!(
        "kernel {} ({} bytes)",
        conf::display(kernel_conf_path),
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
    let modules = modules::load(&mut volume, scan, &kernel, &kernel_path, limine, allocs)?;

    // Responses.
    let ctx = Context {
        hhdm,
        kernel_file: &kernel_file,
        kernel_path: &kernel_path,
        cmdline: &limine.cmdline,
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
