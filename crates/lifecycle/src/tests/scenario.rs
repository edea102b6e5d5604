//! A small scenario builder for the lifecycle's tests, and readers for the points it returns.
//!
//! Every time is on 2026-11-29, written `"08:00:15.2"`. Every message belongs to the same run
//! ([`Scenario::id`]), so two scenarios fed the same messages must write the same points. After
//! each message or tick the scenario writes the outboxes (as the writer does), unless the sink is
//! down ([`Scenario::outage`]).

use chrono::{DateTime, Utc};
use protocol::{
    Body, CommitPayload, Envelope, ErrorEntry, RunInfo, StatsEntry, StatsPayload, ThresholdVerdict,
};
use uuid::Uuid;

use crate::{Checkpoint, DeliveryId, Effects, FieldValue, Lifecycle, LifecycleSettings, Point};

/// `"08:00:15.2"` on the test day.
pub(super) fn t(time: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&format!("2026-11-29T{time}Z"))
        .expect("timestamp")
        .with_timezone(&Utc)
}

/// `"08:00:15"` on the test day as Unix nanoseconds.
pub(super) fn ns(time: &str) -> i64 {
    t(time).timestamp_nanos_opt().expect("ns")
}

/// A run's lifecycle, its wall clock and the messages' common fields.
pub(super) struct Scenario {
    pub(super) lc: Lifecycle,
    pub(super) id: Uuid,
    /// Wall-clock time of the messages fed (not their `sentAt`).
    pub(super) now: DateTime<Utc>,
    expected_nodes: Option<u32>,
    /// The sink is down: outboxes are not written.
    down: bool,
    /// Every line written, in order.
    pub(super) written: Vec<String>,
}

impl Scenario {
    /// Default settings; the clock at 08:00:01.
    pub(super) fn new() -> Self {
        Self::with(LifecycleSettings::default())
    }

    pub(super) fn with(settings: LifecycleSettings) -> Self {
        Self {
            lc: Lifecycle::new(settings),
            id: Uuid::from_u128(0x0123_4567_89ab_4def_8123_4567_89ab_cdef),
            now: t("08:00:01"),
            expected_nodes: None,
            down: false,
            written: Vec::new(),
        }
    }

    /// A scenario whose lifecycle is restored from `records` (as a writer taking over does),
    /// with the clock at `time`.
    pub(super) fn restored(
        settings: LifecycleSettings,
        records: Vec<crate::Record>,
        time: &str,
    ) -> Self {
        let mut s = Self::with(settings);
        s.lc.restore(records);
        s.clock(time);
        s
    }

    /// The sink goes down (`true`) or comes back (`false`; the outboxes are written then, and
    /// what that returns).
    pub(super) fn outage(&mut self, down: bool) -> Effects {
        self.down = down;
        let mut fx = Effects::default();
        self.write_outboxes(&mut fx);
        fx
    }

    /// Writes every outbox unless the sink is down; `event.completed` messages go in `fx`.
    fn write_outboxes(&mut self, fx: &mut Effects) {
        while !self.down {
            let batch = self.lc.batch(usize::MAX);
            if batch.is_empty() {
                return;
            }
            for part in &batch.parts {
                let lines = String::from_utf8_lossy(&part.lines);
                self.written.extend(lines.lines().map(str::to_string));
                fx.merge(self.lc.written(part));
            }
        }
    }

    /// A checkpoint at the wall clock.
    pub(super) fn checkpoint(&mut self) -> Checkpoint {
        self.lc.checkpoint(self.now)
    }

    /// The deliveries a checkpoint at the wall clock covers.
    pub(super) fn covered(&mut self) -> Vec<DeliveryId> {
        self.checkpoint().covers
    }

    /// Registers say `expectedNodes: n`.
    pub(super) fn expecting(mut self, n: u32) -> Self {
        self.expected_nodes = Some(n);
        self
    }

    /// Sets the wall clock at which the next messages arrive.
    pub(super) fn clock(&mut self, time: &str) {
        self.now = t(time);
    }

    /// Feeds any message of the run as delivery `tag`.
    pub(super) fn send(
        &mut self,
        tag: DeliveryId,
        node: &str,
        seq: u64,
        sent_at: &str,
        body: Body,
    ) -> Effects {
        let env = Envelope {
            event_id: self.id,
            node_id: node.into(),
            seq,
            sent_at: t(sent_at),
            token: String::new(),
            key_id: None,
            body,
        };
        let mut fx = self.lc.handle(tag, env, self.now);
        self.write_outboxes(&mut fx);
        fx
    }

    /// `node` registers the run (seq 0).
    pub(super) fn register(&mut self, tag: DeliveryId, node: &str) -> Effects {
        let body = Body::Registered(info(self.expected_nodes));
        self.send(tag, node, 0, "08:00:00", body)
    }

    /// `node` sends cumulative stats.
    pub(super) fn stats(
        &mut self,
        tag: DeliveryId,
        node: &str,
        seq: u64,
        stats: StatsPayload,
    ) -> Effects {
        self.send(tag, node, seq, "08:00:00", Body::Stats(stats))
    }

    /// `node` commits its final stats, sent at `sent_at`.
    pub(super) fn commit(
        &mut self,
        tag: DeliveryId,
        node: &str,
        seq: u64,
        sent_at: &str,
        stats: StatsPayload,
    ) -> Effects {
        self.send(tag, node, seq, sent_at, commit(stats, Vec::new()))
    }

    /// A clock tick at `time` (the wall clock moves there).
    pub(super) fn tick(&mut self, time: &str) -> Effects {
        self.now = t(time);
        let mut fx = self.lc.tick(self.now);
        self.write_outboxes(&mut fx);
        fx
    }

    /// Runs listed as running.
    pub(super) fn running(&self) -> usize {
        self.lc.running().running
    }
}

/// The register's metadata: started at 08:00:00, 5 clients against `http://t`.
pub(super) fn info(expected_nodes: Option<u32>) -> RunInfo {
    RunInfo {
        started_at: t("08:00:00"),
        host: "h".into(),
        clients: 5,
        hatch_rate: 1.0,
        requests: 0,
        target_host: "http://t".into(),
        mode: "single".into(),
        tool: "loadgen".into(),
        expected_nodes,
    }
}

/// A commit body.
pub(super) fn commit(stats: StatsPayload, thresholds: Vec<ThresholdVerdict>) -> Body {
    Body::Committed(CommitPayload {
        host: "h".into(),
        stats,
        thresholds,
    })
}

/// A stats payload of `entries` and `errors`.
pub(super) fn payload(
    entries: Vec<StatsEntry>,
    errors: Vec<ErrorEntry>,
    users: u64,
) -> StatsPayload {
    StatsPayload::from_entries(entries, errors, users, "running")
}

/// `n` requests to `GET /` (10–59 ms, one in ten failed), 5 users.
pub(super) fn stats(n: u64) -> StatsPayload {
    let mut e = StatsEntry::new("GET", "/", 1_795_939_200.0);
    for i in 0..n {
        e.log(10.0 + (i % 50) as f64, 100, i % 10 == 0, 1_795_939_201.0);
    }
    payload(vec![e], vec![], 5)
}

/// `n` requests spread evenly from 08:00:00 to `last` seconds later.
pub(super) fn stats_until(n: u64, last: f64) -> StatsPayload {
    let start = t("08:00:00").timestamp() as f64;
    let mut e = StatsEntry::new("GET", "/", start);
    for i in 0..n {
        e.log(10.0, 1, false, start + last * (i + 1) as f64 / n as f64);
    }
    payload(vec![e], vec![], 1)
}

/// Every point written, in order.
pub(super) fn points(fx: &Effects) -> Vec<&Point> {
    fx.writes.iter().flat_map(|w| &w.points).collect()
}

/// The points of `measurement`, in order.
pub(super) fn of<'a>(fx: &'a Effects, measurement: &str) -> Vec<&'a Point> {
    points(fx)
        .into_iter()
        .filter(|p| p.measurement == measurement)
        .collect()
}

/// The one point of `measurement`.
pub(super) fn one<'a>(fx: &'a Effects, measurement: &str) -> &'a Point {
    let found = of(fx, measurement);
    assert_eq!(found.len(), 1, "one {measurement} point: {found:#?}");
    found[0]
}

/// The point of `measurement` whose tag `name` is `value`.
pub(super) fn named<'a>(fx: &'a Effects, measurement: &str, value: &str) -> &'a Point {
    let found: Vec<_> = of(fx, measurement)
        .into_iter()
        .filter(|p| p.tag_value("name") == Some(value))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {measurement} named {value}: {found:#?}"
    );
    found[0]
}

pub(super) fn int(p: &Point, key: &str) -> i64 {
    match p.field(key) {
        Some(FieldValue::Int(v)) => *v,
        other => panic!("integer field {key}: {other:?} in {p:#?}"),
    }
}

pub(super) fn float(p: &Point, key: &str) -> f64 {
    match p.field(key) {
        Some(FieldValue::Float(v)) => *v,
        other => panic!("float field {key}: {other:?} in {p:#?}"),
    }
}

pub(super) fn string<'a>(p: &'a Point, key: &str) -> &'a str {
    match p.field(key) {
        Some(FieldValue::Str(v)) => v,
        other => panic!("string field {key}: {other:?} in {p:#?}"),
    }
}

pub(super) fn tag<'a>(p: &'a Point, key: &str) -> &'a str {
    p.tag_value(key)
        .unwrap_or_else(|| panic!("tag {key} in {p:#?}"))
}
