//! What the lifecycle returns: points to write (as values), deliveries to ack, and messages to
//! publish.

use protocol::Envelope;
use uuid::Uuid;

use crate::point::Point;

/// A broker delivery tag (or any id the caller uses to ack a message).
pub type DeliveryId = u64;

/// Points for one run, and the deliveries to ack once they are written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Write {
    /// The run the points belong to.
    pub event_id: Uuid,
    /// The points, in the order they are to be written; encode them with [`crate::encode`].
    pub points: Vec<Point>,
    /// Deliveries to ack after `points` is written.
    pub acks: Vec<DeliveryId>,
}

/// What the caller must do after feeding the lifecycle a message or a tick.
#[derive(Debug, Default)]
pub struct Effects {
    /// Deliveries to ack now (superseded or carrying nothing new).
    pub ack: Vec<DeliveryId>,
    /// Writes to perform in order, each followed by its acks.
    pub writes: Vec<Write>,
    /// `event.completed` messages to publish after the writes.
    pub completed: Vec<Envelope>,
    /// Whether the running set changed (publish it).
    pub running_changed: bool,
}

impl Effects {
    pub(crate) fn merge(&mut self, other: Effects) {
        self.ack.extend(other.ack);
        self.writes.extend(other.writes);
        self.completed.extend(other.completed);
        self.running_changed |= other.running_changed;
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalStatus {
    /// Every node committed, or `commit_grace` passed after the first commit.
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
