//! Terminals: the line discipline, controlling terminals and job control, as Linux's tty
//! layer and its `n_tty` discipline behave.
//!
//! Three terminals are built in: `ttyS0` (COM1), `tty1` (the screen and the PS/2 keyboard;
//! `tty0` names it too) and `console`, the kernel's console, which writes to both and reads
//! from either until that input's own terminal has been opened (so a program started as init
//! on `/dev/console` hears both, and once init starts a shell on each terminal, each hears
//! its own). Pseudo-terminals ([`pty`]) are made by opening `/dev/ptmx`.
//!
//! Input arrives by interrupt into raw queues ([`crate::input`]); a kernel task feeds it to
//! the terminals, so the discipline's work — echo, line editing, signals to the foreground
//! process group — happens in task context, where every lock may be taken.
//!
//! Written by hand: no crate implements a kernel-side line discipline.

pub mod pty;

use alloc::{collections::VecDeque, string::String, sync::Arc, vec::Vec};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use linux_raw_sys::{errno as e, general as g, ioctl as io};
use spin::{Mutex, Once};

use crate::{
    fs::{Node, TtyId, file::Target},
    process::{self, Current, Process},
    sched::{self, Wait, WaitQueue},
    signal,
};

/// The longest line canonical mode keeps (Linux's `N_TTY_BUF_SIZE` less one).
const MAX_LINE: usize = 4095;
/// The most unread input a terminal holds in raw mode.
const MAX_RAW: usize = 4096;

/// `struct termios` as the `TCGETS` family passes it (36 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Termios {
    /// Input modes.
    pub iflag: u32,
    /// Output modes.
    pub oflag: u32,
    /// Control modes.
    pub cflag: u32,
    /// Local modes.
    pub lflag: u32,
    /// The line discipline (0, `N_TTY`).
    pub line: u8,
    /// Control characters.
    pub cc: [u8; 19],
}

/// The size of [`Termios`] in user memory.
pub const TERMIOS_SIZE: usize = 36;

impl Termios {
    /// What a terminal starts with (Linux's `tty_std_termios`): canonical, echoing, with
    /// signals, `ICRNL` and `ONLCR`, 38400 baud 8N1.
    pub fn standard() -> Self {
        let mut cc = [0u8; 19];
        for (index, value) in [
            (g::VINTR, 3),
            (g::VQUIT, 0x1c),
            (g::VERASE, 0x7f),
            (g::VKILL, 0x15),
            (g::VEOF, 4),
            (g::VTIME, 0),
            (g::VMIN, 1),
            (g::VSTART, 0x11),
            (g::VSTOP, 0x13),
            (g::VSUSP, 0x1a),
            (g::VREPRINT, 0x12),
            (g::VDISCARD, 0x0f),
            (g::VWERASE, 0x17),
            (g::VLNEXT, 0x16),
        ] {
            cc[index as usize] = value;
        }
        Self {
            iflag: g::ICRNL | g::IXON,
            oflag: g::OPOST | g::ONLCR,
            cflag: g::B38400 | g::CS8 | g::CREAD | g::HUPCL,
            lflag: g::ISIG
                | g::ICANON
                | g::ECHO
                | g::ECHOE
                | g::ECHOK
                | g::ECHOCTL
                | g::ECHOKE
                | g::IEXTEN,
            line: 0,
            cc,
        }
    }

    /// The user-memory encoding.
    pub fn to_bytes(self) -> [u8; TERMIOS_SIZE] {
        let mut out = [0u8; TERMIOS_SIZE];
        for (i, word) in [self.iflag, self.oflag, self.cflag, self.lflag]
            .iter()
            .enumerate()
        {
            out[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
        }
        out[16] = self.line;
        out[17..].copy_from_slice(&self.cc);
        out
    }

    /// Decodes the user-memory encoding.
    pub fn from_bytes(bytes: &[u8; TERMIOS_SIZE]) -> Self {
        let word = |i: usize| u32::from_le_bytes(bytes[i * 4..i * 4 + 4].try_into().expect("4"));
        let mut cc = [0u8; 19];
        cc.copy_from_slice(&bytes[17..]);
        Self {
            iflag: word(0),
            oflag: word(1),
            cflag: word(2),
            lflag: word(3),
            line: bytes[16],
            cc,
        }
    }

    fn cc(&self, index: u32) -> u8 {
        self.cc[index as usize]
    }

    fn l(&self, flag: u32) -> bool {
        self.lflag & flag != 0
    }

    fn i(&self, flag: u32) -> bool {
        self.iflag & flag != 0
    }

    /// Whether `c` is the control character at `index` (a zero entry is disabled, as
    /// `_POSIX_VDISABLE`).
    fn is(&self, c: u8, index: u32) -> bool {
        let v = self.cc(index);
        v != 0 && v == c
    }
}

/// Where a terminal's output goes.
enum Output {
    /// COM1.
    Serial,
    /// The screen.
    Screen,
    /// Both (the kernel console).
    Both,
    /// A pseudo-terminal's master side.
    Pty(alloc::sync::Weak<pty::Pty>),
}

/// What the discipline holds.
struct State {
    termios: Termios,
    /// Rows, columns, x pixels, y pixels.
    winsize: [u16; 4],
    /// The line being edited (canonical mode).
    line: Vec<u8>,
    /// Finished lines not yet read (canonical mode); an end-of-file is a line without a
    /// terminator (empty at the start of a line: `read` returns 0).
    lines: VecDeque<Vec<u8>>,
    /// Unread input (raw mode).
    raw: VecDeque<u8>,
    /// The next input byte is taken literally (`VLNEXT`).
    literal: bool,
    /// Output stopped by `VSTOP` or `TCOOFF`.
    stopped: bool,
    /// When the last input byte came (for `VTIME`).
    last_input_ns: u64,
    /// The foreground process group (0: none yet).
    pgrp: u32,
    /// The session it is the controlling terminal of (0: none).
    session: u32,
    /// Its hardware went away (a pty whose master closed): reads see end of file.
    hung_up: bool,
}

/// A terminal.
pub struct Tty {
    /// Its name under `/dev` (`ttyS0`, `tty1`, `console`, `pts/3`).
    pub name: String,
    state: Mutex<State>,
    output: Output,
    /// Woken when input becomes readable, or output may go on.
    queue: WaitQueue,
    /// Whether it was ever opened (its input then stops going to the console).
    opened: AtomicBool,
    /// Open files on it.
    opens: AtomicUsize,
}

/// The actions input leaves to do once the discipline's lock is dropped.
#[derive(Default)]
struct Effects {
    echo: Vec<u8>,
    signals: Vec<u8>,
    /// Input was discarded (ISIG without `NOFLSH`).
    flushed: bool,
}

impl Tty {
    fn new(name: &str, output: Output) -> Self {
        Self {
            name: name.into(),
            state: Mutex::new(State {
                termios: Termios::standard(),
                winsize: [25, 80, 0, 0],
                line: Vec::new(),
                lines: VecDeque::new(),
                raw: VecDeque::new(),
                literal: false,
                stopped: false,
                last_input_ns: 0,
                pgrp: 0,
                session: 0,
                hung_up: false,
            }),
            output,
            queue: WaitQueue::new(),
            opened: AtomicBool::new(false),
            opens: AtomicUsize::new(0),
        }
    }

    /// Its settings.
    pub fn termios(&self) -> Termios {
        self.state.lock().termios
    }

    /// Its foreground process group (0 if none).
    pub fn pgrp(&self) -> u32 {
        self.state.lock().pgrp
    }

    /// Sets the window size and tells the foreground group (`SIGWINCH`) if it changed.
    pub fn set_winsize(&self, size: [u16; 4]) {
        let pgrp = {
            let mut s = self.state.lock();
            if s.winsize == size {
                return;
            }
            s.winsize = size;
            s.pgrp
        };
        signal_group(pgrp, signal::SIGWINCH);
    }

    /// The queue a reader or a `poll` waits on.
    pub fn queue(&self) -> &WaitQueue {
        &self.queue
    }

    /// Feeds input through the line discipline (from the input task, or a pty's master).
    pub fn receive(&self, bytes: &[u8]) {
        let mut fx = Effects::default();
        let pgrp = {
            let mut s = self.state.lock();
            for &b in bytes {
                s.input(b, &mut fx);
            }
            s.pgrp
        };
        if !fx.echo.is_empty() {
            self.emit(&fx.echo);
        }
        for sig in fx.signals {
            signal_group(pgrp, sig);
        }
        let _ = fx.flushed;
        self.queue.wake_all();
    }

    /// Writes output as the terminal shows it (after output processing).
    fn emit(&self, bytes: &[u8]) {
        let oflag = self.state.lock().termios.oflag;
        let cooked;
        let out = if oflag & g::OPOST != 0 && oflag & g::ONLCR != 0 && bytes.contains(&b'\n') {
            let mut v = Vec::with_capacity(bytes.len() + 16);
            for &b in bytes {
                if b == b'\n' {
                    v.push(b'\r');
                }
                v.push(b);
            }
            cooked = v;
            &cooked[..]
        } else {
            bytes
        };
        match &self.output {
            Output::Serial => hal::serial::write_bytes(out),
            Output::Screen => crate::console::write_str(&String::from_utf8_lossy(out)),
            Output::Both => {
                hal::serial::write_bytes(out);
                crate::console::write_str(&String::from_utf8_lossy(out));
            }
            Output::Pty(p) => {
                if let Some(p) = p.upgrade() {
                    p.to_master(out);
                }
            }
        }
    }

    /// Whether it has input a `read` would return now.
    pub fn readable(&self) -> bool {
        let s = self.state.lock();
        s.hung_up
            || if s.termios.l(g::ICANON) {
                !s.lines.is_empty()
            } else {
                !s.raw.is_empty() || s.termios.cc(g::VMIN) == 0
            }
    }

    /// Job control for a process touching its terminal: `Ok` if it may go on; else it is in
    /// a background group of the terminal's session, and gets `sig` (the call restarts once
    /// the group is continued), or `EIO` if it blocks or ignores `sig` (`ok_if_ignored`
    /// lets writes and settings go on instead, as Linux does for `SIGTTOU`).
    fn job_check(&self, current: &Current, sig: u8, ok_if_ignored: bool) -> Result<(), u32> {
        let process = current.process();
        let is_ctty = process
            .ctty
            .lock()
            .as_ref()
            .is_some_and(|t| core::ptr::eq(&**t, self));
        if !is_ctty {
            return Ok(());
        }
        let pgrp = self.state.lock().pgrp;
        let mine = process.pgid.load(Ordering::Relaxed);
        if pgrp == 0 || pgrp == mine {
            return Ok(());
        }
        if signal::blocked_or_ignored(current, sig) {
            return if ok_if_ignored { Ok(()) } else { Err(e::EIO) };
        }
        signal_group(mine, sig);
        Err(signal::ERESTARTSYS)
    }

    /// `read(2)`: a line in canonical mode; in raw mode as `VMIN` and `VTIME` say.
    pub fn read(&self, current: &Current, out: &mut [u8], nonblock: bool) -> Result<usize, u32> {
        self.job_check(current, signal::SIGTTIN, false)?;
        if out.is_empty() {
            return Ok(0);
        }
        let mut first_wait_deadline: Option<u64> = None;
        loop {
            // Taken before looking: input after the look wakes the queue again.
            let wakes = self.queue.wakes();
            let deadline = {
                let mut s = self.state.lock();
                if s.termios.l(g::ICANON) {
                    if let Some(line) = s.lines.front_mut() {
                        let n = out.len().min(line.len());
                        out[..n].copy_from_slice(&line[..n]);
                        if n == line.len() {
                            s.lines.pop_front();
                        } else {
                            line.drain(..n);
                        }
                        return Ok(n);
                    }
                    None
                } else {
                    let min = usize::from(s.termios.cc(g::VMIN)).min(out.len());
                    let time_ns = u64::from(s.termios.cc(g::VTIME)) * 100_000_000;
                    let have = s.raw.len();
                    let now = crate::time::now_ns();
                    let timed_out = |since: u64| time_ns > 0 && now >= since + time_ns;
                    let done = if min == 0 {
                        // Any byte, or the timer (started by the read) ran out.
                        have > 0 || time_ns == 0 || first_wait_deadline.is_some_and(|d| now >= d)
                    } else {
                        have >= min || (have > 0 && timed_out(s.last_input_ns))
                    };
                    if done {
                        let n = out.len().min(have);
                        for (slot, b) in out.iter_mut().zip(s.raw.drain(..n)) {
                            *slot = b;
                        }
                        return Ok(n);
                    }
                    if time_ns == 0 {
                        None
                    } else if min == 0 {
                        Some(*first_wait_deadline.get_or_insert(now + time_ns))
                    } else if have > 0 {
                        Some(s.last_input_ns + time_ns)
                    } else {
                        None
                    }
                }
            };
            if self.state.lock().hung_up {
                return Ok(0);
            }
            if nonblock {
                return Err(e::EAGAIN);
            }
            let ready = || self.queue.wakes() != wakes;
            if sched::wait(&current.task, &[&self.queue], deadline, ready) == Wait::Interrupted {
                return Err(signal::ERESTARTSYS);
            }
        }
    }

    /// `write(2)`: output processing (`ONLCR`), waiting while output is stopped.
    pub fn write(&self, current: &Current, data: &[u8], nonblock: bool) -> Result<usize, u32> {
        if self.state.lock().termios.l(g::TOSTOP) {
            self.job_check(current, signal::SIGTTOU, true)?;
        }
        if self.state.lock().hung_up {
            return Err(e::EIO);
        }
        loop {
            if !self.state.lock().stopped {
                break;
            }
            if nonblock {
                return Err(e::EAGAIN);
            }
            let go = || !self.state.lock().stopped;
            if sched::wait(&current.task, &[&self.queue], None, go) == Wait::Interrupted {
                return Err(signal::ERESTARTSYS);
            }
        }
        if let Output::Pty(p) = &self.output
            && let Some(p) = p.upgrade()
            && p.full()
        {
            if nonblock {
                return Err(e::EAGAIN);
            }
            let room = || !p.full();
            if sched::wait(&current.task, &[p.room()], None, room) == Wait::Interrupted {
                return Err(signal::ERESTARTSYS);
            }
        }
        self.emit(data);
        Ok(data.len())
    }

    /// Bytes a `read` could take now (`FIONREAD`).
    pub fn unread(&self) -> usize {
        let s = self.state.lock();
        if s.termios.l(g::ICANON) {
            s.lines.iter().map(Vec::len).sum()
        } else {
            s.raw.len()
        }
    }

    /// Discards unread input.
    fn flush_input(&self) {
        let mut s = self.state.lock();
        s.line.clear();
        s.lines.clear();
        s.raw.clear();
    }

    /// New settings; switching canonical mode off keeps what was typed readable.
    fn set_termios(&self, t: Termios) {
        let mut s = self.state.lock();
        let was_canon = s.termios.l(g::ICANON);
        s.termios = t;
        if was_canon && !t.l(g::ICANON) {
            let lines: Vec<Vec<u8>> = s.lines.drain(..).collect();
            for line in lines {
                s.raw.extend(line);
            }
            let line = core::mem::take(&mut s.line);
            s.raw.extend(line);
        } else if !was_canon && t.l(g::ICANON) && !s.raw.is_empty() {
            let raw: Vec<u8> = s.raw.drain(..).collect();
            s.lines.push_back(raw);
        }
        if !t.i(g::IXON) {
            s.stopped = false;
        }
        drop(s);
        self.queue.wake_all();
    }

    /// An open of it: counted, and input routed to it from now on.
    pub fn opened(&self) {
        self.opens.fetch_add(1, Ordering::AcqRel);
        self.opened.store(true, Ordering::Release);
    }

    /// The last close of one of its open files.
    pub fn closed(&self) {
        self.opens.fetch_sub(1, Ordering::AcqRel);
    }

    /// How many open files it has.
    pub fn open_count(&self) -> usize {
        self.opens.load(Ordering::Acquire)
    }

    /// Its hardware went away: readers see end of file, writers `EIO`, and the session is
    /// told (`SIGHUP` and `SIGCONT` to the foreground group).
    pub fn hang_up(&self) {
        log::debug!("tty {}: hung up", self.name);
        let pgrp = {
            let mut s = self.state.lock();
            s.hung_up = true;
            s.pgrp
        };
        self.queue.wake_all();
        signal_group(pgrp, signal::SIGHUP);
        signal_group(pgrp, signal::SIGCONT);
    }

    /// Makes it the controlling terminal of `process`'s session (which must have none).
    fn attach(self: &Arc<Self>, process: &Arc<Process>) {
        let sid = process.sid.load(Ordering::Relaxed);
        {
            let mut s = self.state.lock();
            s.session = sid;
            s.pgrp = process.pgid.load(Ordering::Relaxed);
        }
        *process.ctty.lock() = Some(Arc::clone(self));
    }

    /// Called at open: a session leader without a controlling terminal acquires this one
    /// unless `O_NOCTTY` (the kernel console never becomes one, as on Linux).
    pub fn open_by(self: &Arc<Self>, current: &Current, flags: u32) {
        self.opened();
        let process = current.process();
        if flags & g::O_NOCTTY != 0
            || core::ptr::eq(&**self, &**console())
            || process.sid.load(Ordering::Relaxed) != process.pid
            || process.ctty.lock().is_some()
            || self.state.lock().session != 0
        {
            return;
        }
        self.attach(process);
    }

    /// Terminal ioctls.
    pub fn ioctl(self: &Arc<Self>, current: &Current, request: u32, arg: u64) -> Result<u64, u32> {
        use hal::user::{UserPtr, copy_from_user, copy_to_user};
        let fault = |_| e::EFAULT;
        let read_i32 = || UserPtr::<i32>::new(arg).read().map_err(fault);
        let process = current.process();
        match request {
            io::TCGETS => {
                let bytes = self.termios().to_bytes();
                copy_to_user(arg, &bytes).map_err(fault)?;
                Ok(0)
            }
            io::TCSETS | io::TCSETSW | io::TCSETSF => {
                let mut bytes = [0u8; TERMIOS_SIZE];
                copy_from_user(arg, &mut bytes).map_err(fault)?;
                self.job_check(current, signal::SIGTTOU, true)?;
                if request == io::TCSETSF {
                    self.flush_input();
                }
                self.set_termios(Termios::from_bytes(&bytes));
                Ok(0)
            }
            io::TIOCGWINSZ => {
                let w = self.state.lock().winsize;
                let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
                copy_to_user(arg, &bytes).map_err(fault)?;
                Ok(0)
            }
            io::TIOCSWINSZ => {
                let mut bytes = [0u8; 8];
                copy_from_user(arg, &mut bytes).map_err(fault)?;
                let word = |i: usize| u16::from_le_bytes([bytes[i * 2], bytes[i * 2 + 1]]);
                self.set_winsize([word(0), word(1), word(2), word(3)]);
                Ok(0)
            }
            io::TIOCGPGRP => {
                if !self.is_ctty_of(process) {
                    return Err(e::ENOTTY);
                }
                let pgrp = self.pgrp();
                UserPtr::<i32>::new(arg).write(pgrp as i32).map_err(fault)?;
                Ok(0)
            }
            io::TIOCSPGRP => {
                let pgrp = read_i32()?;
                if !self.is_ctty_of(process) {
                    return Err(e::ENOTTY);
                }
                self.job_check(current, signal::SIGTTOU, true)?;
                if pgrp < 0 {
                    return Err(e::EINVAL);
                }
                let sid = process.sid.load(Ordering::Relaxed);
                let exists = process::all().iter().any(|p| {
                    p.pgid.load(Ordering::Relaxed) == pgrp as u32
                        && p.sid.load(Ordering::Relaxed) == sid
                        && p.exit.lock().is_none()
                });
                if !exists {
                    return Err(e::EPERM);
                }
                self.state.lock().pgrp = pgrp as u32;
                Ok(0)
            }
            io::TIOCGSID => {
                let session = self.state.lock().session;
                if !self.is_ctty_of(process) || session == 0 {
                    return Err(e::ENOTTY);
                }
                UserPtr::<i32>::new(arg)
                    .write(session as i32)
                    .map_err(fault)?;
                Ok(0)
            }
            io::TIOCSCTTY => {
                if self.is_ctty_of(process) {
                    return Ok(0);
                }
                if process.sid.load(Ordering::Relaxed) != process.pid
                    || process.ctty.lock().is_some()
                {
                    return Err(e::EPERM);
                }
                let owner = self.state.lock().session;
                if owner != 0 {
                    // Stealing it from another session: root may, with arg 1.
                    if arg != 1 {
                        return Err(e::EPERM);
                    }
                    for p in process::all() {
                        if p.sid.load(Ordering::Relaxed) == owner {
                            *p.ctty.lock() = None;
                        }
                    }
                }
                self.attach(process);
                Ok(0)
            }
            io::TIOCNOTTY => {
                if !self.is_ctty_of(process) {
                    return Err(e::ENOTTY);
                }
                let leader = process.sid.load(Ordering::Relaxed) == process.pid;
                *process.ctty.lock() = None;
                if leader {
                    self.disown();
                }
                Ok(0)
            }
            io::FIONREAD => {
                UserPtr::<i32>::new(arg)
                    .write(self.unread() as i32)
                    .map_err(fault)?;
                Ok(0)
            }
            io::TCFLSH => {
                match arg as u32 {
                    g::TCIFLUSH | g::TCIOFLUSH => self.flush_input(),
                    g::TCOFLUSH => {}
                    _ => return Err(e::EINVAL),
                }
                Ok(0)
            }
            io::TCXONC => {
                match arg as u32 {
                    g::TCOOFF => self.state.lock().stopped = true,
                    g::TCOON => self.state.lock().stopped = false,
                    g::TCIOFF | g::TCION => {}
                    _ => return Err(e::EINVAL),
                }
                self.queue.wake_all();
                Ok(0)
            }
            // tcdrain and tcsendbreak: output is written synchronously.
            io::TCSBRK | io::TCSBRKP => Ok(0),
            io::TIOCOUTQ => {
                UserPtr::<i32>::new(arg).write(0).map_err(fault)?;
                Ok(0)
            }
            _ => Err(e::ENOTTY),
        }
    }

    fn is_ctty_of(&self, process: &Process) -> bool {
        process
            .ctty
            .lock()
            .as_ref()
            .is_some_and(|t| core::ptr::eq(&**t, self))
    }

    /// Its session let go of it: no session, no foreground group.
    fn disown(&self) {
        let (pgrp, session) = {
            let mut s = self.state.lock();
            let old = (s.pgrp, s.session);
            s.pgrp = 0;
            s.session = 0;
            old
        };
        signal_group(pgrp, signal::SIGHUP);
        signal_group(pgrp, signal::SIGCONT);
        for p in process::all() {
            if p.sid.load(Ordering::Relaxed) == session {
                let mut ctty = p.ctty.lock();
                if ctty.as_ref().is_some_and(|t| core::ptr::eq(&**t, self)) {
                    *ctty = None;
                }
            }
        }
    }
}

impl State {
    /// Echoes `c` as the terminal shows it: control characters as `^X` with `ECHOCTL`.
    fn echo_char(&self, c: u8, fx: &mut Effects) {
        if !self.termios.l(g::ECHO) {
            return;
        }
        if self.termios.l(g::ECHOCTL) && (c < 0x20 && c != b'\t' && c != b'\n' || c == 0x7f) {
            fx.echo.push(b'^');
            fx.echo.push(c ^ 0x40);
        } else {
            fx.echo.push(c);
        }
    }

    /// Erases the last character of the line (and its echo).
    fn erase_one(&mut self, fx: &mut Effects) -> bool {
        let Some(mut c) = self.line.pop() else {
            return false;
        };
        // A whole UTF-8 character.
        while c & 0xc0 == 0x80 {
            match self.line.pop() {
                Some(b) => c = b,
                None => break,
            }
        }
        if self.termios.l(g::ECHO) && self.termios.l(g::ECHOE) {
            let width = if self.termios.l(g::ECHOCTL) && (c < 0x20 && c != b'\t' || c == 0x7f) {
                2
            } else {
                1
            };
            for _ in 0..width {
                fx.echo.extend_from_slice(b"\x08 \x08");
            }
        }
        true
    }

    /// One input byte through the discipline.
    fn input(&mut self, mut c: u8, fx: &mut Effects) {
        self.last_input_ns = crate::time::now_ns();
        let t = self.termios;
        if self.literal {
            self.literal = false;
            self.put(c, fx);
            return;
        }
        if t.i(g::ISTRIP) {
            c &= 0x7f;
        }
        if c == b'\r' {
            if t.i(g::IGNCR) {
                return;
            }
            if t.i(g::ICRNL) {
                c = b'\n';
            }
        } else if c == b'\n' && t.i(g::INLCR) {
            c = b'\r';
        }
        if t.i(g::IXON) {
            if t.is(c, g::VSTOP) {
                self.stopped = true;
                return;
            }
            if t.is(c, g::VSTART) {
                self.stopped = false;
                return;
            }
        }
        if t.l(g::ISIG) {
            let sig = if t.is(c, g::VINTR) {
                Some(signal::SIGINT)
            } else if t.is(c, g::VQUIT) {
                Some(signal::SIGQUIT)
            } else if t.is(c, g::VSUSP) {
                Some(signal::SIGTSTP)
            } else {
                None
            };
            if let Some(sig) = sig {
                if !t.l(g::NOFLSH) {
                    self.line.clear();
                    self.lines.clear();
                    self.raw.clear();
                    fx.flushed = true;
                }
                self.echo_char(c, fx);
                fx.signals.push(sig);
                return;
            }
        }
        if t.l(g::ICANON) {
            if t.is(c, g::VERASE) {
                self.erase_one(fx);
                return;
            }
            if t.l(g::IEXTEN) && t.is(c, g::VWERASE) {
                while self.line.last().is_some_and(|b| b.is_ascii_whitespace()) {
                    self.erase_one(fx);
                }
                while self.line.last().is_some_and(|b| !b.is_ascii_whitespace()) {
                    self.erase_one(fx);
                }
                return;
            }
            if t.is(c, g::VKILL) {
                if t.l(g::ECHOKE) && t.l(g::ECHOE) {
                    while self.erase_one(fx) {}
                } else {
                    self.line.clear();
                    self.echo_char(c, fx);
                    if t.l(g::ECHOK) && t.l(g::ECHO) {
                        fx.echo.push(b'\n');
                    }
                }
                return;
            }
            if t.l(g::IEXTEN) && t.is(c, g::VLNEXT) {
                self.literal = true;
                return;
            }
            if t.l(g::IEXTEN) && t.is(c, g::VREPRINT) {
                self.echo_char(c, fx);
                if t.l(g::ECHO) {
                    fx.echo.push(b'\n');
                    fx.echo.extend_from_slice(&self.line);
                }
                return;
            }
            if t.is(c, g::VEOF) {
                let line = core::mem::take(&mut self.line);
                self.lines.push_back(line);
                return;
            }
            if c == b'\n' || t.is(c, g::VEOL) || t.is(c, g::VEOL2) {
                let mut line = core::mem::take(&mut self.line);
                line.push(c);
                self.lines.push_back(line);
                if t.l(g::ECHO) || (c == b'\n' && t.l(g::ECHONL)) {
                    fx.echo.push(c);
                }
                return;
            }
        }
        self.put(c, fx);
    }

    /// Appends an ordinary byte: to the line (canonical) or the raw queue.
    fn put(&mut self, c: u8, fx: &mut Effects) {
        if self.termios.l(g::ICANON) {
            if self.line.len() < MAX_LINE {
                self.line.push(c);
                self.echo_char(c, fx);
            }
        } else if self.raw.len() < MAX_RAW {
            self.raw.push_back(c);
            self.echo_char(c, fx);
        }
    }
}

/// Opens the terminal `id` names (through `node`): the target of a new open file. With a
/// caller, a session leader without a controlling terminal may acquire it.
pub fn open_target(
    current: Option<&Current>,
    id: TtyId,
    node: Arc<Node>,
    flags: u32,
) -> Result<Target, u32> {
    start_input();
    let tty = match id {
        TtyId::Console => Arc::clone(console()),
        TtyId::Serial => Arc::clone(serial()),
        TtyId::Screen(_) => Arc::clone(screen()),
        TtyId::Current => current
            .and_then(|c| c.process().ctty.lock().clone())
            .ok_or(e::ENXIO)?,
        TtyId::Ptmx => return Ok(Target::PtyMaster(pty::Pty::create()?, node)),
        TtyId::Pts(n) => pty::Pty::find(n).ok_or(e::EIO)?.open_slave()?,
    };
    match current {
        Some(c) if id != TtyId::Current => tty.open_by(c, flags),
        _ => tty.opened(),
    }
    Ok(Target::Tty(tty, node))
}

/// Sends `sig` to every process of group `pgrp` (none if 0).
pub fn signal_group(pgrp: u32, sig: u8) {
    if pgrp == 0 {
        return;
    }
    for p in process::all() {
        if p.pgid.load(Ordering::Relaxed) == pgrp && p.exit.lock().is_none() {
            signal::send_process(&p, sig);
        }
    }
}

/// A session leader ended: its controlling terminal hangs up on the foreground group
/// (`SIGHUP`, then `SIGCONT`) and belongs to no session any more.
pub fn session_ended(leader: &Process) {
    let tty = leader.ctty.lock().clone();
    if let Some(tty) = tty
        && tty.state.lock().session == leader.pid
    {
        tty.disown();
    }
}

static SERIAL: Once<Arc<Tty>> = Once::new();
static SCREEN: Once<Arc<Tty>> = Once::new();
static CONSOLE: Once<Arc<Tty>> = Once::new();

/// `ttyS0`.
pub fn serial() -> &'static Arc<Tty> {
    SERIAL.call_once(|| Arc::new(Tty::new("ttyS0", Output::Serial)))
}

/// `tty1` (also `tty0`): the screen and the keyboard.
pub fn screen() -> &'static Arc<Tty> {
    SCREEN.call_once(|| {
        let tty = Tty::new("tty1", Output::Screen);
        let size = crate::console::CONSOLE.lock().as_ref().map(|c| c.size());
        if let Some((cols, rows)) = size {
            tty.state.lock().winsize = [rows as u16, cols as u16, 0, 0];
        }
        Arc::new(tty)
    })
}

/// `console`: the kernel console (output to serial and screen).
pub fn console() -> &'static Arc<Tty> {
    CONSOLE.call_once(|| Arc::new(Tty::new("console", Output::Both)))
}

/// Starts the task that feeds input to the terminals (once; on the first open).
pub fn start_input() {
    static STARTED: Once<()> = Once::new();
    STARTED.call_once(|| {
        if let Err(e) = sched::spawn(input_task) {
            log::error!("tty: no input task: {e:?}");
        }
    });
}

/// Takes what the keyboard and COM1 have queued and gives it to their terminals.
fn input_task(me: Arc<sched::Task>) {
    loop {
        let mut buffer = [0u8; 64];
        let mut idle = true;
        for source in [crate::input::Source::Serial, crate::input::Source::Keyboard] {
            let n = crate::input::take(source, &mut buffer);
            if n == 0 {
                continue;
            }
            idle = false;
            let own = match source {
                crate::input::Source::Serial => serial(),
                crate::input::Source::Keyboard => screen(),
            };
            let tty = if own.opened.load(Ordering::Acquire) {
                own
            } else {
                console()
            };
            tty.receive(&buffer[..n]);
        }
        if idle {
            sched::wait(&me, &[crate::input::queue()], None, crate::input::pending);
            me.clear_interrupt();
        }
    }
}
