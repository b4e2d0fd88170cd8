//! `hodometer sim`: a simulated Seldon scheduler for demos, tests and benchmarks (SPEC 9).

pub mod faults;
pub mod population;
pub mod service;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;

use crate::config::{Checker, ConfigErrors};
use crate::proto::scheduler_server::SchedulerServer;
use faults::{Fault, Faults};
use population::{Counts, Scenario};
use service::SimScheduler;

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
}

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
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("simulated scheduler failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

impl SimArgs {
    pub fn validate(&self) -> Result<SimConfig, ConfigErrors> {
        let mut c = Checker::default();
        let listen = c.check("--listen", &self.listen, |t| {
            t.parse::<SocketAddr>()
                .map_err(|_| "expected IP:PORT, e.g. 127.0.0.1:9004".into())
        });
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
        match (listen, scenario) {
            (Some(listen), Some(scenario)) => Ok(SimConfig {
                listen,
                scenario,
                faults,
            }),
            _ => Err(ConfigErrors::default()),
        }
    }
}

/// A bound, not yet serving simulator: binding first lets callers learn the port before serving.
pub struct Sim {
    listener: TcpListener,
    scenario: Scenario,
    faults: Vec<Fault>,
}

impl Sim {
    pub async fn bind(config: SimConfig) -> Result<Sim, SimError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| SimError::Listen {
                    addr: config.listen,
                    source,
                })?;
        Ok(Sim {
            listener,
            scenario: config.scenario,
            faults: config.faults,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), SimError> {
        let faults = Arc::new(Faults::new(self.faults));
        let service = SimScheduler {
            scenario: Arc::new(self.scenario),
            faults: Arc::clone(&faults),
        };
        // Connections that a `refuse` fault drops are closed as soon as they are accepted.
        let incoming = TcpListenerStream::new(self.listener).filter(move |conn| match conn {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                !faults.refuse_connection()
            }
            Err(_) => true,
        });
        tonic::transport::Server::builder()
            .add_service(
                SchedulerServer::new(service)
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            )
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await?;
        Ok(())
    }
}
