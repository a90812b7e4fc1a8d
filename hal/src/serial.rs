//! The COM1 16550 UART: the kernel's first and most reliable way to talk to a human.

use crate::{port::Port8, sync::IrqMutex as Mutex};

/// Base I/O port of COM1.
const COM1: u16 = 0x3f8;

/// A 16550-compatible UART.
pub struct Uart {
    data: Port8,
    int_enable: Port8,
    fifo_ctrl: Port8,
    line_ctrl: Port8,
    modem_ctrl: Port8,
    line_status: Port8,
}

/// Line status: the transmit holding register is empty.
const LSR_THR_EMPTY: u8 = 1 << 5;
/// Line status: a received byte is waiting.
const LSR_DATA_READY: u8 = 1 << 0;
/// Interrupt enable: raise IRQ 4 when a received byte is waiting.
const IER_RECEIVED: u8 = 1 << 0;

impl Uart {
    /// Programs the UART for 115200 baud, 8 data bits, no parity, one stop bit, FIFOs on,
    /// interrupts off.
    fn init(&mut self) {
        self.int_enable.write(0x00);
        self.line_ctrl.write(0x80); // DLAB: the next two registers are the divisor.
        self.data.write(0x01); // Divisor 1 = 115200 baud (low byte).
        self.int_enable.write(0x00); // (high byte)
        self.line_ctrl.write(0x03); // 8N1, DLAB off.
        self.fifo_ctrl.write(0xc7); // Enable and clear FIFOs, 14-byte threshold.
        self.modem_ctrl.write(0x0b); // DTR, RTS, OUT2.
    }

    /// Sends one byte, waiting (boundedly) for room in the transmitter.
    fn send(&mut self, byte: u8) {
        // A missing or wedged UART must not hang the kernel: give up after a while.
        for _ in 0..100_000 {
            if self.line_status.read() & LSR_THR_EMPTY != 0 {
                break;
            }
            core::hint::spin_loop();
        }
        self.data.write(byte);
    }

    /// Interrupt enable: received data available.
    fn enable_receive_interrupt(&mut self) {
        self.int_enable.write(IER_RECEIVED);
    }

    /// Returns a received byte, if one is waiting.
    fn try_receive(&mut self) -> Option<u8> {
        (self.line_status.read() & LSR_DATA_READY != 0).then(|| self.data.read())
    }
}

impl core::fmt::Write for Uart {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                self.send(b'\r');
            }
            self.send(byte);
        }
        Ok(())
    }
}

impl Uart {
    /// Names the COM1 registers.
    ///
    /// # Safety
    /// Only [`COM1_UART`] and the panic path may drive COM1; a second handle is only sound
    /// when the first's holder can no longer run (the emergency path below).
    unsafe fn com1() -> Self {
        // SAFETY: ports COM1..COM1+5 are the standard COM1 UART registers, which hal owns.
        unsafe {
            Uart {
                data: Port8::new(COM1),
                int_enable: Port8::new(COM1 + 1),
                fifo_ctrl: Port8::new(COM1 + 2),
                line_ctrl: Port8::new(COM1 + 3),
                modem_ctrl: Port8::new(COM1 + 4),
                line_status: Port8::new(COM1 + 5),
            }
        }
    }
}

/// COM1, initialised on first use.
static COM1_UART: spin::Lazy<Mutex<Uart>> = spin::Lazy::new(|| {
    // SAFETY: this is the one shared COM1 handle.
    let mut uart = unsafe { Uart::com1() };
    uart.init();
    Mutex::new(uart)
});

/// Initialises COM1 (115200 8N1). Idempotent.
pub fn init() {
    spin::Lazy::force(&COM1_UART);
}

/// Writes bytes to COM1 as they are (a terminal's output processing has been done).
pub fn write_bytes(bytes: &[u8]) {
    let mut uart = COM1_UART.lock();
    for &byte in bytes {
        uart.send(byte);
    }
}

/// Writes a string to COM1 (`\n` becomes `\r\n`).
pub fn write_str(s: &str) {
    use core::fmt::Write;
    let _ = COM1_UART.lock().write_str(s);
}

/// Writes formatted text to COM1 under one lock, so the line is not interleaved.
pub fn write_fmt(args: core::fmt::Arguments<'_>) {
    use core::fmt::Write;
    let _ = COM1_UART.lock().write_fmt(args);
}

/// Writes formatted text even if another context holds the COM1 lock (panic path): if the lock
/// cannot be taken quickly, the output goes to a freshly-programmed handle on the same port.
pub fn write_fmt_emergency(args: core::fmt::Arguments<'_>) {
    use core::fmt::Write;
    for _ in 0..1_000_000 {
        if let Some(mut uart) = COM1_UART.try_lock() {
            let _ = uart.write_fmt(args);
            return;
        }
        core::hint::spin_loop();
    }
    // SAFETY: the lock holder is stuck (we are panicking); sharing the data port can at worst
    // interleave bytes, which is better than losing the panic message.
    let mut uart = unsafe { Uart::com1() };
    let _ = uart.write_fmt(args);
}

/// Returns a byte received on COM1, if any (polling).
pub fn try_read() -> Option<u8> {
    COM1_UART.lock().try_receive()
}

/// Makes COM1 raise its interrupt (ISA IRQ 4) whenever a received byte is waiting (OUT2,
/// which gates the interrupt line on PCs, is already set).
pub fn enable_receive_interrupt() {
    COM1_UART.lock().enable_receive_interrupt();
}

/// Reads every byte waiting in COM1's receive FIFO (at most `max`), passing each to `f`;
/// returns how many were read. Meant for the COM1 interrupt handler.
pub fn drain_received(max: usize, mut f: impl FnMut(u8)) -> usize {
    let mut uart = COM1_UART.lock();
    let mut count = 0;
    while count < max {
        let Some(byte) = uart.try_receive() else {
            break;
        };
        f(byte);
        count += 1;
    }
    count
}
