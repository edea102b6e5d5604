//! The writer's run lifecycle: a pure state machine.
//!
//! Messages and clock ticks go in; [`Effects`] come out: line protocol to write, and which
//! deliveries to ack at once or after the write. No AMQP, no InfluxDB, no clock of its own, so
//! its tests need no broker and no sleeps.
//!
//! The ack rule it implements: a delivery is acked only when what it carries is in InfluxDB
//! (it is in a [`Write`]'s `acks`), or when a newer cumulative stats message from the same
//! (event, node) superseded it (it is in [`Effects::ack`]). A run's `registered` delivery and each
//! node's latest stats and commit are held until the run's final record is written, so a writer
//! killed at any instant loses nothing: the broker redelivers them to the next writer, which
//! rebuilds the run from them. Timestamps are aligned to the snapshot interval, so rebuilding and
//! rewriting overwrites the same points.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use protocol::time::{align_down, align_up, unix_nanos};
use protocol::{
    Body, CompletedPayload, Envelope, ErrorEntry, RunInfo, StatsEntry, StatsPayload, AGGREGATED,
};
pub use protocol::{RunningEvent, RunningSet};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::points::{encode, Point};

/// A broker delivery tag (or any id the caller uses to ack a message).
pub type DeliveryId = u64;

/// Name under which requests beyond `max_names_per_run` are counted.
pub const OTHER_NAME: &str = "(other)";

/// Percentiles written on snapshot and request points, as (field, fraction).
const SNAPSHOT_PERCENTILES: [(&str, f64); 4] = [
    ("response_time_p50", 0.50),
    ("response_time_p90", 0.90),
    ("response_time_p95", 0.95),
    ("response_time_p99", 0.99),
];

/// Percentiles written on summary points.
const SUMMARY_PERCENTILES: [(&str, f64); 11] = [
    ("response_time_p50", 0.50),
    ("response_time_p66", 0.66),
    ("response_time_p75", 0.75),
    ("response_time_p80", 0.80),
    ("response_time_p90", 0.90),
    ("response_time_p95", 0.95),
    ("response_time_p98", 0.98),
    ("response_time_p99", 0.99),
    ("response_time_p999", 0.999),
    ("response_time_p9999", 0.9999),
    ("response_time_p100", 1.0),
];

/// Lifecycle settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LifecycleSettings {
    /// Time between snapshots of a running run (default 15 s); timestamps are multiples of it.
    pub snapshot_interval: Duration,
    /// A run with no message for this long is written as `expired` and dropped (default 5 min).
    pub expire_after: Duration,
    /// After the first node commits, how long to wait for the others (default 60 s).
    pub commit_grace: Duration,
    /// Distinct (method, name) pairs kept per run (default 500); later ones count under
    /// `name="(other)"`.
    pub max_names_per_run: usize,
}

impl Default for LifecycleSettings {
    fn default() -> Self {
        Self {
            snapshot_interval: Duration::from_secs(15),
            expire_after: Duration::from_secs(300),
            commit_grace: Duration::from_secs(60),
            max_names_per_run: 500,
        }
    }
}

/// Line protocol for one run, and the deliveries to ack once it is written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Write {
    /// The run the points belong to.
    pub event_id: Uuid,
    /// Line protocol, newline-terminated lines.
    pub lines: Vec<u8>,
    /// Points in `lines`.
    pub points: usize,
    /// Deliveries to ack after `lines` is written.
    pub acks: Vec<DeliveryId>,
}

/// What the caller must do after feeding the lifecycle a message or a tick.
#[derive(Debug, Default)]
pub struct Effects {
    /// Deliveries to ack now (superseded or carrying nothing new).
    pub ack: Vec<DeliveryId>,
    /// Writes to perform, each followed by its acks.
    pub writes: Vec<Write>,
    /// `event.completed` messages to publish after the writes.
    pub completed: Vec<Envelope>,
    /// Whether the running set changed (publish it).
    pub running_changed: bool,
}

impl Effects {
    fn merge(&mut self, other: Effects) {
        self.ack.extend(other.ack);
        self.writes.extend(other.writes);
        self.completed.extend(other.completed);
        self.running_changed |= other.running_changed;
    }
}

#[derive(Debug, Default)]
struct NodeState {
    seq: u64,
    stats: Option<StatsPayload>,
    /// The delivery that carried `stats` (held until superseded or finalized).
    stats_delivery: Option<DeliveryId>,
    committed_at: Option<DateTime<Utc>>,
    /// The node's `registered` deliveries, held for the final record.
    registers: Vec<DeliveryId>,
    /// The node's `committed` deliveries, held for the final record.
    commits: Vec<DeliveryId>,
    /// The threshold verdicts of the node's commit.
    thresholds: Vec<protocol::ThresholdVerdict>,
}

#[derive(Debug, Clone)]
struct Previous {
    timestamp: i64,
    total: StatsEntry,
    by_name: HashMap<(String, String), StatsEntry>,
}

#[derive(Debug)]
struct Run {
    info: RunInfo,
    info_known: bool,
    registered_written: bool,
    nodes: BTreeMap<String, NodeState>,
    last_message_at: DateTime<Utc>,
    last_stats_at: Option<DateTime<Utc>>,
    first_commit_at: Option<DateTime<Utc>>,
    previous: Option<Previous>,
    names: BTreeSet<(String, String)>,
    overflow_warned: bool,
}

impl Run {
    fn new(info: RunInfo, info_known: bool, now: DateTime<Utc>) -> Self {
        Self {
            info,
            info_known,
            registered_written: false,
            nodes: BTreeMap::new(),
            last_message_at: now,
            last_stats_at: None,
            first_commit_at: None,
            previous: None,
            names: BTreeSet::new(),
            overflow_warned: false,
        }
    }

    fn has_stats(&self) -> bool {
        self.nodes.values().any(|n| n.stats.is_some())
    }

    fn all_committed(&self) -> bool {
        let committed = self
            .nodes
            .values()
            .filter(|n| n.committed_at.is_some())
            .count();
        let expected = self.info.expected_nodes.unwrap_or(0) as usize;
        committed > 0 && committed == self.nodes.len() && committed >= expected
    }

    /// Every delivery the run holds, registers first: if the writer dies halfway through
    /// acking them, what the broker redelivers carries no register, so it cannot re-open the
    /// finished run (see [`Lifecycle`]'s orphan rule).
    fn held_deliveries(&self) -> Vec<DeliveryId> {
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
}

/// Merged view of a run's nodes at one instant.
struct Merged {
    user_count: u64,
    total: StatsEntry,
    by_name: BTreeMap<(String, String), StatsEntry>,
    errors: BTreeMap<(String, String, String), u64>,
}

/// The state machine. See the module docs.
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
            .filter(|(_, r)| r.info_known)
            .map(|(id, r)| RunningEvent {
                uuid: *id,
                started_at: r.info.started_at,
                last_stats_at: r.last_stats_at,
                nodes: r.nodes.len() as u32,
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
                    .or_insert_with(|| Run::new(info.clone(), true, now));
                run.last_message_at = now;
                if !run.info_known {
                    run.info = info;
                    run.info_known = true;
                } else if let (None, Some(n)) = (run.info.expected_nodes, info.expected_nodes) {
                    run.info.expected_nodes = Some(n);
                }
                let node_is_new = !run.nodes.contains_key(&node_id);
                let node = run.nodes.entry(node_id).or_default();
                if run.registered_written {
                    // Another node joining, or a repeated register: record the node and ack at
                    // once. Only the run's first register is held (it carries the metadata a
                    // rebuilt run needs); holding every repeat would let one client that keeps
                    // registering fill the prefetch and stall every run.
                    fx.ack.push(delivery);
                    fx.running_changed = node_is_new;
                    return fx;
                }
                node.registers.push(delivery);
                run.registered_written = true;
                let point = event_point(event_id, &run.info, "running", None);
                fx.writes.push(write_of(event_id, &[point], Vec::new()));
                // A run rebuilt from redeliveries that came in another order (or an orphan
                // adopted by its register) may be complete already.
                fx.running_changed = true;
                if run.all_committed() {
                    fx.merge(self.finalize(event_id, "committed", now));
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
                fx.running_changed = node_is_new && run.info_known;
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
                if run.info_known && run.all_committed() {
                    fx.merge(self.finalize(event_id, "committed", now));
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
            if chrono_elapsed(run.last_message_at, now) >= self.settings.expire_after {
                if run.info_known {
                    to_expire.push(id);
                } else {
                    to_drop.push(id);
                }
                continue;
            }
            if !run.info_known {
                // An orphan writes nothing: see the orphan rule on [`Lifecycle`].
                continue;
            }
            if let Some(first) = run.first_commit_at {
                if chrono_elapsed(first, now) >= self.settings.commit_grace {
                    to_commit.push(id);
                    continue;
                }
            }
            if !run.has_stats() || run.previous.as_ref().is_some_and(|p| p.timestamp >= ts) {
                continue;
            }
            let points = self.snapshot_points(id, ts, ts);
            if !points.is_empty() {
                fx.writes.push(write_of(id, &points, Vec::new()));
            }
        }
        for id in to_commit {
            fx.merge(self.finalize(id, "committed", now));
        }
        for id in to_expire {
            tracing::warn!(event_id = %id, "run expired: no message within expire_after");
            fx.merge(self.finalize(id, "expired", now));
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

    fn run_for(&mut self, event_id: Uuid, now: DateTime<Utc>) -> &mut Run {
        self.runs.entry(event_id).or_insert_with(|| {
            // Stats or commit before (or without) the register: keep the data, learn the
            // metadata when the register arrives.
            let info = RunInfo {
                started_at: now,
                host: String::new(),
                clients: 0,
                hatch_rate: 0.0,
                requests: 0,
                target_host: String::new(),
                mode: String::new(),
                tool: String::new(),
                expected_nodes: None,
            };
            Run::new(info, false, now)
        })
    }

    /// Merges a run's nodes, folding names beyond the limit into `(other)`.
    fn merged(&mut self, id: Uuid) -> Option<Merged> {
        let max_names = self.settings.max_names_per_run;
        let run = self.runs.get_mut(&id)?;
        let mut merged = Merged {
            user_count: 0,
            total: StatsEntry::new("", AGGREGATED, 0.0),
            by_name: BTreeMap::new(),
            errors: BTreeMap::new(),
        };
        let mut overflowed = false;
        for node in run.nodes.values() {
            let Some(stats) = &node.stats else { continue };
            merged.user_count = merged.user_count.saturating_add(stats.user_count);
            merged.total.merge(&stats.total);
            for entry in &stats.entries {
                let mut key = entry.key();
                if !run.names.contains(&key) {
                    if run.names.len() < max_names {
                        run.names.insert(key.clone());
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
                let name = if run.names.contains(&(e.method.clone(), e.name.clone())) {
                    e.name.clone()
                } else if run.names.len() >= max_names {
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
        if overflowed && !run.overflow_warned {
            run.overflow_warned = true;
            tracing::warn!(event_id = %id, max_names, "run has more request names than max_names_per_run; the rest are counted under (other)");
        }
        Some(merged)
    }

    /// Snapshot points at `ts`; rates are over the time up to `until` (Unix ns), which is `ts`
    /// for a tick and the run's end for the final snapshot (its interval is cut short).
    fn snapshot_points(&mut self, id: Uuid, ts: i64, until: i64) -> Vec<Point> {
        let Some(merged) = self.merged(id) else {
            return Vec::new();
        };
        let Some(run) = self.runs.get_mut(&id) else {
            return Vec::new();
        };
        let event = id.hyphenated().to_string();
        let start_ns = if merged.total.start_time > 0.0 {
            (merged.total.start_time * 1e9) as i64
        } else {
            unix_nanos(run.info.started_at)
        };
        // Rates are over the time the data covers (the last request of each snapshot), not
        // the time between snapshots: a node's stats may be a stats interval old at a tick,
        // and the final snapshot's stats reach the very end of the run.
        let data_time = |e: &StatsEntry, fallback_ns: i64| match e.last_request_timestamp {
            Some(t) if t > 0.0 => t,
            _ => fallback_ns as f64 / 1e9,
        };
        let (prev_time, prev_total) = match &run.previous {
            Some(p) => (data_time(&p.total, p.timestamp), Some(&p.total)),
            None => (start_ns.min(ts) as f64 / 1e9, None),
        };
        let dt = data_time(&merged.total, until.min(ts)) - prev_time;
        let nodes = run.nodes.values().filter(|n| n.stats.is_some()).count();
        let mut points = Vec::with_capacity(merged.by_name.len() + 1);
        let snapshot = Point::new("loadtest_snapshot", ts)
            .tag("event_id", event.clone())
            .tag("target_host", run.info.target_host.clone())
            .tag("mode", run.info.mode.clone())
            .int("user_count", merged.user_count)
            .int("nodes", nodes as u64);
        points.push(interval_fields(snapshot, &merged.total, prev_total, dt));
        for (key, entry) in &merged.by_name {
            let prev = run.previous.as_ref().and_then(|p| p.by_name.get(key));
            let point = Point::new("loadtest_request", ts)
                .tag("event_id", event.clone())
                .tag("method", key.0.clone())
                .tag("name", key.1.clone());
            points.push(interval_fields(point, entry, prev, dt));
        }
        run.previous = Some(Previous {
            timestamp: ts,
            total: merged.total,
            by_name: merged.by_name.into_iter().collect(),
        });
        points
    }

    /// Writes the final record of a run and drops it.
    fn finalize(&mut self, id: Uuid, status: &str, now: DateTime<Utc>) -> Effects {
        let mut fx = Effects {
            running_changed: true,
            ..Effects::default()
        };
        let interval = self.settings.snapshot_interval;
        let Some(run) = self.runs.get(&id) else {
            return fx;
        };
        // Deterministic from the messages (the commit's sentAt), so a rebuilt run rewrites the
        // same points.
        let ended_at = run
            .nodes
            .values()
            .filter_map(|n| n.committed_at)
            .max()
            .unwrap_or(run.last_message_at.min(now));
        let final_ts = align_up(ended_at, interval);
        let duration_s = (ended_at - run.info.started_at).num_milliseconds().max(0) as f64 / 1e3;
        let info = run.info.clone();
        let acks = run.held_deliveries();
        let nodes = run.nodes.len() as u32;
        let has_stats = run.has_stats();

        let mut points = Vec::new();
        let mut totals = (0, 0);
        if has_stats {
            // The final snapshot, at the aligned end.
            if let Some(r) = self.runs.get_mut(&id) {
                if r.previous.as_ref().is_some_and(|p| p.timestamp >= final_ts) {
                    r.previous = None;
                }
            }
            points.extend(self.snapshot_points(id, final_ts, unix_nanos(ended_at)));
            if let Some(merged) = self.merged(id) {
                totals = (merged.total.num_requests, merged.total.num_failures);
                if status == "committed" {
                    points.extend(summary_points(id, &merged, final_ts));
                }
            }
            if let Some(run) = self.runs.get(&id) {
                points.extend(threshold_points(id, run, final_ts));
            }
        }
        points.push(event_point(id, &info, status, Some(duration_s)));
        fx.writes.push(write_of(id, &points, acks));
        self.runs.remove(&id);
        let completed = CompletedPayload {
            status: status.to_string(),
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

fn chrono_elapsed(since: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (now - since).to_std().unwrap_or(Duration::ZERO)
}

fn write_of(event_id: Uuid, points: &[Point], acks: Vec<DeliveryId>) -> Write {
    let mut lines = Vec::new();
    let n = encode(points, &mut lines);
    Write {
        event_id,
        lines,
        points: n,
        acks,
    }
}

fn event_point(id: Uuid, info: &RunInfo, status: &str, duration_s: Option<f64>) -> Point {
    let mut p = Point::new("loadtest_event", unix_nanos(info.started_at))
        .tag("event_id", id.hyphenated().to_string())
        .tag("target_host", info.target_host.clone())
        .tag("mode", info.mode.clone())
        .tag("tool", info.tool.clone())
        .tag("host", info.host.clone())
        .string("status", status)
        .int("clients", info.clients)
        .float("hatch_rate", info.hatch_rate)
        .int("planned_requests", info.requests);
    if let Some(d) = duration_s {
        p = p.float("duration_s", d);
    }
    p
}

/// Cumulative counts plus interval rates and response times (from the histogram difference).
fn interval_fields(p: Point, now: &StatsEntry, prev: Option<&StatsEntry>, dt: f64) -> Point {
    let (prev_req, prev_fail, prev_rt) = prev
        .map(|p| (p.num_requests, p.num_failures, p.total_response_time))
        .unwrap_or((0, 0, 0.0));
    let d_req = now.num_requests.saturating_sub(prev_req);
    let d_fail = now.num_failures.saturating_sub(prev_fail);
    let mut p = p
        .int("requests", now.num_requests)
        .int("failures", now.num_failures);
    if d_req == 0 {
        p = p.float("rps", 0.0).float("fail_per_s", 0.0);
    } else if dt > 0.0 {
        p = p
            .float("rps", d_req as f64 / dt)
            .float("fail_per_s", d_fail as f64 / dt);
    }
    if d_req > 0 {
        let mut hist = now.response_times.clone();
        if let Some(prev) = prev {
            for (bucket, count) in &prev.response_times {
                if let Some(c) = hist.get_mut(bucket) {
                    *c = c.saturating_sub(*count);
                }
            }
            hist.retain(|_, c| *c > 0);
        }
        let min_max = (
            hist.keys().next().copied(),
            hist.keys().next_back().copied(),
        );
        let clamp = |v: f64| {
            let lo = now.min_response_time.unwrap_or(0.0);
            v.max(lo).min(now.max_response_time.max(lo))
        };
        p = p.float(
            "response_time_avg",
            (now.total_response_time - prev_rt).max(0.0) / d_req as f64,
        );
        if let (Some(lo), Some(hi)) = min_max {
            p = p
                .float("response_time_min", clamp(lo as f64))
                .float("response_time_max", clamp(hi as f64));
        }
        let interval = StatsEntry {
            response_times: hist,
            ..StatsEntry::new("", "", 0.0)
        };
        for (field, pct) in SNAPSHOT_PERCENTILES {
            let v = protocol::stats::histogram_percentile(&interval.response_times, pct) as f64;
            p = p.float(field, clamp(v));
        }
    }
    if now.num_requests > 0 {
        p = p.float("response_time_p95_total", now.percentile(0.95));
    }
    p
}

fn summary_point(id: &str, entry: &StatsEntry, ts: i64) -> Point {
    let duration = match entry.last_request_timestamp {
        Some(last) if last > entry.start_time && entry.start_time > 0.0 => last - entry.start_time,
        _ => 0.0,
    };
    let mut p = Point::new("loadtest_summary", ts)
        .tag("event_id", id.to_string())
        .tag("method", entry.method.clone())
        .tag("name", entry.name.clone())
        .int("requests", entry.num_requests)
        .int("failures", entry.num_failures)
        .int("content_length", entry.total_content_length)
        .float("response_time_avg", entry.avg_response_time());
    if duration > 0.0 {
        p = p
            .float("rps", entry.num_requests as f64 / duration)
            .float("fail_per_s", entry.num_failures as f64 / duration);
    }
    if entry.num_requests > 0 {
        p = p
            .float(
                "response_time_min",
                entry.min_response_time.unwrap_or_default(),
            )
            .float("response_time_max", entry.max_response_time);
        for (field, pct) in SUMMARY_PERCENTILES {
            p = p.float(field, entry.percentile(pct));
        }
    }
    p
}

/// One `loadtest_threshold` point per node and threshold: tags `event_id`, `node_id`,
/// `threshold` (the expression, e.g. `p95<300ms`); fields `passed` (1 or 0), `actual`, `limit`.
fn threshold_points(id: Uuid, run: &Run, ts: i64) -> Vec<Point> {
    let event = id.hyphenated().to_string();
    let mut points = Vec::new();
    for (node_id, node) in &run.nodes {
        for t in &node.thresholds {
            let mut p = Point::new("loadtest_threshold", ts)
                .tag("event_id", event.clone())
                .tag("node_id", node_id.clone())
                .tag("threshold", t.threshold.clone())
                .int("passed", i64::from(t.passed));
            if let Some(a) = t.actual {
                p = p.float("actual", a);
            }
            if let Some(l) = t.limit {
                p = p.float("limit", l);
            }
            points.push(p);
        }
    }
    points
}

fn summary_points(id: Uuid, merged: &Merged, ts: i64) -> Vec<Point> {
    let event = id.hyphenated().to_string();
    let mut points: Vec<Point> = merged
        .by_name
        .values()
        .map(|e| summary_point(&event, e, ts))
        .collect();
    let mut total = merged.total.clone();
    total.name = AGGREGATED.to_string();
    points.push(summary_point(&event, &total, ts));
    // Several errors of one endpoint share its tags: offset them by a nanosecond each so none
    // overwrites another (deterministic: the map is ordered).
    for (i, ((method, name, error), occurrences)) in merged.errors.iter().enumerate() {
        points.push(
            Point::new("loadtest_error", ts + i as i64)
                .tag("event_id", event.clone())
                .tag("method", method.clone())
                .tag("name", name.clone())
                .string("error", error.clone())
                .int("occurrences", *occurrences),
        );
    }
    points
}

/// Convenience for tests and the embedded pipeline: a payload from entries.
pub fn payload_of(entries: Vec<StatsEntry>, errors: Vec<ErrorEntry>, users: u64) -> StatsPayload {
    StatsPayload::from_entries(entries, errors, users, "running")
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::CommitPayload;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("timestamp")
            .with_timezone(&Utc)
    }

    fn info(expected: Option<u32>) -> RunInfo {
        RunInfo {
            started_at: t("2026-11-29T08:00:00Z"),
            host: "h".into(),
            clients: 5,
            hatch_rate: 1.0,
            requests: 0,
            target_host: "http://t".into(),
            mode: "single".into(),
            tool: "loadgen".into(),
            expected_nodes: expected,
        }
    }

    fn stats(n: u64) -> StatsPayload {
        let mut e = StatsEntry::new("GET", "/", 1_795_939_200.0);
        for i in 0..n {
            e.log(10.0 + (i % 50) as f64, 100, i % 10 == 0, 1_795_939_201.0);
        }
        payload_of(vec![e], vec![], 5)
    }

    fn env(id: Uuid, node: &str, seq: u64, at: &str, body: Body) -> Envelope {
        Envelope {
            event_id: id,
            node_id: node.into(),
            seq,
            sent_at: t(at),
            token: String::new(),
            body,
        }
    }

    fn lines(fx: &Effects) -> String {
        fx.writes
            .iter()
            .map(|w| String::from_utf8_lossy(&w.lines).to_string())
            .collect()
    }

    #[test]
    fn register_snapshot_commit_and_ack_rule() {
        let mut lc = Lifecycle::new(LifecycleSettings::default());
        let id = Uuid::new_v4();
        let now = t("2026-11-29T08:00:01Z");
        let fx = lc.handle(
            1,
            env(
                id,
                "a",
                0,
                "2026-11-29T08:00:01Z",
                Body::Registered(info(None)),
            ),
            now,
        );
        assert!(fx.ack.is_empty());
        assert_eq!(fx.writes.len(), 1);
        assert!(
            fx.writes[0].acks.is_empty(),
            "register is held until the final record"
        );
        assert!(lines(&fx).contains("status=\"running\""));
        assert_eq!(lc.running().running, 1);

        let fx = lc.handle(
            2,
            env(id, "a", 1, "2026-11-29T08:00:05Z", Body::Stats(stats(10))),
            now,
        );
        assert!(fx.ack.is_empty() && fx.writes.is_empty());
        let fx = lc.handle(
            3,
            env(id, "a", 2, "2026-11-29T08:00:10Z", Body::Stats(stats(20))),
            now,
        );
        assert_eq!(fx.ack, vec![2], "superseded stats are acked at once");
        // A stale redelivery of seq 1 is superseded too.
        let fx = lc.handle(
            4,
            env(id, "a", 1, "2026-11-29T08:00:05Z", Body::Stats(stats(10))),
            now,
        );
        assert_eq!(fx.ack, vec![4]);

        let fx = lc.tick(t("2026-11-29T08:00:15.2Z"));
        let text = lines(&fx);
        assert!(text.contains("loadtest_snapshot,"), "{text}");
        assert!(text.contains("requests=20i"), "{text}");
        let ts = t("2026-11-29T08:00:15Z").timestamp_nanos_opt().expect("ns");
        assert!(
            text.contains(&format!(" {ts}\n")),
            "aligned timestamp: {text}"
        );
        assert!(fx.writes.iter().all(|w| w.acks.is_empty()));
        // The same tick again writes nothing new.
        assert!(lc.tick(t("2026-11-29T08:00:16Z")).writes.is_empty());

        let fx = lc.handle(
            5,
            env(
                id,
                "a",
                3,
                "2026-11-29T08:00:20Z",
                Body::Committed(CommitPayload {
                    host: "h".into(),
                    stats: stats(25),
                    thresholds: Vec::new(),
                }),
            ),
            t("2026-11-29T08:00:20Z"),
        );
        assert_eq!(fx.ack, vec![3], "the commit supersedes the last stats");
        let mut acks = fx
            .writes
            .iter()
            .flat_map(|w| w.acks.clone())
            .collect::<Vec<_>>();
        acks.sort();
        assert_eq!(
            acks,
            vec![1, 5],
            "register and commit acked after the final write"
        );
        let text = lines(&fx);
        assert!(
            text.contains("loadtest_summary,") && text.contains("name=Aggregated"),
            "{text}"
        );
        assert!(text.contains("status=\"committed\""));
        assert!(text.contains("duration_s=20"));
        assert_eq!(fx.completed.len(), 1);
        assert_eq!(lc.running().running, 0);
    }

    #[test]
    fn two_nodes_sum_exactly_and_wait_for_each_other() {
        let mut lc = Lifecycle::new(LifecycleSettings::default());
        let id = Uuid::new_v4();
        let now = t("2026-11-29T08:00:01Z");
        lc.handle(
            1,
            env(
                id,
                "a",
                0,
                "2026-11-29T08:00:01Z",
                Body::Registered(info(Some(2))),
            ),
            now,
        );
        let fx = lc.handle(
            2,
            env(
                id,
                "b",
                0,
                "2026-11-29T08:00:01Z",
                Body::Registered(info(Some(2))),
            ),
            now,
        );
        assert!(fx.writes.is_empty(), "second register writes nothing");
        assert_eq!(
            fx.ack,
            vec![2],
            "a joining node's register is acked at once"
        );
        let commit = |n| {
            Body::Committed(CommitPayload {
                host: "h".into(),
                stats: stats(n),
                thresholds: Vec::new(),
            })
        };
        let fx = lc.handle(3, env(id, "a", 1, "2026-11-29T08:00:30Z", commit(30)), now);
        assert!(fx.writes.is_empty(), "waits for node b");
        let fx = lc.handle(4, env(id, "b", 1, "2026-11-29T08:00:31Z", commit(12)), now);
        let text = lines(&fx);
        assert!(text.contains("loadtest_summary,event_id="), "{text}");
        let agg = text
            .lines()
            .find(|l| l.contains("name=Aggregated"))
            .expect("aggregated");
        assert!(agg.contains("requests=42i"), "{agg}");
        let mut acks: Vec<_> = fx.writes.iter().flat_map(|w| w.acks.clone()).collect();
        acks.sort();
        assert_eq!(acks, vec![1, 3, 4]);
    }

    /// `n` requests spread evenly from 08:00:00 to `last` seconds later.
    fn stats_until(n: u64, last: f64) -> StatsPayload {
        let start = t("2026-11-29T08:00:00Z").timestamp() as f64;
        let mut e = StatsEntry::new("GET", "/", start);
        for i in 0..n {
            e.log(10.0, 1, false, start + last * (i + 1) as f64 / n as f64);
        }
        payload_of(vec![e], vec![], 1)
    }

    fn field(line: &str, name: &str) -> f64 {
        line.split([' ', ','])
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.trim_end_matches('i').parse().ok())
            .unwrap_or(f64::NAN)
    }

    #[test]
    fn rates_are_over_the_time_the_data_covers() {
        let mut lc = Lifecycle::new(LifecycleSettings::default());
        let id = Uuid::new_v4();
        let at = "2026-11-29T08:00:00Z";
        let now = t("2026-11-29T08:00:00.5Z");
        lc.handle(1, env(id, "a", 0, at, Body::Registered(info(None))), now);
        // 100 requests/s; the stats sent at 10 s are all the tick at 15 s sees.
        lc.handle(
            2,
            env(id, "a", 1, at, Body::Stats(stats_until(1_000, 10.0))),
            now,
        );
        let text = lines(&lc.tick(t("2026-11-29T08:00:15Z")));
        let snap = text
            .lines()
            .find(|l| l.starts_with("loadtest_snapshot"))
            .expect("snapshot");
        assert!((field(snap, "rps") - 100.0).abs() < 0.5, "{snap}");
        // The commit at 16 s carries requests up to 16 s: still 100 requests/s, not 600/1 s.
        let commit = Body::Committed(CommitPayload {
            host: "h".into(),
            stats: stats_until(1_600, 16.0),
            thresholds: Vec::new(),
        });
        let fx = lc.handle(3, env(id, "a", 2, "2026-11-29T08:00:16Z", commit), now);
        let text = lines(&fx);
        let snap = text
            .lines()
            .find(|l| l.starts_with("loadtest_snapshot"))
            .expect("final snapshot");
        assert!((field(snap, "rps") - 100.0).abs() < 0.5, "{snap}");
    }

    #[test]
    fn repeated_registers_are_acked_at_once() {
        let mut lc = Lifecycle::new(LifecycleSettings::default());
        let id = Uuid::new_v4();
        let now = t("2026-11-29T08:00:01Z");
        let at = "2026-11-29T08:00:01Z";
        lc.handle(1, env(id, "a", 0, at, Body::Registered(info(None))), now);
        for tag in 2..1000 {
            let fx = lc.handle(tag, env(id, "a", 0, at, Body::Registered(info(None))), now);
            assert_eq!(fx.ack, vec![tag], "a flood of registers holds nothing");
        }
        let fx = lc.handle(1000, env(id, "a", 1, at, commit(3)), now);
        assert_eq!(acks_of(&fx), vec![1, 1000]);
    }

    #[test]
    fn abandoned_run_expires() {
        let settings = LifecycleSettings {
            expire_after: Duration::from_secs(60),
            ..LifecycleSettings::default()
        };
        let mut lc = Lifecycle::new(settings);
        let id = Uuid::new_v4();
        lc.handle(
            1,
            env(
                id,
                "a",
                0,
                "2026-11-29T08:00:00Z",
                Body::Registered(info(None)),
            ),
            t("2026-11-29T08:00:00Z"),
        );
        lc.handle(
            2,
            env(id, "a", 1, "2026-11-29T08:00:05Z", Body::Stats(stats(5))),
            t("2026-11-29T08:00:05Z"),
        );
        assert!(lc.tick(t("2026-11-29T08:00:30Z")).completed.is_empty());
        let fx = lc.tick(t("2026-11-29T08:01:06Z"));
        assert!(lines(&fx).contains("status=\"expired\""));
        let mut acks: Vec<_> = fx.writes.iter().flat_map(|w| w.acks.clone()).collect();
        acks.sort();
        assert_eq!(acks, vec![1, 2]);
        assert_eq!(lc.running().running, 0);
    }

    #[test]
    fn names_beyond_the_limit_count_as_other() {
        let settings = LifecycleSettings {
            max_names_per_run: 2,
            ..LifecycleSettings::default()
        };
        let mut lc = Lifecycle::new(settings);
        let id = Uuid::new_v4();
        let entries: Vec<StatsEntry> = (0..5)
            .map(|i| {
                let mut e = StatsEntry::new("GET", format!("/item/{i}"), 1.0);
                e.log(5.0, 1, false, 2.0);
                e
            })
            .collect();
        let now = t("2026-11-29T08:00:01Z");
        lc.handle(
            1,
            env(
                id,
                "a",
                0,
                "2026-11-29T08:00:01Z",
                Body::Registered(info(None)),
            ),
            now,
        );
        lc.handle(
            2,
            env(
                id,
                "a",
                1,
                "2026-11-29T08:00:01Z",
                Body::Stats(payload_of(entries, vec![], 1)),
            ),
            now,
        );
        let text = lines(&lc.tick(t("2026-11-29T08:00:15Z")));
        assert_eq!(text.matches("loadtest_request,").count(), 3, "{text}");
        assert!(
            text.contains("name=(other)") && text.contains("requests=3i"),
            "{text}"
        );
    }

    #[test]
    fn rebuilt_run_rewrites_identical_final_points() {
        let run_once = || {
            let mut lc = Lifecycle::new(LifecycleSettings::default());
            let id = Uuid::nil();
            let now = t("2026-11-29T08:00:01Z");
            lc.handle(
                1,
                env(
                    id,
                    "a",
                    0,
                    "2026-11-29T08:00:01Z",
                    Body::Registered(info(None)),
                ),
                now,
            );
            let fx = lc.handle(
                2,
                env(
                    id,
                    "a",
                    9,
                    "2026-11-29T08:00:40Z",
                    Body::Committed(CommitPayload {
                        host: "h".into(),
                        stats: stats(33),
                        thresholds: Vec::new(),
                    }),
                ),
                t("2026-11-29T08:07:00Z"),
            );
            lines(&fx)
        };
        let first = run_once();
        assert_eq!(first, run_once());
        let end = t("2026-11-29T08:00:45Z").timestamp_nanos_opt().expect("ns");
        assert!(
            first.contains(&format!(" {end}\n")),
            "final record at the aligned end: {first}"
        );
    }

    fn commit(n: u64) -> Body {
        Body::Committed(CommitPayload {
            host: "h".into(),
            stats: stats(n),
            thresholds: Vec::new(),
        })
    }

    fn acks_of(fx: &Effects) -> Vec<DeliveryId> {
        fx.writes.iter().flat_map(|w| w.acks.clone()).collect()
    }

    #[test]
    fn final_acks_put_registers_first() {
        let mut lc = Lifecycle::new(LifecycleSettings::default());
        let id = Uuid::new_v4();
        let now = t("2026-11-29T08:00:01Z");
        let at = "2026-11-29T08:00:01Z";
        lc.handle(1, env(id, "a", 0, at, Body::Registered(info(Some(2)))), now);
        lc.handle(2, env(id, "a", 1, at, Body::Stats(stats(3))), now);
        lc.handle(3, env(id, "a", 2, "2026-11-29T08:00:09Z", commit(5)), now);
        let joined = lc.handle(4, env(id, "b", 0, at, Body::Registered(info(Some(2)))), now);
        assert_eq!(joined.ack, vec![4]);
        let fx = lc.handle(5, env(id, "b", 1, "2026-11-29T08:00:09Z", commit(7)), now);
        // A writer dying halfway through these acks leaves no register behind.
        assert_eq!(acks_of(&fx), vec![1, 3, 5]);
    }

    #[test]
    fn leftover_commit_after_the_final_record_writes_nothing() {
        let settings = LifecycleSettings {
            expire_after: Duration::from_secs(60),
            ..LifecycleSettings::default()
        };
        let mut lc = Lifecycle::new(settings);
        let id = Uuid::new_v4();
        let now = t("2026-11-29T08:00:01Z");
        lc.handle(
            1,
            env(
                id,
                "a",
                0,
                "2026-11-29T08:00:01Z",
                Body::Registered(info(None)),
            ),
            now,
        );
        let fx = lc.handle(2, env(id, "a", 5, "2026-11-29T08:00:20Z", commit(9)), now);
        assert_eq!(fx.completed.len(), 1);
        // The commit again (delivered twice, or redelivered because the writer died before its
        // ack): no second status, no points under empty tags.
        let fx = lc.handle(3, env(id, "a", 5, "2026-11-29T08:00:20Z", commit(9)), now);
        assert!(fx.writes.is_empty() && fx.ack.is_empty() && fx.completed.is_empty());
        assert_eq!(lc.running().running, 0, "an orphan is not running");
        let fx = lc.tick(t("2026-11-29T08:00:30Z"));
        assert!(
            fx.writes.is_empty(),
            "an orphan writes no snapshot: {}",
            lines(&fx)
        );
        let fx = lc.tick(t("2026-11-29T08:01:02Z"));
        assert!(
            fx.writes.is_empty(),
            "an orphan expires without a status: {}",
            lines(&fx)
        );
        assert_eq!(fx.ack, vec![3], "its messages are acked when it expires");
        assert!(lc.tick(t("2026-11-29T08:05:00Z")).ack.is_empty());
    }

    #[test]
    fn redelivery_in_another_order_rebuilds_the_same_run() {
        let in_order = {
            let mut lc = Lifecycle::new(LifecycleSettings::default());
            let now = t("2026-11-29T08:00:01Z");
            lc.handle(
                1,
                env(
                    Uuid::nil(),
                    "a",
                    0,
                    "2026-11-29T08:00:01Z",
                    Body::Registered(info(None)),
                ),
                now,
            );
            lc.handle(
                2,
                env(
                    Uuid::nil(),
                    "a",
                    1,
                    "2026-11-29T08:00:05Z",
                    Body::Stats(stats(4)),
                ),
                now,
            );
            let fx = lc.handle(
                3,
                env(Uuid::nil(), "a", 2, "2026-11-29T08:00:12Z", commit(6)),
                now,
            );
            (lines(&fx), acks_of(&fx), fx.ack)
        };
        let mut lc = Lifecycle::new(LifecycleSettings::default());
        let now = t("2026-11-29T08:03:00Z");
        let fx = lc.handle(
            7,
            env(
                Uuid::nil(),
                "a",
                1,
                "2026-11-29T08:00:05Z",
                Body::Stats(stats(4)),
            ),
            now,
        );
        assert!(fx.writes.is_empty() && fx.ack.is_empty());
        let fx = lc.handle(
            8,
            env(Uuid::nil(), "a", 2, "2026-11-29T08:00:12Z", commit(6)),
            now,
        );
        assert!(fx.writes.is_empty(), "no final record before the register");
        assert_eq!(fx.ack, vec![7]);
        assert!(lc.tick(t("2026-11-29T08:03:15Z")).writes.is_empty());
        let fx = lc.handle(
            9,
            env(
                Uuid::nil(),
                "a",
                0,
                "2026-11-29T08:00:01Z",
                Body::Registered(info(None)),
            ),
            now,
        );
        assert_eq!(fx.writes.len(), 2, "event point, then the final record");
        assert!(
            lines(&fx).ends_with(&in_order.0),
            "same final points as in order"
        );
        assert_eq!(acks_of(&fx), vec![9, 8]);
        assert_eq!(in_order.2, vec![2]);
        assert_eq!(lc.running().running, 0);
    }

    #[test]
    fn messages_delivered_twice_add_no_points() {
        let mut lc = Lifecycle::new(LifecycleSettings::default());
        let id = Uuid::new_v4();
        let now = t("2026-11-29T08:00:01Z");
        let msgs = [
            (0, "2026-11-29T08:00:01Z", Body::Registered(info(None))),
            (1, "2026-11-29T08:00:04Z", Body::Stats(stats(3))),
            (2, "2026-11-29T08:00:08Z", Body::Stats(stats(8))),
            (3, "2026-11-29T08:00:09Z", commit(9)),
        ];
        let mut written = String::new();
        let mut tag = 0;
        for (seq, at, body) in msgs {
            for _ in 0..2 {
                tag += 1;
                written.push_str(&lines(&lc.handle(
                    tag,
                    env(id, "a", seq, at, body.clone()),
                    now,
                )));
            }
        }
        written.push_str(&lines(&lc.tick(t("2026-11-29T08:20:00Z"))));
        assert_eq!(
            written.matches("loadtest_event,").count(),
            2,
            "running, then committed: {written}"
        );
        assert_eq!(written.matches("status=\"committed\"").count(), 1);
        assert_eq!(
            written.matches("loadtest_snapshot,").count(),
            1,
            "{written}"
        );
        assert_eq!(written.matches("loadtest_summary,").count(), 2, "{written}");
        assert!(
            !written.contains("target_host=,"),
            "no point under empty tags"
        );
    }
}
