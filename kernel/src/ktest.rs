//! The in-kernel test runner (`test=kernel`): runs every test function below inside the
//! kernel, reports each by name on serial, and exits QEMU with pass or fail.
//!
//! A test is a `fn() -> TestResult`; it fails by returning `Err` with a reason (or by
//! panicking, which ends the run as a failure). Add new tests to [`TESTS`].

use crate::logger::LineBuf;

/// A test's outcome: `Err` carries the reason it failed.
pub type TestResult = Result<(), LineBuf>;

/// A named in-kernel test.
pub type Test = (&'static str, fn() -> TestResult);

/// Fails the current test with a formatted reason unless `cond` holds.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            let mut why = $crate::logger::LineBuf::new();
            let _ = core::fmt::Write::write_fmt(&mut why, format_args!($($fmt)+));
            return Err(why);
        }
    };
}

/// Every in-kernel test, in the order they run.
pub const TESTS: &[Test] = &[
    ("breakpoint-resumes", crate::cpu::tests::breakpoint_resumes),
    (
        "page-fault-reports-cr2",
        crate::cpu::tests::page_fault_reports_cr2,
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
                log::error!("test {name} ... FAILED: {}", why.as_str());
            }
        }
    }
    log::info!("ktest: {} passed, {failed} failed", ran - failed);
    ran > 0 && failed == 0
}
