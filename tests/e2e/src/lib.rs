//! Helpers for the end-to-end tests: build and start the real binaries, a counting HTTP target,
//! and read InfluxDB 1.x (InfluxQL) and VictoriaMetrics (`/api/v1/export`) back.
//!
//! Every test uses its own exchange (so its own queues) and its own database or event ids, so
//! tests never see each other. A missing service fails loudly with the command that starts it.
//!
//! Layout (everything is re-exported here, so tests `use loadtest_e2e::*`):
//! - [`process`]: building the binaries, child processes ([`Proc`]), ports, required services.
//! - [`stack`]: one test's API and writers ([`Stack`]) and the writer settings.
//! - [`target`]: counting HTTP targets.
//! - [`influx`]: InfluxDB 1.x reads and writes, waiting for a run's status or summary.
//! - [`victoria_metrics`]: the VictoriaMetrics address.
//! - [`amqp`]: direct RabbitMQ access (publish, dead letters, queue counts).
//! - [`nodes`]: private RabbitMQ and InfluxDB instances a test may stop.
//! - [`loadgen`]: `loadgen` runs and its output.
//! - [`checks`]: whole-run assertions and the reliability table.
//! - [`wait`]: polling with a deadline.

pub mod amqp;
pub mod checks;
pub mod influx;
pub mod loadgen;
pub mod nodes;
pub mod process;
pub mod stack;
pub mod target;
pub mod victoria_metrics;
pub mod wait;

pub use amqp::*;
pub use checks::*;
pub use influx::*;
pub use loadgen::*;
pub use nodes::*;
pub use process::*;
pub use stack::*;
pub use target::*;
pub use victoria_metrics::*;
pub use wait::*;
