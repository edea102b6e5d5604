//! The stack test: the whole pipeline in containers, as users run it — `docker-compose.yml` with
//! the CI override `docker-compose.ci.yml` (which swaps only the RabbitMQ and InfluxDB images for
//! stand-ins built from Debian's packages: RabbitMQ 3.10 and VictoriaMetrics, which takes the
//! writer's InfluxDB v2 writes). Everything talks over the compose network; the test reads the
//! store (`/api/v1/export`), the target's count (`/__count`) and the API through ports published
//! on 127.0.0.1 at random (the `*_PUBLISH` variables), so it never clashes with the services the
//! other tests use, nor with another run of itself.
//!
//! 1. Writer failover: five `loadgen` containers (one run key, `--expected-nodes 5`) against the
//!    demo target; mid-run the active writer is `docker kill`ed. The standby takes over; the
//!    run's summary equals the sum of the nodes' own totals and the target's own count; every
//!    snapshot tick is there once.
//! 2. Broker outage: the same with the RabbitMQ container stopped for 20 s mid-run. API, writers
//!    and loadgen recover without a restart; the run is complete.
//! 3. `docker-compose down -v` leaves no container, volume or network of the project.
//!
//! It starts every service of the file but Grafana ([`SERVICES`]; Grafana's image cannot be had
//! without a registry). The notifier runs without a webhook, as a user's does until they set
//! `SLACK_WEBHOOK_URL`: it must exit 0 and stay stopped (`restart: on-failure`).
//!
//! Needs Docker, `docker-compose` and the images `.ci/images.sh TAG` builds; run by `.ci/run`:
//! `LOADTEST_STACK_TAG=TAG cargo test -p loadtest-e2e --test stack -- --ignored --nocapture`.
//! Containers, volumes and networks are removed also when the test fails (their logs are kept
//! in a file whose path is printed).

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use chrono::{DateTime, Utc};
use loadtest_e2e::{
    docker, docker_logs, eventually, export, log_times, registered_run, require_images, stack_tag,
    summary_requests, target_count, Compose, Series,
};

/// The writer's default snapshot interval, which the compose file keeps.
const INTERVAL_MS: i64 = 15_000;
/// Load generator nodes per run.
const NODES: usize = 5;
/// Requests per second each node starts (open model): light for 2 shared cores.
const NODE_RATE: &str = "20";
/// How long RabbitMQ stays stopped in scenario 2.
const OUTAGE: Duration = Duration::from_secs(20);
/// What `up` starts: docker-compose.yml's services but `grafana` (an image from a registry) and
/// `loadgen` (a profile; started per node with `run`).
const SERVICES: &[&str] = &[
    "rabbitmq", "influxdb", "api", "writer-1", "writer-2", "target", "notifier",
];
/// The services with a healthcheck that `up` starts; the notifier exits at once without a
/// webhook.
const HEALTHY: &[&str] = &[
    "rabbitmq", "influxdb", "api", "writer-1", "writer-2", "target",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker and the images of .ci/images.sh; run by .ci/run"]
async fn compose_stack_failover_outage_and_teardown() -> anyhow::Result<()> {
    let tag = stack_tag();
    require_images(
        &tag,
        &[
            format!("loadtest-api:{tag}"),
            format!("loadtest-writer:{tag}"),
            format!("loadgen:{tag}"),
            format!("loadtest-notifier:{tag}"),
            "loadtest-ci/rabbitmq:3.10".into(),
            "loadtest-ci/victoriametrics:1.79".into(),
        ],
    )?;
    let mut stack = Compose::new(&tag, "stack", &[])?;
    let result = scenarios(&mut stack).await;
    if let Err(e) = &result {
        stack.keep_logs();
        eprintln!("stack test failed: {e:#}");
    }
    result?;
    stack.down_and_check_nothing_is_left()
}

async fn scenarios(stack: &mut Compose) -> anyhow::Result<()> {
    let started = Instant::now();
    stack.up(SERVICES, HEALTHY)?;
    println!(
        "STACK | up and healthy in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    notifier_is_off(stack)?;
    let store = format!("http://{}", stack.port("influxdb", 8086)?);
    let api = format!("http://{}", stack.port("api", 8080)?);
    let target = format!("http://{}", stack.port("target", 8000)?);
    let http = reqwest::Client::new();

    // 1. Writer failover.
    let before = target_count(&http, &target).await?;
    let nodes = start_nodes(stack, "failover", "60s")?;
    let uuid = run_id(stack, &nodes)?;
    let active = eventually(Duration::from_secs(30), "an active writer", || async {
        let mut active = Vec::new();
        for w in ["writer-1", "writer-2"] {
            if !active_since(&stack.container(w)?)?.is_empty() {
                active.push(w);
            }
        }
        ensure!(active.len() <= 1, "two writers active at once: {active:?}");
        Ok(active.first().copied())
    })
    .await?;
    let standby = if active == "writer-1" {
        "writer-2"
    } else {
        "writer-1"
    };
    snapshots_appear(&http, &store, &uuid).await?;
    tokio::time::sleep(Duration::from_secs(4)).await; // between two ticks
    let killed = stack.container(active)?;
    let kill_at = Utc::now();
    docker(&["kill", &killed])?;
    let standby_id = stack.container(standby)?;
    let took_over = eventually(
        Duration::from_secs(30),
        "the standby to take over",
        || async {
            Ok(active_since(&standby_id)?
                .into_iter()
                .find(|t| *t >= kill_at))
        },
    )
    .await?;
    let takeover_ms = (took_over - kill_at).num_milliseconds();
    println!("STACK | killed {active} ({killed:.12}); {standby} active {takeover_ms} ms later");
    let totals = finish_nodes(&nodes)?;
    let after = target_count(&http, &target).await?;
    let fig = check_run(&http, &store, &uuid, &totals, after - before, None).await?;
    println!(
        "STACK | run 1, writer failover | run {uuid} | node totals {:?} | sum {} | target count {} | summary {} | failures {} | ticks {} (none missing, none doubled) | takeover {takeover_ms} ms",
        totals.iter().map(|t| t.requests).collect::<Vec<_>>(),
        fig.sum, after - before, fig.summary, fig.failures, fig.ticks
    );
    // The killed writer comes back as the standby (`docker kill` does not trigger the restart
    // policy).
    docker(&["start", &killed])?;
    stack.wait_healthy(&[active])?;

    // 2. Broker outage.
    let restarts_before = stack.restarts(&["api", "writer-1", "writer-2", "target"])?;
    let before = target_count(&http, &target).await?;
    let nodes = start_nodes(stack, "outage", "75s")?;
    let uuid = run_id(stack, &nodes)?;
    snapshots_appear(&http, &store, &uuid).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rabbit = stack.container("rabbitmq")?;
    let stop_at = Utc::now();
    docker(&["stop", "-t", "30", &rabbit])?;
    let stopped = Instant::now();
    let stop_took = (Utc::now() - stop_at).num_milliseconds() as f64 / 1000.0;
    let api_down = http.get(format!("{api}/readyz")).send().await?.status();
    println!("STACK | RabbitMQ stopped ({stop_took:.1} s to stop); API /readyz answers {api_down}");
    tokio::time::sleep(OUTAGE.saturating_sub(stopped.elapsed())).await;
    docker(&["start", &rabbit])?;
    let start_at = Utc::now();
    let restarted = Instant::now();
    eventually(Duration::from_secs(120), "the API ready again", || async {
        let r = http.get(format!("{api}/readyz")).send().await;
        Ok(r.ok().filter(|r| r.status().is_success()).map(|_| ()))
    })
    .await?;
    let api_ready_s = restarted.elapsed().as_secs_f64();
    let totals = finish_nodes(&nodes)?;
    // The writers reconnect by themselves (backoff up to 10 s): their first new session.
    let mut writer_back = Vec::new();
    for w in ["writer-1", "writer-2"] {
        let times = active_since(&stack.container(w)?)?;
        writer_back.extend(times.into_iter().filter(|t| *t >= start_at));
    }
    let writer_back_s = writer_back
        .iter()
        .min()
        .map(|t| (*t - start_at).num_milliseconds() as f64 / 1000.0)
        .context("no writer reconnected after the broker started")?;
    let after = target_count(&http, &target).await?;
    let window = (
        stop_at.timestamp_millis(),
        start_at.timestamp_millis() + 30_000,
    );
    let fig = check_run(&http, &store, &uuid, &totals, after - before, Some(window)).await?;
    let restarts_after = stack.restarts(&["api", "writer-1", "writer-2", "target"])?;
    ensure!(
        restarts_before == restarts_after,
        "a service was restarted during the broker outage: {restarts_before:?} -> {restarts_after:?}"
    );
    println!(
        "STACK | run 2, RabbitMQ stopped {} s | run {uuid} | node totals {:?} | sum {} | target count {} | summary {} | failures {} | ticks {} ({} missed during the outage, none doubled) | API ready {api_ready_s:.1} s, writers consuming again {writer_back_s:.1} s after the broker started | no container restarted",
        OUTAGE.as_secs(),
        totals.iter().map(|t| t.requests).collect::<Vec<_>>(),
        fig.sum, after - before, fig.summary, fig.failures, fig.ticks, fig.missed
    );
    Ok(())
}

/// The notifier without a webhook: says Slack is off, exits 0, is not restarted.
fn notifier_is_off(stack: &Compose) -> anyhow::Result<()> {
    let id = stack.container("notifier")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let state = loop {
        let state = docker(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}",
            &id,
        ])?;
        let state = state.trim().to_string();
        if !state.starts_with("running") && !state.starts_with("created") {
            break state;
        }
        ensure!(
            Instant::now() < deadline,
            "the notifier without a webhook still runs after 60 s: {state}\n{}",
            docker_logs(&id)?
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let logs = docker_logs(&id)?;
    ensure!(
        state == "exited 0 0" && logs.contains("Slack notifications are off"),
        "the notifier without a webhook: {state} (status, exit code, restarts):\n{logs}"
    );
    println!("STACK | notifier without a webhook: Slack off, exited 0, not restarted");
    Ok(())
}

/// Starts the nodes of one run: `docker-compose run -d loadgen …`, the documented command.
fn start_nodes(stack: &mut Compose, name: &str, run_time: &str) -> anyhow::Result<Vec<String>> {
    let run_key = format!("{name}-{}", uuid::Uuid::new_v4().simple());
    let mut names = Vec::new();
    for i in 1..=NODES {
        let node_id = format!("node-{i}");
        #[rustfmt::skip]
        let container = stack.run_detached(&format!("{name}-node-{i}"), &[
            "loadgen",
            "--host", "http://target:8000", "-u", "5", "--arrival-rate", NODE_RATE,
            "-t", run_time, "--path", "/", "--path", "/api/items", "--path", "/api/flaky",
            "--run-key", &run_key, "--expected-nodes", "5", "--node-id", &node_id,
            "--stats-interval", "5s", "-q",
        ])?;
        names.push(container);
    }
    Ok(names)
}

/// Waits for the nodes to exit; each must succeed. Returns their own totals.
fn finish_nodes(nodes: &[String]) -> anyhow::Result<Vec<NodeTotal>> {
    let mut totals = Vec::new();
    for node in nodes {
        let code = docker(&["wait", node])?;
        let out = docker_logs(node)?;
        ensure!(
            code.trim() == "0",
            "{node} exited with {}:\n{out}",
            code.trim()
        );
        totals.push(NodeTotal {
            requests: summary_requests(&out)
                .with_context(|| format!("no Aggregated row from {node}:\n{out}"))?,
            failures: summary_failures(&out)
                .with_context(|| format!("no failures column from {node}:\n{out}"))?,
        });
    }
    Ok(totals)
}

/// When a writer logged `active consumer: leader lock taken, runs restored; consuming` (it took
/// the leader lock and consumes), by Docker's log timestamps.
fn active_since(container: &str) -> anyhow::Result<Vec<DateTime<Utc>>> {
    log_times(container, "active consumer: leader lock taken")
}

/// One node's own totals, from its summary's `Aggregated` row.
#[derive(Debug, Clone, Copy)]
struct NodeTotal {
    requests: u64,
    failures: u64,
}

/// The failures of the `Aggregated` row (`9(1.12%)`).
fn summary_failures(out: &str) -> Option<u64> {
    let row = out
        .lines()
        .find(|l| l.contains("Aggregated") && l.contains('|'))?;
    let cell = row
        .split_whitespace()
        .skip_while(|w| *w != "Aggregated")
        .nth(2)?;
    cell.split('(').next()?.parse().ok()
}

/// The run id all nodes registered (they share one run key, so one id).
fn run_id(stack: &Compose, nodes: &[String]) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ids = Vec::new();
    for node in nodes {
        loop {
            let out = docker_logs(node)?;
            if let Some(id) = registered_run(&out) {
                ids.push(id);
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "{node} did not register within 60 s:\n{out}\n(project {})",
                stack.project()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    ensure!(
        ids.iter().all(|id| *id == ids[0]),
        "the nodes registered different runs: {ids:?}"
    );
    Ok(ids[0].clone())
}

async fn snapshots_appear(http: &reqwest::Client, store: &str, uuid: &str) -> anyhow::Result<()> {
    eventually(
        Duration::from_secs(60),
        "the run's first snapshot",
        || async {
            let s = export(http, store, uuid, "loadtest_snapshot_requests").await?;
            Ok((!s.is_empty()).then_some(()))
        },
    )
    .await
}

/// What [`check_run`] found.
struct Figures {
    sum: u64,
    summary: u64,
    failures: u64,
    ticks: usize,
    missed: i64,
}

/// Checks a finished run in the store: its `Aggregated` summary (requests and failures) equals
/// the sum of the nodes' own totals and the target's count; it was committed; its snapshots form
/// one series, one point per 15 s tick, aligned, cumulative, ending at the summary, with a tick
/// missing only inside `outage` (Unix ms).
async fn check_run(
    http: &reqwest::Client,
    store: &str,
    uuid: &str,
    totals: &[NodeTotal],
    target: u64,
    outage: Option<(i64, i64)>,
) -> anyhow::Result<Figures> {
    let sum: u64 = totals.iter().map(|t| t.requests).sum();
    let sum_failures: u64 = totals.iter().map(|t| t.failures).sum();
    ensure!(
        totals.len() == NODES && totals.iter().all(|t| t.requests > 0),
        "expected {NODES} nodes with requests: {totals:?}"
    );
    let names = "loadtest_summary_requests|loadtest_summary_failures|loadtest_event_duration_s";
    let final_record = eventually(
        Duration::from_secs(90),
        "the run's final record",
        || async {
            let s = export(http, store, uuid, names).await?;
            let has = |name: &str| {
                s.iter()
                    .any(|s| s.label("__name__") == name && !s.label("name").is_empty())
            };
            let done = s
                .iter()
                .any(|s| s.label("__name__") == "loadtest_event_duration_s")
                && has("loadtest_summary_requests")
                && has("loadtest_summary_failures");
            Ok(done.then_some(s))
        },
    )
    .await?;
    let aggregated = |name: &str| -> anyhow::Result<u64> {
        let s: Vec<&Series> = final_record
            .iter()
            .filter(|s| s.label("__name__") == name && s.label("name") == "Aggregated")
            .collect();
        ensure!(
            s.len() == 1 && s[0].values.len() == 1,
            "expected one {name} point for Aggregated, found {s:?} in {final_record:?}"
        );
        Ok(s[0].values[0] as u64)
    };
    let summary = aggregated("loadtest_summary_requests")?;
    let failures = aggregated("loadtest_summary_failures")?;
    ensure!(
        summary == sum && sum == target,
        "run {uuid}: summary {summary}, sum of the nodes' totals {sum} ({totals:?}), target's count {target}"
    );
    ensure!(
        failures == sum_failures,
        "run {uuid}: summary failures {failures}, sum of the nodes' failures {sum_failures}"
    );

    let snaps = export(http, store, uuid, "loadtest_snapshot_requests").await?;
    ensure!(
        snaps.len() == 1,
        "run {uuid}: snapshots in {} series: {snaps:?}",
        snaps.len()
    );
    let (times, values) = (&snaps[0].timestamps, &snaps[0].values);
    ensure!(
        times.len() >= 3,
        "run {uuid}: only {} snapshots",
        times.len()
    );
    if let Some(t) = times.iter().find(|t| *t % INTERVAL_MS != 0) {
        bail!("run {uuid}: snapshot at {t} not aligned to {INTERVAL_MS} ms: {times:?}");
    }
    let mut missed = 0;
    for w in times.windows(2) {
        ensure!(
            w[1] != w[0],
            "run {uuid}: tick {} written twice: {times:?}",
            w[0]
        );
        ensure!(w[1] > w[0], "run {uuid}: snapshots out of order: {times:?}");
        let gap = (w[1] - w[0]) / INTERVAL_MS - 1;
        if gap > 0 {
            let in_outage = outage.is_some_and(|(s, e)| w[1] >= s && w[0] <= e);
            ensure!(
                in_outage,
                "run {uuid}: {gap} snapshot tick(s) missing between {} and {}: {times:?}",
                w[0],
                w[1]
            );
            missed += gap;
        }
    }
    ensure!(
        values.windows(2).all(|w| w[1] >= w[0]),
        "run {uuid}: cumulative requests decreased: {values:?}"
    );
    ensure!(
        values.last().map(|v| *v as u64) == Some(summary),
        "run {uuid}: last snapshot {values:?} != summary {summary}"
    );
    Ok(Figures {
        sum,
        summary,
        failures,
        ticks: times.len(),
        missed,
    })
}
