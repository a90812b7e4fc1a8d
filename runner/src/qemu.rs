//! Finding QEMU and OVMF, building the QEMU command line and reading QEMU's exit status.
//!
//! The machine is a q35 PC with OVMF as firmware (code read-only, variables in a writable
//! per-run copy of the template), the disk image as a raw drive, the `isa-debug-exit` device
//! through which the kernel reports test results, and `-no-reboot` so a guest reset (a
//! triple fault, say) ends the run instead of looping. An ISO goes on a CD-ROM drive instead
//! ([`Boot`]), booted by OVMF or, for a hybrid ISO made with real Limine, by QEMU's default
//! BIOS (SeaBIOS): our loader is UEFI-only.

use std::{
    env,
    ffi::OsString,
    fs::{self, OpenOptions},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
};

use anyhow::{Context, Result, bail};
use tempfile::NamedTempFile;

/// The Debian/Ubuntu package that provides `qemu-system-x86_64`.
pub const QEMU_PACKAGE: &str = "qemu-system-x86";
/// The Debian/Ubuntu package that provides OVMF.
pub const OVMF_PACKAGE: &str = "ovmf";
/// Exit status QEMU reports when the kernel writes 0x10 to `isa-debug-exit` ((0x10<<1)|1).
pub const EXIT_SUCCESS: i32 = 33;
/// Exit status QEMU reports when the kernel writes 0x11 to `isa-debug-exit` ((0x11<<1)|1).
pub const EXIT_FAILURE: i32 = 35;
/// The TCP port QEMU's gdbstub listens on unless told otherwise (the one QEMU's `-s` uses).
pub const DEFAULT_GDB_PORT: u16 = 1234;

/// Where distributions install OVMF: (code, vars) pairs, best first.
const OVMF_CANDIDATES: &[(&str, &str)] = &[
    (
        "/usr/share/OVMF/OVMF_CODE_4M.fd",
        "/usr/share/OVMF/OVMF_VARS_4M.fd",
    ),
    (
        "/usr/share/OVMF/OVMF_CODE.fd",
        "/usr/share/OVMF/OVMF_VARS.fd",
    ),
    (
        "/usr/share/edk2/ovmf/OVMF_CODE.fd",
        "/usr/share/edk2/ovmf/OVMF_VARS.fd",
    ),
    (
        "/usr/share/edk2/x64/OVMF_CODE.4m.fd",
        "/usr/share/edk2/x64/OVMF_VARS.4m.fd",
    ),
    (
        "/usr/share/edk2-ovmf/x64/OVMF_CODE.fd",
        "/usr/share/edk2-ovmf/x64/OVMF_VARS.fd",
    ),
    (
        "/usr/share/edk2/x64/OVMF_CODE.fd",
        "/usr/share/edk2/x64/OVMF_VARS.fd",
    ),
];

/// Code file names looked for inside an `OVMF_PATH` directory, best first.
const OVMF_CODE_NAMES: &[&str] = &[
    "OVMF_CODE_4M.fd",
    "OVMF_CODE.4m.fd",
    "OVMF_CODE.fd",
    "x64/OVMF_CODE.4m.fd",
    "x64/OVMF_CODE.fd",
    "ovmf/OVMF_CODE.fd",
];

/// UEFI firmware for QEMU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// Separate code (read-only) and variable-store template (copied per run).
    Split {
        /// `OVMF_CODE*.fd`.
        code: PathBuf,
        /// `OVMF_VARS*.fd`, the template of the variable store.
        vars: PathBuf,
    },
    /// One combined image (`OVMF.fd`), copied per run and used writable.
    Combined(PathBuf),
}

/// Finds `qemu-system-x86_64` on `PATH`.
pub fn find_qemu() -> Result<PathBuf> {
    find_in_path("qemu-system-x86_64", env::var_os("PATH")).with_context(|| {
        format!(
            "qemu-system-x86_64 not found on PATH: install it with `sudo apt-get install \
             {QEMU_PACKAGE}` (Debian/Ubuntu) or run scripts/setup.sh"
        )
    })
}

/// The first file named `program` in the directories of `path` (a `PATH` value).
pub(crate) fn find_in_path(program: &str, path: Option<OsString>) -> Option<PathBuf> {
    env::split_paths(&path?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Finds OVMF: `OVMF_PATH` (a code file, a combined image or a directory) or the places
/// distributions install it.
pub fn find_ovmf() -> Result<Firmware> {
    if let Some(path) = env::var_os("OVMF_PATH").filter(|p| !p.is_empty()) {
        return firmware_from_path(Path::new(&path))
            .with_context(|| format!("using OVMF_PATH={}", Path::new(&path).display()));
    }
    OVMF_CANDIDATES
        .iter()
        .map(|(code, vars)| (Path::new(code), Path::new(vars)))
        .find(|(code, vars)| code.is_file() && vars.is_file())
        .map(|(code, vars)| Firmware::Split {
            code: code.into(),
            vars: vars.into(),
        })
        .with_context(|| {
            format!(
                "OVMF (UEFI firmware for QEMU) not found: install it with `sudo apt-get install \
                 {OVMF_PACKAGE}` (Debian/Ubuntu), or set OVMF_PATH to an OVMF_CODE file or \
                 its directory"
            )
        })
}

/// Interprets an `OVMF_PATH` value.
fn firmware_from_path(path: &Path) -> Result<Firmware> {
    if path.is_dir() {
        for name in OVMF_CODE_NAMES {
            let code = path.join(name);
            if code.is_file() {
                return firmware_from_path(&code);
            }
        }
        let combined = path.join("OVMF.fd");
        if combined.is_file() {
            return Ok(Firmware::Combined(combined));
        }
        bail!("no OVMF_CODE*.fd or OVMF.fd in {}", path.display());
    }
    if !path.is_file() {
        bail!("{} does not exist", path.display());
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if !name.contains("CODE") {
        return Ok(Firmware::Combined(path.to_path_buf()));
    }
    let vars = path.with_file_name(name.replacen("CODE", "VARS", 1));
    if !vars.is_file() {
        bail!(
            "found {} but not the matching {}",
            path.display(),
            vars.display()
        );
    }
    Ok(Firmware::Split {
        code: path.to_path_buf(),
        vars,
    })
}

impl std::fmt::Display for Firmware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Split { code, .. } => write!(f, "{}", code.display()),
            Self::Combined(image) => write!(f, "{}", image.display()),
        }
    }
}

/// CPU acceleration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// Emulation; works everywhere, slowly.
    Tcg,
    /// Hardware virtualization through `/dev/kvm`.
    Kvm,
}

/// Checks that `/dev/kvm` can be opened for reading and writing.
pub fn check_kvm() -> Result<()> {
    OpenOptions::new().read(true).write(true).open("/dev/kvm").context(
        "KVM was requested but /dev/kvm cannot be opened read-write (is KVM enabled and are you \
         in the `kvm` group?); leave out --kvm to emulate with TCG",
    )?;
    Ok(())
}

/// Where the guest's first serial port goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Serial {
    /// The runner's terminal (stdin and stdout).
    Stdio,
    /// A file, truncated at start.
    File(PathBuf),
    /// The terminal, and a copy of the output in a file.
    StdioAndFile(PathBuf),
    /// Output to the file `log` (truncated at start) and input from a FIFO the runner writes:
    /// QEMU's `pipe` backend on `input`, whose `<input>.in` is that FIFO and whose `<input>.out`
    /// is a link to `/dev/null` (the chardev's log file keeps the output). [`Qemu::spawn`]
    /// creates both; write to [`input_fifo`]`(input)`.
    FileWithInput {
        /// The serial log.
        log: PathBuf,
        /// The base path of the pipe (`<input>.in`, `<input>.out`).
        input: PathBuf,
    },
}

impl Serial {
    /// The file that receives the serial output, if any.
    pub fn log(&self) -> Option<&Path> {
        match self {
            Self::Stdio => None,
            Self::File(log) | Self::StdioAndFile(log) | Self::FileWithInput { log, .. } => {
                Some(log)
            }
        }
    }
}

/// The FIFO through which the runner types into the serial port of a
/// [`Serial::FileWithInput`] run with this `input` base path.
pub fn input_fifo(input: &Path) -> PathBuf {
    with_suffix(input, ".in")
}

/// The pipe backend's output path, linked to `/dev/null`.
fn output_sink(input: &Path) -> PathBuf {
    with_suffix(input, ".out")
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// What the machine boots, and with which firmware.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Boot {
    /// The image is a raw disk (the GPT image); OVMF boots its ESP.
    #[default]
    UefiDisk,
    /// The image is an ISO on a CD-ROM drive; OVMF boots its El Torito EFI image.
    UefiCdrom,
    /// The image is a hybrid ISO on a CD-ROM drive; SeaBIOS, QEMU's default firmware, boots
    /// its El Torito BIOS image (no OVMF flash is attached).
    BiosCdrom,
}

impl Boot {
    /// Whether the firmware is OVMF (else SeaBIOS).
    pub fn is_uefi(self) -> bool {
        self != Self::BiosCdrom
    }
}

/// A Linux kernel that the firmware boots directly (QEMU's `-kernel`, which QEMU hands to
/// OVMF through fw_cfg), for comparing Evergreen with Linux on the same machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectKernel {
    /// The kernel (`vmlinuz`, an EFI-stub bzImage).
    pub kernel: PathBuf,
    /// The initramfs (a cpio archive).
    pub initrd: PathBuf,
    /// The kernel command line.
    pub append: String,
}

/// Everything that varies between QEMU runs.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The raw disk image, or the ISO when [`Self::boot`] says CD-ROM; unused with
    /// [`Self::direct_kernel`].
    pub image: PathBuf,
    /// Boot this kernel instead of the image (no drive is attached); everything else about
    /// the machine stays as it is.
    pub direct_kernel: Option<DirectKernel>,
    /// Disk or CD-ROM, OVMF or SeaBIOS.
    pub boot: Boot,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// Number of CPUs.
    pub smp: u8,
    /// TCG or KVM.
    pub accel: Accel,
    /// Whether to open a window (else `-display none`).
    pub window: bool,
    /// Where the serial port goes.
    pub serial: Serial,
    /// Start with the CPUs stopped (`-S`) and wait for GDB on this TCP port (`-gdb tcp::PORT`,
    /// which is what `-s` means for port 1234).
    pub gdb: Option<u16>,
    /// A QMP socket to create (for screendumps, keys and recording events).
    pub qmp: Option<PathBuf>,
    /// Start with the CPUs stopped (`-S`) until a QMP `cont` (as [`Self::gdb`] does until
    /// GDB continues).
    pub paused: bool,
    /// Log every CPU reset to this file (`-d cpu_reset -D FILE`). Under TCG QEMU also writes
    /// `Triple fault` there when the guest triple-faults, which is otherwise reported exactly
    /// like a reset.
    pub reset_log: Option<PathBuf>,
    /// Extra properties of the q35 machine, e.g. `hpet=off` (tests of degraded firmware).
    pub machine: Vec<String>,
    /// A second virtio-blk disk the guest may overwrite (serial `evergreen-scratch`), for the
    /// block-device tests.
    pub scratch_disk: Option<PathBuf>,
    /// More virtio-blk disks after the scratch disk: image and serial number.
    pub extra_disks: Vec<(PathBuf, String)>,
    /// A virtio-net card on QEMU's user network, restricted to this machine (`None`: no card).
    pub net: Option<Network>,
}

/// The guest's network: QEMU user networking with `restrict=on`, so the guest reaches
/// nothing but its DHCP server and gateway and the loopback services forwarded here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Network {
    /// `(host, guest)` TCP ports: connections to 127.0.0.1:host reach the guest's port.
    pub forward: Vec<(u16, u16)>,
    /// `(guest address, guest port, host port)`: connections the guest makes to the address
    /// and port are relayed to 127.0.0.1:host port.
    pub serve: Vec<(std::net::Ipv4Addr, u16, u16)>,
}

impl Network {
    /// The `-netdev` argument.
    pub fn netdev_arg(&self) -> String {
        let mut arg = String::from("user,id=n0,restrict=on");
        for (host, guest) in &self.forward {
            arg.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
        }
        for (addr, port, host) in &self.serve {
            arg.push_str(&format!(",guestfwd=tcp:{addr}:{port}-tcp:127.0.0.1:{host}"));
        }
        arg
    }
}

/// Parses `--forward HOST_PORT:GUEST_PORT`.
pub fn parse_forward(text: &str) -> Result<(u16, u16), String> {
    let (host, guest) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}` is not HOST_PORT:GUEST_PORT"))?;
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("`{p}` is not a port (1 to 65535)"))
    };
    Ok((port(host)?, port(guest)?))
}

/// Parses `--serve GUEST_ADDR:GUEST_PORT:HOST_PORT` (e.g. `10.0.2.100:80:8080`).
pub fn parse_serve(text: &str) -> Result<(std::net::Ipv4Addr, u16, u16), String> {
    let mut parts = text.rsplitn(3, ':');
    let (Some(host), Some(guest), Some(addr)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("`{text}` is not GUEST_ADDR:GUEST_PORT:HOST_PORT"));
    };
    let addr: std::net::Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("`{addr}` is not an IPv4 address"))?;
    let (guest, host) = parse_forward(&format!("{host}:{guest}"))?;
    Ok((addr, host, guest))
}

/// The boot disk's device: modern-only virtio-blk (device id 0x1042), named by its serial.
const BOOT_DISK_DEVICE: &str =
    "virtio-blk-pci,drive=boot,disable-legacy=on,serial=evergreen-boot,bootindex=0";
/// The scratch disk's device.
const SCRATCH_DISK_DEVICE: &str =
    "virtio-blk-pci,drive=scratch,disable-legacy=on,serial=evergreen-scratch";

impl RunOptions {
    /// Options for an unattended run: no window, serial to `log`, one CPU, 512 MiB, TCG.
    pub fn headless(image: PathBuf, log: PathBuf) -> Self {
        Self {
            image,
            direct_kernel: None,
            boot: Boot::UefiDisk,
            memory_mib: 512,
            smp: 1,
            accel: Accel::Tcg,
            window: false,
            serial: Serial::File(log),
            gdb: None,
            qmp: None,
            paused: false,
            reset_log: None,
            machine: Vec::new(),
            scratch_disk: None,
            extra_disks: Vec::new(),
            net: None,
        }
    }
}

/// A QEMU installation: the binary and the firmware.
#[derive(Clone, Debug)]
pub struct Qemu {
    /// `qemu-system-x86_64`.
    pub binary: PathBuf,
    /// OVMF.
    pub firmware: Firmware,
}

impl Qemu {
    /// Finds QEMU and OVMF on this machine.
    pub fn locate() -> Result<Self> {
        Ok(Self {
            binary: find_qemu()?,
            firmware: find_ovmf()?,
        })
    }

    /// Whether this QEMU can open a window (it lists `gtk` or `sdl` among its displays;
    /// Debian ships them in `qemu-system-gui`).
    pub fn has_window_backend(&self) -> bool {
        Command::new(&self.binary)
            .args(["-display", "help"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map(|out| lists_window_backend(&String::from_utf8_lossy(&out.stdout)))
            .unwrap_or(false)
    }

    /// The QEMU command for `opts`, with `writable_fw` as the per-run firmware copy (the
    /// variable store, or the whole combined image; unused when SeaBIOS boots).
    pub fn command(&self, opts: &RunOptions, writable_fw: &Path) -> Command {
        let mut cmd = Command::new(&self.binary);
        let machine = std::iter::once("q35")
            .chain(opts.machine.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(",");
        cmd.arg("-machine")
            .arg(machine)
            .arg("-m")
            .arg(format!("{}M", opts.memory_mib))
            .arg("-smp")
            .arg(opts.smp.to_string());
        // Without flash drives QEMU starts its default firmware, SeaBIOS.
        match (&self.firmware, opts.boot.is_uefi()) {
            (_, false) => {}
            (Firmware::Split { code, .. }, true) => {
                cmd.arg("-drive")
                    .arg(drive_arg("if=pflash,format=raw,readonly=on", code));
                cmd.arg("-drive")
                    .arg(drive_arg("if=pflash,format=raw", writable_fw));
            }
            (Firmware::Combined(_), true) => {
                cmd.arg("-drive")
                    .arg(drive_arg("if=pflash,format=raw", writable_fw));
            }
        }
        if let Some(direct) = &opts.direct_kernel {
            cmd.arg("-kernel")
                .arg(&direct.kernel)
                .arg("-initrd")
                .arg(&direct.initrd)
                .arg("-append")
                .arg(&direct.append);
        } else {
            match opts.boot {
                // The boot disk is a virtio-blk device, which OVMF boots from (its VirtioBlkDxe)
                // as fast as from the default AHCI disk, and which the kernel drives.
                Boot::UefiDisk => {
                    cmd.arg("-drive")
                        .arg(drive_arg("if=none,id=boot,format=raw", &opts.image));
                    cmd.args(["-device", BOOT_DISK_DEVICE]);
                }
                Boot::UefiCdrom | Boot::BiosCdrom => {
                    cmd.arg("-drive")
                        .arg(drive_arg("format=raw,media=cdrom", &opts.image));
                }
            }
        }
        if let Some(scratch) = &opts.scratch_disk {
            cmd.arg("-drive")
                .arg(drive_arg("if=none,id=scratch,format=raw", scratch));
            cmd.args(["-device", SCRATCH_DISK_DEVICE]);
        }
        for (i, (image, serial)) in opts.extra_disks.iter().enumerate() {
            cmd.arg("-drive")
                .arg(drive_arg(&format!("if=none,id=extra{i},format=raw"), image));
            cmd.arg("-device").arg(format!(
                "virtio-blk-pci,drive=extra{i},disable-legacy=on,serial={serial}"
            ));
        }
        if let Some(net) = &opts.net {
            // No option ROM (`romfile=`): OVMF then does not try a network boot.
            cmd.arg("-netdev").arg(net.netdev_arg());
            cmd.args([
                "-device",
                "virtio-net-pci,netdev=n0,disable-legacy=on,romfile=",
            ]);
        }
        cmd.args([
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-no-reboot",
            // QEMU straps ICH9's NO_REBOOT pin by default, so its TCO watchdog could never
            // reset the machine; a real PC's can, once software clears GCS.NO_REBOOT (our
            // loader does before booting an update slot).
            "-global",
            "ICH9-LPC.noreboot=false",
            // No default network card: its option ROM makes OVMF try a network boot, which
            // costs seconds on every start. Devices the kernel drives are added explicitly.
            "-nic",
            "none",
        ]);
        match opts.accel {
            Accel::Tcg => cmd.args(["-accel", "tcg", "-cpu", "max"]),
            Accel::Kvm => cmd.args(["-accel", "kvm", "-cpu", "host"]),
        };
        match &opts.serial {
            // The terminal is the guest's serial console, with QEMU's monitor multiplexed on
            // it: Ctrl-C reaches the guest's shell (signal=off), Ctrl-A X quits QEMU and
            // Ctrl-A C switches to the monitor.
            Serial::Stdio => {
                cmd.args([
                    "-chardev",
                    "stdio,id=serial0,mux=on,signal=off",
                    "-serial",
                    "chardev:serial0",
                    "-mon",
                    "chardev=serial0,mode=readline",
                ]);
            }
            Serial::File(path) => {
                cmd.arg("-serial").arg(prefixed("file:", path));
            }
            Serial::StdioAndFile(path) => {
                cmd.arg("-chardev")
                    .arg(prefixed(
                        "stdio,id=serial0,mux=on,signal=off,logappend=off,logfile=",
                        path,
                    ))
                    .args(["-serial", "chardev:serial0"])
                    .args(["-mon", "chardev=serial0,mode=readline"]);
            }
            Serial::FileWithInput { log, input } => {
                let mut arg = prefixed("pipe,id=serial0,path=", input);
                arg.push(",logappend=off,logfile=");
                arg.push(escape_commas(log));
                cmd.arg("-chardev")
                    .arg(arg)
                    .args(["-serial", "chardev:serial0"]);
            }
        }
        if !opts.window {
            cmd.args(["-display", "none"]);
        }
        if let Some(port) = opts.gdb {
            // No host: QEMU listens on every address, exactly as `-s` does.
            cmd.arg("-gdb").arg(format!("tcp::{port}")).arg("-S");
        } else if opts.paused {
            cmd.arg("-S");
        }
        if let Some(log) = &opts.reset_log {
            // `-D` takes a plain file name, not a `key=value` option: no comma escaping.
            cmd.args(["-d", "cpu_reset", "-D"]).arg(log);
        }
        if let Some(qmp) = &opts.qmp {
            let mut arg = prefixed("unix:", qmp);
            arg.push(",server=on,wait=off");
            cmd.arg("-qmp").arg(arg);
        }
        cmd
    }

    /// Starts QEMU. With serial on a file (with or without input), QEMU's stdin is closed and its stderr goes to
    /// [`qemu_messages_path`]; with serial on the terminal both are inherited.
    pub fn spawn(&self, opts: &RunOptions) -> Result<Running> {
        let template = match &self.firmware {
            Firmware::Split { vars, .. } => vars,
            Firmware::Combined(image) => image,
        };
        let writable = NamedTempFile::with_prefix("evergreen-ovmf-")
            .context("creating a temporary copy of the OVMF variable store")?;
        fs::copy(template, writable.path())
            .with_context(|| format!("copying {}", template.display()))?;
        if let Some(dir) = opts.serial.log().and_then(Path::parent) {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        if let Serial::FileWithInput { input, .. } = &opts.serial {
            make_input_pipe(input)?;
        }
        let mut cmd = self.command(opts, writable.path());
        if let Serial::File(log) | Serial::FileWithInput { log, .. } = &opts.serial {
            // Unattended: no input, and QEMU's own messages go next to the serial log.
            cmd.stdin(Stdio::null());
            let path = qemu_messages_path(log);
            let file =
                fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
            cmd.stderr(file);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        Ok(Running {
            child,
            _firmware_copy: writable,
        })
    }
}

/// Creates the FIFO `<input>.in` and the link `<input>.out` -> `/dev/null` of a
/// [`Serial::FileWithInput`] run, replacing any left by an earlier run.
fn make_input_pipe(input: &Path) -> Result<()> {
    let fifo = input_fifo(input);
    let sink = output_sink(input);
    for path in [&fifo, &sink] {
        if path.symlink_metadata().is_ok() {
            fs::remove_file(path)
                .with_context(|| format!("removing the old {}", path.display()))?;
        }
    }
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .with_context(|| format!("creating the FIFO {}", fifo.display()))?;
    std::os::unix::fs::symlink("/dev/null", &sink)
        .with_context(|| format!("linking {} to /dev/null", sink.display()))?;
    Ok(())
}

/// Where QEMU's own messages go when the serial port goes to `serial_log`:
/// `boot.log` → `boot.qemu.log`.
pub fn qemu_messages_path(serial_log: &Path) -> PathBuf {
    serial_log.with_extension("qemu.log")
}

/// Whether `-display help` output names a backend that opens a window.
fn lists_window_backend(help: &str) -> bool {
    help.lines().any(|l| matches!(l.trim(), "gtk" | "sdl"))
}

/// `key=...,file=PATH`. Commas in QEMU option values are escaped by doubling them.
fn drive_arg(options: &str, file: &Path) -> OsString {
    let mut arg = OsString::from(options);
    arg.push(",file=");
    arg.push(escape_commas(file));
    arg
}

fn prefixed(prefix: &str, path: &Path) -> OsString {
    let mut arg = OsString::from(prefix);
    arg.push(escape_commas(path));
    arg
}

fn escape_commas(path: &Path) -> OsString {
    match path.to_str() {
        Some(s) => s.replace(',', ",,").into(),
        None => path.as_os_str().to_owned(),
    }
}

/// A running QEMU and the temporary firmware copy it uses (deleted when this is dropped).
#[derive(Debug)]
pub struct Running {
    /// The QEMU process.
    pub child: Child,
    _firmware_copy: NamedTempFile,
}

/// What QEMU's exit status says about the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestExit {
    /// The kernel reported success through `isa-debug-exit` (status 33).
    Success,
    /// The kernel reported failure through `isa-debug-exit` (status 35).
    Failure,
    /// QEMU exited on its own: window closed, guest powered off or reset (`-no-reboot`).
    Quit,
    /// Any other status: a QEMU error, or an unexpected `isa-debug-exit` value.
    Other(i32),
    /// QEMU was killed by a signal.
    Signal,
}

impl GuestExit {
    /// Classifies QEMU's exit status.
    pub fn from_status(status: ExitStatus) -> Self {
        match status.code() {
            Some(EXIT_SUCCESS) => Self::Success,
            Some(EXIT_FAILURE) => Self::Failure,
            Some(0) => Self::Quit,
            Some(code) => Self::Other(code),
            None => Self::Signal,
        }
    }

    /// The runner's own exit code for this outcome.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Success | Self::Quit => 0,
            Self::Failure | Self::Signal => 1,
            Self::Other(code) => u8::try_from(code).unwrap_or(1).max(1),
        }
    }

    /// A sentence for the user.
    pub fn describe(self) -> String {
        match self {
            Self::Success => "the kernel reported success (isa-debug-exit, QEMU status 33)".into(),
            Self::Failure => "the kernel reported failure (isa-debug-exit, QEMU status 35)".into(),
            Self::Quit => "QEMU exited with status 0: the window was closed, or the guest powered \
                           off or reset (with -no-reboot a triple fault ends the run)"
                .into(),
            Self::Other(code) if code % 2 == 1 && code > 1 => format!(
                "QEMU exited with status {code}: isa-debug-exit value {:#x}, which is neither \
                 success (0x10) nor failure (0x11)",
                code >> 1
            ),
            Self::Other(code) => format!("QEMU failed with status {code}; see its message above"),
            Self::Signal => "QEMU was killed by a signal".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    fn args(cmd: &Command) -> Vec<String> {
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    fn split_fw() -> Qemu {
        Qemu {
            binary: "qemu-system-x86_64".into(),
            firmware: Firmware::Split {
                code: "/fw/CODE.fd".into(),
                vars: "/fw/VARS.fd".into(),
            },
        }
    }

    #[test]
    fn headless_command_line() {
        let opts = RunOptions::headless("/t/disk,1.img".into(), "/t/serial.log".into());
        let a = args(&split_fw().command(&opts, Path::new("/tmp/vars")));
        let joined = a.join(" ");
        for expected in [
            "-machine q35",
            "-m 512M",
            "-smp 1",
            "-drive if=pflash,format=raw,readonly=on,file=/fw/CODE.fd",
            "-drive if=pflash,format=raw,file=/tmp/vars",
            "-drive if=none,id=boot,format=raw,file=/t/disk,,1.img",
            "-device virtio-blk-pci,drive=boot,disable-legacy=on,serial=evergreen-boot",
            "-device isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-no-reboot",
            "-global ICH9-LPC.noreboot=false",
            "-accel tcg",
            "-serial file:/t/serial.log",
            "-display none",
        ] {
            assert!(
                joined.contains(expected),
                "missing {expected:?} in {joined}"
            );
        }
        assert!(!a.contains(&"-S".to_owned()));
        assert!(!a.contains(&"-d".to_owned()));
        assert!(!joined.contains("-gdb"));
        assert!(!joined.contains("kvm"));
        assert!(!joined.contains("media=cdrom"));
    }

    #[test]
    fn interactive_options() {
        let mut opts = RunOptions::headless("/d.img".into(), "/l".into());
        opts.serial = Serial::StdioAndFile("/t/copy.log".into());
        opts.window = true;
        opts.gdb = Some(DEFAULT_GDB_PORT);
        opts.accel = Accel::Kvm;
        opts.smp = 4;
        opts.memory_mib = 2048;
        opts.qmp = Some("/t/qmp.sock".into());
        let joined = args(&split_fw().command(&opts, Path::new("/v"))).join(" ");
        for expected in [
            "-m 2048M",
            "-smp 4",
            "-accel kvm",
            "-chardev stdio,id=serial0,mux=on,signal=off,logappend=off,logfile=/t/copy.log",
            "-mon chardev=serial0,mode=readline",
            "-serial chardev:serial0",
            "-gdb tcp::1234 -S",
            "-qmp unix:/t/qmp.sock,server=on,wait=off",
        ] {
            assert!(
                joined.contains(expected),
                "missing {expected:?} in {joined}"
            );
        }
        assert!(!joined.contains("-display none"));
    }

    #[test]
    fn recorded_runs_start_paused_and_log_resets() {
        let mut opts = RunOptions::headless("/d.img".into(), "/l".into());
        opts.paused = true;
        opts.reset_log = Some("/t/re,boot.resets.log".into());
        let a = args(&split_fw().command(&opts, Path::new("/v")));
        let joined = a.join(" ");
        assert!(
            joined.contains("-S -d cpu_reset -D /t/re,boot.resets.log"),
            "{joined}"
        );
        // Paused for GDB too: still one -S.
        opts.gdb = Some(DEFAULT_GDB_PORT);
        let a = args(&split_fw().command(&opts, Path::new("/v")));
        assert_eq!(a.iter().filter(|x| *x == "-S").count(), 1, "{a:?}");
    }

    #[test]
    fn gdb_on_another_port() {
        let mut opts = RunOptions::headless("/d.img".into(), "/l".into());
        opts.gdb = Some(40123);
        let a = args(&split_fw().command(&opts, Path::new("/v")));
        let joined = a.join(" ");
        assert!(joined.contains("-gdb tcp::40123 -S"), "{joined}");
        assert_eq!(a.iter().filter(|x| *x == "-gdb").count(), 1, "{joined}");
        assert!(
            !a.contains(&"-s".to_owned()),
            "-s would also open port 1234"
        );
    }

    #[test]
    fn serial_with_input_uses_a_logged_pipe() {
        let mut opts = RunOptions::headless("/d.img".into(), "/l".into());
        opts.serial = Serial::FileWithInput {
            log: "/t/in,put.log".into(),
            input: "/tmp/x/serial".into(),
        };
        let a = args(&split_fw().command(&opts, Path::new("/v")));
        let joined = a.join(" ");
        assert!(
            joined.contains(
                "-chardev pipe,id=serial0,path=/tmp/x/serial,logappend=off,logfile=/t/in,,put.log \
                 -serial chardev:serial0"
            ),
            "{joined}"
        );
        assert_eq!(a.iter().filter(|x| *x == "-serial").count(), 1, "{joined}");
        assert_eq!(opts.serial.log(), Some(Path::new("/t/in,put.log")));
        assert_eq!(
            input_fifo(Path::new("/tmp/x/serial")),
            Path::new("/tmp/x/serial.in")
        );
    }

    #[test]
    fn input_pipe_is_a_fifo_and_a_sink() {
        use std::{io::Write, os::unix::fs::FileTypeExt};

        let dir = tempfile::tempdir().expect("temp dir");
        let base = dir.path().join("serial");
        // Twice: leftovers of an earlier run are replaced.
        make_input_pipe(&base).expect("first");
        make_input_pipe(&base).expect("again");
        let fifo = fs::metadata(input_fifo(&base)).expect("fifo");
        assert!(fifo.file_type().is_fifo());
        assert_eq!(
            fs::read_link(output_sink(&base)).expect("link"),
            Path::new("/dev/null")
        );
        // What QEMU does with the FIFO: open it read-write (never blocks), then read.
        let mut writer = OpenOptions::new()
            .read(true)
            .write(true)
            .open(input_fifo(&base))
            .expect("open fifo");
        writer.write_all(b"hi\r").expect("write");
        let mut got = [0u8; 3];
        std::io::Read::read_exact(&mut writer, &mut got).expect("read back");
        assert_eq!(&got, b"hi\r");
    }

    #[test]
    fn isos_go_on_a_cdrom_drive() {
        let mut opts = RunOptions::headless("/t/evergreen.iso".into(), "/t/serial.log".into());
        let flashes = |a: &[String]| a.iter().filter(|x| x.contains("if=pflash")).count();

        opts.boot = Boot::UefiCdrom;
        let a = args(&split_fw().command(&opts, Path::new("/tmp/vars")));
        let joined = a.join(" ");
        assert!(
            joined.contains("-drive format=raw,media=cdrom,file=/t/evergreen.iso"),
            "{joined}"
        );
        assert_eq!(flashes(&a), 2, "OVMF boots a UEFI CD-ROM: {joined}");
        assert_eq!(a.iter().filter(|x| *x == "-drive").count(), 3, "{joined}");

        opts.boot = Boot::BiosCdrom;
        let a = args(&split_fw().command(&opts, Path::new("/tmp/vars")));
        let joined = a.join(" ");
        assert!(
            joined.contains("-drive format=raw,media=cdrom,file=/t/evergreen.iso"),
            "{joined}"
        );
        assert_eq!(flashes(&a), 0, "SeaBIOS needs no flash: {joined}");
        assert_eq!(a.iter().filter(|x| *x == "-drive").count(), 1, "{joined}");
        assert!(
            !joined.contains("-bios"),
            "QEMU's default BIOS is SeaBIOS: {joined}"
        );
        // The rest of the machine is the same.
        for expected in [
            "-machine q35",
            "isa-debug-exit",
            "-no-reboot",
            "-display none",
        ] {
            assert!(
                joined.contains(expected),
                "missing {expected:?} in {joined}"
            );
        }
    }

    #[test]
    fn the_network_stays_on_loopback() {
        let mut opts = RunOptions::headless("disk.img".into(), "serial.log".into());
        assert!(
            !args(&split_fw().command(&opts, Path::new("vars.fd")))
                .join(" ")
                .contains("netdev")
        );
        opts.net = Some(Network {
            forward: vec![parse_forward("8080:80").expect("a valid forward")],
            serve: vec![parse_serve("10.0.2.100:7:4000").expect("a valid serve")],
        });
        let line = args(&split_fw().command(&opts, Path::new("vars.fd"))).join(" ");
        assert!(line.contains(
            "-netdev user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:8080-:80,\
             guestfwd=tcp:10.0.2.100:7-tcp:127.0.0.1:4000"
        ));
        assert!(line.contains("-device virtio-net-pci,netdev=n0,disable-legacy=on,romfile="));
        assert!(parse_forward("80").is_err());
        assert!(parse_forward("0:80").is_err());
        assert!(parse_serve("10.0.2.100:80").is_err());
        assert!(parse_serve("host:80:90").is_err());
    }

    #[test]
    fn the_scratch_disk_is_a_second_virtio_disk() {
        let mut opts = RunOptions::headless("/t/disk.img".into(), "/t/serial.log".into());
        let plain = args(&split_fw().command(&opts, Path::new("/v"))).join(" ");
        assert!(!plain.contains("scratch"), "{plain}");
        opts.scratch_disk = Some("/t/s,1.img".into());
        let joined = args(&split_fw().command(&opts, Path::new("/v"))).join(" ");
        assert!(
            joined.contains("-drive if=none,id=scratch,format=raw,file=/t/s,,1.img"),
            "{joined}"
        );
        assert!(
            joined.contains(
                "-device virtio-blk-pci,drive=scratch,disable-legacy=on,serial=evergreen-scratch"
            ),
            "{joined}"
        );
        assert!(joined.contains("drive=boot"), "{joined}");
    }

    #[test]
    fn a_direct_kernel_replaces_only_the_disk() {
        let disk = RunOptions::headless("/t/disk.img".into(), "/t/serial.log".into());
        let mut linux = disk.clone();
        linux.direct_kernel = Some(DirectKernel {
            kernel: "/k/vmlinuz".into(),
            initrd: "/k/initrd.cpio".into(),
            append: "console=ttyS0 quiet".into(),
        });
        let disk_args = args(&split_fw().command(&disk, Path::new("/v")));
        let linux_args = args(&split_fw().command(&linux, Path::new("/v")));
        // Drops each option for which `drop(option, value)` holds, with its value.
        let without = |a: &[String], drop: &dyn Fn(&str, &str) -> bool| -> Vec<String> {
            let mut kept = Vec::new();
            let mut i = 0;
            while i < a.len() {
                match a.get(i + 1) {
                    Some(value) if drop(&a[i], value) => i += 2,
                    _ => {
                        kept.push(a[i].clone());
                        i += 1;
                    }
                }
            }
            kept
        };
        assert!(
            linux_args
                .join(" ")
                .contains("-kernel /k/vmlinuz -initrd /k/initrd.cpio -append console=ttyS0 quiet"),
            "{linux_args:?}"
        );
        assert!(!linux_args.iter().any(|a| a.contains("disk.img")));
        // The machine, firmware, CPUs, memory and devices are the same.
        assert_eq!(
            without(&linux_args, &|o, _| matches!(
                o,
                "-kernel" | "-initrd" | "-append"
            )),
            without(&disk_args, &|o, v| (o == "-drive"
                && v.contains("disk.img"))
                || (o == "-device" && v.contains("drive=boot"))),
        );
    }

    #[test]
    fn combined_firmware_uses_one_writable_flash() {
        let qemu = Qemu {
            binary: "q".into(),
            firmware: Firmware::Combined("/fw/OVMF.fd".into()),
        };
        let opts = RunOptions::headless("/d.img".into(), "/l".into());
        let a = args(&qemu.command(&opts, Path::new("/tmp/copy")));
        let flashes: Vec<_> = a.iter().filter(|x| x.contains("if=pflash")).collect();
        assert_eq!(flashes, ["if=pflash,format=raw,file=/tmp/copy"]);
    }

    #[test]
    fn ovmf_path_forms() {
        let dir = tempfile::tempdir().expect("temp dir");
        let code = dir.path().join("OVMF_CODE_4M.fd");
        let vars = dir.path().join("OVMF_VARS_4M.fd");
        fs::write(&code, b"code").expect("write");
        assert!(
            firmware_from_path(&code).is_err(),
            "VARS missing must be an error"
        );
        fs::write(&vars, b"vars").expect("write");
        let expected = Firmware::Split {
            code: code.clone(),
            vars: vars.clone(),
        };
        assert_eq!(firmware_from_path(&code).expect("code file"), expected);
        assert_eq!(firmware_from_path(dir.path()).expect("directory"), expected);
        let combined = dir.path().join("OVMF.fd");
        fs::write(&combined, b"all").expect("write");
        assert_eq!(
            firmware_from_path(&combined).expect("combined"),
            Firmware::Combined(combined.clone())
        );
        assert!(firmware_from_path(&dir.path().join("nope.fd")).is_err());
    }

    #[test]
    fn exit_statuses() {
        let code = |c: i32| GuestExit::from_status(ExitStatus::from_raw(c << 8));
        assert_eq!(code(33), GuestExit::Success);
        assert_eq!(code(33).exit_code(), 0);
        assert_eq!(code(35), GuestExit::Failure);
        assert_eq!(code(35).exit_code(), 1);
        assert_eq!(code(0), GuestExit::Quit);
        assert_eq!(code(3), GuestExit::Other(3));
        assert_eq!(code(3).exit_code(), 3);
        assert!(code(7).describe().contains("0x3"));
        assert_eq!(
            GuestExit::from_status(ExitStatus::from_raw(9)),
            GuestExit::Signal
        );
    }

    #[test]
    fn window_backends() {
        let full = "Available display backend types:\nnone\ngtk\nsdl\negl-headless\ncurses\n";
        assert!(lists_window_backend(full));
        assert!(!lists_window_backend(
            "Available display backend types:\nnone\ncurses\n"
        ));
    }

    #[test]
    fn finds_programs_on_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::write(dir.path().join("qemu-system-x86_64"), b"").expect("write");
        let path =
            env::join_paths(["/nonexistent", dir.path().to_str().expect("utf8")]).expect("join");
        assert_eq!(
            find_in_path("qemu-system-x86_64", Some(path.clone())),
            Some(dir.path().join("qemu-system-x86_64"))
        );
        assert_eq!(find_in_path("other", Some(path)), None);
    }
}
