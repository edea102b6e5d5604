//! Each run's outbox: the points computed and not written yet, already encoded to line protocol,
//! and the [`Batch`] the edge writes them in.
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

use crate::effects::{Effects, Write};
use crate::line_protocol::{encode, Backslashes};
use crate::point::Point;
use crate::run::Run;

/// How many snapshots, and how many bytes of them, an outbox keeps, and the sink's dialect its
/// line protocol is encoded in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bound {
    pub(crate) snapshots: usize,
    pub(crate) bytes: usize,
    pub(crate) dialect: Backslashes,
}

/// What an outbox item carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum PendingKind {
    /// The `running` event point.
    Event,
    /// A snapshot (its `loadtest_snapshot` and `loadtest_request` points).
    Snapshot,
    /// The final record (final snapshot, summaries, errors, thresholds, final status).
    Final,
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

impl Run {
    /// Puts `points` in the outbox as one item of `kind` at `timestamp`, and lists them in
    /// `fx.writes`. Beyond `bound` (snapshots, or their bytes), the oldest snapshot is dropped
    /// (counted in `fx.dropped_snapshots`, with a warning on the first drop and every 100th); the
    /// newest is always kept.
    pub(crate) fn queue(
        &mut self,
        id: Uuid,
        kind: PendingKind,
        timestamp: i64,
        points: Vec<Point>,
        bound: Bound,
        fx: &mut Effects,
    ) {
        let mut lines = Vec::new();
        let count = encode(&points, bound.dialect, &mut lines);
        if count > 0 {
            self.pending.push_back(Pending {
                seq: self.next_pending,
                kind,
                timestamp,
                // The encoder writes UTF-8 only (it is built from `str`s).
                lines: String::from_utf8_lossy(&lines).into_owned(),
                points: count,
            });
            self.next_pending += 1;
            self.dirty = true;
        }
        if !points.is_empty() {
            fx.writes.push(Write {
                event_id: id,
                points,
            });
        }
        let over = |run: &Run| {
            let (count, bytes) = run
                .pending
                .iter()
                .filter(|p| p.kind == PendingKind::Snapshot)
                .fold((0, 0), |(c, b), p| (c + 1, b + p.lines.len()));
            count > bound.snapshots.max(1) || (count > 1 && bytes > bound.bytes)
        };
        while over(self) {
            let Some(oldest) = self
                .pending
                .iter()
                .position(|p| p.kind == PendingKind::Snapshot)
            else {
                break;
            };
            self.pending.remove(oldest);
            self.dropped_snapshots += 1;
            fx.dropped_snapshots += 1;
            if self.dropped_snapshots % 100 == 1 {
                tracing::warn!(event_id = %id, dropped = self.dropped_snapshots, max_pending_snapshots_per_run = bound.snapshots, max_pending_bytes_per_run = bound.bytes, "snapshots cannot be written and the run's outbox is full; dropping the oldest");
            }
        }
    }

    /// Drops outbox snapshots at or after `ts` (the final snapshot's timestamp replaces them).
    pub(crate) fn drop_snapshots_from(&mut self, ts: i64) {
        self.pending
            .retain(|p| p.kind != PendingKind::Snapshot || p.timestamp < ts);
    }

    /// This run's outbox as a batch part; `None` when it is empty.
    pub(crate) fn batch_part(&self, id: Uuid) -> Option<BatchPart> {
        if self.pending.is_empty() {
            return None;
        }
        let mut lines = Vec::new();
        for p in &self.pending {
            lines.extend_from_slice(p.lines.as_bytes());
        }
        Some(BatchPart {
            event_id: id,
            lines,
            points: self.pending.iter().map(|p| p.points).sum(),
            final_record: self.pending.iter().any(|p| p.kind == PendingKind::Final),
            items: self.pending.iter().map(|p| p.seq).collect(),
        })
    }

    /// Removes the items of `part` from the outbox.
    pub(crate) fn remove_items(&mut self, part: &BatchPart) {
        self.pending.retain(|p| !part.items.contains(&p.seq));
        self.dirty = true;
    }
}
