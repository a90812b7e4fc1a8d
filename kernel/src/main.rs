//! The Evergreen kernel.
//!
//! Entered from hal's entry stub on the bootstrap CPU, with the Limine protocol's machine
//! state. This crate holds no `unsafe`: everything that touches hardware goes through `hal`.
#![no_std]
#![no_main]
#![deny(unsafe_code)]
// Some helpers exist for the in-kernel tests (run_on_all, pings, …). Without the `tests`
// feature they are unused; the lint gate also builds with it, where dead code is an error.
#![cfg_attr(not(feature = "tests"), allow(dead_code))]

extern crate alloc;

mod acpi;
mod block;
mod bootslot;
mod cmdline;
mod conformance;
mod console;
mod cpu;
mod cpulocal;
mod errno_names;
mod exec;
mod fs;
mod futex;
mod gpt;
mod input;
mod irq;
mod itimer;
mod kmsg;
#[cfg(feature = "tests")]
mod ktest;
mod logger;
mod mm;
mod net;
mod panic;
mod power;
mod process;
mod sched;
mod signal;
mod smp;
mod strace;
mod summary;
mod symbols;
mod syscall;
mod syscall_names;
mod threads;
mod time;
mod tty;
mod update;

use hal::qemu::ExitCode;

/// The kernel's version, from Cargo.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git revision the kernel was built from (`-dirty` with uncommitted changes).
pub const GIT_HASH: &str = env!("EVERGREEN_GIT_HASH");

hal::entry_point!(main);

fn main(boot: hal::boot::Boot) -> ! {
    if !hal::boot::base_revision_supported() {
        // Without revision 3 no response can be trusted: say so on serial and stop.
        hal::serial::write_str(
            "Evergreen: the loader does not support Limine base revision 3; halting.\n",
        );
        hal::cpu::halt_forever();
    }
    let mut unknown = [""; 8];
    let mut unknown_count = 0;
    let options = cmdline::Options::parse(hal::boot::cmdline(), |word| {
        if let Some(slot) = unknown.get_mut(unknown_count) {
            *slot = word;
        }
        unknown_count += 1;
    });
    if options.test.is_some() {
        panic::set_test_mode();
    }
    if options.reboot_on_panic {
        panic::set_reboot_on_panic();
    }
    logger::init(options.log_level);
    let screen = console::init(&boot);

    log::info!("Evergreen {VERSION} ({GIT_HASH}) booting");
    for word in unknown
        .iter()
        .take(unknown_count)
        .filter(|w| !bootslot::is_option(w))
    {
        log::warn!("cmdline: ignoring unknown option '{word}'");
    }
    if screen.is_none() {
        log::warn!("no usable framebuffer: output on serial only");
    }
    summary::log(&boot);
    bootslot::log(hal::boot::cmdline());
    if bootslot::is_trial() {
        // `panic=reboot` behaviour: a trial that panics resets, and the loader counts it.
        panic::set_reboot_on_panic();
    }
    if options.test == Some("conformance") {
        // The probe checks the machine state the loader handed over, so it runs before the
        // kernel replaces any of it (GDT, IDT, page tables).
        finish_test(conformance::run(&boot, options.expect_cpus));
    }
    let machine = match hal::init(&boot) {
        Ok(machine) => machine,
        Err(e) => panic!("hal: {e}"),
    };
    mm::report(&machine.memory);
    acpi::report(&machine.acpi);
    time::init(&boot, &machine.time);
    irq::init_bsp(&machine);
    input::init();
    hal::pci::init();
    block::init();
    // Leave the loader's stack for a kernel stack with a guard page, taking the token along.
    let stack = hal::mm::alloc_kernel_stack(smp::STACK_PAGES)
        .expect("the first kernel stack: memory management has just been set up");
    hal::cpu::run_on_stack(stack, move || main_on_kernel_stack(boot))
}

/// The rest of the boot, on the bootstrap CPU's kernel stack.
fn main_on_kernel_stack(boot: hal::boot::Boot) -> ! {
    let options = cmdline::Options::parse(hal::boot::cmdline(), |_| {});
    let cpus = smp::start_aps(&boot, options.max_cpus);
    log::info!("{cpus} CPU(s) online");
    // hal refuses while any CPU may still use the loader's memory; the token is gone either
    // way, so nothing can read the loader's responses from here on.
    if let Err(e) = hal::mm::reclaim_bootloader_memory(boot) {
        log::warn!("mm: bootloader memory not reclaimed: {e}");
    }

    if options.strace {
        strace::enable();
    }
    fs::init();
    update::init();
    if bootslot::panic_at_boot() {
        // A release built to fail: not a pass/fail run, so the panic takes its normal path.
        panic::clear_test_mode();
        panic!("evergreen.test=panic: this release panics at boot");
    }
    if bootslot::hang_at_boot() {
        // A release built to hang before the watchdog is fed: only the chipset can end this.
        log::warn!("evergreen.test=hang: this release hangs at boot");
        hal::cpu::halt_forever();
    }
    update::start_watchdog();
    itimer::init();
    net::init(options.ip, options.gw);
    // As Linux: `init=` names the first program; without it, /sbin/init if there is one.
    let init = options.init.or_else(|| {
        fs::lookup(&fs::root(), "/sbin/init", true)
            .is_ok()
            .then_some("/sbin/init")
    });
    if let Some(path) = init {
        let status = run_init(path, options.init_args.unwrap_or(""));
        match options.test {
            // `test=exec`: the run is over when init is (the runner reads its output).
            Some("exec") => finish_test(status.is_some()),
            Some(_) => {}
            None => {
                log::info!("init has ended: powering off");
                power::shutdown()
            }
        }
    }
    match options.test {
        None => {
            log::info!("boot complete; echoing keyboard and serial input");
            input::echo_loop();
        }
        Some("boot") => finish_test(true),
        Some("poweroff") => power::shutdown(),
        Some("reboot") => power::reboot(),
        Some("triple-fault") => power::triple_fault(),
        #[cfg(feature = "tests")]
        Some("kernel") => finish_test(ktest::run("")),
        Some("panic") => {
            // The panic handler must stop every other CPU; it then reports the test passed.
            panic::expect(panic::Expect::AllCpusStop);
            panic!("deliberate panic (test=panic) with {cpus} CPU(s) online");
        }
        Some("stack-overflow") => cpu::overflow_the_stack(),
        #[cfg(feature = "tests")]
        Some("fault-gp") => {
            // A read of a non-canonical address raises #GP, which must be reported in full.
            panic::expect(panic::Expect::GeneralProtection);
            let value = hal::trap::probe_read(0x8000_0000_0000_0000);
            panic!("a non-canonical read returned {value:x?} instead of faulting");
        }
        Some("fault-ud") => {
            panic::expect(panic::Expect::InvalidOpcode);
            hal::cpu::invalid_opcode()
        }
        Some("panic-reboot") => {
            // Not a pass/fail run: with panic=reboot the machine must reset (QEMU, started
            // with -no-reboot, then exits), so the test-mode exit is turned off.
            panic::clear_test_mode();
            panic!("deliberate panic (test=panic-reboot)");
        }
        Some("bench-frames") => finish_test(mm::bench::run()),
        #[cfg(feature = "tests")]
        Some(filter) if filter.starts_with("kernel:") => finish_test(ktest::run(&filter[7..])),
        #[cfg(not(feature = "tests"))]
        Some(test) if test == "kernel" || test.starts_with("kernel:") || test == "fault-gp" => {
            log::error!(
                "test={test} needs the in-kernel tests, which this kernel was built without \
                 (build it with --features tests; the runner does for any test= command line)"
            );
            finish_test(false)
        }
        Some(other) => {
            log::error!(
                "unknown test '{other}' (known: boot, conformance, kernel, kernel:FILTER, \
                 panic, panic-reboot, stack-overflow, fault-gp, fault-ud, bench-frames, \
                 poweroff, reboot, triple-fault)"
            );
            finish_test(false)
        }
    }
}

/// Runs the init program with `args` until it ends; returns its shell status, or `None` if
/// it did not start. This CPU runs tasks meanwhile, like every other.
fn run_init(path: &str, args: &str) -> Option<u32> {
    let mut argv = alloc::vec![path];
    argv.extend(args.split_ascii_whitespace());
    // What Linux gives init.
    let envp = ["HOME=/", "TERM=linux"];
    // The terminals' input task lives as long as the kernel: started before the count.
    tty::start_input();
    let before = hal::mm::stats();
    let free_before = before.frames.free;
    // Said before it starts: another CPU may run it (and print) at once.
    log::info!("init: running {path}");
    if let Err(e) = process::start_init(path, &argv, &envp) {
        log::error!("init: {e}");
        return None;
    }
    sched::idle_until(|| process::init_exit().is_some());
    let exit = process::init_exit()?;
    // Everything the programs had must come back once the other CPUs have let go of their
    // address spaces. The kernel heap keeps what it grew for their calls, so its growth is
    // not counted as kept; what it still has allocated is checked instead, with margins for
    // what stays by design (service tasks started on first use, tables' spare capacity).
    smp::release_user_spaces();
    const MARGIN_FRAMES: u64 = 32;
    const HEAP_MARGIN_BYTES: u64 = 64 * 1024;
    let measure = || {
        let after = hal::mm::stats();
        let heap_grown = after.heap_bytes.saturating_sub(before.heap_bytes) / hal::mm::PAGE_SIZE;
        let kept = free_before
            .saturating_sub(after.frames.free)
            .saturating_sub(heap_grown);
        (
            after,
            kept,
            after.heap_in_use.saturating_sub(before.heap_in_use),
        )
    };
    // Tasks that have just ended (init itself, a child it reaped last) give their stacks and
    // address spaces back once the CPUs have switched away from them: wait a little for it,
    // so a leak is what is still kept after that.
    let settle = time::now_ns() + 500_000_000;
    sched::idle_until(|| {
        let (_, kept, heap_kept) = measure();
        (kept <= MARGIN_FRAMES && heap_kept <= HEAP_MARGIN_BYTES) || time::now_ns() > settle
    });
    let (after, kept, heap_kept) = measure();
    if kept > MARGIN_FRAMES || heap_kept > HEAP_MARGIN_BYTES {
        log::error!(
            "init: memory not returned: {kept} frames fewer free than before {path} ran, besides \
             the heap's growth; {} KiB more of the heap in use (kernel page tables {} -> {} \
             frames, kernel stacks {} -> {})",
            heap_kept / 1024,
            before.page_table_frames,
            after.page_table_frames,
            before.kernel_stacks,
            after.kernel_stacks
        );
    }
    let status = exit.shell_status();
    log::info!(
        "init: {path} exited with status {status} ({exit:?}); {kept} frames not back, {} KiB \
         more heap in use",
        heap_kept / 1024
    );
    Some(status)
}

/// Reports a test result to the host through QEMU's debug-exit device, then halts.
fn finish_test(passed: bool) -> ! {
    if passed {
        log::info!("test passed");
        hal::qemu::exit(ExitCode::Success);
    } else {
        log::error!("test FAILED");
        hal::qemu::exit(ExitCode::Failure);
    }
    hal::cpu::halt_forever()
}
