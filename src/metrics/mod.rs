//! The metrics model: levels, the one table of metrics, operator-supplied extensions, and
//! snapshots of their values.

mod extension;
mod level;
mod snapshot;
mod table;

pub use extension::{EXTENSION_PREFIX, Extension, ExtensionSource, Suspicion};
pub use level::Level;
pub use snapshot::{Reading, Row, RowKind, Snapshot, Value};
pub use table::{METRIC_COUNT, METRICS, MetricDef, MetricId, Source, ValueType, markdown_table};
