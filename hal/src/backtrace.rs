//! Stack traces from frame pointers (the kernel is built with `force-frame-pointers`).

use crate::trap::probe as probe_read;

/// Calls `f` with each return address on the current stack, innermost first, up to `max`.
/// Stops at a zero frame pointer (the entry stub's terminator) or an unreadable frame.
pub fn walk(max: usize, mut f: impl FnMut(u64)) {
    let mut rbp: u64;
    // SAFETY: reading rbp has no side effects.
    unsafe {
        core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags))
    };
    for _ in 0..max {
        if rbp == 0 || !rbp.is_multiple_of(8) {
            break;
        }
        // Frames are read with fault protection: a corrupt chain ends the trace, not the
        // kernel.
        let (Ok(next), Ok(ret)) = (probe_read(rbp), probe_read(rbp + 8)) else {
            break;
        };
        if ret == 0 {
            break;
        }
        f(ret);
        if next <= rbp {
            break; // Stacks grow down: a caller's frame is always higher.
        }
        rbp = next;
    }
}
