//! The legacy 8259 PIC pair. Evergreen never uses it (the APIC replaces it); the loader
//! must hand it over fully masked, and [`disable`] makes sure it stays out of the way.

use crate::port::Port8;

const PRIMARY_COMMAND: u16 = 0x20;
const PRIMARY_DATA: u16 = 0x21;
const SECONDARY_COMMAND: u16 = 0xa0;
const SECONDARY_DATA: u16 = 0xa1;

/// The vectors the PICs are moved to by [`disable`]: 0xe0..0xf0, clear of the CPU exceptions
/// (a masked PIC can still raise its spurious IRQ 7 or 15 through virtual-wire mode).
pub const VECTOR_BASE: u8 = 0xe0;

/// The interrupt mask registers of the primary and secondary PIC.
pub fn masks() -> (u8, u8) {
    // SAFETY: 0x21 and 0xa1 are the 8259 data ports; reading the mask registers (OCW1) has no
    // side effects.
    let (mut primary, mut secondary) =
        unsafe { (Port8::new(PRIMARY_DATA), Port8::new(SECONDARY_DATA)) };
    (primary.read(), secondary.read())
}

/// Reprograms both PICs to vectors [`VECTOR_BASE`]`..+16` and masks every line.
pub(crate) fn disable() {
    // SAFETY: these are the 8259 command and data ports of every PC; only the PIC pair is
    // affected, and it is left fully masked. Port 0x80 (POST diagnostics) is the customary
    // I/O delay and has no other effect.
    let (mut cmd1, mut data1, mut cmd2, mut data2, mut delay) = unsafe {
        (
            Port8::new(PRIMARY_COMMAND),
            Port8::new(PRIMARY_DATA),
            Port8::new(SECONDARY_COMMAND),
            Port8::new(SECONDARY_DATA),
            Port8::new(0x80),
        )
    };
    let mut wait = || delay.write(0);
    // ICW1: initialise, ICW4 follows.
    cmd1.write(0x11);
    wait();
    cmd2.write(0x11);
    wait();
    // ICW2: vector bases.
    data1.write(VECTOR_BASE);
    wait();
    data2.write(VECTOR_BASE + 8);
    wait();
    // ICW3: the secondary hangs off the primary's IRQ 2.
    data1.write(1 << 2);
    wait();
    data2.write(2);
    wait();
    // ICW4: 8086 mode.
    data1.write(0x01);
    wait();
    data2.write(0x01);
    wait();
    mask_all();
}

/// Masks every line of both PICs.
pub fn mask_all() {
    // SAFETY: as for `masks`; writing OCW1 only changes which lines the PICs ignore.
    let (mut primary, mut secondary) =
        unsafe { (Port8::new(PRIMARY_DATA), Port8::new(SECONDARY_DATA)) };
    primary.write(0xff);
    secondary.write(0xff);
}
