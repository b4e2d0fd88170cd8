//! The daemon under consent: each cycle shares only what the consent ConfigMap
//! approves, re-reading it as soon as a watch sees it change (and periodically, should the watch
//! be refused), so that a lowered level or `off` applies at once, even to an event still being
//! retried, and reports what it did in the status ConfigMap.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, watch};
use uuid::Uuid;

use crate::consent::cluster::ConsentApi;
use crate::consent::{self, ConsentReading, Policy, Source, status_key};
use crate::ledger::cluster::{Ledger, LedgerApi};
use crate::metrics::Level;
use crate::payload::build_event;
use crate::publish::{EndpointOutcome, Publisher, describe_outcomes};

use super::{DaemonConfig, DaemonExit, Shared, collect_and_record, cycle_message, jitter, lock};

/// How often consent is re-read whatever the watch says: well within the 30 s in which a lowered
/// level must apply.
const CONSENT_REFRESH: Duration = Duration::from_secs(10);
/// How long one watch of the consent runs before it is opened again (API servers end watches
/// after a few minutes anyway).
const CONSENT_WATCH_SECONDS: u32 = 290;

/// Runs collection cycles under consent until the end (or after one with `--once`).
pub(super) async fn work(
    config: &DaemonConfig,
    api: &ConsentApi,
    publisher: &Publisher,
    metrics: &Shared,
) -> DaemonExit {
    // History (#24): every send and consent change, appended to hodometer-ledger.
    let ledger = Ledger::new(
        LedgerApi::new(api.client().clone(), &api.namespace),
        config.ledger_budget,
    );
    let first = read_policy(config, api, None).await;
    ledger.observe_consent(&first).await;
    let (updates, mut policies) = watch::channel(first);
    // Reads consent and publishes it to the cycle and to a publish in flight.
    let refresh_policy = || async {
        let previous = updates.borrow().clone();
        let policy = read_policy(config, api, Some(&previous)).await;
        ledger.observe_consent(&policy).await;
        updates.send_if_modified(|current| {
            let changed = *current != policy;
            *current = policy;
            changed
        });
    };
    let refresh = config.interval.min(CONSENT_REFRESH);
    let changed = Notify::new();
    let poll = async {
        loop {
            tokio::select! {
                () = tokio::time::sleep(refresh) => {}
                () = changed.notified() => tracing::debug!("the consent changed: reading it now"),
            }
            refresh_policy().await;
        }
    };
    let watcher = async {
        // One cycle and out, or DO_NOT_TRACK (consent is never read): nothing to watch for.
        if !config.once && !config.settings.do_not_track {
            watch_consent(api, &updates.subscribe(), &changed, refresh).await;
        }
        std::future::pending::<()>().await
    };
    let cycles = async {
        let mut last: Option<Policy> = None;
        let mut first_cycle = true;
        loop {
            // Every cycle starts from the consent as it is now.
            if !std::mem::take(&mut first_cycle) {
                refresh_policy().await;
            }
            let policy = policies.borrow_and_update().clone();
            if last.as_ref() != Some(&policy) {
                log_policy(&policy);
            }
            let (all_ok, mut status) =
                cycle(config, publisher, metrics, &policy, &policies, &ledger).await;
            ledger.status_into(&mut status).await;
            last = Some(policy.clone());
            if config.once {
                write_status(api, &status).await;
                return if all_ok {
                    DaemonExit::Clean
                } else {
                    DaemonExit::PublishFailed
                };
            }
            let pause = config.interval + jitter(config.interval);
            status.insert(
                status_key::NEXT_SEND_AT.into(),
                rfc3339(SystemTime::now() + pause),
            );
            write_status(api, &status).await;
            config.rest();
            // A change in what is shared starts a cycle at once: the acknowledgement is visible,
            // and a raised level need not wait for the next interval.
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = policies.wait_for(|p| !p.same_sharing(&policy)) => {
                    tracing::debug!("consent changed: collecting now");
                }
            }
        }
    };
    tokio::select! {
        exit = cycles => exit,
        () = poll => DaemonExit::Clean,
        () = watcher => DaemonExit::Clean,
    }
}

/// Wakes `changed` as soon as the consent ConfigMap changes, through a watch from the version
/// last read. A Role from older manifests (or an API server) may refuse the watch: then the
/// periodic read every `refresh` is all there is, as before the watch.
async fn watch_consent(
    api: &ConsentApi,
    policies: &watch::Receiver<Policy>,
    changed: &Notify,
    refresh: Duration,
) {
    let last_read = || {
        policies
            .borrow()
            .consent_version
            .clone()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "0".into())
    };
    let mut since = last_read();
    loop {
        let opened = std::time::Instant::now();
        match api.next_consent_change(&since, CONSENT_WATCH_SECONDS).await {
            Ok(Some(version)) => {
                since = if version.is_empty() {
                    last_read()
                } else {
                    version
                };
                changed.notify_one();
            }
            // Its time ran out: open it again, but never in a tight loop.
            Ok(None) if opened.elapsed() >= refresh => {}
            Ok(None) => tokio::time::sleep(refresh).await,
            Err(error) => {
                tracing::debug!(%error, "cannot watch the consent; it is read every {refresh:?}");
                tokio::time::sleep(refresh).await;
                since = last_read();
            }
        }
    }
}

/// The policy now: DO_NOT_TRACK, else the consent ConfigMap, else `METRICS_LEVEL`. When consent
/// cannot be read, the last policy stands; with none yet, the environment rules, as before
/// consent existed (a Role from older manifests cannot read it).
async fn read_policy(config: &DaemonConfig, api: &ConsentApi, previous: Option<&Policy>) -> Policy {
    let settings = &config.settings;
    if settings.do_not_track {
        return consent::decide(&ConsentReading::Unset, settings.level, true);
    }
    match api.read_consent().await {
        Ok(found) => {
            let version = found
                .as_ref()
                .and_then(|cm| cm.metadata.resource_version.clone());
            let data = found.and_then(|cm| cm.data).unwrap_or_default();
            Policy {
                consent_version: version,
                ..consent::decide(&consent::parse(&data), settings.level, false)
            }
        }
        Err(error) => match previous {
            Some(previous) => {
                tracing::warn!(%error, "cannot re-read consent: the last consent read stands");
                previous.clone()
            }
            None => Policy::environment(
                settings.level,
                Some(format!("consent unreadable, METRICS_LEVEL rules: {error}")),
            ),
        },
    }
}

fn log_policy(policy: &Policy) {
    let approved_by = policy.approved_by.as_deref().unwrap_or("");
    let approved_at = policy.approved_at.map(rfc3339).unwrap_or_default();
    let reason = policy.reason.as_deref().unwrap_or("");
    if policy.source == Source::InvalidConsent {
        tracing::warn!(metrics_level = %policy.level, source = %policy.source, reason, "consent is invalid: nothing is collected and nothing is published");
    } else {
        tracing::info!(metrics_level = %policy.level, source = %policy.source, approved_by, approved_at, reason, "effective level");
    }
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// One cycle under `policy`: true when every endpoint accepted (or there was nothing to send),
/// and the status to report.
async fn cycle(
    config: &DaemonConfig,
    publisher: &Publisher,
    metrics: &Shared,
    policy: &Policy,
    policies: &watch::Receiver<Policy>,
    ledger: &Ledger,
) -> (bool, BTreeMap<String, String>) {
    let endpoints: Vec<String> = config
        .publish
        .endpoints
        .iter()
        .map(|e| e.redacted().to_string())
        .collect();
    let mut status: BTreeMap<String, String> = [
        (
            status_key::EFFECTIVE_LEVEL,
            policy.level.as_str().to_string(),
        ),
        (status_key::SOURCE, policy.source.as_str().to_string()),
        (
            status_key::REASON,
            policy.reason.clone().unwrap_or_default(),
        ),
        (
            status_key::CONSENT_VERSION,
            policy.consent_version.clone().unwrap_or_default(),
        ),
        (status_key::ENDPOINTS, endpoints.join("\n")),
        (
            status_key::INTERVAL,
            humantime::format_duration(config.interval).to_string(),
        ),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value))
    .collect();
    if policy.level == Level::Off {
        tracing::info!(source = %policy.source, "level off: nothing is collected and nothing is published");
        status.insert(status_key::PENDING_FIELDS.into(), String::new());
        status.insert(status_key::SHARED_FIELDS.into(), String::new());
        lock(metrics).ready = true;
        return (true, status);
    }
    let (snapshot, unknown) = collect_and_record(&config.settings, policy.level, metrics).await;
    status.insert(
        status_key::LAST_COLLECTION_AT.into(),
        rfc3339(snapshot.collected_at),
    );
    let candidates = consent::candidate_fields(&snapshot);
    let pending = consent::pending_fields(policy, &candidates);
    status.insert(status_key::PENDING_FIELDS.into(), pending.join("\n"));
    status.insert(
        status_key::SHARED_FIELDS.into(),
        consent::shared_fields(policy, &candidates).join("\n"),
    );
    let event = build_event(
        &snapshot,
        policy.level,
        &config.settings.token,
        Uuid::new_v4(),
    )
    .map(|event| consent::restrict(event, policy))
    .filter(|event| !event.fields.is_empty());
    let Some(event) = event else {
        tracing::info!(pending = %pending.join(","), "no approved field to send");
        lock(metrics).ready = true;
        return (true, status);
    };
    let mut watcher = policies.clone();
    let outcomes = tokio::select! {
        outcomes = publisher.publish(&event, &config.publish.endpoints) => Some(outcomes),
        _ = watcher.wait_for(|p| !p.permits(&event)) => None,
    };
    let Some(outcomes) = outcomes else {
        let now = watcher.borrow().clone();
        let why = format!("consent changed to level {} ({})", now.level, now.source);
        ledger.record_send(&event, &[], Some(why), policy).await;
        tracing::warn!(
            metrics_level = %now.level,
            source = %now.source,
            "event dropped while being published: it exceeds what is now approved"
        );
        status.insert(
            status_key::LAST_OUTCOMES.into(),
            format!(
                "dropped: consent changed to level {} ({}) while the event was being published",
                now.level, now.source
            ),
        );
        lock(metrics).ready = true;
        return (false, status);
    };
    let all_ok = outcomes.iter().all(EndpointOutcome::is_ok);
    {
        let mut m = lock(metrics);
        m.record_publish(&outcomes, SystemTime::now());
        m.ready = true;
    }
    let history = ledger.record_send(&event, &outcomes, None, policy).await;
    tracing::info!(
        metrics_level = %policy.level,
        source = %policy.source,
        history_head = history.head().unwrap_or(""),
        sent = %event.fields.join(","),
        pending = %pending.join(","),
        unknown = %unknown.join(","),
        endpoints = %describe_outcomes(&outcomes),
        ok = all_ok,
        "{}",
        cycle_message(&outcomes)
    );
    status.insert(status_key::LAST_EVENT.into(), event.json.clone());
    let lines: Vec<String> = outcomes
        .iter()
        .map(|o| format!("{} {}", o.endpoint, o.detail()))
        .collect();
    status.insert(status_key::LAST_OUTCOMES.into(), lines.join("\n"));
    (all_ok, status)
}

async fn write_status(api: &ConsentApi, status: &BTreeMap<String, String>) {
    if let Err(error) = api.patch_status(status).await {
        tracing::warn!(%error, "cannot write the status ConfigMap");
    }
}
