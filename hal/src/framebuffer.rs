//! The linear framebuffer the loader set up, as an owned value with bounds-checked drawing.

use core::sync::atomic::{AtomicBool, Ordering};

/// Pixel layout of a framebuffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PixelFormat {
    /// Bits per pixel (Evergreen draws only 32-bpp framebuffers).
    pub bpp: u16,
    /// Red field shift and size in bits.
    pub red: (u8, u8),
    /// Green field shift and size in bits.
    pub green: (u8, u8),
    /// Blue field shift and size in bits.
    pub blue: (u8, u8),
}

/// The boot framebuffer. Only one value of this type ever exists (see [`take`]), so it owns
/// the pixel memory.
pub struct Framebuffer {
    base: *mut u32,
    width: usize,
    height: usize,
    /// Pitch in pixels (the loader gives bytes; Evergreen requires a multiple of 4).
    stride: usize,
    format: PixelFormat,
}

// SAFETY: the framebuffer memory is owned exclusively by this value (handed out once), so
// moving it to another CPU moves that ownership along with it.
unsafe impl Send for Framebuffer {}

static TAKEN: AtomicBool = AtomicBool::new(false);

/// Takes ownership of the first framebuffer, if the loader gave one in a format Evergreen can
/// draw (32 bpp RGB) at a place it can trust. Returns `None` on later calls.
///
/// The loader's description is checked before any pixel is written: the size must not
/// overflow, the address must be aligned and in the HHDM, and no byte of it may be memory
/// the memory map gives to anything else (usable, reclaimable, kernel or modules) — a wrong
/// answer then costs the screen, not memory safety.
pub fn take(boot: &crate::boot::Boot) -> Option<Framebuffer> {
    let response = crate::boot::framebuffer_response()?;
    let fb = response.framebuffers().next()?;
    if fb.bpp() != 32 || fb.pitch() % 4 != 0 || fb.pitch() / 4 < fb.width() {
        return None;
    }
    let bytes = fb.pitch().checked_mul(fb.height())?;
    let address = fb.addr() as u64;
    let hhdm = boot.responses().hhdm?.offset();
    let phys = address.checked_sub(hhdm)?;
    let end = phys.checked_add(bytes)?;
    if !address.is_multiple_of(4) || bytes == 0 {
        return None;
    }
    let map = boot.responses().memory_map?;
    let clash = map.entries().iter().any(|e| {
        let other = e.entry_type != crate::boot::MemoryType::FRAMEBUFFER
            && e.entry_type != crate::boot::MemoryType::RESERVED;
        other && e.base < end && phys < e.base.saturating_add(e.length)
    });
    if clash {
        log::warn!("framebuffer: {phys:#x}..{end:#x} overlaps memory given to something else");
        return None;
    }
    if TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    Some(Framebuffer {
        base: fb.addr().cast(),
        width: usize::try_from(fb.width()).ok()?,
        height: usize::try_from(fb.height()).ok()?,
        stride: usize::try_from(fb.pitch() / 4).ok()?,
        format: PixelFormat {
            bpp: fb.bpp(),
            red: (fb.red_mask_shift(), fb.red_mask_size()),
            green: (fb.green_mask_shift(), fb.green_mask_size()),
            blue: (fb.blue_mask_shift(), fb.blue_mask_size()),
        },
    })
}

impl Framebuffer {
    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Pixel layout.
    pub fn format(&self) -> PixelFormat {
        self.format
    }

    /// The address of the first pixel (for diagnostics).
    pub fn address(&self) -> u64 {
        self.base as u64
    }

    /// Encodes an 8-bit-per-channel colour in this framebuffer's pixel format.
    pub fn encode(&self, r: u8, g: u8, b: u8) -> u32 {
        let field = |value: u8, (shift, size): (u8, u8)| {
            let v = u32::from(value) >> 8u32.saturating_sub(u32::from(size));
            v.checked_shl(u32::from(shift)).unwrap_or(0)
        };
        field(r, self.format.red) | field(g, self.format.green) | field(b, self.format.blue)
    }

    /// Sets one pixel; coordinates outside the screen are ignored.
    pub fn put(&mut self, x: usize, y: usize, pixel: u32) {
        if x < self.width && y < self.height {
            // SAFETY: (x, y) is inside the visible area, which the loader mapped writable;
            // `y * stride + x` is therefore inside the framebuffer.
            unsafe { self.base.add(y * self.stride + x).write_volatile(pixel) };
        }
    }

    /// Reads one pixel back (`None` outside the screen).
    pub fn get(&self, x: usize, y: usize) -> Option<u32> {
        (x < self.width && y < self.height).then(|| {
            // SAFETY: as for `put`.
            unsafe { self.base.add(y * self.stride + x).read_volatile() }
        })
    }

    /// Fills a rectangle, clipped to the screen.
    pub fn fill(&mut self, x: usize, y: usize, w: usize, h: usize, pixel: u32) {
        let x_end = x.saturating_add(w).min(self.width);
        let y_end = y.saturating_add(h).min(self.height);
        for row in y.min(y_end)..y_end {
            for col in x.min(x_end)..x_end {
                // SAFETY: clipped to the visible area above.
                unsafe { self.base.add(row * self.stride + col).write_volatile(pixel) };
            }
        }
    }

    /// Moves rows `[from, height)` up to start at row `to` (`to < from`), for scrolling.
    pub fn move_rows_up(&mut self, from: usize, to: usize) {
        if to >= from || from >= self.height {
            return;
        }
        let count = (self.height - from) * self.stride;
        // SAFETY: both ranges lie inside the framebuffer (rows below `height`); `copy`
        // handles the overlap.
        unsafe {
            core::ptr::copy(
                self.base.add(from * self.stride),
                self.base.add(to * self.stride),
                count,
            )
        };
    }
}
