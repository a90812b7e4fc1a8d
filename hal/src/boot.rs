//! The Limine boot requests and safe access to the loader's answers.
//!
//! The requests live in `.requests`, between the start and end markers the linker script
//! keeps in their own segment. A loader (ours or real Limine) fills in their response
//! pointers before jumping to the kernel; nothing writes them afterwards.
//!
//! The responses themselves live in bootloader-reclaimable memory (PROTOCOL.md, "Memory
//! Map": the loader's structures are placed there), which the frame allocator takes over
//! once the kernel reclaims it. So they are reachable only through [`Boot`]: hal makes one,
//! hands it to the kernel's `main`, and `hal::mm::reclaim_bootloader_memory` consumes it.
//! Every reference a [`Responses`] holds borrows the token, so none can outlive the reclaim:
//! the borrow checker, not a convention, keeps them apart. What the kernel needs afterwards
//! (the command line, the boot files' records, the HHDM offset, the framebuffer's geometry)
//! hal copies out first.

use alloc::vec::Vec;
use core::{
    ffi::CStr,
    sync::atomic::{AtomicBool, Ordering},
};

use limine::{
    BaseRevision, paging,
    request::{
        BootloaderInfoRequest, DateAtBootRequest, EfiMemoryMapRequest, EfiSystemTableRequest,
        EntryPointRequest, ExecutableAddressRequest, ExecutableCmdlineRequest,
        ExecutableFileRequest, FirmwareTypeRequest, FramebufferRequest, HhdmRequest,
        MemoryMapRequest, ModuleRequest, MpRequest, PagingModeRequest, RequestsEndMarker,
        RequestsStartMarker, RsdpRequest, SmbiosRequest, StackSizeRequest,
    },
};
pub use limine::{
    memory_map::{Entry as MemoryMapEntry, EntryType as MemoryType},
    response::{
        BootloaderInfoResponse, DateAtBootResponse, EfiMemoryMapResponse, EfiSystemTableResponse,
        ExecutableAddressResponse, ExecutableCmdlineResponse, FirmwareTypeResponse, HhdmResponse,
        MemoryMapResponse, MpResponse, PagingModeResponse, RsdpResponse, SmbiosResponse,
        StackSizeResponse,
    },
};
use spin::Once;

/// The stack size the kernel asks for (the protocol's minimum is 64 KiB).
pub const REQUESTED_STACK_SIZE: u64 = 256 * 1024;

#[used]
#[unsafe(link_section = ".requests_start_marker")]
static START_MARKER: RequestsStartMarker = RequestsStartMarker::new();

/// The protocol revision the kernel is written against: 3.
#[used]
#[unsafe(link_section = ".requests")]
static BASE_REVISION: BaseRevision = BaseRevision::with_revision(3);

macro_rules! requests {
    ($($(#[$doc:meta])* $name:ident: $ty:ty = $init:expr;)*) => {
        $(
            $(#[$doc])*
            #[used]
            #[unsafe(link_section = ".requests")]
            static $name: $ty = $init;
        )*
    };
}

requests! {
    BOOTLOADER_INFO: BootloaderInfoRequest = BootloaderInfoRequest::new();
    FIRMWARE_TYPE: FirmwareTypeRequest = FirmwareTypeRequest::new();
    STACK_SIZE: StackSizeRequest = StackSizeRequest::new().with_size(REQUESTED_STACK_SIZE);
    HHDM: HhdmRequest = HhdmRequest::new();
    FRAMEBUFFER: FramebufferRequest = FramebufferRequest::new();
    PAGING_MODE: PagingModeRequest = PagingModeRequest::new()
        .with_mode(paging::Mode::FOUR_LEVEL)
        .with_max_mode(paging::Mode::FOUR_LEVEL)
        .with_min_mode(paging::Mode::FOUR_LEVEL);
    MP: MpRequest = MpRequest::new().with_flags(limine::mp::RequestFlags::X2APIC);
    MEMORY_MAP: MemoryMapRequest = MemoryMapRequest::new();
    ENTRY_POINT: EntryPointRequest =
        EntryPointRequest::new().with_entry_point(crate::entry::limine_entry);
    EXECUTABLE_FILE: ExecutableFileRequest = ExecutableFileRequest::new();
    EXECUTABLE_CMDLINE: ExecutableCmdlineRequest = ExecutableCmdlineRequest::new();
    EXECUTABLE_ADDRESS: ExecutableAddressRequest = ExecutableAddressRequest::new();
    MODULES: ModuleRequest = ModuleRequest::new();
    RSDP: RsdpRequest = RsdpRequest::new();
    SMBIOS: SmbiosRequest = SmbiosRequest::new();
    EFI_SYSTEM_TABLE: EfiSystemTableRequest = EfiSystemTableRequest::new();
    EFI_MEMORY_MAP: EfiMemoryMapRequest = EfiMemoryMapRequest::new();
    DATE_AT_BOOT: DateAtBootRequest = DateAtBootRequest::new();
}

#[used]
#[unsafe(link_section = ".requests_end_marker")]
static END_MARKER: RequestsEndMarker = RequestsEndMarker::new();

/// Proof that the loader's memory has not been reclaimed, and the only way to its responses.
///
/// hal creates exactly one, at kernel entry, and passes it to the kernel's `main`; it cannot
/// be copied, cloned or made elsewhere. `hal::mm::reclaim_bootloader_memory` takes it by
/// value.
pub struct Boot {
    _private: (),
}

static BOOT_MADE: AtomicBool = AtomicBool::new(false);

impl Boot {
    /// The token, the first time only (the entry stub calls this once).
    pub(crate) fn take() -> Option<Self> {
        (!BOOT_MADE.swap(true, Ordering::AcqRel)).then_some(Self { _private: () })
    }

    /// The loader's answers, borrowed from the token.
    pub fn responses(&self) -> Responses<'_> {
        live()
    }

    /// Width, height and bits per pixel of the first framebuffer.
    pub fn framebuffer_info(&self) -> Option<(u64, u64, u16)> {
        let fb = FRAMEBUFFER.get_response()?.framebuffers().next()?;
        Some((fb.width(), fb.height(), fb.bpp()))
    }

    /// The virtual address of the first framebuffer.
    pub fn framebuffer_address(&self) -> Option<u64> {
        Some(FRAMEBUFFER.get_response()?.framebuffers().next()?.addr() as u64)
    }

    /// The kernel's own ELF file as the loader placed it.
    pub fn executable_file(&self) -> Option<BootFile<'_>> {
        live_executable_file()
    }

    /// The modules as the loader placed them, in order.
    pub fn modules(&self) -> impl Iterator<Item = BootFile<'_>> + '_ {
        fn borrowed<'a>(file: BootFile<'static>) -> BootFile<'a> {
            file
        }
        live_modules().map(borrowed)
    }
}

/// Whether the loader supports the base revision the kernel asked for (3).
pub fn base_revision_supported() -> bool {
    BASE_REVISION.is_supported()
}

/// The revision the loader says it used, if it reported one (loaders for revision 3 and newer
/// do).
pub fn loaded_revision() -> Option<u64> {
    BASE_REVISION.loaded_revision()
}

/// The loader's answers, borrowed from [`Boot`]. Every field is `None` when the loader did not
/// answer that request.
#[derive(Clone, Copy)]
pub struct Responses<'a> {
    /// Loader name and version.
    pub bootloader_info: Option<&'a BootloaderInfoResponse>,
    /// Firmware type.
    pub firmware_type: Option<&'a FirmwareTypeResponse>,
    /// Acknowledgement of the stack size request.
    pub stack_size: Option<&'a StackSizeResponse>,
    /// Higher-half direct map offset.
    pub hhdm: Option<&'a HhdmResponse>,
    /// Paging mode in use.
    pub paging_mode: Option<&'a PagingModeResponse>,
    /// Processors.
    pub mp: Option<&'a MpResponse>,
    /// Physical memory map.
    pub memory_map: Option<&'a MemoryMapResponse>,
    /// Where the kernel image sits.
    pub executable_address: Option<&'a ExecutableAddressResponse>,
    /// The kernel command line.
    pub executable_cmdline: Option<&'a ExecutableCmdlineResponse>,
    /// ACPI RSDP (a physical address under revision 3).
    pub rsdp: Option<&'a RsdpResponse>,
    /// SMBIOS entry points (physical under revision 3).
    pub smbios: Option<&'a SmbiosResponse>,
    /// EFI system table (physical under revision 3).
    pub efi_system_table: Option<&'a EfiSystemTableResponse>,
    /// EFI memory map.
    pub efi_memory_map: Option<&'a EfiMemoryMapResponse>,
    /// Wall-clock time at boot.
    pub date_at_boot: Option<&'a DateAtBootResponse>,
    /// Whether the entry point request was answered.
    pub entry_point_answered: bool,
    /// Whether the executable file request was answered.
    pub executable_file_answered: bool,
    /// Whether the module request was answered.
    pub modules_answered: bool,
    /// Whether the framebuffer request was answered.
    pub framebuffer_answered: bool,
}

impl Responses<'_> {
    /// No answers at all.
    const NONE: Self = Self {
        bootloader_info: None,
        firmware_type: None,
        stack_size: None,
        hhdm: None,
        paging_mode: None,
        mp: None,
        memory_map: None,
        executable_address: None,
        executable_cmdline: None,
        rsdp: None,
        smbios: None,
        efi_system_table: None,
        efi_memory_map: None,
        date_at_boot: None,
        entry_point_answered: false,
        executable_file_answered: false,
        modules_answered: false,
        framebuffer_answered: false,
    };
}

/// The loader's answers for hal's own use — all absent once the memory holding them has been
/// reclaimed. hal never keeps a reference from them past its own bring-up.
pub(crate) fn live() -> Responses<'static> {
    if crate::mm::bootloader_memory_reclaimed() {
        return Responses::NONE;
    }
    Responses {
        bootloader_info: BOOTLOADER_INFO.get_response(),
        firmware_type: FIRMWARE_TYPE.get_response(),
        stack_size: STACK_SIZE.get_response(),
        hhdm: HHDM.get_response(),
        paging_mode: PAGING_MODE.get_response(),
        mp: MP.get_response(),
        memory_map: MEMORY_MAP.get_response(),
        executable_address: EXECUTABLE_ADDRESS.get_response(),
        executable_cmdline: EXECUTABLE_CMDLINE.get_response(),
        rsdp: RSDP.get_response(),
        smbios: SMBIOS.get_response(),
        efi_system_table: EFI_SYSTEM_TABLE.get_response(),
        efi_memory_map: EFI_MEMORY_MAP.get_response(),
        date_at_boot: DATE_AT_BOOT.get_response(),
        entry_point_answered: ENTRY_POINT.get_response().is_some(),
        executable_file_answered: EXECUTABLE_FILE.get_response().is_some(),
        modules_answered: MODULES.get_response().is_some(),
        framebuffer_answered: FRAMEBUFFER.get_response().is_some(),
    }
}

/// A file the loader put in memory: a module or the kernel's own ELF file. `'a` is the
/// token's borrow for the loader's records, `'static` for hal's preserved copies.
#[derive(Clone, Copy)]
pub struct BootFile<'a> {
    /// The file's contents (their pages are never reclaimed, so these outlive the token).
    pub data: &'static [u8],
    /// Its path on the boot volume.
    pub path: &'a str,
    /// The string given to it in `limine.conf` (the kernel command line for the kernel file).
    pub string: &'a str,
    /// The address of its contents (HHDM), for alignment checks.
    pub address: u64,
}

fn boot_file(file: &'static limine::file::File) -> BootFile<'static> {
    let size = usize::try_from(file.size()).unwrap_or(0);
    // SAFETY: the protocol guarantees that `addr` points to `size` bytes of the file in
    // EXECUTABLE_AND_MODULES memory, mapped in the HHDM, that nothing else writes.
    let data = unsafe { core::slice::from_raw_parts(file.addr().cast_const(), size) };
    BootFile {
        data,
        path: cstr(file.path()),
        string: cstr(file.string()),
        address: file.addr() as u64,
    }
}

fn cstr(s: &'static CStr) -> &'static str {
    s.to_str().unwrap_or("<not UTF-8>")
}

/// Copies of what the kernel still needs after the loader's memory is reclaimed.
struct Preserved {
    executable: Option<BootFile<'static>>,
    modules: Vec<BootFile<'static>>,
}

static PRESERVED: Once<Preserved> = Once::new();

/// Copies the file records (paths and strings) into kernel memory, so that [`modules`] and
/// [`executable_file`] work for good. The contents stay where the loader put them: the
/// protocol places modules in EXECUTABLE_AND_MODULES memory but the executable file may sit in
/// bootloader-reclaimable memory, so reclaiming keeps every preserved file's pages out of the
/// frame allocator ([`preserved_file_pages`]). Needs the heap: `hal::init` calls it once
/// memory management is up.
pub(crate) fn preserve() {
    let leak = |s: &str| -> &'static str { alloc::boxed::Box::leak(s.into()) };
    let copy = |f: BootFile<'_>| BootFile {
        path: leak(f.path),
        string: leak(f.string),
        ..f
    };
    PRESERVED.call_once(|| Preserved {
        executable: live_executable_file().map(copy),
        modules: live_modules().map(copy).collect(),
    });
}

/// The physical page ranges holding the contents of the files [`preserve`] kept: the frame
/// allocator must never receive them, whatever memory type the loader gave them (real Limine
/// puts the executable file in bootloader-reclaimable memory; the protocol allows it).
pub(crate) fn preserved_file_pages() -> Vec<core::ops::Range<u64>> {
    let hhdm = crate::mm::hhdm_offset();
    let Some(p) = PRESERVED.get() else {
        return Vec::new();
    };
    p.executable
        .iter()
        .chain(&p.modules)
        .filter(|f| !f.data.is_empty())
        .map(|f| {
            let start = f.address.wrapping_sub(hhdm) & !(crate::mm::PAGE_SIZE - 1);
            let end = (f.address.wrapping_sub(hhdm) + f.data.len() as u64)
                .next_multiple_of(crate::mm::PAGE_SIZE);
            start..end
        })
        .collect()
}

fn live_modules() -> impl Iterator<Item = BootFile<'static>> {
    let modules = if crate::mm::bootloader_memory_reclaimed() {
        None
    } else {
        MODULES.get_response()
    };
    modules
        .into_iter()
        .flat_map(|r| r.modules().iter().map(|f| boot_file(f)))
}

fn live_executable_file() -> Option<BootFile<'static>> {
    if crate::mm::bootloader_memory_reclaimed() {
        return None;
    }
    EXECUTABLE_FILE.get_response().map(|r| boot_file(r.file()))
}

/// The modules the loader loaded, in order (none before `hal::init`: until then use
/// [`Boot::modules`]).
pub fn modules() -> impl Iterator<Item = BootFile<'static>> {
    PRESERVED
        .get()
        .into_iter()
        .flat_map(|p| p.modules.iter().copied())
}

/// The kernel's own ELF file (none before `hal::init`: until then use
/// [`Boot::executable_file`]).
pub fn executable_file() -> Option<BootFile<'static>> {
    PRESERVED.get().and_then(|p| p.executable)
}

/// The longest command line kept (Limine truncates values at 4095 characters).
const CMDLINE_MAX: usize = 4096;

/// The command line, copied out of loader memory at kernel entry.
static CMDLINE: Once<([u8; CMDLINE_MAX], usize)> = Once::new();

/// The kernel command line (empty if the loader gave none).
pub fn cmdline() -> &'static str {
    let (bytes, len) = CMDLINE.get().unwrap_or(&([0; CMDLINE_MAX], 0));
    core::str::from_utf8(&bytes[..*len]).unwrap_or("")
}

/// Copies the command line out of loader memory (the entry stub calls this first thing).
pub(crate) fn copy_cmdline() {
    CMDLINE.call_once(|| {
        let live = if crate::mm::bootloader_memory_reclaimed() {
            ""
        } else {
            EXECUTABLE_CMDLINE
                .get_response()
                .map(|r| cstr(r.cmdline()))
                .unwrap_or("")
        };
        // Cut at a character boundary if it is too long.
        let mut len = live.len().min(CMDLINE_MAX);
        while !live.is_char_boundary(len) {
            len -= 1;
        }
        let mut bytes = [0; CMDLINE_MAX];
        bytes[..len].copy_from_slice(&live.as_bytes()[..len]);
        (bytes, len)
    });
}

/// Where the entry point request asked the loader to jump.
pub fn requested_entry_point() -> u64 {
    crate::entry::limine_entry as *const () as u64
}

/// The framebuffer response, for hal's bring-up and for [`crate::framebuffer::take`] (which
/// holds the token's borrow). `None` once the loader's memory is reclaimed.
pub(crate) fn framebuffer_response() -> Option<&'static limine::response::FramebufferResponse> {
    if crate::mm::bootloader_memory_reclaimed() {
        return None;
    }
    FRAMEBUFFER.get_response()
}
