//! Cluster mode against the real pipeline: five `loadgen` processes with one `--run-key` and
//! `--expected-nodes 5` form one run; its final snapshot and its summary in InfluxDB 1.x count
//! exactly the sum of the five nodes' own counts, which is what the target received.
//!
//! Needs RabbitMQ on 127.0.0.1:5672 and InfluxDB 1.x on 127.0.0.1:8086; `bash .ci/run` starts
//! them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use loadtest_e2e::*;
use serde_json::Value;

const NODES: usize = 5;

/// A target that counts what it answers, each answer after 5 ms (so five nodes stay gentle on
/// a small machine).
async fn counting_target() -> anyhow::Result<(String, Arc<AtomicU64>)> {
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let app = axum::Router::new().fallback(move || {
        let c = c.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            c.fetch_add(1, Ordering::SeqCst);
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, count))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_with_one_run_key_add_up_exactly() -> anyhow::Result<()> {
    require_rabbitmq_and_influxdb();
    build_binaries()?;
    let stack = Stack::new("lgcluster");
    let db = stack.db();
    influx_create_db(&db).await?;
    let _writer = stack.start_v1_writer("writer-lgcluster", &db, 5)?;
    let (_api, api) = stack.start_api()?;
    let (target, count) = counting_target().await?;
    let run_key = format!("cluster-{}", uuid::Uuid::new_v4());

    let mut nodes = Vec::new();
    for i in 0..NODES {
        let node_id = format!("node-{i}");
        nodes.push(Proc::start(
            &format!("loadgen-{node_id}"),
            "loadgen",
            &[
                "--host",
                &target,
                "-u",
                "2",
                "-r",
                "10",
                "-t",
                "10s",
                "--run-key",
                &run_key,
                "--node-id",
                &node_id,
                "--expected-nodes",
                "5",
                "--consumer-host",
                &api,
                "--api-key",
                &stack.api_key,
                "--stats-interval",
                "2s",
                "--only-summary",
            ],
            &[],
        )?);
    }
    let mut node_counts = Vec::new();
    let mut uuids = Vec::new();
    for node in &mut nodes {
        let exit = node.wait(Duration::from_secs(90))?;
        let out = node.output();
        assert!(exit.success(), "a node failed:\n{out}");
        node_counts.push(summary_requests(&out).unwrap_or_else(|| panic!("no summary:\n{out}")));
        uuids.push(registered_run(&out).unwrap_or_else(|| panic!("no run id:\n{out}")));
    }
    let uuid = uuids[0].clone();
    assert!(uuids.iter().all(|u| *u == uuid), "one run: {uuids:?}");
    let sum: u64 = node_counts.iter().sum();
    assert!(node_counts.iter().all(|&n| n > 0), "{node_counts:?}");
    assert_eq!(sum, count.load(Ordering::SeqCst), "nodes vs target");

    let q_status =
        format!("SELECT last(status) AS status FROM loadtest_event WHERE event_id = '{uuid}'");
    eventually(Duration::from_secs(30), "status committed", || async {
        let rows = influx_rows(&db, &q_status).await?;
        Ok(rows.into_iter().find(|r| r["status"] == "committed"))
    })
    .await?;
    let summary = influx_rows(
        &db,
        &format!(
            "SELECT requests FROM loadtest_summary WHERE event_id = '{uuid}' AND \"name\" = 'Aggregated'"
        ),
    )
    .await?;
    assert_eq!(summary.len(), 1, "{summary:?}");
    assert_eq!(
        summary[0]["requests"],
        Value::from(sum),
        "summary vs nodes {node_counts:?}"
    );

    let snapshots = influx_rows(
        &db,
        &format!(
            "SELECT requests, nodes FROM loadtest_snapshot WHERE event_id = '{uuid}' ORDER BY time"
        ),
    )
    .await?;
    assert!(snapshots.len() >= 2, "{snapshots:?}");
    let last = snapshots.last().expect("snapshots");
    assert_eq!(
        last["requests"],
        Value::from(sum),
        "final snapshot: {snapshots:?}"
    );
    assert_eq!(last["nodes"], Value::from(NODES as u64), "{snapshots:?}");
    let counts: Vec<u64> = snapshots
        .iter()
        .filter_map(|r| r["requests"].as_u64())
        .collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    Ok(())
}
