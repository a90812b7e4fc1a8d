//! The in-kernel test runner (`test=kernel`, or `test=kernel:FILTER` for the tests whose
//! name contains FILTER): runs the registered tests inside the kernel, reports each by name
//! on serial, and exits QEMU with pass or fail.
//!
//! A test is a `fn() -> TestResult` that registers itself where it is written:
//!
//! ```text
//! use crate::{check, ktest::{TestResult, ktest}};
//!
//! #[ktest("mm-frames-distinct")]
//! fn frames_distinct() -> TestResult {
//!     check!(mm::alloc_frame().is_some(), "no frame");
//!     Ok(())
//! }
//! ```
//!
//! That is all: there is no list to add it to (and a test function that lost its attribute
//! is called by nothing, which `dead_code` turns into a lint failure). The attribute (crate
//! `ktest-macros`) places a `hal::ktest::TestCase` in a linker section and
//! [`hal::ktest::cases`] reads them back.
//! Name a test `subsystem-what-it-checks`, lowercase with hyphens; the runner's system tests
//! select groups by prefix (`test=kernel:mm-`). A test fails by returning `Err` with a
//! reason (or by panicking, which ends the run as a failure). It runs on the bootstrap CPU
//! with interrupts disabled, after the whole boot, and must leave the machine as it found it.
//!
//! Tests run sorted by name, so the order does not change with the link order. Before any
//! runs, the registry is checked: an empty one (the section was lost) or two tests of one
//! name fail the run. The runner's `kernel-tests` case compares the `ktest: N registered`
//! line with the number that passed.

use alloc::{format, string::String, vec::Vec};

use hal::ktest::TestCase;
pub use hal::ktest::TestResult;
pub use ktest_macros::ktest;

/// Fails the current test with a formatted reason unless `cond` holds.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(alloc::format!($($fmt)+));
        }
    };
}

/// Every registered test, sorted by name; or why the registry is unusable.
fn registered() -> Result<Vec<&'static TestCase>, String> {
    let mut tests: Vec<&'static TestCase> = hal::ktest::cases().iter().collect();
    tests.sort_unstable_by_key(|t| t.name);
    check_registry(&tests)?;
    Ok(tests)
}

/// A sorted registry is usable if it holds at least one test, every name is a word (the
/// command line selects by word) and no two tests share a name.
fn check_registry(sorted: &[&TestCase]) -> Result<(), String> {
    if sorted.is_empty() {
        return Err(format!(
            "no test is registered: the {} section is empty (is it kept in kernel/linker.ld?)",
            hal::ktest::SECTION
        ));
    }
    if let Some(bad) = sorted
        .iter()
        .find(|t| t.name.is_empty() || t.name.contains(char::is_whitespace))
    {
        return Err(format!("the test name {:?} is not a word", bad.name));
    }
    if let Some(pair) = sorted.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(format!("two tests are named {}", pair[0].name));
    }
    Ok(())
}

/// Runs the tests whose name contains `filter` (all if empty); returns whether all passed.
pub fn run(filter: &str) -> bool {
    let tests = match registered() {
        Ok(tests) => tests,
        Err(why) => {
            log::error!("ktest: FAILED: {why}");
            return false;
        }
    };
    log::info!("ktest: {} registered", tests.len());
    if !filter.is_empty() {
        let selected = tests.iter().filter(|t| t.name.contains(filter)).count();
        log::info!("ktest: {selected} match '{filter}'");
    }
    let mut failed = 0;
    let mut ran = 0;
    for test in tests.iter().filter(|t| t.name.contains(filter)) {
        ran += 1;
        let name = test.name;
        match (test.run)() {
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

/// The registry holds this test, sorted and unique, in read-only memory; and the checks on
/// it refuse an empty registry and a duplicate name.
#[ktest("ktest-registry")]
fn registry() -> TestResult {
    let tests = registered()?;
    check!(
        tests.iter().any(|t| t.name == "ktest-registry"),
        "this test is not in the registry"
    );
    check!(
        tests.windows(2).all(|w| w[0].name < w[1].name),
        "the registry is not sorted by name"
    );
    let cases = hal::ktest::cases();
    for address in [cases.as_ptr() as u64, cases.as_ptr_range().end as u64 - 1] {
        let m = hal::mm::translate(address);
        check!(
            m.is_some_and(|m| !m.writable && !m.executable),
            "the registry at {address:#x} is mapped {m:x?}, not read-only"
        );
    }
    check!(
        check_registry(&[]).is_err(),
        "an empty registry was accepted"
    );
    let twice = [tests[0], tests[0]];
    check!(
        check_registry(&twice).is_err(),
        "two tests named {} were accepted",
        tests[0].name
    );
    let spaced = TestCase {
        name: "two words",
        run: registry,
    };
    check!(
        check_registry(&[&spaced]).is_err(),
        "a name with a space was accepted"
    );
    Ok(())
}
