//! Ctrl-C handling.
//!
//! QEMU and nested cargo share the terminal's process group, so they get Ctrl-C themselves.
//! The runner only notes it, so that it can stop its children cleanly, remove temporary files
//! and skip the remaining system tests instead of dying half-way.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler (once per process).
pub fn install() -> Result<()> {
    ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")
}

/// Whether Ctrl-C was pressed since the handler was installed.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
