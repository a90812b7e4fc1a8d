//! The in-kernel test runner (`test=kernel`): runs every test function below inside the
//! kernel, reports each by name on serial, and exits QEMU with pass or fail.
//!
//! A test is a `fn() -> TestResult`; it fails by returning `Err` with a reason (or by
//! panicking, which ends the run as a failure). Add new tests to [`TESTS`].

use alloc::string::String;

/// A test's outcome: `Err` carries the reason it failed.
pub type TestResult = Result<(), String>;

/// A named in-kernel test.
pub type Test = (&'static str, fn() -> TestResult);

/// Fails the current test with a formatted reason unless `cond` holds.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(alloc::format!($($fmt)+));
        }
    };
}

/// Every in-kernel test, in the order they run.
pub const TESTS: &[Test] = &[
    ("breakpoint-resumes", crate::cpu::tests::breakpoint_resumes),
    ("console-ansi-escapes", crate::console::tests::ansi_escapes),
    (
        "symbols-resolve",
        crate::symbols::tests::resolve_known_function,
    ),
    (
        "page-fault-reports-cr2",
        crate::cpu::tests::page_fault_reports_cr2,
    ),
    ("acpi-madt-cpus", crate::acpi::tests::madt_lists_cpus),
    ("acpi-q35-tables", crate::acpi::tests::q35_tables_present),
    ("acpi-s5-scan", crate::acpi::tests::s5_scan),
    (
        "acpi-malformed-tables",
        crate::acpi::tests::malformed_tables,
    ),
    ("acpi-random-tables", crate::acpi::tests::random_tables),
    ("power-shutdown-path", crate::power::tests::shutdown_path),
    ("time-monotonic", crate::time::tests::monotonic),
    ("time-tsc-calibrated", crate::time::tests::tsc_calibrated),
    ("time-calendar", crate::time::tests::calendar),
    ("time-rtc", crate::time::tests::rtc_reads),
    ("timer-tick-this-cpu", crate::time::tests::tick_this_cpu),
    ("timer-tick-every-cpu", crate::time::tests::tick_every_cpu),
    ("timer-oneshot", crate::time::tests::oneshot),
    ("ipi-self", crate::irq::tests::ipi_self),
    ("ipi-each-cpu", crate::irq::tests::ipi_each_cpu),
    ("ipi-tlb-shootdown", crate::irq::tests::tlb_shootdown),
    (
        "ipi-shootdown-timeout-keeps-frames",
        crate::irq::tests::shootdown_timeout_keeps_frames,
    ),
    (
        "irq-hal-vectors-refused",
        crate::irq::tests::hal_vectors_refused,
    ),
    (
        "irq-controllers-quiet",
        crate::irq::tests::controllers_quiet,
    ),
    (
        "input-keyboard-decoding",
        crate::input::tests::keyboard_decoding,
    ),
    ("mm-frames-distinct", crate::mm::tests::frames_distinct),
    ("mm-frames-contiguous", crate::mm::tests::frames_contiguous),
    (
        "mm-frames-exhaust-reuse",
        crate::mm::tests::frames_exhaust_and_reuse,
    ),
    ("mm-map-unmap", crate::mm::tests::map_unmap),
    ("smp-all-cpus-online", crate::smp::tests::all_cpus_online),
    ("smp-heap-concurrent", crate::smp::tests::heap_concurrent),
    ("smp-smap-not-lifted", crate::smp::tests::smap_not_lifted),
    (
        "smp-loader-memory-overwritten",
        crate::smp::tests::loader_memory_overwritten,
    ),
    ("smp-log-concurrent", crate::smp::tests::log_from_all_cpus),
    (
        "smp-time-monotonic",
        crate::smp::tests::time_monotonic_across_cpus,
    ),
    ("smp-tlb-remap", crate::smp::tests::tlb_remap_across_cpus),
    ("mm-stack-guard-page", crate::mm::tests::stack_guard_page),
    ("mm-heap-grows", crate::mm::tests::heap_grows),
    ("mm-kernel-tables-wx", crate::mm::tests::kernel_tables_wx),
    ("mm-mmio-claims", crate::mm::tests::mmio_claims),
    (
        "mm-bootloader-memory-reclaimed",
        crate::mm::tests::bootloader_memory_reclaimed,
    ),
];

/// Runs the tests whose name contains `filter` (all if empty); returns whether all passed.
pub fn run(filter: &str) -> bool {
    let mut failed = 0;
    let mut ran = 0;
    for (name, test) in TESTS.iter().filter(|(name, _)| name.contains(filter)) {
        ran += 1;
        match test() {
            Ok(()) => log::info!("test {name} ... ok"),
            Err(why) => {
                failed += 1;
                log::error!("test {name} ... FAILED: {why}");
            }
        }
    }
    log::info!("ktest: {} passed, {failed} failed", ran - failed);
    ran > 0 && failed == 0
}
