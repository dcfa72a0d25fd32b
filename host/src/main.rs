//! The `muon` binary: `muon serve` runs the host; the other commands speak
//! its HTTP API.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = muon::cli::Cli::parse();
    match muon::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
