//! `loadgen --threshold` as a process against the real pipeline: a p95 that must fail makes
//! loadgen exit with code 1 and name the failed threshold; the run is still committed and
//! lands in InfluxDB 1.x.
//!
//! Needs RabbitMQ on 127.0.0.1:5672 and InfluxDB 1.x on 127.0.0.1:8086; `bash .ci/run` starts
//! them.

use std::time::Duration;

use loadtest_e2e::*;

/// A target whose `/slow` takes 30 ms.
async fn slow_target() -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/slow",
        axum::routing::get(|| async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            "slow"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_p95_threshold_exits_1_and_says_which() -> anyhow::Result<()> {
    require_rabbitmq_and_influxdb();
    build_binaries()?;
    let stack = Stack::new("lgthr");
    let db = stack.db();
    influx_create_db(&db).await?;
    let _writer = stack.start_writer(
        "writer-lgthr",
        &[
            ("LOADTEST__SINK__KIND", "v1".into()),
            ("LOADTEST__SINK__URL", INFLUX.into()),
            ("LOADTEST__SINK__DATABASE", db.clone()),
        ],
    )?;
    let (_api, api) = stack.start_api()?;
    let target = slow_target().await?;
    let mut loadgen = Proc::start(
        "loadgen-thresholds",
        "loadgen",
        &[
            "--host",
            &target,
            "-u",
            "4",
            "-r",
            "100",
            "-n",
            "60",
            "--path",
            "/slow",
            "--consumer-host",
            &api,
            "--api-key",
            &stack.api_key,
            "--threshold",
            "p95<5ms",
            "--threshold",
            "fail_ratio<0.01",
            "--only-summary",
        ],
        &[],
    )?;
    let exit = loadgen.wait(Duration::from_secs(60))?;
    let out = loadgen.output();
    assert_eq!(exit.code(), Some(1), "exit code 1 expected:\n{out}");
    assert!(out.contains("FAIL p95<5ms (p95 of Aggregated = "), "{out}");
    assert!(out.contains("PASS fail_ratio<0.01"), "{out}");
    assert!(out.contains("1 of 2 thresholds FAILED: p95<5ms"), "{out}");
    assert_eq!(summary_requests(&out), Some(60), "{out}");

    // The run was committed all the same.
    let uuid = registered_run(&out).unwrap_or_else(|| panic!("no registered run in:\n{out}"));
    let row = aggregated_summary(&db, &uuid, "requests").await?;
    assert_eq!(row["requests"], 60);
    // The verdicts travelled with the commit and are in InfluxDB, one point per threshold.
    let q = format!(
        "SELECT passed, actual, \"limit\" FROM loadtest_threshold WHERE event_id = '{uuid}' GROUP BY threshold"
    );
    let v = influx_query(&db, &q).await?;
    let series = v["results"][0]["series"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let verdict = |expr: &str| {
        series
            .iter()
            .find(|s| s["tags"]["threshold"] == expr)
            .map(|s| s["values"][0][1].clone())
            .unwrap_or_else(|| panic!("no loadtest_threshold point for {expr}: {v}"))
    };
    assert_eq!(verdict("p95<5ms"), 0, "{v}");
    assert_eq!(verdict("fail_ratio<0.01"), 1, "{v}");
    Ok(())
}
