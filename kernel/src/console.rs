//! A text console on the boot framebuffer: a bitmap font, scrolling, and the subset of ANSI
//! escape sequences (SGR colours, cursor movement, erase) a shell needs.

use hal::{framebuffer::Framebuffer, sync::IrqMutex as Mutex};
use noto_sans_mono_bitmap::{FontWeight, RasterHeight, get_raster, get_raster_width};

const WEIGHT: FontWeight = FontWeight::Regular;
const HEIGHT: RasterHeight = RasterHeight::Size16;
const CHAR_W: usize = get_raster_width(WEIGHT, HEIGHT);
const CHAR_H: usize = HEIGHT.val();
const MARGIN: usize = 8;

/// The eight ANSI colours (normal intensity) as RGB.
const PALETTE: [(u8, u8, u8); 8] = [
    (0x00, 0x00, 0x00),
    (0xcd, 0x31, 0x31),
    (0x0d, 0xbc, 0x79),
    (0xe5, 0xe5, 0x10),
    (0x24, 0x72, 0xc8),
    (0xbc, 0x3f, 0xbc),
    (0x11, 0xa8, 0xcd),
    (0xe5, 0xe5, 0xe5),
];
const DEFAULT_FG: (u8, u8, u8) = (0xd8, 0xdc, 0xd8);
const DEFAULT_BG: (u8, u8, u8) = (0x10, 0x1c, 0x14);

/// Parser state for escape sequences.
#[derive(Clone, Copy)]
enum Escape {
    None,
    Esc,
    Csi { params: [u16; 4], count: usize },
}

/// A text console drawing into a framebuffer.
pub struct Console {
    fb: Framebuffer,
    cols: usize,
    rows: usize,
    col: usize,
    row: usize,
    fg: (u8, u8, u8),
    bg: (u8, u8, u8),
    escape: Escape,
}

impl Console {
    /// Makes a console covering the whole framebuffer and clears it.
    pub fn new(fb: Framebuffer) -> Self {
        let cols = (fb.width().saturating_sub(2 * MARGIN) / CHAR_W).max(1);
        let rows = (fb.height().saturating_sub(2 * MARGIN) / CHAR_H).max(1);
        let mut console = Self {
            fb,
            cols,
            rows,
            col: 0,
            row: 0,
            fg: DEFAULT_FG,
            bg: DEFAULT_BG,
            escape: Escape::None,
        };
        console.clear();
        console
    }

    /// Size in character cells (columns, rows).
    pub fn size(&self) -> (usize, usize) {
        (self.cols, self.rows)
    }

    /// Clears the screen and homes the cursor.
    pub fn clear(&mut self) {
        let bg = self.pixel(self.bg);
        let (w, h) = (self.fb.width(), self.fb.height());
        self.fb.fill(0, 0, w, h, bg);
        self.col = 0;
        self.row = 0;
    }

    fn pixel(&self, (r, g, b): (u8, u8, u8)) -> u32 {
        self.fb.encode(r, g, b)
    }

    /// Writes text, interpreting control characters and escape sequences.
    pub fn write_str(&mut self, s: &str) {
        for c in s.chars() {
            self.write_char(c);
        }
    }

    fn write_char(&mut self, c: char) {
        match self.escape {
            Escape::None => self.plain(c),
            Escape::Esc => {
                self.escape = if c == '[' {
                    Escape::Csi {
                        params: [0; 4],
                        count: 0,
                    }
                } else {
                    Escape::None
                };
            }
            Escape::Csi {
                mut params,
                mut count,
            } => {
                if let Some(digit) = c.to_digit(10) {
                    let slot = count.min(params.len() - 1);
                    params[slot] = params[slot].saturating_mul(10).saturating_add(digit as u16);
                    self.escape = Escape::Csi { params, count };
                } else if c == ';' {
                    count += 1;
                    self.escape = Escape::Csi { params, count };
                } else {
                    self.escape = Escape::None;
                    self.csi(c, &params[..=count.min(params.len() - 1)]);
                }
            }
        }
    }

    fn plain(&mut self, c: char) {
        match c {
            '\x1b' => self.escape = Escape::Esc,
            '\n' => self.newline(),
            '\r' => self.col = 0,
            '\t' => {
                for _ in 0..(8 - self.col % 8) {
                    self.plain(' ');
                }
            }
            '\x08' => self.col = self.col.saturating_sub(1),
            c if c < ' ' => {}
            c => {
                if self.col >= self.cols {
                    self.newline();
                }
                self.draw(c, self.col, self.row);
                self.col += 1;
            }
        }
    }

    /// Handles a CSI sequence ending in `op` with numeric `params`.
    fn csi(&mut self, op: char, params: &[u16]) {
        let n = usize::from(params[0].max(1));
        match op {
            'm' => params.iter().for_each(|&p| self.sgr(p)),
            'A' => self.row = self.row.saturating_sub(n),
            'B' => self.row = (self.row + n).min(self.rows - 1),
            'C' => self.col = (self.col + n).min(self.cols - 1),
            'D' => self.col = self.col.saturating_sub(n),
            'H' | 'f' => {
                self.row = usize::from(params[0].max(1) - 1).min(self.rows - 1);
                let col = params.get(1).copied().unwrap_or(1).max(1) - 1;
                self.col = usize::from(col).min(self.cols - 1);
            }
            'J' if params[0] == 2 => self.clear(),
            'J' => {
                self.erase_line_from(self.col, self.row);
                for row in self.row + 1..self.rows {
                    self.erase_line_from(0, row);
                }
            }
            'K' => self.erase_line_from(self.col, self.row),
            _ => {}
        }
    }

    fn sgr(&mut self, p: u16) {
        match p {
            0 => (self.fg, self.bg) = (DEFAULT_FG, DEFAULT_BG),
            30..=37 => self.fg = PALETTE[usize::from(p - 30)],
            39 => self.fg = DEFAULT_FG,
            40..=47 => self.bg = PALETTE[usize::from(p - 40)],
            49 => self.bg = DEFAULT_BG,
            90..=97 => self.fg = brighten(PALETTE[usize::from(p - 90)]),
            _ => {}
        }
    }

    fn erase_line_from(&mut self, col: usize, row: usize) {
        let bg = self.pixel(self.bg);
        let (x, y) = cell_origin(col, row);
        self.fb.fill(x, y, (self.cols - col) * CHAR_W, CHAR_H, bg);
    }

    fn newline(&mut self) {
        self.col = 0;
        if self.row + 1 < self.rows {
            self.row += 1;
        } else {
            self.fb.move_rows_up(MARGIN + CHAR_H, MARGIN);
            self.erase_line_from(0, self.rows - 1);
        }
    }

    fn draw(&mut self, c: char, col: usize, row: usize) {
        let raster = get_raster(c, WEIGHT, HEIGHT)
            .or_else(|| get_raster('\u{fffd}', WEIGHT, HEIGHT))
            .or_else(|| get_raster('?', WEIGHT, HEIGHT));
        let (x0, y0) = cell_origin(col, row);
        let Some(raster) = raster else { return };
        for (dy, line) in raster.raster().iter().enumerate() {
            for (dx, &intensity) in line.iter().enumerate() {
                let pixel = self.pixel(blend(self.bg, self.fg, intensity));
                self.fb.put(x0 + dx, y0 + dy, pixel);
            }
        }
    }
}

fn cell_origin(col: usize, row: usize) -> (usize, usize) {
    (MARGIN + col * CHAR_W, MARGIN + row * CHAR_H)
}

fn brighten((r, g, b): (u8, u8, u8)) -> (u8, u8, u8) {
    (
        r.saturating_add(0x30),
        g.saturating_add(0x30),
        b.saturating_add(0x30),
    )
}

/// Mixes `bg` and `fg` by the glyph's coverage `alpha` (0..=255).
fn blend(bg: (u8, u8, u8), fg: (u8, u8, u8), alpha: u8) -> (u8, u8, u8) {
    let mix = |b: u8, f: u8| {
        let a = u16::from(alpha);
        ((u16::from(b) * (255 - a) + u16::from(f) * a) / 255) as u8
    };
    (mix(bg.0, fg.0), mix(bg.1, fg.1), mix(bg.2, fg.2))
}

/// The screen console, once the framebuffer has been claimed.
pub static CONSOLE: Mutex<Option<Console>> = Mutex::new(None);

/// Claims the boot framebuffer for the console. Returns its size in cells, or `None` if the
/// loader gave no usable framebuffer (the kernel then talks on serial only).
pub fn init(boot: &hal::boot::Boot) -> Option<(usize, usize)> {
    let console = Console::new(hal::framebuffer::take(boot)?);
    let size = console.size();
    *CONSOLE.lock() = Some(console);
    Some(size)
}

/// Writes to the screen console, if there is one.
pub fn write_str(s: &str) {
    if let Some(console) = CONSOLE.lock().as_mut() {
        console.write_str(s);
    }
}

/// Writes to the screen console unless another context holds it (panic path).
pub fn try_write_fmt(args: core::fmt::Arguments<'_>) {
    if let Some(mut guard) = CONSOLE.try_lock()
        && let Some(console) = guard.as_mut()
    {
        let _ = core::fmt::Write::write_fmt(console, args);
    }
}

impl core::fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        Console::write_str(self, s);
        Ok(())
    }
}

impl Console {
    /// Writes a test pattern to one pixel, reads it back and restores it: proves the
    /// framebuffer is really writable memory.
    pub fn pixel_round_trip(&mut self) -> bool {
        let (x, y) = (self.fb.width() - 1, self.fb.height() - 1);
        let Some(old) = self.fb.get(x, y) else {
            return false;
        };
        let pattern = self.fb.encode(0x5a, 0xa5, 0x3c);
        self.fb.put(x, y, pattern);
        let ok = self.fb.get(x, y) == Some(pattern);
        self.fb.put(x, y, old);
        ok
    }
}

/// Tests of the console's escape-sequence handling (on the live console; its cursor and
/// colours are restored afterwards).
#[cfg(feature = "tests")]
pub mod tests {
    use super::{CONSOLE, Console, DEFAULT_BG, DEFAULT_FG, PALETTE};
    use crate::{
        check,
        ktest::{TestResult, ktest},
    };

    /// Cursor movement, clamping, colours and reset behave like a VT100-style terminal.
    #[ktest("console-ansi-escapes")]
    pub fn ansi_escapes() -> TestResult {
        let mut guard = CONSOLE.lock();
        let Some(console) = guard.as_mut() else {
            return Ok(()); // No framebuffer: nothing to test.
        };
        let saved = (console.col, console.row, console.fg, console.bg);
        let result = exercise(console);
        (console.col, console.row, console.fg, console.bg) = saved;
        result
    }

    fn exercise(c: &mut Console) -> TestResult {
        c.write_str("\x1b[5;10H");
        check!(
            (c.col, c.row) == (9, 4),
            "CUP 5;10 put the cursor at {:?}",
            (c.col, c.row)
        );
        c.write_str("\x1b[2A\x1b[3C");
        check!(
            (c.col, c.row) == (12, 2),
            "CUU 2 + CUF 3 gave {:?}",
            (c.col, c.row)
        );
        c.write_str("\x1b[D\x08");
        check!(
            (c.col, c.row) == (10, 2),
            "CUB + backspace gave {:?}",
            (c.col, c.row)
        );
        c.write_str("\x1b[999;999H");
        check!(
            (c.col, c.row) == (c.cols - 1, c.rows - 1),
            "CUP past the screen gave {:?} on {}x{}",
            (c.col, c.row),
            c.cols,
            c.rows
        );
        c.write_str("\x1b[H");
        check!(
            (c.col, c.row) == (0, 0),
            "CUP without parameters gave {:?}",
            (c.col, c.row)
        );
        c.write_str("\x1b[31;44m");
        check!(
            c.fg == PALETTE[1] && c.bg == PALETTE[4],
            "SGR 31;44 did not set red on blue"
        );
        c.write_str("\x1b[0m");
        check!(
            c.fg == DEFAULT_FG && c.bg == DEFAULT_BG,
            "SGR 0 did not reset the colours"
        );
        c.write_str("\x1b[1;2;3;4;5;6;7;8;9m\x1b[q");
        check!(
            matches!(c.escape, super::Escape::None),
            "a long or unknown sequence left the parser mid-escape"
        );
        Ok(())
    }
}
