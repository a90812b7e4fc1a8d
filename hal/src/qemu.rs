//! QEMU's `isa-debug-exit` device: how tests report pass or fail to the host.

use crate::port::Port8;

/// I/O port of `-device isa-debug-exit,iobase=0xf4,iosize=0x04`.
const DEBUG_EXIT_PORT: u16 = 0xf4;

/// How a test run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    /// All tests passed: QEMU exits with status 33.
    Success = 0x10,
    /// Something failed: QEMU exits with status 35.
    Failure = 0x11,
}

/// Asks QEMU to exit with `code`. On a machine without the device this returns, and the
/// caller halts.
pub fn exit(code: ExitCode) {
    // SAFETY: writing to the debug-exit port is harmless on machines without the device
    // (port 0xf4 is otherwise unused on PCs) and ends the VM under QEMU.
    let mut port = unsafe { Port8::new(DEBUG_EXIT_PORT) };
    port.write(code as u8);
}
