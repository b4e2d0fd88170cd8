//! The `hodometer` binary: parses the command line and hands over to the library.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use uuid::Uuid;

use hodometer::cli::{Cli, CollectArgs, Command, Output};
use hodometer::config::Checker;
use hodometer::config::ConfigErrors;
use hodometer::daemon::{DaemonArgs, DaemonExit};
use hodometer::demo::DemoArgs;
use hodometer::metrics::Level;
use hodometer::publish::{Publisher, describe_outcomes};
use hodometer::receive::{ReceiveArgs, Receiver};
use hodometer::sim::{Sim, SimArgs};
use hodometer::tui::InspectArgs;
use hodometer::{collect, daemon, demo, logging, payload, report, tui};

/// Exit code for invalid configuration, as for a command-line usage error.
const EXIT_CONFIG: u8 = 2;

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
    let result = runtime.block_on(async {
        match command {
            Command::Inspect(args) => run_inspect(args).await,
            Command::Demo(args) => run_demo(args).await,
            Command::Collect(args) => run_collect(args).await,
            Command::Daemon(args) => run_daemon(args).await,
            Command::Sim(args) => run_sim(args).await,
            Command::Receive(args) => run_receive(args).await,
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

/// The inspector needs a terminal; without one, say so and point at `collect`.
fn require_terminal() -> Option<ExitCode> {
    if std::io::stdout().is_terminal() && std::io::stdin().is_terminal() {
        return None;
    }
    eprintln!(
        "hodometer: the inspector needs a terminal. Without one, `hodometer collect --output table` \
         shows every metric and `hodometer collect` prints the exact event."
    );
    Some(ExitCode::from(EXIT_CONFIG))
}

async fn run_inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let config = args.validate()?;
    if let Some(code) = require_terminal() {
        return Ok(code);
    }
    logging::init_to_file(&config.settings.log, &config.log_file)?;
    tui::run(config).await?;
    Ok(ExitCode::SUCCESS)
}

async fn run_demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    if let Some(code) = require_terminal() {
        return Ok(code);
    }
    demo::run(args).await?;
    Ok(ExitCode::SUCCESS)
}

async fn run_collect(args: CollectArgs) -> anyhow::Result<ExitCode> {
    let mut checker = Checker::default();
    let settings = args.common.check(&mut checker, "localhost");
    let publish = if args.publish {
        args.publish_to.check(&mut checker)
    } else {
        None
    };
    checker.finish()?;
    let settings = settings.ok_or_else(ConfigErrors::default)?;
    logging::init(&settings.log);
    if settings.do_not_track {
        tracing::info!("DO_NOT_TRACK is set: level forced to off");
    }
    if settings.level == Level::Off {
        tracing::info!("level is off: nothing is collected and nothing would be sent");
        return Ok(ExitCode::SUCCESS);
    }

    let snapshot = collect::collect(&settings.plan).await;
    let unknown = snapshot.unknown_shared(settings.level);
    tracing::info!(
        metrics_level = %settings.level,
        scheduler = %settings.plan.scheduler.address(),
        unknown = %unknown.join(","),
        "collected"
    );

    // One event: what is printed is exactly what is published.
    let event = payload::build_event(&snapshot, settings.level, &settings.token, Uuid::new_v4());
    let text = match (args.output, &event) {
        (Output::Table, _) => format!(
            "scheduler {}\n\n{}",
            settings.scheduler_description(),
            report::table(&snapshot, settings.level)
        ),
        (Output::Json, Some(event)) => format!("{}\n", event.json),
        (Output::Json, None) => String::new(),
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    drop(stdout);

    let (Some(publish), Some(event)) = (publish, event) else {
        return Ok(ExitCode::SUCCESS);
    };
    let outcomes = Publisher::new(publish.policy)?
        .publish(&event, &publish.endpoints)
        .await;
    for outcome in &outcomes {
        eprintln!(
            "published: {}",
            describe_outcomes(std::slice::from_ref(outcome))
        );
    }
    Ok(if outcomes.iter().all(|o| o.is_ok()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn run_daemon(args: DaemonArgs) -> anyhow::Result<ExitCode> {
    let config = args.validate()?;
    logging::init(&config.settings.log);
    if config.settings.do_not_track {
        tracing::info!("DO_NOT_TRACK is set: level forced to off");
    }
    tracing::info!(
        metrics_level = %config.settings.level,
        scheduler = %config.settings.scheduler_description(),
        endpoints = config.publish.endpoints.len(),
        interval = ?config.interval,
        "hodometer daemon starting"
    );
    Ok(match daemon::run(config, shutdown_signal()).await? {
        DaemonExit::Clean => ExitCode::SUCCESS,
        DaemonExit::PublishFailed => ExitCode::FAILURE,
    })
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
    // Tests and scripts read these lines to learn the ports when port 0 was asked for.
    println!("hodometer sim: scheduler listening on {addr}");
    if let Some(tls) = sim.tls_addr() {
        println!("hodometer sim: scheduler (mutual TLS) listening on {tls}");
    }
    if let Some(kube) = sim.kube_addr() {
        println!("hodometer sim: kubernetes listening on {kube}");
    }
    if let Some(kube) = sim.kube_tls_addr() {
        println!("hodometer sim: kubernetes (HTTPS) listening on {kube}");
    }
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

async fn run_receive(args: ReceiveArgs) -> anyhow::Result<ExitCode> {
    let config = args.validate()?;
    logging::init(&hodometer::config::LogSettings {
        level: tracing::Level::INFO,
        format: None,
    });
    let (record, store) = (config.record, config.store.clone());
    let receiver = Receiver::bind(config).await?;
    let addr = receiver.local_addr()?;
    // Tests and scripts read this line to learn the port when --listen asked for port 0.
    println!("hodometer receive: listening on {addr}");
    std::io::stdout().flush()?;
    tracing::info!(
        %record,
        store = %store.map_or_else(|| "memory".into(), |path| path.display().to_string()),
        "receiver ready"
    );
    receiver.serve(shutdown_signal()).await?;
    tracing::info!("receiver stopped");
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
