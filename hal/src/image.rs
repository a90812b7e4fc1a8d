//! Where the linker put the kernel's own segments (symbols from `kernel/linker.ld`).

use core::ops::Range;

unsafe extern "C" {
    static __kernel_start: u8;
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __data_start: u8;
    static __data_end: u8;
    static __kernel_end: u8;
}

/// The kernel image's sections, as virtual address ranges.
#[derive(Clone, Debug)]
pub struct Layout {
    /// The whole image, from the link base to the end of `.bss`.
    pub image: Range<u64>,
    /// Code (read, execute).
    pub text: Range<u64>,
    /// Read-only data.
    pub rodata: Range<u64>,
    /// Writable data and `.bss`.
    pub data: Range<u64>,
}

/// The kernel's layout in virtual memory.
pub fn layout() -> Layout {
    // Only the symbols' addresses are taken (the linker script defines every one of them);
    // nothing is read through them.
    Layout {
        image: (&raw const __kernel_start) as u64..(&raw const __kernel_end) as u64,
        text: (&raw const __text_start) as u64..(&raw const __text_end) as u64,
        rodata: (&raw const __rodata_start) as u64..(&raw const __rodata_end) as u64,
        data: (&raw const __data_start) as u64..(&raw const __data_end) as u64,
    }
}
