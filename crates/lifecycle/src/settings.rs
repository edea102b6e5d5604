//! The lifecycle's settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

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
}

impl Default for LifecycleSettings {
    fn default() -> Self {
        Self {
            snapshot_interval: Duration::from_secs(15),
            expire_after: Duration::from_secs(300),
            commit_grace: Duration::from_secs(60),
            max_names_per_run: 500,
        }
    }
}
