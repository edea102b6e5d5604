//! What every sink shares: the run it publishes for ([`RunContext`]), the [`Sink`] trait, and
//! the task that publishes snapshots to a sink off the users' path ([`Publishing`]).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use protocol::{StatsPayload, ThresholdVerdict};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::engine::runner::Progress;
use crate::engine::stats::Stats;

/// The run a sink publishes for.
#[derive(Debug, Clone)]
pub(crate) struct RunContext {
    /// The system under test (`--host`, without a trailing `/`).
    pub(crate) target_host: String,
    /// This machine's hostname.
    pub(crate) hostname: String,
    /// This node's id (`--node-id`, or `HOSTNAME-PID`).
    pub(crate) node_id: String,
    /// When the run started.
    pub(crate) started_at: DateTime<Utc>,
}

/// Where a run's results go: the load-test API (stats and commit over HTTP or AMQP) or the
/// in-process pipeline. A sink is started (registering the run) before the users, publishes
/// cumulative snapshots while they run, and commits the final stats and verdicts at the end.
pub(crate) trait Sink: Send {
    /// The run's id (from the API's register, or the in-process pipeline's own).
    fn run_id(&self) -> Uuid;

    /// Waits until the next snapshot is due.
    fn tick(&mut self) -> BoxFuture<'_, ()>;

    /// Publishes cumulative `stats`. A failure is logged, not returned: the next snapshot
    /// supersedes this one.
    fn publish(&mut self, stats: StatsPayload) -> BoxFuture<'_, ()>;

    /// Whether a publish still running when the run ends may be abandoned (the commit
    /// supersedes it); `false` when cutting it off could leave the sink's state half-written.
    fn publish_is_cancel_safe(&self) -> bool {
        true
    }

    /// Commits the run with its final stats and threshold verdicts.
    fn commit<'a>(
        self: Box<Self>,
        stats: &'a StatsPayload,
        verdicts: &'a [ThresholdVerdict],
    ) -> BoxFuture<'a, anyhow::Result<Receipt>>;
}

/// What a commit tells the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Receipt {
    /// Printed after the summary (`Run … committed to the load-test API.`).
    pub(crate) message: String,
    /// The file the results went to, if any.
    pub(crate) output: Option<PathBuf>,
}

/// A task publishing snapshots to a sink at its pace, so a slow sink (an API retrying) never
/// stalls the users or the progress output. Stopping it hands the sink back for the commit.
pub(crate) struct Publishing {
    task: JoinHandle<Box<dyn Sink>>,
    stop: CancellationToken,
}

impl std::fmt::Debug for Publishing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publishing").finish_non_exhaustive()
    }
}

impl Publishing {
    /// Starts publishing the cumulative `stats` (with the users and state of `progress`) to
    /// `sink` whenever it says a snapshot is due.
    pub(crate) fn start(sink: Box<dyn Sink>, stats: Arc<Stats>, progress: Arc<Progress>) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(publish(sink, stats, progress, stop.clone()));
        Self { task, stop }
    }

    /// Stops publishing (abandoning a snapshot still being published, when the sink allows)
    /// and returns the sink.
    pub(crate) async fn stop(self) -> anyhow::Result<Box<dyn Sink>> {
        self.stop.cancel();
        self.task.await.context("the stats publisher failed")
    }
}

async fn publish(
    mut sink: Box<dyn Sink>,
    stats: Arc<Stats>,
    progress: Arc<Progress>,
    stop: CancellationToken,
) -> Box<dyn Sink> {
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = sink.tick() => {}
        }
        let snapshot = stats.snapshot(progress.users(), progress.state());
        if sink.publish_is_cancel_safe() {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = sink.publish(snapshot) => {}
            }
        } else {
            sink.publish(snapshot).await;
        }
    }
    sink
}
