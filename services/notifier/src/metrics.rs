//! Prometheus metrics of the notifier, served at `GET /metrics` on `metrics.listen` through the
//! kit's exporter:
//! - `loadtest_notifier_posted_total{status}`: messages Slack accepted, by run status
//!   (`committed`, `expired`, `other`);
//! - `loadtest_notifier_retried_total{cause}`: failed posts that will be retried, by cause
//!   (`rate_limited`: 429, `server_error`: 5xx or 408, `transport`: no answer);
//! - `loadtest_notifier_dead_lettered_total{cause}`: messages sent to the dead-letter queue, by
//!   cause (`rejected`: Slack refused it for good, `delivery_limit`: still failing at the
//!   delivery limit, `invalid`: not an `event.completed` message);
//! - `loadtest_notifier_post_duration_seconds`: time of one post to Slack (s).

/// Serves `/metrics` and `/healthz` on `listen` until `shutdown`: the kit's server. An address
/// that cannot be bound is logged and the notifier goes on without metrics.
pub use kit::metrics::serve;
