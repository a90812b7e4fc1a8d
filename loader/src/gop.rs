//! The framebuffer, from the Graphics Output Protocol: mode, pixel layout, mode list, EDID.

use alloc::vec::Vec;

use uefi::{
    boot,
    proto::console::gop::{EdidDiscovered, GraphicsOutput, ModeInfo, PixelFormat},
};

use crate::firmware;

/// A pixel layout as the Limine protocol describes it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pixels {
    /// Bits per pixel.
    pub bpp: u16,
    /// Red mask size and shift, green, blue.
    pub masks: [u8; 6],
}

/// One video mode of the mode list.
#[derive(Clone, Copy, Debug)]
pub struct VideoMode {
    /// Bytes per scan line.
    pub pitch: u64,
    /// Width in pixels.
    pub width: u64,
    /// Height in pixels.
    pub height: u64,
    /// Pixel layout.
    pub pixels: Pixels,
}

/// The active framebuffer.
#[derive(Debug)]
pub struct Framebuffer {
    /// Physical base address.
    pub base: u64,
    /// The current mode.
    pub mode: VideoMode,
    /// Every mode with a linear framebuffer.
    pub modes: Vec<VideoMode>,
    /// EDID bytes from EdidDiscovered, if the firmware has any.
    pub edid: Option<Vec<u8>>,
}

/// Finds the GOP, switches to `resolution` (width, height, optional bpp) if one is asked for
/// and available, and describes the framebuffer. `None` without a linear framebuffer.
pub fn framebuffer(resolution: Option<(u64, u64, Option<u16>)>) -> Option<Framebuffer> {
    let handle = boot::get_handle_for_protocol::<GraphicsOutput>().ok()?;
    let mut gop = firmware::shared_protocol::<GraphicsOutput>(handle).ok()?;
    if let Some((w, h, bpp)) = resolution {
        let wanted = gop.modes().find(|m| {
            let Some(v) = video_mode(m.info()) else {
                return false;
            };
            v.width == w && v.height == h && bpp.is_none_or(|b| b == v.pixels.bpp)
        });
        match wanted {
            Some(mode) => {
                if gop.set_mode(&mode).is_err() {
                    log::warn!("could not switch to {w}x{h}; keeping the current mode");
                }
            }
            None => {
                log::warn!("resolution {w}x{h} not offered by the GOP; keeping the current mode")
            }
        }
    }
    let mode = video_mode(&gop.current_mode_info())?;
    let modes = gop.modes().filter_map(|m| video_mode(m.info())).collect();
    let mut fb = gop.frame_buffer();
    let base = fb.as_mut_ptr() as u64;
    let edid = firmware::shared_protocol::<EdidDiscovered>(handle)
        .ok()
        .and_then(|e| e.edid().map(<[u8]>::to_vec))
        .filter(|e| !e.is_empty());
    Some(Framebuffer {
        base,
        mode,
        modes,
        edid,
    })
}

fn video_mode(info: &ModeInfo) -> Option<VideoMode> {
    let pixels = match info.pixel_format() {
        PixelFormat::Rgb => Pixels {
            bpp: 32,
            masks: [8, 0, 8, 8, 8, 16],
        },
        PixelFormat::Bgr => Pixels {
            bpp: 32,
            masks: [8, 16, 8, 8, 8, 0],
        },
        PixelFormat::Bitmask => {
            let m = info.pixel_bitmask()?;
            let all = m.red | m.green | m.blue | m.reserved;
            let bpp = (32 - all.leading_zeros()).next_multiple_of(8) as u16;
            let (rs, rh) = mask_size_shift(m.red);
            let (gs, gh) = mask_size_shift(m.green);
            let (bs, bh) = mask_size_shift(m.blue);
            Pixels {
                bpp,
                masks: [rs, rh, gs, gh, bs, bh],
            }
        }
        PixelFormat::BltOnly => return None,
    };
    let (width, height) = info.resolution();
    Some(VideoMode {
        pitch: info.stride() as u64 * u64::from(pixels.bpp / 8),
        width: width as u64,
        height: height as u64,
        pixels,
    })
}

/// (size, shift) of a contiguous bit mask.
fn mask_size_shift(mask: u32) -> (u8, u8) {
    if mask == 0 {
        return (0, 0);
    }
    let shift = mask.trailing_zeros();
    ((mask >> shift).trailing_ones() as u8, shift as u8)
}
