//! Plain-text views of a snapshot for people (`collect --output table`).

use crate::metrics::{Level, Reading, RowKind, Snapshot};

/// Every metric and extension at `level`: whether it is shared or withheld, and its value or why
/// it is unknown; an extension also says it is operator-supplied, where from, and what the
/// privacy guard noticed about it.
pub fn table(snapshot: &Snapshot, level: Level) -> String {
    let rows = snapshot.rows(level);
    let name_width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
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
        let mut value = match &row.reading {
            Reading::Known(value) => value.to_string(),
            Reading::Unknown(reason) => format!("unknown, because {reason}"),
        };
        if let RowKind::Extension(ext) = &row.kind {
            value.push_str(&format!("  (operator-supplied, from {})", ext.source));
            for suspicion in &ext.suspicions {
                value.push_str(&format!(" [warning: {suspicion}]"));
            }
        }
        // Values and reasons come from servers and files: through the one sanitiser.
        out.push_str(&format!(
            "{:name_width$}  {:8}  {:8}  {}\n",
            crate::sanitize::text(&row.name),
            row.level.as_str(),
            sharing,
            crate::sanitize::text(&value)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Extension, ExtensionSource, MetricId, Suspicion, Value};

    fn line_of(text: &str, name: &str) -> String {
        text.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row for {name} in\n{text}"))
            .to_string()
    }

    #[test]
    fn rows_say_shared_withheld_or_omitted() {
        let mut s = Snapshot::unknown("scheduler down");
        s.set(
            MetricId::ClusterId,
            Reading::Known(Value::Text("id-1".into())),
        );
        s.set(MetricId::ModelCount, Reading::Known(Value::Integer(12)));
        let text = table(&s, Level::Cluster);
        let line = |name: &str| line_of(&text, name);
        assert!(line("cluster_id").contains("shared"));
        assert!(line("cluster_id").contains("id-1"));
        assert!(line("model_count").contains("withheld"));
        assert!(line("model_count").contains("12"));
        assert!(line("node_count").contains("omitted"));
        assert!(line("node_count").contains("unknown, because scheduler down"));
        assert!(line("metrics_level").contains("cluster"));
    }

    #[test]
    fn extensions_are_marked_with_their_source_and_warnings() {
        let mut s = Snapshot::unknown("scheduler down");
        s.extensions = vec![
            Extension {
                key: "team".into(),
                level: Level::Cluster,
                value: "ml".into(),
                source: ExtensionSource::Flag,
                suspicions: vec![],
            },
            Extension {
                key: "owner".into(),
                level: Level::Feature,
                value: "ops@acme.com".into(),
                source: ExtensionSource::Dir,
                suspicions: vec![Suspicion::EmailAddress],
            },
        ];
        let text = table(&s, Level::Resource);
        let line = |name: &str| line_of(&text, name);
        let team = line("ext.team");
        assert!(team.contains("shared") && team.contains("ml"), "{team}");
        assert!(
            team.contains("operator-supplied, from --extension"),
            "{team}"
        );
        let owner = line("ext.owner");
        assert!(
            owner.contains("withheld") && owner.contains("feature"),
            "{owner}"
        );
        assert!(owner.contains("from --extensions-dir"), "{owner}");
        assert!(
            owner.contains("[warning: looks like an e-mail address]"),
            "{owner}"
        );
    }
}
