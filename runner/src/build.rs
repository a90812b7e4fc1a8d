//! Nested `cargo` invocations: building the kernel and the loader, and running host tests.
//!
//! The runner is itself usually started by `cargo run`, so its environment carries the outer
//! cargo's settings. Variables that would change how the nested builds compile (`RUSTFLAGS`
//! would replace the kernel's flags from `.cargo/config.toml`; a `CARGO_BUILD_TARGET` would
//! fight our `--target`; the outer jobserver belongs to the outer build) are removed.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
};

use anyhow::{Context, Result, bail};

/// Variables removed from the environment of nested cargo invocations.
const SCRUBBED_VARS: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
];

/// Which cargo profile to build with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// `--release` (the default: TCG is slow enough without debug builds).
    Release,
    /// The `dev` profile (`--debug` on the command line).
    Debug,
}

/// A crate the runner builds for a bare-metal or UEFI target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// `kernel/` for `x86_64-unknown-none`, as users run it.
    Kernel,
    /// `kernel/` with its in-kernel tests and hal's test hooks (`--features tests`): what the
    /// system tests and any `test=` command line boot.
    TestKernel,
    /// `loader/` for `x86_64-unknown-uefi`.
    Loader,
}

impl Component {
    /// The package (and binary) name.
    pub fn package(self) -> &'static str {
        match self {
            Self::Kernel | Self::TestKernel => "kernel",
            Self::Loader => "loader",
        }
    }

    /// The cargo features it is built with.
    pub fn features(self) -> Option<&'static str> {
        match self {
            Self::TestKernel => Some("tests"),
            Self::Kernel | Self::Loader => None,
        }
    }

    /// The target triple the component is built for.
    pub fn target(self) -> &'static str {
        match self {
            Self::Kernel | Self::TestKernel => "x86_64-unknown-none",
            Self::Loader => "x86_64-unknown-uefi",
        }
    }
}

/// Paths of the built boot components.
#[derive(Clone, Debug)]
pub struct Artifacts {
    /// The kernel ELF.
    pub kernel: PathBuf,
    /// The loader's `loader.efi`.
    pub loader: PathBuf,
}

/// The workspace root: the runner crate lives directly inside it.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// A `cargo` command run from the workspace root with a scrubbed environment.
pub fn cargo() -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(program);
    cmd.current_dir(workspace_root());
    for var in SCRUBBED_VARS {
        cmd.env_remove(var);
    }
    cmd
}

/// `cargo metadata --no-deps` for the workspace (run once).
fn metadata() -> Result<&'static serde_json::Value> {
    static META: OnceLock<serde_json::Value> = OnceLock::new();
    if let Some(meta) = META.get() {
        return Ok(meta);
    }
    let output = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .stderr(Stdio::inherit())
        .output()
        .context("running `cargo metadata` (is cargo installed? try scripts/setup.sh)")?;
    if !output.status.success() {
        bail!("`cargo metadata` failed ({})", output.status);
    }
    let meta = serde_json::from_slice(&output.stdout).context("parsing `cargo metadata` output")?;
    Ok(META.get_or_init(|| meta))
}

/// Cargo's target directory for this workspace (honours `CARGO_TARGET_DIR` and config).
pub fn target_dir() -> Result<PathBuf> {
    let dir = metadata()?["target_directory"]
        .as_str()
        .context("`cargo metadata` reported no target_directory")?;
    Ok(PathBuf::from(dir))
}

/// The packages whose unit tests run (and that clippy checks) on the host: the runner, every
/// crate under `libs/`, and the user programs' crates (Linux programs, so they build on the
/// host too).
pub fn host_test_packages() -> Result<Vec<String>> {
    let packages = metadata()?["packages"]
        .as_array()
        .context("`cargo metadata`: no packages")?;
    let mut names = host_packages(packages, &workspace_root().join("libs"));
    for name in host_packages(packages, &workspace_root().join("user")) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// The runner plus the packages whose manifest lies under `libs`, sorted.
fn host_packages(packages: &[serde_json::Value], libs: &Path) -> Vec<String> {
    let mut names: Vec<String> = packages
        .iter()
        .filter(|p| {
            p["name"] == "runner"
                || p["manifest_path"]
                    .as_str()
                    .is_some_and(|m| Path::new(m).starts_with(libs))
        })
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// Builds the kernel with its in-kernel tests, then the loader (what the system tests boot).
pub fn build_all(profile: Profile) -> Result<Artifacts> {
    let kernel = build(Component::TestKernel, profile)?;
    let loader = build(Component::Loader, profile)?;
    Ok(Artifacts { kernel, loader })
}

/// Builds one component, showing cargo's progress, and returns the built file.
pub fn build(component: Component, profile: Profile) -> Result<PathBuf> {
    let name = component.package();
    let with = match component.features() {
        Some(features) => format!(", features {features}"),
        None => String::new(),
    };
    status!(
        "building {name} ({}, {profile:?}{with})…",
        component.target()
    );
    warn_about_scrubbed_vars();
    let mut cmd = cargo();
    cmd.args(["build", "-p", name, "--target", component.target()])
        .arg("--message-format=json-render-diagnostics")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if profile == Profile::Release {
        cmd.arg("--release");
    }
    if let Some(features) = component.features() {
        cmd.args(["--features", features]);
    }
    run_build(cmd, name, &format!("the {name}"))
}

/// Runs a `cargo build` whose stdout is piped JSON messages and returns the executable cargo
/// reported for binary `name`; `what` names the build in errors.
fn run_build(mut cmd: Command, name: &str, what: &str) -> Result<PathBuf> {
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting cargo to build {what}"))?;
    let stdout = child.stdout.take().context("cargo's stdout")?;
    let mut executable = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo's output")?;
        if let Some(path) = artifact_executable(&line, name) {
            executable = Some(path);
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!("building {what} failed ({status}); cargo's errors are above");
    }
    executable.with_context(|| format!("cargo built {what} but reported no executable for it"))
}

/// How the relocatable test kernel (`loader/pie-kernel`) stores its relocations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PieRelocs {
    /// `R_X86_64_RELATIVE` entries in `.rela.dyn` (the linker's default).
    Rela,
    /// Packed relative relocations (`.relr.dyn`, `-z pack-relative-relocs`).
    Relr,
}

impl PieRelocs {
    /// The target directory of this variant, under the workspace's target directory (each
    /// variant has its own: they differ only in linker flags).
    pub fn target_subdir(self) -> &'static str {
        match self {
            Self::Rela => "pie-kernel",
            Self::Relr => "pie-kernel-relr",
        }
    }

    /// The compiler flags of `loader/pie-kernel/build.sh`: position-independent code linked
    /// as a PIE by `linker_script` (which places it at 0), RELR-packed for [`Self::Relr`].
    pub fn rustflags(self, linker_script: &Path) -> Vec<String> {
        let mut flags: Vec<String> = ["-C", "relocation-model=pie", "-C", "link-arg=-pie", "-C"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        flags.push(format!("link-arg=-T{}", linker_script.display()));
        if self == Self::Relr {
            flags.extend(
                ["-C", "link-arg=-z", "-C", "link-arg=pack-relative-relocs"].map(str::to_owned),
            );
        }
        flags
    }
}

/// Builds `loader/pie-kernel` (its own workspace) for `x86_64-unknown-none`, release, as its
/// `build.sh` does, and returns the ELF.
///
/// The flags go in `CARGO_ENCODED_RUSTFLAGS` (separated by 0x1f, so a path with spaces stays
/// one argument); they replace the workspace's static relocation model for that target.
pub fn build_pie_kernel(relocs: PieRelocs) -> Result<PathBuf> {
    let dir = workspace_root().join("loader").join("pie-kernel");
    let target = target_dir()?.join(relocs.target_subdir());
    status!(
        "building the PIE test kernel ({relocs:?}) into {}…",
        target.display()
    );
    let mut cmd = cargo();
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .args(["--release", "--target", "x86_64-unknown-none"])
        .arg("--target-dir")
        .arg(&target)
        .arg("--message-format=json-render-diagnostics")
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            relocs.rustflags(&dir.join("linker.ld")).join("\x1f"),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    run_build(
        cmd,
        "pie-kernel",
        &format!("the PIE test kernel ({relocs:?})"),
    )
}

/// The executable path of a `compiler-artifact` message for binary `name`, if `line` is one.
fn artifact_executable(line: &str, name: &str) -> Option<PathBuf> {
    let msg: serde_json::Value = serde_json::from_str(line).ok()?;
    if msg["reason"] != "compiler-artifact" || msg["target"]["name"] != name {
        return None;
    }
    msg["executable"].as_str().map(PathBuf::from)
}

/// Says once that flags from the outer environment are not used for boot components.
fn warn_about_scrubbed_vars() {
    static WARNED: OnceLock<()> = OnceLock::new();
    for var in ["RUSTFLAGS", "CARGO_BUILD_RUSTFLAGS"] {
        if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
            WARNED.get_or_init(|| {
                status!(
                    "ignoring {var} for kernel and loader builds (their flags live in \
                     .cargo/config.toml)"
                );
            });
        }
    }
}

/// Runs the host unit tests (`cargo test -p runner -p <each crate in libs/>`) and hal's
/// doctests (the boundary's compile-fail checks, `hal::boundary`), output shown as it comes.
pub fn run_host_tests() -> Result<()> {
    let mut packages = host_test_packages()?;
    packages.push("hal".to_owned());
    let mut cmd = cargo();
    cmd.arg("test");
    for package in &packages {
        cmd.args(["-p", package]);
    }
    status!(
        "running host unit tests (cargo test -p {})…",
        packages.join(" -p ")
    );
    // Host tests use the user's flags, if any: only the boot components need clean ones.
    if let Some(flags) = std::env::var_os("RUSTFLAGS") {
        cmd.env("RUSTFLAGS", flags);
    }
    let status = cmd.status().context("starting `cargo test`")?;
    if !status.success() {
        bail!("host unit tests failed ({status})");
    }
    Ok(())
}

/// The lint gate: `cargo fmt --check`, then `cargo clippy -D warnings` for each crate on the
/// target it is built for (host crates with their tests, the kernel side for
/// `x86_64-unknown-none`, the loader for `x86_64-unknown-uefi`).
pub fn run_lints() -> Result<()> {
    let host = host_test_packages()?;
    let mut host_args: Vec<&str> = vec!["clippy", "--all-targets"];
    for package in &host {
        host_args.extend(["-p", package]);
    }
    let runs: [(&str, Vec<&str>); 6] = [
        ("cargo fmt --all --check", vec!["fmt", "--all", "--check"]),
        ("clippy (host crates)", host_args),
        (
            "clippy (kernel and hal, x86_64-unknown-none)",
            vec![
                "clippy",
                "-p",
                "kernel",
                "-p",
                "hal",
                "--target",
                "x86_64-unknown-none",
            ],
        ),
        (
            "clippy (kernel and hal with the in-kernel tests, x86_64-unknown-none)",
            vec![
                "clippy",
                "-p",
                "kernel",
                "-p",
                "hal",
                "--features",
                "kernel/tests",
                "--target",
                "x86_64-unknown-none",
            ],
        ),
        (
            "clippy (loader, x86_64-unknown-uefi)",
            vec!["clippy", "-p", "loader", "--target", "x86_64-unknown-uefi"],
        ),
        (
            "clippy (user programs, x86_64-unknown-linux-musl)",
            vec![
                "clippy",
                "-p",
                "evergreen-init",
                "-p",
                "user-tests",
                "--target",
                "x86_64-unknown-linux-musl",
            ],
        ),
    ];
    for (what, args) in runs {
        status!("lint: {what}…");
        let mut cmd = cargo();
        cmd.args(&args);
        if args[0] == "clippy" {
            cmd.args(["--", "-D", "warnings"]);
        }
        let status = cmd.status().with_context(|| format!("starting {what}"))?;
        if !status.success() {
            bail!("{what} failed ({status})");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_executable_in_cargo_messages() {
        let line = r#"{"reason":"compiler-artifact","target":{"name":"kernel","kind":["bin"]},
            "executable":"/t/x86_64-unknown-none/release/kernel","fresh":true}"#
            .replace('\n', "");
        assert_eq!(
            artifact_executable(&line, "kernel"),
            Some(PathBuf::from("/t/x86_64-unknown-none/release/kernel"))
        );
        assert_eq!(artifact_executable(&line, "loader"), None);
        let lib = r#"{"reason":"compiler-artifact","target":{"name":"kernel"},"executable":null}"#;
        assert_eq!(artifact_executable(lib, "kernel"), None);
        assert_eq!(artifact_executable("not json", "kernel"), None);
        let done = r#"{"reason":"build-finished","success":true}"#;
        assert_eq!(artifact_executable(done, "kernel"), None);
    }

    #[test]
    fn pie_kernel_flags_match_its_build_script() {
        let script = Path::new("/w/my dir/linker.ld");
        let rela = PieRelocs::Rela.rustflags(script);
        assert_eq!(
            rela,
            [
                "-C",
                "relocation-model=pie",
                "-C",
                "link-arg=-pie",
                "-C",
                "link-arg=-T/w/my dir/linker.ld"
            ]
        );
        let relr = PieRelocs::Relr.rustflags(script);
        assert_eq!(relr[..rela.len()], rela[..]);
        assert_eq!(
            relr[rela.len()..],
            ["-C", "link-arg=-z", "-C", "link-arg=pack-relative-relocs"]
        );
        assert_ne!(
            PieRelocs::Rela.target_subdir(),
            PieRelocs::Relr.target_subdir()
        );
        // The flags the script uses, so the two stay in step.
        let build_sh = std::fs::read_to_string(workspace_root().join("loader/pie-kernel/build.sh"))
            .expect("build.sh");
        for flag in [
            "relocation-model=pie",
            "link-arg=-pie",
            "pack-relative-relocs",
        ] {
            assert!(build_sh.contains(flag), "build.sh lacks {flag}");
        }
    }

    #[test]
    fn host_tests_cover_runner_and_libs() {
        let packages: Vec<serde_json::Value> = serde_json::from_str(
            r#"[{"name":"runner","manifest_path":"/w/runner/Cargo.toml"},
                {"name":"kernel","manifest_path":"/w/kernel/Cargo.toml"},
                {"name":"frames","manifest_path":"/w/libs/frames/Cargo.toml"},
                {"name":"bootcore","manifest_path":"/w/libs/bootcore/Cargo.toml"},
                {"name":"libsy","manifest_path":"/w/libsy/Cargo.toml"}]"#,
        )
        .expect("json");
        assert_eq!(
            host_packages(&packages, Path::new("/w/libs")),
            ["bootcore", "frames", "runner"]
        );
    }

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml"))
            .expect("workspace Cargo.toml");
        assert!(manifest.contains("[workspace]"));
    }

    #[test]
    fn nested_cargo_drops_outer_build_flags() {
        let cmd = cargo();
        let removed: Vec<_> = cmd
            .get_envs()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.to_owned())
            .collect();
        assert!(removed.iter().any(|k| k == "RUSTFLAGS"));
        assert!(removed.iter().any(|k| k == "CARGO_BUILD_TARGET"));
    }
}
