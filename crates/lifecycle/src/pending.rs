//! Each run's outbox: the points computed and not written yet, already encoded to line protocol,
//! and the [`Batch`] the edge writes them in. The run's methods on its outbox (`queue`,
//! `batch_part`, …) are in [`crate::run`], which holds the items.
//!
//! A point enters the outbox when it is computed (the `running` event point on register, a
//! snapshot each tick, the final record) and leaves it when the edge reports it written
//! ([`crate::Lifecycle::written`]) or rejected for good ([`crate::Lifecycle::rejected`]). The
//! outbox is part of the run's checkpoint, so points that cannot be written during an outage
//! survive a writer's death and are written later with their own timestamps. Snapshots in an
//! outbox are bounded per run (`max_pending_snapshots_per_run` and `max_pending_bytes_per_run`):
//! the oldest is dropped first, with a warning.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::line_protocol::Backslashes;

/// How many snapshots, and how many bytes of them, an outbox keeps, and the sink's dialect its
/// line protocol is encoded in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bound {
    pub(crate) snapshots: usize,
    pub(crate) bytes: usize,
    pub(crate) dialect: Backslashes,
    /// Whether the points also go in the [`crate::Effects::writes`] (see
    /// [`crate::Lifecycle::keep_points_in_effects`]).
    pub(crate) points_in_effects: bool,
}

/// What an outbox item carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum PendingKind {
    /// The `running` event point.
    Event,
    /// A snapshot's `loadtest_snapshot` point.
    Snapshot,
    /// The same snapshot's `loadtest_request` points (one per endpoint), an item of their own so
    /// that a tick's `loadtest_snapshot` points of every run are written before any of its
    /// request points ([`crate::Lifecycle::batch`]). Dropped and replaced with its snapshot.
    SnapshotRequests,
    /// The final record (final snapshot, summaries, errors, thresholds, final status).
    Final,
}

impl PendingKind {
    /// Whether it is a snapshot's (its `loadtest_snapshot` point or its request points).
    pub(crate) fn is_snapshot(self) -> bool {
        matches!(self, PendingKind::Snapshot | PendingKind::SnapshotRequests)
    }
}

/// One outbox item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Pending {
    /// Its number in the run's outbox (identifies it in a [`BatchPart`]).
    pub(crate) seq: u64,
    pub(crate) kind: PendingKind,
    /// The snapshot's aligned timestamp, Unix ns (the point's own for the others).
    pub(crate) timestamp: i64,
    /// Line protocol, newline-terminated.
    pub(crate) lines: String,
    /// Points in `lines`.
    pub(crate) points: usize,
}

/// The points of one run in a [`Batch`].
#[derive(Debug, Clone, PartialEq)]
pub struct BatchPart {
    /// The run.
    pub event_id: Uuid,
    /// Line protocol, newline-terminated, nanosecond timestamps.
    pub lines: Vec<u8>,
    /// Points in `lines`.
    pub points: usize,
    /// Whether the run's final record is in it.
    pub final_record: bool,
    /// The outbox items it carries.
    pub(crate) items: Vec<u64>,
}

/// Points of several runs to write in one request: each run's outbox, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// One part per run.
    pub parts: Vec<BatchPart>,
}

impl Batch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Every part's line protocol, concatenated: the body of one write.
    pub fn body(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.parts.iter().map(|p| p.lines.len()).sum());
        for p in &self.parts {
            body.extend_from_slice(&p.lines);
        }
        body
    }

    /// Points in the batch.
    pub fn points(&self) -> usize {
        self.parts.iter().map(|p| p.points).sum()
    }
}
