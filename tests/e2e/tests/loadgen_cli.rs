//! loadgen's command line against the real pipeline: the original customized Locust's command
//! line (`--no-web -c 5 -r 10 -n 100 --only-summary`) runs unchanged and its run lands in
//! InfluxDB 1.x through loadtest-api → RabbitMQ → loadtest-writer.
//!
//! Needs RabbitMQ on 127.0.0.1:5672 and InfluxDB 1.x on 127.0.0.1:8086; `bash .ci/run` starts
//! them.

use std::sync::atomic::Ordering;
use std::time::Duration;

use loadtest_e2e::*;
use serde_json::Value;

/// The original command line, with the API and key from the environment (the original tool
/// had them configured, not on its command line): exactly 100 requests reach the target, the
/// summary says 100, and InfluxDB has the committed run with the original's settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_command_line_lands_in_influxdb() -> anyhow::Result<()> {
    require_rabbitmq_and_influxdb();
    build_binaries()?;
    let stack = Stack::new("lgcli");
    let db = stack.db();
    influx_create_db(&db).await?;
    let _writer = stack.start_v1_writer("writer-lgcli", &db, 5)?;
    let (_api, api) = stack.start_api()?;
    let target = start_target().await?;

    let host_arg = format!("--host={}", target.url);
    let mut loadgen = Proc::start(
        "loadgen-original-cli",
        "loadgen",
        &[
            &host_arg,
            "--no-web",
            "-c",
            "5",
            "-r",
            "10",
            "-n",
            "100",
            "--only-summary",
        ],
        &[
            ("LOADTEST_CONSUMER_HOST", api.clone()),
            ("LOADTEST_API_KEY", stack.api_key.clone()),
        ],
    )?;
    let exit = loadgen.wait(Duration::from_secs(60))?;
    let out = loadgen.output();
    assert!(exit.success(), "loadgen failed:\n{out}");
    assert_eq!(summary_requests(&out), Some(100), "{out}");
    assert_eq!(target.count.load(Ordering::SeqCst), 100);
    // --only-summary: no progress line and no live table.
    assert!(
        !out.contains("req/s | failures"),
        "progress printed:\n{out}"
    );
    assert!(
        !out.lines().any(|l| l.trim_start().starts_with("Total ")),
        "live table printed:\n{out}"
    );
    let uuid = registered_run(&out).unwrap_or_else(|| panic!("no registered run in:\n{out}"));

    let q_event = format!(
        "SELECT last(status) AS status, last(clients) AS clients, last(hatch_rate) AS hatch_rate, \
         last(planned_requests) AS planned FROM loadtest_event WHERE event_id = '{uuid}'"
    );
    let event = eventually(Duration::from_secs(30), "status committed", || async {
        let rows = influx_rows(&db, &q_event).await?;
        Ok(rows.into_iter().find(|r| r["status"] == "committed"))
    })
    .await?;
    assert_eq!(event["clients"], 5, "{event:?}");
    assert_eq!(event["hatch_rate"].as_f64(), Some(10.0), "{event:?}");
    assert_eq!(event["planned"], 100, "{event:?}");
    let tool = influx_rows(
        &db,
        &format!(
            "SHOW TAG VALUES FROM loadtest_event WITH KEY = \"tool\" WHERE event_id = '{uuid}'"
        ),
    )
    .await?;
    assert_eq!(
        tool.first().and_then(|r| r.get("value")),
        Some(&Value::from("loadgen")),
        "{tool:?}"
    );

    let summary = influx_rows(
        &db,
        &format!(
            "SELECT requests, failures FROM loadtest_summary WHERE event_id = '{uuid}' AND \"name\" = 'Aggregated'"
        ),
    )
    .await?;
    assert_eq!(summary.len(), 1, "{summary:?}");
    assert_eq!(summary[0]["requests"], 100, "{summary:?}");
    assert_eq!(summary[0]["failures"], 0, "{summary:?}");
    Ok(())
}
