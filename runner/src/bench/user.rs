//! `bench user` and `bench linux`: `user/bench/bench.c` runs as init on Evergreen and, for
//! `linux`, on Debian's Linux kernel in the identical QEMU machine (same firmware, machine
//! type, CPU model, CPU count and memory: only the boot medium differs, see
//! [`crate::qemu::DirectKernel`]), and the runner prints its figures side by side.
//!
//! The program prints `bench: NAME VALUE ns/op` per figure (or `bench: NAME failed TEXT`)
//! between `bench: start` and `bench: done`. The runner adds one figure of its own: the host's
//! time from starting QEMU to the program's `bench: start` on serial, which covers firmware,
//! kernel boot and the start of init on both systems alike (the log is polled every 50 ms).

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::{cpio::Cpio, linux, median};
use crate::{
    build::{self, Component, Profile},
    image,
    payload::{self, ModuleFile},
    qemu::{DirectKernel, Qemu, RunOptions},
    systest::user::{build_c, busybox},
    watch::{self, Outcome},
};

/// How `bench user` and `bench linux` run.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Boots per system; the table shows medians.
    pub runs: usize,
    /// CPUs of the machine.
    pub smp: u8,
    /// Memory of the machine in MiB.
    pub memory_mib: u64,
    /// The program's `BENCH_SCALE`: its iteration counts are multiplied by this.
    pub scale: f64,
    /// Boot Evergreen with its `strace` (the calls land in the serial log).
    pub strace: bool,
    /// The kernel's and the loader's build profile.
    pub profile: Profile,
}

/// The runner's own figure: QEMU start to the program's first line.
pub const START_TO_USER: &str = "qemu_start_to_user";

/// The rows of the table, in order: name, unit and the target ratio Evergreen/Linux.
const ROWS: &[(&str, &str, Option<f64>)] = &[
    ("getppid", "ns/op", Some(0.7)),
    ("getppid_main", "ns/op", None),
    ("pipe_rtt", "ns/op", Some(0.3)),
    ("page_fault", "ns/op", Some(0.8)),
    ("fork_exit_wait", "ns/op", Some(0.5)),
    ("vfork_exec_wait", "ns/op", None),
    ("thread_create_join", "ns/op", None),
    ("futex_pingpong", "ns/op", None),
    ("pthread_create_join", "ns/op", None),
    ("shell_spawn_true", "ns/op", None),
    ("tmpfs_small_files", "ns/op", None),
    ("pipe_cat_mib", "ns/MiB", None),
    (START_TO_USER, "ms", Some(0.65)),
];

/// Give up on a boot after this long.
const TIMEOUT: Duration = Duration::from_secs(300);
/// How long a guest may take to power off after `bench: done`.
const POWER_OFF_GRACE: Duration = Duration::from_secs(10);

/// A line of the benchmark program.
#[derive(Clone, Debug, PartialEq)]
pub enum Line<'a> {
    /// `bench: start`.
    Start,
    /// `bench: done`.
    Done,
    /// `bench: NAME VALUE ns/op`.
    Figure {
        /// The benchmark.
        name: &'a str,
        /// Nanoseconds per operation.
        ns: f64,
    },
    /// `bench: NAME failed TEXT`.
    Failed {
        /// The benchmark.
        name: &'a str,
        /// Why (the errno's text).
        error: &'a str,
    },
}

/// Parses a serial line written by the program; kernel log lines and anything else are
/// `None`.
pub fn parse_line(line: &str) -> Option<Line<'_>> {
    let rest = line.trim_end_matches('\r').strip_prefix("bench: ")?.trim();
    match rest {
        "start" => return Some(Line::Start),
        "done" => return Some(Line::Done),
        _ => {}
    }
    let (name, rest) = rest.split_once(' ')?;
    if let Some(error) = rest.strip_prefix("failed") {
        return Some(Line::Failed {
            name,
            error: error.trim(),
        });
    }
    let (value, unit) = rest.split_once(' ')?;
    if unit.trim() != "ns/op" {
        return None;
    }
    Some(Line::Figure {
        name,
        ns: value.parse().ok()?,
    })
}

/// What one boot reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Figures in their units (`ns/op`, and ms for [`START_TO_USER`]).
    pub figures: Vec<(String, f64)>,
    /// Steps that failed, with the reason.
    pub failures: Vec<(String, String)>,
    /// Whether the program got to `bench: done`.
    pub done: bool,
}

impl Report {
    /// Takes in serial `line`, seen `since_start` after QEMU started; returns the program's
    /// line, if it is one.
    fn take<'a>(&mut self, line: &'a str, since_start: Duration) -> Option<Line<'a>> {
        let parsed = parse_line(line)?;
        match &parsed {
            Line::Start => self
                .figures
                .push((START_TO_USER.into(), since_start.as_secs_f64() * 1000.0)),
            Line::Done => self.done = true,
            Line::Figure { name, ns } => self.figures.push(((*name).into(), *ns)),
            Line::Failed { name, error } => {
                self.failures.push(((*name).into(), (*error).into()));
            }
        }
        Some(parsed)
    }
}

/// A table cell: a median, or why there is none.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// The median over the runs that measured it.
    Value(f64),
    /// No run measured it; one said why.
    Failed(String),
}

/// One system's column: its cells by figure name.
pub type Column = BTreeMap<String, Cell>;

/// Medians over `reports`; a figure no run measured shows a run's failure.
pub fn summarize(reports: &[Report]) -> Column {
    let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (name, value) in reports.iter().flat_map(|r| &r.figures) {
        values.entry(name.clone()).or_default().push(*value);
    }
    let mut column: Column = values
        .into_iter()
        .map(|(name, mut v)| {
            let m = median(&mut v).expect("every entry has a value");
            (name, Cell::Value(m))
        })
        .collect();
    for (name, error) in reports.iter().flat_map(|r| &r.failures) {
        column
            .entry(name.clone())
            .or_insert_with(|| Cell::Failed(error.clone()));
    }
    column
}

/// The table as Markdown: Evergreen's column, and with `linux` Linux's, the ratio
/// Evergreen/Linux and the target ratio (lower is better).
pub fn table(evergreen: &Column, linux: Option<&Column>) -> String {
    let mut names: Vec<(&str, &str, Option<f64>)> = ROWS.to_vec();
    for name in evergreen
        .keys()
        .chain(linux.into_iter().flat_map(|c| c.keys()))
    {
        if !names.iter().any(|(n, ..)| n == name) {
            names.push((name, "ns/op", None));
        }
    }
    let mut header = vec!["benchmark", "unit", "Evergreen"];
    if linux.is_some() {
        header.extend(["Linux", "Evergreen/Linux", "target"]);
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (name, unit, target) in names {
        let ours = evergreen.get(name);
        let mut row = vec![name.to_owned(), unit.to_owned(), cell(ours)];
        if let Some(linux) = linux {
            let theirs = linux.get(name);
            let ratio = match (ours, theirs) {
                (Some(Cell::Value(a)), Some(Cell::Value(b))) if *b > 0.0 => Some(a / b),
                _ => None,
            };
            row.push(cell(theirs));
            row.push(ratio.map_or_else(|| "-".into(), |r| format!("{r:.2}")));
            row.push(match (target, ratio) {
                (None, _) => String::new(),
                (Some(t), None) => format!("≤ {t:.2}"),
                (Some(t), Some(r)) if r <= t => format!("≤ {t:.2} (met)"),
                (Some(t), Some(_)) => format!("≤ {t:.2} (not met)"),
            });
        }
        rows.push(row);
    }
    markdown(&header, &rows)
}

/// A cell's text: the value (one decimal below 100), `failed: why`, or `-`.
fn cell(cell: Option<&Cell>) -> String {
    match cell {
        None => "-".into(),
        Some(Cell::Value(v)) if *v < 100.0 => format!("{v:.1}"),
        Some(Cell::Value(v)) => format!("{v:.0}"),
        Some(Cell::Failed(why)) => format!("failed: {why}"),
    }
}

/// A Markdown table with aligned columns; every column after the first two is right-aligned.
fn markdown(header: &[&str], rows: &[Vec<String>]) -> String {
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([header[i].chars().count(), 3])
            .max()
            .unwrap_or(3)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i < 2 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect());
    // Each rule cell spans its column and the spaces around it; `:` marks right alignment.
    let rule: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(i, w)| {
            if i < 2 {
                "-".repeat(w + 2)
            } else {
                format!("{}:", "-".repeat(w + 1))
            }
        })
        .collect();
    out.push_str(&format!("|{}|\n", rule.join("|")));
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

/// Runs `bench user` (Evergreen only) or, with `compare`, `bench linux`, and prints the table.
pub fn run(compare: bool, options: &Options) -> Result<()> {
    if options.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let qemu = Qemu::locate()?;
    let target = build::target_dir()?;
    let dir = target.join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let program = dir.join("bench");
    status!("building user/bench/bench.c (musl-gcc -static -O2)…");
    build_c(
        &build::workspace_root().join("user/bench/bench.c"),
        &program,
    )?;
    let program =
        std::fs::read(&program).with_context(|| format!("reading {}", program.display()))?;
    // Evergreen's init gets a fixed environment, so the scale goes in as an argument on both.
    let args = format!("BENCH_SCALE={}", options.scale);
    let cpus = format!(
        "{} CPU{}, {} MiB, TCG",
        options.smp,
        if options.smp == 1 { "" } else { "s" },
        options.memory_mib
    );

    // The shell and file benchmarks run the host's static busybox on both systems.
    let busybox = busybox()?;
    let busybox =
        std::fs::read(&busybox).with_context(|| format!("reading {}", busybox.display()))?;
    let image_path = evergreen_image(&dir, &program, &busybox, &args, options)?;
    let mut machine = RunOptions::headless(image_path, dir.join("evergreen.log"));
    machine.smp = options.smp;
    machine.memory_mib = options.memory_mib;
    let mut ours = Vec::new();
    for i in 1..=options.runs {
        status!("booting Evergreen ({cpus}), run {i}/{}…", options.runs);
        machine.serial = crate::qemu::Serial::File(dir.join(format!("evergreen-{i}.log")));
        ours.push(boot(&qemu, &machine, "Evergreen")?);
    }
    let ours = summarize(&ours);
    if !compare {
        print!("{}", table(&ours, None));
        return Ok(());
    }

    let kernel = linux::kernel(&target)?;
    let initrd = dir.join("linux-initrd.cpio");
    let mut cpio = Cpio::new();
    cpio.dir("dev", 0o755)
        .char_device("dev/console", 0o600, (5, 1))
        .file("init", 0o755, &program)
        .dir("bin", 0o755)
        .file("bin/busybox", 0o755, &busybox);
    std::fs::write(&initrd, cpio.finish())
        .with_context(|| format!("writing {}", initrd.display()))?;
    machine.direct_kernel = Some(DirectKernel {
        kernel: kernel.path.clone(),
        initrd,
        append: format!("console=ttyS0 quiet panic=-1 -- {args}"),
    });
    let mut theirs = Vec::new();
    for i in 1..=options.runs {
        status!(
            "booting Linux {} ({cpus}), run {i}/{}…",
            kernel.name,
            options.runs
        );
        machine.serial = crate::qemu::Serial::File(dir.join(format!("linux-{i}.log")));
        theirs.push(boot(&qemu, &machine, "Linux")?);
    }
    let theirs = summarize(&theirs);
    println!(
        "Evergreen vs Linux {} on the same QEMU machine ({cpus}); medians of {} run(s); \
         lower is better",
        kernel.name, options.runs
    );
    print!("{}", table(&ours, Some(&theirs)));
    Ok(())
}

/// Builds the kernel and the loader and writes the image that runs the program as init.
fn evergreen_image(
    dir: &Path,
    program: &[u8],
    busybox: &[u8],
    args: &str,
    options: &Options,
) -> Result<std::path::PathBuf> {
    let kernel_path = build::build(Component::Kernel, options.profile)?;
    let loader = payload::our_loader(&build::build(Component::Loader, options.profile)?)?;
    let kernel = std::fs::read(&kernel_path)
        .with_context(|| format!("reading {}", kernel_path.display()))?;
    let module = ModuleFile {
        file_name: "bench".into(),
        cmdline: "bench".into(),
        data: program.to_vec(),
    };
    let trace = if options.strace { " strace" } else { "" };
    let cmdline = format!("test=exec{trace} init=/boot/bench -- {args}");
    let image_path = dir.join("evergreen.img");
    let busybox = ModuleFile {
        file_name: "busybox".into(),
        cmdline: "busybox".into(),
        data: busybox.to_vec(),
    };
    let spec = payload::standard_image(&loader, kernel, &cmdline, &[module, busybox])?;
    image::write_image(&spec, &image_path)?;
    Ok(image_path)
}

/// Boots `machine` once and collects the program's report, printing figures as they come.
fn boot(qemu: &Qemu, machine: &RunOptions, system: &str) -> Result<Report> {
    let log = machine
        .serial
        .log()
        .expect("benchmark runs log serial to a file")
        .to_path_buf();
    // A stale log from an earlier run would be read before QEMU truncates it.
    let _ = std::fs::remove_file(&log);
    let start = Instant::now();
    let mut running = qemu.spawn(machine)?;
    let mut report = Report::default();
    let mut last_words = None;
    let outcome = watch::watch(&mut running.child, Some(&log), Some(TIMEOUT), |line| {
        match report.take(line, start.elapsed()) {
            Some(Line::Figure { name, ns }) => status!("  {system}: {name} {ns:.1} ns/op"),
            Some(Line::Failed { name, error }) => status!("  {system}: {name} failed: {error}"),
            Some(Line::Start) => status!(
                "  {system}: first user line after {:.0} ms",
                start.elapsed().as_secs_f64() * 1000.0
            ),
            Some(Line::Done) => return true,
            None => {}
        }
        // The program ended or the kernel gave up before `bench: done`.
        let fatal =
            line.contains("init: /boot/bench exited with status") || line.contains("Kernel panic");
        if fatal {
            last_words = Some(line.trim_end_matches('\r').to_owned());
        }
        fatal
    })?;
    match outcome {
        Outcome::Matched(_) if report.done => {
            // The program powers the machine off as pid 1 (reboot(RB_POWER_OFF)).
            let exit = watch::watch(&mut running.child, None, Some(POWER_OFF_GRACE), |_| false)?;
            if !matches!(exit, Outcome::Exited(_)) {
                status!(
                    "  {system} did not power off within {} s of `bench: done`; stopping QEMU",
                    POWER_OFF_GRACE.as_secs()
                );
            }
        }
        Outcome::Matched(_) | Outcome::Exited(_) => status!(
            "  {system}: the program stopped before `bench: done`{} (serial log: {})",
            last_words.map(|l| format!(": {l}")).unwrap_or_default(),
            log.display()
        ),
        Outcome::TimedOut => status!(
            "  {system}: no `bench: done` within {} s (serial log: {})",
            TIMEOUT.as_secs(),
            log.display()
        ),
        Outcome::Interrupted => {
            watch::terminate(&mut running.child, Duration::from_secs(3))?;
            bail!("interrupted");
        }
    }
    if running.child.try_wait()?.is_none() {
        watch::terminate(&mut running.child, Duration::from_secs(3))?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_lines_parse() {
        assert_eq!(parse_line("bench: start\r"), Some(Line::Start));
        assert_eq!(parse_line("bench: done"), Some(Line::Done));
        assert_eq!(
            parse_line("bench: pipe_rtt 14642.4 ns/op"),
            Some(Line::Figure {
                name: "pipe_rtt",
                ns: 14642.4
            })
        );
        assert_eq!(
            parse_line("bench: futex_pingpong failed Function not implemented"),
            Some(Line::Failed {
                name: "futex_pingpong",
                error: "Function not implemented"
            })
        );
        // The kernel's own figures and log lines are not the program's.
        assert_eq!(
            parse_line("[    0.1 0] [INFO ] bench: frame-alloc-free 41.5 ns/frame"),
            None
        );
        assert_eq!(parse_line("bench: getppid 12 ms"), None);
        assert_eq!(parse_line("bench: getppid many ns/op"), None);
        assert_eq!(parse_line("hello"), None);
    }

    #[test]
    fn reports_collect_figures_and_the_time_to_user_space() {
        let mut r = Report::default();
        let at = Duration::from_millis(1500);
        for line in [
            "BdsDxe: loading Boot0001",
            "bench: start",
            "bench: getppid 800.0 ns/op",
            "bench: pipe_rtt failed Broken pipe",
            "bench: done",
        ] {
            r.take(line, at);
        }
        assert_eq!(
            r.figures,
            vec![(START_TO_USER.into(), 1500.0), ("getppid".into(), 800.0)]
        );
        assert_eq!(r.failures, vec![("pipe_rtt".into(), "Broken pipe".into())]);
        assert!(r.done);
    }

    fn report(figures: &[(&str, f64)], failures: &[(&str, &str)]) -> Report {
        Report {
            figures: figures.iter().map(|(n, v)| ((*n).into(), *v)).collect(),
            failures: failures
                .iter()
                .map(|(n, e)| ((*n).into(), (*e).into()))
                .collect(),
            done: true,
        }
    }

    #[test]
    fn columns_hold_medians_and_failures() {
        let column = summarize(&[
            report(&[("getppid", 3.0)], &[("pipe_rtt", "EPIPE")]),
            report(&[("getppid", 1.0), ("pipe_rtt", 7.0)], &[]),
            report(&[("getppid", 2.0)], &[("futex_pingpong", "ENOSYS")]),
        ]);
        assert_eq!(column["getppid"], Cell::Value(2.0));
        assert_eq!(
            column["pipe_rtt"],
            Cell::Value(7.0),
            "a figure beats a failure"
        );
        assert_eq!(column["futex_pingpong"], Cell::Failed("ENOSYS".into()));
    }

    #[test]
    fn evergreen_only_table() {
        let ours = summarize(&[report(&[("getppid", 812.34), ("pipe_rtt", 15.25)], &[])]);
        let text = table(&ours, None);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "| benchmark           | unit   | Evergreen |");
        assert_eq!(lines[1], "|---------------------|--------|----------:|");
        assert_eq!(lines[2], "| getppid             | ns/op  |       812 |");
        assert_eq!(lines[3], "| getppid_main        | ns/op  |         - |");
        assert_eq!(lines[4], "| pipe_rtt            | ns/op  |      15.2 |");
        assert_eq!(lines.len(), 2 + ROWS.len());
        assert!(
            lines
                .iter()
                .all(|l| l.chars().count() == lines[0].chars().count())
        );
    }

    #[test]
    fn comparison_table_has_ratios_and_targets() {
        let ours = summarize(&[report(
            &[("getppid", 300.0), ("pipe_rtt", 9000.0), ("extra", 5.0)],
            &[("page_fault", "Cannot allocate memory")],
        )]);
        let theirs = summarize(&[report(
            &[
                ("getppid", 600.0),
                ("pipe_rtt", 10000.0),
                ("page_fault", 2000.0),
            ],
            &[],
        )]);
        let text = table(&ours, Some(&theirs));
        let row = |name: &str| -> Vec<String> {
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("| {name} ")))
                .unwrap_or_else(|| panic!("no row {name} in\n{text}"));
            line.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        };
        assert_eq!(
            text.lines()
                .next()
                .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>()),
            Some(vec![
                "",
                "benchmark",
                "unit",
                "Evergreen",
                "Linux",
                "Evergreen/Linux",
                "target",
                ""
            ])
        );
        assert_eq!(
            row("getppid"),
            ["getppid", "ns/op", "300", "600", "0.50", "≤ 0.70 (met)"]
        );
        assert_eq!(
            row("pipe_rtt"),
            [
                "pipe_rtt",
                "ns/op",
                "9000",
                "10000",
                "0.90",
                "≤ 0.30 (not met)"
            ]
        );
        assert_eq!(
            row("page_fault"),
            [
                "page_fault",
                "ns/op",
                "failed: Cannot allocate memory",
                "2000",
                "-",
                "≤ 0.80"
            ]
        );
        assert_eq!(
            row("futex_pingpong"),
            ["futex_pingpong", "ns/op", "-", "-", "-", ""]
        );
        assert_eq!(row(START_TO_USER)[1], "ms");
        assert_eq!(row("extra"), ["extra", "ns/op", "5.0", "-", "-", ""]);
        let widths: Vec<usize> = text.lines().map(|l| l.chars().count()).collect();
        assert!(widths.iter().all(|w| *w == widths[0]), "{text}");
    }
}
