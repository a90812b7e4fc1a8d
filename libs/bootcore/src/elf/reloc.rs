//! Dynamic section parsing and RELA / RELR relocation of a loaded image.
//!
//! Dynamic entries, RELA entries and symbols are decoded by the `elf` crate; RELR (which it
//! does not know) is a table of little-endian words.

use elf::{
    abi::{
        DT_JMPREL, DT_NULL, DT_PLTREL, DT_PLTRELSZ, DT_RELA, DT_RELAENT, DT_RELASZ, DT_RELSZ,
        DT_SYMENT, DT_SYMTAB, R_X86_64_64, R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT, R_X86_64_NONE,
        R_X86_64_RELATIVE, SHN_ABS, SHN_UNDEF, STB_WEAK,
    },
    dynamic::DynamicTable,
    endian::{EndianParse, LittleEndian},
    file::Class,
    relocation::RelaIterator,
    symbol::SymbolTable,
};

use super::{ElfError, Executable, slice, slice_mut};

/// `DT_RELRSZ` (not in the `elf` crate): size of the RELR table.
pub(super) const DT_RELRSZ: i64 = 35;
/// `DT_RELR`: address of the RELR table.
pub(super) const DT_RELR: i64 = 36;
/// `DT_RELRENT`: size of a RELR entry (8).
pub(super) const DT_RELRENT: i64 = 37;

/// Size of an `Elf64_Rela`.
pub(super) const RELA_SIZE: u64 = 24;
/// Size of an `Elf64_Sym`.
pub(super) const SYM_SIZE: u64 = 24;

/// A `(vaddr, size)` table named by dynamic tags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Table {
    addr: u64,
    size: u64,
}

/// What the dynamic section says about relocation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Dynamic {
    rela: Option<Table>,
    jmprel: Option<Table>,
    relr: Option<Table>,
    symtab: Option<u64>,
}

impl Executable<'_> {
    pub(super) fn parse_dynamic(&self, offset: u64, size: u64) -> Result<Dynamic, ElfError> {
        let bytes = slice(self.file, offset, size).ok_or(ElfError::Truncated("PT_DYNAMIC"))?;
        let (mut rela, mut relasz, mut relaent) = (None, 0, RELA_SIZE);
        let (mut jmprel, mut pltrelsz, mut pltrel) = (None, 0, None);
        let (mut relr, mut relrsz, mut relrent) = (None, 0, 8);
        let (mut symtab, mut syment) = (None, SYM_SIZE);
        for entry in DynamicTable::new(LittleEndian, Class::ELF64, bytes) {
            let val = entry.d_val();
            match entry.d_tag {
                DT_NULL => break,
                DT_RELA => rela = Some(val),
                DT_RELASZ => relasz = val,
                DT_RELAENT => relaent = val,
                DT_JMPREL => jmprel = Some(val),
                DT_PLTRELSZ => pltrelsz = val,
                DT_PLTREL => pltrel = Some(val),
                DT_RELR => relr = Some(val),
                DT_RELRSZ => relrsz = val,
                DT_RELRENT => relrent = val,
                DT_SYMTAB => symtab = Some(val),
                DT_SYMENT => syment = val,
                DT_RELSZ if val != 0 => return Err(ElfError::BadDynamic("REL relocations")),
                _ => {}
            }
        }
        if pltrel.is_some_and(|p| p != DT_RELA as u64) {
            return Err(ElfError::PltRelNotRela);
        }
        if relaent != RELA_SIZE {
            return Err(ElfError::BadDynamic("DT_RELAENT is not 24"));
        }
        if relrent != 8 {
            return Err(ElfError::BadDynamic("DT_RELRENT is not 8"));
        }
        if syment != SYM_SIZE {
            return Err(ElfError::BadDynamic("DT_SYMENT is not 24"));
        }
        let table = |addr: Option<u64>, size: u64, ent: u64, what| match addr {
            Some(addr) if size > 0 => {
                if !size.is_multiple_of(ent) || self.file_bytes(addr, size).is_none() {
                    Err(ElfError::BadDynamic(what))
                } else {
                    Ok(Some(Table { addr, size }))
                }
            }
            _ => Ok(None),
        };
        Ok(Dynamic {
            rela: table(rela, relasz, RELA_SIZE, "DT_RELA table")?,
            jmprel: table(jmprel, pltrelsz, RELA_SIZE, "DT_JMPREL table")?,
            relr: table(relr, relrsz, 8, "DT_RELR table")?,
            symtab,
        })
    }

    /// `S` of a relocation: the slid symbol value (0 for undefined weak symbols).
    fn symbol_value(&self, dynamic: &Dynamic, index: u32, slide: u64) -> Result<u64, ElfError> {
        if index == 0 {
            return Ok(0);
        }
        let bad = ElfError::BadSymbol(index);
        let symtab = dynamic
            .symtab
            .and_then(|va| self.file_bytes_from(va))
            .ok_or(bad)?;
        let sym = SymbolTable::new(LittleEndian, Class::ELF64, symtab)
            .get(usize::try_from(index).map_err(|_| bad)?)
            .map_err(|_| bad)?;
        match sym.st_shndx {
            SHN_UNDEF if sym.st_bind() == STB_WEAK => Ok(0),
            SHN_UNDEF => Err(bad),
            SHN_ABS => Ok(sym.st_value),
            _ => Ok(sym.st_value.wrapping_add(slide)),
        }
    }

    /// Writes `value` at unslid virtual address `va` in the image.
    fn patch(&self, image: &mut [u8], va: u64, f: impl FnOnce(u64) -> u64) -> Result<(), ElfError> {
        let dst = va
            .checked_sub(self.min_vaddr)
            .and_then(|off| slice_mut(image, off, 8))
            .ok_or(ElfError::RelocationOutOfImage { offset: va })?;
        let old = u64::from_le_bytes(dst.try_into().unwrap_or([0; 8]));
        dst.copy_from_slice(&f(old).to_le_bytes());
        Ok(())
    }

    pub(super) fn relocate(
        &self,
        dynamic: &Dynamic,
        image: &mut [u8],
        slide: u64,
    ) -> Result<(), ElfError> {
        for table in [dynamic.rela, dynamic.jmprel].into_iter().flatten() {
            let bytes = self
                .file_bytes(table.addr, table.size)
                .ok_or(ElfError::BadDynamic("relocation table"))?;
            for rela in RelaIterator::new(LittleEndian, Class::ELF64, bytes) {
                let (offset, addend) = (rela.r_offset, rela.r_addend as u64);
                let (ty, sym) = (rela.r_type, rela.r_sym);
                let value = match ty {
                    R_X86_64_NONE => continue,
                    R_X86_64_RELATIVE => slide.wrapping_add(addend),
                    R_X86_64_GLOB_DAT | R_X86_64_JUMP_SLOT => {
                        self.symbol_value(dynamic, sym, slide)?
                    }
                    R_X86_64_64 => self.symbol_value(dynamic, sym, slide)?.wrapping_add(addend),
                    other => return Err(ElfError::UnsupportedRelocation(other)),
                };
                self.patch(image, offset, |_| value)?;
            }
        }
        if let Some(table) = dynamic.relr {
            let bytes = self
                .file_bytes(table.addr, table.size)
                .ok_or(ElfError::BadDynamic("DT_RELR table"))?;
            let mut next = 0u64;
            let mut at = 0;
            while let Ok(entry) = LittleEndian.parse_u64_at(&mut at, bytes) {
                if entry & 1 == 0 {
                    self.patch(image, entry, |v| v.wrapping_add(slide))?;
                    next = entry.wrapping_add(8);
                } else {
                    for bit in 1..64 {
                        if entry >> bit & 1 != 0 {
                            let va = next.wrapping_add((bit - 1) * 8);
                            self.patch(image, va, |v| v.wrapping_add(slide))?;
                        }
                    }
                    next = next.wrapping_add(63 * 8);
                }
            }
        }
        Ok(())
    }
}
