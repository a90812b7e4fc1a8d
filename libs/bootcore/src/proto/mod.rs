//! Limine protocol constants, request field offsets and response layouts (x86-64).
//!
//! Everything here is a fact of the protocol (see the Limine protocol specification, `PROTOCOL.md` in the limine-protocol repository): magic numbers,
//! request identifiers and the `#[repr(C)]` structures the loader writes for the executable.
//! Pointers inside responses are stored as `u64` HHDM addresses because the loader computes
//! them, it never dereferences them. Since this crate forbids `unsafe`, responses are turned
//! into bytes by [`Encode`], which writes every field little-endian at its `repr(C)` offset
//! (padding zeroed); the tests check sizes and offsets against the `limine` crate.

mod responses;

pub use responses::*;

/// First two words of every request identifier.
pub const COMMON_MAGIC: [u64; 2] = [0xc7b1_dd30_df4c_8b88, 0x0a82_e883_a194_f07b];

/// The requests start marker (four words); requests before the last one are ignored.
pub const START_MARKER: [u64; 4] = [
    0xf6b8_f4b3_9de7_d1ae,
    0xfab9_1a69_40fc_b9cf,
    0x785c_6ed0_15d3_e316,
    0x181e_920a_7852_b9d9,
];

/// The requests end marker (two words); scanning stops at the first one.
pub const END_MARKER: [u64; 2] = [0xadc0_e053_1bb1_0d03, 0x9572_709f_3176_4c62];

/// First two words of the base revision tag `{magic0, magic1, revision}`.
///
/// The second word doubles as "loader did not report a revision": a loader implementing
/// revision 3 or later overwrites it with the revision it actually used.
pub const BASE_REVISION_MAGIC: [u64; 2] = [0xf956_2b2d_5c95_a6c8, 0x6a7b_3849_4453_6bdc];

/// Size of the base revision tag in bytes.
pub const BASE_REVISION_TAG_SIZE: usize = 24;

/// Request identifiers: words 2 and 3 of `{COMMON_MAGIC, A, B}`.
pub mod id {
    /// Bootloader Info.
    pub const BOOTLOADER_INFO: [u64; 2] = [0xf550_38d8_e2a1_202f, 0x2794_26fc_f5f5_9740];
    /// Executable Command Line.
    pub const EXECUTABLE_CMDLINE: [u64; 2] = [0x4b16_1536_e598_651e, 0xb390_ad4a_2f1f_303a];
    /// Firmware Type.
    pub const FIRMWARE_TYPE: [u64; 2] = [0x8c2f_75d9_0bef_28a8, 0x7045_a468_8eac_00c3];
    /// Stack Size.
    pub const STACK_SIZE: [u64; 2] = [0x224e_f046_0a8e_8926, 0xe1cb_0fc2_5f46_ea3d];
    /// Higher Half Direct Map.
    pub const HHDM: [u64; 2] = [0x48dc_f1cb_8ad2_b852, 0x6398_4e95_9a98_244b];
    /// Framebuffer.
    pub const FRAMEBUFFER: [u64; 2] = [0x9d58_27dc_d881_dd75, 0xa314_8604_f6fa_b11b];
    /// Paging Mode.
    pub const PAGING_MODE: [u64; 2] = [0x95c1_a0ed_ab09_44cb, 0xa4e5_cb38_42f7_488a];
    /// Multiprocessor (formerly SMP).
    pub const MP: [u64; 2] = [0x95a6_7b81_9a1b_857e, 0xa0b6_1b72_3b6a_73e0];
    /// Memory Map.
    pub const MEMORY_MAP: [u64; 2] = [0x67cf_3d9d_378a_806f, 0xe304_acdf_c50c_3c62];
    /// Entry Point.
    pub const ENTRY_POINT: [u64; 2] = [0x13d8_6c03_5a1c_d3e1, 0x2b0c_aa89_d8f3_026a];
    /// Executable File (formerly Kernel File).
    pub const EXECUTABLE_FILE: [u64; 2] = [0xad97_e90e_83f1_ed67, 0x31eb_5d1c_5ff2_3b69];
    /// Module.
    pub const MODULE: [u64; 2] = [0x3e7e_2797_02be_32af, 0xca1c_4f3b_d128_0cee];
    /// RSDP.
    pub const RSDP: [u64; 2] = [0xc5e7_7b6b_397e_7b43, 0x2763_7845_accd_cf3c];
    /// SMBIOS.
    pub const SMBIOS: [u64; 2] = [0x9e90_46f1_1e09_5391, 0xaa4a_520f_efbd_e5ee];
    /// EFI System Table.
    pub const EFI_SYSTEM_TABLE: [u64; 2] = [0x5ceb_a516_3eaa_f6d6, 0x0a69_8161_0cf6_5fcc];
    /// EFI Memory Map.
    pub const EFI_MEMORY_MAP: [u64; 2] = [0x7df6_2a43_1d68_72d5, 0xa4fc_dfb3_e573_06c8];
    /// Date at Boot (formerly Boot Time).
    pub const DATE_AT_BOOT: [u64; 2] = [0x5027_46e1_84c0_88aa, 0xfbc5_ec83_e632_7893];
    /// Executable Address (formerly Kernel Address).
    pub const EXECUTABLE_ADDRESS: [u64; 2] = [0x71ba_7686_3cc5_5f63, 0xb264_4a48_c516_a487];
}

/// An x86-64 feature this crate knows the layout of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Feature {
    /// Bootloader name and version strings.
    BootloaderInfo,
    /// The executable's command line.
    ExecutableCmdline,
    /// Firmware type (EFI64 for this loader).
    FirmwareType,
    /// Minimum stack size for the BSP and APs.
    StackSize,
    /// Higher half direct map offset.
    Hhdm,
    /// Framebuffers.
    Framebuffer,
    /// Paging mode (4- or 5-level).
    PagingMode,
    /// Multiprocessor start-up.
    Mp,
    /// Limine memory map.
    MemoryMap,
    /// Alternative entry point.
    EntryPoint,
    /// The raw executable file.
    ExecutableFile,
    /// Modules.
    Module,
    /// ACPI RSDP.
    Rsdp,
    /// SMBIOS entry points.
    Smbios,
    /// EFI system table.
    EfiSystemTable,
    /// Final EFI memory map.
    EfiMemoryMap,
    /// UNIX time at boot.
    DateAtBoot,
    /// Physical and virtual base of the executable.
    ExecutableAddress,
}

impl Feature {
    /// Every feature, in the order of the "Feature List" of Limine's `PROTOCOL.md` (the
    /// x86-64 ones only).
    pub const ALL: [Feature; 18] = [
        Feature::BootloaderInfo,
        Feature::ExecutableCmdline,
        Feature::FirmwareType,
        Feature::StackSize,
        Feature::Hhdm,
        Feature::Framebuffer,
        Feature::PagingMode,
        Feature::Mp,
        Feature::MemoryMap,
        Feature::EntryPoint,
        Feature::ExecutableFile,
        Feature::Module,
        Feature::Rsdp,
        Feature::Smbios,
        Feature::EfiSystemTable,
        Feature::EfiMemoryMap,
        Feature::DateAtBoot,
        Feature::ExecutableAddress,
    ];

    /// Words 2 and 3 of the feature's request identifier.
    pub const fn id(self) -> [u64; 2] {
        match self {
            Feature::BootloaderInfo => id::BOOTLOADER_INFO,
            Feature::ExecutableCmdline => id::EXECUTABLE_CMDLINE,
            Feature::FirmwareType => id::FIRMWARE_TYPE,
            Feature::StackSize => id::STACK_SIZE,
            Feature::Hhdm => id::HHDM,
            Feature::Framebuffer => id::FRAMEBUFFER,
            Feature::PagingMode => id::PAGING_MODE,
            Feature::Mp => id::MP,
            Feature::MemoryMap => id::MEMORY_MAP,
            Feature::EntryPoint => id::ENTRY_POINT,
            Feature::ExecutableFile => id::EXECUTABLE_FILE,
            Feature::Module => id::MODULE,
            Feature::Rsdp => id::RSDP,
            Feature::Smbios => id::SMBIOS,
            Feature::EfiSystemTable => id::EFI_SYSTEM_TABLE,
            Feature::EfiMemoryMap => id::EFI_MEMORY_MAP,
            Feature::DateAtBoot => id::DATE_AT_BOOT,
            Feature::ExecutableAddress => id::EXECUTABLE_ADDRESS,
        }
    }

    /// The feature whose identifier words 2 and 3 are `id`, if this crate knows it.
    pub fn from_id(id: [u64; 2]) -> Option<Feature> {
        Feature::ALL.into_iter().find(|f| f.id() == id)
    }

    /// Human-readable name for log lines.
    pub const fn name(self) -> &'static str {
        match self {
            Feature::BootloaderInfo => "bootloader info",
            Feature::ExecutableCmdline => "executable cmdline",
            Feature::FirmwareType => "firmware type",
            Feature::StackSize => "stack size",
            Feature::Hhdm => "hhdm",
            Feature::Framebuffer => "framebuffer",
            Feature::PagingMode => "paging mode",
            Feature::Mp => "mp",
            Feature::MemoryMap => "memory map",
            Feature::EntryPoint => "entry point",
            Feature::ExecutableFile => "executable file",
            Feature::Module => "module",
            Feature::Rsdp => "rsdp",
            Feature::Smbios => "smbios",
            Feature::EfiSystemTable => "efi system table",
            Feature::EfiMemoryMap => "efi memory map",
            Feature::DateAtBoot => "date at boot",
            Feature::ExecutableAddress => "executable address",
        }
    }

    /// Bytes of the request the loader may read at the given request revision: the common
    /// header plus the feature's extra fields that exist at that revision.
    pub const fn request_len(self, revision: u64) -> usize {
        match self {
            Feature::StackSize | Feature::Mp | Feature::EntryPoint => req::HEADER_LEN + 8,
            Feature::PagingMode if revision >= 1 => req::HEADER_LEN + 24,
            Feature::PagingMode => req::HEADER_LEN + 8,
            Feature::Module if revision >= 1 => req::HEADER_LEN + 16,
            _ => req::HEADER_LEN,
        }
    }
}

/// Byte offsets of request fields, relative to the start of the request (its `id[0]`).
///
/// The loader reads these from the relocated image (`requests::read_u64`), so pointer fields
/// already carry the slide; they are executable virtual addresses to translate to physical.
pub mod req {
    /// `u64 id[4]`.
    pub const ID: usize = 0;
    /// `u64 revision` of the request.
    pub const REVISION: usize = 32;
    /// `response` pointer, written by the loader with an HHDM address.
    pub const RESPONSE: usize = 40;
    /// Length of the common request header (`id`, `revision`, `response`).
    pub const HEADER_LEN: usize = 48;
    /// Stack Size: `u64 stack_size`.
    pub const STACK_SIZE: usize = 48;
    /// Paging Mode: `u64 mode` (preferred mode).
    pub const PAGING_MODE: usize = 48;
    /// Paging Mode, request revision >= 1: `u64 max_mode`.
    pub const PAGING_MAX_MODE: usize = 56;
    /// Paging Mode, request revision >= 1: `u64 min_mode`.
    pub const PAGING_MIN_MODE: usize = 64;
    /// MP: `u64 flags` (bit 0 = x2APIC if possible, [`super::MP_REQUEST_X2APIC`]).
    pub const MP_FLAGS: usize = 48;
    /// Entry Point: `u64 entry` (executable virtual address).
    pub const ENTRY_POINT: usize = 48;
    /// Module, request revision >= 1: `u64 internal_module_count`.
    pub const MODULE_INTERNAL_COUNT: usize = 48;
    /// Module, request revision >= 1: `limine_internal_module **internal_modules`.
    pub const MODULE_INTERNAL_MODULES: usize = 56;
}

/// Layout of `limine_internal_module { char *path; char *string; u64 flags; }` (24 bytes).
pub mod internal_module {
    /// `char *path` (executable virtual address), relative to the executable's directory.
    pub const PATH: usize = 0;
    /// `char *string` (executable virtual address).
    pub const STRING: usize = 8;
    /// `u64 flags`: [`REQUIRED`], [`COMPRESSED`].
    pub const FLAGS: usize = 16;
    /// Size of the structure.
    pub const SIZE: usize = 24;
    /// Flag: boot fails if the module cannot be found.
    pub const REQUIRED: u64 = 1;
    /// Flag: module is gzip-compressed (this loader refuses it).
    pub const COMPRESSED: u64 = 2;
}

/// Limine memory map entry types.
pub mod memmap_type {
    /// Free RAM.
    pub const USABLE: u64 = 0;
    /// Reserved.
    pub const RESERVED: u64 = 1;
    /// ACPI tables, reclaimable after parsing.
    pub const ACPI_RECLAIMABLE: u64 = 2;
    /// ACPI non-volatile storage.
    pub const ACPI_NVS: u64 = 3;
    /// Defective RAM.
    pub const BAD_MEMORY: u64 = 4;
    /// Loader structures the executable may reclaim once done with them.
    pub const BOOTLOADER_RECLAIMABLE: u64 = 5;
    /// Executable image, executable file and modules.
    pub const EXECUTABLE_AND_MODULES: u64 = 6;
    /// Framebuffer memory.
    pub const FRAMEBUFFER: u64 = 7;
    /// Reserved but HHDM-mapped (base revision >= 4 only).
    pub const RESERVED_MAPPED: u64 = 8;
}

/// Response revisions this loader implements (the `revision` field it writes). Responses
/// not listed here are revision 0.
pub mod response_revision {
    /// Framebuffer response: revision 1 adds the video mode lists.
    pub const FRAMEBUFFER: u64 = 1;
    /// Module response: revision 1 means internal modules were honoured. Revision 2 would
    /// promise gzip-compressed modules, which this loader refuses.
    pub const MODULE: u64 = 1;
    /// Every other response, and `limine_file`.
    pub const DEFAULT: u64 = 0;
}

/// Firmware Type response value for 64-bit UEFI.
pub const FIRMWARE_TYPE_EFI64: u64 = 2;
/// Paging mode value: 4-level paging.
pub const PAGING_MODE_4LVL: u64 = 0;
/// Paging mode value: 5-level paging.
pub const PAGING_MODE_5LVL: u64 = 1;
/// MP request flag: enable x2APIC if possible.
pub const MP_REQUEST_X2APIC: u64 = 1;
/// MP response flag: x2APIC was enabled.
pub const MP_RESPONSE_X2APIC: u32 = 1;
/// Framebuffer memory model: RGB.
pub const FRAMEBUFFER_RGB: u8 = 1;
/// `limine_file.media_type`: generic.
pub const MEDIA_TYPE_GENERIC: u32 = 0;
/// `limine_file.media_type`: optical disc.
pub const MEDIA_TYPE_OPTICAL: u32 = 1;
/// `limine_file.media_type`: TFTP.
pub const MEDIA_TYPE_TFTP: u32 = 2;

#[cfg(test)]
mod tests;
