//! Loader output: every line goes to COM1 and, while boot services run, to the screen.
//!
//! Lines start with `loader: ` (the project-wide convention the runner and tests grep for).
//! Messages go through the `log` facade: `info!` prints `loader: <msg>`, `warn!` prints
//! `loader: warning: <msg>`, `error!` prints `loader: error: <msg>`. `debug!` goes to serial
//! only.
//!
//! The screen is the graphics console's own text output (the Simple Text Output protocol on
//! the GOP handle), not the firmware's ConOut splitter: OVMF mirrors ConOut to the same UART,
//! which would print every line twice. Without a graphics console we fall back to ConOut.

use core::{
    fmt::Write,
    ptr,
    sync::atomic::{AtomicBool, AtomicPtr, Ordering},
};

use log::{Level, LevelFilter, Log, Metadata, Record};
use uefi::{
    boot,
    proto::console::{gop::GraphicsOutput, text::Output},
};

use crate::{
    firmware,
    serial::{self, Serial},
};

/// The screen's text output, valid while boot services run; null when there is none.
static SCREEN: AtomicPtr<Output> = AtomicPtr::new(ptr::null_mut());
/// Whether the firmware console (ConOut) is the screen (no separate graphics console found).
static USE_CONOUT: AtomicBool = AtomicBool::new(false);

struct Logger;

static LOGGER: Logger = Logger;

/// Starts serial output and finds the screen. Call first thing.
pub fn init() {
    serial::init();
    find_screen();
    // Ignoring the error is right: it only says a logger was already installed.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(LevelFilter::Info);
}

fn find_screen() {
    let Ok(handle) = boot::get_handle_for_protocol::<GraphicsOutput>() else {
        USE_CONOUT.store(true, Ordering::Relaxed);
        return;
    };
    match firmware::shared_protocol::<Output>(handle) {
        Ok(mut output) => {
            let raw: *mut Output = &mut *output;
            // The protocol lives as long as boot services; closing a GET_PROTOCOL open is a
            // no-op, so dropping the guard would not matter, but keeping it is clearer.
            core::mem::forget(output);
            SCREEN.store(raw, Ordering::Release);
        }
        Err(_) => USE_CONOUT.store(true, Ordering::Relaxed),
    }
}

/// Turns `debug!` lines (serial only) on or off: the config's `verbose: yes`.
pub fn set_verbose(verbose: bool) {
    log::set_max_level(if verbose {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    });
}

/// Whether boot services still run (cleared just before ExitBootServices).
static BOOT_SERVICES: AtomicBool = AtomicBool::new(true);

/// Whether boot services still run, as far as the loader's output is concerned.
pub fn boot_services_active() -> bool {
    BOOT_SERVICES.load(Ordering::Relaxed)
}

/// Stops all screen output; call before ExitBootServices.
pub fn boot_services_ending() {
    BOOT_SERVICES.store(false, Ordering::Relaxed);
    SCREEN.store(ptr::null_mut(), Ordering::Release);
    USE_CONOUT.store(false, Ordering::Relaxed);
}

/// Writes `args` to the screen, if there is one.
pub fn screen(args: core::fmt::Arguments<'_>) {
    let raw = SCREEN.load(Ordering::Acquire);
    if !raw.is_null() {
        // SAFETY: `raw` came from an open protocol that stays valid until boot services end,
        // and it is reset to null before then. The loader is single-threaded and no other
        // reference to this protocol instance exists in the loader.
        let output = unsafe { &mut *raw };
        let _ = output.write_fmt(args);
    } else if USE_CONOUT.load(Ordering::Relaxed) && boot_services_active() {
        uefi::system::with_stdout(|out| {
            let _ = out.write_fmt(args);
        });
    }
}

/// Writes a `loader: `-prefixed line to serial and screen.
pub fn line(prefix: &str, args: core::fmt::Arguments<'_>) {
    let _ = writeln!(Serial, "loader: {prefix}{args}");
    screen(format_args!("loader: {prefix}{args}\n"));
}

impl Log for Logger {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        let prefix = match record.level() {
            Level::Error => "error: ",
            Level::Warn => "warning: ",
            Level::Info => "",
            Level::Debug | Level::Trace => {
                let _ = writeln!(Serial, "loader: {}", record.args());
                return;
            }
        };
        line(prefix, *record.args());
    }

    fn flush(&self) {}
}
