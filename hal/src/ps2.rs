//! The 8042 PS/2 controller: the keyboard's data port, and the reset line it also drives.
//!
//! The firmware leaves the controller working (usually with scancode-set-1 translation on);
//! [`init`] only makes sure the first port is enabled with its interrupt (IRQ 1) and the
//! second port's interrupt is off. Scancode decoding is the kernel's job.

use crate::{port::Port8, sync::IrqMutex};

const DATA: u16 = 0x60;
const STATUS_COMMAND: u16 = 0x64;
/// Status: the output buffer holds a byte for us.
const OUTPUT_FULL: u8 = 1 << 0;
/// Status: the input buffer still holds a byte for the controller.
const INPUT_FULL: u8 = 1 << 1;
/// Status: the byte in the output buffer came from the second port (mouse).
const FROM_AUX: u8 = 1 << 5;

const READ_CONFIG: u8 = 0x20;
const WRITE_CONFIG: u8 = 0x60;
const DISABLE_PORT2: u8 = 0xa7;
const DISABLE_PORT1: u8 = 0xad;
const ENABLE_PORT1: u8 = 0xae;
const PULSE_RESET: u8 = 0xfe;
/// Configuration byte: port 1 interrupt, port 2 interrupt, port 1 clock disabled.
const CONFIG_IRQ1: u8 = 1 << 0;
const CONFIG_IRQ12: u8 = 1 << 1;
const CONFIG_PORT1_CLOCK_OFF: u8 = 1 << 4;
/// Configuration byte: translate to scancode set 1.
const CONFIG_TRANSLATE: u8 = 1 << 6;
/// Keyboard command: enable scanning; its acknowledgement.
const ENABLE_SCANNING: u8 = 0xf4;
const ACK: u8 = 0xfa;

/// Why the controller could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// It never accepted a command (there is probably no 8042).
    Timeout,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Timeout => write!(f, "the PS/2 controller does not respond"),
        }
    }
}

struct Controller {
    data: Port8,
    status: Port8,
}

// SAFETY: 0x60 and 0x64 are the 8042's data and status/command ports; hal owns them here
// alone. Reading and writing them affects only the keyboard controller (and the reset line,
// which only `pulse_reset` drives).
static CONTROLLER: IrqMutex<Controller> = IrqMutex::new(unsafe {
    Controller {
        data: Port8::new(DATA),
        status: Port8::new(STATUS_COMMAND),
    }
});

const SPINS: usize = 1_000_000;

impl Controller {
    fn wait_writable(&mut self) -> Result<(), Error> {
        for _ in 0..SPINS {
            if self.status.read() & INPUT_FULL == 0 {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(Error::Timeout)
    }

    fn wait_readable(&mut self) -> Result<u8, Error> {
        for _ in 0..SPINS {
            if self.status.read() & OUTPUT_FULL != 0 {
                return Ok(self.data.read());
            }
            core::hint::spin_loop();
        }
        Err(Error::Timeout)
    }

    fn command(&mut self, command: u8) -> Result<(), Error> {
        self.wait_writable()?;
        self.status.write(command);
        Ok(())
    }

    fn write_data(&mut self, value: u8) -> Result<(), Error> {
        self.wait_writable()?;
        self.data.write(value);
        Ok(())
    }

    fn flush(&mut self) {
        for _ in 0..64 {
            if self.status.read() & OUTPUT_FULL == 0 {
                break;
            }
            let _ = self.data.read();
        }
    }
}

/// Enables the keyboard port with its interrupt, keeping the firmware's translation setting;
/// returns whether scancodes arrive translated to set 1.
pub fn init() -> Result<bool, Error> {
    let mut c = CONTROLLER.lock();
    c.command(DISABLE_PORT1)?;
    c.command(DISABLE_PORT2)?;
    c.flush();
    c.command(READ_CONFIG)?;
    let config = c.wait_readable()?;
    let new = (config | CONFIG_IRQ1) & !(CONFIG_IRQ12 | CONFIG_PORT1_CLOCK_OFF);
    c.command(WRITE_CONFIG)?;
    c.write_data(new)?;
    c.command(ENABLE_PORT1)?;
    // Make sure the keyboard scans (the firmware may have stopped it); a missing keyboard
    // just does not answer.
    if c.write_data(ENABLE_SCANNING).is_ok() {
        for _ in 0..4 {
            match c.wait_readable() {
                Ok(ACK) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
    c.flush();
    Ok(new & CONFIG_TRANSLATE != 0)
}

/// Returns the byte the keyboard sent, if one is waiting (bytes from the second port are
/// read and dropped).
pub fn read_data() -> Option<u8> {
    let mut c = CONTROLLER.lock();
    let status = c.status.read();
    if status & OUTPUT_FULL == 0 {
        return None;
    }
    let byte = c.data.read();
    (status & FROM_AUX == 0).then_some(byte)
}

/// Pulses the CPU reset line through the controller (the classic PC reboot).
pub fn pulse_reset() {
    if let Some(mut c) = CONTROLLER.try_lock() {
        let _ = c.command(PULSE_RESET);
    }
}
