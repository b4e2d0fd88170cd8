//! `hodometer consent`: show and approve what the in-cluster reporter shares, through
//! the consent ConfigMap, with optimistic concurrency.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Args, Subcommand};
use k8s_openapi::api::core::v1::ConfigMap;

use crate::config::ConsentNameArg;
use crate::consent::cluster::{ClusterError, ConsentApi};
use crate::consent::{self, Consent, KEY_LEVEL, ReporterStatus, STATUS_CONFIGMAP};
use crate::k8s::args::KubeArgs;
use crate::k8s::{DEFAULT_NAMESPACE, KubeTarget, kubeconfig_user};
use crate::logging::{self, LogSettings};
use crate::metrics::Level;
use crate::output::{self, DryRunArgs, OutputArgs, OutputFormat};
use crate::validate::{Checker, parse_level};

#[derive(Debug, Args)]
pub struct ConsentArgs {
    #[command(subcommand)]
    pub action: ConsentAction,
}

#[derive(Debug, Subcommand)]
pub enum ConsentAction {
    /// Show the consent (level, fields, who approved it and when) and the reporter's status
    /// (effective level and source, pending fields, last send, next send).
    Show(ShowArgs),
    /// Approve a level for the in-cluster reporter: every metric at or below it, listed by name.
    Set(SetArgs),
}

/// Which cluster, namespace and ConfigMap.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub k8s: KubeArgs,
    #[command(flatten)]
    pub consent: ConsentNameArg,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Output: table (the default) for people; json and yaml give the two ConfigMaps' data and resourceVersion."
)]
pub struct ShowArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Output, with --dry-run: yaml (the default) or json, the ConfigMap manifest, e.g. `hodometer consent set --level resource --dry-run -o yaml | kubectl apply -f -`. Without --yes, set asks on the terminal; with no terminal it exits 2."
)]
pub struct SetArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Level to approve: off, cluster, resource or feature.
    #[arg(long)]
    pub level: String,
    /// Also approve this field (repeatable), e.g. an extension: ext.team.
    #[arg(long = "field", value_name = "NAME")]
    pub fields: Vec<String>,
    /// A note kept with the approval (why, ticket, ...).
    #[arg(long)]
    pub note: Option<String>,
    /// Write without asking for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Write only if the consent is still at this resourceVersion (as `consent show` printed).
    #[arg(long, value_name = "VERSION")]
    pub if_version: Option<String>,
    /// With --dry-run: the ConfigMap manifest (for GitOps, or `| kubectl apply -f -`).
    #[command(flatten)]
    pub dry_run: DryRunArgs,
    /// With --dry-run: yaml (the default) or json.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// What every consent command needs, validated.
struct Cluster {
    target: KubeTarget,
    consent_name: String,
}

impl ClusterArgs {
    fn check(&self, c: &mut Checker) -> Option<Cluster> {
        let k8s = self.k8s.check(c);
        let name = self.consent.check(c);
        Some(Cluster {
            target: k8s?,
            consent_name: name?,
        })
    }
}

pub async fn run(args: ConsentArgs) -> anyhow::Result<ExitCode> {
    logging::init(&LogSettings::INFO);
    match args.action {
        ConsentAction::Show(show) => run_show(show).await,
        ConsentAction::Set(set) => run_set(set).await,
    }
}

async fn connect(cluster: &Cluster) -> anyhow::Result<ConsentApi> {
    ConsentApi::connect(&cluster.target, &cluster.consent_name)
        .await
        .map_err(anyhow::Error::msg)
}

async fn run_show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let mut c = Checker::default();
    let cluster = args.cluster.check(&mut c);
    let output = args.output.check(
        &mut c,
        &[OutputFormat::Table, OutputFormat::Json, OutputFormat::Yaml],
        OutputFormat::Table,
    );
    let (cluster, output) = c.finish_with(|| Some((cluster?, output?)))?;
    let api = connect(&cluster).await?;
    let (consent, status) = tokio::join!(api.read_consent(), api.read_status());
    // No answer at all: said once, not once per ConfigMap.
    if let (Err(ClusterError::Unreachable(reason)), Err(ClusterError::Unreachable(_))) =
        (&consent, &status)
    {
        anyhow::bail!("{reason}");
    }
    // The status is read through its type, as the inspector reads it.
    let status: Result<Option<(ReporterStatus, Option<String>)>, ClusterError> =
        status.map(|found| {
            found.map(|cm| {
                (
                    ReporterStatus::from_data(&cm.data.unwrap_or_default()),
                    cm.metadata.resource_version,
                )
            })
        });
    if output != OutputFormat::Table {
        let consent_json = match &consent {
            Ok(Some(cm)) => serde_json::json!({
                "resourceVersion": cm.metadata.resource_version,
                "data": cm.data.clone().unwrap_or_default(),
            }),
            Ok(None) => serde_json::Value::Null,
            Err(error) => serde_json::json!({"error": error.to_string()}),
        };
        let status_json = match &status {
            Ok(Some((typed, version))) => serde_json::json!({
                "resourceVersion": version,
                "reported": typed.reported(),
                "data": typed.to_data(),
            }),
            Ok(None) => serde_json::Value::Null,
            Err(error) => serde_json::json!({"error": error.to_string()}),
        };
        let json = serde_json::json!({
            "namespace": api.namespace,
            "consent": consent_json,
            "status": status_json,
        });
        if output == OutputFormat::Yaml {
            print!(
                "{}",
                output::value_to_yaml(&json).map_err(anyhow::Error::msg)?
            );
        } else {
            // serde_json leaves DEL, C1, bidi and zero-width characters raw: escaped for people.
            println!("{}", crate::payload::ascii_json(&format!("{json:#}")));
        }
    } else {
        print!("{}", show_text(&api, &consent, &status));
    }
    let failed = consent.is_err() || status.is_err();
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn show_text(
    api: &ConsentApi,
    consent: &Result<Option<ConfigMap>, ClusterError>,
    status: &Result<Option<(ReporterStatus, Option<String>)>, ClusterError>,
) -> String {
    let mut text = format!(
        "consent  configmaps {} in {}\n",
        api.consent_name, api.namespace
    );
    // Values come from ConfigMaps and the API server: through the one sanitiser.
    let line = |text: &mut String, key: &str, value: &str| {
        text.push_str(&format!("  {key:<16} {}\n", crate::sanitize::text(value)));
    };
    match consent {
        Err(error) => line(&mut text, "error", &error.to_string()),
        Ok(None) => line(
            &mut text,
            "missing",
            "no consent ConfigMap: METRICS_LEVEL rules (apply assets/k8s/ or run `hodometer consent set`)",
        ),
        Ok(Some(cm)) => {
            let data = cm.data.clone().unwrap_or_default();
            let version = cm.metadata.resource_version.as_deref().unwrap_or("");
            line(&mut text, "resourceVersion", version);
            match consent::parse(&data) {
                consent::ConsentReading::Unset => {
                    line(&mut text, "level", "(empty: METRICS_LEVEL rules)")
                }
                consent::ConsentReading::Invalid(reason) => {
                    line(&mut text, "invalid", &format!("nothing is sent: {reason}"))
                }
                consent::ConsentReading::Given(given) => {
                    line(&mut text, "level", given.level.as_str());
                    let at = given
                        .approved_at
                        .map(|at| humantime::format_rfc3339_seconds(at).to_string())
                        .unwrap_or_else(|| "?".into());
                    let by = given.approved_by.as_deref().unwrap_or("?");
                    line(&mut text, "approved", &format!("by {by} at {at}"));
                    if let Some(note) = &given.note {
                        line(&mut text, "note", note);
                    }
                    let fields: Vec<&str> = given.fields.iter().map(String::as_str).collect();
                    line(
                        &mut text,
                        "fields",
                        &format!("{} ({})", fields.len(), fields.join(", ")),
                    );
                }
            }
        }
    }
    text.push_str(&format!("reporter configmaps {STATUS_CONFIGMAP}\n"));
    match status {
        Err(error) => line(&mut text, "error", &error.to_string()),
        Ok(None) => line(&mut text, "missing", "not deployed (no status ConfigMap)"),
        Ok(Some((typed, _))) => {
            for (key, value) in typed.describe() {
                line(&mut text, key, &value);
            }
        }
    }
    text
}

async fn run_set(args: SetArgs) -> anyhow::Result<ExitCode> {
    let mut c = Checker::default();
    let cluster = args.cluster.check(&mut c);
    let level = c.check("--level", &args.level, parse_level);
    // The names the reporter would refuse are refused here (exit 2), each one named.
    let extra = c.check("--field", &args.fields.join(","), consent::parse_fields);
    let output = args.output.check(
        &mut c,
        &[OutputFormat::Yaml, OutputFormat::Json],
        OutputFormat::Yaml,
    );
    if args.output.output.is_some() && !args.dry_run.is_dry_run() {
        c.check("--output", "", |_| {
            Err::<(), _>("prints the manifest, so it goes with --dry-run".to_string())
        });
    }
    let note = c.check_opt("--note", args.note.as_deref(), |note| {
        if note.len() > 1024 {
            Err("at most 1024 bytes".to_string())
        } else {
            Ok(note.to_string())
        }
    });
    let (cluster, level, extra, note, output) =
        c.finish_with(|| Some((cluster?, level?, extra?, note?, output?)))?;
    let mut fields = consent::metric_fields_at(level);
    fields.extend(extra);
    let mut approval = Consent {
        level,
        fields,
        approved_by: None,
        approved_at: Some(SystemTime::now()),
        note,
    };

    if args.dry_run.is_dry_run() {
        // No cluster needed: the approver is the kubeconfig user, if any.
        let namespace = match ConsentApi::connect(&cluster.target, &cluster.consent_name).await {
            Ok(api) => api.namespace,
            Err(_) => cluster
                .target
                .namespace
                .clone()
                .unwrap_or_else(|| DEFAULT_NAMESPACE.into()),
        };
        approval.approved_by = kubeconfig_user(&cluster.target);
        let data = consent::consent_data(&approval);
        let manifest = consent::manifest_yaml(&cluster.consent_name, &namespace, &data);
        if output == OutputFormat::Json {
            let object: serde_json::Value = serde_saphyr::from_str(&manifest)?;
            println!("{object:#}");
        } else {
            print!("{manifest}");
        }
        return Ok(ExitCode::SUCCESS);
    }

    // Asking needs a terminal: without one, and without --yes, this is a usage error, said
    // before anything is read.
    if !args.yes && !std::io::stdin().is_terminal() {
        return Err(super::UsageError(
            "no terminal to ask on: add --yes to write the consent without being asked".into(),
        )
        .into());
    }
    let api = connect(&cluster).await?;
    approval.approved_by = api.approver(&cluster.target).await;
    if !args.yes && !confirm(&api, &approval)? {
        eprintln!("hodometer: nothing written");
        return Ok(ExitCode::FAILURE);
    }
    let data = consent::consent_data(&approval);
    let seen = match (&args.if_version, api.read_consent().await?) {
        (Some(version), _) => Some(version.clone()),
        (None, current) => current.and_then(|cm| cm.metadata.resource_version),
    };
    let written = api.write_consent(data, seen.as_deref()).await?;
    let version = written.metadata.resource_version.unwrap_or_default();
    println!(
        "consent written: configmaps {} in {}: level {}, {} fields, approved by {} (resourceVersion {version})",
        api.consent_name,
        api.namespace,
        approval.level,
        approval.fields.len(),
        crate::sanitize::text(approval.approved_by.as_deref().unwrap_or("?")),
    );
    if approval.level == Level::Off {
        println!("the in-cluster reporter stops sending at once");
    }
    Ok(ExitCode::SUCCESS)
}

/// Shows what will be written and asks on the terminal.
fn confirm(api: &ConsentApi, approval: &Consent) -> anyhow::Result<bool> {
    let fields: Vec<&str> = approval.fields.iter().map(String::as_str).collect();
    let mut out = std::io::stdout().lock();
    write!(
        out,
        "approve for the in-cluster reporter in {}:\n  {KEY_LEVEL}: {}\n  fields: {}\n  approved by: {}\nwrite configmaps {}? [y/N] ",
        api.namespace,
        approval.level,
        fields.join(", "),
        crate::sanitize::text(approval.approved_by.as_deref().unwrap_or("?")),
        api.consent_name,
    )?;
    out.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
