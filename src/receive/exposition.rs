//! `/metrics` in the Prometheus text exposition format (version 0.0.4).

use crate::prometheus::{family, sample};

use super::decode::INFO_METRICS;
use super::store::{ClusterSummary, ClusterWriter, Totals};

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
    /// Requests answered 503 because the bodies buffered at once reached --body-memory.
    pub rejected_body_memory: u64,
    /// `$insert_id`s forgotten beyond the deduplication window.
    pub dedup_ids_forgotten: u64,
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

/// The receiver's own counters, the head of `/metrics`.
fn render_counters(counts: &Counts) -> String {
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
            "hodometer_receiver_dedup_ids_forgotten_total",
            "counter",
            "$insert_ids forgotten beyond the deduplication window (--dedup-ids, --dedup-window, or --memory-events in memory).",
            counts.dedup_ids_forgotten as f64,
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
        ("body_memory", counts.rejected_body_memory),
    ] {
        sample(
            &mut out,
            "hodometer_receiver_requests_rejected_total",
            &[("reason", reason)],
            count as f64,
        );
    }
    out
}

/// The three per-cluster families, each listed whole (the text format wants a family's samples
/// together), so the clusters are walked once per family.
const CLUSTER_FAMILIES: [(&str, &str); 3] = [
    (
        "hodometer_receiver_metric",
        "Latest value of each numeric usage metric per cluster (bools as 0/1), from the cluster's latest event.",
    ),
    (
        "hodometer_receiver_cluster_info",
        "Always 1; the labels carry each cluster's version strings from its latest event (empty when unknown).",
    ),
    (
        "hodometer_receiver_cluster_last_event_timestamp_seconds",
        "Time of the latest event recorded from each cluster, Unix seconds.",
    ),
];

/// `/metrics`: the counters, then per cluster the latest value of each numeric usage metric,
/// its version strings (as labels of an info gauge, valued 1) and the time of its latest
/// event. Written cluster by cluster as the store walks them (see [`ClusterWriter`]); the
/// clusters' extensions are never read.
pub struct MetricsText {
    counts: Counts,
    clusters: bool,
}

impl MetricsText {
    pub fn new(counts: Counts) -> MetricsText {
        MetricsText {
            counts,
            clusters: false,
        }
    }
}

impl ClusterWriter for MetricsText {
    const EXTENSIONS: bool = false;

    fn head(&mut self, totals: Totals, out: &mut Vec<u8>) {
        out.extend_from_slice(render_counters(&self.counts).as_bytes());
        self.clusters = totals.clusters_tracked > 0;
    }

    fn passes(&self) -> usize {
        if self.clusters {
            CLUSTER_FAMILIES.len()
        } else {
            0
        }
    }

    fn start_pass(&mut self, pass: usize, out: &mut Vec<u8>) {
        let (name, help) = CLUSTER_FAMILIES[pass];
        let mut text = String::new();
        family(&mut text, name, "gauge", help);
        out.extend_from_slice(text.as_bytes());
    }

    fn cluster(&mut self, pass: usize, cluster: &ClusterSummary, out: &mut Vec<u8>) {
        let mut text = String::new();
        let name = CLUSTER_FAMILIES[pass].0;
        match pass {
            0 => {
                for (metric, value) in &cluster.metrics {
                    if let Some(value) = value.as_f64() {
                        sample(
                            &mut text,
                            name,
                            &[("cluster_id", &cluster.cluster_id), ("metric", metric)],
                            value,
                        );
                    }
                }
            }
            1 => {
                let mut labels = vec![("cluster_id", cluster.cluster_id.as_str())];
                for info in INFO_METRICS {
                    let value = cluster.metrics.get(info).and_then(|v| v.as_str());
                    labels.push((info, value.unwrap_or("")));
                }
                sample(&mut text, name, &labels, 1.0);
            }
            _ => sample(
                &mut text,
                name,
                &[("cluster_id", &cluster.cluster_id)],
                cluster.last_time as f64,
            ),
        }
        out.extend_from_slice(text.as_bytes());
    }

    fn tail(&mut self, _: &mut Vec<u8>) {}
}

/// `/metrics` over clusters already in memory (the store streams them instead).
pub fn render(counts: &Counts, clusters: &[ClusterSummary]) -> String {
    let mut writer = MetricsText::new(*counts);
    let mut out = Vec::new();
    let totals = Totals {
        events: clusters.iter().map(|c| c.events).sum(),
        clusters_tracked: clusters.len() as u64,
    };
    writer.head(totals, &mut out);
    for pass in 0..writer.passes() {
        writer.start_pass(pass, &mut out);
        for cluster in clusters {
            writer.cluster(pass, cluster, &mut out);
        }
    }
    writer.tail(&mut out);
    String::from_utf8(out).unwrap_or_default()
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
