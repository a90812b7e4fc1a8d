//! The root file system every image boots with: the initramfs module (`initramfs.cpio`, which
//! the kernel unpacks into `/`) holding busybox and its applet links, our `/sbin/init`, the
//! usual directories and a minimal `/etc`, plus whatever `--add HOST:GUEST` copies in.
//!
//! The tree is made by pure functions ([`standard_tree`], [`add_host_path`]) so that host
//! unit tests check it; [`Rootfs::gather`] adds what only the host has (the built init, the
//! static busybox).

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::{build, initramfs::Initramfs, payload::ModuleFile};

/// Where init lives, and what the kernel runs when the command line names no `init=`.
pub const INIT_PATH: &str = "/sbin/init";
/// The command init runs when it has no arguments: each argument ends with a NUL.
pub const COMMAND_FILE: &str = "/etc/evergreen/command";
/// The `PATH` init gives its command (bare command names are looked up in it).
pub const PATH: [&str; 4] = ["/sbin", "/usr/sbin", "/bin", "/usr/bin"];
/// The module's file name: the kernel unpacks a module whose path ends in it.
pub const MODULE_NAME: &str = "initramfs.cpio";
/// The variable naming the busybox binary to use instead of `/bin/busybox`.
pub const BUSYBOX_VAR: &str = "BUSYBOX";

/// The target user programs are built for (static, Rust std on musl).
const MUSL: &str = "x86_64-unknown-linux-musl";

/// The directories every image has, with their modes.
const DIRS: [(&str, u32); 12] = [
    ("/dev", 0o755),
    ("/proc", 0o555),
    ("/sys", 0o555),
    ("/tmp", 0o1777),
    ("/etc", 0o755),
    ("/root", 0o700),
    ("/home", 0o755),
    ("/usr/bin", 0o755),
    ("/usr/sbin", 0o755),
    ("/usr/local/bin", 0o755),
    ("/var", 0o755),
    ("/var/log", 0o755),
];

/// The files of `/etc`. The network names only this machine: `localhost`, the host's
/// services as the guest reaches them through `guestfwd` (10.0.2.100), and a resolver on
/// loopback where nothing answers, so a name lookup never leaves the guest.
const ETC: [(&str, &str); 7] = [
    ("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
    ("/etc/group", "root:x:0:\n"),
    ("/etc/hostname", "evergreen\n"),
    ("/etc/motd", MOTD),
    ("/etc/profile", PROFILE),
    (
        "/etc/hosts",
        "127.0.0.1\tlocalhost\n127.0.1.1\tevergreen\n10.0.2.100\tevergreen-host\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n",
    ),
    (
        "/etc/resolv.conf",
        "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
    ),
];

/// What init shows on each terminal before its shell starts.
const MOTD: &str = concat!(
    "\nWelcome to Evergreen, an x86-64 operating system written in Rust.\n",
    "This is a root shell (busybox ash) with job control. Things to try:\n",
    "  ls -l /proc/self/   ps   top   free   df -h   dmesg | tail   uname -a\n",
    "  vi /tmp/notes       sleep 100, then ^Z, jobs, bg, fg, kill %1\n",
    "  poweroff            reboot\n\n",
);

/// Read by every login shell.
pub(crate) const PROFILE: &str = "export PATH=/sbin:/usr/sbin:/bin:/usr/bin:/usr/local/bin\n\
export PS1='\\u@\\h:\\w\\$ '\n\
export PAGER=less EDITOR=vi\n";

/// A static busybox and the paths of its applets (`busybox --list-full`: `bin/sh`,
/// `usr/bin/awk`, …).
#[derive(Clone, Debug)]
pub struct Busybox {
    /// The binary.
    pub data: Vec<u8>,
    /// Applet paths, relative to `/`.
    pub applets: Vec<String>,
}

impl Busybox {
    /// The host's busybox: `BUSYBOX`, else `/bin/busybox`.
    pub fn host_path() -> PathBuf {
        std::env::var_os(BUSYBOX_VAR)
            .filter(|p| !p.is_empty())
            .map_or_else(|| PathBuf::from("/bin/busybox"), PathBuf::from)
    }

    /// Reads the host's busybox and asks it for its applets; `None` when there is none.
    pub fn from_host() -> Result<Option<Self>> {
        let path = Self::host_path();
        if !path.is_file() {
            return Ok(None);
        }
        let data = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let output = Command::new(&path)
            .arg("--list-full")
            .output()
            .with_context(|| format!("running {} --list-full", path.display()))?;
        if !output.status.success() {
            bail!(
                "{} --list-full failed ({}): is it busybox?",
                path.display(),
                output.status
            );
        }
        let applets = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(Some(Self { data, applets }))
    }

    /// What to tell someone who needs busybox but has none.
    pub fn missing_message() -> String {
        format!(
            "no busybox at {} (Debian: apt-get install busybox-static, which scripts/setup.sh \
             does; or set {BUSYBOX_VAR}=path)",
            Self::host_path().display()
        )
    }
}

/// The standard tree: `init` at [`INIT_PATH`], busybox at `/bin/busybox` with a link for each
/// applet at its listed path (as `busybox --install -s` makes them; never over our init), the
/// usual directories and `/etc`.
pub fn standard_tree(init: Vec<u8>, busybox: Option<&Busybox>) -> Result<Initramfs> {
    let mut tree = Initramfs::new();
    tree.dir("/bin", 0o755)?.dir("/sbin", 0o755)?;
    for (path, mode) in DIRS {
        tree.dir(path, mode)?;
    }
    for (path, text) in ETC {
        tree.file(path, text.as_bytes().to_vec(), 0o644)?;
    }
    if let Some(busybox) = busybox {
        tree.file("/bin/busybox", busybox.data.clone(), 0o755)?;
        let shell = "bin/sh".to_owned();
        for applet in busybox.applets.iter().chain([&shell]) {
            let path = format!("/{}", applet.trim_start_matches('/'));
            if path == INIT_PATH || path == "/bin/busybox" {
                continue;
            }
            // Links in /bin point next door, the others at the absolute path.
            let target = if Path::new(&path).parent() == Some(Path::new("/bin")) {
                "busybox"
            } else {
                "/bin/busybox"
            };
            tree.symlink(&path, target)?;
        }
    }
    tree.file(INIT_PATH, init, 0o755)?;
    Ok(tree)
}

/// The contents of [`COMMAND_FILE`] for `argv`: each argument followed by a NUL (so
/// arguments may hold spaces or be empty). An argument holding a NUL is refused.
pub fn command_file(argv: &[String]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for arg in argv {
        if arg.contains('\0') {
            bail!("argument {arg:?} holds a NUL byte, which no program can receive");
        }
        out.extend_from_slice(arg.as_bytes());
        out.push(0);
    }
    Ok(out)
}

/// A `--add HOST:GUEST`: a host file or folder and where it goes in the initramfs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddSpec {
    /// The host file or folder.
    pub host: PathBuf,
    /// The absolute guest path.
    pub guest: String,
    /// Whether the shared libraries and the interpreter `ldd` lists for the program go in
    /// too, each at its own host path (`--add-with-libs`).
    pub with_libs: bool,
}

/// Parses `HOST:GUEST` (split at the last `:`, so a host path may hold colons); GUEST must be
/// absolute. Whether HOST exists is checked when it is copied.
pub fn parse_add(text: &str) -> Result<AddSpec, String> {
    let Some((host, guest)) = text.rsplit_once(':') else {
        return Err(format!(
            "`{text}` is not HOST:GUEST (e.g. ./hello:/usr/bin/hello)"
        ));
    };
    if host.is_empty() {
        return Err(format!("`{text}`: the host path is empty"));
    }
    if !guest.starts_with('/') {
        return Err(format!(
            "`{text}`: the guest path `{guest}` is not absolute (it must start with /)"
        ));
    }
    if guest.split('/').any(|p| p == "..") {
        return Err(format!("`{text}`: the guest path must not contain `..`"));
    }
    Ok(AddSpec {
        host: PathBuf::from(host),
        guest: guest.to_owned(),
        with_libs: false,
    })
}

/// Parses `HOST:GUEST` as [`parse_add`] does, for a program whose shared libraries go in too.
pub fn parse_add_with_libs(text: &str) -> Result<AddSpec, String> {
    parse_add(text).map(|add| AddSpec {
        with_libs: true,
        ..add
    })
}

/// The files `ldd` lists in `output`: the libraries it resolved (`name => /path (addr)`) and
/// the interpreter (`/path (addr)`); the vDSO, which has no file, is left out. A library
/// `ldd` could not find is an error.
pub fn ldd_files(output: &str) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for line in output.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let path = match line.split_once(" => ") {
            Some((name, target)) => {
                if target.trim_start().starts_with("not found") {
                    bail!("ldd: the library {name} is not found on the host");
                }
                target
            }
            None => line,
        };
        let path = path.split(" (").next().unwrap_or(path).trim();
        if path.starts_with('/') {
            files.push(PathBuf::from(path));
        }
    }
    Ok(files)
}

/// Copies what `ldd` lists for the host program `host` (its libraries and its interpreter)
/// into `tree`, each file at its own host path, and the interpreter its `PT_INTERP` names in
/// any case: glibc's `ldd` cannot read a musl program (whose interpreter is its whole C
/// library). A static program has nothing to copy.
pub fn add_libraries(tree: &mut Initramfs, host: &Path) -> Result<()> {
    let data = fs::read(host).with_context(|| format!("reading {}", host.display()))?;
    let Some(interpreter) = elf_interpreter(&data) else {
        return Ok(());
    };
    add_host_path(tree, Path::new(&interpreter), &interpreter)
        .with_context(|| format!("the interpreter of {}", host.display()))?;
    let output = std::process::Command::new("ldd")
        .arg(host)
        .output()
        .context("running ldd (Debian package libc-bin) for --add-with-libs")?;
    if !output.status.success() {
        crate::status!(
            "--add-with-libs: ldd cannot read {} (a musl program?); only its interpreter {} is \
             copied",
            host.display(),
            interpreter
        );
        return Ok(());
    }
    for file in ldd_files(&String::from_utf8_lossy(&output.stdout))? {
        let guest = file
            .to_str()
            .with_context(|| format!("{} is not a UTF-8 path", file.display()))?;
        add_host_path(tree, &file, guest)?;
    }
    Ok(())
}

/// The interpreter (`PT_INTERP`) a 64-bit little-endian ELF file names, if it is one and
/// names one.
pub fn elf_interpreter(data: &[u8]) -> Option<String> {
    const PT_INTERP: u32 = 3;
    let u16_at = |at: usize| Some(u16::from_le_bytes(data.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| {
        let bytes = data.get(at..at + 8)?;
        usize::try_from(u64::from_le_bytes(bytes.try_into().ok()?)).ok()
    };
    // ELFCLASS64, ELFDATA2LSB.
    if !data.starts_with(b"\x7fELF\x02\x01") {
        return None;
    }
    let (phoff, phentsize, phnum) = (u64_at(0x20)?, usize::from(u16_at(0x36)?), u16_at(0x38)?);
    (0..usize::from(phnum)).find_map(|i| {
        let header = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(header)? != PT_INTERP {
            return None;
        }
        let (offset, size) = (u64_at(header + 8)?, u64_at(header + 32)?);
        let bytes = data.get(offset..offset.checked_add(size)?)?;
        let path = bytes.split(|&b| b == 0).next()?;
        String::from_utf8(path.to_vec())
            .ok()
            .filter(|p| p.starts_with('/'))
    })
}

/// Copies the host file, symbolic link or folder (recursively) `host` into `tree` at
/// `guest`, keeping permission bits and links (links are copied, not followed, except `host`
/// itself). Other kinds of files (devices, FIFOs, sockets) are skipped with a message.
pub fn add_host_path(tree: &mut Initramfs, host: &Path, guest: &str) -> Result<()> {
    let meta = fs::metadata(host).with_context(|| {
        format!(
            "--add {}: no such file or folder on the host",
            host.display()
        )
    })?;
    add_entry(tree, host, guest, meta)
}

fn add_entry(tree: &mut Initramfs, host: &Path, guest: &str, meta: fs::Metadata) -> Result<()> {
    let mode = meta.permissions().mode() & 0o7777;
    let kind = meta.file_type();
    if kind.is_symlink() {
        let target =
            fs::read_link(host).with_context(|| format!("reading the link {}", host.display()))?;
        let target = target
            .to_str()
            .with_context(|| format!("the link {} has a non-UTF-8 target", host.display()))?;
        tree.symlink(guest, target)?;
    } else if kind.is_file() {
        let data = fs::read(host).with_context(|| format!("reading {}", host.display()))?;
        tree.file(guest, data, mode)?;
    } else if kind.is_dir() {
        tree.dir(guest, mode)?;
        let mut children = fs::read_dir(host)
            .with_context(|| format!("listing {}", host.display()))?
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("listing {}", host.display()))?;
        children.sort_by_key(fs::DirEntry::file_name);
        for child in children {
            let name = child.file_name();
            let name = name
                .to_str()
                .with_context(|| format!("{} has a non-UTF-8 name", child.path().display()))?;
            let meta = fs::symlink_metadata(child.path())
                .with_context(|| format!("reading {}", child.path().display()))?;
            add_entry(tree, &child.path(), &format!("{guest}/{name}"), meta)?;
        }
    } else {
        crate::status!(
            "--add: skipped {} (not a file, folder or link)",
            host.display()
        );
    }
    Ok(())
}

/// Whether `name` (a bare command name) is found in the image's `PATH`, as init would find
/// it.
pub fn in_path(tree: &Initramfs, name: &str) -> bool {
    PATH.iter()
        .any(|dir| tree.get(&format!("{dir}/{name}")).is_some())
}

/// The initramfs as the module the kernel unpacks.
pub fn module(tree: &Initramfs) -> ModuleFile {
    ModuleFile {
        file_name: MODULE_NAME.to_owned(),
        cmdline: MODULE_NAME.to_owned(),
        data: tree.to_cpio(),
    }
}

/// Builds `user/init` for the musl target and returns the binary.
pub fn build_init() -> Result<Vec<u8>> {
    let status = build::cargo()
        .args([
            "build",
            "-q",
            "-p",
            "evergreen-init",
            "--release",
            "--target",
            MUSL,
            "--bin",
            "init",
        ])
        .status()
        .context("running cargo to build user/init")?;
    if !status.success() {
        bail!("building user/init for {MUSL} failed ({status}; rustup target add {MUSL})");
    }
    let path = build::target_dir()?.join(MUSL).join("release/init");
    fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

/// The host's parts of the tree, gathered once.
#[derive(Debug)]
pub struct Rootfs {
    /// The standard tree with every `--add` applied.
    pub tree: Initramfs,
    /// Whether busybox is in it.
    pub has_busybox: bool,
}

impl Rootfs {
    /// Builds init, reads busybox (warning when there is none) and applies `adds` in order.
    pub fn gather(adds: &[AddSpec]) -> Result<Self> {
        let init = build_init()?;
        let busybox = Busybox::from_host()?;
        if busybox.is_none() {
            crate::status!(
                "warning: {}; the image has no shell or tools",
                Busybox::missing_message()
            );
        }
        let mut tree = standard_tree(init, busybox.as_ref())?;
        for add in adds {
            add_host_path(&mut tree, &add.host, &add.guest)?;
            if add.with_libs {
                add_libraries(&mut tree, &add.host)?;
            }
        }
        Ok(Self {
            tree,
            has_busybox: busybox.is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::initramfs::Node;

    fn fake_busybox() -> Busybox {
        Busybox {
            data: b"\x7fELF busybox".to_vec(),
            applets: [
                "bin/ls",
                "usr/bin/awk",
                "sbin/init",
                "bin/busybox",
                "linuxrc",
            ]
            .map(String::from)
            .to_vec(),
        }
    }

    fn link(target: &str) -> Option<Node> {
        Some(Node::Symlink {
            target: target.into(),
        })
    }

    #[test]
    fn the_standard_tree_has_busybox_links_init_dirs_and_etc() {
        let tree = standard_tree(b"init".to_vec(), Some(&fake_busybox())).expect("tree");
        assert_eq!(tree.get("/bin/ls").cloned(), link("busybox"));
        assert_eq!(tree.get("/bin/sh").cloned(), link("busybox"), "sh is made");
        assert_eq!(tree.get("/usr/bin/awk").cloned(), link("/bin/busybox"));
        assert_eq!(tree.get("/linuxrc").cloned(), link("/bin/busybox"));
        assert_eq!(
            tree.get("/sbin/init"),
            Some(&Node::File {
                data: b"init".to_vec(),
                mode: 0o755
            }),
            "our init, not busybox's"
        );
        assert!(matches!(
            tree.get("/bin/busybox"),
            Some(Node::File { mode: 0o755, .. })
        ));
        assert_eq!(tree.get("/tmp").map(Node::st_mode), Some(0o041777));
        assert_eq!(tree.get("/root").map(Node::st_mode), Some(0o040700));
        for dir in ["/dev", "/proc", "/sys", "/home", "/usr/sbin", "/var/log"] {
            assert!(matches!(tree.get(dir), Some(Node::Dir { .. })), "{dir}");
        }
        assert_eq!(
            tree.get("/etc/passwd"),
            Some(&Node::File {
                data: b"root:x:0:0:root:/root:/bin/sh\n".to_vec(),
                mode: 0o644
            })
        );
        assert!(in_path(&tree, "ls") && in_path(&tree, "awk") && !in_path(&tree, "nope"));
        let Some(Node::File { data: hosts, .. }) = tree.get("/etc/hosts") else {
            panic!("no /etc/hosts");
        };
        let hosts = String::from_utf8_lossy(hosts);
        assert!(hosts.contains("127.0.0.1\tlocalhost") && hosts.contains("10.0.2.100"));
        assert!(matches!(
            tree.get("/etc/resolv.conf"),
            Some(Node::File { .. })
        ));
    }

    #[test]
    fn the_host_busybox_gives_every_applet() {
        let Ok(Some(busybox)) = Busybox::from_host() else {
            eprintln!("no host busybox: skipped");
            return;
        };
        let tree = standard_tree(Vec::new(), Some(&busybox)).expect("tree");
        for applet in busybox.applets.iter().filter(|a| *a != "sbin/init") {
            assert!(tree.get(&format!("/{applet}")).is_some(), "{applet}");
        }
        assert!(
            busybox.applets.len() > 100,
            "{} applets",
            busybox.applets.len()
        );
    }

    #[test]
    fn without_busybox_the_tree_still_boots_init() {
        let tree = standard_tree(b"init".to_vec(), None).expect("tree");
        assert!(tree.get("/sbin/init").is_some());
        assert!(tree.get("/bin/sh").is_none());
        assert!(matches!(tree.get("/bin"), Some(Node::Dir { .. })));
    }

    #[test]
    fn command_files_end_each_argument_with_nul() {
        let argv = ["sh", "-c", "echo a  b", ""].map(String::from);
        assert_eq!(
            command_file(&argv).expect("encodes"),
            b"sh\0-c\0echo a  b\0\0"
        );
        assert!(command_file(&["a\0b".to_owned()]).is_err());
    }

    #[test]
    fn ldd_output_names_the_libraries_and_the_interpreter() {
        let output = "\tlinux-vdso.so.1 (0x00007ffd3a5f2000)\n\
                      \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0a1c200000)\n\
                      \t/lib64/ld-linux-x86-64.so.2 (0x00007f0a1c43b000)\n";
        assert_eq!(
            ldd_files(output).expect("parses"),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
        assert!(ldd_files("\tlibfoo.so.1 => not found\n").is_err());
        assert!(ldd_files("").expect("parses").is_empty());
    }

    #[test]
    fn the_interpreter_comes_from_pt_interp() {
        // A header with one program header, PT_INTERP, pointing at the path after it.
        let mut elf = vec![0u8; 64 + 56];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        let path = b"/lib/ld-musl-x86_64.so.1\0";
        elf[64..68].copy_from_slice(&3u32.to_le_bytes());
        elf[72..80].copy_from_slice(&120u64.to_le_bytes());
        elf[96..104].copy_from_slice(&(path.len() as u64).to_le_bytes());
        elf.extend_from_slice(path);
        assert_eq!(
            elf_interpreter(&elf).as_deref(),
            Some("/lib/ld-musl-x86_64.so.1")
        );
        // A static program (no PT_INTERP), a cut-off table and a non-ELF file name none.
        elf[64] = 1;
        assert_eq!(elf_interpreter(&elf), None);
        assert_eq!(elf_interpreter(&elf[..100]), None);
        assert_eq!(elf_interpreter(b"#!/bin/sh\n"), None);
        let ls = std::fs::read("/usr/bin/ls").unwrap_or_default();
        if !ls.is_empty() {
            assert!(elf_interpreter(&ls).is_some_and(|p| p.contains("ld-linux")));
        }
    }

    #[test]
    fn add_specs_parse() {
        assert_eq!(
            parse_add("./out:/usr/bin/out"),
            Ok(AddSpec {
                host: "./out".into(),
                guest: "/usr/bin/out".into(),
                with_libs: false,
            })
        );
        assert_eq!(
            parse_add_with_libs("/usr/bin/ls:/usr/bin/ls").map(|a| a.with_libs),
            Ok(true)
        );
        assert_eq!(
            parse_add("a:b:/x").map(|a| a.host),
            Ok(PathBuf::from("a:b"))
        );
        for bad in ["nocolon", "host:relative", ":/x", "h:/a/../b"] {
            assert!(parse_add(bad).is_err(), "{bad}");
        }
        assert!(
            parse_add("host:relative")
                .expect_err("relative")
                .contains("absolute")
        );
    }

    #[test]
    fn folders_are_copied_with_modes_and_links() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("app");
        fs::create_dir_all(root.join("lib")).expect("mkdir");
        fs::write(root.join("run"), b"#!/bin/sh\n").expect("write");
        fs::set_permissions(root.join("run"), fs::Permissions::from_mode(0o750)).expect("chmod");
        fs::write(root.join("lib/data"), b"data").expect("write");
        fs::set_permissions(root.join("lib/data"), fs::Permissions::from_mode(0o600))
            .expect("chmod");
        symlink("lib/data", root.join("link")).expect("symlink");
        let mut tree = Initramfs::new();
        add_host_path(&mut tree, &root, "/opt/app").expect("copied");
        assert_eq!(
            tree.get("/opt/app/run"),
            Some(&Node::File {
                data: b"#!/bin/sh\n".to_vec(),
                mode: 0o750
            })
        );
        assert!(matches!(
            tree.get("/opt/app/lib/data"),
            Some(Node::File { mode: 0o600, .. })
        ));
        assert_eq!(tree.get("/opt/app/link").cloned(), link("lib/data"));
        add_host_path(&mut tree, &root.join("run"), "/bin/run").expect("one file");
        assert!(tree.get("/bin/run").is_some());
        let missing = add_host_path(&mut tree, &root.join("nope"), "/x").expect_err("missing");
        assert!(
            format!("{missing:#}").contains("no such file"),
            "{missing:#}"
        );
    }
}
