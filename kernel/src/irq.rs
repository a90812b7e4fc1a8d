//! Interrupt set-up: the legacy PIC off, the local APIC on every CPU (spurious and error
//! vectors, the timer tick, IPIs), and the TLB shootdown IPI for memory management.
//!
//! Device lines (keyboard, COM1) are routed through the I/O APIC by [`crate::input`].
//! Handlers never log: the logger takes locks an interrupted context may hold on another CPU
//! for a long time. They count, queue, and leave reporting to thread context.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hal::{
    percpu::PreemptGuard,
    trap::{self, TrapFrame, vectors},
};

hal::cpu_local! {
    /// PING IPIs each CPU has handled.
    static PINGS: AtomicU64 = AtomicU64::new(0);
}
/// Whether the local APIC works (else no timer tick and no IPIs).
static APIC_UP: AtomicBool = AtomicBool::new(false);

fn on_ping(_frame: &TrapFrame) {
    let pinned = PreemptGuard::new();
    PINGS.get(&pinned).fetch_add(1, Ordering::Relaxed);
}

/// How many PING IPIs CPU `cpu` has handled.
pub fn pings(cpu: usize) -> u64 {
    PINGS.for_cpu(cpu).map_or(0, |p| p.load(Ordering::Relaxed))
}

/// Whether the local APIC is up (timer ticks and IPIs work).
pub fn apic_up() -> bool {
    APIC_UP.load(Ordering::Acquire)
}

/// Sets up the kernel's interrupts on the bootstrap CPU once `hal::init` has brought up the
/// local APIC: registers the timer and ping handlers and starts the tick. Call before the
/// APs start. Interrupts stay disabled.
pub fn init_bsp(machine: &hal::Machine) {
    let apic = match &machine.apic {
        Ok(apic) => apic,
        Err(error) => {
            log::warn!("irq: local APIC: {error}: no timer interrupts or IPIs");
            return;
        }
    };
    for (vector, handler) in [
        (vectors::TIMER, crate::time::on_tick as trap::Handler),
        (vectors::PING, on_ping),
    ] {
        trap::register(vector, handler).expect("the timer and ping vectors are the kernel's");
    }
    APIC_UP.store(true, Ordering::Release);
    match apic.timer_hz {
        Some(hz) => log::info!(
            "irq: local APIC ({}), id {}, timer {}.{:03} MHz, tick {} Hz",
            apic.mode,
            hal::apic::id(),
            hz / 1_000_000,
            hz / 1_000 % 1_000,
            crate::time::TICK_HZ
        ),
        None => log::warn!("irq: the APIC timer could not be calibrated: no tick"),
    }
    crate::time::start_tick();
}

/// Starts this AP's timer tick (hal has enabled its local APIC). Call on each AP; then enable
/// interrupts on it.
pub fn init_this_cpu() {
    if !apic_up() {
        return;
    }
    let cpu = hal::percpu::current_index();
    if !crate::time::start_tick() {
        log::warn!("irq: cpu {cpu}: no timer tick");
    }
}

/// Interrupts taken per vector by [`on_msi`] (device MSI/MSI-X vectors from [`allocate_msi`]).
static MSI_COUNTS: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];

fn on_msi(frame: &TrapFrame) {
    if let Some(count) = MSI_COUNTS.get(frame.vector as usize) {
        count.fetch_add(1, Ordering::Relaxed);
    }
}

/// A vector for a device's message-signalled interrupt, counted by [`msi_count`]; the
/// driver routes the device to it and waits for the count to move. Freed when dropped.
pub fn allocate_msi() -> Option<trap::Vector> {
    trap::allocate(on_msi)
}

/// How many interrupts `vector` has delivered.
pub fn msi_count(vector: &trap::Vector) -> u64 {
    MSI_COUNTS[usize::from(vector.number())].load(Ordering::Relaxed)
}

/// Runs `f` with interrupts enabled on this CPU, restoring the previous state afterwards.
pub fn with_interrupts<T>(f: impl FnOnce() -> T) -> T {
    let were_enabled = hal::cpu::interrupts_enabled();
    hal::cpu::enable_interrupts();
    let result = f();
    if !were_enabled {
        hal::cpu::disable_interrupts();
    }
    result
}

/// Spins until `condition` holds or `timeout_ns` pass on the clock; returns whether it held.
pub fn wait_until(timeout_ns: u64, mut condition: impl FnMut() -> bool) -> bool {
    let start = crate::time::now_ns();
    // Before the clock runs, bound the wait by iterations instead.
    let mut spins = 0u64;
    while !condition() {
        if crate::time::now_ns() - start > timeout_ns || spins > 2_000_000_000 {
            return condition();
        }
        spins += 1;
        core::hint::spin_loop();
    }
    true
}

/// Tests of the interrupt controllers.
#[cfg(feature = "tests")]
pub mod tests {
    use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use super::pings;
    use crate::{
        check,
        ktest::{TestResult, ktest},
    };

    /// hal refuses handlers for CPU exceptions and for the vectors it serves itself (the TLB
    /// shootdown, APIC error and spurious vectors); the shootdown still works afterwards.
    #[ktest("irq-hal-vectors-refused")]
    pub fn hal_vectors_refused() -> TestResult {
        use hal::trap::{RegisterError, TrapFrame, register, vectors};
        fn nothing(_: &TrapFrame) {}
        for vector in [
            vectors::TLB_SHOOTDOWN,
            vectors::APIC_ERROR,
            vectors::SPURIOUS,
        ] {
            let got = register(vector, nothing);
            check!(
                got == Err(RegisterError::Reserved(vector)),
                "registering vector {vector:#x} gave {got:?}"
            );
        }
        let got = register(14, nothing);
        check!(
            got == Err(RegisterError::Exception(14)),
            "registering the page-fault vector gave {got:?}"
        );
        tlb_shootdown()
    }

    /// A fixed IPI to this CPU reaches the PING handler.
    #[ktest("ipi-self")]
    pub fn ipi_self() -> TestResult {
        check!(super::apic_up(), "the local APIC is not up");
        let cpu = hal::percpu::current_index();
        let before = pings(cpu);
        let arrived = super::with_interrupts(|| {
            hal::apic::send_self(hal::trap::vectors::PING);
            super::wait_until(1_000_000_000, || pings(cpu) > before)
        });
        check!(arrived, "PING count stayed at {before}");
        check!(
            pings(cpu) == before + 1,
            "one IPI arrived {} times",
            pings(cpu) - before
        );
        Ok(())
    }

    /// An interrupt taken in kernel mode while the user's GS base is loaded (an NMI next
    /// to a `swapgs`) still runs its handler on this CPU's per-CPU data, and leaves the
    /// kernel's GS base behind.
    #[ktest("irq-trap-with-user-gs")]
    pub fn trap_with_user_gs() -> TestResult {
        let cpu = hal::percpu::current_index();
        let before = pings(cpu);
        hal::trap::ping_with_user_gs();
        check!(
            pings(cpu) == before + 1,
            "the handler counted {} pings on CPU {cpu}",
            pings(cpu) - before
        );
        check!(
            hal::percpu::current_index() == cpu && hal::percpu::preempt_count() == 0,
            "after the trap: CPU {}, preemption count {}",
            hal::percpu::current_index(),
            hal::percpu::preempt_count()
        );
        Ok(())
    }

    /// A fixed IPI sent by APIC id reaches every online CPU, this one included.
    #[ktest("ipi-each-cpu")]
    pub fn ipi_each_cpu() -> TestResult {
        check!(super::apic_up(), "the local APIC is not up");
        for cpu in (0..hal::percpu::MAX_CPUS).filter(|&c| hal::percpu::is_online(c)) {
            let Some(apic_id) = hal::percpu::lapic_id(cpu) else {
                continue;
            };
            let before = pings(cpu);
            let arrived = super::with_interrupts(|| {
                hal::apic::send_fixed(apic_id, hal::trap::vectors::PING);
                super::wait_until(1_000_000_000, || pings(cpu) > before)
            });
            check!(arrived, "CPU {cpu} (APIC id {apic_id}) never took the PING");
        }
        Ok(())
    }

    /// A TLB shootdown is served by every other online CPU before it returns.
    #[ktest("ipi-tlb-shootdown")]
    pub fn tlb_shootdown() -> TestResult {
        let me = hal::percpu::current_index();
        let others: [usize; hal::percpu::MAX_CPUS] =
            core::array::from_fn(hal::apic::shootdowns_served);
        let (timeouts, kept) = (
            hal::apic::shootdown_timeouts(),
            hal::mm::frames_kept_after_failed_shootdowns(),
        );
        let complete = super::with_interrupts(|| hal::apic::shootdown(0xffff_c180_0000_0000, 4096));
        check!(complete, "the shootdown reports a CPU that did not answer");
        for cpu in (0..hal::percpu::MAX_CPUS).filter(|&c| c != me && hal::percpu::is_online(c)) {
            check!(
                hal::apic::shootdowns_served(cpu) > others[cpu],
                "CPU {cpu} did not flush"
            );
        }
        check!(
            hal::apic::shootdown_timeouts() == timeouts,
            "the shootdown timed out"
        );
        check!(
            hal::mm::frames_kept_after_failed_shootdowns() == kept,
            "frames were kept although every CPU answered"
        );
        Ok(())
    }

    /// Set by the CPU that refuses to answer once its interrupts are off; cleared to let it go.
    static SILENT: AtomicBool = AtomicBool::new(false);
    static RELEASE: AtomicBool = AtomicBool::new(false);
    /// What CPU 0 saw: 1 = the frames were kept, 2.. = failure codes.
    static VERDICT: AtomicU64 = AtomicU64::new(0);

    /// A shootdown that a CPU never confirms keeps the unmapped frames out of the allocator
    /// (they could still be reached through that CPU's TLB) instead of freeing them: CPU 1
    /// turns its interrupts off while CPU 0 frees a kernel stack.
    #[ktest("ipi-shootdown-timeout-keeps-frames")]
    pub fn shootdown_timeout_keeps_frames() -> TestResult {
        if hal::percpu::online_count() < 2 {
            return Ok(()); // Nothing to time out with one CPU.
        }
        SILENT.store(false, Ordering::Release);
        RELEASE.store(false, Ordering::Release);
        VERDICT.store(0, Ordering::Release);
        crate::smp::run_on_all(silent_cpu_and_free, 20_000_000_000);
        let verdict = VERDICT.load(Ordering::Acquire);
        check!(
            verdict == 1,
            "failure code {verdict} (see the test's source)"
        );
        Ok(())
    }

    fn silent_cpu_and_free(cpu: usize) {
        match cpu {
            1 => {
                let were_enabled = hal::cpu::interrupts_enabled();
                hal::cpu::disable_interrupts();
                SILENT.store(true, Ordering::Release);
                let deadline = hal::time::now_ns() + 10_000_000_000;
                while !RELEASE.load(Ordering::Acquire) && hal::time::now_ns() < deadline {
                    core::hint::spin_loop();
                }
                if were_enabled {
                    hal::cpu::enable_interrupts();
                }
            }
            0 => {
                let deadline = hal::time::now_ns() + 5_000_000_000;
                while !SILENT.load(Ordering::Acquire) && hal::time::now_ns() < deadline {
                    core::hint::spin_loop();
                }
                VERDICT.store(free_with_silent_cpu(), Ordering::Release);
                RELEASE.store(true, Ordering::Release);
            }
            _ => {}
        }
    }

    fn free_with_silent_cpu() -> u64 {
        if !SILENT.load(Ordering::Acquire) {
            return 2; // CPU 1 never went silent.
        }
        const PAGES: u64 = 4;
        let Ok(stack) = hal::mm::alloc_kernel_stack(PAGES) else {
            return 3;
        };
        let (timeouts, kept) = (
            hal::apic::shootdown_timeouts(),
            hal::mm::frames_kept_after_failed_shootdowns(),
        );
        let free_before = hal::mm::stats().frames.free;
        drop(stack);
        let free_after = hal::mm::stats().frames.free;
        if hal::apic::shootdown_timeouts() != timeouts + 1 {
            return 4; // CPU 1 answered, or the shootdown was not attempted.
        }
        if hal::mm::frames_kept_after_failed_shootdowns() != kept + PAGES {
            return 5; // The frames were not counted as kept.
        }
        if free_after != free_before {
            return 6; // Frames went back to the allocator.
        }
        1
    }

    /// The local APIC has reported no errors and the legacy PIC is fully masked.
    #[ktest("irq-controllers-quiet")]
    pub fn controllers_quiet() -> TestResult {
        let (errors, status) = hal::apic::errors();
        check!(errors == 0, "{errors} APIC errors, last ESR {status:#x}");
        check!(
            hal::pic::masks() == (0xff, 0xff),
            "PIC masks {:?}",
            hal::pic::masks()
        );
        Ok(())
    }
}
