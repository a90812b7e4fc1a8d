//! I/O APICs: route device interrupt lines (global system interrupts, GSIs) to a vector on a
//! CPU. Legacy ISA IRQs go through the MADT's interrupt source overrides first.

use alloc::vec::Vec;

use spin::Once;

use crate::{
    acpi::{IsaRoute, Signalling},
    mm::Mmio,
    sync::IrqMutex,
};

/// Register select (index) and window (data).
const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
const REG_VERSION: u32 = 0x01;
const REG_REDIRECTION: u32 = 0x10;
const ACTIVE_LOW: u32 = 1 << 13;
const LEVEL: u32 = 1 << 15;
const MASKED: u32 = 1 << 16;

/// Why an interrupt could not be routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The ACPI tables list no I/O APIC (or were not parsed).
    NoIoApic,
    /// An I/O APIC's registers could not be mapped.
    Map(u64),
    /// No I/O APIC serves this GSI.
    NoSuchGsi(u32),
    /// The vector is a CPU exception.
    BadVector(u8),
    /// The destination APIC id does not fit the 8-bit destination field.
    BadDestination(u32),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoIoApic => write!(f, "no I/O APIC"),
            Self::Map(phys) => write!(f, "cannot map the I/O APIC at {phys:#x}"),
            Self::NoSuchGsi(gsi) => write!(f, "no I/O APIC serves GSI {gsi}"),
            Self::BadVector(v) => write!(f, "vector {v} is a CPU exception"),
            Self::BadDestination(id) => write!(f, "APIC id {id} does not fit an I/O APIC route"),
        }
    }
}

/// One I/O APIC.
struct IoApic {
    gsi_base: u32,
    inputs: u32,
    /// Register select and window must be used as a pair.
    regs: IrqMutex<Mmio>,
}

impl IoApic {
    fn read(regs: &Mmio, register: u32) -> u32 {
        regs.write_u32(IOREGSEL, register);
        regs.read_u32(IOWIN)
    }

    fn write(regs: &Mmio, register: u32, value: u32) {
        regs.write_u32(IOREGSEL, register);
        regs.write_u32(IOWIN, value);
    }

    fn serves(&self, gsi: u32) -> bool {
        gsi >= self.gsi_base && gsi - self.gsi_base < self.inputs
    }
}

static IO_APICS: Once<Vec<IoApic>> = Once::new();

/// Maps every I/O APIC the MADT lists and masks all their inputs. Returns how many inputs
/// they have in total.
pub fn init() -> Result<u32, Error> {
    if let Some(apics) = IO_APICS.get() {
        return Ok(apics.iter().map(|a| a.inputs).sum());
    }
    let descs = crate::acpi::platform().map_or(&[][..], |p| &p.io_apics[..]);
    if descs.is_empty() {
        return Err(Error::NoIoApic);
    }
    let mut apics = Vec::with_capacity(descs.len());
    for desc in descs {
        let regs = crate::mm::map_mmio(desc.address, 0x20).map_err(|_| Error::Map(desc.address))?;
        let inputs = ((IoApic::read(&regs, REG_VERSION) >> 16) & 0xff) + 1;
        for input in 0..inputs {
            IoApic::write(&regs, REG_REDIRECTION + 2 * input, MASKED);
        }
        apics.push(IoApic {
            gsi_base: desc.gsi_base,
            inputs,
            regs: IrqMutex::new(regs),
        });
    }
    Ok(IO_APICS.call_once(|| apics).iter().map(|a| a.inputs).sum())
}

fn find(gsi: u32) -> Result<&'static IoApic, Error> {
    IO_APICS
        .get()
        .ok_or(Error::NoIoApic)?
        .iter()
        .find(|a| a.serves(gsi))
        .ok_or(Error::NoSuchGsi(gsi))
}

/// Routes `gsi` to fixed `vector` on the CPU with local APIC id `apic_id` and unmasks it.
pub fn route(gsi: u32, vector: u8, apic_id: u32, signalling: Signalling) -> Result<(), Error> {
    if vector < crate::trap::FIRST_IRQ_VECTOR {
        return Err(Error::BadVector(vector));
    }
    if apic_id > 0xff {
        return Err(Error::BadDestination(apic_id));
    }
    let apic = find(gsi)?;
    let register = REG_REDIRECTION + 2 * (gsi - apic.gsi_base);
    let mut low = u32::from(vector);
    if signalling.active_low {
        low |= ACTIVE_LOW;
    }
    if signalling.level {
        low |= LEVEL;
    }
    let regs = apic.regs.lock();
    // Masked while the destination changes, then the final low word unmasks it.
    IoApic::write(&regs, register, MASKED);
    IoApic::write(&regs, register + 1, apic_id << 24);
    IoApic::write(&regs, register, low);
    Ok(())
}

/// Routes legacy ISA IRQ `irq` (after the MADT's overrides) to `vector` on `apic_id`.
/// Returns the route taken.
pub fn route_isa(irq: u8, vector: u8, apic_id: u32) -> Result<IsaRoute, Error> {
    let route = crate::acpi::platform()
        .ok_or(Error::NoIoApic)?
        .isa_route(irq);
    self::route(route.gsi, vector, apic_id, route.signalling)?;
    Ok(route)
}

/// Masks or unmasks `gsi`.
pub fn set_masked(gsi: u32, masked: bool) -> Result<(), Error> {
    let apic = find(gsi)?;
    let register = REG_REDIRECTION + 2 * (gsi - apic.gsi_base);
    let regs = apic.regs.lock();
    let low = IoApic::read(&regs, register);
    IoApic::write(
        &regs,
        register,
        if masked { low | MASKED } else { low & !MASKED },
    );
    Ok(())
}
