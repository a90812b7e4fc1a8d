//! Arms the chipset's TCO watchdog before an update slot boots, so a hang rolls back.
//!
//! A release that hangs never marks itself good and never reboots, so without a watchdog its
//! tries would never be used up. On q35 (and real ICH9-family chipsets) the LPC bridge at
//! 00:1f.0 holds the TCO watchdog in its ACPI I/O block (`PMBASE + 0x60`): a 10-bit timer of
//! 0.6 s ticks that, after running out twice without a reload, resets the machine — unless
//! the chipset configuration register GCS (`RCBA + 0x3410`) has `NO_REBOOT` set, as it does
//! after power-on. The loader clears `NO_REBOOT`, sets the timeout, reloads and starts the
//! timer; the kernel's driver reloads it only while the system is healthy and can neither
//! stop it nor change its timeout. Where no ICH9 LPC bridge is found the boot goes on without
//! one, and the log says so.

use x86_64::instructions::port::Port;

/// PCI configuration mechanism #1.
const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;
/// The ICH9 LPC bridge: Intel, device 0x2918, at 00:1f.0.
const LPC_ID: u32 = 0x2918_8086;
const LPC_DEVICE: u32 = 0x1f;
/// LPC configuration registers: the ACPI I/O base, its enable, the root complex base.
const PMBASE: u8 = 0x40;
const ACPI_CNTL: u8 = 0x44;
const ACPI_EN: u32 = 1 << 7;
const RCBA: u8 = 0xf0;
const RCBA_EN: u32 = 1;
/// Where firmware usually puts RCBA (ICH9 datasheet default), when it did not enable it.
const RCBA_DEFAULT: u32 = 0xfed1_c000;
/// GCS in the chipset configuration registers, and its `NO_REBOOT` bit.
const GCS: u32 = 0x3410;
const NO_REBOOT: u32 = 1 << 5;
/// TCO registers, from `PMBASE + TCO`.
const TCO: u16 = 0x60;
const TCO_RLD: u16 = 0x00;
const TCO1_STS: u16 = 0x04;
const TCO2_STS: u16 = 0x06;
const TCO1_CNT: u16 = 0x08;
const TCO_TMR: u16 = 0x12;
const TMR_HLT: u16 = 1 << 11;
const TIMEOUT_STS: u16 = 1 << 3;
const SECOND_TO_STS: u16 = 1 << 1;

/// Ticks of 0.6 s per expiry; the reset comes at the second expiry, about 19 s after the last
/// reload — room for a slow (emulated) boot before the kernel's driver takes over.
pub const TICKS: u16 = 16;

fn config_read(offset: u8) -> u32 {
    let address = 0x8000_0000 | (LPC_DEVICE << 11) | u32::from(offset & 0xfc);
    // SAFETY: ports 0xCF8/0xCFC are PCI configuration mechanism #1, which x86 firmware leaves
    // working; reading a configuration register of the LPC bridge has no side effects.
    unsafe {
        Port::<u32>::new(CONFIG_ADDRESS).write(address);
        Port::<u32>::new(CONFIG_DATA).read()
    }
}

fn config_write(offset: u8, value: u32) {
    let address = 0x8000_0000 | (LPC_DEVICE << 11) | u32::from(offset & 0xfc);
    // SAFETY: as for `config_read`; the only register written is RCBA, to enable the chipset
    // configuration window at its datasheet address, which nothing else uses.
    unsafe {
        Port::<u32>::new(CONFIG_ADDRESS).write(address);
        Port::<u32>::new(CONFIG_DATA).write(value);
    }
}

/// Clears GCS's `NO_REBOOT`, so the second expiry resets the machine.
fn allow_reboot() {
    let mut rcba = config_read(RCBA);
    if rcba & RCBA_EN == 0 {
        rcba = RCBA_DEFAULT | RCBA_EN;
        config_write(RCBA, rcba);
    }
    let gcs = ((rcba & !0x3fff) + GCS) as usize as *mut u32;
    // SAFETY: with RCBA enabled the chipset configuration registers are an MMIO window at
    // its base, identity-mapped by UEFI, and GCS is an aligned 32-bit register in it; only
    // its NO_REBOOT bit changes.
    unsafe { gcs.write_volatile(gcs.read_volatile() & !NO_REBOOT) };
}

/// Arms the watchdog (about `2 * TICKS * 0.6` s to a reset unless reloaded); `false` when
/// there is none (no ICH9 LPC bridge, or its ACPI I/O block is off).
pub fn arm() -> bool {
    if config_read(0) != LPC_ID {
        log::warn!("watchdog: no ICH9 LPC bridge at 00:1f.0: a hanging release cannot roll back");
        return false;
    }
    let pmbase = config_read(PMBASE) & 0xff80;
    if pmbase == 0 || config_read(ACPI_CNTL) & ACPI_EN == 0 {
        log::warn!("watchdog: the ICH9 ACPI I/O block is off: a hanging release cannot roll back");
        return false;
    }
    allow_reboot();
    let base = pmbase as u16 + TCO;
    let port = |offset: u16| Port::<u16>::new(base + offset);
    // SAFETY: the ports are the TCO block of the ICH9 ACPI I/O space at PMBASE (read above
    // from the bridge itself); no firmware protocol the loader uses owns them, and setting
    // and starting the timer has no effect on memory.
    unsafe {
        let last = port(TCO2_STS).read();
        if last & SECOND_TO_STS != 0 {
            log::warn!("watchdog: the last boot ended in a watchdog reset");
        }
        port(TCO1_STS).write(TIMEOUT_STS);
        port(TCO2_STS).write(SECOND_TO_STS);
        port(TCO_TMR).write(TICKS);
        port(TCO_RLD).write(1);
        let cnt = port(TCO1_CNT).read();
        port(TCO1_CNT).write(cnt & !TMR_HLT);
    }
    log::info!(
        "watchdog: TCO armed ({} ms to a reset without a reload)",
        u32::from(TICKS) * 2 * 600
    );
    true
}
