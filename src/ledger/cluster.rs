//! The ledger in the cluster: read the ConfigMap `hodometer-ledger`, append by a JSON merge
//! patch that adds one key per entry (and removes the oldest with `null`) under the
//! `resourceVersion` it was planned on, so a concurrent write is a conflict: re-read, re-chain,
//! retried, never overwritten. The reporter's handle, [`Ledger`], never stands in the way of a
//! send: what cannot be written waits (bounded) and the status says why.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use tokio::sync::Mutex;

use super::{
    ConsentRecord, DEFAULT_BUDGET, Index, LEDGER_CONFIGMAP, OutcomeRecord, Record, SendRecord,
    plan_append, sha256_hex,
};
use crate::consent::ReporterStatus;
use crate::consent::cluster::{ClusterError, api_error};
use crate::k8s::{KubeTarget, connect_client};
use crate::payload::Event;
use crate::policy::Policy;
use crate::publish::EndpointOutcome;

/// Conflicts in a row before an append gives up until the next record.
const MAX_ATTEMPTS: u32 = 5;
/// Entries kept in memory while the ledger cannot be written; beyond, the oldest are lost (and
/// counted).
const MAX_PENDING: usize = 64;

/// The ledger ConfigMap of one namespace.
#[derive(Clone)]
pub struct LedgerApi {
    configmaps: Api<ConfigMap>,
    pub namespace: String,
}

impl LedgerApi {
    pub fn new(client: Client, namespace: &str) -> LedgerApi {
        LedgerApi {
            configmaps: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
        }
    }

    pub async fn connect(target: &KubeTarget) -> Result<LedgerApi, String> {
        let (client, namespace) = connect_client(target).await?;
        Ok(LedgerApi::new(client, &namespace))
    }

    /// The ledger ConfigMap, `None` when it does not exist.
    pub async fn read(&self) -> Result<Option<ConfigMap>, ClusterError> {
        self.configmaps
            .get_opt(LEDGER_CONFIGMAP)
            .await
            .map_err(|e| api_error(e, "get", LEDGER_CONFIGMAP, &self.namespace))
    }

    /// Merges `data` (`None` removes a key) into the ledger, only if it is still at `version`.
    async fn append(
        &self,
        version: &str,
        data: &BTreeMap<String, Option<String>>,
    ) -> Result<ConfigMap, ClusterError> {
        let patch = patch_body(version, data);
        self.configmaps
            .patch(
                LEDGER_CONFIGMAP,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(|e| match e {
                kube::Error::Api(status) if status.code == 409 => ClusterError::Conflict {
                    name: LEDGER_CONFIGMAP.into(),
                    current: "newer".into(),
                },
                e => api_error(e, "patch", LEDGER_CONFIGMAP, &self.namespace),
            })
    }
}

/// The merge patch of an append: the `resourceVersion` it was planned on, and the keys.
pub fn patch_body(version: &str, data: &BTreeMap<String, Option<String>>) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"resourceVersion": version},
        "data": data,
    })
}

/// Whether the history is being kept, for the status and the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum History {
    /// Nothing to write yet in this run.
    Starting,
    Kept {
        head: String,
        entries: usize,
        dropped: u64,
        /// The size of the last merge patch sent.
        patch_bytes: usize,
    },
    NotKept {
        reason: String,
        /// Entries held in memory until the ledger can be written.
        waiting: usize,
        /// Entries that could not be held.
        lost: u64,
        /// The last head written in this run, if any.
        head: Option<String>,
    },
}

impl History {
    /// The current head, when one is known.
    pub fn head(&self) -> Option<&str> {
        match self {
            History::Kept { head, .. } => Some(head),
            History::NotKept { head, .. } => head.as_deref(),
            History::Starting => None,
        }
    }
}

impl std::fmt::Display for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            History::Starting => f.write_str("nothing recorded yet"),
            History::Kept {
                head,
                entries,
                dropped,
                ..
            } => write!(
                f,
                "kept in {LEDGER_CONFIGMAP}: head {head} ({entries} entries, {dropped} dropped before the checkpoint)"
            ),
            History::NotKept {
                reason,
                waiting,
                lost,
                ..
            } => {
                write!(
                    f,
                    "not being kept: {reason} ({waiting} entries waiting to be written"
                )?;
                if *lost > 0 {
                    write!(f, ", {lost} lost")?;
                }
                f.write_str(")")
            }
        }
    }
}

struct Writer {
    /// The ledger as last read or written: its `resourceVersion` and index. `None`: read it.
    stored: Option<(String, Index)>,
    pending: VecDeque<(String, Record)>,
    lost: u64,
    /// The last consent recorded (or waiting to be), to tell a change.
    consent: Option<ConsentRecord>,
    consent_loaded: bool,
    state: History,
}

/// The reporter's ledger: records sends and consent changes; each record is written at once
/// when the ledger can be, else held (bounded) and written with the next.
pub struct Ledger {
    api: LedgerApi,
    budget: usize,
    writer: Mutex<Writer>,
}

impl Ledger {
    pub fn new(api: LedgerApi, budget: usize) -> Ledger {
        Ledger {
            api,
            budget: if budget == 0 { DEFAULT_BUDGET } else { budget },
            writer: Mutex::new(Writer {
                stored: None,
                pending: VecDeque::new(),
                lost: 0,
                consent: None,
                consent_loaded: false,
                state: History::Starting,
            }),
        }
    }

    /// Records a send: the event's exact bytes, each endpoint's outcome (none when `cancelled`
    /// says why the publish stopped part-way), and the consent that allowed it.
    pub async fn record_send(
        &self,
        event: &Event,
        outcomes: &[EndpointOutcome],
        cancelled: Option<String>,
        policy: &Policy,
    ) -> History {
        let record = Record::Send(SendRecord {
            level: event.level.as_str().into(),
            source: policy.source.as_str().into(),
            sha256: sha256_hex(event.json.as_bytes()),
            event: event.json.clone(),
            outcomes: outcomes
                .iter()
                .map(|o| OutcomeRecord {
                    endpoint: o.endpoint.clone(),
                    ok: o.is_ok(),
                    detail: o.detail(),
                })
                .collect(),
            consent_version: policy.consent_version.clone(),
            approved_by: policy.approved_by.clone(),
            cancelled,
        });
        let mut writer = self.writer.lock().await;
        self.push(&mut writer, record);
        self.flush(&mut writer).await;
        writer.state.clone()
    }

    /// Records the consent `policy` was read from when it differs from the last one recorded.
    pub async fn observe_consent(&self, policy: &Policy) {
        let mut writer = self.writer.lock().await;
        if !writer.consent_loaded {
            // The consent recorded before this run, so a restart does not record it again.
            if writer.stored.is_none()
                && let Ok(Some(cm)) = self.api.read().await
            {
                let version = cm.metadata.resource_version.clone().unwrap_or_default();
                writer.stored = Some((version, Index::read(&cm.data.unwrap_or_default())));
            }
            if let Some((_, index)) = &writer.stored {
                writer.consent = index.last_consent.clone();
            }
            // Once: an unreadable ledger is not asked again at every consent read.
            writer.consent_loaded = true;
        }
        let Some(change) = ConsentRecord::observe(policy, writer.consent.as_ref()) else {
            return;
        };
        tracing::info!(
            change = change.change.as_str(),
            version = change.version.as_deref().unwrap_or(""),
            "consent change recorded in the history"
        );
        writer.consent = Some(change.clone());
        self.push(&mut writer, Record::Consent(change));
        self.flush(&mut writer).await;
    }

    /// Whether the history is being kept, and its head.
    pub async fn history(&self) -> History {
        self.writer.lock().await.state.clone()
    }

    /// Says in the status whether the history is kept (and why not), and its head.
    pub async fn status_into(&self, status: &mut ReporterStatus) {
        let history = self.history().await;
        status.history = Some(history.to_string());
        status.history_head = history.head().map(str::to_string);
    }

    fn push(&self, writer: &mut Writer, record: Record) {
        if writer.pending.len() >= MAX_PENDING {
            writer.pending.pop_front();
            writer.lost += 1;
        }
        let at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        writer.pending.push_back((at, record));
    }

    /// Writes what is pending; on a conflict, reads the ledger again and chains anew.
    async fn flush(&self, writer: &mut Writer) {
        let mut conflicts = 0;
        while !writer.pending.is_empty() {
            let (version, index) = match writer.stored.take() {
                Some(stored) => stored,
                None => match self.api.read().await {
                    Ok(Some(cm)) => (
                        cm.metadata.resource_version.unwrap_or_default(),
                        Index::read(&cm.data.unwrap_or_default()),
                    ),
                    Ok(None) => {
                        let reason = format!(
                            "configmaps {LEDGER_CONFIGMAP} does not exist in namespace {}: apply the manifests that create it (assets/k8s/ledger-configmap.yaml)",
                            self.api.namespace
                        );
                        return self.not_kept(writer, reason);
                    }
                    Err(error) => return self.not_kept(writer, error.to_string()),
                },
            };
            let records: Vec<(String, Record)> = writer.pending.iter().cloned().collect();
            let append = plan_append(&index, &records, self.budget);
            match self.api.append(&version, &append.data).await {
                Ok(written) => {
                    let version = written.metadata.resource_version.unwrap_or_default();
                    let index = Index::read(&written.data.unwrap_or_default());
                    if matches!(writer.state, History::NotKept { .. }) {
                        tracing::info!("the history is kept again");
                    }
                    let patch_bytes = patch_body(&version, &append.data).to_string().len();
                    tracing::debug!(
                        patch_bytes,
                        appended = append.last_seq + 1 - append.first_seq,
                        dropped = append.dropped_now,
                        ledger_bytes = index.bytes(),
                        "history appended"
                    );
                    writer.state = History::Kept {
                        head: append.head.clone(),
                        entries: index.len(),
                        dropped: index.dropped(),
                        patch_bytes,
                    };
                    writer.stored = Some((version, index));
                    writer.pending.clear();
                }
                Err(ClusterError::Conflict { .. }) if conflicts + 1 < MAX_ATTEMPTS => {
                    conflicts += 1;
                    tracing::debug!(
                        conflicts,
                        "the ledger changed while appending: reading it again"
                    );
                    tokio::time::sleep(Duration::from_millis(50 << conflicts)).await;
                }
                Err(ClusterError::Conflict { .. }) => {
                    let reason = format!(
                        "conflict: configmaps {LEDGER_CONFIGMAP} was changed by someone else {MAX_ATTEMPTS} times in a row while appending"
                    );
                    return self.not_kept(writer, reason);
                }
                Err(error) => return self.not_kept(writer, error.to_string()),
            }
        }
    }

    fn not_kept(&self, writer: &mut Writer, reason: String) {
        let head = writer.state.head().map(str::to_string);
        writer.state = History::NotKept {
            reason,
            waiting: writer.pending.len(),
            lost: writer.lost,
            head,
        };
        tracing::warn!(history = %writer.state, "the history of what is sent is not being kept; sending goes on");
    }
}
