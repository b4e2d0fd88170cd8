//! `hodometer sim`: a simulated Seldon scheduler for demos, tests and benchmarks: the
//! status streams of the real scheduler, fault injection, and a Kubernetes stand-in.

pub mod discovery;
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

use futures::FutureExt;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::validate::ConfigErrors;
use faults::{Fault, Faults};
use population::{Counts, Scenario};
use service::{Population, SimScheduler};
use wire::scheduler_server::SchedulerServer;

/// Messages can be large (model definitions); match the client's raised limit.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

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
    /// What the person (`--kubeconfig-out`'s user with `--kube-person`) may do; `None`: all.
    pub kube_person_grants: Option<Vec<kube::Grant>>,
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

/// A bound, not yet serving simulator: binding first lets callers learn the port before serving.
pub struct Sim {
    listener: TcpListener,
    kube_listener: Option<TcpListener>,
    scenario: Scenario,
    faults: Vec<Fault>,
    kube_forbid: Vec<String>,
    kube_grants: Option<Vec<kube::Grant>>,
    kube_person_grants: Option<Vec<kube::Grant>>,
    /// The mutual-TLS listener and the certificates it serves with.
    tls: Option<(TcpListener, tls::TlsFiles)>,
    /// The Kubernetes stand-in over HTTPS.
    kube_tls: Option<kube::TlsListener>,
    kube_secrets_dir: Option<PathBuf>,
    live: Option<Duration>,
    /// The scheduler pod the stand-in's port-forwards reach.
    pods: Arc<kube::SchedulerPods>,
    /// This run's tokens for the Kubernetes stand-in.
    kube_tokens: kube::SimTokens,
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
        let kube_tokens = kube::SimTokens::random();
        let kube_listener = match config.kube_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        if let (Some(path), Some(kube)) = (&config.kubeconfig_out, &kube_listener) {
            let addr = kube.local_addr().map_err(SimError::KubeServe)?;
            // It holds a token: private, and never written through a planted symlink.
            crate::private_fs::write_private(path, kube::kubeconfig(addr, &kube_tokens).as_bytes())
                .map_err(|source| SimError::Kubeconfig {
                    path: path.display().to_string(),
                    source,
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
        let pods = Arc::new(kube::SchedulerPods::new(
            listener.local_addr().ok(),
            tls.as_ref().and_then(|(l, _)| l.local_addr().ok()),
        ));
        Ok(Sim {
            pods,
            listener,
            kube_tokens,
            live: config.live,
            tls,
            kube_tls,
            kube_secrets_dir: config.kube_secrets_dir,
            kube_listener,
            scenario: config.scenario,
            faults: config.faults,
            kube_forbid: config.kube_forbid,
            kube_grants: config.kube_grants,
            kube_person_grants: config.kube_person_grants,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The scheduler pod behind the stand-in's Service: [`kube::SchedulerPods::replace`] plays a
    /// pod restart.
    pub fn scheduler_pods(&self) -> Arc<kube::SchedulerPods> {
        Arc::clone(&self.pods)
    }

    /// The mutual-TLS scheduler address, when it was asked for.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// This run's bearer tokens for the Kubernetes stand-in (in-process users such as the demo;
    /// others read them from the kubeconfig written with `--kubeconfig-out`).
    pub fn kube_tokens(&self) -> &kube::SimTokens {
        &self.kube_tokens
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
        let router = kube::router_with_pods(
            self.kube_tokens,
            &self.scenario,
            &self.kube_forbid,
            kube::Rbac {
                service_account: self.kube_grants,
                person: self.kube_person_grants,
            },
            self.kube_secrets_dir,
            self.pods,
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
