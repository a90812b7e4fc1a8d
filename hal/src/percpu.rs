//! Per-CPU identity: which CPU is this?
//!
//! Each CPU's GS base points at its own [`PerCpu`] block, so finding the current CPU is one
//! memory read. The kernel keeps its own per-CPU state in arrays indexed by
//! [`current_index`].

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use x86_64::registers::model_specific::{GsBase, KernelGsBase};

/// The most CPUs Evergreen runs on (QEMU's q35 with xAPIC ids goes this far). hal moves any
/// CPU beyond it to a halt loop outside the loader's memory (`hal::smp`).
pub const MAX_CPUS: usize = 64;

/// What hal knows about one CPU.
#[repr(C)]
pub struct PerCpu {
    /// This CPU's index, 0 for the bootstrap CPU (first field: read with `gs:[0]`).
    index: u32,
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

static CPUS: [PerCpu; MAX_CPUS] = {
    let mut cpus = [const {
        PerCpu {
            index: 0,
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

/// Points this CPU's GS base at block `index`, the index hal assigned it. hal calls it after
/// loading the GDT (segment loads clear the GS base).
///
/// # Panics
/// If `index >= MAX_CPUS`.
pub(crate) fn init_this_cpu(index: usize, lapic_id: u32) {
    let block = &CPUS[index];
    block.lapic_id.store(lapic_id, Ordering::Relaxed);
    let address = x86_64::VirtAddr::from_ptr(block);
    GsBase::write(address);
    // The GS base user mode starts with (`swapgs` exchanges the two on each crossing).
    KernelGsBase::write(x86_64::VirtAddr::zero());
}

/// Marks this CPU as fully set up (its IDT can handle NMIs).
pub(crate) fn mark_online() {
    if let Some(block) = this_block() {
        block.online.store(true, Ordering::Release);
    }
}

pub(crate) fn this_block() -> Option<&'static PerCpu> {
    let base = GsBase::read().as_u64();
    CPUS.iter()
        .find(|cpu| core::ptr::from_ref(*cpu) as u64 == base)
}

/// The index of the CPU running this code (0 before per-CPU set-up).
pub fn current_index() -> usize {
    this_block().map_or(0, |cpu| cpu.index as usize)
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
