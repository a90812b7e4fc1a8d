//! Signals, with Linux's semantics: dispositions per process, masks and pending sets per
//! thread (and a pending set for the process as a whole), delivery on the way back to user
//! mode with a frame whose `siginfo` and `ucontext` layouts are Linux's x86-64 ones, and
//! `rt_sigreturn` to come back from a handler.
//!
//! Default actions: terminate (most), ignore (`SIGCHLD`, `SIGURG`, `SIGWINCH`, `SIGCONT`),
//! stop (`SIGSTOP`, `SIGTSTP`, `SIGTTIN`, `SIGTTOU`). A stopped process's threads park on
//! their way back to user mode until `SIGCONT` (which also continues a process that
//! handles or ignores it) or `SIGKILL`; the parent is told both ways (`SIGCHLD` unless
//! `SA_NOCLDSTOP`, and `wait4` with `WUNTRACED`/`WCONTINUED`), as Linux does.

use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use hal::user::UserPtr;
use linux_raw_sys::{errno as e, general as g};

use crate::process::{Current, Exit, Process, Thread, ThreadEnd};

/// Signal numbers used by the kernel itself.
pub const SIGKILL: u8 = 9;
/// Segmentation fault.
pub const SIGSEGV: u8 = 11;
/// A write to a pipe with no reader.
pub const SIGPIPE: u8 = 13;
/// A child ended.
pub const SIGCHLD: u8 = 17;
/// Alarm clock (`setitimer`, `alarm`).
pub const SIGALRM: u8 = 14;
/// Stop, uncatchable.
pub const SIGSTOP: u8 = 19;
/// Continue a stopped process.
pub const SIGCONT: u8 = 18;
/// Hang-up: the terminal's session leader ended.
pub const SIGHUP: u8 = 1;
/// The terminal's interrupt character (^C).
pub const SIGINT: u8 = 2;
/// The terminal's quit character (^\\).
pub const SIGQUIT: u8 = 3;
/// The terminal's suspend character (^Z).
pub const SIGTSTP: u8 = 20;
/// A background process read its terminal.
pub const SIGTTIN: u8 = 21;
/// A background process wrote its terminal (with `TOSTOP`) or changed its settings.
pub const SIGTTOU: u8 = 22;
/// The terminal's window size changed.
pub const SIGWINCH: u8 = 28;

/// The highest signal number.
pub const NSIG: usize = 64;

/// The `errno` a blocking call interrupted by a signal returns internally: delivery turns it
/// into `EINTR`, or restarts the call (`SA_RESTART`, or no handler ran).
pub const ERESTARTSYS: u32 = 512;

/// One signal's disposition (`struct sigaction` as the kernel has it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigAction {
    /// `SIG_DFL` (0), `SIG_IGN` (1), or the handler's address.
    pub handler: u64,
    /// `SA_*` flags.
    pub flags: u64,
    /// Where the handler returns to (`SA_RESTORER`).
    pub restorer: u64,
    /// Signals blocked while the handler runs.
    pub mask: u64,
}

/// Every signal's disposition.
#[derive(Clone)]
pub struct SigActions(pub [SigAction; NSIG]);

impl Default for SigActions {
    fn default() -> Self {
        Self([SigAction::default(); NSIG])
    }
}

/// What a pending signal carries (`siginfo`'s fields that matter here).
#[derive(Clone, Copy, Debug, Default)]
pub struct Info {
    /// `si_code`.
    pub code: i32,
    /// `si_pid` (the sender), or for faults nothing.
    pub pid: u32,
    /// `si_addr` for faults.
    pub addr: u64,
}

fn bit(sig: u8) -> u64 {
    1u64 << (sig - 1)
}

/// Signals that cannot be blocked, caught or ignored.
const UNBLOCKABLE: u64 = (1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1));

/// Whether `sig`'s default action is to ignore it.
fn default_ignores(sig: u8) -> bool {
    matches!(sig, 17 | 18 | 23 | 28)
}

/// Whether `sig`'s default action is to stop the process.
fn stops(sig: u8) -> bool {
    (19..=22).contains(&sig)
}

/// Whether the current thread blocks `sig` or its process ignores it: a background
/// process touching its terminal then gets `EIO` (reads) or goes on (writes) instead of
/// being stopped by `SIGTTIN`/`SIGTTOU`.
pub fn blocked_or_ignored(current: &Current, sig: u8) -> bool {
    current.thread.sigmask.load(Ordering::Acquire) & bit(sig) != 0
        || current.process().sigactions.lock().0[usize::from(sig - 1)].handler == 1
}

/// Job control on sending: `SIGCONT` continues a stopped process (whatever its
/// disposition) and discards pending stop signals; a stop signal discards a pending
/// `SIGCONT`.
fn job_control_on_send(process: &Arc<Process>, sig: u8) {
    if sig == SIGCONT {
        let stop_bits = (19..=22).fold(0, |m, s| m | bit(s));
        process
            .shared_pending
            .fetch_and(!stop_bits, Ordering::AcqRel);
        for t in process.threads.lock().iter() {
            t.pending.fetch_and(!stop_bits, Ordering::AcqRel);
        }
        let continued = {
            let mut job = process.job.lock();
            let was = job.stopped;
            if was {
                job.stopped = false;
                job.report = Some(crate::process::JobChange::Continued);
            }
            was
        };
        if continued {
            process.signalled.wake_all();
            tell_parent(process);
        }
    } else if stops(sig) {
        process
            .shared_pending
            .fetch_and(!bit(SIGCONT), Ordering::AcqRel);
        for t in process.threads.lock().iter() {
            t.pending.fetch_and(!bit(SIGCONT), Ordering::AcqRel);
        }
    }
}

/// Whether process group `pgrp` is orphaned: no member has a parent in another group of
/// the same session.
fn orphaned(pgrp: u32) -> bool {
    !crate::process::all().iter().any(|p| {
        p.pgid.load(Ordering::Relaxed) == pgrp
            && p.exit.lock().is_none()
            && p.parent().is_some_and(|q| {
                q.pgid.load(Ordering::Relaxed) != pgrp
                    && q.sid.load(Ordering::Relaxed) == p.sid.load(Ordering::Relaxed)
            })
    })
}

/// Tells `process`'s parent that it stopped or continued: a wake-up for `wait4`, and
/// `SIGCHLD` unless the parent asked for none (`SA_NOCLDSTOP`).
fn tell_parent(process: &Arc<Process>) {
    let Some(parent) = process.parent() else {
        return;
    };
    parent.child_exited.wake_all();
    let flags = parent.sigactions.lock().0[usize::from(SIGCHLD - 1)].flags;
    if flags & u64::from(g::SA_NOCLDSTOP) == 0 {
        send_process(&parent, SIGCHLD);
    }
}

/// Stops the current thread's process with `sig`: every thread parks until `SIGCONT`.
fn stop(current: &Current, sig: u8) {
    let process = current.process();
    {
        let mut job = process.job.lock();
        job.stopped = true;
        job.report = Some(crate::process::JobChange::Stopped(sig));
    }
    for t in process.threads.lock().iter() {
        if !Arc::ptr_eq(t, &current.thread)
            && let Some(task) = t.task.get()
        {
            task.interrupt();
        }
    }
    tell_parent(process);
    park(current);
}

/// Waits while the process is stopped (until `SIGCONT` or its end). Other signals stay
/// pending meanwhile.
fn park(current: &Current) {
    let process = current.process();
    let running = || !process.job.lock().stopped || process.exiting.load(Ordering::Acquire);
    while !running() {
        current.task.clear_interrupt();
        crate::sched::wait(&current.task, &[&process.signalled], None, running);
    }
}

/// Whether `sig` would be dropped on arrival (ignored by disposition or by default).
fn ignored(process: &Process, sig: u8) -> bool {
    if sig == SIGKILL {
        return false;
    }
    let action = process.sigactions.lock().0[usize::from(sig - 1)];
    // Init is never stopped by a default action (Linux's SIGNAL_UNKILLABLE): nobody would be
    // left to continue it.
    let init_stop = process.pid == 1 && stops(sig);
    action.handler == 1 || (action.handler == 0 && (default_ignores(sig) || init_stop))
}

/// Sends `sig` to `thread` (`tgkill`, a fault).
pub fn send_thread(thread: &Thread, sig: u8) {
    job_control_on_send(&thread.process, sig);
    if ignored(&thread.process, sig) {
        return;
    }
    if sig == SIGKILL {
        thread.process.exit_group(Exit::Signal(SIGKILL));
        return;
    }
    thread.pending.fetch_or(bit(sig), Ordering::AcqRel);
    thread.process.signalled.wake_all();
    if thread.sigmask.load(Ordering::Acquire) & bit(sig) == 0
        && let Some(task) = thread.task.get()
    {
        task.interrupt();
    }
}

/// Sends `sig` to `process` (`kill`): any thread that does not block it takes it.
pub fn send_process(process: &Arc<Process>, sig: u8) {
    if process.exit.lock().is_some() {
        return;
    }
    job_control_on_send(process, sig);
    if ignored(process, sig) {
        return;
    }
    // A stopped process is not coming back to take it: a signal that would kill it does so
    // now (as Linux's `complete_signal` for a fatal signal).
    if process.job.lock().stopped
        && process.sigactions.lock().0[usize::from(sig - 1)].handler == 0
        && !stops(sig)
        && process
            .threads
            .lock()
            .iter()
            .any(|t| t.sigmask.load(Ordering::Acquire) & bit(sig) == 0)
    {
        process.exit_group(Exit::Signal(sig));
        return;
    }
    if sig == SIGKILL {
        process.exit_group(Exit::Signal(SIGKILL));
        return;
    }
    process.shared_pending.fetch_or(bit(sig), Ordering::AcqRel);
    process.signalled.wake_all();
    let threads = process.threads.lock();
    let taker = threads
        .iter()
        .find(|t| t.sigmask.load(Ordering::Acquire) & bit(sig) == 0);
    if let Some(task) = taker.and_then(|t| t.task.get()) {
        task.interrupt();
    }
}

/// Whether `thread` has a signal it does not block.
pub fn has_deliverable(thread: &Thread) -> bool {
    let pending = thread.pending.load(Ordering::Acquire)
        | thread.process.shared_pending.load(Ordering::Acquire);
    pending & !thread.sigmask.load(Ordering::Acquire) != 0
}

/// Takes the lowest deliverable signal, if any.
fn take(thread: &Thread) -> Option<u8> {
    let mask = thread.sigmask.load(Ordering::Acquire) & !UNBLOCKABLE;
    let own = thread.pending.load(Ordering::Acquire) & !mask;
    if own != 0 {
        let sig = own.trailing_zeros() as u8 + 1;
        thread.pending.fetch_and(!bit(sig), Ordering::AcqRel);
        return Some(sig);
    }
    let shared = thread.process.shared_pending.load(Ordering::Acquire) & !mask;
    if shared != 0 {
        let sig = shared.trailing_zeros() as u8 + 1;
        if thread
            .process
            .shared_pending
            .fetch_and(!bit(sig), Ordering::AcqRel)
            & bit(sig)
            != 0
        {
            return Some(sig);
        }
    }
    None
}

/// Runs on the way back to user mode: restarts or fails an interrupted syscall, and delivers
/// a pending signal — through a handler frame, by ignoring it, or by ending the process.
pub fn deliver(current: &Current, context: &mut hal::usermode::UserContext) -> Option<ThreadEnd> {
    let thread = &current.thread;
    let restart = if thread.restart_nr.load(Ordering::Relaxed) == crate::process::NO_RESTART {
        None
    } else {
        Some(
            thread
                .restart_nr
                .swap(crate::process::NO_RESTART, Ordering::Relaxed),
        )
        .filter(|&nr| nr != crate::process::NO_RESTART)
    };
    loop {
        if thread.process.job.lock().stopped {
            park(current);
        }
        if thread.process.exiting.load(Ordering::Acquire)
            && let Some(exit) = *thread.process.group_exit.lock()
        {
            return Some(ThreadEnd::Group(exit));
        }
        let Some(sig) = take(thread) else {
            current.task.clear_interrupt();
            // Nothing to deliver: an interrupted call runs again (as after an ignored signal).
            if let Some(nr) = restart {
                context.regs.rax = nr;
                context.regs.rip -= 2;
            }
            // Re-check: a signal may have arrived after the interrupt flag was cleared.
            if has_deliverable(thread) {
                current.task.interrupt();
            }
            return None;
        };
        let action = thread.process.sigactions.lock().0[usize::from(sig - 1)];
        match action.handler {
            1 => continue,
            0 if default_ignores(sig) => continue,
            // A terminal's stop signals do not stop an orphaned group (nobody is left to
            // continue it); `SIGSTOP` always does.
            0 if stops(sig)
                && sig != SIGSTOP
                && orphaned(thread.process.pgid.load(Ordering::Relaxed)) =>
            {
                continue;
            }
            0 if stops(sig) => {
                stop(current, sig);
                continue;
            }
            0 => {
                thread.process.exit_group(Exit::Signal(sig));
                return Some(ThreadEnd::Group(Exit::Signal(sig)));
            }
            handler => {
                if let Some(nr) = restart {
                    if action.flags & u64::from(g::SA_RESTART) != 0 {
                        context.regs.rax = nr;
                        context.regs.rip -= 2;
                    } else {
                        context.regs.rax = (-i64::from(e::EINTR)) as u64;
                    }
                }
                let info = thread.infos.lock()[usize::from(sig - 1)];
                if build_frame(thread, context, sig, handler, &action, info).is_err() {
                    log::warn!(
                        "{}: cannot write the frame for signal {sig}: killed by SIGSEGV",
                        thread.process.path.lock()
                    );
                    thread.process.exit_group(Exit::Signal(SIGSEGV));
                    return Some(ThreadEnd::Group(Exit::Signal(SIGSEGV)));
                }
                if action.flags & u64::from(g::SA_RESETHAND) != 0 {
                    thread.process.sigactions.lock().0[usize::from(sig - 1)] = SigAction::default();
                }
                if !has_deliverable(thread) {
                    current.task.clear_interrupt();
                }
                return None;
            }
        }
    }
}

/// `uc_flags`: the frame's FPU state is an `xsave` image (with `_fpx_sw_bytes`).
const UC_FP_XSTATE: u64 = 1;
/// `struct _fpx_sw_bytes` (uapi `asm/sigcontext.h`) sits in the `fxsave` layout's bytes
/// 464..512, which the CPU leaves to software; its `magic1` says an `xsave` image follows,
/// `FP_XSTATE_MAGIC2` right after that image confirms it.
const SW_BYTES: usize = 464;
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;
const MAGIC2_SIZE: usize = 4;
/// The legacy (`fxsave`) image's size, where the XSAVE header starts.
const LEGACY_FPU: usize = 512;
/// x87 and SSE: an `xsave` image's XSTATE_BV always claims them (as Linux), so a handler
/// reading the legacy area sees it as written.
const XFEATURES_FPSSE: u64 = 0b11;

/// The FPU part of a signal frame: the image and, for XSAVE, Linux's software bytes and
/// the trailing magic; `(bytes, uc_flags)`.
fn fpu_frame(context: &hal::usermode::UserContext) -> (alloc::vec::Vec<u8>, u64) {
    let image = context.fpu_state();
    let mut bytes = image.as_bytes().to_vec();
    match hal::usermode::fpu_format() {
        hal::usermode::FpuFormat::Fxsave => (bytes, 0),
        hal::usermode::FpuFormat::Xsave { features, size } => {
            // struct _fpx_sw_bytes: magic1, extended_size, xfeatures, xstate_size, padding.
            let sw = &mut bytes[SW_BYTES..LEGACY_FPU];
            sw.fill(0);
            sw[0..4].copy_from_slice(&FP_XSTATE_MAGIC1.to_le_bytes());
            sw[4..8].copy_from_slice(&((size + MAGIC2_SIZE) as u32).to_le_bytes());
            sw[8..16].copy_from_slice(&features.to_le_bytes());
            sw[16..20].copy_from_slice(&(size as u32).to_le_bytes());
            let bv = &mut bytes[LEGACY_FPU..LEGACY_FPU + 8];
            let claimed = u64::from_le_bytes(bv.try_into().expect("8 bytes")) | XFEATURES_FPSSE;
            bv.copy_from_slice(&claimed.to_le_bytes());
            bytes.extend_from_slice(&FP_XSTATE_MAGIC2.to_le_bytes());
            (bytes, UC_FP_XSTATE)
        }
    }
}

/// The size Linux reports as `AT_MINSIGSTKSZ`: the largest frame a signal may need
/// (`init_sigframe_size` in Linux's `arch/x86/kernel/signal.c`): `rt_sigframe`, its
/// alignment padding, the FPU image (with the magic for XSAVE) and its 64-byte alignment.
pub fn min_sigstack_size() -> u64 {
    let fpu = match hal::usermode::fpu_format() {
        hal::usermode::FpuFormat::Fxsave => LEGACY_FPU,
        hal::usermode::FpuFormat::Xsave { size, .. } => size + MAGIC2_SIZE,
    };
    ((FRAME_BYTES as usize + 15 + fpu + 63).next_multiple_of(16)) as u64
}

/// `rt_sigframe`: pretcode, ucontext (304 bytes), siginfo (128 bytes).
const FRAME_BYTES: u64 = 8 + 304 + 128;

/// Writes the `rt_sigframe` and points the context at the handler.
fn build_frame(
    thread: &Thread,
    context: &mut hal::usermode::UserContext,
    sig: u8,
    handler: u64,
    action: &SigAction,
    info: Info,
) -> Result<(), ()> {
    let r = context.regs;
    let (alt_base, alt_size, alt_flags) = *thread.altstack.lock();
    let on_alt = alt_flags & g::SS_DISABLE == 0
        && alt_size > 0
        && !(alt_base..alt_base + alt_size).contains(&r.rsp);
    let mut sp = if action.flags & u64::from(g::SA_ONSTACK) != 0 && on_alt {
        alt_base + alt_size
    } else {
        r.rsp.wrapping_sub(128) // the red zone
    };
    let (fpu, uc_flags) = fpu_frame(context);
    sp = sp.checked_sub(fpu.len() as u64).ok_or(())? & !63;
    let fpstate = sp;
    hal::user::copy_to_user(fpstate, &fpu).map_err(|_| ())?;
    sp = ((sp.checked_sub(FRAME_BYTES).ok_or(())?) & !15) - 8;
    let frame = sp;
    let old_mask = thread
        .saved_mask
        .lock()
        .take()
        .unwrap_or(thread.sigmask.load(Ordering::Acquire));
    let mut words = [0u64; FRAME_BYTES as usize / 8];
    words[0] = action.restorer;
    // ucontext: uc_flags, uc_link, uc_stack (sp, flags, size), then sigcontext.
    words[1] = uc_flags;
    words[2] = 0;
    words[3] = alt_base;
    words[4] = u64::from(if on_alt { 0 } else { alt_flags });
    words[5] = alt_size;
    let mc = 6;
    let gp = [
        r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rdi, r.rsi, r.rbp, r.rbx, r.rdx,
        r.rax, r.rcx, r.rsp, r.rip, r.rflags,
    ];
    words[mc..mc + 18].copy_from_slice(&gp);
    words[mc + 18] = 0x2b_0000_0000_0033; // cs 0x33, gs 0, fs 0, ss 0x2b
    words[mc + 19] = 0; // err
    words[mc + 20] = 0; // trapno
    words[mc + 21] = old_mask; // oldmask
    words[mc + 22] = info.addr; // cr2
    words[mc + 23] = fpstate;
    // reserved1[8] stays zero; then uc_sigmask.
    words[mc + 32] = old_mask;
    // siginfo: si_signo, si_errno, si_code (ints), then the union at offset 16.
    let si = 1 + 304 / 8;
    words[si] = u64::from(sig); // si_errno 0
    words[si + 1] = u64::from(info.code as u32);
    words[si + 2] = if info.addr != 0 {
        info.addr
    } else {
        u64::from(info.pid)
    };
    let bytes: alloc::vec::Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    hal::user::copy_to_user(frame, &bytes).map_err(|_| ())?;
    let mut mask = old_mask | action.mask;
    if action.flags & u64::from(g::SA_NODEFER) == 0 {
        mask |= bit(sig);
    }
    thread.sigmask.store(mask & !UNBLOCKABLE, Ordering::Release);
    context.regs.rip = handler;
    context.regs.rsp = frame;
    context.regs.rdi = u64::from(sig);
    context.regs.rsi = frame + 8 + 304;
    context.regs.rdx = frame + 8;
    context.regs.rax = 0;
    context.regs.rflags &= !(1 << 10); // DF clear, as the ABI wants on entry
    Ok(())
}

/// `rt_sigreturn`: restores what the frame at `rsp - 8` saved; returns the restored `rax`.
pub fn sigreturn(current: &Current, context: &mut hal::usermode::UserContext) -> Result<u64, u32> {
    let frame = context.regs.rsp.wrapping_sub(8);
    let mut words = [0u64; (8 + 304) / 8];
    let mut bytes = [0u8; 8 + 304];
    hal::user::copy_from_user(frame, &mut bytes).map_err(|_| e::EFAULT)?;
    for (w, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
        *w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
    }
    let mc = 6;
    let g = &words[mc..mc + 18];
    let r = &mut context.regs;
    [r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15] =
        [g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7]];
    [
        r.rdi, r.rsi, r.rbp, r.rbx, r.rdx, r.rax, r.rcx, r.rsp, r.rip, r.rflags,
    ] = [
        g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15], g[16], g[17],
    ];
    let fpstate = words[mc + 23];
    if fpstate != 0 {
        let fpu = read_fpu_frame(fpstate)?;
        context.set_fpu_state(&fpu).map_err(|_| e::EFAULT)?;
    } else {
        // No saved state: the FPU starts afresh (Linux's `fpu__clear_user_states`).
        context.reset_fpu_state();
    }
    current
        .thread
        .sigmask
        .store(words[mc + 32] & !UNBLOCKABLE, Ordering::Release);
    if has_deliverable(&current.thread) {
        current.task.interrupt();
    }
    Ok(context.regs.rax)
}

/// Reads the FPU image a frame's `fpstate` points at, as Linux's `check_xstate_in_sigframe`
/// does: the whole `xsave` image if the software bytes and both magics say so, else the
/// 512-byte legacy image (the AVX state then returns to its initial state). Components the
/// frame's `xfeatures` leaves out return to their initial state too.
fn read_fpu_frame(fpstate: u64) -> Result<alloc::vec::Vec<u8>, u32> {
    let mut legacy = alloc::vec![0u8; LEGACY_FPU];
    hal::user::copy_from_user(fpstate, &mut legacy).map_err(|_| e::EFAULT)?;
    let hal::usermode::FpuFormat::Xsave { size, .. } = hal::usermode::fpu_format() else {
        return Ok(legacy);
    };
    let word = |at: usize| u32::from_le_bytes(legacy[at..at + 4].try_into().expect("4 bytes"));
    let xfeatures = u64::from_le_bytes(
        legacy[SW_BYTES + 8..SW_BYTES + 16]
            .try_into()
            .expect("8 bytes"),
    );
    let (magic1, extended, xstate) = (word(SW_BYTES), word(SW_BYTES + 4), word(SW_BYTES + 16));
    if magic1 != FP_XSTATE_MAGIC1
        || xstate as usize != size
        || extended as usize != size + MAGIC2_SIZE
    {
        return Ok(legacy);
    }
    let mut full = alloc::vec![0u8; size + MAGIC2_SIZE];
    hal::user::copy_from_user(fpstate, &mut full).map_err(|_| e::EFAULT)?;
    let magic2 = u32::from_le_bytes(full[size..].try_into().expect("4 bytes"));
    if magic2 != FP_XSTATE_MAGIC2 {
        return Ok(legacy);
    }
    full.truncate(size);
    let bv = &mut full[LEGACY_FPU..LEGACY_FPU + 8];
    let kept = u64::from_le_bytes(bv.try_into().expect("8 bytes")) & (xfeatures | XFEATURES_FPSSE);
    bv.copy_from_slice(&kept.to_le_bytes());
    Ok(full)
}

/// A CPU exception in user mode: the signal it stands for goes to the thread — to its
/// handler if it has one and does not block it, else it ends the process (as Linux forces).
pub fn fault(
    current: &Current,
    context: &hal::usermode::UserContext,
    vector: u8,
    error_code: u64,
    address: u64,
) {
    // si_codes (asm-generic/siginfo.h).
    const SEGV_MAPERR: i32 = 1;
    const SEGV_ACCERR: i32 = 2;
    const FPE_INTDIV: i32 = 1;
    const ILL_ILLOPN: i32 = 2;
    const TRAP_BRKPT: i32 = 1;
    const BUS_ADRALN: i32 = 1;
    const SI_KERNEL: i32 = 0x80;
    let rip = context.regs.rip;
    let (sig, code, addr, name) = match vector {
        0 => (8, FPE_INTDIV, rip, "SIGFPE (divide error)"),
        1 | 3 => (5, TRAP_BRKPT, 0, "SIGTRAP (debug or breakpoint)"),
        16 | 19 => (8, 0, rip, "SIGFPE (floating-point exception)"),
        17 => (7, BUS_ADRALN, address, "SIGBUS (alignment check)"),
        6 => (4, ILL_ILLOPN, rip, "SIGILL (invalid opcode)"),
        14 => {
            let code = if error_code & 1 != 0 {
                SEGV_ACCERR
            } else {
                SEGV_MAPERR
            };
            (11, code, address, "SIGSEGV (page fault)")
        }
        13 => (11, SI_KERNEL, 0, "SIGSEGV (general protection)"),
        _ => (11, SI_KERNEL, 0, "SIGSEGV"),
    };
    let thread = &current.thread;
    let process = current.process();
    if vector == 14
        && process
            .memory()
            .space
            .fault_out_of_memory(error_code, address)
    {
        // Not the program's fault: memory ran out under it. Linux's OOM killer ends a
        // process with SIGKILL and says so; so do we (no handler can run without memory).
        static OOM_REPORTS: crate::logger::RateLimit =
            crate::logger::RateLimit::new(10, 5_000_000_000);
        if OOM_REPORTS.check().is_some() {
            log::error!(
                "out of memory: killed process {} ({}) on a page fault at {address:#x}",
                process.pid,
                process.path.lock()
            );
        }
        process.exit_group(Exit::Signal(9));
        return;
    }
    let action = process.sigactions.lock().0[usize::from(sig - 1)];
    let blocked = thread.sigmask.load(Ordering::Acquire) & bit(sig) != 0;
    if action.handler > 1 && !blocked {
        thread.infos.lock()[usize::from(sig - 1)] = Info { code, pid: 0, addr };
        thread.pending.fetch_or(bit(sig), Ordering::AcqRel);
        return;
    }
    static REPORTS: crate::logger::RateLimit = crate::logger::RateLimit::new(10, 5_000_000_000);
    if let Some(missed) = REPORTS.check() {
        let missed = if missed > 0 {
            alloc::format!(" ({missed} similar reports left out)")
        } else {
            alloc::string::String::new()
        };
        log::warn!(
            "{}: killed by {name} at rip {rip:#x} (vector {vector}, error {error_code:#x}, \
             address {address:#x}){missed}",
            process.path.lock()
        );
    }
    process.exit_group(Exit::Signal(sig));
}

/// Signals a user may send with `kill`: 0 (a check) to 64.
pub fn valid(sig: u64) -> Result<Option<u8>, u32> {
    match sig {
        0 => Ok(None),
        1..=64 => Ok(Some(sig as u8)),
        _ => Err(e::EINVAL),
    }
}

/// Reads and checks a user `struct sigaction`.
pub fn read_action(address: u64) -> Result<SigAction, u32> {
    let [handler, flags, restorer, mask] = UserPtr::<[u64; 4]>::new(address)
        .read()
        .map_err(|_| e::EFAULT)?;
    Ok(SigAction {
        handler,
        flags,
        restorer,
        mask: mask & !UNBLOCKABLE,
    })
}

/// Writes a `struct sigaction`.
pub fn write_action(address: u64, action: &SigAction) -> Result<(), u32> {
    UserPtr::<[u64; 4]>::new(address)
        .write([action.handler, action.flags, action.restorer, action.mask])
        .map_err(|_| e::EFAULT)
}

/// A mask with what cannot be blocked removed.
pub fn blockable(mask: u64) -> u64 {
    mask & !UNBLOCKABLE
}

/// Records what a signal `sig` sent by `pid` carries on the receiving thread.
pub fn set_info(thread: &Thread, sig: u8, info: Info) {
    thread.infos.lock()[usize::from(sig - 1)] = info;
}
