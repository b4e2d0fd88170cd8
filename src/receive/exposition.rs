//! `/metrics` in the Prometheus text exposition format (version 0.0.4).

use crate::prometheus::{family, sample};

use super::decode::INFO_METRICS;
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
    /// Requests answered 408 because their body did not arrive in time.
    pub rejected_body_timeout: u64,
    pub connections_refused: u64,
    pub connections_open: u64,
    pub clusters_tracked: u64,
    /// Events of clusters beyond `--max-clusters`, not graphed.
    pub cluster_events_dropped: u64,
    /// Events the in-memory ring forgot to make room.
    pub ring_events_forgotten: u64,
    /// Disk syncs of a file store; events received per sync is the group commit's size.
    pub store_syncs: u64,
    /// Nanoseconds spent in those syncs.
    pub store_sync_nanos: u64,
    /// Group commits of the store, and nanoseconds the writer spent in them.
    pub store_commits: u64,
    pub store_commit_nanos: u64,
}

/// One metric family without labels: name, type, help and value.
struct Single(&'static str, &'static str, &'static str, f64);

fn seconds(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

/// Renders the counters and, per cluster, the latest value of each numeric usage metric and
/// its version strings (as labels of an info gauge, valued 1).
pub fn render(counts: &Counts, clusters: &[ClusterSummary]) -> String {
    let mut out = String::new();
    let singles = [
        Single(
            "hodometer_receiver_events_received_total",
            "counter",
            "Events in accepted /track requests since the receiver started, duplicates included.",
            counts.received as f64,
        ),
        Single(
            "hodometer_receiver_events_duplicate_total",
            "counter",
            "Accepted events whose $insert_id was already recorded, so not recorded again.",
            counts.duplicates as f64,
        ),
        Single(
            "hodometer_receiver_cluster_events_dropped_total",
            "counter",
            "Recorded events of clusters beyond --max-clusters, whose metrics are not tracked.",
            counts.cluster_events_dropped as f64,
        ),
        Single(
            "hodometer_receiver_ring_events_forgotten_total",
            "counter",
            "Events and ids the in-memory store forgot to stay within its bounds.",
            counts.ring_events_forgotten as f64,
        ),
        Single(
            "hodometer_receiver_store_syncs_total",
            "counter",
            "Disk syncs of the --store file; each makes every request committed before it durable, so events received per sync is the group size.",
            counts.store_syncs as f64,
        ),
        Single(
            "hodometer_receiver_store_sync_seconds_total",
            "counter",
            "Time spent in those disk syncs; divided by the syncs, the disk's latency that each acknowledgement waits for.",
            seconds(counts.store_sync_nanos),
        ),
        Single(
            "hodometer_receiver_store_commits_total",
            "counter",
            "Transactions of the store's writer; each records every request waiting for it (group commit).",
            counts.store_commits as f64,
        ),
        Single(
            "hodometer_receiver_store_commit_seconds_total",
            "counter",
            "Time the store's writer spent in those transactions.",
            seconds(counts.store_commit_nanos),
        ),
        Single(
            "hodometer_receiver_connections_refused_total",
            "counter",
            "Connections answered 503 at once because --max-connections were open.",
            counts.connections_refused as f64,
        ),
        Single(
            "hodometer_receiver_connections_open",
            "gauge",
            "Connections open now.",
            counts.connections_open as f64,
        ),
        Single(
            "hodometer_receiver_clusters_tracked",
            "gauge",
            "Clusters whose metrics are tracked (at most --max-clusters).",
            counts.clusters_tracked as f64,
        ),
    ];
    for Single(name, kind, help, value) in singles {
        family(&mut out, name, kind, help);
        sample(&mut out, name, &[], value);
    }
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
        ("body_timeout", counts.rejected_body_timeout),
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
        "hodometer_receiver_cluster_info",
        "gauge",
        "Always 1; the labels carry each cluster's version strings from its latest event (empty when unknown).",
    );
    for cluster in clusters {
        let mut labels = vec![("cluster_id", cluster.cluster_id.as_str())];
        for name in INFO_METRICS {
            let text = cluster.metrics.get(name).and_then(|v| v.as_str());
            labels.push((name, text.unwrap_or("")));
        }
        sample(&mut out, "hodometer_receiver_cluster_info", &labels, 1.0);
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
    use serde_json::{Value, json};

    /// `/metrics` with one cluster holding `metrics`.
    fn render_one(cluster_id: &str, metrics: Value) -> String {
        let Value::Object(metrics) = metrics else {
            panic!("metrics must be an object");
        };
        render(
            &Counts::default(),
            &[ClusterSummary {
                cluster_id: cluster_id.into(),
                events: 1,
                first_time: 5,
                last_time: 5,
                metrics,
                extensions: Default::default(),
            }],
        )
    }

    #[test]
    fn label_values_are_escaped() {
        let text = render_one("a\"b\\c\nd", json!({"model_count": 12}));
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

    #[test]
    fn version_strings_are_info_labels_and_never_gauges() {
        let text = render_one("c", json!({"model_count": 3, "collector_version": "0.1.0"}));
        assert!(
            text.contains(
                "hodometer_receiver_cluster_info{cluster_id=\"c\",collector_version=\"0.1.0\",seldon_core_version=\"\",kubernetes_version=\"\",metrics_level=\"\"} 1\n"
            ),
            "{text}"
        );
        assert!(!text.contains("metric=\"collector_version\""), "{text}");
    }
}
