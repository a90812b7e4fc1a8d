//! Evergreen's Limine-protocol UEFI loader.
#![no_std]
#![no_main]

use uefi::prelude::*;

#[entry]
fn main() -> Status {
    Status::SUCCESS
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
