//! A snapshot: every metric either known or unknown-with-a-reason, and the per-level view of it.

use std::fmt;
use std::time::SystemTime;

use super::{Extension, Level, METRIC_COUNT, METRICS, MetricDef, MetricId};

/// A metric's value, already in the JSON type its table row names.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Text(String),
    Bool(bool),
    Integer(u64),
    Float(f64),
}

impl Value {
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Text(s) => serde_json::Value::from(s.as_str()),
            Value::Bool(b) => serde_json::Value::from(*b),
            Value::Integer(n) => serde_json::Value::from(*n),
            // A non-finite float cannot be JSON; `Snapshot::set` keeps it out of every snapshot.
            Value::Float(x) => serde_json::Number::from_f64(*x)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Text(s) => f.write_str(s),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Integer(n) => write!(f, "{n}"),
            Value::Float(x) => write!(f, "{x}"),
        }
    }
}

/// What is known about one metric. Unknown metrics are omitted from events, never sent as zero.
#[derive(Clone, Debug, PartialEq)]
pub enum Reading {
    Known(Value),
    /// Why it could not be determined, for people: "scheduler unreachable: …".
    Unknown(String),
}

impl Reading {
    pub fn unknown(reason: impl Into<String>) -> Reading {
        Reading::Unknown(reason.into())
    }

    pub fn known(&self) -> Option<&Value> {
        match self {
            Reading::Known(value) => Some(value),
            Reading::Unknown(_) => None,
        }
    }
}

/// All metrics as collected at one moment, and the operator's extensions. `metrics_level` is not
/// stored: it is the level a view is taken at.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    readings: Vec<Reading>,
    pub collected_at: SystemTime,
    /// Operator-supplied static facts, sorted by key, with what the privacy guard noticed.
    pub extensions: Vec<Extension>,
}

/// One field of the event (a metric or an extension) as seen at a chosen level.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Its property name in the event.
    pub name: String,
    /// The lowest level at which it is shared.
    pub level: Level,
    pub kind: RowKind,
    pub reading: Reading,
    /// Whether the chosen level shares it (unknown readings are still omitted from the event).
    pub shared: bool,
}

/// What a row is: one of the metrics hodometer computes, or a fact an operator supplied.
#[derive(Clone, Debug, PartialEq)]
pub enum RowKind {
    Metric(&'static MetricDef),
    Extension(Extension),
}

impl RowKind {
    pub fn metric(&self) -> Option<&'static MetricDef> {
        match self {
            RowKind::Metric(def) => Some(def),
            RowKind::Extension(_) => None,
        }
    }
}

impl Snapshot {
    /// A snapshot where nothing is known yet, each metric carrying `reason`.
    pub fn unknown(reason: &str) -> Snapshot {
        Snapshot {
            readings: vec![Reading::unknown(reason); METRIC_COUNT],
            collected_at: SystemTime::now(),
            extensions: Vec::new(),
        }
    }

    /// Records `reading`. A float that is not finite (NaN, infinite) cannot be JSON and means a
    /// broken computation, so it is stored as unknown and never reaches an event.
    pub fn set(&mut self, id: MetricId, reading: Reading) {
        let reading = match reading {
            Reading::Known(Value::Float(x)) if !x.is_finite() => {
                Reading::unknown("not a finite number")
            }
            reading => reading,
        };
        self.readings[id as usize] = reading;
    }

    pub fn get(&self, id: MetricId) -> &Reading {
        &self.readings[id as usize]
    }

    /// A metric's reading as a view at `level` sees it: `metrics_level` is that level.
    fn reading_at(&self, def: &MetricDef, level: Level) -> Reading {
        match def.id {
            MetricId::MetricsLevel => Reading::Known(Value::Text(level.as_str().into())),
            id => self.get(id).clone(),
        }
    }

    /// Every metric and extension as it stands at `level`, grouped by the level that shares it:
    /// within a group the metrics in table order, then the extensions by key.
    pub fn rows(&self, level: Level) -> Vec<Row> {
        let metrics = METRICS.iter().map(|def| Row {
            name: def.name.to_string(),
            level: def.level,
            kind: RowKind::Metric(def),
            reading: self.reading_at(def, level),
            shared: level.shares(def.level),
        });
        let extensions = self.extensions.iter().map(|ext| Row {
            name: ext.property(),
            level: ext.level,
            kind: RowKind::Extension(ext.clone()),
            reading: Reading::Known(Value::Text(ext.value.clone())),
            shared: level.shares(ext.level),
        });
        let mut rows: Vec<Row> = metrics.chain(extensions).collect();
        // A stable sort keeps table order, and key order, within each level.
        rows.sort_by_key(|row| row.level);
        rows
    }

    /// Names of the metrics `level` shares that could not be determined, in table order.
    pub fn unknown_shared(&self, level: Level) -> Vec<&'static str> {
        METRICS
            .iter()
            .filter(|def| level.shares(def.level))
            .filter(|def| matches!(self.reading_at(def, level), Reading::Unknown(_)))
            .map(|def| def.name)
            .collect()
    }

    /// The fields that leave the cluster at `level`: shared and known, in row order.
    pub fn shared_values(&self, level: Level) -> Vec<(String, Value)> {
        self.rows(level)
            .into_iter()
            .filter(|row| row.shared)
            .filter_map(|row| match row.reading {
                Reading::Known(value) => Some((row.name, value)),
                Reading::Unknown(_) => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_finite_float_is_stored_as_unknown() {
        let mut s = Snapshot::unknown("unused");
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            s.set(MetricId::ServerMemoryGbSum, Reading::Known(Value::Float(x)));
            assert_eq!(
                s.get(MetricId::ServerMemoryGbSum),
                &Reading::unknown("not a finite number")
            );
        }
        s.set(
            MetricId::ServerMemoryGbSum,
            Reading::Known(Value::Float(1.5)),
        );
        assert_eq!(
            s.get(MetricId::ServerMemoryGbSum),
            &Reading::Known(Value::Float(1.5))
        );
    }

    #[test]
    fn extensions_join_the_rows_of_their_level_after_its_metrics() {
        let mut s = Snapshot::unknown("nothing read");
        let ext = |key: &str, level| Extension {
            key: key.into(),
            level,
            value: "v".into(),
            source: crate::metrics::ExtensionSource::Env,
            suspicions: vec![],
        };
        s.extensions = vec![ext("a", Level::Resource), ext("b", Level::Cluster)];
        let names: Vec<String> = s
            .rows(Level::Cluster)
            .into_iter()
            .map(|row| row.name)
            .collect();
        let at = |name: &str| names.iter().position(|n| n == name).expect(name);
        assert_eq!(at("ext.b"), at("is_global_installation") + 1);
        assert_eq!(at("ext.a"), at("server_replica_count") + 1);
        assert_eq!(at("multimodel_enabled_count"), at("ext.a") + 1);
        let shared = s.shared_values(Level::Cluster);
        assert!(shared.iter().any(|(name, _)| name == "ext.b"));
        assert!(!shared.iter().any(|(name, _)| name == "ext.a"));
        assert!(
            s.unknown_shared(Level::Feature)
                .iter()
                .all(|n| !n.starts_with("ext."))
        );
    }

    #[test]
    fn unknown_shared_names_only_what_the_level_shares() {
        let mut s = Snapshot::unknown("nothing read");
        s.set(
            MetricId::ClusterId,
            Reading::Known(Value::Text("id".into())),
        );
        let cluster = s.unknown_shared(Level::Cluster);
        assert!(!cluster.contains(&"cluster_id"));
        assert!(!cluster.contains(&"metrics_level"));
        assert!(cluster.contains(&"node_count"));
        assert!(!cluster.contains(&"model_count"));
        assert!(s.unknown_shared(Level::Resource).contains(&"model_count"));
        assert!(s.unknown_shared(Level::Off).is_empty());
    }
}
