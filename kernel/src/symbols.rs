//! Symbol names for stack traces, from the kernel's own ELF file (the loader hands it over
//! through the Executable File request).

use core::fmt;

/// A resolved code address: the function containing it and the offset into it.
pub struct Symbol {
    name: &'static str,
    offset: u64,
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:#}+{:#x}",
            rustc_demangle::demangle(self.name),
            self.offset
        )
    }
}

fn u16_at(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        data.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        data.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        data.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Finds the function a return address belongs to: the one containing `address - 1` (a call
/// to a function that never returns can be the caller's last instruction, so the return
/// address itself may lie just past its end).
pub fn lookup_return(address: u64) -> Option<Symbol> {
    let symbol = lookup(address.checked_sub(1)?)?;
    Some(Symbol {
        offset: symbol.offset + 1,
        ..symbol
    })
}

/// Finds the function containing `address`. Every read is bounds-checked: a damaged file
/// gives `None`, never a fault.
pub fn lookup(address: u64) -> Option<Symbol> {
    let elf = hal::boot::executable_file()?.data;
    if !elf.starts_with(b"\x7fELF") {
        return None;
    }
    let shoff = usize::try_from(u64_at(elf, 0x28)?).ok()?;
    let shentsize = usize::from(u16_at(elf, 0x3a)?);
    let shnum = usize::from(u16_at(elf, 0x3c)?);
    let section = |index: usize| -> Option<(u32, usize, usize, u32)> {
        let at = shoff.checked_add(index.checked_mul(shentsize)?)?;
        let ty = u32_at(elf, at + 4)?;
        let offset = usize::try_from(u64_at(elf, at + 0x18)?).ok()?;
        let size = usize::try_from(u64_at(elf, at + 0x20)?).ok()?;
        let link = u32_at(elf, at + 0x28)?;
        Some((ty, offset, size, link))
    };
    const SHT_SYMTAB: u32 = 2;
    let (_, sym_off, sym_size, link) = (0..shnum)
        .filter_map(section)
        .find(|(ty, ..)| *ty == SHT_SYMTAB)?;
    let (_, str_off, str_size, _) = section(usize::try_from(link).ok()?)?;
    let strtab = elf.get(str_off..str_off.checked_add(str_size)?)?;
    let symtab = elf.get(sym_off..sym_off.checked_add(sym_size)?)?;
    symtab.chunks_exact(24).find_map(|sym| {
        let is_function = sym[4] & 0xf == 2;
        let value = u64_at(sym, 8)?;
        let size = u64_at(sym, 16)?;
        if !is_function || address < value || address - value >= size.max(1) {
            return None;
        }
        let name_at = usize::try_from(u32_at(sym, 0)?).ok()?;
        let name = strtab.get(name_at..)?;
        let end = name.iter().position(|&b| b == 0)?;
        let name = core::str::from_utf8(&name[..end]).ok()?;
        Some(Symbol {
            name,
            offset: address - value,
        })
    })
}

/// Tests of symbol lookup.
pub mod tests {
    use alloc::format;

    use crate::{check, ktest::TestResult};

    /// A return address inside a known function resolves to that function's name.
    pub fn resolve_known_function() -> TestResult {
        let address = super::lookup_return as *const () as u64;
        let symbol = super::lookup_return(address + 5);
        check!(symbol.is_some(), "no symbol for {address:#x}");
        let text = format!("{}", symbol.expect("checked above"));
        check!(
            text.starts_with("kernel::symbols::lookup_return+0x5"),
            "{address:#x}+5 resolved to {text}"
        );
        check!(
            super::lookup_return(0x1000).is_none(),
            "a lower-half address resolved"
        );
        Ok(())
    }
}
