//! Evergreen's host tool: builds the kernel and the loader, writes a bootable GPT disk image
//! and runs it in QEMU, interactively or as the system-test suite.
//!
//! The binary (`cargo run -- --help`) is a thin shell over these modules, which are a library
//! so that their unit tests run with `cargo test -p runner`.

/// Prints a progress message to stderr, prefixed with `runner: `.
#[macro_export]
macro_rules! status {
    ($($arg:tt)*) => {
        eprintln!("runner: {}", format_args!($($arg)*))
    };
}

pub mod bench;
pub mod build;
pub mod cli;
pub mod config;
pub mod exec;
pub mod image;
pub mod initramfs;
pub mod inspect;
pub mod interrupt;
pub mod iso;
pub mod payload;
pub mod qemu;
pub mod qmp;
pub mod release;
pub mod rootfs;
pub mod systest;
pub mod testdata;
pub mod watch;
