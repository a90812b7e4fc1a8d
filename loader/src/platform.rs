//! Silencing interrupt sources before the kernel runs: the legacy PIC, the I/O APICs' Fixed and
//! Lowest-Priority redirection entries, and the local APIC timer.
//!
//! Runs after ExitBootServices, still on the firmware's identity map (nothing permanent is
//! mapped for these devices).

use x86_64::{instructions::port::PortWriteOnly, registers::model_specific::Msr};

use crate::{
    acpi::IoApic,
    cpu::{APIC_BASE_X2APIC, MSR_APIC_BASE},
};

/// Masks every IRQ of both 8259 PICs.
pub fn mask_pic() {
    // SAFETY: 0x21 and 0xA1 are the PICs' interrupt mask registers; boot services are gone and
    // the loader owns the machine. Masking has no memory effect.
    unsafe {
        PortWriteOnly::<u8>::new(0x21).write(0xFF);
        PortWriteOnly::<u8>::new(0xA1).write(0xFF);
    }
}

/// Masks each Fixed (000) or Lowest-Priority (001) redirection entry of every I/O APIC.
pub fn mask_io_apics(io_apics: &[IoApic]) {
    for io_apic in io_apics {
        let regs = IoApicRegs(io_apic.address);
        let max_entry = (regs.read(1) >> 16) & 0xFF;
        for i in 0..=max_entry {
            let reg = 0x10 + 2 * i;
            let low = regs.read(reg);
            let delivery = (low >> 8) & 0b111;
            if delivery <= 1 && low & (1 << 16) == 0 {
                regs.write(reg, low | (1 << 16));
            }
        }
    }
}

/// Masks the local APIC timer's LVT entry and stops the timer.
pub fn mask_lapic_timer() {
    // SAFETY: IA32_APIC_BASE exists on every x86-64 CPU.
    let apic_base = unsafe { Msr::new(MSR_APIC_BASE).read() };
    if apic_base & (1 << 11) == 0 {
        return; // APIC disabled: no timer interrupts.
    }
    if apic_base & APIC_BASE_X2APIC != 0 {
        // SAFETY: In x2APIC mode MSRs 0x832 (LVT timer) and 0x838 (initial count) exist;
        // masking and stopping the timer only stops its interrupts.
        unsafe {
            let mut lvt = Msr::new(0x832);
            lvt.write(lvt.read() | (1 << 16));
            Msr::new(0x838).write(0);
        }
    } else {
        let base = apic_base & 0x000F_FFFF_FFFF_F000;
        let lvt = (base + 0x320) as *mut u32;
        let initial_count = (base + 0x380) as *mut u32;
        // SAFETY: The xAPIC registers live at the base IA32_APIC_BASE names, identity-mapped
        // (uncached MMIO) by the firmware's page tables still in use; these are the LVT timer
        // and initial count registers, and writing them only stops timer interrupts.
        unsafe {
            lvt.write_volatile(lvt.read_volatile() | (1 << 16));
            initial_count.write_volatile(0);
        }
    }
}

/// An I/O APIC's indirect register window (IOREGSEL at +0, IOWIN at +0x10).
struct IoApicRegs(u64);

impl IoApicRegs {
    fn read(&self, reg: u32) -> u32 {
        // SAFETY: The address comes from the MADT's I/O APIC entry and is identity-mapped by
        // the firmware's page tables; selecting a register and reading the window has no side
        // effect beyond the selection.
        unsafe {
            ((self.0) as *mut u32).write_volatile(reg);
            ((self.0 + 0x10) as *const u32).read_volatile()
        }
    }

    fn write(&self, reg: u32, value: u32) {
        // SAFETY: As in `read`; the only register written is a redirection entry's low half,
        // to set its mask bit.
        unsafe {
            ((self.0) as *mut u32).write_volatile(reg);
            ((self.0 + 0x10) as *mut u32).write_volatile(value);
        }
    }
}
