//! Run state as values: checkpoints, restore, and the outcome of writes.
//!
//! The edge writes a [`Checkpoint`]'s records somewhere durable that a standby writer can read
//! (the writer service: a RabbitMQ stream), and acks [`Checkpoint::covers`] once every record is
//! confirmed. A new writer feeds the latest record of each run to [`Lifecycle::restore`].
//!
//! The outbox (see [`Batch`]) is written by the edge: [`Lifecycle::batch`] takes the points of
//! every run, [`Lifecycle::written`] or [`Lifecycle::rejected`] reports what became of them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::effects::{DeliveryId, Effects};
use crate::machine::{Finished, Lifecycle};
use crate::pending::{Batch, BatchPart, PendingKind};
use crate::run::Run;

/// One run's folded state, as a checkpoint carries it: its register, each node's latest
/// cumulative stats, sequence number, commit time and threshold verdicts, the run's first commit
/// and last message times, the previous snapshot (interval rates are differences from it), the
/// request names kept apart from `(other)`, its outbox (points computed and not written yet,
/// encoded as line protocol), and, when finalizing, its `event.completed` payload. Serialized
/// with serde (camelCase JSON fields); opaque otherwise.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunState(pub(crate) Run);

impl RunState {
    /// Points waiting in the run's outbox.
    pub fn pending_points(&self) -> usize {
        self.0.pending.iter().map(|p| p.points).sum()
    }

    /// Whether the run's final record is computed (it waits in the outbox to be written).
    pub fn finalizing(&self) -> bool {
        self.0.finalizing()
    }
}

/// A checkpoint record: a run's state at `at`, or its tombstone (`state: None`) once its final
/// record is written or the run is dropped. The latest record of a run wins.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// The run.
    pub event_id: Uuid,
    /// When the record was taken (the checkpointing writer's clock).
    pub at: DateTime<Utc>,
    /// The run's state; `None` for a tombstone.
    pub state: Option<RunState>,
}

/// A checkpoint record borrowed from the lifecycle ([`Lifecycle::checkpoint_each`]): it
/// serializes exactly as the [`Record`] it stands for, without a copy of the run's state.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordRef<'a> {
    /// The run.
    pub event_id: Uuid,
    /// When the record was taken.
    pub at: DateTime<Utc>,
    state: Option<&'a Run>,
}

impl RecordRef<'_> {
    /// The owned record (a copy of the run's state).
    pub fn to_record(&self) -> Record {
        Record {
            event_id: self.event_id,
            at: self.at,
            state: self.state.map(|r| RunState(r.clone())),
        }
    }
}

/// What [`Lifecycle::checkpoint_each`] returns besides the records.
#[derive(Debug, Default)]
pub struct CheckpointCover {
    /// Records given.
    pub records: usize,
    /// As [`Checkpoint::covers`].
    pub covers: Vec<DeliveryId>,
    /// As [`Checkpoint::low_water`].
    pub low_water: DateTime<Utc>,
}

/// What [`Lifecycle::checkpoint`] returns.
#[derive(Debug, Default)]
pub struct Checkpoint {
    /// Records of the runs that changed since the last checkpoint, were not checkpointed for
    /// `checkpoint_refresh`, or ended (tombstones).
    pub records: Vec<Record>,
    /// Deliveries whose effect the records carry: ack them once every record is confirmed
    /// durable (registers first).
    pub covers: Vec<DeliveryId>,
    /// Every run held has a record taken at or after this time (a restore reads from there).
    pub low_water: DateTime<Utc>,
}

impl Lifecycle {
    /// Records of the runs that changed since the last checkpoint or were not checkpointed for
    /// `checkpoint_refresh`, and tombstones of the runs that ended; the deliveries they cover.
    /// The runs count as checkpointed from now: if the records cannot be made durable, the
    /// caller must drop this lifecycle (its broker session ends, the deliveries come back).
    pub fn checkpoint(&mut self, now: DateTime<Utc>) -> Checkpoint {
        let mut records = Vec::new();
        let cover = self.checkpoint_each(now, |r| records.push(r.to_record()));
        Checkpoint {
            records,
            covers: cover.covers,
            low_water: cover.low_water,
        }
    }

    /// As [`Lifecycle::checkpoint`], handing each record to `each` as it is taken, borrowed
    /// (serialize it there: no copy of the runs' state is made, which at 10,000 runs would be
    /// hundreds of megabytes at once).
    pub fn checkpoint_each(
        &mut self,
        now: DateTime<Utc>,
        mut each: impl FnMut(&RecordRef<'_>),
    ) -> CheckpointCover {
        let mut cp = CheckpointCover {
            low_water: now,
            ..CheckpointCover::default()
        };
        let mut rest = Vec::new();
        for f in self.finished.drain(..) {
            each(&RecordRef {
                event_id: f.id,
                at: now,
                state: None,
            });
            cp.records += 1;
            cp.covers.extend(f.registers);
            rest.extend(f.rest);
        }
        let refresh = self.settings.checkpoint_refresh;
        for (id, run) in &mut self.runs {
            let due = run
                .checkpointed_at
                .is_none_or(|t| (now - t).to_std().is_ok_and(|age| age >= refresh));
            if run.dirty || due {
                let (registers, others) = run.take_deliveries();
                cp.covers.extend(registers);
                rest.extend(others);
                run.dirty = false;
                run.checkpointed_at = Some(now);
                each(&RecordRef {
                    event_id: *id,
                    at: now,
                    state: Some(run),
                });
                cp.records += 1;
            }
            if let Some(t) = run.checkpointed_at {
                cp.low_water = cp.low_water.min(t);
            }
        }
        cp.covers.extend(rest);
        cp
    }

    /// Restores runs from checkpoint records, in order (a later record of a run replaces an
    /// earlier one; a tombstone removes it). Restored runs hold no delivery: the broker
    /// redelivers what was not acked, and the usual rules fold it in again. Returns the runs held
    /// afterwards.
    pub fn restore(&mut self, records: impl IntoIterator<Item = Record>) -> usize {
        for r in records {
            match r.state {
                Some(RunState(mut run)) => {
                    run.dirty = false;
                    run.checkpointed_at = Some(r.at);
                    self.runs.insert(r.event_id, run);
                }
                None => {
                    self.runs.remove(&r.event_id);
                }
            }
        }
        self.runs.len()
    }

    /// The points of the runs' outboxes, up to about `max_bytes` of line protocol (at least one
    /// item). Empty when nothing waits. As the first of [`Lifecycle::batches`].
    pub fn batch(&self, max_bytes: usize) -> Batch {
        self.batches(max_bytes, 1).pop().unwrap_or_default()
    }

    /// Up to `count` batches of the runs' outboxes, one after another in writing order, each up
    /// to about `max_bytes` of line protocol (at least one item): disjoint, so they can be
    /// written at the same time. None when nothing waits. Each run's items go oldest first. The
    /// runs' leading items up to their next snapshot's request points come first (every run's
    /// `loadtest_snapshot` point of a tick, the run-level view a dashboard shows first, before
    /// any request point), then the rest level by level: every run's next item, then the one
    /// after, and so on.
    pub fn batches(&self, max_bytes: usize, count: usize) -> Vec<Batch> {
        let mut runs: Vec<(&Uuid, &Run)> = self
            .runs
            .iter()
            .filter(|(_, r)| !r.pending.is_empty())
            .collect();
        runs.sort_by_key(|(id, _)| *id);
        // The writing order: (run, item) pairs, each run's items in order.
        let mut order = Vec::new();
        let mut next = vec![0usize; runs.len()];
        for (i, (_, run)) in runs.iter().enumerate() {
            for _ in run
                .pending
                .iter()
                .take_while(|p| p.kind != PendingKind::SnapshotRequests)
            {
                order.push((i, next[i]));
                next[i] += 1;
            }
        }
        loop {
            let before = order.len();
            for (i, (_, run)) in runs.iter().enumerate() {
                if next[i] < run.pending.len() {
                    order.push((i, next[i]));
                    next[i] += 1;
                }
            }
            if order.len() == before {
                break;
            }
        }
        // Cut into batches by size; a run's items in one batch are a range of its outbox.
        let mut out = Vec::new();
        let mut rest = order.into_iter().peekable();
        while out.len() < count && rest.peek().is_some() {
            let mut ranges: Vec<Option<std::ops::Range<usize>>> = vec![None; runs.len()];
            let mut bytes = 0;
            while let Some(&(i, item)) = rest.peek() {
                if bytes >= max_bytes && bytes > 0 {
                    break;
                }
                bytes += runs[i].1.pending[item].lines.len().max(1);
                let range = ranges[i].get_or_insert(item..item);
                range.end = item + 1;
                rest.next();
            }
            out.push(Batch {
                parts: runs
                    .iter()
                    .zip(ranges)
                    .filter_map(|((id, run), r)| r.map(|r| run.batch_part(**id, r)))
                    .collect(),
            });
        }
        out
    }

    /// `part` was written: its points leave the run's outbox. A finalizing run whose outbox is
    /// now empty ends: its `event.completed` message is in the result, and its tombstone and
    /// remaining deliveries go with the next checkpoint.
    pub fn written(&mut self, part: &BatchPart) -> Effects {
        let Some(run) = self.runs.get_mut(&part.event_id) else {
            return Effects::default();
        };
        run.remove_items(part);
        if run.finalizing() && run.pending.is_empty() {
            return self.finish(part.event_id);
        }
        Effects::default()
    }

    /// `part` was rejected for good (the points are bad data): its points leave the run's
    /// outbox. When it carried the final record the run is dropped (its tombstone goes with the
    /// next checkpoint) and the deliveries it still held are returned, registers first, for the
    /// caller to dead-letter; otherwise the run goes on and nothing is returned.
    pub fn rejected(&mut self, part: &BatchPart) -> Vec<DeliveryId> {
        let Some(run) = self.runs.get_mut(&part.event_id) else {
            return Vec::new();
        };
        let final_record = run
            .pending
            .iter()
            .any(|p| p.kind == PendingKind::Final && part.items.contains(&p.seq));
        run.remove_items(part);
        if !final_record {
            return Vec::new();
        }
        let Some(mut run) = self.runs.remove(&part.event_id) else {
            return Vec::new();
        };
        let (mut held, rest) = run.take_deliveries();
        held.extend(rest);
        self.finished.push(Finished {
            id: part.event_id,
            registers: Vec::new(),
            rest: Vec::new(),
        });
        held
    }

    /// Snapshots waiting in outboxes, over all runs.
    pub fn pending_snapshots(&self) -> usize {
        self.runs
            .values()
            .flat_map(|r| &r.pending)
            .filter(|p| p.kind == PendingKind::Snapshot)
            .count()
    }

    /// Runs held (running, orphans and finalizing).
    pub fn runs(&self) -> usize {
        self.runs.len()
    }
}
