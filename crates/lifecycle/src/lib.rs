//! `loadtest-lifecycle`: the run lifecycle of the load-test results pipeline, as a pure state
//! machine, and what it needs around it to run in one process.
//!
//! Messages and clock ticks go into a [`Lifecycle`]; [`Effects`] come out: [`Point`]s to write
//! (values, encoded to line protocol at the edge with [`encode`]), and which deliveries to ack at
//! once or after the write. No AMQP, no InfluxDB, no clock of its own, so its tests need no
//! broker and no sleeps. The writer service drives it from RabbitMQ into InfluxDB;
//! [`Embedded`] drives it in-process into a [`Sink`] (the [`FileSink`] for
//! `loadgen --standalone`).
//!
//! The ack rule it implements: a delivery is acked only when what it carries is written (it is
//! in a [`Write`]'s `acks`), or when a newer cumulative stats message from the same
//! (event, node) superseded it (it is in [`Effects::ack`]). A run's `registered` delivery and each
//! node's latest stats and commit are held until the run's final record is written, so a writer
//! killed at any instant loses nothing: the broker redelivers them to the next writer, which
//! rebuilds the run from them. Timestamps are aligned to the snapshot interval, so rebuilding and
//! rewriting overwrites the same points.
//!
//! Layout (modules are private; this page lists the API):
//! - `machine`: [`Lifecycle`], handling messages and ticks, finalizing runs.
//! - `run`: a run's and its nodes' state, and the merge of the nodes' stats.
//! - `measurements`: the points of each measurement, from a run's state.
//! - `effects`: [`Effects`], [`Write`], [`FinalStatus`].
//! - `point` and `line_protocol`: [`Point`] values and their encoding.
//! - `sink`: the [`Sink`] trait, [`SinkError`] and the [`FileSink`].
//! - `embedded`: [`Embedded`], lifecycle plus sink with no broker.

mod effects;
mod embedded;
mod line_protocol;
mod machine;
mod measurements;
mod point;
mod run;
mod settings;
mod sink;

#[cfg(test)]
mod tests;

pub use effects::{DeliveryId, Effects, FinalStatus, Write};
pub use embedded::Embedded;
pub use line_protocol::encode;
pub use machine::Lifecycle;
pub use point::{FieldValue, Point};
pub use protocol::{RunningEvent, RunningSet};
pub use run::OTHER_NAME;
pub use settings::LifecycleSettings;
pub use sink::{FileSink, Sink, SinkError};
