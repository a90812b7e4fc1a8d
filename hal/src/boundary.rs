//! The boundary's compile-time checks: misuses of hal that must not compile in a crate that
//! uses it the way the kernel does. Each example below is a doctest marked `compile_fail`
//! with the error code the misuse must produce, so it fails the test if the misuse ever
//! compiles again — or if it stops compiling for some other reason. `cargo run -- test` runs
//! them (`cargo test -p hal --doc`); `hal/README.md` lists the holes they guard.
//!
//! The right way compiles — responses are read while the token lives, then reclaim takes it:
//!
//! ```no_run
//! fn main_like(boot: hal::boot::Boot) {
//!     let entries = boot.responses().memory_map.map_or(0, |m| m.entries().len());
//!     let _ = hal::mm::reclaim_bootloader_memory(boot);
//!     let _ = entries;
//! }
//! ```
//!
//! A response kept past reclaim does not (hole 2a):
//!
//! ```compile_fail,E0505
//! fn main_like(boot: hal::boot::Boot) {
//!     let responses = boot.responses();
//!     let _ = hal::mm::reclaim_bootloader_memory(boot);
//!     let _ = responses.memory_map;
//! }
//! ```
//!
//! Nor does a second token, made or copied (2a):
//!
//! ```compile_fail,E0451
//! let _forged = hal::boot::Boot { _private: () };
//! ```
//!
//! ```compile_fail,E0382
//! fn main_like(boot: hal::boot::Boot) {
//!     let _ = hal::mm::reclaim_bootloader_memory(boot);
//!     let _ = boot.responses();
//! }
//! ```
//!
//! Nor the framebuffer without the token (2c):
//!
//! ```compile_fail,E0061
//! let _ = hal::framebuffer::take();
//! ```
//!
//! An interrupt handler cannot rewrite the interrupted context (hole 1):
//!
//! ```compile_fail,E0594
//! fn handler(frame: &hal::trap::TrapFrame) {
//!     frame.rip = 0;
//! }
//! ```
//!
//! ```compile_fail,E0308
//! fn handler(_: &mut hal::trap::TrapFrame) {}
//! let _ = hal::trap::register(40, handler);
//! ```
//!
//! The hooks hal's safety rests on are hal's (hole 3a):
//!
//! ```compile_fail,E0603
//! hal::mm::set_tlb_shootdown(|_, _| true);
//! ```
//!
//! ```compile_fail,E0603
//! hal::mm_hooks::set_ap_start(|| {});
//! ```
//!
//! A CPU's index is hal's to give (hole 4):
//!
//! ```compile_fail,E0603
//! hal::gdt::init_this_cpu(1);
//! ```
//!
//! ```compile_fail,E0603
//! hal::percpu::init_this_cpu(1, 1);
//! ```
//!
//! This CPU's instance of a CPU-local variable is reached only under a guard that pins the
//! task, and only for as long as the guard lives (hole 6):
//!
//! ```no_run
//! use core::sync::atomic::{AtomicU64, Ordering};
//! hal::cpu_local! { static COUNT: AtomicU64 = AtomicU64::new(0); }
//! let pinned = hal::percpu::PreemptGuard::new();
//! COUNT.get(&pinned).fetch_add(1, Ordering::Relaxed);
//! let _ = COUNT.for_cpu(1).map(|c| c.load(Ordering::Relaxed));
//! ```
//!
//! ```compile_fail,E0597
//! use core::sync::atomic::AtomicU64;
//! hal::cpu_local! { static COUNT: AtomicU64 = AtomicU64::new(0); }
//! let mine = {
//!     let pinned = hal::percpu::PreemptGuard::new();
//!     COUNT.get(&pinned)
//! };
//! ```
//!
//! ```compile_fail,E0505
//! use core::sync::atomic::{AtomicU64, Ordering};
//! hal::cpu_local! { static COUNT: AtomicU64 = AtomicU64::new(0); }
//! let pinned = hal::percpu::PreemptGuard::new();
//! let mine = COUNT.get(&pinned);
//! drop(pinned);
//! mine.load(Ordering::Relaxed);
//! ```
//!
//! A guard stays on the CPU that took it, and no one but hal makes one:
//!
//! ```compile_fail,E0277
//! fn to_another_task<T: Send>(_: T) {}
//! to_another_task(hal::percpu::PreemptGuard::new());
//! ```
//!
//! ```compile_fail,E0277
//! struct Forged;
//! impl hal::percpu::Pinned for Forged {
//!     fn cpu(&self) -> usize {
//!         0
//!     }
//! }
//! ```
//!
//! Bring-up is one call; its steps are hal's (rule 2):
//!
//! ```compile_fail,E0603
//! let _ = hal::mm::init();
//! ```
//!
//! ```compile_fail,E0603
//! let _ = hal::apic::init(None);
//! ```
//!
//! Device memory comes only from a claim (hole 5a):
//!
//! ```compile_fail,E0603
//! let _ = hal::mm::map_mmio(0xfee0_0000, 0x1000);
//! ```
//!
//! The active page tables are walked from CR3 and hal's own HHDM offset, never from a
//! caller's number (hole 5b):
//!
//! ```no_run
//! let _ = hal::paging::ActiveTables::current().translate(0xffff_ffff_8000_0000);
//! ```
//!
//! ```compile_fail,E0061
//! let _ = hal::paging::ActiveTables::current(0xffff_8000_0000_0000);
//! ```
//!
//! And the test hooks are not in a normal build (hole 5c):
//!
//! ```compile_fail,E0425
//! let _ = hal::trap::probe_read(0x1000);
//! ```
//!
//! ```compile_fail,E0425
//! let _ = hal::mm::map_page(hal::mm::SCRATCH_BASE, 0x1000);
//! ```
