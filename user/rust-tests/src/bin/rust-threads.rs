//! Rust std threads, unchanged from what runs on Linux: a hundred threads, `Mutex`,
//! `Condvar` (with a timeout: a futex wait that expires), channels, `Barrier`, `RwLock`,
//! thread-locals and their destructors, scoped threads, `park`/`unpark`, names, a panic in a
//! thread caught by `join`, and a stack overflow in a thread reported by std's handler
//! (`sigaltstack` + `SIGSEGV` on the guard page) in a child process started with `Command`.
//! The differential test compares stdout and status on the host and on Evergreen, so every
//! line printed is deterministic.

// A test program: a call that fails should stop it loudly, as `unwrap` does.
#![allow(clippy::unwrap_used)]

use std::{
    cell::Cell,
    os::unix::process::ExitStatusExt,
    process::Command,
    sync::{
        Arc, Barrier, Condvar, Mutex, RwLock,
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

thread_local! {
    static MINE: Cell<usize> = const { Cell::new(0) };
    static GUARD: DropCounter = const { DropCounter };
}

static DROPS: AtomicUsize = AtomicUsize::new(0);

struct DropCounter;

impl Drop for DropCounter {
    fn drop(&mut self) {
        DROPS.fetch_add(1, Ordering::SeqCst);
    }
}

fn hundred_threads() {
    let handles: Vec<_> = (0..100u64)
        .map(|i| thread::spawn(move || (0..=i).sum::<u64>()))
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    println!("100 threads joined, sum of their results {total}");
}

fn mutex() {
    let counter = Arc::new(Mutex::new(0u64));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let counter = Arc::clone(&counter);
            thread::spawn(move || {
                for _ in 0..5_000 {
                    *counter.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    println!(
        "8 threads x 5000 increments under a Mutex: {}",
        counter.lock().unwrap()
    );
}

fn condvar() {
    // A bounded queue: a producer and a consumer wait for each other.
    let shared = Arc::new((Mutex::new(Vec::<u32>::new()), Condvar::new()));
    let consumer = {
        let shared = Arc::clone(&shared);
        thread::spawn(move || {
            let (queue, cv) = &*shared;
            let mut got = Vec::new();
            while got.len() < 1000 {
                let mut q = queue.lock().unwrap();
                while q.is_empty() {
                    q = cv.wait(q).unwrap();
                }
                got.append(&mut q);
                cv.notify_all();
            }
            got
        })
    };
    let (queue, cv) = &*shared;
    for i in 0..1000 {
        let mut q = queue.lock().unwrap();
        while q.len() >= 4 {
            q = cv.wait(q).unwrap();
        }
        q.push(i);
        cv.notify_all();
    }
    let got = consumer.join().unwrap();
    let in_order = got.iter().copied().eq(0..1000);
    println!("Condvar queue: {} items, in order {in_order}", got.len());

    let lock = Mutex::new(());
    let start = Instant::now();
    let (_guard, result) = Condvar::new()
        .wait_timeout(lock.lock().unwrap(), Duration::from_millis(50))
        .unwrap();
    println!(
        "Condvar wait_timeout: timed out {}, waited at least 50 ms {}",
        result.timed_out(),
        start.elapsed() >= Duration::from_millis(50)
    );
}

fn channels() {
    let (tx, rx) = mpsc::channel();
    for id in 0..10u64 {
        let tx = tx.clone();
        thread::spawn(move || {
            for n in 0..100 {
                tx.send(id * 1000 + n).unwrap();
            }
        });
    }
    drop(tx);
    let values: Vec<u64> = rx.iter().collect();
    println!(
        "channel: {} messages from 10 senders, sum {}",
        values.len(),
        values.iter().sum::<u64>()
    );

    // A rendezvous channel: each send waits for its receive.
    let (tx, rx) = mpsc::sync_channel(0);
    let sender = thread::spawn(move || {
        for i in 0..50u32 {
            tx.send(i).unwrap();
        }
    });
    let sum: u32 = rx.iter().sum();
    sender.join().unwrap();
    println!("sync_channel(0): sum {sum}");
}

fn barrier() {
    let barrier = Arc::new(Barrier::new(10));
    let arrived = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..10)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            let arrived = Arc::clone(&arrived);
            thread::spawn(move || {
                arrived.fetch_add(1, Ordering::SeqCst);
                let leader = barrier.wait().is_leader();
                // Past the barrier, everyone has arrived.
                (leader, arrived.load(Ordering::SeqCst))
            })
        })
        .collect();
    let results: Vec<(bool, usize)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let leaders = results.iter().filter(|r| r.0).count();
    let all_saw_ten = results.iter().all(|r| r.1 == 10);
    println!("Barrier(10): {leaders} leader, every thread saw all arrived {all_saw_ten}");
}

fn rwlock() {
    let value = Arc::new(RwLock::new(0u64));
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let value = Arc::clone(&value);
            thread::spawn(move || {
                for _ in 0..1000 {
                    *value.write().unwrap() += 1;
                    let _ = *value.read().unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    println!("RwLock: {}", value.read().unwrap());
}

fn thread_locals() {
    MINE.with(|m| m.set(1000));
    let handles: Vec<_> = (0..8)
        .map(|i| {
            thread::spawn(move || {
                GUARD.with(|_| {});
                MINE.with(|m| {
                    let before = m.get();
                    m.set(i);
                    thread::sleep(Duration::from_millis(5));
                    (before, m.get())
                })
            })
        })
        .collect();
    let seen: Vec<(usize, usize)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let fresh = seen.iter().all(|s| s.0 == 0);
    let kept = seen.iter().enumerate().all(|(i, s)| s.1 == i);
    println!(
        "thread-locals: start at 0 in each thread {fresh}, each kept its own {kept}, main still {}",
        MINE.with(Cell::get)
    );
    println!(
        "thread-local destructors run at thread exit: {}",
        DROPS.load(Ordering::SeqCst)
    );
}

fn scoped() {
    let data: Vec<u64> = (1..=1000).collect();
    let mut sums = [0u64; 4];
    thread::scope(|s| {
        for (chunk, sum) in data.chunks(250).zip(sums.iter_mut()) {
            s.spawn(move || *sum = chunk.iter().sum());
        }
    });
    println!(
        "scoped threads: chunk sums {sums:?}, total {}",
        sums.iter().sum::<u64>()
    );
}

fn park_and_names() {
    let flag = Arc::new(AtomicUsize::new(0));
    let parked = {
        let flag = Arc::clone(&flag);
        thread::Builder::new()
            .name("parker".into())
            .spawn(move || {
                while flag.load(Ordering::SeqCst) == 0 {
                    thread::park();
                }
                thread::current().name().map(String::from)
            })
            .unwrap()
    };
    thread::sleep(Duration::from_millis(10));
    flag.store(1, Ordering::SeqCst);
    parked.thread().unpark();
    println!(
        "park/unpark: woke thread named {:?}",
        parked.join().unwrap()
    );
    let start = Instant::now();
    thread::sleep(Duration::from_millis(20));
    println!(
        "sleep 20 ms took at least 20 ms: {}",
        start.elapsed() >= Duration::from_millis(20)
    );
}

fn panics() {
    // The default hook's message names the thread id, which differs from the host's.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("panic hook: {}", info.payload_as_str().unwrap_or("?"));
    }));
    let result = thread::Builder::new()
        .name("doomed".into())
        .spawn(|| -> u32 { panic!("deliberate panic in a thread") })
        .unwrap()
        .join();
    let message = result
        .as_ref()
        .err()
        .and_then(|e| e.downcast_ref::<&str>().copied());
    println!(
        "a thread panicked: join gave Err {}, payload {message:?}",
        result.is_err()
    );
    println!(
        "the process goes on after the panic: {}",
        thread::spawn(|| 7).join().unwrap()
    );
    drop(std::panic::take_hook());
}

#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let buffer = [depth; 64];
    std::hint::black_box(&buffer);
    recurse(depth + 1) + buffer[7]
}

fn stack_overflow() {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe).arg("overflow").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // "thread 'deep' (TID) has overflowed its stack": the thread id differs between runs.
    let line = stderr.lines().find(|l| l.contains("overflowed")).map(|l| {
        match (l.find(" ("), l.find(") ")) {
            (Some(open), Some(close)) if open < close => {
                format!("{}{}", &l[..open], &l[close + 1..])
            }
            _ => l.to_string(),
        }
    });
    println!(
        "stack overflow in a thread: {line:?}, ended by signal {:?}",
        out.status.signal()
    );
}

/// Floating point in several threads that keep giving up the CPU (yields, sleeps, system
/// calls): each must keep its own x87/SSE registers across every switch.
fn float_state() {
    fn series(seed: f64, yield_every: u32) -> f64 {
        let mut acc = seed;
        for i in 1..=20_000u32 {
            acc = (acc * 1.000_001 + f64::from(i).sqrt()) % 1.0e9;
            if i % yield_every == 0 {
                if i % (yield_every * 8) == 0 {
                    thread::sleep(Duration::from_micros(100));
                } else {
                    thread::yield_now();
                }
            }
        }
        acc
    }
    let expected: Vec<f64> = (0..6)
        .map(|t| series(f64::from(t) * 3.5, u32::MAX))
        .collect();
    let handles: Vec<_> = (0..6)
        .map(|t| thread::spawn(move || series(f64::from(t) * 3.5, 97 + t as u32)))
        .collect();
    let got: Vec<f64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    println!(
        "6 threads computing with floats across switches kept their registers: {}",
        got.iter()
            .zip(&expected)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
}

/// A static PIE loads at a random base: two runs put `main` at different addresses (a
/// chance of one in millions that they meet).
fn randomised_base() {
    let exe = std::env::current_exe().unwrap();
    let run = || Command::new(&exe).arg("where").output().unwrap().stdout;
    let (first, second) = (run(), run());
    println!(
        "a static PIE's base is randomised: {}",
        !first.is_empty() && first != second
    );
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("where") {
        println!("{:p}", main as fn());
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("overflow") {
        let t = thread::Builder::new()
            .name("deep".into())
            .spawn(|| recurse(0))
            .unwrap();
        let _ = t.join();
        return;
    }
    hundred_threads();
    float_state();
    mutex();
    condvar();
    channels();
    barrier();
    rwlock();
    thread_locals();
    scoped();
    park_and_names();
    panics();
    stack_overflow();
    randomised_base();
}
