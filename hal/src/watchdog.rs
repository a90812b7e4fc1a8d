//! The ICH9 TCO watchdog (q35's LPC bridge at 00:1f.0), as armed by our loader.
//!
//! The loader arms the watchdog before it boots an update slot, so a release that hangs is
//! reset and its try counted. The kernel may only *feed* it: [`Tco::armed`] finds the
//! watchdog when its timer runs, and [`Tco::feed`] reloads the timer. Nothing here stops it
//! or changes its timeout, so no kernel path, however confused, can switch off the one thing
//! that rescues a hang; when to feed ("the system is healthy") is the kernel's decision.

use crate::{pci, port::Port16};

const VENDOR_INTEL: u16 = 0x8086;
const ICH9_LPC: u16 = 0x2918;
/// The LPC bridge's ACPI I/O base and its enable.
const PMBASE: u16 = 0x40;
const ACPI_CNTL: u16 = 0x44;
const ACPI_EN: u8 = 1 << 7;
/// The TCO block in the ACPI I/O space, and its registers.
const TCO: u16 = 0x60;
const TCO_RLD: u16 = 0x00;
const TCO1_CNT: u16 = 0x08;
const TMR_HLT: u16 = 1 << 11;

/// The running TCO watchdog's reload register.
pub struct Tco {
    reload: Port16,
}

impl Tco {
    /// The watchdog, if an ICH9 LPC bridge has one and its timer runs (the loader armed it).
    /// Needs [`pci::init`].
    pub fn armed() -> Option<Tco> {
        let info = pci::find(VENDOR_INTEL, ICH9_LPC)?;
        let bridge = pci::open(info.address).ok()?;
        let pmbase = bridge.read_u32(PMBASE).ok()? & 0xff80;
        let enabled = bridge.read_u8(ACPI_CNTL).ok()? & ACPI_EN != 0;
        if pmbase == 0 || !enabled {
            return None;
        }
        let base = u16::try_from(pmbase).ok()? + TCO;
        // SAFETY: PMBASE + 0x60.. is the TCO block of the ICH9 ACPI I/O space the bridge
        // itself names; reading TCO1_CNT has no side effects.
        let mut control = unsafe { Port16::new(base + TCO1_CNT) };
        if control.read() & TMR_HLT != 0 {
            return None;
        }
        // SAFETY: as above; a write of TCO_RLD only reloads the timer.
        let reload = unsafe { Port16::new(base + TCO_RLD) };
        Some(Tco { reload })
    }

    /// Reloads the timer: the reset is pushed back by the loader's whole timeout.
    pub fn feed(&mut self) {
        self.reload.write(1);
    }
}
