//! The one Kubernetes client module: where the configuration comes from (in-cluster service
//! account, kubeconfig, or one built in memory), how a client is built and bounded, and how the
//! target is described to people. Everything that talks to Kubernetes (collection, consent,
//! Secret-mode TLS, the inspector) builds its client here.

pub mod forward;

use std::path::PathBuf;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

pub mod args;

/// The namespace Seldon Core v2 installs into by default.
pub const DEFAULT_NAMESPACE: &str = "seldon-mesh";

/// Where and how to read Kubernetes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeTarget {
    /// `--kubeconfig`: this file instead of `KUBECONFIG` / `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// `--kube-context`: a kubeconfig context instead of the current one.
    pub context: Option<String>,
    /// `--namespace` / `POD_NAMESPACE`; otherwise the in-cluster or context namespace.
    pub namespace: Option<String>,
    /// Deadline for each read (a paged list counts as one read).
    pub timeout: Duration,
    /// A configuration built in memory (the demo's stand-in): used as it is, never a file and
    /// never the in-cluster service account.
    pub inline: Option<InlineKubeconfig>,
}

/// A kubeconfig held in memory. Compared by identity: two targets are the same only when they
/// share the very same configuration.
#[derive(Clone)]
pub struct InlineKubeconfig(pub std::sync::Arc<Kubeconfig>);

impl PartialEq for InlineKubeconfig {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for InlineKubeconfig {}

impl std::fmt::Debug for InlineKubeconfig {
    // The configuration holds a token: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InlineKubeconfig(..)")
    }
}

impl KubeTarget {
    /// Whether the operator named a configuration (`--kubeconfig`, `--kube-context`, or one built
    /// in memory): then it wins over the in-cluster service account.
    fn explicit(&self) -> bool {
        self.kubeconfig.is_some() || self.context.is_some() || self.inline.is_some()
    }
}

/// A client ready to read, kept by a caller that collects again and again (the inspector), so
/// the kubeconfig is read and the client built once.
#[derive(Clone)]
pub struct KubeClient {
    client: Client,
    namespace: String,
    /// The API server's URL, for people: redacted (no userinfo, no query).
    pub server: String,
}

impl KubeClient {
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The namespace this client works in (`--namespace`, in-cluster, the context's, or the
    /// default).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
}

/// What building a client gave.
pub enum KubeConnection {
    Ready(KubeClient),
    NotConfigured,
    Unusable(String),
}

/// Builds the client [`collect`] would use. `connect_timeout` shortens the wait for a connection
/// where someone watches (the inspector); `None` keeps the target's own.
pub async fn connect(target: &KubeTarget, connect_timeout: Option<Duration>) -> KubeConnection {
    crate::tls::install_crypto_provider();
    let (mut config, namespace) = match load_config(target).await {
        Ok(Some(found)) => found,
        Ok(None) => return KubeConnection::NotConfigured,
        Err(reason) => return KubeConnection::Unusable(reason),
    };
    if let Some(timeout) = connect_timeout {
        config.connect_timeout = Some(timeout);
    }
    // Shown in the header, errors and logs: never the URL's userinfo or query (a kubeconfig
    // may carry credentials there).
    let server = crate::redact::url_text(&config.cluster_url.to_string());
    match Client::try_from(config) {
        Ok(client) => KubeConnection::Ready(KubeClient {
            client,
            namespace,
            server,
        }),
        Err(error) => {
            KubeConnection::Unusable(format!("cannot build a Kubernetes client: {error}"))
        }
    }
}

/// The client [`connect`] builds and the namespace it works in, for the consent and status
/// ConfigMaps; `Err` with a reason when there is no usable configuration.
pub async fn connect_client(target: &KubeTarget) -> Result<(Client, String), String> {
    match connect(target, None).await {
        KubeConnection::Ready(KubeClient {
            client, namespace, ..
        }) => Ok((client, namespace)),
        KubeConnection::NotConfigured => Err(NOT_CONFIGURED.into()),
        KubeConnection::Unusable(reason) => Err(reason),
    }
}

/// Why there is no client when there is no configuration at all, and what to do.
pub const NOT_CONFIGURED: &str = "no Kubernetes configuration: no kubeconfig (~/.kube/config) and no in-cluster service account; point --kubeconfig or KUBECONFIG at your cluster's kubeconfig";

/// The innermost cause of an error: what actually went wrong (`Connection refused (os error
/// 111)`), not the layers that carried it (`ServiceError: client error (Connect)`).
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}

/// A request that got no answer from the API server, said as kubectl would: the server's URL
/// (credentials and query hidden) and the cause.
pub fn unreachable(server: &str, error: &kube::Error) -> String {
    let server = match crate::redact::url_text(server.trim_end_matches('/')) {
        url if url.is_empty() => String::new(),
        url => format!(" at {url}"),
    };
    match error {
        kube::Error::Api(status) => format!(
            "the Kubernetes API server{server} refused: {} {}: {}",
            status.code, status.reason, status.message
        ),
        other => format!(
            "cannot reach the Kubernetes API server{server}: {}",
            root_cause(other)
        ),
    }
}

/// Who approves: the API server's word for the caller (`SelfSubjectReview`), else the
/// kubeconfig's user name.
pub async fn approver(client: &Client, target: &KubeTarget) -> Option<String> {
    match whoami(client).await {
        Some(user) => Some(user),
        None => kubeconfig_user(target),
    }
}

/// Who the API server takes the caller for (`SelfSubjectReview`); `None` when it cannot say.
pub async fn whoami(client: &Client) -> Option<String> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let api: kube::Api<SelfSubjectReview> = kube::Api::all(client.clone());
    let review = api
        .create(
            &kube::api::PostParams::default(),
            &SelfSubjectReview::default(),
        )
        .await
        .map_err(|error| tracing::debug!(%error, "SelfSubjectReview failed"))
        .ok()?;
    review
        .status?
        .user_info?
        .username
        .filter(|name| !name.is_empty())
}

/// The user name of the kubeconfig context in use, when a kubeconfig is: who approves when the
/// API server cannot be asked.
pub fn kubeconfig_user(target: &KubeTarget) -> Option<String> {
    let kubeconfig = read_kubeconfig(target)?.ok()?;
    let context_name = target
        .context
        .clone()
        .or_else(|| kubeconfig.current_context.clone())?;
    kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .and_then(|c| c.user.clone())
        .filter(|u| !u.is_empty())
}

/// An explicit configuration first, then in-cluster, then the default kubeconfig. `Ok(None)`
/// when there is no configuration of any kind.
pub(crate) async fn load_config(target: &KubeTarget) -> Result<Option<(Config, String)>, String> {
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    if !target.explicit() && in_cluster {
        match Config::incluster() {
            Ok(mut config) => {
                apply_timeouts(&mut config, target.timeout);
                let namespace = target
                    .namespace
                    .clone()
                    .unwrap_or_else(|| config.default_namespace.clone());
                return Ok(Some((config, namespace)));
            }
            Err(error) => {
                tracing::debug!(%error, "in-cluster configuration unusable; trying kubeconfig")
            }
        }
    }
    let kubeconfig = match read_kubeconfig(target) {
        Some(Ok(kubeconfig)) => kubeconfig,
        Some(Err(reason)) => return Err(reason),
        None => {
            return match &target.context {
                Some(context) => Err(format!(
                    "context \"{context}\" does not exist: there is no kubeconfig; point --kubeconfig or KUBECONFIG at the one that has it"
                )),
                None if in_cluster => {
                    Err("in-cluster configuration is incomplete and there is no kubeconfig".into())
                }
                None => Ok(None),
            };
        }
    };
    let context = target
        .context
        .clone()
        .or(kubeconfig.current_context.clone());
    match &context {
        Some(name) if !kubeconfig.contexts.iter().any(|c| &c.name == name) => {
            return Err(if target.context.is_some() {
                format!("context \"{name}\" does not exist")
            } else {
                format!("current-context \"{name}\" does not exist in the kubeconfig")
            });
        }
        Some(_) => {}
        None => {
            return Err("the kubeconfig has no current-context: choose one with --context".into());
        }
    }
    let namespace = match &target.namespace {
        Some(namespace) => namespace.clone(),
        None => context_namespace(&kubeconfig, target.context.as_deref())
            .unwrap_or_else(|| DEFAULT_NAMESPACE.into()),
    };
    let options = KubeConfigOptions {
        context: target.context.clone(),
        ..Default::default()
    };
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| format!("kubeconfig unusable: {e}"))?;
    apply_timeouts(&mut config, target.timeout);
    Ok(Some((config, namespace)))
}

fn apply_timeouts(config: &mut Config, timeout: Duration) {
    config.connect_timeout = Some(timeout.min(Duration::from_secs(10)));
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
}

/// The kubeconfig to use: `--kubeconfig`, else `KUBECONFIG`, else `~/.kube/config`; `None` when
/// there is none at all (which means: not a Kubernetes installation).
/// Where a kubeconfig is looked for, said when the one named is not there.
const MISSING_KUBECONFIG_HINT: &str =
    " (--kubeconfig, else KUBECONFIG, else ~/.kube/config names the file)";

fn read_kubeconfig(target: &KubeTarget) -> Option<Result<Kubeconfig, String>> {
    let unusable = |e: kube::config::KubeconfigError| match e {
        kube::config::KubeconfigError::ReadConfig(error, path) => {
            let hint = if error.kind() == std::io::ErrorKind::NotFound {
                MISSING_KUBECONFIG_HINT
            } else {
                ""
            };
            format!(
                "kubeconfig {}: {}{hint}",
                path.display(),
                root_cause(&error)
            )
        }
        other => format!("kubeconfig unusable: {other}"),
    };
    if let Some(inline) = &target.inline {
        return Some(Ok(Kubeconfig::clone(&inline.0)));
    }
    if let Some(path) = &target.kubeconfig {
        // A FIFO or device would hang or feed the parser forever: only a regular file is read.
        if let Err(error) = crate::private_fs::open_regular_following(path, true) {
            // The error names the path; a missing file says where a kubeconfig is looked for.
            let hint = if error.kind() == std::io::ErrorKind::NotFound {
                MISSING_KUBECONFIG_HINT
            } else {
                ""
            };
            return Some(Err(format!("kubeconfig {error}{hint}")));
        }
        return Some(Kubeconfig::read_from(path).map_err(unusable));
    }
    let candidates: Vec<PathBuf> = match std::env::var_os("KUBECONFIG").filter(|p| !p.is_empty()) {
        Some(paths) => std::env::split_paths(&paths).collect(),
        None => std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".kube").join("config"))
            .into_iter()
            .collect(),
    };
    // kube-rs reads every existing path of KUBECONFIG: one that is a FIFO or a device would hang
    // it or feed it forever, so each is checked first, as an explicit --kubeconfig is.
    let mut exists = false;
    for path in &candidates {
        match crate::private_fs::open_regular_following(path, true) {
            Ok(_) => exists = true,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Some(Err(format!("kubeconfig {error}"))),
        }
    }
    exists.then(|| Kubeconfig::read().map_err(unusable))
}

/// Whether Kubernetes is reached through a kubeconfig (a file, or one built in memory) rather
/// than a pod's service account: then the scheduler is outside this network and is reached by a
/// port-forward (`forward`). Reads only local files.
pub fn uses_kubeconfig(target: &KubeTarget) -> bool {
    if !target.explicit() && std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return false;
    }
    read_kubeconfig(target).is_some()
}

/// The kubeconfig's context names and the one in use (`--kube-context`, else its current one),
/// for switching inside the inspector. Reads only local files.
pub fn contexts(target: &KubeTarget) -> Result<(Vec<String>, Option<String>), String> {
    match read_kubeconfig(target) {
        None => Err("there is no kubeconfig".into()),
        Some(Err(reason)) => Err(reason),
        Some(Ok(kubeconfig)) => Ok((
            kubeconfig.contexts.iter().map(|c| c.name.clone()).collect(),
            target.context.clone().or(kubeconfig.current_context),
        )),
    }
}

/// The namespaces `target`'s context may list (sorted), or why not (often: forbidden).
pub async fn list_namespaces(target: &KubeTarget) -> Result<Vec<String>, String> {
    use k8s_openapi::api::core::v1::Namespace;
    let client = match connect(target, Some(target.timeout)).await {
        KubeConnection::Ready(client) => client,
        KubeConnection::NotConfigured => return Err("no Kubernetes configuration".into()),
        KubeConnection::Unusable(reason) => return Err(reason),
    };
    let api: kube::Api<Namespace> = kube::Api::all(client.client);
    let listed = api
        .list_metadata(&kube::api::ListParams::default().limit(500))
        .await
        .map_err(|error| match error {
            kube::Error::Api(status) if status.code == 403 => {
                "forbidden: list namespaces (a ClusterRole would allow it)".to_string()
            }
            kube::Error::Api(status) => {
                format!("list namespaces: {} {}", status.code, status.message)
            }
            other => format!("list namespaces: {other}"),
        })?;
    let mut names: Vec<String> = listed
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    names.sort();
    Ok(names)
}

/// How the inspector names where Kubernetes facts come from: the kubeconfig context, in-cluster,
/// or that there is no configuration. Reads only local files.
pub fn describe_target(target: &KubeTarget) -> String {
    if !target.explicit() && std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return "in-cluster".into();
    }
    match read_kubeconfig(target) {
        None => "(no kubeconfig)".into(),
        Some(Err(reason)) => reason,
        Some(Ok(kubeconfig)) => {
            let context = match target.context.clone().or(kubeconfig.current_context) {
                Some(context) => format!("context {context}"),
                None => "(no current context)".into(),
            };
            // A kubeconfig named on purpose (`--kubeconfig`, the demo's) is named back.
            match &target.kubeconfig {
                Some(path) => format!("{context} of {}", path.display()),
                None => context,
            }
        }
    }
}

/// The namespace `target` works in, as [`connect`] would choose it, from local files only:
/// `--namespace`, else the kubeconfig context's, else Seldon's default (in a pod: the option or
/// the default; the service account's namespace file is not read here).
pub fn namespace_of(target: &KubeTarget) -> String {
    if let Some(namespace) = &target.namespace {
        return namespace.clone();
    }
    read_kubeconfig(target)
        .and_then(Result::ok)
        .and_then(|kubeconfig| context_namespace(&kubeconfig, target.context.as_deref()))
        .unwrap_or_else(|| DEFAULT_NAMESPACE.into())
}

/// The namespace the kubeconfig context names, if it names one (kube-rs would say "default").
fn context_namespace(kubeconfig: &Kubeconfig, context: Option<&str>) -> Option<String> {
    let name = context
        .map(str::to_string)
        .or(kubeconfig.current_context.clone())?;
    kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == name)?
        .context
        .as_ref()?
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
}
