//! `hodometer history`: what the in-cluster reporter sent and who allowed it, read from the
//! ledger ConfigMap (SPEC 16): list, `show`, `diff`, `verify`, `export`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::consent::cluster::ConsentApi;
use crate::consent::{ReporterStatus, STATUS_CONFIGMAP};
use crate::k8s::KubeTarget;
use crate::ledger::cluster::LedgerApi;
use crate::ledger::{self, Entry, LEDGER_CONFIGMAP, Listed, Pin, Record, printable};
use crate::logging::{self, LogSettings};
use crate::validate::{Checker, parse_duration, parse_namespace};

#[derive(Debug, Args)]
#[command(
    after_help = "The ledger is hodometer-ledger in the Seldon namespace. Each entry holds the SHA-256 of the one before: `verify` finds an edited or removed entry; a writer who rewrites the whole chain (and the status) is caught only against a head recorded earlier (`verify --head`, the daemon logs and the status carry it). approvedBy is what the consent claims: the Kubernetes audit log says who wrote it."
)]
pub struct HistoryArgs {
    #[command(subcommand)]
    pub action: Option<HistoryAction>,
    #[command(flatten)]
    pub cluster: HistoryCluster,
    /// Output format: table, json or yaml (full entries, the exact event bytes as a string).
    #[arg(short = 'o', long, global = true, default_value = "table")]
    pub output: String,
}

#[derive(Debug, Subcommand)]
pub enum HistoryAction {
    /// The exact bytes of entry N's event (pretty unless --raw); a consent change as a whole.
    Show {
        /// The entry's number (the SEQ column).
        seq: u64,
        /// The bytes exactly as sent, with no newline added.
        #[arg(long)]
        raw: bool,
    },
    /// The fields added, removed and changed from send A's event to send B's.
    Diff { a: u64, b: u64 },
    /// Check the chain and every event's hash; exit 1 naming the first broken entry.
    Verify {
        /// A head recorded earlier (the status's historyHead, a daemon log line): it must still
        /// be in the chain.
        #[arg(long, value_name = "HASH")]
        head: Option<String>,
    },
    /// Every stored entry exactly as stored, one JSON object per line, oldest first (the
    /// checkpoint first, if any): the SHA-256 of each line is the next line's `prev`.
    Export,
}

/// Which cluster and namespace, as kubectl names them.
#[derive(Debug, Args)]
pub struct HistoryCluster {
    /// Kubeconfig file [default: KUBECONFIG, else ~/.kube/config].
    #[arg(long, value_name = "FILE", global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use instead of the current one.
    #[arg(long = "context", visible_alias = "kube-context", global = true)]
    pub context: Option<String>,
    /// Seldon namespace [default: the kubeconfig context's, else seldon-mesh].
    #[arg(short = 'n', long, env = "POD_NAMESPACE", global = true)]
    pub namespace: Option<String>,
    /// Deadline for each Kubernetes request (e.g. 30s).
    #[arg(long, default_value = "30s", global = true)]
    pub timeout: String,
}

impl HistoryCluster {
    fn check(&self, c: &mut Checker) -> Option<KubeTarget> {
        let namespace = c.check_opt(
            "--namespace (POD_NAMESPACE)",
            self.namespace.as_deref(),
            parse_namespace,
        );
        let timeout = c.check("--timeout", &self.timeout, parse_duration);
        Some(KubeTarget {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            namespace: namespace?,
            timeout: timeout?,
            inline: None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    Table,
    Json,
    Yaml,
}

fn parse_output(text: &str) -> Result<Output, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "table" | "text" => Ok(Output::Table),
        "json" => Ok(Output::Json),
        "yaml" => Ok(Output::Yaml),
        _ => Err("expected one of: table, json, yaml".into()),
    }
}

pub async fn run(args: HistoryArgs) -> anyhow::Result<ExitCode> {
    logging::init(&LogSettings::INFO);
    let mut c = Checker::default();
    let target = args.cluster.check(&mut c);
    let output = c.check("--output", &args.output, parse_output);
    let (target, output) = c.finish_with(|| Some((target?, output?)))?;
    let api = LedgerApi::connect(&target)
        .await
        .map_err(|reason| anyhow::anyhow!("cannot reach Kubernetes: {reason}"))?;
    let data = read_ledger(&api).await?;
    match args.action {
        None => print_list(&api, &data, output),
        Some(HistoryAction::Show { seq, raw }) => show(&data, seq, raw, output),
        Some(HistoryAction::Diff { a, b }) => diff(&data, a, b, output),
        Some(HistoryAction::Verify { head }) => verify(&target, &data, head.as_deref()).await,
        Some(HistoryAction::Export) => export(&data),
    }
}

async fn read_ledger(api: &LedgerApi) -> anyhow::Result<BTreeMap<String, String>> {
    match api.read().await? {
        Some(cm) => Ok(cm.data.unwrap_or_default()),
        None => anyhow::bail!(
            "configmaps {LEDGER_CONFIGMAP} does not exist in namespace {}: the manifests that create it (assets/k8s/) have not been applied, so no history is kept",
            api.namespace
        ),
    }
}

/// An entry as `-o json|yaml` shows it: number, key and hash, then the entry's own fields.
fn entry_json(listed: &Listed) -> Value {
    let mut object = json!({"seq": listed.seq, "key": listed.key, "hash": listed.hash});
    match &listed.entry {
        Ok(entry) => {
            if let (Value::Object(out), Ok(Value::Object(fields))) =
                (&mut object, serde_json::to_value(entry))
            {
                out.extend(fields.into_iter().filter(|(k, _)| k != "seq"));
            }
        }
        Err(error) => object["unreadable"] = json!(error),
    }
    object
}

fn print_list(
    api: &LedgerApi,
    data: &BTreeMap<String, String>,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let (checkpoint, entries) = ledger::list(data);
    let head = entries
        .last()
        .map(|e| e.hash.clone())
        .or_else(|| checkpoint.as_ref().map(|c| c.hash.clone()))
        .unwrap_or_else(|| ledger::GENESIS.to_string());
    let document = || {
        json!({
            "namespace": api.namespace,
            "head": head,
            "checkpoint": checkpoint,
            "entries": entries.iter().map(entry_json).collect::<Vec<_>>(),
        })
    };
    match output {
        Output::Json => println!("{}", people_json(&document())),
        Output::Yaml => print!("{}", people_yaml(&document())?),
        Output::Table => print!("{}", table(&checkpoint, &entries, &head)),
    }
    Ok(ExitCode::SUCCESS)
}

fn table(checkpoint: &Option<ledger::Checkpoint>, entries: &[Listed], head: &str) -> String {
    let mut rows = vec![
        [
            "SEQ",
            "WHEN",
            "KIND",
            "LEVEL",
            "BYTES",
            "ENDPOINTS",
            "CONSENT",
            "APPROVED BY",
        ]
        .map(String::from),
    ];
    for listed in entries {
        let seq = listed.seq.to_string();
        let row = match &listed.entry {
            Err(error) => [
                seq,
                String::new(),
                "unreadable".into(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                printable(error),
            ],
            Ok(Entry { at, record, .. }) => match record {
                Record::Send(send) => {
                    let failed = send.outcomes.len() - send.accepted();
                    let endpoints = match &send.cancelled {
                        Some(_) => "cancelled".to_string(),
                        None => format!("{} ok / {failed} failed", send.accepted()),
                    };
                    [
                        seq,
                        at.clone(),
                        "send".into(),
                        send.level.clone(),
                        send.event.len().to_string(),
                        endpoints,
                        send.consent_version.clone().unwrap_or_else(|| "-".into()),
                        printable(send.approved_by.as_deref().unwrap_or("-")),
                    ]
                }
                Record::Consent(consent) => {
                    let mut level = consent.level.clone().unwrap_or_else(|| "-".into());
                    if !consent.added.is_empty() || !consent.removed.is_empty() {
                        level.push_str(&format!(
                            " (+{} -{})",
                            consent.added.len(),
                            consent.removed.len()
                        ));
                    }
                    [
                        seq,
                        at.clone(),
                        format!("consent {}", consent.change.as_str()),
                        level,
                        String::new(),
                        String::new(),
                        consent.version.clone().unwrap_or_else(|| "-".into()),
                        printable(consent.approved_by.as_deref().unwrap_or("-")),
                    ]
                }
            },
        };
        rows.push(row);
    }
    let mut widths = [0usize; 8];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    if let Some(checkpoint) = checkpoint {
        text.push_str(&format!(
            "{} older entries dropped (checkpoint at {}, chain resumes from {})\n",
            checkpoint.dropped, checkpoint.at, checkpoint.hash
        ));
    }
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    if entries.is_empty() {
        text.push_str("(no entries yet)\n");
    }
    text.push_str(&format!("head {head}\n"));
    text
}

fn find(data: &BTreeMap<String, String>, seq: u64) -> anyhow::Result<(Listed, Entry)> {
    let (_, entries) = ledger::list(data);
    let Some(listed) = entries.into_iter().find(|e| e.seq == seq) else {
        anyhow::bail!("no entry {seq} in {LEDGER_CONFIGMAP} (dropped, or not written yet)");
    };
    match listed.entry.clone() {
        Ok(entry) => Ok((listed, entry)),
        Err(error) => anyhow::bail!("entry {seq} is not a ledger entry: {error}"),
    }
}

fn show(
    data: &BTreeMap<String, String>,
    seq: u64,
    raw: bool,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let (listed, entry) = find(data, seq)?;
    match (output, &entry.record) {
        (Output::Json, _) => println!("{}", people_json(&entry_json(&listed))),
        (Output::Yaml, _) => print!("{}", people_yaml(&entry_json(&listed))?),
        (Output::Table, Record::Send(send)) if raw => {
            let mut out = std::io::stdout().lock();
            out.write_all(send.event.as_bytes())?;
            out.flush()?;
        }
        (Output::Table, Record::Send(send)) => {
            let pretty = serde_json::from_str::<Value>(&send.event)
                .map(|v| format!("{v:#}"))
                .unwrap_or_else(|_| send.event.clone());
            println!("{}", printable_lines(&pretty));
            println!(
                "# entry {seq}: {} bytes, sha256 {}, level {}, sent {}",
                send.event.len(),
                send.sha256,
                send.level,
                entry.at
            );
        }
        (Output::Table, Record::Consent(_)) => {
            println!("{}", printable_lines(&format!("{:#}", entry_json(&listed))));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// As [`printable`], keeping the line breaks of pretty JSON.
/// JSON for a person's terminal: the ledger's text came from a ConfigMap anyone with `edit` may
/// write, and serde_json leaves DEL, C1, bidi and zero-width characters raw.
fn people_json(value: &serde_json::Value) -> String {
    crate::payload::ascii_json(&format!("{value:#}"))
}

/// YAML for a person's terminal, through the one sanitiser (`output::value_to_yaml`).
fn people_yaml(value: &serde_json::Value) -> anyhow::Result<String> {
    crate::output::value_to_yaml(value).map_err(anyhow::Error::msg)
}

fn printable_lines(text: &str) -> String {
    text.lines().map(printable).collect::<Vec<_>>().join("\n")
}

fn diff(
    data: &BTreeMap<String, String>,
    a: u64,
    b: u64,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let event = |seq| -> anyhow::Result<String> {
        match find(data, seq)?.1.record {
            Record::Send(send) => Ok(send.event),
            Record::Consent(_) => anyhow::bail!("entry {seq} is a consent change, not a send"),
        }
    };
    let diff = ledger::diff_events(&event(a)?, &event(b)?);
    match output {
        Output::Json => println!("{}", people_json(&serde_json::to_value(&diff)?)),
        Output::Yaml => print!("{}", people_yaml(&serde_json::to_value(&diff)?)?),
        Output::Table => {
            if diff.is_empty() {
                println!("entries {a} and {b} send the same fields and values");
            }
            for (name, value) in &diff.added {
                println!("+ {} {}", printable(name), printable(&value.to_string()));
            }
            for (name, value) in &diff.removed {
                println!("- {} {}", printable(name), printable(&value.to_string()));
            }
            for (name, [before, after]) in &diff.changed {
                println!(
                    "~ {} {} -> {}",
                    printable(name),
                    printable(&before.to_string()),
                    printable(&after.to_string())
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn verify(
    target: &KubeTarget,
    data: &BTreeMap<String, String>,
    head: Option<&str>,
) -> anyhow::Result<ExitCode> {
    // The head the reporter last wrote to its status is a pin too, when it can be read.
    let status_head = match ConsentApi::connect(target, crate::consent::DEFAULT_CONSENT_CONFIGMAP)
        .await
    {
        Ok(consent) => match consent.read_status().await {
            Ok(Some(cm)) => ReporterStatus::from_data(&cm.data.unwrap_or_default()).history_head,
            Ok(None) => None,
            Err(error) => {
                eprintln!("hodometer: not checked against the status's head: {error}");
                None
            }
        },
        Err(_) => None,
    };
    let status_label = format!("the head in {STATUS_CONFIGMAP}");
    let mut pins = Vec::new();
    if let Some(hash) = head {
        pins.push(Pin {
            label: "--head",
            hash,
        });
    }
    if let Some(hash) = &status_head {
        pins.push(Pin {
            label: &status_label,
            hash,
        });
    }
    let report = ledger::verify(data, &pins);
    let checked: Vec<&str> = pins.iter().map(|p| p.label).collect();
    match &report.broken {
        None => {
            println!(
                "history verified: {} entries in {LEDGER_CONFIGMAP} ({} dropped before the checkpoint), head {}",
                report.entries, report.dropped, report.head
            );
            if !checked.is_empty() {
                println!("the chain holds {}", checked.join(" and "));
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(broken) => {
            eprintln!(
                "hodometer: history broken: {}",
                printable(&broken.to_string())
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

fn export(data: &BTreeMap<String, String>) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    if let Some(checkpoint) = data.get(ledger::CHECKPOINT_KEY) {
        writeln!(out, "{checkpoint}")?;
    }
    for (key, value) in data {
        if ledger::entry_seq(key).is_some() {
            // Stored values are compact JSON: one line each, exactly the hashed bytes.
            writeln!(out, "{value}")?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
