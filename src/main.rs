//! The `triadapt` binary: parses the command line (`triadapt::cli`) and maps the outcome to an
//! exit status.

use std::process::ExitCode;

use clap::Parser;
use triadapt::cli::{run, Cli};

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // A run (or sweep) stopped by a signal after saving its state: "try again later".
            if e.downcast_ref::<triadapt::train::signals::Interrupted>().is_some() {
                return ExitCode::from(triadapt::train::signals::EXIT_INTERRUPTED);
            }
            ExitCode::FAILURE
        }
    }
}
