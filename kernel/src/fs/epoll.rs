//! `epoll`: an interest list of (descriptor, events, data) and a readiness scan.
//!
//! Readiness is not pushed by callbacks, as Linux's wake-up hooks do: `epoll_wait` scans the
//! interest list (each file's [`OpenFile::readiness`]) and sleeps on the watched files' wait
//! queues when nothing is ready. Level-triggered entries report whenever the file is ready;
//! edge-triggered ones (`EPOLLET`) only when their queues have been woken since the last
//! report — a new event, as Linux defines an edge; `EPOLLONESHOT` entries go quiet after one
//! report until `EPOLL_CTL_MOD` re-arms them. Entries hold the open file weakly: closing its
//! last descriptor drops it from the list, as on Linux.

use alloc::{
    collections::BTreeMap,
    sync::{Arc, Weak},
    vec::Vec,
};

use linux_raw_sys::errno as e;
use spin::Mutex;

use super::file::{OpenFile, Target};

/// `EPOLLET`.
pub const EDGE: u32 = 1 << 31;
/// `EPOLLONESHOT`.
pub const ONESHOT: u32 = 1 << 30;
/// Event bits always reported, asked for or not (`EPOLLERR`, `EPOLLHUP`).
const ALWAYS: u32 = 0x8 | 0x10;
/// Event bits an interest may name (`EPOLLIN`, `PRI`, `OUT`, `ERR`, `HUP`, `RDNORM`..`WRBAND`,
/// `RDHUP`, `EXCLUSIVE`, `WAKEUP`, `ONESHOT`, `ET`).
const KNOWN: u32 = 0x1
    | 0x2
    | 0x4
    | 0x8
    | 0x10
    | 0x40
    | 0x80
    | 0x100
    | 0x200
    | 0x2000
    | (1 << 28)
    | (1 << 29)
    | ONESHOT
    | EDGE;

struct Entry {
    file: Weak<OpenFile>,
    events: u32,
    data: u64,
    /// Cleared when a one-shot entry has reported.
    armed: bool,
    /// The sum of the file's queue wake-ups at the last edge-triggered report.
    seen: Option<u64>,
}

/// An epoll instance.
#[derive(Default)]
pub struct Epoll {
    entries: Mutex<BTreeMap<i32, Entry>>,
}

/// One reported event: `(events, data)`, as `struct epoll_event` carries them.
pub type Event = (u32, u64);

/// An `EPOLL_CTL_*` operation.
pub enum Control {
    /// `EPOLL_CTL_ADD`.
    Add,
    /// `EPOLL_CTL_DEL`.
    Delete,
    /// `EPOLL_CTL_MOD`.
    Modify,
}

fn wakes(file: &OpenFile) -> u64 {
    file.events_so_far()
}

impl Epoll {
    /// A new, empty instance.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// `epoll_ctl` on descriptor `fd` (open as `file`) with `events` and `data`.
    pub fn control(
        self: &Arc<Self>,
        op: Control,
        fd: i32,
        file: &Arc<OpenFile>,
        events: u32,
        data: u64,
    ) -> Result<(), u32> {
        if matches!(file.target, Target::Node(ref n) if !n.is_device()) {
            // Regular files and directories are always ready: Linux refuses them.
            return Err(e::EPERM);
        }
        if let Target::Epoll(inner) = &file.target
            && (Arc::ptr_eq(inner, self) || inner.watches(self, 4))
        {
            return Err(if Arc::ptr_eq(inner, self) {
                e::EINVAL
            } else {
                e::ELOOP
            });
        }
        if events & !KNOWN != 0 && !matches!(op, Control::Delete) {
            return Err(e::EINVAL);
        }
        let mut entries = self.entries.lock();
        let live = entries
            .get(&fd)
            .is_some_and(|entry| entry.file.upgrade().is_some_and(|f| Arc::ptr_eq(&f, file)));
        let entry = Entry {
            file: Arc::downgrade(file),
            events,
            data,
            armed: true,
            seen: None,
        };
        match op {
            Control::Add if live => Err(e::EEXIST),
            Control::Add => {
                entries.insert(fd, entry);
                Ok(())
            }
            Control::Delete | Control::Modify if !live => Err(e::ENOENT),
            Control::Delete => {
                entries.remove(&fd);
                Ok(())
            }
            Control::Modify => {
                entries.insert(fd, entry);
                Ok(())
            }
        }
    }

    /// Whether `target` is watched by this instance or, up to `depth` levels, by one it
    /// watches (a loop `epoll_ctl` must refuse).
    fn watches(&self, target: &Arc<Epoll>, depth: u32) -> bool {
        if depth == 0 {
            return true;
        }
        let entries = self.entries.lock();
        entries.values().any(|entry| {
            entry.file.upgrade().is_some_and(|f| match &f.target {
                Target::Epoll(inner) => {
                    Arc::ptr_eq(inner, target) || inner.watches(target, depth - 1)
                }
                _ => false,
            })
        })
    }

    /// Takes up to `max` ready events (updating edge and one-shot state).
    pub fn collect(&self, max: usize) -> Vec<Event> {
        let mut ready = Vec::new();
        let mut entries = self.entries.lock();
        entries.retain(|_, entry| entry.file.strong_count() > 0);
        for entry in entries.values_mut() {
            if ready.len() >= max {
                break;
            }
            if !entry.armed {
                continue;
            }
            let Some(file) = entry.file.upgrade() else {
                continue;
            };
            let revents = u32::from(file.readiness()) & (entry.events | ALWAYS);
            if revents == 0 {
                continue;
            }
            if entry.events & EDGE != 0 {
                let now = wakes(&file);
                if entry.seen == Some(now) {
                    continue;
                }
                entry.seen = Some(now);
            }
            if entry.events & ONESHOT != 0 {
                entry.armed = false;
            }
            ready.push((revents, entry.data));
        }
        ready
    }

    /// Whether some entry would report now (for `poll` on the epoll descriptor).
    pub fn any_ready(&self) -> bool {
        let entries = self.entries.lock();
        entries.values().any(|entry| {
            entry.armed
                && entry.file.upgrade().is_some_and(|file| {
                    u32::from(file.readiness()) & (entry.events | ALWAYS) != 0
                        && (entry.events & EDGE == 0 || entry.seen != Some(wakes(&file)))
                })
        })
    }

    /// The open files watched now (a waiter sleeps on their queues).
    pub fn files(&self) -> Vec<Arc<OpenFile>> {
        self.entries
            .lock()
            .values()
            .filter_map(|entry| entry.file.upgrade())
            .collect()
    }
}
