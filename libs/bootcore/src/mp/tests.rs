use std::{vec, vec::Vec};

use super::{trampoline::*, *};

fn cpu(uid: u32, apic_id: u32, flags: u32, x2apic_entry: bool) -> Cpu {
    Cpu {
        uid,
        apic_id,
        flags,
        x2apic_entry,
    }
}

fn ids(plan: &[PlannedCpu]) -> Vec<(u32, bool)> {
    plan.iter().map(|p| (p.lapic_id, p.bsp)).collect()
}

#[test]
fn plan_keeps_madt_order_and_the_bsp() {
    let cpus = [
        cpu(0, 2, 1, false),
        cpu(1, 0, 1, false),
        cpu(2, 1, 2, false),
        cpu(3, 3, 1, false),
    ];
    let plan = plan_cpus(&cpus, 0, false);
    assert_eq!(ids(&plan), [(2, false), (0, true), (1, false), (3, false)]);
    assert_eq!(plan[1].processor_id, 1);
}

#[test]
fn plan_skips_unstartable_and_duplicate_entries() {
    let cpus = [
        cpu(0, 0, 1, false),
        cpu(1, 1, 0, false), // disabled
        cpu(2, 2, 3, false), // both flags: not startable
        cpu(3, 3, 1, false),
        cpu(4, 3, 1, false),    // same APIC ID again
        cpu(5, 0xFF, 1, false), // broadcast ID
        cpu(6, 4, 1, true),     // x2APIC entry while in xAPIC mode
    ];
    assert_eq!(ids(&plan_cpus(&cpus, 0, false)), [(0, true), (3, false)]);
}

#[test]
fn plan_takes_x2apic_entries_only_in_x2apic_mode() {
    let cpus = [
        cpu(0, 0, 1, false),
        cpu(1, 1, 1, false),
        cpu(300, 300, 1, true),
        cpu(301, 1, 1, true), // repeats a type-0 CPU
        cpu(302, 302, 2, true),
    ];
    assert_eq!(ids(&plan_cpus(&cpus, 0, false)), [(0, true), (1, false)]);
    assert_eq!(
        ids(&plan_cpus(&cpus, 0, true)),
        [(0, true), (1, false), (300, false), (302, false)]
    );
}

#[test]
fn plan_lists_the_bsp_whatever_its_flags_and_adds_it_if_missing() {
    let cpus = [cpu(0, 0, 0, false), cpu(1, 1, 1, false)];
    assert_eq!(ids(&plan_cpus(&cpus, 0, false)), [(0, true), (1, false)]);
    let plan = plan_cpus(&cpus[1..], 5, false);
    assert_eq!(ids(&plan), [(5, true), (1, false)]);
    assert_eq!(plan[0].processor_id, 0);
    assert_eq!(ids(&plan_cpus(&[], 7, false)), [(7, true)]);
}

#[test]
fn apic_mode_follows_request_support_and_large_ids() {
    let small = [cpu(0, 0, 1, false), cpu(1, 1, 1, false)];
    let large = [cpu(0, 0, 1, false), cpu(1, 255, 1, true)];
    let facts = |supported, firmware_x2apic, requested| ApicFacts {
        supported,
        firmware_x2apic,
        requested,
    };
    let mode = |x2apic, leave_x2apic| ApicMode {
        x2apic,
        leave_x2apic,
    };
    assert_eq!(
        choose_apic_mode(facts(true, false, true), &small, 0),
        mode(true, false)
    );
    assert_eq!(
        choose_apic_mode(facts(false, false, true), &small, 0),
        mode(false, false)
    );
    assert_eq!(
        choose_apic_mode(facts(true, false, false), &small, 0),
        mode(false, false)
    );
    // Firmware x2APIC the kernel did not ask for is left...
    assert_eq!(
        choose_apic_mode(facts(true, true, false), &small, 0),
        mode(false, true)
    );
    // ...unless an ID above 254 (of a CPU to start, or the BSP) forces it.
    assert_eq!(
        choose_apic_mode(facts(true, true, false), &large, 0),
        mode(true, false)
    );
    assert_eq!(
        choose_apic_mode(facts(true, true, false), &small, 300),
        mode(true, false)
    );
    // A disabled CPU with a large ID forces nothing.
    let disabled = [cpu(0, 0, 1, false), cpu(1, 400, 0, true)];
    assert_eq!(
        choose_apic_mode(facts(true, false, false), &disabled, 0),
        mode(false, false)
    );
}

#[test]
fn icr_values() {
    assert_eq!(icr::INIT, 0x4500);
    assert_eq!(icr::startup(0x08), 0x4608);
    assert_eq!(icr::xapic_high(3), 0x0300_0000);
    assert_eq!(icr::x2apic(300, icr::INIT), 0x0000_012C_0000_4500);
    assert_eq!(icr::x2apic(2, icr::startup(0x9F)), 0x0000_0002_0000_469F);
}

#[test]
fn sipi_vector_needs_an_aligned_page_below_1mib() {
    assert_eq!(sipi_vector(0x8000), Some(8));
    assert_eq!(sipi_vector(0x9F000), Some(0x9F));
    assert_eq!(sipi_vector(0xFF000), Some(0xFF));
    assert_eq!(sipi_vector(0x10_0000), None);
    assert_eq!(sipi_vector(0x8800), None);
}

#[test]
fn mtrr_list_has_fixed_variable_and_def_type_last() {
    let msrs: Vec<u32> = mtrr_msrs(0x100 | 2).collect();
    let mut expected = FIXED_MTRRS.to_vec();
    expected.extend([0x200, 0x201, 0x202, 0x203, MSR_MTRR_DEF_TYPE]);
    assert_eq!(msrs, expected);
    // No fixed ranges, no variable ranges: only the default type.
    assert_eq!(mtrr_msrs(0).collect::<Vec<_>>(), [MSR_MTRR_DEF_TYPE]);
    // An absurd variable count is capped.
    assert_eq!(mtrr_msrs(0x1FF).count(), MAX_MTRR_MSRS);
}

fn common<'a>(code: &'a [u8], mtrrs: &'a [(u32, u64)]) -> Common<'a> {
    Common {
        page: 0x8000,
        code,
        prot32: 0x20,
        long64: 0x50,
        gdt: [0, 1, 2, 3, 4, 5, 6],
        gdt_hhdm: 0xffff_8000_0123_4000,
        cr3: 0x7fff_0000,
        cr0: 0x8001_0011,
        cr4: 0x620,
        efer: 0xD00,
        pat: Some(0x0000_0105_0007_0406),
        apic_mode: APIC_X2APIC,
        park: 0xffff_8000_0600_1234,
        mtrrs,
    }
}

fn u16_at(page: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(page[at..at + 2].try_into().expect("2 bytes"))
}

fn u32_at(page: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(page[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(page: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(page[at..at + 8].try_into().expect("8 bytes"))
}

#[test]
fn common_fields_land_at_their_offsets() {
    let code: Vec<u8> = (0..0x60).map(|i| i as u8 ^ 0x5A).collect();
    let mtrrs = [(0x250, 0x0606_0606_0606_0606), (MSR_MTRR_DEF_TYPE, 0xC06)];
    let mut page = vec![0xEEu8; PAGE];
    write_common(&common(&code, &mtrrs), &mut page).expect("valid");

    assert_eq!(&page[..code.len()], &code[..]);
    assert!(page[code.len()..DATA].iter().all(|&b| b == 0));
    for i in 0..7 {
        assert_eq!(u64_at(&page, GDT + 8 * i), i as u64);
    }
    assert_eq!(u16_at(&page, GDTR32), 55);
    assert_eq!(u32_at(&page, GDTR32 + 2), 0x8000 + GDT as u32);
    assert_eq!(u32_at(&page, FAR32), 0x8020);
    assert_eq!(u16_at(&page, FAR32 + 4), 0x18);
    assert_eq!(u32_at(&page, FAR64), 0x8050);
    assert_eq!(u16_at(&page, FAR64 + 4), 0x28);
    assert_eq!(u16_at(&page, GDTR64), 55);
    assert_eq!(u64_at(&page, GDTR64 + 2), 0xffff_8000_0123_4000);
    assert_eq!(&page[IDTR..IDTR + 10], &[0; 10]);
    assert_eq!(u64_at(&page, CR3), 0x7fff_0000);
    assert_eq!(u64_at(&page, CR0), 0x8001_0011);
    assert_eq!(u64_at(&page, CR4), 0x620);
    // LMA is the CPU's to set; writing it from 32-bit code could fault.
    assert_eq!(u64_at(&page, EFER), 0x900);
    assert_eq!(u64_at(&page, PAT), 0x0000_0105_0007_0406);
    assert_eq!(u64_at(&page, HAS_PAT), 1);
    assert_eq!(u64_at(&page, APIC_MODE), APIC_X2APIC);
    assert_eq!(u64_at(&page, PARK), 0xffff_8000_0600_1234);
    assert_eq!(u64_at(&page, MTRR_COUNT), 2);
    assert_eq!(u64_at(&page, MTRRS), 0x250);
    assert_eq!(u64_at(&page, MTRRS + 8), 0x0606_0606_0606_0606);
    assert_eq!(u64_at(&page, MTRRS + 16), u64::from(MSR_MTRR_DEF_TYPE));
    assert_eq!(u64_at(&page, MTRRS + 24), 0xC06);
    assert_eq!(u64_at(&page, BOOTED), 0);

    write_ap(0xffff_8000_0000_5020, &mut page).expect("one page");
    assert_eq!(u64_at(&page, INFO), 0xffff_8000_0000_5020);
    page[BOOTED] = 1;
    write_ap(0xffff_8000_0000_5040, &mut page).expect("one page");
    assert_eq!(u64_at(&page, INFO), 0xffff_8000_0000_5040);
    assert_eq!(u64_at(&page, BOOTED), 0);
}

#[test]
fn without_pat_the_flag_is_clear() {
    let code = [0x90; 0x60];
    let mut c = common(&code, &[]);
    c.pat = None;
    let mut page = vec![0u8; PAGE];
    write_common(&c, &mut page).expect("valid");
    assert_eq!(u64_at(&page, HAS_PAT), 0);
    assert_eq!(u64_at(&page, MTRR_COUNT), 0);
}

#[test]
fn data_fields_do_not_overlap() {
    let mut fields = [
        (GDT, 56),
        (GDTR32, 6),
        (FAR32, 6),
        (FAR64, 6),
        (GDTR64, 10),
        (IDTR, 10),
        (CR3, 8),
        (CR4, 8),
        (EFER, 8),
        (CR0, 8),
        (PAT, 8),
        (HAS_PAT, 8),
        (APIC_MODE, 8),
        (INFO, 8),
        (PARK, 8),
        (BOOTED, 8),
        (MTRR_COUNT, 8),
        (MTRRS, 16 * MAX_MTRR_MSRS),
    ];
    fields.sort();
    for pair in fields.windows(2) {
        assert!(pair[0].0 + pair[0].1 <= pair[1].0, "{pair:x?} overlap");
    }
    let (last, len) = fields[fields.len() - 1];
    assert!(last + len <= PAGE);
    assert!(fields[0].0 >= DATA);
    // 64-bit fields the assembly reads as qwords are 8-byte aligned.
    for at in [
        CR3, CR4, EFER, CR0, PAT, HAS_PAT, APIC_MODE, INFO, PARK, BOOTED, MTRRS,
    ] {
        assert_eq!(at % 8, 0);
    }
}

#[test]
fn refuses_what_the_trampoline_cannot_use() {
    let code = [0x90; 0x60];
    let mut page = vec![0u8; PAGE];
    let mut c = common(&code, &[]);
    c.page = 0x10_0000;
    assert_eq!(
        write_common(&c, &mut page),
        Err(TrampolineError::PageNotLow(0x10_0000))
    );
    let mut c = common(&code, &[]);
    c.cr3 = 0x1_0000_0000;
    assert_eq!(
        write_common(&c, &mut page),
        Err(TrampolineError::Cr3High(0x1_0000_0000))
    );
    let long = vec![0x90; DATA + 1];
    assert_eq!(
        write_common(&common(&long, &[]), &mut page),
        Err(TrampolineError::CodeTooLong(DATA + 1))
    );
    let mut c = common(&code, &[]);
    c.long64 = 0x60;
    assert_eq!(
        write_common(&c, &mut page),
        Err(TrampolineError::BadEntry(0x60))
    );
    let many = vec![(0, 0); MAX_MTRR_MSRS + 1];
    assert_eq!(
        write_common(&common(&code, &many), &mut page),
        Err(TrampolineError::TooManyMtrrs(MAX_MTRR_MSRS + 1))
    );
    let mut small = vec![0u8; 100];
    assert_eq!(
        write_common(&common(&code, &[]), &mut small),
        Err(TrampolineError::PageSize(100))
    );
    assert_eq!(write_ap(0, &mut small), Err(TrampolineError::PageSize(100)));
}
