//! The state machine: messages and clock ticks in, [`Effects`] out.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use protocol::time::{align_down, align_up, unix_nanos};
use protocol::{Body, CompletedPayload, Envelope, RunningEvent, RunningSet};
use uuid::Uuid;

use crate::effects::{DeliveryId, Effects, FinalStatus, Write};
use crate::measurements::{self, SnapshotInput};
use crate::point::Point;
use crate::run::{Previous, Run};
use crate::settings::LifecycleSettings;

/// The run lifecycle. See the crate docs for the ack rule.
///
/// The orphan rule: a run whose `registered` message has not been seen writes nothing (no
/// snapshot, no final record), it only holds its messages. When the register arrives (a
/// redelivery in another order), the run is adopted and proceeds. When it does not come within
/// `expire_after`, the messages are leftovers of a run whose final record is written already
/// (a writer died while acking it, or a message was delivered twice) and are acked without
/// writing anything: writing them would add points under empty tags or a second status.
#[derive(Debug)]
pub struct Lifecycle {
    settings: LifecycleSettings,
    runs: HashMap<Uuid, Run>,
}

impl Lifecycle {
    /// An empty lifecycle.
    pub fn new(settings: LifecycleSettings) -> Self {
        Self {
            settings,
            runs: HashMap::new(),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &LifecycleSettings {
        &self.settings
    }

    /// Runs currently held (orphans, whose register has not been seen, are not listed).
    pub fn running(&self) -> RunningSet {
        let mut events: Vec<RunningEvent> = self
            .runs
            .iter()
            .filter_map(|(id, r)| {
                let info = r.info.as_ref()?;
                Some(RunningEvent {
                    uuid: *id,
                    started_at: info.started_at,
                    last_stats_at: r.last_stats_at,
                    nodes: r.nodes.len() as u32,
                })
            })
            .collect();
        events.sort_by_key(|e| (e.started_at, e.uuid));
        RunningSet {
            running: events.len(),
            events,
        }
    }

    /// Feeds one valid message that arrived as `delivery` at wall-clock `now`.
    pub fn handle(&mut self, delivery: DeliveryId, env: Envelope, now: DateTime<Utc>) -> Effects {
        let mut fx = Effects::default();
        let event_id = env.event_id;
        let node_id = if env.node_id.is_empty() {
            "default".to_string()
        } else {
            env.node_id.clone()
        };
        match env.body {
            Body::Completed(_) => {
                // Not ours to process (the queue is not bound to it); nothing to write.
                fx.ack.push(delivery);
            }
            Body::Registered(info) => {
                let run = self
                    .runs
                    .entry(event_id)
                    .or_insert_with(|| Run::new(None, now));
                run.last_message_at = now;
                let node_is_new = !run.nodes.contains_key(&node_id);
                let node = run.nodes.entry(node_id).or_default();
                if let Some(known) = &mut run.info {
                    // Another node joining, or a repeated register: record the node and ack at
                    // once. Only the run's first register is held (it carries the metadata a
                    // rebuilt run needs); holding every repeat would let one client that keeps
                    // registering fill the prefetch and stall every run.
                    if known.expected_nodes.is_none() {
                        known.expected_nodes = info.expected_nodes;
                    }
                    fx.ack.push(delivery);
                    fx.running_changed = node_is_new;
                    return fx;
                }
                node.registers.push(delivery);
                let point = measurements::running_event_point(event_id, &info);
                run.info = Some(info);
                fx.writes.push(write_of(event_id, vec![point], Vec::new()));
                // A run rebuilt from redeliveries that came in another order (or an orphan
                // adopted by its register) may be complete already.
                fx.running_changed = true;
                if run.all_committed() {
                    fx.merge(self.finalize(event_id, FinalStatus::Committed, now));
                }
            }
            Body::Stats(payload) => {
                let run = self.run_for(event_id, now);
                run.last_message_at = now;
                run.last_stats_at = Some(now);
                let node_is_new = !run.nodes.contains_key(&node_id);
                let node = run.nodes.entry(node_id).or_default();
                if node.committed_at.is_some() || (node.stats.is_some() && env.seq <= node.seq) {
                    // Older than what we hold, or after the node's commit: superseded.
                    fx.ack.push(delivery);
                } else {
                    fx.ack.extend(node.stats_delivery.replace(delivery));
                    node.seq = env.seq;
                    node.stats = Some(payload);
                }
                fx.running_changed = node_is_new && run.info.is_some();
            }
            Body::Committed(commit) => {
                let run = self.run_for(event_id, now);
                run.last_message_at = now;
                let node = run.nodes.entry(node_id).or_default();
                // The commit's stats are the node's final cumulative stats: they supersede any
                // stats message, whatever its seq.
                fx.ack.extend(node.stats_delivery.take());
                node.seq = node.seq.max(env.seq);
                node.stats = Some(commit.stats);
                node.thresholds = commit.thresholds;
                node.committed_at = Some(match node.committed_at {
                    Some(t) => t.max(env.sent_at),
                    None => env.sent_at,
                });
                node.commits.push(delivery);
                if run.first_commit_at.is_none() {
                    run.first_commit_at = Some(now);
                }
                if run.info.is_some() && run.all_committed() {
                    fx.merge(self.finalize(event_id, FinalStatus::Committed, now));
                }
            }
        }
        fx
    }

    /// A clock tick at `now`: writes a snapshot of every running run at the aligned timestamp,
    /// expires abandoned runs and finalizes runs whose commit grace has passed.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Effects {
        let mut fx = Effects::default();
        let ts = align_down(now, self.settings.snapshot_interval);
        let mut to_expire = Vec::new();
        let mut to_commit = Vec::new();
        let mut to_drop = Vec::new();
        let ids: Vec<Uuid> = self.runs.keys().copied().collect();
        for id in ids {
            let Some(run) = self.runs.get(&id) else {
                continue;
            };
            if elapsed(run.last_message_at, now) >= self.settings.expire_after {
                if run.info.is_some() {
                    to_expire.push(id);
                } else {
                    to_drop.push(id);
                }
                continue;
            }
            if run.info.is_none() {
                // An orphan writes nothing: see the orphan rule on [`Lifecycle`].
                continue;
            }
            if let Some(first) = run.first_commit_at {
                if elapsed(first, now) >= self.settings.commit_grace {
                    to_commit.push(id);
                    continue;
                }
            }
            if !run.has_stats() || run.previous.as_ref().is_some_and(|p| p.timestamp >= ts) {
                continue;
            }
            let points = self.snapshot(id, ts, ts);
            if !points.is_empty() {
                fx.writes.push(write_of(id, points, Vec::new()));
            }
        }
        for id in to_commit {
            fx.merge(self.finalize(id, FinalStatus::Committed, now));
        }
        for id in to_expire {
            tracing::warn!(event_id = %id, "run expired: no message within expire_after");
            fx.merge(self.finalize(id, FinalStatus::Expired, now));
        }
        for id in to_drop {
            if let Some(run) = self.runs.remove(&id) {
                let held = run.held_deliveries();
                tracing::warn!(event_id = %id, messages = held.len(), "dropping messages of a run whose register never came (the run was finalized already, or its register is lost)");
                fx.ack.extend(held);
            }
        }
        fx
    }

    /// The run `event_id`, created as an orphan when its register has not been seen: stats or
    /// a commit before (or without) the register keep their data, and the metadata comes with
    /// the register.
    fn run_for(&mut self, event_id: Uuid, now: DateTime<Utc>) -> &mut Run {
        self.runs
            .entry(event_id)
            .or_insert_with(|| Run::new(None, now))
    }

    /// The snapshot points of run `id` at `ts` (rates up to `until`), remembered as the run's
    /// previous snapshot. Nothing for an orphan.
    fn snapshot(&mut self, id: Uuid, ts: i64, until: i64) -> Vec<Point> {
        let max_names = self.settings.max_names_per_run;
        let Some(run) = self.runs.get_mut(&id) else {
            return Vec::new();
        };
        let merged = run.merged(id, max_names);
        let Some(info) = &run.info else {
            return Vec::new();
        };
        let points = measurements::snapshot_points(
            &SnapshotInput {
                id,
                info,
                merged: &merged,
                previous: run.previous.as_ref(),
                nodes: run.nodes_with_stats(),
            },
            ts,
            until,
        );
        run.previous = Some(Previous::of(ts, merged));
        points
    }

    /// Writes the final record of a run and drops it. Nothing for an orphan (its register has
    /// not come, so it has no final record: see the orphan rule).
    fn finalize(&mut self, id: Uuid, status: FinalStatus, now: DateTime<Utc>) -> Effects {
        let mut fx = Effects {
            running_changed: true,
            ..Effects::default()
        };
        let interval = self.settings.snapshot_interval;
        let max_names = self.settings.max_names_per_run;
        let Some(run) = self.runs.get_mut(&id) else {
            return fx;
        };
        let Some(info) = run.info.clone() else {
            return fx;
        };
        let ended_at = run.ended_at(now);
        let final_ts = align_up(ended_at, interval);
        let duration_s = (ended_at - info.started_at).num_milliseconds().max(0) as f64 / 1e3;
        let acks = run.held_deliveries();
        let nodes = run.nodes.len() as u32;

        let mut points = Vec::new();
        let mut totals = (0, 0);
        if run.has_stats() {
            // The final snapshot, at the aligned end.
            if run
                .previous
                .as_ref()
                .is_some_and(|p| p.timestamp >= final_ts)
            {
                run.previous = None;
            }
            points.extend(self.snapshot(id, final_ts, unix_nanos(ended_at)));
            if let Some(run) = self.runs.get_mut(&id) {
                let merged = run.merged(id, max_names);
                totals = (merged.total.num_requests, merged.total.num_failures);
                if status == FinalStatus::Committed {
                    points.extend(measurements::summary_points(id, &merged, final_ts));
                }
                points.extend(measurements::threshold_points(id, &run.nodes, final_ts));
            }
        }
        points.push(measurements::final_event_point(
            id, &info, status, duration_s,
        ));
        fx.writes.push(write_of(id, points, acks));
        self.runs.remove(&id);
        let completed = CompletedPayload {
            status: status.as_str().to_string(),
            duration_s,
            requests: totals.0,
            failures: totals.1,
            nodes,
        };
        fx.completed.push(Envelope::new(
            id,
            "writer",
            0,
            String::new(),
            Body::Completed(completed),
        ));
        fx
    }
}

fn elapsed(since: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (now - since).to_std().unwrap_or(Duration::ZERO)
}

fn write_of(event_id: Uuid, points: Vec<Point>, acks: Vec<DeliveryId>) -> Write {
    Write {
        event_id,
        points,
        acks,
    }
}
