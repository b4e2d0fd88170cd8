//! The `hodometer` binary: parses the command line, runs the command, and turns its result into
//! an exit code. Everything else lives in the library (`cmd` holds the commands).

use std::process::ExitCode;

use clap::Parser;

use hodometer::cmd::{Cli, EXIT_CONFIG};
use hodometer::validate::ConfigErrors;

fn main() -> ExitCode {
    let command = match Cli::parse().command {
        Some(command) => command,
        // Bare `hodometer` is the inspector, configured from the environment as `inspect` would be.
        None => match Cli::try_parse_from(["hodometer", "inspect"]).map(|cli| cli.command) {
            Ok(Some(command)) => command,
            Ok(None) => return ExitCode::from(EXIT_CONFIG),
            Err(error) => error.exit(),
        },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("hodometer: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command.run()) {
        Ok(code) => code,
        Err(error) => {
            if let Some(config) = error.downcast_ref::<ConfigErrors>() {
                eprint!("hodometer: {config}");
                return ExitCode::from(EXIT_CONFIG);
            }
            eprintln!("hodometer: {error:#}");
            ExitCode::FAILURE
        }
    }
}
