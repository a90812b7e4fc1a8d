//! Inter-processor interrupts: fixed vectors to one CPU or to itself, NMIs to stop the
//! machine, and the TLB shootdown that `hal::mm` calls after it changes shared mappings.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use x86_64::instructions::interrupts;

use super::{lapic, reg};
use crate::{
    percpu::{self, MAX_CPUS},
    trap::{self, TrapFrame, vectors},
};

const DELIVERY_NMI: u32 = 0b100 << 8;
/// xAPIC only: the previous IPI has not been accepted yet.
const DELIVERY_PENDING: u32 = 1 << 12;
const LEVEL_ASSERT: u32 = 1 << 14;
const SHORTHAND_SELF: u32 = 0b01 << 18;

const _: () = assert!(
    MAX_CPUS <= 64,
    "the shootdown keeps one bit per CPU in a u64"
);

/// Where an IPI goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Destination {
    /// The CPU with this local APIC id.
    Apic(u32),
    /// The sending CPU itself.
    Myself,
}

/// Sends an IPI with ICR low word `command` (vector, delivery mode) to `destination`.
fn send(destination: Destination, command: u32) {
    let Some(lapic) = lapic() else { return };
    let (shorthand, apic_id) = match destination {
        Destination::Apic(id) => (0, id),
        Destination::Myself => (SHORTHAND_SELF, 0),
    };
    let low = command | LEVEL_ASSERT | shorthand;
    // The two ICR writes must not be split by an interrupt handler sending its own IPI.
    interrupts::without_interrupts(|| match &lapic.mmio {
        Some(_) => {
            for _ in 0..1_000_000 {
                if lapic.read(reg::ICR_LOW) & DELIVERY_PENDING == 0 {
                    break;
                }
                core::hint::spin_loop();
            }
            lapic.write(reg::ICR_HIGH, apic_id << 24);
            lapic.write(reg::ICR_LOW, low);
        }
        None => super::write_msr(
            super::X2APIC_MSR_BASE + reg::ICR_LOW / 16,
            (u64::from(apic_id) << 32) | u64::from(low),
        ),
    });
}

/// Sends fixed interrupt `vector` to the CPU whose local APIC id is `apic_id`.
pub fn send_fixed(apic_id: u32, vector: u8) {
    send(Destination::Apic(apic_id), u32::from(vector));
}

/// Sends fixed interrupt `vector` to the CPU running this.
pub fn send_self(vector: u8) {
    send(Destination::Myself, u32::from(vector));
}

/// Sends an NMI to the CPU whose local APIC id is `apic_id`.
pub fn send_nmi(apic_id: u32) {
    send(Destination::Apic(apic_id), DELIVERY_NMI);
}

/// Stops every other online CPU: marks the machine as stopping (so an NMI halts the CPU that
/// takes it), then sends an NMI to each CPU marked online in [`percpu`] — never to CPUs that
/// have no IDT yet. Waits briefly for them to halt; returns how many were signalled.
pub fn stop_other_cpus() -> usize {
    trap::begin_stop();
    let me = percpu::current_index();
    let already = trap::stopped_cpus();
    let mut signalled = 0;
    for index in (0..MAX_CPUS).filter(|&i| i != me && percpu::is_online(i)) {
        if let Some(apic_id) = percpu::lapic_id(index) {
            send_nmi(apic_id);
            signalled += 1;
        }
    }
    // Wait on the clock (half a second: an NMI is taken within microseconds); before the
    // clock is calibrated it stands still, so only then bound the wait by iterations.
    let deadline = crate::time::now_ns().saturating_add(500_000_000);
    let mut spins = 0u64;
    while trap::stopped_cpus() < already + signalled {
        spins += 1;
        let late = if crate::time::calibrated() {
            crate::time::now_ns() >= deadline
        } else {
            spins > 100_000_000
        };
        if late {
            break;
        }
        core::hint::spin_loop();
    }
    signalled
}

/// The TLB shootdown in flight: the range to flush and the CPUs that still have to.
struct Shootdown {
    busy: AtomicBool,
    start: AtomicU64,
    len: AtomicU64,
    pending: AtomicU64,
}

static SHOOTDOWN: Shootdown = Shootdown {
    busy: AtomicBool::new(false),
    start: AtomicU64::new(0),
    len: AtomicU64::new(0),
    pending: AtomicU64::new(0),
};
/// CPUs whose local APIC is enabled (only they can take the shootdown IPI).
static APIC_READY: AtomicU64 = AtomicU64::new(0);
crate::cpu_local! {
    /// Shootdown requests each CPU has served.
    static SERVED: AtomicUsize = AtomicUsize::new(0);
}
static TIMEOUTS: AtomicUsize = AtomicUsize::new(0);

/// Registers the shootdown IPI handler and hands [`shootdown`] to `hal::mm`. Call once on
/// the bootstrap CPU.
pub(crate) fn init_tlb_shootdown() {
    trap::register_hal(vectors::TLB_SHOOTDOWN, |_frame: &TrapFrame| serve());
    crate::mm::set_tlb_shootdown(shootdown);
}

/// Records that this CPU's local APIC takes IPIs from now on.
pub(super) fn mark_ready() {
    APIC_READY.fetch_or(1 << percpu::current_index(), Ordering::AcqRel);
}

/// How many shootdown requests CPU `index` has served.
pub fn shootdowns_served(index: usize) -> usize {
    SERVED
        .for_cpu(index)
        .map_or(0, |n| n.load(Ordering::Relaxed))
}

/// Serves the request in flight if this CPU still owes it a flush (also called by CPUs
/// spinning with interrupts off: nothing moves the caller to another CPU meanwhile).
pub(crate) fn serve() {
    let bit = 1u64 << percpu::current_index();
    if SHOOTDOWN.pending.load(Ordering::Acquire) & bit == 0 {
        return;
    }
    let start = SHOOTDOWN.start.load(Ordering::Relaxed);
    let len = SHOOTDOWN.len.load(Ordering::Relaxed);
    crate::mm::flush_local(start, len);
    SERVED.here().fetch_add(1, Ordering::Relaxed);
    SHOOTDOWN.pending.fetch_and(!bit, Ordering::AcqRel);
}

/// Makes every other CPU with an enabled local APIC flush `[start, start + len)` from its
/// TLB, and waits until they all have; returns `false` if some CPU did not answer within a
/// second (the range may then still be cached there). The caller flushes its own TLB.
///
/// Safe to call with interrupts disabled: while waiting for a concurrent shootdown to finish
/// this CPU serves it by polling, so two CPUs shooting at each other cannot deadlock.
pub fn shootdown(start: u64, len: u64) -> bool {
    let me = 1u64 << percpu::current_index();
    let targets = APIC_READY.load(Ordering::Acquire) & !me;
    if targets == 0 {
        return true;
    }
    while SHOOTDOWN
        .busy
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        serve();
        core::hint::spin_loop();
    }
    SHOOTDOWN.start.store(start, Ordering::Relaxed);
    SHOOTDOWN.len.store(len, Ordering::Relaxed);
    SHOOTDOWN.pending.store(targets, Ordering::Release);
    for index in (0..MAX_CPUS).filter(|i| targets & (1 << i) != 0) {
        if let Some(apic_id) = percpu::lapic_id(index) {
            send_fixed(apic_id, vectors::TLB_SHOOTDOWN);
        }
    }
    let deadline = crate::time::now_ns() + 1_000_000_000;
    let mut spins = 0u64;
    let mut complete = true;
    while SHOOTDOWN.pending.load(Ordering::Acquire) != 0 {
        core::hint::spin_loop();
        spins += 1;
        // Before the clock is calibrated `now_ns` stands still: bound by iterations too.
        if crate::time::now_ns() > deadline || spins > 500_000_000 {
            TIMEOUTS.fetch_add(1, Ordering::Relaxed);
            SHOOTDOWN.pending.store(0, Ordering::Release);
            complete = false;
            break;
        }
    }
    SHOOTDOWN.busy.store(false, Ordering::Release);
    complete
}

/// How many shootdowns gave up waiting for a CPU that never answered.
pub fn shootdown_timeouts() -> usize {
    TIMEOUTS.load(Ordering::Relaxed)
}
