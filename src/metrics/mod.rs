//! The metrics model: levels, the one table of metrics, and snapshots of their values.

mod level;
mod snapshot;
mod table;

pub use level::Level;
pub use snapshot::{Reading, Row, Snapshot, Value};
pub use table::{METRIC_COUNT, METRICS, MetricDef, MetricId, Source, ValueType, markdown_table};
