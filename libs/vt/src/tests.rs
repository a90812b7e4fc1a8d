//! Host tests: each control function against what xterm does, random bytes, and recorded
//! sessions of busybox `vi`, `less` and `top` replayed into the grid.

use alloc::{string::String, vec::Vec};

use crate::{Attrs, Color, Damage, Terminal, parser::Parser};

extern crate std;

fn text(t: &Terminal, row: usize) -> String {
    let s: String = t.row(row).iter().map(|c| c.ch).collect();
    String::from(s.trim_end())
}

fn term(cols: usize, rows: usize, input: &str) -> Terminal {
    let mut t = Terminal::new(cols, rows);
    t.feed(input.as_bytes());
    t
}

#[test]
fn prints_and_moves_with_c0_controls() {
    let t = term(20, 5, "ab\r\ncd\tx\x08y");
    assert_eq!(text(&t, 0), "ab");
    assert_eq!(text(&t, 1), "cd      y");
    assert_eq!(t.cursor(), (9, 1));
}

#[test]
fn autowrap_waits_for_the_next_character() {
    let mut t = term(5, 3, "abcde");
    assert_eq!(t.cursor(), (4, 0), "the cursor stays on the last column");
    assert_eq!(text(&t, 1), "");
    t.feed(b"\r\n");
    assert_eq!(
        t.cursor(),
        (0, 1),
        "CR LF after a full line does not skip a line"
    );
    t.feed(b"fghijk");
    assert_eq!(text(&t, 1), "fghij");
    assert_eq!(text(&t, 2), "k");
    // A cursor movement cancels the pending wrap.
    let mut t = term(5, 3, "abcde\x1b[Dz");
    assert_eq!(text(&t, 0), "abcze");
    assert_eq!(t.cursor(), (4, 0));
    t.feed(b"\x1b[?7lXY");
    assert_eq!(
        text(&t, 0),
        "abczY",
        "without DECAWM the last column is overwritten"
    );
    assert_eq!(text(&t, 1), "");
}

#[test]
fn cursor_movement_is_clamped() {
    let mut t = term(10, 6, "\x1b[3;4H");
    assert_eq!(t.cursor(), (3, 2));
    t.feed(b"\x1b[2A\x1b[3C");
    assert_eq!(t.cursor(), (6, 0));
    t.feed(b"\x1b[9A\x1b[99C");
    assert_eq!(t.cursor(), (9, 0));
    t.feed(b"\x1b[2B\x1b[4D");
    assert_eq!(t.cursor(), (5, 2));
    t.feed(b"\x1b[999;999f");
    assert_eq!(t.cursor(), (9, 5));
    t.feed(b"\x1b[H");
    assert_eq!(t.cursor(), (0, 0));
    t.feed(b"\x1b[0;0H\x1b[5G");
    assert_eq!(t.cursor(), (4, 0));
    t.feed(b"\x1b[4d");
    assert_eq!(t.cursor(), (4, 3));
    t.feed(b"\x1b[2F");
    assert_eq!(t.cursor(), (0, 1));
    t.feed(b"\x1b[3C\x1b[E");
    assert_eq!(t.cursor(), (0, 2));
    t.feed(b"\x1b[2`\x1b[3a\x1b[2e");
    assert_eq!(t.cursor(), (4, 4));
}

#[test]
fn erase_in_display_and_line() {
    let fill = "\x1b#8";
    let mut t = term(4, 3, fill);
    t.feed(b"\x1b[2;2H\x1b[K");
    assert_eq!(text(&t, 1), "E");
    t.feed(b"\x1b[1K");
    assert_eq!(text(&t, 1), "");
    let mut t = term(4, 3, fill);
    t.feed(b"\x1b[2;3H\x1b[2K");
    assert_eq!(
        [text(&t, 0), text(&t, 1), text(&t, 2)],
        ["EEEE", "", "EEEE"]
    );
    let mut t = term(4, 3, fill);
    t.feed(b"\x1b[2;3H\x1b[J");
    assert_eq!([text(&t, 0), text(&t, 1), text(&t, 2)], ["EEEE", "EE", ""]);
    let mut t = term(4, 3, fill);
    t.feed(b"\x1b[2;3H\x1b[1J");
    let row1: String = t.row(1).iter().map(|c| c.ch).collect();
    assert_eq!([text(&t, 0), row1, text(&t, 2)], ["", "   E", "EEEE"]);
    t.feed(b"\x1b[2J");
    assert!((0..3).all(|r| text(&t, r).is_empty()));
    assert_eq!(t.cursor(), (2, 1), "ED does not move the cursor");
}

#[test]
fn erase_uses_the_background_colour() {
    let t = term(4, 2, "\x1b[44m\x1b[2J\x1b[0mx");
    assert_eq!(t.cell(3, 1).expect("cell").bg, Color::Indexed(4));
    assert_eq!(t.cell(0, 0).expect("cell").bg, Color::Default);
}

#[test]
fn insert_delete_and_erase_characters() {
    let mut t = term(8, 1, "abcdef\x1b[1;3H\x1b[2@");
    assert_eq!(text(&t, 0), "ab  cdef");
    t.feed(b"\x1b[3P");
    assert_eq!(text(&t, 0), "abdef");
    t.feed(b"\x1b[2X");
    assert_eq!(text(&t, 0), "ab  f");
    assert_eq!(t.cursor(), (2, 0));
    t.feed(b"\x1b[99P");
    assert_eq!(text(&t, 0), "ab");
    let mut t = term(6, 1, "abcdef\x1b[1;2H\x1b[4hXY\x1b[4lZ");
    assert_eq!(text(&t, 0), "aXYZcd", "insert mode shifts the line right");
    t.feed(b"\x1b[1;1Hq\x1b[3b");
    assert_eq!(text(&t, 0), "qqqqcd", "REP repeats the last character");
}

#[test]
fn insert_and_delete_lines_inside_the_region() {
    let mut t = term(3, 5, "a\r\nb\r\nc\r\nd\r\ne");
    t.feed(b"\x1b[2;4r\x1b[3;2H\x1b[L");
    let rows = |t: &Terminal| (0..5).map(|r| text(t, r)).collect::<Vec<_>>();
    assert_eq!(rows(&t), ["a", "b", "", "c", "e"]);
    assert_eq!(t.cursor(), (0, 2), "IL moves to the first column");
    t.feed(b"\x1b[2M");
    assert_eq!(rows(&t), ["a", "b", "", "", "e"]);
    // Outside the region, IL and DL do nothing.
    t.feed(b"\x1b[5;1H\x1b[L");
    assert_eq!(rows(&t), ["a", "b", "", "", "e"]);
}

#[test]
fn scrolling_region_index_and_reverse_index() {
    let mut t = term(3, 5, "a\r\nb\r\nc\r\nd\r\ne");
    let rows = |t: &Terminal| (0..5).map(|r| text(t, r)).collect::<Vec<_>>();
    t.feed(b"\x1b[2;4r");
    assert_eq!(t.cursor(), (0, 0), "DECSTBM homes the cursor");
    t.feed(b"\x1b[4;1H\n");
    assert_eq!(rows(&t), ["a", "c", "d", "", "e"]);
    t.feed(b"\x1b[2;1H\x1bM");
    assert_eq!(rows(&t), ["a", "", "c", "d", "e"]);
    t.feed(b"\x1b[S");
    assert_eq!(rows(&t), ["a", "c", "d", "", "e"]);
    t.feed(b"\x1b[2T");
    assert_eq!(rows(&t), ["a", "", "", "c", "e"]);
    // Below the region, LF at the last row does not scroll.
    t.feed(b"\x1b[5;1H\n\n");
    assert_eq!(rows(&t), ["a", "", "", "c", "e"]);
    assert_eq!(t.cursor(), (0, 4));
    // CUU stops at the region's top from inside it.
    t.feed(b"\x1b[3;1H\x1b[9A");
    assert_eq!(t.cursor(), (0, 1));
    // ESC E is CR + LF, and ends the pending wrap of a full line.
    t.feed(b"\x1b[2Cx\x1bEy");
    assert_eq!(t.cursor(), (1, 2));
    // An invalid region is ignored.
    t.feed(b"\x1b[4;2r");
    assert_eq!(t.cursor(), (1, 2));
}

#[test]
fn origin_mode_addresses_the_region() {
    let mut t = term(5, 6, "\x1b[3;5r\x1b[?6h");
    assert_eq!(t.cursor(), (0, 2));
    t.feed(b"\x1b[2;2H");
    assert_eq!(t.cursor(), (1, 3));
    t.feed(b"\x1b[9;1H\x1b[6n");
    assert_eq!(t.cursor(), (0, 4));
    assert_eq!(
        t.take_reply(),
        b"\x1b[3;1R",
        "CPR counts from the region's top"
    );
}

#[test]
fn full_screen_scroll_moves_the_damage() {
    let mut t = term(4, 3, "a\r\nb\r\nc");
    let _ = t.take_damage();
    t.feed(b"\x1b[1;2Hx\x1b[3;1H\n");
    let damage = t.take_damage();
    assert_eq!(damage.scrolled, 1);
    // The changed cell of row 0 went off the top; the new bottom row is damaged whole.
    assert_eq!(damage.spans, [(2, 0..4)]);
    t.feed(b"\x1b[2;3Hy\n\n");
    let Damage { scrolled, spans } = t.take_damage();
    assert_eq!(scrolled, 1);
    assert_eq!(spans, [(0, 2..3), (2, 0..4)]);
    // A region scroll cannot be drawn as a moved image.
    t.feed(b"\x1b[1;2r\x1b[2;1H\n");
    let damage = t.take_damage();
    assert_eq!(damage.scrolled, 0);
    assert_eq!(damage.spans, [(0, 0..4), (1, 0..4)]);
    assert_eq!(t.take_damage(), Damage::default());
}

#[test]
fn scrolling_more_than_a_screen_redraws_everything() {
    let mut t = term(4, 3, "");
    let _ = t.take_damage();
    t.feed(b"\n\n\n\n\n\n\n");
    let damage = t.take_damage();
    assert!(damage.scrolled < 3);
    assert_eq!(damage.spans.len(), 3);
}

#[test]
fn damage_covers_exactly_the_changed_cells() {
    let mut t = term(10, 3, "");
    assert_eq!(
        t.take_damage().spans.len(),
        3,
        "a new terminal is drawn whole"
    );
    t.feed(b"\x1b[2;3Hab\x1b[3;9Hc");
    assert_eq!(t.take_damage().spans, [(1, 2..4), (2, 8..9)]);
    t.feed(b"\x1b[1;5H\x1b[K");
    assert_eq!(t.take_damage().spans, [(0, 4..10)]);
}

#[test]
fn sgr_colours_and_attributes() {
    let t = term(
        20,
        1,
        "\x1b[1;4;7;31;42ma\x1b[22;24;27;39;49mb\x1b[38;5;200;48;2;1;2;3mc\x1b[mz",
    );
    let cell = |i| *t.cell(i, 0).expect("cell");
    let a = cell(0);
    assert_eq!((a.fg, a.bg), (Color::Indexed(1), Color::Indexed(2)));
    assert!(a.attrs.contains(Attrs::BOLD) && a.attrs.contains(Attrs::UNDERLINE));
    assert!(a.attrs.contains(Attrs::REVERSE));
    let b = cell(1);
    assert_eq!(
        (b.fg, b.bg, b.attrs),
        (Color::Default, Color::Default, Attrs::empty())
    );
    let c = cell(2);
    assert_eq!((c.fg, c.bg), (Color::Indexed(200), Color::Rgb(1, 2, 3)));
    let z = cell(3);
    assert_eq!((z.fg, z.bg), (Color::Default, Color::Default));
    let t = term(4, 1, "\x1b[95;105ma\x1b[38;5mb\x1b[38;2;300;1;1mc");
    assert_eq!(t.cell(0, 0).expect("cell").fg, Color::Indexed(13));
    assert_eq!(t.cell(0, 0).expect("cell").bg, Color::Indexed(13));
    assert_eq!(
        t.cell(2, 0).expect("cell").fg,
        Color::Indexed(13),
        "bad colours ignored"
    );
}

#[test]
fn palette_matches_xterm() {
    assert_eq!(Color::Indexed(16).rgb((9, 9, 9)), (0, 0, 0));
    assert_eq!(Color::Indexed(196).rgb((9, 9, 9)), (255, 0, 0));
    assert_eq!(Color::Indexed(231).rgb((9, 9, 9)), (255, 255, 255));
    assert_eq!(Color::Indexed(232).rgb((9, 9, 9)), (8, 8, 8));
    assert_eq!(Color::Indexed(255).rgb((9, 9, 9)), (238, 238, 238));
    assert_eq!(Color::Default.rgb((9, 9, 9)), (9, 9, 9));
    assert_eq!(Color::Indexed(3).brightened(), Color::Indexed(11));
}

#[test]
fn save_and_restore_the_cursor() {
    let mut t = term(10, 5, "\x1b[2;3H\x1b[31m\x1b7\x1b[5;5H\x1b[0m\x1b8x");
    assert_eq!(t.cursor(), (3, 1));
    assert_eq!(t.cell(2, 1).expect("cell").fg, Color::Indexed(1));
    t.feed(b"\x1b[4;4H\x1b[s\x1b[H\x1b[u");
    assert_eq!(t.cursor(), (3, 3));
}

#[test]
fn alternate_screen_keeps_the_main_one() {
    let mut t = term(10, 3, "main\x1b[2;2H");
    t.feed(b"\x1b[?1049h");
    assert!(t.alternate_screen());
    assert_eq!(text(&t, 0), "", "1049 clears the alternate screen");
    t.feed(b"\x1b[Halt\x1b[3;5H");
    t.feed(b"\x1b[?1049l");
    assert!(!t.alternate_screen());
    assert_eq!(text(&t, 0), "main");
    assert_eq!(
        t.cursor(),
        (1, 1),
        "1049l restores the cursor saved by 1049h"
    );
    // 47 switches without clearing; the alternate screen kept "alt".
    t.feed(b"\x1b[?47h");
    assert_eq!(text(&t, 0), "alt");
    t.feed(b"\x1b[?47l\x1b[?1047h");
    assert_eq!(text(&t, 0), "alt");
    t.feed(b"\x1b[?1047l\x1b[?47h");
    assert_eq!(text(&t, 0), "", "1047l cleared the alternate screen");
    t.feed(b"\x1b[?47l");
    assert_eq!(text(&t, 0), "main");
}

#[test]
fn cursor_visibility_and_key_modes() {
    let mut t = term(4, 2, "\x1b[?25l");
    assert!(!t.cursor_visible());
    t.feed(b"\x1b[?25h\x1b[?1h");
    assert!(t.cursor_visible());
    assert!(t.app_cursor_keys());
}

#[test]
fn tabs_stop_every_eight_and_can_be_set() {
    let mut t = term(30, 1, "\t");
    assert_eq!(t.cursor(), (8, 0));
    t.feed(b"\x1b[3I");
    assert_eq!(t.cursor(), (29, 0));
    t.feed(b"\x1b[Z");
    assert_eq!(t.cursor(), (24, 0));
    t.feed(b"\x1b[3g\x1b[1;5H\x1bH\x1b[1;1H\t");
    assert_eq!(t.cursor(), (4, 0));
    t.feed(b"\t");
    assert_eq!(t.cursor(), (29, 0));
}

#[test]
fn status_and_cursor_reports() {
    let mut t = term(80, 24, "\x1b[999;999H\x1b[6n\x1b[5n\x1b[c");
    assert_eq!(t.take_reply(), b"\x1b[24;80R\x1b[0n\x1b[?6c");
    assert!(t.take_reply().is_empty());
    for _ in 0..10_000 {
        t.feed(b"\x1b[6n");
    }
    assert!(t.take_reply().len() <= 1024, "the reply queue is bounded");
}

#[test]
fn utf8_and_replacement() {
    let mut t = term(12, 1, "");
    t.feed("é€😀".as_bytes());
    t.feed(&[0xff, b'a', 0xc3, b'b', 0xe2, 0x82]);
    t.feed(&[0xac, 0xc0, 0xaf, 0xed, 0xa0, 0x80]);
    let row: String = t.row(0).iter().map(|c| c.ch).collect();
    assert_eq!(row, "é€😀\u{fffd}a\u{fffd}b€\u{fffd}\u{fffd}\u{fffd} ");
}

#[test]
fn split_sequences_and_strings_are_handled() {
    let mut t = term(10, 2, "");
    for b in b"\x1b[2;5Hx\x1b]0;title\x07y\x1b]2;t\x1b\\z\x1bP1$r\x1b\\w" {
        t.feed(&[*b]);
    }
    assert_eq!(text(&t, 1), "    xyzw");
    assert!(t.idle());
}

#[test]
fn malformed_sequences_are_dropped() {
    let mut t = term(10, 2, "");
    // Too many parameters: the whole sequence goes, the text after it stays.
    let mut long = String::from("\x1b[");
    for _ in 0..100 {
        long.push_str("1;");
    }
    long.push_str("31mA");
    t.feed(long.as_bytes());
    assert_eq!(t.cell(0, 0).expect("cell").ch, 'A');
    assert_eq!(t.cell(0, 0).expect("cell").fg, Color::Default);
    // CAN aborts, a huge number saturates, an unknown final is ignored.
    t.feed(b"\x1b[3\x18B\x1b[99999999999999999999C\x1b[5~C");
    assert_eq!(text(&t, 0), "AB       C");
    // A private marker counts only first: `CSI 0 ? 25 l` is not DECTCEM.
    t.feed(b"\x1b[0?25l");
    assert!(t.cursor_visible());
    // Controls inside a sequence still act.
    t.feed(b"\x1b[2\rK");
    assert_eq!(
        text(&t, 0),
        "",
        "CR inside CSI 2K runs and the sequence completes"
    );
}

#[test]
fn reset_clears_everything() {
    let t = term(6, 2, "\x1b[31mab\x1b[?25l\x1b[1;1r\x1b[?1049h\x1bc");
    assert!(!t.alternate_screen() && t.cursor_visible());
    assert_eq!(text(&t, 0), "");
    assert_eq!(t.cursor(), (0, 0));
}

#[test]
fn dec_line_drawing() {
    let t = term(6, 1, "\x1b(0lqk\x1b(Bq\x0e\x0f");
    assert_eq!(text(&t, 0), "┌─┐q");
}

/// A xorshift generator: deterministic, so a failure can be replayed.
fn random_bytes(seed: u64, len: usize, alphabet: &[u8]) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if alphabet.is_empty() {
                state as u8
            } else {
                alphabet[(state % alphabet.len() as u64) as usize]
            }
        })
        .collect()
}

fn check_invariants(t: &mut Terminal) {
    let (cols, rows) = t.size();
    let (col, row) = t.cursor();
    assert!(
        col < cols && row < rows,
        "cursor {col},{row} outside {cols}x{rows}"
    );
    assert_eq!(t.row(rows - 1).len(), cols);
    let damage = t.take_damage();
    assert!(damage.scrolled < rows);
    for (r, span) in damage.spans {
        assert!(r < rows && span.end <= cols && !span.is_empty());
    }
    assert!(t.take_reply().len() <= 1024);
}

#[test]
fn random_bytes_never_panic() {
    // Raw bytes, and bytes biased towards escape-sequence syntax so deep states are reached.
    let biased =
        b"\x1b\x1b[[[;;;?0123456789hlmHJKLMPX@rsuSTdnc78DEM#(0\n\r\t\x08\x0e\x18\xc3\xe2\x9c";
    for seed in 1..300u64 {
        let mut t = Terminal::new(1 + (seed as usize % 37), 1 + (seed as usize % 11));
        let alphabet: &[u8] = if seed % 2 == 0 { &[] } else { biased };
        for chunk in random_bytes(seed, 4000, alphabet).chunks(97) {
            t.feed(chunk);
            check_invariants(&mut t);
        }
        // CAN ends whatever was half-read.
        t.feed(b"\x18");
        assert!(t.idle(), "CAN left the parser mid-sequence (seed {seed})");
    }
}

#[test]
fn overlong_sequences_are_consumed_whole() {
    use crate::parser::Action;
    let mut p = Parser::new();
    let mut seen = Vec::new();
    let mut input = Vec::from(&b"\x1b[?"[..]);
    input.extend(core::iter::repeat_n(b"12;", 50_000).flatten());
    input.extend_from_slice(b"hX\x1b[1;2m");
    for &b in &input {
        p.advance(b, &mut |a| {
            seen.push(match a {
                Action::Print(c) => alloc::format!("print {c}"),
                Action::Csi {
                    params, final_byte, ..
                } => {
                    alloc::format!("csi {params:?} {}", char::from(final_byte))
                }
                other => alloc::format!("{other:?}"),
            })
        });
    }
    assert_eq!(seen, ["print X", "csi [1, 2] m"]);
    assert!(p.is_ground());
}

/// Feeds a recorded session up to (not including) `marker`, or all of it.
fn replay(session: &[u8], marker: Option<&[u8]>) -> Terminal {
    let end = marker.map_or(session.len(), |m| {
        session
            .windows(m.len())
            .position(|w| w == m)
            .expect("marker in the recording")
    });
    let mut t = Terminal::new(80, 24);
    // Send in odd-sized pieces: sequences split across writes must not matter.
    for chunk in session[..end].chunks(61) {
        t.feed(chunk);
    }
    t
}

/// Recorded with `tests/sessions/record.py` on an 80x24 pty: busybox vi on a 60-line file
/// (`line N of the demo file`), keys `30j`, `dd`, `O`, `inserted<TAB>TAB é`, Esc, `G`, `:q!`.
const VI: &[u8] = include_bytes!("../tests/sessions/vi.raw");

#[test]
fn replays_busybox_vi() {
    // Just before `G` redraws the screen: lines 9 to 30, then the line opened with `O`.
    let t = replay(VI, Some(b"\x1b[1;6H49 of"));
    assert!(t.alternate_screen());
    for row in 0..22 {
        assert_eq!(
            text(&t, row),
            alloc::format!("line {} of the demo file", row + 9)
        );
    }
    // Debian's busybox vi has no Unicode support: it writes the two bytes of é separately,
    // with a cursor move between them, and a terminal shows each broken piece as U+FFFD.
    assert_eq!(text(&t, 22), "inserted        TAB \u{fffd}\u{fffd}");
    assert_eq!(text(&t, 23), "- /tmp/demo60.txt [Modified] 31/60 51%");
    assert_eq!(
        t.cursor(),
        (21, 22),
        "Esc steps back onto the last byte typed"
    );
    // After `G`: the end of the file in the top half, `~` below it.
    let t = replay(VI, Some(b"\x1b[24;1H\x1b[K:q!"));
    assert_eq!(text(&t, 0), "line 49 of the demo file");
    assert_eq!(text(&t, 11), "line 60 of the demo file");
    assert!((12..23).all(|r| text(&t, r) == "~"));
    assert_eq!(t.cursor(), (0, 11));
    // Quitting leaves the alternate screen: the (blank) main screen is back.
    let t = replay(VI, None);
    assert!(!t.alternate_screen());
    assert!((0..24).all(|r| text(&t, r).is_empty()));
    assert_eq!(t.cursor(), (0, 0));
}

/// busybox `top -d 1` in a PID namespace holding it and `sleep 30`, four frames, then `q`.
const TOP: &[u8] = include_bytes!("../tests/sessions/top.raw");

#[test]
fn replays_busybox_top() {
    let t = replay(TOP, None);
    assert!(text(&t, 0).starts_with("Mem: 1756700K used, 22927084K free"));
    assert!(text(&t, 1).starts_with("CPU:   0% usr"));
    assert_eq!(text(&t, 2), "Load average: 0.58 0.45 0.18 1/95 2");
    let header = "  PID  PPID USER     STAT   VSZ %VSZ %CPU COMMAND";
    assert_eq!(text(&t, 3), header);
    let reversed = |col: usize| t.cell(col, 3).expect("cell").attrs.contains(Attrs::REVERSE);
    assert!(
        (0..header.len()).all(reversed),
        "the header is in reverse video"
    );
    assert!(!reversed(header.len()), "SGR 0 ended it");
    assert_eq!(
        text(&t, 4),
        "    2     1 root     S     2920   0%   0% sleep 30"
    );
    assert_eq!(
        text(&t, 5),
        "    1     0 root     R     2268   0%   0% busybox top -d 1"
    );
    assert!(
        (6..24).all(|r| text(&t, r).is_empty()),
        "each frame clears the last"
    );
    assert_eq!(t.cursor(), (0, 6), "after the CR LF top writes on exit");
}

/// busybox less on the same 60-line file: space, `j`, `G`, `g`, `/line 4` Enter, `q`.
const LESS: &[u8] = include_bytes!("../tests/sessions/less.raw");

#[test]
fn replays_busybox_less() {
    let t = replay(LESS, None);
    assert_eq!(text(&t, 0), "line 4 of the demo file");
    let cell = |col| *t.cell(col, 0).expect("cell");
    assert!(
        (0..6).all(|c| cell(c).attrs.contains(Attrs::REVERSE)),
        "the match is marked"
    );
    assert!(!cell(6).attrs.contains(Attrs::REVERSE));
    for row in 0..23 {
        assert_eq!(
            text(&t, row),
            alloc::format!("line {} of the demo file", row + 4)
        );
    }
    assert_eq!(text(&t, 23), "");
}

#[test]
fn impossible_sizes_are_refused_not_panicked_on() {
    assert!(Terminal::try_new(usize::MAX, 2).is_none());
    assert!(Terminal::try_new(1 << 40, 1 << 20).is_none());
    let t = Terminal::try_new(0, 0).expect("a tiny terminal");
    assert_eq!(t.size(), (1, 1));
}

/// A renderer's copy of the screen, kept up to date only through [`Terminal::take_damage`]:
/// if the damage ever misses a change, the copy and the grid differ.
struct Shadow {
    cells: Vec<crate::Cell>,
    cols: usize,
}

impl Shadow {
    fn new(t: &Terminal) -> Shadow {
        let (cols, rows) = t.size();
        let stale = crate::Cell {
            ch: '\u{1}',
            ..crate::Cell::default()
        };
        Shadow {
            cells: alloc::vec![stale; cols * rows],
            cols,
        }
    }

    fn update(&mut self, t: &mut Terminal) {
        let damage = t.take_damage();
        let stale = crate::Cell {
            ch: '\u{1}',
            ..crate::Cell::default()
        };
        let moved = damage.scrolled * self.cols;
        self.cells.copy_within(moved.., 0);
        let len = self.cells.len();
        self.cells[len - moved..].fill(stale);
        for (row, cols) in damage.spans {
            for col in cols {
                self.cells[row * self.cols + col] = *t.cell(col, row).expect("damaged cell");
            }
        }
        let (_, rows) = t.size();
        for row in 0..rows {
            assert_eq!(
                &self.cells[row * self.cols..(row + 1) * self.cols],
                t.row(row),
                "row {row} changed without being reported damaged"
            );
        }
    }
}

#[test]
fn damage_reports_every_change() {
    let biased = b"\x1b\x1b[[[;;;?0123456789hlmHJKLMPX@rsuSTdbc78DEM#(\n\r\t\x08abc";
    for seed in 1..200u64 {
        let mut t = Terminal::new(1 + (seed as usize % 23), 1 + (seed as usize % 13));
        let mut shadow = Shadow::new(&t);
        for chunk in random_bytes(seed, 3000, biased).chunks(1 + seed as usize % 50) {
            t.feed(chunk);
            shadow.update(&mut t);
        }
    }
    for session in [VI, TOP, LESS, VI_ASKS] {
        let mut t = Terminal::new(80, 24);
        let mut shadow = Shadow::new(&t);
        for chunk in session.chunks(37) {
            t.feed(chunk);
            shadow.update(&mut t);
        }
    }
}

/// busybox vi on a pty that reports no size (100x30 terminal, `NO_WINSZ=1`): it moves to
/// ESC [ 999;999 H, asks ESC [ 6 n, and sizes its screen from the answer; then `:q`.
const VI_ASKS: &[u8] = include_bytes!("../tests/sessions/vi-ask.raw");

#[test]
fn answers_the_size_query_of_busybox_vi() {
    let ask = b"\x1b[6n";
    let at = VI_ASKS
        .windows(ask.len())
        .position(|w| w == ask)
        .expect("vi asked")
        + ask.len();
    let mut t = Terminal::new(100, 30);
    t.feed(&VI_ASKS[..at]);
    // What the recording terminal answered, and what vi drew its 30 rows from.
    assert_eq!(t.take_reply(), b"\x1b[30;100R");
    t.feed(&VI_ASKS[at..VI_ASKS.len() - b"\x1b[?1049l".len()]);
    for row in 0..29 {
        assert_eq!(
            text(&t, row),
            alloc::format!("line {} of the demo file", row + 1)
        );
    }
    assert_eq!(text(&t, 29), "");
    assert!(t.take_reply().is_empty());
}
