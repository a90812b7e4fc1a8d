//! Per-CPU memory set-up an AP runs before anything else (switching to the kernel's page
//! tables and enabling the paging protections), registered by `hal::mm`.

use spin::Once;

static AP_START: Once<fn()> = Once::new();

/// Registers the function every AP calls first (hal's memory set-up is the only caller).
pub(crate) fn set_ap_start(hook: fn()) {
    AP_START.call_once(|| hook);
}

/// Runs the registered AP start hook, if any.
pub(crate) fn on_ap_start() {
    if let Some(hook) = AP_START.get() {
        hook();
    }
}
