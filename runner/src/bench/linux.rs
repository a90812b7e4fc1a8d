//! The Linux kernel Evergreen is compared with: `LINUX_KERNEL=path` (a `vmlinuz`), else
//! Debian's cloud kernel, fetched once with apt into `target/linux/` and kept there.
//!
//! `linux-image-cloud-amd64` is a metapackage; `apt-cache depends` names the real
//! `linux-image-VERSION-cloud-amd64`, whose `boot/vmlinuz-VERSION` is what QEMU boots.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

/// The variable naming a kernel to use instead of Debian's.
const KERNEL_VAR: &str = "LINUX_KERNEL";
/// Debian's metapackage of its smallest x86-64 kernel (few drivers: it boots fast).
const METAPACKAGE: &str = "linux-image-cloud-amd64";

/// A kernel to boot and what to call it.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// The `vmlinuz` file.
    pub path: PathBuf,
    /// Its version (`6.1.0-48-cloud-amd64`) or file name.
    pub name: String,
}

/// Finds the kernel: `LINUX_KERNEL`, an earlier download in `target/linux/`, or a new one.
pub fn kernel(target: &Path) -> Result<Kernel> {
    if let Some(path) = std::env::var_os(KERNEL_VAR).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("{KERNEL_VAR}={}: no such file", path.display());
        }
        return Ok(named(path));
    }
    let dir = target.join("linux");
    let root = dir.join("root");
    if let Some(kernel) = find_vmlinuz(&root.join("boot"))? {
        return Ok(kernel);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let package = real_package()?;
    status!(
        "downloading {package} (apt-get download) into {}…",
        dir.display()
    );
    run(Command::new("apt-get")
        .args(["download", "-q"])
        .arg(&package)
        .current_dir(&dir))?;
    let deb = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        })
        .with_context(|| {
            format!(
                "apt-get download left no {package}_*.deb in {}",
                dir.display()
            )
        })?;
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    find_vmlinuz(&root.join("boot"))?
        .with_context(|| format!("{} holds no boot/vmlinuz-*", deb.display()))
}

/// The package `linux-image-cloud-amd64` depends on, from `apt-cache depends`.
fn real_package() -> Result<String> {
    let output = Command::new("apt-cache")
        .args(["depends", METAPACKAGE])
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| {
            format!("running apt-cache (needs Debian's apt; or set {KERNEL_VAR}=path/to/vmlinuz)")
        })?;
    if !output.status.success() {
        bail!(
            "apt-cache depends {METAPACKAGE} failed ({}); run apt-get update, or set \
             {KERNEL_VAR}=path/to/vmlinuz",
            output.status
        );
    }
    image_dependency(&String::from_utf8_lossy(&output.stdout))
        .with_context(|| format!("apt-cache names no linux-image-* dependency of {METAPACKAGE}"))
}

/// The first `Depends: linux-image-…` of `apt-cache depends` output (not a `<virtual>` one).
pub fn image_dependency(depends: &str) -> Option<String> {
    depends
        .lines()
        .filter_map(|l| l.trim().trim_start_matches('|').strip_prefix("Depends: "))
        .map(str::trim)
        .find(|name| name.starts_with("linux-image-") && !name.contains('<'))
        .map(str::to_owned)
}

/// `vmlinuz-*` in `boot`, if there is one.
fn find_vmlinuz(boot: &Path) -> Result<Option<Kernel>> {
    if !boot.is_dir() {
        return Ok(None);
    }
    let found = std::fs::read_dir(boot)
        .with_context(|| format!("reading {}", boot.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        });
    Ok(found.map(named))
}

fn named(path: PathBuf) -> Kernel {
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = file
        .strip_prefix("vmlinuz-")
        .map_or_else(|| file.clone(), str::to_owned);
    Kernel { path, name }
}

fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("running {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metapackage_names_the_real_image() {
        let out = "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-48-cloud-amd64\n";
        assert_eq!(
            image_dependency(out).as_deref(),
            Some("linux-image-6.1.0-48-cloud-amd64")
        );
        let alternatives = "x\n |Depends: <linux-image-virtual>\n  Depends: linux-image-6.12.9\n";
        assert_eq!(
            image_dependency(alternatives).as_deref(),
            Some("linux-image-6.12.9")
        );
        assert_eq!(image_dependency("x\n  Recommends: foo\n"), None);
    }

    #[test]
    fn kernels_are_named_by_version() {
        let k = named("/t/boot/vmlinuz-6.1.0-48-cloud-amd64".into());
        assert_eq!(k.name, "6.1.0-48-cloud-amd64");
        assert_eq!(named("/k/bzImage".into()).name, "bzImage");
    }
}
