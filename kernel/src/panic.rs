//! What happens when the kernel panics: every other CPU is stopped (an NMI to each online
//! CPU), the message, location and a symbolized stack trace go to serial and screen, and then
//! the machine halts — or resets with `panic=reboot`, or, in a test run, QEMU exits.

use core::{
    fmt::Write,
    sync::atomic::{AtomicBool, AtomicU8, Ordering},
};

use crate::logger::LineBuf;

static TEST_MODE: AtomicBool = AtomicBool::new(false);
static REBOOT: AtomicBool = AtomicBool::new(false);
static PANICKING: AtomicBool = AtomicBool::new(false);
/// What a test that panics on purpose expects (see [`Expect`]).
static EXPECTED: AtomicU8 = AtomicU8::new(Expect::Nothing as u8);

/// A panic a test provokes on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Expect {
    /// No panic is expected: any panic fails the run.
    Nothing,
    /// Any panic, provided every other CPU stops.
    AllCpusStop,
    /// A double fault (the stack-overflow test).
    DoubleFault,
    /// A general protection fault (the exception-report test).
    GeneralProtection,
    /// An invalid opcode (the exception-report test).
    InvalidOpcode,
}

impl Expect {
    /// The words the panic message must contain.
    fn message(self) -> Option<&'static str> {
        match self {
            Expect::Nothing | Expect::AllCpusStop => None,
            Expect::DoubleFault => Some("double fault"),
            Expect::GeneralProtection => Some("general protection fault"),
            Expect::InvalidOpcode => Some("invalid opcode"),
        }
    }

    fn from_u8(value: u8) -> Self {
        [
            Expect::Nothing,
            Expect::AllCpusStop,
            Expect::DoubleFault,
            Expect::GeneralProtection,
            Expect::InvalidOpcode,
        ]
        .into_iter()
        .find(|e| *e as u8 == value)
        .unwrap_or(Expect::Nothing)
    }
}

/// Makes a panic end the QEMU test run with a failure instead of halting.
pub fn set_test_mode() {
    TEST_MODE.store(true, Ordering::Relaxed);
}

/// Lets a panic follow the normal path (halt or `panic=reboot`) even in a test run.
pub fn clear_test_mode() {
    TEST_MODE.store(false, Ordering::Relaxed);
}

/// Makes a panic reset the machine (`panic=reboot`; the update rollback relies on it).
pub fn set_reboot_on_panic() {
    REBOOT.store(true, Ordering::Relaxed);
}

/// Declares the panic the running test provokes: that panic then ends the run as a pass.
pub fn expect(what: Expect) {
    EXPECTED.store(what as u8, Ordering::SeqCst);
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    if PANICKING.swap(true, Ordering::AcqRel) {
        // A panic while panicking (or on two CPUs at once): say the least possible and stop.
        hal::serial::write_fmt_emergency(format_args!("\nnested panic: {}\n", info.message()));
        hal::cpu::halt_forever();
    }
    // Stop the others first, so nothing else runs or prints while we report.
    let online = hal::percpu::online_count();
    let signalled = hal::apic::ipi::stop_other_cpus();
    let stopped = hal::trap::stopped_cpus();

    let location = info.location();
    let (file, line, column) =
        location.map_or(("<unknown>", 0, 0), |l| (l.file(), l.line(), l.column()));
    hal::serial::write_fmt_emergency(format_args!(
        "\nKERNEL PANIC on cpu {} at {file}:{line}:{column}: {}\n",
        hal::percpu::current_index(),
        info.message()
    ));
    crate::console::try_write_fmt(format_args!(
        "\n\x1b[41m\x1b[97m KERNEL PANIC \x1b[0m at {file}:{line}:{column}:\n{}\n",
        info.message()
    ));
    print_trace();
    hal::serial::write_fmt_emergency(format_args!(
        "panic: stopped {stopped} of {} other CPU(s) ({signalled} signalled)\n",
        online.saturating_sub(1)
    ));

    if TEST_MODE.load(Ordering::Relaxed) {
        let expected = Expect::from_u8(EXPECTED.load(Ordering::SeqCst));
        let passed = match (expected, expected.message()) {
            (Expect::AllCpusStop, _) => stopped == online.saturating_sub(1),
            (_, Some(words)) => {
                let mut text = LineBuf::new();
                let _ = write!(text, "{}", info.message());
                text.as_str().contains(words)
            }
            (_, None) => false,
        };
        let verdict = if passed {
            "expected: test passed"
        } else {
            "test FAILED"
        };
        hal::serial::write_fmt_emergency(format_args!("panic: {verdict}\n"));
        hal::qemu::exit(if passed {
            hal::qemu::ExitCode::Success
        } else {
            hal::qemu::ExitCode::Failure
        });
    }
    if REBOOT.load(Ordering::Relaxed) {
        hal::serial::write_fmt_emergency(format_args!("panic: rebooting (panic=reboot)\n"));
        hal::power::reboot();
    }
    hal::cpu::halt_forever()
}

/// Prints the return addresses on the panicking stack, with function names (first the
/// instruction that raised a fatal CPU exception, if that is what panicked).
fn print_trace() {
    if let Some(rip) = hal::trap::fatal_exception_rip() {
        match crate::symbols::lookup(rip) {
            Some(symbol) => {
                hal::serial::write_fmt_emergency(format_args!(
                    "faulting instruction in {symbol}\n"
                ));
                crate::console::try_write_fmt(format_args!("faulting instruction in {symbol}\n"));
            }
            None => {
                hal::serial::write_fmt_emergency(format_args!("faulting instruction at {rip:#x}\n"))
            }
        }
    }
    hal::serial::write_fmt_emergency(format_args!("stack trace:\n"));
    hal::backtrace::walk(32, |address| match crate::symbols::lookup_return(address) {
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
