//! Shared protocol of the load-test results pipeline.
//!
//! - [`stats`]: Locust-compatible stats model (`StatsEntry`), Locust's histogram rounding,
//!   exact merging and percentiles.
//! - [`latency`]: the HdrHistogram an entry may carry, the source of its percentiles.
//! - [`envelope`]: the versioned AMQP envelope (`loadtest.v1`) and its payloads, parsed from the
//!   wire DTO with `TryFrom`.
//! - [`api`]: the load-test API's HTTP bodies (register, stats, commit, problem+json), shared by
//!   the API, its clients and the OpenAPI document, with the limits they are checked against.
//! - [`token`]: event tokens (`HMAC-SHA256(secret, uuid)`) and run ids for idempotent register.
//! - [`time`]: snapshot alignment to the wall clock.

pub mod api;
pub mod envelope;
pub mod latency;
pub mod lenient;
mod packed;
pub mod payload;
pub mod response_times;
pub mod stats;
pub mod status;
pub mod time;
pub mod token;

pub use envelope::{
    routing, Body, CommitPayload, CompletedPayload, Envelope, NodeVerdict, Percentiles, RunInfo,
    ThresholdOp, ThresholdVerdict, WireEnvelope, SCHEMA,
};
pub use latency::LatencyHistogram;
pub use payload::{ErrorEntry, StatsPayload};
pub use response_times::ResponseTimes;
pub use stats::{PercentileSource, StatsEntry, AGGREGATED};
pub use status::{RunningEvent, RunningSet};
pub use token::{event_token, run_id_for_key, verify_event_token};

/// A value that broke a rule, with the JSON path of the offending field
/// (`measurement.fields.clients`, `payload.entries[3].name`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// JSON path of the offending field.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl ValidationError {
    /// An error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}
