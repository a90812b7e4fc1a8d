use core::mem::{offset_of, size_of};

use limine::{request as lr, response as lresp};

use super::*;

/// Little-endian `u64` at `off` of `bytes`.
fn u64_at(bytes: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(bytes[off..off + 8].try_into().expect("8 bytes"))
}

fn u32_at(bytes: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(bytes[off..off + 4].try_into().expect("4 bytes"))
}

fn encoded<T: Encode>(value: &T) -> std::vec::Vec<u8> {
    // Pre-fill with garbage so that unwritten padding would show.
    let mut buf = std::vec![0xaa; T::SIZE + 8];
    value.encode(&mut buf).expect("buffer is large enough");
    assert!(buf[T::SIZE..].iter().all(|&b| b == 0xaa), "wrote past SIZE");
    buf.truncate(T::SIZE);
    buf
}

#[test]
fn sizes_match_limine_crate() {
    assert_eq!(
        size_of::<BootloaderInfoResponse>(),
        size_of::<lresp::BootloaderInfoResponse>()
    );
    assert_eq!(
        size_of::<ExecutableCmdlineResponse>(),
        size_of::<lresp::ExecutableCmdlineResponse>()
    );
    assert_eq!(
        size_of::<FirmwareTypeResponse>(),
        size_of::<lresp::FirmwareTypeResponse>()
    );
    assert_eq!(
        size_of::<StackSizeResponse>(),
        size_of::<lresp::StackSizeResponse>()
    );
    assert_eq!(size_of::<HhdmResponse>(), size_of::<lresp::HhdmResponse>());
    assert_eq!(
        size_of::<FramebufferResponse>(),
        size_of::<lresp::FramebufferResponse>()
    );
    assert_eq!(
        size_of::<PagingModeResponse>(),
        size_of::<lresp::PagingModeResponse>()
    );
    assert_eq!(size_of::<MpResponse>(), size_of::<lresp::MpResponse>());
    assert_eq!(size_of::<MpInfo>(), size_of::<limine::mp::Cpu>());
    assert_eq!(
        size_of::<MemoryMapResponse>(),
        size_of::<lresp::MemoryMapResponse>()
    );
    assert_eq!(
        size_of::<MemmapEntry>(),
        size_of::<limine::memory_map::Entry>()
    );
    assert_eq!(
        size_of::<EntryPointResponse>(),
        size_of::<lresp::EntryPointResponse>()
    );
    assert_eq!(
        size_of::<ExecutableFileResponse>(),
        size_of::<lresp::ExecutableFileResponse>()
    );
    assert_eq!(size_of::<File>(), size_of::<limine::file::File>());
    assert_eq!(size_of::<Uuid>(), size_of::<limine::file::Uuid>());
    assert_eq!(
        size_of::<ModuleResponse>(),
        size_of::<lresp::ModuleResponse>()
    );
    assert_eq!(size_of::<RsdpResponse>(), size_of::<lresp::RsdpResponse>());
    assert_eq!(
        size_of::<SmbiosResponse>(),
        size_of::<lresp::SmbiosResponse>()
    );
    assert_eq!(
        size_of::<EfiSystemTableResponse>(),
        size_of::<lresp::EfiSystemTableResponse>()
    );
    assert_eq!(
        size_of::<EfiMemoryMapResponse>(),
        size_of::<lresp::EfiMemoryMapResponse>()
    );
    assert_eq!(
        size_of::<DateAtBootResponse>(),
        size_of::<lresp::DateAtBootResponse>()
    );
    assert_eq!(
        size_of::<ExecutableAddressResponse>(),
        size_of::<lresp::ExecutableAddressResponse>()
    );
    assert_eq!(
        size_of::<VideoMode>(),
        size_of::<limine::framebuffer::VideoMode>()
    );
    assert_eq!(BASE_REVISION_TAG_SIZE, size_of::<limine::BaseRevision>());
}

#[test]
fn sizes_match_the_protocol() {
    assert_eq!(size_of::<Framebuffer>(), 80);
    assert_eq!(size_of::<VideoMode>(), 40);
    assert_eq!(size_of::<MpResponse>(), 32);
    assert_eq!(size_of::<MpInfo>(), 32);
    assert_eq!(size_of::<MemmapEntry>(), 24);
    assert_eq!(size_of::<File>(), 112);
    assert_eq!(size_of::<EfiMemoryMapResponse>(), 40);
}

#[test]
fn encode_size_equals_type_size() {
    assert_eq!(Framebuffer::SIZE, size_of::<Framebuffer>());
    assert_eq!(VideoMode::SIZE, size_of::<VideoMode>());
    assert_eq!(File::SIZE, size_of::<File>());
    assert_eq!(MpInfo::SIZE, size_of::<MpInfo>());
    assert_eq!(MpResponse::SIZE, size_of::<MpResponse>());
    assert_eq!(DateAtBootResponse::SIZE, size_of::<DateAtBootResponse>());
    assert_eq!(Uuid::SIZE, 16);
}

#[test]
fn public_field_offsets_match_limine_crate() {
    use limine::{framebuffer::VideoMode as LVideoMode, memory_map::Entry, mp::Cpu};
    assert_eq!(offset_of!(MemmapEntry, base), offset_of!(Entry, base));
    assert_eq!(offset_of!(MemmapEntry, length), offset_of!(Entry, length));
    assert_eq!(offset_of!(MemmapEntry, ty), offset_of!(Entry, entry_type));
    assert_eq!(offset_of!(MpInfo, processor_id), offset_of!(Cpu, id));
    assert_eq!(offset_of!(MpInfo, lapic_id), offset_of!(Cpu, lapic_id));
    assert_eq!(
        offset_of!(MpInfo, goto_address),
        offset_of!(Cpu, goto_address)
    );
    assert_eq!(offset_of!(MpInfo, extra_argument), offset_of!(Cpu, extra));
    assert_eq!(MpInfo::GOTO_ADDRESS_OFFSET, offset_of!(Cpu, goto_address));
    assert_eq!(offset_of!(VideoMode, pitch), offset_of!(LVideoMode, pitch));
    assert_eq!(offset_of!(VideoMode, bpp), offset_of!(LVideoMode, bpp));
    assert_eq!(
        offset_of!(VideoMode, memory_model),
        offset_of!(LVideoMode, memory_model)
    );
    assert_eq!(
        offset_of!(VideoMode, blue_mask_shift),
        offset_of!(LVideoMode, blue_mask_shift)
    );
    assert_eq!(offset_of!(Uuid, d), offset_of!(limine::file::Uuid, d));
}

#[test]
fn framebuffer_encoding_puts_fields_at_their_offsets() {
    let fb = Framebuffer {
        address: 0xffff_8000_8000_0000,
        width: 1280,
        height: 800,
        pitch: 5120,
        bpp: 32,
        memory_model: FRAMEBUFFER_RGB,
        red_mask_size: 8,
        red_mask_shift: 16,
        green_mask_size: 8,
        green_mask_shift: 8,
        blue_mask_size: 8,
        blue_mask_shift: 0,
        unused: [0; 7],
        edid_size: 128,
        edid: 0x1234,
        mode_count: 3,
        modes: 0x5678,
    };
    let b = encoded(&fb);
    assert_eq!(u64_at(&b, offset_of!(Framebuffer, address)), fb.address);
    assert_eq!(u64_at(&b, offset_of!(Framebuffer, pitch)), 5120);
    assert_eq!(b[offset_of!(Framebuffer, bpp)], 32);
    assert_eq!(b[offset_of!(Framebuffer, memory_model)], 1);
    assert_eq!(b[offset_of!(Framebuffer, red_mask_shift)], 16);
    assert_eq!(b[offset_of!(Framebuffer, blue_mask_shift)], 0);
    assert_eq!(u64_at(&b, offset_of!(Framebuffer, edid_size)), 128);
    assert_eq!(u64_at(&b, offset_of!(Framebuffer, edid)), 0x1234);
    assert_eq!(u64_at(&b, offset_of!(Framebuffer, mode_count)), 3);
    assert_eq!(u64_at(&b, offset_of!(Framebuffer, modes)), 0x5678);
    assert_eq!(offset_of!(Framebuffer, edid_size), 48);
}

#[test]
fn video_mode_padding_is_zeroed() {
    let mode = VideoMode {
        pitch: 1,
        width: 2,
        height: 3,
        bpp: 0xffff,
        ..VideoMode::default()
    };
    let b = encoded(&mode);
    assert_eq!(u64_at(&b, offset_of!(VideoMode, height)), 3);
    assert_eq!(&b[24..26], &[0xff, 0xff]);
    assert!(b[33..].iter().all(|&x| x == 0));
}

#[test]
fn file_encoding_puts_fields_at_their_offsets() {
    let uuid = Uuid {
        a: 0x0102_0304,
        b: 0x0506,
        c: 0x0708,
        d: [9, 10, 11, 12, 13, 14, 15, 16],
    };
    let f = File {
        revision: 0,
        address: 0xffff_8000_0010_0000,
        size: 4242,
        path: 0xaaaa,
        string: 0xbbbb,
        media_type: MEDIA_TYPE_GENERIC,
        unused: 0,
        tftp_ip: 0,
        tftp_port: 0,
        partition_index: 1,
        mbr_disk_id: 0xdead_beef,
        gpt_disk_uuid: Uuid::default(),
        gpt_part_uuid: uuid,
        part_uuid: Uuid::default(),
    };
    let b = encoded(&f);
    assert_eq!(u64_at(&b, offset_of!(File, size)), 4242);
    assert_eq!(u64_at(&b, offset_of!(File, string)), 0xbbbb);
    assert_eq!(u32_at(&b, offset_of!(File, partition_index)), 1);
    assert_eq!(u32_at(&b, offset_of!(File, mbr_disk_id)), 0xdead_beef);
    let part = offset_of!(File, gpt_part_uuid);
    assert_eq!(part, 80);
    assert_eq!(u32_at(&b, part), 0x0102_0304);
    assert_eq!(&b[part + 4..part + 6], &0x0506u16.to_le_bytes());
    assert_eq!(&b[part + 8..part + 16], &[9, 10, 11, 12, 13, 14, 15, 16]);
}

#[test]
fn mp_structures_encode_their_u32_fields() {
    let info = MpInfo {
        processor_id: 7,
        lapic_id: 9,
        reserved: 0x1000,
        ..MpInfo::default()
    };
    let b = encoded(&info);
    assert_eq!(u32_at(&b, 0), 7);
    assert_eq!(u32_at(&b, 4), 9);
    assert_eq!(u64_at(&b, MpInfo::RESERVED_OFFSET), 0x1000);
    let resp = MpResponse {
        revision: 0,
        flags: MP_RESPONSE_X2APIC,
        bsp_lapic_id: 3,
        cpu_count: 4,
        cpus: 5,
    };
    let b = encoded(&resp);
    assert_eq!(u32_at(&b, offset_of!(MpResponse, flags)), 1);
    assert_eq!(u32_at(&b, offset_of!(MpResponse, bsp_lapic_id)), 3);
    assert_eq!(u64_at(&b, offset_of!(MpResponse, cpus)), 5);
}

#[test]
fn u64_structs_encode_in_declaration_order() {
    let r = EfiMemoryMapResponse {
        revision: 0,
        memmap: 1,
        memmap_size: 2,
        desc_size: 48,
        desc_version: 1,
    };
    let b = encoded(&r);
    assert_eq!(u64_at(&b, offset_of!(EfiMemoryMapResponse, memmap_size)), 2);
    assert_eq!(
        u64_at(&b, offset_of!(EfiMemoryMapResponse, desc_version)),
        1
    );
    let d = encoded(&DateAtBootResponse {
        revision: 0,
        timestamp: -5,
    });
    assert_eq!(u64_at(&d, 8), (-5i64) as u64);
}

#[test]
fn encode_refuses_short_buffers() {
    let mut buf = [0u8; 23];
    assert_eq!(
        MemmapEntry::default().encode(&mut buf),
        Err(BufferTooSmall {
            needed: 24,
            available: 23
        })
    );
    let mut out = [0u8; 16];
    assert!(encode_u64s(&[1, 2, 3], &mut out).is_err());
    encode_u64s(&[1, 2], &mut out).expect("fits");
    assert_eq!(u64_at(&out, 8), 2);
}

#[test]
fn request_ids_match_limine_crate() {
    fn check(feature: Feature, crate_id: &[u64; 4]) {
        assert_eq!(crate_id[..2], COMMON_MAGIC, "{}", feature.name());
        assert_eq!(
            feature.id(),
            [crate_id[2], crate_id[3]],
            "{}",
            feature.name()
        );
        assert_eq!(Feature::from_id([crate_id[2], crate_id[3]]), Some(feature));
    }
    check(
        Feature::BootloaderInfo,
        lr::BootloaderInfoRequest::new().id(),
    );
    check(
        Feature::ExecutableCmdline,
        lr::ExecutableCmdlineRequest::new().id(),
    );
    check(Feature::FirmwareType, lr::FirmwareTypeRequest::new().id());
    check(Feature::StackSize, lr::StackSizeRequest::new().id());
    check(Feature::Hhdm, lr::HhdmRequest::new().id());
    check(Feature::Framebuffer, lr::FramebufferRequest::new().id());
    check(Feature::PagingMode, lr::PagingModeRequest::new().id());
    check(Feature::Mp, lr::MpRequest::new().id());
    check(Feature::MemoryMap, lr::MemoryMapRequest::new().id());
    check(Feature::EntryPoint, lr::EntryPointRequest::new().id());
    check(
        Feature::ExecutableFile,
        lr::ExecutableFileRequest::new().id(),
    );
    check(Feature::Module, lr::ModuleRequest::new().id());
    check(Feature::Rsdp, lr::RsdpRequest::new().id());
    check(Feature::Smbios, lr::SmbiosRequest::new().id());
    check(
        Feature::EfiSystemTable,
        lr::EfiSystemTableRequest::new().id(),
    );
    check(Feature::EfiMemoryMap, lr::EfiMemoryMapRequest::new().id());
    check(Feature::DateAtBoot, lr::DateAtBootRequest::new().id());
    check(
        Feature::ExecutableAddress,
        lr::ExecutableAddressRequest::new().id(),
    );
    assert_eq!(Feature::from_id([1, 2]), None);
}

#[test]
fn request_lengths_match_limine_crate() {
    assert_eq!(req::HEADER_LEN, size_of::<lr::HhdmRequest>());
    assert_eq!(
        Feature::StackSize.request_len(0),
        size_of::<lr::StackSizeRequest>()
    );
    assert_eq!(Feature::Mp.request_len(0), size_of::<lr::MpRequest>());
    assert_eq!(
        Feature::EntryPoint.request_len(0),
        size_of::<lr::EntryPointRequest>()
    );
    assert_eq!(
        Feature::PagingMode.request_len(1),
        size_of::<lr::PagingModeRequest>()
    );
    assert_eq!(
        Feature::Module.request_len(1),
        size_of::<lr::ModuleRequest>()
    );
    assert_eq!(Feature::Module.request_len(0), req::HEADER_LEN);
    assert_eq!(
        internal_module::SIZE,
        size_of::<limine::modules::InternalModule>()
    );
    // The crate's latest request revisions, which the loader must handle.
    assert_eq!(lr::PagingModeRequest::new().revision(), 1);
    assert_eq!(lr::ModuleRequest::new().revision(), 1);
}

#[test]
fn feature_ids_are_unique() {
    for (i, a) in Feature::ALL.iter().enumerate() {
        for b in &Feature::ALL[i + 1..] {
            assert_ne!(a.id(), b.id());
        }
    }
}
