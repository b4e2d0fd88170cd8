//! `hodometer sim`: a simulated Seldon scheduler for demos, tests and benchmarks (SPEC 9).

pub mod faults;
pub mod kube;
pub mod population;
pub mod service;
pub mod tls;
pub mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use futures::FutureExt;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::validate::{Checker, ConfigErrors, parse_socket_addr};
use faults::{Fault, Faults};
use population::{Counts, Scenario};
use service::{Population, SimScheduler};
use wire::scheduler_server::SchedulerServer;

/// Messages can be large (model definitions); match the client's raised limit.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address for the scheduler's gRPC API (port 0 picks a free one; the address is printed).
    #[arg(long, default_value = "127.0.0.1:9004")]
    pub listen: String,
    /// Scenario file (JSON) describing models, servers, pipelines and experiments.
    #[arg(long, conflicts_with_all = ["models", "servers", "pipelines", "experiments"])]
    pub scenario: Option<PathBuf>,
    /// Number of generated models.
    #[arg(long)]
    pub models: Option<u64>,
    /// Number of generated servers.
    #[arg(long)]
    pub servers: Option<u64>,
    /// Number of generated pipelines.
    #[arg(long)]
    pub pipelines: Option<u64>,
    /// Number of generated experiments.
    #[arg(long)]
    pub experiments: Option<u64>,
    /// Seed for the generated population: the same seed gives the same population.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Inject a fault (repeatable): delay:RPC:MS, cut:RPC:N[:TIMES], unavailable:RPC[:TIMES],
    /// refuse:N. RPC is status, models, servers, pipelines, experiments or all.
    #[arg(long = "fault", value_name = "SPEC")]
    pub faults: Vec<String>,
    /// Also serve a read-only Kubernetes API stand-in (plain HTTP) on this address.
    #[arg(long)]
    pub kube_listen: Option<String>,
    /// Write a kubeconfig pointing at the Kubernetes stand-in to this file.
    #[arg(long, requires = "kube_listen")]
    pub kubeconfig_out: Option<PathBuf>,
    /// Make the Kubernetes stand-in answer 403 for a resource (repeatable): nodes, servers,
    /// statefulsets, deployments or version.
    #[arg(long, value_name = "RESOURCE", requires = "kube_listen")]
    pub kube_forbid: Vec<String>,
    /// Enforce RBAC on the Kubernetes stand-in: allow only what these Role/ClusterRole manifests
    /// grant (repeatable), e.g. assets/k8s/role.yaml and assets/k8s/clusterrole.yaml.
    #[arg(long, value_name = "FILE", requires = "kube_listen")]
    pub kube_rbac: Vec<PathBuf>,
    /// Also serve the Kubernetes stand-in over HTTPS on this address (needs --kube-tls-dir), as
    /// a pod reaches its API server.
    #[arg(long, value_name = "ADDR", requires = "kube_tls_dir")]
    pub kube_tls_listen: Option<String>,
    /// Generate a CA and a server certificate for localhost/127.0.0.1 into this directory for
    /// --kube-tls-listen; its ca.crt is what a pod finds at
    /// /var/run/secrets/kubernetes.io/serviceaccount/ca.crt.
    #[arg(long, value_name = "DIR", requires = "kube_tls_listen")]
    pub kube_tls_dir: Option<PathBuf>,
    /// Serve Secrets in the Seldon namespace from this directory: each subdirectory is a Secret,
    /// each file in it a data key. Read on every request, so rewriting a file rotates it.
    #[arg(long, value_name = "DIR")]
    pub kube_secrets_dir: Option<PathBuf>,
    /// Change the population every few seconds (models deleted and restored, experiments
    /// started and stopped), so the inspector has something to show.
    #[arg(long)]
    pub live: bool,
    /// Also serve the scheduler over mutual TLS on this address (needs --tls-dir).
    #[arg(long, requires = "tls_dir")]
    pub tls_listen: Option<String>,
    /// Generate a CA, a server and a client certificate into this directory for --tls-listen.
    #[arg(long, requires = "tls_listen")]
    pub tls_dir: Option<PathBuf>,
}

const FORBIDDABLE: [&str; 5] = ["nodes", "servers", "statefulsets", "deployments", "version"];

/// The population `hodometer sim` serves when given neither a scenario nor counts.
pub const DEFAULT_COUNTS: Counts = Counts {
    models: 24,
    servers: 4,
    pipelines: 6,
    experiments: 3,
};

/// A validated simulator configuration.
pub struct SimConfig {
    pub listen: SocketAddr,
    pub scenario: Scenario,
    pub faults: Vec<Fault>,
    pub kube_listen: Option<SocketAddr>,
    pub kubeconfig_out: Option<PathBuf>,
    pub kube_forbid: Vec<String>,
    /// `None`: every read allowed (unless forbidden).
    pub kube_grants: Option<Vec<kube::Grant>>,
    /// Mutual-TLS address and the directory its certificates are generated into.
    pub tls: Option<(SocketAddr, PathBuf)>,
    /// The Kubernetes stand-in's HTTPS address and the directory its certificates go to.
    pub kube_tls: Option<(SocketAddr, PathBuf)>,
    /// Where the Kubernetes stand-in's Secrets live.
    pub kube_secrets_dir: Option<PathBuf>,
    /// `--live`: how often the population changes.
    pub live: Option<Duration>,
}

/// How often `--live` changes the population.
pub const LIVE_EVERY: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot write the kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: std::io::Error,
    },
    #[error("Kubernetes stand-in failed: {0}")]
    KubeServe(std::io::Error),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("simulated scheduler failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

impl SimArgs {
    pub fn validate(&self) -> Result<SimConfig, ConfigErrors> {
        let mut c = Checker::default();
        let listen = c.check("--listen", &self.listen, parse_socket_addr);
        let kube_listen = match &self.kube_listen {
            Some(text) => c.check("--kube-listen", text, parse_socket_addr).map(Some),
            None => Some(None),
        };
        let tls_listen = match &self.tls_listen {
            Some(text) => c.check("--tls-listen", text, parse_socket_addr),
            None => None,
        };
        let kube_tls_listen = match &self.kube_tls_listen {
            Some(text) => c.check("--kube-tls-listen", text, parse_socket_addr),
            None => None,
        };
        for resource in &self.kube_forbid {
            c.check("--kube-forbid", resource, |r| {
                if FORBIDDABLE.contains(&r) {
                    Ok(())
                } else {
                    Err(format!("expected one of {}", FORBIDDABLE.join(", ")))
                }
            });
        }
        let mut grants = Vec::new();
        for path in &self.kube_rbac {
            if let Some(more) = c.check("--kube-rbac", &path.display().to_string(), |_| {
                kube::load_grants(path)
            }) {
                grants.extend(more);
            }
        }
        let faults: Vec<Fault> = self
            .faults
            .iter()
            .filter_map(|spec| c.check("--fault", spec, Fault::parse))
            .collect();
        let scenario = match &self.scenario {
            Some(path) => c.check("--scenario", &path.display().to_string(), |_| {
                Scenario::load(path).map_err(|e| e.to_string())
            }),
            None => {
                let counts = Counts {
                    models: self.models.unwrap_or(DEFAULT_COUNTS.models),
                    servers: self.servers.unwrap_or(DEFAULT_COUNTS.servers),
                    pipelines: self.pipelines.unwrap_or(DEFAULT_COUNTS.pipelines),
                    experiments: self.experiments.unwrap_or(DEFAULT_COUNTS.experiments),
                };
                Some(Scenario::generate(counts, self.seed))
            }
        };
        c.finish()?;
        match (listen, scenario, kube_listen) {
            (Some(listen), Some(scenario), Some(kube_listen)) => Ok(SimConfig {
                listen,
                scenario,
                faults,
                kube_listen,
                kubeconfig_out: self.kubeconfig_out.clone(),
                kube_forbid: self.kube_forbid.clone(),
                kube_grants: (!self.kube_rbac.is_empty()).then_some(grants),
                tls: tls_listen.zip(self.tls_dir.clone()),
                kube_tls: kube_tls_listen.zip(self.kube_tls_dir.clone()),
                kube_secrets_dir: self.kube_secrets_dir.clone(),
                live: self.live.then_some(LIVE_EVERY),
            }),
            _ => Err(ConfigErrors::default()),
        }
    }
}

/// A bound, not yet serving simulator: binding first lets callers learn the port before serving.
pub struct Sim {
    listener: TcpListener,
    kube_listener: Option<TcpListener>,
    scenario: Scenario,
    faults: Vec<Fault>,
    kube_forbid: Vec<String>,
    kube_grants: Option<Vec<kube::Grant>>,
    /// The mutual-TLS listener and the certificates it serves with.
    tls: Option<(TcpListener, tls::TlsFiles)>,
    /// The Kubernetes stand-in over HTTPS.
    kube_tls: Option<kube::TlsListener>,
    kube_secrets_dir: Option<PathBuf>,
    live: Option<Duration>,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, SimError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| SimError::Listen { addr, source })
}

impl Sim {
    /// Binds the scheduler (and Kubernetes stand-in) ports and writes the kubeconfig, so it
    /// names the real port even when port 0 was asked for.
    pub async fn bind(config: SimConfig) -> Result<Sim, SimError> {
        let listener = bind(config.listen).await?;
        let kube_listener = match config.kube_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        if let (Some(path), Some(kube)) = (&config.kubeconfig_out, &kube_listener) {
            let addr = kube.local_addr().map_err(SimError::KubeServe)?;
            std::fs::write(path, kube::kubeconfig(addr)).map_err(|source| {
                SimError::Kubeconfig {
                    path: path.display().to_string(),
                    source,
                }
            })?;
        }
        let tls = match config.tls {
            Some((addr, dir)) => Some((bind(addr).await?, tls::generate(&dir)?)),
            None => None,
        };
        let kube_tls = match config.kube_tls {
            Some((addr, dir)) => Some(kube::TlsListener::new(
                bind(addr).await?,
                &tls::generate(&dir)?,
            )?),
            None => None,
        };
        Ok(Sim {
            listener,
            live: config.live,
            tls,
            kube_tls,
            kube_secrets_dir: config.kube_secrets_dir,
            kube_listener,
            scenario: config.scenario,
            faults: config.faults,
            kube_forbid: config.kube_forbid,
            kube_grants: config.kube_grants,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The mutual-TLS scheduler address, when it was asked for.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// The Kubernetes stand-in's address, when it was asked for.
    pub fn kube_addr(&self) -> Option<SocketAddr> {
        self.kube_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The Kubernetes stand-in's HTTPS address, when it was asked for.
    pub fn kube_tls_addr(&self) -> Option<SocketAddr> {
        use axum::serve::Listener;
        self.kube_tls.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), SimError> {
        let shutdown = shutdown.shared();
        let router = kube::router(
            &self.scenario,
            &self.kube_forbid,
            self.kube_grants,
            self.kube_secrets_dir,
        );
        let kube = async {
            let (plain, tls) = tokio::join!(
                serve_kube(self.kube_listener, router.clone(), shutdown.clone()),
                serve_kube(self.kube_tls, router, shutdown.clone()),
            );
            plain.and(tls)
        };
        let base = self.scenario.clone();
        let population = Arc::new(Population::new(self.scenario));
        // Stopped below, once the servers have shut down.
        let live = self.live.map(|every| {
            let population = Arc::clone(&population);
            tokio::spawn(async move {
                for step in 1.. {
                    tokio::time::sleep(every).await;
                    population.replace(base.evolve(step));
                }
            })
        });
        let faults = Arc::new(Faults::new(self.faults));
        let plain = serve_scheduler(self.listener, None, &population, &faults, shutdown.clone());
        let tls = async {
            match self.tls {
                Some((listener, files)) => {
                    serve_scheduler(
                        listener,
                        Some(files),
                        &population,
                        &faults,
                        shutdown.clone(),
                    )
                    .await
                }
                None => Ok(()),
            }
        };
        let (kube, plain, tls) = tokio::join!(kube, plain, tls);
        if let Some(live) = live {
            live.abort();
        }
        kube.and(plain).and(tls)
    }
}

/// Serves the Kubernetes stand-in on `listener` (plain or HTTPS), when there is one.
async fn serve_kube<L>(
    listener: Option<L>,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SimError>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    match listener {
        Some(listener) => axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(SimError::KubeServe),
        None => Ok(()),
    }
}

/// Serves the scheduler API on `listener`, over mutual TLS when `tls` is given. Both listeners
/// share one population and one set of fault counters, like one scheduler with two ports.
async fn serve_scheduler(
    listener: TcpListener,
    tls: Option<tls::TlsFiles>,
    population: &Arc<Population>,
    faults: &Arc<Faults>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), SimError> {
    let service = SimScheduler {
        population: Arc::clone(population),
        faults: Arc::clone(faults),
    };
    let refuse = Arc::clone(faults);
    // Connections that a `refuse` fault drops are closed as soon as they are accepted.
    let incoming = TcpListenerStream::new(listener).filter(move |conn| match conn {
        Ok(stream) => {
            let _ = stream.set_nodelay(true);
            !refuse.refuse_connection()
        }
        Err(_) => true,
    });
    let mut builder = tonic::transport::Server::builder();
    if let Some(files) = tls {
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|source| tls::TlsError::Read {
                path: path.display().to_string(),
                source,
            })
        };
        let identity = Identity::from_pem(read(&files.server_cert)?, read(&files.server_key)?);
        let config = ServerTlsConfig::new()
            .identity(identity)
            .client_ca_root(Certificate::from_pem(read(&files.ca)?));
        builder = builder.tls_config(config)?;
    }
    builder
        .add_service(
            SchedulerServer::new(service)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
