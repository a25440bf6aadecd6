use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match idgate::cli::run(idgate::cli::Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("idgate: {error:#}");
            ExitCode::FAILURE
        }
    }
}
