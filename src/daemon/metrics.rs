//! The daemon's own counters, rendered in the Prometheus text format for `/metrics`. Pure data:
//! the loop records, the HTTP handler renders.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::prometheus::{family, sample};
use crate::publish::{EndpointOutcome, OutcomeKind};

/// Upper bounds of the publish-latency histogram, in seconds: from a fast loopback receiver to
/// the publish deadline's scale.
const LATENCY_BUCKETS: [f64; 9] = [0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 120.0, 600.0];

/// How a collection went: every shared metric known, or some unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CollectionOutcome {
    Complete,
    Partial,
}

impl CollectionOutcome {
    fn as_str(self) -> &'static str {
        match self {
            CollectionOutcome::Complete => "complete",
            CollectionOutcome::Partial => "partial",
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct DaemonMetrics {
    collections: BTreeMap<CollectionOutcome, u64>,
    publishes: BTreeMap<OutcomeKind, u64>,
    /// When every endpoint last accepted an event.
    last_success: Option<SystemTime>,
    latency_buckets: [u64; LATENCY_BUCKETS.len()],
    latency_count: u64,
    latency_sum: f64,
    /// A cycle has finished (or there is nothing to do, at level off).
    pub ready: bool,
}

impl DaemonMetrics {
    pub fn record_collection(&mut self, outcome: CollectionOutcome) {
        *self.collections.entry(outcome).or_default() += 1;
    }

    /// Records one publish cycle: each endpoint's outcome, and a success when all accepted.
    pub fn record_publish(&mut self, outcomes: &[EndpointOutcome], at: SystemTime) {
        for outcome in outcomes {
            *self.publishes.entry(outcome.kind()).or_default() += 1;
            self.observe_latency(outcome.latency);
        }
        if !outcomes.is_empty() && outcomes.iter().all(EndpointOutcome::is_ok) {
            self.last_success = Some(at);
        }
    }

    fn observe_latency(&mut self, latency: Duration) {
        let seconds = latency.as_secs_f64();
        for (bucket, bound) in self.latency_buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.latency_count += 1;
        self.latency_sum += seconds;
    }

    /// The Prometheus text exposition of everything recorded.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let collections = "hodometer_collections_total";
        family(
            &mut out,
            collections,
            "counter",
            "Collections, by whether every shared metric was known.",
        );
        for outcome in [CollectionOutcome::Complete, CollectionOutcome::Partial] {
            let n = self.collections.get(&outcome).copied().unwrap_or(0);
            sample(
                &mut out,
                collections,
                &[("outcome", outcome.as_str())],
                n as f64,
            );
        }
        let publishes = "hodometer_publishes_total";
        family(
            &mut out,
            publishes,
            "counter",
            "Publishes to one endpoint, by outcome.",
        );
        for kind in OutcomeKind::ALL {
            let n = self.publishes.get(&kind).copied().unwrap_or(0);
            sample(&mut out, publishes, &[("outcome", kind.as_str())], n as f64);
        }
        let last_success = "hodometer_last_success_timestamp_seconds";
        family(
            &mut out,
            last_success,
            "gauge",
            "When every endpoint last accepted an event (0: never).",
        );
        let last = self
            .last_success
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0.0, |d| d.as_secs_f64());
        sample(&mut out, last_success, &[], last);
        let latency = "hodometer_publish_latency_seconds";
        family(
            &mut out,
            latency,
            "histogram",
            "Time to publish to one endpoint, retries included.",
        );
        let bucket = format!("{latency}_bucket");
        for (count, bound) in self.latency_buckets.iter().zip(LATENCY_BUCKETS) {
            sample(
                &mut out,
                &bucket,
                &[("le", &bound.to_string())],
                *count as f64,
            );
        }
        sample(
            &mut out,
            &bucket,
            &[("le", "+Inf")],
            self.latency_count as f64,
        );
        sample(&mut out, &format!("{latency}_sum"), &[], self.latency_sum);
        sample(
            &mut out,
            &format!("{latency}_count"),
            &[],
            self.latency_count as f64,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::PublishError;

    fn outcome(ok: bool, latency_ms: u64) -> EndpointOutcome {
        EndpointOutcome {
            index: 0,
            endpoint: "http://127.0.0.1:1".into(),
            result: if ok {
                Ok(())
            } else {
                Err(PublishError::Rejected {
                    error: "bad token".into(),
                })
            },
            attempts: 1,
            latency: Duration::from_millis(latency_ms),
            last_status: Some(200),
        }
    }

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .expect("a number")
    }

    #[test]
    fn counts_collections_and_publishes_by_outcome() {
        let mut m = DaemonMetrics::default();
        m.record_collection(CollectionOutcome::Complete);
        m.record_collection(CollectionOutcome::Partial);
        m.record_collection(CollectionOutcome::Partial);
        m.record_publish(
            &[outcome(true, 20), outcome(false, 700)],
            UNIX_EPOCH + Duration::from_secs(100),
        );
        let text = m.render();
        assert_eq!(
            value(&text, "hodometer_collections_total{outcome=\"complete\"}"),
            1.0
        );
        assert_eq!(
            value(&text, "hodometer_collections_total{outcome=\"partial\"}"),
            2.0
        );
        assert_eq!(
            value(&text, "hodometer_publishes_total{outcome=\"ok\"}"),
            1.0
        );
        assert_eq!(
            value(&text, "hodometer_publishes_total{outcome=\"rejected\"}"),
            1.0
        );
        assert_eq!(
            value(&text, "hodometer_publishes_total{outcome=\"failed\"}"),
            0.0
        );
        assert_eq!(
            value(&text, "hodometer_last_success_timestamp_seconds"),
            0.0,
            "one endpoint failed"
        );
        assert_eq!(
            value(
                &text,
                "hodometer_publish_latency_seconds_bucket{le=\"0.05\"}"
            ),
            1.0
        );
        assert_eq!(
            value(&text, "hodometer_publish_latency_seconds_bucket{le=\"1\"}"),
            2.0
        );
        assert_eq!(value(&text, "hodometer_publish_latency_seconds_count"), 2.0);
        assert!((value(&text, "hodometer_publish_latency_seconds_sum") - 0.72).abs() < 1e-9);
    }

    #[test]
    fn success_time_is_set_when_every_endpoint_accepts() {
        let mut m = DaemonMetrics::default();
        m.record_publish(
            &[outcome(true, 1), outcome(true, 2)],
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        );
        assert_eq!(
            value(&m.render(), "hodometer_last_success_timestamp_seconds"),
            1_700_000_000.0
        );
    }
}
