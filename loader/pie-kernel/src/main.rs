//! Relocatable test kernel for the loader. Checks, and reports on COM1 as `pie: ...` lines:
//! relocations were applied (a static pointer points at its target's run-time address),
//! the image sits in the top 2 GiB where the Executable Address response says, the Entry Point
//! request was honoured, and the internal modules came before the config module. Exits QEMU
//! through isa-debug-exit (0x10 pass, 0x11 fail).
#![no_std]
#![no_main]

use core::{arch::asm, fmt::Write};

use limine::{
    BaseRevision,
    modules::{InternalModule, ModuleFlags},
    request::{
        EntryPointRequest, ExecutableAddressRequest, ModuleRequest, RequestsEndMarker,
        RequestsStartMarker, StackSizeRequest,
    },
};

#[used]
#[unsafe(link_section = ".requests_start_marker")]
static START: RequestsStartMarker = RequestsStartMarker::new();
#[used]
#[unsafe(link_section = ".requests")]
static BASE_REVISION: BaseRevision = BaseRevision::new();
#[used]
#[unsafe(link_section = ".requests")]
static ADDRESS: ExecutableAddressRequest = ExecutableAddressRequest::new();
#[used]
#[unsafe(link_section = ".requests")]
static ENTRY: EntryPointRequest = EntryPointRequest::new().with_entry_point(real_entry);
#[used]
#[unsafe(link_section = ".requests")]
static STACK: StackSizeRequest = StackSizeRequest::new().with_size(256 * 1024);

static INTERNAL_PRESENT: InternalModule = InternalModule::new()
    .with_path(c"intmod")
    .with_cmdline(c"internal")
    .with_flags(ModuleFlags::REQUIRED);
static INTERNAL_MISSING: InternalModule = InternalModule::new()
    .with_path(c"not-there")
    .with_cmdline(c"x");
static INTERNAL: [&InternalModule; 2] = [&INTERNAL_PRESENT, &INTERNAL_MISSING];
#[used]
#[unsafe(link_section = ".requests")]
static MODULES: ModuleRequest = ModuleRequest::new().with_internal_modules(&INTERNAL);
#[used]
#[unsafe(link_section = ".requests_end_marker")]
static END: RequestsEndMarker = RequestsEndMarker::new();

static TARGET: u64 = 0x1234_5678;
/// Needs an R_X86_64_RELATIVE (or RELR) relocation.
static POINTER: &u64 = &TARGET;

unsafe extern "C" {
    static __image_start: u8;
}

struct Com1;

impl Write for Com1 {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            // SAFETY: COM1's data register; the loader programmed the UART.
            unsafe { asm!("out dx, al", in("dx") 0x3f8u16, in("al") b) };
        }
        Ok(())
    }
}

fn exit(code: u32) -> ! {
    // SAFETY: isa-debug-exit at 0xf4 ends QEMU.
    unsafe { asm!("out dx, eax", in("dx") 0xf4u16, in("eax") code) };
    loop {
        core::hint::spin_loop();
    }
}

/// The ELF entry point: must not be used, since the Entry Point request names another.
#[unsafe(no_mangle)]
extern "C" fn _start() -> ! {
    let _ = writeln!(
        Com1,
        "pie: FAIL entered through e_entry, not the Entry Point request"
    );
    exit(0x11)
}

extern "C" fn real_entry() -> ! {
    let mut ok = true;
    let mut check = |name: &str, pass: bool| {
        let _ = writeln!(Com1, "pie: {name} ... {}", if pass { "ok" } else { "FAIL" });
        ok &= pass;
    };
    check("base revision", BASE_REVISION.is_supported());
    let image = &raw const __image_start as u64;
    let _ = writeln!(Com1, "pie: image at {image:#x}");
    check("image in top 2 GiB", image >= 0xffff_ffff_8000_0000);
    check(
        "relocation applied",
        core::ptr::eq(POINTER, &TARGET) && *POINTER == 0x1234_5678,
    );
    match ADDRESS.get_response() {
        Some(a) => {
            let _ = writeln!(
                Com1,
                "pie: virtual base {:#x}, physical base {:#x}",
                a.virtual_base(),
                a.physical_base()
            );
            check("executable address", a.virtual_base() == image);
        }
        None => check("executable address response", false),
    }
    check("stack size response", STACK.get_response().is_some());
    match MODULES.get_response() {
        Some(m) => {
            let mods = m.modules();
            for f in mods {
                let _ = writeln!(
                    Com1,
                    "pie: module {:?} {:?} {} bytes",
                    f.path(),
                    f.string(),
                    f.size()
                );
            }
            check("module count", mods.len() == 2);
            check(
                "internal module first",
                mods.first().is_some_and(|f| {
                    f.path().to_bytes().ends_with(b"/intmod")
                        && f.string().to_bytes() == b"internal"
                }),
            );
            check(
                "config module second",
                mods.get(1)
                    .is_some_and(|f| f.path().to_bytes().ends_with(b"/testmod")),
            );
        }
        None => check("module response", false),
    }
    let _ = writeln!(Com1, "pie: {}", if ok { "all passed" } else { "FAILED" });
    exit(if ok { 0x10 } else { 0x11 })
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    let _ = writeln!(Com1, "pie: panic");
    exit(0x11)
}
