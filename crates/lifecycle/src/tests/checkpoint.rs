//! Checkpoints and restore, the missed-tick fill, and the outbox during an outage.

use protocol::{Body, ErrorEntry, StatsEntry, ThresholdVerdict};

use super::scenario::{commit, int, named, ns, of, payload, stats, string, t, Scenario};
use crate::{LifecycleSettings, Record};

/// Records through JSON, as the writer stores them.
fn through_json(records: &[Record]) -> Vec<Record> {
    let bytes = serde_json::to_vec(records).expect("serializes");
    serde_json::from_slice(&bytes).expect("parses")
}

/// Three endpoints (two kept by name, one under `(other)`), errors, `n` requests each.
fn rich(n: u64, last: f64) -> protocol::StatsPayload {
    let start = t("08:00:00").timestamp() as f64;
    let entries: Vec<StatsEntry> = ["/a", "/b", "/c"]
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let mut e = StatsEntry::new("GET", *name, start);
            for i in 0..n {
                let at = start + last * (i + 1) as f64 / n as f64;
                e.log(5.0 + (i * 7 % 300) as f64 + k as f64, 10, i % 9 == 0, at);
            }
            e
        })
        .collect();
    let errors = vec![ErrorEntry {
        method: "GET".into(),
        name: "/c".into(),
        error: "HTTP 503".into(),
        occurrences: n.div_ceil(9),
    }];
    payload(entries, errors, 3)
}

/// A message of the run: delivery tag, node, seq, body.
type Message = (u64, &'static str, u64, Body);

fn settings() -> LifecycleSettings {
    LifecycleSettings {
        max_names_per_run: 2,
        ..LifecycleSettings::default()
    }
}

/// Snapshot timestamps (Unix ns) in written line protocol.
fn snapshot_times(lines: &[String]) -> Vec<i64> {
    lines
        .iter()
        .filter(|l| l.starts_with("loadtest_snapshot,"))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect()
}

#[test]
fn a_restored_run_writes_the_same_points_as_the_original() {
    let mut a = Scenario::with(settings()).expecting(2);
    a.register(1, "a");
    a.register(2, "b");
    a.stats(3, "a", 1, rich(100, 10.0));
    a.stats(4, "b", 1, rich(50, 12.0));
    a.tick("08:00:15");
    a.stats(5, "a", 2, rich(300, 20.0));
    let records = through_json(&a.checkpoint().records);
    assert_eq!(records.len(), 1);
    let mut b = Scenario::restored(settings(), records, "08:00:21").expecting(2);
    a.clock("08:00:21");
    assert_eq!(a.running(), b.running());

    // The same messages and ticks from here on write the same points.
    let verdict = vec![ThresholdVerdict {
        threshold: "p95<300ms".into(),
        metric: Some("p95".into()),
        name: None,
        op: Some(protocol::ThresholdOp::Lt),
        passed: true,
        actual: Some(250.0),
        limit: Some(300.0),
    }];
    let steps: Vec<(&str, Option<Message>)> = vec![
        ("08:00:30", None),
        ("08:00:31", Some((6, "b", 2, Body::Stats(rich(200, 28.0))))),
        ("08:00:45", None),
        (
            "08:00:50",
            Some((7, "a", 3, commit(rich(400, 40.0), verdict.clone()))),
        ),
        (
            "08:00:52",
            Some((8, "b", 3, commit(rich(250, 41.0), Vec::new()))),
        ),
    ];
    for (time, msg) in steps {
        let (fa, fb) = match msg {
            None => (a.tick(time), b.tick(time)),
            Some((tag, node, seq, body)) => {
                a.clock(time);
                b.clock(time);
                (
                    a.send(tag, node, seq, time, body.clone()),
                    b.send(tag, node, seq, time, body),
                )
            }
        };
        assert_eq!(fa.writes, fb.writes, "at {time}");
        let bodies = |fx: &crate::Effects| -> Vec<Body> {
            fx.completed.iter().map(|e| e.body.clone()).collect()
        };
        assert_eq!(bodies(&fa), bodies(&fb), "at {time}");
    }
    let n = b.written.len();
    assert!(n > 15, "{n} lines");
    assert_eq!(a.written[a.written.len() - n..], b.written[..]);
    let other: Vec<_> = b.written.iter().filter(|l| l.contains("(other)")).collect();
    assert!(
        !other.is_empty(),
        "the names kept apart survive the restore"
    );
    assert!(b
        .written
        .iter()
        .any(|l| l.starts_with("loadtest_threshold,")));
}

#[test]
fn a_restore_fills_the_ticks_no_writer_took() {
    let mut a = Scenario::new();
    a.register(1, "a");
    a.stats(2, "a", 1, stats(10));
    a.tick("08:00:15");
    // The writer dies after this checkpoint; the next one takes over at 08:01:07 and gets the
    // newer stats redelivered before its first tick.
    let records = through_json(&a.checkpoint().records);
    let mut b = Scenario::restored(LifecycleSettings::default(), records.clone(), "08:01:07");
    b.stats(3, "a", 2, stats(40));
    let fx = b.tick("08:01:07.1");
    let snaps = of(&fx, "loadtest_snapshot");
    let times: Vec<i64> = snaps.iter().map(|p| p.timestamp).collect();
    assert_eq!(times, [ns("08:00:30"), ns("08:00:45"), ns("08:01:00")]);
    let requests: Vec<i64> = snaps.iter().map(|p| int(p, "requests")).collect();
    assert_eq!(requests, [40, 40, 40]);
    assert!(b.tick("08:01:08").writes.is_empty(), "each tick once");

    // A commit taken in before any tick fills the ticks up to the final snapshot.
    let mut c = Scenario::restored(LifecycleSettings::default(), records, "08:01:07");
    let fx = c.commit(3, "a", 2, "08:00:50", stats(40));
    let times: Vec<i64> = of(&fx, "loadtest_snapshot")
        .iter()
        .map(|p| p.timestamp)
        .collect();
    assert_eq!(times, [ns("08:00:30"), ns("08:00:45"), ns("08:01:00")]);
    assert_eq!(
        named(&fx, "loadtest_summary", "Aggregated").timestamp,
        ns("08:01:00")
    );
    assert_eq!(fx.completed.len(), 1);
}

#[test]
fn deliveries_are_acked_once_a_checkpoint_covers_them() {
    let mut s = Scenario::new();
    s.register(1, "a");
    s.stats(2, "a", 1, stats(5));
    let cp = s.checkpoint();
    assert_eq!(cp.covers, [1, 2]);
    assert_eq!(cp.records.len(), 1);
    assert_eq!(cp.low_water, t("08:00:01"));

    // Unchanged: nothing to checkpoint until the refresh, and nothing held.
    s.clock("08:00:30");
    let cp = s.checkpoint();
    assert!(cp.records.is_empty() && cp.covers.is_empty());
    assert_eq!(cp.low_water, t("08:00:01"), "the run's record is older");
    s.clock("08:01:01");
    let cp = s.checkpoint();
    assert_eq!(cp.records.len(), 1, "refreshed after checkpoint_refresh");
    assert!(cp.covers.is_empty());
    assert_eq!(cp.low_water, t("08:01:01"));

    // Newer stats are held until the next checkpoint; the one they supersede is acked at once.
    assert!(s.stats(3, "a", 2, stats(9)).ack.is_empty());
    assert_eq!(s.stats(4, "a", 3, stats(12)).ack, [3]);
    assert_eq!(s.covered(), [4]);

    // Many runs: what is held is what arrived since the last checkpoint, not the runs.
    let mut many = Scenario::new();
    for i in 0..1_000u64 {
        let env = protocol::Envelope {
            event_id: uuid::Uuid::from_u128(u128::from(i) + 1),
            node_id: "n".into(),
            seq: 0,
            sent_at: t("08:00:00"),
            token: String::new(),
            key_id: None,
            body: Body::Registered(super::scenario::info(None)),
        };
        many.lc.handle(i, env, t("08:00:01"));
    }
    assert_eq!(many.covered().len(), 1_000);
    assert!(many.covered().is_empty(), "nothing stays held");
    assert_eq!(many.running(), 1_000);
}

#[test]
fn snapshots_wait_in_a_bounded_outbox_during_an_outage() {
    let mut s = Scenario::with(LifecycleSettings {
        max_pending_snapshots_per_run: 3,
        ..LifecycleSettings::default()
    });
    s.register(1, "a");
    s.stats(2, "a", 1, stats(5));
    s.outage(true);
    let mut dropped = 0;
    for (i, time) in ["08:00:15", "08:00:30", "08:00:45", "08:01:00", "08:01:15"]
        .into_iter()
        .enumerate()
    {
        let i = i as u64;
        s.clock(time);
        s.stats(10 + i, "a", 2 + i, stats(10 * (i + 1)));
        dropped += s.tick(&format!("{time}.1")).dropped_snapshots;
    }
    assert_eq!(dropped, 2, "the two oldest dropped");
    assert_eq!(s.lc.pending_snapshots(), 3);
    // Consumption went on: the messages are covered by a checkpoint while nothing is written.
    let cp = s.checkpoint();
    assert_eq!(cp.covers, [1, 14]);
    assert_eq!(
        cp.records[0].state.as_ref().map(|st| st.pending_points()),
        Some(6)
    );

    // The outbox survives the writer: a writer restored from the checkpoint writes it, with
    // the snapshots' own timestamps, once the sink is back.
    let mut b = Scenario::restored(
        LifecycleSettings::default(),
        through_json(&cp.records),
        "08:01:20",
    );
    assert!(b.outage(false).writes.is_empty());
    assert_eq!(
        snapshot_times(&b.written),
        [ns("08:00:45"), ns("08:01:00"), ns("08:01:15")]
    );
    assert!(b.written[0].contains("requests=30i"), "{:?}", b.written);
    assert_eq!(b.lc.pending_snapshots(), 0);
}

#[test]
fn an_outbox_is_bounded_in_bytes_too() {
    let one = {
        let mut s = Scenario::new();
        s.register(1, "a");
        s.stats(2, "a", 1, stats(5));
        s.outage(true);
        s.tick("08:00:15");
        let batch = s.lc.batch(usize::MAX);
        batch.parts[0].lines.len()
    };
    let mut s = Scenario::with(LifecycleSettings {
        max_pending_bytes_per_run: one * 2 + one / 2,
        ..LifecycleSettings::default()
    });
    s.register(1, "a");
    s.stats(2, "a", 1, stats(5));
    s.outage(true);
    // New stats each tick: every snapshot carries the same fields, so they are about as long.
    let dropped: u64 = ["08:00:15", "08:00:30", "08:00:45", "08:01:00"]
        .into_iter()
        .enumerate()
        .map(|(i, time)| {
            let i = i as u64;
            s.stats(10 + i, "a", 2 + i, stats(5 * (i + 2)));
            s.tick(time).dropped_snapshots
        })
        .sum();
    assert_eq!(dropped, 2, "two snapshots fit");
    assert_eq!(s.lc.pending_snapshots(), 2);
    s.outage(false);
    assert_eq!(snapshot_times(&s.written), [ns("08:00:45"), ns("08:01:00")]);
}

#[test]
fn a_run_committed_during_an_outage_waits_finalizing_across_a_restore() {
    let mut s = Scenario::new();
    s.register(1, "a");
    s.stats(2, "a", 1, stats(5));
    s.tick("08:00:15");
    s.outage(true);
    s.clock("08:00:20");
    let fx = s.commit(3, "a", 2, "08:00:20", stats(8));
    assert_eq!(fx.ack, [2], "the commit supersedes the stats");
    assert!(fx.completed.is_empty(), "not written yet");
    assert_eq!(s.running(), 0, "finalizing is not running");
    let cp = s.checkpoint();
    assert_eq!(
        cp.covers,
        [1, 3],
        "acked although the final record is not written"
    );
    let state = cp.records[0].state.as_ref().expect("state");
    assert!(state.finalizing() && state.pending_points() > 0);

    let mut b = Scenario::restored(
        LifecycleSettings::default(),
        through_json(&cp.records),
        "08:01:30",
    );
    b.outage(true);
    assert_eq!(
        b.commit(4, "a", 2, "08:00:20", stats(8)).ack,
        [4],
        "a finalizing run takes in nothing more"
    );
    assert!(
        b.tick("08:01:30.1").writes.is_empty(),
        "no snapshot after the end"
    );
    let fx = b.outage(false);
    assert_eq!(fx.completed.len(), 1);
    assert!(b.written.iter().any(|l| l.starts_with("loadtest_summary,")
        && l.contains("name=Aggregated")
        && l.contains("requests=8i")));
    assert!(b.written.iter().any(|l| l.contains("status=\"committed\"")));
    let cp = b.checkpoint();
    assert!(cp.covers.is_empty());
    assert_eq!(cp.records.len(), 1);
    assert!(cp.records[0].state.is_none(), "tombstone");
    assert_eq!(b.lc.runs(), 0);
    // A tombstone read after the state removes the run.
    let mut c = Scenario::new();
    let mut records = through_json(&s.checkpoint().records);
    records.extend(through_json(&cp.records));
    assert_eq!(c.lc.restore(records), 0);
    assert!(c.tick("08:02:00").writes.is_empty());
}

#[test]
fn a_final_record_rejected_for_good_drops_the_run_and_returns_its_deliveries() {
    let mut s = Scenario::new();
    s.outage(true);
    s.register(1, "a");
    s.commit(2, "a", 1, "08:00:05", stats(3));
    let batch = s.lc.batch(usize::MAX);
    assert_eq!(batch.parts.len(), 1);
    assert!(batch.parts[0].final_record);
    assert_eq!(s.lc.rejected(&batch.parts[0]), [1, 2], "registers first");
    assert_eq!(s.lc.runs(), 0);
    let cp = s.checkpoint();
    assert!(cp.covers.is_empty(), "dead-lettered, not acked");
    assert!(cp.records[0].state.is_none(), "tombstone");
}

#[test]
fn a_snapshot_rejected_for_good_is_dropped_and_the_run_goes_on() {
    let mut s = Scenario::new();
    s.register(1, "a");
    s.stats(2, "a", 1, stats(3));
    s.outage(true);
    s.tick("08:00:15");
    let batch = s.lc.batch(usize::MAX);
    assert!(!batch.parts[0].final_record);
    assert!(s.lc.rejected(&batch.parts[0]).is_empty());
    assert_eq!(s.lc.pending_snapshots(), 0);
    s.outage(false);
    let fx = s.commit(3, "a", 2, "08:00:20", stats(4));
    assert_eq!(fx.completed.len(), 1);
    assert_eq!(string(of(&fx, "loadtest_event")[0], "status"), "committed");
}

#[test]
fn one_batch_carries_every_run_and_is_capped_in_bytes() {
    let mut s = Scenario::new();
    s.outage(true);
    for i in 0..10u64 {
        let env = protocol::Envelope {
            event_id: uuid::Uuid::from_u128(u128::from(i) + 1),
            node_id: "n".into(),
            seq: 0,
            sent_at: t("08:00:00"),
            token: String::new(),
            key_id: None,
            body: Body::Registered(super::scenario::info(None)),
        };
        s.lc.handle(i, env, t("08:00:01"));
    }
    let all = s.lc.batch(usize::MAX);
    assert_eq!(all.parts.len(), 10);
    assert_eq!(all.points(), 10);
    assert_eq!(all.body().iter().filter(|b| **b == b'\n').count(), 10);
    let capped = s.lc.batch(all.parts[0].lines.len() * 3);
    assert_eq!(capped.parts.len(), 3);
    assert_eq!(s.lc.batch(1).parts.len(), 1, "at least one run");
}

#[test]
fn a_ticks_snapshot_points_of_every_run_are_batched_before_its_request_points() {
    let mut s = Scenario::new();
    s.outage(true);
    let runs: Vec<uuid::Uuid> = (1..=3u128).map(uuid::Uuid::from_u128).collect();
    for (i, id) in runs.iter().enumerate() {
        let tag = i as u64 * 10;
        for (k, body) in [
            Body::Registered(super::scenario::info(None)),
            Body::Stats(super::scenario::stats(20)),
        ]
        .into_iter()
        .enumerate()
        {
            let env = protocol::Envelope {
                event_id: *id,
                node_id: "n".into(),
                seq: k as u64,
                sent_at: t("08:00:00"),
                token: String::new(),
                key_id: None,
                body,
            };
            s.lc.handle(tag + k as u64, env, t("08:00:01"));
        }
    }
    // Write the `running` event points, then tick.
    let events = s.lc.batch(usize::MAX);
    for part in &events.parts {
        s.lc.written(part);
    }
    s.lc.tick(t("08:00:15"));
    let all = s.lc.batch(usize::MAX);
    let lines: Vec<String> = String::from_utf8_lossy(&all.body())
        .lines()
        .map(|l| l.split(',').next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        lines,
        [
            "loadtest_snapshot",
            "loadtest_request",
            "loadtest_snapshot",
            "loadtest_request",
            "loadtest_snapshot",
            "loadtest_request"
        ],
        "one part per run, its items in order"
    );
    // A batch with room for the three snapshot lines takes every run's snapshot point first.
    let room: usize = String::from_utf8_lossy(&all.body())
        .lines()
        .filter(|l| l.starts_with("loadtest_snapshot"))
        .map(|l| l.len() + 1)
        .sum();
    // Two batches at once are disjoint and in the same order: the snapshot points, then the
    // request points.
    let two = s.lc.batches(room, 2);
    assert_eq!(two.len(), 2);
    assert_eq!(two[0], s.lc.batch(room));
    assert_eq!(two[0].points() + two[1].points(), 6);
    assert!(String::from_utf8_lossy(&two[1].body())
        .lines()
        .all(|l| l.starts_with("loadtest_request")));
    let first = s.lc.batch(room);
    let body = String::from_utf8_lossy(&first.body()).to_string();
    assert_eq!(first.parts.len(), 3);
    assert!(
        body.lines().all(|l| l.starts_with("loadtest_snapshot")),
        "{body}"
    );
    // Written one run at a time: the next batch still takes the other runs' snapshot points
    // before the written run's request points.
    s.lc.written(&first.parts[0]);
    let next = s.lc.batch(1);
    assert_eq!(next.parts.len(), 1);
    assert_eq!(next.parts[0].event_id, first.parts[1].event_id);
    for part in &first.parts[1..] {
        s.lc.written(part);
    }
    let rest = s.lc.batch(usize::MAX);
    assert_eq!(rest.points(), 3);
    assert!(String::from_utf8_lossy(&rest.body())
        .lines()
        .all(|l| l.starts_with("loadtest_request")));
}
