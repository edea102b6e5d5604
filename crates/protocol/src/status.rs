//! The running set the writer publishes on the status fanout and the API serves as `isrunning`:
//! `{"running": N, "events": [{"uuid", "startedAt", "lastStatsAt", "nodes"}]}` (on the status
//! fanout each event also carries `keyId`, the registering API key's id).

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
    /// The id of the API key that registered the run (a hash prefix, never the key), from the
    /// register's envelope. The API counts a key's running runs with it and leaves it out of
    /// `isrunning`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
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
