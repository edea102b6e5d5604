//! The points of each measurement (data model: `docs/architecture.md`): pure functions from
//! a run's state to [`Point`]s.
//!
//! | measurement | tags | fields |
//! |---|---|---|
//! | `loadtest_event` | `event_id`, `target_host`, `mode`, `tool`, `host` | `status`, `clients`, `hatch_rate`, `planned_requests`, `duration_s` (final only) |
//! | `loadtest_snapshot` | `event_id`, `target_host`, `mode` | `user_count`, `nodes`, then [`interval_fields`] |
//! | `loadtest_request` | `event_id`, `method`, `name` | [`interval_fields`] |
//! | `loadtest_summary` | `event_id`, `method`, `name` (and `name="Aggregated"`) | totals, rates, percentiles |
//! | `loadtest_error` | `event_id`, `method`, `name` | `error`, `occurrences` |
//! | `loadtest_threshold` | `event_id`, `node_id`, `threshold` | `passed` (1/0), `verdict` (`pass`, `fail`, `no data`), `actual`, `limit` |
//!
//! Times are in ms rounded to whole µs ([`round_to_us`]), rates per second, timestamps Unix ns.
//! Every percentile is [`StatsEntry::percentile`] (or, for an interval,
//! [`StatsEntry::interval_percentile`]): the merged HdrHistogram when every node sent one, else
//! Locust's map, named by the `percentile_source` field (`hdr` or `locust`). Summary rates are
//! over the run's load window ([`Merged::window_s`]), the span of `duration_s` too.

use std::collections::BTreeMap;

use protocol::stats::round_to_us;
use protocol::time::unix_nanos;
use protocol::{RunInfo, StatsEntry, AGGREGATED};
use uuid::Uuid;

use crate::effects::FinalStatus;
use crate::point::Point;
use crate::run::{Merged, NodeState, Previous};

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

/// The `loadtest_event` point of a run that has started (status `running`).
pub(crate) fn running_event_point(id: Uuid, info: &RunInfo) -> Point {
    event_point(id, info, "running")
}

/// The `loadtest_event` point of a finished run, with its duration in seconds.
pub(crate) fn final_event_point(
    id: Uuid,
    info: &RunInfo,
    status: FinalStatus,
    duration_s: f64,
) -> Point {
    event_point(id, info, status.as_str()).float("duration_s", duration_s)
}

fn event_point(id: Uuid, info: &RunInfo, status: &str) -> Point {
    let label = run_label(id, info, status);
    Point::new("loadtest_event", unix_nanos(info.started_at))
        .tag("event_id", id.hyphenated().to_string())
        .tag("target_host", info.target_host.clone())
        .tag("mode", info.mode.clone())
        .tag("tool", info.tool.clone())
        .tag("host", info.host.clone())
        .string("status", status)
        .int("clients", info.clients)
        .float("hatch_rate", info.hatch_rate)
        .int("planned_requests", info.requests)
        .string("label", label)
}

/// The `label` field of `loadtest_event`: `2026-11-29 08:00:00 UTC · http://target · committed ·
/// <uuid>`. Dashboards list runs by it (Grafana's run selector shows the text before the last
/// ` · ` and keeps the uuid as the value); it starts with the start time so that sorting the
/// labels sorts the runs.
pub(crate) fn run_label(id: Uuid, info: &RunInfo, status: &str) -> String {
    format!(
        "{} · {} · {status} · {}",
        info.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        if info.target_host.is_empty() {
            "(no target)"
        } else {
            info.target_host.as_str()
        },
        id.hyphenated()
    )
}

/// What a snapshot is taken of.
#[derive(Debug)]
pub(crate) struct SnapshotInput<'a> {
    pub(crate) id: Uuid,
    pub(crate) info: &'a RunInfo,
    pub(crate) merged: &'a Merged,
    pub(crate) previous: Option<&'a Previous>,
    /// Nodes that have sent stats.
    pub(crate) nodes: usize,
}

/// One `loadtest_snapshot` point and one `loadtest_request` point per endpoint at `ts`; rates
/// are over the time up to `until` (Unix ns), which is `ts` for a tick and the run's end for the
/// final snapshot (its interval is cut short).
pub(crate) fn snapshot_points(s: &SnapshotInput<'_>, ts: i64, until: i64) -> Vec<Point> {
    let event = s.id.hyphenated().to_string();
    let merged = s.merged;
    let start_ns = if merged.total.start_time > 0.0 {
        (merged.total.start_time * 1e9) as i64
    } else {
        unix_nanos(s.info.started_at)
    };
    // Rates are over the time the data covers (the last request of each snapshot), not the time
    // between snapshots: a node's stats may be a stats interval old at a tick, and the final
    // snapshot's stats reach the very end of the run.
    let data_time = |e: &StatsEntry, fallback_ns: i64| match e.last_request_timestamp {
        Some(t) if t > 0.0 => t,
        _ => fallback_ns as f64 / 1e9,
    };
    // Both ends of an interval are on the nodes' own clock (`start_time`,
    // `last_request_timestamp`), never one on the writer's: a node whose clock is an hour off
    // would otherwise get an interval an hour long (or negative). The writer's clock (`ts`,
    // `p.timestamp`) is only the fallback when a node sent no time stamps at all.
    let (prev_time, prev_total) = match s.previous {
        Some(p) if p.total.last_request_timestamp.is_some_and(|t| t > 0.0) => {
            (data_time(&p.total, p.timestamp), Some(&p.total))
        }
        // No request before: the interval's requests came after the node started counting.
        Some(p) => (start_ns as f64 / 1e9, Some(&p.total)),
        None => (start_ns as f64 / 1e9, None),
    };
    let dt = data_time(&merged.total, until.min(ts)) - prev_time;
    let mut points = Vec::with_capacity(merged.by_name.len() + 1);
    let snapshot = Point::new("loadtest_snapshot", ts)
        .tag("event_id", event.clone())
        .tag("target_host", s.info.target_host.clone())
        .tag("mode", s.info.mode.clone())
        .int("user_count", merged.user_count)
        .int("nodes", s.nodes as u64);
    points.push(interval_fields(snapshot, &merged.total, prev_total, dt));
    for (key, entry) in &merged.by_name {
        let prev = s.previous.and_then(|p| p.by_name.get(key));
        let point = Point::new("loadtest_request", ts)
            .tag("event_id", event.clone())
            .tag("method", key.0.clone())
            .tag("name", key.1.clone());
        points.push(interval_fields(point, entry, prev, dt));
    }
    points
}

/// Cumulative counts (`requests`, `failures`) plus interval rates (`rps`, `fail_per_s`) and
/// response times (`response_time_avg/min/max/p50/p90/p95/p99`, from the histogram difference),
/// and `response_time_p95_total` over the whole run. `dt` is the interval in seconds.
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
        let since = prev.map(|prev| now.response_times.since(&prev.response_times));
        let hist = since.as_ref().unwrap_or(&now.response_times);
        let min_max = hist
            .range()
            .map_or((None, None), |(lo, hi)| (Some(lo), Some(hi)));
        let clamp = |v: f64| {
            let lo = now.min_response_time.unwrap_or(0.0);
            round_to_us(v.max(lo).min(now.max_response_time.max(lo)))
        };
        p = p.float(
            "response_time_avg",
            round_to_us((now.total_response_time - prev_rt).max(0.0) / d_req as f64),
        );
        if let (Some(lo), Some(hi)) = min_max {
            p = p
                .float("response_time_min", clamp(lo as f64))
                .float("response_time_max", clamp(hi as f64));
        }
        // Only percentiles somebody measured: the interval's HdrHistogram or Locust map, or,
        // for an entry sent without either (Locust's web stats) whose interval is the whole
        // run, the percentiles its producer reported. Never the minimum of an empty histogram.
        let measured = !now.response_times.is_empty()
            || now.percentile_source() == protocol::stats::PercentileSource::Hdr;
        let values = if measured {
            now.interval_percentiles(prev, SNAPSHOT_PERCENTILES.map(|(_, pct)| pct))
        } else if prev.is_none_or(|p| p.num_requests == 0) {
            SNAPSHOT_PERCENTILES.map(|(_, pct)| now.measured_percentile(pct))
        } else {
            [None; SNAPSHOT_PERCENTILES.len()]
        };
        for ((field, _), v) in SNAPSHOT_PERCENTILES.iter().zip(values) {
            if let Some(v) = v {
                p = p.float(field, v);
            }
        }
    }
    if let Some(v) = now.measured_percentile(0.95) {
        p = p
            .float("response_time_p95_total", v)
            .string("percentile_source", now.percentile_source().as_str());
    }
    p
}

/// The final figures of one endpoint, or of all requests: what its `loadtest_summary` point
/// carries, computed once so the `event.completed` message shows the very numbers stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Summary {
    pub(crate) requests: u64,
    pub(crate) failures: u64,
    content_length: u64,
    avg: f64,
    /// `rps` and `fail_per_s`, over the run's load window; `None` when that is unknown.
    pub(crate) rates: Option<(f64, f64)>,
    /// `hdr` or `locust`: where the percentiles come from.
    source: &'static str,
    /// `response_time_min`, `response_time_max` and [`SUMMARY_PERCENTILES`] in order (each
    /// `None` when nobody measured it); `None` without requests.
    times: Option<(f64, f64, [Option<f64>; SUMMARY_PERCENTILES.len()])>,
}

impl Summary {
    /// The figures of `entry`, its rates over the run's load window `window_s` (s).
    pub(crate) fn of(entry: &StatsEntry, window_s: Option<f64>) -> Self {
        let rates = window_s.filter(|w| *w > 0.0).map(|w| {
            (
                protocol::payload::rate(entry.num_requests, Some(w)),
                protocol::payload::rate(entry.num_failures, Some(w)),
            )
        });
        let times = (entry.num_requests > 0).then(|| {
            (
                round_to_us(entry.min_response_time.unwrap_or_default()),
                round_to_us(entry.max_response_time),
                SUMMARY_PERCENTILES.map(|(_, pct)| entry.measured_percentile(pct)),
            )
        });
        Self {
            requests: entry.num_requests,
            failures: entry.num_failures,
            content_length: entry.total_content_length,
            avg: round_to_us(entry.avg_response_time()),
            rates,
            source: entry.percentile_source().as_str(),
            times,
        }
    }

    /// The percentile written as `field` (`response_time_p95`), when there were requests and
    /// somebody measured it.
    pub(crate) fn percentile(&self, field: &str) -> Option<f64> {
        let (_, _, values) = self.times.as_ref()?;
        SUMMARY_PERCENTILES
            .iter()
            .position(|(f, _)| *f == field)
            .and_then(|i| values[i])
    }

    /// The `loadtest_summary` point of these figures for (`method`, `name`) of run `id`.
    fn point(&self, id: &str, method: &str, name: &str, ts: i64) -> Point {
        let mut p = Point::new("loadtest_summary", ts)
            .tag("event_id", id.to_string())
            .tag("method", method.to_string())
            .tag("name", name.to_string())
            .int("requests", self.requests)
            .int("failures", self.failures)
            .int("content_length", self.content_length)
            .float("response_time_avg", self.avg);
        if let Some((rps, fail_per_s)) = self.rates {
            p = p.float("rps", rps).float("fail_per_s", fail_per_s);
        }
        if let Some((min, max, percentiles)) = &self.times {
            p = p
                .float("response_time_min", *min)
                .float("response_time_max", *max);
            for ((field, _), value) in SUMMARY_PERCENTILES.iter().zip(percentiles) {
                if let Some(v) = value {
                    p = p.float(field, *v);
                }
            }
            p = p.string("percentile_source", self.source);
        }
        p
    }
}

/// The figures of all requests of a run (its `name="Aggregated"` summary).
pub(crate) fn aggregated(merged: &Merged) -> Summary {
    Summary::of(&merged.total, merged.window_s)
}

/// One `loadtest_summary` point per endpoint and one for `name="Aggregated"` (from `aggregated`,
/// the figures of `merged.total`: see [`aggregated`]), then one `loadtest_error` point per
/// (method, name, error).
pub(crate) fn summary_points(
    id: Uuid,
    merged: &Merged,
    aggregated: &Summary,
    ts: i64,
) -> Vec<Point> {
    let event = id.hyphenated().to_string();
    let mut points: Vec<Point> = merged
        .by_name
        .values()
        .map(|e| Summary::of(e, merged.window_s).point(&event, &e.method, &e.name, ts))
        .collect();
    points.push(aggregated.point(&event, &merged.total.method, AGGREGATED, ts));
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

/// One `loadtest_threshold` point per node and threshold: tags `event_id`, `node_id`,
/// `threshold` (the expression, e.g. `p95<300ms`); fields `passed` (1 or 0), `actual`, `limit`.
pub(crate) fn threshold_points(
    id: Uuid,
    nodes: &BTreeMap<String, Box<NodeState>>,
    ts: i64,
) -> Vec<Point> {
    let event = id.hyphenated().to_string();
    let mut points = Vec::new();
    for (node_id, node) in nodes {
        for t in &node.thresholds {
            // A threshold nothing was measured against fails: verdict `no data`.
            let (passed, verdict) = match t.actual {
                None => (false, "no data"),
                Some(_) if t.passed => (true, "pass"),
                Some(_) => (false, "fail"),
            };
            let mut p = Point::new("loadtest_threshold", ts)
                .tag("event_id", event.clone())
                .tag("node_id", node_id.clone())
                .tag("threshold", t.threshold.clone())
                .int("passed", i64::from(passed))
                .string("verdict", verdict);
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
