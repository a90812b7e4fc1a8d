//! Raw x86 port I/O: the one place the loader executes `in`/`out`.
//!
//! Port I/O can reconfigure hardware behind the firmware's back, so both accessors are `unsafe`;
//! callers name the device they own in their SAFETY comments.

use core::arch::asm;

/// Writes one byte to an I/O port.
///
/// # Safety
///
/// `port` must belong to a device whose programming model makes this write harmless to memory
/// safety (a UART register, the PIC mask register, …) and the caller must own that device.
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: The caller guarantees that this port write has no memory-safety effect.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    };
}

/// Reads one byte from an I/O port.
///
/// # Safety
///
/// As for [`outb`]: reading `port` must not have side effects the caller does not own.
pub unsafe fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: The caller guarantees that this port read has no memory-safety effect.
    unsafe {
        asm!("in al, dx", out("al") value, in("dx") port, options(nomem, nostack, preserves_flags))
    };
    value
}
