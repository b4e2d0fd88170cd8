//! The one reporter cycle: collect → policy → event → publish → status. The daemon (governed by a
//! consent or not), `collect --publish` and the demo's in-process reporter all run [`cycle`];
//! what a cycle may send is decided once, before it, by [`Governance::decide`]
//! (`policy::decide`), and nothing looks at the event again after it is built — only a newer
//! policy that no longer covers it stops it while it is being retried.

use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use uuid::Uuid;

use crate::collect;
use crate::config::Settings;
use crate::consent::ReporterStatus;
use crate::consent::cluster::ConsentApi;
use crate::metrics::{Level, Snapshot};
use crate::payload::{Event, build_event};
use crate::policy::{self, ConsentRead, Earlier, Policy, Source};
use crate::publish::{Endpoint, EndpointOutcome, Publisher, describe_outcomes};

/// What decides a run's policies: the settings, the consent ConfigMap (when there is a
/// Kubernetes API to read it from) and the last consent read, which stands through an outage.
pub struct Governance {
    api: Option<ConsentApi>,
    do_not_track: bool,
    env_level: Level,
    earlier: Earlier,
}

impl Governance {
    pub fn new(api: Option<ConsentApi>, settings: &Settings) -> Governance {
        Governance {
            api,
            do_not_track: settings.do_not_track,
            env_level: settings.level,
            earlier: Earlier::default(),
        }
    }

    /// The consent API, when a consent may govern this run.
    pub fn consent_api(&self) -> Option<&ConsentApi> {
        self.api
            .as_ref()
            .filter(|_| policy::consent_matters(self.do_not_track))
    }

    /// Reads the consent (when one may govern) and decides this cycle's policy.
    pub async fn decide(&mut self) -> Policy {
        let read = match self.consent_api() {
            Some(api) => api.read_consent_policy().await,
            None => ConsentRead::NotGoverned,
        };
        let decided = policy::decide(self.do_not_track, self.env_level, &read, &self.earlier);
        if let ConsentRead::Found(found) = &read {
            self.earlier.remember(found);
        }
        decided
    }
}

/// Where and how a cycle sends, and how it describes itself in the status.
pub struct Reporter<'a> {
    pub settings: &'a Settings,
    pub publisher: &'a Publisher,
    pub endpoints: &'a [Endpoint],
    /// The time between cycles, for the status (`None`: a one-off cycle).
    pub interval: Option<Duration>,
    /// A person waits (`collect`): the sources fail fast, with this connect timeout, and the
    /// report says what went wrong with each (see [`collect::SourceProblem`]). `None`: the
    /// daemon's patient policy.
    pub person: Option<Duration>,
}

/// What became of the cycle's event.
#[derive(Debug)]
pub enum Sent {
    /// Nothing was sent: why.
    Nothing(String),
    /// Built, not published (`collect` without `--publish`).
    Held,
    Outcomes(Vec<EndpointOutcome>),
    /// Dropped while being retried: the policy it no longer fits.
    Dropped(Policy),
}

/// One cycle, as it went.
#[derive(Debug)]
pub struct Report {
    pub policy: Policy,
    pub snapshot: Option<Snapshot>,
    /// Shared metrics that could not be determined.
    pub unknown: Vec<&'static str>,
    pub event: Option<Event>,
    pub sent: Sent,
    /// The status this cycle leaves (the daemon writes it; add `next_send_at`).
    pub status: ReporterStatus,
    /// With [`Reporter::person`]: sources that could not be read as a whole, refused reads.
    pub problems: Vec<collect::SourceProblem>,
}

impl Report {
    /// Every endpoint accepted the event, or there was nothing to send.
    pub fn all_ok(&self) -> bool {
        match &self.sent {
            Sent::Nothing(_) | Sent::Held => true,
            Sent::Outcomes(outcomes) => outcomes.iter().all(EndpointOutcome::is_ok),
            Sent::Dropped(_) => false,
        }
    }
}

/// Logs the policy when a run starts or it changes: the level and where it comes from, or why
/// nothing is collected.
pub fn log_policy(policy: &Policy) {
    let approved_by = policy.approved_by.as_deref().unwrap_or("");
    let approved_at = policy.approved_at.map(rfc3339).unwrap_or_default();
    let reason = policy.reason.as_deref().unwrap_or("");
    if let Some(warning) = &policy.warning {
        tracing::warn!(source = %policy.source, "{warning}");
    }
    if policy.level == Level::Off {
        let why = policy.reason.as_deref().unwrap_or("the level is off");
        if policy.source == Source::InvalidConsent {
            tracing::warn!(metrics_level = %policy.level, source = %policy.source, "{why}: nothing is collected and nothing is published");
        } else {
            tracing::info!(metrics_level = %policy.level, source = %policy.source, "{why}: nothing is collected and nothing is published");
        }
    } else {
        tracing::info!(metrics_level = %policy.level, source = %policy.source, consent = policy.consent_state, approved_by, approved_at, reason, "effective level");
    }
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// One cycle under `policy`. With `publish`, the event is sent to every endpoint; should
/// `follow` (the policy as it changes) stop covering it meanwhile, it is dropped at once.
pub async fn cycle(
    reporter: &Reporter<'_>,
    policy: Policy,
    follow: Option<watch::Receiver<Policy>>,
    publish: bool,
) -> Report {
    let mut status = ReporterStatus {
        schema: Some(crate::consent::status::SCHEMA),
        written_at: None,
        level: Some(policy.level),
        source: Some(policy.source),
        reason: policy.reason.clone(),
        warning: policy.warning.clone(),
        consent_state: Some(policy.consent_state.to_string()),
        consent_version: policy.consent_version.clone(),
        approved_by: policy.approved_by.clone(),
        endpoints: reporter
            .endpoints
            .iter()
            .map(|e| e.redacted().to_string())
            .collect(),
        interval: reporter
            .interval
            .map(|every| humantime::format_duration(every).to_string()),
        ..ReporterStatus::default()
    };
    // A Mutex, not a RefCell: the cycle's future crosses threads (the demo spawns it).
    let problems = std::sync::Mutex::new(Vec::new());
    let report = |policy, snapshot, unknown, event, sent, status| Report {
        policy,
        snapshot,
        unknown,
        event,
        sent,
        status,
        problems: std::mem::take(&mut *problems.lock().unwrap_or_else(|e| e.into_inner())),
    };
    if policy.level == Level::Off {
        let why = policy
            .reason
            .clone()
            .unwrap_or_else(|| "the level is off".into());
        tracing::debug!("{why}: nothing is collected and nothing is published");
        return report(policy, None, Vec::new(), None, Sent::Nothing(why), status);
    }

    let snapshot = match reporter.person {
        Some(connect_timeout) => {
            let (snapshot, found) = collect::Sources::new(reporter.settings.plan.clone())
                .for_person(connect_timeout)
                .collect_with_problems()
                .await;
            *problems.lock().unwrap_or_else(|e| e.into_inner()) = found;
            snapshot
        }
        None => collect::collect(&reporter.settings.plan).await,
    };
    crate::extensions::log_warnings(&snapshot.extensions);
    let unknown = snapshot.unknown_shared(policy.level);
    let candidates = policy::candidate_fields(&snapshot);
    status.last_collection_at = Some(snapshot.collected_at);
    status.shared = policy.shared_fields(&candidates).into_iter().collect();
    status.pending = policy.pending_fields(&candidates).into_iter().collect();
    let pending: Vec<&str> = status.pending.iter().map(String::as_str).collect();
    let pending = pending.join(",");

    let event = build_event(&snapshot, &policy, &reporter.settings.token, Uuid::new_v4());
    let Some(event) = event else {
        let why = policy
            .reason
            .clone()
            .unwrap_or_else(|| "no approved field is known: nothing is sent".into());
        tracing::info!(%pending, unknown = %unknown.join(","), "{why}");
        return report(
            policy,
            Some(snapshot),
            unknown,
            None,
            Sent::Nothing(why),
            status,
        );
    };
    if !publish {
        return report(
            policy,
            Some(snapshot),
            unknown,
            Some(event),
            Sent::Held,
            status,
        );
    }

    let publishing = reporter.publisher.publish(&event, reporter.endpoints);
    let outcomes = match follow {
        Some(mut follow) => tokio::select! {
            outcomes = publishing => Ok(outcomes),
            now = follow.wait_for(|p| !p.covers(event.level, &event.fields)) => {
                match now {
                    Ok(now) => Err(now.clone()),
                    // The policy's sender is gone: the run is ending; send nothing more.
                    Err(_) => Err(policy.at_most(Level::Off)),
                }
            }
        },
        None => Ok(publishing.await),
    };
    let outcomes = match outcomes {
        Ok(outcomes) => outcomes,
        Err(now) => {
            tracing::warn!(
                metrics_level = %now.level,
                source = %now.source,
                "event dropped while being published: it exceeds what is now approved"
            );
            status.last_outcomes = vec![format!(
                "dropped: consent changed to level {} ({}) while the event was being published",
                now.level, now.source
            )];
            return report(
                policy,
                Some(snapshot),
                unknown,
                Some(event),
                Sent::Dropped(now),
                status,
            );
        }
    };
    let all_ok = outcomes.iter().all(EndpointOutcome::is_ok);
    // One line per cycle: what was sent (by name, never values from model definitions) and how
    // each endpoint answered. The message itself says whether the event got out.
    tracing::info!(
        metrics_level = %policy.level,
        source = %policy.source,
        sent = %event.fields.join(","),
        %pending,
        unknown = %unknown.join(","),
        endpoints = %describe_outcomes(&outcomes),
        ok = all_ok,
        "{}",
        cycle_message(&outcomes)
    );
    status.last_event = Some(event.json.clone());
    status.last_outcomes = outcomes
        .iter()
        .map(|o| format!("{} {}", o.endpoint, o.detail()))
        .collect();
    report(
        policy,
        Some(snapshot),
        unknown,
        Some(event),
        Sent::Outcomes(outcomes),
        status,
    )
}

/// The per-cycle log message: published to every endpoint, to some, or to none.
fn cycle_message(outcomes: &[EndpointOutcome]) -> &'static str {
    let accepted = outcomes.iter().filter(|o| o.is_ok()).count();
    if accepted == outcomes.len() {
        "collected and published"
    } else if accepted > 0 {
        "collected and partly published"
    } else {
        "collected but not published"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(index: usize, ok: bool) -> EndpointOutcome {
        EndpointOutcome {
            index,
            endpoint: format!("http://e{index}"),
            result: if ok {
                Ok(())
            } else {
                Err(crate::publish::PublishError::Connect {
                    reason: "refused".into(),
                })
            },
            attempts: 1,
            latency: Duration::ZERO,
            last_status: None,
        }
    }

    #[test]
    fn the_cycle_message_says_whether_the_event_got_out() {
        let (good, bad) = (outcome(0, true), outcome(1, false));
        assert_eq!(
            cycle_message(&[good.clone(), good.clone()]),
            "collected and published"
        );
        assert_eq!(
            cycle_message(&[bad.clone(), good]),
            "collected and partly published"
        );
        assert_eq!(
            cycle_message(&[bad.clone(), bad]),
            "collected but not published"
        );
    }
}
