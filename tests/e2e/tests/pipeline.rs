//! The whole pipeline as real processes: loadgen → loadtest-api → RabbitMQ → loadtest-writer →
//! InfluxDB 1.x (v1 sink) and VictoriaMetrics (v2 sink, `influxdb2` crate).
//!
//! Needs RabbitMQ on 127.0.0.1:5672, InfluxDB 1.x on 127.0.0.1:8086 and VictoriaMetrics on
//! 127.0.0.1:8428; `bash .ci/run` starts them.

use std::time::Duration;

use loadtest_e2e::*;
use serde_json::Value;

async fn is_running(client: &reqwest::Client, api: &str, path: &str) -> anyhow::Result<Value> {
    Ok(client
        .get(format!("{api}{path}"))
        .send()
        .await?
        .json()
        .await?)
}

/// loadgen runs ~35 s against a counting target; the run lands in InfluxDB 1.x with snapshots
/// every 5 s, goes running → committed, and its summary counts equal loadgen's and the target's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn loadgen_run_lands_in_influxdb_v1_exactly() -> anyhow::Result<()> {
    require_rabbitmq_and_influxdb();
    build_binaries()?;
    let stack = Stack::new("v1");
    let db = stack.db();
    influx_create_db(&db).await?;
    let _writer = stack.start_v1_writer("writer-v1", &db, 5)?;
    let (_api, api) = stack.start_api()?;
    let target = start_target().await?;
    let client = reqwest::Client::new();

    let mut loadgen = Proc::start(
        "loadgen-v1",
        "loadgen",
        &[
            "--host",
            &target.url,
            "-u",
            "4",
            "-r",
            "4",
            "-t",
            "35s",
            "--path",
            "/",
            "--path",
            "/items",
            "--path",
            "/fail",
            "--consumer-host",
            &api,
            "--api-key",
            &stack.api_key,
            "--stats-interval",
            "2s",
        ],
        &[],
    )?;
    let uuid_line = loadgen.wait_for_line("Registered run", Duration::from_secs(30))?;
    let uuid = first_uuid(&uuid_line).unwrap_or_else(|| panic!("no uuid in {uuid_line:?}"));

    // isrunning reports the run while it runs, on both paths.
    for path in ["/events/isrunning", "/apiv0.1/events/isrunning"] {
        let running = eventually(Duration::from_secs(15), "isrunning = 1", || async {
            let v = is_running(&client, &api, path).await?;
            Ok((v["running"] == 1).then_some(v))
        })
        .await?;
        assert_eq!(running["events"][0]["uuid"], uuid.as_str(), "{running}");
    }
    // Status is running in InfluxDB while the run goes on.
    let q_status =
        format!("SELECT last(status) AS status FROM loadtest_event WHERE event_id = '{uuid}'");
    let status = influx_rows(&db, &q_status).await?;
    assert_eq!(status[0]["status"], "running", "{status:?}");

    let exit = loadgen.wait(Duration::from_secs(90))?;
    let out = loadgen.output();
    assert!(exit.success(), "loadgen failed:\n{out}");
    let loadgen_count =
        summary_requests(&out).unwrap_or_else(|| panic!("no Aggregated row:\n{out}"));
    let target_count = target.count.load(std::sync::atomic::Ordering::SeqCst);

    eventually(Duration::from_secs(30), "status committed", || async {
        let rows = influx_rows(&db, &q_status).await?;
        Ok(rows.first().filter(|r| r["status"] == "committed").cloned())
    })
    .await?;

    let snapshots = influx_rows(
        &db,
        &format!("SELECT requests FROM loadtest_snapshot WHERE event_id = '{uuid}' ORDER BY time"),
    )
    .await?;
    assert!(
        snapshots.len() >= 5,
        "expected a snapshot every 5 s over 35 s: {snapshots:?}"
    );
    let counts: Vec<u64> = snapshots.iter().map(|r| field_u64(r, "requests")).collect();
    assert!(
        counts.windows(2).all(|w| w[0] <= w[1]),
        "cumulative requests decreased: {counts:?}"
    );
    for r in &snapshots {
        let t = r["time"].as_i64().expect("time");
        assert_eq!(t % 5_000_000_000, 0, "snapshot not aligned to 5 s: {t}");
    }

    let summary = influx_rows(
        &db,
        &format!("SELECT requests, failures FROM loadtest_summary WHERE event_id = '{uuid}' AND \"name\" = 'Aggregated'"),
    )
    .await?;
    assert_eq!(summary.len(), 1, "{summary:?}");
    let summary_count = field_u64(&summary[0], "requests");
    assert!(loadgen_count > 0);
    assert_eq!(summary_count, loadgen_count, "summary vs loadgen");
    assert_eq!(summary_count, target_count, "summary vs target");
    assert_eq!(
        *counts.last().expect("snapshots"),
        summary_count,
        "final snapshot vs summary"
    );
    let per_endpoint = influx_rows(
        &db,
        &format!("SELECT requests, failures FROM loadtest_summary WHERE event_id = '{uuid}' AND \"name\" = '/fail'"),
    )
    .await?;
    assert_eq!(
        field_u64(&per_endpoint[0], "requests"),
        field_u64(&per_endpoint[0], "failures")
    );
    let errors = influx_rows(
        &db,
        &format!("SELECT occurrences FROM loadtest_error WHERE event_id = '{uuid}'"),
    )
    .await?;
    assert!(!errors.is_empty(), "the /fail errors are recorded");

    eventually(Duration::from_secs(15), "isrunning = 0", || async {
        let v = is_running(&client, &api, "/events/isrunning").await?;
        Ok((v["running"] == 0).then_some(()))
    })
    .await?;
    Ok(())
}

/// The same pipeline through the v2 sink (`influxdb2` crate) into VictoriaMetrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn loadgen_run_lands_in_victoriametrics_via_v2() -> anyhow::Result<()> {
    require_rabbitmq_and_influxdb();
    require_victoria_metrics();
    build_binaries()?;
    let stack = Stack::new("v2");
    let _writer = stack.start_writer(
        "writer-v2",
        &[
            ("LOADTEST__SINK__KIND", "v2".into()),
            ("LOADTEST__SINK__URL", VM.into()),
            ("LOADTEST__SINK__ORG", "e2e".into()),
            ("LOADTEST__SINK__BUCKET", "e2e".into()),
            ("LOADTEST__SINK__TOKEN", "unused-by-victoriametrics".into()),
            ("LOADTEST__LIFECYCLE__SNAPSHOT_INTERVAL_S", "5".into()),
        ],
    )?;
    let (_api, api) = stack.start_api()?;
    let target = start_target().await?;
    let mut loadgen = Proc::start(
        "loadgen-v2",
        "loadgen",
        &[
            "--host",
            &target.url,
            "-u",
            "3",
            "-r",
            "3",
            "-t",
            "12s",
            "--consumer-host",
            &api,
            "--api-key",
            &stack.api_key,
            "--stats-interval",
            "2s",
        ],
        &[],
    )?;
    let exit = loadgen.wait(Duration::from_secs(60))?;
    let out = loadgen.output();
    assert!(exit.success(), "loadgen failed:\n{out}");
    let loadgen_count =
        summary_requests(&out).unwrap_or_else(|| panic!("no Aggregated row:\n{out}"));
    let uuid = out
        .split(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
        .find(|w| uuid::Uuid::parse_str(w).is_ok())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no uuid in output:\n{out}"));

    let client = reqwest::Client::new();
    let export = eventually(
        Duration::from_secs(60),
        "points in VictoriaMetrics",
        || async {
            client
                .get(format!("{VM}/internal/force_flush"))
                .send()
                .await?;
            let text = client
                .get(format!("{VM}/api/v1/export"))
                .query(&[("match[]", format!("{{event_id=\"{uuid}\"}}"))])
                .send()
                .await?
                .text()
                .await?;
            let has_summary = text.contains("\"loadtest_summary_requests\"");
            let has_snapshot = text.contains("\"loadtest_snapshot_requests\"");
            Ok((has_summary && has_snapshot).then_some(text))
        },
    )
    .await?;
    let aggregated: Value = export
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| {
            v["metric"]["__name__"] == "loadtest_summary_requests"
                && v["metric"]["name"] == "Aggregated"
        })
        .unwrap_or_else(|| panic!("no Aggregated summary in:\n{export}"));
    let value = aggregated["values"][0].as_f64().expect("value") as u64;
    assert_eq!(value, loadgen_count);
    assert_eq!(
        value,
        target.count.load(std::sync::atomic::Ordering::SeqCst)
    );
    Ok(())
}

/// The original Consumer's bodies, posted verbatim, keep working; a type error names the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn original_consumer_bodies_are_accepted_verbatim() -> anyhow::Result<()> {
    require_rabbitmq_and_influxdb();
    build_binaries()?;
    let stack = Stack::new("orig");
    let db = stack.db();
    influx_create_db(&db).await?;
    let _writer = stack.start_writer(
        "writer-orig",
        &[
            ("LOADTEST__SINK__KIND", "v1".into()),
            ("LOADTEST__SINK__DATABASE", db.clone()),
        ],
    )?;
    let (_api, api) = stack.start_api()?;
    let client = reqwest::Client::new();
    let register = include_str!("../../../fixtures/original-register.json");
    let resp = client
        .post(format!("{api}/apiv0.1/events/register"))
        .header("Authorization", format!("Bearer {}", stack.api_key))
        .header("Content-Type", "application/json")
        .body(register)
        .send()
        .await?;
    assert_eq!(resp.status(), 201);
    let v: Value = resp.json().await?;
    let uuid = v["uuid"].as_str().expect("uuid").to_string();
    let token = v["token"].as_str().expect("token").to_string();

    let commit = include_str!("../../../fixtures/original-commit.json")
        .replace("REPLACE-WITH-UUID-FROM-REGISTER", &uuid);
    let resp = client
        .post(format!("{api}/apiv0.1/events/commit"))
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .body(commit.clone())
        .send()
        .await?;
    assert_eq!(resp.status(), 202);

    // Without the event token: 401, not a silent 2xx.
    let resp = client
        .post(format!("{api}/apiv0.1/events/commit"))
        .body(commit)
        .send()
        .await?;
    assert_eq!(resp.status(), 401);

    let bad = register.replace("\"clients\": 5", "\"clients\": \"5\"");
    assert_ne!(bad, register);
    let resp = client
        .post(format!("{api}/apiv0.1/events/register"))
        .header("X-API-Key", &stack.api_key)
        .body(bad)
        .send()
        .await?;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let problem: Value = resp.json().await?;
    assert_eq!(problem["field"], "measurement.fields.clients", "{problem}");
    assert_eq!(problem["status"], 400);

    // The committed fixture reaches InfluxDB with its exact counts.
    let summary = eventually(Duration::from_secs(20), "fixture summary", || async {
        let rows = influx_rows(
            &db,
            &format!("SELECT requests, failures FROM loadtest_summary WHERE event_id = '{uuid}' AND \"name\" = 'Aggregated'"),
        )
        .await?;
        Ok(rows.into_iter().next())
    })
    .await?;
    assert_eq!(summary["requests"], 100);
    assert_eq!(summary["failures"], 1);
    Ok(())
}
