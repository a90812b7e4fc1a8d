//! The terminal proper: the cell grids (main and alternate screen), the cursor, the modes,
//! and what each control function does to them.

use alloc::vec::Vec;
use core::ops::Range;

use crate::{
    cell::{Attrs, Cell, Color, Pen},
    parser::{Action, Parser},
};

/// The most reply bytes kept unread; a program flooding the terminal with status requests
/// loses replies rather than growing the queue without bound.
const MAX_REPLY: usize = 1024;

/// What changed since the last [`Terminal::take_damage`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Damage {
    /// How many rows the whole screen scrolled up before `spans` apply: move the old image up
    /// by this many rows first (the rows that come in at the bottom are in `spans`).
    pub scrolled: usize,
    /// The cells to redraw: a row and a range of columns, each row at most once.
    pub spans: Vec<(usize, Range<usize>)>,
}

/// The cursor's position and the state DECSC saves with it.
#[derive(Clone, Copy, Debug)]
struct Saved {
    col: usize,
    row: usize,
    pending_wrap: bool,
    pen: Pen,
    origin: bool,
    graphics: [bool; 2],
    shift_out: bool,
}

/// A terminal of a fixed size.
#[derive(Debug)]
pub struct Terminal {
    cols: usize,
    rows: usize,
    /// The screen shown, row-major.
    grid: Vec<Cell>,
    /// The screen not shown (the main screen while the alternate one is active).
    hidden: Vec<Cell>,
    alternate: bool,
    col: usize,
    row: usize,
    /// The cursor sits on the last column after writing there; the next character wraps
    /// first (DEC's "last column flag", so a full line does not scroll early).
    pending_wrap: bool,
    pen: Pen,
    /// Scrolling region, first and last row (inclusive).
    top: usize,
    bottom: usize,
    autowrap: bool,
    origin: bool,
    insert: bool,
    newline_mode: bool,
    cursor_visible: bool,
    app_cursor_keys: bool,
    /// G0 and G1 designated as DEC special graphics (line drawing); SO selects G1.
    graphics: [bool; 2],
    shift_out: bool,
    tabs: Vec<bool>,
    last_char: Option<char>,
    /// DECSC slots: main screen, alternate screen.
    saved: [Option<Saved>; 2],
    parser: Parser,
    /// Damaged columns per row (`start..end`, empty when clean).
    damage: Vec<Range<usize>>,
    scrolled: usize,
    reply: Vec<u8>,
}

impl Terminal {
    /// A blank terminal of `cols` × `rows` cells (each at least 1).
    ///
    /// # Panics
    ///
    /// If the grids cannot be allocated; see [`Terminal::try_new`].
    pub fn new(cols: usize, rows: usize) -> Terminal {
        Terminal::try_new(cols, rows).expect("memory for the terminal's grids")
    }

    /// A blank terminal of `cols` × `rows` cells (each at least 1), or `None` if its memory
    /// cannot be allocated (a kernel console exists before its heap does).
    pub fn try_new(cols: usize, rows: usize) -> Option<Terminal> {
        let (cols, rows) = (cols.max(1), rows.max(1));
        let cells = cols.checked_mul(rows)?;
        Some(Terminal {
            cols,
            rows,
            grid: filled(cells, Cell::default())?,
            hidden: filled(cells, Cell::default())?,
            alternate: false,
            col: 0,
            row: 0,
            pending_wrap: false,
            pen: Pen::default(),
            top: 0,
            bottom: rows - 1,
            autowrap: true,
            origin: false,
            insert: false,
            newline_mode: false,
            cursor_visible: true,
            app_cursor_keys: false,
            graphics: [false; 2],
            shift_out: false,
            tabs: {
                let mut tabs = filled(cols, false)?;
                tabs.iter_mut().step_by(8).skip(1).for_each(|t| *t = true);
                tabs
            },
            last_char: None,
            saved: [None; 2],
            parser: Parser::new(),
            damage: filled(rows, 0..cols)?,
            scrolled: 0,
            reply: Vec::new(),
        })
    }

    /// Size in cells (columns, rows).
    pub fn size(&self) -> (usize, usize) {
        (self.cols, self.rows)
    }

    /// The cell at (`col`, `row`) of the screen shown, if inside it.
    pub fn cell(&self, col: usize, row: usize) -> Option<&Cell> {
        (col < self.cols && row < self.rows).then(|| &self.grid[row * self.cols + col])
    }

    /// One row of the screen shown (empty past the last row).
    pub fn row(&self, row: usize) -> &[Cell] {
        let start = (row * self.cols).min(self.grid.len());
        &self.grid[start..(start + self.cols).min(self.grid.len())]
    }

    /// The cursor's cell (column, row).
    pub fn cursor(&self) -> (usize, usize) {
        (self.col, self.row)
    }

    /// Whether the cursor is to be drawn (DECTCEM).
    pub fn cursor_visible(&self) -> bool {
        self.cursor_visible
    }

    /// Whether cursor keys should send `ESC O A` rather than `ESC [ A` (DECCKM).
    pub fn app_cursor_keys(&self) -> bool {
        self.app_cursor_keys
    }

    /// Whether the alternate screen is shown.
    pub fn alternate_screen(&self) -> bool {
        self.alternate
    }

    /// Whether the parser is between sequences.
    pub fn idle(&self) -> bool {
        self.parser.is_ground()
    }

    /// Takes the bytes the terminal has to send back (status and cursor reports).
    pub fn take_reply(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.reply)
    }

    /// Takes what changed since the last call (everything, the first time).
    pub fn take_damage(&mut self) -> Damage {
        let scrolled = self.take_scrolled();
        let spans = (0..self.rows)
            .map(|row| (row, self.take_row_damage(row)))
            .filter(|(_, span)| span.start < span.end)
            .collect();
        Damage { scrolled, spans }
    }

    /// Takes how many rows the whole screen scrolled up since the last call: the first half
    /// of [`Terminal::take_damage`] without allocating (a renderer on a panic path cannot).
    /// Move the image first, then take each row's damage with [`Terminal::take_row_damage`].
    pub fn take_scrolled(&mut self) -> usize {
        core::mem::take(&mut self.scrolled)
    }

    /// Takes the damaged columns of `row` (empty when it is clean or past the last row).
    pub fn take_row_damage(&mut self, row: usize) -> Range<usize> {
        self.damage
            .get_mut(row)
            .map_or(0..0, |span| core::mem::replace(span, 0..0))
    }

    /// Interprets `bytes` (which may end inside a sequence: the rest may come later).
    pub fn feed(&mut self, bytes: &[u8]) {
        let mut parser = core::mem::take(&mut self.parser);
        for &byte in bytes {
            parser.advance(byte, &mut |action| self.act(action));
        }
        self.parser = parser;
    }

    fn act(&mut self, action: Action<'_>) {
        match action {
            Action::Print(c) => self.print(c),
            Action::Control(c) => self.control(c),
            Action::Esc {
                intermediate,
                final_byte,
            } => self.esc(intermediate, final_byte),
            Action::Csi {
                private,
                params,
                intermediate,
                final_byte,
            } => match (private, intermediate) {
                (None, None) => self.csi(params, final_byte),
                (Some(b'?'), None) => self.dec_private(params, final_byte),
                (None, Some(b'!')) if final_byte == b'p' => self.soft_reset(),
                // DECSCUSR (cursor shape), secondary DA and the like: nothing to do.
                _ => {}
            },
        }
    }

    fn mark(&mut self, row: usize, cols: Range<usize>) {
        let cols = cols.start.min(self.cols)..cols.end.min(self.cols);
        if cols.is_empty() || row >= self.rows {
            return;
        }
        let span = &mut self.damage[row];
        *span = if span.start >= span.end {
            cols
        } else {
            span.start.min(cols.start)..span.end.max(cols.end)
        };
    }

    fn mark_rows(&mut self, rows: Range<usize>) {
        for row in rows {
            self.mark(row, 0..self.cols);
        }
    }

    fn print(&mut self, c: char) {
        let c = if self.graphics[usize::from(self.shift_out)] {
            dec_graphics(c)
        } else {
            c
        };
        if self.pending_wrap && self.autowrap {
            self.col = 0;
            self.index();
        }
        self.pending_wrap = false;
        if self.insert {
            self.insert_blanks(1);
        }
        let at = self.row * self.cols + self.col;
        self.grid[at] = Cell::new(c, self.pen);
        self.mark(self.row, self.col..self.col + 1);
        self.last_char = Some(c);
        if self.col + 1 < self.cols {
            self.col += 1;
        } else {
            self.pending_wrap = self.autowrap;
        }
    }

    fn control(&mut self, c: u8) {
        match c {
            0x08 => {
                self.pending_wrap = false;
                self.col = self.col.saturating_sub(1);
            }
            b'\t' => self.tab_forward(1),
            b'\n' | 0x0b | 0x0c => {
                if self.newline_mode {
                    self.col = 0;
                }
                self.index();
            }
            b'\r' => self.move_to(0, self.row),
            0x0e => self.shift_out = true,
            0x0f => self.shift_out = false,
            // BEL and the rest: nothing to show.
            _ => {}
        }
    }

    fn esc(&mut self, intermediate: Option<u8>, final_byte: u8) {
        match (intermediate, final_byte) {
            (None, b'7') => self.save_cursor(),
            (None, b'8') => self.restore_cursor(),
            (None, b'D') => self.index(),
            (None, b'E') => {
                self.col = 0;
                self.index();
            }
            (None, b'M') => self.reverse_index(),
            (None, b'H') => self.tabs[self.col] = true,
            (None, b'c') => self.reset(),
            (Some(b'#'), b'8') => self.alignment_pattern(),
            (Some(b'('), charset) => self.graphics[0] = charset == b'0',
            (Some(b')'), charset) => self.graphics[1] = charset == b'0',
            // Keypad modes (ESC = / ESC >), other charsets: nothing drawn differs.
            _ => {}
        }
    }

    fn csi(&mut self, params: &[u16], final_byte: u8) {
        let p = |i: usize| params.get(i).copied().unwrap_or(0);
        // The count of most functions: 0 or absent means 1.
        let n = usize::from(p(0).max(1));
        match final_byte {
            b'@' => self.insert_blanks(n),
            b'A' => self.cursor_up(n),
            b'B' | b'e' => self.cursor_down(n),
            b'C' | b'a' => self.move_to(self.col.saturating_add(n), self.row),
            b'D' => self.move_to(self.col.saturating_sub(n), self.row),
            b'E' => {
                self.cursor_down(n);
                self.col = 0;
            }
            b'F' => {
                self.cursor_up(n);
                self.col = 0;
            }
            b'G' | b'`' => self.move_to(n - 1, self.row),
            b'H' | b'f' => self.cursor_position(n, usize::from(p(1).max(1))),
            b'I' => self.tab_forward(n),
            b'Z' => self.tab_back(n),
            b'J' => self.erase_display(p(0)),
            b'K' => self.erase_line(p(0)),
            b'L' => self.insert_lines(n),
            b'M' => self.delete_lines(n),
            b'P' => self.delete_chars(n),
            b'S' => self.scroll_up(self.top, self.bottom, n),
            b'T' => self.scroll_down(self.top, self.bottom, n),
            b'X' => self.erase_chars(n),
            b'b' => self.repeat(n),
            b'c' if p(0) == 0 => self.queue_reply(b"\x1b[?6c"),
            b'd' => self.cursor_position_row(n),
            b'g' => self.clear_tabs(p(0)),
            b'h' | b'l' => self.ansi_modes(params, final_byte == b'h'),
            b'm' => self.sgr(params),
            b'n' => self.status_report(p(0)),
            b'r' => self.set_region(p(0), p(1)),
            b's' => self.save_cursor(),
            b'u' => self.restore_cursor(),
            _ => {}
        }
    }

    fn dec_private(&mut self, params: &[u16], final_byte: u8) {
        let on = match final_byte {
            b'h' => true,
            b'l' => false,
            _ => return,
        };
        for &mode in params {
            match mode {
                1 => self.app_cursor_keys = on,
                6 => {
                    self.origin = on;
                    self.cursor_position(1, 1);
                }
                7 => {
                    self.autowrap = on;
                    self.pending_wrap &= on;
                }
                25 => {
                    self.cursor_visible = on;
                    self.mark(self.row, self.col..self.col + 1);
                }
                47 => self.switch_screen(on, false),
                1047 => {
                    if !on && self.alternate {
                        self.fill(0..self.grid.len(), Cell::blank(self.pen));
                    }
                    self.switch_screen(on, false);
                }
                1048 if on => self.save_cursor(),
                1048 => self.restore_cursor(),
                1049 if on && !self.alternate => {
                    self.save_cursor();
                    self.switch_screen(true, true);
                }
                1049 if !on && self.alternate => {
                    self.switch_screen(false, false);
                    self.restore_cursor();
                }
                _ => {}
            }
        }
    }

    fn ansi_modes(&mut self, params: &[u16], on: bool) {
        for &mode in params {
            match mode {
                4 => self.insert = on,
                20 => self.newline_mode = on,
                _ => {}
            }
        }
    }

    fn queue_reply(&mut self, bytes: &[u8]) {
        if self.reply.len() + bytes.len() <= MAX_REPLY {
            self.reply.extend_from_slice(bytes);
        }
    }

    fn status_report(&mut self, what: u16) {
        match what {
            5 => self.queue_reply(b"\x1b[0n"),
            6 => {
                let row = if self.origin {
                    self.row - self.top
                } else {
                    self.row
                };
                let mut text = [0u8; 48];
                let len = format_cpr(&mut text, row + 1, self.col + 1);
                self.queue_reply(&text[..len]);
            }
            _ => {}
        }
    }

    fn move_to(&mut self, col: usize, row: usize) {
        self.pending_wrap = false;
        self.col = col.min(self.cols - 1);
        self.row = row.min(self.rows - 1);
    }

    fn cursor_up(&mut self, n: usize) {
        let limit = if self.row >= self.top { self.top } else { 0 };
        self.move_to(self.col, self.row.saturating_sub(n).max(limit));
    }

    fn cursor_down(&mut self, n: usize) {
        let limit = if self.row <= self.bottom {
            self.bottom
        } else {
            self.rows - 1
        };
        self.move_to(self.col, self.row.saturating_add(n).min(limit));
    }

    /// CUP's rows count from the region's top in origin mode and stay inside it.
    fn cursor_position(&mut self, row: usize, col: usize) {
        self.cursor_position_row(row);
        self.move_to(col - 1, self.row);
    }

    fn cursor_position_row(&mut self, row: usize) {
        let row = if self.origin {
            (self.top + row - 1).min(self.bottom)
        } else {
            row - 1
        };
        self.move_to(self.col, row);
    }

    fn tab_forward(&mut self, n: usize) {
        for _ in 0..n.min(self.cols) {
            let next = (self.col + 1..self.cols).find(|&c| self.tabs[c]);
            self.col = next.unwrap_or(self.cols - 1);
        }
        self.pending_wrap = false;
    }

    fn tab_back(&mut self, n: usize) {
        for _ in 0..n.min(self.cols) {
            self.col = (0..self.col).rev().find(|&c| self.tabs[c]).unwrap_or(0);
        }
        self.pending_wrap = false;
    }

    fn clear_tabs(&mut self, what: u16) {
        match what {
            0 => self.tabs[self.col] = false,
            3 => self.tabs.fill(false),
            _ => {}
        }
    }

    /// IND and LF: down one row, scrolling the region when at its bottom.
    fn index(&mut self) {
        self.pending_wrap = false;
        if self.row == self.bottom {
            self.scroll_up(self.top, self.bottom, 1);
        } else if self.row + 1 < self.rows {
            self.row += 1;
        }
    }

    /// RI: up one row, scrolling the region down when at its top.
    fn reverse_index(&mut self) {
        self.pending_wrap = false;
        if self.row == self.top {
            self.scroll_down(self.top, self.bottom, 1);
        } else if self.row > 0 {
            self.row -= 1;
        }
    }

    fn fill(&mut self, cells: Range<usize>, cell: Cell) {
        let end = cells.end.min(self.grid.len());
        let start = cells.start.min(end);
        self.grid[start..end].fill(cell);
        let (first, last) = (start / self.cols, end.div_ceil(self.cols));
        for row in first..last {
            let from = if row == first { start % self.cols } else { 0 };
            let to = if row * self.cols + self.cols > end {
                end - row * self.cols
            } else {
                self.cols
            };
            self.mark(row, from..to);
        }
    }

    /// Scrolls rows `top..=bottom` up by `n`, blank rows coming in at the bottom.
    fn scroll_up(&mut self, top: usize, bottom: usize, n: usize) {
        let height = bottom + 1 - top;
        let n = n.min(height);
        let cols = self.cols;
        self.grid
            .copy_within((top + n) * cols..(bottom + 1) * cols, top * cols);
        let blank = Cell::blank(self.pen);
        self.grid[(bottom + 1 - n) * cols..(bottom + 1) * cols].fill(blank);
        if top == 0 && bottom == self.rows - 1 && n < self.rows {
            // The whole screen moved: the renderer moves its image, so the damage moves too.
            self.scrolled += n;
            self.damage.rotate_left(n);
            for span in &mut self.damage[self.rows - n..] {
                *span = 0..cols;
            }
            if self.scrolled >= self.rows {
                self.scrolled = 0;
                self.mark_rows(0..self.rows);
            }
        } else {
            self.mark_rows(top..bottom + 1);
        }
    }

    /// Scrolls rows `top..=bottom` down by `n`, blank rows coming in at the top.
    fn scroll_down(&mut self, top: usize, bottom: usize, n: usize) {
        let height = bottom + 1 - top;
        let n = n.min(height);
        let cols = self.cols;
        self.grid
            .copy_within(top * cols..(bottom + 1 - n) * cols, (top + n) * cols);
        let blank = Cell::blank(self.pen);
        self.grid[top * cols..(top + n) * cols].fill(blank);
        self.mark_rows(top..bottom + 1);
    }

    fn insert_lines(&mut self, n: usize) {
        if (self.top..=self.bottom).contains(&self.row) {
            self.scroll_down(self.row, self.bottom, n);
            self.move_to(0, self.row);
        }
    }

    fn delete_lines(&mut self, n: usize) {
        if (self.top..=self.bottom).contains(&self.row) {
            self.scroll_up(self.row, self.bottom, n);
            self.move_to(0, self.row);
        }
    }

    fn insert_blanks(&mut self, n: usize) {
        let start = self.row * self.cols;
        let line = &mut self.grid[start..start + self.cols];
        let n = n.min(self.cols - self.col);
        line.copy_within(self.col..self.cols - n, self.col + n);
        line[self.col..self.col + n].fill(Cell::blank(self.pen));
        self.mark(self.row, self.col..self.cols);
        self.pending_wrap = false;
    }

    fn delete_chars(&mut self, n: usize) {
        let start = self.row * self.cols;
        let line = &mut self.grid[start..start + self.cols];
        let n = n.min(self.cols - self.col);
        line.copy_within(self.col + n..self.cols, self.col);
        line[self.cols - n..].fill(Cell::blank(self.pen));
        self.mark(self.row, self.col..self.cols);
        self.pending_wrap = false;
    }

    fn erase_chars(&mut self, n: usize) {
        let start = self.row * self.cols + self.col;
        let n = n.min(self.cols - self.col);
        self.fill(start..start + n, Cell::blank(self.pen));
        self.pending_wrap = false;
    }

    fn erase_display(&mut self, how: u16) {
        let cursor = self.row * self.cols + self.col;
        let blank = Cell::blank(self.pen);
        match how {
            0 => self.fill(cursor..self.grid.len(), blank),
            1 => self.fill(0..cursor + 1, blank),
            // 3 also clears the scrollback, of which there is none.
            2 | 3 => self.fill(0..self.grid.len(), blank),
            _ => return,
        }
        self.pending_wrap = false;
    }

    fn erase_line(&mut self, how: u16) {
        let start = self.row * self.cols;
        let blank = Cell::blank(self.pen);
        match how {
            0 => self.fill(start + self.col..start + self.cols, blank),
            1 => self.fill(start..start + self.col + 1, blank),
            2 => self.fill(start..start + self.cols, blank),
            _ => return,
        }
        self.pending_wrap = false;
    }

    fn repeat(&mut self, n: usize) {
        if let Some(c) = self.last_char {
            for _ in 0..n.min(self.cols * self.rows) {
                self.print(c);
            }
        }
    }

    fn set_region(&mut self, top: u16, bottom: u16) {
        let top = usize::from(top.max(1)) - 1;
        let bottom = match usize::from(bottom) {
            0 => self.rows,
            b => b.min(self.rows),
        } - 1;
        if top < bottom {
            self.top = top;
            self.bottom = bottom;
            self.cursor_position(1, 1);
        }
    }

    fn save_cursor(&mut self) {
        self.saved[usize::from(self.alternate)] = Some(Saved {
            col: self.col,
            row: self.row,
            pending_wrap: self.pending_wrap,
            pen: self.pen,
            origin: self.origin,
            graphics: self.graphics,
            shift_out: self.shift_out,
        });
    }

    /// DECRC; with nothing saved, xterm homes the cursor and resets the pen.
    fn restore_cursor(&mut self) {
        let saved = self.saved[usize::from(self.alternate)].unwrap_or(Saved {
            col: 0,
            row: 0,
            pending_wrap: false,
            pen: Pen::default(),
            origin: false,
            graphics: [false; 2],
            shift_out: false,
        });
        self.move_to(saved.col, saved.row);
        self.pending_wrap = saved.pending_wrap && self.col == self.cols - 1;
        self.pen = saved.pen;
        self.origin = saved.origin;
        self.graphics = saved.graphics;
        self.shift_out = saved.shift_out;
    }

    fn switch_screen(&mut self, alternate: bool, clear: bool) {
        if alternate != self.alternate {
            core::mem::swap(&mut self.grid, &mut self.hidden);
            self.alternate = alternate;
            self.scrolled = 0;
            self.mark_rows(0..self.rows);
        }
        if alternate && clear {
            self.fill(0..self.grid.len(), Cell::blank(self.pen));
        }
    }

    fn alignment_pattern(&mut self) {
        self.fill(0..self.grid.len(), Cell::new('E', Pen::default()));
        self.top = 0;
        self.bottom = self.rows - 1;
        self.move_to(0, 0);
    }

    /// DECSTR: modes and pen back to their defaults, the screen left alone.
    fn soft_reset(&mut self) {
        self.pen = Pen::default();
        self.top = 0;
        self.bottom = self.rows - 1;
        self.autowrap = true;
        self.origin = false;
        self.insert = false;
        self.cursor_visible = true;
        self.app_cursor_keys = false;
        self.graphics = [false; 2];
        self.shift_out = false;
        self.saved = [None; 2];
        self.mark(self.row, self.col..self.col + 1);
    }

    /// RIS: everything as new, the main screen shown and blank (in the memory it has).
    fn reset(&mut self) {
        self.switch_screen(false, false);
        self.soft_reset();
        self.grid.fill(Cell::default());
        self.hidden.fill(Cell::default());
        self.move_to(0, 0);
        self.newline_mode = false;
        self.last_char = None;
        for (col, tab) in self.tabs.iter_mut().enumerate() {
            *tab = col % 8 == 0 && col > 0;
        }
        self.mark_rows(0..self.rows);
    }

    fn sgr(&mut self, params: &[u16]) {
        let mut i = 0;
        while i < params.len() {
            let attrs = &mut self.pen.attrs;
            match params[i] {
                0 => self.pen = Pen::default(),
                1 => attrs.set(Attrs::BOLD, true),
                2 => attrs.set(Attrs::DIM, true),
                3 => attrs.set(Attrs::ITALIC, true),
                4 => attrs.set(Attrs::UNDERLINE, true),
                5 | 6 => attrs.set(Attrs::BLINK, true),
                7 => attrs.set(Attrs::REVERSE, true),
                8 => attrs.set(Attrs::HIDDEN, true),
                9 => attrs.set(Attrs::STRIKE, true),
                21 => attrs.set(Attrs::UNDERLINE, true),
                22 => {
                    attrs.set(Attrs::BOLD, false);
                    attrs.set(Attrs::DIM, false);
                }
                23 => attrs.set(Attrs::ITALIC, false),
                24 => attrs.set(Attrs::UNDERLINE, false),
                25 => attrs.set(Attrs::BLINK, false),
                27 => attrs.set(Attrs::REVERSE, false),
                28 => attrs.set(Attrs::HIDDEN, false),
                29 => attrs.set(Attrs::STRIKE, false),
                p @ 30..=37 => self.pen.fg = Color::Indexed((p - 30) as u8),
                38 => {
                    let (color, used) = extended_color(&params[i + 1..]);
                    if let Some(color) = color {
                        self.pen.fg = color;
                    }
                    i += used;
                }
                39 => self.pen.fg = Color::Default,
                p @ 40..=47 => self.pen.bg = Color::Indexed((p - 40) as u8),
                48 => {
                    let (color, used) = extended_color(&params[i + 1..]);
                    if let Some(color) = color {
                        self.pen.bg = color;
                    }
                    i += used;
                }
                49 => self.pen.bg = Color::Default,
                p @ 90..=97 => self.pen.fg = Color::Indexed((p - 90 + 8) as u8),
                p @ 100..=107 => self.pen.bg = Color::Indexed((p - 100 + 8) as u8),
                _ => {}
            }
            i += 1;
        }
    }
}

/// `len` copies of `value`, or `None` if the memory is not there.
fn filled<T: Clone>(len: usize, value: T) -> Option<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).ok()?;
    v.resize(len, value);
    Some(v)
}

/// Reads the rest of `SGR 38`/`48`: `5;n` or `2;r;g;b`. Returns the colour (if valid) and
/// how many parameters it took.
fn extended_color(rest: &[u16]) -> (Option<Color>, usize) {
    let byte = |i: usize| rest.get(i).and_then(|&v| u8::try_from(v).ok());
    match rest.first() {
        Some(5) => (byte(1).map(Color::Indexed), 2.min(rest.len())),
        Some(2) => {
            let color = match (byte(1), byte(2), byte(3)) {
                (Some(r), Some(g), Some(b)) => Some(Color::Rgb(r, g, b)),
                _ => None,
            };
            (color, 4.min(rest.len()))
        }
        // An unknown colour space: the rest of the sequence cannot be interpreted.
        _ => (None, rest.len()),
    }
}

/// Writes `ESC [ row ; col R` into `out`, returning its length.
fn format_cpr(out: &mut [u8; 48], row: usize, col: usize) -> usize {
    let mut len = 0;
    let mut push = |b: u8| {
        out[len] = b;
        len += 1;
    };
    push(0x1b);
    push(b'[');
    for (i, value) in [row, col].into_iter().enumerate() {
        if i == 1 {
            push(b';');
        }
        let mut digits = [0u8; 20];
        let mut n = value;
        let mut count = 0;
        loop {
            digits[count] = b'0' + (n % 10) as u8;
            count += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for &d in digits[..count].iter().rev() {
            push(d);
        }
    }
    push(b'R');
    len
}

/// The DEC special graphics set (`ESC ( 0`): line-drawing characters for `_` to `~`.
fn dec_graphics(c: char) -> char {
    const TABLE: [char; 32] = [
        ' ', '◆', '▒', '␉', '␌', '␍', '␊', '°', '±', '␤', '␋', '┘', '┐', '┌', '└', '┼', '⎺', '⎻',
        '─', '⎼', '⎽', '├', '┤', '┴', '┬', '│', '≤', '≥', 'π', '≠', '£', '·',
    ];
    match c {
        '_'..='~' => TABLE[c as usize - '_' as usize],
        c => c,
    }
}
