//! Bringing the application processors online.

use core::sync::atomic::{AtomicUsize, Ordering};

/// How many APs have reached the kernel's AP main.
static ARRIVED: AtomicUsize = AtomicUsize::new(0);

/// Releases every AP the loader parked and waits (boundedly) for all to come online.
/// Returns the number of CPUs online, the bootstrap CPU included.
pub fn start_aps() -> usize {
    let expected = hal::smp::start_aps(ap_main);
    // Each AP needs a few milliseconds at most; under emulation allow far more. Spin on
    // the counter, giving up after a generous bound so a dead AP cannot hang the boot.
    let mut spins = 0u64;
    while ARRIVED.load(Ordering::Acquire) < expected && spins < 2_000_000_000 {
        core::hint::spin_loop();
        spins += 1;
    }
    let arrived = ARRIVED.load(Ordering::Acquire);
    if arrived < expected {
        log::warn!("smp: only {arrived} of {expected} application processors came online");
    }
    hal::percpu::online_count()
}

/// Where each AP arrives once hal has given it its GDT, TSS, per-CPU block and IDT.
fn ap_main(index: usize) -> ! {
    log::info!(
        "cpu {index} online (lapic {})",
        hal::percpu::lapic_id(index).unwrap_or(0)
    );
    crate::irq::init_this_cpu();
    ARRIVED.fetch_add(1, Ordering::AcqRel);
    loop {
        hal::cpu::idle();
    }
}
