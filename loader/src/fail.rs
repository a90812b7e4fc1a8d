//! What happens when booting cannot go on: a clear message, a key press, back to firmware.
//!
//! Before ExitBootServices every failure is an [`Error`](crate::error::Error) that `main`
//! hands to [`report`]. After ExitBootServices there is no firmware to return to, so
//! [`after_exit`] prints on serial and halts. The panic handler is the last resort for bugs.

use core::fmt::Write;

use uefi::{Status, boot};

use crate::{cpu, error::Error, out, serial::Serial};

/// Prints `loader: error: <reason>`, waits for a key and returns the status for firmware.
pub fn report(error: &Error) -> Status {
    log::error!("{error}");
    wait_for_key();
    error.status()
}

/// The prompt after a fatal error (printed as is, without the `loader: ` prefix).
const PROMPT: &str = "Press any key to return to firmware.";

/// Prints the prompt and waits (without timeout) for one key on the firmware console.
fn wait_for_key() {
    let _ = writeln!(Serial, "{PROMPT}");
    out::screen(format_args!("{PROMPT}\n"));
    if !out::boot_services_active() {
        return;
    }
    uefi::system::with_stdin(|stdin| {
        let _ = stdin.reset(false);
        loop {
            match stdin.read_key() {
                Ok(Some(_)) => return,
                Ok(None) => {}
                // A console without input cannot be waited on; do not spin forever.
                Err(_) => return,
            }
            let Ok(event) = stdin.wait_for_key_event() else {
                return;
            };
            if boot::wait_for_event(&[event]).is_err() {
                boot::stall(core::time::Duration::from_millis(10));
            }
        }
    });
}

/// A failure after ExitBootServices: say so on serial, then stop this CPU.
pub fn after_exit(what: core::fmt::Arguments<'_>) -> ! {
    let _ = writeln!(Serial, "loader: error: {what}");
    let _ = writeln!(Serial, "loader: boot services are gone; halting.");
    cpu::halt()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let _ = writeln!(Serial, "loader: panic: {}", info.message());
    if let Some(location) = info.location() {
        let _ = writeln!(Serial, "loader: panic at {location}");
    }
    if !out::boot_services_active() {
        cpu::halt();
    }
    out::screen(format_args!("loader: panic: {}\n", info.message()));
    wait_for_key();
    // SAFETY: Boot services are active; exiting hands control back to the boot manager. Pages
    // we allocated stay allocated, which is harmless.
    let _ = unsafe {
        boot::exit(
            boot::image_handle(),
            Status::ABORTED,
            0,
            core::ptr::null_mut(),
        )
    };
    cpu::halt()
}
