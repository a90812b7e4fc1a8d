//! ISO images, made with `xorriso` the way Limine's documentation makes them.
//!
//! UEFI firmware reads no ISO 9660: from a CD it starts `EFI/BOOT/BOOTX64.EFI` inside the El
//! Torito EFI boot image, a small FAT volume. Our loader reads its config and kernel from the
//! volume it was started from, so for our loader that FAT image ([`image::efi_boot_image`])
//! holds every boot file. Real Limine reads `boot():/` from the ISO 9660 volume itself and
//! brings its own El Torito images, for UEFI and for BIOS: with `LIMINE_PATH` the ISO is
//! Limine's hybrid BIOS + UEFI one, which `limine bios-install` also makes bootable from a USB
//! stick under BIOS. Either way the ISO 9660 tree holds the disk image's ESP files at the same
//! paths, so either loader finds them.

use std::{
    env,
    ffi::OsString,
    fs,
    hash::{DefaultHasher, Hash, Hasher},
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::{
    build,
    image::{self, ImageSpec},
    payload::LIMINE_PATH_VAR,
    qemu::find_in_path,
};

/// The Debian/Ubuntu package that provides `xorriso`.
pub const XORRISO_PACKAGE: &str = "xorriso";
/// The ISO 9660 volume identifier.
const VOLUME_ID: &str = "EVERGREEN";
/// Where the ISO 9660 tree holds our El Torito EFI boot image.
const EFI_BOOT_IMAGE: &str = "boot/efiboot.img";
/// Where the ISO 9660 tree holds Limine's files (as in Limine's documentation).
const LIMINE_DIR: &str = "boot/limine";
/// Limine's El Torito image for BIOS (no emulation, loads `limine-bios.sys`).
const LIMINE_BIOS_CD: &str = "limine-bios-cd.bin";
/// Limine's El Torito image for UEFI (a FAT image holding its `BOOTX64.EFI`).
const LIMINE_UEFI_CD: &str = "limine-uefi-cd.bin";
/// Limine's BIOS stage 3, which it looks for on the boot volume.
const LIMINE_BIOS_SYS: &str = "limine-bios.sys";
/// The source of Limine's host tool (`limine bios-install`).
const LIMINE_C: &str = "limine.c";

/// A folder holding Limine's binary release, checked to hold what a hybrid ISO needs.
#[derive(Clone, Debug)]
pub struct LimineRelease {
    dir: PathBuf,
}

impl LimineRelease {
    /// The files of the release a hybrid ISO uses.
    pub const FILES: [&str; 5] = [
        "BOOTX64.EFI",
        LIMINE_UEFI_CD,
        LIMINE_BIOS_CD,
        LIMINE_BIOS_SYS,
        LIMINE_C,
    ];

    /// The release `LIMINE_PATH` names, or `None` when it is not set.
    pub fn from_env() -> Result<Option<Self>> {
        match env::var_os(LIMINE_PATH_VAR).filter(|d| !d.is_empty()) {
            Some(dir) => Self::open(Path::new(&dir)).map(Some),
            None => Ok(None),
        }
    }

    /// The release in `dir`; the error names every file that is missing.
    pub fn open(dir: &Path) -> Result<Self> {
        let missing: Vec<&str> = Self::FILES
            .into_iter()
            .filter(|name| !dir.join(name).is_file())
            .collect();
        if !missing.is_empty() {
            bail!(
                "{LIMINE_PATH_VAR}={} lacks {}: a hybrid BIOS + UEFI ISO needs Limine's binary \
                 release there (e.g. the files of the v9.x-binary branch of \
                 https://github.com/limine-bootloader/limine); without {LIMINE_PATH_VAR} the \
                 ISO is a UEFI one with our loader",
                dir.display(),
                missing.join(", ")
            );
        }
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Writes the ISO of `spec`'s files to `out`. With `limine` it is Limine's hybrid BIOS + UEFI
/// ISO (`spec` then carries Limine's `BOOTX64.EFI`); without, a UEFI ISO whose El Torito
/// image holds `spec`'s loader and every other file. Like the disk image, the ISO is written
/// next to `out` and renamed over it when complete.
pub fn write_iso(spec: &ImageSpec, limine: Option<&LimineRelease>, out: &Path) -> Result<()> {
    let xorriso = find_xorriso()?;
    let tool = limine.map(limine_tool).transpose()?;
    let tree = tempfile::tempdir().context("creating a directory for the ISO's files")?;
    stage(spec, limine, tree.path())?;

    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".evergreen-")
        .suffix(".iso")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let mut cmd = Command::new(&xorriso);
    cmd.args(xorriso_args(limine.is_some(), tree.path(), tmp.path()));
    run(cmd, "xorriso")?;
    if let Some(tool) = &tool {
        run(
            bios_install_command(tool, tmp.path()),
            "limine bios-install",
        )?;
    }
    // Temporary files are private (0600); an image is an ordinary file.
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))
        .context("setting the ISO's permissions")?;
    tmp.persist(out)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// Finds `xorriso` on `PATH`.
pub fn find_xorriso() -> Result<PathBuf> {
    find_in_path("xorriso", env::var_os("PATH")).with_context(|| {
        format!(
            "xorriso not found on PATH: ISO images are made with it; install it with \
             `sudo apt-get install {XORRISO_PACKAGE}` (Debian/Ubuntu) or run scripts/setup.sh"
        )
    })
}

/// Writes the ISO 9660 tree into `tree`: `spec`'s files, and the El Torito images (ours, or
/// Limine's with its BIOS stage).
fn stage(spec: &ImageSpec, limine: Option<&LimineRelease>, tree: &Path) -> Result<()> {
    image::check_paths(spec)?;
    for (path, data) in spec.all_files() {
        put(tree, path, data)?;
    }
    match limine {
        None => put(tree, EFI_BOOT_IMAGE, &image::efi_boot_image(spec)?),
        Some(release) => [LIMINE_BIOS_SYS, LIMINE_BIOS_CD, LIMINE_UEFI_CD]
            .into_iter()
            .try_for_each(|name| {
                let from = release.file(name);
                let data =
                    fs::read(&from).with_context(|| format!("reading {}", from.display()))?;
                put(tree, &format!("{LIMINE_DIR}/{name}"), &data)
            }),
    }
}

/// Writes `data` to `path` (relative, `/`-separated) under `tree`, refusing to overwrite.
fn put(tree: &Path, path: &str, data: &[u8]) -> Result<()> {
    let file = tree.join(path);
    let what = || format!("adding /{path} to the ISO (does a module's name clash with it?)");
    if let Some(dir) = file.parent() {
        fs::create_dir_all(dir).with_context(what)?;
    }
    fs::File::create_new(&file)
        .and_then(|mut f| f.write_all(data))
        .with_context(what)
}

/// `xorriso`'s arguments for an ISO of the tree `tree` written to `out`: Limine's hybrid
/// (BIOS El Torito entry with a boot info table, HFS+ for Macs, then Limine's UEFI image), or
/// ours with only an EFI entry. Both expose the EFI image as a GPT partition behind a
/// protective MBR, so the ISO also boots from a USB stick under UEFI.
fn xorriso_args(hybrid: bool, tree: &Path, out: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["-as", "mkisofs", "-R", "-r", "-J", "-V", VOLUME_ID]
        .map(OsString::from)
        .into();
    if hybrid {
        args.push("-b".into());
        args.push(format!("{LIMINE_DIR}/{LIMINE_BIOS_CD}").into());
        args.extend(
            [
                "-no-emul-boot",
                "-boot-load-size",
                "4",
                "-boot-info-table",
                "-hfsplus",
                "-apm-block-size",
                "2048",
                "--efi-boot",
            ]
            .map(OsString::from),
        );
        args.push(format!("{LIMINE_DIR}/{LIMINE_UEFI_CD}").into());
    } else {
        args.extend(["-e", EFI_BOOT_IMAGE, "-no-emul-boot"].map(OsString::from));
    }
    args.extend(
        [
            "-efi-boot-part",
            "--efi-boot-image",
            "--protective-msdos-label",
        ]
        .map(OsString::from),
    );
    args.push(tree.into());
    args.push("-o".into());
    args.push(out.into());
    args
}

/// Limine's host tool built from the release's `limine.c` with `cc`, under the target
/// directory in a folder named after a hash of the source (so a changed release is rebuilt).
fn limine_tool(release: &LimineRelease) -> Result<PathBuf> {
    let source = release.file(LIMINE_C);
    let code = fs::read(&source).with_context(|| format!("reading {}", source.display()))?;
    let mut hasher = DefaultHasher::new();
    code.hash(&mut hasher);
    let dir = build::target_dir()?
        .join("limine")
        .join(format!("{:016x}", hasher.finish()));
    let tool = dir.join("limine");
    if tool.is_file() {
        return Ok(tool);
    }
    let cc = find_in_path("cc", env::var_os("PATH")).with_context(|| {
        format!(
            "cc (a C compiler) not found on PATH: a hybrid ISO needs it to build Limine's \
             `limine` tool from {}; install it with `sudo apt-get install gcc`",
            source.display()
        )
    })?;
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    status!("building Limine's `limine` tool from {}", source.display());
    // Built under another name and renamed, so an interrupted build is not taken for a tool.
    let partial = dir.join("limine.partial");
    run(cc_command(&cc, &source, &partial), "cc (building limine.c)")?;
    fs::rename(&partial, &tool).with_context(|| format!("renaming to {}", tool.display()))?;
    Ok(tool)
}

/// `cc -O2 -pipe SOURCE -o OUT`, the default build of the `Makefile` in Limine's releases
/// (`limine.c` includes `limine-bios-hdd.h` from its own folder).
fn cc_command(cc: &Path, source: &Path, out: &Path) -> Command {
    let mut cmd = Command::new(cc);
    cmd.args(["-O2", "-pipe"]).arg(source).arg("-o").arg(out);
    cmd
}

/// `limine bios-install ISO`: Limine's boot code in the ISO's MBR, for BIOS boots from a disk.
fn bios_install_command(tool: &Path, iso: &Path) -> Command {
    let mut cmd = Command::new(tool);
    cmd.arg("bios-install").arg(iso);
    cmd
}

/// Runs `cmd` with its output captured, shown only when it fails; `what` names it in errors.
fn run(mut cmd: Command, what: &str) -> Result<()> {
    let output = cmd
        .output()
        .with_context(|| format!("starting {what} ({})", cmd.get_program().display()))?;
    if !output.status.success() {
        let said = [&output.stdout, &output.stderr]
            .map(|b| String::from_utf8_lossy(b).trim().to_owned())
            .join("\n");
        bail!("{what} failed ({}):\n{}", output.status, said.trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use fatfs::{FileSystem, FsOptions};

    use super::*;

    fn strings(args: impl IntoIterator<Item = impl AsRef<std::ffi::OsStr>>) -> Vec<String> {
        args.into_iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect()
    }

    fn spec() -> ImageSpec {
        ImageSpec::new(
            b"MZ app".to_vec(),
            "timeout: 0\n".into(),
            b"\x7fELF".to_vec(),
        )
        .with_file("boot/testmod", b"module".to_vec())
    }

    /// A folder with every file of a Limine release (contents made up).
    fn fake_release() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for name in LimineRelease::FILES {
            fs::write(dir.path().join(name), name.as_bytes()).expect("write");
        }
        dir
    }

    #[test]
    fn our_iso_has_one_efi_entry() {
        let args = strings(xorriso_args(
            false,
            Path::new("/t/tree"),
            Path::new("/o/x.iso"),
        ));
        assert_eq!(
            args,
            [
                "-as",
                "mkisofs",
                "-R",
                "-r",
                "-J",
                "-V",
                "EVERGREEN",
                "-e",
                "boot/efiboot.img",
                "-no-emul-boot",
                "-efi-boot-part",
                "--efi-boot-image",
                "--protective-msdos-label",
                "/t/tree",
                "-o",
                "/o/x.iso"
            ]
        );
    }

    #[test]
    fn hybrid_iso_follows_limines_documentation() {
        let args = strings(xorriso_args(
            true,
            Path::new("/t/tree"),
            Path::new("/o/x.iso"),
        ));
        assert_eq!(
            args.join(" "),
            "-as mkisofs -R -r -J -V EVERGREEN \
             -b boot/limine/limine-bios-cd.bin -no-emul-boot -boot-load-size 4 -boot-info-table \
             -hfsplus -apm-block-size 2048 --efi-boot boot/limine/limine-uefi-cd.bin \
             -efi-boot-part --efi-boot-image --protective-msdos-label /t/tree -o /o/x.iso"
        );
    }

    #[test]
    fn limine_tool_commands() {
        let cc = cc_command(
            Path::new("/usr/bin/cc"),
            Path::new("/l/limine.c"),
            Path::new("/t/limine.partial"),
        );
        assert_eq!(cc.get_program(), "/usr/bin/cc");
        assert_eq!(
            strings(cc.get_args()),
            ["-O2", "-pipe", "/l/limine.c", "-o", "/t/limine.partial"]
        );
        let install = bios_install_command(Path::new("/t/limine"), Path::new("/o/x.iso"));
        assert_eq!(install.get_program(), "/t/limine");
        assert_eq!(strings(install.get_args()), ["bios-install", "/o/x.iso"]);
    }

    #[test]
    fn a_release_lacking_files_is_named_file_by_file() {
        let dir = fake_release();
        assert_eq!(
            LimineRelease::open(dir.path()).expect("complete").dir(),
            dir.path()
        );
        fs::remove_file(dir.path().join("limine.c")).expect("remove");
        fs::remove_file(dir.path().join("limine-bios.sys")).expect("remove");
        let err = format!(
            "{:#}",
            LimineRelease::open(dir.path()).expect_err("incomplete")
        );
        assert!(err.contains("lacks limine-bios.sys, limine.c:"), "{err}");
        assert!(
            err.contains("without LIMINE_PATH the ISO is a UEFI one"),
            "{err}"
        );
    }

    #[test]
    fn our_tree_holds_the_files_and_an_el_torito_image_with_them() {
        let tree = tempfile::tempdir().expect("temp dir");
        let spec = spec();
        stage(&spec, None, tree.path()).expect("staged");
        let read = |p: &str| fs::read(tree.path().join(p)).expect(p);
        assert_eq!(read("EFI/BOOT/BOOTX64.EFI"), spec.efi_app);
        assert_eq!(read("limine.conf"), spec.config.as_bytes());
        assert_eq!(read("boot/kernel"), b"\x7fELF");
        assert_eq!(read("boot/testmod"), b"module");
        let mut efi = read(EFI_BOOT_IMAGE);
        let fs = FileSystem::new(Cursor::new(&mut efi[..]), FsOptions::new()).expect("FAT");
        let names: Vec<String> = fs
            .root_dir()
            .open_dir("boot")
            .expect("boot/")
            .iter()
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, [".", "..", "kernel", "testmod"]);
        assert!(!tree.path().join(LIMINE_DIR).exists());
    }

    #[test]
    fn hybrid_tree_holds_limines_files_where_xorriso_looks() {
        let release_dir = fake_release();
        let release = LimineRelease::open(release_dir.path()).expect("release");
        let tree = tempfile::tempdir().expect("temp dir");
        stage(&spec(), Some(&release), tree.path()).expect("staged");
        for name in [LIMINE_BIOS_SYS, LIMINE_BIOS_CD, LIMINE_UEFI_CD] {
            let staged = fs::read(tree.path().join(LIMINE_DIR).join(name)).expect(name);
            assert_eq!(staged, name.as_bytes());
        }
        // Every path xorriso is told about is in the tree.
        let args = strings(xorriso_args(true, tree.path(), Path::new("/o/x.iso")));
        for (i, arg) in args.iter().enumerate() {
            if ["-b", "--efi-boot"].contains(&arg.as_str()) {
                assert!(tree.path().join(&args[i + 1]).is_file(), "{}", args[i + 1]);
            }
        }
        assert!(!tree.path().join(EFI_BOOT_IMAGE).exists());
        assert_eq!(
            fs::read(tree.path().join("EFI/BOOT/BOOTX64.EFI")).expect("app"),
            b"MZ app"
        );
    }

    #[test]
    fn a_module_clashing_with_an_iso_file_is_an_error() {
        let tree = tempfile::tempdir().expect("temp dir");
        let clash = spec().with_file("boot/efiboot.img", vec![1]);
        let err = format!("{:#}", stage(&clash, None, tree.path()).expect_err("clash"));
        assert!(err.contains("/boot/efiboot.img"), "{err}");
    }

    #[test]
    fn failures_show_what_the_tool_said() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo bad thing >&2; exit 3"]);
        let err = format!("{:#}", run(cmd, "sh").expect_err("exit 3"));
        assert!(err.contains("sh failed"), "{err}");
        assert!(err.contains("out\nbad thing"), "{err}");
        let err = format!(
            "{:#}",
            run(Command::new("/nonexistent/xorriso"), "xorriso").expect_err("missing")
        );
        assert!(err.contains("starting xorriso"), "{err}");
    }
}
