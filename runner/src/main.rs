//! `cargo run -- [FLAGS]`: see `runner::cli` or `cargo run -- --help`.

use std::process::ExitCode;

fn main() -> ExitCode {
    match runner::cli::main() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("runner: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
