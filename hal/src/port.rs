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

/// A 16-bit I/O port owned by one hal driver (ACPI PM1 control registers).
pub(crate) struct Port16(RawPort<u16>);

impl Port16 {
    /// Names the 16-bit port at `port`.
    ///
    /// # Safety
    /// As for [`Port8::new`].
    pub(crate) const unsafe fn new(port: u16) -> Self {
        Self(RawPort::new(port))
    }

    /// Reads one word.
    pub(crate) fn read(&mut self) -> u16 {
        // SAFETY: the constructor's contract makes accesses to this port side-effect safe.
        unsafe { self.0.read() }
    }

    /// Writes one word.
    pub(crate) fn write(&mut self, value: u16) {
        // SAFETY: as for `read`.
        unsafe { self.0.write(value) }
    }
}

/// A 32-bit I/O port owned by one hal driver (the ACPI PM timer, PCI configuration).
pub(crate) struct Port32(RawPort<u32>);

impl Port32 {
    /// Names the 32-bit port at `port`.
    ///
    /// # Safety
    /// As for [`Port8::new`].
    pub(crate) const unsafe fn new(port: u16) -> Self {
        Self(RawPort::new(port))
    }

    /// Reads one doubleword.
    pub(crate) fn read(&mut self) -> u32 {
        // SAFETY: the constructor's contract makes accesses to this port side-effect safe.
        unsafe { self.0.read() }
    }

    /// Writes one doubleword.
    pub(crate) fn write(&mut self, value: u32) {
        // SAFETY: as for `read`.
        unsafe { self.0.write(value) }
    }
}
