//! Loading the kernel: validate the ELF, place it physically contiguous, relocate it.
//!
//! All ELF logic is `bootcore::elf`; this module only allocates and picks the KASLR slide.

use alloc::string::String;

use bootcore::elf::{self, Executable, Segment};

use crate::{
    cpu::{self, Features},
    error::Error,
    mem::{Allocations, Kind, Region, pages_for},
};

/// The loaded, relocated kernel image.
pub struct Kernel<'f> {
    /// The validated ELF (borrowing the kernel file).
    pub exe: Executable<'f>,
    /// The image: `image_size` bytes at `phys_base`, mapped at `virt_base`.
    pub image: Region,
    /// Physical base of the image.
    pub phys_base: u64,
    /// Virtual base (`min_vaddr + slide`).
    pub virt_base: u64,
    /// Image size in bytes (page multiple).
    pub size: u64,
    /// Slide applied (0 unless relocatable).
    pub slide: u64,
    /// How many bytes of the image the request scan covers.
    pub scan_len: usize,
}

impl Kernel<'_> {
    /// Loadable segments (unslid addresses).
    pub fn segments(&self) -> &[Segment] {
        self.exe.segments()
    }

    /// Image offset of kernel virtual address `va` if `va..va+len` lies inside the image.
    pub fn offset_of(&self, va: u64, len: u64) -> Option<usize> {
        let off = va.checked_sub(self.virt_base)?;
        (off.checked_add(len)? <= self.size).then_some(off as usize)
    }
}

/// Validates and loads `file` (the kernel at `path`), with a random slide if `kaslr`.
pub fn load<'f>(
    file: &'f [u8],
    path: &str,
    kaslr: bool,
    features: &Features,
    allocs: &mut Allocations,
) -> Result<Kernel<'f>, Error> {
    let elf_err = |error| Error::Elf {
        path: String::from(path),
        error,
    };
    let exe = elf::parse(file).map_err(elf_err)?;
    let random = (kaslr && exe.is_relocatable()).then(|| random_u64(features));
    let slide = exe.slide_for(random).map_err(elf_err)?;
    let size = exe.image_size();
    let mut image = allocs.aligned(
        pages_for(size),
        exe.max_align(),
        Kind::ExecutableAndModules,
        "kernel image",
    )?;
    exe.load(&mut image.bytes_mut()[..size as usize], slide)
        .map_err(elf_err)?;
    let scan_len = usize::try_from(exe.scan_len()).map_err(|_| Error::Internal("scan length"))?;
    let virt_base = exe.min_vaddr().wrapping_add(slide);
    if kaslr && !exe.is_relocatable() {
        log::info!(
            "kaslr requested but the kernel is not relocatable; loading at its link address"
        );
    }
    Ok(Kernel {
        phys_base: image.base(),
        image,
        virt_base,
        size,
        slide,
        scan_len,
        exe,
    })
}

/// A random number for KASLR: RDRAND, or the TSC when the CPU has no RDRAND.
pub fn random_u64(features: &Features) -> u64 {
    cpu::rdrand(features).unwrap_or_else(|| {
        // Mix the TSC so that its slowly changing high bits do not dominate.
        let t = cpu::rdtsc();
        (t ^ (t >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ (t << 17)
    })
}
