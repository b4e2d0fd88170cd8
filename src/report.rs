//! Plain-text views of a snapshot for people (`collect --output table`).

use crate::metrics::{Level, Reading, Snapshot};

/// Every metric at `level`: whether it is shared or withheld, and its value or why it is unknown.
pub fn table(snapshot: &Snapshot, level: Level) -> String {
    let rows = snapshot.rows(level);
    let name_width = rows.iter().map(|r| r.def.name.len()).max().unwrap_or(0);
    let mut out = format!(
        "{:name_width$}  {:8}  {:8}  VALUE\n",
        "METRIC", "LEVEL", "SHARING"
    );
    for row in rows {
        let sharing = match (&row.reading, row.shared) {
            (Reading::Known(_), true) => "shared",
            (Reading::Unknown(_), true) => "omitted",
            (_, false) => "withheld",
        };
        let value = match &row.reading {
            Reading::Known(value) => value.to_string(),
            Reading::Unknown(reason) => format!("unknown, because {reason}"),
        };
        out.push_str(&format!(
            "{:name_width$}  {:8}  {:8}  {}\n",
            row.def.name,
            row.def.level.as_str(),
            sharing,
            value
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{MetricId, Value};

    #[test]
    fn rows_say_shared_withheld_or_omitted() {
        let mut s = Snapshot::unknown("scheduler down");
        s.set(
            MetricId::ClusterId,
            Reading::Known(Value::Text("id-1".into())),
        );
        s.set(MetricId::ModelCount, Reading::Known(Value::Integer(12)));
        let text = table(&s, Level::Cluster);
        let line = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("no row for {name} in\n{text}"))
                .to_string()
        };
        assert!(line("cluster_id").contains("shared"));
        assert!(line("cluster_id").contains("id-1"));
        assert!(line("model_count").contains("withheld"));
        assert!(line("model_count").contains("12"));
        assert!(line("node_count").contains("omitted"));
        assert!(line("node_count").contains("unknown, because scheduler down"));
        assert!(line("metrics_level").contains("cluster"));
    }
}
