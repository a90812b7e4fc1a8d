use std::{collections::BTreeMap, vec, vec::Vec};

use super::*;

const MIB: u64 = 1 << 20;
const O: Owner = Owner(7);
const GIB: u64 = 1 << 30;

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn allocator(meta: &mut Vec<u64>, start: u64, end: u64) -> FrameAllocator<'_> {
    let words = FrameAllocator::metadata_words(start, end).expect("span fits");
    meta.resize(words, 0xdead_beef);
    FrameAllocator::new(meta, start, end).expect("metadata is large enough")
}

/// Checks the free lists against the state words and the counters.
fn check_invariants(a: &FrameAllocator<'_>) {
    let mut free = 0;
    for order in 0..=MAX_ORDER {
        let mut index = a.heads[order as usize];
        let mut prev = NIL;
        assert_eq!(
            index != NIL,
            a.nonempty & (1 << order) != 0,
            "nonempty mask for order {order}"
        );
        while index != NIL {
            let word = a.word(index);
            assert!(word.is(STATE_FREE, order), "list {order} holds {index}");
            assert_eq!(word.prev(), prev);
            assert_eq!(index % (1 << order), 0, "block {index} misaligned");
            free += 1u64 << order;
            prev = index;
            index = word.next();
        }
    }
    assert_eq!(free, a.free, "free counter");
}

#[test]
fn hands_out_every_frame_once_then_none() {
    let mut meta = Vec::new();
    let mut a = allocator(&mut meta, 0, 8 * MIB);
    assert_eq!(a.add_free(0x1000..0x80_0000).expect("inside span"), 2047);
    let mut seen = Vec::new();
    while let Some(frame) = a.alloc(O) {
        assert_eq!(frame % PAGE_SIZE, 0);
        assert!((0x1000..0x80_0000).contains(&frame));
        seen.push(frame);
    }
    assert_eq!(seen.len(), 2047);
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 2047, "a frame was handed out twice");
    assert_eq!(a.stats().free, 0);
    assert_eq!(a.alloc_contiguous(1, 1, O), None);
    check_invariants(&a);
}

#[test]
fn freed_frames_are_reused_and_merge_back() {
    let mut meta = Vec::new();
    let mut a = allocator(&mut meta, 0, 4 * MIB);
    a.add_free(0..4 * MIB).expect("inside span");
    assert_eq!(a.stats().largest_free_order, Some(10));
    let frames: Vec<u64> = core::iter::from_fn(|| a.alloc(O)).collect();
    assert_eq!(frames.len(), 1024);
    a.free(frames[700], O).expect("allocated");
    assert_eq!(
        a.alloc(O),
        Some(frames[700]),
        "the only free frame comes back"
    );
    for &frame in &frames {
        a.free(frame, O).expect("allocated");
    }
    let stats = a.stats();
    assert_eq!((stats.free, stats.allocated), (1024, 0));
    assert_eq!(
        stats.largest_free_order,
        Some(10),
        "buddies merged into one block"
    );
    check_invariants(&a);
}

#[test]
fn bad_frees_are_rejected_and_change_nothing() {
    let mut meta = Vec::new();
    let mut a = allocator(&mut meta, 0, 2 * MIB);
    a.add_free(MIB..2 * MIB).expect("inside span");
    let frame = a.alloc(O).expect("memory is free");
    let before = a.stats();
    assert_eq!(a.free(frame + 8, O), Err(Error::Misaligned(frame + 8)));
    assert_eq!(a.free(0x1000, O), Err(Error::NotManaged(0x1000)));
    assert_eq!(a.free(64 * GIB, O), Err(Error::NotManaged(64 * GIB)));
    let never = (MIB..2 * MIB)
        .step_by(PAGE_SIZE as usize)
        .find(|&f| f != frame)
        .expect("more than one frame");
    assert_eq!(a.free(never, O), Err(Error::NotAllocated(never)));
    assert_eq!(a.stats(), before);
    a.free(frame, O).expect("allocated");
    assert_eq!(
        a.free(frame, O),
        Err(Error::NotAllocated(frame)),
        "double free"
    );
    check_invariants(&a);
}

#[test]
fn contiguous_runs_are_aligned_and_disjoint() {
    let mut meta = Vec::new();
    let mut a = allocator(&mut meta, 0, 16 * MIB);
    a.add_free(0x3000..16 * MIB).expect("inside span");
    let mut runs = Vec::new();
    for (pages, align) in [
        (1, 1),
        (3, 1),
        (5, 8),
        (16, 16),
        (100, 1),
        (7, 512),
        (2, 256),
    ] {
        let start = a.alloc_contiguous(pages, align, O).expect("enough memory");
        assert_eq!(
            start % (align * PAGE_SIZE),
            0,
            "{pages} pages aligned to {align}"
        );
        runs.push((start, pages));
    }
    runs.sort_unstable();
    for pair in runs.windows(2) {
        assert!(
            pair[0].0 + pair[0].1 * PAGE_SIZE <= pair[1].0,
            "runs overlap: {pair:x?}"
        );
    }
    let allocated: u64 = runs.iter().map(|r| r.1).sum();
    assert_eq!(
        a.stats().allocated,
        allocated,
        "tails of rounded-up blocks were returned"
    );
    // A run is freed as a whole, with its own size.
    let (start, pages) = runs[3];
    assert!(a.free_contiguous(start, pages + 1, O).is_err());
    let (three, _) = *runs.iter().find(|r| r.1 == 3).expect("the 3-page run");
    assert_eq!(
        a.free(three + 2 * PAGE_SIZE, O),
        Err(Error::NotAllocated(three + 2 * PAGE_SIZE))
    );
    assert_eq!(
        a.free_contiguous(three, 2, O),
        Err(Error::NotAllocated(three)),
        "part of a run"
    );
    a.free_contiguous(start, pages, O).expect("allocated run");
    assert_eq!(
        a.free_contiguous(start, pages, O),
        Err(Error::NotAllocated(start))
    );
    for &(start, pages) in runs.iter().filter(|r| r.0 != start) {
        a.free_contiguous(start, pages, O).expect("allocated run");
    }
    assert_eq!(a.stats().allocated, 0);
    check_invariants(&a);
}

#[test]
fn contiguous_requests_that_cannot_fit_fail() {
    let mut meta = Vec::new();
    let mut a = allocator(&mut meta, 0, 8 * MIB);
    a.add_free(0..MIB).expect("inside span");
    a.add_free(2 * MIB..3 * MIB).expect("inside span");
    assert_eq!(a.alloc_contiguous(0, 1, O), None);
    assert_eq!(
        a.alloc_contiguous(1, 3, O),
        None,
        "alignment must be a power of two"
    );
    assert_eq!(
        a.alloc_contiguous(257, 1, O),
        None,
        "no 257-page run exists"
    );
    assert_eq!(
        a.alloc_contiguous(1 << 20, 1, O),
        None,
        "beyond the largest order"
    );
    let run = a.alloc_contiguous(256, 1, O).expect("a whole 1 MiB region");
    assert!(run == 0 || run == 2 * MIB);
    check_invariants(&a);
}

#[test]
fn holes_are_never_handed_out() {
    let mut meta = Vec::new();
    let mut a = allocator(&mut meta, 0, 8 * MIB);
    a.add_free(0x1000..0x9f000).expect("inside span");
    a.add_free(MIB..3 * MIB + 0x800).expect("inside span");
    a.add_free(5 * MIB + 1..8 * MIB).expect("inside span");
    assert_eq!(a.stats().managed, 0x9e + 512 + 767);
    while let Some(frame) = a.alloc(O) {
        let ok = (0x1000..0x9f000).contains(&frame)
            || (MIB..3 * MIB).contains(&frame)
            || (5 * MIB + PAGE_SIZE..8 * MIB).contains(&frame);
        assert!(ok, "frame {frame:#x} is in a hole");
    }
    check_invariants(&a);
}

#[test]
fn adding_memory_twice_or_outside_the_span_fails() {
    let mut meta = Vec::new();
    let mut a = allocator(&mut meta, 0, 4 * MIB);
    a.add_free(MIB..2 * MIB).expect("inside span");
    assert_eq!(
        a.add_free(2 * MIB - PAGE_SIZE..3 * MIB),
        Err(Error::AlreadyManaged(2 * MIB - PAGE_SIZE))
    );
    assert_eq!(
        a.add_reserved(0..MIB + PAGE_SIZE),
        Err(Error::AlreadyManaged(MIB))
    );
    assert!(matches!(
        a.add_free(3 * MIB..5 * MIB),
        Err(Error::OutsideSpan(_))
    ));
    assert_eq!(a.stats().managed, 256);
    check_invariants(&a);
}

#[test]
fn reserved_memory_is_handed_out_only_after_release() {
    let mut meta = Vec::new();
    let mut a = allocator(&mut meta, 0, 4 * MIB);
    a.add_free(0..MIB).expect("inside span");
    a.add_reserved(MIB..2 * MIB).expect("inside span");
    assert!(a.manages(MIB) && !a.is_free(MIB));
    let mut taken = Vec::new();
    while let Some(frame) = a.alloc(O) {
        assert!(frame < MIB, "reserved frame {frame:#x} handed out");
        taken.push(frame);
    }
    assert_eq!(a.free(MIB, O), Err(Error::NotAllocated(MIB)));
    assert_eq!(a.release_reserved(MIB..2 * MIB), Ok(256));
    assert_eq!(
        a.release_reserved(MIB..2 * MIB),
        Err(Error::NotReserved(MIB))
    );
    assert_eq!(a.stats().reserved, 0);
    let run = a
        .alloc_contiguous(256, 256, O)
        .expect("the released megabyte");
    assert_eq!(run, MIB);
    for frame in taken {
        a.free(frame, O).expect("allocated");
    }
    check_invariants(&a);
}

#[test]
fn metadata_size_and_span_limits() {
    assert_eq!(FrameAllocator::metadata_words(MIB, 2 * MIB), Ok(512));
    assert_eq!(
        FrameAllocator::metadata_words(GIB + MIB, GIB + 2 * MIB),
        Ok(512),
        "spans start at a 1 GiB boundary"
    );
    assert_eq!(
        FrameAllocator::metadata_words(0, 2 << 40),
        Err(Error::SpanTooLarge)
    );
    let mut meta = vec![0; 10];
    assert_eq!(
        FrameAllocator::new(&mut meta, 0, MIB).err(),
        Some(Error::MetadataTooSmall {
            needed: 256,
            given: 10
        })
    );
}

#[test]
fn random_operations_match_a_model() {
    for seed in 1..=8u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut meta = Vec::new();
        let mut a = allocator(&mut meta, 0, 64 * MIB);
        a.add_free(0x1000..0x9f000).expect("inside span");
        a.add_free(MIB..40 * MIB).expect("inside span");
        a.add_reserved(40 * MIB..48 * MIB).expect("inside span");
        let total = a.stats().managed - a.stats().reserved;
        // The model: start -> pages of every live allocation.
        let mut live = BTreeMap::<u64, u64>::new();
        let mut live_pages = 0;
        for step in 0..20_000 {
            match rng.below(10) {
                0..=4 => {
                    if let Some(frame) = a.alloc(O) {
                        assert_disjoint(&live, frame, 1);
                        live.insert(frame, 1);
                        live_pages += 1;
                    } else {
                        assert_eq!(a.stats().free, 0, "alloc failed with free frames");
                    }
                }
                5 => {
                    let pages = 1 + rng.below(40);
                    let align = 1 << rng.below(6);
                    if let Some(start) = a.alloc_contiguous(pages, align, O) {
                        assert_eq!(start % (align * PAGE_SIZE), 0);
                        assert_disjoint(&live, start, pages);
                        live.insert(start, pages);
                        live_pages += pages;
                    }
                }
                6..=8 if !live.is_empty() => {
                    let nth = rng.below(live.len() as u64) as usize;
                    let (&start, &pages) = live.iter().nth(nth).expect("nth < len");
                    live.remove(&start);
                    a.free_contiguous(start, pages, O).expect("live allocation");
                    live_pages -= pages;
                }
                _ => {
                    // A bogus free must fail unless it names a live single frame.
                    let frame = rng.below(64 * MIB / PAGE_SIZE) * PAGE_SIZE;
                    if live.get(&frame) == Some(&1) {
                        a.free(frame, O).expect("live frame");
                        live.remove(&frame);
                        live_pages -= 1;
                    } else {
                        let before = a.stats();
                        assert!(
                            a.free(frame, O).is_err(),
                            "bogus free of {frame:#x} accepted"
                        );
                        assert_eq!(a.stats(), before);
                    }
                }
            }
            assert_eq!(a.stats().allocated, live_pages, "seed {seed} step {step}");
            assert_eq!(a.stats().free + live_pages, total);
            if step % 1000 == 0 {
                check_invariants(&a);
            }
        }
        for (start, pages) in live {
            a.free_contiguous(start, pages, O).expect("live allocation");
        }
        assert_eq!(a.stats().free, total);
        check_invariants(&a);
    }
}

fn assert_disjoint(live: &BTreeMap<u64, u64>, start: u64, pages: u64) {
    let end = start + pages * PAGE_SIZE;
    if let Some((&s, &p)) = live.range(..end).next_back() {
        assert!(
            s + p * PAGE_SIZE <= start,
            "[{start:#x}, {end:#x}) overlaps live [{s:#x}, +{p} pages)"
        );
    }
}

#[test]
fn frees_must_name_the_owner() {
    let mut meta = Vec::new();
    let mut a = allocator(&mut meta, 0, MIB);
    a.add_free(0..MIB).expect("inside span");
    let frame = a.alloc(Owner(1)).expect("memory is free");
    let run = a.alloc_contiguous(3, 1, Owner(1)).expect("memory is free");
    assert_eq!(a.free(frame, Owner(2)), Err(Error::WrongOwner(frame)));
    assert_eq!(
        a.free_contiguous(run, 3, Owner(2)),
        Err(Error::WrongOwner(run))
    );
    assert_eq!(a.alloc(Owner(1 << 28)), None, "owner tags have 28 bits");
    a.free(frame, Owner(1)).expect("right owner");
    a.free_contiguous(run, 3, Owner(1)).expect("right owner");
    assert_eq!(a.stats().allocated, 0);
}
