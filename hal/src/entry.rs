//! The kernel's entry points and the record of the machine state the loader handed over.
//!
//! The ELF entry (`_start`) and the Limine Entry Point request's target (`limine_entry`) both
//! land in [`entry_common`], which records the registers *before* any Rust code can disturb
//! them (the loader conformance probe checks them), aligns the stack and calls the kernel's
//! `main` registered with [`entry_point!`](crate::entry_point).

use core::{
    arch::naked_asm,
    sync::atomic::{AtomicU64, Ordering},
};

/// Registers as the loader left them, written once by the entry stub.
#[repr(C)]
struct EntryRecord {
    /// Bitwise OR of every general-purpose register except `rsp` (all must be 0).
    gpr_or: AtomicU64,
    /// `rsp` at entry.
    rsp: AtomicU64,
    /// The qword at `[rsp]`: the return address the loader pushed (must be 0).
    return_address: AtomicU64,
    /// RFLAGS at entry.
    rflags: AtomicU64,
    /// 1 when entered through the ELF entry, 2 through the Entry Point request.
    via: AtomicU64,
    /// The time-stamp counter at entry (for boot-time figures).
    tsc: AtomicU64,
    /// The GS base at entry (hal points it at the per-CPU block right after).
    gs_base: AtomicU64,
}

static RECORD: EntryRecord = EntryRecord {
    gpr_or: AtomicU64::new(u64::MAX),
    rsp: AtomicU64::new(0),
    return_address: AtomicU64::new(u64::MAX),
    rflags: AtomicU64::new(0),
    via: AtomicU64::new(0),
    tsc: AtomicU64::new(0),
    gs_base: AtomicU64::new(u64::MAX),
};

/// How the kernel was entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryPath {
    /// Through the ELF header's entry point.
    ElfEntry,
    /// Through the address given in the Entry Point request.
    EntryPointRequest,
}

/// The machine state at kernel entry, as recorded by the entry stub.
#[derive(Clone, Copy, Debug)]
pub struct EntryState {
    /// OR of all general-purpose registers except `rsp`.
    pub gpr_or: u64,
    /// Stack pointer at entry.
    pub rsp: u64,
    /// The return address found at `[rsp]`.
    pub return_address: u64,
    /// RFLAGS at entry.
    pub rflags: u64,
    /// Which entry point was used.
    pub path: Option<EntryPath>,
    /// The time-stamp counter at entry.
    pub tsc: u64,
    /// The GS base the loader left (hal changes it before any other Rust code runs).
    pub gs_base: u64,
}

/// Returns the recorded entry state.
pub fn entry_state() -> EntryState {
    EntryState {
        gpr_or: RECORD.gpr_or.load(Ordering::Relaxed),
        rsp: RECORD.rsp.load(Ordering::Relaxed),
        return_address: RECORD.return_address.load(Ordering::Relaxed),
        rflags: RECORD.rflags.load(Ordering::Relaxed),
        path: match RECORD.via.load(Ordering::Relaxed) {
            1 => Some(EntryPath::ElfEntry),
            2 => Some(EntryPath::EntryPointRequest),
            _ => None,
        },
        tsc: RECORD.tsc.load(Ordering::Relaxed),
        gs_base: RECORD.gs_base.load(Ordering::Relaxed),
    }
}

/// The ELF entry point.
#[unsafe(naked)]
#[unsafe(no_mangle)]
extern "C" fn _start() -> ! {
    naked_asm!(
        "mov qword ptr [rip + {record} + 32], 1",
        "jmp {common}",
        record = sym RECORD,
        common = sym entry_common,
    )
}

/// The entry point named in the Entry Point request (a loader that honours the request
/// enters here instead of at `_start`).
#[unsafe(naked)]
pub(crate) extern "C" fn limine_entry() -> ! {
    naked_asm!(
        "mov qword ptr [rip + {record} + 32], 2",
        "jmp {common}",
        record = sym RECORD,
        common = sym entry_common,
    )
}

/// Records the entry state, then calls [`rust_entry`] on a 16-byte aligned stack.
#[unsafe(naked)]
extern "C" fn entry_common() -> ! {
    naked_asm!(
        "mov qword ptr [rip + {record} + 8], rsp",
        "or rax, rbx",
        "or rax, rcx",
        "or rax, rdx",
        "or rax, rsi",
        "or rax, rdi",
        "or rax, rbp",
        "or rax, r8",
        "or rax, r9",
        "or rax, r10",
        "or rax, r11",
        "or rax, r12",
        "or rax, r13",
        "or rax, r14",
        "or rax, r15",
        "mov qword ptr [rip + {record}], rax",
        "mov rax, qword ptr [rsp]",
        "mov qword ptr [rip + {record} + 16], rax",
        "pushfq",
        "pop rax",
        "mov qword ptr [rip + {record} + 24], rax",
        "rdtsc",
        "shl rdx, 32",
        "or rax, rdx",
        "mov qword ptr [rip + {record} + 40], rax",
        // Frame pointer 0 terminates stack traces.
        "xor ebp, ebp",
        "and rsp, -16",
        "call {rust_entry}",
        "ud2",
        record = sym RECORD,
        rust_entry = sym rust_entry,
    )
}

unsafe extern "Rust" {
    /// The kernel's main function, defined by [`entry_point!`](crate::entry_point).
    safe fn __evergreen_kernel_main(boot: crate::boot::Boot) -> !;
}

/// First Rust code: brings up the serial port, copies the command line out of loader memory,
/// then runs the kernel with the one [`Boot`](crate::boot::Boot) token.
extern "C" fn rust_entry() -> ! {
    // Before anything can log or panic: both name the CPU with `percpu::current_index`.
    let loader_gs_base = x86_64::registers::model_specific::GsBase::read().as_u64();
    RECORD.gs_base.store(loader_gs_base, Ordering::Relaxed);
    crate::percpu::point_gs_at(0);
    crate::cpu::reset_rflags();
    crate::serial::init();
    crate::boot::copy_cmdline();
    let Some(boot) = crate::boot::Boot::take() else {
        // Only a jump back to the entry point gets here: the token exists already.
        crate::serial::write_str("Evergreen: kernel entered twice; halting.\n");
        crate::cpu::halt_forever()
    };
    __evergreen_kernel_main(boot)
}

/// Declares the kernel's main function: `hal::entry_point!(main)` with
/// `fn main(boot: hal::boot::Boot) -> !`.
#[macro_export]
macro_rules! entry_point {
    ($main:path) => {
        #[unsafe(export_name = "__evergreen_kernel_main")]
        fn __evergreen_kernel_main(boot: $crate::boot::Boot) -> ! {
            let main: fn($crate::boot::Boot) -> ! = $main;
            main(boot)
        }
    };
}
