//! Tests of [`super`] (stats entries) and of [`crate::payload`].

use super::*;
use crate::payload::StatsPayload;

#[test]
fn rounding_follows_locust() {
    assert_eq!(round_response_time(3.4), 3);
    assert_eq!(round_response_time(2.5), 2); // half to even, as Python's round
    assert_eq!(round_response_time(3.5), 4);
    assert_eq!(round_response_time(99.4), 99);
    assert_eq!(round_response_time(147.0), 150);
    assert_eq!(round_response_time(3_432.0), 3_400);
    assert_eq!(round_response_time(58_760.0), 59_000);
    assert_eq!(round_response_time(-1.0), 0);
    assert_eq!(round_response_time(f64::NAN), 0);
}

#[test]
fn percentile_matches_locust_example() {
    // 10 requests, 10 ms apart. Locust returns the bucket at which at most
    // int(n * percent) requests remain below it: p50 of 10..=100 is 60, p90 is 100.
    let mut e = StatsEntry::new("GET", "/", 0.0);
    for ms in [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0] {
        e.log(ms, 0, false, 1.0);
    }
    assert_eq!(e.percentile(0.5), 60.0);
    assert_eq!(e.percentile(0.8), 90.0);
    assert_eq!(e.percentile(0.9), 100.0);
    assert_eq!(e.percentile(1.0), 100.0);
}

#[test]
fn percentile_is_clamped_to_max() {
    let mut e = StatsEntry::new("GET", "/", 0.0);
    e.log(104.0, 0, false, 1.0); // bucket 100, below min
    e.log(996.0, 0, false, 1.0); // bucket 1000, above max
    assert_eq!(e.percentile(0.99), 996.0);
    assert_eq!(e.percentile(0.01), 104.0);
}

/// A small deterministic generator so the test needs no extra crate.
fn samples(seed: u64, n: usize) -> Vec<f64> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 2_500_000) as f64 / 100.0 // 0 .. 25 s, two decimals
        })
        .collect()
}

#[test]
fn merging_two_nodes_gives_exact_totals_and_combined_percentiles() {
    let a = samples(7, 5_000);
    let b = samples(11, 3_000);
    let mut node_a = StatsEntry::new("GET", "/x", 100.0);
    let mut node_b = StatsEntry::new("GET", "/x", 90.0);
    let mut combined = StatsEntry::new("GET", "/x", 90.0);
    for (i, ms) in a.iter().enumerate() {
        node_a.log(*ms, 10, i % 10 == 0, 200.0);
        combined.log(*ms, 10, i % 10 == 0, 200.0);
    }
    for (i, ms) in b.iter().enumerate() {
        node_b.log(*ms, 10, i % 7 == 0, 201.0);
        combined.log(*ms, 10, i % 7 == 0, 201.0);
    }
    let mut merged = node_a.clone();
    merged.merge(&node_b);
    assert_eq!(merged.num_requests, 8_000);
    assert_eq!(merged.num_failures, combined.num_failures);
    assert_eq!(merged.total_content_length, 80_000);
    assert_eq!(merged.response_times, combined.response_times);
    assert_eq!(merged.min_response_time, combined.min_response_time);
    assert_eq!(merged.max_response_time, combined.max_response_time);
    assert_eq!(merged.start_time, 90.0);
    assert_eq!(merged.last_request_timestamp, Some(201.0));
    assert!((merged.total_response_time - combined.total_response_time).abs() < 1e-6);
    for p in [0.5, 0.66, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0] {
        assert_eq!(merged.percentile(p), combined.percentile(p), "p{p}");
    }
    // Order does not matter.
    let mut other_way = node_b.clone();
    other_way.merge(&node_a);
    assert_eq!(other_way.response_times, merged.response_times);
}

#[test]
fn histogram_keys_are_strings_on_the_wire() {
    let mut e = StatsEntry::new("GET", "/", 1.0);
    e.log(12.0, 5, false, 2.0);
    let json = serde_json::to_value(&e).expect("serializes");
    assert_eq!(json["response_times"]["12"], 1);
    let back: StatsEntry = serde_json::from_value(json).expect("parses");
    assert_eq!(back, e);
}

#[test]
fn validation_names_the_field() {
    let mut e = StatsEntry::new("GET", "x".repeat(1_001), 1.0);
    let err = e.validate("payload.entries[0]").expect_err("too long");
    assert_eq!(err.field, "payload.entries[0].name");
    e.name = "/".into();
    e.total_response_time = -3.0;
    assert_eq!(
        e.validate("p").expect_err("negative").field,
        "p.total_response_time"
    );
}

/// Issue 17 item 2: without a histogram only the percentiles a producer reported exist,
/// clamped like the others; none survives merging two producers' requests.
#[test]
fn reported_percentiles_are_the_only_ones_without_a_histogram() {
    let mut e = StatsEntry::new("GET", "/", 1.0);
    e.num_requests = 10;
    e.min_response_time = Some(3.0);
    e.max_response_time = 130.0;
    e.reported_percentiles = [("0.5", 12.0), ("0.95", 40.0), ("0.99", 120.0)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(e.measured_percentile(0.5), Some(12.0));
    assert_eq!(e.measured_percentile(0.95), Some(40.0));
    assert_eq!(e.measured_percentile(0.99), Some(120.0));
    assert_eq!(e.measured_percentile(0.9), None, "nobody measured p90");
    let mut total = StatsEntry::new("", AGGREGATED, 0.0);
    total.merge(&e);
    assert_eq!(total.measured_percentile(0.95), Some(40.0), "one producer");
    total.merge(&e);
    assert_eq!(total.measured_percentile(0.95), None, "two producers");
    let mut logged = StatsEntry::new("GET", "/", 1.0);
    logged.log(10.0, 1, false, 2.0);
    assert_eq!(
        logged.measured_percentile(0.9),
        Some(10.0),
        "from the histogram"
    );
    e.reported_percentiles.insert("1.5".into(), 1.0);
    assert!(e.validate("entries[0]").is_err());
}

#[test]
fn from_entries_totals() {
    let mut a = StatsEntry::new("GET", "/a", 5.0);
    a.log(10.0, 1, false, 6.0);
    let mut b = StatsEntry::new("POST", "/b", 4.0);
    b.log(20.0, 1, true, 7.0);
    let p = StatsPayload::from_entries(vec![a, b], vec![], 3, "running");
    assert_eq!(p.total.num_requests, 2);
    assert_eq!(p.total.num_failures, 1);
    assert_eq!(p.total.start_time, 4.0);
    assert_eq!(p.total.name, AGGREGATED);
}
