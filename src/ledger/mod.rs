//! The history of what the in-cluster reporter sent and who allowed it (SPEC 16): entries kept
//! one per data key of the ConfigMap `hodometer-ledger`, each holding the SHA-256 of the entry
//! before it, so an edited or dropped entry shows. Bounded by bytes: the oldest entries go first
//! and a checkpoint keeps how many went and the hash they ended at, where the chain resumes.
//!
//! Pure: building entries, planning an append (the keys a merge patch adds and removes), and
//! verifying a chain. The Kubernetes side is [`cluster`].

pub mod cluster;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::policy::{Policy, Source};

/// The ConfigMap the reporter appends to (the manifests create it empty).
pub const LEDGER_CONFIGMAP: &str = "hodometer-ledger";
/// The data key of the checkpoint.
pub const CHECKPOINT_KEY: &str = "checkpoint";
const ENTRY_PREFIX: &str = "entry-";
/// What the first entry follows: no entry at all.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The default byte budget: a quarter of the 1 MiB object limit, some 200 sends of a full
/// event (about 70 days at the 8 h interval).
pub const DEFAULT_BUDGET: usize = 256 * 1024;
/// Below this a few entries would not fit.
pub const MIN_BUDGET: usize = 16 * 1024;
/// Well under the API server's 1 MiB object limit, with room for the metadata and escaping.
pub const MAX_BUDGET: usize = 768 * 1024;

/// `--ledger-budget`: bytes, with an optional `KiB`/`MiB` (or `K`/`M`, also 1024-based) suffix,
/// between [`MIN_BUDGET`] and [`MAX_BUDGET`].
pub fn parse_budget(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let number: usize = number
        .parse()
        .map_err(|_| "expected a size in bytes, e.g. 256KiB or 262144".to_string())?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "ki" | "kib" => 1024,
        "m" | "mi" | "mib" => 1024 * 1024,
        other => return Err(format!("unknown unit {other:?}: use KiB or MiB")),
    };
    let bytes = number.saturating_mul(scale);
    if !(MIN_BUDGET..=MAX_BUDGET).contains(&bytes) {
        return Err(format!(
            "must be between {} KiB and {} KiB (the ConfigMap limit is 1 MiB)",
            MIN_BUDGET / 1024,
            MAX_BUDGET / 1024
        ));
    }
    Ok(bytes)
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The data key of entry `seq`: zero-padded, so the keys sort in the chain's order.
pub fn entry_key(seq: u64) -> String {
    format!("{ENTRY_PREFIX}{seq:010}")
}

/// The sequence number a data key names, if it is an entry's key.
pub fn entry_seq(key: &str) -> Option<u64> {
    let digits = key.strip_prefix(ENTRY_PREFIX)?;
    if digits.len() < 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One entry as stored: its value's bytes are what its hash covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub seq: u64,
    /// The hash of the entry before (or of the checkpoint's last dropped entry, or [`GENESIS`]).
    pub prev: String,
    /// When it happened (RFC 3339), not when it was written.
    pub at: String,
    #[serde(flatten)]
    pub record: Record,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Record {
    Send(SendRecord),
    Consent(ConsentRecord),
}

impl Record {
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Send(_) => "send",
            Record::Consent(_) => "consent",
        }
    }
}

/// An event the reporter published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendRecord {
    pub level: String,
    /// Where the level came from: consent, environment.
    pub source: String,
    /// The event's exact bytes.
    pub event: String,
    /// SHA-256 of `event`.
    pub sha256: String,
    pub outcomes: Vec<OutcomeRecord>,
    /// The consent ConfigMap's `resourceVersion` that allowed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_version: Option<String>,
    /// Who that consent says approved it (what the consent claims: see README).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// Set when the publish was stopped part-way (the consent changed): earlier attempts may have
    /// reached an endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled: Option<String>,
}

impl SendRecord {
    pub fn accepted(&self) -> usize {
        self.outcomes.iter().filter(|o| o.ok).count()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeRecord {
    /// The endpoint, credentials redacted.
    pub endpoint: String,
    pub ok: bool,
    pub detail: String,
}

/// What kind of consent change the reporter saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ConsentChange {
    /// A valid consent with a level.
    Approved,
    /// A consent without a level (as the manifests ship it): METRICS_LEVEL rules.
    Unset,
    /// A consent that cannot be trusted: nothing is sent.
    Invalid,
    /// The consent ConfigMap is gone: METRICS_LEVEL rules.
    Deleted,
}

impl ConsentChange {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentChange::Approved => "approved",
            ConsentChange::Unset => "unset",
            ConsentChange::Invalid => "invalid",
            ConsentChange::Deleted => "deleted",
        }
    }
}

/// A consent change the reporter observed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsentRecord {
    pub change: ConsentChange,
    /// The consent ConfigMap's `resourceVersion` (none once deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// The approved fields, and what changed since the consent recorded before.
    #[serde(default)]
    pub fields: Vec<String>,
    #[serde(default)]
    pub added: Vec<String>,
    #[serde(default)]
    pub removed: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Why an invalid consent shares nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ConsentRecord {
    /// The consent change `policy` shows since `previous` (the last consent recorded), if any.
    /// Under `DO_NOT_TRACK` the consent is never read, and an unreadable consent is no change.
    pub fn observe(policy: &Policy, previous: Option<&ConsentRecord>) -> Option<ConsentRecord> {
        // Not read (DO_NOT_TRACK, no API) or unreadable: no change seen.
        if !matches!(
            policy.consent_state,
            "absent" | "empty" | "valid" | "invalid"
        ) {
            return None;
        }
        let before: BTreeSet<&String> = previous
            .filter(|p| p.change != ConsentChange::Deleted)
            .map(|p| p.fields.iter().collect())
            .unwrap_or_default();
        let Some(version) = &policy.consent_version else {
            // Absent: the ConfigMap does not exist (any more).
            let was_there = previous.is_some_and(|p| p.change != ConsentChange::Deleted);
            return was_there.then(|| ConsentRecord {
                change: ConsentChange::Deleted,
                version: None,
                level: None,
                fields: Vec::new(),
                added: Vec::new(),
                removed: before.into_iter().cloned().collect(),
                approved_by: None,
                approved_at: None,
                note: None,
                reason: None,
            });
        };
        if previous.and_then(|p| p.version.as_ref()) == Some(version) {
            return None;
        }
        let (change, level) = match policy.source {
            Source::Consent => (ConsentChange::Approved, Some(policy.level.as_str().into())),
            Source::InvalidConsent => (ConsentChange::Invalid, None),
            _ => (ConsentChange::Unset, None),
        };
        let fields: Vec<String> = policy
            .approved
            .iter()
            .flatten()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let now: BTreeSet<&String> = fields.iter().collect();
        Some(ConsentRecord {
            change,
            version: Some(version.clone()),
            level,
            added: now.difference(&before).map(|f| (*f).clone()).collect(),
            removed: before.difference(&now).map(|f| (*f).clone()).collect(),
            fields,
            approved_by: policy.approved_by.clone(),
            approved_at: policy
                .approved_at
                .map(|at| humantime::format_rfc3339_seconds(at).to_string()),
            note: policy.note.clone(),
            reason: (change == ConsentChange::Invalid)
                .then(|| policy.reason.clone())
                .flatten(),
        })
    }
}

/// Where the kept entries begin: how many were dropped before them and the hash of the last one
/// dropped, which the first kept entry names as its `prev`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    pub dropped: u64,
    pub hash: String,
    /// When the last drop happened.
    pub at: String,
}

/// Bytes a data key and its value take in the object's JSON (quotes, escaping, `:` and `,`).
fn stored_size(key: &str, value: &str) -> usize {
    let escaped = serde_json::to_string(value).map_or(value.len() + 2, |s| s.len());
    key.len() + 2 + escaped + 2
}

/// What a writer needs to know of the stored ledger to append to it: each entry's size and hash,
/// the checkpoint, and the last consent recorded. Built from the ConfigMap's data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Index {
    /// seq → (stored size, hash).
    entries: BTreeMap<u64, (usize, String)>,
    checkpoint: Option<Checkpoint>,
    /// The last consent entry, to tell a change from the consent already recorded.
    pub last_consent: Option<ConsentRecord>,
    /// Keys that are neither entries nor the checkpoint (counted against the budget).
    other_bytes: usize,
}

impl Index {
    pub fn read(data: &BTreeMap<String, String>) -> Index {
        let mut index = Index::default();
        for (key, value) in data {
            if let Some(seq) = entry_seq(key) {
                index
                    .entries
                    .insert(seq, (stored_size(key, value), sha256_hex(value.as_bytes())));
            } else if key == CHECKPOINT_KEY {
                index.checkpoint = serde_json::from_str(value).ok();
            } else {
                index.other_bytes += stored_size(key, value);
            }
        }
        index.last_consent = index
            .entries
            .keys()
            .rev()
            .filter_map(|seq| data.get(&entry_key(*seq)))
            .filter_map(|value| serde_json::from_str::<Entry>(value).ok())
            .find_map(|entry| match entry.record {
                Record::Consent(consent) => Some(consent),
                Record::Send(_) => None,
            });
        index
    }

    /// The hash the next entry names as `prev`.
    pub fn head(&self) -> String {
        match self.entries.last_key_value() {
            Some((_, (_, hash))) => hash.clone(),
            None => self
                .checkpoint
                .as_ref()
                .map_or_else(|| GENESIS.to_string(), |c| c.hash.clone()),
        }
    }

    fn next_seq(&self) -> u64 {
        match self.entries.last_key_value() {
            Some((seq, _)) => seq + 1,
            None => self.checkpoint.as_ref().map_or(1, |c| c.dropped + 1),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries dropped so far (before the checkpoint).
    pub fn dropped(&self) -> u64 {
        self.checkpoint.as_ref().map_or(0, |c| c.dropped)
    }

    /// The data's size as the budget counts it.
    pub fn bytes(&self) -> usize {
        let checkpoint = self.checkpoint.as_ref().map_or(0, |c| {
            stored_size(
                CHECKPOINT_KEY,
                &serde_json::to_string(c).unwrap_or_default(),
            )
        });
        self.entries.values().map(|(size, _)| size).sum::<usize>() + checkpoint + self.other_bytes
    }
}

/// An append, ready to be sent as a merge patch of the ConfigMap's data: `Some` adds or replaces
/// a key, `None` removes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Append {
    pub data: BTreeMap<String, Option<String>>,
    /// The head after the append.
    pub head: String,
    /// The first and last sequence numbers appended.
    pub first_seq: u64,
    pub last_seq: u64,
    /// Entries dropped by this append to stay within the budget.
    pub dropped_now: u64,
}

/// Chains `records` (each with its time) after what `index` holds, and drops the oldest entries
/// until the data fits in `budget` bytes (never the newest), moving the checkpoint past them.
pub fn plan_append(index: &Index, records: &[(String, Record)], budget: usize) -> Append {
    let mut data = BTreeMap::new();
    let mut entries = index.entries.clone();
    let mut prev = index.head();
    let first_seq = index.next_seq();
    let mut seq = first_seq;
    for (at, record) in records {
        let entry = Entry {
            seq,
            prev: prev.clone(),
            at: at.clone(),
            record: record.clone(),
        };
        let key = entry_key(seq);
        // Serializing our own types cannot fail; an empty value would show as a broken entry.
        let value = serde_json::to_string(&entry).unwrap_or_default();
        prev = sha256_hex(value.as_bytes());
        entries.insert(seq, (stored_size(&key, &value), prev.clone()));
        data.insert(key, Some(value));
        seq += 1;
    }
    let last_seq = seq - 1;
    // A checkpoint is about this size; its exact size is counted once it is written.
    let checkpoint_room = stored_size(CHECKPOINT_KEY, "") + 200;
    let mut total: usize =
        entries.values().map(|(size, _)| size).sum::<usize>() + checkpoint_room + index.other_bytes;
    let mut checkpoint = index.checkpoint.clone();
    let mut dropped_now = 0;
    while total > budget && entries.len() > 1 {
        let Some((old, (size, hash))) = entries.pop_first() else {
            break;
        };
        total -= size;
        dropped_now += 1;
        // An entry appended and dropped in the same patch never reaches the object.
        if data.remove(&entry_key(old)).is_none() {
            data.insert(entry_key(old), None);
        }
        checkpoint = Some(Checkpoint {
            dropped: old,
            hash,
            at: records.last().map(|(at, _)| at.clone()).unwrap_or_default(),
        });
    }
    if dropped_now > 0
        && let Some(checkpoint) = &checkpoint
    {
        data.insert(
            CHECKPOINT_KEY.to_string(),
            Some(serde_json::to_string(checkpoint).unwrap_or_default()),
        );
    }
    Append {
        data,
        head: prev,
        first_seq,
        last_seq,
        dropped_now,
    }
}

/// Applies an append to a data map, as the API server applies the merge patch.
pub fn apply(data: &mut BTreeMap<String, String>, append: &Append) {
    for (key, value) in &append.data {
        match value {
            Some(value) => {
                data.insert(key.clone(), value.clone());
            }
            None => {
                data.remove(key);
            }
        }
    }
}

/// The first thing wrong with a ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broken {
    /// The entry it concerns, when it is one.
    pub seq: Option<u64>,
    /// The data key, or what was checked (`checkpoint`, `--head`).
    pub key: String,
    pub reason: String,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "entry {seq} ({}): {}", self.key, self.reason),
            None => write!(f, "{}: {}", self.key, self.reason),
        }
    }
}

/// What verifying a ledger found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    pub entries: usize,
    pub dropped: u64,
    /// The hash of the newest entry (what a pinned head is compared with).
    pub head: String,
    pub broken: Option<Broken>,
}

/// A head recorded earlier, to check the chain against: a label for messages and the hash.
pub struct Pin<'a> {
    pub label: &'a str,
    pub hash: &'a str,
}

/// Checks the chain from the checkpoint, every send's event against its SHA-256, and that each
/// pinned head is still in the chain (a head recorded earlier stays in it as entries are
/// appended; a rewritten chain loses it). Names the first broken entry.
pub fn verify(data: &BTreeMap<String, String>, pins: &[Pin<'_>]) -> Verification {
    let mut hashes: BTreeSet<String> = BTreeSet::new();
    let mut entries = 0;
    let fail =
        |seq: Option<u64>, key: &str, reason: String, entries, dropped, head: &str| Verification {
            entries,
            dropped,
            head: head.to_string(),
            broken: Some(Broken {
                seq,
                key: key.to_string(),
                reason,
            }),
        };
    let checkpoint = match data.get(CHECKPOINT_KEY) {
        None => None,
        Some(text) => match serde_json::from_str::<Checkpoint>(text) {
            Ok(checkpoint) => Some(checkpoint),
            Err(e) => {
                return fail(
                    None,
                    CHECKPOINT_KEY,
                    format!("not a checkpoint: {e}"),
                    0,
                    0,
                    GENESIS,
                );
            }
        },
    };
    let dropped = checkpoint.as_ref().map_or(0, |c| c.dropped);
    let mut prev = checkpoint
        .as_ref()
        .map_or_else(|| GENESIS.to_string(), |c| c.hash.clone());
    hashes.insert(prev.clone());
    let mut expected = dropped + 1;
    let mut previous_key: Option<String> = None;
    for (key, value) in data {
        if key == CHECKPOINT_KEY {
            continue;
        }
        let Some(seq) = entry_seq(key) else {
            return fail(
                None,
                key,
                "not a ledger key: something else wrote to the ledger".into(),
                entries,
                dropped,
                &prev,
            );
        };
        if seq != expected {
            let reason = if seq < expected {
                format!("kept although the checkpoint says entries up to {dropped} were dropped")
            } else if expected == dropped + 1 {
                format!(
                    "the first kept entry should be {expected} (the checkpoint dropped {dropped}), so entries were removed"
                )
            } else {
                format!(
                    "entry {expected} is missing: this entry follows entry {}",
                    expected - 1
                )
            };
            return fail(Some(seq), key, reason, entries, dropped, &prev);
        }
        let entry: Entry = match serde_json::from_str(value) {
            Ok(entry) => entry,
            Err(e) => {
                return fail(
                    Some(seq),
                    key,
                    format!("not a ledger entry: {e}"),
                    entries,
                    dropped,
                    &prev,
                );
            }
        };
        if entry.seq != seq {
            return fail(
                Some(seq),
                key,
                format!("its seq says {} under the key of entry {seq}", entry.seq),
                entries,
                dropped,
                &prev,
            );
        }
        if entry.prev != prev {
            // The hash this entry recorded for the one before no longer matches it: the one
            // before changed (or, for the first kept entry, the checkpoint).
            return match &previous_key {
                Some(before) => fail(
                    Some(seq - 1),
                    before,
                    format!(
                        "changed after it was written: entry {seq} records its hash as {}, it now hashes to {prev}",
                        entry.prev
                    ),
                    entries,
                    dropped,
                    &prev,
                ),
                None => fail(
                    Some(seq),
                    key,
                    format!(
                        "does not follow the checkpoint: it names {} as the entry before, the checkpoint ends at {prev}",
                        entry.prev
                    ),
                    entries,
                    dropped,
                    &prev,
                ),
            };
        }
        if let Record::Send(send) = &entry.record {
            let actual = sha256_hex(send.event.as_bytes());
            if actual != send.sha256 {
                return fail(
                    Some(seq),
                    key,
                    format!(
                        "its event bytes changed: they hash to {actual}, the entry records {}",
                        send.sha256
                    ),
                    entries,
                    dropped,
                    &prev,
                );
            }
        }
        prev = sha256_hex(value.as_bytes());
        hashes.insert(prev.clone());
        entries += 1;
        expected += 1;
        previous_key = Some(key.clone());
    }
    for pin in pins {
        let hash = pin.hash.trim().to_ascii_lowercase();
        if !hashes.contains(&hash) {
            return fail(
                None,
                pin.label,
                format!(
                    "{hash} is not in the chain: entries recorded before it was taken were changed or the chain was rewritten (or it is older than the checkpoint, {dropped} entries dropped)"
                ),
                entries,
                dropped,
                &prev,
            );
        }
    }
    Verification {
        entries,
        dropped,
        head: prev,
        broken: None,
    }
}

/// A stored entry read back for people: its key, hash and parsed content (or why it is not one).
#[derive(Clone, Debug)]
pub struct Listed {
    pub seq: u64,
    pub key: String,
    pub hash: String,
    pub entry: Result<Entry, String>,
}

/// Every entry of the ledger, oldest first, and the checkpoint.
pub fn list(data: &BTreeMap<String, String>) -> (Option<Checkpoint>, Vec<Listed>) {
    let checkpoint = data
        .get(CHECKPOINT_KEY)
        .and_then(|text| serde_json::from_str(text).ok());
    let entries = data
        .iter()
        .filter_map(|(key, value)| {
            let seq = entry_seq(key)?;
            Some(Listed {
                seq,
                key: key.clone(),
                hash: sha256_hex(value.as_bytes()),
                entry: serde_json::from_str(value).map_err(|e| e.to_string()),
            })
        })
        .collect();
    (checkpoint, entries)
}

/// How two events' properties differ (the per-event `time` and `$insert_id` aside).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct EventDiff {
    pub added: BTreeMap<String, serde_json::Value>,
    pub removed: BTreeMap<String, serde_json::Value>,
    /// name → [before, after]
    pub changed: BTreeMap<String, [serde_json::Value; 2]>,
}

impl EventDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Properties every event has with a new value each time: not a difference worth showing.
const PER_EVENT: [&str; 2] = ["time", "$insert_id"];

/// The difference between two events' bytes (a bad event reads as having no properties).
pub fn diff_events(before: &str, after: &str) -> EventDiff {
    let properties = |bytes: &str| -> serde_json::Map<String, serde_json::Value> {
        serde_json::from_str::<serde_json::Value>(bytes)
            .ok()
            .and_then(|v| v.get("properties").and_then(|p| p.as_object()).cloned())
            .unwrap_or_default()
    };
    let (old, new) = (properties(before), properties(after));
    let mut diff = EventDiff::default();
    for (name, value) in &new {
        if PER_EVENT.contains(&name.as_str()) {
            continue;
        }
        match old.get(name) {
            None => {
                diff.added.insert(name.clone(), value.clone());
            }
            Some(was) if was != value => {
                diff.changed
                    .insert(name.clone(), [was.clone(), value.clone()]);
            }
            Some(_) => {}
        }
    }
    for (name, value) in &old {
        if !PER_EVENT.contains(&name.as_str()) && !new.contains_key(name) {
            diff.removed.insert(name.clone(), value.clone());
        }
    }
    diff
}

/// Text from the cluster (an approver, a note, an endpoint's answer) for a terminal, through
/// the one sanitiser, owned (for the views' lines).
pub fn printable(text: &str) -> String {
    crate::sanitize::text(text).into_owned()
}

#[cfg(test)]
mod tests;
