//! Futexes: threads sleeping on a 32-bit word of user memory until another wakes them.
//!
//! Waiters are kept per (address space, address), in arrival order, each with the bitset of
//! `FUTEX_WAIT_BITSET`. `FUTEX_WAIT` checks the word and queues under one lock, so a wake that
//! follows a change of the word cannot be missed. Every futex here is private to its address
//! space: processes share memory only through `vfork`'s shared space for now, which is one
//! address space.

use alloc::{collections::BTreeMap, sync::Arc, vec::Vec};
use core::sync::atomic::{AtomicBool, Ordering};

use hal::user::UserPtr;
use linux_raw_sys::errno as e;
use spin::Mutex;

use crate::{
    process::{Current, Process},
    sched::{self, Wait, WaitQueue},
};

struct Waiter {
    woken: AtomicBool,
    queue: WaitQueue,
    bitset: u32,
}

type Key = (usize, u64);

static FUTEXES: Mutex<BTreeMap<Key, Vec<Arc<Waiter>>>> = Mutex::new(BTreeMap::new());

fn key(process: &Process, address: u64) -> Key {
    (Arc::as_ptr(&process.memory().space) as usize, address)
}

/// `FUTEX_WAIT(_BITSET)`: sleeps if the word at `address` still holds `expected`, until
/// woken, `deadline` (monotonic ns) or a signal.
pub fn wait(
    current: &Current,
    address: u64,
    expected: u32,
    deadline: Option<u64>,
    bitset: u32,
) -> Result<u64, u32> {
    if !address.is_multiple_of(4) {
        return Err(e::EINVAL);
    }
    if bitset == 0 {
        return Err(e::EINVAL);
    }
    let key = key(current.process(), address);
    let waiter = Arc::new(Waiter {
        woken: AtomicBool::new(false),
        queue: WaitQueue::new(),
        bitset,
    });
    {
        let mut table = FUTEXES.lock();
        let value = UserPtr::<u32>::new(address).read().map_err(|_| e::EFAULT)?;
        if value != expected {
            return Err(e::EAGAIN);
        }
        table.entry(key).or_default().push(Arc::clone(&waiter));
    }
    let result = sched::wait(&current.task, &[&waiter.queue], deadline, || {
        waiter.woken.load(Ordering::Acquire)
    });
    if result != Wait::Ready {
        let mut table = FUTEXES.lock();
        if let Some(list) = table.get_mut(&key) {
            list.retain(|w| !Arc::ptr_eq(w, &waiter));
            if list.is_empty() {
                table.remove(&key);
            }
        }
        // Woken just as the wait gave up: count it as woken.
        if waiter.woken.load(Ordering::Acquire) {
            return Ok(0);
        }
    }
    match result {
        Wait::Ready => Ok(0),
        Wait::TimedOut => Err(e::ETIMEDOUT),
        Wait::Interrupted => Err(crate::signal::ERESTARTSYS),
    }
}

/// `FUTEX_WAKE(_BITSET)`: wakes up to `count` waiters on `address` whose bitset meets
/// `bitset`; returns how many.
pub fn wake_bitset(process: &Process, address: u64, count: u32, bitset: u32) -> u64 {
    let key = key(process, address);
    let woken: Vec<Arc<Waiter>> = {
        let mut table = FUTEXES.lock();
        let Some(list) = table.get_mut(&key) else {
            return 0;
        };
        let mut woken = Vec::new();
        list.retain(|w| {
            if woken.len() < count as usize && w.bitset & bitset != 0 {
                woken.push(Arc::clone(w));
                false
            } else {
                true
            }
        });
        if list.is_empty() {
            table.remove(&key);
        }
        woken
    };
    for w in &woken {
        w.woken.store(true, Ordering::Release);
        w.queue.wake_all();
    }
    woken.len() as u64
}

/// `FUTEX_WAKE`: wakes up to `count` waiters.
pub fn wake(process: &Process, address: u64, count: u32) -> u64 {
    wake_bitset(process, address, count, u32::MAX)
}

/// `FUTEX_REQUEUE`/`FUTEX_CMP_REQUEUE`: wakes `count` waiters on `from` and moves up to
/// `requeue` of the rest to `to`; with `expected`, only if `from` still holds it.
pub fn requeue(
    process: &Process,
    from: u64,
    to: u64,
    count: u32,
    requeue: u32,
    expected: Option<u32>,
) -> Result<u64, u32> {
    let (from_key, to_key) = (key(process, from), key(process, to));
    let (woken, moved) = {
        let mut table = FUTEXES.lock();
        if let Some(expected) = expected {
            let value = UserPtr::<u32>::new(from).read().map_err(|_| e::EFAULT)?;
            if value != expected {
                return Err(e::EAGAIN);
            }
        }
        let mut list = table.remove(&from_key).unwrap_or_default();
        let n = (count as usize).min(list.len());
        let woken: Vec<Arc<Waiter>> = list.drain(..n).collect();
        let m = (requeue as usize).min(list.len());
        let moved: Vec<Arc<Waiter>> = list.drain(..m).collect();
        if !list.is_empty() {
            table.insert(from_key, list);
        }
        let moved_count = moved.len();
        if !moved.is_empty() {
            table.entry(to_key).or_default().extend(moved);
        }
        (woken, moved_count)
    };
    for w in &woken {
        w.woken.store(true, Ordering::Release);
        w.queue.wake_all();
    }
    Ok((woken.len() + moved) as u64)
}
