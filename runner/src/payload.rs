//! What goes on the ESP: the UEFI application (our loader, or real Limine from `LIMINE_PATH`),
//! the kernel, the boot entry and the modules.

use std::{
    env, fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};

use crate::{
    config::{self, BootEntry},
    image::ImageSpec,
};

/// The environment variable naming a folder that holds real Limine's `BOOTX64.EFI`.
pub const LIMINE_PATH_VAR: &str = "LIMINE_PATH";

/// The UEFI application to boot and a name for it in messages.
#[derive(Clone, Debug)]
pub struct EfiApp {
    /// The file's bytes.
    pub data: Vec<u8>,
    /// Where it came from (for progress messages).
    pub source: String,
}

/// Real Limine's `BOOTX64.EFI` if `LIMINE_PATH` is set (an error if the file is missing),
/// else `None`.
pub fn limine_from_env() -> Result<Option<EfiApp>> {
    let Some(dir) = env::var_os(LIMINE_PATH_VAR).filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    let path = PathBuf::from(dir).join("BOOTX64.EFI");
    if !path.is_file() {
        bail!(
            "{LIMINE_PATH_VAR} is set but {} does not exist: point it at a folder holding \
             Limine's BOOTX64.EFI (from a Limine v9+ binary release)",
            path.display()
        );
    }
    let data = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Some(EfiApp {
        data,
        source: format!("Limine ({})", path.display()),
    }))
}

/// Our loader, as built (`loader.efi`).
pub fn our_loader(path: &Path) -> Result<EfiApp> {
    let data = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(EfiApp {
        data,
        source: format!("our loader ({})", path.display()),
    })
}

/// A module file to put under `/boot/` with its command line.
#[derive(Clone, Debug)]
pub struct ModuleFile {
    /// The file name under `/boot/`.
    pub file_name: String,
    /// The module command line.
    pub cmdline: String,
    /// The contents.
    pub data: Vec<u8>,
}

impl ModuleFile {
    /// Reads a host file as a module; its command line is its file name.
    pub fn from_host_file(path: &Path) -> Result<Self> {
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no UTF-8 file name", path.display()))?
            .to_owned();
        let data = fs::read(path).with_context(|| format!("reading module {}", path.display()))?;
        Ok(Self {
            cmdline: file_name.clone(),
            file_name,
            data,
        })
    }
}

/// The standard image: `app` as `BOOTX64.EFI`, the kernel, a generated `limine.conf` with
/// `cmdline` and the modules.
pub fn standard_image(
    app: &EfiApp,
    kernel: Vec<u8>,
    cmdline: &str,
    modules: &[ModuleFile],
) -> Result<ImageSpec> {
    standard_image_in(LoaderMode::Normal, app, kernel, cmdline, modules)
}

/// How our loader is asked to boot: normally, or in strict mode (`evergreen_strict: yes`),
/// where it makes every choice the Limine protocol leaves open against the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LoaderMode {
    /// The loader's usual choices.
    #[default]
    Normal,
    /// Strict mode (`loader/README.md`, "Strict mode").
    Strict,
}

/// [`standard_image`] with the loader mode spelled out.
pub fn standard_image_in(
    mode: LoaderMode,
    app: &EfiApp,
    kernel: Vec<u8>,
    cmdline: &str,
    modules: &[ModuleFile],
) -> Result<ImageSpec> {
    let entry = BootEntry {
        strict: mode == LoaderMode::Strict,
        cmdline: cmdline.to_owned(),
        modules: modules
            .iter()
            .map(|m| config::Module {
                file_name: m.file_name.clone(),
                cmdline: m.cmdline.clone(),
            })
            .collect(),
        kaslr: false,
    };
    let mut spec = ImageSpec::new(app.data.clone(), config::render(&entry)?, kernel);
    for module in modules {
        spec = spec.with_file(format!("boot/{}", module.file_name), module.data.clone());
    }
    Ok(spec)
}
