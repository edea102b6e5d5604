//! The running set the writer publishes on the status fanout and the API serves as `isrunning`:
//! `{"running": N, "events": [{"uuid", "startedAt", "lastStatsAt", "nodes"}]}`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One running run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RunningEvent {
    /// The run's uuid.
    pub uuid: Uuid,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When its last stats arrived (writer clock); `null` before the first.
    pub last_stats_at: Option<DateTime<Utc>>,
    /// Nodes seen.
    pub nodes: u32,
}

/// The running set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunningSet {
    /// Number of running runs.
    pub running: usize,
    /// The runs, oldest first.
    pub events: Vec<RunningEvent>,
}
