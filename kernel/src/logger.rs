//! The kernel's `log` backend: each record becomes one line on COM1 and on the screen console,
//! stamped with the time since boot and the number of the CPU that logged it.
//!
//! A line is formatted into a stack buffer first and then written to each output under that
//! output's lock, so lines from different CPUs never interleave mid-line.

use core::{
    fmt::Write,
    sync::atomic::{AtomicU8, Ordering},
};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::console;

/// Longest line kept; longer records are cut with a `…` marker.
const LINE_MAX: usize = 480;

struct Logger;

static LOGGER: Logger = Logger;

/// A fixed-size line buffer that truncates instead of failing.
pub struct LineBuf {
    bytes: [u8; LINE_MAX],
    len: usize,
    truncated: bool,
}

impl LineBuf {
    /// An empty line.
    pub const fn new() -> Self {
        Self {
            bytes: [0; LINE_MAX],
            len: 0,
            truncated: false,
        }
    }

    /// The text written so far.
    pub fn as_str(&self) -> &str {
        // Only whole UTF-8 characters are ever copied in (see `write_str`).
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("<log line not UTF-8>")
    }

    /// Whether text was dropped because the line was full.
    pub fn truncated(&self) -> bool {
        self.truncated
    }
}

impl Write for LineBuf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for c in s.chars() {
            let mut utf8 = [0; 4];
            let encoded = c.encode_utf8(&mut utf8).as_bytes();
            if self.len + encoded.len() > LINE_MAX {
                self.truncated = true;
                return Ok(());
            }
            self.bytes[self.len..self.len + encoded.len()].copy_from_slice(encoded);
            self.len += encoded.len();
        }
        Ok(())
    }
}

fn level_style(level: Level) -> (&'static str, &'static str) {
    match level {
        Level::Error => ("ERROR", "\x1b[91m"),
        Level::Warn => ("WARN ", "\x1b[93m"),
        Level::Info => ("INFO ", "\x1b[92m"),
        Level::Debug => ("DEBUG", "\x1b[96m"),
        Level::Trace => ("TRACE", "\x1b[90m"),
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // The virtio crate reports routine negotiation at info: that is debug detail here.
        if metadata.target().starts_with("virtio_drivers") {
            return metadata.level() <= log::Level::Warn || log::max_level() >= log::Level::Debug;
        }
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut line = LineBuf::new();
        let _ = write!(line, "{}", record.args());
        let cut = if line.truncated() { "…" } else { "" };
        let (name, colour) = level_style(record.level());
        // Time since the clock was calibrated (0 before), and the CPU that logged.
        let ns = hal::time::now_ns();
        let (secs, micros) = (ns / 1_000_000_000, ns % 1_000_000_000 / 1000);
        let cpu = hal::percpu::current_index();
        crate::kmsg::record(record.level(), ns, line.as_str());
        if syslog_level(record.level()) >= CONSOLE_LEVEL.load(Ordering::Relaxed) {
            return;
        }
        hal::serial::write_fmt(format_args!(
            "[{secs:5}.{micros:06} {cpu}] [{name}] {}{cut}\n",
            line.as_str()
        ));
        let mut screen = LineBuf::new();
        let _ = writeln!(
            screen,
            "\x1b[90m{secs:5}.{micros:06} {cpu}\x1b[0m {colour}{name}\x1b[0m {}{cut}",
            line.as_str()
        );
        console::write_str(screen.as_str());
    }

    fn flush(&self) {}
}

/// Records at `syslog(2)` levels below this one reach the consoles (serial and screen);
/// the rest only the log (`dmesg`). Linux's `console_loglevel`: 7 shows all but debug.
static CONSOLE_LEVEL: AtomicU8 = AtomicU8::new(DEFAULT_CONSOLE_LEVEL);
/// `console_loglevel`'s default.
pub const DEFAULT_CONSOLE_LEVEL: u8 = 7;

/// A record's `syslog(2)` level: error 3, warning 4, info 6, debug 7.
fn syslog_level(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// Sets the console level (`syslog(SYSLOG_ACTION_CONSOLE_LEVEL)`, `dmesg -n`): 1 to 8.
pub fn set_console_level(level: u8) {
    CONSOLE_LEVEL.store(level.clamp(1, 8), Ordering::Relaxed);
}

/// Installs the logger with the level named on the command line (`log=debug`; default info).
pub fn init(level: LevelFilter) {
    // A second call (impossible at boot) would keep the first logger, which is fine.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// A limit on how often a kind of message is logged, as Linux's `printk_ratelimit` does for
/// messages user programs can cause at will (a crashing program restarted in a loop must
/// not flood the console): `burst` messages per `interval_ns`, then silence until the
/// interval ends; the next message says how many were left out.
pub struct RateLimit {
    burst: u32,
    interval_ns: u64,
    state: spin::Mutex<RateState>,
}

struct RateState {
    start: u64,
    printed: u32,
    missed: u32,
}

impl RateLimit {
    /// At most `burst` messages per `interval_ns`.
    pub const fn new(burst: u32, interval_ns: u64) -> Self {
        Self {
            burst,
            interval_ns,
            state: spin::Mutex::new(RateState {
                start: 0,
                printed: 0,
                missed: 0,
            }),
        }
    }

    /// Whether to log now: `Some(n)` with the number of messages left out since the last
    /// one logged, or `None` to stay silent.
    pub fn check(&self) -> Option<u32> {
        let now = crate::time::now_ns();
        let mut s = self.state.lock();
        if s.printed == 0 || now.saturating_sub(s.start) >= self.interval_ns {
            s.start = now;
            s.printed = 0;
        }
        if s.printed < self.burst {
            s.printed += 1;
            Some(core::mem::take(&mut s.missed))
        } else {
            s.missed += 1;
            None
        }
    }
}
