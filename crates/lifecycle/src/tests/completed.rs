//! The `event.completed` payload: the same figures as the stored `Aggregated` summary, the run's
//! metadata, every node's threshold verdicts, for committed and expired runs.

use std::time::Duration;

use protocol::{Body, CompletedPayload, Percentiles, ThresholdVerdict};

use super::scenario::{commit, float, int, named, one, stats, stats_until, t, Scenario};
use crate::{Effects, LifecycleSettings};

fn completed(fx: &Effects) -> &CompletedPayload {
    assert_eq!(fx.completed.len(), 1, "one completed message: {fx:?}");
    let Body::Completed(done) = &fx.completed[0].body else {
        panic!("not a completed message: {:?}", fx.completed);
    };
    done
}

fn verdict(threshold: &str, passed: bool, actual: f64, limit: f64) -> ThresholdVerdict {
    ThresholdVerdict {
        threshold: threshold.into(),
        metric: None,
        name: None,
        op: None,
        passed,
        actual: Some(actual),
        limit: Some(limit),
    }
}

#[test]
fn committed_run_carries_the_stored_aggregated_summary() {
    let mut s = Scenario::new().expecting(2);
    s.register(1, "a");
    s.register(2, "b");
    s.send(
        3,
        "a",
        1,
        "08:00:10",
        commit(
            stats_until(400, 10.0),
            vec![verdict("p95<300ms", true, 10.0, 300.0)],
        ),
    );
    let fx = s.send(
        4,
        "b",
        1,
        "08:00:12.5",
        commit(
            stats(100),
            vec![
                verdict("p95<5ms", false, 54.0, 5.0),
                verdict("fail_ratio<0.5", true, 0.1, 0.5),
            ],
        ),
    );
    let done = completed(&fx);
    let summary = named(&fx, "loadtest_summary", "Aggregated");

    assert_eq!(done.status, "committed");
    assert_eq!(done.requests, int(summary, "requests") as u64);
    assert_eq!(done.failures, int(summary, "failures") as u64);
    assert_eq!((done.requests, done.failures), (500, 10));
    assert_eq!(done.rps, Some(float(summary, "rps")));
    assert_eq!(
        done.response_time_ms,
        Some(Percentiles {
            p50: float(summary, "response_time_p50"),
            p95: float(summary, "response_time_p95"),
            p99: float(summary, "response_time_p99"),
        })
    );
    assert_eq!(done.failure_pct, Some(2.0), "10 of 500");

    // The run's metadata, as the event point has it.
    let event = one(&fx, "loadtest_event");
    assert_eq!(done.duration_s, float(event, "duration_s"));
    assert_eq!(done.duration_s, 10.0, "the load window the stats carry");
    assert_eq!(done.target_host.as_deref(), Some("http://t"));
    assert_eq!(done.tool.as_deref(), Some("loadgen"));
    assert_eq!(done.started_at, Some(t("08:00:00")));
    assert_eq!(done.users, Some(int(event, "clients") as u64));
    assert_eq!(done.nodes, 2);

    // Every node's verdicts, failed ones included, with the node that judged them.
    let verdicts: Vec<_> = done
        .thresholds
        .iter()
        .map(|v| {
            (
                v.node_id.as_str(),
                v.verdict.threshold.as_str(),
                v.verdict.passed,
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            ("a", "p95<300ms", true),
            ("b", "p95<5ms", false),
            ("b", "fail_ratio<0.5", true)
        ]
    );
    assert_eq!(done.thresholds[1].verdict.actual, Some(54.0));

    // On the wire, camelCase as every other payload.
    let wire: serde_json::Value = serde_json::from_slice(&fx.completed[0].to_json()).expect("json");
    let p = &wire["payload"];
    assert_eq!(p["targetHost"], "http://t");
    assert_eq!(p["startedAt"], "2026-11-29T08:00:00Z");
    assert_eq!(p["failurePct"], 2.0);
    assert_eq!(
        p["responseTimeMs"]["p95"],
        float(summary, "response_time_p95")
    );
    assert_eq!(p["thresholds"][1]["nodeId"], "b");
}

#[test]
fn expired_run_carries_the_figures_of_the_stats_it_had() {
    let mut s = Scenario::with(LifecycleSettings {
        expire_after: Duration::from_secs(60),
        ..LifecycleSettings::default()
    });
    s.clock("08:00:00");
    s.register(1, "a");
    s.clock("08:00:05");
    s.stats(2, "a", 1, stats(40));
    let fx = s.tick("08:01:06");
    let done = completed(&fx);
    assert_eq!(done.status, "expired");
    assert_eq!((done.requests, done.failures), (40, 4));
    assert_eq!(done.failure_pct, Some(10.0));
    assert_eq!(done.duration_s, 1.0, "the load window the stats carry");
    // No summary point for an expired run; the final snapshot has the same totals, and its
    // whole-run p95 is the same computation.
    let snapshot = one(&fx, "loadtest_snapshot");
    assert_eq!(done.requests, int(snapshot, "requests") as u64);
    let p = done.response_time_ms.expect("percentiles");
    assert_eq!(p.p95, float(snapshot, "response_time_p95_total"));
    assert!(p.p50 <= p.p95 && p.p95 <= p.p99, "{p:?}");
    assert_eq!(done.rps, Some(40.0), "40 requests over the entry's 1 s");
    assert!(done.thresholds.is_empty());
}

#[test]
fn expired_run_without_stats_has_no_figures() {
    let mut s = Scenario::with(LifecycleSettings {
        expire_after: Duration::from_secs(60),
        ..LifecycleSettings::default()
    });
    s.clock("08:00:00");
    s.register(1, "a");
    let fx = s.tick("08:01:01");
    let done = completed(&fx);
    assert_eq!(done.status, "expired");
    assert_eq!((done.requests, done.failures), (0, 0));
    assert_eq!(done.rps, None);
    assert_eq!(done.failure_pct, None);
    assert_eq!(done.response_time_ms, None);
    assert_eq!(done.target_host.as_deref(), Some("http://t"));
    let wire: serde_json::Value = serde_json::from_slice(&fx.completed[0].to_json()).expect("json");
    assert!(wire["payload"].get("rps").is_none(), "unknown: left out");
}
