//! A run's state: its register (when it has arrived), each node's latest cumulative stats, the
//! points not written yet, and the merged view of its nodes. Everything but the deliveries not
//! yet covered by a checkpoint is serializable: it is what a checkpoint record carries.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use chrono::{DateTime, Utc};
use protocol::{CompletedPayload, RunInfo, StatsEntry, StatsPayload, ThresholdVerdict, AGGREGATED};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::effects::{DeliveryId, Effects, Write};
use crate::line_protocol::encode;
use crate::pending::{BatchPart, Bound, Pending, PendingKind};
use crate::point::Point;

/// Name under which requests beyond `max_names_per_run` are counted.
pub const OTHER_NAME: &str = "(other)";

/// One node of a run. The delivery ids are the node's messages not yet covered by a
/// checkpoint (held until one is confirmed, or until superseded); they are not serialized.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NodeState {
    pub(crate) seq: u64,
    pub(crate) stats: Option<StatsPayload>,
    /// The delivery that carried `stats`, until a checkpoint covers it or a newer one
    /// supersedes it.
    #[serde(skip)]
    pub(crate) stats_delivery: Option<DeliveryId>,
    pub(crate) committed_at: Option<DateTime<Utc>>,
    /// The node's `registered` deliveries not yet covered by a checkpoint.
    #[serde(skip)]
    pub(crate) registers: Vec<DeliveryId>,
    /// The node's `committed` deliveries not yet covered by a checkpoint.
    #[serde(skip)]
    pub(crate) commits: Vec<DeliveryId>,
    /// The threshold verdicts of the node's commit.
    #[serde(default)]
    pub(crate) thresholds: Vec<ThresholdVerdict>,
    /// How far the node's clock is behind the sender's, s: the `sentAt` of the first of its
    /// stats that had a request (the API's clock, for clients of the API) minus that stats'
    /// `last_request_timestamp` (the node's clock). Added to the node's time stamps when the
    /// nodes are merged, so nodes whose clocks disagree line up on one clock; the node's own
    /// intervals do not change. `None` until the node sent a request time; 0 when the measured
    /// offset is within [`CLOCK_SKEW_TOLERANCE_S`].
    #[serde(default)]
    pub(crate) clock_offset_s: Option<f64>,
}

/// Measured clock offsets up to this many seconds either way count as 0. The measurement also
/// holds the time from the node's last request to its stats' post (up to a stats interval, and
/// broker or API delays), so a small offset is mostly that gap: moving synchronized nodes by it
/// would misalign them. Skews beyond it (a clock an hour off) are corrected to within that gap.
pub(crate) const CLOCK_SKEW_TOLERANCE_S: f64 = 30.0;

impl NodeState {
    /// Keeps `stats` as the node's latest, and measures its clock offset from the first stats
    /// with a request time, sent at `sent_at` (see [`NodeState::clock_offset_s`]).
    pub(crate) fn keep(&mut self, stats: StatsPayload, sent_at: DateTime<Utc>) {
        if self.clock_offset_s.is_none() {
            if let Some(last) = stats.total.last_request_timestamp.filter(|t| *t > 0.0) {
                let sent = sent_at.timestamp_micros() as f64 / 1e6;
                let offset = sent - last;
                self.clock_offset_s = Some(if offset.abs() <= CLOCK_SKEW_TOLERANCE_S {
                    0.0
                } else {
                    offset
                });
            }
        }
        self.stats = Some(stats);
    }
}

/// `e` with its time stamps moved by `offset_s` seconds (see [`NodeState::clock_offset_s`]).
fn on_common_clock(e: &StatsEntry, offset_s: f64) -> std::borrow::Cow<'_, StatsEntry> {
    if offset_s == 0.0 {
        return std::borrow::Cow::Borrowed(e);
    }
    let mut moved = e.clone();
    if moved.start_time > 0.0 {
        moved.start_time = (moved.start_time + offset_s).max(f64::MIN_POSITIVE);
    }
    moved.last_request_timestamp = moved
        .last_request_timestamp
        .map(|t| (t + offset_s).max(f64::MIN_POSITIVE));
    std::borrow::Cow::Owned(moved)
}

/// What the last snapshot wrote: interval rates and response times are differences from it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Previous {
    /// The snapshot's timestamp, Unix ns.
    pub(crate) timestamp: i64,
    pub(crate) total: StatsEntry,
    /// Serialized as the list of entries (each carries its (method, name) key).
    #[serde(with = "entries_by_key")]
    pub(crate) by_name: HashMap<(String, String), StatsEntry>,
}

/// A map keyed by each entry's own (method, name), as the list of its entries: JSON object keys
/// can only be strings.
mod entries_by_key {
    use std::collections::HashMap;

    use protocol::StatsEntry;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        map: &HashMap<(String, String), StatsEntry>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut entries: Vec<&StatsEntry> = map.values().collect();
        entries.sort_by(|a, b| (&a.method, &a.name).cmp(&(&b.method, &b.name)));
        s.collect_seq(entries)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<HashMap<(String, String), StatsEntry>, D::Error> {
        let entries = Vec::<StatsEntry>::deserialize(d)?;
        Ok(entries.into_iter().map(|e| (e.key(), e)).collect())
    }
}

impl Previous {
    /// What a snapshot at `timestamp` of `merged` leaves for the next one.
    pub(crate) fn of(timestamp: i64, merged: Merged) -> Self {
        Self {
            timestamp,
            total: merged.total,
            by_name: merged.by_name.into_iter().collect(),
        }
    }
}

/// A run in progress, or finalizing (its final record computed, waiting to be written).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Run {
    /// The run's metadata; `None` until its `registered` message arrives (an orphan: see the
    /// orphan rule on [`crate::Lifecycle`]).
    pub(crate) info: Option<RunInfo>,
    /// The registering API key's id, from the first register's envelope (for the API's
    /// per-key count of running runs).
    pub(crate) key_id: Option<String>,
    /// Boxed: a `BTreeMap` node holds room for 11 entries, and a run has one to a few nodes.
    pub(crate) nodes: BTreeMap<String, Box<NodeState>>,
    pub(crate) last_message_at: DateTime<Utc>,
    pub(crate) last_stats_at: Option<DateTime<Utc>>,
    pub(crate) first_commit_at: Option<DateTime<Utc>>,
    pub(crate) previous: Option<Previous>,
    /// The (method, name) pairs kept under their own name; the rest fold into [`OTHER_NAME`].
    names: BTreeSet<(String, String)>,
    overflow_warned: bool,
    /// Points computed and not written yet (the run's outbox), oldest first.
    #[serde(default)]
    pub(crate) pending: VecDeque<Pending>,
    /// The next outbox item's number.
    #[serde(default)]
    pub(crate) next_pending: u64,
    /// Snapshots dropped from a full outbox (for the warning).
    #[serde(default)]
    pub(crate) dropped_snapshots: u64,
    /// Set when the final record is computed: the run is finalizing, and once its outbox is
    /// written this is published as `event.completed` and the run ends.
    #[serde(default)]
    pub(crate) completed: Option<CompletedPayload>,
    /// The state changed since the last checkpoint.
    #[serde(skip)]
    pub(crate) dirty: bool,
    /// When the run's state was last checkpointed (for the refresh).
    #[serde(skip)]
    pub(crate) checkpointed_at: Option<DateTime<Utc>>,
}

/// Merged view of a run's nodes at one instant.
#[derive(Debug)]
pub(crate) struct Merged {
    pub(crate) user_count: u64,
    pub(crate) total: StatsEntry,
    pub(crate) by_name: BTreeMap<(String, String), StatsEntry>,
    /// Occurrences by (method, name, error).
    pub(crate) errors: BTreeMap<(String, String, String), u64>,
    /// The run's load window, s (see [`Run::load_window_s`]); `None` when unknown.
    pub(crate) window_s: Option<f64>,
}

impl Run {
    /// A run whose first message came at `now`; `info` is `None` when it was not the register.
    pub(crate) fn new(info: Option<RunInfo>, now: DateTime<Utc>) -> Self {
        Self {
            info,
            key_id: None,
            nodes: BTreeMap::new(),
            last_message_at: now,
            last_stats_at: None,
            first_commit_at: None,
            previous: None,
            names: BTreeSet::new(),
            overflow_warned: false,
            pending: VecDeque::new(),
            next_pending: 0,
            dropped_snapshots: 0,
            completed: None,
            dirty: true,
            checkpointed_at: None,
        }
    }

    /// Whether the final record is computed (and waits in the outbox).
    pub(crate) fn finalizing(&self) -> bool {
        self.completed.is_some()
    }

    pub(crate) fn has_stats(&self) -> bool {
        self.nodes.values().any(|n| n.stats.is_some())
    }

    /// Nodes that have sent stats (or a commit, which carries stats).
    pub(crate) fn nodes_with_stats(&self) -> usize {
        self.nodes.values().filter(|n| n.stats.is_some()).count()
    }

    /// Whether every node that registered or reported has committed, and at least the
    /// register's `expected_nodes` did.
    pub(crate) fn all_committed(&self) -> bool {
        let committed = self
            .nodes
            .values()
            .filter(|n| n.committed_at.is_some())
            .count();
        let expected = self
            .info
            .as_ref()
            .and_then(|i| i.expected_nodes)
            .unwrap_or(0) as usize;
        committed > 0 && committed == self.nodes.len() && committed >= expected
    }

    /// When the run ended: the latest commit's `sentAt` (deterministic from the messages, so a
    /// rebuilt run rewrites the same points), else its last message, at most `now`.
    pub(crate) fn ended_at(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.nodes
            .values()
            .filter_map(|n| n.committed_at)
            .max()
            .unwrap_or(self.last_message_at.min(now))
    }

    /// Takes every delivery the run holds (not yet covered by a checkpoint), registers first:
    /// if the writer dies halfway through acking them, what the broker redelivers carries no
    /// register, so it cannot re-open a finished run (see [`crate::Lifecycle`]'s orphan rule).
    pub(crate) fn take_deliveries(&mut self) -> (Vec<DeliveryId>, Vec<DeliveryId>) {
        let mut registers = Vec::new();
        let mut rest = Vec::new();
        for n in self.nodes.values_mut() {
            registers.append(&mut n.registers);
            rest.append(&mut n.commits);
            rest.extend(n.stats_delivery.take());
        }
        (registers, rest)
    }

    /// The run's load window, s: from the first node's first user (the smallest `start_time`)
    /// to the last node's stop (each node's `stoppedAt`, or its last request when it does not
    /// send one, as Locust). Requests/s and `duration_s` are over this span; registering, API
    /// retries and the wait for stragglers after the stop are outside it. `None` when unknown.
    ///
    /// Each node's time stamps are moved onto the common clock first
    /// ([`NodeState::clock_offset_s`]), so nodes whose clocks disagree do not stretch it.
    pub(crate) fn load_window_s(&self) -> Option<f64> {
        let stats = || {
            self.nodes.values().filter_map(|n| {
                n.stats
                    .as_ref()
                    .map(|s| (s, n.clock_offset_s.unwrap_or(0.0)))
            })
        };
        let start = stats()
            .filter(|(s, _)| s.total.start_time > 0.0)
            .map(|(s, offset)| s.total.start_time + offset)
            .fold(f64::INFINITY, f64::min);
        let end = stats()
            .filter_map(|(s, offset)| {
                s.stopped_at
                    .or(s.total.last_request_timestamp)
                    .map(|t| t + offset)
            })
            .fold(f64::NEG_INFINITY, f64::max);
        if !start.is_finite() || !end.is_finite() {
            return None;
        }
        protocol::payload::load_window_s(start, Some(end), None)
    }

    /// Merges the nodes' latest stats, folding names beyond `max_names` into [`OTHER_NAME`]
    /// (the first `max_names` pairs seen keep their names for the rest of the run).
    pub(crate) fn merged(&mut self, id: Uuid, max_names: usize) -> Merged {
        let mut merged = Merged {
            user_count: 0,
            total: StatsEntry::new("", AGGREGATED, 0.0),
            by_name: BTreeMap::new(),
            errors: BTreeMap::new(),
            window_s: self.load_window_s(),
        };
        let mut overflowed = false;
        for node in self.nodes.values() {
            let Some(stats) = &node.stats else { continue };
            let offset = node.clock_offset_s.unwrap_or(0.0);
            merged.user_count = merged.user_count.saturating_add(stats.user_count);
            merged.total.merge(&on_common_clock(&stats.total, offset));
            for entry in &stats.entries {
                let mut key = entry.key();
                if !self.names.contains(&key) {
                    if self.names.len() < max_names {
                        self.names.insert(key.clone());
                    } else {
                        overflowed = true;
                        key.1 = OTHER_NAME.to_string();
                    }
                }
                merged
                    .by_name
                    .entry(key.clone())
                    .or_insert_with(|| StatsEntry::new(key.0.clone(), key.1.clone(), 0.0))
                    .merge(&on_common_clock(entry, offset));
            }
            for e in &stats.errors {
                let name = if self.names.contains(&(e.method.clone(), e.name.clone())) {
                    e.name.clone()
                } else if self.names.len() >= max_names {
                    OTHER_NAME.to_string()
                } else {
                    e.name.clone()
                };
                let slot = merged
                    .errors
                    .entry((e.method.clone(), name, e.error.clone()))
                    .or_insert(0);
                *slot = slot.saturating_add(e.occurrences);
            }
        }
        if overflowed && !self.overflow_warned {
            self.overflow_warned = true;
            tracing::warn!(event_id = %id, max_names, "run has more request names than max_names_per_run; the rest are counted under (other)");
        }
        merged
    }
}

/// The run's outbox ([`crate::pending`]): its items live in [`Run::pending`].
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
        if !points.is_empty() && bound.points_in_effects {
            fx.writes.push(Write {
                event_id: id,
                points,
            });
        }
        let over = |run: &Run| {
            let (count, bytes) =
                run.pending
                    .iter()
                    .filter(|p| p.kind.is_snapshot())
                    .fold((0, 0), |(c, b), p| {
                        let one = usize::from(p.kind == PendingKind::Snapshot);
                        (c + one, b + p.lines.len())
                    });
            count > bound.snapshots.max(1) || (count > 1 && bytes > bound.bytes)
        };
        while over(self) {
            let Some(oldest) = self
                .pending
                .iter()
                .find(|p| p.kind == PendingKind::Snapshot)
                .map(|p| p.timestamp)
            else {
                break;
            };
            self.pending
                .retain(|p| !(p.kind.is_snapshot() && p.timestamp == oldest));
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
            .retain(|p| !p.kind.is_snapshot() || p.timestamp < ts);
    }

    /// A batch part of the items `range` of this run's outbox (as far as there are).
    pub(crate) fn batch_part(&self, id: Uuid, range: std::ops::Range<usize>) -> BatchPart {
        let taken = || {
            self.pending
                .range(range.start.min(self.pending.len())..range.end.min(self.pending.len()))
        };
        let mut lines = Vec::with_capacity(taken().map(|p| p.lines.len()).sum());
        for p in taken() {
            lines.extend_from_slice(p.lines.as_bytes());
        }
        BatchPart {
            event_id: id,
            lines,
            points: taken().map(|p| p.points).sum(),
            final_record: taken().any(|p| p.kind == PendingKind::Final),
            items: taken().map(|p| p.seq).collect(),
        }
    }

    /// Removes the items of `part` from the outbox. The run is not marked changed for it: a
    /// checkpoint that still lists written points only means a writer restored from it writes
    /// them again, the same points over themselves; and at 10,000 runs, marking every written
    /// run changed made every tick checkpoint each run twice.
    pub(crate) fn remove_items(&mut self, part: &BatchPart) {
        self.pending.retain(|p| !part.items.contains(&p.seq));
    }
}
