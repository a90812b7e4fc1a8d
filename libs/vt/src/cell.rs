//! What one character cell holds: a character, its colours and its attributes. The grid is a
//! plain array of these, so a renderer needs nothing else to draw a cell.

/// A colour as the program chose it; the renderer maps it to pixels (see [`Color::rgb`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Color {
    /// The terminal's default foreground or background.
    Default,
    /// One of the 256 indexed colours (0–7 normal, 8–15 bright, a 6×6×6 cube, a grey ramp).
    Indexed(u8),
    /// A direct colour (`SGR 38;2;r;g;b`).
    Rgb(u8, u8, u8),
}

/// The 16 basic colours (xterm's defaults, slightly softened), normal then bright.
const BASIC: [(u8, u8, u8); 16] = [
    (0x00, 0x00, 0x00),
    (0xcd, 0x31, 0x31),
    (0x0d, 0xbc, 0x79),
    (0xe5, 0xe5, 0x10),
    (0x24, 0x72, 0xc8),
    (0xbc, 0x3f, 0xbc),
    (0x11, 0xa8, 0xcd),
    (0xe5, 0xe5, 0xe5),
    (0x66, 0x66, 0x66),
    (0xf1, 0x4c, 0x4c),
    (0x23, 0xd1, 0x8b),
    (0xf5, 0xf5, 0x43),
    (0x3b, 0x8e, 0xea),
    (0xd6, 0x70, 0xd6),
    (0x29, 0xb8, 0xdb),
    (0xff, 0xff, 0xff),
];

impl Color {
    /// The colour as 8-bit RGB; `default` stands for [`Color::Default`].
    pub fn rgb(self, default: (u8, u8, u8)) -> (u8, u8, u8) {
        match self {
            Color::Default => default,
            Color::Rgb(r, g, b) => (r, g, b),
            Color::Indexed(i @ 0..=15) => BASIC[usize::from(i)],
            Color::Indexed(i @ 16..=231) => {
                let level = |v: u8| if v == 0 { 0 } else { 55 + 40 * v };
                let i = i - 16;
                (level(i / 36), level(i / 6 % 6), level(i % 6))
            }
            Color::Indexed(i) => {
                let grey = 8 + 10 * (i - 232);
                (grey, grey, grey)
            }
        }
    }

    /// The bright variant of a basic colour (how a bold foreground is drawn, as Linux's
    /// console and xterm do); other colours are unchanged.
    pub fn brightened(self) -> Color {
        match self {
            Color::Indexed(i @ 0..=7) => Color::Indexed(i + 8),
            other => other,
        }
    }
}

/// Character attributes, a set of bit flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attrs(u8);

impl Attrs {
    /// Bold (drawn bright).
    pub const BOLD: Attrs = Attrs(1);
    /// Faint.
    pub const DIM: Attrs = Attrs(1 << 1);
    /// Italic (kept, not drawn differently by a bitmap font).
    pub const ITALIC: Attrs = Attrs(1 << 2);
    /// Underlined.
    pub const UNDERLINE: Attrs = Attrs(1 << 3);
    /// Blinking (kept, drawn steady).
    pub const BLINK: Attrs = Attrs(1 << 4);
    /// Foreground and background swapped.
    pub const REVERSE: Attrs = Attrs(1 << 5);
    /// Invisible (drawn in the background colour).
    pub const HIDDEN: Attrs = Attrs(1 << 6);
    /// Crossed out.
    pub const STRIKE: Attrs = Attrs(1 << 7);

    /// No attributes.
    pub const fn empty() -> Attrs {
        Attrs(0)
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: Attrs) -> bool {
        self.0 & other.0 == other.0
    }

    /// Sets or clears the flags of `other`.
    pub fn set(&mut self, other: Attrs, on: bool) {
        if on {
            self.0 |= other.0;
        } else {
            self.0 &= !other.0;
        }
    }
}

/// The drawing state new characters get: colours and attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pen {
    /// Foreground colour.
    pub fg: Color,
    /// Background colour.
    pub bg: Color,
    /// Attributes.
    pub attrs: Attrs,
}

impl Default for Pen {
    fn default() -> Self {
        Pen {
            fg: Color::Default,
            bg: Color::Default,
            attrs: Attrs::empty(),
        }
    }
}

/// One character cell of the grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cell {
    /// The character shown (a space when blank).
    pub ch: char,
    /// Foreground colour.
    pub fg: Color,
    /// Background colour.
    pub bg: Color,
    /// Attributes.
    pub attrs: Attrs,
}

impl Cell {
    /// A blank cell as erasing leaves it: a space in the pen's background colour (xterm and
    /// Linux erase with the current background, "background colour erase").
    pub fn blank(pen: Pen) -> Cell {
        Cell {
            ch: ' ',
            fg: Color::Default,
            bg: pen.bg,
            attrs: Attrs::empty(),
        }
    }

    /// `ch` drawn with `pen`.
    pub fn new(ch: char, pen: Pen) -> Cell {
        Cell {
            ch,
            fg: pen.fg,
            bg: pen.bg,
            attrs: pen.attrs,
        }
    }
}

impl Default for Cell {
    fn default() -> Self {
        Cell::blank(Pen::default())
    }
}
