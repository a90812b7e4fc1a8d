//! `boot_to_prompt`: QEMU start to the shell's prompt on the serial port, for `cargo run`'s
//! boot of Evergreen (init, then a login shell on each terminal) and for Linux booting the
//! same busybox as a login shell on its serial console, with the same `/etc/profile` (so
//! the same prompt), on the same QEMU machine.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::cpio::Cpio;
use crate::{
    qemu::{Qemu, RunOptions},
    watch,
};

/// The prompt both systems print (`PS1` of the image's `/etc/profile`).
pub const PROMPT: &str = "root@evergreen:~# ";
/// The figure's name.
pub const NAME: &str = "boot_to_prompt";

/// The Linux initramfs: busybox, the profile, and an `/init` that mounts what a shell
/// needs and starts a login shell on the console with it as controlling terminal.
pub fn linux_initrd(busybox: &[u8]) -> Vec<u8> {
    let init = "#!/bin/busybox sh\n\
        /bin/busybox --install -s /bin\n\
        mount -t proc proc /proc\n\
        mount -t devtmpfs dev /dev\n\
        hostname evergreen\n\
        export HOME=/root\n\
        cd /root\n\
        exec setsid cttyhack sh -l\n";
    let mut cpio = Cpio::new();
    cpio.dir("dev", 0o755)
        .char_device("dev/console", 0o600, (5, 1))
        .dir("proc", 0o755)
        .dir("bin", 0o755)
        .dir("root", 0o700)
        .dir("etc", 0o755)
        .file("etc/profile", 0o644, crate::rootfs::PROFILE.as_bytes())
        .file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n")
        .file("bin/busybox", 0o755, busybox)
        .file("init", 0o755, init.as_bytes());
    cpio.finish()
}

/// Boots `machine` and times QEMU's start to [`PROMPT`] in the serial log (ms).
pub fn measure(qemu: &Qemu, machine: &RunOptions, log: &Path) -> Result<f64> {
    let _ = std::fs::remove_file(log);
    let start = Instant::now();
    let mut running = qemu.spawn(machine)?;
    let deadline = start + Duration::from_secs(300);
    let result = loop {
        let text = std::fs::read(log).unwrap_or_default();
        if String::from_utf8_lossy(&text).contains(PROMPT) {
            break Ok(start.elapsed().as_secs_f64() * 1000.0);
        }
        if let Some(status) = running.child.try_wait()? {
            break Err(anyhow::anyhow!(
                "QEMU ended ({status}) before the prompt (serial log: {})",
                log.display()
            ));
        }
        if Instant::now() >= deadline {
            break Err(anyhow::anyhow!(
                "no prompt within 300 s (serial log: {})",
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    watch::terminate(&mut running.child, Duration::from_secs(3)).context("stopping QEMU")?;
    match result {
        Ok(ms) => Ok(ms),
        Err(e) => bail!(e),
    }
}
