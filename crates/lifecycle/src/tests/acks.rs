//! The ack rule, the orphan rule and redeliveries.

use std::time::Duration;

use protocol::Body;

use super::scenario::{
    acks, commit, float, info, int, named, ns, of, one, points, stats, string, tag, Scenario,
};
use crate::LifecycleSettings;

#[test]
fn register_snapshot_commit_and_ack_rule() {
    let mut s = Scenario::new();
    let fx = s.register(1, "a");
    assert!(fx.ack.is_empty());
    assert_eq!(fx.writes.len(), 1);
    assert!(
        fx.writes[0].acks.is_empty(),
        "register is held until the final record"
    );
    assert_eq!(string(one(&fx, "loadtest_event"), "status"), "running");
    assert_eq!(s.running(), 1);

    let fx = s.stats(2, "a", 1, stats(10));
    assert!(fx.ack.is_empty() && fx.writes.is_empty());
    let fx = s.stats(3, "a", 2, stats(20));
    assert_eq!(fx.ack, vec![2], "superseded stats are acked at once");
    // A stale redelivery of seq 1 is superseded too.
    let fx = s.stats(4, "a", 1, stats(10));
    assert_eq!(fx.ack, vec![4]);

    let fx = s.tick("08:00:15.2");
    let snapshot = one(&fx, "loadtest_snapshot");
    assert_eq!(int(snapshot, "requests"), 20);
    assert_eq!(snapshot.timestamp, ns("08:00:15"), "aligned timestamp");
    assert!(fx.writes.iter().all(|w| w.acks.is_empty()));
    // The same tick again writes nothing new.
    assert!(s.tick("08:00:16").writes.is_empty());

    s.clock("08:00:20");
    let fx = s.commit(5, "a", 3, "08:00:20", stats(25));
    assert_eq!(fx.ack, vec![3], "the commit supersedes the last stats");
    let mut held = acks(&fx);
    held.sort();
    assert_eq!(
        held,
        vec![1, 5],
        "register and commit acked after the final write"
    );
    assert_eq!(
        int(named(&fx, "loadtest_summary", "Aggregated"), "requests"),
        25
    );
    let event = one(&fx, "loadtest_event");
    assert_eq!(string(event, "status"), "committed");
    assert_eq!(float(event, "duration_s"), 20.0);
    assert_eq!(s.running(), 0);
}

#[test]
fn two_nodes_sum_exactly_and_wait_for_each_other() {
    let mut s = Scenario::new().expecting(2);
    s.register(1, "a");
    let fx = s.register(2, "b");
    assert!(fx.writes.is_empty(), "second register writes nothing");
    assert_eq!(
        fx.ack,
        vec![2],
        "a joining node's register is acked at once"
    );
    let fx = s.commit(3, "a", 1, "08:00:30", stats(30));
    assert!(fx.writes.is_empty(), "waits for node b");
    let fx = s.commit(4, "b", 1, "08:00:31", stats(12));
    let aggregated = named(&fx, "loadtest_summary", "Aggregated");
    assert_eq!(int(aggregated, "requests"), 42);
    let mut held = acks(&fx);
    held.sort();
    assert_eq!(held, vec![1, 3, 4]);
}

#[test]
fn repeated_registers_are_acked_at_once() {
    let mut s = Scenario::new();
    s.register(1, "a");
    for delivery in 2..1000 {
        let fx = s.register(delivery, "a");
        assert_eq!(fx.ack, vec![delivery], "a flood of registers holds nothing");
    }
    let fx = s.commit(1000, "a", 1, "08:00:01", stats(3));
    assert_eq!(acks(&fx), vec![1, 1000]);
}

#[test]
fn final_acks_put_registers_first() {
    let mut s = Scenario::new().expecting(2);
    s.register(1, "a");
    s.stats(2, "a", 1, stats(3));
    s.commit(3, "a", 2, "08:00:09", stats(5));
    let joined = s.register(4, "b");
    assert_eq!(joined.ack, vec![4]);
    let fx = s.commit(5, "b", 1, "08:00:09", stats(7));
    // A writer dying halfway through these acks leaves no register behind.
    assert_eq!(acks(&fx), vec![1, 3, 5]);
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
    // ack): no second status, no points under empty tags.
    let fx = s.commit(3, "a", 5, "08:00:20", stats(9));
    assert!(fx.writes.is_empty() && fx.ack.is_empty() && fx.completed.is_empty());
    assert_eq!(s.running(), 0, "an orphan is not running");
    let fx = s.tick("08:00:30");
    assert!(
        fx.writes.is_empty(),
        "an orphan writes no snapshot: {:?}",
        points(&fx)
    );
    let fx = s.tick("08:01:02");
    assert!(
        fx.writes.is_empty(),
        "an orphan expires without a status: {:?}",
        points(&fx)
    );
    assert_eq!(fx.ack, vec![3], "its messages are acked when it expires");
    assert!(s.tick("08:05:00").ack.is_empty());
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
    assert_eq!(acks(&fx), vec![9, 8]);
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
