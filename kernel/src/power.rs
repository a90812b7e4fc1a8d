//! Switching off and restarting the machine.

/// Powers the machine off through ACPI S5, after stopping the other CPUs. If that fails the
/// reason is logged and this CPU halts.
pub fn shutdown() -> ! {
    log::info!("power: switching off");
    hal::apic::stop_other_cpus();
    let error = hal::power::shutdown();
    log::error!("power: cannot switch off: {error}; halting");
    hal::cpu::halt_forever()
}

/// Resets the machine (FADT reset register, keyboard controller, triple fault).
pub fn reboot() -> ! {
    log::info!("power: restarting");
    hal::apic::stop_other_cpus();
    hal::power::reboot()
}

/// Resets the machine with a deliberate triple fault (`test=triple-fault`): a reset the
/// runner must not mistake for the one [`reboot`] makes.
pub fn triple_fault() -> ! {
    log::info!("power: triple-faulting on purpose");
    hal::apic::stop_other_cpus();
    hal::power::triple_fault()
}

/// Tests of the power paths (without using them).
#[cfg(feature = "tests")]
pub mod tests {
    use crate::{
        check,
        ktest::{TestResult, ktest},
    };

    /// ACPI power-off is possible: a PM1a control port and the `\_S5` sleep type are known
    /// (QEMU's q35 DSDT defines `\_S5` as package {0, 0}), and a reset register exists.
    #[ktest("power-shutdown-path")]
    pub fn shutdown_path() -> TestResult {
        let plan = hal::power::shutdown_plan();
        check!(plan.is_ok(), "no ACPI power-off: {:?}", plan.err());
        let reset = hal::acpi::platform()
            .and_then(|p| p.fadt)
            .and_then(|f| f.reset);
        check!(reset.is_some(), "the FADT has no reset register");
        Ok(())
    }
}
