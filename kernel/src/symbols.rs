//! Symbol names for stack traces, from the kernel's own ELF file (the loader hands it over
//! through the Executable File request), read with the workspace's one ELF reader, the `elf`
//! crate (see `bootcore::elf` for why that crate).

use core::fmt;

use elf::{ElfBytes, abi::STT_FUNC, endian::LittleEndian};

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

/// Finds the function containing `address`. The file is read with the `elf` crate, which
/// bounds-checks every read: a damaged file gives `None`, never a fault.
pub fn lookup(address: u64) -> Option<Symbol> {
    let file = hal::boot::executable_file()?.data;
    let elf = ElfBytes::<LittleEndian>::minimal_parse(file).ok()?;
    let (symbols, names) = elf.symbol_table().ok()??;
    symbols.iter().find_map(|sym| {
        let offset = address.checked_sub(sym.st_value)?;
        if sym.st_symtype() != STT_FUNC || offset >= sym.st_size.max(1) {
            return None;
        }
        Some(Symbol {
            name: names.get(usize::try_from(sym.st_name).ok()?).ok()?,
            offset,
        })
    })
}

/// Tests of symbol lookup.
#[cfg(feature = "tests")]
pub mod tests {
    use alloc::format;

    use crate::{
        check,
        ktest::{TestResult, ktest},
    };

    /// A return address inside a known function resolves to that function's name.
    #[ktest("symbols-resolve")]
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
