//! Why a boot failed, in words a user can act on.

use alloc::string::String;
use core::fmt;

use bootcore::{config::ConfigError, elf::ElfError, requests::ScanError};
use uefi::Status;

/// Everything that stops the loader before ExitBootServices.
#[derive(Debug)]
pub enum Error {
    /// A firmware service failed.
    Firmware {
        /// What we were doing.
        what: &'static str,
        /// The firmware's status.
        status: Status,
    },
    /// The firmware runs in 5-level paging mode; this loader only does 4-level.
    FirmwareLa57,
    /// No `limine.conf` in any searched location.
    ConfigNotFound,
    /// The config file is not UTF-8.
    ConfigNotText {
        /// Where it was.
        path: &'static str,
    },
    /// The config does not parse or names no bootable entry.
    Config {
        /// Where it was.
        path: &'static str,
        /// What is wrong.
        error: ConfigError,
    },
    /// A `boot(N):` path names another partition than the ESP.
    WrongPartition {
        /// The path as written.
        path: String,
        /// N.
        wanted: u32,
        /// The ESP's partition number (0 if unknown).
        esp: u32,
    },
    /// A path the file system cannot take.
    BadPath {
        /// The path.
        path: String,
        /// Why.
        why: &'static str,
    },
    /// A file that must exist does not.
    FileNotFound {
        /// What it is.
        what: &'static str,
        /// The path.
        path: String,
    },
    /// A path names a directory.
    NotAFile {
        /// The path.
        path: String,
    },
    /// Reading a file failed.
    FileRead {
        /// The path.
        path: String,
        /// The firmware's status.
        status: Status,
    },
    /// A file too big for memory.
    FileTooLarge {
        /// The path.
        path: String,
    },
    /// A file with a hash suffix (`#…`) whose checking is not implemented.
    HashUnsupported {
        /// The path.
        path: String,
    },
    /// The kernel is not a loadable executable.
    Elf {
        /// The path.
        path: String,
        /// Why.
        error: ElfError,
    },
    /// The request scan failed (duplicates, unsupported base revision, …).
    Requests(ScanError),
    /// The Entry Point request points outside the image.
    BadEntryPoint(u64),
    /// A kernel-supplied pointer (internal module list, string) leads outside the image.
    BadKernelPointer {
        /// What it was supposed to be.
        what: &'static str,
        /// The pointer.
        va: u64,
    },
    /// An internal module marked REQUIRED is missing.
    RequiredModuleMissing {
        /// The path.
        path: String,
    },
    /// A compressed internal module (not supported).
    CompressedModule {
        /// The path.
        path: String,
    },
    /// The kernel insists on 5-level paging.
    Needs5Level,
    /// The x2APIC is enabled, the kernel did not ask for it and it cannot be turned off.
    X2ApicStuck,
    /// A page allocation failed.
    OutOfMemory {
        /// What it was for.
        what: &'static str,
        /// How many pages.
        pages: u64,
    },
    /// The allocation list is full (a loader limit).
    TooManyAllocations {
        /// What it was for.
        what: &'static str,
    },
    /// The update slots could not be read (`evergreen_slots: yes`).
    Slots(String),
    /// Neither update slot can boot (the reasons, per slot).
    NoBootableSlot(String),
    /// A pre-sized buffer turned out too small (a loader bug).
    Internal(&'static str),
}

impl Error {
    /// The status returned to firmware.
    pub fn status(&self) -> Status {
        match self {
            Error::Firmware { status, .. } | Error::FileRead { status, .. } => *status,
            Error::ConfigNotFound
            | Error::FileNotFound { .. }
            | Error::RequiredModuleMissing { .. } => Status::NOT_FOUND,
            Error::OutOfMemory { .. } | Error::TooManyAllocations { .. } => {
                Status::OUT_OF_RESOURCES
            }
            Error::FirmwareLa57
            | Error::Needs5Level
            | Error::X2ApicStuck
            | Error::HashUnsupported { .. }
            | Error::CompressedModule { .. } => Status::UNSUPPORTED,
            Error::Internal(_) => Status::ABORTED,
            _ => Status::LOAD_ERROR,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Firmware { what, status } => write!(f, "firmware failure: {what}: {status:?}"),
            Error::FirmwareLa57 => write!(
                f,
                "firmware runs with 5-level paging; only 4-level is supported"
            ),
            Error::ConfigNotFound => write!(
                f,
                "no limine.conf found (searched {})",
                bootcore::config::SEARCH_PATHS.join(", ")
            ),
            Error::ConfigNotText { path } => write!(f, "config {path} is not UTF-8 text"),
            Error::Config { path, error } => write!(f, "bad config {path}: {error}"),
            Error::WrongPartition { path, wanted, esp } => write!(
                f,
                "{path}: partition {wanted} is not reachable; only the boot partition ({esp}) is"
            ),
            Error::BadPath { path, why } => write!(f, "bad path {path}: {why}"),
            Error::FileNotFound { what, path } => write!(f, "{what} not found: {path}"),
            Error::NotAFile { path } => write!(f, "{path} is a directory, not a file"),
            Error::FileRead { path, status } => write!(f, "cannot read {path}: {status:?}"),
            Error::FileTooLarge { path } => write!(f, "{path} is too large"),
            Error::HashUnsupported { path } => {
                write!(
                    f,
                    "{path}: hash verification (#suffix) is not supported by this loader"
                )
            }
            Error::Elf { path, error } => {
                write!(f, "kernel {path} is not a valid executable: {error}")
            }
            Error::Requests(e) => write!(f, "kernel requests: {e}"),
            Error::BadEntryPoint(va) => {
                write!(
                    f,
                    "entry point request points outside the kernel image: {va:#x}"
                )
            }
            Error::BadKernelPointer { what, va } => {
                write!(
                    f,
                    "kernel's {what} pointer {va:#x} is outside the kernel image"
                )
            }
            Error::RequiredModuleMissing { path } => write!(f, "required module not found: {path}"),
            Error::CompressedModule { path } => {
                write!(
                    f,
                    "module {path} is marked compressed; compressed modules are not supported"
                )
            }
            Error::Needs5Level => {
                write!(
                    f,
                    "kernel requires 5-level paging (min_mode); this loader only does 4-level"
                )
            }
            Error::X2ApicStuck => write!(f, "x2APIC is enabled by firmware and cannot be disabled"),
            Error::OutOfMemory { what, pages } => {
                write!(f, "out of memory: {pages} pages for {what}")
            }
            Error::TooManyAllocations { what } => {
                write!(f, "too many allocations (at {what}); loader limit reached")
            }
            Error::Slots(why) => write!(f, "update slots: {why}"),
            Error::NoBootableSlot(why) => write!(f, "nothing to boot: {why}"),
            Error::Internal(what) => write!(f, "internal error: {what}"),
        }
    }
}

impl From<ScanError> for Error {
    fn from(e: ScanError) -> Self {
        Error::Requests(e)
    }
}
