//! Golden tests: every byte loadgen prints or writes (console tables, thresholds, JSON, CSV,
//! HTML, and the API request bodies) for one fixed run, compared with the files in
//! `tests/golden/`. `LOADGEN_BLESS=1 cargo test -p loadgen golden` rewrites them.

use std::path::PathBuf;
use std::time::Duration;

use crate::engine::stats::{Sample, Stats};
use crate::output::history::Recorder;
use crate::output::percentiles::Recorded;
use crate::output::{report, summary, thresholds};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Compares `actual` with the golden file `name`, or writes it when blessing.
fn check(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("LOADGEN_BLESS").is_some() {
        std::fs::create_dir_all(golden_dir()).expect("golden dir");
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (bless with LOADGEN_BLESS=1)", path.display()));
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name} differs from the golden file at line {}:\nexpected: {:?}\nactual:   {:?}",
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}

/// Records the requests of one interval `k` (0-based) into `stats`.
fn record_interval(stats: &Stats, k: u32) {
    let shards = [stats.shard(), stats.shard()];
    for i in 0..(40 + 10 * k) {
        let shard = &shards[(i % 2) as usize];
        let t = 1_000.0 + f64::from(k) * 2.0 + f64::from(i) * 0.01;
        let ms = f64::from((i * 37 + k * 11) % 97) * 1.37 + 0.25;
        shard.record(&Sample {
            method: "GET",
            name: "/a",
            response_time_ms: ms,
            content_length: 120,
            error: None,
            finished_at: t,
        });
        if i % 3 == 0 {
            shard.record(&Sample {
                method: "POST",
                name: "/a",
                response_time_ms: ms * 7.3 + 101.0,
                content_length: 7,
                error: (i % 9 == 0).then(|| "HTTP 503".to_string()),
                finished_at: t,
            });
        }
        if i % 5 == 1 {
            shard.record(&Sample {
                method: "DELETE",
                name: "/d?id=1",
                response_time_ms: 0.5 + f64::from(i % 7) * 0.013,
                content_length: 0,
                error: None,
                finished_at: t,
            });
        }
        shard.record(&Sample {
            method: "GET",
            name: "/b,\"c\" <x>",
            response_time_ms: 1_234.5 + f64::from(i % 13) * 310.0,
            content_length: 0,
            error: (i % 4 == 0).then(|| "HTTP 500".to_string()),
            finished_at: t,
        });
    }
}

fn args(extra: &[&str]) -> crate::RunArgs {
    let mut argv = vec!["loadgen", "--host", "http://t:8080"];
    argv.extend_from_slice(extra);
    crate::Args::try_parse_from_iter(argv).expect("args").run
}

#[test]
fn outputs_are_byte_for_byte_unchanged() {
    let stats = Stats::new(999.5);
    let mut recorder = Recorder::default();
    let mut previous: Option<protocol::StatsPayload> = None;
    let mut live = String::new();
    for k in 0..4u32 {
        record_interval(&stats, k);
        let p = stats.snapshot(2 + u64::from(k), if k < 3 { "running" } else { "stopped" });
        let elapsed = Duration::from_millis(2_000 * u64::from(k + 1));
        live.push_str(&summary::live_table(
            elapsed,
            &p,
            previous.as_ref(),
            Duration::from_secs(2),
        ));
        live.push_str(&summary::progress_line(
            elapsed,
            &p,
            previous.as_ref().map_or(0, |q| q.total.num_requests),
            Duration::from_secs(2),
        ));
        live.push('\n');
        recorder.record(1_000.0 + 2.0 * f64::from(k + 1), elapsed, &p);
        previous = Some(p);
    }
    check("live.txt", &live);

    let mut final_stats = stats.snapshot(5, "stopped");
    final_stats.stopped_at = Some(1_008.0);
    let latencies = Recorded;
    // The same stats as Locust would send them: no HdrHistograms.
    let mut locust_stats = final_stats.clone();
    locust_stats.total.hdr_histogram = None;
    for e in &mut locust_stats.entries {
        e.hdr_histogram = None;
    }

    let thresholds: Vec<thresholds::Threshold> = [
        "p95<300ms",
        "p99.9 < 2s",
        "median[/d?id=1]>=1s",
        "p90 [ /d?id=1 ] < 1",
        "avg<250us",
        "min>0",
        "max<=10s",
        "rps>=1",
        "fail_ratio<1%",
        "failures<5",
        "requests>=100",
        "p50[/nope]<1s",
    ]
    .iter()
    .map(|t| thresholds::parse_threshold(t).expect("threshold"))
    .collect();
    let verdicts = thresholds::evaluate(&thresholds, &final_stats, &latencies);
    let plain = thresholds::evaluate(&thresholds, &locust_stats, &Recorded);
    let mut thresholds_text = thresholds::render(&verdicts);
    thresholds_text.push_str(&thresholds::render(&plain));
    check("thresholds.txt", &thresholds_text);

    for (name, opts) in [
        ("closed", args(&["-u", "5", "-r", "2.5"])),
        ("open", args(&["-u", "7", "--arrival-rate", "300/s"])),
    ] {
        let summary = format!(
            "Load model: {}\n{}",
            crate::describe_model(&opts),
            summary::render(&final_stats, &latencies)
        );
        check(&format!("summary-{name}.txt"), &summary);
    }
    check(
        "summary-locust.txt",
        &summary::render(&locust_stats, &Recorded),
    );

    let meta = report::RunMeta {
        tool: crate::cli::TOOL.to_string(),
        model: "closed".to_string(),
        target_host: "http://t:8080".to_string(),
        started_at: "2026-11-29T08:00:00.000Z".to_string(),
        elapsed_s: 8.25,
        users: 5,
        spawn_rate: 2.5,
        arrival_rate: None,
        uuid: Some("0b6f8d4e-2f7a-4c1e-9a55-3f1f2c7d9e10".to_string()),
        node_id: "node-1".to_string(),
    };
    let report = report::Report {
        meta: &meta,
        stats: &final_stats,
        history: recorder.points(),
        thresholds: &verdicts,
        percentiles: &latencies,
    };
    check(
        "report.json",
        &serde_json::to_string_pretty(&report.json()).expect("json"),
    );
    check("stats.csv", &report.stats_csv());
    check("stats_history.csv", &report.history_csv());
    check("failures.csv", &report.failures_csv());
    check("exceptions.csv", &report.exceptions_csv());
    check("report.html", &report.html());
}
