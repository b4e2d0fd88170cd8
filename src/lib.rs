//! hodometer: anonymous usage metrics for Seldon Core v2.
//!
//! Data flows one way: sources (`collect`) → [`metrics::Snapshot`] → [`policy::Policy`] (decided
//! once per cycle from `DO_NOT_TRACK`, the consent and the environment's level) →
//! [`payload::Event`] → `publish` and the views (`report`, `tui`). [`reporter::cycle`] is that
//! path, run by the daemon, `collect` and the demo; its [`consent::ReporterStatus`] is what the
//! inspector and `consent show` read. The commands sit on top, one
//! file each in `cmd` (with `daemon`, the headless loop they run); `sim` and `receive` are the
//! peers hodometer talks to, for demos and tests. `validate`, `logging`, `prometheus`, `metrics`,
//! `clock`, `backoff`, `redact` and `private_fs` are leaves every layer may use and that import
//! nothing above them; `collect`, `payload` and `publish` never use the commands or the views.
//! `k8s` is the one Kubernetes client module (configuration, connection, identity) below every
//! user of the API; `tls` holds the scheduler's client material, read by `tls_secret` and used by
//! `collect`.

pub mod backoff;
pub mod clock;
pub mod cmd;
pub mod collect;
pub mod config;
pub mod consent;
pub mod daemon;
pub mod extensions;
pub mod k8s;
pub mod ledger;
pub mod logging;
pub mod metrics;
pub mod output;
pub mod payload;
pub mod policy;
pub mod private_fs;
pub mod prometheus;
pub mod proto;
pub mod publish;
pub mod receive;
pub mod redact;
pub mod report;
pub mod reporter;
pub mod sanitize;
pub mod sim;
pub mod tls;
pub mod tls_secret;
pub mod tui;
pub mod validate;
