//! Terminal input: PS/2 keyboard and COM1 bytes, each fed by its interrupt into a queue of
//! its own, as a terminal would send them; [`crate::tty`] takes them from there.
//!
//! Keys are decoded with `pc-keyboard` (US layout) and queued as the bytes a serial terminal
//! sends for them: UTF-8 text, `\r` for Enter, DEL (0x7f) for Backspace, ANSI escape
//! sequences for the arrow and editing keys. A reader cannot tell the two sources apart.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hal::{
    sync::IrqMutex,
    trap::{self, TrapFrame, vectors},
};
use pc_keyboard::{
    DecodedKey, HandleControl, KeyCode, Keyboard, ScancodeSet1, ScancodeSet2, layouts::Us104Key,
};

/// Queue capacity in bytes; input beyond it is dropped (and counted).
const CAPACITY: usize = 1024;
const ISA_KEYBOARD: u8 = 1;
const ISA_COM1: u8 = 4;

/// A byte ring buffer.
struct Ring {
    bytes: [u8; CAPACITY],
    head: usize,
    len: usize,
}

impl Ring {
    fn push(&mut self, byte: u8) -> bool {
        if self.len == CAPACITY {
            return false;
        }
        self.bytes[(self.head + self.len) % CAPACITY] = byte;
        self.len += 1;
        true
    }

    fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let byte = self.bytes[self.head];
        self.head = (self.head + 1) % CAPACITY;
        self.len -= 1;
        Some(byte)
    }
}

/// Where input comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// COM1.
    Serial,
    /// The PS/2 keyboard.
    Keyboard,
}

const EMPTY: Ring = Ring {
    bytes: [0; CAPACITY],
    head: 0,
    len: 0,
};
static SERIAL: IrqMutex<Ring> = IrqMutex::new(EMPTY);
static KEYBOARD: IrqMutex<Ring> = IrqMutex::new(EMPTY);
/// Woken when input arrives.
static ARRIVED: crate::sched::WaitQueue = crate::sched::WaitQueue::new();

fn ring(source: Source) -> &'static IrqMutex<Ring> {
    match source {
        Source::Serial => &SERIAL,
        Source::Keyboard => &KEYBOARD,
    }
}
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Set when an interrupt line could not be routed: the tick polls the devices instead.
static POLL: AtomicBool = AtomicBool::new(false);

/// The scancode decoder for whichever set the controller delivers.
enum Decoder {
    Set1(Keyboard<Us104Key, ScancodeSet1>),
    Set2(Keyboard<Us104Key, ScancodeSet2>),
}

static DECODER: IrqMutex<Decoder> = IrqMutex::new(Decoder::Set1(Keyboard::new(
    ScancodeSet1::new(),
    Us104Key,
    HandleControl::MapLettersToUnicode,
)));

fn push_bytes(source: Source, bytes: &[u8]) {
    {
        let mut queue = ring(source).lock();
        for &byte in bytes {
            if !queue.push(byte) {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    ARRIVED.wake_all();
}

/// Takes up to `out.len()` queued bytes from `source`; how many.
pub fn take(source: Source, out: &mut [u8]) -> usize {
    let mut queue = ring(source).lock();
    let mut n = 0;
    while n < out.len()
        && let Some(b) = queue.pop()
    {
        out[n] = b;
        n += 1;
    }
    n
}

/// Whether any input is queued.
pub fn pending() -> bool {
    SERIAL.lock().len > 0 || KEYBOARD.lock().len > 0
}

/// The queue woken when input arrives.
pub fn queue() -> &'static crate::sched::WaitQueue {
    &ARRIVED
}

/// Feeds one byte from the keyboard (a scancode) through the decoder into the queue.
pub fn feed_scancode(byte: u8) {
    let key = {
        let mut decoder = DECODER.lock();
        let event = match &mut *decoder {
            Decoder::Set1(k) => k.add_byte(byte).ok().flatten(),
            Decoder::Set2(k) => k.add_byte(byte).ok().flatten(),
        };
        event.and_then(|event| match &mut *decoder {
            Decoder::Set1(k) => k.process_keyevent(event),
            Decoder::Set2(k) => k.process_keyevent(event),
        })
    };
    match key {
        Some(DecodedKey::Unicode(c)) => {
            let byte = match c {
                '\n' => Some(b'\r'),
                '\u{8}' => Some(0x7f),
                _ => None,
            };
            match byte {
                Some(b) => push_bytes(Source::Keyboard, &[b]),
                None => push_bytes(Source::Keyboard, c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
        Some(DecodedKey::RawKey(code)) => {
            if let Some(sequence) = escape_sequence(code) {
                push_bytes(Source::Keyboard, sequence);
            }
        }
        None => {}
    }
}

/// The bytes a VT100-style terminal sends for a key that has no character.
fn escape_sequence(code: KeyCode) -> Option<&'static [u8]> {
    Some(match code {
        KeyCode::ArrowUp => b"\x1b[A",
        KeyCode::ArrowDown => b"\x1b[B",
        KeyCode::ArrowRight => b"\x1b[C",
        KeyCode::ArrowLeft => b"\x1b[D",
        KeyCode::Home => b"\x1b[H",
        KeyCode::End => b"\x1b[F",
        KeyCode::Insert => b"\x1b[2~",
        KeyCode::Delete => b"\x1b[3~",
        KeyCode::PageUp => b"\x1b[5~",
        KeyCode::PageDown => b"\x1b[6~",
        _ => return None,
    })
}

fn drain_keyboard() {
    // One interrupt per byte, but take a few in case some were coalesced.
    for _ in 0..16 {
        match hal::ps2::read_data() {
            Some(byte) => feed_scancode(byte),
            None => break,
        }
    }
}

fn drain_com1() {
    hal::serial::drain_received(64, |byte| push_bytes(Source::Serial, &[byte]));
}

fn on_keyboard(_frame: &TrapFrame) {
    drain_keyboard();
}

fn on_com1(_frame: &TrapFrame) {
    drain_com1();
}

/// Polls both devices when their interrupts could not be routed (called from the tick).
pub fn poll_if_needed() {
    if POLL.load(Ordering::Relaxed) {
        drain_keyboard();
        drain_com1();
    }
}

/// Sets up the keyboard controller and COM1 receive interrupts and routes both to the
/// bootstrap CPU. Call after [`crate::irq::init_bsp`]. Where routing is impossible the timer
/// tick polls instead.
pub fn init() {
    let has_8042 = hal::acpi::platform()
        .and_then(|p| p.fadt)
        .is_none_or(|f| f.has_8042 || f.revision < 3);
    let keyboard = if has_8042 {
        match hal::ps2::init() {
            Ok(translated) => {
                if !translated {
                    *DECODER.lock() = Decoder::Set2(Keyboard::new(
                        ScancodeSet2::new(),
                        Us104Key,
                        HandleControl::MapLettersToUnicode,
                    ));
                }
                true
            }
            Err(error) => {
                log::warn!("input: {error}: no keyboard");
                false
            }
        }
    } else {
        log::info!("input: the firmware reports no 8042 keyboard controller");
        false
    };
    for (vector, handler) in [
        (vectors::KEYBOARD, on_keyboard as trap::Handler),
        (vectors::COM1, on_com1),
    ] {
        trap::register(vector, handler).expect("the keyboard and COM1 vectors are the kernel's");
    }
    hal::serial::enable_receive_interrupt();
    let bsp = hal::apic::id();
    let mut routed = true;
    let ioapic = hal::ioapic::init();
    if let Err(error) = ioapic {
        log::warn!("input: {error}: polling the keyboard and COM1 on the tick");
        routed = false;
    } else {
        for (name, irq, vector, wanted) in [
            ("keyboard", ISA_KEYBOARD, vectors::KEYBOARD, keyboard),
            ("COM1", ISA_COM1, vectors::COM1, true),
        ] {
            if !wanted {
                continue;
            }
            match hal::ioapic::route_isa(irq, vector, bsp) {
                Ok(route) => log::debug!(
                    "input: {name}: IRQ {irq} -> GSI {} -> vector {vector:#x}",
                    route.gsi
                ),
                Err(error) => {
                    log::warn!("input: {name}: {error}; polling it on the tick");
                    routed = false;
                }
            }
        }
    }
    POLL.store(!routed, Ordering::Relaxed);
    log::info!(
        "input: keyboard {}, COM1 receive {}",
        if keyboard { "on IRQ 1" } else { "absent" },
        if routed { "on IRQ 4" } else { "polled" }
    );
}

/// Takes the next input byte from either source, if any.
pub fn read_byte() -> Option<u8> {
    let byte = SERIAL.lock().pop();
    byte.or_else(|| KEYBOARD.lock().pop())
}

/// Input bytes dropped because the queue was full.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Echoes input to the screen and serial forever, with a status line every
/// [`STATUS_EVERY_S`] seconds: the stand-in for the shell. Enables interrupts.
pub fn echo_loop() -> ! {
    hal::cpu::enable_interrupts();
    let mut next_status = crate::time::now_ns() + STATUS_EVERY_S * 1_000_000_000;
    loop {
        let mut buffer = [0u8; 64];
        let mut n = 0;
        while n < buffer.len()
            && let Some(byte) = read_byte()
        {
            buffer[n] = byte;
            n += 1;
        }
        if n > 0 {
            echo(&buffer[..n]);
        }
        let now = crate::time::now_ns();
        if now >= next_status {
            next_status = now + STATUS_EVERY_S * 1_000_000_000;
            status(now);
        }
        if n == 0 {
            hal::cpu::idle();
        }
    }
}

/// How often the echo loop reports the tick.
const STATUS_EVERY_S: u64 = 5;

fn status(now: u64) {
    let mut line = crate::logger::LineBuf::new();
    for cpu in (0..hal::percpu::MAX_CPUS).filter(|&c| hal::percpu::is_online(c)) {
        let _ = core::fmt::Write::write_fmt(
            &mut line,
            format_args!(" cpu{cpu}={}", crate::time::ticks(cpu)),
        );
    }
    let (errors, _) = hal::apic::errors();
    log::info!(
        "uptime {} s, ticks:{}, input dropped {}, APIC errors {errors}",
        now / 1_000_000_000,
        line.as_str(),
        dropped()
    );
}

/// Writes typed bytes back the way a terminal in cooked mode shows them.
fn echo(bytes: &[u8]) {
    let mut out = crate::logger::LineBuf::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            let _ = match c {
                '\r' | '\n' => core::fmt::Write::write_str(&mut out, "\n"),
                '\x7f' | '\x08' => core::fmt::Write::write_str(&mut out, "\x08 \x08"),
                '\x1b' | '\t' => core::fmt::Write::write_char(&mut out, c),
                c if (c as u32) < 0x20 => core::fmt::Write::write_fmt(
                    &mut out,
                    format_args!("^{}", char::from(b'@' + c as u8)),
                ),
                c => core::fmt::Write::write_char(&mut out, c),
            };
        }
        if !chunk.invalid().is_empty() {
            let _ = core::fmt::Write::write_char(&mut out, '\u{fffd}');
        }
    }
    hal::serial::write_str(out.as_str());
    crate::console::write_str(out.as_str());
}

/// Tests of the input path.
#[cfg(feature = "tests")]
pub mod tests {
    use super::{feed_scancode, read_byte};
    use crate::{
        check,
        ktest::{TestResult, ktest},
    };

    fn drain() {
        while read_byte().is_some() {}
    }

    /// Scancodes become the bytes a terminal would send: letters, shifted letters, Enter as
    /// `\r`, Backspace as DEL, arrows as escape sequences. (Assumes the set-1 decoder, which
    /// is what QEMU's and most firmware's translated 8042 deliver.)
    #[ktest("input-keyboard-decoding")]
    pub fn keyboard_decoding() -> TestResult {
        let set1 = matches!(*super::DECODER.lock(), super::Decoder::Set1(_));
        if !set1 {
            return Ok(());
        }
        // Tests run with interrupts disabled, so no real key interleaves.
        let result = {
            drain();
            // a (press, release), Shift+b, Enter, Backspace, Up arrow.
            for code in [
                0x1e, 0x9e, 0x2a, 0x30, 0xb0, 0xaa, 0x1c, 0x9c, 0x0e, 0x8e, 0xe0, 0x48, 0xe0, 0xc8,
            ] {
                feed_scancode(code);
            }
            let mut got = [0u8; 16];
            let mut n = 0;
            while let Some(byte) = read_byte() {
                if n < got.len() {
                    got[n] = byte;
                }
                n += 1;
            }
            (got, n)
        };
        let (got, n) = result;
        let expected = b"aB\r\x7f\x1b[A";
        check!(
            &got[..n.min(16)] == expected,
            "queued {:?}, expected {:?}",
            &got[..n.min(16)],
            expected
        );
        Ok(())
    }
}
