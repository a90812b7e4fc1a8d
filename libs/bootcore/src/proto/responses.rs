//! `#[repr(C)]` response structures and their safe byte encoding.

use core::fmt;

/// The output buffer was too short for the structure being encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferTooSmall {
    /// Bytes the structure needs.
    pub needed: usize,
    /// Bytes the buffer has.
    pub available: usize,
}

impl fmt::Display for BufferTooSmall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "buffer too small: need {} bytes, have {}",
            self.needed, self.available
        )
    }
}

/// A protocol structure that can be written as the bytes the executable will read.
pub trait Encode {
    /// Encoded size in bytes; equals `size_of::<Self>()` and the C layout's size.
    const SIZE: usize;

    /// Writes the structure little-endian at its `repr(C)` offsets into `out[..SIZE]`,
    /// zeroing padding. Bytes of `out` beyond `SIZE` are left alone.
    fn encode(&self, out: &mut [u8]) -> Result<(), BufferTooSmall>;
}

/// Sequential little-endian writer over a buffer that is known to be large enough.
struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// Checks the size up front so that the field writes below cannot go out of bounds.
    fn new(buf: &'a mut [u8], size: usize) -> Result<Self, BufferTooSmall> {
        let available = buf.len();
        match buf.get_mut(..size) {
            Some(buf) => Ok(Writer { buf, pos: 0 }),
            None => Err(BufferTooSmall {
                needed: size,
                available,
            }),
        }
    }

    fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        let end = self.pos + bytes.len();
        if let Some(dst) = self.buf.get_mut(self.pos..end) {
            dst.copy_from_slice(bytes);
        }
        self.pos = end;
        self
    }

    fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    fn u8(&mut self, v: u8) -> &mut Self {
        self.bytes(&[v])
    }

    /// Zero padding up to `to` (the next field's offset).
    fn pad_to(&mut self, to: usize) -> &mut Self {
        while self.pos < to {
            self.u8(0);
        }
        self
    }

    fn finish(&mut self) -> Result<(), BufferTooSmall> {
        debug_assert_eq!(self.pos, self.buf.len(), "encoder wrote a different size");
        Ok(())
    }
}

/// Declares a response struct made only of `u64` fields and its [`Encode`] impl.
macro_rules! u64_struct {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name {
            $($(#[$fm])* pub $field: u64,)*
        }

        impl Encode for $name {
            const SIZE: usize = core::mem::size_of::<$name>();

            fn encode(&self, out: &mut [u8]) -> Result<(), BufferTooSmall> {
                let mut w = Writer::new(out, Self::SIZE)?;
                $(w.u64(self.$field);)*
                w.finish()
            }
        }
    };
}

u64_struct!(
    /// Bootloader Info response.
    BootloaderInfoResponse {
        /// Response revision (0).
        revision,
        /// HHDM address of a NUL-terminated name.
        name,
        /// HHDM address of a NUL-terminated version.
        version,
    }
);

u64_struct!(
    /// Executable Command Line response.
    ExecutableCmdlineResponse {
        /// Response revision (0).
        revision,
        /// HHDM address of the NUL-terminated command line (same memory as the file's string).
        cmdline,
    }
);

u64_struct!(
    /// Firmware Type response.
    FirmwareTypeResponse {
        /// Response revision (0).
        revision,
        /// [`super::FIRMWARE_TYPE_EFI64`] for this loader.
        firmware_type,
    }
);

u64_struct!(
    /// Stack Size response (empty: its presence means "complied").
    StackSizeResponse {
        /// Response revision (0).
        revision,
    }
);

u64_struct!(
    /// HHDM response.
    HhdmResponse {
        /// Response revision (0).
        revision,
        /// Virtual address of physical address 0 in the HHDM.
        offset,
    }
);

u64_struct!(
    /// Framebuffer response.
    FramebufferResponse {
        /// Response revision (1: framebuffers carry mode lists).
        revision,
        /// Number of framebuffers.
        framebuffer_count,
        /// HHDM address of an array of HHDM pointers to [`Framebuffer`]s.
        framebuffers,
    }
);

u64_struct!(
    /// Paging Mode response.
    PagingModeResponse {
        /// Response revision (0).
        revision,
        /// [`super::PAGING_MODE_4LVL`] or [`super::PAGING_MODE_5LVL`].
        mode,
    }
);

u64_struct!(
    /// Memory Map response.
    MemoryMapResponse {
        /// Response revision (0).
        revision,
        /// Number of entries.
        entry_count,
        /// HHDM address of an array of HHDM pointers to [`MemmapEntry`]s.
        entries,
    }
);

u64_struct!(
    /// One Limine memory map entry (24 bytes).
    MemmapEntry {
        /// Physical base.
        base,
        /// Length in bytes.
        length,
        /// One of [`super::memmap_type`].
        ty,
    }
);

u64_struct!(
    /// Entry Point response (empty).
    EntryPointResponse {
        /// Response revision (0).
        revision,
    }
);

u64_struct!(
    /// Executable File response.
    ExecutableFileResponse {
        /// Response revision (0).
        revision,
        /// HHDM address of the [`File`] describing the raw executable.
        executable_file,
    }
);

u64_struct!(
    /// Module response.
    ModuleResponse {
        /// Response revision ([`super::response_revision::MODULE`]).
        revision,
        /// Number of modules.
        module_count,
        /// HHDM address of an array of HHDM pointers to [`File`]s.
        modules,
    }
);

u64_struct!(
    /// RSDP response.
    RsdpResponse {
        /// Response revision (0).
        revision,
        /// RSDP address: physical under base revision 3, HHDM otherwise.
        address,
    }
);

u64_struct!(
    /// SMBIOS response.
    SmbiosResponse {
        /// Response revision (0).
        revision,
        /// 32-bit entry point or 0: physical under base revisions 3 and 4.
        entry_32,
        /// 64-bit entry point or 0: physical under base revisions 3 and 4.
        entry_64,
    }
);

u64_struct!(
    /// EFI System Table response.
    EfiSystemTableResponse {
        /// Response revision (0).
        revision,
        /// System table address: physical under base revisions 3 and 4.
        address,
    }
);

u64_struct!(
    /// EFI Memory Map response (40 bytes).
    EfiMemoryMapResponse {
        /// Response revision (0).
        revision,
        /// HHDM address of the copy of the final EFI memory map.
        memmap,
        /// Size of the map in bytes.
        memmap_size,
        /// Size of one descriptor.
        desc_size,
        /// Descriptor version (the `limine` 0.5 crate reads it as `u32`; same bytes on LE).
        desc_version,
    }
);

u64_struct!(
    /// Executable Address response.
    ExecutableAddressResponse {
        /// Response revision (0).
        revision,
        /// Physical base of the loaded image.
        physical_base,
        /// Virtual base (lowest segment address plus slide).
        virtual_base,
    }
);

/// Date at Boot response.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DateAtBootResponse {
    /// Response revision (0).
    pub revision: u64,
    /// UNIX time in seconds, from the RTC.
    pub timestamp: i64,
}

impl Encode for DateAtBootResponse {
    const SIZE: usize = core::mem::size_of::<Self>();

    fn encode(&self, out: &mut [u8]) -> Result<(), BufferTooSmall> {
        let mut w = Writer::new(out, Self::SIZE)?;
        w.u64(self.revision).bytes(&self.timestamp.to_le_bytes());
        w.finish()
    }
}

/// `limine_framebuffer` (80 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Framebuffer {
    /// HHDM address of the pixels (mapped write-combining).
    pub address: u64,
    /// Width in pixels.
    pub width: u64,
    /// Height in pixels.
    pub height: u64,
    /// Bytes per scan line.
    pub pitch: u64,
    /// Bits per pixel.
    pub bpp: u16,
    /// [`super::FRAMEBUFFER_RGB`].
    pub memory_model: u8,
    /// Red mask size in bits.
    pub red_mask_size: u8,
    /// Red mask shift.
    pub red_mask_shift: u8,
    /// Green mask size in bits.
    pub green_mask_size: u8,
    /// Green mask shift.
    pub green_mask_shift: u8,
    /// Blue mask size in bits.
    pub blue_mask_size: u8,
    /// Blue mask shift.
    pub blue_mask_shift: u8,
    /// Reserved, zero.
    pub unused: [u8; 7],
    /// Size of the EDID blob in bytes (0 if none).
    pub edid_size: u64,
    /// HHDM address of the EDID blob, or 0.
    pub edid: u64,
    /// Number of video modes (response revision >= 1).
    pub mode_count: u64,
    /// HHDM address of an array of HHDM pointers to [`VideoMode`]s (response revision >= 1).
    pub modes: u64,
}

impl Encode for Framebuffer {
    const SIZE: usize = core::mem::size_of::<Self>();

    fn encode(&self, out: &mut [u8]) -> Result<(), BufferTooSmall> {
        let mut w = Writer::new(out, Self::SIZE)?;
        w.u64(self.address)
            .u64(self.width)
            .u64(self.height)
            .u64(self.pitch);
        w.u16(self.bpp).u8(self.memory_model);
        w.u8(self.red_mask_size).u8(self.red_mask_shift);
        w.u8(self.green_mask_size).u8(self.green_mask_shift);
        w.u8(self.blue_mask_size).u8(self.blue_mask_shift);
        w.bytes(&self.unused);
        w.u64(self.edid_size)
            .u64(self.edid)
            .u64(self.mode_count)
            .u64(self.modes);
        w.finish()
    }
}

/// `limine_video_mode` (40 bytes, 7 of them trailing padding).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VideoMode {
    /// Bytes per scan line.
    pub pitch: u64,
    /// Width in pixels.
    pub width: u64,
    /// Height in pixels.
    pub height: u64,
    /// Bits per pixel.
    pub bpp: u16,
    /// [`super::FRAMEBUFFER_RGB`].
    pub memory_model: u8,
    /// Red mask size in bits.
    pub red_mask_size: u8,
    /// Red mask shift.
    pub red_mask_shift: u8,
    /// Green mask size in bits.
    pub green_mask_size: u8,
    /// Green mask shift.
    pub green_mask_shift: u8,
    /// Blue mask size in bits.
    pub blue_mask_size: u8,
    /// Blue mask shift.
    pub blue_mask_shift: u8,
}

impl Encode for VideoMode {
    const SIZE: usize = core::mem::size_of::<Self>();

    fn encode(&self, out: &mut [u8]) -> Result<(), BufferTooSmall> {
        let mut w = Writer::new(out, Self::SIZE)?;
        w.u64(self.pitch).u64(self.width).u64(self.height);
        w.u16(self.bpp).u8(self.memory_model);
        w.u8(self.red_mask_size).u8(self.red_mask_shift);
        w.u8(self.green_mask_size).u8(self.green_mask_shift);
        w.u8(self.blue_mask_size).u8(self.blue_mask_shift);
        w.pad_to(Self::SIZE);
        w.finish()
    }
}

/// MP response (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MpResponse {
    /// Response revision (0).
    pub revision: u64,
    /// Bit 0 ([`super::MP_RESPONSE_X2APIC`]): x2APIC was enabled.
    pub flags: u32,
    /// LAPIC ID of the BSP.
    pub bsp_lapic_id: u32,
    /// Number of CPUs including the BSP.
    pub cpu_count: u64,
    /// HHDM address of an array of HHDM pointers to [`MpInfo`]s (MADT order, BSP included).
    pub cpus: u64,
}

impl Encode for MpResponse {
    const SIZE: usize = core::mem::size_of::<Self>();

    fn encode(&self, out: &mut [u8]) -> Result<(), BufferTooSmall> {
        let mut w = Writer::new(out, Self::SIZE)?;
        w.u64(self.revision).u32(self.flags).u32(self.bsp_lapic_id);
        w.u64(self.cpu_count).u64(self.cpus);
        w.finish()
    }
}

/// `limine_mp_info` (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MpInfo {
    /// ACPI processor UID from the MADT.
    pub processor_id: u32,
    /// (x2)APIC ID.
    pub lapic_id: u32,
    /// Loader-private: the AP's HHDM stack top.
    pub reserved: u64,
    /// Where a parked AP jumps once the executable writes it (0 at entry).
    pub goto_address: u64,
    /// Free for the executable (0 at entry).
    pub extra_argument: u64,
}

impl MpInfo {
    /// Byte offset of `goto_address`, which parked APs poll.
    pub const GOTO_ADDRESS_OFFSET: usize = 16;
    /// Byte offset of `reserved` (the AP stack top).
    pub const RESERVED_OFFSET: usize = 8;
}

impl Encode for MpInfo {
    const SIZE: usize = core::mem::size_of::<Self>();

    fn encode(&self, out: &mut [u8]) -> Result<(), BufferTooSmall> {
        let mut w = Writer::new(out, Self::SIZE)?;
        w.u32(self.processor_id).u32(self.lapic_id);
        w.u64(self.reserved)
            .u64(self.goto_address)
            .u64(self.extra_argument);
        w.finish()
    }
}

/// `limine_uuid` (16 bytes); all-zero means unset.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Uuid {
    /// First group.
    pub a: u32,
    /// Second group.
    pub b: u16,
    /// Third group.
    pub c: u16,
    /// Remaining bytes.
    pub d: [u8; 8],
}

impl Uuid {
    fn write(&self, w: &mut Writer<'_>) {
        w.u32(self.a).u16(self.b).u16(self.c).bytes(&self.d);
    }
}

impl Encode for Uuid {
    const SIZE: usize = core::mem::size_of::<Self>();

    fn encode(&self, out: &mut [u8]) -> Result<(), BufferTooSmall> {
        let mut w = Writer::new(out, Self::SIZE)?;
        self.write(&mut w);
        w.finish()
    }
}

/// `limine_file` (112 bytes): the executable file or a module.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct File {
    /// Structure revision (0).
    pub revision: u64,
    /// HHDM address of the contents (4 KiB aligned).
    pub address: u64,
    /// Size in bytes.
    pub size: u64,
    /// HHDM address of the NUL-terminated absolute path within the volume.
    pub path: u64,
    /// HHDM address of the NUL-terminated string (`cmdline` in older names).
    pub string: u64,
    /// [`super::MEDIA_TYPE_GENERIC`] and friends.
    pub media_type: u32,
    /// Reserved, zero.
    pub unused: u32,
    /// TFTP server IP (0 unless TFTP).
    pub tftp_ip: u32,
    /// TFTP server port (0 unless TFTP).
    pub tftp_port: u32,
    /// 1-based partition index, 0 if unknown.
    pub partition_index: u32,
    /// MBR disk id, 0 if none.
    pub mbr_disk_id: u32,
    /// GPT disk UUID.
    pub gpt_disk_uuid: Uuid,
    /// GPT partition UUID.
    pub gpt_part_uuid: Uuid,
    /// Filesystem UUID.
    pub part_uuid: Uuid,
}

impl Encode for File {
    const SIZE: usize = core::mem::size_of::<Self>();

    fn encode(&self, out: &mut [u8]) -> Result<(), BufferTooSmall> {
        let mut w = Writer::new(out, Self::SIZE)?;
        w.u64(self.revision).u64(self.address).u64(self.size);
        w.u64(self.path).u64(self.string);
        w.u32(self.media_type)
            .u32(self.unused)
            .u32(self.tftp_ip)
            .u32(self.tftp_port);
        w.u32(self.partition_index).u32(self.mbr_disk_id);
        self.gpt_disk_uuid.write(&mut w);
        self.gpt_part_uuid.write(&mut w);
        self.part_uuid.write(&mut w);
        w.finish()
    }
}

/// Encodes a `u64` array (e.g. an array of HHDM pointers) into `out`.
pub fn encode_u64s(values: &[u64], out: &mut [u8]) -> Result<(), BufferTooSmall> {
    let needed = values.len().saturating_mul(8);
    let mut w = Writer::new(out, needed)?;
    for &v in values {
        w.u64(v);
    }
    w.finish()
}
