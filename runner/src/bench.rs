//! Benchmarks: boot the kernel several times and report the median of each figure.
//!
//! Figures come from two places: the host's clock (QEMU start to the kernel's banner on
//! serial) and lines the kernel prints itself, `bench: <name> <value> <unit>`, for what only
//! the guest can time (CPU bring-up, frame allocation). `bench user` and `bench linux` time
//! system calls from a user program instead, on Evergreen and on Linux ([`user`]). Tests
//! check correctness; these commands only print numbers.

mod cpio;
mod linux;
mod prompt;
pub mod user;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    build::{self, Component},
    image, payload,
    qemu::{Qemu, RunOptions},
    watch::{self, Outcome},
};

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Bench {
    /// Wall-clock time from starting QEMU to the kernel's banner on serial (headless, TCG).
    Boot,
    /// Time from kernel entry to all CPUs online, with 4 CPUs (reported by the kernel).
    Smp,
    /// Cost of allocating and freeing 4 KiB frames (reported by the kernel).
    Frames,
    /// System calls timed by a user program (`user/bench/bench.c`) running as init.
    User,
    /// The same program on Evergreen and on Linux in the same QEMU machine, side by side.
    Linux,
}

impl Bench {
    /// For the kernel's own benchmarks: the kernel command line and the CPU count; `None`
    /// for the user-program ones, which [`user::run`] boots.
    fn kernel_run(self) -> Option<(&'static str, u8)> {
        match self {
            Bench::Boot => Some(("test=boot", 1)),
            Bench::Smp => Some(("test=boot", 4)),
            Bench::Frames => Some(("test=bench-frames", 1)),
            Bench::User | Bench::Linux => None,
        }
    }
}

/// One figure from one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// What was measured.
    pub name: String,
    /// Its value.
    pub value: f64,
    /// Its unit.
    pub unit: String,
}

/// Parses a kernel line `bench: <name> <value> <unit>` (anywhere in the line, after a log
/// prefix).
pub fn parse_line(line: &str) -> Option<Figure> {
    let rest = &line[line.find("bench: ")? + "bench: ".len()..];
    let mut words = rest.split_whitespace();
    let name = words.next()?.to_owned();
    let value = words.next()?.parse().ok()?;
    let unit = words.next()?.to_owned();
    Some(Figure { name, value, unit })
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

/// Runs `bench` `options.runs` times and prints each run's figures and the medians (for
/// `user` and `linux`, a table; the other options only apply to those).
pub fn run(bench: Bench, options: &user::Options) -> Result<()> {
    let Some((cmdline, smp)) = bench.kernel_run() else {
        return user::run(bench == Bench::Linux, options);
    };
    let (runs, profile) = (options.runs, options.profile);
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let qemu = Qemu::locate()?;
    let target = build::target_dir()?;
    let kernel_path = build::build(Component::Kernel, profile)?;
    let loader = payload::our_loader(&build::build(Component::Loader, profile)?)?;
    let kernel = std::fs::read(&kernel_path)
        .with_context(|| format!("reading {}", kernel_path.display()))?;
    let image_path = target.join("bench.img");
    let spec = payload::standard_image(&loader, kernel, cmdline, &[])?;
    image::write_image(&spec, &image_path)?;

    let mut all: Vec<Figure> = Vec::new();
    for i in 1..=runs {
        let log = target.join(format!("bench-serial-{i}.log"));
        // A stale log from an earlier run would be read before QEMU truncates it.
        let _ = std::fs::remove_file(&log);
        let figures = one_run(&qemu, &image_path, &log, bench, smp)
            .with_context(|| format!("run {i} of {runs}"))?;
        let shown: Vec<String> = figures
            .iter()
            .map(|f| format!("{} {:.1} {}", f.name, f.value, f.unit))
            .collect();
        status!("run {i}/{runs}: {}", shown.join(", "));
        all.extend(figures);
    }
    let mut names: Vec<&str> = all.iter().map(|f| f.name.as_str()).collect();
    names.dedup();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let mut values: Vec<f64> = all
            .iter()
            .filter(|f| f.name == name)
            .map(|f| f.value)
            .collect();
        let unit = &all
            .iter()
            .find(|f| f.name == name)
            .expect("name came from all")
            .unit;
        let count = values.len();
        let median = median(&mut values).expect("at least one value per name");
        println!("{name}: median {median:.1} {unit} over {count} run(s)");
    }
    Ok(())
}

fn one_run(qemu: &Qemu, image: &Path, log: &Path, bench: Bench, smp: u8) -> Result<Vec<Figure>> {
    let mut opts = RunOptions::headless(image.to_path_buf(), log.to_path_buf());
    opts.smp = smp;
    let start = Instant::now();
    let mut running = qemu.spawn(&opts)?;
    let mut figures = Vec::new();
    let mut banner = false;
    let mut loader = false;
    let outcome = watch::watch(
        &mut running.child,
        Some(log),
        Some(Duration::from_secs(300)),
        |line| {
            if !loader && line.starts_with("loader: ") {
                loader = true;
                figures.push(Figure {
                    name: "boot-to-loader".into(),
                    value: start.elapsed().as_secs_f64() * 1000.0,
                    unit: "ms".into(),
                });
            }
            if !banner && line.contains("Evergreen ") && line.contains(" booting") {
                banner = true;
                figures.push(Figure {
                    name: "boot-to-banner".into(),
                    value: start.elapsed().as_secs_f64() * 1000.0,
                    unit: "ms".into(),
                });
            }
            if let Some(figure) = parse_line(line) {
                figures.push(figure);
            }
            // test=boot and the benchmarks end the run themselves through isa-debug-exit.
            false
        },
    )?;
    match outcome {
        Outcome::Exited(_) => {}
        Outcome::TimedOut => {
            watch::terminate(&mut running.child, Duration::from_secs(3))?;
            bail!(
                "the guest did not finish within 300 s (serial log: {})",
                log.display()
            );
        }
        Outcome::Interrupted | Outcome::Matched(_) => {
            watch::terminate(&mut running.child, Duration::from_secs(3))?;
            bail!("interrupted");
        }
    }
    if !banner {
        bail!(
            "the kernel's banner never appeared (serial log: {})",
            log.display()
        );
    }
    let wanted = match bench {
        Bench::Boot => None,
        Bench::Smp => Some("smp-online"),
        Bench::Frames => Some("frame-alloc-free"),
        Bench::User | Bench::Linux => None,
    };
    if let Some(name) = wanted
        && !figures.iter().any(|f| f.name == name)
    {
        bail!(
            "the kernel printed no `bench: {name}` line (serial log: {})",
            log.display()
        );
    }
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_bench_lines() {
        let f = parse_line("[INFO ] bench: frame-alloc-free 41.5 ns/frame").expect("parses");
        assert_eq!(
            f,
            Figure {
                name: "frame-alloc-free".into(),
                value: 41.5,
                unit: "ns/frame".into()
            }
        );
        assert_eq!(parse_line("bench: x notanumber ms"), None);
        assert_eq!(parse_line("no figure here"), None);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }
}
