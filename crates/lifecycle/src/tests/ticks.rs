//! Ticks: expiry of abandoned runs and the commit grace.

use std::time::Duration;

use protocol::Body;

use super::scenario::{float, int, named, ns, of, one, stats, string, Scenario};
use crate::LifecycleSettings;

#[test]
fn abandoned_run_expires() {
    let mut s = Scenario::with(LifecycleSettings {
        expire_after: Duration::from_secs(60),
        ..LifecycleSettings::default()
    });
    s.clock("08:00:00");
    s.register(1, "a");
    s.clock("08:00:05");
    s.stats(2, "a", 1, stats(5));
    assert!(s.tick("08:00:30").completed.is_empty());
    let fx = s.tick("08:01:06");
    let event = one(&fx, "loadtest_event");
    assert_eq!(string(event, "status"), "expired");
    assert_eq!(
        float(event, "duration_s"),
        1.0,
        "the load window of the stats it had"
    );
    assert!(of(&fx, "loadtest_summary").is_empty(), "no summary");
    assert_eq!(s.covered(), vec![1, 2]);
    let Body::Completed(done) = &fx.completed[0].body else {
        panic!("not a completed message: {:?}", fx.completed);
    };
    assert_eq!(done.status, "expired");
    assert_eq!(s.running(), 0);
}

#[test]
fn commit_grace_waits_for_a_node_that_still_sends_stats() {
    let mut s = Scenario::with(LifecycleSettings {
        commit_grace: Duration::from_secs(60),
        ..LifecycleSettings::default()
    });
    s.register(1, "a");
    s.register(2, "b");
    s.clock("08:00:10");
    s.commit(3, "a", 1, "08:00:10", stats(6));
    // b started later and runs on: its stats keep the run open past a's commit + 60 s.
    s.clock("08:01:00");
    s.stats(4, "b", 1, stats(4));
    let fx = s.tick("08:01:30");
    assert!(
        fx.completed.is_empty(),
        "b sent stats 30 s ago: still running"
    );
    assert_eq!(s.running(), 1);
    s.clock("08:01:40");
    let fx = s.commit(5, "b", 2, "08:01:40", stats(8));
    let aggregated = named(&fx, "loadtest_summary", "Aggregated");
    assert_eq!(int(aggregated, "requests"), 14, "both nodes' final stats");
}

#[test]
fn commit_grace_finalizes_with_the_nodes_that_reported() {
    let mut s = Scenario::with(LifecycleSettings {
        commit_grace: Duration::from_secs(60),
        ..LifecycleSettings::default()
    });
    s.register(1, "a");
    assert!(s.register(2, "b").ack.is_empty(), "b joins: held");
    s.stats(3, "b", 1, stats(4));
    s.clock("08:00:10");
    let fx = s.commit(4, "a", 1, "08:00:10", stats(6));
    assert!(fx.writes.is_empty(), "node b has not committed");
    let fx = s.tick("08:00:15");
    assert_eq!(int(one(&fx, "loadtest_snapshot"), "requests"), 10);
    assert!(fx.completed.is_empty());
    let fx = s.tick("08:01:09.9");
    assert!(fx.completed.is_empty(), "the grace has not passed");
    assert!(of(&fx, "loadtest_summary").is_empty());
    assert_eq!(s.running(), 1);

    // 60 s after the first commit: the final record with what the run has.
    let fx = s.tick("08:01:10");
    let aggregated = named(&fx, "loadtest_summary", "Aggregated");
    assert_eq!(int(aggregated, "requests"), 10, "a's commit plus b's stats");
    assert_eq!(aggregated.timestamp, ns("08:00:15"), "at the aligned end");
    let snapshot = one(&fx, "loadtest_snapshot");
    assert_eq!(snapshot.timestamp, ns("08:00:15"));
    assert_eq!(int(snapshot, "nodes"), 2);
    let event = one(&fx, "loadtest_event");
    assert_eq!(string(event, "status"), "committed");
    assert_eq!(
        float(event, "duration_s"),
        1.0,
        "the load window of the stats (first user to last request)"
    );
    assert_eq!(
        s.covered(),
        vec![1, 2, 4, 3],
        "registers first, then commits and stats"
    );
    assert_eq!(fx.completed.len(), 1);
    assert_eq!(s.running(), 0);
    assert!(s.tick("08:01:15").writes.is_empty(), "the run is gone");
}
