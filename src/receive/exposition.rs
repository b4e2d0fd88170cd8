//! `/metrics` in the Prometheus text exposition format (version 0.0.4).

use crate::prometheus::{family, sample};

use super::store::ClusterSummary;

pub use crate::prometheus::CONTENT_TYPE;

/// The receiver's own counters since it started (counters restart at zero, as Prometheus
/// expects; what was recorded before a restart is in the store and in `/events`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Events in accepted requests, duplicates included.
    pub received: u64,
    /// Accepted events whose `$insert_id` had been recorded already.
    pub duplicates: u64,
    pub rejected_invalid: u64,
    pub rejected_too_large: u64,
    /// Requests answered 500 because the store could not record them.
    pub rejected_store: u64,
}

/// Renders the counters and, per cluster, the latest value of each numeric usage metric.
pub fn render(counts: &Counts, clusters: &[ClusterSummary]) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "hodometer_receiver_events_received_total",
        "counter",
        "Events in accepted /track requests since the receiver started, duplicates included.",
    );
    sample(
        &mut out,
        "hodometer_receiver_events_received_total",
        &[],
        counts.received as f64,
    );
    family(
        &mut out,
        "hodometer_receiver_events_duplicate_total",
        "counter",
        "Accepted events whose $insert_id was already recorded, so not recorded again.",
    );
    sample(
        &mut out,
        "hodometer_receiver_events_duplicate_total",
        &[],
        counts.duplicates as f64,
    );
    family(
        &mut out,
        "hodometer_receiver_requests_rejected_total",
        "counter",
        "/track requests refused, by reason; a refused batch counts once.",
    );
    for (reason, count) in [
        ("invalid", counts.rejected_invalid),
        ("too_large", counts.rejected_too_large),
        ("store_error", counts.rejected_store),
    ] {
        sample(
            &mut out,
            "hodometer_receiver_requests_rejected_total",
            &[("reason", reason)],
            count as f64,
        );
    }
    if clusters.is_empty() {
        return out;
    }
    family(
        &mut out,
        "hodometer_receiver_metric",
        "gauge",
        "Latest value of each numeric usage metric per cluster (bools as 0/1), from the cluster's latest event.",
    );
    for cluster in clusters {
        for (metric, value) in &cluster.metrics {
            if let Some(value) = value.as_f64() {
                sample(
                    &mut out,
                    "hodometer_receiver_metric",
                    &[("cluster_id", &cluster.cluster_id), ("metric", metric)],
                    value,
                );
            }
        }
    }
    family(
        &mut out,
        "hodometer_receiver_cluster_last_event_timestamp_seconds",
        "gauge",
        "Time of the latest event recorded from each cluster, Unix seconds.",
    );
    for cluster in clusters {
        sample(
            &mut out,
            "hodometer_receiver_cluster_last_event_timestamp_seconds",
            &[("cluster_id", &cluster.cluster_id)],
            cluster.last_time as f64,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, json};

    #[test]
    fn label_values_are_escaped() {
        let mut metrics = Map::new();
        metrics.insert("model_count".into(), json!(12));
        let text = render(
            &Counts::default(),
            &[ClusterSummary {
                cluster_id: "a\"b\\c\nd".into(),
                events: 1,
                first_time: 5,
                last_time: 5,
                metrics,
            }],
        );
        assert!(
            text.contains(
                "hodometer_receiver_metric{cluster_id=\"a\\\"b\\\\c\\nd\",metric=\"model_count\"} 12\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn without_clusters_only_the_counters_are_listed() {
        let text = render(
            &Counts {
                received: 3,
                ..Counts::default()
            },
            &[],
        );
        assert!(text.contains("hodometer_receiver_events_received_total 3\n"));
        assert!(!text.contains("hodometer_receiver_metric"));
    }
}
