//! `loadtest-lifecycle`: the run lifecycle of the load-test results pipeline, as a pure state
//! machine, and what it needs around it to run in one process.
//!
//! Messages and clock ticks go into a [`Lifecycle`]; [`Effects`] come out: the [`Point`]s
//! computed (values), which deliveries to ack at once, and `event.completed` messages. The points
//! also wait in each run's outbox, encoded to line protocol, until the edge writes them
//! ([`Lifecycle::batch`], then [`Lifecycle::written`] or [`Lifecycle::rejected`]), so a write
//! that fails does not stop the lifecycle: the outbox keeps them (bounded) and they are written
//! later with their own timestamps. No AMQP, no InfluxDB, no clock of its own, so its tests need
//! no broker and no sleeps. The writer service drives it from RabbitMQ into InfluxDB;
//! [`Embedded`] drives it in-process into a [`Sink`] (the [`FileSink`] for
//! `loadgen --standalone`).
//!
//! The ack rule it implements: a delivery is acked once its effect is durable — folded into a
//! run's state that a [`Checkpoint`] carries (its [`Checkpoint::covers`], acked once the edge has
//! made the records durable), or superseded by a newer cumulative stats message from the same
//! (event, node), or carrying nothing new (both in [`Effects::ack`]). A run's state is
//! checkpointed when it changes and at least every `checkpoint_refresh`, so the deliveries held
//! unacked are only those since the last checkpoint, whatever the number or length of the runs.
//! A writer killed at any instant loses nothing: the next one [restores](Lifecycle::restore) the
//! runs from their latest records, the broker redelivers what was not acked, and the usual rules
//! (sequence numbers, supersede, the orphan rule) fold the redeliveries in again. Timestamps are
//! aligned to the snapshot interval, so rewriting a point overwrites it, and the first tick after
//! a restore fills the ticks no writer took.
//!
//! Layout (modules are private; this page lists the API):
//! - `machine`: [`Lifecycle`], handling messages and ticks, finalizing runs.
//! - `checkpoint`: run state as values: [`Checkpoint`], [`Record`], [`RunState`], restore, and
//!   the outcome of writes.
//! - `pending`: each run's outbox and the [`Batch`] it is written in.
//! - `run`: a run's and its nodes' state, and the merge of the nodes' stats.
//! - `measurements`: the points of each measurement, from a run's state.
//! - `completed`: the `event.completed` payload, from the same figures as the stored summary.
//! - `effects`: [`Effects`], [`Write`], [`FinalStatus`].
//! - `point` and `line_protocol`: [`Point`] values and their encoding.
//! - `sink`: the [`Sink`] trait, [`SinkError`] and the [`FileSink`].
//! - `embedded`: [`Embedded`], lifecycle plus sink with no broker.

mod checkpoint;
mod completed;
mod effects;
mod embedded;
mod line_protocol;
mod machine;
mod measurements;
mod pending;
mod point;
mod run;
mod settings;
mod sink;

#[cfg(test)]
mod tests;

pub use checkpoint::{Checkpoint, CheckpointCover, Record, RecordRef, RunState};
pub use effects::{DeliveryId, Effects, FinalStatus, Write};
pub use embedded::Embedded;
pub use line_protocol::{encode, Backslashes};
pub use machine::Lifecycle;
pub use pending::{Batch, BatchPart};
pub use point::{FieldValue, Point};
pub use protocol::{RunningEvent, RunningSet};
pub use run::OTHER_NAME;
pub use settings::LifecycleSettings;
pub use sink::{FileSink, Sink, SinkError};
