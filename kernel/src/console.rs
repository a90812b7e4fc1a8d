//! The screen console: a terminal emulator ([`vt::Terminal`]) drawn on the boot framebuffer
//! with a bitmap font.
//!
//! The emulator keeps the character grid and says which cells changed; this module turns
//! those cells into pixels and nothing else. Pixels are the slow part (under emulation each
//! framebuffer write is costly), so only damaged cells are redrawn, runs of blank cells are
//! filled as one rectangle, and when the whole screen scrolls the image is moved up with one
//! copy instead of being redrawn. The cursor is drawn as the cell under it in swapped colours.
//!
//! Replies the terminal owes programs (the cursor-position report `busybox vi` asks for) are
//! queued; the tty layer reads them with [`take_reply`] and feeds them back as input.

use alloc::vec::Vec;
use core::ops::Range;

use hal::{framebuffer::Framebuffer, sync::IrqMutex as Mutex};
use noto_sans_mono_bitmap::{FontWeight, RasterHeight, get_raster, get_raster_width};
use vt::{Attrs, Cell, Terminal};

const WEIGHT: FontWeight = FontWeight::Regular;
const HEIGHT: RasterHeight = RasterHeight::Size16;
const CHAR_W: usize = get_raster_width(WEIGHT, HEIGHT);
const CHAR_H: usize = HEIGHT.val();
const MARGIN: usize = 8;

/// The colours `Color::Default` stands for.
const DEFAULT_FG: (u8, u8, u8) = (0xd8, 0xdc, 0xd8);
const DEFAULT_BG: (u8, u8, u8) = (0x10, 0x1c, 0x14);
/// The default foreground of bold text (bold is drawn bright).
const BOLD_FG: (u8, u8, u8) = (0xff, 0xff, 0xff);

/// What may be written before the kernel heap exists (the banner and the boot summary): it is
/// kept here and drawn as soon as the terminal's grid can be allocated.
const EARLY_BYTES: usize = 4096;

/// Glyph coverage is drawn in this many steps (a table per colour pair, not a blend per pixel).
const SHADES: usize = 16;

/// The pixels for one foreground/background pair, by coverage step.
#[derive(Clone, Copy)]
struct Shades {
    colours: ((u8, u8, u8), (u8, u8, u8)),
    pixels: [u32; SHADES],
}

/// A text console drawing into a framebuffer.
pub struct Console {
    pixels: Pixels,
    size: (usize, usize),
    /// The terminal, once the heap can hold its grid.
    term: Option<Terminal>,
    early: [u8; EARLY_BYTES],
    early_len: usize,
}

/// The framebuffer and what is drawn on it.
struct Pixels {
    fb: Framebuffer,
    /// The cell the cursor is drawn on, if it is drawn.
    drawn_cursor: Option<(usize, usize)>,
    /// The last colour pair drawn with (text is mostly one pair).
    shades: Option<Shades>,
}

impl Console {
    /// Makes a console covering the whole framebuffer and clears it.
    pub fn new(fb: Framebuffer) -> Self {
        let cols = (fb.width().saturating_sub(2 * MARGIN) / CHAR_W).max(1);
        let rows = (fb.height().saturating_sub(2 * MARGIN) / CHAR_H).max(1);
        let mut pixels = Pixels {
            fb,
            drawn_cursor: None,
            shades: None,
        };
        let (w, h) = (pixels.fb.width(), pixels.fb.height());
        let bg = pixels.encode(DEFAULT_BG);
        pixels.fb.fill(0, 0, w, h, bg);
        Self {
            pixels,
            size: (cols, rows),
            term: None,
            early: [0; EARLY_BYTES],
            early_len: 0,
        }
    }

    /// Size in character cells (columns, rows).
    pub fn size(&self) -> (usize, usize) {
        self.size
    }

    /// Makes the terminal on first use once allocation works (not before the heap), with
    /// what was written until then.
    fn make_terminal(&mut self) {
        if self.term.is_none()
            && let Some(mut term) = Terminal::try_new(self.size.0, self.size.1)
        {
            // The screen was cleared when the console was made: the blank grid is drawn.
            let _ = term.take_scrolled();
            for row in 0..self.size.1 {
                let _ = term.take_row_damage(row);
            }
            term.feed(&self.early[..self.early_len]);
            self.early_len = 0;
            self.term = Some(term);
        }
    }

    /// Writes text (kernel messages, or program output until a tty layer translates it),
    /// interpreting escape sequences; a line feed also returns the carriage, as the old
    /// console and a tty's `ONLCR` do.
    pub fn write_str(&mut self, s: &str) {
        for line in s.as_bytes().split_inclusive(|&b| b == b'\n') {
            match line.split_last() {
                Some((b'\n', text)) => {
                    self.feed(text);
                    self.feed(b"\r\n");
                }
                _ => self.feed(line),
            }
        }
        self.render();
    }

    /// Writes bytes as a program sends them to a terminal (UTF-8 and escape sequences,
    /// which may be split across calls); a line feed only moves down (the tty layer applies
    /// `ONLCR`).
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        self.feed(bytes);
        self.render();
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.make_terminal();
        if let Some(term) = self.term.as_mut() {
            term.feed(bytes);
        } else {
            // Before the heap: kept for later (what does not fit is lost to the screen; the
            // serial log has it).
            let free = &mut self.early[self.early_len..];
            let n = free.len().min(bytes.len());
            free[..n].copy_from_slice(&bytes[..n]);
            self.early_len += n;
        }
    }

    fn render(&mut self) {
        if let Some(term) = self.term.as_mut() {
            self.pixels.render(term);
        }
    }

    /// Takes the bytes the terminal answers with (status and cursor-position reports).
    pub fn take_reply(&mut self) -> Vec<u8> {
        self.term
            .as_mut()
            .map(Terminal::take_reply)
            .unwrap_or_default()
    }

    /// Whether the program asked for application cursor keys (`ESC O A` for up).
    pub fn app_cursor_keys(&self) -> bool {
        self.term.as_ref().is_some_and(Terminal::app_cursor_keys)
    }
}

impl Pixels {
    /// Brings the pixels up to date with the grid.
    fn render(&mut self, term: &mut Terminal) {
        // No allocation here: the panic path draws through this.
        let scrolled = term.take_scrolled();
        if scrolled > 0 {
            self.fb.move_rows_up(MARGIN + scrolled * CHAR_H, MARGIN);
            self.drawn_cursor = self
                .drawn_cursor
                .and_then(|(col, row)| Some((col, row.checked_sub(scrolled)?)));
        }
        if let Some((col, row)) = self.drawn_cursor.take() {
            self.draw_run(term, row, col..col + 1, false);
        }
        for row in 0..term.size().1 {
            let cols = term.take_row_damage(row);
            self.draw_run(term, row, cols, false);
        }
        if term.cursor_visible() {
            let (col, row) = term.cursor();
            self.draw_run(term, row, col..col + 1, true);
            self.drawn_cursor = Some((col, row));
        }
    }

    /// Draws cells `cols` of `row`; blank cells of one background are filled together.
    fn draw_run(&mut self, term: &Terminal, row: usize, cols: Range<usize>, cursor: bool) {
        let mut col = cols.start;
        while col < cols.end {
            let Some(&cell) = term.cell(col, row) else {
                return;
            };
            let (fg, bg) = colours(&cell, cursor);
            if is_blank(&cell) {
                let mut end = col + 1;
                while end < cols.end
                    && term
                        .cell(end, row)
                        .is_some_and(|c| is_blank(c) && colours(c, cursor).1 == bg)
                {
                    end += 1;
                }
                let (x, y) = cell_origin(col, row);
                let pixel = self.encode(bg);
                self.fb.fill(x, y, (end - col) * CHAR_W, CHAR_H, pixel);
                col = end;
            } else {
                self.draw_glyph(&cell, col, row, (fg, bg));
                col += 1;
            }
        }
    }

    fn draw_glyph(&mut self, cell: &Cell, col: usize, row: usize, pair: Colours) {
        let shades = self.shades_for(pair);
        let (x0, y0) = cell_origin(col, row);
        let raster = get_raster(cell.ch, WEIGHT, HEIGHT)
            .or_else(|| get_raster(ascii_stand_in(cell.ch)?, WEIGHT, HEIGHT))
            .or_else(|| get_raster(char::REPLACEMENT_CHARACTER, WEIGHT, HEIGHT))
            .or_else(|| get_raster('?', WEIGHT, HEIGHT));
        let Some(raster) = raster else {
            self.fb.fill(x0, y0, CHAR_W, CHAR_H, shades[0]);
            return;
        };
        let underline = cell.attrs.contains(Attrs::UNDERLINE);
        let strike = cell.attrs.contains(Attrs::STRIKE);
        for (dy, line) in raster.raster().iter().enumerate() {
            let solid = (underline && dy == CHAR_H - 2) || (strike && dy == CHAR_H / 2);
            for (dx, &coverage) in line.iter().enumerate() {
                let shade = if solid {
                    SHADES - 1
                } else {
                    usize::from(coverage) * SHADES / 256
                };
                self.fb.put(x0 + dx, y0 + dy, shades[shade]);
            }
        }
    }

    /// The pixel for each coverage step from `bg` to `fg`.
    fn shades_for(&mut self, colours: Colours) -> [u32; SHADES] {
        if let Some(cached) = self.shades
            && cached.colours == colours
        {
            return cached.pixels;
        }
        let mut pixels = [0; SHADES];
        for (step, pixel) in pixels.iter_mut().enumerate() {
            let alpha = (step * 255 / (SHADES - 1)) as u8;
            *pixel = self.encode(blend(colours.1, colours.0, alpha));
        }
        self.shades = Some(Shades { colours, pixels });
        pixels
    }

    fn encode(&self, (r, g, b): (u8, u8, u8)) -> u32 {
        self.fb.encode(r, g, b)
    }
}

/// An ASCII look-alike for line-drawing characters the font lacks (what `ESC ( 0` line
/// graphics and box-drawing text become), so boxes stay boxes.
fn ascii_stand_in(c: char) -> Option<char> {
    match c {
        '─' | '━' | '═' | '⎺' | '⎻' | '⎼' | '⎽' => Some('-'),
        '│' | '┃' | '║' => Some('|'),
        '\u{2500}'..='\u{257f}' => Some('+'),
        '▒' | '░' | '▓' | '█' => Some('#'),
        '◆' => Some('*'),
        '·' => Some('.'),
        _ => None,
    }
}

/// Foreground and background as RGB.
type Colours = ((u8, u8, u8), (u8, u8, u8));

/// A cell that draws as its background only.
fn is_blank(cell: &Cell) -> bool {
    cell.ch == ' ' && !cell.attrs.contains(Attrs::UNDERLINE) && !cell.attrs.contains(Attrs::STRIKE)
}

/// The colours a cell is drawn in: bold brightens, dim darkens, reverse (and the cursor)
/// swaps, hidden text takes the background colour.
fn colours(cell: &Cell, cursor: bool) -> Colours {
    let mut fg = if cell.attrs.contains(Attrs::BOLD) {
        cell.fg.brightened().rgb(BOLD_FG)
    } else {
        cell.fg.rgb(DEFAULT_FG)
    };
    if cell.attrs.contains(Attrs::DIM) {
        fg = (fg.0 / 2, fg.1 / 2, fg.2 / 2);
    }
    let bg = cell.bg.rgb(DEFAULT_BG);
    if cell.attrs.contains(Attrs::HIDDEN) {
        fg = bg;
    }
    if cell.attrs.contains(Attrs::REVERSE) != cursor {
        (bg, fg)
    } else {
        (fg, bg)
    }
}

fn cell_origin(col: usize, row: usize) -> (usize, usize) {
    (MARGIN + col * CHAR_W, MARGIN + row * CHAR_H)
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

/// Writes text to the screen console, if there is one (a line feed also returns the
/// carriage; see [`Console::write_str`]).
pub fn write_str(s: &str) {
    if let Some(console) = CONSOLE.lock().as_mut() {
        console.write_str(s);
    }
}

/// Writes bytes as a program sends them to a terminal (UTF-8 text and escape sequences; a
/// line feed only moves down) to the screen console, if there is one.
#[expect(
    dead_code,
    reason = "the tty layer (issue 9) writes program output here; until it lands nothing does"
)]
pub fn write_bytes(bytes: &[u8]) {
    if let Some(console) = CONSOLE.lock().as_mut() {
        console.write_bytes(bytes);
    }
}

/// Takes the replies the screen terminal has queued for the program reading it (empty
/// without a console).
#[expect(
    dead_code,
    reason = "the tty layer (issue 9) feeds replies back as input; until it lands nothing does"
)]
pub fn take_reply() -> Vec<u8> {
    CONSOLE
        .lock()
        .as_mut()
        .map(Console::take_reply)
        .unwrap_or_default()
}

/// Whether the screen terminal is in application cursor-key mode (DECCKM), which decides
/// what the cursor keys send.
#[expect(
    dead_code,
    reason = "the tty layer (issue 9) encodes cursor keys; until it lands nothing asks"
)]
pub fn app_cursor_keys() -> bool {
    CONSOLE
        .lock()
        .as_ref()
        .is_some_and(Console::app_cursor_keys)
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
        let fb = &mut self.pixels.fb;
        let (x, y) = (fb.width() - 1, fb.height() - 1);
        let Some(old) = fb.get(x, y) else {
            return false;
        };
        let pattern = fb.encode(0x5a, 0xa5, 0x3c);
        fb.put(x, y, pattern);
        let ok = fb.get(x, y) == Some(pattern);
        fb.put(x, y, old);
        ok
    }
}

/// Tests of the console on the live screen: what the terminal does with escapes is tested on
/// the host (`libs/vt`); these check that it reaches the pixels. The cursor is saved and
/// restored around them.
#[cfg(feature = "tests")]
pub mod tests {
    use super::{CHAR_H, CHAR_W, CONSOLE, Console, DEFAULT_BG, cell_origin};
    use crate::{
        check,
        ktest::{TestResult, ktest},
    };

    /// Escapes move the cursor, report its position, and colour the cells they draw.
    #[ktest("console-ansi-escapes")]
    pub fn ansi_escapes() -> TestResult {
        let mut guard = CONSOLE.lock();
        let Some(console) = guard.as_mut() else {
            return Ok(()); // No framebuffer: nothing to test.
        };
        let _ = console.take_reply();
        console.write_str("\x1b7");
        let result = exercise(console);
        console.write_str("\x1b[0m\x1b8");
        result
    }

    /// The colour at the middle of a cell's left edge (inside every glyph's background).
    fn cell_pixel(c: &Console, col: usize, row: usize) -> Option<u32> {
        let (x, y) = cell_origin(col, row);
        c.pixels.fb.get(x, y + CHAR_H / 2)
    }

    fn exercise(c: &mut Console) -> TestResult {
        c.write_str("\x1b[5;10H\x1b[6n");
        let reply = c.take_reply();
        check!(
            reply == b"\x1b[5;10R",
            "CUP 5;10 then DSR 6 replied {reply:?}"
        );
        c.write_str("\x1b[2A\x1b[3C\x1b[D\x08\x1b[6n");
        let reply = c.take_reply();
        check!(
            reply == b"\x1b[3;11R",
            "CUU/CUF/CUB/BS then DSR replied {reply:?}"
        );
        let (cols, rows) = c.size();
        // A red block in the bottom-right cell, then erased again.
        c.write_str("\x1b[?25l");
        let red = c.pixels.encode(vt::Color::Indexed(1).rgb(DEFAULT_BG));
        let bg = c.pixels.encode(DEFAULT_BG);
        let last = alloc::format!("\x1b[{rows};{cols}H\x1b[41m \x1b[0m");
        c.write_str(&last);
        let drawn = cell_pixel(c, cols - 1, rows - 1);
        check!(drawn == Some(red), "SGR 41 drew {drawn:?}, not {red:#x}");
        c.write_str("\x1b[2K");
        let erased = cell_pixel(c, cols - 1, rows - 1);
        check!(erased == Some(bg), "EL 2 left {erased:?}, not {bg:#x}");
        // The cursor is drawn in swapped colours where it stands.
        c.write_str("\x1b[?25h");
        let (x, y) = cell_origin(cols - 1, rows - 1);
        let cursor = c.pixels.fb.get(x + CHAR_W / 2, y + CHAR_H / 2);
        check!(
            cursor != Some(bg),
            "the visible cursor left its cell in the background colour"
        );
        c.write_str("\x1b[?25l\x1b[?25h");
        c.write_str("\x1b[1;2;3;4;5;6;7;8;9;10;11;12;13;14;15;16;17;18m\x1b[q");
        check!(
            c.term.as_ref().is_some_and(vt::Terminal::idle),
            "a long or unknown sequence left the parser mid-escape"
        );
        Ok(())
    }
}
