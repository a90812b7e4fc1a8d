//! The byte-level parser: UTF-8 decoding and the escape-sequence state machine (the shape of
//! the DEC ANSI parser as described at vt100.net, reduced to what a terminal emulator acts
//! on). It turns a byte stream into [`Action`]s and keeps no more than one sequence's
//! parameters, so no input can make it grow: a sequence with too many parameters is consumed
//! up to its final byte and dropped, strings (OSC, DCS, APC, PM, SOS) are skipped unread, and
//! a byte that cannot belong where it appears ends the sequence.

/// The most parameters a control sequence may carry; longer ones are dropped whole.
pub const MAX_PARAMS: usize = 16;

/// One thing the terminal must do.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// Show a character (invalid UTF-8 arrives as U+FFFD).
    Print(char),
    /// A C0 control character (BS, HT, LF, CR, …) other than ESC, CAN and SUB.
    Control(u8),
    /// `ESC [intermediate] final`.
    Esc {
        /// The intermediate byte (0x20–0x2f), if any: `(` in `ESC ( B`.
        intermediate: Option<u8>,
        /// The final byte.
        final_byte: u8,
    },
    /// `CSI [private] params [intermediate] final`.
    Csi {
        /// A private marker (`?`, `>`, `<`, `=`), if the sequence began with one.
        private: Option<u8>,
        /// The parameters; an empty one reads as 0 (each command's "default").
        params: &'a [u16],
        /// The intermediate byte, if any: ` ` in `CSI 2 SP q`.
        intermediate: Option<u8>,
        /// The final byte.
        final_byte: u8,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Ground,
    /// Inside a UTF-8 sequence: `need` more continuation bytes, value so far, its length.
    Utf8 {
        need: u8,
        value: u32,
        len: u8,
    },
    Escape {
        intermediate: Option<u8>,
    },
    Csi,
    /// A control sequence that will be dropped: read to its final byte.
    CsiIgnore,
    /// An OSC, DCS, SOS, PM or APC string: skipped up to BEL or ST.
    String,
    /// ESC seen inside a string: `\` ends it, anything else starts a new escape.
    StringEsc,
}

/// The parser's state between bytes (sequences may be split across writes).
#[derive(Debug)]
pub struct Parser {
    state: State,
    private: Option<u8>,
    intermediate: Option<u8>,
    params: [u16; MAX_PARAMS],
    count: usize,
    /// A digit or separator has been read (a private marker may only come first).
    started: bool,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

const ESC: u8 = 0x1b;
const CAN: u8 = 0x18;
const SUB: u8 = 0x1a;
const BEL: u8 = 0x07;

impl Parser {
    /// A parser in the ground state.
    pub const fn new() -> Self {
        Parser {
            state: State::Ground,
            private: None,
            intermediate: None,
            params: [0; MAX_PARAMS],
            count: 0,
            started: false,
        }
    }

    /// Whether the parser is between sequences (nothing half-read).
    pub fn is_ground(&self) -> bool {
        self.state == State::Ground
    }

    /// Parses one byte, calling `act` for what it completes.
    pub fn advance(&mut self, byte: u8, act: &mut impl FnMut(Action<'_>)) {
        match self.state {
            State::Ground => self.ground(byte, act),
            State::Utf8 { need, value, len } => self.utf8(byte, need, value, len, act),
            State::Escape { intermediate } => self.escape(byte, intermediate, act),
            State::Csi | State::CsiIgnore => self.csi(byte, act),
            State::String => match byte {
                BEL | CAN | SUB => self.state = State::Ground,
                ESC => self.state = State::StringEsc,
                _ => {}
            },
            State::StringEsc => {
                if byte == b'\\' {
                    self.state = State::Ground;
                } else {
                    self.state = State::Escape { intermediate: None };
                    self.advance(byte, act);
                }
            }
        }
    }

    fn ground(&mut self, byte: u8, act: &mut impl FnMut(Action<'_>)) {
        match byte {
            ESC => self.state = State::Escape { intermediate: None },
            CAN | SUB | 0x7f => {}
            0x00..=0x1f => act(Action::Control(byte)),
            0x20..=0x7e => act(Action::Print(char::from(byte))),
            0xc2..=0xdf => self.start_utf8(1, byte & 0x1f, 2),
            0xe0..=0xef => self.start_utf8(2, byte & 0x0f, 3),
            0xf0..=0xf4 => self.start_utf8(3, byte & 0x07, 4),
            _ => act(Action::Print(char::REPLACEMENT_CHARACTER)),
        }
    }

    fn start_utf8(&mut self, need: u8, bits: u8, len: u8) {
        self.state = State::Utf8 {
            need,
            value: u32::from(bits),
            len,
        };
    }

    fn utf8(&mut self, byte: u8, need: u8, value: u32, len: u8, act: &mut impl FnMut(Action<'_>)) {
        if byte & 0xc0 != 0x80 {
            // The sequence broke off: one replacement for it, then the byte on its own.
            act(Action::Print(char::REPLACEMENT_CHARACTER));
            self.state = State::Ground;
            self.ground(byte, act);
            return;
        }
        let value = value << 6 | u32::from(byte & 0x3f);
        if need > 1 {
            self.state = State::Utf8 {
                need: need - 1,
                value,
                len,
            };
            return;
        }
        self.state = State::Ground;
        // Overlong forms and surrogates are invalid UTF-8 (RFC 3629 §3).
        let shortest = match len {
            2 => 0x80,
            3 => 0x800,
            _ => 0x1_0000,
        };
        let ch = char::from_u32(value)
            .filter(|_| value >= shortest)
            .unwrap_or(char::REPLACEMENT_CHARACTER);
        // C1 controls sent as UTF-8 are not acted on (a terminal in UTF-8 mode ignores them).
        if !('\u{80}'..='\u{9f}').contains(&ch) {
            act(Action::Print(ch));
        }
    }

    fn escape(&mut self, byte: u8, intermediate: Option<u8>, act: &mut impl FnMut(Action<'_>)) {
        match byte {
            ESC => self.state = State::Escape { intermediate: None },
            CAN | SUB => self.state = State::Ground,
            0x00..=0x1f => act(Action::Control(byte)),
            0x20..=0x2f if intermediate.is_none() => {
                self.state = State::Escape {
                    intermediate: Some(byte),
                }
            }
            // A second intermediate: no sequence we know has one; drop it.
            0x20..=0x2f => self.state = State::Ground,
            b'[' if intermediate.is_none() => {
                self.state = State::Csi;
                self.private = None;
                self.intermediate = None;
                self.params = [0; MAX_PARAMS];
                self.count = 0;
                self.started = false;
            }
            b']' | b'P' | b'X' | b'^' | b'_' if intermediate.is_none() => {
                self.state = State::String;
            }
            0x30..=0x7e => {
                self.state = State::Ground;
                act(Action::Esc {
                    intermediate,
                    final_byte: byte,
                });
            }
            0x7f => {}
            _ => {
                // Not ASCII: the sequence is broken; the byte starts over as text.
                self.state = State::Ground;
                self.ground(byte, act);
            }
        }
    }

    fn csi(&mut self, byte: u8, act: &mut impl FnMut(Action<'_>)) {
        let ignoring = self.state == State::CsiIgnore;
        match byte {
            ESC => self.state = State::Escape { intermediate: None },
            CAN | SUB => self.state = State::Ground,
            0x00..=0x1f => act(Action::Control(byte)),
            0x7f => {}
            _ if ignoring => {
                if (0x40..=0x7e).contains(&byte) {
                    self.state = State::Ground;
                } else if byte >= 0x80 {
                    self.state = State::Ground;
                    self.ground(byte, act);
                }
            }
            b'0'..=b'9' if self.intermediate.is_none() => {
                self.started = true;
                let slot = &mut self.params[self.count];
                *slot = slot
                    .saturating_mul(10)
                    .saturating_add(u16::from(byte - b'0'));
            }
            b';' | b':' if self.intermediate.is_none() => {
                self.started = true;
                if self.count + 1 < MAX_PARAMS {
                    self.count += 1;
                } else {
                    self.state = State::CsiIgnore;
                }
            }
            b'<'..=b'?' => {
                if self.private.is_none() && !self.started && self.intermediate.is_none() {
                    self.private = Some(byte);
                } else {
                    self.state = State::CsiIgnore;
                }
            }
            0x20..=0x2f if self.intermediate.is_none() => self.intermediate = Some(byte),
            0x40..=0x7e => {
                self.state = State::Ground;
                act(Action::Csi {
                    private: self.private,
                    params: &self.params[..=self.count],
                    intermediate: self.intermediate,
                    final_byte: byte,
                });
            }
            0x80..=0xff => {
                self.state = State::Ground;
                self.ground(byte, act);
            }
            _ => self.state = State::CsiIgnore,
        }
    }
}
