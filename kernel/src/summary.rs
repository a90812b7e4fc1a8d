//! The boot summary: what the loader handed over, one line per fact.

use hal::boot::{Boot, MemoryType};

/// Logs what the loader gave the kernel.
pub fn log(boot: &Boot) {
    let r = &boot.responses();
    match r.bootloader_info {
        Some(info) => log::info!("loader: {} {}", info.name(), info.version()),
        None => log::warn!("loader: did not say who it is"),
    }
    if let Some(revision) = hal::boot::loaded_revision() {
        log::info!("protocol: Limine base revision {revision}");
    }
    match r.hhdm {
        Some(hhdm) => log::info!("hhdm: {:#x}", hhdm.offset()),
        None => log::warn!("hhdm: no response"),
    }
    match r.memory_map {
        Some(map) => {
            let total = |ty| {
                map.entries()
                    .iter()
                    .filter(|e| e.entry_type == ty)
                    .map(|e| e.length)
                    .sum::<u64>()
            };
            log::info!(
                "memory: {} MiB usable, {} MiB bootloader-reclaimable, {} map entries",
                total(MemoryType::USABLE) >> 20,
                total(MemoryType::BOOTLOADER_RECLAIMABLE) >> 20,
                map.entries().len()
            );
        }
        None => log::warn!("memory: no memory map"),
    }
    // Take the size first: logging needs the console lock itself.
    let console_size = crate::console::CONSOLE.lock().as_ref().map(|c| c.size());
    match console_size {
        Some((cols, rows)) => {
            log::info!(
                "framebuffer: {}, console {cols}x{rows}",
                FramebufferText(boot)
            );
        }
        None if r.framebuffer_answered => log::info!("framebuffer: present but not 32 bpp"),
        None => log::info!("framebuffer: none"),
    }
    match r.executable_address {
        Some(a) => log::info!(
            "kernel: physical base {:#x}, virtual base {:#x}",
            a.physical_base(),
            a.virtual_base()
        ),
        None => log::warn!("kernel: address not reported"),
    }
    log::info!("cmdline: \"{}\"", hal::boot::cmdline());
    let modules = boot.modules();
    log::info!("modules: {}", boot.modules().count());
    for module in modules {
        log::info!(
            "  module {} ({} bytes) \"{}\"",
            module.path,
            module.data.len(),
            module.string
        );
    }
    match r.rsdp {
        Some(rsdp) => log::info!("rsdp: {:#x}", rsdp.address()),
        None => log::info!("rsdp: none (no ACPI)"),
    }
    if let Some(mp) = r.mp {
        log::info!(
            "cpus: {} (bsp lapic id {})",
            mp.cpus().len(),
            mp.bsp_lapic_id()
        );
    }
    if let Some(date) = r.date_at_boot {
        log::info!("date at boot: {} s since 1970", date.timestamp().as_secs());
    }
}

/// Formats the framebuffer's geometry (the console owns the framebuffer itself).
struct FramebufferText<'a>(&'a Boot);

impl core::fmt::Display for FramebufferText<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0.framebuffer_info() {
            Some((w, h, bpp)) => write!(f, "{w}x{h}, {bpp} bpp"),
            None => write!(f, "unknown"),
        }
    }
}
