//! Evergreen's hardware abstraction layer.
//!
//! This is the only kernel-side crate allowed to use `unsafe`. Everything that touches the
//! machine directly — the Limine boot requests, the entry point, port I/O, control registers,
//! page-table walks, the framebuffer — lives here behind safe interfaces, so that `kernel/`
//! can be `#![deny(unsafe_code)]` (the framekernel idea, see `docs/STYLE.md`).
#![no_std]
#![feature(abi_x86_interrupt)]

extern crate alloc;

pub mod acpi;
pub mod apic;
pub mod backtrace;
pub mod boot;
pub mod boundary;
pub mod cpu;
pub mod entry;
pub mod framebuffer;
pub mod gdt;
pub mod image;
mod init;
pub mod ioapic;
pub mod ktest;
pub mod mm;
pub(crate) mod mm_hooks;
pub mod paging;
pub mod pci;
pub mod percpu;
pub mod pic;
pub mod port;
pub mod power;
pub mod ps2;
pub mod qemu;
pub mod rtc;
pub mod serial;
pub mod smp;
pub mod sync;
pub mod thread;
pub mod time;
pub mod trap;
pub mod user;
pub mod usermode;
pub mod virtio;
pub mod virtio_net;
pub mod watchdog;

pub use init::{Apic, InitError, Machine, init};
