//! Bringing the application processors online, and running work on all of them.
//!
//! hal moves every CPU off the loader's stack onto a kernel stack with a guard page before
//! the kernel sees it, and knows when none uses the loader's memory any more.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use hal::percpu::MAX_CPUS;
use spin::Mutex;

/// Kernel stack size of the bootstrap CPU, in 4 KiB pages (the same as hal gives each AP).
pub const STACK_PAGES: u64 = hal::smp::AP_STACK_PAGES;

/// What hal reported when it started the APs.
static STARTED: spin::Once<hal::smp::Started> = spin::Once::new();
/// APs that have set up their tick and said they are online.
static READY: AtomicUsize = AtomicUsize::new(0);

/// Releases every AP the loader parked, up to `max_cpus` CPUs in all (`maxcpus=`), and waits
/// (boundedly) for them. Returns the number of CPUs online, the bootstrap CPU included.
pub fn start_aps(boot: &hal::boot::Boot, max_cpus: usize) -> usize {
    match hal::smp::start_aps(boot, max_cpus, ap_main) {
        Ok(started) => {
            STARTED.call_once(|| started);
            // hal waited until each AP reached `ap_main`; wait (boundedly) for them to finish
            // their own set-up there too, so "N CPU(s) online" comes after every "cpu K online".
            let deadline = hal::time::now_ns() + 1_000_000_000;
            while READY.load(Ordering::Acquire) < started.arrived && hal::time::now_ns() < deadline
            {
                core::hint::spin_loop();
            }
            if started.arrived < started.released {
                log::warn!(
                    "smp: only {} of {} application processors came online",
                    started.arrived,
                    started.released
                );
            }
            if started.parked > 0 {
                log::info!(
                    "smp: {} CPU(s) beyond maxcpus={max_cpus} halted by hal",
                    started.parked
                );
            }
        }
        Err(e) => log::warn!("smp: {e}; running on one CPU"),
    }
    if hal::time::calibrated() {
        // The clock counts from kernel entry.
        let micros = hal::time::now_ns() / 1000;
        log::info!(
            "bench: smp-online {}.{:03} ms",
            micros / 1000,
            micros % 1000
        );
    }
    hal::percpu::online_count()
}

/// Whether every released AP reached the kernel (none was left running loader code).
pub fn all_arrived() -> bool {
    STARTED
        .get()
        .is_none_or(|s| s.all_left && s.arrived == s.released)
}

/// Where each AP arrives once hal has given it its GDT, TSS, per-CPU block, IDT, local APIC
/// and kernel stack: it sets up its tick and waits for work.
fn ap_main(index: usize) -> ! {
    crate::irq::init_this_cpu();
    log::info!(
        "cpu {index} online (lapic {})",
        hal::percpu::lapic_id(index).unwrap_or(0)
    );
    READY.fetch_add(1, Ordering::AcqRel);
    let mut seen = 0;
    loop {
        seen = run_pending_work(index, seen);
        crate::sched::idle_once(index);
    }
}

/// Makes every CPU let go of the user address space it last ran, so ended programs' memory
/// is free (for the check that it all came back).
pub fn release_user_spaces() {
    run_on_all(|_| hal::mm::deactivate(), 1_000_000_000);
}

/// Work for every CPU: the function and a generation number that announces it.
static WORK: Mutex<Option<fn(usize)>> = Mutex::new(None);
static GENERATION: AtomicU64 = AtomicU64::new(0);
static DONE: AtomicUsize = AtomicUsize::new(0);
/// Serialises callers of [`run_on_all`].
static BROADCAST: Mutex<()> = Mutex::new(());

/// Runs the current work item if this CPU has not run it yet; returns the generation seen.
fn run_pending_work(index: usize, seen: u64) -> u64 {
    let generation = GENERATION.load(Ordering::Acquire);
    if generation == seen {
        return seen;
    }
    let work = *WORK.lock();
    if let Some(work) = work {
        work(index);
    }
    DONE.fetch_add(1, Ordering::AcqRel);
    generation
}

/// Runs `work(cpu_index)` on every online CPU at once, this one included, and waits for all
/// to finish (up to `timeout_ns`). Returns how many CPUs ran it.
pub fn run_on_all(work: fn(usize), timeout_ns: u64) -> usize {
    let _one_at_a_time = BROADCAST.lock();
    let others = hal::percpu::online_count().saturating_sub(1);
    *WORK.lock() = Some(work);
    DONE.store(0, Ordering::Release);
    GENERATION.fetch_add(1, Ordering::AcqRel);
    // Wake the others now rather than at their next timer tick.
    let me = hal::percpu::current_index();
    for cpu in (0..MAX_CPUS).filter(|&c| c != me && hal::percpu::is_online(c)) {
        if let Some(apic_id) = hal::percpu::lapic_id(cpu) {
            hal::apic::send_fixed(apic_id, hal::trap::vectors::PING);
        }
    }
    work(me);
    let deadline = hal::time::now_ns() + timeout_ns;
    while DONE.load(Ordering::Acquire) < others && hal::time::now_ns() < deadline {
        core::hint::spin_loop();
    }
    1 + DONE.load(Ordering::Acquire)
}

hal::cpu_local! {
    /// Per-CPU results of a broadcast test (0 = not run, 1 = passed, 2.. = failure codes).
    static RESULTS: AtomicU64 = AtomicU64::new(0);
}

/// Tests that need every CPU at once.
#[cfg(feature = "tests")]
pub mod tests {
    use alloc::vec::Vec;
    use core::sync::atomic::{AtomicU64, Ordering};

    use hal::percpu::MAX_CPUS;

    use super::{RESULTS, run_on_all};
    use crate::{
        check,
        ktest::{TestResult, ktest},
    };

    const TIMEOUT_NS: u64 = 20_000_000_000;

    fn clear() {
        RESULTS
            .iter()
            .for_each(|(_, r)| r.store(0, Ordering::Relaxed));
    }

    /// Records CPU `cpu`'s result of a broadcast test.
    fn report(cpu: usize, code: u64) {
        if let Some(result) = RESULTS.for_cpu(cpu) {
            result.store(code, Ordering::Release);
        }
    }

    /// Runs `work` on all CPUs; each records 1 for success or a failure code.
    fn on_all(work: fn(usize)) -> TestResult {
        clear();
        let online = hal::percpu::online_count();
        let ran = run_on_all(work, TIMEOUT_NS);
        check!(ran == online, "{ran} of {online} CPUs ran the work");
        for cpu in (0..MAX_CPUS).filter(|&c| hal::percpu::is_online(c)) {
            let result = RESULTS
                .for_cpu(cpu)
                .map_or(0, |r| r.load(Ordering::Acquire));
            check!(result == 1, "CPU {cpu} reported failure code {result}");
        }
        Ok(())
    }

    /// Every CPU the firmware lists (up to `maxcpus=`) is online, and the rest are in hal's
    /// halt loop.
    #[ktest("smp-all-cpus-online")]
    pub fn all_cpus_online() -> TestResult {
        let listed = crate::acpi::processors()
            .iter()
            .filter(|p| p.enabled)
            .count();
        let limit = crate::cmdline::Options::parse(hal::boot::cmdline(), |_| {}).max_cpus;
        let expected = listed.min(limit).min(MAX_CPUS);
        let online = hal::percpu::online_count();
        check!(
            online == expected,
            "{online} CPUs online, the MADT lists {listed}, maxcpus={limit}"
        );
        let parked = hal::smp::parked_count();
        check!(
            parked == listed - expected,
            "{parked} CPUs halted by hal, expected {}",
            listed - expected
        );
        check!(super::all_arrived(), "an AP never reached its kernel stack");
        // Each CPU runs on its own per-CPU block: the index hal gave it and its own APIC id.
        on_all(|cpu| {
            let own = hal::percpu::current_index() == cpu
                && hal::percpu::lapic_id(cpu) == Some(hal::apic::id());
            report(cpu, if own { 1 } else { 5 });
        })?;
        let mut ids: Vec<u32> = (0..MAX_CPUS)
            .filter(|&c| hal::percpu::is_online(c))
            .filter_map(hal::percpu::lapic_id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        check!(
            ids.len() == online,
            "{online} CPUs online share {} APIC ids",
            ids.len()
        );
        Ok(())
    }

    /// No CPU runs the kernel with RFLAGS.AC set, whatever the loader left in RFLAGS (strict
    /// mode sets it): AC would let supervisor code reach user pages despite SMAP.
    #[ktest("smp-smap-not-lifted")]
    pub fn smap_not_lifted() -> TestResult {
        on_all(|cpu| {
            let ac = hal::cpu::rflags() & hal::cpu::RFLAGS_AC != 0;
            report(cpu, if ac { 2 } else { 1 });
        })
    }

    /// Once the loader's memory is reclaimed no CPU depends on it, not even those hal halted
    /// beyond `maxcpus=`: every free frame (the reclaimed ones among them) is filled with
    /// `int3` bytes, and every CPU must still be where it was. A CPU still spinning in the
    /// loader's parking loop would read a garbage goto address or execute the filler, and the
    /// machine would fault or reset.
    #[ktest("smp-loader-memory-overwritten")]
    pub fn loader_memory_overwritten() -> TestResult {
        check!(
            hal::mm::bootloader_memory_reclaimed(),
            "the loader's memory was not reclaimed"
        );
        let online = hal::percpu::online_count();
        let parked = hal::smp::parked_count();
        let mut frames = Vec::with_capacity(hal::mm::stats().frames.free as usize);
        while frames.len() < frames.capacity() {
            let Some(mut frame) = hal::mm::Frame::alloc() else {
                break;
            };
            frame.fill(0xcc);
            frames.push(frame);
        }
        let filled = frames.len();
        // Give any CPU still in loader code time to trip over it.
        hal::time::delay_ns(50_000_000);
        drop(frames);
        check!(filled > 0, "no free frame to fill");
        check!(
            hal::smp::parked_count() == parked,
            "halted CPUs went from {parked} to {}",
            hal::smp::parked_count()
        );
        on_all(|cpu| report(cpu, 1))?;
        check!(
            hal::percpu::online_count() == online,
            "{online} CPUs were online, now {}",
            hal::percpu::online_count()
        );
        Ok(())
    }

    /// All CPUs allocate, fill, check and free heap memory at the same time.
    #[ktest("smp-heap-concurrent")]
    pub fn heap_concurrent() -> TestResult {
        on_all(|cpu| {
            let mut ok = true;
            for round in 0..300u64 {
                let len = 1 + (round as usize * 37 + cpu * 11) % 700;
                let v: Vec<u64> = (0..len as u64)
                    .map(|i| i ^ (cpu as u64) << 32 ^ round)
                    .collect();
                let mut boxes: Vec<alloc::boxed::Box<[u8; 64]>> = (0..8)
                    .map(|i| alloc::boxed::Box::new([(cpu + i) as u8; 64]))
                    .collect();
                boxes.reverse();
                ok &= v
                    .iter()
                    .enumerate()
                    .all(|(i, &x)| x == (i as u64) ^ (cpu as u64) << 32 ^ round);
                ok &= boxes
                    .iter()
                    .enumerate()
                    .all(|(i, b)| b.iter().all(|&x| x == (cpu + 7 - i) as u8));
            }
            report(cpu, if ok { 1 } else { 2 });
        })
    }

    /// How many lines each CPU logs in [`log_from_all_cpus`].
    pub const LOG_STORM_LINES: usize = 40;

    /// Every CPU logs at once; the runner checks on serial that no line was torn or lost
    /// (`log-storm cpu C line N end`, `LOG_STORM_LINES` per CPU).
    #[ktest("smp-log-concurrent")]
    pub fn log_from_all_cpus() -> TestResult {
        on_all(|cpu| {
            for line in 0..LOG_STORM_LINES {
                log::info!("log-storm cpu {cpu} line {line} end");
            }
            report(cpu, 1);
        })
    }

    /// The latest time any CPU has published.
    static LATEST: AtomicU64 = AtomicU64::new(0);

    /// A time read on one CPU after seeing another CPU's reading is never smaller.
    #[ktest("smp-time-monotonic")]
    pub fn time_monotonic_across_cpus() -> TestResult {
        LATEST.store(0, Ordering::Release);
        on_all(|cpu| {
            let mut ok = true;
            for _ in 0..20_000 {
                let seen = LATEST.load(Ordering::Acquire);
                let now = hal::time::now_ns();
                ok &= now >= seen;
                LATEST.fetch_max(now, Ordering::AcqRel);
            }
            report(cpu, if ok { 1 } else { 3 });
        })
    }

    /// The scratch page the remap test uses, and the values its two frames hold.
    const REMAP_VIRT: u64 = hal::mm::SCRATCH_BASE + 0x4000_0000;
    static EXPECTED: AtomicU64 = AtomicU64::new(0);

    /// Remapping a page that every CPU has in its TLB: after the shootdown, every CPU sees the
    /// new frame, none the stale one.
    #[ktest("smp-tlb-remap")]
    pub fn tlb_remap_across_cpus() -> TestResult {
        let (Some(mut a), Some(mut b)) = (hal::mm::Frame::alloc(), hal::mm::Frame::alloc()) else {
            return Err("no frames".into());
        };
        a.write_u64(0, 0xaaaa_0000_0000_aaaa);
        b.write_u64(0, 0xbbbb_0000_0000_bbbb);
        check!(
            hal::mm::map_page(REMAP_VIRT, a.phys()).is_ok(),
            "mapping the scratch page"
        );
        // Every CPU reads it, so every TLB caches the first translation.
        EXPECTED.store(0xaaaa_0000_0000_aaaa, Ordering::Release);
        let first = on_all(read_expected);
        // Remap: unmap (with shootdown) and map the other frame.
        let unmapped = hal::mm::unmap_page(REMAP_VIRT);
        check!(unmapped == Ok(a.phys()), "unmapping: {unmapped:x?}");
        check!(hal::mm::map_page(REMAP_VIRT, b.phys()).is_ok(), "remapping");
        EXPECTED.store(0xbbbb_0000_0000_bbbb, Ordering::Release);
        let second = on_all(read_expected);
        let _ = hal::mm::unmap_page(REMAP_VIRT);
        first.map_err(|e| alloc::format!("before the remap: {e}"))?;
        second.map_err(|e| alloc::format!("after the remap (stale TLB?): {e}"))
    }

    fn read_expected(cpu: usize) {
        let ok = hal::trap::probe_read(REMAP_VIRT) == Ok(EXPECTED.load(Ordering::Acquire));
        report(cpu, if ok { 1 } else { 4 });
    }
}
