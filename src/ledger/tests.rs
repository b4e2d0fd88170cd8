use std::collections::BTreeSet;

use super::*;
use crate::metrics::Level;

fn send(n: usize) -> Record {
    let event = format!(
        "{{\"event\":\"collect metrics\",\"properties\":{{\"token\":\"t\",\"time\":{n},\"model_count\":{}}}}}",
        n % 7
    );
    Record::Send(SendRecord {
        level: "resource".into(),
        source: "consent".into(),
        sha256: sha256_hex(event.as_bytes()),
        event,
        outcomes: vec![OutcomeRecord {
            endpoint: "http://127.0.0.1:9/".into(),
            ok: !n.is_multiple_of(3),
            detail: "ok (HTTP 200, 1 attempt)".into(),
        }],
        consent_version: Some("7".into()),
        approved_by: Some("alice".into()),
        cancelled: None,
    })
}

fn at(n: usize) -> String {
    format!("2026-12-04T10:{:02}:{:02}Z", (n / 60) % 60, n % 60)
}

/// Appends `records` to `data` as the reporter does: plan from the stored data, apply the patch.
fn append(
    data: &mut BTreeMap<String, String>,
    records: &[(String, Record)],
    budget: usize,
) -> Append {
    let planned = plan_append(&Index::read(data), records, budget);
    apply(data, &planned);
    planned
}

#[test]
fn an_empty_ledger_verifies_with_the_genesis_head() {
    let report = verify(&BTreeMap::new(), &[]);
    assert_eq!(report.broken, None);
    assert_eq!(report.head, GENESIS);
    assert_eq!(report.entries, 0);
}

#[test]
fn each_entry_names_the_hash_of_the_one_before() {
    let mut data = BTreeMap::new();
    let first = append(&mut data, &[(at(1), send(1))], DEFAULT_BUDGET);
    let second = append(&mut data, &[(at(2), send(2))], DEFAULT_BUDGET);
    assert_eq!((first.first_seq, second.first_seq), (1, 2));
    let one: Entry = serde_json::from_str(&data["entry-0000000001"]).unwrap();
    let two: Entry = serde_json::from_str(&data["entry-0000000002"]).unwrap();
    assert_eq!(one.prev, GENESIS);
    assert_eq!(two.prev, sha256_hex(data["entry-0000000001"].as_bytes()));
    assert_eq!(second.head, sha256_hex(data["entry-0000000002"].as_bytes()));
    let report = verify(&data, &[]);
    assert_eq!(report.broken, None, "{:?}", report.broken);
    assert_eq!(report.head, second.head);
    // One patch adds one key: nothing else of the object is rewritten.
    assert_eq!(second.data.len(), 1);
}

#[test]
fn thousands_of_appends_stay_within_the_budget_and_verify_across_the_checkpoint() {
    let budget = 32 * 1024;
    let mut data = BTreeMap::new();
    let mut heads = Vec::new();
    let mut biggest_patch = 0;
    for n in 1..=3000 {
        let planned = append(&mut data, &[(at(n), send(n))], budget);
        heads.push(planned.head.clone());
        let patch = serde_json::to_string(&planned.data).unwrap().len();
        biggest_patch = biggest_patch.max(patch);
        let index = Index::read(&data);
        assert!(
            index.bytes() <= budget,
            "{} > {budget} at {n}",
            index.bytes()
        );
        if n % 250 == 0 {
            let report = verify(
                &data,
                &[Pin {
                    label: "--head",
                    hash: &planned.head,
                }],
            );
            assert_eq!(report.broken, None, "after {n}: {:?}", report.broken);
            assert_eq!(report.entries as u64 + report.dropped, n as u64);
            assert_eq!(report.head, planned.head);
        }
    }
    let index = Index::read(&data);
    assert!(index.dropped() > 2500, "{}", index.dropped());
    assert!(index.len() > 10);
    // The checkpoint holds the hash of the last dropped entry, where the chain resumes.
    let checkpoint: Checkpoint = serde_json::from_str(&data[CHECKPOINT_KEY]).unwrap();
    assert_eq!(checkpoint.hash, heads[checkpoint.dropped as usize - 1]);
    let first: Entry = serde_json::from_str(&data[&entry_key(checkpoint.dropped + 1)]).unwrap();
    assert_eq!(first.prev, checkpoint.hash);
    // A patch adds an entry and removes about as many as it adds, never the whole object.
    assert!(biggest_patch < 2 * 1024, "{biggest_patch}");
    // A head recorded while its entry is kept is still in the chain; one long dropped is not.
    let recent = &heads[2990];
    assert_eq!(
        verify(
            &data,
            &[Pin {
                label: "--head",
                hash: recent
            }]
        )
        .broken,
        None
    );
    let ancient = verify(
        &data,
        &[Pin {
            label: "--head",
            hash: &heads[10],
        }],
    );
    assert_eq!(ancient.broken.map(|b| b.key), Some("--head".to_string()));
}

#[test]
fn a_batch_of_pending_records_is_chained_in_one_patch() {
    let mut data = BTreeMap::new();
    append(&mut data, &[(at(1), send(1))], DEFAULT_BUDGET);
    let batch: Vec<_> = (2..=5).map(|n| (at(n), send(n))).collect();
    let planned = append(&mut data, &batch, DEFAULT_BUDGET);
    assert_eq!((planned.first_seq, planned.last_seq), (2, 5));
    assert_eq!(verify(&data, &[]).broken, None);
    assert_eq!(verify(&data, &[]).entries, 5);
}

fn ledger_of(n: usize) -> BTreeMap<String, String> {
    let mut data = BTreeMap::new();
    for i in 1..=n {
        append(&mut data, &[(at(i), send(i))], DEFAULT_BUDGET);
    }
    data
}

#[test]
fn one_changed_character_in_an_event_names_its_entry() {
    let mut data = ledger_of(5);
    let key = entry_key(3);
    let tampered = data[&key].replacen("model_count\\\":3", "model_count\\\":4", 1);
    assert_ne!(tampered, data[&key]);
    data.insert(key.clone(), tampered);
    let broken = verify(&data, &[]).broken.expect("broken");
    assert_eq!(broken.seq, Some(3), "{broken}");
    assert!(broken.reason.contains("event bytes changed"), "{broken}");
}

#[test]
fn a_changed_field_names_the_entry_the_next_one_no_longer_matches() {
    let mut data = ledger_of(5);
    let key = entry_key(2);
    let tampered = data[&key].replacen("\"approvedBy\":\"alice\"", "\"approvedBy\":\"alicE\"", 1);
    assert_ne!(tampered, data[&key]);
    data.insert(key, tampered);
    let broken = verify(&data, &[]).broken.expect("broken");
    assert_eq!(broken.seq, Some(2), "{broken}");
    assert!(
        broken.reason.contains("changed after it was written"),
        "{broken}"
    );
}

#[test]
fn a_removed_entry_is_named() {
    let mut data = ledger_of(5);
    data.remove(&entry_key(4));
    let broken = verify(&data, &[]).broken.expect("broken");
    assert_eq!(broken.seq, Some(5), "{broken}");
    assert!(broken.reason.contains("entry 4 is missing"), "{broken}");
    // Dropping the oldest without a checkpoint shows too.
    let mut data = ledger_of(5);
    data.remove(&entry_key(1));
    let broken = verify(&data, &[]).broken.expect("broken");
    assert_eq!(broken.seq, Some(2), "{broken}");
}

#[test]
fn a_rewritten_chain_passes_alone_but_not_against_a_pinned_head() {
    let data = ledger_of(4);
    let pinned = verify(&data, &[]).head;
    // Whoever may write the ConfigMap can rebuild a consistent chain with other content.
    let mut rewritten = BTreeMap::new();
    for i in 1..=4 {
        append(&mut rewritten, &[(at(i), send(i + 1))], DEFAULT_BUDGET);
    }
    assert_eq!(verify(&rewritten, &[]).broken, None);
    let broken = verify(
        &rewritten,
        &[Pin {
            label: "--head",
            hash: &pinned,
        }],
    )
    .broken
    .expect("caught");
    assert_eq!(broken.key, "--head");
    // The genuine chain, grown since, still holds the pinned head.
    let mut grown = data.clone();
    append(&mut grown, &[(at(9), send(9))], DEFAULT_BUDGET);
    assert_eq!(
        verify(
            &grown,
            &[Pin {
                label: "--head",
                hash: &pinned
            }]
        )
        .broken,
        None
    );
}

#[test]
fn a_foreign_key_or_a_bad_checkpoint_is_reported() {
    let mut data = ledger_of(2);
    data.insert("zzz".into(), "hello".into());
    assert_eq!(verify(&data, &[]).broken.map(|b| b.key), Some("zzz".into()));
    let mut data = ledger_of(2);
    data.insert(CHECKPOINT_KEY.into(), "{".into());
    assert_eq!(
        verify(&data, &[]).broken.map(|b| b.key),
        Some(CHECKPOINT_KEY.into())
    );
}

#[test]
fn the_event_bytes_survive_the_round_trip_exactly() {
    let event = "{\"event\":\"collect metrics\",\"properties\":{\"ext.team\":\"caf\\u00e9 \\u003e \\\"q\\\"\"}}";
    let record = Record::Send(SendRecord {
        level: "cluster".into(),
        source: "environment".into(),
        event: event.into(),
        sha256: sha256_hex(event.as_bytes()),
        outcomes: Vec::new(),
        consent_version: None,
        approved_by: None,
        cancelled: None,
    });
    let mut data = BTreeMap::new();
    append(&mut data, &[(at(1), record)], DEFAULT_BUDGET);
    let (_, listed) = list(&data);
    match &listed[0].entry.as_ref().unwrap().record {
        Record::Send(send) => assert_eq!(send.event, event),
        other => panic!("{other:?}"),
    }
}

fn policy(level: Level, fields: &[&str], version: &str) -> Policy {
    Policy {
        source: Source::Consent,
        approved: Some(
            fields
                .iter()
                .map(|f| f.to_string())
                .collect::<BTreeSet<_>>(),
        ),
        consent_state: "valid",
        approved_by: Some("alice".into()),
        note: Some("ticket 7".into()),
        consent_version: Some(version.into()),
        ..Policy::level(level)
    }
}

#[test]
fn consent_changes_record_added_and_removed_fields_and_a_deletion() {
    let first = ConsentRecord::observe(&policy(Level::Cluster, &["a", "b"], "3"), None)
        .expect("a first consent is a change");
    assert_eq!(first.change, ConsentChange::Approved);
    assert_eq!(first.added, ["a", "b"]);
    assert_eq!(first.note.as_deref(), Some("ticket 7"));
    // The same version again is no change.
    assert_eq!(
        ConsentRecord::observe(&policy(Level::Cluster, &["a", "b"], "3"), Some(&first)),
        None
    );
    let second = ConsentRecord::observe(&policy(Level::Resource, &["b", "c"], "5"), Some(&first))
        .expect("changed");
    assert_eq!(
        (second.added.clone(), second.removed.clone()),
        (vec!["c".to_string()], vec!["a".to_string()])
    );
    assert_eq!(second.level.as_deref(), Some("resource"));
    let gone = Policy {
        consent_state: "absent",
        ..Policy::level(Level::Cluster)
    };
    let deleted = ConsentRecord::observe(&gone, Some(&second)).expect("deleted");
    assert_eq!(deleted.change, ConsentChange::Deleted);
    assert_eq!(deleted.removed, ["b", "c"]);
    // Deleted once is recorded once; never there is nothing to record.
    assert_eq!(ConsentRecord::observe(&gone, Some(&deleted)), None);
    assert_eq!(ConsentRecord::observe(&gone, None), None);
    // Unreadable is no deletion.
    let unreadable = Policy {
        consent_state: "unreadable",
        ..Policy::level(Level::Cluster)
    };
    assert_eq!(ConsentRecord::observe(&unreadable, Some(&second)), None);
}

#[test]
fn the_last_consent_is_found_in_the_stored_ledger() {
    let mut data = ledger_of(2);
    let consent = ConsentRecord::observe(&policy(Level::Cluster, &["a"], "9"), None).unwrap();
    append(
        &mut data,
        &[(at(3), Record::Consent(consent.clone()))],
        DEFAULT_BUDGET,
    );
    append(&mut data, &[(at(4), send(4))], DEFAULT_BUDGET);
    assert_eq!(Index::read(&data).last_consent, Some(consent));
    assert_eq!(verify(&data, &[]).broken, None);
}

#[test]
fn a_diff_names_fields_added_removed_and_changed() {
    let a =
        r#"{"event":"e","properties":{"time":1,"$insert_id":"x","model_count":3,"node_count":2}}"#;
    let b = r#"{"event":"e","properties":{"time":2,"$insert_id":"y","model_count":4,"gpu_enabled_count":0}}"#;
    let diff = diff_events(a, b);
    assert_eq!(diff.added.keys().collect::<Vec<_>>(), ["gpu_enabled_count"]);
    assert_eq!(diff.removed.keys().collect::<Vec<_>>(), ["node_count"]);
    assert_eq!(
        diff.changed["model_count"],
        [serde_json::json!(3), serde_json::json!(4)]
    );
}

#[test]
fn budgets_parse_with_units_and_bounds() {
    assert_eq!(parse_budget("256KiB"), Ok(256 * 1024));
    assert_eq!(parse_budget("65536"), Ok(65536));
    assert!(parse_budget("0.5MiB").is_err());
    assert!(parse_budget("1MiB").is_err());
    assert!(parse_budget("1KiB").is_err());
    assert!(parse_budget("12 parsecs").is_err());
}
