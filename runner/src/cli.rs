//! The command line: `cargo run -- [FLAGS]` boots, subcommands make images and run tests.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    thread,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::{
    bench,
    build::{self, Component, Profile},
    image::{self, ImageSpec},
    inspect, interrupt,
    iso::{self, LimineRelease},
    payload::{self, LoaderMode, ModuleFile},
    qemu::{self, Accel, Boot, GuestExit, Qemu, RunOptions, Serial},
    qmp, release,
    rootfs::{self, AddSpec, Rootfs},
    systest,
    watch::{self, Outcome},
};

const EXAMPLES: &str = "\
Examples:
  cargo run                               build everything and boot in QEMU (window if there is
                                          a display, serial output on this terminal)
  cargo run -- --headless --smp 2 --memory 1G
  cargo run -- --cmdline 'log=debug'      boot with a kernel command line
  cargo run -- exec -- seq 1 3            run a program (here busybox's seq) and exit with its
                                          status
  cargo run -- exec --add ./tool:/usr/bin/tool -- tool
                                          copy a host file into the initramfs and run it
  cargo run -- --add ./www:/srv/www       boot with a host folder copied to /srv/www
  cargo run -- --net                      with a network card (DHCP; reaches only this machine)
  cargo run -- --forward 8080:80 --serve 10.0.2.100:80:8000
                                          127.0.0.1:8080 reaches the guest's port 80; the guest's
                                          10.0.2.100:80 reaches 127.0.0.1:8000
  cargo run -- --gdb                      wait for GDB on localhost:1234
  cargo run -- --gdb-port 4321            the same on port 4321
  cargo run -- --loader-strict            our loader makes every open protocol choice against
                                          the kernel (a kernel relying on luck fails)
  cargo run -- --headless --timeout 60    stop QEMU after 60 s (exit status 124)
  cargo run -- image --out evergreen.img  write a disk image for a USB stick
  cargo run -- iso --out evergreen.iso    write a UEFI ISO (xorriso) with our loader
  cargo run -- release --version 2 target/v2.slot
                                          build a signed release (a slot image) of version 2
  cargo run -- inspect target/evergreen.img
                                          print the boot state and the slots of a disk image
  cargo run -- --iso                      boot the ISO from a CD-ROM drive instead of the disk
  cargo run -- test                       host unit tests + QEMU system tests
  cargo run -- test --filter bad --skip-unit
  cargo run -- bench boot --runs 5        median time from QEMU start to the kernel banner
  cargo run -- bench linux                user/bench/bench.c on Evergreen and on Linux, side
                                          by side (`bench user`: Evergreen only)
  LIMINE_PATH=~/limine cargo run          boot with real Limine's BOOTX64.EFI
  LIMINE_PATH=~/limine cargo run -- --bios
                                          boot Limine's hybrid BIOS + UEFI ISO under SeaBIOS

Environment:
  LIMINE_PATH  folder holding Limine's BOOTX64.EFI, used instead of our loader; for `iso`,
               `--iso` and `--bios` also limine-uefi-cd.bin, limine-bios-cd.bin,
               limine-bios.sys and limine.c (Limine's binary release): a hybrid ISO
  OVMF_PATH    an OVMF_CODE*.fd file, a combined OVMF.fd, or a folder holding them
  EVERGREEN_RELEASE_KEY
               a release key file (an ed25519 seed, 64 hex digits) for `release` and
               `inspect`, instead of the public development key runner/keys/dev-release-key.seed
  LINUX_KERNEL a vmlinuz for `bench linux` (default: Debian's linux-image-cloud-amd64,
               downloaded with apt-get into target/linux/)

Exit status of a boot: 0 when the kernel reports success (isa-debug-exit 0x10) or QEMU is
closed, 1 when it reports failure (0x11), 124 on --timeout, QEMU's own status otherwise.";

/// Evergreen's host tool: builds the kernel and the loader, writes a bootable GPT disk image
/// and runs it in QEMU.
#[derive(Debug, Parser)]
#[command(
    name = "runner",
    bin_name = "cargo run --",
    version,
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build, write target/evergreen.img and boot it in QEMU (what plain `cargo run` does)
    Run(RunArgs),
    /// Build and write a raw disk image, e.g. to copy to a USB stick with dd
    Image(ImageArgs),
    /// Build and write a bootable ISO (UEFI; hybrid BIOS + UEFI with LIMINE_PATH) with xorriso
    Iso(IsoArgs),
    /// Run the test suite: host unit tests, then QEMU system tests
    Test(TestArgs),
    /// Boot headless and save a PNG screenshot of the screen (through QMP)
    Screenshot(ScreenshotArgs),
    /// Boot several times and print benchmark figures (medians)
    Bench(BenchArgs),
    /// Boot headless, run one static program as init, print its output and exit with its status
    Exec(ExecArgs),
    /// Build a signed release: a slot image holding the kernel, the initramfs and a manifest
    #[command(after_help = RELEASE_HELP)]
    Release(ReleaseArgs),
    /// Print the boot state and the slots of a disk image (its update partitions)
    #[command(after_help = INSPECT_HELP)]
    Inspect(InspectArgs),
}

const RELEASE_HELP: &str = "\
A release is one slot image: a small FAT16 volume with `kernel`, `initramfs` and `manifest`,
the manifest (product, version, rollback index, creation time, boot tries, each file's size
and SHA-256) signed with ed25519. It is written whole into EG_SLOT_A or EG_SLOT_B.

Without --key or EVERGREEN_RELEASE_KEY it is signed with the DEVELOPMENT key,
runner/keys/dev-release-key.seed, which is public: fine for testing, never for a real release.
A key file is one ed25519 seed as 64 hex digits (`#` lines are comments); make one with
  cargo run -- release keygen --out ~/evergreen-release.key
which prints its public half: a loader built with EVERGREEN_RELEASE_PUBKEY=<that> set boots
only releases signed with the key and refuses the TEST-ONLY key's. Keep the key file out of
the repository.

Examples:
  cargo run -- release --version 2 target/v2.slot
  cargo run -- release --version 3 --rollback-index 2 --tries 2 --key ~/evergreen-release.key \\
      target/v3.slot
  cargo run -- release --version 2 --kernel k.elf --initramfs root.cpio target/v2.slot
  cargo run -- release --version 2 --tries 2 --panic-at-boot target/v2-panics.slot";

const INSPECT_HELP: &str = "\
Decodes EG_STATE (both copies of the boot-state record, and which one is current), checks the
release in EG_SLOT_A and EG_SLOT_B (manifest signature and every file's SHA-256) and says
which slot the loader's rules would boot next. Releases are checked against the key of --key
or EVERGREEN_RELEASE_KEY, else the development key.

Example:
  cargo run -- inspect target/evergreen.img";

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct ReleaseArgs {
    /// `keygen`, or nothing to build a release
    #[command(subcommand)]
    action: Option<ReleaseAction>,
    /// The release's version (updates only go up)
    #[arg(long, value_name = "N", required = true,
          value_parser = clap::value_parser!(u64).range(1..))]
    version: Option<u64>,
    /// Its rollback index: once a release with index R is marked good, nothing under R boots
    #[arg(long, value_name = "R", default_value_t = 1)]
    rollback_index: u64,
    /// Boots it gets on trial before it is marked bad (1 to 15)
    #[arg(long, value_name = "T", default_value_t = release::DEFAULT_TRIES,
          value_parser = clap::value_parser!(u8).range(1..=15))]
    tries: u8,
    /// Sign with this key file instead of EVERGREEN_RELEASE_KEY or the development key
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Use this kernel ELF instead of building one (needs --initramfs too)
    #[arg(long, value_name = "FILE", requires = "initramfs")]
    kernel: Option<PathBuf>,
    /// Use this initramfs (cpio) instead of building one (needs --kernel too)
    #[arg(long, value_name = "FILE", requires = "kernel")]
    initramfs: Option<PathBuf>,
    /// Build the kernel with the dev profile
    #[arg(long)]
    debug: bool,
    /// Copy the host file or folder HOST into the initramfs at GUEST; repeatable
    #[arg(long = "add", value_name = "HOST:GUEST", value_parser = rootfs::parse_add)]
    add: Vec<AddSpec>,
    /// Kernel command-line words of this release (signed with it; our loader adds them to
    /// the ESP entry's)
    #[arg(long, value_name = "WORDS", default_value = "")]
    cmdline: String,
    /// Make a release that panics at boot (adds `evergreen.test=panic` to its command line),
    /// to see a trial roll back
    #[arg(long)]
    panic_at_boot: bool,
    /// Make a release that hangs at boot, before it feeds the watchdog (adds
    /// `evergreen.test=hang`), to see the watchdog roll a trial back
    #[arg(long)]
    hang_at_boot: bool,
    /// Where to write the slot image
    #[arg(value_name = "OUT", required = true)]
    out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum ReleaseAction {
    /// Make a release key: a new ed25519 seed in FILE (mode 0600, never inside the
    /// repository outside target/), and print its public half for EVERGREEN_RELEASE_PUBKEY
    Keygen {
        /// The key file to create (an existing file is never overwritten)
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// Check releases with this key file instead of EVERGREEN_RELEASE_KEY or the development key
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// The disk image
    #[arg(value_name = "IMAGE")]
    image: PathBuf,
}

#[derive(Debug, Args)]
struct ExecArgs {
    /// Print every system call of the program on stderr, as `strace -f` does
    #[arg(long)]
    strace: bool,
    /// Number of CPUs (1 to 64)
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=64))]
    smp: u8,
    /// Guest memory: a number of MiB or a size like 512M or 2G
    #[arg(long, value_name = "SIZE", default_value = "512M", value_parser = parse_memory)]
    memory: u64,
    /// Give up after this many seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    timeout: u64,
    /// Build the kernel and the loader with the dev profile
    #[arg(long)]
    debug: bool,
    /// Copy the host file or folder HOST into the initramfs at GUEST (an absolute path;
    /// folders recursively, keeping modes and links); repeatable
    #[arg(long = "add", value_name = "HOST:GUEST", value_parser = rootfs::parse_add)]
    add: Vec<AddSpec>,
    /// Copy the host program HOST to GUEST as --add does, with the shared libraries and the
    /// interpreter it needs (`ldd`, PT_INTERP), each at its host path; repeatable
    #[arg(long = "add-with-libs", value_name = "HOST:GUEST",
          value_parser = rootfs::parse_add_with_libs)]
    add_with_libs: Vec<AddSpec>,
    /// The command: an executable's path on the host, or a name in the image's PATH
    /// (`busybox`, a busybox applet such as `echo`, or an `--add`ed program), and its arguments
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// What to measure
    #[arg(value_enum)]
    what: bench::Bench,
    /// How many boots (per system); default 5, and 1 for `user` and `linux`
    #[arg(long, value_name = "N")]
    runs: Option<usize>,
    /// `user`, `linux`: number of CPUs (1 to 64), the same for both systems
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=64))]
    smp: u8,
    /// `user`, `linux`: guest memory, a number of MiB or a size like 512M or 2G
    #[arg(long, value_name = "SIZE", default_value = "512M", value_parser = parse_memory)]
    memory: u64,
    /// `user`, `linux`: the program's BENCH_SCALE (iterations are multiplied by it)
    #[arg(long, value_name = "FACTOR", default_value_t = 1.0)]
    scale: f64,
    /// `user`, `linux`: boot Evergreen with the kernel's strace (calls go to the serial log)
    #[arg(long)]
    strace: bool,
    /// Build the kernel and the loader with the dev profile
    #[arg(long)]
    debug: bool,
}

#[derive(Debug, Args)]
struct BuildArgs {
    /// Build the kernel and the loader with the dev profile instead of --release
    #[arg(long)]
    debug: bool,
    /// Kernel command line written to limine.conf
    #[arg(
        long,
        value_name = "STR",
        default_value = "",
        hide_default_value = true
    )]
    cmdline: String,
    /// Add FILE as a module under /boot/ (its module_cmdline is its file name); repeatable
    #[arg(long, value_name = "FILE")]
    module: Vec<PathBuf>,
    /// Copy the host file or folder HOST into the initramfs at GUEST (an absolute path;
    /// folders recursively, keeping modes and links); repeatable
    #[arg(long = "add", value_name = "HOST:GUEST", value_parser = rootfs::parse_add)]
    add: Vec<AddSpec>,
    /// Copy the host program HOST to GUEST as --add does, with the shared libraries and the
    /// interpreter it needs (`ldd`, PT_INTERP), each at its host path; repeatable
    #[arg(long = "add-with-libs", value_name = "HOST:GUEST",
          value_parser = rootfs::parse_add_with_libs)]
    add_with_libs: Vec<AddSpec>,
    /// Boot our loader in strict mode: every choice the Limine protocol leaves open is made
    /// against the kernel (see loader/README.md); not with LIMINE_PATH
    #[arg(long)]
    loader_strict: bool,
}

impl BuildArgs {
    fn profile(&self) -> Profile {
        if self.debug {
            Profile::Debug
        } else {
            Profile::Release
        }
    }
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    build: BuildArgs,
    /// No window: serial on the terminal only (also the default without DISPLAY/WAYLAND_DISPLAY)
    #[arg(long)]
    headless: bool,
    /// Number of CPUs (1 to 64, the most the kernel runs on)
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=64))]
    smp: u8,
    /// Guest memory: a number of MiB or a size like 512M or 2G
    #[arg(long, value_name = "SIZE", default_value = "512M", value_parser = parse_memory)]
    memory: u64,
    /// Start halted and wait for GDB on localhost:1234 (QEMU -s -S, i.e. -S -gdb tcp::1234)
    #[arg(long)]
    gdb: bool,
    /// Like --gdb, with GDB's port PORT instead of 1234
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    gdb_port: Option<u16>,
    /// Stop QEMU after SECS seconds and exit with status 124
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// Use KVM (needs a usable /dev/kvm); the default is TCG emulation
    #[arg(long)]
    kvm: bool,
    /// Also copy the serial output to FILE
    #[arg(long, value_name = "FILE")]
    serial_log: Option<PathBuf>,
    /// Open a QMP socket at PATH (e.g. for `screendump`)
    #[arg(long, value_name = "PATH")]
    qmp: Option<PathBuf>,
    /// Boot target/evergreen.iso from a CD-ROM drive instead of the disk image
    #[arg(long)]
    iso: bool,
    /// Boot the ISO with SeaBIOS instead of OVMF (implies --iso; needs LIMINE_PATH: our loader
    /// is UEFI-only)
    #[arg(long)]
    bios: bool,
    /// Attach a virtio-net card on QEMU's user network with restrict=on: the guest gets DHCP
    /// and reaches nothing outside this machine but what --forward and --serve set up
    #[arg(long)]
    net: bool,
    /// Relay connections to 127.0.0.1:HOST_PORT to the guest's GUEST_PORT (TCP; implies --net)
    #[arg(long, value_name = "HOST_PORT:GUEST_PORT", value_parser = qemu::parse_forward)]
    forward: Vec<(u16, u16)>,
    /// Relay the guest's TCP connections to GUEST_ADDR:GUEST_PORT to 127.0.0.1:HOST_PORT
    /// (e.g. 10.0.2.100:80:8080; implies --net)
    #[arg(long, value_name = "GUEST_ADDR:GUEST_PORT:HOST_PORT", value_parser = qemu::parse_serve)]
    serve: Vec<(std::net::Ipv4Addr, u16, u16)>,
}

impl RunArgs {
    /// The guest's network, if any flag asks for one.
    fn network(&self) -> Option<qemu::Network> {
        (self.net || !self.forward.is_empty() || !self.serve.is_empty()).then(|| qemu::Network {
            forward: self.forward.clone(),
            serve: self.serve.clone(),
        })
    }

    /// The gdbstub's port: `--gdb-port`, or the default with plain `--gdb`.
    fn gdb_port(&self) -> Option<u16> {
        self.gdb_port.or(self.gdb.then_some(qemu::DEFAULT_GDB_PORT))
    }
}

#[derive(Debug, Args)]
struct ImageArgs {
    #[command(flatten)]
    build: BuildArgs,
    /// Where to write the image [default: target/evergreen.img]
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Put this release (a slot image from `release`) in slot A instead of the factory v1
    #[arg(long, value_name = "SLOT_IMAGE")]
    slot_a: Option<PathBuf>,
    /// Put this release (a slot image from `release`) in slot B, which is otherwise empty
    #[arg(long, value_name = "SLOT_IMAGE")]
    slot_b: Option<PathBuf>,
    /// The key the releases of --slot-a and --slot-b must verify with (default:
    /// EVERGREEN_RELEASE_KEY, else the development key)
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct IsoArgs {
    #[command(flatten)]
    build: BuildArgs,
    /// Where to write the ISO [default: target/evergreen.iso]
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct TestArgs {
    /// Run only the system tests whose name contains NAME (skips the host unit tests)
    #[arg(long, value_name = "NAME")]
    filter: Option<String>,
    /// List the system tests and exit
    #[arg(long)]
    list: bool,
    /// Time limit of each system test in seconds
    #[arg(long, value_name = "SECS", default_value_t = systest::DEFAULT_TIMEOUT.as_secs())]
    timeout: u64,
    /// Skip the host unit tests (cargo test of the runner and the crates in libs/)
    #[arg(long)]
    skip_unit: bool,
    /// Skip the lint gate (cargo fmt --check, clippy -D warnings on every target)
    #[arg(long)]
    skip_lint: bool,
    /// Build the kernel and the loader with the dev profile
    #[arg(long)]
    debug: bool,
}

#[derive(Debug, Args)]
struct ScreenshotArgs {
    #[command(flatten)]
    build: BuildArgs,
    /// Where to save the PNG
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Take the picture once a serial line contains TEXT
    #[arg(long, value_name = "TEXT", default_value = "Evergreen ")]
    wait_for: String,
    /// Then wait SECS more seconds (for the screen to settle)
    #[arg(long, value_name = "SECS", default_value_t = 3)]
    delay: u64,
    /// Give up after SECS seconds
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    timeout: u64,
    /// Number of CPUs
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=16))]
    smp: u8,
}

/// Parses `512`, `512M`, `512MiB`, `2G` into MiB.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size like 512M"))?;
    let mib = match unit.to_ascii_uppercase().as_str() {
        "" | "M" | "MB" | "MIB" => Some(number),
        "G" | "GB" | "GIB" => number.checked_mul(1024),
        _ => return Err(format!("unknown unit in `{text}`: use M or G")),
    }
    .ok_or_else(|| format!("`{text}` is too large"))?;
    if !(32..=65536).contains(&mib) {
        return Err(format!("`{text}` is out of range: use 32M to 64G"));
    }
    Ok(mib)
}

/// Parses the command line and runs it.
pub fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    interrupt::install()?;
    match cli.command {
        None => run(&cli.run),
        Some(Command::Run(args)) => run(&args),
        Some(Command::Image(args)) => write_image(&args),
        Some(Command::Iso(args)) => write_iso(&args),
        Some(Command::Test(args)) => test(&args),
        Some(Command::Screenshot(args)) => screenshot(&args),
        Some(Command::Bench(args)) => {
            let profile = if args.debug {
                Profile::Debug
            } else {
                Profile::Release
            };
            let user_bench = matches!(args.what, bench::Bench::User | bench::Bench::Linux);
            let options = bench::user::Options {
                runs: args.runs.unwrap_or(if user_bench { 1 } else { 5 }),
                smp: args.smp,
                memory_mib: args.memory,
                scale: args.scale,
                strace: args.strace,
                profile,
            };
            bench::run(args.what, &options)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Release(args)) => make_release(&args),
        Some(Command::Inspect(args)) => {
            let key = release::ReleaseKey::load(args.key.as_deref())?;
            let report = inspect::DiskReport::read(&args.image, &key.public())?;
            println!(
                "image {} (releases checked with {})",
                show(&args.image),
                key.describe()
            );
            print!("{}", report.render());
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Exec(args)) => crate::exec::run(&crate::exec::ExecRequest {
            command: &args.command,
            strace: args.strace,
            smp: args.smp,
            memory_mib: args.memory,
            timeout: Duration::from_secs(args.timeout),
            profile: if args.debug {
                Profile::Debug
            } else {
                Profile::Release
            },
            adds: &args
                .add
                .iter()
                .chain(&args.add_with_libs)
                .cloned()
                .collect::<Vec<_>>(),
        }),
    }
}

/// `cargo run -- release`: builds (or takes) the kernel and initramfs and writes a signed
/// slot image.
fn make_release(args: &ReleaseArgs) -> Result<ExitCode> {
    if let Some(ReleaseAction::Keygen { out }) = &args.action {
        let public = release::keygen(out)?;
        status!(
            "wrote a new release key to {} (mode 0600): keep it out of the repository",
            show(out)
        );
        println!("EVERGREEN_RELEASE_PUBKEY={public}");
        status!(
            "build loaders that accept only its releases (and refuse the TEST-ONLY key's) with \
             that variable set, e.g. EVERGREEN_RELEASE_PUBKEY={public} cargo run -- image …"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(version), Some(out)) = (args.version, args.out.as_deref()) else {
        bail!("release: --version and OUT are required (or `release keygen --out FILE`)");
    };
    let key = release::ReleaseKey::load(args.key.as_deref())?;
    let (kernel, initramfs) = match (&args.kernel, &args.initramfs) {
        (Some(kernel), Some(initramfs)) => (
            std::fs::read(kernel).with_context(|| format!("reading {}", kernel.display()))?,
            std::fs::read(initramfs).with_context(|| format!("reading {}", initramfs.display()))?,
        ),
        _ => {
            let profile = if args.debug {
                Profile::Debug
            } else {
                Profile::Release
            };
            let rootfs = Rootfs::gather(&args.add)?;
            let kernel_path = build::build(Component::Kernel, profile)?;
            let kernel = std::fs::read(&kernel_path)
                .with_context(|| format!("reading {}", kernel_path.display()))?;
            (kernel, rootfs::module(&rootfs.tree).data)
        }
    };
    let info = release::ReleaseInfo::new(version, args.rollback_index, args.tries);
    let mut cmdline = args.cmdline.trim().to_owned();
    for (wanted, word) in [
        (args.panic_at_boot, release::PANIC_AT_BOOT),
        (args.hang_at_boot, release::HANG_AT_BOOT),
    ] {
        if wanted {
            cmdline = format!("{cmdline} {word}").trim().to_owned();
        }
    }
    let slot =
        release::build_slot_image_with_cmdline(&info, &kernel, &initramfs, &cmdline, &key.key)?;
    std::fs::write(out, &slot.image).with_context(|| format!("writing {}", out.display()))?;
    status!(
        "wrote release v{} (rollback index {}, {} tries, {} KiB) to {}, signed with {}",
        version,
        args.rollback_index,
        args.tries,
        slot.image.len() / 1024,
        show(out),
        key.describe()
    );
    Ok(ExitCode::SUCCESS)
}

/// `path` relative to the current directory when it is inside it (for messages).
fn show(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

/// What a build produced: the files to boot, which loader boots them, where the kernel is.
struct BootFiles {
    spec: ImageSpec,
    /// The loader, for messages.
    loader: String,
    /// The kernel ELF (for GDB).
    kernel: PathBuf,
}

/// Builds the kernel, and our loader unless `LIMINE_PATH` names real Limine, and gathers the
/// files of an image: the standard initramfs (with every `--add`) and the `--module`s.
fn boot_files(args: &BuildArgs) -> Result<BootFiles> {
    let adds: Vec<AddSpec> = args
        .add
        .iter()
        .chain(&args.add_with_libs)
        .cloned()
        .collect();
    let rootfs = Rootfs::gather(&adds)?;
    let mut modules = vec![rootfs::module(&rootfs.tree)];
    for path in &args.module {
        modules.push(ModuleFile::from_host_file(path)?);
    }
    let limine = payload::limine_from_env()?;
    if args.loader_strict && limine.is_some() {
        bail!(
            "--loader-strict is a mode of our loader, but {} is set: unset it to use our loader",
            payload::LIMINE_PATH_VAR
        );
    }
    let kernel_path = build::build(kernel_for(&args.cmdline), args.profile())?;
    // Our loader is only built when it goes into the image.
    let app = match limine {
        Some(limine) => limine,
        None => payload::our_loader(&build::build(Component::Loader, args.profile())?)?,
    };
    let kernel = std::fs::read(&kernel_path)
        .with_context(|| format!("reading {}", kernel_path.display()))?;
    let mode = if args.loader_strict {
        LoaderMode::Strict
    } else {
        LoaderMode::Normal
    };
    Ok(BootFiles {
        spec: payload::standard_image_in(mode, &app, kernel, &args.cmdline, &modules)?,
        loader: app.source,
        kernel: kernel_path,
    })
}

/// Builds what the image needs, writes it to `out` and returns the kernel's path.
fn build_image(args: &BuildArgs, out: &Path) -> Result<PathBuf> {
    build_image_with(args, out, [None, None])
}

/// [`build_image`], with given slot images in place of the factory layout's.
fn build_image_with(
    args: &BuildArgs,
    out: &Path,
    slots: [Option<image::SlotImage>; 2],
) -> Result<PathBuf> {
    let files = boot_files(args)?;
    status!(
        "writing image {} (boot loader: {})",
        show(out),
        files.loader
    );
    let mut spec = files.spec.with_factory_release()?;
    for (i, slot) in slots.into_iter().enumerate() {
        if let Some(slot) = slot {
            spec.slots[i] = Some(slot);
        }
    }
    let spec = spec.booting_slots();
    image::write_image(&spec, out).with_context(|| format!("writing {}", out.display()))?;
    Ok(files.kernel)
}

/// Builds what the ISO needs, writes it to `out` (Limine's hybrid ISO with `LIMINE_PATH`) and
/// returns the kernel's path.
fn build_iso(args: &BuildArgs, out: &Path) -> Result<PathBuf> {
    // Both fail in a moment, before minutes of building.
    let limine = LimineRelease::from_env()?;
    iso::find_xorriso()?;
    let files = boot_files(args)?;
    let kind = match &limine {
        Some(_) => "hybrid BIOS + UEFI",
        None => "UEFI",
    };
    status!(
        "writing {kind} ISO {} (boot loader: {})",
        show(out),
        files.loader
    );
    iso::write_iso(&files.spec, limine.as_ref(), out)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(files.kernel)
}

/// Why `--bios` needs `LIMINE_PATH`, and how to provide it.
fn bios_needs_limine() -> String {
    format!(
        "--bios boots a hybrid BIOS + UEFI ISO, which needs real Limine: our loader is \
         UEFI-only. Put Limine's binary release ({}; e.g. from the v9.x-binary branch of \
         https://github.com/limine-bootloader/limine) in a folder and point {} at it: \
         LIMINE_PATH=~/limine cargo run -- --bios",
        LimineRelease::FILES.join(", "),
        payload::LIMINE_PATH_VAR
    )
}

/// The medium and firmware `args` ask for.
fn boot_of(args: &RunArgs) -> Boot {
    if args.bios {
        Boot::BiosCdrom
    } else if args.iso {
        Boot::UefiCdrom
    } else {
        Boot::UefiDisk
    }
}

fn run(args: &RunArgs) -> Result<ExitCode> {
    let boot = boot_of(args);
    if boot == Boot::BiosCdrom && LimineRelease::from_env()?.is_none() {
        bail!("{}", bios_needs_limine());
    }
    let qemu = Qemu::locate()?;
    let accel = if args.kvm {
        qemu::check_kvm()?;
        Accel::Kvm
    } else {
        Accel::Tcg
    };
    let (image, kernel) = if boot == Boot::UefiDisk {
        let image = build::target_dir()?.join("evergreen.img");
        let kernel = build_image(&args.build, &image)?;
        (image, kernel)
    } else {
        let image = build::target_dir()?.join("evergreen.iso");
        let kernel = build_iso(&args.build, &image)?;
        (image, kernel)
    };

    let mut window = !args.headless && display_available();
    if window && !qemu.has_window_backend() {
        status!("this QEMU cannot open a window (install qemu-system-gui); running headless");
        window = false;
    }
    let opts = RunOptions {
        image,
        direct_kernel: None,
        boot,
        memory_mib: args.memory,
        smp: args.smp,
        accel,
        window,
        serial: match &args.serial_log {
            Some(log) => Serial::StdioAndFile(log.clone()),
            None => Serial::Stdio,
        },
        gdb: args.gdb_port(),
        qmp: args.qmp.clone(),
        paused: false,
        reset_log: None,
        machine: Vec::new(),
        scratch_disk: None,
        extra_disks: Vec::new(),
        net: args.network(),
    };
    status!(
        "starting QEMU ({}, {} CPU{}, {}, {}, {})",
        if window { "window" } else { "headless" },
        args.smp,
        if args.smp == 1 { "" } else { "s" },
        memory_label(args.memory),
        if accel == Accel::Kvm { "KVM" } else { "TCG" },
        match boot {
            Boot::UefiDisk => "disk, OVMF",
            Boot::UefiCdrom => "CD-ROM, OVMF",
            Boot::BiosCdrom => "CD-ROM, SeaBIOS",
        },
    );
    if let Some(port) = opts.gdb {
        status!(
            "QEMU waits for GDB on localhost:{port}; attach with:\n    gdb {} -ex 'target remote \
             :{port}'",
            show(&kernel)
        );
    }
    let mut running = qemu.spawn(&opts)?;
    let timeout = args.timeout.map(Duration::from_secs);
    let outcome = watch::watch(&mut running.child, None, timeout, |_| false)?;
    Ok(match outcome {
        Outcome::Exited(_) if interrupt::interrupted() => {
            status!("stopped (Ctrl-C)");
            ExitCode::from(130)
        }
        Outcome::Exited(status) => {
            let exit = GuestExit::from_status(status);
            status!("{}", exit.describe());
            ExitCode::from(exit.exit_code())
        }
        Outcome::TimedOut => {
            watch::terminate(&mut running.child, Duration::from_secs(3))?;
            status!(
                "QEMU was still running after {} s (--timeout); stopped it",
                timeout_secs(args)
            );
            ExitCode::from(124)
        }
        Outcome::Interrupted | Outcome::Matched(_) => {
            watch::terminate(&mut running.child, Duration::from_secs(3))?;
            status!("interrupted; QEMU stopped");
            ExitCode::from(130)
        }
    })
}

fn timeout_secs(args: &RunArgs) -> u64 {
    args.timeout.unwrap_or_default()
}

fn memory_label(mib: u64) -> String {
    if mib.is_multiple_of(1024) {
        format!("{}G", mib / 1024)
    } else {
        format!("{mib}M")
    }
}

/// Whether a window can be opened.
fn display_available() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
}

fn write_image(args: &ImageArgs) -> Result<ExitCode> {
    let out = match &args.out {
        Some(out) => out.clone(),
        None => build::target_dir()?.join("evergreen.img"),
    };
    let key = release::ReleaseKey::load(args.key.as_deref())?;
    let slots = [&args.slot_a, &args.slot_b].map(|path| {
        path.as_deref()
            .map(|p| release::slot_image_from_file(p, &key.public()))
            .transpose()
    });
    let [a, b] = slots;
    build_image_with(&args.build, &out, [a?, b?])?;
    status!(
        "done. To boot a PC from a USB stick, write the image to the whole stick (ALL DATA ON \
         IT IS LOST; check the device name with lsblk):\n    sudo dd if={} of=/dev/sdX bs=4M \
         conv=fsync status=progress",
        show(&out)
    );
    Ok(ExitCode::SUCCESS)
}

fn write_iso(args: &IsoArgs) -> Result<ExitCode> {
    let out = match &args.out {
        Some(out) => out.clone(),
        None => build::target_dir()?.join("evergreen.iso"),
    };
    build_iso(&args.build, &out)?;
    status!(
        "done. Boot it in QEMU with `cargo run -- --iso`, burn it to a CD, or write it to a USB \
         stick like the disk image (ALL DATA ON THE STICK IS LOST; check the device name with \
         lsblk):\n    sudo dd if={} of=/dev/sdX bs=4M conv=fsync status=progress",
        show(&out)
    );
    Ok(ExitCode::SUCCESS)
}

fn test(args: &TestArgs) -> Result<ExitCode> {
    if args.list {
        systest::list();
        return Ok(ExitCode::SUCCESS);
    }
    let opts = systest::SuiteOptions {
        filter: args.filter.clone(),
        timeout: Duration::from_secs(args.timeout),
        profile: if args.debug {
            Profile::Debug
        } else {
            Profile::Release
        },
        skip_unit: args.skip_unit,
        skip_lint: args.skip_lint,
    };
    Ok(if systest::run_suite(&opts)? {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn screenshot(args: &ScreenshotArgs) -> Result<ExitCode> {
    let qemu = Qemu::locate()?;
    let target = build::target_dir()?;
    let image = target.join("screenshot.img");
    build_image(&args.build, &image)?;
    let sockets = tempfile::tempdir().context("creating a directory for the QMP socket")?;
    let socket = sockets.path().join("qmp.sock");
    let log = target.join("screenshot-serial.log");
    // A log left by an earlier run would match before QEMU truncates it.
    if log.exists() {
        std::fs::remove_file(&log).with_context(|| format!("removing {}", log.display()))?;
    }
    let mut opts = RunOptions::headless(image, log.clone());
    opts.qmp = Some(socket.clone());
    opts.smp = args.smp;
    status!(
        "starting QEMU (headless, QMP); waiting for a serial line containing {:?}",
        args.wait_for
    );
    let mut running = qemu.spawn(&opts)?;
    let outcome = watch::watch(
        &mut running.child,
        Some(&log),
        Some(Duration::from_secs(args.timeout)),
        |line| line.contains(&args.wait_for),
    );
    let result = match outcome {
        Ok(Outcome::Matched(_)) => {
            thread::sleep(Duration::from_secs(args.delay));
            qmp::screendump(&socket, &args.out)
        }
        Ok(Outcome::Exited(status)) => Err(anyhow::anyhow!(
            "QEMU exited before the screenshot: {}",
            GuestExit::from_status(status).describe()
        )),
        Ok(Outcome::TimedOut) => Err(anyhow::anyhow!(
            "no serial line contained {:?} within {} s (see {})",
            args.wait_for,
            args.timeout,
            show(&log)
        )),
        Ok(Outcome::Interrupted) => Err(anyhow::anyhow!("interrupted")),
        Err(e) => Err(e),
    };
    watch::terminate(&mut running.child, Duration::from_secs(3))?;
    result?;
    if !args.out.is_file() {
        bail!(
            "QEMU reported success but {} was not written",
            args.out.display()
        );
    }
    status!("saved {}", show(&args.out));
    Ok(ExitCode::SUCCESS)
}

/// The kernel build a command line needs: one that runs a built-in test (`test=…`) gets the
/// kernel with its in-kernel tests; anything else the kernel as users run it.
fn kernel_for(cmdline: &str) -> Component {
    if cmdline
        .split_ascii_whitespace()
        .any(|word| word.starts_with("test="))
    {
        Component::TestKernel
    } else {
        Component::Kernel
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn plain_flags_mean_run() {
        let cli = Cli::try_parse_from(["runner", "--headless", "--smp", "2", "--memory", "1G"])
            .expect("parses");
        assert!(cli.command.is_none());
        assert!(cli.run.headless);
        assert_eq!(cli.run.smp, 2);
        assert_eq!(cli.run.memory, 1024);
        assert_eq!(cli.run.build.profile(), Profile::Release);
    }

    #[test]
    fn release_and_keygen_parse() {
        let cli =
            Cli::try_parse_from(["runner", "release", "keygen", "--out", "k.key"]).expect("parses");
        let Some(Command::Release(args)) = cli.command else {
            panic!("not release");
        };
        assert!(
            matches!(args.action, Some(ReleaseAction::Keygen { out }) if out == Path::new("k.key"))
        );
        let cli = Cli::try_parse_from(["runner", "release", "--version", "2", "v2.slot"])
            .expect("parses");
        let Some(Command::Release(args)) = cli.command else {
            panic!("not release");
        };
        assert!(args.action.is_none());
        assert_eq!(
            (args.version, args.out),
            (Some(2), Some(PathBuf::from("v2.slot")))
        );
        assert!(Cli::try_parse_from(["runner", "release", "v2.slot"]).is_err());
        assert!(Cli::try_parse_from(["runner", "release", "keygen"]).is_err());
    }

    #[test]
    fn subcommands_parse() {
        let cli = Cli::try_parse_from(["runner", "test", "--filter", "boot", "--skip-unit"])
            .expect("parses");
        assert!(matches!(
            cli.command,
            Some(Command::Test(TestArgs {
                skip_unit: true,
                ..
            }))
        ));
        let cli = Cli::try_parse_from(["runner", "image", "--out", "x.img", "--cmdline", "a b"])
            .expect("parses");
        let Some(Command::Image(args)) = cli.command else {
            panic!("image expected")
        };
        assert_eq!(args.out, Some(PathBuf::from("x.img")));
        assert_eq!(args.build.cmdline, "a b");
    }

    #[test]
    fn gdb_port_defaults_to_1234_and_implies_gdb() {
        let port = |argv: &[&str]| Cli::try_parse_from(argv).expect("parses").run.gdb_port();
        assert_eq!(port(&["runner"]), None);
        assert_eq!(port(&["runner", "--gdb"]), Some(1234));
        assert_eq!(port(&["runner", "--gdb-port", "4321"]), Some(4321));
        assert_eq!(port(&["runner", "--gdb", "--gdb-port", "4321"]), Some(4321));
        assert!(Cli::try_parse_from(["runner", "--gdb-port", "0"]).is_err());
        assert!(Cli::try_parse_from(["runner", "--gdb-port", "65536"]).is_err());
    }

    #[test]
    fn iso_command_and_flags_parse() {
        let cli = Cli::try_parse_from([
            "runner",
            "iso",
            "--out",
            "x.iso",
            "--cmdline",
            "test=boot",
            "--module",
            "m.bin",
            "--debug",
        ])
        .expect("parses");
        let Some(Command::Iso(args)) = cli.command else {
            panic!("iso expected")
        };
        assert_eq!(args.out, Some(PathBuf::from("x.iso")));
        assert_eq!(args.build.cmdline, "test=boot");
        assert_eq!(args.build.module, [PathBuf::from("m.bin")]);
        assert_eq!(args.build.profile(), Profile::Debug);

        let run = |flags: &[&str]| {
            let cli = Cli::try_parse_from(["runner"].iter().chain(flags)).expect("parses");
            boot_of(&cli.run)
        };
        assert_eq!(run(&[]), Boot::UefiDisk);
        assert_eq!(run(&["--iso"]), Boot::UefiCdrom);
        assert_eq!(run(&["--bios"]), Boot::BiosCdrom, "--bios implies --iso");
        assert_eq!(run(&["--iso", "--bios"]), Boot::BiosCdrom);
        let Some(Command::Run(args)) = Cli::try_parse_from(["runner", "run", "--iso"])
            .expect("parses")
            .command
        else {
            panic!("run expected")
        };
        assert_eq!(boot_of(&args), Boot::UefiCdrom);
    }

    #[test]
    fn bios_without_limine_says_what_to_do() {
        let text = bios_needs_limine();
        for needed in ["UEFI-only", "LIMINE_PATH", "limine-bios-cd.bin", "limine.c"] {
            assert!(text.contains(needed), "{needed}: {text}");
        }
    }

    #[test]
    fn test_command_lines_get_the_test_kernel() {
        assert_eq!(
            kernel_for("test=kernel:mm- log=debug"),
            Component::TestKernel
        );
        assert_eq!(kernel_for("log=debug test=boot"), Component::TestKernel);
        assert_eq!(kernel_for(""), Component::Kernel);
        assert_eq!(kernel_for("log=debug nottest=x"), Component::Kernel);
    }

    #[test]
    fn add_flags_parse_for_run_image_and_exec() {
        let cli = Cli::try_parse_from(["runner", "--add", "a:/x", "--add", "dir:/opt/d"])
            .expect("parses");
        let guests: Vec<_> = cli.run.build.add.iter().map(|a| a.guest.as_str()).collect();
        assert_eq!(guests, ["/x", "/opt/d"]);
        let cli = Cli::try_parse_from(["runner", "image", "--add", "a:/x"]).expect("parses");
        assert!(matches!(cli.command, Some(Command::Image(args)) if args.build.add.len() == 1));
        let cli = Cli::try_parse_from(["runner", "exec", "--add", "t:/usr/bin/t", "--", "t"])
            .expect("parses");
        let Some(Command::Exec(args)) = cli.command else {
            panic!("exec expected")
        };
        assert_eq!(args.add[0].host, PathBuf::from("t"));
        assert_eq!(args.command, ["t"]);
        let cli = Cli::try_parse_from([
            "runner",
            "exec",
            "--add-with-libs",
            "/usr/bin/ls:/usr/bin/ls",
            "--",
            "/usr/bin/ls",
        ])
        .expect("parses");
        let Some(Command::Exec(args)) = cli.command else {
            panic!("exec expected")
        };
        assert!(args.add_with_libs[0].with_libs && args.add.is_empty());
        let cli = Cli::try_parse_from(["runner", "--add-with-libs", "a:/x"]).expect("parses");
        assert!(cli.run.build.add_with_libs[0].with_libs);
        let error = Cli::try_parse_from(["runner", "--add", "a:relative"]).expect_err("relative");
        assert!(error.to_string().contains("not absolute"), "{error}");
        assert!(Cli::try_parse_from(["runner", "--add", "nocolon"]).is_err());
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(Cli::try_parse_from(["runner", "--smp", "0"]).is_err());
        assert!(Cli::try_parse_from(["runner", "--smp", "65"]).is_err());
        assert!(Cli::try_parse_from(["runner", "--smp", "64"]).is_ok());
        assert!(Cli::try_parse_from(["runner", "--memory", "12X"]).is_err());
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("512M"), Ok(512));
        assert_eq!(parse_memory("512"), Ok(512));
        assert_eq!(parse_memory("2G"), Ok(2048));
        assert_eq!(parse_memory("1gib"), Ok(1024));
        assert!(parse_memory("G").is_err());
        assert!(parse_memory("1T").is_err());
        assert!(parse_memory("8M").is_err());
        assert!(parse_memory("99999999999999999999G").is_err());
        assert_eq!(memory_label(512), "512M");
        assert_eq!(memory_label(2048), "2G");
    }
}
