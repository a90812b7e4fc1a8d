//! Switching the machine off (ACPI S5) and resetting it (the FADT reset register, then the
//! keyboard controller's reset line, then a triple fault, which [`triple_fault`] also offers
//! on its own for the test that tells the two apart).

use x86_64::{
    VirtAddr,
    instructions::{interrupts, tables::lidt},
    structures::DescriptorTablePointer,
};

use crate::{
    acpi::{self, Register, SleepType},
    port::{Port8, Port16, Port32},
};

/// PM1 control: SCI_EN (the firmware handed the machine to the OS in ACPI mode).
const SCI_EN: u16 = 1 << 0;
/// PM1 control: the SLP_TYP field.
const SLP_TYP_SHIFT: u16 = 10;
const SLP_TYP_MASK: u16 = 0b111 << SLP_TYP_SHIFT;
/// PM1 control: enter the sleep state SLP_TYP names.
const SLP_EN: u16 = 1 << 13;
/// PCI configuration mechanism #1: address and data ports.
const PCI_CONFIG_ADDRESS: u16 = 0xcf8;
const PCI_CONFIG_DATA: u16 = 0xcfc;

/// Why the machine could not be switched off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The ACPI tables were not parsed, or have no FADT.
    NoFadt,
    /// The FADT names no PM1a control port (hardware-reduced ACPI is not supported).
    NoPm1Control,
    /// The DSDT has no `\_S5` package.
    NoS5,
    /// Everything was written and the machine is still running.
    StillRunning,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoFadt => write!(f, "no ACPI FADT"),
            Self::NoPm1Control => write!(f, "the FADT names no PM1a control port"),
            Self::NoS5 => write!(f, "the DSDT defines no \\_S5 sleep state"),
            Self::StillRunning => write!(f, "the machine did not switch off"),
        }
    }
}

/// What [`shutdown`] will write where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShutdownPlan {
    /// PM1a control port.
    pub pm1a: u16,
    /// PM1b control port, if the machine has one.
    pub pm1b: Option<u16>,
    /// The `\_S5` sleep types.
    pub s5: SleepType,
    /// SMI command port and value to switch to ACPI mode first, if needed.
    pub acpi_enable: Option<(u16, u8)>,
}

/// How [`shutdown`] would switch the machine off, without doing it.
pub fn shutdown_plan() -> Result<ShutdownPlan, Error> {
    let platform = acpi::platform().ok_or(Error::NoFadt)?;
    let fadt = platform.fadt.ok_or(Error::NoFadt)?;
    let pm1a = fadt.pm1a_control.ok_or(Error::NoPm1Control)?;
    let s5 = platform.s5.ok_or(Error::NoS5)?;
    Ok(ShutdownPlan {
        pm1a,
        pm1b: fadt.pm1b_control,
        s5,
        acpi_enable: fadt.acpi_enable,
    })
}

fn pm1(port: u16) -> Port16 {
    // SAFETY: `port` is a PM1 control block named by the FADT; writes to it only change the
    // machine's power state, which is what the callers intend.
    unsafe { Port16::new(port) }
}

/// Enters ACPI S5 (soft off). Returns only if that is impossible or did not work.
pub fn shutdown() -> Error {
    let plan = match shutdown_plan() {
        Ok(plan) => plan,
        Err(error) => return error,
    };
    interrupts::disable();
    if let Some((smi, enable)) = plan.acpi_enable
        && pm1(plan.pm1a).read() & SCI_EN == 0
    {
        // SAFETY: the SMI command port named by the FADT; writing ACPI_ENABLE asks the
        // firmware to hand power management to the OS, as the ACPI specification describes.
        let mut smi = unsafe { Port8::new(smi) };
        smi.write(enable);
        for _ in 0..300 {
            if pm1(plan.pm1a).read() & SCI_EN != 0 {
                break;
            }
            crate::time::delay_ns(1_000_000);
        }
    }
    let enter = |port: u16, slp_typ: u8| {
        let mut control = pm1(port);
        let value =
            (control.read() & !(SLP_TYP_MASK | SLP_EN)) | (u16::from(slp_typ) << SLP_TYP_SHIFT);
        control.write(value);
        control.write(value | SLP_EN);
    };
    enter(plan.pm1a, plan.s5.a);
    if let Some(pm1b) = plan.pm1b {
        enter(pm1b, plan.s5.b);
    }
    crate::time::delay_ns(1_000_000_000);
    Error::StillRunning
}

/// Writes the FADT reset register; returns false if there is none usable.
fn reset_register() -> bool {
    let Some((register, value)) = acpi::platform().and_then(|p| p.fadt).and_then(|f| f.reset)
    else {
        return false;
    };
    match register {
        Register::Io(port) => {
            // SAFETY: the FADT names this port as the reset register; writing the reset
            // value resets the machine, which is the intent.
            unsafe { Port8::new(port) }.write(value);
        }
        Register::PciConfig {
            device,
            function,
            offset,
        } => {
            let address = 0x8000_0000
                | (u32::from(device & 0x1f) << 11)
                | (u32::from(function & 0x7) << 8)
                | u32::from(offset & 0xfc);
            // SAFETY: configuration mechanism #1 on bus 0 addresses the register the FADT
            // names as the reset register; writing it resets the machine, the intent.
            unsafe {
                Port32::new(PCI_CONFIG_ADDRESS).write(address);
                Port8::new(PCI_CONFIG_DATA + (offset & 3)).write(value);
            }
        }
        Register::Memory(_) => return false,
    }
    true
}

/// Resets the machine: the FADT reset register, then the keyboard controller's reset line,
/// then a triple fault (which resets every PC).
pub fn reboot() -> ! {
    interrupts::disable();
    if reset_register() {
        crate::time::delay_ns(100_000_000);
    }
    crate::ps2::pulse_reset();
    crate::time::delay_ns(100_000_000);
    triple_fault()
}

/// Resets the machine with a triple fault: loads an empty IDT and raises an exception. The
/// last resort of [`reboot`], and on its own the `test=triple-fault` run, which checks that
/// the runner tells a triple fault apart from a reset.
pub fn triple_fault() -> ! {
    interrupts::disable();
    let empty = DescriptorTablePointer {
        limit: 0,
        base: VirtAddr::zero(),
    };
    // SAFETY: deliberately loads an empty IDT and raises an exception: the CPU cannot deliver
    // it (#GP), cannot deliver that either (#DF), then not that (a triple fault) and resets,
    // or on QEMU with -no-reboot stops. No code of ours runs after the `int3`, so nothing
    // can depend on the IDT that was replaced.
    unsafe {
        lidt(&empty);
        core::arch::asm!("int3", options(nomem, nostack));
    }
    crate::cpu::halt_forever()
}
