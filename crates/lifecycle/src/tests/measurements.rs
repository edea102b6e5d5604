//! The points' values: alignment, rates, `(other)` folding, summaries, errors, thresholds and
//! the `event.completed` payload.

use protocol::{Body, ErrorEntry, StatsEntry, ThresholdVerdict};

use super::scenario::{
    commit, float, int, named, ns, of, one, payload, stats, stats_until, string, tag, Scenario,
};
use crate::{LifecycleSettings, OTHER_NAME};

#[test]
fn snapshot_carries_the_run_tags_and_the_interval_fields() {
    let mut s = Scenario::new();
    s.register(1, "a");
    s.stats(2, "a", 1, stats(20));
    let fx = s.tick("08:00:15.2");
    let snapshot = one(&fx, "loadtest_snapshot");
    assert_eq!(snapshot.timestamp, ns("08:00:15"));
    assert_eq!(tag(snapshot, "event_id"), s.id.hyphenated().to_string());
    assert_eq!(tag(snapshot, "target_host"), "http://t");
    assert_eq!(tag(snapshot, "mode"), "single");
    assert_eq!(int(snapshot, "user_count"), 5);
    assert_eq!(int(snapshot, "nodes"), 1);
    assert_eq!(int(snapshot, "requests"), 20);
    assert_eq!(int(snapshot, "failures"), 2);
    assert_eq!(float(snapshot, "response_time_min"), 10.0);
    assert_eq!(float(snapshot, "response_time_max"), 29.0);
    assert_eq!(float(snapshot, "response_time_avg"), 19.5);
    let request = one(&fx, "loadtest_request");
    assert_eq!((tag(request, "method"), tag(request, "name")), ("GET", "/"));
    assert_eq!(int(request, "requests"), 20);
    assert_eq!(request.timestamp, snapshot.timestamp);
}

#[test]
fn rates_are_over_the_time_the_data_covers() {
    let mut s = Scenario::new();
    s.clock("08:00:00.5");
    s.register(1, "a");
    // 100 requests/s; the stats sent at 10 s are all the tick at 15 s sees.
    s.stats(2, "a", 1, stats_until(1_000, 10.0));
    let fx = s.tick("08:00:15");
    let rps = float(one(&fx, "loadtest_snapshot"), "rps");
    assert!((rps - 100.0).abs() < 0.5, "{rps}");
    // The commit at 16 s carries requests up to 16 s: still 100 requests/s, not 600/1 s.
    let fx = s.commit(3, "a", 2, "08:00:16", stats_until(1_600, 16.0));
    let rps = float(one(&fx, "loadtest_snapshot"), "rps");
    assert!((rps - 100.0).abs() < 0.5, "{rps}");
}

#[test]
fn names_beyond_the_limit_count_as_other() {
    let mut s = Scenario::with(LifecycleSettings {
        max_names_per_run: 2,
        ..LifecycleSettings::default()
    });
    let entries: Vec<StatsEntry> = (0..5)
        .map(|i| {
            let mut e = StatsEntry::new("GET", format!("/item/{i}"), 1.0);
            e.log(5.0, 1, false, 2.0);
            e
        })
        .collect();
    s.register(1, "a");
    s.stats(2, "a", 1, payload(entries, vec![], 1));
    let fx = s.tick("08:00:15");
    let names: Vec<_> = of(&fx, "loadtest_request")
        .into_iter()
        .map(|p| (tag(p, "name"), int(p, "requests")))
        .collect();
    assert_eq!(names, [("(other)", 3), ("/item/0", 1), ("/item/1", 1)]);
    assert_eq!(OTHER_NAME, "(other)");
}

#[test]
fn final_record_is_at_the_aligned_end_and_identical_when_rebuilt() {
    let run_once = || {
        let mut s = Scenario::new();
        s.register(1, "a");
        s.clock("08:07:00");
        s.commit(2, "a", 9, "08:00:40", stats(33))
    };
    let first = run_once();
    assert_eq!(first.writes, run_once().writes);
    for m in ["loadtest_snapshot", "loadtest_request", "loadtest_summary"] {
        for p in of(&first, m) {
            assert_eq!(p.timestamp, ns("08:00:45"), "{m} at the aligned end");
        }
    }
    let event = one(&first, "loadtest_event");
    assert_eq!(
        event.timestamp,
        ns("08:00:00"),
        "the event point at the start"
    );
    assert_eq!(
        float(event, "duration_s"),
        1.0,
        "the load window the stats carry"
    );
}

#[test]
fn summary_has_each_endpoint_the_aggregate_and_the_errors() {
    let mut s = Scenario::new();
    s.register(1, "a");
    let mut get = StatsEntry::new("GET", "/a", 1_795_939_200.0);
    let mut post = StatsEntry::new("POST", "/b", 1_795_939_200.0);
    for i in 0..10 {
        get.log(10.0 + i as f64, 100, i == 0, 1_795_939_201.0 + i as f64);
        post.log(100.0, 10, i < 2, 1_795_939_201.0 + i as f64);
    }
    let error = |name: &str, error: &str, occurrences| ErrorEntry {
        method: "POST".into(),
        name: name.into(),
        error: error.into(),
        occurrences,
    };
    let errors = vec![error("/b", "HTTP 500", 1), error("/b", "timeout", 1)];
    let fx = s.commit(2, "a", 1, "08:00:20", payload(vec![get, post], errors, 2));
    let summaries = of(&fx, "loadtest_summary");
    let names: Vec<_> = summaries.iter().map(|p| tag(p, "name")).collect();
    assert_eq!(names, ["/a", "/b", "Aggregated"]);
    let a = named(&fx, "loadtest_summary", "/a");
    assert_eq!(tag(a, "method"), "GET");
    assert_eq!(int(a, "requests"), 10);
    assert_eq!(int(a, "failures"), 1);
    assert_eq!(int(a, "content_length"), 1_000);
    assert_eq!(float(a, "response_time_min"), 10.0);
    assert_eq!(float(a, "response_time_max"), 19.0);
    assert_eq!(float(a, "response_time_p100"), 19.0);
    assert_eq!(float(a, "rps"), 1.0, "10 requests over 10 s");
    let all = named(&fx, "loadtest_summary", "Aggregated");
    assert_eq!((int(all, "requests"), int(all, "failures")), (20, 3));
    let errors = of(&fx, "loadtest_error");
    let found: Vec<_> = errors
        .iter()
        .map(|p| (tag(p, "name"), string(p, "error"), int(p, "occurrences")))
        .collect();
    assert_eq!(found, [("/b", "HTTP 500", 1), ("/b", "timeout", 1)]);
    // Errors of one endpoint share its tags: a nanosecond apart, so none overwrites another.
    assert_eq!(errors[1].timestamp - errors[0].timestamp, 1);
    assert_eq!(errors[0].timestamp, ns("08:00:30"));
}

#[test]
fn thresholds_of_each_node_are_written_with_the_final_record() {
    let mut s = Scenario::new();
    s.register(1, "a");
    let verdicts = vec![
        ThresholdVerdict {
            threshold: "p95<300ms".into(),
            metric: None,
            name: None,
            op: None,
            passed: true,
            actual: Some(29.0),
            limit: Some(300.0),
        },
        ThresholdVerdict {
            threshold: "p95[/x]<1ms".into(),
            metric: Some("p95".into()),
            name: Some("/x".into()),
            op: Some(protocol::ThresholdOp::Lt),
            passed: false,
            actual: None,
            limit: Some(1.0),
        },
    ];
    let fx = s.send(2, "a", 1, "08:00:20", commit(stats(20), verdicts));
    let points = of(&fx, "loadtest_threshold");
    assert_eq!(points.len(), 2);
    let (held, failed) = (points[0], points[1]);
    assert_eq!(tag(held, "event_id"), s.id.hyphenated().to_string());
    assert_eq!(tag(held, "node_id"), "a");
    assert_eq!(tag(held, "threshold"), "p95<300ms");
    assert_eq!(int(held, "passed"), 1);
    assert_eq!(float(held, "actual"), 29.0);
    assert_eq!(float(held, "limit"), 300.0);
    assert_eq!(held.timestamp, ns("08:00:30"));
    assert_eq!(tag(failed, "threshold"), "p95[/x]<1ms");
    assert_eq!(int(failed, "passed"), 0);
    assert!(failed.field("actual").is_none(), "not measured: left out");
    assert_eq!(string(held, "verdict"), "pass");
    assert_eq!(string(failed, "verdict"), "no data", "nothing measured");
}

/// Two loadgen nodes, each with its HdrHistogram and its load window: the summary's
/// percentiles are those of the merged histograms (exactly what one node holding every request
/// would print), p99.9 and p99.99 included, `percentile_source` is `hdr`, and requests/s and
/// `duration_s` are over the load window (first user → last stop), not register → commit.
#[test]
fn summary_percentiles_come_from_the_merged_hdr_histograms_and_rates_from_the_load_window() {
    let start = super::scenario::t("08:00:02").timestamp() as f64;
    let node = |times: &[f64], stopped: f64| {
        let mut e = StatsEntry::recording("GET", "/x", start);
        for (i, ms) in times.iter().enumerate() {
            e.log(*ms, 1, false, start + 1.0 + i as f64 * 0.001);
        }
        let mut p = payload(vec![e], vec![], 1);
        p.stopped_at = Some(stopped);
        p
    };
    let a_times: Vec<f64> = (0..300).map(|i| 105.0 + f64::from(i % 7) * 0.013).collect();
    let b_times: Vec<f64> = (0..100).map(|i| 147.0 + f64::from(i % 5) * 0.021).collect();
    let mut s = Scenario::new().expecting(2);
    s.register(1, "a");
    s.register(2, "b");
    s.commit(3, "a", 1, "08:00:30", node(&a_times, start + 8.0));
    let fx = s.commit(4, "b", 1, "08:00:31", node(&b_times, start + 10.0));
    let summary = named(&fx, "loadtest_summary", "Aggregated");
    let mut all = StatsEntry::recording("GET", "/x", start);
    for ms in a_times.iter().chain(&b_times) {
        all.log(*ms, 1, false, start + 1.0);
    }
    for (field, q) in [
        ("response_time_p50", 0.5),
        ("response_time_p99", 0.99),
        ("response_time_p999", 0.999),
        ("response_time_p9999", 0.9999),
    ] {
        assert_eq!(float(summary, field), all.percentile(q), "{field}");
    }
    assert_eq!(string(summary, "percentile_source"), "hdr");
    assert_eq!(float(summary, "rps"), 40.0, "400 requests over 10 s");
    let event = one(&fx, "loadtest_event");
    assert_eq!(float(event, "duration_s"), 10.0);
    let snapshot = of(&fx, "loadtest_snapshot");
    let last = snapshot.last().expect("final snapshot");
    assert_eq!(string(last, "percentile_source"), "hdr");
}

/// A node without an HdrHistogram (Locust) in the run: percentiles from Locust's maps, said so.
#[test]
fn a_node_without_a_histogram_makes_the_run_fall_back_to_locusts_maps() {
    let mut with = StatsEntry::recording("GET", "/x", 1_795_939_200.0);
    with.log(12.0, 1, false, 1_795_939_201.0);
    let mut s = Scenario::new().expecting(2);
    s.register(1, "a");
    s.register(2, "b");
    s.commit(3, "a", 1, "08:00:10", payload(vec![with], vec![], 1));
    let fx = s.commit(4, "b", 1, "08:00:12", stats(10));
    let summary = named(&fx, "loadtest_summary", "Aggregated");
    assert_eq!(string(summary, "percentile_source"), "locust");
}

#[test]
fn completed_message_reports_the_final_status_and_totals() {
    let mut s = Scenario::new().expecting(2);
    s.register(1, "a");
    s.register(2, "b");
    s.commit(3, "a", 1, "08:00:10", stats(10));
    let fx = s.commit(4, "b", 1, "08:00:12.5", stats(20));
    assert_eq!(fx.completed.len(), 1);
    let env = &fx.completed[0];
    assert_eq!(env.event_id, s.id);
    assert_eq!(env.node_id, "writer");
    let Body::Completed(done) = &env.body else {
        panic!("not a completed message: {env:?}");
    };
    assert_eq!(done.status, "committed");
    assert_eq!(done.duration_s, 1.0, "the load window the stats carry");
    assert_eq!((done.requests, done.failures, done.nodes), (30, 3, 2));
}

#[test]
fn event_point_carries_a_label_for_run_selectors() {
    let mut s = Scenario::new();
    let fx = s.register(1, "a");
    let event = one(&fx, "loadtest_event");
    assert_eq!(
        string(event, "label"),
        format!(
            "2026-11-29 08:00:00 UTC · http://t · running · {}",
            s.id.hyphenated()
        )
    );
    let fx = s.commit(2, "a", 1, "08:00:20", stats(3));
    let event = one(&fx, "loadtest_event");
    assert!(string(event, "label").contains(" · committed · "));
}

/// `n` requests spread evenly over the first `last` seconds of a node whose clock reads
/// 08:00:00 + `skew_s` at the writer's 08:00:00.
fn skewed_stats(n: u64, last: f64, skew_s: f64) -> protocol::StatsPayload {
    let start = super::scenario::t("08:00:00").timestamp() as f64 + skew_s;
    let mut e = StatsEntry::new("GET", "/", start);
    for i in 0..n {
        e.log(10.0, 1, false, start + last * (i + 1) as f64 / n as f64);
    }
    payload(vec![e], vec![], 1)
}

/// Issue 17 item 5: two nodes of one run, one clock an hour ahead and one an hour behind, each
/// 10 requests/s: every rate is 20/s and the duration is the run's, as with agreeing clocks.
#[test]
fn nodes_with_skewed_clocks_change_no_rate_or_duration() {
    let mut s = Scenario::new();
    s.clock("08:00:00");
    s.register(1, "a");
    s.register(2, "b");
    s.send(
        3,
        "a",
        1,
        "08:00:10",
        Body::Stats(skewed_stats(100, 10.0, 3600.0)),
    );
    s.send(
        4,
        "b",
        1,
        "08:00:10",
        Body::Stats(skewed_stats(100, 10.0, -3600.0)),
    );
    let fx = s.tick("08:00:15");
    let rps = float(one(&fx, "loadtest_snapshot"), "rps");
    assert!((rps - 20.0).abs() < 0.5, "snapshot rps {rps}");
    s.commit(5, "a", 2, "08:00:20", skewed_stats(200, 20.0, 3600.0));
    let fx = s.commit(6, "b", 2, "08:00:20", skewed_stats(200, 20.0, -3600.0));
    let snapshot = float(one(&fx, "loadtest_snapshot"), "rps");
    assert!(
        (snapshot - 20.0).abs() < 0.5,
        "final snapshot rps {snapshot}"
    );
    let summary = float(named(&fx, "loadtest_summary", "Aggregated"), "rps");
    assert!((summary - 20.0).abs() < 0.5, "summary rps {summary}");
    let event = of(&fx, "loadtest_event");
    let duration = float(event.last().expect("final event"), "duration_s");
    assert_eq!(duration, 20.0);
}

/// Stored milliseconds are rounded to whole µs before encoding: no float noise in the points.
#[test]
fn stored_milliseconds_carry_no_float_noise() {
    let mut e = StatsEntry::new("GET", "/", 1_795_939_200.0);
    e.log(0.1, 1, false, 1_795_939_201.0);
    e.log(0.2, 1, false, 1_795_939_201.0);
    assert_eq!(
        e.avg_response_time(),
        0.150_000_000_000_000_02,
        "noise before"
    );
    let mut s = Scenario::new();
    s.register(1, "a");
    let fx = s.commit(2, "a", 1, "08:00:10", payload(vec![e], vec![], 1));
    let summary = named(&fx, "loadtest_summary", "Aggregated");
    assert_eq!(float(summary, "response_time_avg"), 0.15);
    let mut buf = Vec::new();
    crate::line_protocol::encode(
        std::slice::from_ref(summary),
        crate::line_protocol::Backslashes::Literal,
        &mut buf,
    );
    let line = String::from_utf8_lossy(&buf);
    assert!(line.contains("response_time_avg=0.15,"), "{line}");
    let snapshot = of(&fx, "loadtest_snapshot");
    let last = snapshot.last().expect("final snapshot");
    assert_eq!(float(last, "response_time_avg"), 0.15);
}
