//! Typed x86 I/O ports.
//!
//! A [`Port`] can only be created inside hal, by the driver that owns the device behind it;
//! the kernel never handles raw port numbers. The instructions are the `x86_64` crate's, as
//! in the loader: nothing in Evergreen hand-rolls `in` or `out`.

use x86_64::instructions::port::{Port as RawPort, PortRead, PortWrite};

/// An I/O port of width `T` (`u8`, `u16` or `u32`) owned by one hal driver.
pub(crate) struct Port<T>(RawPort<T>);

/// An 8-bit port (UART, PIC, PIT, PS/2, CMOS, QEMU's debug exit).
pub(crate) type Port8 = Port<u8>;
/// A 16-bit port (ACPI PM1 control registers).
pub(crate) type Port16 = Port<u16>;
/// A 32-bit port (the ACPI PM timer, PCI configuration).
pub(crate) type Port32 = Port<u32>;

impl<T: PortRead + PortWrite> Port<T> {
    /// Names the port at `port`.
    ///
    /// # Safety
    /// `port` must belong to a device the caller owns, and reads and writes of it must have no
    /// side effects that break memory safety (true of the UART and debug-exit ports used here).
    pub(crate) const unsafe fn new(port: u16) -> Self {
        Self(RawPort::new(port))
    }

    /// Reads one value.
    pub(crate) fn read(&mut self) -> T {
        // SAFETY: the constructor's contract makes accesses to this port side-effect safe.
        unsafe { self.0.read() }
    }

    /// Writes one value.
    pub(crate) fn write(&mut self, value: T) {
        // SAFETY: as for `read`.
        unsafe { self.0.write(value) }
    }
}
