//! The ISO cases: the boot test's files written as an ISO (`cargo run -- iso`) and booted from
//! a CD-ROM drive, checked like the `boot` case.
//!
//! Without `LIMINE_PATH` the ISO is ours (a UEFI El Torito image holding our loader and every
//! file) and only the UEFI case runs: our loader is UEFI-only, so nothing of ours can boot
//! under SeaBIOS, and the BIOS case is skipped (reported as skipped, never as passed). With
//! `LIMINE_PATH` both cases boot Limine's hybrid ISO, under OVMF and under SeaBIOS.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::{
    image::ImageSpec,
    iso::{self, LimineRelease},
    payload::LIMINE_PATH_VAR,
    qemu::{Boot, RunOptions},
};

/// The firmware that boots the ISO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Firmware {
    /// OVMF, through the El Torito EFI image.
    Uefi,
    /// SeaBIOS, through Limine's El Torito BIOS image.
    Bios,
}

/// Why a case booting with `firmware` cannot run on this machine, if it cannot.
pub(super) fn skip_reason(firmware: Firmware) -> Option<&'static str> {
    let limine = std::env::var_os(LIMINE_PATH_VAR).is_some_and(|d| !d.is_empty());
    skip_without(firmware, limine)
}

/// Why a case booting with `firmware` cannot run when `limine` says whether `LIMINE_PATH` is
/// set.
fn skip_without(firmware: Firmware, limine: bool) -> Option<&'static str> {
    (firmware == Firmware::Bios && !limine).then_some(
        "needs LIMINE_PATH (a Limine binary release): only Limine's hybrid ISO boots under \
         SeaBIOS, our loader is UEFI-only",
    )
}

/// Writes `spec` as the ISO of case `name` into `images`, sets `opts` to boot it from a
/// CD-ROM drive with `firmware`, and returns its path.
pub(super) fn write(
    images: &Path,
    name: &str,
    spec: &ImageSpec,
    firmware: Firmware,
    opts: &mut RunOptions,
) -> Result<PathBuf> {
    let limine = LimineRelease::from_env()?;
    let path = images.join(format!("{name}.iso"));
    iso::write_iso(spec, limine.as_ref(), &path)
        .with_context(|| format!("writing {}", path.display()))?;
    opts.boot = match firmware {
        Firmware::Uefi => Boot::UefiCdrom,
        Firmware::Bios => Boot::BiosCdrom,
    };
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_bios_case_needs_limine() {
        assert!(skip_without(Firmware::Bios, false).is_some_and(|why| why.contains("LIMINE_PATH")));
        assert_eq!(skip_without(Firmware::Bios, true), None);
        assert_eq!(skip_without(Firmware::Uefi, false), None);
        assert_eq!(skip_without(Firmware::Uefi, true), None);
    }
}
