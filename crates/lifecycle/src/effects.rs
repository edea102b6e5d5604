//! What the lifecycle returns: points computed (as values), deliveries to ack, and messages to
//! publish.

use protocol::Envelope;
use uuid::Uuid;

use crate::point::Point;

/// A broker delivery tag (or any id the caller uses to ack a message).
pub type DeliveryId = u64;

/// Points computed for one run. They are in the run's outbox too, encoded, until they are
/// written: see [`crate::Lifecycle::batch`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Write {
    /// The run the points belong to.
    pub event_id: Uuid,
    /// The points, in the order they are to be written.
    pub points: Vec<Point>,
}

/// What the caller must do after feeding the lifecycle a message, a tick, or a write's outcome.
#[derive(Debug, Default)]
pub struct Effects {
    /// Deliveries to ack now (superseded, or carrying nothing new).
    pub ack: Vec<DeliveryId>,
    /// Points computed by this call (also queued in the runs' outboxes).
    pub writes: Vec<Write>,
    /// `event.completed` messages to publish: runs whose final record is written.
    pub completed: Vec<Envelope>,
    /// Whether the running set changed (publish it).
    pub running_changed: bool,
    /// Snapshots dropped from full outboxes by this call (see
    /// `max_pending_snapshots_per_run`).
    pub dropped_snapshots: u64,
}

impl Effects {
    pub(crate) fn merge(&mut self, other: Effects) {
        self.ack.extend(other.ack);
        self.writes.extend(other.writes);
        self.completed.extend(other.completed);
        self.running_changed |= other.running_changed;
        self.dropped_snapshots += other.dropped_snapshots;
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalStatus {
    /// Every node committed, or `commit_grace` passed after the first commit with no message
    /// from the run since.
    Committed,
    /// No message came within `expire_after`.
    Expired,
}

impl FinalStatus {
    /// The `status` field of the `loadtest_event` point and of the `event.completed` payload:
    /// `committed` or `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            FinalStatus::Committed => "committed",
            FinalStatus::Expired => "expired",
        }
    }
}
