//! The consent and status ConfigMaps through the Kubernetes API: reads, writes with optimistic
//! concurrency, and who the API server takes the caller for.

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client};

use crate::k8s::{KubeConnection, KubeTarget};

use crate::policy::{ConsentFound, ConsentRead};

use super::{ConsentSeen, Observed, ReporterStatus, STATUS_CONFIGMAP};

/// Why a ConfigMap could not be read or written, in terms an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// RBAC refused: the verb and object are named, so the missing permission is obvious.
    #[error("forbidden: {verb} configmaps {name} (in namespace {namespace}): {message}")]
    Forbidden {
        verb: &'static str,
        name: String,
        namespace: String,
        message: String,
    },
    #[error(
        "conflict: configmaps {name} was changed by someone else since it was read (now at resourceVersion {current}); nothing was overwritten: read it again and decide"
    )]
    Conflict { name: String, current: String },
    #[error("configmaps {name} does not exist in namespace {namespace}")]
    NotFound { name: String, namespace: String },
    /// The consent ConfigMap is missing and the caller may not create it.
    #[error(
        "configmaps {name} does not exist in namespace {namespace} and you may not create it (forbidden: create configmaps: {message}): the manifests (assets/k8s/) have not been applied"
    )]
    NotApplied {
        name: String,
        namespace: String,
        message: String,
    },
    /// No answer from the API server at all: its URL and the cause, said once by the caller.
    #[error("{0}")]
    Unreachable(String),
    #[error("Kubernetes: {0}")]
    Other(String),
}

/// A refusal or failure of `verb` on ConfigMap `name`, in an operator's terms.
pub(crate) fn api_error(
    error: kube::Error,
    verb: &'static str,
    name: &str,
    namespace: &str,
) -> ClusterError {
    match error {
        kube::Error::Api(status) if status.code == 403 => ClusterError::Forbidden {
            verb,
            name: name.to_string(),
            namespace: namespace.to_string(),
            message: status.message.clone(),
        },
        kube::Error::Api(status) if status.code == 404 => ClusterError::NotFound {
            name: name.to_string(),
            namespace: namespace.to_string(),
        },
        kube::Error::Api(status) => ClusterError::Other(format!(
            "{verb} configmaps {name}: {} {}: {}",
            status.code, status.reason, status.message
        )),
        other => ClusterError::Other(format!("{verb} configmaps {name}: {other}")),
    }
}

/// The consent and status ConfigMaps of one namespace.
#[derive(Clone)]
pub struct ConsentApi {
    client: Client,
    configmaps: Api<ConfigMap>,
    pub namespace: String,
    pub consent_name: String,
    /// The API server's URL, for people (empty when built [`ConsentApi::over`] a client).
    pub server: String,
}

impl ConsentApi {
    pub async fn connect(target: &KubeTarget, consent_name: &str) -> Result<ConsentApi, String> {
        let ready = match crate::k8s::connect(target, None).await {
            KubeConnection::Ready(ready) => ready,
            KubeConnection::NotConfigured => return Err(crate::k8s::NOT_CONFIGURED.into()),
            KubeConnection::Unusable(reason) => return Err(reason),
        };
        let mut api = ConsentApi::over(
            ready.client().clone(),
            ready.namespace().to_string(),
            consent_name,
        );
        api.server = ready.server;
        Ok(api)
    }

    /// Over a client the caller keeps (the inspector's one client per context).
    pub fn over(client: Client, namespace: String, consent_name: &str) -> ConsentApi {
        ConsentApi {
            configmaps: Api::namespaced(client.clone(), &namespace),
            client,
            namespace,
            consent_name: consent_name.to_string(),
            server: String::new(),
        }
    }

    fn error(&self, error: kube::Error, verb: &'static str, name: &str) -> ClusterError {
        // No answer at all: the API server's URL and the cause, as kubectl says it.
        if matches!(error, kube::Error::HyperError(_) | kube::Error::Service(_)) {
            return ClusterError::Unreachable(crate::k8s::unreachable(&self.server, &error));
        }
        api_error(error, verb, name, &self.namespace)
    }

    /// The client, for the other ConfigMaps of the reporter (its ledger).
    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn read(&self, name: &str) -> Result<Option<ConfigMap>, ClusterError> {
        self.configmaps
            .get_opt(name)
            .await
            .map_err(|e| self.error(e, "get", name))
    }

    /// The consent ConfigMap, `None` when it does not exist.
    pub async fn read_consent(&self) -> Result<Option<ConfigMap>, ClusterError> {
        self.read(&self.consent_name).await
    }

    /// Watches the consent ConfigMap from `since` (a resourceVersion; "0" for as it is now) until
    /// it changes, for at most `timeout_secs`: the version of the change, or `None` when the watch
    /// ended first. A version too old to watch from (410 Gone) is an error, as is a refusal.
    pub async fn next_consent_change(
        &self,
        since: &str,
        timeout_secs: u32,
    ) -> Result<Option<String>, ClusterError> {
        let name = &self.consent_name;
        let params = WatchParams::default()
            .fields(&format!("metadata.name={name}"))
            .timeout(timeout_secs);
        let events = self
            .configmaps
            .watch(&params, since)
            .await
            .map_err(|e| self.error(e, "watch", name))?;
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            match event.map_err(|e| self.error(e, "watch", name))? {
                WatchEvent::Added(cm) | WatchEvent::Modified(cm) | WatchEvent::Deleted(cm) => {
                    return Ok(Some(cm.metadata.resource_version.unwrap_or_default()));
                }
                WatchEvent::Bookmark(_) => {}
                WatchEvent::Error(status) => {
                    return Err(self.error(kube::Error::Api(status), "watch", name));
                }
            }
        }
        Ok(None)
    }

    /// The daemon's status ConfigMap, `None` when it does not exist.
    pub async fn read_status(&self) -> Result<Option<ConfigMap>, ClusterError> {
        self.read(STATUS_CONFIGMAP).await
    }

    /// Writes the consent over the version the writer saw when deciding: replaced only if it is
    /// still at `seen_version`, created only if it still does not exist (`None`). Anything else
    /// is someone else's change: [`ClusterError::Conflict`], never a silent overwrite.
    pub async fn write_consent(
        &self,
        data: BTreeMap<String, String>,
        seen_version: Option<&str>,
    ) -> Result<ConfigMap, ClusterError> {
        match seen_version {
            Some(version) => self.update_consent(data, version).await,
            None => match self.create_consent(data).await {
                Err(ClusterError::Forbidden { message, .. }) => Err(ClusterError::NotApplied {
                    name: self.consent_name.clone(),
                    namespace: self.namespace.clone(),
                    message,
                }),
                other => other,
            },
        }
    }

    /// Replaces the consent's data, only if it is still at `resource_version`.
    async fn update_consent(
        &self,
        data: BTreeMap<String, String>,
        resource_version: &str,
    ) -> Result<ConfigMap, ClusterError> {
        let name = self.consent_name.clone();
        let object = self.consent_object(data, Some(resource_version.to_string()));
        match self
            .configmaps
            .replace(&name, &PostParams::default(), &object)
            .await
        {
            Ok(written) => Ok(written),
            Err(kube::Error::Api(status)) if status.code == 404 => Err(ClusterError::Conflict {
                name,
                current: "none: the ConfigMap no longer exists".into(),
            }),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let current = match self.read_consent().await {
                    Ok(Some(cm)) => cm.metadata.resource_version.unwrap_or_default(),
                    _ => "unknown".into(),
                };
                Err(ClusterError::Conflict { name, current })
            }
            Err(e) => Err(self.error(e, "update", &name)),
        }
    }

    /// Creates the consent ConfigMap (where the manifests were not applied and the caller may).
    async fn create_consent(
        &self,
        data: BTreeMap<String, String>,
    ) -> Result<ConfigMap, ClusterError> {
        let object = self.consent_object(data, None);
        self.configmaps
            .create(&PostParams::default(), &object)
            .await
            .map_err(|e| match e {
                kube::Error::Api(status) if status.code == 409 => ClusterError::Conflict {
                    name: self.consent_name.clone(),
                    current: "just created by someone else".into(),
                },
                e => self.error(e, "create", &self.consent_name),
            })
    }

    fn consent_object(
        &self,
        data: BTreeMap<String, String>,
        resource_version: Option<String>,
    ) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(self.consent_name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/name".to_string(),
                    "hodometer".to_string(),
                )])),
                resource_version,
                ..ObjectMeta::default()
            },
            data: Some(data),
            ..ConfigMap::default()
        }
    }

    /// The consent as a policy reads it: what was found, or why it could not be read.
    pub async fn read_consent_policy(&self) -> ConsentRead {
        match self.read_consent().await {
            Ok(found) => ConsentRead::Found(ConsentFound::from_read(found.map(|cm| {
                (
                    cm.data.unwrap_or_default(),
                    cm.metadata.resource_version.unwrap_or_default(),
                )
            }))),
            Err(error) => ConsentRead::Unreadable {
                forbidden: matches!(error, ClusterError::Forbidden { .. }),
                error: error.to_string(),
            },
        }
    }

    /// The reporter's status, typed: `None` when the ConfigMap does not exist.
    pub async fn read_reporter_status(&self) -> Result<Option<ReporterStatus>, ClusterError> {
        Ok(self
            .read_status()
            .await?
            .map(|cm| ReporterStatus::from_data(&cm.data.unwrap_or_default())))
    }

    /// Writes `status` whole over the status ConfigMap's data (an update of the object as read,
    /// so its labels and annotations stay): no key of an older status survives. Never creates
    /// it: the manifests do, so the daemon needs no `create` permission. A write that races
    /// another is tried again once over the newer version.
    pub async fn replace_status(&self, status: &ReporterStatus) -> Result<(), ClusterError> {
        for _ in 0..2 {
            let Some(mut current) = self.read_status().await? else {
                return Err(ClusterError::NotFound {
                    name: STATUS_CONFIGMAP.into(),
                    namespace: self.namespace.clone(),
                });
            };
            current.data = Some(status.to_data());
            current.binary_data = None;
            match self
                .configmaps
                .replace(STATUS_CONFIGMAP, &PostParams::default(), &current)
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => return Err(self.error(e, "update", STATUS_CONFIGMAP)),
            }
        }
        Err(ClusterError::Conflict {
            name: STATUS_CONFIGMAP.into(),
            current: "changed by another writer at every try: only the reporter should write it"
                .into(),
        })
    }

    /// The in-cluster reporter as the inspector shows it: its status, and the consent with the
    /// version an approval must replace.
    pub async fn observe(&self) -> Observed {
        let (consent, status) = tokio::join!(self.read_consent(), self.read_reporter_status());
        let status = status.map_err(|error| error.to_string());
        let line = super::reporter_line(
            status.as_ref().map(Option::as_ref).map_err(String::clone),
            std::time::SystemTime::now(),
        );
        let consent = match consent {
            Ok(None) => ConsentSeen::Missing,
            Ok(Some(cm)) => ConsentSeen::Found {
                resource_version: cm.metadata.resource_version.unwrap_or_default(),
                reading: super::parse(&cm.data.unwrap_or_default()),
            },
            Err(error) => ConsentSeen::Unreadable(error.to_string()),
        };
        Observed {
            line,
            status: status.ok().flatten(),
            consent,
            consent_configmap: format!("{} in {}", self.consent_name, self.namespace),
        }
    }

    /// Who approves: the API server's word for the caller, else the kubeconfig's user name.
    pub async fn approver(&self, target: &KubeTarget) -> Option<String> {
        crate::k8s::approver(&self.client, target).await
    }
}
