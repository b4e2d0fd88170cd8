//! hodometer: anonymous usage metrics for Seldon Core v2.
//!
//! Data flows one way: sources (`collect`) → [`metrics::Snapshot`] → level filter →
//! [`payload::Event`] → output. Each module only uses the ones before it.

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
pub mod tui;
