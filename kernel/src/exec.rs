//! Loading programs: a static ELF executable (`ET_EXEC`, or static-PIE `ET_DYN`) into a
//! fresh address space, with the SysV initial stack Linux builds (argv, envp, auxv); and
//! `#!` scripts, whose interpreter runs with the script's path as an argument.

use alloc::{sync::Arc, vec::Vec};

use elf::{ElfBytes, abi, endian::LittleEndian};
use hal::{
    mm::PAGE_SIZE,
    user::{Access, AddressSpace},
    usermode::UserContext,
};

/// Where a static-PIE (`ET_DYN`) executable is placed: this base plus a random number of
/// pages below [`PIE_RANDOM_PAGES`] (Linux's base, and 16 GiB of randomness).
const PIE_BASE: u64 = 0x0000_5555_5555_0000;
const PIE_RANDOM_PAGES: u64 = 1 << 22;
/// The top of the initial stack, what is mapped at first, and how far it may grow (Linux's
/// default `RLIMIT_STACK`): a fault below the mapped part and above the limit maps the pages
/// up to it.
const STACK_TOP: u64 = 0x0000_7fff_ffff_0000;
const STACK_SIZE: u64 = 256 * 1024;
const STACK_LIMIT: u64 = 8 * 1024 * 1024;

/// Why a program could not be started (Linux's `execve` errors).
#[derive(Debug, PartialEq, Eq)]
pub enum ExecError {
    /// Not an executable this kernel runs (`ENOEXEC`), and why.
    NoExec(&'static str),
    /// Out of memory (`ENOMEM`).
    NoMemory,
    /// An argument or environment string is too long, or there are too many (`E2BIG`).
    TooBig,
}

impl core::fmt::Display for ExecError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoExec(why) => write!(f, "not an executable Evergreen runs: {why}"),
            Self::NoMemory => write!(f, "out of memory"),
            Self::TooBig => write!(f, "arguments too long"),
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

/// Loads `image` (a static ELF executable) with `argv` and `envp`.
pub fn load(path: &str, image: &[u8], argv: &[&str], envp: &[&str]) -> Result<Image, ExecError> {
    let file = ElfBytes::<LittleEndian>::minimal_parse(image)
        .map_err(|_| ExecError::NoExec("not an ELF file"))?;
    let header = &file.ehdr;
    if header.class != elf::file::Class::ELF64 || header.e_machine != abi::EM_X86_64 {
        return Err(ExecError::NoExec("not an x86-64 ELF file"));
    }
    let bias = match header.e_type {
        abi::ET_EXEC => 0,
        abi::ET_DYN => {
            let random = u64::from_le_bytes(crate::syscall::random_bytes::<8>());
            PIE_BASE + random % PIE_RANDOM_PAGES * PAGE_SIZE
        }
        _ => return Err(ExecError::NoExec("neither ET_EXEC nor ET_DYN")),
    };
    let segments = file
        .segments()
        .ok_or(ExecError::NoExec("no program headers"))?;
    if segments.iter().any(|p| p.p_type == abi::PT_INTERP) {
        log::warn!("exec {path}: a dynamically linked program (PT_INTERP); only static ones run");
        return Err(ExecError::NoExec("dynamically linked"));
    }
    let space = AddressSpace::new().map_err(|_| ExecError::NoMemory)?;
    let mut end = 0u64;
    let mut phdr = 0u64;
    for p in segments.iter() {
        if p.p_type == abi::PT_PHDR {
            phdr = bias + p.p_vaddr;
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
        let offset = usize::try_from(p.p_offset).map_err(|_| ExecError::NoExec("offset"))?;
        let filesz = usize::try_from(p.p_filesz).map_err(|_| ExecError::NoExec("size"))?;
        let bytes = image
            .get(
                offset
                    ..offset
                        .checked_add(filesz)
                        .ok_or(ExecError::NoExec("size"))?,
            )
            .ok_or(bad)?;
        let access = Access {
            write: p.p_flags & abi::PF_W != 0,
            execute: p.p_flags & abi::PF_X != 0,
        };
        map_segment(&space, start, seg_end, access)?;
        space
            .write(start, bytes)
            .map_err(|_| ExecError::NoExec("segment not mapped"))?;
        if phdr == 0 && p.p_offset == 0 {
            phdr = start + header.e_phoff;
        }
        end = end.max(seg_end);
    }
    if end == 0 {
        return Err(ExecError::NoExec("no loadable segment"));
    }
    let entry = bias + header.e_entry;
    let stack_bottom = STACK_TOP - STACK_SIZE;
    space
        .map_zeroed(stack_bottom, STACK_SIZE, Access::READ_WRITE)
        .map_err(|_| ExecError::NoMemory)?;
    let aux = AuxInfo {
        phdr,
        phnum: u64::from(header.e_phnum),
        phent: u64::from(header.e_phentsize),
        entry,
        execfn: path,
    };
    space.set_stack(STACK_TOP - STACK_LIMIT, stack_bottom);
    let rsp = build_stack(&space, argv, envp, &aux)?;
    let mut context = UserContext::default();
    context.regs.rip = entry;
    context.regs.rsp = rsp;
    Ok(Image {
        space,
        context,
        brk: end.next_multiple_of(PAGE_SIZE),
        // Below the stack's whole reservation, with a gap.
        mmap_top: STACK_TOP - STACK_LIMIT - 16 * PAGE_SIZE,
    })
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
        (g::AT_BASE, 0),
        (g::AT_FLAGS, 0),
        (g::AT_ENTRY, aux.entry),
        (g::AT_UID, 0),
        (g::AT_EUID, 0),
        (g::AT_GID, 0),
        (g::AT_EGID, 0),
        (g::AT_SECURE, 0),
        (g::AT_RANDOM, random),
        (g::AT_HWCAP, 0),
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

    fn refused(image: &[u8]) -> Result<(), alloc::string::String> {
        match load("/test", image, &["/test"], &[]) {
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
            let _ = load("/test", &copy, &["/test"], &[]);
        }
        Ok(())
    }
}
