//! The lifecycle's settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::line_protocol::Backslashes;

/// Lifecycle settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LifecycleSettings {
    /// Time between snapshots of a running run (default 15 s); timestamps are multiples of it.
    pub snapshot_interval: Duration,
    /// A run with no message for this long is written as `expired` and dropped (default 5 min).
    pub expire_after: Duration,
    /// After the first node commits, how long to wait for the others (default 60 s).
    pub commit_grace: Duration,
    /// Distinct (method, name) pairs kept per run (default 500); later ones count under
    /// `name="(other)"`.
    pub max_names_per_run: usize,
    /// Snapshots a run keeps while they cannot be written (default 120: 30 min of 15 s
    /// snapshots); beyond it the oldest is dropped, with a warning.
    pub max_pending_snapshots_per_run: usize,
    /// Line protocol a run's waiting snapshots may take, bytes (default 8 MiB); beyond it the
    /// oldest is dropped too, with a warning. It bounds the run's checkpoint record (the broker
    /// caps a message's size).
    pub max_pending_bytes_per_run: usize,
    /// An unchanged run is checkpointed again after this long (default 60 s), so a restore
    /// finds every running run in the last `checkpoint_refresh` of the checkpoints.
    pub checkpoint_refresh: Duration,
    /// How the sink reads backslashes in tag values (default [`Backslashes::Literal`]: InfluxDB
    /// 1.x and 2.x, and the line-protocol file).
    #[serde(default)]
    pub backslashes: Backslashes,
}

impl Default for LifecycleSettings {
    fn default() -> Self {
        Self {
            snapshot_interval: Duration::from_secs(15),
            expire_after: Duration::from_secs(300),
            commit_grace: Duration::from_secs(60),
            max_names_per_run: 500,
            max_pending_snapshots_per_run: 120,
            max_pending_bytes_per_run: 8 * 1024 * 1024,
            checkpoint_refresh: Duration::from_secs(60),
            backslashes: Backslashes::Literal,
        }
    }
}
