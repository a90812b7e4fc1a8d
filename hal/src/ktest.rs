//! The registry of in-kernel tests: every test puts a [`TestCase`] into one linker section,
//! and [`cases`] reads them all back, so a test is registered where it is written and cannot
//! be left out of a list.
//!
//! A test is registered with `#[ktest("name")]` (the `ktest-macros` crate) or, written out,
//! with [`kernel_test!`](crate::kernel_test). Either places a `static TestCase` in the
//! section [`SECTION`]; `kernel/linker.ld` collects that section between the symbols
//! `__ktest_cases_start` and `__ktest_cases_end`, with `KEEP` so that `--gc-sections` cannot
//! drop a test nothing else refers to, and in the read-only segment.
//!
//! The order of the slice is the linker's (it follows codegen units), so the kernel sorts it
//! before running anything.

use alloc::string::String;
use core::mem::{align_of, size_of};

/// A test's outcome: `Err` carries the reason it failed.
pub type TestResult = Result<(), String>;

/// One registered in-kernel test.
#[derive(Debug)]
pub struct TestCase {
    /// The name it is reported and selected by (`test=kernel:FILTER` matches substrings).
    pub name: &'static str,
    /// The test itself.
    pub run: fn() -> TestResult,
}

/// The linker section that holds every [`TestCase`], and nothing else.
///
/// Only [`kernel_test!`](crate::kernel_test) may put data there: [`cases`] reads the whole
/// section as `TestCase`s.
pub const SECTION: &str = ".ktest_cases";

unsafe extern "C" {
    // Bytes, as in `image.rs`: the symbols mark places (an empty section has no `TestCase`
    // behind them), and only `cases` gives the bytes between them a type.
    static __ktest_cases_start: u8;
    static __ktest_cases_end: u8;
}

/// Every registered test, in link order.
pub fn cases() -> &'static [TestCase] {
    // Only addresses are taken here; the slice below is what reads through them.
    let start = (&raw const __ktest_cases_start).cast::<TestCase>();
    let end = (&raw const __ktest_cases_end).cast::<TestCase>();
    let bytes = (end as usize)
        .checked_sub(start as usize)
        .expect("kernel/linker.ld puts __ktest_cases_end after __ktest_cases_start");
    assert!(
        bytes.is_multiple_of(size_of::<TestCase>()) && start.is_aligned(),
        "the {SECTION} section ({bytes} bytes at {start:p}) is not an array of TestCase \
         ({} bytes, aligned to {}): something other than kernel_test! wrote into it",
        size_of::<TestCase>(),
        align_of::<TestCase>()
    );
    // SAFETY: `kernel/linker.ld` defines the two symbols around the output section that holds
    // exactly the input sections named `SECTION`, and only `kernel_test!` emits those: each
    // is one immutable `static TestCase`, valid for the whole run and never written (the
    // section is in the read-only segment). The output section starts aligned to its largest
    // input alignment, which is `align_of::<TestCase>()` (checked above), and every input is
    // `size_of::<TestCase>()` bytes, a multiple of that alignment, so the linker places them
    // back to back without padding: `bytes / size_of` initialised `TestCase`s start at
    // `start`. An empty section gives an empty slice at an aligned, non-null address.
    unsafe { core::slice::from_raw_parts(start, bytes / size_of::<TestCase>()) }
}

/// Registers an in-kernel test: `hal::kernel_test!("mm-map-unmap", map_unmap);` next to
/// `fn map_unmap() -> TestResult`. `#[ktest("mm-map-unmap")]` on the function expands to this.
///
/// The name is what the kernel reports and what `test=kernel:FILTER` selects by; the kernel
/// refuses to run a registry with two tests of one name.
#[macro_export]
macro_rules! kernel_test {
    ($name:literal, $run:path) => {
        const _: () = {
            // The section holds only `TestCase`s: `hal::ktest::cases` relies on it.
            #[used]
            #[unsafe(link_section = ".ktest_cases")]
            static CASE: $crate::ktest::TestCase = $crate::ktest::TestCase {
                name: $name,
                run: $run,
            };
        };
    };
}
