//! The PIE cases: `loader/pie-kernel`, a tiny relocatable (`ET_DYN`, linked at 0) kernel,
//! booted through our loader with `kaslr: yes`. The kernel checks that it was relocated, slid
//! into the top 2 GiB, entered through its Entry Point request and given its modules in order
//! (the internal `intmod` first, then the config's `testmod`), prints one `pie: <check> ...
//! ok` line per check and `pie: all passed`, and exits through `isa-debug-exit`.

use anyhow::{Result, anyhow, bail};

use super::Suite;
use crate::{
    build::PieRelocs,
    config::{self, BootEntry, Module},
    image::ImageSpec,
};

/// The checks the PIE kernel prints, each as `pie: <name> ... ok` when it passes.
const CHECKS: &[&str] = &[
    "base revision",
    "image in top 2 GiB",
    "relocation applied",
    "executable address",
    "stack size response",
    "module count",
    "internal module first",
    "config module second",
];

/// The internal module the PIE kernel requests (`REQUIRED`), relative to its own path.
const INTERNAL_MODULE: &str = "intmod";
/// The module the config names.
const CONFIG_MODULE: &str = "testmod";

/// The image of a PIE case: always our loader (real Limine is not what these cases test),
/// the PIE kernel as `/boot/kernel`, its internal module `/boot/intmod` and a config module
/// `/boot/testmod`, and a boot entry with `kaslr: yes`.
pub(super) fn image(ctx: &Suite, relocs: PieRelocs) -> Result<ImageSpec> {
    let kernel = ctx
        .pie
        .iter()
        .find(|(r, _)| *r == relocs)
        .ok_or_else(|| anyhow!("the PIE test kernel ({relocs:?}) was not built"))?
        .1
        .clone()
        .map_err(|e| anyhow!("building the PIE test kernel failed: {e}"))?;
    // A build that ignored its flags would pass while testing the wrong relocation format.
    let expected = match relocs {
        PieRelocs::Rela => SHT_RELA,
        PieRelocs::Relr => SHT_RELR,
    };
    let types = section_types(&kernel)
        .ok_or_else(|| anyhow!("the PIE test kernel is not a readable ELF64 file"))?;
    if !types.contains(&expected) {
        bail!(
            "expected the {relocs:?} build of the PIE test kernel to hold a section of type \
             {expected} ({relocs:?}), found section types {types:?}"
        );
    }
    let conf = config::render(&BootEntry {
        cmdline: String::new(),
        modules: vec![Module {
            file_name: CONFIG_MODULE.into(),
            cmdline: "config".into(),
        }],
        kaslr: true,
        ..BootEntry::default()
    })?;
    Ok(ImageSpec::new(ctx.loader.data.clone(), conf, kernel)
        .with_file(format!("boot/{INTERNAL_MODULE}"), b"internal\n".to_vec())
        .with_file(format!("boot/{CONFIG_MODULE}"), b"config\n".to_vec()))
}

/// `SHT_RELA`: relocations with addends.
const SHT_RELA: u32 = 4;
/// `SHT_RELR`: packed relative relocations.
const SHT_RELR: u32 = 19;

/// The `sh_type` of every section of a little-endian ELF64 file, or `None` if the header or
/// the section header table does not fit in the file.
fn section_types(elf: &[u8]) -> Option<Vec<u32>> {
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let shoff = usize::try_from(u64::from_le_bytes(elf.get(0x28..0x30)?.try_into().ok()?)).ok()?;
    let shentsize = usize::from(u16::from_le_bytes(elf.get(0x3a..0x3c)?.try_into().ok()?));
    let shnum = usize::from(u16::from_le_bytes(elf.get(0x3c..0x3e)?.try_into().ok()?));
    let end = shoff.checked_add(shnum.checked_mul(shentsize)?)?;
    if shentsize < 8 || end > elf.len() {
        return None;
    }
    Some(
        elf[shoff..end]
            .chunks_exact(shentsize)
            .map(|header| u32::from_le_bytes([header[4], header[5], header[6], header[7]]))
            .collect(),
    )
}

/// The PIE kernel's log check: no `pie:` line reports a failure, every check printed `ok`,
/// and the run ended with `pie: all passed`.
pub(super) fn check_pie_log(lines: &[String]) -> Result<String, String> {
    let pie: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.trim().strip_prefix("pie: "))
        .collect();
    let failures: Vec<&str> = pie
        .iter()
        .copied()
        .filter(|l| l.contains("FAIL") || *l == "panic")
        .collect();
    if !failures.is_empty() {
        return Err(format!(
            "the PIE kernel reported: pie: {}",
            failures.join(" | pie: ")
        ));
    }
    let missing: Vec<&str> = CHECKS
        .iter()
        .copied()
        .filter(|check| {
            !pie.iter()
                .any(|l| l.strip_suffix(" ... ok") == Some(*check))
        })
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "expected `pie: <check> ... ok` for every check; missing: {} (pie lines seen: {})",
            missing.join(", "),
            if pie.is_empty() {
                "none".to_owned()
            } else {
                pie.join(" | ")
            }
        ));
    }
    if !pie.contains(&"all passed") {
        return Err("every check passed but there is no `pie: all passed` line".into());
    }
    let at = pie
        .iter()
        .find_map(|l| l.strip_prefix("image at "))
        .unwrap_or("an unreported address");
    Ok(format!(": {} checks ok, image at {at}", CHECKS.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    const GOOD: &str = "loader: kernel image 0x0 -> phys 0x1000 (24 KiB, slide 0xffffffff9a400000)\n\
        pie: base revision ... ok\npie: image at 0xffffffff9a400000\n\
        pie: image in top 2 GiB ... ok\npie: relocation applied ... ok\n\
        pie: virtual base 0xffffffff9a400000, physical base 0x1000\n\
        pie: executable address ... ok\npie: stack size response ... ok\n\
        pie: module \"boot():/boot/intmod\" \"internal\" 9 bytes\n\
        pie: module \"boot():/boot/testmod\" \"config\" 7 bytes\n\
        pie: module count ... ok\npie: internal module first ... ok\n\
        pie: config module second ... ok\npie: all passed";

    /// A minimal ELF64 header with `types.len()` 64-byte section headers after it.
    fn elf_with_sections(types: &[u32]) -> Vec<u8> {
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x28..0x30].copy_from_slice(&64u64.to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&(types.len() as u16).to_le_bytes());
        for ty in types {
            let mut header = [0u8; 64];
            header[4..8].copy_from_slice(&ty.to_le_bytes());
            elf.extend_from_slice(&header);
        }
        elf
    }

    #[test]
    fn reads_section_types() {
        let elf = elf_with_sections(&[0, 1, SHT_RELR, 6]);
        assert_eq!(section_types(&elf), Some(vec![0, 1, SHT_RELR, 6]));
        // The table runs past the end of the file.
        assert_eq!(section_types(&elf[..elf.len() - 1]), None);
        assert_eq!(section_types(b"\x7fELF\x01\x01"), None, "ELF32");
        assert_eq!(section_types(b""), None);
        assert_eq!(section_types(&elf_with_sections(&[])), Some(vec![]));
    }

    #[test]
    fn a_full_pass_is_accepted() {
        let note = check_pie_log(&lines(GOOD)).expect("all checks ok");
        assert!(note.contains("8 checks ok"), "{note}");
        assert!(note.contains("0xffffffff9a400000"), "{note}");
    }

    #[test]
    fn a_failed_check_is_reported() {
        let text = GOOD.replace("relocation applied ... ok", "relocation applied ... FAIL");
        let text = text.replace("all passed", "FAILED");
        let err = check_pie_log(&lines(&text)).expect_err("a check failed");
        assert!(err.contains("relocation applied ... FAIL"), "{err}");
        let entry = lines("pie: FAIL entered through e_entry, not the Entry Point request");
        assert!(
            check_pie_log(&entry)
                .expect_err("wrong entry")
                .contains("e_entry")
        );
        assert!(check_pie_log(&lines("pie: panic")).is_err());
    }

    #[test]
    fn missing_lines_are_named() {
        let text: String = GOOD
            .lines()
            .filter(|l| !l.contains("module count"))
            .collect::<Vec<_>>()
            .join("\n");
        let err = check_pie_log(&lines(&text)).expect_err("a check is missing");
        assert!(err.contains("missing: module count"), "{err}");
        let no_end = GOOD.replace("pie: all passed", "");
        assert!(
            check_pie_log(&lines(&no_end))
                .expect_err("no end line")
                .contains("all passed")
        );
        let err = check_pie_log(&lines("loader: error: x")).expect_err("nothing ran");
        assert!(err.contains("pie lines seen: none"), "{err}");
    }
}
