//! What the kernel asks for: the request scan, the base revision decision and write-back, and
//! the request fields that steer the boot (stack size, entry point, paging mode, MP flags).

use bootcore::{
    proto::{self, Feature, req},
    requests::{self, Scan, read_u64},
};

use crate::{error::Error, kernel::Kernel};

/// Smallest stack the kernel gets (Limine v8 and later).
const MIN_STACK: u64 = 64 * 1024;

/// The kernel's requests and the decisions they imply.
pub struct Wants {
    /// Every request found.
    pub scan: Scan,
    /// The base revision in use.
    pub revision: u64,
    /// Stack size to allocate: max(64 KiB, Stack Size request).
    pub stack_size: u64,
    /// Where the kernel starts: the Entry Point request, else the ELF entry.
    pub entry: u64,
    /// The MP request's flags, if there is an MP request.
    pub mp_flags: Option<u64>,
}

/// Scans the relocated image, settles the base revision (writing the tag back through the
/// image's physical pages) and reads the steering request fields.
pub fn read(kernel: &mut Kernel<'_>, kernel_path: &str) -> Result<Wants, Error> {
    let scan = requests::scan(kernel.image.bytes(), kernel.scan_len)?;
    let revision = requests::decide_revision(scan.base_revision.map(|t| t.requested))?;
    if let Some(tag) = &scan.base_revision {
        requests::write_base_revision(kernel.image.bytes_mut(), tag, true, revision)?;
    }
    log::info!("base revision {revision}");
    log::info!("{} requests", scan.requests.len());
    for request in &scan.requests {
        match request.feature {
            Some(feature) => {
                log::debug!(
                    "request: {} (revision {})",
                    feature.name(),
                    request.revision
                );
            }
            None => log::debug!("request: unknown id {:#x?} (ignored)", request.id),
        }
    }
    let image = kernel.image.bytes();
    let field = |feature: Feature, offset: usize| -> Result<Option<u64>, Error> {
        scan.find(feature)
            .map(|r| read_u64(image, r.field(offset)))
            .transpose()
            .map_err(Error::from)
    };
    check_paging_mode(&scan, image)?;
    let stack_size = field(Feature::StackSize, req::STACK_SIZE)?
        .unwrap_or(0)
        .max(MIN_STACK);
    let requested_entry = field(Feature::EntryPoint, req::ENTRY_POINT)?;
    let entry = kernel
        .exe
        .entry_point(kernel.slide, requested_entry)
        .map_err(|error| match requested_entry {
            Some(va) => Error::BadEntryPoint(va),
            None => Error::Elf {
                path: kernel_path.into(),
                error,
            },
        })?;
    let mp_flags = field(Feature::Mp, req::MP_FLAGS)?;
    Ok(Wants {
        scan,
        revision,
        stack_size,
        entry,
        mp_flags,
    })
}

/// Refuses kernels that require 5-level paging; this loader only builds 4-level tables.
fn check_paging_mode(scan: &Scan, image: &[u8]) -> Result<(), Error> {
    let Some(request) = scan.find(Feature::PagingMode) else {
        return Ok(());
    };
    let min_mode = if request.revision >= 1 {
        read_u64(image, request.field(req::PAGING_MIN_MODE))?
    } else {
        proto::PAGING_MODE_4LVL
    };
    if min_mode >= proto::PAGING_MODE_5LVL {
        return Err(Error::Needs5Level);
    }
    Ok(())
}
