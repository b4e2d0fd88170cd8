//! The `hodometer` binary: parses the command line and runs the command. Everything else lives
//! in the library (`cmd` holds the commands).

use std::process::ExitCode;

use hodometer::cmd::{Cli, EXIT_CONFIG, run_to_exit_code};

fn main() -> ExitCode {
    let command = match Cli::parse_args().command {
        Some(command) => command,
        // Bare `hodometer` is the inspector, configured from the environment as `inspect` would be.
        #[cfg(feature = "tools")]
        None => match <Cli as clap::Parser>::try_parse_from(["hodometer", "inspect"])
            .map(|cli| cli.command)
        {
            Ok(Some(command)) => command,
            Ok(None) => return ExitCode::from(EXIT_CONFIG),
            Err(error) => error.exit(),
        },
        #[cfg(not(feature = "tools"))]
        None => {
            eprintln!(
                "hodometer: this build (the container image's) has only `hodometer daemon`; the full build has the inspector"
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    run_to_exit_code(command.runtime(), command.run())
}
