//! The writer's delivery guarantee under faults that disturb no other test: a committed run is
//! in InfluxDB completely and exactly once. Real processes, real RabbitMQ and InfluxDB 1.x.
//!
//! - writer crash: two writer replicas, `kill -9` of the active one at random moments while 20
//!   runs are in flight (seeded; `LOADTEST_FAULT_SEED` replays a run of the test);
//! - poison messages straight on the queue: each ends in `<exchange>.dead` with its reason;
//! - abandoned run: a load generator killed without committing expires;
//! - redelivery: the same messages delivered twice add no point;
//! - 1,000 concurrent runs with a prefetch of 500: the writer's unacked deliveries stay bounded
//!   (run state is checkpointed, not held in deliveries) and every run completes.
//!
//! The faults that stop a service (InfluxDB outage, broker restart) are in `faults_disruptive.rs`.
//! Each test prints a `RELIABILITY |` row for `docs/reliability.md`.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use loadtest_e2e::*;
use protocol::{Body, CommitPayload, Envelope, ErrorEntry, RunInfo, StatsEntry, StatsPayload};
use rand::{Rng, SeedableRng};

/// Scenario 1. Two writer replicas share the queue (one active, one standing by); the active
/// one is killed with SIGKILL at random moments while 20 runs are in flight, and restarted.
/// Every run ends with one committed status, one summary per endpoint with loadgen's counts,
/// snapshots without duplicates and without gaps except at a failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writer_crash_loses_and_doubles_nothing() -> anyhow::Result<()> {
    require_rabbitmq_and_influxdb();
    build_binaries()?;
    let seed: u64 = std::env::var("LOADTEST_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    println!("writer crash: seed {seed} (replay with LOADTEST_FAULT_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let runs_n = 20;
    let interval = Duration::from_secs(3);
    let stack = Stack::new("crash");
    let db = stack.db();
    influx_create_db(&db).await?;
    let env = writer_env(INFLUX, &db, interval.as_secs(), 60);
    let mut writers = [
        Some(stack.start_writer("writer-crash-a", &env)?),
        Some(stack.start_writer("writer-crash-b", &env)?),
    ];
    let (_api, api) = stack.start_api()?;
    // Each user sends at most ~10 requests/s: 20 generators stay light on two cores.
    let target = start_slow_target(Duration::from_millis(100)).await?;

    let mut runs = Vec::new();
    for i in 0..runs_n {
        let mut run = LoadgenRun::start(
            &format!("loadgen-crash-{i}"),
            &stack,
            &api,
            &target.url,
            "40s",
            "1s",
        )?;
        run.registered()?;
        runs.push(run);
    }
    let started = Instant::now();
    // Kill the active writer 4 times at random moments over the runs' 40 s.
    let mut kill_at: Vec<u64> = (0..4).map(|_| rng.gen_range(2_000..36_000)).collect();
    kill_at.sort_unstable();
    let mut windows = Vec::new();
    let mut takeovers = Vec::new();
    for at in kill_at {
        let at = Duration::from_millis(at);
        if let Some(wait) = at.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        // The active replica is the one receiving deliveries.
        let active = eventually(Duration::from_secs(20), "an active writer", || {
            let found = writers.iter().position(|w| {
                w.as_ref()
                    .is_some_and(|w| w.output().contains("active consumer"))
            });
            async move { Ok(found) }
        })
        .await?;
        let Some(mut w) = writers[active].take() else {
            unreachable!("position found it")
        };
        let killed_at = now_ns();
        w.child.kill()?; // SIGKILL
        let _ = w.child.wait();
        let killed = Instant::now();
        println!(
            "writer crash: killed replica {active} at {:.1} s",
            started.elapsed().as_secs_f64()
        );
        // The standing-by replica takes the leader lock and restores the runs.
        let other = 1 - active;
        let Some(survivor) = writers[other].as_ref() else {
            unreachable!("only the killed replica is taken out")
        };
        eventually(Duration::from_secs(20), "the standby taking over", || {
            let led = survivor.output().contains("active consumer");
            async move { Ok(led.then_some(())) }
        })
        .await?;
        takeovers.push(killed.elapsed());
        let pause = Duration::from_millis(rng.gen_range(0..3_000));
        tokio::time::sleep(pause).await;
        let name = if active == 0 {
            "writer-crash-a"
        } else {
            "writer-crash-b"
        };
        writers[active] = Some(stack.start_writer(name, &env)?);
        windows.push((killed_at, now_ns() + interval.as_nanos() as i64));
    }

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
        target.count.load(std::sync::atomic::Ordering::SeqCst),
        "the runs' summaries add up to what the target answered"
    );
    let conn = amqp_connect(AMQP_URL).await?;
    let dead = amqp_take_all(&conn, &format!("{}.dead", stack.exchange)).await?;
    assert!(dead.is_empty(), "dead-lettered: {dead:?}");
    // The new leader fills the ticks nobody took from the restored state: no hole.
    assert_eq!(
        fig.missing_at_faults, 0,
        "snapshot slots missed at a takeover"
    );
    let ms: Vec<u128> = takeovers.iter().map(Duration::as_millis).collect();
    println!("writer crash: takeovers (kill to the standby consuming) took {ms:?} ms");
    report_row(
        "1. writer crash (2 replicas)",
        runs_n,
        &format!(
            "{} × kill -9 of the active writer (seed {seed}); takeover in {} ms at most",
            windows.len(),
            ms.iter().max().copied().unwrap_or_default()
        ),
        fig,
        0,
        dead.len(),
    );
    Ok(())
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|e| panic!("bad timestamp {s}: {e}"))
}

fn run_info(started_at: DateTime<Utc>) -> RunInfo {
    RunInfo {
        started_at,
        host: "fault-suite".into(),
        clients: 2,
        hatch_rate: 1.0,
        requests: 0,
        target_host: "http://target".into(),
        mode: "single".into(),
        tool: "e2e".into(),
        expected_nodes: None,
    }
}

fn stats(start: f64, n: u64) -> StatsPayload {
    let mut a = StatsEntry::new("GET", "/", start);
    let mut b = StatsEntry::new("GET", "/items", start);
    for i in 0..n {
        a.log(10.0 + (i % 7) as f64, 100, false, start + 1.0);
        b.log(20.0 + (i % 5) as f64, 50, i % 4 == 0, start + 1.0);
    }
    let errors = vec![ErrorEntry {
        method: "GET".into(),
        name: "/items".into(),
        error: "HTTP 500".into(),
        occurrences: n.div_ceil(4),
    }];
    StatsPayload::from_entries(vec![a, b], errors, 2, "running")
}

/// The messages of a whole run (register, two stats, commit) as the API would publish them.
fn run_messages(stack: &Stack, id: uuid::Uuid, t0: DateTime<Utc>) -> Vec<(String, Vec<u8>)> {
    let token = protocol::event_token(stack.secret.as_bytes(), &id);
    let start = t0.timestamp() as f64;
    let secs = |s: i64| t0 + chrono::Duration::seconds(s);
    let bodies = [
        (0, secs(0), Body::Registered(run_info(t0))),
        (1, secs(4), Body::Stats(stats(start, 40))),
        (2, secs(8), Body::Stats(stats(start, 80))),
        (
            3,
            secs(10),
            Body::Committed(CommitPayload {
                host: "fault-suite".into(),
                stats: stats(start, 100),
                thresholds: Vec::new(),
            }),
        ),
    ];
    bodies
        .into_iter()
        .map(|(seq, sent_at, body)| {
            let mut env = Envelope::new(id, "node-1", seq, token.clone(), body);
            env.sent_at = sent_at;
            (env.body.routing_key().to_string(), env.to_json())
        })
        .collect()
}

/// Scenario 6. The same messages delivered twice (each published twice in a row, then the whole
/// run once more after its final record) create no extra point: the run has exactly the points
/// of a run delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_messages_add_no_points() -> anyhow::Result<()> {
    require_rabbitmq_and_influxdb();
    build_binaries()?;
    let stack = Stack::new("redeliver");
    let db = stack.db();
    influx_create_db(&db).await?;
    // Snapshots hourly, so every point of these runs comes from their messages, not the clock.
    let _writer = stack.start_writer("writer-redeliver", &writer_env(INFLUX, &db, 3600, 5))?;
    let conn = amqp_connect(AMQP_URL).await?;
    let t0 = Utc
        .with_ymd_and_hms(2025, 3, 1, 10, 0, 0)
        .single()
        .expect("t0");
    let once = uuid::Uuid::new_v4();
    let twice = uuid::Uuid::new_v4();
    for (key, body) in run_messages(&stack, once, t0) {
        amqp_publish(&stack.exchange, &key, &body).await?;
    }
    let msgs = run_messages(&stack, twice, t0);
    for (key, body) in &msgs {
        amqp_publish(&stack.exchange, key, body).await?;
        amqp_publish(&stack.exchange, key, body).await?;
    }
    for id in [once, twice] {
        wait_status(
            INFLUX,
            &db,
            &id.to_string(),
            "committed",
            Duration::from_secs(30),
        )
        .await?;
    }
    // The whole run once more, after its final record was written.
    for (key, body) in &msgs {
        amqp_publish(&stack.exchange, key, body).await?;
    }
    // Everything is settled (duplicates acked, leftovers dropped after expire_after) ...
    let queue = format!("{}.writer", stack.exchange);
    eventually(Duration::from_secs(60), "the queue drained", || async {
        Ok((rabbit_queue_messages(None, &queue)? == 0).then_some(()))
    })
    .await?;
    // ... and both runs have the same points, exactly.
    let count = |id: uuid::Uuid| {
        let db = db.clone();
        async move {
            let mut n = Vec::new();
            for m in [
                "loadtest_event",
                "loadtest_snapshot",
                "loadtest_request",
                "loadtest_summary",
                "loadtest_error",
            ] {
                let rows = influx_rows_at(
                    INFLUX,
                    &db,
                    &format!("SELECT * FROM {m} WHERE event_id = '{id}' GROUP BY *"),
                )
                .await?;
                n.push((m, rows.len()));
            }
            anyhow::Ok(n)
        }
    };
    let expected = vec![
        ("loadtest_event", 1),
        ("loadtest_snapshot", 1),
        ("loadtest_request", 2),
        ("loadtest_summary", 3),
        ("loadtest_error", 1),
    ];
    assert_eq!(count(once).await?, expected, "delivered once");
    assert_eq!(count(twice).await?, expected, "delivered twice");
    let counts = [("/", 100), ("/items", 100), ("Aggregated", 200)];
    let mut fig = RunFigures::default();
    for id in [once, twice] {
        fig += check_run(
            INFLUX,
            &db,
            &id.to_string(),
            "committed",
            Duration::from_secs(3600),
            &counts,
            &[],
        )
        .await?;
    }
    let found: usize = count(twice).await?.iter().map(|(_, n)| n).sum();
    let dead = amqp_take_all(&conn, &format!("{}.dead", stack.exchange)).await?;
    assert!(dead.is_empty(), "dead-lettered: {dead:?}");
    println!("redelivery: run delivered twice has {found} points, as the run delivered once");
    report_row(
        "6. redelivery",
        2,
        "each message published twice, then the whole run again after its final record",
        fig,
        0,
        dead.len(),
    );
    Ok(())
}

/// Scenario 5. A load generator killed (SIGKILL) without committing: after `expire_after` the
/// run's status is `expired` and it leaves `isrunning`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_run_expires() -> anyhow::Result<()> {
    require_rabbitmq_and_influxdb();
    build_binaries()?;
    let stack = Stack::new("abandon");
    let db = stack.db();
    influx_create_db(&db).await?;
    let expire_after = Duration::from_secs(8);
    let _writer = stack.start_writer(
        "writer-abandon",
        &writer_env(INFLUX, &db, 2, expire_after.as_secs()),
    )?;
    let (_api, api) = stack.start_api()?;
    let target = start_slow_target(Duration::from_millis(50)).await?;
    let mut run = LoadgenRun::start("loadgen-abandon", &stack, &api, &target.url, "120s", "1s")?;
    let uuid = run.registered()?.to_string();
    let client = reqwest::Client::new();
    let listed = |want: bool| {
        let client = client.clone();
        let (api, uuid) = (api.clone(), uuid.clone());
        async move {
            let v: serde_json::Value = client
                .get(format!("{api}/events/isrunning"))
                .send()
                .await?
                .json()
                .await?;
            let has = v["events"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["uuid"] == uuid.as_str()));
            Ok((has == want).then_some(()))
        }
    };
    eventually(Duration::from_secs(20), "the run in isrunning", || {
        listed(true)
    })
    .await?;
    eventually(Duration::from_secs(20), "a snapshot", || async {
        let rows = influx_rows(
            &db,
            &format!("SELECT requests FROM loadtest_snapshot WHERE event_id = '{uuid}'"),
        )
        .await?;
        Ok((!rows.is_empty()).then_some(()))
    })
    .await?;
    run.proc.child.kill()?; // SIGKILL: no commit
    let _ = run.proc.child.wait();
    let killed = Instant::now();
    wait_status(INFLUX, &db, &uuid, "expired", Duration::from_secs(40)).await?;
    let took = killed.elapsed();
    assert!(
        took + Duration::from_secs(1) >= expire_after,
        "expired after {took:?}, before expire_after"
    );
    eventually(
        Duration::from_secs(15),
        "the run gone from isrunning",
        || listed(false),
    )
    .await?;
    let events = influx_rows_at(
        INFLUX,
        &db,
        &format!("SELECT status FROM loadtest_event WHERE event_id = '{uuid}' GROUP BY *"),
    )
    .await?;
    assert_eq!(events.len(), 1, "one event point: {events:?}");
    let summary = influx_rows(
        &db,
        &format!("SELECT requests FROM loadtest_summary WHERE event_id = '{uuid}'"),
    )
    .await?;
    assert!(
        summary.is_empty(),
        "an expired run has no summary: {summary:?}"
    );
    let snaps = influx_rows(
        &db,
        &format!("SELECT requests FROM loadtest_snapshot WHERE event_id = '{uuid}'"),
    )
    .await?;
    let conn = amqp_connect(AMQP_URL).await?;
    let dead = amqp_take_all(&conn, &format!("{}.dead", stack.exchange)).await?;
    assert!(dead.is_empty(), "dead-lettered: {dead:?}");
    println!(
        "abandoned run: expired {:.1} s after the kill (expire_after {expire_after:?})",
        took.as_secs_f64()
    );
    report_row(
        "5. abandoned run",
        1,
        "kill -9 of the load generator, no commit",
        RunFigures {
            expected: 1 + snaps.len() as u64,
            found: events.len() as u64 + snaps.len() as u64,
            missing_at_faults: 0,
        },
        0,
        dead.len(),
    );
    Ok(())
}

/// Scenario 4. Poison published straight on the queue — invalid JSON, an unknown schema
/// version, a bad event token, and a run whose points conflict with a field type InfluxDB
/// already holds (HTTP 400) — each ends in `<exchange>.dead` with its reason; a run going on
/// at the same time is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_lettered_with_their_reason() -> anyhow::Result<()> {
    require_rabbitmq_and_influxdb();
    build_binaries()?;
    let stack = Stack::new("poison");
    let db = stack.db();
    influx_create_db(&db).await?;
    let interval = Duration::from_secs(2);
    let _writer = stack.start_writer("writer-poison", &writer_env(INFLUX, &db, 2, 60))?;
    let (_api, api) = stack.start_api()?;
    let target = start_slow_target(Duration::from_millis(50)).await?;
    let mut run = LoadgenRun::start("loadgen-poison", &stack, &api, &target.url, "15s", "1s")?;
    run.registered()?;

    // InfluxDB 1.x fixes a field's type per measurement and shard: someone wrote `requests` as
    // a string into the January 2001 shard, so a run from then cannot be written (400).
    let t2001 = at("2001-01-01T00:00:00Z");
    let lp = format!(
        "loadtest_snapshot,event_id=legacy requests=\"many\" {}\n",
        t2001.timestamp_nanos_opt().expect("ns")
    );
    assert_eq!(influx_write_at(INFLUX, &db, &lp).await?, 204);
    let conflicting = uuid::Uuid::new_v4();
    let conn = amqp_connect(AMQP_URL).await?;
    let ex = &stack.exchange;
    let valid = run_messages(&stack, uuid::Uuid::new_v4(), at("2025-01-01T00:00:00Z"));
    let mut schema_v9: serde_json::Value = serde_json::from_slice(&valid[1].1)?;
    schema_v9["schema"] = "loadtest.v9".into();
    let mut bad_token: serde_json::Value = serde_json::from_slice(&valid[0].1)?;
    bad_token["token"] = "00".repeat(32).into();
    let poison: Vec<(&str, Vec<u8>)> = vec![
        (
            "event.stats",
            b"{\"schema\": \"loadtest.v1\", not json".to_vec(),
        ),
        ("event.stats", serde_json::to_vec(&schema_v9)?),
        ("event.registered", serde_json::to_vec(&bad_token)?),
    ];
    for (key, body) in &poison {
        amqp_publish(ex, key, body).await?;
    }
    let conflict_msgs = run_messages(&stack, conflicting, t2001);
    // Register and commit back to back: both are still held (not yet covered by a checkpoint)
    // when the final record is rejected, so both are dead-lettered.
    let conflict = [conflict_msgs[0].clone(), conflict_msgs[3].clone()];
    amqp_publish_all(ex, &conflict).await?;

    let dead_queue = format!("{ex}.dead");
    eventually(Duration::from_secs(30), "5 dead letters", || async {
        Ok((amqp_ready(&conn, &dead_queue).await? >= 5).then_some(()))
    })
    .await?;
    let counts = run.finish(Duration::from_secs(60))?;
    wait_status(INFLUX, &db, &run.uuid, "committed", Duration::from_secs(30)).await?;
    let fig = check_run(INFLUX, &db, &run.uuid, "committed", interval, &counts, &[]).await?;
    let dead = amqp_take_all(&conn, &dead_queue).await?;
    let reasons: Vec<String> = dead
        .iter()
        .map(|d| d.reason.clone().unwrap_or_default())
        .collect();
    println!("poison: dead-letter reasons {reasons:#?}");
    assert_eq!(dead.len(), 5, "{reasons:?}");
    let with = |needle: &str| reasons.iter().filter(|r| r.contains(needle)).count();
    assert_eq!(
        with("invalid message"),
        2,
        "invalid JSON and schema: {reasons:?}"
    );
    assert_eq!(with("loadtest.v9"), 1, "{reasons:?}");
    assert_eq!(with("bad event token"), 1, "{reasons:?}");
    assert_eq!(
        with("field type conflict"),
        2,
        "register and commit: {reasons:?}"
    );
    for d in &dead {
        let original: Vec<&Vec<u8>> = poison
            .iter()
            .map(|(_, b)| b)
            .chain([&conflict_msgs[0].1, &conflict_msgs[3].1])
            .collect();
        assert!(
            original.contains(&&d.body),
            "dead letter is the message as published"
        );
    }
    // The queue kept flowing: nothing left behind.
    let queue = format!("{ex}.writer");
    eventually(Duration::from_secs(30), "the queue drained", || async {
        Ok((rabbit_queue_messages(None, &queue)? == 0).then_some(()))
    })
    .await?;
    report_row(
        "4. poison messages",
        2,
        "invalid JSON, schema loadtest.v9, bad token, field type conflict (HTTP 400)",
        fig,
        5,
        dead.len(),
    );
    Ok(())
}

/// 1,000 runs registered and sending stats at once, through a writer whose prefetch (500) is
/// smaller than the number of runs: the writer checkpoints their state and acks, so once it has
/// taken everything in it holds (almost) no delivery unacked while the 1,000 runs are still
/// running, and every run completes with exact counts. (A writer that held each run's register
/// unacked would hold 2,000 deliveries here, and with this prefetch would stop receiving.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_deliveries_stay_bounded_with_1000_runs() -> anyhow::Result<()> {
    require_rabbitmq_and_influxdb();
    build_binaries()?;
    let runs_n = 1_000;
    let stack = Stack::new("many");
    let db = stack.exchange.replace('-', "_");
    influx_create_db(&db).await?;
    let interval = Duration::from_secs(3);
    let mut env = writer_env(INFLUX, &db, interval.as_secs(), 300);
    env.push(("LOADTEST__AMQP__PREFETCH", "500".into()));
    let _writer = stack.start_writer("writer-many", &env)?;
    let conn = amqp_connect(AMQP_URL).await?;
    let queue = stack.queue();
    let t0 = Utc::now();
    let start = t0.timestamp() as f64;
    let ids: Vec<uuid::Uuid> = (0..runs_n).map(|_| uuid::Uuid::new_v4()).collect();
    let message = |id: &uuid::Uuid, seq: u64, body: Body| {
        let token = protocol::event_token(stack.secret.as_bytes(), id);
        let env = Envelope::new(*id, "node-1", seq, token, body);
        (env.body.routing_key().to_string(), env.to_json())
    };

    // Sample the broker's count of the writer's unacked deliveries while the runs go on.
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (sampling, queue) = (sampling.clone(), queue.clone());
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = rabbit_queue_unacked(None, &queue) {
                    samples.push(n);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            samples
        })
    };
    let registers: Vec<_> = ids
        .iter()
        .map(|id| message(id, 0, Body::Registered(run_info(t0))))
        .collect();
    amqp_publish_all(&stack.exchange, &registers).await?;
    for seq in 1..=3 {
        let stats_round: Vec<_> = ids
            .iter()
            .map(|id| message(id, seq, Body::Stats(stats(start, 10 * seq))))
            .collect();
        amqp_publish_all(&stack.exchange, &stats_round).await?;
    }
    let published = Instant::now();
    // Everything taken in, and held by the writer only until its next checkpoint.
    eventually(
        Duration::from_secs(60),
        "the writer taking everything in",
        || {
            let conn = &conn;
            let queue = queue.clone();
            async move { Ok((amqp_ready(conn, &queue).await? == 0).then_some(())) }
        },
    )
    .await?;
    let settled = eventually(
        Duration::from_secs(30),
        "the writer holding no delivery",
        || {
            let queue = queue.clone();
            async move { Ok((rabbit_queue_unacked(None, &queue)? <= 5).then_some(())) }
        },
    )
    .await;
    let settled_after = published.elapsed();
    // ... and it stays so while the 1,000 runs are running: two more ticks.
    let watch = Instant::now();
    let mut steady_max = 0;
    while watch.elapsed() < 2 * interval {
        steady_max = steady_max.max(rabbit_queue_unacked(None, &queue)?);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let samples = sampler.join().unwrap_or_default();
    let peak = samples.iter().copied().max().unwrap_or_default();
    println!(
        "1,000 runs: unacked deliveries peaked at {peak} while 4,000 messages arrived (prefetch 500), \
         {steady_max} at most once taken in (settled {:.1} s after the last publish); {} samples",
        settled_after.as_secs_f64(),
        samples.len()
    );
    settled?;
    assert!(steady_max <= 5, "unacked while runs go on: {steady_max}");
    assert!(peak <= 500, "bounded by the prefetch: {peak}");

    // Every run completes, exactly.
    let commits: Vec<_> = ids
        .iter()
        .map(|id| {
            let body = Body::Committed(CommitPayload {
                host: "fault-suite".into(),
                stats: stats(start, 50),
                thresholds: Vec::new(),
            });
            message(id, 4, body)
        })
        .collect();
    amqp_publish_all(&stack.exchange, &commits).await?;
    let q = "SELECT count(status) FROM loadtest_event WHERE status = 'committed'";
    eventually(Duration::from_secs(120), "1,000 committed runs", || {
        let db = db.clone();
        async move {
            let rows = influx_rows(&db, q).await?;
            let n = rows.first().and_then(|r| r["count"].as_u64()).unwrap_or(0);
            Ok((n == runs_n as u64).then_some(()))
        }
    })
    .await?;
    let counts = [("/", 50), ("/items", 50), ("Aggregated", 100)];
    let mut fig = RunFigures::default();
    for id in ids.iter().take(3) {
        fig += check_run(
            INFLUX,
            &db,
            &id.to_string(),
            "committed",
            interval,
            &counts,
            &[],
        )
        .await?;
    }
    eventually(Duration::from_secs(60), "the queue drained", || {
        let queue = queue.clone();
        async move { Ok((rabbit_queue_messages(None, &queue)? == 0).then_some(())) }
    })
    .await?;
    let dead = amqp_take_all(&conn, &format!("{}.dead", stack.exchange)).await?;
    assert!(dead.is_empty(), "dead-lettered: {dead:?}");
    report_row(
        "7. 1,000 concurrent runs",
        runs_n,
        &format!("prefetch 500; unacked deliveries peak {peak}, {steady_max} once taken in"),
        fig,
        0,
        dead.len(),
    );
    Ok(())
}
