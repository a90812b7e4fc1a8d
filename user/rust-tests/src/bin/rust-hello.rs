//! A Rust std program, unchanged from what runs on Linux: arguments, environment, the heap, a
//! `HashMap` (seeded by `getrandom`), floating point, the monotonic clock and an exit status.
//! The differential test compares its stdout and status on the host and on Evergreen.

use std::{collections::HashMap, time::Instant};

fn main() {
    let start = Instant::now();
    let args: Vec<String> = std::env::args().collect();
    println!(
        "hello from Rust std: {} argument(s): {:?}",
        args.len(),
        &args[1..]
    );
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    env.sort();
    println!("environment: {env:?}");
    let mut counts: HashMap<char, usize> = HashMap::new();
    for c in "the quick brown fox jumps over the lazy dog".chars() {
        *counts.entry(c).or_default() += 1;
    }
    let mut common: Vec<(char, usize)> = counts.into_iter().filter(|&(_, n)| n > 2).collect();
    common.sort();
    println!("letters seen more than twice: {common:?}");
    let v: Vec<u64> = (1..=100_000).collect();
    let mean = v.iter().sum::<u64>() as f64 / v.len() as f64;
    println!(
        "mean of 1..=100000 is {mean:.1}, sqrt(2) = {:.6}",
        2f64.sqrt()
    );
    println!(
        "the clock moves forward: {}",
        start.elapsed().as_nanos() > 0
    );
    std::process::exit(3);
}
