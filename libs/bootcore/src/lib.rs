//! Limine boot protocol logic that needs no firmware: config parsing, ELF loading, request
//! scanning, memory-map conversion and page-table construction. Host-tested.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
