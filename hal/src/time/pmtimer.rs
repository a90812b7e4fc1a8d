//! The ACPI power-management timer: a free-running 24- or 32-bit counter at 3.579545 MHz.

use crate::port::Port32;

/// The PM timer's fixed rate.
pub(super) const FREQUENCY: u64 = 3_579_545;

/// The PM timer at the port the FADT names.
pub(super) struct PmTimer {
    port: u16,
    wide: bool,
}

impl PmTimer {
    /// The timer at I/O port `port`, 32 bits wide if `wide` (else 24).
    pub(super) fn new(port: u16, wide: bool) -> Self {
        Self { port, wide }
    }

    /// The current count.
    pub(super) fn counter(&self) -> u64 {
        // SAFETY: the port is the PM timer block named by the FADT; reading the counter has no
        // side effects.
        let mut port = unsafe { Port32::new(self.port) };
        u64::from(port.read()) & self.mask()
    }

    /// The value the counter wraps at.
    pub(super) fn mask(&self) -> u64 {
        if self.wide { 0xffff_ffff } else { 0x00ff_ffff }
    }
}
