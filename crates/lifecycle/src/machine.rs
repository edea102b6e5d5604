//! The state machine: messages and clock ticks in, [`Effects`] out.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use protocol::time::{align_down, align_up, unix_nanos};
use protocol::{Body, Envelope, NodeVerdict, RunningEvent, RunningSet};
use uuid::Uuid;

use crate::completed::{self, Outcome};
use crate::effects::{DeliveryId, Effects, FinalStatus};
use crate::measurements::{self, SnapshotInput};
use crate::pending::{Bound, PendingKind};
use crate::point::Point;
use crate::run::{Previous, Run};
use crate::settings::LifecycleSettings;

/// The run lifecycle. See the crate docs for the ack rule.
///
/// The orphan rule: a run whose `registered` message has not been seen writes nothing (no
/// snapshot, no final record), it only keeps its messages' state. When the register arrives (a
/// redelivery in another order), the run is adopted and proceeds. When it does not come within
/// `expire_after`, the messages are leftovers of a run whose final record is written already
/// (a writer died while acking it, or a message was delivered twice) and are dropped without
/// writing anything: writing them would add points under empty tags or a second status.
#[derive(Debug)]
pub struct Lifecycle {
    pub(crate) settings: LifecycleSettings,
    pub(crate) runs: HashMap<Uuid, Run>,
    /// Runs that ended since the last checkpoint: the checkpoint writes their tombstones.
    pub(crate) finished: Vec<Finished>,
    /// Runs whose final record this lifecycle wrote, with when: a message for one of them
    /// within `expire_after` (a duplicate delivery, a node that joined too late) is acked at once
    /// and changes nothing, instead of waiting `expire_after` as an orphan. Not checkpointed: a
    /// new leader treats such stragglers by the orphan rule.
    recently_finished: HashMap<Uuid, DateTime<Utc>>,
    /// Whether [`Effects::writes`] lists the points computed (see
    /// [`Lifecycle::keep_points_in_effects`]).
    points_in_effects: bool,
}

/// A run that ended: its tombstone is due, and the deliveries it still held are acked once the
/// tombstone is confirmed.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) id: Uuid,
    pub(crate) registers: Vec<DeliveryId>,
    pub(crate) rest: Vec<DeliveryId>,
}

impl Lifecycle {
    /// An empty lifecycle.
    pub fn new(settings: LifecycleSettings) -> Self {
        Self {
            settings,
            runs: HashMap::new(),
            finished: Vec::new(),
            recently_finished: HashMap::new(),
            points_in_effects: true,
        }
    }

    /// Whether [`Effects::writes`] lists the points computed (on by default). Their line
    /// protocol is in the outboxes either way ([`Lifecycle::batch`]); a caller that writes the
    /// outboxes only (the writer service) turns this off, which at 10,000 runs saves building
    /// a second copy of every tick's 40,000 points.
    pub fn keep_points_in_effects(&mut self, keep: bool) {
        self.points_in_effects = keep;
    }

    /// The settings in force.
    pub fn settings(&self) -> &LifecycleSettings {
        &self.settings
    }

    /// Runs currently running (orphans, whose register has not been seen, and finalizing runs,
    /// whose final record waits to be written, are not listed).
    pub fn running(&self) -> RunningSet {
        let mut events: Vec<RunningEvent> = self
            .runs
            .iter()
            .filter(|(_, r)| !r.finalizing())
            .filter_map(|(id, r)| {
                let info = r.info.as_ref()?;
                Some(RunningEvent {
                    uuid: *id,
                    started_at: info.started_at,
                    last_stats_at: r.last_stats_at,
                    nodes: r.nodes.len() as u32,
                    key_id: r.key_id.clone(),
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
    ///
    /// A message that changes the run's state is held until a checkpoint covers it (see
    /// [`Lifecycle::checkpoint`]); one that changes nothing (superseded stats, a repeated
    /// register, anything for a run whose final record is computed) is in [`Effects::ack`].
    pub fn handle(&mut self, delivery: DeliveryId, env: Envelope, now: DateTime<Utc>) -> Effects {
        let mut fx = Effects::default();
        let event_id = env.event_id;
        let node_id = if env.node_id.is_empty() {
            "default".to_string()
        } else {
            env.node_id.clone()
        };
        if self.runs.get(&event_id).is_some_and(Run::finalizing) {
            // The final record is computed and waits to be written: a repeat, or a straggler
            // after the commit grace, changes nothing.
            fx.ack.push(delivery);
            return fx;
        }
        if self.recently_finished.contains_key(&event_id) && !matches!(env.body, Body::Completed(_))
        {
            tracing::warn!(event_id = %event_id, node_id = %node_id, kind = env.body.kind(), "a message for a run whose final record is written: acked, changes nothing (a duplicate delivery, or a node that joined after the run ended)");
            fx.ack.push(delivery);
            return fx;
        }
        let max_pending = self.bound();
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
                    // Another node joining (held until a checkpoint covers it), or a repeated
                    // register, which changes nothing and is acked at once: holding every repeat
                    // would let one client that keeps registering fill the prefetch.
                    let mut changed = node_is_new;
                    if known.expected_nodes.is_none() && info.expected_nodes.is_some() {
                        known.expected_nodes = info.expected_nodes;
                        changed = true;
                    }
                    if changed {
                        node.registers.push(delivery);
                        run.dirty = true;
                    } else {
                        fx.ack.push(delivery);
                    }
                    fx.running_changed = node_is_new;
                    return fx;
                }
                node.registers.push(delivery);
                run.dirty = true;
                // The run starts when its register was sent, on the clock of whoever sent the
                // message (the API's, for clients of the API), not at the client's `startedAt`:
                // a client clock an hour off would move the event point and add an hour to
                // `duration_s` (which ends at the last commit's `sentAt`, on the same clock).
                let mut info = info;
                info.started_at = env.sent_at;
                let point = measurements::running_event_point(event_id, &info);
                tracing::info!(event_id = %event_id, node_id = %env.node_id, target_host = %info.target_host, tool = %info.tool, "run registered");
                let ts = point.timestamp;
                run.info = Some(info);
                run.key_id = env.key_id.clone();
                run.queue(
                    event_id,
                    PendingKind::Event,
                    ts,
                    vec![point],
                    max_pending,
                    &mut fx,
                );
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
                    // Older than what we hold (or the same again), or after the node's commit:
                    // superseded.
                    fx.ack.push(delivery);
                } else {
                    fx.ack.extend(node.stats_delivery.replace(delivery));
                    node.seq = env.seq;
                    node.keep(payload, env.sent_at);
                    run.dirty = true;
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
                node.keep(commit.stats, env.sent_at);
                node.thresholds = commit.thresholds;
                node.committed_at = Some(match node.committed_at {
                    Some(t) => t.max(env.sent_at),
                    None => env.sent_at,
                });
                node.commits.push(delivery);
                run.dirty = true;
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

    /// A clock tick at `now`: puts a snapshot of every running run at the aligned timestamp in
    /// its outbox (and one for every aligned tick since the run's last snapshot that has none:
    /// ticks missed while no writer was active), expires abandoned runs, finalizes runs whose
    /// commit grace has passed, and ends finalizing runs whose outbox is empty.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Effects {
        let mut fx = Effects::default();
        let ts = align_down(now, self.settings.snapshot_interval);
        let keep = self.settings.expire_after;
        self.recently_finished
            .retain(|_, at| elapsed(*at, now) < keep);
        let mut to_expire = Vec::new();
        let mut to_commit = Vec::new();
        let mut to_drop = Vec::new();
        let mut to_finish = Vec::new();
        let ids: Vec<Uuid> = self.runs.keys().copied().collect();
        for id in ids {
            let Some(run) = self.runs.get(&id) else {
                continue;
            };
            if run.finalizing() {
                // Waits for its final record to be written (restored with an empty outbox: the
                // record was written just before the last writer died).
                if run.pending.is_empty() {
                    to_finish.push(id);
                }
                continue;
            }
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
                // The grace runs from the first commit and again from every later message: a
                // node still sending stats is still running (the nodes of one run may start
                // minutes apart, as a Kubernetes Job's pods do), and only a node silent for the
                // whole grace is left out.
                if elapsed(first.max(run.last_message_at), now) >= self.settings.commit_grace {
                    to_commit.push(id);
                    continue;
                }
            }
            if !run.has_stats() {
                continue;
            }
            fx.merge(self.snapshots_until(id, ts, true));
        }
        for id in to_commit {
            fx.merge(self.finalize(id, FinalStatus::Committed, now));
        }
        for id in to_expire {
            fx.merge(self.finalize(id, FinalStatus::Expired, now));
        }
        for id in to_drop {
            if let Some(mut run) = self.runs.remove(&id) {
                let (registers, rest) = run.take_deliveries();
                tracing::warn!(event_id = %id, messages = registers.len() + rest.len(), "dropping the state of a run whose register never came (the run was finalized already, or its register is lost)");
                fx.ack.extend(registers);
                fx.ack.extend(rest);
                self.finished.push(Finished {
                    id,
                    registers: Vec::new(),
                    rest: Vec::new(),
                });
            }
        }
        for id in to_finish {
            fx.merge(self.finish(id));
        }
        fx
    }

    /// Queues run `id`'s snapshots at every aligned tick after its last snapshot up to `last`
    /// (included or not), at most an outbox's worth. Rates of each are up to its own timestamp.
    fn snapshots_until(&mut self, id: Uuid, last: i64, included: bool) -> Effects {
        let mut fx = Effects::default();
        let iv = self.settings.snapshot_interval.as_nanos().max(1) as i64;
        let max_pending = self.bound();
        let Some(run) = self.runs.get(&id) else {
            return fx;
        };
        let end = if included { last } else { last - iv };
        let mut t = match &run.previous {
            Some(p) => p.timestamp + iv,
            None if included => end,
            None => return fx,
        };
        t = t.max(end.saturating_sub(iv.saturating_mul(max_pending.snapshots as i64)));
        while t <= end {
            let mut points = self.snapshot(id, t, t);
            // The run's `loadtest_snapshot` point comes first; its request points are an item of
            // their own, written after every run's snapshot point (`Lifecycle::batch`).
            let requests = points.split_off(points.len().min(1));
            if let Some(run) = self.runs.get_mut(&id) {
                run.queue(id, PendingKind::Snapshot, t, points, max_pending, &mut fx);
                run.queue(
                    id,
                    PendingKind::SnapshotRequests,
                    t,
                    requests,
                    max_pending,
                    &mut fx,
                );
            }
            t += iv;
        }
        fx
    }

    /// How much an outbox keeps.
    fn bound(&self) -> Bound {
        Bound {
            snapshots: self.settings.max_pending_snapshots_per_run,
            bytes: self.settings.max_pending_bytes_per_run,
            dialect: self.settings.backslashes,
            points_in_effects: self.points_in_effects,
        }
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

    /// Computes the final record of a run and puts it in the run's outbox: the run is
    /// finalizing until the record is written (see [`Lifecycle::written`]). Nothing for an orphan
    /// (its register has not come, so it has no final record: see the orphan rule).
    fn finalize(&mut self, id: Uuid, status: FinalStatus, now: DateTime<Utc>) -> Effects {
        let mut fx = Effects {
            running_changed: true,
            ..Effects::default()
        };
        let interval = self.settings.snapshot_interval;
        let max_names = self.settings.max_names_per_run;
        let max_pending = self.bound();
        let Some(run) = self.runs.get_mut(&id) else {
            return fx;
        };
        let Some(info) = run.info.clone() else {
            return fx;
        };
        let ended_at = run.ended_at(now);
        let final_ts = align_up(ended_at, interval);
        // The load window when the stats tell it; else (no stats) register to end.
        let duration_s = run
            .load_window_s()
            .unwrap_or_else(|| (ended_at - info.started_at).num_milliseconds().max(0) as f64 / 1e3);
        let nodes = run.nodes.len() as u32;
        let thresholds: Vec<NodeVerdict> = run
            .nodes
            .iter()
            .flat_map(|(node_id, n)| {
                n.thresholds.iter().map(|v| NodeVerdict {
                    node_id: node_id.clone(),
                    verdict: v.clone(),
                })
            })
            .collect();

        let mut points = Vec::new();
        let mut aggregated = None;
        if run.has_stats() {
            // The final snapshot, at the aligned end: it replaces any snapshot from there on.
            run.drop_snapshots_from(final_ts);
            if run
                .previous
                .as_ref()
                .is_some_and(|p| p.timestamp >= final_ts)
            {
                run.previous = None;
            }
            // Ticks missed before the end (a run restored by another writer), with what it has.
            fx.merge(self.snapshots_until(id, final_ts, false));
            points.extend(self.snapshot(id, final_ts, unix_nanos(ended_at)));
            if let Some(run) = self.runs.get_mut(&id) {
                let merged = run.merged(id, max_names);
                // Computed once: the Aggregated summary point and the completed message
                // carry the same figures.
                let figures = measurements::aggregated(&merged);
                if status == FinalStatus::Committed {
                    points.extend(measurements::summary_points(
                        id, &merged, &figures, final_ts,
                    ));
                }
                aggregated = Some(figures);
                points.extend(measurements::threshold_points(id, &run.nodes, final_ts));
            }
        }
        let (requests, failures) = aggregated
            .as_ref()
            .map_or((0, 0), |a| (a.requests, a.failures));
        match status {
            FinalStatus::Committed => {
                tracing::info!(event_id = %id, requests, failures, duration_s, nodes, "run committed");
            }
            FinalStatus::Expired => {
                tracing::info!(event_id = %id, requests, failures, duration_s, nodes, "run expired: no message within expire_after");
            }
        }
        points.push(measurements::final_event_point(
            id, &info, status, duration_s,
        ));
        let completed = completed::payload(Outcome {
            info: &info,
            status,
            duration_s,
            nodes,
            aggregated: aggregated.as_ref(),
            thresholds,
        });
        if let Some(run) = self.runs.get_mut(&id) {
            run.queue(
                id,
                PendingKind::Final,
                final_ts,
                points,
                max_pending,
                &mut fx,
            );
            run.completed = Some(completed);
            run.dirty = true;
        }
        fx
    }

    /// Ends finalizing run `id`, whose final record is written: drops it, leaves its tombstone
    /// (and the deliveries it still held) for the next checkpoint, and returns its
    /// `event.completed` message.
    pub(crate) fn finish(&mut self, id: Uuid) -> Effects {
        let mut fx = Effects::default();
        let Some(mut run) = self.runs.remove(&id) else {
            return fx;
        };
        let (registers, rest) = run.take_deliveries();
        self.finished.push(Finished {
            id,
            registers,
            rest,
        });
        if run.completed.is_some() {
            self.recently_finished.insert(id, run.last_message_at);
        }
        if let Some(completed) = run.completed {
            tracing::info!(event_id = %id, status = %completed.status, "final record written");
            fx.completed.push(Envelope::new(
                id,
                "writer",
                0,
                String::new(),
                Body::Completed(completed),
            ));
        }
        fx
    }
}

fn elapsed(since: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (now - since).to_std().unwrap_or(Duration::ZERO)
}
