//! The 8254 PIT's channel 2 as a last-resort calibration reference: it can time one interval
//! (its output pin is readable through port 0x61), which is all calibration needs.

use super::rdtsc;
use crate::port::Port8;

const PIT_HZ: u64 = 1_193_182;
/// The calibration interval: 10 ms of PIT ticks.
const COUNT: u16 = (PIT_HZ / 100) as u16;
const CHANNEL2: u16 = 0x42;
const COMMAND: u16 = 0x43;
/// NMI status and control: bit 0 gates channel 2, bit 1 drives the speaker, bit 5 reads
/// channel 2's output.
const PORT_B: u16 = 0x61;

/// Times 10 ms on the PIT; returns TSC ticks per second.
pub(super) fn measure_tsc() -> Option<u64> {
    // SAFETY: these are the PIT channel 2 and port B registers of every PC; channel 2 only
    // drives the speaker (kept off here), so programming it affects nothing else.
    let (mut channel2, mut command, mut port_b) = unsafe {
        (
            Port8::new(CHANNEL2),
            Port8::new(COMMAND),
            Port8::new(PORT_B),
        )
    };
    let saved = port_b.read();
    // Gate low (stop), speaker off.
    port_b.write(saved & !0b11);
    // Channel 2, low byte then high byte, mode 0 (interrupt on terminal count), binary.
    command.write(0b1011_0000);
    channel2.write(COUNT as u8);
    channel2.write((COUNT >> 8) as u8);
    // Gate high: counting starts; OUT2 goes high at terminal count.
    port_b.write((saved & !0b10) | 0b01);
    let start = rdtsc();
    let mut result = None;
    for _ in 0..50_000_000u64 {
        if port_b.read() & 0x20 != 0 {
            let ticks = rdtsc().wrapping_sub(start);
            result = Some(ticks * PIT_HZ / u64::from(COUNT));
            break;
        }
    }
    port_b.write(saved);
    result
}
