//! Parsing thresholds, and judging them on stats with one or several methods per name.

use super::*;
use crate::engine::stats::{Sample, Stats};
use crate::output::percentiles::Recorded;

#[test]
fn parses_the_forms() {
    let t = parse_threshold("p95<300ms").expect("p95");
    assert_eq!(t.metric, Metric::Percentile(0.95));
    assert_eq!((t.op, t.limit, &t.target), (Op::Lt, 300.0, &Target::Total));
    let t = parse_threshold(" fail_ratio < 0.01 ").expect("ratio");
    assert_eq!((t.metric, t.limit), (Metric::FailRatio, 0.01));
    assert_eq!(parse_threshold("fail_ratio<1%").expect("pct").limit, 0.01);
    let t = parse_threshold("p99.9[/api/items]<=1.5s").expect("named");
    assert!(matches!(t.metric, Metric::Percentile(q) if (q - 0.999).abs() < 1e-12));
    assert_eq!(t.target, Target::Name("/api/items".into()));
    assert_eq!((t.op, t.limit), (Op::Le, 1_500.0));
    assert_eq!(parse_threshold("rps>=100").expect("rps").op, Op::Ge);
    assert_eq!(parse_threshold("avg<250us").expect("us").limit, 0.25);
    assert_eq!(parse_threshold("p95<300").expect("plain ms").limit, 300.0);
    let t = parse_threshold("p95 [ GET  /api/items ] < 200").expect("method");
    assert_eq!(
        t.target,
        Target::Endpoint {
            method: "GET".into(),
            name: "/api/items".into()
        }
    );
    assert_eq!(t.target.label(), "GET /api/items");
    // A name with a space that does not start with a method is a name.
    let t = parse_threshold("p95[create item]<1s").expect("spaced name");
    assert_eq!(t.target, Target::Name("create item".into()));
}

#[test]
fn bad_thresholds_are_explained() {
    for (bad, says) in [
        ("p95 300ms", "no comparison"),
        ("p95<fast", "not a number"),
        ("latency<3", "unknown metric"),
        ("p0<3", "percentile"),
        ("p101<3", "percentile"),
        ("rps<3ms", "unit"),
        ("p95<3h", "unit"),
        ("p95[/a<3", "brackets"),
        ("p95[/a]x<3", "brackets"),
        ("p95[/a]", "no comparison"),
        ("p95[ ]<3", "empty endpoint"),
    ] {
        let e = parse_threshold(bad).expect_err(bad);
        assert!(e.contains(says), "{bad}: {e}");
    }
}

fn payload() -> StatsPayload {
    let mut a = StatsEntry::new("GET", "/a", 100.0);
    let mut b = StatsEntry::new("GET", "/b", 100.0);
    for i in 0..100 {
        a.log(f64::from(i + 1), 0, i < 5, 101.0);
        b.log(2.0, 0, false, 102.0);
    }
    StatsPayload::from_entries(vec![a, b], vec![], 2, "stopped")
}

#[test]
fn verdicts() {
    let ts: Vec<Threshold> = [
        "p95[/a]<50ms",
        "p95[/b]<50ms",
        "fail_ratio<0.01",
        "requests>=200",
        "p50[/nope]<1s",
    ]
    .iter()
    .map(|t| parse_threshold(t).expect("valid"))
    .collect();
    let v = evaluate(&ts, &payload(), &Recorded);
    assert!(!v[0].passed, "{}", v[0]);
    assert_eq!(v[0].actual, Some(96.0));
    assert!(v[1].passed);
    assert!(!v[2].passed, "5 of 200 failed: {}", v[2]);
    assert_eq!(v[2].actual, Some(0.025));
    assert!(v[3].passed);
    assert!(!v[4].passed && v[4].actual.is_none());
    let text = render(&v);
    assert!(
        text.contains("FAIL p95[/a]<50ms (p95 of /a = 96 ms)"),
        "{text}"
    );
    assert!(text.contains("PASS requests>=200"), "{text}");
    assert!(
        text.contains("3 of 5 thresholds FAILED: p95[/a]<50ms, fail_ratio<0.01, p50[/nope]<1s"),
        "{text}"
    );
    let json = serde_json::to_value(&v[0]).expect("json");
    assert_eq!(json["op"], "<");
    assert_eq!(json["passed"], false);
    // Percentiles come from the source given.
    struct Seven;
    impl Percentiles for Seven {
        fn percentile(&self, _: &StatsEntry, _: Scope, _: f64) -> f64 {
            7.0
        }
        fn heading(&self, _: &StatsEntry) -> &'static str {
            "seven"
        }
    }
    let v = evaluate(&ts[..1], &payload(), &Seven);
    assert_eq!(v[0].actual, Some(7.0));
    assert!(v[0].passed);
}

/// GET /x is fast and POST /x slow: `p95[/x]` combines both methods (not the first entry
/// named /x), `p95[GET /x]` and `p95[POST /x]` pick one, from the HdrHistograms and from
/// Locust's histograms alike.
#[test]
fn a_name_with_several_methods_combines_them_and_a_method_picks_one() {
    let stats = Stats::new(100.0);
    let shard = stats.shard();
    for i in 0..100u32 {
        for (method, ms) in [("GET", 1.0 + f64::from(i % 3)), ("POST", 900.0)] {
            shard.record(&Sample {
                method,
                name: "/x",
                response_time_ms: ms,
                content_length: 0,
                error: (method == "POST" && i < 10).then(|| "HTTP 500".to_string()),
                finished_at: 101.0,
            });
        }
    }
    let p = stats.snapshot(1, "stopped");
    let ts: Vec<Threshold> = [
        "p95[/x]<100ms",
        "p95[GET /x]<100ms",
        "p95[POST /x]<100ms",
        "requests[/x]>=200",
        "fail_ratio[/x]<0.1",
        "max[GET /x]<10",
        "p50[PUT /x]<1s",
    ]
    .iter()
    .map(|t| parse_threshold(t).expect("valid"))
    .collect();
    for p in [p.clone(), without_histograms(p)] {
        let v = evaluate(&ts, &p, &Recorded);
        let p95_all = v[0].actual.expect("measured");
        assert!((899.0..=901.0).contains(&p95_all), "{}", v[0]);
        assert!(!v[0].passed);
        assert_eq!(v[0].name, "/x");
        assert!(
            v[1].actual.expect("measured") < 3.1 && v[1].passed,
            "{}",
            v[1]
        );
        assert_eq!(v[1].name, "GET /x");
        assert!(!v[2].passed, "{}", v[2]);
        assert_eq!(v[3].actual, Some(200.0));
        assert_eq!(v[4].actual, Some(0.05));
        assert_eq!(v[5].actual, Some(3.0));
        assert!(v[6].actual.is_none() && !v[6].passed, "{}", v[6]);
    }
}

/// `p` as Locust would send it: no HdrHistograms, so percentiles come from the rounded maps.
fn without_histograms(mut p: StatsPayload) -> StatsPayload {
    p.total.hdr_histogram = None;
    for e in &mut p.entries {
        e.hdr_histogram = None;
    }
    p
}

/// Thresholds over no data fail with the verdict `no data`: a run that sent nothing, and an
/// endpoint that is listed but had no requests; an unknown endpoint is `no such endpoint`.
#[test]
fn thresholds_over_no_data_fail() {
    let mut empty = StatsEntry::new("GET", "/empty", 100.0);
    empty.num_requests = 0;
    let p = StatsPayload::from_entries(vec![empty], vec![], 0, "stopped");
    let ts: Vec<Threshold> = [
        "p95<300ms",
        "fail_ratio<0.01",
        "requests<10",
        "p95[/empty]<1s",
        "p95[/nope]<1s",
    ]
    .iter()
    .map(|t| parse_threshold(t).expect("valid"))
    .collect();
    let v = evaluate(&ts, &p, &Recorded);
    for verdict in &v[..4] {
        assert!(!verdict.passed, "{verdict}");
        assert_eq!(verdict.actual, None);
        assert_eq!(verdict.outcome, Outcome::NoData, "{verdict}");
        assert!(verdict.to_string().contains("no data"), "{verdict}");
    }
    assert_eq!(v[4].outcome, Outcome::NoSuchEndpoint);
    assert!(
        render(&v).contains("5 of 5 thresholds FAILED"),
        "{}",
        render(&v)
    );
}
