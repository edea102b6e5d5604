//! Helpers for the end-to-end tests: build and start the real binaries, a counting HTTP target,
//! a stand-in Slack webhook, and read InfluxDB 1.x (InfluxQL) and VictoriaMetrics
//! (`/api/v1/export`) back.
//!
//! Every test uses its own exchange (so its own queues) and its own database or event ids, so
//! tests never see each other. A missing service fails loudly with the command that starts it.
//!
//! Layout (everything is re-exported here, so tests `use loadtest_e2e::*`):
//! - [`process`]: building the binaries, child processes ([`Proc`]), ports, required services.
//! - [`stack`]: one test's API and writers ([`Stack`]) and the writer settings.
//! - [`target`]: counting HTTP targets.
//! - [`influx`]: InfluxDB 1.x reads and writes, waiting for a run's status or summary.
//! - [`victoria_metrics`]: the VictoriaMetrics address and its `/api/v1/export` ([`export`]).
//! - [`amqp`]: direct RabbitMQ access (publish, dead letters, queue counts).
//! - [`nodes`]: private RabbitMQ and InfluxDB instances a test may stop.
//! - [`compose`]: the stack tests' `docker-compose` project ([`Compose`]) and `docker` helpers.
//! - [`loadgen`]: `loadgen` runs and its output.
//! - [`locust`]: Locust's CSV files, printed summary and the plugin's log lines.
//! - [`checks`]: whole-run assertions and the reliability table.
//! - [`raw`]: raw HTTP/1.1 clients (half-sent requests, stalled bodies) and their answers.
//! - [`wait`]: polling with a deadline.
//! - [`webhook`]: a local stand-in for a Slack incoming webhook, and readers of its messages.

pub mod amqp;
pub mod checks;
pub mod compose;
pub mod influx;
pub mod loadgen;
pub mod locust;
pub mod nodes;
pub mod process;
pub mod raw;
pub mod stack;
pub mod target;
pub mod victoria_metrics;
pub mod wait;
pub mod webhook;

pub use amqp::*;
pub use checks::*;
pub use compose::*;
pub use influx::*;
pub use loadgen::*;
pub use locust::*;
pub use nodes::*;
pub use process::*;
pub use raw::*;
pub use stack::*;
pub use target::*;
pub use victoria_metrics::*;
pub use wait::*;
pub use webhook::*;
