//! The CPU's exception handling, tested; and the stack-overflow test.

/// Tests of the CPU's exception handling.
#[cfg(feature = "tests")]
pub mod tests {
    use crate::{
        check,
        ktest::{TestResult, ktest},
    };

    /// `int3` is reported and execution continues after it.
    #[ktest("breakpoint-resumes")]
    pub fn breakpoint_resumes() -> TestResult {
        let before = hal::trap::breakpoints_handled();
        hal::cpu::breakpoint();
        let after = hal::trap::breakpoints_handled();
        check!(
            after == before + 1,
            "breakpoint count went {before} -> {after}"
        );
        Ok(())
    }

    /// A read of an unmapped address faults with CR2 = that address.
    #[ktest("page-fault-reports-cr2")]
    pub fn page_fault_reports_cr2() -> TestResult {
        // An address in the lower half, which nothing maps at this point.
        let address = 0x0000_1234_5678_9000u64 + 0x123;
        match hal::trap::probe_read(address) {
            Ok(value) => check!(false, "read of {address:#x} returned {value:#x}"),
            Err(fault) => {
                check!(
                    fault.address == address,
                    "CR2 {:#x}, expected {address:#x}",
                    fault.address
                );
                check!(
                    fault.error_code & 1 == 0,
                    "error code {:#x}: not a non-present fault",
                    fault.error_code
                );
            }
        }
        Ok(())
    }
}

/// The stack-overflow test (`test=stack-overflow`): unbounded recursion on a kernel stack
/// with a guard page must end in a reported double fault, not silent memory corruption.
pub fn overflow_the_stack() -> ! {
    crate::panic::expect(crate::panic::Expect::DoubleFault);
    let stack = hal::mm::alloc_kernel_stack(4).expect("a 16 KiB stack for the overflow test");
    log::info!(
        "stack-overflow: recursing on a {} KiB stack with a guard page at {:#x}",
        stack.pages() * 4,
        stack.guard_page()
    );
    hal::cpu::run_on_stack(stack, || recurse_forever())
}

fn recurse_forever() -> ! {
    let depth = recurse(0);
    panic!("recursion returned at depth {depth}: the guard page did not stop it");
}

/// Recurses without end; every frame keeps a buffer alive so no optimisation can remove it.
#[expect(unconditional_recursion, reason = "overflowing the stack is the point")]
fn recurse(depth: u64) -> u64 {
    let frame = core::hint::black_box([depth; 32]);
    recurse(depth + 1) + frame[depth as usize % 32]
}
