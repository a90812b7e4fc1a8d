//! Just enough AML to find `\_S5`: the sleep-type values that switch the machine off.
//!
//! Firmware declares it as `Name (_S5, Package () { SLP_TYPa, SLP_TYPb, … })`, which compiles
//! to `NameOp '_S5_' PackageOp PkgLength NumElements <integers>`. A full interpreter is not
//! needed to read it; every access below is bounds-checked, so any byte string is safe input.

use super::SleepType;

const NAME_OP: u8 = 0x08;
const ROOT_CHAR: u8 = b'\\';
const PACKAGE_OP: u8 = 0x12;
const ZERO_OP: u8 = 0x00;
const ONE_OP: u8 = 0x01;
const ONES_OP: u8 = 0xff;
const BYTE_PREFIX: u8 = 0x0a;
const WORD_PREFIX: u8 = 0x0b;
const DWORD_PREFIX: u8 = 0x0c;
const QWORD_PREFIX: u8 = 0x0e;

/// Finds the `\_S5` package in an AML byte stream (a DSDT or SSDT without its header) and
/// returns its first two elements, or `None` if there is no such package.
pub fn find_s5(aml: &[u8]) -> Option<SleepType> {
    aml.windows(4)
        .enumerate()
        .filter(|(_, name)| name == b"_S5_")
        .map(|(i, _)| i)
        .filter(|&i| {
            let before = |n: usize| i.checked_sub(n).and_then(|j| aml.get(j)).copied();
            before(1) == Some(NAME_OP)
                || (before(1) == Some(ROOT_CHAR) && before(2) == Some(NAME_OP))
        })
        .find_map(|i| parse_package(aml, i + 4))
}

fn parse_package(aml: &[u8], mut at: usize) -> Option<SleepType> {
    if *aml.get(at)? != PACKAGE_OP {
        return None;
    }
    at += 1;
    // PkgLength: bits 6-7 of the lead byte count the extra length bytes that follow.
    let extra = usize::from(*aml.get(at)? >> 6);
    at += 1 + extra;
    let count = *aml.get(at)?;
    at += 1;
    if count == 0 {
        return None;
    }
    let a = integer(aml, &mut at)?;
    let b = if count >= 2 {
        integer(aml, &mut at)?
    } else {
        0
    };
    // SLP_TYP is a 3-bit field.
    Some(SleepType {
        a: (a & 7) as u8,
        b: (b & 7) as u8,
    })
}

fn integer(aml: &[u8], at: &mut usize) -> Option<u64> {
    let op = *aml.get(*at)?;
    *at += 1;
    let width = match op {
        ZERO_OP => return Some(0),
        ONE_OP => return Some(1),
        ONES_OP => return Some(u64::MAX),
        BYTE_PREFIX => 1,
        WORD_PREFIX => 2,
        DWORD_PREFIX => 4,
        QWORD_PREFIX => 8,
        _ => return None,
    };
    let bytes = aml.get(*at..*at + width)?;
    *at += width;
    let mut raw = [0u8; 8];
    raw[..width].copy_from_slice(bytes);
    Some(u64::from_le_bytes(raw))
}
