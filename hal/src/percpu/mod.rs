//! Per-CPU identity, CPU-local variables and the preemption guard.
//!
//! Each CPU's GS base points at its own [`PerCpu`] block, whose first field is the CPU's
//! index, so "which CPU is this?" is one `gs:`-relative load ([`current_index`]) — it is on
//! every system call's path. Kernel code always runs with the kernel's GS base: the entry
//! paths `swapgs` on every crossing from user mode (`hal::usermode`, `hal::trap`), and an
//! interrupt or exception that arrives in kernel mode while the user's GS base is loaded (an
//! NMI or machine check in the few instructions around `swapgs` on the way in and out) is
//! caught by the trap path, which checks the GS base MSR itself for every trap taken in
//! kernel mode and swaps when it holds a user address. From the first Rust instruction on
//! each CPU (before its GDT, before logging) the GS base points at that CPU's block, so the
//! load is valid from the start; the bootstrap CPU's block is index 0.
//!
//! State that exists once per CPU lives in [`CpuLocal`] variables (see [`local`]), reached
//! for this CPU only under a guard that pins the running task to it ([`PreemptGuard`],
//! [`IrqGuard`]).

use core::{
    arch::asm,
    mem::offset_of,
    sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
};

use x86_64::registers::model_specific::{GsBase, KernelGsBase};

pub mod local;
mod preempt;

pub use local::{CacheAligned, CpuLocal, Pinned};
pub use preempt::{IrqGuard, PreemptGuard, preempt_count};

/// The most CPUs Evergreen runs on (QEMU's q35 with xAPIC ids goes this far). hal moves any
/// CPU beyond it to a halt loop outside the loader's memory (`hal::smp`).
pub const MAX_CPUS: usize = 64;

/// What hal knows about one CPU.
#[repr(C)]
pub struct PerCpu {
    /// This CPU's index, 0 for the bootstrap CPU (first field: read with `gs:[0]`).
    index: u32,
    /// How many preemption guards this CPU's running task holds (changed only by this CPU,
    /// with single `gs:`-relative instructions, which an interrupt cannot split).
    preempt_count: AtomicU32,
    /// Its local APIC id.
    lapic_id: AtomicU32,
    /// Whether it has loaded its GDT, TSS and IDT (and can take an NMI safely).
    online: AtomicBool,
    /// The kernel stack pointer a running user context returns to (`hal::usermode`).
    pub(crate) kernel_rsp: AtomicU64,
    /// The user stack pointer, saved at `syscall` entry.
    pub(crate) user_rsp: AtomicU64,
    /// The user context this CPU runs (a `*mut UserContext`), while it runs one.
    pub(crate) context: AtomicU64,
}

const _: () = assert!(offset_of!(PerCpu, index) == 0);

/// Where [`PerCpu::preempt_count`] sits in the block (for `gs:`-relative access).
pub(crate) const PREEMPT_COUNT_OFFSET: usize = offset_of!(PerCpu, preempt_count);

/// The blocks themselves: a plain array, since they are what the GS base points at (a
/// `CpuLocal` is found through them).
static CPUS: [PerCpu; MAX_CPUS] = {
    let mut cpus = [const {
        PerCpu {
            index: 0,
            preempt_count: AtomicU32::new(0),
            lapic_id: AtomicU32::new(0),
            online: AtomicBool::new(false),
            kernel_rsp: AtomicU64::new(0),
            user_rsp: AtomicU64::new(0),
            context: AtomicU64::new(0),
        }
    }; MAX_CPUS];
    let mut i = 0;
    while i < MAX_CPUS {
        cpus[i].index = i as u32;
        i += 1;
    }
    cpus
};

/// Points this CPU's GS base at block `index`, the index hal assigned it. hal calls it first
/// thing on each CPU (the bootstrap CPU with 0 before any other Rust code, an AP on entry),
/// so that [`current_index`] is valid everywhere; the GDT load keeps the base.
///
/// # Panics
/// If `index >= MAX_CPUS`.
pub(crate) fn point_gs_at(index: usize) {
    GsBase::write(x86_64::VirtAddr::from_ptr(&CPUS[index]));
}

/// Finishes this CPU's block: its APIC id, and the GS base user mode starts with (`swapgs`
/// exchanges the two on each crossing).
///
/// # Panics
/// If `index >= MAX_CPUS`.
pub(crate) fn init_this_cpu(index: usize, lapic_id: u32) {
    point_gs_at(index);
    CPUS[index].lapic_id.store(lapic_id, Ordering::Relaxed);
    KernelGsBase::write(x86_64::VirtAddr::zero());
}

/// Marks this CPU as fully set up (its IDT can handle NMIs).
pub(crate) fn mark_online() {
    this_block().online.store(true, Ordering::Release);
}

/// This CPU's block.
pub(crate) fn this_block() -> &'static PerCpu {
    // `current_index` is always below MAX_CPUS: it reads an `index` field of `CPUS`.
    &CPUS[current_index() % MAX_CPUS]
}

/// The index of the CPU running this code: one load from the per-CPU block.
///
/// The answer can be stale as soon as it is returned if the task can migrate; code that
/// must stay on this CPU holds a [`PreemptGuard`] (and uses [`CpuLocal::get`]).
#[inline]
pub fn current_index() -> usize {
    let index: u32;
    // SAFETY: the GS base points at this CPU's `PerCpu` block whenever kernel code runs (see
    // the module doc), whose first field is the `u32` index, never written after
    // initialisation. Not `pure`: the value changes when the task migrates.
    unsafe {
        asm!(
            "mov {index:e}, dword ptr gs:[0]",
            index = out(reg) index,
            options(nostack, preserves_flags, readonly),
        );
    }
    index as usize
}

/// The local APIC id recorded for CPU `index`.
pub fn lapic_id(index: usize) -> Option<u32> {
    CPUS.get(index)
        .map(|cpu| cpu.lapic_id.load(Ordering::Relaxed))
}

/// Whether CPU `index` is online.
pub fn is_online(index: usize) -> bool {
    CPUS.get(index)
        .is_some_and(|cpu| cpu.online.load(Ordering::Acquire))
}

/// The number of CPUs online.
pub fn online_count() -> usize {
    CPUS.iter()
        .filter(|cpu| cpu.online.load(Ordering::Acquire))
        .count()
}

/// The preemption count of CPU `index` (for diagnostics and tests).
pub fn preempt_count_of(index: usize) -> Option<u32> {
    CPUS.get(index)
        .map(|cpu| cpu.preempt_count.load(Ordering::Relaxed))
}
