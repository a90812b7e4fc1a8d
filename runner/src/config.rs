//! `limine.conf` generation.
//!
//! The runner writes the one boot entry every Evergreen image has, in the syntax both our
//! loader and real Limine read (see `loader/README.md`): the kernel at
//! `boot():/boot/kernel`, an optional command line, KASLR (off unless a test turns it on) and
//! any number of modules, each with its own command line.

use std::fmt::Write as _;

use anyhow::{Result, bail};

/// A module the boot entry hands to the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// File name under `/boot/` on the ESP (`testmod.bin` → `boot():/boot/testmod.bin`).
    pub file_name: String,
    /// The module's command line (`module_cmdline`), possibly empty.
    pub cmdline: String,
}

/// Everything that varies between the boot entries the runner writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootEntry {
    /// The kernel command line; left out of the file when empty.
    pub cmdline: String,
    /// Modules in the order the kernel will see them.
    pub modules: Vec<Module>,
    /// `kaslr: yes`: let the loader slide a relocatable kernel. Evergreen's kernel is an
    /// `ET_EXEC`, on which the setting has no effect; only the PIE test kernel uses it.
    pub kaslr: bool,
    /// `evergreen_strict: yes`: our loader's strict mode (`loader/README.md`); real Limine
    /// ignores the option.
    pub strict: bool,
}

/// Renders `entry` as the contents of `limine.conf`.
///
/// Values are written verbatim, so a line break in one would start a new option: such input
/// is rejected, as is a module file name that is not a plain file name.
pub fn render(entry: &BootEntry) -> Result<String> {
    check_value("kernel command line", &entry.cmdline)?;
    let mut out = String::from("timeout: 0\n");
    if entry.strict {
        out.push_str("evergreen_strict: yes\n");
    }
    out.push_str("\n/Evergreen\n");
    out.push_str("    protocol: limine\n");
    out.push_str("    kernel_path: boot():/boot/kernel\n");
    if !entry.cmdline.is_empty() {
        writeln!(out, "    cmdline: {}", entry.cmdline)?;
    }
    writeln!(out, "    kaslr: {}", if entry.kaslr { "yes" } else { "no" })?;
    for module in &entry.modules {
        check_file_name(&module.file_name)?;
        check_value("module command line", &module.cmdline)?;
        writeln!(out, "    module_path: boot():/boot/{}", module.file_name)?;
        if !module.cmdline.is_empty() {
            writeln!(out, "    module_cmdline: {}", module.cmdline)?;
        }
    }
    Ok(out)
}

/// Rejects values that would break the line-based config syntax.
fn check_value(what: &str, value: &str) -> Result<()> {
    if value.contains(['\n', '\r']) {
        bail!("the {what} must be a single line, got {value:?}");
    }
    if value != value.trim() {
        bail!("the {what} must not start or end with spaces, got {value:?}");
    }
    Ok(())
}

/// Module files live directly under `/boot/`; anything else is a mistake.
fn check_file_name(name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\n', '\r', ':'])
        && name != "kernel";
    if !plain {
        bail!("module file name {name:?} must be a plain file name other than \"kernel\"");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_common_layout() {
        let entry = BootEntry {
            cmdline: "test=conformance".into(),
            modules: vec![Module {
                file_name: "testmod.bin".into(),
                cmdline: "testmod size=3 fnv1a=0123456789abcdef".into(),
            }],
            kaslr: false,
            strict: false,
        };
        let text = render(&entry).expect("valid entry");
        assert_eq!(
            text,
            "timeout: 0\n\n/Evergreen\n    protocol: limine\n    kernel_path: boot():/boot/kernel\n    \
             cmdline: test=conformance\n    kaslr: no\n    module_path: boot():/boot/testmod.bin\n    \
             module_cmdline: testmod size=3 fnv1a=0123456789abcdef\n"
        );
    }

    #[test]
    fn kaslr_can_be_turned_on() {
        let entry = BootEntry {
            kaslr: true,
            ..BootEntry::default()
        };
        let text = render(&entry).expect("valid entry");
        assert!(text.contains("\n    kaslr: yes\n"), "{text}");
        assert!(!text.contains("kaslr: no"), "{text}");
    }

    #[test]
    fn strict_mode_is_a_global_option() {
        let text = render(&BootEntry {
            strict: true,
            ..BootEntry::default()
        })
        .expect("valid entry");
        assert!(
            text.starts_with("timeout: 0\nevergreen_strict: yes\n\n/Evergreen\n"),
            "{text}"
        );
        let normal = render(&BootEntry::default()).expect("valid entry");
        assert!(!normal.contains("strict"), "{normal}");
    }

    #[test]
    fn empty_cmdline_is_left_out() {
        let text = render(&BootEntry::default()).expect("valid entry");
        assert!(!text.contains("cmdline"), "{text}");
        assert!(text.contains("    kernel_path: boot():/boot/kernel\n"));
    }

    #[test]
    fn multi_line_values_are_rejected() {
        let entry = BootEntry {
            cmdline: "a\n    kernel_path: x".into(),
            ..BootEntry::default()
        };
        assert!(render(&entry).is_err());
        let entry = BootEntry {
            cmdline: String::new(),
            modules: vec![Module {
                file_name: "m".into(),
                cmdline: "x\ry".into(),
            }],
            ..BootEntry::default()
        };
        assert!(render(&entry).is_err());
    }

    #[test]
    fn module_names_must_be_plain() {
        for bad in ["", "a/b", "..", "kernel", "x:y"] {
            let entry = BootEntry {
                cmdline: String::new(),
                modules: vec![Module {
                    file_name: bad.into(),
                    cmdline: String::new(),
                }],
                ..BootEntry::default()
            };
            assert!(render(&entry).is_err(), "{bad:?} accepted");
        }
    }
}
