//! The legacy 8259 PIC pair. Evergreen never uses it (the APIC replaces it); the loader
//! must hand it over fully masked.

use crate::port::Port8;

/// The interrupt mask registers of the primary and secondary PIC.
pub fn masks() -> (u8, u8) {
    // SAFETY: 0x21 and 0xa1 are the 8259 data ports; reading the mask registers (OCW1) has no
    // side effects.
    let (mut primary, mut secondary) = unsafe { (Port8::new(0x21), Port8::new(0xa1)) };
    (primary.read(), secondary.read())
}
