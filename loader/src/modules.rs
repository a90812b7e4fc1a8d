//! Modules: the kernel's internal modules (Module request revision >= 1), then the config's
//! `module_path`s, each read into its own EXECUTABLE_AND_MODULES allocation.

use alloc::{string::String, vec::Vec};

use bootcore::{
    config::LimineEntry,
    proto::{Feature, internal_module, req},
    requests::{Scan, read_u64},
};

use crate::{
    conf,
    error::Error,
    fs::{BootVolume, LoadedFile},
    kernel::Kernel,
    mem::{Allocations, Kind},
};

/// Longest kernel-supplied string the loader reads.
const MAX_STRING: usize = 4096;
/// Most internal modules the loader accepts.
const MAX_INTERNAL: u64 = 256;

/// A loaded module.
pub struct Module {
    /// Its contents.
    pub file: LoadedFile,
    /// Absolute path on the boot volume.
    pub path: String,
    /// The module string (`module_string` / the internal module's string).
    pub string: String,
}

/// An internal module as the kernel describes it.
struct Internal {
    path: String,
    string: String,
    flags: u64,
}

/// Loads internal and config modules if the kernel has a Module request.
pub fn load(
    volume: &mut BootVolume,
    scan: &Scan,
    kernel: &Kernel,
    kernel_path: &str,
    entry: &LimineEntry,
    allocs: &mut Allocations,
) -> Result<Vec<Module>, Error> {
    let Some(request) = scan.find(Feature::Module) else {
        return Ok(Vec::new());
    };
    let mut modules = Vec::new();
    if request.revision >= 1 {
        let dir = kernel_path.rsplit_once('/').map_or("", |(dir, _)| dir);
        for internal in internal_modules(kernel, request.offset)? {
            if internal.flags & internal_module::COMPRESSED != 0 {
                return Err(Error::CompressedModule {
                    path: internal.path,
                });
            }
            // The path may carry a `#hash` suffix; we do not verify hashes of internal modules.
            let relative = internal.path.split('#').next().unwrap_or_default();
            let path = if relative.starts_with('/') {
                String::from(relative)
            } else {
                alloc::format!("{dir}/{}", relative.trim_start_matches("./"))
            };
            match volume.read_into_pages(&path, allocs, Kind::ExecutableAndModules, "module")? {
                Some(file) => {
                    log::info!("module {path} ({} bytes, internal)", file.size);
                    modules.push(Module {
                        file,
                        path,
                        string: internal.string,
                    });
                }
                None if internal.flags & internal_module::REQUIRED != 0 => {
                    return Err(Error::RequiredModuleMissing { path });
                }
                None => log::warn!("internal module {path} not found; skipped"),
            }
        }
    }
    for module in &entry.modules {
        let path = conf::resolve(volume, &module.path)?;
        let file = volume
            .read_into_pages(&path, allocs, Kind::ExecutableAndModules, "module")?
            .ok_or_else(|| Error::FileNotFound {
                what: "module",
                path: conf::display(&module.path),
            })?;
        log::info!(
            "module {} ({} bytes)",
            conf::display(&module.path),
            file.size
        );
        modules.push(Module {
            file,
            path,
            string: module.string.clone(),
        });
    }
    Ok(modules)
}

/// Reads the internal module list of the Module request at image offset `request`.
fn internal_modules(kernel: &Kernel, request: usize) -> Result<Vec<Internal>, Error> {
    let image = kernel.image.bytes();
    let count = read_u64(image, request + req::MODULE_INTERNAL_COUNT)?;
    if count == 0 {
        return Ok(Vec::new());
    }
    if count > MAX_INTERNAL {
        return Err(Error::BadKernelPointer {
            what: "internal module count",
            va: count,
        });
    }
    let array_va = read_u64(image, request + req::MODULE_INTERNAL_MODULES)?;
    let array = kernel
        .offset_of(array_va, count * 8)
        .ok_or(Error::BadKernelPointer {
            what: "internal module array",
            va: array_va,
        })?;
    let mut out = Vec::new();
    for i in 0..count as usize {
        let va = read_u64(image, array + i * 8)?;
        let at =
            kernel
                .offset_of(va, internal_module::SIZE as u64)
                .ok_or(Error::BadKernelPointer {
                    what: "internal module",
                    va,
                })?;
        let path_va = read_u64(image, at + internal_module::PATH)?;
        let string_va = read_u64(image, at + internal_module::STRING)?;
        out.push(Internal {
            path: c_string(kernel, path_va, "internal module path")?,
            string: if string_va == 0 {
                String::new()
            } else {
                c_string(kernel, string_va, "internal module string")?
            },
            flags: read_u64(image, at + internal_module::FLAGS)?,
        });
    }
    Ok(out)
}

/// A NUL-terminated string at kernel virtual address `va`, inside the image.
fn c_string(kernel: &Kernel, va: u64, what: &'static str) -> Result<String, Error> {
    let start = kernel
        .offset_of(va, 1)
        .ok_or(Error::BadKernelPointer { what, va })?;
    let image = kernel.image.bytes();
    let tail = &image[start..image.len().min(start + MAX_STRING)];
    let len = tail
        .iter()
        .position(|&b| b == 0)
        .ok_or(Error::BadKernelPointer { what, va })?;
    Ok(String::from_utf8_lossy(&tail[..len]).into_owned())
}
