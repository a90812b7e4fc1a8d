//! Loading programs: an ELF executable (`ET_EXEC`, or PIE `ET_DYN` at a random base) into a
//! fresh address space, with the SysV initial stack Linux builds (argv, envp, auxv). A
//! dynamically linked one names its interpreter (`PT_INTERP`: `ld-linux-x86-64.so.2`,
//! `ld-musl-x86_64.so.1`), which is loaded below the stack and started instead; it maps the
//! libraries itself. `#!` scripts are the syscall layer's: their interpreter runs with the
//! script's path as an argument.

use alloc::{string::String, sync::Arc, vec::Vec};

use elf::{ElfBytes, abi, endian::LittleEndian};
use hal::{
    mm::PAGE_SIZE,
    user::{Access, AddressSpace},
    usermode::UserContext,
};

use crate::fs::data::FileData;

/// Where a static-PIE (`ET_DYN`) executable is placed: this base plus a random number of
/// pages below [`PIE_RANDOM_PAGES`] (Linux's base, and 16 GiB of randomness).
const PIE_BASE: u64 = 0x0000_5555_5555_0000;
const PIE_RANDOM_PAGES: u64 = 1 << 22;
/// The top of the initial stack, what is mapped at first, and how far it may grow (Linux's
/// default `RLIMIT_STACK`): a fault below the mapped part and above the limit maps the pages
/// up to it.
pub const STACK_TOP: u64 = 0x0000_7fff_ffff_0000;
const STACK_SIZE: u64 = 256 * 1024;
const STACK_LIMIT: u64 = 8 * 1024 * 1024;
/// Where `mmap` without an address starts placing mappings (growing down): below the stack's
/// whole reservation, with a gap. A program's interpreter goes first, up to
/// [`INTERP_RANDOM_PAGES`] pages lower.
const MMAP_TOP: u64 = STACK_TOP - STACK_LIMIT - 16 * PAGE_SIZE;
const INTERP_RANDOM_PAGES: u64 = 1 << 16;

/// Why a program could not be started (Linux's `execve` errors).
#[derive(Debug, PartialEq, Eq)]
pub enum ExecError {
    /// Not an executable this kernel runs (`ENOEXEC`), and why.
    NoExec(&'static str),
    /// Out of memory (`ENOMEM`).
    NoMemory,
    /// An argument or environment string is too long, or there are too many (`E2BIG`).
    TooBig,
    /// The interpreter could not be opened: the errno of its lookup (`ENOENT`, `EACCES`, …).
    Interpreter(u32),
}

impl core::fmt::Display for ExecError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoExec(why) => write!(f, "not an executable Evergreen runs: {why}"),
            Self::NoMemory => write!(f, "out of memory"),
            Self::TooBig => write!(f, "arguments too long"),
            Self::Interpreter(errno) => {
                write!(f, "the interpreter cannot be opened (errno {errno})")
            }
        }
    }
}

/// A loaded program, ready to run.
pub struct Image {
    /// Its address space.
    pub space: Arc<AddressSpace>,
    /// The registers to start with.
    pub context: UserContext,
    /// The initial program break (the end of its data).
    pub brk: u64,
    /// Where `mmap` without an address starts placing mappings (growing down).
    pub mmap_top: u64,
}

/// Loads `image` (an ELF executable) with `argv` and `envp`. A dynamically linked program
/// (`PT_INTERP`) gets its interpreter too, whose bytes `interpreter` reads from the file
/// system by path: the interpreter then starts, and finds the program through the auxiliary
/// vector (`AT_PHDR`, `AT_ENTRY`, `AT_BASE`), as on Linux.
pub fn load(
    path: &str,
    image: &[u8],
    file: Option<&mut FileData>,
    argv: &[&str],
    envp: &[&str],
    interpreter: &mut dyn FnMut(&str) -> Result<Vec<u8>, ExecError>,
) -> Result<Image, ExecError> {
    let space = AddressSpace::new().map_err(|_| ExecError::NoMemory)?;
    let random = u64::from_le_bytes(crate::syscall::random_bytes::<8>());
    let pie_base = PIE_BASE + random % PIE_RANDOM_PAGES * PAGE_SIZE;
    let program = load_elf(&space, image, file, pie_base)?;
    let mut mmap_top = MMAP_TOP;
    let (start, base) = match &program.interp {
        None => (program.entry, 0),
        Some(interp) => {
            let bytes = interpreter(interp)?;
            check_interpreter(&bytes)?;
            // An `ET_EXEC` interpreter goes where its addresses say (Linux runs one too).
            let base = match elf_span(&bytes)? {
                Some(size) => {
                    let random = u64::from_le_bytes(crate::syscall::random_bytes::<8>());
                    (mmap_top - size.next_multiple_of(PAGE_SIZE))
                        .checked_sub(random % INTERP_RANDOM_PAGES * PAGE_SIZE)
                        .ok_or(ExecError::NoExec("interpreter too large"))?
                }
                None => 0,
            };
            // Its own PT_INTERP, if any, is not followed (as on Linux).
            let loaded = load_elf(&space, &bytes, None, base)?;
            if base != 0 {
                mmap_top = base - 16 * PAGE_SIZE;
            }
            (loaded.entry, loaded.bias)
        }
    };
    let stack_bottom = STACK_TOP - STACK_SIZE;
    space
        .map_zeroed(stack_bottom, STACK_SIZE, Access::READ_WRITE)
        .map_err(|_| ExecError::NoMemory)?;
    let aux = AuxInfo {
        phdr: program.phdr,
        phnum: program.phnum,
        phent: program.phent,
        entry: program.entry,
        base,
        execfn: path,
    };
    space.set_stack(STACK_TOP - STACK_LIMIT, stack_bottom);
    let rsp = build_stack(&space, argv, envp, &aux)?;
    let mut context = UserContext::default();
    context.regs.rip = start;
    context.regs.rsp = rsp;
    Ok(Image {
        space,
        context,
        brk: program.end.next_multiple_of(PAGE_SIZE),
        mmap_top,
    })
}

/// What [`load_elf`] placed.
struct Loaded {
    /// What was added to the file's addresses (0 for `ET_EXEC`).
    bias: u64,
    entry: u64,
    /// The program headers' address in memory, their count and size.
    phdr: u64,
    phnum: u64,
    phent: u64,
    /// The end of the highest segment.
    end: u64,
    /// The interpreter `PT_INTERP` names.
    interp: Option<String>,
}

/// The ELF header of `image`, checked to be an x86-64 executable or shared object.
fn parse(image: &[u8]) -> Result<ElfBytes<'_, LittleEndian>, ExecError> {
    let file = ElfBytes::<LittleEndian>::minimal_parse(image)
        .map_err(|_| ExecError::NoExec("not an ELF file"))?;
    let header = &file.ehdr;
    if header.class != elf::file::Class::ELF64 || header.e_machine != abi::EM_X86_64 {
        return Err(ExecError::NoExec("not an x86-64 ELF file"));
    }
    if header.e_type != abi::ET_EXEC && header.e_type != abi::ET_DYN {
        return Err(ExecError::NoExec("neither ET_EXEC nor ET_DYN"));
    }
    Ok(file)
}

/// The checks Linux's `load_elf_binary` makes of an interpreter before it loads it, with its
/// errors: `EIO` for a file shorter than an ELF header, `ELIBBAD` for one that is no ELF file
/// or not for this machine, `EINVAL` for one neither `ET_EXEC` nor `ET_DYN`.
fn check_interpreter(image: &[u8]) -> Result<(), ExecError> {
    use linux_raw_sys::errno as e;
    const EHDR_SIZE: usize = 64;
    if image.len() < EHDR_SIZE {
        return Err(ExecError::Interpreter(e::EIO));
    }
    let file = ElfBytes::<LittleEndian>::minimal_parse(image)
        .map_err(|_| ExecError::Interpreter(e::ELIBBAD))?;
    let header = &file.ehdr;
    if header.class != elf::file::Class::ELF64 || header.e_machine != abi::EM_X86_64 {
        return Err(ExecError::Interpreter(e::ELIBBAD));
    }
    if header.e_type != abi::ET_EXEC && header.e_type != abi::ET_DYN {
        return Err(ExecError::Interpreter(e::EINVAL));
    }
    Ok(())
}

/// How far the loadable segments of an `ET_DYN` image reach from address 0 (`None` for an
/// `ET_EXEC` one, which is not moved).
fn elf_span(image: &[u8]) -> Result<Option<u64>, ExecError> {
    let file = parse(image)?;
    if file.ehdr.e_type != abi::ET_DYN {
        return Ok(None);
    }
    let segments = file
        .segments()
        .ok_or(ExecError::NoExec("no program headers"))?;
    let end = segments
        .iter()
        .filter(|p| p.p_type == abi::PT_LOAD)
        .map(|p| p.p_vaddr.saturating_add(p.p_memsz))
        .max()
        .ok_or(ExecError::NoExec("no loadable segment"))?;
    if end > 1 << 40 {
        return Err(ExecError::NoExec("an interpreter too large"));
    }
    Ok(Some(end))
}

/// Maps the loadable segments of `image` into `space`; an `ET_DYN` image at `dyn_base`.
/// With the file's pages (`pages`; `image` then holds at least its headers), each segment
/// maps them copy-on-write where it can, as Linux maps a program from the page cache; what
/// cannot be shared (a page another segment also covers, the part of the last page past
/// the file's bytes) is copied.
fn load_elf(
    space: &AddressSpace,
    image: &[u8],
    mut pages: Option<&mut FileData>,
    dyn_base: u64,
) -> Result<Loaded, ExecError> {
    let file = parse(image)?;
    let header = &file.ehdr;
    let bias = if header.e_type == abi::ET_DYN {
        dyn_base
    } else {
        0
    };
    let segments = file
        .segments()
        .ok_or(ExecError::NoExec("no program headers"))?;
    let mut interp = None;
    let mut end = 0u64;
    let mut phdr = 0u64;
    for p in segments.iter() {
        if p.p_type == abi::PT_INTERP {
            interp = Some(interp_path(image, p.p_offset, p.p_filesz)?);
        }
        if p.p_type == abi::PT_PHDR {
            phdr = bias.wrapping_add(p.p_vaddr);
        }
        if p.p_type != abi::PT_LOAD || p.p_memsz == 0 {
            continue;
        }
        let bad = ExecError::NoExec("a segment outside user space or the file");
        let start = bias
            .checked_add(p.p_vaddr)
            .ok_or(ExecError::NoExec("overflow"))?;
        let seg_end = start
            .checked_add(p.p_memsz)
            .ok_or(ExecError::NoExec("overflow"))?;
        if p.p_filesz > p.p_memsz || seg_end > hal::user::USER_END || start < PAGE_SIZE {
            return Err(bad);
        }
        let access = Access {
            write: p.p_flags & abi::PF_W != 0,
            execute: p.p_flags & abi::PF_X != 0,
        };
        match pages.as_deref_mut() {
            Some(data) => {
                let in_file = p
                    .p_offset
                    .checked_add(p.p_filesz)
                    .is_some_and(|e| e <= data.len() as u64);
                if !in_file {
                    return Err(bad);
                }
                map_from_file(space, data, start, seg_end, p.p_offset, p.p_filesz, access)?;
            }
            None => {
                let bytes = file_range(image, p.p_offset, p.p_filesz).ok_or(bad)?;
                map_segment(space, start, seg_end, access)?;
                space
                    .write(start, bytes)
                    .map_err(|_| ExecError::NoExec("segment not mapped"))?;
            }
        }
        if phdr == 0 && p.p_offset == 0 {
            phdr = start + header.e_phoff;
        }
        end = end.max(seg_end);
    }
    if end == 0 {
        return Err(ExecError::NoExec("no loadable segment"));
    }
    Ok(Loaded {
        bias,
        entry: bias.wrapping_add(header.e_entry),
        phdr,
        phnum: u64::from(header.e_phnum),
        phent: u64::from(header.e_phentsize),
        end,
        interp,
    })
}

/// Maps a segment (`[start, end)` in memory, `filesz` bytes of the file at `offset`) from
/// the file's pages: whole pages of file bytes copy-on-write; a page already mapped (shared
/// with another segment) and the last, partial page are copied; the rest is zeroed memory.
fn map_from_file(
    space: &AddressSpace,
    data: &mut FileData,
    start: u64,
    end: u64,
    offset: u64,
    filesz: u64,
    access: Access,
) -> Result<(), ExecError> {
    let congruent = start % PAGE_SIZE == offset % PAGE_SIZE;
    let file_end = start + filesz;
    let mut page = start & !(PAGE_SIZE - 1);
    if congruent {
        let mut index = ((offset - start % PAGE_SIZE) / PAGE_SIZE) as usize;
        // Pages wholly of file bytes (the first may start before the segment, as Linux
        // maps it).
        while page + PAGE_SIZE <= file_end {
            if space.query(page).is_some() {
                break;
            }
            let Some(frame) = data.page(index) else {
                break;
            };
            space
                .map_cache(page, frame, access, false, false)
                .map_err(|_| ExecError::NoMemory)?;
            page += PAGE_SIZE;
            index += 1;
        }
    }
    // The rest: fresh pages (or the union with a segment that mapped them), the remaining
    // file bytes copied in.
    if page < end {
        map_segment(space, page.max(start), end, access)?;
        let from = page.max(start);
        if from < file_end {
            let mut bytes = alloc::vec![0u8; (file_end - from) as usize];
            data.read_at((offset + (from - start)) as usize, &mut bytes);
            space
                .write(from, &bytes)
                .map_err(|_| ExecError::NoExec("segment not mapped"))?;
        }
    }
    Ok(())
}

/// `len` bytes of `image` at `offset`, if the file has them.
fn file_range(image: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    let offset = usize::try_from(offset).ok()?;
    let len = usize::try_from(len).ok()?;
    image.get(offset..offset.checked_add(len)?)
}

/// The interpreter's path from a `PT_INTERP` segment: 2 to `PATH_MAX` bytes ending in a NUL
/// (it is cut at the first one), as Linux takes it.
fn interp_path(image: &[u8], offset: u64, len: u64) -> Result<String, ExecError> {
    let bytes = file_range(image, offset, len)
        .filter(|b| b.len() > 1 && b.len() <= crate::fs::PATH_MAX && b.ends_with(&[0]))
        .ok_or(ExecError::NoExec("a bad PT_INTERP"))?;
    let bytes = bytes.split(|&b| b == 0).next().unwrap_or(bytes);
    core::str::from_utf8(bytes)
        .ok()
        .filter(|s| !s.is_empty())
        .map(String::from)
        .ok_or(ExecError::NoExec("a bad PT_INTERP"))
}

/// The bytes of the interpreter a dynamically linked program names, looked up from `base`:
/// a regular file with an execute bit, else `EACCES` (Linux's `open_exec`).
///
/// `program` is the program being loaded, whose pages the caller holds locked: a program
/// naming itself as its interpreter is refused (`ELIBBAD`) rather than waited for.
pub fn read_interpreter(
    base: &Arc<crate::fs::Node>,
    path: &str,
    program: &crate::fs::Node,
) -> Result<Vec<u8>, ExecError> {
    use core::sync::atomic::Ordering;

    use crate::fs::Kind;
    let node = crate::fs::lookup(base, path, true).map_err(ExecError::Interpreter)?;
    if core::ptr::eq(&*node, program) {
        return Err(ExecError::Interpreter(linux_raw_sys::errno::ELIBBAD));
    }
    match &node.kind {
        Kind::File(data) if node.mode.load(Ordering::Relaxed) & 0o111 != 0 => {
            Ok(data.lock().to_vec())
        }
        _ => Err(ExecError::Interpreter(linux_raw_sys::errno::EACCES)),
    }
}

/// The `comm` Linux gives a program: the first 15 bytes of its file name.
pub fn comm_of(path: &str) -> [u8; 16] {
    let name = path.rsplit('/').next().unwrap_or(path).as_bytes();
    let mut comm = [0u8; 16];
    let n = name.len().min(15);
    comm[..n].copy_from_slice(&name[..n]);
    comm
}

/// Maps the pages of `[start, end)` with `access`; pages an earlier segment mapped get the
/// union of both accesses.
fn map_segment(
    space: &AddressSpace,
    start: u64,
    end: u64,
    access: Access,
) -> Result<(), ExecError> {
    let first = start & !(PAGE_SIZE - 1);
    let mut page = first;
    while page < end {
        match space.query(page) {
            Some(old) => {
                let union = Access {
                    write: old.write || access.write,
                    execute: old.execute || access.execute,
                };
                space
                    .protect(page, PAGE_SIZE, union)
                    .map_err(|_| ExecError::NoMemory)?;
            }
            None => space
                .map_zeroed(page, PAGE_SIZE, access)
                .map_err(|_| ExecError::NoMemory)?,
        }
        page += PAGE_SIZE;
    }
    Ok(())
}

struct AuxInfo<'a> {
    phdr: u64,
    phnum: u64,
    phent: u64,
    entry: u64,
    base: u64,
    execfn: &'a str,
}

/// Writes the SysV initial stack (strings, `AT_RANDOM` bytes, auxv, envp, argv, argc) below
/// `STACK_TOP`; returns the stack pointer to start with (at `argc`).
fn build_stack(
    space: &AddressSpace,
    argv: &[&str],
    envp: &[&str],
    aux: &AuxInfo<'_>,
) -> Result<u64, ExecError> {
    let mut top = STACK_TOP;
    let push_bytes = |bytes: &[u8], top: &mut u64| -> Result<u64, ExecError> {
        *top = top
            .checked_sub(bytes.len() as u64)
            .filter(|t| *t > STACK_TOP - STACK_SIZE / 2)
            .ok_or(ExecError::TooBig)?;
        space.write(*top, bytes).map_err(|_| ExecError::TooBig)?;
        Ok(*top)
    };
    let push_str = |s: &str, top: &mut u64| -> Result<u64, ExecError> {
        let mut bytes = Vec::with_capacity(s.len() + 1);
        bytes.extend_from_slice(s.as_bytes());
        bytes.push(0);
        push_bytes(&bytes, top)
    };
    let execfn = push_str(aux.execfn, &mut top)?;
    let platform = push_str("x86_64", &mut top)?;
    let envs: Vec<u64> = envp
        .iter()
        .map(|e| push_str(e, &mut top))
        .collect::<Result<_, _>>()?;
    let args: Vec<u64> = argv
        .iter()
        .map(|a| push_str(a, &mut top))
        .collect::<Result<_, _>>()?;
    let random = push_bytes(&crate::syscall::random_bytes::<16>(), &mut top)?;
    use linux_raw_sys::auxvec as g;
    let auxv: [(u32, u64); 19] = [
        (g::AT_PHDR, aux.phdr),
        (g::AT_PHENT, aux.phent),
        (g::AT_PHNUM, aux.phnum),
        (g::AT_PAGESZ, PAGE_SIZE),
        (g::AT_BASE, aux.base),
        (g::AT_FLAGS, 0),
        (g::AT_ENTRY, aux.entry),
        (g::AT_UID, 0),
        (g::AT_EUID, 0),
        (g::AT_GID, 0),
        (g::AT_EGID, 0),
        (g::AT_SECURE, 0),
        (g::AT_RANDOM, random),
        // As Linux: the CPU's feature bits of CPUID leaf 1, EDX.
        (g::AT_HWCAP, u64::from(core::arch::x86_64::__cpuid(1).edx)),
        (g::AT_CLKTCK, 100),
        (g::AT_PLATFORM, platform),
        (g::AT_EXECFN, execfn),
        // The stack a signal handler needs, which grows with the FPU image (as Linux's).
        (g::AT_MINSIGSTKSZ, crate::signal::min_sigstack_size()),
        (g::AT_NULL, 0),
    ];
    let mut words: Vec<u64> = Vec::new();
    words.push(args.len() as u64);
    words.extend(&args);
    words.push(0);
    words.extend(&envs);
    words.push(0);
    for (key, value) in auxv {
        words.push(u64::from(key));
        words.push(value);
    }
    // argc must end up 16-byte aligned.
    let size = words.len() as u64 * 8;
    let rsp = (top - size) & !15;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    space.write(rsp, &bytes).map_err(|_| ExecError::TooBig)?;
    Ok(rsp)
}

/// Tests of program loading.
#[cfg(feature = "tests")]
pub mod tests {
    use alloc::vec::Vec;

    use super::{ExecError, load};
    use crate::{
        check,
        ktest::{TestResult, ktest},
    };

    fn no_interpreter(_: &str) -> Result<Vec<u8>, ExecError> {
        Err(ExecError::NoExec("no interpreter in this test"))
    }

    fn refused(image: &[u8]) -> Result<(), alloc::string::String> {
        match load("/test", image, None, &["/test"], &[], &mut no_interpreter) {
            Err(ExecError::NoExec(_)) => Ok(()),
            Err(other) => Err(alloc::format!("refused for the wrong reason: {other}")),
            Ok(_) => Err("accepted".into()),
        }
    }

    /// Malformed executables are refused with `ENOEXEC` and a reason, never a panic: garbage,
    /// truncations, the kernel's own ELF (its segments lie in the kernel half), and a
    /// thousand corrupted copies of it.
    #[ktest("exec-refuses-bad-elf")]
    pub fn refuses_bad_elf() -> TestResult {
        check!(refused(b"").is_ok(), "an empty file");
        check!(
            refused(b"#!/bin/sh\necho hi\n").is_ok(),
            "a script (no #! support yet)"
        );
        check!(
            refused(&[0x7f, b'E', b'L', b'F']).is_ok(),
            "a bare ELF magic"
        );
        let Some(kernel) = hal::boot::executable_file().map(|f| f.data) else {
            return Err("no kernel ELF file to corrupt".into());
        };
        refused(kernel).map_err(|e| alloc::format!("the kernel's own ELF: {e}"))?;
        for len in [16, 63, 64, 100, 500] {
            refused(&kernel[..len.min(kernel.len())])
                .map_err(|e| alloc::format!("the first {len} bytes: {e}"))?;
        }
        let header: Vec<u8> = kernel[..4096.min(kernel.len())].to_vec();
        let mut state = 0x1234_5678_9abc_def0u64;
        for _ in 0..1000 {
            let mut copy = header.clone();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state % 128) as usize;
                copy[at] = (state >> 32) as u8;
            }
            // Any outcome but a panic will do; a corrupted header may even describe a
            // loadable program, which must then load without harm.
            let _ = load("/test", &copy, None, &["/test"], &[], &mut no_interpreter);
            // And through the file's pages, as `execve` loads (segments mapped from them).
            if let Some(mut pages) = crate::fs::data::FileData::from_bytes(&copy) {
                let _ = load(
                    "/test",
                    &copy,
                    Some(&mut pages),
                    &["/test"],
                    &[],
                    &mut no_interpreter,
                );
            }
        }
        Ok(())
    }
}
