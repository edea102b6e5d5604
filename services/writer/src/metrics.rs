//! Prometheus metrics of the writer, served at `GET /metrics` on `metrics.listen`:
//! - `loadtest_writer_messages_total{kind, outcome}`: deliveries by kind (`registered`, `stats`,
//!   `committed`, `unknown`) and outcome (`accepted`, `invalid`, `bad_token`);
//! - `loadtest_writer_points_written_total`: points written to the sink;
//! - `loadtest_writer_write_duration_seconds`: time to write one batch, retries included (s);
//! - `loadtest_writer_write_retries_total`: failed write attempts that were retried;
//! - `loadtest_writer_dead_lettered_total`: messages sent to the dead-letter queue;
//! - `loadtest_writer_runs_running`: runs running now (finalizing runs not counted);
//! - `loadtest_writer_unacked_deliveries`: deliveries held unacked now (taken in since the last
//!   checkpoint);
//! - `loadtest_writer_pending_snapshots`: snapshots waiting in the runs' outboxes (InfluxDB down);
//! - `loadtest_writer_snapshots_dropped_total`: snapshots dropped from full outboxes;
//! - `loadtest_writer_points_rejected_total`: points InfluxDB rejected for good;
//! - `loadtest_writer_checkpoints_total`, `loadtest_writer_checkpoint_records_total`,
//!   `loadtest_writer_checkpoint_bytes_total`: checkpoints confirmed, records and bytes in them;
//! - `loadtest_writer_leader`: 1 while this writer holds the leader lock.

/// Serves `/metrics` and `/healthz` on `listen` until `shutdown`: the kit's server. A listen
/// address that cannot be bound is logged and the writer goes on without metrics (it must not
/// stop consuming).
pub use kit::metrics::serve;
