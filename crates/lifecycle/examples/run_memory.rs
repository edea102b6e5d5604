//! How much heap the lifecycle keeps per running run (issue 14's "memory per running run"),
//! counted by a global allocator, for two stats shapes: Locust's (`response_times` only) and
//! loadgen's (with an HdrHistogram per entry). `cargo run --release -p loadtest-lifecycle
//! --example run_memory [RUNS]`.

use chrono::{Duration, Utc};
use loadtest_lifecycle::{Lifecycle, LifecycleSettings};
use protocol::{Body, Envelope, RunInfo, StatsEntry, StatsPayload};
use tikv_jemalloc_ctl::{epoch, stats};
use uuid::Uuid;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Bytes allocated and not freed (jemalloc's `stats.allocated`).
fn in_use() -> isize {
    let _ = epoch::advance();
    stats::allocated::read().unwrap_or(0) as isize
}

/// A node's cumulative stats after `k` intervals: 3 endpoints, 30 buckets each (the
/// `bench/pipeline.sh` payload); with `hdr`, each entry also carries an HdrHistogram of the same
/// response times.
fn stats(k: u64, hdr: bool) -> StatsPayload {
    let start = 1_764_489_600.0;
    let mut entries = Vec::new();
    for (i, name) in ["/", "/items", "/items/{id}"].iter().enumerate() {
        let mut e = if hdr {
            StatsEntry::recording("GET", *name, start)
        } else {
            StatsEntry::new("GET", *name, start)
        };
        for b in 0..30u64 {
            let ms = 1 + b * 3 + i as u64;
            let count = (k + 1) * (10 + b);
            e.num_requests += count;
            e.total_response_time += (ms * count) as f64;
            e.total_content_length += 512 * count;
            e.response_times.add(ms, count);
            if let Some(h) = e.hdr_histogram.as_mut() {
                for j in 0..count.min(50) {
                    h.record_ms(ms as f64 + j as f64 * 0.037);
                }
            }
        }
        e.num_failures = k;
        e.min_response_time = Some(1.0);
        e.max_response_time = 100.0;
        e.last_request_timestamp = Some(start + k as f64 * 5.0);
        entries.push(e);
    }
    let made = StatsPayload::from_entries(entries, Vec::new(), 50, "running");
    // As the writer has it: read from the wire.
    serde_json::from_slice(&serde_json::to_vec(&made).unwrap_or_default()).unwrap_or(made)
}

fn info() -> RunInfo {
    RunInfo {
        started_at: Utc::now(),
        host: "bench".into(),
        clients: 100,
        hatch_rate: 10.0,
        requests: 0,
        target_host: "http://target.bench".into(),
        mode: "cluster".into(),
        tool: "bench".into(),
        expected_nodes: Some(2),
    }
}

fn measure(runs: usize, hdr: bool) -> f64 {
    let base = in_use();
    let mut lc = Lifecycle::new(LifecycleSettings::default());
    let ids: Vec<Uuid> = (0..runs).map(|_| Uuid::new_v4()).collect();
    let mut tag = 0u64;
    let mut now = Utc::now();
    let env = |run: Uuid, node: &str, seq: u64, body: Body| {
        Envelope::new(run, node, seq, String::new(), body)
    };
    for id in &ids {
        for node in ["n1", "n2"] {
            tag += 1;
            let fx = lc.handle(tag, env(*id, node, 0, Body::Registered(info())), now);
            drop(fx);
        }
    }
    let stage = |what: &str| {
        if std::env::var_os("STAGES").is_some() {
            let kib = (in_use() - base) as f64 / runs as f64 / 1024.0;
            println!("  {what}: {kib:.1} KiB per run");
        }
    };
    stage("registered");
    let batch = lc.batch(usize::MAX);
    for part in &batch.parts {
        let _ = lc.written(part);
    }
    drop(batch);
    stage("registered and written");
    for k in 0..3u64 {
        now += Duration::seconds(5);
        for id in &ids {
            for node in ["n1", "n2"] {
                tag += 1;
                let _ = lc.handle(tag, env(*id, node, k + 1, Body::Stats(stats(k, hdr))), now);
            }
        }
        stage(&format!("stats {}", k + 1));
        if k == 1 {
            let started = std::time::Instant::now();
            let fx = lc.tick(now);
            // TICKS=n: n more snapshot intervals, each with new stats (to profile the tick).
            let more: u64 = std::env::var("TICKS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut later = now;
            for i in 0..more {
                later += Duration::seconds(15);
                for id in &ids {
                    for node in ["n1", "n2"] {
                        tag += 1;
                        let body = Body::Stats(stats(2 + i, hdr));
                        let _ = lc.handle(tag, env(*id, node, 100 + i, body), later);
                    }
                }
                let _ = lc.tick(later);
            }
            if std::env::var_os("STAGES").is_some() {
                println!(
                    "  tick: {:.1} µs per run ({} points)",
                    started.elapsed().as_secs_f64() * 1e6 / runs as f64,
                    fx.writes.iter().map(|w| w.points.len()).sum::<usize>()
                );
            }
            // What the tick computed is written (the outboxes empty).
            let batch = lc.batch(usize::MAX);
            for part in &batch.parts {
                let _ = lc.written(part);
            }
            stage("ticked and written");
        }
    }
    let kib = (in_use() - base) as f64 / runs as f64 / 1024.0;
    drop(lc);
    kib
}

fn main() {
    if std::env::var_os("STAGES").is_some() {
        println!(
            "size_of: StatsEntry {} B, StatsPayload {} B",
            std::mem::size_of::<StatsEntry>(),
            std::mem::size_of::<StatsPayload>()
        );
    }
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000);
    println!("runs: {runs} (2 nodes each, 3 endpoints, 30 Locust buckets)");
    println!(
        "Locust stats (response_times): {:.1} KiB per run",
        measure(runs, false)
    );
    if std::env::var_os("LOCUST_ONLY").is_none() {
        println!(
            "loadgen stats (+ HdrHistogram): {:.1} KiB per run",
            measure(runs, true)
        );
    }
}
