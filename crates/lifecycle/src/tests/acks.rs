//! The ack rule (acked once checkpointed, superseded, or carrying nothing new), the orphan rule
//! and redeliveries.

use std::time::Duration;

use protocol::Body;

use super::scenario::{
    commit, float, info, int, named, ns, of, one, points, stats, string, tag, Scenario,
};
use crate::LifecycleSettings;

#[test]
fn register_snapshot_commit_and_ack_rule() {
    let mut s = Scenario::new();
    let fx = s.register(1, "a");
    assert!(fx.ack.is_empty(), "register is held until a checkpoint");
    assert_eq!(fx.writes.len(), 1);
    assert_eq!(string(one(&fx, "loadtest_event"), "status"), "running");
    assert_eq!(s.running(), 1);

    let fx = s.stats(2, "a", 1, stats(10));
    assert!(fx.ack.is_empty() && fx.writes.is_empty());
    let fx = s.stats(3, "a", 2, stats(20));
    assert_eq!(fx.ack, vec![2], "superseded stats are acked at once");
    // A stale redelivery of seq 1 is superseded too, and seq 2 again carries nothing new.
    assert_eq!(s.stats(4, "a", 1, stats(10)).ack, vec![4]);
    assert_eq!(s.stats(5, "a", 2, stats(20)).ack, vec![5]);
    assert_eq!(
        s.covered(),
        vec![1, 3],
        "covered by a checkpoint, registers first"
    );
    assert!(s.covered().is_empty(), "acked once");

    let fx = s.tick("08:00:15.2");
    let snapshot = one(&fx, "loadtest_snapshot");
    assert_eq!(int(snapshot, "requests"), 20);
    assert_eq!(snapshot.timestamp, ns("08:00:15"), "aligned timestamp");
    // The same tick again writes nothing new.
    assert!(s.tick("08:00:16").writes.is_empty());

    s.clock("08:00:20");
    let fx = s.commit(6, "a", 3, "08:00:20", stats(25));
    assert!(
        fx.ack.is_empty(),
        "nothing superseded: the last stats were checkpointed"
    );
    assert_eq!(
        int(named(&fx, "loadtest_summary", "Aggregated"), "requests"),
        25
    );
    let event = one(&fx, "loadtest_event");
    assert_eq!(string(event, "status"), "committed");
    assert_eq!(
        float(event, "duration_s"),
        1.0,
        "the load window: first user to last request (the stats carry no stoppedAt)"
    );
    assert_eq!(
        fx.completed.len(),
        1,
        "completed once the final record is written"
    );
    assert_eq!(s.running(), 0);
    let cp = s.checkpoint();
    assert_eq!(cp.covers, vec![6], "the commit, with the run's tombstone");
    assert_eq!(cp.records.len(), 1);
    assert!(cp.records[0].state.is_none(), "a tombstone");
}

#[test]
fn two_nodes_sum_exactly_and_wait_for_each_other() {
    let mut s = Scenario::new().expecting(2);
    s.register(1, "a");
    let fx = s.register(2, "b");
    assert!(fx.writes.is_empty(), "second register writes nothing");
    assert!(
        fx.ack.is_empty(),
        "a joining node changes the run: held until a checkpoint"
    );
    let fx = s.commit(3, "a", 1, "08:00:30", stats(30));
    assert!(fx.writes.is_empty(), "waits for node b");
    let fx = s.commit(4, "b", 1, "08:00:31", stats(12));
    let aggregated = named(&fx, "loadtest_summary", "Aggregated");
    assert_eq!(int(aggregated, "requests"), 42);
    assert_eq!(s.covered(), vec![1, 2, 3, 4]);
}

#[test]
fn repeated_registers_are_acked_at_once() {
    let mut s = Scenario::new();
    s.register(1, "a");
    for delivery in 2..1000 {
        let fx = s.register(delivery, "a");
        assert_eq!(fx.ack, vec![delivery], "a flood of registers holds nothing");
    }
    s.commit(1000, "a", 1, "08:00:01", stats(3));
    assert_eq!(s.covered(), vec![1, 1000]);
}

#[test]
fn final_acks_put_registers_first() {
    let mut s = Scenario::new().expecting(2);
    s.register(1, "a");
    s.stats(2, "a", 1, stats(3));
    s.commit(3, "a", 2, "08:00:09", stats(5));
    let joined = s.register(4, "b");
    assert!(joined.ack.is_empty());
    s.commit(5, "b", 1, "08:00:09", stats(7));
    // A writer dying halfway through these acks leaves no register behind.
    assert_eq!(s.covered(), vec![1, 4, 3, 5]);
}

#[test]
fn leftover_commit_after_the_final_record_writes_nothing() {
    let mut s = Scenario::with(LifecycleSettings {
        expire_after: Duration::from_secs(60),
        ..LifecycleSettings::default()
    });
    s.register(1, "a");
    let fx = s.commit(2, "a", 5, "08:00:20", stats(9));
    assert_eq!(fx.completed.len(), 1);
    // The commit again (delivered twice, or redelivered because the writer died before its
    // ack), and a whole run's messages again: no second status, no points, acked at once
    // (held as an orphan until `expire_after`, they kept the queue from draining).
    let fx = s.commit(3, "a", 5, "08:00:20", stats(9));
    assert!(fx.writes.is_empty() && fx.completed.is_empty());
    assert_eq!(
        fx.ack,
        vec![3],
        "a straggler of a finished run is acked at once"
    );
    let fx = s.register(4, "a");
    assert!(fx.writes.is_empty() && fx.completed.is_empty());
    assert_eq!(fx.ack, vec![4]);
    assert_eq!(s.running(), 0);
    let fx = s.tick("08:00:30");
    assert!(
        fx.writes.is_empty(),
        "nothing more is written: {:?}",
        points(&fx)
    );
    assert!(s.tick("08:05:00").ack.is_empty());
}

#[test]
fn leftovers_for_a_run_finished_long_ago_follow_the_orphan_rule() {
    let mut s = Scenario::with(LifecycleSettings {
        expire_after: Duration::from_secs(60),
        ..LifecycleSettings::default()
    });
    s.register(1, "a");
    s.commit(2, "a", 5, "08:00:20", stats(9));
    // expire_after later the run is forgotten: a leftover is an orphan again (as after a new
    // leader's restore), which writes nothing and is acked when it expires.
    s.tick("08:01:30");
    s.clock("08:01:31");
    let fx = s.commit(3, "a", 5, "08:00:20", stats(9));
    assert!(fx.writes.is_empty() && fx.ack.is_empty() && fx.completed.is_empty());
    let fx = s.tick("08:02:32");
    assert!(
        fx.writes.is_empty(),
        "an orphan expires without a status: {:?}",
        points(&fx)
    );
    assert_eq!(fx.ack, vec![3], "its messages are acked when it expires");
}

#[test]
fn redelivery_in_another_order_rebuilds_the_same_run() {
    let mut in_order = Scenario::new();
    in_order.register(1, "a");
    in_order.stats(2, "a", 1, stats(4));
    let first = in_order.commit(3, "a", 2, "08:00:12", stats(6));
    assert_eq!(first.ack, vec![2]);
    assert_eq!(first.writes.len(), 1, "the final record in one write");

    let mut s = Scenario::new();
    s.clock("08:03:00");
    let fx = s.stats(7, "a", 1, stats(4));
    assert!(fx.writes.is_empty() && fx.ack.is_empty());
    let fx = s.commit(8, "a", 2, "08:00:12", stats(6));
    assert!(fx.writes.is_empty(), "no final record before the register");
    assert_eq!(fx.ack, vec![7]);
    assert!(s.tick("08:03:15").writes.is_empty());
    let fx = s.register(9, "a");
    assert_eq!(fx.writes.len(), 2, "event point, then the final record");
    assert_eq!(
        fx.writes[1].points, first.writes[0].points,
        "same final points as in order"
    );
    assert_eq!(s.covered(), vec![9, 8]);
    assert_eq!(s.running(), 0);
}

#[test]
fn messages_delivered_twice_add_no_points() {
    let mut s = Scenario::new();
    let msgs = [
        (0, "08:00:01", Body::Registered(info(None))),
        (1, "08:00:04", Body::Stats(stats(3))),
        (2, "08:00:08", Body::Stats(stats(8))),
        (3, "08:00:09", commit(stats(9), Vec::new())),
    ];
    let mut written = Vec::new();
    let mut delivery = 0;
    for (seq, at, body) in msgs {
        for _ in 0..2 {
            delivery += 1;
            written.push(s.send(delivery, "a", seq, at, body.clone()));
        }
    }
    written.push(s.tick("08:20:00"));
    let all: Vec<_> = written.iter().flat_map(points).collect();
    let count = |m: &str| all.iter().filter(|p| p.measurement == m).count();
    let events: Vec<_> = written
        .iter()
        .flat_map(|fx| of(fx, "loadtest_event"))
        .collect();
    let statuses: Vec<_> = events.iter().map(|p| string(p, "status")).collect();
    assert_eq!(statuses, ["running", "committed"]);
    assert_eq!(count("loadtest_snapshot"), 1, "{all:#?}");
    assert_eq!(count("loadtest_summary"), 2, "{all:#?}");
    assert!(
        all.iter()
            .filter(|p| matches!(p.measurement, "loadtest_event" | "loadtest_snapshot"))
            .all(|p| tag(p, "target_host") == "http://t"),
        "no point under empty tags: {all:#?}"
    );
}

/// The running set carries the id of the API key that registered the run (the API counts a
/// key's running runs with it); a joining node's register does not change it.
#[test]
fn the_running_set_carries_the_registering_key_id() {
    let mut s = Scenario::new();
    let env = protocol::Envelope::new(s.id, "a", 0, String::new(), Body::Registered(info(None)))
        .with_key_id("00aa11bb22cc33dd");
    s.lc.handle(1, env, super::scenario::t("08:00:01"));
    s.register(2, "b");
    let set = s.lc.running();
    assert_eq!(set.events.len(), 1);
    assert_eq!(set.events[0].key_id.as_deref(), Some("00aa11bb22cc33dd"));
    assert_eq!(set.events[0].nodes, 2);
}
