//! `hodometer collect`: collect once, print the event (or a table of every metric), and with
//! `--publish` send exactly that event.

use std::io::Write;
use std::process::ExitCode;

use std::time::Duration;

use clap::Args;

use crate::config::{CommonArgs, PERSON_PUBLISH_DEADLINE, PublishArgs, RouteArgs};
use crate::consent::cluster::ConsentApi;
use crate::metrics::Level;
use crate::output::{OutputArgs, OutputFormat, json_to_yaml};
use crate::policy::Source;
use crate::publish::{PublishPolicy, Publisher};
use crate::reporter::{self, Governance, Reporter, Sent};
use crate::validate::Checker;
use crate::{logging, report};

#[derive(Debug, Args)]
#[command(
    after_help = "Output: json (the default) is exactly the event that would be sent, byte for byte; yaml is a view of the same event; table shows every metric and extension, shared or withheld, with the reason for each unknown.\n\nA source that cannot be reached at all (the scheduler, or a configured Kubernetes API) makes collect exit 1 after printing what it could build; stderr says which source, why, and the fix. A read that RBAC refuses (e.g. nodes without the ClusterRole) is reported on stderr and leaves the exit code alone."
)]
pub struct CollectArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub route: RouteArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Also send the printed event to every endpoint and report each one's outcome on stderr
    /// (exit status 1 if any did not accept it).
    #[arg(long)]
    pub publish: bool,
    #[command(flatten)]
    pub publish_to: PublishArgs,
}

/// How long a person waits for a connection to a source before it is reported down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn run(args: CollectArgs) -> anyhow::Result<ExitCode> {
    let mut checker = Checker::default();
    let settings = args.common.check(&mut checker, "localhost");
    let output = args.output.check(
        &mut checker,
        &[OutputFormat::Json, OutputFormat::Yaml, OutputFormat::Table],
        OutputFormat::Json,
    );
    // Publishing settings are only checked (and only need to be valid) with --publish.
    let publish = args.publish.then(|| {
        args.publish_to
            .check_with_deadline(&mut checker, PERSON_PUBLISH_DEADLINE)
    });
    let (settings, output, publish) = checker.finish_with(|| {
        let publish = match publish {
            Some(checked) => Some(checked?),
            None => None,
        };
        Some((settings?, output?, publish))
    })?;
    let mut settings = settings;
    args.route.apply(&args.common, &mut settings)?;
    logging::init(&settings.log);

    // With --publish, a consent in force in the cluster bounds what leaves, as it bounds the
    // in-cluster reporter: never more than it approves, nothing under an invalid one.
    let api = match (&publish, &settings.plan.kube) {
        (Some(_), Some(target)) => ConsentApi::connect(target, &settings.consent_configmap)
            .await
            .map_err(|reason| tracing::debug!(%reason, "no consent to read: METRICS_LEVEL rules"))
            .ok(),
        _ => None,
    };
    let policy = Governance::new(api, &settings)
        .decide()
        .await
        .at_most(settings.level);
    reporter::log_policy(&policy);
    match policy.source {
        Source::Consent => tracing::info!(
            consent = %settings.consent_configmap,
            resource_version = policy.consent_version.as_deref().unwrap_or(""),
            "a consent is in force: at most the fields it approves at level {} are sent",
            policy.level
        ),
        Source::InvalidConsent => {
            tracing::warn!(consent = %settings.consent_configmap, "the consent in force is invalid: nothing is sent")
        }
        Source::Environment | Source::DoNotTrack => {}
    }
    if policy.level == Level::Off {
        return Ok(ExitCode::SUCCESS);
    }

    let (endpoints, publisher) = match publish {
        Some(publish) => (publish.endpoints, Publisher::new(publish.policy)?),
        None => (Vec::new(), Publisher::new(PublishPolicy::default())?),
    };
    let reporter = Reporter {
        settings: &settings,
        publisher: &publisher,
        endpoints: &endpoints,
        interval: None,
        person: Some(CONNECT_TIMEOUT),
    };
    let spinner = Spinner::start(&format!(
        "collecting from the scheduler at {}{}",
        settings.plan.scheduler.address(),
        if settings.plan.kube.is_some() {
            " and Kubernetes"
        } else {
            ""
        }
    ));
    let report = reporter::cycle(&reporter, policy, None, args.publish).await;
    drop(spinner);
    let Some(snapshot) = &report.snapshot else {
        return Ok(ExitCode::SUCCESS);
    };
    // Said after collecting: the forward's pod is known once it opened.
    let scheduler = settings.scheduler_description();
    tracing::info!(
        metrics_level = %report.policy.level,
        %scheduler,
        unknown = %report.unknown.join(","),
        "collected"
    );

    // One event: what is printed is exactly what was published.
    let text = match (output, &report.event) {
        // The table's values are sanitised row by row (report::table); the description line
        // holds the scheduler's own words.
        (OutputFormat::Table, _) => format!(
            "scheduler {}\n\n{}",
            crate::sanitize::text(&scheduler),
            report::table(snapshot, report.policy.level)
        ),
        (OutputFormat::Json, Some(event)) => format!("{}\n", event.json),
        (OutputFormat::Yaml, Some(event)) => {
            json_to_yaml(&event.json).map_err(anyhow::Error::msg)?
        }
        (_, None) => String::new(),
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    drop(stdout);

    // A port-forward that could not be opened is a failed source: say what was refused and the
    // way around it, once, and exit 1 (the event printed is what could be built without it).
    let forward_failed = forward_failure(&settings);
    if let Some(message) = &forward_failed {
        eprintln!(
            "hodometer: the scheduler could not be reached: {}",
            crate::sanitize::text(message)
        );
    }
    let mut failed = false;
    for problem in &report.problems {
        failed |= problem.unreachable;
        let fix = problem
            .fix
            .as_deref()
            .map(|fix| format!("\n  fix: {fix}"))
            .unwrap_or_default();
        // The reasons quote servers and files: through the one sanitiser.
        let reason = crate::sanitize::text(&problem.reason);
        if problem.unreachable {
            eprintln!("hodometer: {}: {reason}{fix}", problem.source);
        } else {
            eprintln!(
                "hodometer: note: {}: {reason} (the metric stays unknown; the exit code is unaffected)",
                problem.source
            );
        }
    }
    match &report.sent {
        Sent::Outcomes(outcomes) => {
            for outcome in outcomes {
                eprintln!(
                    "published: {} {}",
                    outcome.endpoint,
                    crate::sanitize::text(&outcome.detail())
                );
            }
        }
        Sent::Nothing(why) if args.publish => eprintln!("nothing published: {why}"),
        _ => {}
    }
    Ok(if report.all_ok() && !failed && forward_failed.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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

/// A spinner on stderr while a person waits, only when stderr is a terminal (never in a pipe or
/// a log); cleared when dropped.
struct Spinner(Option<indicatif::ProgressBar>);

impl Spinner {
    fn start(message: &str) -> Spinner {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return Spinner(None);
        }
        let bar =
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        bar.set_style(indicatif::ProgressStyle::default_spinner());
        bar.set_message(message.to_string());
        bar.enable_steady_tick(Duration::from_millis(100));
        Spinner(Some(bar))
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
