//! The `hodometer` binary: parses the command line and hands over to the library.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use uuid::Uuid;

use hodometer::cli::{Cli, CollectArgs, Command, Output};
use hodometer::config::ConfigErrors;
use hodometer::metrics::{Level, Reading};
use hodometer::sim::{Sim, SimArgs};
use hodometer::{collect, logging, payload, report};

/// Exit code for invalid configuration, as for a command-line usage error.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    let result = runtime.block_on(async {
        match cli.command {
            Command::Collect(args) => run_collect(args).await,
            Command::Sim(args) => run_sim(args).await,
        }
    });
    match result {
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

async fn run_collect(args: CollectArgs) -> anyhow::Result<ExitCode> {
    let settings = args.common.validate()?;
    logging::init(&settings.log);
    if settings.do_not_track {
        tracing::info!("DO_NOT_TRACK is set: level forced to off");
    }
    if settings.level == Level::Off {
        tracing::info!("level is off: nothing is collected and nothing would be sent");
        return Ok(ExitCode::SUCCESS);
    }

    let snapshot = collect::collect(&settings.plan).await;
    let unknown: Vec<&str> = snapshot
        .rows(settings.level)
        .into_iter()
        .filter(|row| row.shared && matches!(row.reading, Reading::Unknown(_)))
        .map(|row| row.def.name)
        .collect();
    tracing::info!(
        metrics_level = %settings.level,
        scheduler = %settings.plan.scheduler.address(),
        unknown = %unknown.join(","),
        "collected"
    );

    let text = match args.output {
        Output::Table => report::table(&snapshot, settings.level),
        Output::Json => {
            match payload::build_event(&snapshot, settings.level, &settings.token, Uuid::new_v4()) {
                Some(event) => event.json + "\n",
                None => String::new(),
            }
        }
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

async fn run_sim(args: SimArgs) -> anyhow::Result<ExitCode> {
    let config = args.validate()?;
    logging::init(&hodometer::config::LogSettings {
        level: tracing::Level::INFO,
        format: None,
    });
    let counts = (
        config.scenario.models.len(),
        config.scenario.servers.len(),
        config.scenario.pipelines.len(),
        config.scenario.experiments.len(),
    );
    let sim = Sim::bind(config).await?;
    let addr = sim.local_addr()?;
    // Tests and scripts read this line to learn the port when --listen asked for port 0.
    println!("hodometer sim: scheduler listening on {addr}");
    std::io::stdout().flush()?;
    tracing::info!(
        models = counts.0,
        servers = counts.1,
        pipelines = counts.2,
        experiments = counts.3,
        "simulated scheduler ready"
    );
    sim.serve(shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
