//! `loadgen --amqp-url`: the run registers through the API, then its stats and commit go
//! straight to RabbitMQ (publisher confirms); the writer takes them like the API's and the run
//! lands in InfluxDB 1.x with exact counts. The API sees no stats and no commit.
//!
//! Needs RabbitMQ on 127.0.0.1:5672 and InfluxDB 1.x on 127.0.0.1:8086; `bash .ci/run` starts
//! them.

use std::sync::atomic::Ordering;
use std::time::Duration;

use loadtest_e2e::*;

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_commit_go_straight_to_rabbitmq() -> anyhow::Result<()> {
    require_rabbitmq_and_influxdb();
    build_binaries()?;
    let stack = Stack::new("lgamqp");
    let db = stack.db();
    influx_create_db(&db).await?;
    let _writer = stack.start_v1_writer("writer-lgamqp", &db, 5)?;
    let (api_proc, api) = stack.start_api()?;
    let target = start_target().await?;
    let mut loadgen = Proc::start(
        "loadgen-amqp",
        "loadgen",
        &[
            "--host",
            &target.url,
            "-u",
            "2",
            "-r",
            "10",
            "-t",
            "8s",
            "--consumer-host",
            &api,
            "--api-key",
            &stack.api_key,
            "--amqp-url",
            AMQP,
            "--amqp-exchange",
            &stack.exchange,
            "--stats-interval",
            "1s",
            "--only-summary",
        ],
        &[],
    )?;
    let exit = loadgen.wait(Duration::from_secs(60))?;
    let out = loadgen.output();
    assert!(exit.success(), "loadgen failed:\n{out}");
    assert!(
        out.contains("Publishing stats and the commit to RabbitMQ at amqp://guest:***@"),
        "{out}"
    );
    let count = summary_requests(&out).unwrap_or_else(|| panic!("no summary:\n{out}"));
    assert_eq!(count, target.count.load(Ordering::SeqCst));
    let uuid = registered_run(&out).unwrap_or_else(|| panic!("no run id:\n{out}"));

    let row = aggregated_summary(&db, &uuid, "requests").await?;
    assert_eq!(row["requests"], count);
    let snapshots = influx_rows(
        &db,
        &format!("SELECT requests FROM loadtest_snapshot WHERE event_id = '{uuid}'"),
    )
    .await?;
    assert!(!snapshots.is_empty(), "snapshots from the AMQP stats");
    // The API registered the run and saw nothing else of it.
    let api_log = api_proc.output();
    assert!(api_log.contains("run registered"), "{api_log}");
    assert!(
        !api_log.contains("run committed"),
        "the commit went through the API:\n{api_log}"
    );
    Ok(())
}
