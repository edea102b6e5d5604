//! The embedded pipeline: the run lifecycle and a sink in one process, with no broker.
//!
//! `loadgen --standalone` and `loadgen demo` feed their own messages straight into it.

use chrono::{DateTime, Utc};
use protocol::Envelope;
use tokio_util::sync::CancellationToken;

use crate::lifecycle::{Effects, Lifecycle, LifecycleSettings};
use crate::sink::{write_with_retry, AnySink};

/// Lifecycle plus sink. Messages need no delivery tags: nothing is acked.
pub struct Embedded {
    lifecycle: Lifecycle,
    sink: AnySink,
    next_id: u64,
    points_written: usize,
    cancel: CancellationToken,
}

impl Embedded {
    /// A pipeline writing to `sink`.
    pub fn new(settings: LifecycleSettings, sink: AnySink) -> Self {
        Self {
            lifecycle: Lifecycle::new(settings),
            sink,
            next_id: 0,
            points_written: 0,
            cancel: CancellationToken::new(),
        }
    }

    /// Feeds one message and writes the points it produces.
    ///
    /// Errors: the sink rejected the points (bad data) or failed for good.
    pub async fn handle(&mut self, envelope: Envelope) -> anyhow::Result<()> {
        self.next_id += 1;
        let fx = self.lifecycle.handle(self.next_id, envelope, Utc::now());
        self.apply(fx).await
    }

    /// A snapshot tick at `now` (the lifecycle aligns the timestamp to the interval).
    pub async fn tick(&mut self, now: DateTime<Utc>) -> anyhow::Result<()> {
        let fx = self.lifecycle.tick(now);
        self.apply(fx).await
    }

    /// Points written so far.
    pub fn points_written(&self) -> usize {
        self.points_written
    }

    /// Runs still open.
    pub fn running(&self) -> usize {
        self.lifecycle.running().running
    }

    async fn apply(&mut self, fx: Effects) -> anyhow::Result<()> {
        for w in fx.writes {
            if w.lines.is_empty() {
                continue;
            }
            write_with_retry(&self.sink, &w.lines, &self.cancel)
                .await
                .map_err(|e| anyhow::anyhow!("{} ({})", e, self.sink.describe()))?;
            self.points_written += w.points;
        }
        Ok(())
    }
}
