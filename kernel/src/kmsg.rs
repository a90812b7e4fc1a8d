//! The kernel log buffer: what `dmesg` shows (`syslog(2)`, `/dev/kmsg`).
//!
//! Every log line is kept in a fixed ring of bytes as a `/dev/kmsg` record,
//! `PRIO,SEQ,USEC,-;TEXT\n`, oldest records dropped whole when the ring is full. A fixed
//! array, not the heap: the logger runs everywhere (interrupt handlers, the allocator's own
//! out-of-memory path), and the ring's lock keeps interrupts off while held, so a line
//! logged from an interrupt cannot deadlock with one being stored.

use alloc::{format, string::String, vec::Vec};

use hal::sync::IrqMutex;
use log::Level;

/// Bytes the ring holds (Linux's default `CONFIG_LOG_BUF_SHIFT` is 128 KiB too).
pub const CAPACITY: usize = 128 << 10;

struct Ring {
    bytes: [u8; CAPACITY],
    /// Where the oldest record starts.
    start: usize,
    /// Bytes in use.
    len: usize,
    /// The sequence number of the oldest record kept.
    first_seq: u64,
    /// The sequence number the next record gets.
    next_seq: u64,
    /// `SYSLOG_ACTION_CLEAR`: records before this one are not shown by `READ_ALL`.
    clear_seq: u64,
}

static RING: IrqMutex<Ring> = IrqMutex::new(Ring {
    bytes: [0; CAPACITY],
    start: 0,
    len: 0,
    first_seq: 0,
    next_seq: 0,
    clear_seq: 0,
});

/// syslog priority of a log level.
fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

impl Ring {
    fn at(&self, i: usize) -> u8 {
        self.bytes[(self.start + i) % CAPACITY]
    }

    /// Drops the oldest record.
    fn drop_oldest(&mut self) {
        let mut n = 0;
        while n < self.len && self.at(n) != b'\n' {
            n += 1;
        }
        let n = (n + 1).min(self.len);
        self.start = (self.start + n) % CAPACITY;
        self.len -= n;
        self.first_seq += 1;
    }

    fn push_bytes(&mut self, data: &[u8]) {
        for &b in data {
            let at = (self.start + self.len) % CAPACITY;
            self.bytes[at] = b;
            self.len += 1;
        }
    }

    /// Every record kept, with its sequence number.
    fn records(&self) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        let mut line = Vec::new();
        let mut seq = self.first_seq;
        for i in 0..self.len {
            let b = self.at(i);
            if b == b'\n' {
                out.push((seq, String::from_utf8_lossy(&line).into_owned()));
                line.clear();
                seq += 1;
            } else {
                line.push(b);
            }
        }
        out
    }
}

/// Keeps one log line (called by the logger for every line it prints).
pub fn record(level: Level, ns: u64, text: &str) {
    let mut head = [0u8; 48];
    let mut cursor = crate::logger::LineBuf::new();
    let mut ring = RING.lock();
    let _ = core::fmt::write(
        &mut cursor,
        format_args!("{},{},{},-;", priority(level), ring.next_seq, ns / 1000),
    );
    let head_len = cursor.as_str().len().min(head.len());
    head[..head_len].copy_from_slice(&cursor.as_str().as_bytes()[..head_len]);
    // Newlines inside a message would split the record: they become spaces.
    let text = text.as_bytes();
    let body = &text[..text.len().min(CAPACITY / 4)];
    let need = head_len + body.len() + 1;
    while ring.len + need > CAPACITY {
        ring.drop_oldest();
    }
    ring.push_bytes(&head[..head_len]);
    for &b in body {
        ring.push_bytes(&[if b == b'\n' { b' ' } else { b }]);
    }
    ring.push_bytes(b"\n");
    ring.next_seq += 1;
}

/// One record parsed: priority, sequence, microseconds, text.
struct Parsed<'a> {
    prio: u8,
    usec: u64,
    text: &'a str,
}

fn parse(line: &str) -> Option<Parsed<'_>> {
    let (head, text) = line.split_once(';')?;
    let mut fields = head.split(',');
    let prio = fields.next()?.parse().ok()?;
    let _seq: u64 = fields.next()?.parse().ok()?;
    let usec = fields.next()?.parse().ok()?;
    Some(Parsed { prio, usec, text })
}

/// The log as `syslog(SYSLOG_ACTION_READ_ALL)` gives it: `<P>[ seconds.micros] text` lines,
/// from the last clear on.
pub fn text_since_clear() -> String {
    let ring = RING.lock();
    let clear = ring.clear_seq;
    let records = ring.records();
    drop(ring);
    let mut out = String::new();
    for (seq, line) in records.iter().filter(|(s, _)| *s >= clear) {
        let _ = seq;
        if let Some(p) = parse(line) {
            out.push_str(&format!(
                "<{}>[{:5}.{:06}] {}\n",
                p.prio,
                p.usec / 1_000_000,
                p.usec % 1_000_000,
                p.text
            ));
        }
    }
    out
}

/// `SYSLOG_ACTION_CLEAR`.
pub fn clear() {
    let mut ring = RING.lock();
    ring.clear_seq = ring.next_seq;
}

/// The first record at or after `seq` (a `/dev/kmsg` reader's position), as its `/dev/kmsg`
/// line, and the sequence after it; `None` when the reader has seen everything. A reader
/// whose position was overwritten skips to the oldest record kept.
pub fn record_from(seq: u64) -> Option<(String, u64)> {
    let ring = RING.lock();
    let seq = seq.max(ring.first_seq);
    let records = ring.records();
    drop(ring);
    records
        .into_iter()
        .find(|(s, _)| *s >= seq)
        .map(|(s, mut line)| {
            line.push('\n');
            (line, s + 1)
        })
}

/// A line a program wrote to `/dev/kmsg` (`<P>` prefix optional), logged as the kernel logs.
pub fn user_write(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let text = text.trim_end_matches('\n');
    let (level, text) = match text.strip_prefix('<').and_then(|t| t.split_once('>')) {
        Some((p, rest)) => match p.parse::<u8>().map(|p| p & 7) {
            Ok(0..=3) => (Level::Error, rest),
            Ok(4) => (Level::Warn, rest),
            Ok(5 | 6) => (Level::Info, rest),
            Ok(_) => (Level::Debug, rest),
            Err(_) => (Level::Info, text),
        },
        None => (Level::Info, text),
    };
    log::log!(target: "user", level, "{text}");
}
