//! The screen case: after the normal boot, a QMP screendump (PNG) must show the kernel's
//! console: the framebuffer's size, mostly the console background, text on the first line
//! (where the banner `Evergreen ... booting` is drawn) and nothing near the bottom, which the
//! boot log does not reach. The picture is kept as `target/test-logs/screen.png`.

use std::{fs, io::Cursor, path::Path, time::Instant};

use anyhow::{Context, Result, bail};

use super::{Suite, remaining, wait_for_boot_complete, with_qemu};
use crate::{qemu::RunOptions, qmp::Qmp};

/// An RGB colour.
pub(super) type Rgb = [u8; 3];

/// The console's background colour (`DEFAULT_BG` in `kernel/src/console.rs`).
pub(super) const CONSOLE_BACKGROUND: Rgb = [0x10, 0x1c, 0x14];

/// The band the first text line occupies: the console's top margin (8 px) and one 16 px line
/// of its font (`kernel/src/console.rs`).
const FIRST_LINE_PX: u32 = 24;
/// At least this share of the picture must be background.
const MIN_BACKGROUND: f64 = 0.70;
/// The share of the first line's left half that text must cover: at least this...
const MIN_TEXT: f64 = 0.02;
/// ...and at most this (more would be a filled block, not text).
const MAX_TEXT: f64 = 0.60;
/// The bottom 1/`BOTTOM_PART` of the screen must be pure background: the boot log fills
/// about 35 of the console's rows.
const BOTTOM_PART: u32 = 8;

/// Boots normally, waits for `boot complete`, takes a screendump and checks it.
pub(super) fn run(ctx: &Suite, opts: &RunOptions, log: &Path) -> Result<String> {
    let deadline = Instant::now() + ctx.timeout;
    let sockets = tempfile::tempdir().context("creating a directory for the QMP socket")?;
    let socket = sockets.path().join("qmp.sock");
    let png =
        std::path::absolute(log.with_extension("png")).context("resolving the screendump path")?;
    if png.exists() {
        fs::remove_file(&png).with_context(|| format!("removing the old {}", png.display()))?;
    }
    let mut opts = opts.clone();
    opts.qmp = Some(socket.clone());
    let mut lines = Vec::new();
    with_qemu(ctx, &opts, |child| {
        wait_for_boot_complete(child, log, deadline, |line| lines.push(line.to_owned()))?;
        Qmp::connect(&socket, remaining(deadline))?.screendump(&png)?;
        Ok(String::new())
    })?;
    let (width, height) = framebuffer_size(&lines).context(
        "expected a `framebuffer: <W>x<H>, ...` line in the boot summary to know the screen size",
    )?;
    let bytes = fs::read(&png).with_context(|| format!("reading {}", png.display()))?;
    let picture = Picture::decode(&bytes).with_context(|| format!("decoding {}", png.display()))?;
    let note = check_console(&picture, (width, height)).map_err(anyhow::Error::msg)?;
    Ok(format!("{note}; picture in {}", png.display()))
}

/// The framebuffer size in the kernel's boot summary line `framebuffer: 1280x800, 32 bpp,
/// console 180x49` (the last one, if there are several).
pub(super) fn framebuffer_size(lines: &[String]) -> Option<(u32, u32)> {
    lines.iter().rev().find_map(|line| {
        let (_, rest) = line.split_once("framebuffer: ")?;
        let size = rest.split([',', ' ']).next()?;
        let (w, h) = size.split_once('x')?;
        Some((w.parse().ok()?, h.parse().ok()?))
    })
}

/// A decoded picture, 8-bit RGB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Picture {
    /// Width in pixels.
    pub(super) width: u32,
    /// Height in pixels.
    pub(super) height: u32,
    /// `width * height` pixels, row by row.
    pub(super) pixels: Vec<Rgb>,
}

impl Picture {
    /// Decodes a PNG of any colour type into RGB (alpha is dropped, grey is widened).
    pub(super) fn decode(png_bytes: &[u8]) -> Result<Self> {
        let mut decoder = png::Decoder::new(Cursor::new(png_bytes));
        decoder.set_transformations(png::Transformations::normalize_to_color8());
        let mut reader = decoder.read_info().context("reading the PNG header")?;
        let size = reader
            .output_buffer_size()
            .context("the PNG is too large to decode")?;
        let mut buffer = vec![0; size];
        let info = reader.next_frame(&mut buffer).context("decoding the PNG")?;
        let channels = match info.color_type {
            png::ColorType::Grayscale => 1,
            png::ColorType::GrayscaleAlpha => 2,
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            png::ColorType::Indexed => bail!("palette PNG not expanded to RGB"),
        };
        let row_bytes = info.width as usize * channels;
        let mut pixels = Vec::with_capacity(info.width as usize * info.height as usize);
        for row in buffer[..info.buffer_size()].chunks(info.line_size) {
            for pixel in row[..row_bytes].chunks(channels) {
                pixels.push(match channels {
                    1 | 2 => [pixel[0]; 3],
                    _ => [pixel[0], pixel[1], pixel[2]],
                });
            }
        }
        Ok(Self {
            width: info.width,
            height: info.height,
            pixels,
        })
    }

    /// The pixel at (`x`, `y`); `None` outside the picture.
    pub(super) fn get(&self, x: u32, y: u32) -> Option<Rgb> {
        if x >= self.width || y >= self.height {
            return None;
        }
        self.pixels
            .get(y as usize * self.width as usize + x as usize)
            .copied()
    }

    /// The pixels of the rectangle `x0..x1` × `y0..y1` (clipped to the picture) that are not
    /// `colour`, and the first of them (in row order).
    fn count_other(&self, (x0, x1): (u32, u32), (y0, y1): (u32, u32), colour: Rgb) -> Others {
        let mut others = Others::default();
        for y in y0..y1.min(self.height) {
            for x in x0..x1.min(self.width) {
                if self.get(x, y).is_some_and(|p| p != colour) {
                    others.count += 1;
                    others.first.get_or_insert((x, y));
                }
            }
        }
        others
    }
}

/// Pixels of another colour in a rectangle.
#[derive(Clone, Copy, Debug, Default)]
struct Others {
    count: u64,
    first: Option<(u32, u32)>,
}

/// Checks a screendump of the console after boot: its size is `expected`, most pixels are
/// [`CONSOLE_BACKGROUND`], the left half of the first text line holds a plausible amount of
/// text, and the bottom of the screen is background only.
pub(super) fn check_console(picture: &Picture, expected: (u32, u32)) -> Result<String, String> {
    let (width, height) = (picture.width, picture.height);
    if (width, height) != expected {
        return Err(format!(
            "expected a {}x{} picture (the framebuffer the kernel reported), got {width}x{height}",
            expected.0, expected.1
        ));
    }
    let total = u64::from(width) * u64::from(height);
    if total == 0 {
        return Err("the picture is empty".into());
    }
    let background = picture
        .pixels
        .iter()
        .filter(|&&p| p == CONSOLE_BACKGROUND)
        .count() as u64;
    let share = background as f64 / total as f64;
    if share < MIN_BACKGROUND {
        return Err(format!(
            "expected at least {:.0}% of the pixels in the console background {}, got {:.1}% \
             (the most common colour is {})",
            MIN_BACKGROUND * 100.0,
            hex(CONSOLE_BACKGROUND),
            share * 100.0,
            hex(most_common(&picture.pixels))
        ));
    }
    let band = (u64::from(width / 2)) * u64::from(FIRST_LINE_PX.min(height));
    let text = picture
        .count_other((0, width / 2), (0, FIRST_LINE_PX), CONSOLE_BACKGROUND)
        .count;
    let text_share = text as f64 / band.max(1) as f64;
    if !(MIN_TEXT..=MAX_TEXT).contains(&text_share) {
        return Err(format!(
            "expected the banner on the first text line: {:.0}%..{:.0}% non-background pixels \
             in the top {FIRST_LINE_PX} px of the left half, got {text} ({:.1}%)",
            MIN_TEXT * 100.0,
            MAX_TEXT * 100.0,
            text_share * 100.0
        ));
    }
    let bottom = height - height / BOTTOM_PART;
    let stray = picture.count_other((0, width), (bottom, height), CONSOLE_BACKGROUND);
    if let Some((x, y)) = stray.first {
        return Err(format!(
            "expected the bottom {} px to be background only, found {} other pixels (the first \
             at {x},{y}: {})",
            height - bottom,
            stray.count,
            picture.get(x, y).map(hex).unwrap_or_default()
        ));
    }
    Ok(format!(
        ": {width}x{height}, {:.1}% background, {text} text pixels on the banner line",
        share * 100.0
    ))
}

/// The most frequent colour (ties go to the first seen); black for no pixels.
fn most_common(pixels: &[Rgb]) -> Rgb {
    let mut counts: std::collections::HashMap<Rgb, usize> = std::collections::HashMap::new();
    let mut best = ([0; 3], 0);
    for &p in pixels {
        let n = counts.entry(p).or_default();
        *n += 1;
        if *n > best.1 {
            best = (p, *n);
        }
    }
    best.0
}

fn hex([r, g, b]: Rgb) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FG: Rgb = [0xd8, 0xdc, 0xd8];

    /// A console-like picture: background, a "banner" of glyph-ish blocks on the first line.
    fn console(width: u32, height: u32) -> Picture {
        let mut picture = Picture {
            width,
            height,
            pixels: vec![CONSOLE_BACKGROUND; (width * height) as usize],
        };
        // 40 "glyphs" 7 px apart from x = 8, each a 3x10 stroke from y = 11.
        for glyph in 0..40 {
            for y in 11..21 {
                for x in 0..3 {
                    picture.set(8 + glyph * 7 + x, y, FG);
                }
            }
        }
        picture
    }

    impl Picture {
        fn set(&mut self, x: u32, y: u32, colour: Rgb) {
            let i = (y * self.width + x) as usize;
            self.pixels[i] = colour;
        }
    }

    fn encode(width: u32, height: u32, colour: png::ColorType, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(colour);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().expect("header");
        writer.write_image_data(data).expect("data");
        writer.finish().expect("finish");
        out
    }

    #[test]
    fn decodes_rgb_rgba_and_grey() {
        let rgb = encode(2, 1, png::ColorType::Rgb, &[1, 2, 3, 4, 5, 6]);
        let picture = Picture::decode(&rgb).expect("rgb");
        assert_eq!((picture.width, picture.height), (2, 1));
        assert_eq!(picture.pixels, [[1, 2, 3], [4, 5, 6]]);
        let rgba = encode(1, 2, png::ColorType::Rgba, &[1, 2, 3, 255, 7, 8, 9, 0]);
        assert_eq!(
            Picture::decode(&rgba).expect("rgba").pixels,
            [[1, 2, 3], [7, 8, 9]]
        );
        let grey = encode(2, 2, png::ColorType::Grayscale, &[0, 50, 100, 255]);
        let picture = Picture::decode(&grey).expect("grey");
        assert_eq!(picture.get(1, 1), Some([255; 3]));
        assert_eq!(picture.get(2, 0), None);
        assert!(Picture::decode(b"not a png").is_err());
        assert!(Picture::decode(&rgb[..rgb.len() / 2]).is_err(), "truncated");
    }

    #[test]
    fn a_console_screen_passes() {
        let picture = console(640, 400);
        let note = check_console(&picture, (640, 400)).expect("a good screen");
        assert!(note.contains("640x400"), "{note}");
        // Through PNG and back, as QEMU's screendump arrives.
        let data: Vec<u8> = picture.pixels.iter().flatten().copied().collect();
        let decoded = Picture::decode(&encode(640, 400, png::ColorType::Rgb, &data)).expect("png");
        assert_eq!(decoded, picture);
    }

    #[test]
    fn a_wrong_size_fails() {
        let err = check_console(&console(640, 400), (1280, 800)).expect_err("size");
        assert!(err.contains("1280x800") && err.contains("640x400"), "{err}");
    }

    #[test]
    fn a_foreign_background_fails() {
        let mut picture = console(640, 400);
        for p in &mut picture.pixels {
            if *p == CONSOLE_BACKGROUND {
                *p = [0, 0, 0];
            }
        }
        let err = check_console(&picture, (640, 400)).expect_err("black screen");
        assert!(err.contains("#101c14") && err.contains("#000000"), "{err}");
    }

    #[test]
    fn an_empty_first_line_fails() {
        let picture = Picture {
            width: 640,
            height: 400,
            pixels: vec![CONSOLE_BACKGROUND; 640 * 400],
        };
        let err = check_console(&picture, (640, 400)).expect_err("no banner");
        assert!(err.contains("banner") && err.contains("got 0"), "{err}");
        // A solid bar is not text either.
        let mut bar = picture.clone();
        for y in 0..FIRST_LINE_PX {
            for x in 0..320 {
                bar.set(x, y, FG);
            }
        }
        assert!(
            check_console(&bar, (640, 400))
                .expect_err("bar")
                .contains("banner")
        );
    }

    #[test]
    fn text_at_the_bottom_fails() {
        let mut picture = console(640, 400);
        picture.set(100, 390, FG);
        let err = check_console(&picture, (640, 400)).expect_err("stray pixel");
        assert!(
            err.contains("100,390") && err.contains("bottom 50 px"),
            "{err}"
        );
    }

    #[test]
    fn reads_the_framebuffer_line() {
        let lines: Vec<String> = [
            "loader: framebuffer 1280x800 32 bpp at 0xc0000000",
            "[    0.000000 0] [INFO ] framebuffer: 1024x768, 32 bpp, console 145x47",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(framebuffer_size(&lines), Some((1024, 768)));
        assert_eq!(framebuffer_size(&lines[..1]), None);
        let none = ["[ 0.000000 0] [INFO ] framebuffer: none".to_owned()];
        assert_eq!(framebuffer_size(&none), None);
    }
}
