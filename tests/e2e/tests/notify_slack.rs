//! `loadtest-notifier` as a process against the real RabbitMQ, with a local HTTP server standing
//! in for the Slack webhook.
//!
//! The first three tests drive real runs (loadgen → loadtest-api → RabbitMQ → loadtest-writer →
//! InfluxDB 1.x) and compare the posted message with what InfluxDB stored: a committed run, a
//! run with a failed threshold, an expired run. The others publish an `event.completed`
//! message themselves and script the webhook's answers: a 429 with `Retry-After: 1`, 500 until
//! the delivery limit, a 400, a 403 then redriven, an unreachable webhook, and no webhook at all.
//!
//! Needs RabbitMQ on 127.0.0.1:5672 and InfluxDB 1.x on 127.0.0.1:8086; `bash .ci/run` starts
//! them. Every test has its own exchange (and database); its [`Stack`]'s drop deletes the queues,
//! exchanges and database at the end, also when the test failed.

use std::time::Duration;

use chrono::Utc;
use loadtest_e2e::*;
use protocol::{Body, CompletedPayload, Envelope, Percentiles};
use serde_json::Value;

/// The Grafana base URL the notifier links to.
const GRAFANA: &str = "http://grafana.test:3000";

/// Notifier settings that keep the tests short: no pacing, short waits between attempts.
fn fast() -> Vec<(&'static str, String)> {
    vec![
        ("LOADTEST__SLACK__MIN_INTERVAL_MS", "0".into()),
        ("LOADTEST__SLACK__RETRY_FIRST_MS", "100".into()),
        ("LOADTEST__SLACK__RETRY_MAX_S", "0.3".into()),
        ("LOADTEST__DASHBOARD__GRAFANA_URL", GRAFANA.into()),
    ]
}

/// The header's text.
fn header(message: &Value) -> &str {
    message["blocks"][0]["text"]["text"]
        .as_str()
        .unwrap_or_default()
}

/// The block text that starts with `prefix`.
fn block_text(message: &Value, prefix: &str) -> String {
    slack_texts(message)
        .into_iter()
        .find(|t| t.starts_with(prefix))
        .unwrap_or_else(|| panic!("no block starting with {prefix:?} in {message:#}"))
}

/// The `actual` of a threshold line (`… actual 31.235 ms, limit 5 ms`).
fn actual_of(line: &str) -> f64 {
    line.split("actual ")
        .nth(1)
        .and_then(|r| r.split([',', ' ']).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no actual in {line:?}"))
}

/// The notifier's Prometheus text.
async fn metrics_text(notifier: &mut Proc) -> anyhow::Result<String> {
    let line = notifier.wait_for_line("metrics listening", Duration::from_secs(10))?;
    let url = line
        .split('"')
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no metrics url in {line}"))
        .to_string();
    Ok(reqwest::get(url).await?.text().await?)
}

/// Waits until the notifier's metrics have every one of `lines`.
async fn wait_metrics(notifier: &mut Proc, lines: &[&str]) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let text = metrics_text(notifier).await?;
        if lines.iter().all(|l| text.lines().any(|t| t == *l)) {
            return Ok(());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metrics lack one of {lines:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// An `event.completed` message of a made-up committed run, as the writer publishes it.
fn completed(run: uuid::Uuid) -> Vec<u8> {
    let payload = CompletedPayload {
        status: "committed".into(),
        duration_s: 12.5,
        requests: 100,
        failures: 1,
        nodes: 1,
        target_host: Some("http://target.test".into()),
        tool: Some("loadgen".into()),
        started_at: Some(Utc::now()),
        users: Some(2),
        rps: Some(8.0),
        failure_pct: Some(1.0),
        response_time_ms: Some(Percentiles {
            p50: 3.0,
            p95: 9.5,
            p99: 12.0,
        }),
        thresholds: Vec::new(),
    };
    Envelope::new(run, "writer", 0, String::new(), Body::Completed(payload)).to_json()
}

/// Waits for one message in the stack's dead-letter queue and takes it.
async fn one_dead_letter(conn: &lapin::Connection, stack: &Stack) -> anyhow::Result<DeadLetter> {
    let queue = format!("{}.dead", stack.exchange);
    let dead = eventually(Duration::from_secs(30), "a dead letter", || async {
        let got = amqp_take_all(conn, &queue).await?;
        Ok((!got.is_empty()).then_some(got))
    })
    .await?;
    assert_eq!(dead.len(), 1, "{dead:?}");
    Ok(dead.into_iter().next().unwrap_or_else(|| unreachable!()))
}

/// The end of every test: the webhook URL was never logged, the processes are stopped (then
/// the [`Stack`]'s drop removes its queues, exchanges and database).
fn finish(slack: &FakeSlack, procs: Vec<Proc>) -> anyhow::Result<()> {
    for p in &procs {
        let log = p.output();
        assert!(
            !log.contains(&slack.secret),
            "the webhook URL was logged:\n{log}"
        );
    }
    drop(procs);
    Ok(())
}

/// A committed run's message carries the values InfluxDB stored: the `Aggregated` summary's
/// requests, failures, failure %, requests/s and p50/p95/p99, the event's target, tool, users
/// and duration, the threshold verdict, and a link to the run's dashboard over its time range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_run_message_equals_the_stored_summary() -> anyhow::Result<()> {
    require_rabbitmq_and_influxdb();
    build_binaries()?;
    let stack = Stack::new("slack-ok");
    let db = stack.db();
    influx_create_db(&db).await?;
    let slack = FakeSlack::start().await?;
    let notifier = stack.start_notifier(&slack.url, &fast())?;
    let writer = stack.start_v1_writer("writer-slack-ok", &db, 2)?;
    let (api_proc, api) = stack.start_api()?;
    let target = start_slow_target(Duration::from_millis(5)).await?;
    let mut loadgen = Proc::start(
        "loadgen-slack-ok",
        "loadgen",
        &[
            "--host",
            &target.url,
            "-u",
            "2",
            "-r",
            "2",
            "-t",
            "8s",
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
            "--threshold",
            "p95<60000ms",
            "--only-summary",
        ],
        &[],
    )?;
    let exit = loadgen.wait(Duration::from_secs(60))?;
    let out = loadgen.output();
    assert!(exit.success(), "loadgen failed:\n{out}");
    let uuid = registered_run(&out).unwrap_or_else(|| panic!("no run id in:\n{out}"));

    let msg = slack
        .wait_message_for(&uuid, Duration::from_secs(60))
        .await?;
    println!("posted for the committed run:\n{msg:#}");
    let s = aggregated_summary(
        &db,
        &uuid,
        "requests, failures, rps, response_time_p50, response_time_p95, response_time_p99",
    )
    .await?;
    let f = |k: &str| s[k].as_f64().unwrap_or_else(|| panic!("{k} in {s:?}"));
    let (requests, failures) = (field_u64(&s, "requests"), field_u64(&s, "failures"));
    assert!(requests > 0 && failures > 0, "/fail fails: {s:?}");
    let event = influx_rows(
        &db,
        &format!("SELECT duration_s, clients, status, tool, target_host FROM loadtest_event WHERE event_id = '{uuid}'"),
    )
    .await?;
    assert_eq!(event.len(), 1, "{event:?}");
    let event = &event[0];
    assert_eq!(event["status"], "committed");
    let duration_s = event["duration_s"].as_f64().expect("duration_s");
    let start_ms = event["time"].as_i64().expect("time") / 1_000_000;

    assert_eq!(
        header(&msg),
        format!(":white_check_mark: Load test committed: {}", target.url)
    );
    let expected = [
        ("Target", target.url.clone()),
        ("Tool", "loadgen".to_string()),
        ("Duration", format!("{duration_s:.1} s")),
        ("Users", field_u64(event, "clients").to_string()),
        ("Requests", requests.to_string()),
        (
            "Failures",
            format!(
                "{failures} ({:.2} %)",
                failures as f64 * 100.0 / requests as f64
            ),
        ),
        ("Requests/s", format!("{:.1}", f("rps"))),
        (
            "Response time p50 / p95 / p99",
            format!(
                "{:.1} / {:.1} / {:.1} ms",
                f("response_time_p50"),
                f("response_time_p95"),
                f("response_time_p99")
            ),
        ),
        ("Nodes", "1".to_string()),
    ];
    for (name, value) in expected {
        assert_eq!(slack_field(&msg, name), value, "field {name} of {msg:#}");
    }
    assert_eq!(event["tool"], "loadgen");
    assert_eq!(event["target_host"], target.url.as_str());
    assert!(
        slack_field(&msg, "Started").contains(&format!("<!date^{}^", start_ms / 1000)),
        "{msg:#}"
    );

    // The verdict, as stored in loadtest_threshold.
    let thresholds = block_text(&msg, "*Thresholds:*");
    let lines: Vec<&str> = thresholds.lines().collect();
    assert_eq!(lines.len(), 2, "{thresholds}");
    assert_eq!(lines[0], "*Thresholds:* all 1 passed");
    assert!(
        lines[1].starts_with(":white_check_mark: `p95&lt;60000ms` actual ")
            && lines[1].ends_with(" ms, limit 60000 ms"),
        "{thresholds}"
    );
    let stored = influx_rows(
        &db,
        &format!("SELECT actual FROM loadtest_threshold WHERE event_id = '{uuid}'"),
    )
    .await?;
    let stored_actual = stored[0]["actual"].as_f64().expect("actual");
    assert!(
        (actual_of(lines[1]) - stored_actual).abs() <= 0.0005,
        "{stored:?} vs {thresholds}"
    );

    // The dashboard for this run, from its start to a minute past its end.
    let link = block_text(&msg, &format!("<{GRAFANA}/d/"));
    let to = start_ms + (duration_s * 1000.0).round() as i64 + 60_000;
    assert_eq!(
        link.replace("&amp;", "&"),
        format!("<{GRAFANA}/d/loadtest-run/load-test-run?var-run={uuid}&from={start_ms}&to={to}|Open this run in Grafana>")
    );
    let context = block_text(&msg, "Run `");
    assert_eq!(context, format!("Run `{uuid}` · committed"));
    let text = msg["text"].as_str().expect("fallback text");
    assert!(
        text.contains(&format!("{requests} requests"))
            && text.contains(", thresholds: all 1 passed.")
            && text.contains(&uuid),
        "{text}"
    );
    assert_eq!(slack.posts().len(), 1, "one message per run");
    finish(&slack, vec![notifier, writer, api_proc])
}

/// A run whose p95 threshold failed: the header says so, and the verdicts list the failed one
/// first with the value InfluxDB stored, then the one that held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_threshold_is_flagged() -> anyhow::Result<()> {
    require_rabbitmq_and_influxdb();
    build_binaries()?;
    let stack = Stack::new("slack-thr");
    let db = stack.db();
    influx_create_db(&db).await?;
    let slack = FakeSlack::start().await?;
    let notifier = stack.start_notifier(&slack.url, &fast())?;
    let writer = stack.start_v1_writer("writer-slack-thr", &db, 2)?;
    let (api_proc, api) = stack.start_api()?;
    let target = start_slow_target(Duration::from_millis(30)).await?;
    let mut loadgen = Proc::start(
        "loadgen-slack-thr",
        "loadgen",
        &[
            "--host",
            &target.url,
            "-u",
            "4",
            "-r",
            "100",
            "-n",
            "40",
            "--path",
            "/",
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
    assert_eq!(exit.code(), Some(1), "a failed threshold exits 1:\n{out}");
    let uuid = registered_run(&out).unwrap_or_else(|| panic!("no run id in:\n{out}"));

    let msg = slack
        .wait_message_for(&uuid, Duration::from_secs(60))
        .await?;
    assert_eq!(
        header(&msg),
        format!(
            ":x: Load test committed, 1 threshold failed: {}",
            target.url
        )
    );
    let s = aggregated_summary(&db, &uuid, "requests").await?;
    assert_eq!(
        slack_field(&msg, "Requests"),
        field_u64(&s, "requests").to_string()
    );
    assert_eq!(slack_field(&msg, "Requests"), "40");

    let thresholds = block_text(&msg, "*Thresholds:*");
    let lines: Vec<&str> = thresholds.lines().collect();
    assert_eq!(lines.len(), 3, "{thresholds}");
    assert_eq!(lines[0], "*Thresholds:* 1 of 2 failed");
    assert!(
        lines[1].starts_with(":x: `p95&lt;5ms` actual "),
        "{thresholds}"
    );
    assert!(lines[1].ends_with(" ms, limit 5 ms"), "{thresholds}");
    assert_eq!(
        lines[2],
        ":white_check_mark: `fail_ratio&lt;0.01` actual 0, limit 0.01"
    );
    let stored = influx_query(
        &db,
        &format!("SELECT actual FROM loadtest_threshold WHERE event_id = '{uuid}' AND threshold = 'p95<5ms'"),
    )
    .await?;
    let stored_actual = stored["results"][0]["series"][0]["values"][0][1]
        .as_f64()
        .unwrap_or_else(|| panic!("no stored verdict: {stored}"));
    assert!(stored_actual >= 5.0, "{stored}");
    assert!(
        (actual_of(lines[1]) - stored_actual).abs() <= 0.0005,
        "{stored} vs {thresholds}"
    );
    assert!(
        msg["text"]
            .as_str()
            .is_some_and(|t| t.contains("thresholds: 1 of 2 failed")),
        "{msg:#}"
    );
    finish(&slack, vec![notifier, writer, api_proc])
}

/// A load generator killed without committing: once the writer expires the run, the message
/// says so, with the totals of the final snapshot InfluxDB stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_run_is_notified() -> anyhow::Result<()> {
    require_rabbitmq_and_influxdb();
    build_binaries()?;
    let stack = Stack::new("slack-exp");
    let db = stack.db();
    influx_create_db(&db).await?;
    let slack = FakeSlack::start().await?;
    let notifier = stack.start_notifier(&slack.url, &fast())?;
    let writer = stack.start_writer("writer-slack-exp", &writer_env(INFLUX, &db, 2, 6))?;
    let (api_proc, api) = stack.start_api()?;
    let target = start_slow_target(Duration::from_millis(50)).await?;
    let mut run = LoadgenRun::start("loadgen-slack-exp", &stack, &api, &target.url, "120s", "1s")?;
    let uuid = run.registered()?.to_string();
    eventually(Duration::from_secs(30), "a snapshot with requests", || async {
        let rows = influx_rows(
            &db,
            &format!("SELECT requests FROM loadtest_snapshot WHERE event_id = '{uuid}' AND requests > 0"),
        )
        .await?;
        Ok((!rows.is_empty()).then_some(()))
    })
    .await?;
    run.proc.child.kill()?; // SIGKILL: no commit
    let _ = run.proc.child.wait();

    let msg = slack
        .wait_message_for(&uuid, Duration::from_secs(60))
        .await?;
    wait_status(INFLUX, &db, &uuid, "expired", Duration::from_secs(10)).await?;
    assert_eq!(
        header(&msg),
        format!(":warning: Load test expired: {}", target.url)
    );
    let last = influx_rows(
        &db,
        &format!("SELECT requests, failures, response_time_p95_total FROM loadtest_snapshot WHERE event_id = '{uuid}' ORDER BY time DESC LIMIT 1"),
    )
    .await?;
    let last = &last[0];
    assert_eq!(
        slack_field(&msg, "Requests"),
        field_u64(last, "requests").to_string()
    );
    let p95 = last["response_time_p95_total"].as_f64().expect("p95");
    let times = slack_field(&msg, "Response time p50 / p95 / p99");
    assert_eq!(
        times.split(" / ").nth(1),
        Some(format!("{p95:.1}").as_str()),
        "{times}"
    );
    assert_eq!(slack_field(&msg, "Tool"), "loadgen");
    assert_eq!(slack_field(&msg, "Users"), "1");
    let context = block_text(&msg, "Run `");
    assert!(
        context.starts_with(&format!("Run `{uuid}` · expired · no commit came")),
        "{context}"
    );
    finish(&slack, vec![notifier, writer, api_proc])
}

/// Slack answers 429 with `Retry-After: 1` once: the same message is posted again no sooner
/// than a second later, then acked; nothing is dead-lettered. Then SIGTERM stops the notifier
/// with exit code 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_post_is_retried_after_retry_after() -> anyhow::Result<()> {
    require_rabbitmq();
    build_binaries()?;
    let stack = Stack::new("slack-429");
    let slack = FakeSlack::start().await?;
    slack.then(vec![Answer::rate_limited("1")]);
    let mut notifier = stack.start_notifier(&slack.url, &fast())?;
    let conn = amqp_connect(AMQP_URL).await?;
    let run = uuid::Uuid::new_v4();
    let body = completed(run);
    amqp_publish(&stack.exchange, "event.completed", &body).await?;

    let posts = slack.wait_posts(2, Duration::from_secs(30)).await?;
    assert_eq!((posts[0].status, posts[1].status), (429, 200));
    let gap = posts[1].at - posts[0].at;
    assert!(
        gap >= Duration::from_secs(1),
        "retried after {gap:?}, before Retry-After"
    );
    assert_eq!(posts[0].body, posts[1].body, "the same message");
    assert!(posts[1].body.to_string().contains(&run.to_string()));
    wait_metrics(
        &mut notifier,
        &[
            "loadtest_notifier_retried_total{cause=\"rate_limited\"} 1",
            "loadtest_notifier_posted_total{status=\"committed\"} 1",
        ],
    )
    .await?;
    let queue = format!("{}.notify.slack", stack.exchange);
    assert_eq!(amqp_ready(&conn, &queue).await?, 0, "acked");
    let dead = amqp_take_all(&conn, &format!("{}.dead", stack.exchange)).await?;
    assert!(dead.is_empty(), "{dead:?}");
    assert_eq!(slack.posts().len(), 2);
    // SIGTERM stops it gracefully: exit 0, quickly.
    let status = notifier.terminate(Duration::from_secs(10))?;
    let log = notifier.output();
    assert!(status.success(), "{log}");
    assert!(log.contains("shutdown signal received"), "{log}");
    finish(&slack, vec![notifier])
}

/// Slack answers 500 to every post: with delivery limit 3 the message is posted 4 times (the
/// first delivery and 3 redeliveries), then it is in the dead-letter queue with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_webhook_is_dead_lettered_at_the_delivery_limit() -> anyhow::Result<()> {
    require_rabbitmq();
    build_binaries()?;
    let stack = Stack::new("slack-500");
    let slack = FakeSlack::start().await?;
    slack.always(Answer::status(500, "rollup_error"));
    let mut env = fast();
    env.push(("LOADTEST__AMQP__DELIVERY_LIMIT", "3".into()));
    let mut notifier = stack.start_notifier(&slack.url, &env)?;
    let conn = amqp_connect(AMQP_URL).await?;
    let body = completed(uuid::Uuid::new_v4());
    amqp_publish(&stack.exchange, "event.completed", &body).await?;

    let dead = one_dead_letter(&conn, &stack).await?;
    assert_eq!(dead.body, body, "the message as published");
    assert_eq!(
        dead.reason.as_deref(),
        Some("Slack still failing after 4 deliveries (delivery limit 3): Slack answered 500 Internal Server Error: rollup_error")
    );
    assert_eq!(slack.posts().len(), 4);
    assert!(slack.posts().iter().all(|p| p.status == 500));
    wait_metrics(
        &mut notifier,
        &[
            "loadtest_notifier_retried_total{cause=\"server_error\"} 3",
            "loadtest_notifier_dead_lettered_total{cause=\"delivery_limit\"} 1",
        ],
    )
    .await?;
    let queue = format!("{}.notify.slack", stack.exchange);
    assert_eq!(amqp_ready(&conn, &queue).await?, 0);
    assert_eq!(slack.posts().len(), 4, "no post after the dead letter");
    finish(&slack, vec![notifier])
}

/// Slack answers 400 `invalid_payload`: posting again cannot help, so the message is
/// dead-lettered after the first post, with Slack's answer as the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_message_is_dead_lettered_at_once() -> anyhow::Result<()> {
    require_rabbitmq();
    build_binaries()?;
    let stack = Stack::new("slack-400");
    let slack = FakeSlack::start().await?;
    slack.always(Answer::status(400, "invalid_payload"));
    let notifier = stack.start_notifier(&slack.url, &fast())?;
    let conn = amqp_connect(AMQP_URL).await?;
    let body = completed(uuid::Uuid::new_v4());
    amqp_publish(&stack.exchange, "event.completed", &body).await?;
    let dead = one_dead_letter(&conn, &stack).await?;
    assert_eq!(
        dead.reason.as_deref(),
        Some("Slack refused the message: Slack answered 400 Bad Request: invalid_payload")
    );
    assert_eq!(slack.posts().len(), 1);
    finish(&slack, vec![notifier])
}

/// A dead-lettered notification goes back to the notifier with `loadtest-writer redrive` once
/// Slack takes messages again (the README's recovery path), and is posted then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_posts_a_dead_letter_again() -> anyhow::Result<()> {
    require_rabbitmq();
    build_binaries()?;
    let stack = Stack::new("slack-redrive");
    let slack = FakeSlack::start().await?;
    slack.then(vec![Answer::status(403, "action_prohibited")]);
    let notifier = stack.start_notifier(&slack.url, &fast())?;
    let conn = amqp_connect(AMQP_URL).await?;
    let run = uuid::Uuid::new_v4();
    amqp_publish(&stack.exchange, "event.completed", &completed(run)).await?;
    let dead_queue = format!("{}.dead", stack.exchange);
    eventually(Duration::from_secs(30), "the dead letter", || async {
        Ok((amqp_ready(&conn, &dead_queue).await? == 1).then_some(()))
    })
    .await?;
    assert_eq!(slack.posts().len(), 1);

    let mut redrive = Proc::start(
        "redrive-slack",
        "loadtest-writer",
        &["redrive"],
        &[
            ("LOADTEST__AMQP__EXCHANGE", stack.exchange.clone()),
            ("LOADTEST__AMQP__QUEUE_EXPIRES_MS", "600000".into()),
            ("LOADTEST__AUTH__VERIFY_TOKENS", "false".into()),
        ],
    )?;
    let status = redrive.wait(Duration::from_secs(30))?;
    let out = redrive.output();
    assert!(status.success() && out.contains("moved 1 message"), "{out}");
    let msg = slack
        .wait_message_for(&run.to_string(), Duration::from_secs(30))
        .await?;
    assert!(header(&msg).starts_with(":white_check_mark: Load test committed"));
    assert_eq!(amqp_ready(&conn, &dead_queue).await?, 0);
    assert_eq!(slack.posts().len(), 2);
    finish(&slack, vec![notifier])
}

/// A webhook nothing answers: the connection errors are retried, then dead-lettered; neither
/// the reason nor the log shows the webhook URL (reqwest's errors carry it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_webhook_is_never_shown() -> anyhow::Result<()> {
    require_rabbitmq();
    build_binaries()?;
    let stack = Stack::new("slack-down");
    let slack = FakeSlack::start().await?;
    let secret = slack.secret.clone();
    let url = format!("http://127.0.0.1:{}/services/T0/B0/{secret}", free_port()?);
    let mut env = fast();
    env.push(("LOADTEST__AMQP__DELIVERY_LIMIT", "1".into()));
    let notifier = stack.start_notifier(&url, &env)?;
    let conn = amqp_connect(AMQP_URL).await?;
    amqp_publish(
        &stack.exchange,
        "event.completed",
        &completed(uuid::Uuid::new_v4()),
    )
    .await?;
    let dead = one_dead_letter(&conn, &stack).await?;
    let reason = dead.reason.unwrap_or_default();
    assert!(
        reason.starts_with("Slack still failing after 2 deliveries (delivery limit 1): posting to the Slack webhook failed"),
        "{reason}"
    );
    assert!(
        !reason.contains(&secret) && !reason.contains("/services/"),
        "{reason}"
    );
    finish(&slack, vec![notifier])
}

/// Without a webhook, notifications are off: the notifier says so, exits 0 and declares no
/// queue (so no message piles up for nobody).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_webhook_the_notifier_is_off() -> anyhow::Result<()> {
    require_rabbitmq();
    build_binaries()?;
    let stack = Stack::new("slack-off");
    let mut p = Proc::start(
        "notifier-off",
        "loadtest-notifier",
        &[],
        &[
            ("LOADTEST__AMQP__EXCHANGE", stack.exchange.clone()),
            ("LOADTEST__METRICS__LISTEN", "127.0.0.1:0".into()),
        ],
    )?;
    let status = p.wait(Duration::from_secs(20))?;
    let log = p.output();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("Slack notifications are off"), "{log}");
    let conn = amqp_connect(AMQP_URL).await?;
    let queue = format!("{}.notify.slack", stack.exchange);
    assert!(!amqp_queue_exists(&conn, &queue).await?, "{queue} declared");
    Ok(())
}
