//! Finding `limine.conf` on the boot volume, choosing the entry, resolving its paths.

use alloc::string::String;
use core::str;

use bootcore::config::{self, Config, Path, Timeout};

use crate::{error::Error, fs::BootVolume};

/// The parsed config and where it came from.
pub struct Loaded {
    /// Path of the config on the boot volume.
    pub path: &'static str,
    /// The parsed file.
    pub config: Config,
}

/// Reads and parses the first config found in [`config::SEARCH_PATHS`].
pub fn load(volume: &mut BootVolume) -> Result<Loaded, Error> {
    for path in config::SEARCH_PATHS {
        let Some(bytes) = volume.read_small(path)? else {
            continue;
        };
        let text = str::from_utf8(&bytes).map_err(|_| Error::ConfigNotText { path })?;
        let config = config::parse(text).map_err(|error| Error::Config { path, error })?;
        return Ok(Loaded { path, config });
    }
    Err(Error::ConfigNotFound)
}

/// The volume path of a config path: `boot():` and `boot(N)` with N the ESP's partition.
pub fn resolve(volume: &BootVolume, path: &Path) -> Result<String, Error> {
    if let Some(wanted) = path.partition
        && wanted != volume.partition
    {
        return Err(Error::WrongPartition {
            path: display(path),
            wanted,
            esp: volume.partition,
        });
    }
    if path.hash.is_some() {
        return Err(Error::HashUnsupported {
            path: display(path),
        });
    }
    Ok(path.path.clone())
}

/// The path as it would be written in the config.
pub fn display(path: &Path) -> String {
    match path.partition {
        Some(n) => alloc::format!("boot({n}):{}", path.path),
        None => alloc::format!("boot():{}", path.path),
    }
}

/// Honours `timeout`: there is no menu, so a non-zero timeout is a countdown that any key cuts
/// short, and `timeout: no` waits for a key before booting the default entry.
pub fn countdown(timeout: Timeout, title: &str) {
    let ticks = match timeout {
        Timeout::Millis(0) => return,
        Timeout::Millis(ms) => {
            log::info!(
                "booting '{title}' in {} s; press any key to boot now",
                ms.div_ceil(1000)
            );
            Some(ms.div_ceil(TICK_MS))
        }
        Timeout::Never => {
            log::info!("press any key to boot '{title}'");
            None
        }
    };
    uefi::system::with_stdin(|stdin| {
        let mut left = ticks;
        while left != Some(0) {
            match stdin.read_key() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => {}
            }
            uefi::boot::stall(core::time::Duration::from_millis(TICK_MS));
            left = left.map(|n| n - 1);
        }
    });
}

/// Polling interval of the countdown.
const TICK_MS: u64 = 10;
