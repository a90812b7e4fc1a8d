//! The boot volume (the ESP this loader was started from) and reading files from it.
//!
//! Only the loader's own partition is reachable: `boot():` and `boot(N):` with N equal to the
//! ESP's partition number. Files the kernel will see are read straight into page allocations.

use alloc::{string::String, vec, vec::Vec};

use uefi::{
    CString16, Guid, Status,
    boot::{self, ScopedProtocol},
    proto::{
        device_path::{DevicePath, DevicePathNodeEnum, media::PartitionSignature},
        loaded_image::LoadedImage,
        media::{
            file::{Directory, File, FileAttribute, FileInfo, FileMode, RegularFile},
            fs::SimpleFileSystem,
        },
    },
};

use crate::{
    error::Error,
    firmware,
    mem::{Allocations, Kind, Region, pages_for},
};

/// Where the loader came from.
pub struct BootVolume {
    fs: ScopedProtocol<SimpleFileSystem>,
    /// 1-based partition number of the ESP on its disk; 0 if unknown.
    pub partition: u32,
    /// The ESP's GPT partition GUID, if it is on a GPT disk.
    pub part_guid: Option<Guid>,
    /// Physical base and size of the loader's own image (for the temporary identity map).
    pub image: (u64, u64),
}

/// A file read into its own page allocation.
pub struct LoadedFile {
    /// The pages holding the contents (the tail of the last page is zero).
    pub region: Region,
    /// The file size in bytes.
    pub size: u64,
}

impl LoadedFile {
    /// `data` copied into fresh pages of the given kind.
    pub fn copy_of(
        data: &[u8],
        allocs: &mut Allocations,
        kind: Kind,
        what: &'static str,
    ) -> Result<Self, Error> {
        let size = data.len() as u64;
        let mut region = allocs.pages(pages_for(size), kind, what)?;
        region.bytes_mut()[..data.len()].copy_from_slice(data);
        Ok(Self { region, size })
    }
}

impl BootVolume {
    /// Opens the file system of the volume the loader image was loaded from.
    pub fn open() -> Result<Self, Error> {
        let image =
            boot::open_protocol_exclusive::<LoadedImage>(boot::image_handle()).map_err(|e| {
                Error::Firmware {
                    what: "LoadedImage protocol",
                    status: e.status(),
                }
            })?;
        let (base, size) = image.info();
        let device = image.device().ok_or(Error::Firmware {
            what: "the loader's boot device",
            status: Status::NOT_FOUND,
        })?;
        drop(image);
        let (partition, part_guid) = partition_of(device);
        let fs =
            boot::get_image_file_system(boot::image_handle()).map_err(|e| Error::Firmware {
                what: "the boot volume's file system",
                status: e.status(),
            })?;
        Ok(Self {
            fs,
            partition,
            part_guid,
            image: (base as u64, size),
        })
    }

    fn root(&mut self) -> Result<Directory, Error> {
        self.fs.open_volume().map_err(|e| Error::Firmware {
            what: "opening the boot volume",
            status: e.status(),
        })
    }

    /// Opens a regular file by absolute path (`/`-separated); `Ok(None)` if it does not exist.
    fn open_file(&mut self, path: &str) -> Result<Option<RegularFile>, Error> {
        let uefi_path: String = path.trim_start_matches('/').replace('/', "\\");
        let name = CString16::try_from(uefi_path.as_str()).map_err(|_| Error::BadPath {
            path: path.into(),
            why: "not representable in UCS-2",
        })?;
        let mut root = self.root()?;
        let handle = match root.open(&name, FileMode::Read, FileAttribute::empty()) {
            Ok(handle) => handle,
            Err(e) if e.status() == Status::NOT_FOUND => return Ok(None),
            Err(e) => {
                return Err(Error::FileRead {
                    path: path.into(),
                    status: e.status(),
                });
            }
        };
        match handle.into_regular_file() {
            Some(file) => Ok(Some(file)),
            None => Err(Error::NotAFile { path: path.into() }),
        }
    }

    /// Reads a small file (the config) into a vector; `Ok(None)` if it does not exist.
    pub fn read_small(&mut self, path: &str) -> Result<Option<Vec<u8>>, Error> {
        let Some(mut file) = self.open_file(path)? else {
            return Ok(None);
        };
        let size = file_size(&mut file, path)?;
        let len = usize::try_from(size).map_err(|_| Error::FileTooLarge { path: path.into() })?;
        let mut data = vec![0u8; len];
        read_all(&mut file, &mut data, path)?;
        Ok(Some(data))
    }

    /// Reads a file into fresh pages of the given kind; `Ok(None)` if it does not exist.
    pub fn read_into_pages(
        &mut self,
        path: &str,
        allocs: &mut Allocations,
        kind: Kind,
        what: &'static str,
    ) -> Result<Option<LoadedFile>, Error> {
        let Some(mut file) = self.open_file(path)? else {
            return Ok(None);
        };
        let size = file_size(&mut file, path)?;
        let mut region = allocs.pages(pages_for(size), kind, what)?;
        let len = usize::try_from(size).map_err(|_| Error::FileTooLarge { path: path.into() })?;
        read_all(&mut file, &mut region.bytes_mut()[..len], path)?;
        Ok(Some(LoadedFile { region, size }))
    }
}

pub fn file_size(file: &mut RegularFile, path: &str) -> Result<u64, Error> {
    let info = file
        .get_boxed_info::<FileInfo>()
        .map_err(|e| Error::FileRead {
            path: path.into(),
            status: e.status(),
        })?;
    Ok(info.file_size())
}

pub fn read_all(file: &mut RegularFile, buf: &mut [u8], path: &str) -> Result<(), Error> {
    let mut done = 0;
    while done < buf.len() {
        let n = file.read(&mut buf[done..]).map_err(|e| Error::FileRead {
            path: path.into(),
            status: e.status(),
        })?;
        if n == 0 {
            return Err(Error::FileRead {
                path: path.into(),
                status: Status::END_OF_FILE,
            });
        }
        done += n;
    }
    Ok(())
}

/// The partition number and GPT partition GUID of the HardDrive node in `device`'s path.
fn partition_of(device: uefi::Handle) -> (u32, Option<Guid>) {
    let Ok(path) = firmware::shared_protocol::<DevicePath>(device) else {
        return (0, None);
    };
    for node in path.node_iter() {
        if let Ok(DevicePathNodeEnum::MediaHardDrive(hd)) = node.as_enum() {
            let guid = match hd.partition_signature() {
                PartitionSignature::Guid(guid) => Some(guid),
                _ => None,
            };
            return (hd.partition_number(), guid);
        }
    }
    (0, None)
}
