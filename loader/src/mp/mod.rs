//! The MP request: starting the application processors and parking them for the kernel
//! (the "SMP (multiprocessor) Feature" of Limine's `PROTOCOL.md`, named MP in base revision 3,
//! and "Machine state at entry" for the state an AP is released in; the sequence is written
//! down in `loader/README.md`, "Application processors").
//!
//! [`plan`] runs before ExitBootServices: it chooses the APIC mode, lists the CPUs (MADT
//! order, BSP included) and allocates the trampoline page below 1 MiB and one stack per AP;
//! the responses module then puts a `limine_mp_info` per CPU into the response arena.
//! [`finish`] runs after ExitBootServices, once the final page tables exist and while the BSP
//! still runs on the firmware's identity map: it starts each AP with INIT-SIPI-SIPI through
//! the trampoline ([`start`]), which takes the AP into long mode on the loader's tables and
//! parks it in HHDM code spinning on its `goto_address` ([`asm`]), then writes the response
//! listing the CPUs that arrived.

mod apic;
mod asm;
mod start;

use alloc::vec::Vec;

use bootcore::{
    madt::Cpu,
    mp::{self as policy, ApicFacts, ApicMode, PlannedCpu},
    proto::{MP_REQUEST_X2APIC, MP_RESPONSE_X2APIC, MpInfo, MpResponse},
};
use x86_64::registers::model_specific::Msr;

use crate::{
    acpi::Madt,
    arena::{Arena, Slot},
    cpu::{APIC_BASE_ENABLE, APIC_BASE_X2APIC, Features, MSR_APIC_BASE},
    error::Error,
    mem::{Allocations, Kind, Region, pages_for},
    tables::Identity,
};

/// The trampoline page must lie below 1 MiB (a start-up IPI names a real-mode page).
const TRAMPOLINE_LIMIT: u64 = 1 << 20;

/// What the loader will do about CPUs, decided before ExitBootServices.
#[derive(Debug)]
pub struct Plan {
    /// The APIC mode every CPU ends up in.
    pub mode: ApicMode,
    /// The BSP's (x2)APIC ID.
    pub bsp_lapic_id: u32,
    /// The CPUs to report if all APs start: MADT order, BSP included.
    pub cpus: Vec<PlannedCpu>,
    /// The trampoline page (`None`: APs cannot be started).
    trampoline: Option<Region>,
    /// One stack of `stack_size` bytes per AP, in `cpus` order (BSP skipped).
    stacks: Option<Region>,
    /// Bytes per AP stack (a whole number of pages).
    stack_size: u64,
    /// TSC ticks per second, for the start-up delays.
    tsc_hz: u64,
    /// CPU features (NX, PAT, MTRRs).
    features: Features,
}

impl Plan {
    /// The response flags.
    pub fn flags(&self) -> u32 {
        if self.mode.x2apic {
            MP_RESPONSE_X2APIC
        } else {
            0
        }
    }

    /// The trampoline page, which the final page tables must identity-map.
    pub fn identity(&self) -> Option<Identity> {
        self.trampoline.as_ref().map(|page| Identity {
            base: page.base(),
            len: page.len(),
        })
    }

    /// The `limine_mp_info` of each CPU in `cpus` (the HHDM stack top of each AP in
    /// `reserved`; 0 for the BSP).
    pub fn infos(&self, hhdm: u64) -> impl Iterator<Item = MpInfo> + '_ {
        let mut ap = 0;
        self.cpus.iter().map(move |cpu| {
            let reserved = if cpu.bsp {
                0
            } else {
                ap += 1;
                self.stacks
                    .as_ref()
                    .map_or(0, |s| hhdm + s.base() + ap * self.stack_size)
            };
            MpInfo {
                processor_id: cpu.processor_id,
                lapic_id: cpu.lapic_id,
                reserved,
                goto_address: 0,
                extra_argument: 0,
            }
        })
    }

    fn ap_count(&self) -> usize {
        self.cpus.iter().filter(|c| !c.bsp).count()
    }
}

/// Decides the APIC mode, lists the CPUs and allocates what starting the APs needs.
///
/// `request_flags` are the MP request's flags, `stack_size` the per-CPU stack size (at least
/// 64 KiB). Failing to allocate the trampoline or the stacks is not fatal: the APs are then
/// left out and the response lists the BSP only.
pub fn plan(
    features: &Features,
    madt: Option<&Madt>,
    request_flags: u64,
    stack_size: u64,
    tsc_hz: u64,
    allocs: &mut Allocations,
) -> Result<Plan, Error> {
    // SAFETY: IA32_APIC_BASE exists on every x86-64 CPU.
    let apic_base = unsafe { Msr::new(MSR_APIC_BASE).read() };
    let both = APIC_BASE_ENABLE | APIC_BASE_X2APIC;
    let facts = ApicFacts {
        supported: features.x2apic,
        firmware_x2apic: apic_base & both == both,
        requested: request_flags & MP_REQUEST_X2APIC != 0,
    };
    let madt_cpus: &[Cpu] = madt.map_or(&[], |m| &m.cpus);
    let bsp_lapic_id = features.apic_id;
    let mode = policy::choose_apic_mode(facts, madt_cpus, bsp_lapic_id);
    if mode.leave_x2apic && bsp_lapic_id > policy::MAX_XAPIC_ID {
        return Err(Error::X2ApicStuck);
    }
    let cpus = policy::plan_cpus(madt_cpus, bsp_lapic_id, mode.x2apic);
    let stack_pages = pages_for(stack_size);
    let mut plan = Plan {
        mode,
        bsp_lapic_id,
        cpus,
        trampoline: None,
        stacks: None,
        stack_size: stack_pages * crate::mem::PAGE_SIZE,
        tsc_hz,
        features: *features,
    };
    let aps = plan.ap_count() as u64;
    log::info!(
        "MP: {} CPU(s) in the MADT, {aps} AP(s) to start, {}",
        madt_cpus.len(),
        if mode.x2apic { "x2APIC" } else { "xAPIC" }
    );
    if aps == 0 {
        return Ok(plan);
    }
    let trampoline = low_page(allocs);
    let stacks = stack_pages
        .checked_mul(aps)
        .ok_or(Error::OutOfMemory {
            what: "AP stacks",
            pages: u64::MAX,
        })
        .and_then(|pages| allocs.pages(pages, Kind::Reclaimable, "AP stacks"));
    match (trampoline, stacks) {
        (Ok(trampoline), Ok(stacks)) => {
            plan.trampoline = Some(trampoline);
            plan.stacks = Some(stacks);
        }
        (Err(e), _) | (_, Err(e)) => {
            // Whatever was allocated stays allocated (and reclaimable); the APs stay out.
            log::warn!("MP: {e}; application processors will not be started");
        }
    }
    Ok(plan)
}

/// One page below 1 MiB for the trampoline, other than page 0 (firmware tends to hand out
/// page 0 first; kernels often keep physical address 0 out of their frame allocators and
/// would then trip over a reclaimable page there).
fn low_page(allocs: &mut Allocations) -> Result<Region, Error> {
    let page = allocs.pages_below(TRAMPOLINE_LIMIT, 1, Kind::Reclaimable, "AP trampoline")?;
    if page.base() != 0 {
        return Ok(page);
    }
    let other = allocs.pages_below(TRAMPOLINE_LIMIT, 1, Kind::Reclaimable, "AP trampoline");
    allocs.release(page);
    other
}

/// Where the MP response lives, to be completed after ExitBootServices.
#[derive(Debug)]
pub struct Pending {
    /// The response itself, once the request is linked to it.
    response: Option<Slot>,
    /// The `cpus` pointer array (room for every planned CPU).
    list: Slot,
    /// HHDM address of each planned CPU's `limine_mp_info`, in `Plan::cpus` order.
    infos: Vec<u64>,
    /// Scratch for the final pointer list (allocated now: nothing allocates after the exit).
    scratch: Vec<u64>,
    /// Which planned CPUs are running (the BSP always).
    running: Vec<bool>,
}

impl Pending {
    /// Records where the response was stored.
    pub fn link(&mut self, response: Option<Slot>) {
        self.response = response;
    }
}

/// Writes each CPU's `limine_mp_info` and the pointer array into the arena; returns a
/// response listing every planned CPU (for the caller to store) and what [`finish`] needs to
/// correct it once the APs have been started.
pub fn respond(plan: &Plan, arena: &mut Arena, hhdm: u64) -> Result<(MpResponse, Pending), Error> {
    let infos = plan
        .infos(hhdm)
        .map(|info| arena.put(&info).map(|slot| slot.virt))
        .collect::<Result<Vec<_>, _>>()?;
    let list = arena.put_u64s(&infos)?;
    let response = MpResponse {
        revision: 0,
        flags: plan.flags(),
        bsp_lapic_id: plan.bsp_lapic_id,
        cpu_count: infos.len() as u64,
        cpus: list.virt,
    };
    let pending = Pending {
        response: None,
        list,
        scratch: Vec::with_capacity(infos.len()),
        running: plan.cpus.iter().map(|c| c.bsp).collect(),
        infos,
    };
    Ok((response, pending))
}

/// What the APs need from the rest of the hand-off.
#[derive(Clone, Copy, Debug)]
pub struct Boot {
    /// HHDM offset.
    pub hhdm: u64,
    /// Physical address of the final PML4 (below 4 GiB).
    pub cr3: u64,
    /// HHDM address of the BSP's GDT.
    pub gdt_hhdm: u64,
}

/// After ExitBootServices, with the final page tables built and the BSP's GDT in place: puts
/// the BSP's APIC in the planned mode, starts and parks the APs, and completes the response
/// with the CPUs that arrived. Returns a description of a failure to write the response.
pub fn finish(
    plan: &mut Plan,
    pending: Option<&mut Pending>,
    arena: &mut Arena,
    boot: &Boot,
) -> Result<(), &'static str> {
    if plan.mode.x2apic {
        apic::enable_x2apic();
    }
    if let Some(pending) = pending {
        if let Some(mut page) = plan.trampoline.take() {
            start::start_all(plan, &mut page, boot, &pending.infos, &mut pending.running);
        }
        // Running CPUs first, in MADT order; the unused tail of the array is zeroed. Strict
        // mode lists the BSP last: the protocol says only that the array "includes the
        // bootstrap processor", not where.
        let listed = |bsp: Option<bool>| {
            pending
                .infos
                .iter()
                .zip(&pending.running)
                .zip(&plan.cpus)
                .filter(move |((_, running), cpu)| **running && bsp.is_none_or(|b| cpu.bsp == b))
                .map(|((info, _), _)| *info)
        };
        pending.scratch.clear();
        if crate::strict::on() {
            pending.scratch.extend(listed(Some(false)));
            pending.scratch.extend(listed(Some(true)));
        } else {
            pending.scratch.extend(listed(None));
        }
        let count = pending.scratch.len();
        pending.scratch.resize(pending.infos.len(), 0);
        arena
            .write_u64s(pending.list, &pending.scratch)
            .map_err(|_| "MP pointer list")?;
        let response = MpResponse {
            revision: 0,
            flags: plan.flags(),
            bsp_lapic_id: plan.bsp_lapic_id,
            cpu_count: count as u64,
            cpus: pending.list.virt,
        };
        if let Some(slot) = pending.response {
            arena.write(slot, &response).map_err(|_| "MP response")?;
        }
    }
    if plan.mode.leave_x2apic {
        apic::leave_x2apic();
    }
    Ok(())
}
