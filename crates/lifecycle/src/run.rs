//! A run's state: its register (when it has arrived), each node's latest cumulative stats and
//! the deliveries held for the final record, and the merged view of its nodes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use protocol::{RunInfo, StatsEntry, StatsPayload, ThresholdVerdict, AGGREGATED};
use uuid::Uuid;

use crate::effects::DeliveryId;

/// Name under which requests beyond `max_names_per_run` are counted.
pub const OTHER_NAME: &str = "(other)";

/// One node of a run.
#[derive(Debug, Default)]
pub(crate) struct NodeState {
    pub(crate) seq: u64,
    pub(crate) stats: Option<StatsPayload>,
    /// The delivery that carried `stats` (held until superseded or finalized).
    pub(crate) stats_delivery: Option<DeliveryId>,
    pub(crate) committed_at: Option<DateTime<Utc>>,
    /// The node's `registered` deliveries, held for the final record.
    pub(crate) registers: Vec<DeliveryId>,
    /// The node's `committed` deliveries, held for the final record.
    pub(crate) commits: Vec<DeliveryId>,
    /// The threshold verdicts of the node's commit.
    pub(crate) thresholds: Vec<ThresholdVerdict>,
}

/// What the last snapshot wrote: interval rates and response times are differences from it.
#[derive(Debug, Clone)]
pub(crate) struct Previous {
    /// The snapshot's timestamp, Unix ns.
    pub(crate) timestamp: i64,
    pub(crate) total: StatsEntry,
    pub(crate) by_name: HashMap<(String, String), StatsEntry>,
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

/// A run in progress.
#[derive(Debug)]
pub(crate) struct Run {
    /// The run's metadata; `None` until its `registered` message arrives (an orphan: see the
    /// orphan rule on [`crate::Lifecycle`]).
    pub(crate) info: Option<RunInfo>,
    pub(crate) nodes: BTreeMap<String, NodeState>,
    pub(crate) last_message_at: DateTime<Utc>,
    pub(crate) last_stats_at: Option<DateTime<Utc>>,
    pub(crate) first_commit_at: Option<DateTime<Utc>>,
    pub(crate) previous: Option<Previous>,
    /// The (method, name) pairs kept under their own name; the rest fold into [`OTHER_NAME`].
    names: BTreeSet<(String, String)>,
    overflow_warned: bool,
}

/// Merged view of a run's nodes at one instant.
#[derive(Debug)]
pub(crate) struct Merged {
    pub(crate) user_count: u64,
    pub(crate) total: StatsEntry,
    pub(crate) by_name: BTreeMap<(String, String), StatsEntry>,
    /// Occurrences by (method, name, error).
    pub(crate) errors: BTreeMap<(String, String, String), u64>,
}

impl Run {
    /// A run whose first message came at `now`; `info` is `None` when it was not the register.
    pub(crate) fn new(info: Option<RunInfo>, now: DateTime<Utc>) -> Self {
        Self {
            info,
            nodes: BTreeMap::new(),
            last_message_at: now,
            last_stats_at: None,
            first_commit_at: None,
            previous: None,
            names: BTreeSet::new(),
            overflow_warned: false,
        }
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

    /// Every delivery the run holds, registers first: if the writer dies halfway through
    /// acking them, what the broker redelivers carries no register, so it cannot re-open the
    /// finished run (see [`crate::Lifecycle`]'s orphan rule).
    pub(crate) fn held_deliveries(&self) -> Vec<DeliveryId> {
        let mut out: Vec<DeliveryId> = self
            .nodes
            .values()
            .flat_map(|n| n.registers.iter().copied())
            .collect();
        for n in self.nodes.values() {
            out.extend(n.commits.iter().copied());
            out.extend(n.stats_delivery);
        }
        out
    }

    /// Merges the nodes' latest stats, folding names beyond `max_names` into [`OTHER_NAME`]
    /// (the first `max_names` pairs seen keep their names for the rest of the run).
    pub(crate) fn merged(&mut self, id: Uuid, max_names: usize) -> Merged {
        let mut merged = Merged {
            user_count: 0,
            total: StatsEntry::new("", AGGREGATED, 0.0),
            by_name: BTreeMap::new(),
            errors: BTreeMap::new(),
        };
        let mut overflowed = false;
        for node in self.nodes.values() {
            let Some(stats) = &node.stats else { continue };
            merged.user_count = merged.user_count.saturating_add(stats.user_count);
            merged.total.merge(&stats.total);
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
                    .merge(entry);
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
