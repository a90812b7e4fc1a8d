//! Host benchmark of the frame allocator: `cargo run -p frames --release --example bench`.
//!
//! 1,000,000 single-frame allocations and frees over 1 GiB of fake memory, in batches of
//! 1000 (allocate a batch, free it in allocation order), the same pattern the in-kernel
//! benchmark (`kernel::mm::bench`) runs.

use std::time::Instant;

use frames::{FrameAllocator, Owner, PAGE_SIZE};

const ROUNDS: usize = 1000;
const BATCH: usize = 1000;

fn main() {
    let (start, end) = (1 << 20, 1 << 30);
    let words = FrameAllocator::metadata_words(start, end).expect("1 GiB span fits");
    let mut meta = vec![0; words];
    let mut frames = FrameAllocator::new(&mut meta, start, end).expect("metadata sized above");
    frames.add_free(start..end).expect("inside the span");
    let owner = Owner(1);
    let mut batch = [0u64; BATCH];
    let began = Instant::now();
    for _ in 0..ROUNDS {
        for slot in batch.iter_mut() {
            *slot = frames.alloc(owner).expect("1 GiB holds a batch");
        }
        for &frame in &batch {
            frames.free(frame, owner).expect("allocated above");
        }
    }
    let elapsed = began.elapsed();
    let pairs = (ROUNDS * BATCH) as f64;
    println!(
        "frames: {} allocations + frees of {} KiB frames in {:.1} ms: {:.1} ns per frame (alloc + free)",
        ROUNDS * BATCH,
        PAGE_SIZE / 1024,
        elapsed.as_secs_f64() * 1e3,
        elapsed.as_nanos() as f64 / pairs
    );
}
