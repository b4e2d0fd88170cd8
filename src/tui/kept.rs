//! The inspector's own sends, kept across sessions: one JSON line per finished send in a private
//! file (`sends.jsonl`, 0600) in the per-user state directory, so `v` still lists them after a
//! restart. Only the last [`KEPT`] are loaded.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::app::SendRecord;
use crate::metrics::Level;
use crate::payload::Event;
use crate::private_fs::{self, Existing};
use crate::publish::{EndpointOutcome, PublishError};

/// How many earlier sends `v` lists.
const KEPT: usize = 100;
const FILE: &str = "sends.jsonl";

/// `sends.jsonl` in the per-user state directory (made private if it must be created).
pub fn path() -> Option<PathBuf> {
    let dir = private_fs::state_dir()?;
    private_fs::private_dir(&dir).ok()?;
    Some(dir.join(FILE))
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Line {
    at: String,
    insert_id: Uuid,
    level: String,
    fields: Vec<String>,
    /// The event's exact bytes.
    event: String,
    outcomes: Vec<Outcome>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Outcome {
    endpoint: String,
    /// `ok`, `rejected` or `failed`.
    outcome: String,
    attempts: u32,
    latency_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Appends a finished send.
pub fn append(path: &Path, record: &SendRecord) -> std::io::Result<()> {
    let line = Line {
        at: humantime::format_rfc3339_seconds(record.at).to_string(),
        insert_id: record.event.insert_id,
        level: record.event.level.as_str().into(),
        fields: record.event.fields.clone(),
        event: record.event.json.clone(),
        outcomes: record
            .outcomes
            .iter()
            .flatten()
            .map(|o| Outcome {
                endpoint: o.endpoint.clone(),
                outcome: o.outcome_label().into(),
                attempts: o.attempts,
                latency_ms: u64::try_from(o.latency.as_millis()).unwrap_or(u64::MAX),
                last_status: o.last_status,
                error: o.error().map(|e| e.to_string()),
            })
            .collect(),
    };
    let mut text = serde_json::to_string(&line).map_err(std::io::Error::other)?;
    text.push('\n');
    let mut file = private_fs::open_private(path, Existing::Append)?;
    file.write_all(text.as_bytes())?;
    file.sync_data()
}

/// The last sends kept, oldest first; a line that does not read back is skipped (and counted).
pub fn load(path: &Path) -> std::io::Result<(Vec<SendRecord>, usize)> {
    let Some(text) = private_fs::read_private(path)? else {
        return Ok((Vec::new(), 0));
    };
    let mut skipped = 0;
    let mut records: Vec<SendRecord> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let record = serde_json::from_str::<Line>(l).ok().and_then(restore);
            skipped += usize::from(record.is_none());
            record
        })
        .collect();
    let excess = records.len().saturating_sub(KEPT);
    records.drain(..excess);
    Ok((records, skipped))
}

fn restore(line: Line) -> Option<SendRecord> {
    let outcomes = line
        .outcomes
        .into_iter()
        .enumerate()
        .map(|(index, o)| {
            let result = match (o.outcome.as_str(), o.error) {
                ("ok", _) => Ok(()),
                (kind, error) => Err(PublishError::Recorded {
                    rejected: kind == "rejected",
                    text: error.unwrap_or_default(),
                }),
            };
            Some(EndpointOutcome {
                index,
                endpoint: o.endpoint,
                result,
                attempts: o.attempts,
                latency: Duration::from_millis(o.latency_ms),
                last_status: o.last_status,
            })
        })
        .collect();
    Some(SendRecord {
        event: Event {
            level: Level::parse(&line.level)?,
            insert_id: line.insert_id,
            fields: line.fields,
            json: line.event,
        },
        at: humantime::parse_rfc3339_weak(&line.at).unwrap_or(SystemTime::UNIX_EPOCH),
        outcomes,
        earlier: true,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn record(ok: bool) -> SendRecord {
        let outcome = EndpointOutcome {
            index: 0,
            endpoint: "http://127.0.0.1:8001/".into(),
            result: if ok {
                Ok(())
            } else {
                Err(PublishError::Rejected {
                    error: "bad token".into(),
                })
            },
            attempts: 1,
            latency: Duration::from_millis(12),
            last_status: Some(if ok { 200 } else { 400 }),
        };
        SendRecord {
            event: Event {
                level: Level::Resource,
                insert_id: Uuid::new_v4(),
                fields: vec!["model_count".into()],
                json: r#"{"event":"collect metrics","properties":{"model_count":3}}"#.into(),
            },
            at: humantime::parse_rfc3339("2026-12-04T10:00:00Z").expect("time"),
            outcomes: vec![Some(outcome)],
            earlier: false,
        }
    }

    #[test]
    fn sends_read_back_as_they_were_with_the_same_outcome_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE);
        let (sent, refused) = (record(true), record(false));
        append(&path, &sent).expect("append");
        append(&path, &refused).expect("append");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (back, skipped) = load(&path).expect("load");
        assert_eq!(skipped, 0);
        assert_eq!(back.len(), 2);
        for (before, after) in [sent, refused].iter().zip(&back) {
            assert_eq!(after.event, before.event);
            assert_eq!(after.at, before.at);
            let detail = |r: &SendRecord| r.outcomes[0].as_ref().map(EndpointOutcome::detail);
            assert_eq!(detail(after), detail(before));
        }
    }

    #[test]
    fn a_file_others_may_write_or_a_symlink_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE);
        append(&path, &record(true)).expect("append");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        let refused = load(&path).expect_err("group-writable");
        assert!(refused.to_string().contains("chmod 600"), "{refused}");
        let link = dir.path().join("link.jsonl");
        std::os::unix::fs::symlink(&path, &link).expect("symlink");
        assert!(load(&link).is_err());
        assert!(append(&link, &record(true)).is_err());
        assert_eq!(load(&dir.path().join("none")).expect("absent").0.len(), 0);
    }
}
