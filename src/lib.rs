//! hodometer: anonymous usage metrics for Seldon Core v2.
//!
//! Data flows one way: sources (`collect`) → [`metrics::Snapshot`] → level filter →
//! [`payload::Event`] → `publish` and the views (`report`, `tui`). The commands sit on top
//! (`daemon`, `demo`, `cli`); `sim` and `receive` are the peers hodometer talks to, for demos and
//! tests. `validate`, `prometheus` and `metrics` are leaves every layer may use; `collect`,
//! `payload` and `publish` never use the commands or the views.

pub mod cli;
pub mod collect;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod logging;
pub mod metrics;
pub mod payload;
pub mod prometheus;
pub mod proto;
pub mod publish;
pub mod receive;
pub mod report;
pub mod sim;
pub mod tls;
pub mod tls_secret;
pub mod tui;
pub mod validate;
