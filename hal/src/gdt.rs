//! Per-CPU GDT and TSS, with separate interrupt stacks (IST) for the exceptions that can
//! arrive on a broken stack: double fault, NMI and machine check.

use core::cell::UnsafeCell;

use spin::Once;
use x86_64::{
    VirtAddr,
    instructions::{
        segmentation::{CS, DS, ES, FS, GS, SS, Segment},
        tables::load_tss,
    },
    registers::{model_specific::GsBase, segmentation::SegmentSelector},
    structures::{
        gdt::{Descriptor, GlobalDescriptorTable},
        tss::TaskStateSegment,
    },
};

use crate::percpu::MAX_CPUS;

/// IST slot (1-based in the IDT, 0-based in the TSS) for double faults.
pub const IST_DOUBLE_FAULT: u16 = 1;
/// IST slot for NMIs.
pub const IST_NMI: u16 = 2;
/// IST slot for machine checks.
pub const IST_MACHINE_CHECK: u16 = 3;

const IST_STACK_SIZE: usize = 16 * 1024;
const IST_COUNT: usize = 3;
/// The stacks of each CPU: the three IST stacks, then the one interrupts and exceptions from
/// user mode arrive on (the TSS's `rsp0`).
const STACKS: usize = IST_COUNT + 1;

/// Kernel code selector.
pub const KERNEL_CODE: SegmentSelector = SegmentSelector(0x08);
/// Kernel data selector.
pub const KERNEL_DATA: SegmentSelector = SegmentSelector(0x10);
/// User data selector (RPL 3), where `sysret` expects it: right after kernel data.
pub const USER_DATA: SegmentSelector = SegmentSelector(0x18 | 3);
/// User code selector (RPL 3).
pub const USER_CODE: SegmentSelector = SegmentSelector(0x20 | 3);

/// Memory the CPU uses as a stack; Rust code never reads or writes it.
#[repr(C, align(16))]
struct Stack(UnsafeCell<[u8; IST_STACK_SIZE]>);

// SAFETY: only the CPU (on exception entry) touches the bytes; Rust only takes the address.
unsafe impl Sync for Stack {}

// Plain arrays indexed by the CPU index, not `CpuLocal`s: they are built and loaded while
// the CPU comes up, by the index hal assigned it (a parked CPU borrows CPU 0's GDT), and the
// CPU itself only ever reaches them through its GDTR, TR and the TSS's stack pointers —
// never through its GS base. The stacks also need no cache-line padding of their own.
static IST_STACKS: [[Stack; STACKS]; MAX_CPUS] =
    [const { [const { Stack(UnsafeCell::new([0; IST_STACK_SIZE])) }; STACKS] }; MAX_CPUS];

struct CpuTables {
    gdt: GlobalDescriptorTable<8>,
    tss_selector: SegmentSelector,
}

static TSS: [Once<TaskStateSegment>; MAX_CPUS] = [const { Once::new() }; MAX_CPUS];
static TABLES: [Once<CpuTables>; MAX_CPUS] = [const { Once::new() }; MAX_CPUS];

/// Builds and loads CPU `index`'s GDT and TSS and reloads every segment register. hal calls
/// it once per CPU, with the index it assigned that CPU, after
/// [`crate::percpu::init_this_cpu`] (whose GS base it keeps): two CPUs never share a TSS or
/// IST stacks.
///
/// # Panics
/// If `index >= MAX_CPUS`.
pub(crate) fn init_this_cpu(index: usize) {
    let tss = TSS[index].call_once(|| {
        let mut tss = TaskStateSegment::new();
        for (slot, stack) in IST_STACKS[index].iter().enumerate() {
            let top = VirtAddr::from_ptr(stack.0.get()) + IST_STACK_SIZE as u64;
            if slot < IST_COUNT {
                tss.interrupt_stack_table[slot] = top;
            } else {
                tss.privilege_stack_table[0] = top;
            }
        }
        tss
    });
    let tables = TABLES[index].call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        debug_assert_eq!((code, data), (KERNEL_CODE, KERNEL_DATA));
        // User segments in the order `sysret` expects (data before code).
        gdt.append(Descriptor::user_data_segment());
        gdt.append(Descriptor::user_code_segment());
        let tss_selector = gdt.append(Descriptor::tss_segment(tss));
        CpuTables { gdt, tss_selector }
    });
    tables.gdt.load();
    // Loading a GS selector clears the GS base, which already points at the per-CPU block.
    let gs_base = GsBase::read();
    // SAFETY: the selectors index the descriptors appended above, in the GDT just loaded; the
    // TSS descriptor is this CPU's own and has not been loaded before.
    unsafe {
        CS::set_reg(KERNEL_CODE);
        SS::set_reg(KERNEL_DATA);
        DS::set_reg(KERNEL_DATA);
        ES::set_reg(KERNEL_DATA);
        FS::set_reg(SegmentSelector(0));
        GS::set_reg(SegmentSelector(0));
        GsBase::write(gs_base);
        load_tss(tables.tss_selector);
    }
}

/// Loads the bootstrap CPU's GDT on a CPU hal parks for good, and reloads the segment
/// registers from it — without loading its TSS, which belongs to CPU 0. A parked CPU's IDT has
/// no IST gates, so it never needs a TSS of its own.
///
/// # Panics
/// If the bootstrap CPU's tables have not been built (`hal::init` builds them first).
pub(crate) fn load_for_parking() {
    let tables = TABLES[0]
        .get()
        .expect("hal::init builds the bootstrap CPU's GDT before any CPU is parked");
    tables.gdt.load();
    // SAFETY: the selectors index the kernel code and data descriptors of the GDT just
    // loaded, which stays in hal's static memory for good.
    unsafe {
        CS::set_reg(KERNEL_CODE);
        SS::set_reg(KERNEL_DATA);
        DS::set_reg(KERNEL_DATA);
        ES::set_reg(KERNEL_DATA);
    }
}
