//! A VT100/xterm-subset terminal emulator: bytes in, a grid of character cells out.
//!
//! The screen console feeds it what programs write and draws the grid; full-screen programs
//! (busybox `vi`, `less`, `top`) need cursor addressing, erasing, insert and delete, scrolling
//! regions, colours, the alternate screen and cursor-position reports, which is the set
//! implemented here (the control functions of ECMA-48 and the DEC private modes xterm
//! documents in "XTerm Control Sequences"; where the two differ, xterm's behaviour wins).
//!
//! Drawing pixels is slow, so the emulator records what changed. [`Terminal::take_damage`]
//! returns the cells to redraw since the last call, plus how many rows the whole screen
//! scrolled up in between: a renderer moves its image up by that much (one memory copy) and
//! then redraws only the listed cells, instead of redrawing every cell of a scrolled screen.
//! [`Terminal::take_scrolled`] and [`Terminal::take_row_damage`] give the same without
//! allocating, for a renderer that may run on a panic path.
//!
//! Replies a terminal owes the program (device status and cursor-position reports) are
//! queued for the caller to feed back as keyboard input ([`Terminal::take_reply`]).
//!
//! All input is untrusted. Malformed or overlong sequences are dropped (see [`parser`]),
//! numeric parameters saturate and every count is clamped to the screen, so no byte stream
//! makes the emulator panic, loop or grow.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod cell;
pub mod parser;
mod terminal;

pub use cell::{Attrs, Cell, Color, Pen};
pub use terminal::{Damage, Terminal};

#[cfg(test)]
mod tests;
