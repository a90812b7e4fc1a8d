//! The frame-allocation benchmark (`test=bench-frames`): the cost of one 4 KiB frame
//! allocation plus its free, over 1,000,000 of each.
//!
//! Frames are taken in batches of 1000 and then freed, so the allocator works with a real
//! free list rather than handing one frame back and forth; every call goes through the
//! interrupt-safe lock, as real callers do. Timed with the monotonic clock (`hal::time`), and
//! in TSC cycles. Under QEMU's TCG the figure measures the emulator as much as the allocator.

const ROUNDS: u64 = 1000;
const BATCH: usize = 1000;

/// What the benchmark measured.
#[derive(Clone, Copy, Debug)]
pub struct FrameBench {
    /// Frames allocated (and freed).
    pub frames: u64,
    /// Nanoseconds for all of it (0 if the clock is not calibrated).
    pub ns: u64,
    /// TSC cycles for all of it.
    pub cycles: u64,
}

/// Runs 1,000,000 allocations and frees. `None` if memory ran out or a free failed (both
/// bugs at this size).
pub fn measure() -> Option<FrameBench> {
    let mut batch = [0u64; BATCH];
    let (ns0, tsc0) = (hal::time::now_ns(), hal::time::rdtsc());
    for _ in 0..ROUNDS {
        for slot in batch.iter_mut() {
            *slot = hal::mm::alloc_frame()?;
        }
        for &frame in &batch {
            hal::mm::free_frame(frame).ok()?;
        }
    }
    let (ns1, tsc1) = (hal::time::now_ns(), hal::time::rdtsc());
    Some(FrameBench {
        frames: ROUNDS * BATCH as u64,
        ns: ns1 - ns0,
        cycles: tsc1 - tsc0,
    })
}

/// Runs the benchmark and logs the result; returns whether it ran.
pub fn run() -> bool {
    let Some(result) = measure() else {
        log::error!("bench-frames: the allocator failed during the run");
        return false;
    };
    let per_frame_ps = u128::from(result.ns) * 1000 / u128::from(result.frames);
    log::info!(
        "bench-frames: {} allocations + frees of 4 KiB frames in {} ms: {}.{:03} ns and {} TSC cycles per frame{}",
        result.frames,
        result.ns / 1_000_000,
        per_frame_ps / 1000,
        per_frame_ps % 1000,
        result.cycles / result.frames,
        if hal::time::calibrated() {
            ""
        } else {
            " (clock not calibrated: ns are 0)"
        },
    );
    log::info!(
        "bench: frame-alloc-free {}.{:03} ns/frame",
        per_frame_ps / 1000,
        per_frame_ps % 1000
    );
    true
}
