//! The loader conformance probe (`test=conformance`): checks every Limine response and the
//! machine state at entry against the protocol (base revision 3), one named check at a time.
//!
//! The same kernel runs it under our loader and under real Limine, so it only checks what the
//! protocol promises.
#![expect(
    clippy::result_large_err,
    reason = "no heap yet: a failure's reason is formatted into a fixed buffer; checks run once"
)]

use core::fmt::Write;

use hal::{
    boot::{Boot, MemoryMapEntry, MemoryType, Responses},
    paging::ActiveTables,
};

use crate::logger::LineBuf;

/// Why a check failed.
struct Failure(LineBuf);

type CheckResult = Result<(), Failure>;

/// A named check.
type Check<'a> = (&'static str, fn(&Probe<'a>) -> CheckResult);

/// Fails the current check with a formatted reason unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            let mut why = LineBuf::new();
            let _ = write!(why, $($fmt)+);
            return Err(Failure(why));
        }
    };
}

/// Everything the checks look at.
struct Probe<'a> {
    /// How many CPUs the machine has (`cpus=N` on the command line), if the runner said.
    expect_cpus: Option<usize>,
    boot: &'a Boot,
    r: Responses<'a>,
    hhdm: u64,
    entries: &'a [&'a MemoryMapEntry],
    tables: ActiveTables,
}

const PAGE: u64 = 4096;
const HHDM_TYPES: [MemoryType; 4] = [
    MemoryType::USABLE,
    MemoryType::BOOTLOADER_RECLAIMABLE,
    MemoryType::EXECUTABLE_AND_MODULES,
    MemoryType::FRAMEBUFFER,
];
/// The PAT value the protocol specifies (WB, WT, UC-, UC, WP, WC, …).
const PROTOCOL_PAT: u64 = 0x0000_0105_0007_0406;

/// Runs every check; returns whether all passed. `expect_cpus` is the number of CPUs the
/// machine has, if known: the MP response must list exactly that many.
pub fn run(boot: &Boot, expect_cpus: Option<usize>) -> bool {
    let r = boot.responses();
    let (Some(hhdm), Some(map)) = (r.hhdm, r.memory_map) else {
        log::error!("conformance: no HHDM or memory map response; nothing can be checked");
        return false;
    };
    let probe = Probe {
        expect_cpus,
        boot,
        r,
        hhdm: hhdm.offset(),
        entries: map.entries(),
        tables: ActiveTables::current(),
    };
    let checks: &[Check<'_>] = &[
        ("base-revision", Probe::base_revision),
        ("entry-registers", Probe::entry_registers),
        ("entry-point-request", Probe::entry_point_request),
        ("stack", Probe::stack),
        ("gdt-selectors", Probe::gdt_selectors),
        ("control-registers", Probe::control_registers),
        ("pat", Probe::pat),
        ("pic-masked", Probe::pic_masked),
        ("lower-half-unmapped", Probe::lower_half_unmapped),
        ("bootloader-info", Probe::bootloader_info),
        ("firmware-type", Probe::firmware_type),
        ("paging-mode", Probe::paging_mode),
        ("memmap-sorted", Probe::memmap_sorted),
        ("memmap-aligned", Probe::memmap_aligned),
        ("memmap-non-overlapping", Probe::memmap_non_overlapping),
        ("memmap-types", Probe::memmap_types),
        ("responses-reclaimable", Probe::responses_reclaimable),
        ("hhdm-maps-allowed-memory", Probe::hhdm_maps_allowed),
        ("hhdm-maps-nothing-else", Probe::hhdm_maps_nothing_else),
        ("kernel-mapping", Probe::kernel_mapping),
        ("kernel-permissions", Probe::kernel_permissions),
        ("framebuffer", Probe::framebuffer),
        ("executable-file", Probe::executable_file),
        ("modules", Probe::modules),
        ("mp", Probe::mp),
        ("firmware-tables", Probe::firmware_tables),
        ("efi-memory-map", Probe::efi_memory_map),
        ("date-at-boot", Probe::date_at_boot),
    ];
    let mut failed = 0;
    for (name, check) in checks {
        match check(&probe) {
            Ok(()) => log::info!("check {name} ... ok"),
            Err(Failure(why)) => {
                failed += 1;
                log::error!("check {name} ... FAILED: {}", why.as_str());
            }
        }
    }
    log::info!(
        "conformance: {} passed, {failed} failed",
        checks.len() - failed
    );
    failed == 0
}

impl Probe<'_> {
    /// The memory-map type of the entry containing physical address `phys`.
    fn type_at(&self, phys: u64) -> Option<MemoryType> {
        self.entries
            .iter()
            .find(|e| e.base <= phys && phys - e.base < e.length)
            .map(|e| e.entry_type)
    }

    /// Whether `[phys, phys + len)` lies inside one entry of type `ty`.
    /// Whether `phys..phys + len` lies in memory of type `ty`, possibly across several
    /// adjacent entries (the protocol never promises that neighbours of one type are merged).
    fn inside(&self, phys: u64, len: u64, ty: MemoryType) -> bool {
        let end = phys.saturating_add(len);
        let mut at = phys;
        loop {
            let Some(e) = self
                .entries
                .iter()
                .find(|e| e.entry_type == ty && e.base <= at && at < e.base + e.length)
            else {
                return false;
            };
            at = e.base + e.length;
            if at >= end {
                return true;
            }
        }
    }

    /// The physical address of an HHDM pointer.
    fn phys_of<T: ?Sized>(&self, pointer: &T) -> u64 {
        (pointer as *const T as *const u8 as u64).wrapping_sub(self.hhdm)
    }

    fn base_revision(&self) -> CheckResult {
        ensure!(
            hal::boot::base_revision_supported(),
            "revision 3 reported unsupported"
        );
        let loaded = hal::boot::loaded_revision();
        ensure!(
            loaded == Some(3),
            "loader reports revision {loaded:?}, expected Some(3)"
        );
        Ok(())
    }

    fn entry_registers(&self) -> CheckResult {
        let entry = hal::entry::entry_state();
        ensure!(
            entry.gpr_or == 0,
            "general-purpose registers not zero (OR = {:#x})",
            entry.gpr_or
        );
        ensure!(
            entry.rflags & (1 << 9) == 0,
            "IF set at entry (rflags {:#x})",
            entry.rflags
        );
        ensure!(
            entry.rflags & (1 << 10) == 0,
            "DF set at entry (rflags {:#x})",
            entry.rflags
        );
        ensure!(!hal::cpu::interrupts_enabled(), "interrupts enabled");
        Ok(())
    }

    fn entry_point_request(&self) -> CheckResult {
        let entry = hal::entry::entry_state();
        ensure!(self.r.entry_point_answered, "no entry point response");
        ensure!(
            entry.path == Some(hal::entry::EntryPath::EntryPointRequest),
            "entered through {:?}, not the requested entry point {:#x}",
            entry.path,
            hal::boot::requested_entry_point()
        );
        Ok(())
    }

    fn stack(&self) -> CheckResult {
        let entry = hal::entry::entry_state();
        ensure!(self.r.stack_size.is_some(), "no stack size response");
        ensure!(
            entry.rsp % 16 == 8,
            "rsp {:#x} at entry is not 8 mod 16",
            entry.rsp
        );
        ensure!(
            entry.return_address == 0,
            "return address {:#x}, not 0",
            entry.return_address
        );
        ensure!(
            entry.rsp >= self.hhdm,
            "rsp {:#x} is not an HHDM address",
            entry.rsp
        );
        let size = hal::boot::REQUESTED_STACK_SIZE;
        let top = entry.rsp + 8;
        let mut page = top - size;
        while page < top {
            let Some(m) = self.tables.translate(page) else {
                ensure!(
                    false,
                    "stack page {page:#x} not mapped ({size} bytes requested)"
                );
                return Ok(());
            };
            ensure!(m.writable, "stack page {page:#x} not writable");
            let phys = m.phys + (page - m.virt);
            let ty = self.type_at(phys);
            ensure!(
                ty == Some(MemoryType::BOOTLOADER_RECLAIMABLE),
                "stack page {page:#x} (phys {phys:#x}) is {:?}, not bootloader-reclaimable",
                ty.map(type_name)
            );
            page += PAGE;
        }
        Ok(())
    }

    fn gdt_selectors(&self) -> CheckResult {
        let cpu = hal::cpu::control_state();
        let [cs, ds, es, fs, gs, ss] = cpu.selectors;
        ensure!(cs == 0x28, "CS = {cs:#x}, expected 0x28");
        for (name, sel) in [("DS", ds), ("ES", es), ("FS", fs), ("GS", gs), ("SS", ss)] {
            ensure!(sel == 0x30, "{name} = {sel:#x}, expected 0x30");
        }
        // hal points the GS base at its per-CPU block first thing: the loader's is recorded.
        let gs_base = hal::entry::entry_state().gs_base;
        ensure!(
            cpu.fs_base == 0 && gs_base == 0,
            "FS/GS base not 0 (FS {:#x}, GS at entry {gs_base:#x})",
            cpu.fs_base
        );
        ensure!(
            cpu.gdtr.0 >= self.hhdm,
            "GDTR base {:#x} is not an HHDM address",
            cpu.gdtr.0
        );
        let expected: [(u16, u64); 7] = [
            (0x00, 0),
            (0x08, 0x0000_9b00_0000_ffff),
            (0x10, 0x0000_9300_0000_ffff),
            (0x18, 0x00cf_9b00_0000_ffff),
            (0x20, 0x00cf_9300_0000_ffff),
            (0x28, 0x0020_9b00_0000_0000),
            (0x30, 0x0000_9300_0000_0000),
        ];
        // The CPU may set the accessed bit (bit 40) when it loads a selector.
        const ACCESSED: u64 = 1 << 40;
        for (sel, want) in expected {
            let got = hal::cpu::gdt_descriptor(sel);
            ensure!(
                got.map(|d| d | ACCESSED) == Some(want | ACCESSED),
                "GDT[{sel:#x}] = {got:#x?}, expected {want:#x}"
            );
        }
        Ok(())
    }

    fn control_registers(&self) -> CheckResult {
        let cpu = hal::cpu::control_state();
        let features = hal::cpu::Features::read();
        for (bit, name) in [(0, "PE"), (16, "WP"), (31, "PG")] {
            ensure!(
                cpu.cr0 & (1 << bit) != 0,
                "CR0.{name} clear (CR0 = {:#x})",
                cpu.cr0
            );
        }
        ensure!(
            cpu.cr4 & (1 << 5) != 0,
            "CR4.PAE clear (CR4 = {:#x})",
            cpu.cr4
        );
        ensure!(cpu.cr4 & (1 << 12) == 0, "CR4.LA57 set in 4-level mode");
        ensure!(
            cpu.efer & (1 << 8) != 0,
            "EFER.LME clear (EFER = {:#x})",
            cpu.efer
        );
        ensure!(
            cpu.efer & (1 << 10) != 0,
            "EFER.LMA clear (EFER = {:#x})",
            cpu.efer
        );
        ensure!(
            !features.nx || cpu.efer & (1 << 11) != 0,
            "CPU has NX but EFER.NXE clear"
        );
        Ok(())
    }

    fn pat(&self) -> CheckResult {
        let cpu = hal::cpu::control_state();
        if let Some(pat) = cpu.pat {
            // PA6 and PA7 are unspecified.
            let mask = 0x0000_ffff_ffff_ffff;
            ensure!(
                pat & mask == PROTOCOL_PAT & mask,
                "PAT = {pat:#018x}, expected {PROTOCOL_PAT:#018x}"
            );
        }
        Ok(())
    }

    fn pic_masked(&self) -> CheckResult {
        let (primary, secondary) = hal::pic::masks();
        ensure!(
            primary == 0xff && secondary == 0xff,
            "PIC masks {primary:#x}/{secondary:#x}"
        );
        Ok(())
    }

    fn lower_half_unmapped(&self) -> CheckResult {
        ensure!(
            !self.tables.lower_half_mapped(),
            "lower-half PML4 entries are present"
        );
        Ok(())
    }

    fn bootloader_info(&self) -> CheckResult {
        let info = self.r.bootloader_info;
        ensure!(info.is_some(), "no bootloader info response");
        let info = info.expect("checked above");
        ensure!(
            !info.name().is_empty() && !info.version().is_empty(),
            "empty name or version"
        );
        Ok(())
    }

    fn firmware_type(&self) -> CheckResult {
        let ty = self.r.firmware_type.map(|f| f.firmware_type());
        ensure!(
            ty == Some(limine::firmware_type::FirmwareType::UEFI_64),
            "firmware type is not UEFI 64-bit"
        );
        Ok(())
    }

    fn paging_mode(&self) -> CheckResult {
        let mode = self.r.paging_mode.map(|m| m.mode());
        ensure!(
            mode == Some(limine::paging::Mode::FOUR_LEVEL),
            "paging mode is not 4-level"
        );
        Ok(())
    }

    fn memmap_sorted(&self) -> CheckResult {
        ensure!(!self.entries.is_empty(), "memory map is empty");
        for pair in self.entries.windows(2) {
            ensure!(
                pair[0].base < pair[1].base,
                "entries at {:#x} and {:#x} out of order",
                pair[0].base,
                pair[1].base
            );
        }
        Ok(())
    }

    fn memmap_aligned(&self) -> CheckResult {
        for e in self
            .entries
            .iter()
            .filter(|e| is_page_granular(e.entry_type))
        {
            ensure!(
                e.base % PAGE == 0 && e.length % PAGE == 0,
                "{} entry {:#x}+{:#x} not 4 KiB aligned",
                type_name(e.entry_type),
                e.base,
                e.length
            );
            ensure!(
                e.length > 0,
                "empty {} entry at {:#x}",
                type_name(e.entry_type),
                e.base
            );
        }
        Ok(())
    }

    fn memmap_non_overlapping(&self) -> CheckResult {
        for (i, a) in self.entries.iter().enumerate() {
            for b in &self.entries[i + 1..] {
                let overlap = a.base < b.base + b.length && b.base < a.base + a.length;
                let strict = is_page_granular(a.entry_type) || is_page_granular(b.entry_type);
                ensure!(
                    !(overlap && strict),
                    "{:#x}+{:#x} overlaps {:#x}+{:#x}",
                    a.base,
                    a.length,
                    b.base,
                    b.length
                );
            }
        }
        Ok(())
    }

    fn memmap_types(&self) -> CheckResult {
        // Revision 3 knows types 0..=7 (RESERVED_MAPPED arrives with revision 4).
        let known = [
            MemoryType::USABLE,
            MemoryType::RESERVED,
            MemoryType::ACPI_RECLAIMABLE,
            MemoryType::ACPI_NVS,
            MemoryType::BAD_MEMORY,
            MemoryType::BOOTLOADER_RECLAIMABLE,
            MemoryType::EXECUTABLE_AND_MODULES,
            MemoryType::FRAMEBUFFER,
        ];
        for e in self.entries {
            ensure!(
                known.contains(&e.entry_type),
                "entry {:#x} has unknown type",
                e.base
            );
        }
        let usable: u64 = self
            .entries
            .iter()
            .filter(|e| e.entry_type == MemoryType::USABLE)
            .map(|e| e.length)
            .sum();
        ensure!(usable >= 16 << 20, "only {usable} bytes usable");
        let Some(address) = self.r.executable_address else {
            ensure!(false, "no executable address response");
            return Ok(());
        };
        let size = hal::image::layout().image;
        let len = size.end - size.start;
        ensure!(
            self.inside(
                address.physical_base(),
                len,
                MemoryType::EXECUTABLE_AND_MODULES
            ),
            "kernel image at {:#x} not inside EXECUTABLE_AND_MODULES",
            address.physical_base()
        );
        Ok(())
    }

    fn responses_reclaimable(&self) -> CheckResult {
        let mut addresses = [0u64; 8];
        let r = &self.r;
        let list = [
            r.bootloader_info.map(|x| self.phys_of(x)),
            r.hhdm.map(|x| self.phys_of(x)),
            r.memory_map.map(|x| self.phys_of(x)),
            self.entries.first().map(|e| self.phys_of(*e)),
            Some(self.phys_of(self.entries)),
            r.mp.map(|x| self.phys_of(x)),
            r.executable_cmdline.map(|x| self.phys_of(x)),
            Some(hal::cpu::control_state().gdtr.0.wrapping_sub(self.hhdm)),
        ];
        for (slot, value) in addresses.iter_mut().zip(list) {
            *slot = value.unwrap_or(u64::MAX);
        }
        for phys in addresses.into_iter().filter(|&a| a != u64::MAX) {
            let ty = self.type_at(phys);
            ensure!(
                ty == Some(MemoryType::BOOTLOADER_RECLAIMABLE),
                "loader data at phys {phys:#x} is {:?}",
                ty.map(type_name)
            );
        }
        Ok(())
    }

    fn hhdm_maps_allowed(&self) -> CheckResult {
        for e in self
            .entries
            .iter()
            .filter(|e| HHDM_TYPES.contains(&e.entry_type))
        {
            let mut phys = e.base & !(PAGE - 1);
            let end = e.base + e.length;
            while phys < end {
                let virt = self.hhdm + phys;
                let Some(m) = self.tables.translate(virt) else {
                    ensure!(
                        false,
                        "{} memory at {phys:#x} not in the HHDM",
                        type_name(e.entry_type)
                    );
                    return Ok(());
                };
                let mapped_to = m.phys + (virt - m.virt);
                ensure!(
                    mapped_to == phys,
                    "HHDM {virt:#x} maps {mapped_to:#x}, expected {phys:#x}"
                );
                ensure!(
                    m.writable && !m.user,
                    "HHDM page {virt:#x} not supervisor-writable"
                );
                phys = m.virt + m.size.bytes() - self.hhdm;
            }
        }
        Ok(())
    }

    fn hhdm_maps_nothing_else(&self) -> CheckResult {
        let mut bad: Option<(u64, u64)> = None;
        let mut inconsistent = None;
        // The HHDM window: the lower part of the higher half, below the kernel's 2 GiB.
        self.tables
            .for_each_mapping(self.hhdm, 0xffff_ffff_8000_0000, |m| {
                if m.phys != m.virt - self.hhdm {
                    inconsistent.get_or_insert((m.virt, m.phys));
                    return;
                }
                if !self.covered(m.phys, m.size.bytes()) {
                    bad.get_or_insert((m.phys, m.size.bytes()));
                }
            });
        ensure!(
            inconsistent.is_none(),
            "HHDM page {inconsistent:#x?} is not at the HHDM offset"
        );
        if let Some((phys, size)) = bad {
            ensure!(
                false,
                "HHDM maps {phys:#x}+{size:#x}, which is not usable, reclaimable, executable or framebuffer memory ({:?})",
                self.type_at(phys).map(type_name)
            );
        }
        Ok(())
    }

    /// Whether every 4 KiB page of `[phys, phys + size)` touches an HHDM-allowed entry.
    fn covered(&self, phys: u64, size: u64) -> bool {
        let mut page = phys;
        while page < phys + size {
            let hit = self.entries.iter().find(|e| {
                HHDM_TYPES.contains(&e.entry_type)
                    && e.base < page + PAGE
                    && page < e.base + e.length
            });
            match hit {
                // Skip to the end of this entry (rounded up to a page).
                Some(e) => page = (e.base + e.length).div_ceil(PAGE) * PAGE,
                None => return false,
            }
        }
        true
    }

    fn kernel_mapping(&self) -> CheckResult {
        let Some(address) = self.r.executable_address else {
            ensure!(false, "no executable address response");
            return Ok(());
        };
        let layout = hal::image::layout();
        ensure!(
            address.virtual_base() == layout.image.start,
            "virtual base {:#x}, linked at {:#x}",
            address.virtual_base(),
            layout.image.start
        );
        let mut virt = layout.image.start;
        while virt < layout.image.end {
            let m = self.tables.translate(virt);
            ensure!(m.is_some(), "kernel page {virt:#x} not mapped");
            let m = m.expect("checked above");
            let phys = m.phys + (virt - m.virt);
            let want = address.physical_base() + (virt - layout.image.start);
            ensure!(
                phys == want,
                "kernel page {virt:#x} maps {phys:#x}, expected {want:#x}"
            );
            ensure!(
                m.pat_index == 0,
                "kernel page {virt:#x} is not write-back (PAT {})",
                m.pat_index
            );
            virt += PAGE;
        }
        Ok(())
    }

    fn kernel_permissions(&self) -> CheckResult {
        let layout = hal::image::layout();
        let nx = hal::cpu::Features::read().nx;
        let sections = [
            ("text", layout.text, false, true),
            ("rodata", layout.rodata, false, false),
            ("data", layout.data, true, false),
        ];
        for (name, range, writable, executable) in sections {
            let mut virt = range.start & !(PAGE - 1);
            while virt < range.end {
                let m = self
                    .tables
                    .translate(virt)
                    .expect("kernel-mapping checked every page");
                ensure!(
                    m.writable == writable,
                    ".{name} page {virt:#x} writable = {}",
                    m.writable
                );
                ensure!(
                    !nx || m.executable == executable,
                    ".{name} page {virt:#x} executable = {}",
                    m.executable
                );
                ensure!(!m.user, ".{name} page {virt:#x} is user-accessible");
                virt += PAGE;
            }
        }
        Ok(())
    }

    fn framebuffer(&self) -> CheckResult {
        ensure!(self.r.framebuffer_answered, "no framebuffer response");
        let Some(address) = self.boot.framebuffer_address() else {
            ensure!(false, "framebuffer response lists no framebuffer");
            return Ok(());
        };
        let m = self.tables.translate(address);
        ensure!(m.is_some(), "framebuffer {address:#x} not mapped");
        let m = m.expect("checked above");
        ensure!(m.writable, "framebuffer not writable");
        let phys = m.phys + (address - m.virt);
        ensure!(
            self.type_at(phys) == Some(MemoryType::FRAMEBUFFER),
            "framebuffer phys {phys:#x} not a FRAMEBUFFER entry"
        );
        if hal::cpu::Features::read().pat {
            ensure!(
                m.pat_index == 5,
                "framebuffer uses PAT index {}, expected 5 (WC)",
                m.pat_index
            );
        }
        let wrote = crate::console::CONSOLE
            .lock()
            .as_mut()
            .map(|c| c.pixel_round_trip());
        ensure!(
            wrote == Some(true),
            "writing a pixel and reading it back failed ({wrote:?})"
        );
        Ok(())
    }

    fn executable_file(&self) -> CheckResult {
        let file = self.boot.executable_file();
        ensure!(file.is_some(), "no executable file response");
        let file = file.expect("checked above");
        ensure!(
            file.data.starts_with(b"\x7fELF"),
            "executable file is not an ELF"
        );
        ensure!(
            file.address.is_multiple_of(PAGE),
            "executable file at {:#x} not page aligned",
            file.address
        );
        ensure!(
            file.path.ends_with("kernel"),
            "executable path '{}'",
            file.path
        );
        ensure!(
            file.string == hal::boot::cmdline(),
            "file string '{}' differs from cmdline '{}'",
            file.string,
            hal::boot::cmdline()
        );
        // The protocol places responses "and associated data structures" in bootloader-
        // reclaimable memory and the loaded kernel in EXECUTABLE_AND_MODULES memory; the raw
        // file may be either (real Limine uses reclaimable memory, our loader the other
        // unless strict), so the kernel must keep it across reclaim itself.
        let phys = file.address - self.hhdm;
        let len = file.data.len() as u64;
        ensure!(
            self.inside(phys, len, MemoryType::EXECUTABLE_AND_MODULES)
                || self.inside(phys, len, MemoryType::BOOTLOADER_RECLAIMABLE),
            "executable file at {phys:#x}+{len:#x} is neither in EXECUTABLE_AND_MODULES nor in \
             bootloader-reclaimable memory"
        );
        Ok(())
    }

    fn modules(&self) -> CheckResult {
        ensure!(
            self.r.modules_answered,
            "no module response (the test image has one module)"
        );
        let mut count = 0;
        for module in self.boot.modules() {
            count += 1;
            let Some(expected) = TestModule::parse(module.string) else {
                ensure!(
                    false,
                    "module {} has string '{}', not 'testmod size=N fnv1a=H seed=S'",
                    module.path,
                    module.string
                );
                return Ok(());
            };
            ensure!(
                module.address.is_multiple_of(PAGE),
                "module at {:#x} not page aligned",
                module.address
            );
            ensure!(
                module.path.starts_with('/'),
                "module path '{}' not absolute",
                module.path
            );
            ensure!(
                module.data.len() as u64 == expected.size,
                "module is {} bytes, file is {}",
                module.data.len(),
                expected.size
            );
            let diff = expected.first_difference(module.data);
            ensure!(
                diff.is_none(),
                "module contents differ from the file at byte {diff:?}"
            );
            let hash = fnv1a(module.data);
            ensure!(
                hash == expected.fnv1a,
                "module contents hash {hash:016x}, file {:016x}",
                expected.fnv1a
            );
            let phys = module.address - self.hhdm;
            ensure!(
                self.inside(phys, expected.size, MemoryType::EXECUTABLE_AND_MODULES),
                "module not in EXECUTABLE_AND_MODULES memory"
            );
        }
        ensure!(count == 1, "{count} modules, expected 1");
        Ok(())
    }

    fn mp(&self) -> CheckResult {
        let Some(mp) = self.r.mp else {
            ensure!(false, "no MP response");
            return Ok(());
        };
        let cpus = mp.cpus();
        ensure!(!cpus.is_empty(), "MP response lists no CPU");
        if let Some(expected) = self.expect_cpus {
            ensure!(
                cpus.len() == expected,
                "MP response lists {} CPUs, the machine has {expected}",
                cpus.len()
            );
        }
        for (i, cpu) in cpus.iter().enumerate() {
            ensure!(
                cpus[..i].iter().all(|other| other.lapic_id != cpu.lapic_id),
                "APIC id {} listed twice",
                cpu.lapic_id
            );
            ensure!(
                cpu.extra.load(core::sync::atomic::Ordering::Relaxed) == 0,
                "CPU {i}: extra argument not 0"
            );
        }
        ensure!(
            cpus.iter().any(|c| c.lapic_id == mp.bsp_lapic_id()),
            "BSP lapic id {} not in the CPU list",
            mp.bsp_lapic_id()
        );
        Ok(())
    }

    fn firmware_tables(&self) -> CheckResult {
        // Revision 3: RSDP, SMBIOS and the EFI system table are physical addresses.
        let rsdp = self.r.rsdp.map(|r| r.address() as u64);
        ensure!(
            rsdp.is_some_and(|a| a != 0 && a < self.hhdm),
            "RSDP {rsdp:#x?} is not a physical address"
        );
        let st = self.r.efi_system_table.map(|r| r.address() as u64);
        ensure!(
            st.is_some_and(|a| a != 0 && a < self.hhdm),
            "EFI system table {st:#x?} is not a physical address"
        );
        if let Some(smbios) = self.r.smbios {
            let entries = [smbios.entry_32(), smbios.entry_64()];
            ensure!(
                entries.iter().any(Option::is_some),
                "SMBIOS response with no entry point"
            );
            for e in entries.into_iter().flatten() {
                ensure!(
                    (e.get() as u64) < self.hhdm,
                    "SMBIOS entry {:#x} is not physical",
                    e.get()
                );
            }
        }
        Ok(())
    }

    fn efi_memory_map(&self) -> CheckResult {
        let Some(map) = self.r.efi_memory_map else {
            ensure!(false, "no EFI memory map response");
            return Ok(());
        };
        ensure!(map.desc_size() >= 40, "descriptor size {}", map.desc_size());
        ensure!(
            map.memmap_size() > 0 && map.memmap_size() % map.desc_size() == 0,
            "map size {} not a multiple of {}",
            map.memmap_size(),
            map.desc_size()
        );
        let phys = (map.memmap() as u64).wrapping_sub(self.hhdm);
        ensure!(
            self.type_at(phys) == Some(MemoryType::BOOTLOADER_RECLAIMABLE),
            "EFI map copy at {phys:#x} not bootloader-reclaimable"
        );
        Ok(())
    }

    fn date_at_boot(&self) -> CheckResult {
        let seconds = self.r.date_at_boot.map(|d| d.timestamp().as_secs());
        // 2020-01-01 .. 2200-01-01: an RTC that far off is broken.
        ensure!(
            seconds.is_some_and(|s| (1_577_836_800..7_258_118_400).contains(&s)),
            "date at boot {seconds:?}"
        );
        Ok(())
    }
}

/// Entries whose type the protocol requires to be page-aligned and exclusive.
fn is_page_granular(ty: MemoryType) -> bool {
    ty == MemoryType::USABLE || ty == MemoryType::BOOTLOADER_RECLAIMABLE
}

fn type_name(ty: MemoryType) -> &'static str {
    match ty {
        MemoryType::USABLE => "usable",
        MemoryType::RESERVED => "reserved",
        MemoryType::ACPI_RECLAIMABLE => "acpi-reclaimable",
        MemoryType::ACPI_NVS => "acpi-nvs",
        MemoryType::BAD_MEMORY => "bad",
        MemoryType::BOOTLOADER_RECLAIMABLE => "bootloader-reclaimable",
        MemoryType::EXECUTABLE_AND_MODULES => "executable-and-modules",
        MemoryType::FRAMEBUFFER => "framebuffer",
        _ => "unknown",
    }
}

/// What the runner says about the test module:
/// `testmod size=<decimal> fnv1a=<16 hex> seed=<16 hex>`.
struct TestModule {
    size: u64,
    fnv1a: u64,
    /// Seed of the xorshift64* stream the bytes were made from.
    seed: u64,
}

impl TestModule {
    fn parse(string: &str) -> Option<Self> {
        let mut words = string.split_ascii_whitespace();
        if words.next()? != "testmod" {
            return None;
        }
        let (mut size, mut hash, mut seed) = (None, None, None);
        for word in words {
            match word.split_once('=')? {
                ("size", v) => size = v.parse().ok(),
                ("fnv1a", v) => hash = u64::from_str_radix(v, 16).ok(),
                ("seed", v) => seed = u64::from_str_radix(v, 16).ok(),
                _ => return None,
            }
        }
        Some(Self {
            size: size?,
            fnv1a: hash?,
            seed: seed?,
        })
    }

    /// The offset of the first byte of `data` that differs from the stream the runner wrote
    /// (xorshift64*, eight little-endian bytes per step), if any.
    fn first_difference(&self, data: &[u8]) -> Option<usize> {
        let mut state = self.seed | 1;
        data.chunks(8).enumerate().find_map(|(i, chunk)| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let expected = state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            let at = chunk.iter().zip(expected).position(|(a, b)| *a != b)?;
            Some(i * 8 + at)
        })
    }
}

/// 64-bit FNV-1a.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
