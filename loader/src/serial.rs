//! COM1 (16550 UART at 0x3F8), programmed by the loader itself at 115200 8N1.
//!
//! The UART belongs to no firmware protocol we use, so it keeps working after
//! ExitBootServices: it is the loader's only output channel from then on.

use core::{
    fmt,
    sync::atomic::{AtomicBool, Ordering},
};

use x86_64::instructions::port::Port;

const COM1: u16 = 0x3F8;
/// Offsets of the 16550 registers from the base port.
const DATA: u16 = 0;
const INT_ENABLE: u16 = 1;
const FIFO_CTRL: u16 = 2;
const LINE_CTRL: u16 = 3;
const MODEM_CTRL: u16 = 4;
const LINE_STATUS: u16 = 5;
const SCRATCH: u16 = 7;
/// Line status: transmitter holding register empty.
const THR_EMPTY: u8 = 0x20;

/// The COM1 register at `offset`.
fn register(offset: u16) -> Port<u8> {
    Port::new(COM1 + offset)
}

/// Whether [`init`] found a UART at COM1; writes are dropped otherwise.
static PRESENT: AtomicBool = AtomicBool::new(false);

/// Programs COM1 for 115200 baud, 8 data bits, no parity, 1 stop bit, FIFOs on, IRQs off.
pub fn init() {
    // SAFETY: Ports 0x3F8..0x3FF are the COM1 UART; no firmware protocol the loader uses owns
    // it, and programming a UART has no memory-safety effect.
    unsafe {
        register(SCRATCH).write(0x5A);
        if register(SCRATCH).read() != 0x5A {
            return; // No UART: keep quiet rather than spin on a status bit that never changes.
        }
        register(INT_ENABLE).write(0x00);
        register(LINE_CTRL).write(0x80); // DLAB on: the next two registers are the divisor.
        register(DATA).write(0x01); // Divisor 1 = 115200 baud (low byte).
        register(INT_ENABLE).write(0x00); // (high byte)
        register(LINE_CTRL).write(0x03); // DLAB off, 8N1.
        register(FIFO_CTRL).write(0xC7); // Enable and clear FIFOs, 14-byte threshold.
        register(MODEM_CTRL).write(0x03); // DTR and RTS, no loopback, OUT2 off (no IRQs).
    }
    PRESENT.store(true, Ordering::Relaxed);
}

fn write_byte(byte: u8) {
    if !PRESENT.load(Ordering::Relaxed) {
        return;
    }
    // Bounded wait so a wedged UART cannot hang the boot.
    for _ in 0..100_000 {
        // SAFETY: Reading the COM1 line status register has no side effect.
        if unsafe { register(LINE_STATUS).read() } & THR_EMPTY != 0 {
            break;
        }
        core::hint::spin_loop();
    }
    // SAFETY: Writing the COM1 data register transmits one byte; no memory effect.
    unsafe { register(DATA).write(byte) };
}

/// A `fmt::Write` sink for COM1 that turns `\n` into `\r\n`.
pub struct Serial;

impl fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                write_byte(b'\r');
            }
            write_byte(byte);
        }
        Ok(())
    }
}
