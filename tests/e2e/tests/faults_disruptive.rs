//! Faults that stop a service: an InfluxDB outage and a RabbitMQ restart; and a run longer than
//! the broker's `consumer_timeout`. Each test stops only a private instance it started itself
//! (`InfluxNode`, `RabbitNode`: own ports and data), so the shared services other tests use stay
//! up; the instance is stopped on drop even when the test fails. They take minutes, so they are
//! `#[ignore]`d and `.ci/run` runs them one at a time after the other tests:
//!
//! ```sh
//! cargo test -p loadtest-e2e --test faults_disruptive -- --ignored --test-threads=1
//! ```
//!
//! `LOADTEST_FAULT_OUTAGE_S` shortens the InfluxDB outage for local runs (default 60 s).

use std::time::{Duration, Instant};

use loadtest_e2e::*;

/// Scenario 2. InfluxDB is stopped (SIGKILL) for 60 s in the middle of 3 runs, then started.
/// Nothing is lost and nothing dead-lettered: every tick of every run has its snapshot (they
/// wait in the writer's outboxes and are written with their own timestamps once InfluxDB is
/// back); the writer keeps consuming meanwhile (the queue does not pile up); it retries with
/// capped exponential backoff and logs each retry once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "stops a private InfluxDB for a minute; run with --ignored (see .ci/run)"]
async fn influxdb_outage_loses_nothing() -> anyhow::Result<()> {
    require_rabbitmq();
    build_binaries()?;
    let outage = Duration::from_secs(
        std::env::var("LOADTEST_FAULT_OUTAGE_S")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let mut influx = InfluxNode::start().await?;
    let stack = Stack::new("outage");
    let db = stack.db();
    influx_create_db_at(&influx.url, &db).await?;
    let interval = Duration::from_secs(3);
    let writer = stack.start_writer("writer-outage", &writer_env(&influx.url, &db, 3, 300))?;
    let (_api, api) = stack.start_api()?;
    let target = start_slow_target(Duration::from_millis(100)).await?;
    let run_time = format!("{}s", outage.as_secs() + 30);
    let mut runs = Vec::new();
    for i in 0..3 {
        let mut run = LoadgenRun::start(
            &format!("loadgen-outage-{i}"),
            &stack,
            &api,
            &target.url,
            &run_time,
            "1s",
        )?;
        run.registered()?;
        runs.push(run);
    }
    let queue = format!("{}.writer", stack.exchange);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let before = rabbit_queue_messages(None, &queue)?;
    influx.kill();
    println!("outage: InfluxDB killed for {outage:?}; queue held {before} messages");
    let down = Instant::now();
    let mut peak = before;
    while down.elapsed() < outage {
        tokio::time::sleep(Duration::from_secs(5)).await;
        peak = peak.max(rabbit_queue_messages(None, &queue)?);
    }
    influx.start_again().await?;
    println!("outage: InfluxDB back; the queue peaked at {peak} messages");
    assert!(
        peak <= before + 20,
        "the writer keeps consuming while InfluxDB is down: the queue went {before} → {peak}"
    );
    let pending = writer_metric(&writer, "loadtest_writer_pending_snapshots").await;
    println!("outage: {pending:?} snapshots waiting in the outboxes when InfluxDB came back");

    let mut fig = RunFigures::default();
    let mut total = 0;
    // No fault window: every tick has its snapshot.
    let windows = [];
    for run in &mut runs {
        let counts = run.finish(Duration::from_secs(120))?;
        total += counts[2].1;
        wait_status(
            &influx.url,
            &db,
            &run.uuid,
            "committed",
            Duration::from_secs(90),
        )
        .await?;
        fig += check_run(
            &influx.url,
            &db,
            &run.uuid,
            "committed",
            interval,
            &counts,
            &windows,
        )
        .await?;
    }
    assert_eq!(
        total,
        target.count.load(std::sync::atomic::Ordering::SeqCst)
    );
    eventually(Duration::from_secs(30), "the queue drained", || async {
        Ok((rabbit_queue_messages(None, &queue)? == 0).then_some(()))
    })
    .await?;
    let conn = amqp_connect(AMQP_URL).await?;
    let dead = amqp_take_all(&conn, &format!("{}.dead", stack.exchange)).await?;
    assert!(dead.is_empty(), "nothing is dead-lettered: {dead:?}");

    // One log line per failed write attempt (not per message), backing off to the 30 s cap.
    let log = writer.output();
    let retries: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("write failed; retrying"))
        .map(|l| {
            l.split("retry_in_ms")
                .nth(1)
                .and_then(|r| {
                    r.trim_start_matches(|c: char| !c.is_ascii_digit())
                        .split(|c: char| !c.is_ascii_digit())
                        .next()
                        .and_then(|n| n.parse().ok())
                })
                .unwrap_or(0)
        })
        .collect();
    println!(
        "outage: {} retry log lines, waits {retries:?} ms",
        retries.len()
    );
    assert!(retries.len() >= 3, "retries are logged:\n{log}");
    let max_attempts = 8 + outage.as_secs() as usize / 10;
    assert!(
        retries.len() <= max_attempts,
        "retries are logged once per attempt, not per message: {} lines",
        retries.len()
    );
    assert!(
        retries.iter().all(|ms| *ms <= 30_000),
        "backoff is capped at 30 s: {retries:?}"
    );
    assert!(
        retries.last() > retries.first(),
        "backoff grows: {retries:?}"
    );
    assert_eq!(fig.missing_at_faults, 0, "snapshot slots missed");
    report_row(
        "2. InfluxDB outage",
        runs.len(),
        &format!(
            "influxd killed for {} s mid-run (queue {before} → {peak} → 0, {} retries logged)",
            outage.as_secs(),
            retries.len()
        ),
        fig,
        0,
        dead.len(),
    );
    Ok(())
}

/// The value of `metric` on the writer's `/metrics` (its address from the writer's log).
async fn writer_metric(writer: &Proc, metric: &str) -> Option<f64> {
    let line = writer
        .output()
        .lines()
        .find(|l| l.contains("metrics listening"))?
        .to_string();
    let url = line
        .split('"')
        .find(|w| w.starts_with("http://"))?
        .to_string();
    let text = reqwest::get(url).await.ok()?.text().await.ok()?;
    text.lines()
        .find(|l| l.starts_with(metric) && l[metric.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Scenario 3. RabbitMQ is restarted (`stop_app`, 15 s, `start_app`) in the middle of 3 runs.
/// While it is down the API answers 503 with `Retry-After`; it serves again within 10 s after
/// the broker is back, without a restart; the writer and the load generators reconnect by
/// themselves and the runs complete with the right counts. The writer restores the runs from
/// its checkpoints and fills the ticks it missed: no snapshot is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "restarts a private RabbitMQ node; run with --ignored (see .ci/run)"]
async fn broker_restart_is_survived() -> anyhow::Result<()> {
    require_influxdb();
    build_binaries()?;
    let rabbit = RabbitNode::start("restart")?;
    let stack = Stack::new("restart");
    let db = stack.db();
    influx_create_db(&db).await?;
    let interval = Duration::from_secs(3);
    let mut env = writer_env(INFLUX, &db, 3, 300);
    env.push(("LOADTEST__AMQP__URL", rabbit.url()));
    let _writer = stack.start_writer("writer-restart", &env)?;
    let (_api, api) = stack.start_api_with(&[("LOADTEST__AMQP__URL", rabbit.url())])?;
    let target = start_slow_target(Duration::from_millis(100)).await?;
    let mut runs = Vec::new();
    for i in 0..3 {
        let mut run = LoadgenRun::start(
            &format!("loadgen-restart-{i}"),
            &stack,
            &api,
            &target.url,
            "45s",
            "1s",
        )?;
        run.registered()?;
        runs.push(run);
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let client = reqwest::Client::new();
    let register = |client: reqwest::Client| {
        let api = api.clone();
        let key = stack.api_key.clone();
        async move {
            let body = include_str!("../../../fixtures/original-register.json");
            client
                .post(format!("{api}/apiv0.1/events/register"))
                .header("Authorization", format!("Bearer {key}"))
                .header("Content-Type", "application/json")
                .body(body)
                .timeout(Duration::from_secs(15))
                .send()
                .await
        }
    };
    rabbit.stop_app()?;
    println!("broker restart: stopped");
    let unavailable = eventually(Duration::from_secs(20), "503 from the API", || async {
        let resp = register(client.clone()).await?;
        if resp.status() == 503 {
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            Ok(Some(retry_after))
        } else {
            Ok(None)
        }
    })
    .await?;
    assert!(
        unavailable
            .as_deref()
            .and_then(|s| s.parse::<u64>().ok())
            .is_some(),
        "503 carries Retry-After in seconds: {unavailable:?}"
    );
    let ready = client.get(format!("{api}/readyz")).send().await?.status();
    assert_eq!(ready, 503, "readyz while the broker is down");
    tokio::time::sleep(Duration::from_secs(15)).await;
    rabbit.start_app()?;
    let back = Instant::now();
    println!("broker restart: started again");
    // The API serves again by itself (a register now is a real run: commit it).
    let resp = eventually(Duration::from_secs(10), "the API serving again", || async {
        match register(client.clone()).await {
            Ok(r) if r.status() == 201 => Ok(Some(r)),
            Ok(_) => Ok(None),
            Err(e) => Err(e.into()),
        }
    })
    .await?;
    let recovered = back.elapsed();
    println!("broker restart: the API served again {recovered:?} after the broker");
    assert!(recovered <= Duration::from_secs(10));
    let v: serde_json::Value = resp.json().await?;
    let extra = v["uuid"].as_str().unwrap_or_default().to_string();
    let token = v["token"].as_str().unwrap_or_default().to_string();
    let commit = include_str!("../../../fixtures/original-commit.json")
        .replace("REPLACE-WITH-UUID-FROM-REGISTER", &extra);
    let status = client
        .post(format!("{api}/apiv0.1/events/commit"))
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .body(commit)
        .send()
        .await?
        .status();
    assert_eq!(status, 202);

    // No fault window: the writer fills the ticks it missed.
    let windows = [];
    let mut fig = RunFigures::default();
    let mut total = 0;
    for run in &mut runs {
        let counts = run.finish(Duration::from_secs(120))?;
        total += counts[2].1;
        wait_status(INFLUX, &db, &run.uuid, "committed", Duration::from_secs(60)).await?;
        fig += check_run(
            INFLUX,
            &db,
            &run.uuid,
            "committed",
            interval,
            &counts,
            &windows,
        )
        .await?;
    }
    assert_eq!(
        total,
        target.count.load(std::sync::atomic::Ordering::SeqCst)
    );
    wait_status(INFLUX, &db, &extra, "committed", Duration::from_secs(30)).await?;
    let conn = amqp_connect(&rabbit.url()).await?;
    let dead = amqp_take_all(&conn, &format!("{}.dead", stack.exchange)).await?;
    assert!(dead.is_empty(), "dead-lettered: {dead:?}");
    assert_eq!(fig.missing_at_faults, 0, "snapshot slots missed");
    report_row(
        "3. broker restart",
        runs.len() + 1,
        &format!(
            "rabbitmqctl stop_app, 15 s, start_app mid-run (API 503 with Retry-After, serving {:.1} s after)",
            recovered.as_secs_f64()
        ),
        fig,
        0,
        dead.len(),
    );
    Ok(())
}

/// Scenario 8. A 3-minute run through a broker whose `consumer_timeout` is 60 s: the writer acks
/// each delivery once a checkpoint covers it, so no delivery stays unacked long enough for the
/// broker to close its channel; the run completes with exact counts and a snapshot every
/// interval, and the writer's session never ends. (A writer holding the run's register unacked
/// for the run's length loses its channel after a minute.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a 3-minute run through a private RabbitMQ; run with --ignored (see .ci/run)"]
async fn a_run_longer_than_consumer_timeout_completes() -> anyhow::Result<()> {
    require_influxdb();
    build_binaries()?;
    let rabbit = RabbitNode::start_with("ctimeout", "consumer_timeout = 60000\n")?;
    let stack = Stack::new("ctimeout");
    let db = stack.exchange.replace('-', "_");
    influx_create_db(&db).await?;
    let interval = Duration::from_secs(5);
    let mut env = writer_env(INFLUX, &db, interval.as_secs(), 300);
    env.push(("LOADTEST__AMQP__URL", rabbit.url()));
    let writer = stack.start_writer("writer-ctimeout", &env)?;
    let (_api, api) = stack.start_api_with(&[("LOADTEST__AMQP__URL", rabbit.url())])?;
    let target = start_slow_target(Duration::from_millis(100)).await?;
    let started = Instant::now();
    let mut run = LoadgenRun::start("loadgen-ctimeout", &stack, &api, &target.url, "180s", "2s")?;
    run.registered()?;
    let counts = run.finish(Duration::from_secs(300))?;
    wait_status(INFLUX, &db, &run.uuid, "committed", Duration::from_secs(60)).await?;
    let fig = check_run(INFLUX, &db, &run.uuid, "committed", interval, &counts, &[]).await?;
    assert_eq!(
        counts[2].1,
        target.count.load(std::sync::atomic::Ordering::SeqCst)
    );
    let log = writer.output();
    assert!(
        !log.contains("session ended"),
        "the writer's broker session ended during the run:\n{log}"
    );
    assert_eq!(
        log.matches("active consumer").count(),
        1,
        "one session, consuming throughout"
    );
    // Nothing stays unacked: the last deliveries go with the next checkpoint.
    let unacked = eventually(
        2 * interval + Duration::from_secs(5),
        "no delivery unacked",
        || {
            let n = rabbit_queue_unacked(Some(&rabbit), &stack.queue());
            async move { Ok(n.ok().filter(|n| *n == 0)) }
        },
    )
    .await?;
    println!(
        "consumer_timeout: a {:.0} s run through a broker with consumer_timeout 60 s; \
         {} snapshots; {unacked} deliveries unacked at the end",
        started.elapsed().as_secs_f64(),
        fig.found - counts.len() as u64 - 1
    );
    let conn = amqp_connect(&rabbit.url()).await?;
    let dead = amqp_take_all(&conn, &format!("{}.dead", stack.exchange)).await?;
    assert!(dead.is_empty(), "dead-lettered: {dead:?}");
    report_row(
        "8. run longer than consumer_timeout",
        1,
        "3-minute loadgen run, broker consumer_timeout 60 s",
        fig,
        0,
        dead.len(),
    );
    Ok(())
}
