//! Dynamic section parsing and RELA / RELR relocation of a loaded image.

use super::{ElfError, Executable, slice, slice_mut, u16_at, u64_at};

pub(super) const DT_NULL: u64 = 0;
pub(super) const DT_PLTRELSZ: u64 = 2;
pub(super) const DT_SYMTAB: u64 = 6;
pub(super) const DT_RELA: u64 = 7;
pub(super) const DT_RELASZ: u64 = 8;
pub(super) const DT_RELAENT: u64 = 9;
pub(super) const DT_SYMENT: u64 = 11;
pub(super) const DT_RELSZ: u64 = 18;
pub(super) const DT_PLTREL: u64 = 20;
pub(super) const DT_JMPREL: u64 = 23;
pub(super) const DT_RELRSZ: u64 = 35;
pub(super) const DT_RELR: u64 = 36;
pub(super) const DT_RELRENT: u64 = 37;

pub(super) const R_X86_64_NONE: u32 = 0;
pub(super) const R_X86_64_64: u32 = 1;
pub(super) const R_X86_64_GLOB_DAT: u32 = 6;
pub(super) const R_X86_64_JUMP_SLOT: u32 = 7;
pub(super) const R_X86_64_RELATIVE: u32 = 8;

pub(super) const RELA_SIZE: u64 = 24;
pub(super) const SYM_SIZE: u64 = 24;
pub(super) const SHN_UNDEF: u16 = 0;
pub(super) const SHN_ABS: u16 = 0xfff1;
pub(super) const STB_WEAK: u8 = 2;

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
        for entry in bytes.chunks_exact(16) {
            let tag = u64_at(entry, 0).unwrap_or(DT_NULL);
            let val = u64_at(entry, 8).unwrap_or(0);
            match tag {
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
        if pltrel.is_some_and(|p| p != DT_RELA) {
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
        let symtab = dynamic.symtab.ok_or(ElfError::BadSymbol(index))?;
        let sym = u64::from(index)
            .checked_mul(SYM_SIZE)
            .and_then(|o| o.checked_add(symtab))
            .and_then(|va| self.file_bytes(va, SYM_SIZE))
            .ok_or(ElfError::BadSymbol(index))?;
        let info = sym.get(4).copied().unwrap_or(0);
        let shndx = u16_at(sym, 6).unwrap_or(0);
        let value = u64_at(sym, 8).unwrap_or(0);
        match shndx {
            SHN_UNDEF if info >> 4 == STB_WEAK => Ok(0),
            SHN_UNDEF => Err(ElfError::BadSymbol(index)),
            SHN_ABS => Ok(value),
            _ => Ok(value.wrapping_add(slide)),
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
            for rela in bytes.chunks_exact(RELA_SIZE as usize) {
                let offset = u64_at(rela, 0).unwrap_or(0);
                let info = u64_at(rela, 8).unwrap_or(0);
                let addend = u64_at(rela, 16).unwrap_or(0);
                let (ty, sym) = (info as u32, (info >> 32) as u32);
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
            for word in bytes.chunks_exact(8) {
                let entry = u64_at(word, 0).unwrap_or(0);
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
