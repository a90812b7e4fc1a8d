//! Evergreen's UEFI loader: boots a kernel with the Limine boot protocol (base revision 3), as
//! a drop-in replacement for Limine's `BOOTX64.EFI` (same `limine.conf`, same machine state).
//!
//! All protocol logic that needs no firmware lives in `bootcore`; this crate does the firmware
//! work and the hand-off. See `loader/README.md` for the design.
#![no_std]
#![no_main]

extern crate alloc;

mod acpi;
mod arena;
mod conf;
mod cpu;
mod error;
mod fail;
mod firmware;
mod fs;
mod gop;
mod handoff;
mod kernel;
mod launch;
mod mem;
mod memory;
mod modules;
mod mp;
mod out;
mod platform;
mod responses;
mod run;
mod serial;
mod slots;
mod strict;
mod tables;
mod wants;
mod watchdog;

use uefi::{Status, boot, entry};

#[entry]
fn main() -> Status {
    out::init();
    log::info!("{} {}", responses::NAME, responses::VERSION);
    // The firmware's 5-minute watchdog would reset a machine waiting at an error prompt.
    if boot::set_watchdog_timer(0, 0x10000, None).is_err() {
        log::debug!("could not disable the watchdog timer");
    }
    let mut allocs = mem::Allocations::new();
    let error = match run::run(&mut allocs) {
        Ok(never) => match never {},
        Err(error) => error,
    };
    allocs.free_all();
    fail::report(&error)
}
