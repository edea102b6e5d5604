//! Fair sharing (issue 12): one API key that floods the API with registrations it never
//! commits cannot delay another key's run. 6,000 registrations from key A in 30 s (most are
//! answered 429: A's register rate and its cap on running runs), then a `loadgen` run with key
//! B: B's final record is in InfluxDB within one snapshot interval of its commit. On main every
//! registration was accepted and held by the writer, the prefetch filled, and B's run was not in
//! InfluxDB 150 s after it ended.
//!
//! Runs in the fault stage, alone (it loads the machine for 30 s):
//! `cargo test -p loadtest-e2e --test fair_sharing -- --ignored --test-threads=1 --nocapture`.
//! Needs RabbitMQ on 127.0.0.1:5672 and InfluxDB 1.x on 127.0.0.1:8086.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use loadtest_e2e::*;
use tokio::sync::{Mutex, Semaphore};

const REGISTER: &str = include_str!("../../../fixtures/original-register.json");
/// The writer's snapshot interval: the bound on B's latency.
const SNAPSHOT_INTERVAL_S: u32 = 15;

/// Posts `n` registrations with `key` over `over`, evenly paced, at most 64 at once; returns
/// the count of each answer's status (and problem type).
async fn flood(api: &str, key: &str, n: u32, over: Duration) -> BTreeMap<String, u32> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let counts = Arc::new(Mutex::new(BTreeMap::new()));
    let slots = Arc::new(Semaphore::new(64));
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for i in 0..n {
        tokio::time::sleep_until(started + over * i / n).await;
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let (client, counts) = (client.clone(), counts.clone());
        let (url, key) = (format!("{api}/apiv0.1/events/register"), key.to_string());
        tasks.push(tokio::spawn(async move {
            let _slot = slot;
            let answer = match client
                .post(url)
                .header("X-API-Key", key)
                .body(REGISTER)
                .send()
                .await
            {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let body: serde_json::Value = r.json().await.unwrap_or_default();
                    let kind = body["type"]
                        .as_str()
                        .and_then(|t| t.rsplit('/').next())
                        .unwrap_or_default()
                        .to_string();
                    format!("{status} {kind}").trim().to_string()
                }
                Err(e) => format!("error {}", e.without_url()),
            };
            *counts.lock().await.entry(answer).or_insert(0) += 1;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let counts = counts.lock().await.clone();
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault stage: 6,000 registrations in 30 s; run alone with --ignored --test-threads=1"]
async fn a_registration_flood_from_one_key_does_not_delay_another_keys_run() -> anyhow::Result<()> {
    require_rabbitmq_and_influxdb();
    build_binaries()?;
    let stack = Stack::new("fair");
    let key_b = format!("b-{}", stack.api_key);
    let db = stack.db();
    influx_create_db(&db).await?;
    let _writer = stack.start_v1_writer("writer-fair", &db, SNAPSHOT_INTERVAL_S)?;
    let (_api_proc, api) = stack.start_api_with(&[(
        "LOADTEST__AUTH__API_KEYS",
        format!("{},{key_b}", stack.api_key),
    )])?;

    let flood_started = Instant::now();
    let counts = flood(&api, &stack.api_key, 6000, Duration::from_secs(30)).await;
    let flood_took = flood_started.elapsed();
    let accepted = counts.get("201").copied().unwrap_or(0);

    // Key B's run, through the API: register, stats every 2 s, commit.
    let target = start_target().await?;
    let mut lg = Proc::start(
        "loadgen-fair",
        "loadgen",
        &[
            "--host",
            &target.url,
            "-u",
            "2",
            "-r",
            "10",
            "-t",
            "10s",
            "--consumer-host",
            &api,
            "--api-key",
            &key_b,
            "--stats-interval",
            "2s",
            "--only-summary",
        ],
        &[],
    )?;
    lg.wait_for_line("Committing run", Duration::from_secs(90))?;
    let committed_at = Instant::now();
    let exit = lg.wait(Duration::from_secs(90))?;
    let out = lg.output();
    assert!(exit.success(), "loadgen with key B failed:\n{out}");
    let uuid = registered_run(&out).unwrap_or_else(|| panic!("no run id:\n{out}"));
    let requests = summary_requests(&out).unwrap_or_else(|| panic!("no summary:\n{out}"));

    // B's final record: the Aggregated summary point, polled every 100 ms.
    let q = format!(
        "SELECT requests FROM loadtest_summary WHERE event_id = '{uuid}' AND \"name\" = 'Aggregated'"
    );
    let bound = Duration::from_secs(u64::from(SNAPSHOT_INTERVAL_S));
    let mut latency = None;
    while committed_at.elapsed() < bound * 3 {
        if let Some(row) = influx_rows(&db, &q).await?.first() {
            latency = Some(committed_at.elapsed());
            assert_eq!(field_u64(row, "requests"), requests, "B's counts");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "RELIABILITY | registrations flood vs an innocent run | key A: 6000 registrations in \
         {:.1} s, answered {counts:?} ({accepted} runs accepted) | key B's loadgen run \
         ({requests} requests): commit → summary point in InfluxDB {} (bound: one snapshot \
         interval, {} s)",
        flood_took.as_secs_f64(),
        latency.map_or("not within 45 s".to_string(), |l| format!(
            "{} ms",
            l.as_millis()
        )),
        SNAPSHOT_INTERVAL_S,
    );
    let latency =
        latency.unwrap_or_else(|| panic!("B's summary was not in InfluxDB 45 s after its commit"));
    assert!(latency < bound, "B's summary after {latency:?}");
    assert!(
        accepted <= 100,
        "key A has more running runs than its cap: {counts:?}"
    );
    Ok(())
}
