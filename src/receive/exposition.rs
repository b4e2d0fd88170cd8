//! `/metrics` in the Prometheus text exposition format (version 0.0.4).

use std::fmt::Write;

use super::store::ClusterSummary;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

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

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape(help, false));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, text)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{label}=\"{}\"", escape(text, true));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", number(value));
}

/// Label values escape `\`, `"` and line feeds; HELP text escapes `\` and line feeds only.
fn escape(text: &str, quote: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

/// Prometheus spells the non-finite values `+Inf`, `-Inf` and `NaN`; Rust's `inf` is not valid.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        value.to_string()
    }
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
    fn numbers_use_prometheus_spellings() {
        assert_eq!(number(12.0), "12");
        assert_eq!(number(1.5), "1.5");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(f64::NAN), "NaN");
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
