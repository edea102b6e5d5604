//! What real clients send (issue 17, input faults), through the real API, RabbitMQ and writer,
//! read back from InfluxDB 1.x (InfluxQL) and VictoriaMetrics (its Prometheus API):
//!
//! - request names with backslashes read back by their own names on each store (item 1);
//! - Locust's web `/stats/requests` JSON keeps the percentiles Locust reported, and no other
//!   (item 2);
//! - a client clock an hour ahead or behind changes no stored rate or duration (item 5).
//!
//! Needs RabbitMQ on 127.0.0.1:5672, InfluxDB 1.x on 127.0.0.1:8086 and VictoriaMetrics on
//! 127.0.0.1:8428; `bash .ci/run` starts them.

use std::time::Duration;

use loadtest_e2e::*;
use serde_json::{json, Value};

/// Request names with backslashes next to each character line protocol escapes, and a
/// trailing one (which InfluxDB 1.x cannot store: it becomes U+FF3C, on every store alike).
const NAMES: &[&str] = &[
    "back\\slash",
    "g\\,h",
    "a\\ b",
    "c\\\\d",
    "e\\=f",
    "/plain path",
];

/// Registers a run (node `n1`) through the API with `startedAt` = `started_at`; returns
/// (uuid, token).
async fn register(
    client: &reqwest::Client,
    api: &str,
    key: &str,
    started_at: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<(String, String)> {
    let resp = client
        .post(format!("{api}/apiv0.1/events/register"))
        .header("X-API-Key", key)
        .json(&json!({
            "startedAt": started_at.to_rfc3339(),
            "host": "e2e-inputs",
            "nodeId": "n1",
            "measurement": {"fields": {"clients": 1, "hatchRate": 1, "requests": 0},
                            "tags": {"targetHost": "http://127.0.0.1:1", "mode": "single"}}
        }))
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 201, "register: {}", resp.text().await?);
    let v: Value = resp.json().await?;
    Ok((
        v["uuid"].as_str().unwrap_or_default().to_string(),
        v["token"].as_str().unwrap_or_default().to_string(),
    ))
}

/// Commits `request_stats` (either accepted shape) for node `n1` of run `uuid`, with `extra`
/// merged into the body's top level.
async fn commit(
    client: &reqwest::Client,
    api: &str,
    uuid: &str,
    token: &str,
    request_stats: Value,
    extra: Value,
) -> anyhow::Result<()> {
    let mut body = json!({
        "uuid": uuid,
        "nodeId": "n1",
        "host": "e2e-inputs",
        "measurement": {"fields": {"requestStats": request_stats},
                        "tags": {"hostname": "http://127.0.0.1:1", "mode": "single"}}
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let resp = client
        .post(format!("{api}/apiv0.1/events/commit"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 202, "commit: {}", resp.text().await?);
    Ok(())
}

/// A Locust `StatsEntry.serialize()` object: `n` requests of `ms` each between `start` and
/// `last` (Unix seconds).
fn entry(method: &str, name: &str, n: u64, ms: u64, start: f64, last: f64) -> Value {
    json!({
        "name": name, "method": method, "num_requests": n, "num_failures": 0,
        "total_response_time": (n * ms) as f64, "min_response_time": ms as f64,
        "max_response_time": ms as f64, "total_content_length": n * 10,
        "response_times": {ms.to_string(): n},
        "start_time": start, "last_request_timestamp": last
    })
}

/// The entries and errors of a commit with one endpoint per name of [`NAMES`].
fn named_stats() -> (Value, Value) {
    let now = chrono::Utc::now().timestamp() as f64;
    let entries: Vec<Value> = NAMES
        .iter()
        .map(|n| entry("GET", n, 5, 10, now - 5.0, now))
        .collect();
    let errors: Vec<Value> = NAMES
        .iter()
        .map(|n| json!({"method": "GET", "name": n, "error": "boom \\ bang", "occurrences": 1}))
        .collect();
    (Value::Array(entries), Value::Array(errors))
}

/// `s` as an InfluxQL string literal's contents (`\` and `'` escaped).
fn influxql(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "\\'")
}

/// Issue 17 item 1: on InfluxDB 1.x (v1 sink, `sink.backslashes` at its default `literal`)
/// every name reads back by itself in `loadtest_summary`, `loadtest_request` and
/// `loadtest_error`. On main, `back\slash` was stored as `back\\slash` and found by nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_backslashes_read_back_by_their_own_names_on_influxdb_v1() -> anyhow::Result<()>
{
    require_rabbitmq_and_influxdb();
    build_binaries()?;
    let stack = Stack::new("bs-v1");
    let db = stack.db();
    influx_create_db(&db).await?;
    let _writer = stack.start_v1_writer("writer-bs-v1", &db, 2)?;
    let (_api, api) = stack.start_api()?;
    let client = reqwest::Client::new();
    let (uuid, token) = register(&client, &api, &stack.api_key, chrono::Utc::now()).await?;
    let (entries, errors) = named_stats();
    commit(
        &client,
        &api,
        &uuid,
        &token,
        entries,
        json!({ "errors": errors }),
    )
    .await?;
    wait_status(INFLUX, &db, &uuid, "committed", Duration::from_secs(30)).await?;
    for name in NAMES {
        for (measurement, field) in [
            ("loadtest_summary", "requests"),
            ("loadtest_request", "requests"),
            ("loadtest_error", "occurrences"),
        ] {
            let q = format!(
                "SELECT {field} FROM {measurement} WHERE event_id = '{uuid}' AND \"name\" = '{}'",
                influxql(name)
            );
            let rows = influx_rows(&db, &q).await?;
            assert!(
                !rows.is_empty(),
                "{measurement} of {name:?} not found by its name; stored names: {:?}",
                influx_query(
                    &db,
                    &format!("SHOW TAG VALUES FROM {measurement} WITH KEY = \"name\"")
                )
                .await?
            );
        }
    }
    // String fields keep their backslash too.
    let rows = influx_rows(
        &db,
        &format!("SELECT error FROM loadtest_error WHERE event_id = '{uuid}' LIMIT 1"),
    )
    .await?;
    assert_eq!(rows[0]["error"], "boom \\ bang", "{rows:?}");
    Ok(())
}

/// Issue 17 item 1 on VictoriaMetrics: the writer's v2 sink with `sink.backslashes = escaped`
/// into VictoriaMetrics' InfluxDB write endpoint; every name reads back by itself through its
/// Prometheus API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_backslashes_read_back_by_their_own_names_on_victoriametrics(
) -> anyhow::Result<()> {
    require_rabbitmq_and_influxdb();
    require_victoria_metrics();
    build_binaries()?;
    let stack = Stack::new("bs-vm");
    let _writer = stack.start_writer(
        "writer-bs-vm",
        &[
            ("LOADTEST__SINK__KIND", "v2".into()),
            ("LOADTEST__SINK__URL", VM.into()),
            ("LOADTEST__SINK__ORG", "e2e".into()),
            ("LOADTEST__SINK__BUCKET", "e2e".into()),
            ("LOADTEST__SINK__TOKEN", "unused-by-victoriametrics".into()),
            ("LOADTEST__SINK__BACKSLASHES", "escaped".into()),
        ],
    )?;
    let (_api, api) = stack.start_api()?;
    let client = reqwest::Client::new();
    let (uuid, token) = register(&client, &api, &stack.api_key, chrono::Utc::now()).await?;
    let (entries, errors) = named_stats();
    commit(
        &client,
        &api,
        &uuid,
        &token,
        entries,
        json!({ "errors": errors }),
    )
    .await?;
    for name in NAMES {
        // PromQL string literals escape `\` and `"` as Go does.
        let quoted = name.replace('\\', "\\\\").replace('"', "\\\"");
        for metric in [
            "loadtest_summary_requests",
            "loadtest_request_requests",
            "loadtest_error_occurrences",
        ] {
            let selector = format!("{metric}{{event_id=\"{uuid}\",name=\"{quoted}\"}}");
            eventually(
                Duration::from_secs(30),
                &format!("{selector} in VictoriaMetrics"),
                || async {
                    client
                        .get(format!("{VM}/internal/force_flush"))
                        .send()
                        .await?;
                    let v: Value = client
                        .get(format!("{VM}/api/v1/series"))
                        .query(&[("match[]", selector.as_str())])
                        .send()
                        .await?
                        .json()
                        .await?;
                    let found = v["data"]
                        .as_array()
                        .is_some_and(|d| d.iter().any(|s| s["name"] == *name));
                    Ok(found.then_some(()))
                },
            )
            .await?;
        }
    }
    Ok(())
}

/// One row of Locust's web `/stats/requests` JSON: 10 requests, min 3, median 12, p95 40,
/// p99 120, max 130 (ms).
fn web_row(method: Value, name: &str) -> Value {
    json!({
        "method": method, "name": name, "safe_name": name,
        "num_requests": 10, "num_failures": 0,
        "avg_response_time": 25.0, "min_response_time": 3, "max_response_time": 130,
        "current_rps": 0.0, "current_fail_per_sec": 0.0, "avg_content_length": 100.0,
        "median_response_time": 12,
        "response_time_percentile_0.95": 40,
        "response_time_percentile_0.99": 120
    })
}

/// Issue 17 item 2: a commit of Locust's web `/stats/requests` JSON stores the median, p95 and
/// p99 Locust reported, for the endpoint and for the total, and no percentile nobody measured
/// (p90, p75, …). On main every percentile was the minimum, 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locust_web_stats_keep_the_percentiles_locust_reported() -> anyhow::Result<()> {
    require_rabbitmq_and_influxdb();
    build_binaries()?;
    let stack = Stack::new("webpct");
    let db = stack.db();
    influx_create_db(&db).await?;
    let mut writer = stack.start_v1_writer("writer-webpct", &db, 2)?;
    let (_api, api) = stack.start_api()?;
    let client = reqwest::Client::new();
    let (uuid, token) = register(&client, &api, &stack.api_key, chrono::Utc::now()).await?;
    let web = json!({
        "stats": [web_row(json!("GET"), "/"), web_row(Value::Null, "Aggregated")],
        "errors": [], "total_rps": 0.0, "fail_ratio": 0.0, "state": "stopped", "user_count": 0
    });
    commit(&client, &api, &uuid, &token, web, json!({})).await?;
    wait_status(INFLUX, &db, &uuid, "committed", Duration::from_secs(30)).await?;
    for name in ["/", "Aggregated"] {
        let rows = influx_rows(
            &db,
            &format!(
                "SELECT * FROM loadtest_summary WHERE event_id = '{uuid}' AND \"name\" = '{name}'"
            ),
        )
        .await?;
        assert_eq!(rows.len(), 1, "{name}: {rows:?}");
        let row = &rows[0];
        assert_eq!(row["requests"], 10, "{name}: {row:?}");
        assert_eq!(row["response_time_p50"], 12.0, "{name}: {row:?}");
        assert_eq!(row["response_time_p95"], 40.0, "{name}: {row:?}");
        assert_eq!(row["response_time_p99"], 120.0, "{name}: {row:?}");
        for unmeasured in [
            "response_time_p66",
            "response_time_p75",
            "response_time_p90",
        ] {
            assert!(
                row.get(unmeasured).is_none_or(Value::is_null),
                "{name}: {unmeasured} stored though nobody measured it: {row:?}"
            );
        }
    }
    let snapshots = influx_rows(
        &db,
        &format!("SELECT response_time_p90, response_time_p95 FROM loadtest_snapshot WHERE event_id = '{uuid}'"),
    )
    .await?;
    // Issue 17 item 7: one info line each when the run is registered, committed (with its
    // requests, failures and duration) and its final record written.
    let written = writer.wait_for_line("final record written", Duration::from_secs(10))?;
    assert!(written.contains(&uuid), "{written}");
    let log = writer.output();
    let line = |what: &str| {
        log.lines()
            .find(|l| l.contains(what) && l.contains(&uuid))
            .unwrap_or_else(|| panic!("no {what:?} line for {uuid} in:\n{log}"))
            .to_string()
    };
    let _ = line("run registered");
    let committed = line("run committed");
    for field in ["\"requests\":10", "\"failures\":0", "duration_s", "INFO"] {
        assert!(committed.contains(field), "{field} not in {committed}");
    }
    for s in &snapshots {
        assert!(s["response_time_p90"].is_null(), "{s:?}");
        assert!(
            s["response_time_p95"].is_null() || s["response_time_p95"] == 40.0,
            "{s:?}"
        );
    }
    Ok(())
}

/// Issue 17 item 5: a client whose clock is an hour ahead, and one an hour behind, each send
/// ~10 requests/s for 8 s (stats after 3 s and 6 s, commit after 8 s, every time stamp on their
/// own clock). Every stored rate is ~10/s, `duration_s` is the ~8 s the run took, and the event
/// point is at the server's time of the register. On main the run ahead had a first rate of
/// 0.08/s and `duration_s` 0, the run behind `duration_s` 3608.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_clock_skew_changes_no_stored_rate_or_duration() -> anyhow::Result<()> {
    require_rabbitmq_and_influxdb();
    build_binaries()?;
    let stack = Stack::new("skew");
    let db = stack.db();
    influx_create_db(&db).await?;
    let _writer = stack.start_v1_writer("writer-skew", &db, 2)?;
    let (_api, api) = stack.start_api()?;
    let client = reqwest::Client::new();
    let real_start = chrono::Utc::now();
    let mut runs = Vec::new();
    for skew_s in [3600i64, -3600] {
        let skew = chrono::Duration::seconds(skew_s);
        let (uuid, token) = register(&client, &api, &stack.api_key, real_start + skew).await?;
        runs.push((skew_s, uuid, token));
    }
    let t0 = real_start.timestamp_millis() as f64 / 1e3;
    for (step, at_s) in [(1u64, 3.0), (2, 6.0), (3, 8.0)] {
        let wait =
            (real_start + chrono::Duration::milliseconds((at_s * 1e3) as i64)) - chrono::Utc::now();
        tokio::time::sleep(wait.to_std().unwrap_or_default()).await;
        for (skew_s, uuid, token) in &runs {
            let start = t0 + *skew_s as f64;
            let n = (at_s * 10.0) as u64;
            let e = entry("GET", "/", n, 10, start, start + at_s);
            if step < 3 {
                let resp = client
                    .post(format!("{api}/apiv0.1/events/{uuid}/stats"))
                    .bearer_auth(token)
                    .json(
                        &json!({"nodeId": "n1", "seq": step, "userCount": 1, "state": "running",
                                  "entries": [e.clone()], "total": e, "errors": []}),
                    )
                    .send()
                    .await?;
                anyhow::ensure!(resp.status() == 202, "stats: {}", resp.text().await?);
            } else {
                commit(
                    &client,
                    &api,
                    uuid,
                    token,
                    json!([e]),
                    json!({"nodeId": "n1", "seq": step}),
                )
                .await?;
            }
        }
    }
    for (skew_s, uuid, _) in &runs {
        wait_status(INFLUX, &db, uuid, "committed", Duration::from_secs(30)).await?;
        let event = influx_rows(
            &db,
            &format!("SELECT duration_s FROM loadtest_event WHERE event_id = '{uuid}' AND status = 'committed'"),
        )
        .await?;
        let duration = event[0]["duration_s"].as_f64().unwrap_or(-1.0);
        assert!(
            (6.0..=14.0).contains(&duration),
            "skew {skew_s} s: duration_s {duration} for a run of ~8 s"
        );
        let t = event[0]["time"].as_i64().unwrap_or_default();
        let off_s = (t - real_start.timestamp_nanos_opt().unwrap_or_default()) as f64 / 1e9;
        assert!(
            off_s.abs() < 5.0,
            "skew {skew_s} s: the event point is {off_s} s from the register"
        );
        for (measurement, rps) in [
            ("loadtest_snapshot", "rps"),
            ("loadtest_request", "rps"),
            ("loadtest_summary", "rps"),
        ] {
            let rows = influx_rows(
                &db,
                &format!("SELECT {rps}, requests FROM {measurement} WHERE event_id = '{uuid}'"),
            )
            .await?;
            assert!(!rows.is_empty(), "skew {skew_s} s: no {measurement}");
            for r in &rows {
                let v = r[rps].as_f64().unwrap_or(0.0);
                // A snapshot between two stats posts has no new request: rate 0.
                assert!(
                    v == 0.0 || (7.0..=13.0).contains(&v),
                    "skew {skew_s} s: {measurement} rps {v} where the truth is 10/s: {rows:?}"
                );
            }
            assert!(
                rows.iter().any(|r| r[rps].as_f64().unwrap_or(0.0) > 0.0),
                "skew {skew_s} s: no rate in {measurement}: {rows:?}"
            );
        }
    }
    Ok(())
}
