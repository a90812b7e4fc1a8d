//! In-kernel tests of user address spaces and user-memory access (run by `test=kernel`).

use alloc::{format, vec, vec::Vec};

use hal::user::{self, Access, AddressSpace, CStrError, Fault, UserPtr};

use crate::{
    check,
    ktest::{TestResult, ktest},
};

const BASE: u64 = 0x40_0000;
const PAGE: u64 = 4096;

/// Copies to and from the running user space work byte-exactly, across a page boundary; a
/// bad user pointer of every kind is a `Fault`, never a kernel fault.
#[ktest("user-copy-and-faults")]
pub fn copy_and_faults() -> TestResult {
    let space = AddressSpace::new().map_err(|e| format!("new address space: {e}"))?;
    space
        .map_zeroed(BASE, 2 * PAGE, Access::READ_WRITE)
        .map_err(|e| format!("mapping: {e}"))?;
    space
        .map_zeroed(BASE + 2 * PAGE, PAGE, Access::READ)
        .map_err(|e| format!("mapping read-only: {e}"))?;
    AddressSpace::activate(&space);
    let result = copies(&space);
    user::deactivate();
    result
}

fn copies(space: &AddressSpace) -> TestResult {
    // Straddle the boundary between the two writable pages.
    let at = BASE + PAGE - 5;
    let data: Vec<u8> = (0..64u8).collect();
    check!(user::copy_to_user(at, &data).is_ok(), "copy_to_user");
    let mut back = vec![0u8; 64];
    check!(
        user::copy_from_user(at, &mut back).is_ok(),
        "copy_from_user"
    );
    check!(back == data, "read back {back:?}");
    // What user mode sees is what the space holds (read through the direct map).
    let mut direct = vec![0u8; 64];
    check!(space.read(at, &mut direct).is_ok(), "AddressSpace::read");
    check!(direct == data, "the space holds {direct:?}");
    // Typed access.
    let ptr = UserPtr::<u64>::new(BASE + 8);
    check!(ptr.write(0x1122_3344_5566_7788).is_ok(), "UserPtr::write");
    check!(ptr.read() == Ok(0x1122_3344_5566_7788), "UserPtr::read");
    // The read-only page reads (zeros) but refuses writes.
    let ro = BASE + 2 * PAGE;
    check!(
        UserPtr::<u32>::new(ro).read() == Ok(0),
        "reading the read-only page"
    );
    let fault = Err(Fault { address: ro });
    check!(
        user::copy_to_user(ro, b"x") == fault,
        "write to a read-only page"
    );
    // Unmapped, running off the end of a mapping, kernel half, non-canonical, overflowing.
    let mut buf = [0u8; 16];
    for bad in [
        0x80_0000u64,
        BASE + 3 * PAGE - 8,
        0xffff_8000_0000_0000,
        0xffff_ffff_8000_0000,
        0x0000_8000_0000_0000,
        u64::MAX - 4,
        0,
    ] {
        let got = user::copy_from_user(bad, &mut buf);
        check!(
            got == Err(Fault { address: bad }),
            "read at {bad:#x}: {got:?}"
        );
        let got = user::copy_to_user(bad, &buf);
        check!(
            got == Err(Fault { address: bad }),
            "write at {bad:#x}: {got:?}"
        );
    }
    // Strings: found, too long, running into unmapped memory.
    check!(
        user::copy_to_user(BASE + 100, b"hello\0").is_ok(),
        "writing a string"
    );
    check!(
        user::read_cstr(BASE + 100, 16) == Ok(b"hello".to_vec()),
        "read_cstr"
    );
    check!(
        user::read_cstr(BASE + 100, 3) == Err(CStrError::TooLong),
        "read_cstr over its limit"
    );
    // Fill the second writable page and the read-only page (through the direct map) with
    // non-zero bytes: a string starting there runs into the unmapped page after them.
    let filler = vec![b'a'; PAGE as usize];
    check!(
        user::copy_to_user(BASE + PAGE, &filler).is_ok(),
        "filling a page"
    );
    check!(
        user::read_cstr(BASE + PAGE, 3 * PAGE as usize) == Ok(filler.clone()),
        "a string ending at the read-only page's first zero"
    );
    check!(
        space.write(BASE + 2 * PAGE, &filler).is_ok(),
        "filling the read-only page through the direct map"
    );
    check!(
        matches!(
            user::read_cstr(BASE + PAGE, 3 * PAGE as usize),
            Err(CStrError::Fault(_))
        ),
        "a string running into an unmapped page is a fault"
    );
    Ok(())
}

/// With SMAP, the kernel cannot touch user memory outside the copy routines.
#[ktest("user-smap-blocks-kernel")]
pub fn smap_blocks_kernel() -> TestResult {
    if !hal::mm::Protections::active().smap {
        log::info!("user-smap-blocks-kernel: the CPU has no SMAP; nothing to check");
        return Ok(());
    }
    let space = AddressSpace::new().map_err(|e| format!("{e}"))?;
    space
        .map_zeroed(BASE, PAGE, Access::READ_WRITE)
        .map_err(|e| format!("{e}"))?;
    // Page it in: SMAP is about a present page (a reserved one faults as not present).
    space
        .write(BASE, &[0])
        .map_err(|a| format!("paging in {a:#x}"))?;
    AddressSpace::activate(&space);
    let direct = hal::trap::probe_read(BASE);
    let copied = UserPtr::<u64>::new(BASE).read();
    user::deactivate();
    check!(
        direct.is_err_and(|f| f.error_code & 1 != 0),
        "a plain kernel read of a user page gave {direct:x?}"
    );
    check!(copied == Ok(0), "the copy routine read {copied:?}");
    Ok(())
}

/// Two spaces map the same address to different memory; map, protect, query and unmap do
/// what they say; dropping a space returns every frame.
#[ktest("user-spaces-isolated")]
pub fn spaces_isolated() -> TestResult {
    let free_before = hal::mm::stats().frames.free;
    {
        let a = AddressSpace::new().map_err(|e| format!("{e}"))?;
        let b = AddressSpace::new().map_err(|e| format!("{e}"))?;
        for (space, value) in [(&a, 0xaaaa_u64), (&b, 0xbbbb)] {
            space
                .map_zeroed(BASE, PAGE, Access::READ_WRITE)
                .map_err(|e| format!("{e}"))?;
            check!(
                space.write(BASE, &value.to_le_bytes()).is_ok(),
                "writing through the direct map"
            );
        }
        check!(
            a.map_zeroed(BASE, PAGE, Access::READ).is_err(),
            "a page mapped twice"
        );
        check!(
            a.map_zeroed(0xffff_8000_0000_0000, PAGE, Access::READ)
                .is_err()
                && a.map_zeroed(0, PAGE, Access::READ).is_err()
                && a.map_zeroed(BASE + 1, PAGE, Access::READ).is_err(),
            "a kernel-half, null-page or unaligned mapping was accepted"
        );
        for (space, value) in [(&a, 0xaaaa_u64), (&b, 0xbbbb)] {
            AddressSpace::activate(space);
            let seen = UserPtr::<u64>::new(BASE).read();
            check!(
                seen == Ok(value),
                "space sees {seen:x?}, expected {value:#x}"
            );
        }
        check!(a.query(BASE) == Some(Access::READ_WRITE), "query");
        check!(
            a.protect(BASE, PAGE, Access::READ).is_ok() && a.query(BASE) == Some(Access::READ),
            "protect"
        );
        AddressSpace::activate(&a);
        let denied = user::copy_to_user(BASE, b"z");
        check!(denied.is_err(), "a write after mprotect(READ) succeeded");
        check!(a.unmap(BASE, PAGE) == Ok(1), "unmap");
        check!(a.query(BASE).is_none(), "still mapped after unmap");
        let gone = UserPtr::<u64>::new(BASE).read();
        check!(gone.is_err(), "read after unmap gave {gone:?}");
        user::deactivate();
    }
    let free_after = hal::mm::stats().frames.free;
    check!(
        free_after == free_before,
        "{free_before} frames free before, {free_after} after dropping both spaces"
    );
    Ok(())
}

/// `duplicate` shares frames: a write to a private page after it (from the kernel's copy
/// routine, or through the direct map) gives the writer a copy and leaves the other space's
/// page alone; `MAP_SHARED` pages stay one page; read-only stays read-only; dropping both
/// spaces returns every frame and every shared reference.
#[ktest("user-cow-duplicate")]
pub fn cow_duplicate() -> TestResult {
    let free_before = hal::mm::stats().frames.free;
    let shared_before = hal::mm::stats().shared_mappings;
    let read = |space: &AddressSpace, at: u64| {
        let mut word = [0u8; 8];
        space.read(at, &mut word).map(|()| u64::from_le_bytes(word))
    };
    {
        let parent = AddressSpace::new().map_err(|e| format!("{e}"))?;
        parent
            .map_zeroed(BASE, 2 * PAGE, Access::READ_WRITE)
            .map_err(|e| format!("{e}"))?;
        parent
            .map_zeroed(BASE + 2 * PAGE, PAGE, Access::READ)
            .map_err(|e| format!("{e}"))?;
        parent
            .map_zeroed_shared(BASE + 3 * PAGE, PAGE, Access::READ_WRITE)
            .map_err(|e| format!("{e}"))?;
        for i in 0..4 {
            check!(
                parent
                    .write(BASE + i * PAGE, &(0x100 + i).to_le_bytes())
                    .is_ok(),
                "writing page {i}"
            );
        }
        let child = parent.duplicate().map_err(|e| format!("duplicate: {e}"))?;
        check!(
            hal::mm::stats().shared_mappings == shared_before + 4,
            "{} shared mappings after duplicating 4 pages (from {shared_before})",
            hal::mm::stats().shared_mappings
        );
        check!(
            child.query(BASE) == Some(Access::READ_WRITE)
                && child.query(BASE + 2 * PAGE) == Some(Access::READ),
            "the copy's access: {:?}, {:?}",
            child.query(BASE),
            child.query(BASE + 2 * PAGE)
        );
        // The kernel's copy routine writes a copy-on-write page of the running space.
        AddressSpace::activate(&parent);
        let wrote = UserPtr::<u64>::new(BASE).write(0xaaaa);
        let shared_wrote = UserPtr::<u64>::new(BASE + 3 * PAGE).write(0x5555);
        let read_only = UserPtr::<u64>::new(BASE + 2 * PAGE).write(1);
        user::deactivate();
        check!(
            wrote.is_ok(),
            "copy_to_user into a copy-on-write page: {wrote:?}"
        );
        check!(shared_wrote.is_ok(), "copy_to_user into a shared page");
        check!(
            read_only.is_err(),
            "a read-only page was writable after duplicate"
        );
        check!(
            read(&parent, BASE) == Ok(0xaaaa),
            "the writer sees its write"
        );
        check!(
            read(&child, BASE) == Ok(0x100),
            "the copy saw the parent's write"
        );
        check!(
            read(&child, BASE + 3 * PAGE) == Ok(0x5555),
            "a shared page was copied"
        );
        // Through the direct map, in a space that is not running.
        check!(
            child.write(BASE + PAGE, &7u64.to_le_bytes()).is_ok(),
            "direct write"
        );
        check!(
            child.write(BASE + 2 * PAGE, &8u64.to_le_bytes()).is_ok(),
            "direct write"
        );
        check!(
            read(&parent, BASE + PAGE) == Ok(0x101) && read(&parent, BASE + 2 * PAGE) == Ok(0x102),
            "direct writes to the copy reached the original"
        );
        // Read-only by mprotect stays read-only, however shared; writable again copies.
        check!(
            child.protect(BASE + PAGE, PAGE, Access::READ).is_ok(),
            "protect"
        );
        AddressSpace::activate(&child);
        let denied = UserPtr::<u64>::new(BASE + PAGE).write(9);
        let _ = child.protect(BASE + PAGE, PAGE, Access::READ_WRITE);
        let allowed = UserPtr::<u64>::new(BASE + PAGE).write(10);
        user::deactivate();
        check!(denied.is_err(), "a write after mprotect(READ) succeeded");
        check!(
            allowed == Ok(()),
            "a write after mprotect(READ_WRITE): {allowed:?}"
        );
        check!(child.unmap(BASE, 4 * PAGE) == Ok(4), "unmapping the copy");
        check!(
            read(&parent, BASE + 3 * PAGE) == Ok(0x5555),
            "the original after unmap"
        );
        drop(child);
        // The last mapping of a frame writes in place.
        AddressSpace::activate(&parent);
        let alone = UserPtr::<u64>::new(BASE + PAGE).write(11);
        user::deactivate();
        check!(
            alone.is_ok() && read(&parent, BASE + PAGE) == Ok(11),
            "write when alone"
        );
    }
    let stats = hal::mm::stats();
    check!(
        stats.shared_mappings == shared_before,
        "{} shared mappings left (from {shared_before})",
        stats.shared_mappings
    );
    check!(
        stats.frames.free == free_before,
        "{free_before} frames free before, {} after dropping both spaces",
        stats.frames.free
    );
    Ok(())
}

/// Each user context keeps its own SSE registers: two contexts load different values into
/// `xmm0`, alternate through syscalls, and each reads back its own.
#[ktest("user-fpu-per-context")]
pub fn fpu_per_context() -> TestResult {
    use hal::usermode::{Event, UserContext};
    // movq xmm0, rax; syscall; movq rax, xmm0; syscall; jmp $ (never reached)
    const CODE: [u8; 12] = [
        0x66, 0x48, 0x0f, 0x6e, 0xc0, 0x0f, 0x05, 0x66, 0x48, 0x0f, 0x7e, 0xc0,
    ];
    let mut code = CODE.to_vec();
    code.extend_from_slice(&[0x0f, 0x05, 0xeb, 0xfe]);
    let space = AddressSpace::new().map_err(|e| format!("{e}"))?;
    space
        .map_zeroed(BASE, PAGE, Access::READ_EXECUTE)
        .map_err(|e| format!("{e}"))?;
    check!(space.write(BASE, &code).is_ok(), "writing the code");
    AddressSpace::activate(&space);
    let mut contexts: [UserContext; 2] = Default::default();
    for (context, value) in contexts.iter_mut().zip([0x1111_u64, 0x2222]) {
        context.regs.rip = BASE;
        context.regs.rax = value;
    }
    let mut events = alloc::vec::Vec::new();
    // A loads, B loads, A reads, B reads (each step ends in a syscall).
    for step in [0usize, 1, 0, 1] {
        let context = &mut contexts[step];
        let event = loop {
            match context.run() {
                Event::Interrupt(_) => continue,
                other => break other,
            }
        };
        events.push(event);
        context.regs.rax = if events.len() <= 2 {
            0
        } else {
            context.regs.rax
        };
    }
    user::deactivate();
    check!(
        events.iter().all(|e| *e == Event::Syscall),
        "events {events:?}"
    );
    check!(
        contexts[0].regs.rax == 0x1111 && contexts[1].regs.rax == 0x2222,
        "xmm0 read back {:#x} and {:#x}, expected 0x1111 and 0x2222",
        contexts[0].regs.rax,
        contexts[1].regs.rax
    );
    Ok(())
}

/// Runs `context` until an event other than an interrupt.
fn run_to_event(context: &mut hal::usermode::UserContext) -> hal::usermode::Event {
    loop {
        match context.run() {
            hal::usermode::Event::Interrupt(_) => continue,
            other => break other,
        }
    }
}

/// Each user context keeps its own AVX state: one sets `ymm0`'s upper half to ones, the
/// other clears every YMM register, and each reads back its own upper half (xsave).
#[ktest("user-ymm-per-context")]
pub fn ymm_per_context() -> TestResult {
    use hal::usermode::{Event, FpuFormat, UserContext};
    if !matches!(hal::usermode::fpu_format(), FpuFormat::Xsave { features, .. } if features & 4 != 0)
    {
        return Ok(()); // no AVX on this CPU: nothing to keep
    }
    // test rax, rax; jz 2f; vpcmpeqd ymm0, ymm0, ymm0; jmp 3f; 2: vzeroall; 3: syscall;
    // vextractf128 xmm0, ymm0, 1; movq rax, xmm0; syscall; jmp $
    const CODE: [u8; 31] = [
        0x48, 0x85, 0xc0, 0x74, 0x06, 0xc5, 0xfd, 0x76, 0xc0, 0xeb, 0x03, 0xc5, 0xfc, 0x77, 0x0f,
        0x05, 0xc4, 0xe3, 0x7d, 0x19, 0xc0, 0x01, 0x66, 0x48, 0x0f, 0x7e, 0xc0, 0x0f, 0x05, 0xeb,
        0xfe,
    ];
    let space = AddressSpace::new().map_err(|e| format!("{e}"))?;
    space
        .map_zeroed(BASE, PAGE, Access::READ_EXECUTE)
        .map_err(|e| format!("{e}"))?;
    check!(space.write(BASE, &CODE).is_ok(), "writing the code");
    AddressSpace::activate(&space);
    let mut contexts: [UserContext; 2] = Default::default();
    for (context, value) in contexts.iter_mut().zip([1u64, 0]) {
        context.regs.rip = BASE;
        context.regs.rax = value;
    }
    // A sets ymm0's upper half to ones, B zeroes every YMM register, then each reads its own.
    let mut events = alloc::vec::Vec::new();
    for step in [0usize, 1, 0, 1] {
        events.push(run_to_event(&mut contexts[step]));
    }
    user::deactivate();
    check!(
        events.iter().all(|e| *e == Event::Syscall),
        "events {events:?}"
    );
    check!(
        contexts[0].regs.rax == u64::MAX && contexts[1].regs.rax == 0,
        "ymm0's upper half read back {:#x} and {:#x}, expected all ones and 0",
        contexts[0].regs.rax,
        contexts[1].regs.rax
    );
    Ok(())
}

/// A signal frame's FPU image is untrusted: one with every bit set (reserved MXCSR bits, a
/// bad XSAVE header) is sanitized so the restore does not fault in the kernel, its XMM
/// values still load, and an image of the wrong size is refused.
#[ktest("user-fpu-hostile-image")]
pub fn fpu_hostile_image() -> TestResult {
    use hal::usermode::{Event, UserContext};
    // movq rax, xmm0; syscall; jmp $
    const CODE: [u8; 9] = [0x66, 0x48, 0x0f, 0x7e, 0xc0, 0x0f, 0x05, 0xeb, 0xfe];
    let size = hal::usermode::fpu_format().size();
    let mut context = UserContext::default();
    check!(
        context.set_fpu_state(&[0u8; 100]).is_err(),
        "an image of 100 bytes is refused"
    );
    // Every bit set: MXCSR's reserved bits, XSTATE_BV beyond XCR0, XCOMP_BV, the reserved
    // header bytes; restoring it unsanitized would fault in the kernel.
    let hostile = alloc::vec![0xffu8; size];
    check!(
        context.set_fpu_state(&hostile).is_ok(),
        "a full-size image is taken"
    );
    let space = AddressSpace::new().map_err(|e| format!("{e}"))?;
    space
        .map_zeroed(BASE, PAGE, Access::READ_EXECUTE)
        .map_err(|e| format!("{e}"))?;
    check!(space.write(BASE, &CODE).is_ok(), "writing the code");
    AddressSpace::activate(&space);
    context.regs.rip = BASE;
    let event = run_to_event(&mut context);
    user::deactivate();
    check!(event == Event::Syscall, "event {event:?}");
    check!(
        context.regs.rax == u64::MAX,
        "xmm0 from the image: {:#x}",
        context.regs.rax
    );
    let state = context.fpu_state();
    let bytes = state.as_bytes();
    check!(bytes.len() == size, "image of {} bytes", bytes.len());
    if let hal::usermode::FpuFormat::Xsave { features, .. } = hal::usermode::fpu_format() {
        let bv = u64::from_le_bytes(bytes[512..520].try_into().expect("8 bytes"));
        let xcomp = u64::from_le_bytes(bytes[520..528].try_into().expect("8 bytes"));
        check!(
            bv & !features == 0 && xcomp == 0,
            "saved header XSTATE_BV {bv:#x} XCOMP_BV {xcomp:#x}"
        );
    }
    Ok(())
}

/// Private memory is reserved, not allocated: a mapping costs no frame until a page is
/// touched (by the kernel's copy routine here, which pages in as user mode does), `fork`'s
/// copy keeps untouched pages reserved, `discard` returns frames and reads back zeros,
/// `move_range` moves contents without copying, protection changes apply to reserved pages,
/// and dropping the spaces returns every frame.
#[ktest("user-demand-paging")]
pub fn demand_paging() -> TestResult {
    let free_before = hal::mm::stats().frames.free;
    {
        let space = AddressSpace::new().map_err(|e| format!("{e}"))?;
        let pages = 64;
        space
            .map_zeroed(BASE, pages * PAGE, Access::READ_WRITE)
            .map_err(|e| format!("{e}"))?;
        check!(
            space.mapped_pages() == 0,
            "{} pages have frames before any touch",
            space.mapped_pages()
        );
        check!(
            space.query(BASE + 5 * PAGE) == Some(Access::READ_WRITE),
            "a reserved page's access"
        );
        check!(
            space.fault_out_of_memory(0b110, BASE + 5 * PAGE),
            "a fault on a reserved page that is still reserved means memory ran out"
        );
        check!(
            space.map_zeroed(BASE + PAGE, PAGE, Access::READ).is_err(),
            "mapping over a reserved page"
        );
        AddressSpace::activate(&space);
        let wrote = UserPtr::<u64>::new(BASE + 3 * PAGE + 8).write(0x1234);
        let read = UserPtr::<u64>::new(BASE + 7 * PAGE).read();
        user::deactivate();
        check!(
            wrote.is_ok(),
            "copy_to_user into a reserved page: {wrote:?}"
        );
        check!(read == Ok(0), "a reserved page reads as zeros: {read:?}");
        check!(
            space.mapped_pages() == 2,
            "{} pages have frames after two touches",
            space.mapped_pages()
        );
        check!(
            !space.fault_out_of_memory(0b110, BASE + 3 * PAGE),
            "a mapped page is no OOM"
        );

        let child = space.duplicate().map_err(|e| format!("duplicate: {e}"))?;
        check!(
            child.mapped_pages() == 2,
            "the copy maps {} pages",
            child.mapped_pages()
        );
        check!(
            child.query(BASE + 40 * PAGE) == Some(Access::READ_WRITE),
            "the copy's reservation"
        );
        drop(child);

        space
            .protect(BASE + 10 * PAGE, PAGE, Access::READ)
            .map_err(|e| format!("{e}"))?;
        check!(
            space.query(BASE + 10 * PAGE) == Some(Access::READ),
            "protect on a reserved page"
        );
        space
            .protect_none(BASE + 11 * PAGE, PAGE)
            .map_err(|e| format!("{e}"))?;
        check!(
            space.query(BASE + 11 * PAGE).is_none(),
            "PROT_NONE on a reserved page"
        );

        space
            .discard(BASE, 8 * PAGE)
            .map_err(|e| format!("discard: {e}"))?;
        check!(
            space.mapped_pages() == 0,
            "{} pages have frames after discard",
            space.mapped_pages()
        );
        let mut word = [0xffu8; 8];
        check!(
            space.read(BASE + 3 * PAGE + 8, &mut word).is_ok() && word == [0; 8],
            "a discarded page reads {word:?}"
        );

        space
            .write(BASE + 20 * PAGE, b"moved")
            .map_err(|a| format!("write at {a:#x}"))?;
        let to = BASE + 0x10_0000;
        space
            .move_range(BASE + 16 * PAGE, to, 8 * PAGE)
            .map_err(|e| format!("move: {e}"))?;
        let mut moved = [0u8; 5];
        check!(
            space.read(to + 4 * PAGE, &mut moved).is_ok() && &moved == b"moved",
            "moved contents {moved:?}"
        );
        check!(
            space.query(BASE + 20 * PAGE).is_none(),
            "the old range is empty"
        );
        check!(
            space.query(to + 7 * PAGE) == Some(Access::READ_WRITE),
            "the moved reservation"
        );
        check!(
            space.move_range(to, BASE + 30 * PAGE, 8 * PAGE).is_err(),
            "a move onto reserved pages is refused"
        );
        check!(space.unmap(BASE, pages * PAGE).is_ok(), "unmap");
        check!(
            space.query(BASE + 40 * PAGE).is_none(),
            "unmap drops reservations"
        );
    }
    let free_after = hal::mm::stats().frames.free;
    check!(
        free_after == free_before,
        "free frames {free_before} before, {free_after} after"
    );
    Ok(())
}
