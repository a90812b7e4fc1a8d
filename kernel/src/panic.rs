//! What happens when the kernel panics: the message and location go to serial and screen,
//! then the CPU halts (or, in a test run, QEMU exits with a failure).

use core::sync::atomic::{AtomicBool, Ordering};

static TEST_MODE: AtomicBool = AtomicBool::new(false);
static PANICKING: AtomicBool = AtomicBool::new(false);

/// Makes a panic end the QEMU test run with a failure instead of halting.
pub fn set_test_mode() {
    TEST_MODE.store(true, Ordering::Relaxed);
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    if PANICKING.swap(true, Ordering::AcqRel) {
        // A panic while panicking: say the least possible and stop.
        hal::serial::write_fmt_emergency(format_args!("\nnested panic: {}\n", info.message()));
        hal::cpu::halt_forever();
    }
    let location = info.location();
    let (file, line, column) =
        location.map_or(("<unknown>", 0, 0), |l| (l.file(), l.line(), l.column()));
    hal::serial::write_fmt_emergency(format_args!(
        "\nKERNEL PANIC at {file}:{line}:{column}: {}\n",
        info.message()
    ));
    crate::console::try_write_fmt(format_args!(
        "\n\x1b[41m\x1b[97m KERNEL PANIC \x1b[0m at {file}:{line}:{column}:\n{}\n",
        info.message()
    ));
    print_trace();
    if TEST_MODE.load(Ordering::Relaxed) {
        hal::qemu::exit(hal::qemu::ExitCode::Failure);
    }
    hal::cpu::halt_forever()
}

/// Prints the return addresses on the panicking stack, with function names.
fn print_trace() {
    hal::serial::write_fmt_emergency(format_args!("stack trace:\n"));
    hal::backtrace::walk(32, |address| match crate::symbols::lookup(address) {
        Some(symbol) => {
            hal::serial::write_fmt_emergency(format_args!("  {address:#018x} {symbol}\n"));
            crate::console::try_write_fmt(format_args!("  {address:#x} {symbol}\n"));
        }
        None => {
            hal::serial::write_fmt_emergency(format_args!("  {address:#018x} ?\n"));
            crate::console::try_write_fmt(format_args!("  {address:#x} ?\n"));
        }
    });
}
