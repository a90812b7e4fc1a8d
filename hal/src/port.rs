//! Typed x86 I/O ports.
//!
//! A [`Port`] can only be created inside hal, by the driver that owns the device behind it;
//! the kernel never handles raw port numbers.

use x86_64::instructions::port::Port as RawPort;

/// An 8-bit I/O port owned by one hal driver.
pub(crate) struct Port8(RawPort<u8>);

impl Port8 {
    /// Names the 8-bit port at `port`.
    ///
    /// # Safety
    /// `port` must belong to a device the caller owns, and reads and writes of it must have no
    /// side effects that break memory safety (true of the UART and debug-exit ports used here).
    pub(crate) const unsafe fn new(port: u16) -> Self {
        Self(RawPort::new(port))
    }

    /// Reads one byte.
    pub(crate) fn read(&mut self) -> u8 {
        // SAFETY: the constructor's contract makes accesses to this port side-effect safe.
        unsafe { self.0.read() }
    }

    /// Writes one byte.
    pub(crate) fn write(&mut self, value: u8) {
        // SAFETY: as for `read`.
        unsafe { self.0.write(value) }
    }
}
