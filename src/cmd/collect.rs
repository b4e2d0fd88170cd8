//! `hodometer collect`: collect once, print the event (or a table of every metric), and with
//! `--publish` send exactly that event.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use uuid::Uuid;

use crate::config::{CommonArgs, PublishArgs, RouteArgs};
use crate::metrics::Level;
use crate::publish::Publisher;
use crate::validate::Checker;
use crate::{collect, extensions, logging, payload, report};

#[derive(Debug, Args)]
pub struct CollectArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub route: RouteArgs,
    /// json: exactly the event that would be sent; table: every metric and extension, shared or
    /// withheld, with unknown reasons and extension warnings.
    #[arg(long, value_enum, default_value_t = Output::Json)]
    pub output: Output,
    /// Also send the printed event to every endpoint and report each one's outcome on stderr
    /// (exit status 1 if any did not accept it).
    #[arg(long)]
    pub publish: bool,
    #[command(flatten)]
    pub publish_to: PublishArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Json,
    Table,
}

pub async fn run(args: CollectArgs) -> anyhow::Result<ExitCode> {
    let mut checker = Checker::default();
    let settings = args.common.check(&mut checker, "localhost");
    // Publishing settings are only checked (and only need to be valid) with --publish.
    let publish = args.publish.then(|| args.publish_to.check(&mut checker));
    let (settings, publish) = checker.finish_with(|| {
        let publish = match publish {
            Some(checked) => Some(checked?),
            None => None,
        };
        Some((settings?, publish))
    })?;
    let mut settings = settings;
    args.route.apply(&args.common, &mut settings)?;
    logging::init(&settings.log);
    if settings.do_not_track {
        tracing::info!("DO_NOT_TRACK is set: level forced to off");
    }
    if settings.level == Level::Off {
        tracing::info!("level is off: nothing is collected and nothing would be sent");
        return Ok(ExitCode::SUCCESS);
    }

    let snapshot = collect::collect(&settings.plan).await;
    // Said after collecting: the forward's pod is known once it opened.
    let scheduler = settings.scheduler_description();
    extensions::log_warnings(&snapshot.extensions);
    let unknown = snapshot.unknown_shared(settings.level);
    tracing::info!(
        metrics_level = %settings.level,
        %scheduler,
        unknown = %unknown.join(","),
        "collected"
    );

    // One event: what is printed is exactly what is published.
    let event = payload::build_event(&snapshot, settings.level, &settings.token, Uuid::new_v4());
    let text = match (args.output, &event) {
        (Output::Table, _) => format!(
            "scheduler {}\n\n{}",
            scheduler,
            report::table(&snapshot, settings.level)
        ),
        (Output::Json, Some(event)) => format!("{}\n", event.json),
        (Output::Json, None) => String::new(),
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    drop(stdout);

    // A port-forward that could not be opened is a failed source: say what was refused and the
    // way around it, once, and exit 1 (the event printed is what could be built without it).
    let forward_failed = forward_failure(&settings);
    if let Some(message) = &forward_failed {
        eprintln!("hodometer: the scheduler could not be reached: {message}");
    }
    let (Some(publish), Some(event)) = (publish, event) else {
        return Ok(if forward_failed.is_some() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    };
    let outcomes = Publisher::new(publish.policy)?
        .publish(&event, &publish.endpoints)
        .await;
    for outcome in &outcomes {
        eprintln!("published: {} {}", outcome.endpoint, outcome.detail());
    }
    Ok(
        if outcomes.iter().all(|o| o.is_ok()) && forward_failed.is_none() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

/// Why the port-forward to the scheduler failed, with the `kubectl port-forward` way around it,
/// when it did.
fn forward_failure(settings: &crate::config::Settings) -> Option<String> {
    use crate::k8s::forward::LinkState;
    let forward = settings.plan.scheduler.forward()?;
    let LinkState::Failed { reason, .. } = forward.link.state() else {
        return None;
    };
    Some(format!("{reason}\n  {}", forward.kubectl_hint()))
}
