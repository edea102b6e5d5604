//! The broker's side of issue 12 and RabbitMQ least privilege, on a private RabbitMQ node
//! started with `infra/rabbitmq/rabbitmq.conf` and loaded with `infra/rabbitmq/definitions.json`
//! (the shared broker is never reconfigured): the users' permissions (the load generators' user
//! publishes stats and commits, nothing else), the maximum message size (a 50 MiB `event.stats`
//! is refused at the broker), the load generators' connection limit, the writer queue's length
//! limit with `reject-publish` (the publisher gets a nack, the API a 503 with `Retry-After`,
//! and nothing already queued is dropped), a `loadgen --amqp-url` run with its own user, and the
//! Slack notifier with its own (it may neither publish to `loadtest` nor consume the writer's
//! queue or the dead letters; it posts the run and dead-letters what the webhook refuses).
//!
//! Needs `rabbitmq-server` installed (the node is private) and InfluxDB 1.x on 127.0.0.1:8086.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lapin::options::{BasicConsumeOptions, BasicGetOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use loadtest_e2e::*;
use serde_json::Value;

const REGISTER: &str = include_str!("../../../fixtures/original-register.json");
const API: (&str, &str) = ("loadtest-api", "api-dev-password");
const WRITER: (&str, &str) = ("loadtest-writer", "writer-dev-password");
const LOADGEN: (&str, &str) = ("loadtest-loadgen", "loadgen-dev-password");
const NOTIFIER: (&str, &str) = ("loadtest-notifier", "notifier-dev-password");

fn infra(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../infra/rabbitmq")
        .join(file)
}

async fn connect(node: &RabbitNode, (user, password): (&str, &str)) -> anyhow::Result<Connection> {
    Ok(Connection::connect(
        &node.url_as(user, password, "loadtest"),
        ConnectionProperties::default(),
    )
    .await?)
}

/// Publishes `body` with `key` to the `loadtest` exchange as `user`, through the services' own
/// confirming publisher (its own connection, closed after): `Ok(true)` confirmed, `Ok(false)`
/// nacked, `Err` refused (the broker closed the channel; the error carries its reply text).
async fn publish(
    node: &RabbitNode,
    (user, password): (&str, &str),
    key: &str,
    body: &[u8],
) -> anyhow::Result<bool> {
    use kit::amqp::{AmqpSettings, Message, PublishError, Publisher};
    let settings = AmqpSettings::new(&node.url_as(user, password, "loadtest"), "loadtest");
    let publisher = Publisher::new(&settings, "broker-limits");
    let sent = publisher
        .send(Message::new(key, body).not_mandatory())
        .await;
    publisher.close().await;
    match sent {
        Ok(()) => Ok(true),
        Err(PublishError::Nacked) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn queue_messages(node: &RabbitNode, queue: &str) -> anyhow::Result<u64> {
    let out = node.ctl(&[
        "list_queues",
        "-p",
        "loadtest",
        "-q",
        "--no-table-headers",
        "name",
        "messages",
    ])?;
    out.lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(queue)).then(|| w.next().and_then(|n| n.parse().ok()))?
        })
        .ok_or_else(|| anyhow::anyhow!("queue {queue} not listed:\n{out}"))
}

fn refused(result: anyhow::Result<bool>) -> String {
    match result {
        Err(e) => format!("{e:#}"),
        Ok(ack) => panic!("expected the broker to refuse it, got a confirm (ack: {ack})"),
    }
}

/// The error of a `basic_consume` of `queue` by `conn` ("" when it was allowed).
async fn consume_error(conn: &Connection, queue: &str) -> anyhow::Result<String> {
    let ch = conn.create_channel().await?;
    let consumed = ch
        .basic_consume(
            queue,
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await;
    Ok(consumed.err().map(|e| e.to_string()).unwrap_or_default())
}

/// Takes the dead letter of run `uuid` out of `loadtest.dead` (others stay there); returns its
/// `x-loadtest-dead-reason`.
async fn take_dead_letter(conn: &Connection, uuid: &str) -> anyhow::Result<String> {
    eventually(Duration::from_secs(20), "the run's dead letter", || async {
        // Messages got and not acked go back to the queue when the channel closes.
        let ch = conn.create_channel().await?;
        let mut found = None;
        while let Some(m) = ch
            .basic_get("loadtest.dead", BasicGetOptions::default())
            .await?
        {
            if String::from_utf8_lossy(&m.delivery.data).contains(uuid) {
                let reason = m
                    .delivery
                    .properties
                    .headers()
                    .as_ref()
                    .and_then(|h| h.inner().get("x-loadtest-dead-reason").cloned());
                m.delivery.ack(Default::default()).await?;
                found = Some(match reason {
                    Some(AMQPValue::LongString(s)) => s.to_string(),
                    other => format!("{other:?}"),
                });
                break;
            }
        }
        let _ = ch.close(200, "done").await;
        Ok(found)
    })
    .await
}

/// Starts a service binary against the private node as `user`, exchange `loadtest`.
fn start_service(
    name: &str,
    bin: &str,
    node: &RabbitNode,
    (user, password): (&str, &str),
    env: &[(&'static str, String)],
) -> anyhow::Result<Proc> {
    let mut all = vec![
        (
            "LOADTEST__AMQP__URL",
            node.url_as(user, password, "loadtest"),
        ),
        ("LOADTEST__AMQP__EXCHANGE", "loadtest".to_string()),
    ];
    all.extend(env.iter().cloned());
    let args: &[&str] = if bin == "loadtest-api" {
        &["--listen", "127.0.0.1:0"]
    } else {
        &[]
    };
    Proc::start(name, bin, args, &all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_limits_and_least_privilege() -> anyhow::Result<()> {
    require_influxdb();
    build_binaries()?;
    // The shipped settings, but for loading definitions at boot from /etc/rabbitmq (the test
    // imports them from the repository below).
    let config: String = std::fs::read_to_string(infra("rabbitmq.conf"))?
        .lines()
        .filter(|l| !l.trim_start().starts_with("definitions."))
        .map(|l| format!("{l}\n"))
        .collect();
    let node = RabbitNode::start_with_config("limits", &config)?;
    node.import_definitions(&infra("definitions.json"))?;

    // The shipped limits are in force.
    let environment = node.ctl(&["environment"])?;
    assert!(
        environment.contains("{max_message_size,4194304}"),
        "max_message_size not set"
    );
    let policy = eventually(Duration::from_secs(20), "the writer queue's policy", || {
        let out = node.ctl(&[
            "list_queues",
            "-p",
            "loadtest",
            "-q",
            "--no-table-headers",
            "name",
            "policy",
        ]);
        async move {
            Ok(out?
                .lines()
                .find(|l| l.starts_with("loadtest.writer") && l.contains("loadtest-writer-limits"))
                .map(str::to_string))
        }
    })
    .await?;
    let policies = node.ctl(&["list_policies", "-p", "loadtest", "-q"])?;
    assert!(
        policies.contains("\"overflow\":\"reject-publish\"")
            && policies.contains("\"max-length\":100000")
            && policies.contains("\"max-length-bytes\":268435456"),
        "{policy}: {policies}"
    );
    let limits = node.ctl(&["list_user_limits", "--user", "loadtest-loadgen", "-q"])?;
    assert!(
        limits.contains("\"max-connections\":100") && limits.contains("\"max-channels\":200"),
        "{limits}"
    );

    // Least privilege: the loadgen user publishes stats and commits (loadgen --amqp-url sends
    // both), and may neither register nor consume; the writer may not register either.
    let loadgen = connect(&node, LOADGEN).await?;
    assert!(publish(&node, LOADGEN, "event.stats", b"{}").await?);
    assert!(publish(&node, LOADGEN, "event.committed", b"{}").await?);
    let err = refused(publish(&node, LOADGEN, "event.registered", b"{}").await);
    assert!(err.contains("ACCESS_REFUSED"), "{err}");
    let err = consume_error(&loadgen, "loadtest.writer").await?;
    assert!(err.contains("ACCESS_REFUSED"), "consume: {err:?}");
    let err = refused(publish(&node, WRITER, "event.registered", b"{}").await);
    assert!(err.contains("ACCESS_REFUSED"), "{err}");
    // The notifier may not publish to `loadtest` at all, nor read the writer's queue or the
    // dead letters.
    let notifier_conn = connect(&node, NOTIFIER).await?;
    let err = refused(publish(&node, NOTIFIER, "event.completed", b"{}").await);
    assert!(err.contains("ACCESS_REFUSED"), "notifier publishing: {err}");
    for queue in ["loadtest.writer", "loadtest.dead"] {
        let err = consume_error(&notifier_conn, queue).await?;
        assert!(
            err.contains("ACCESS_REFUSED"),
            "notifier consuming {queue}: {err:?}"
        );
    }

    // A 50 MiB `event.stats` from the loadgen user is refused at the broker: nothing reaches
    // the writer's queue.
    // (A quorum queue's count shows up in `list_queues` after a moment: wait for the two above.)
    eventually(Duration::from_secs(10), "the two messages counted", || {
        let n = queue_messages(&node, "loadtest.writer");
        async move { Ok((n? == 2).then_some(())) }
    })
    .await?;
    let huge = vec![b' '; 50 * 1024 * 1024];
    let huge_err = refused(publish(&node, LOADGEN, "event.stats", &huge).await);
    assert!(
        huge_err.contains("PRECONDITION_FAILED")
            && huge_err.contains("larger than configured max size"),
        "{huge_err}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(queue_messages(&node, "loadtest.writer")?, 2);
    drop(huge);
    node.ctl(&["purge_queue", "-p", "loadtest", "loadtest.writer"])?;

    // The loadgen user's connection limit (100) holds: its 100 connections work, one more is
    // refused.
    let mut conns = vec![loadgen];
    while conns.len() < 100 {
        conns.push(connect(&node, LOADGEN).await?);
    }
    let extra = connect(&node, LOADGEN).await;
    let err = extra
        .err()
        .map(|e| format!("{e:#}"))
        .expect("the 101st connection was accepted");
    assert!(err.contains("connection limit"), "{err}");
    drop(conns);

    // A loadgen run with its own user: stats and the commit straight to RabbitMQ, the API and
    // the writer with theirs; the run lands in InfluxDB.
    let secret = format!("s-{}", uuid::Uuid::new_v4());
    let temp_db = TempDb::create(format!(
        "e2e_limits_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ))
    .await?;
    let db = temp_db.0.clone();
    let mut writer = start_service(
        "writer-limits",
        "loadtest-writer",
        &node,
        WRITER,
        &[
            ("LOADTEST__AUTH__TOKEN_SECRET", secret.clone()),
            ("LOADTEST__SINK__KIND", "v1".into()),
            ("LOADTEST__SINK__DATABASE", db.clone()),
            ("LOADTEST__LIFECYCLE__SNAPSHOT_INTERVAL_S", "2".into()),
            ("LOADTEST__METRICS__LISTEN", "127.0.0.1:0".into()),
        ],
    )?;
    writer.wait_for_line("consuming", Duration::from_secs(30))?;
    // The notifier with its user, against a webhook that refuses every post for good (400).
    let slack = FakeSlack::start().await?;
    slack.always(Answer::status(400, "invalid_payload"));
    let mut notifier = start_service(
        "notifier-limits",
        "loadtest-notifier",
        &node,
        NOTIFIER,
        &[
            ("LOADTEST__SLACK__WEBHOOK_URL", slack.url.clone()),
            ("LOADTEST__METRICS__LISTEN", "127.0.0.1:0".into()),
        ],
    )?;
    notifier.wait_for_line("consuming", Duration::from_secs(30))?;
    let env = [
        ("LOADTEST__AUTH__TOKEN_SECRET", secret.clone()),
        ("LOADTEST__AUTH__API_KEYS", "limits-key".to_string()),
    ];
    let mut api_proc = start_service("api-limits", "loadtest-api", &node, API, &env)?;
    let line = api_proc.wait_for_line("listening on http://", Duration::from_secs(30))?;
    let api = line
        .split("listening on ")
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_string();
    let target = start_target().await?;
    let mut lg = Proc::start(
        "loadgen-limits",
        "loadgen",
        &[
            "--host",
            &target.url,
            "-u",
            "1",
            "-r",
            "10",
            "-t",
            "4s",
            "--consumer-host",
            &api,
            "--api-key",
            "limits-key",
            "--amqp-url",
            &node.url_as(LOADGEN.0, LOADGEN.1, "loadtest"),
            "--amqp-exchange",
            "loadtest",
            "--stats-interval",
            "1s",
            "--only-summary",
        ],
        &[],
    )?;
    let exit = lg.wait(Duration::from_secs(90))?;
    let out = lg.output();
    assert!(
        exit.success(),
        "loadgen with the loadgen user failed:\n{out}"
    );
    let uuid = registered_run(&out).unwrap_or_else(|| panic!("no run id:\n{out}"));
    wait_status(INFLUX, &db, &uuid, "committed", Duration::from_secs(30)).await?;
    // The writer's event.completed reached the notifier's queue; the webhook refused the post
    // (400), so the notifier dead-lettered it, and the writer's user takes it back.
    eventually(Duration::from_secs(30), "the notifier's post", || async {
        Ok(slack
            .posts()
            .into_iter()
            .find(|p| p.body.to_string().contains(&uuid)))
    })
    .await?;
    let writer_conn = connect(&node, WRITER).await?;
    let reason = take_dead_letter(&writer_conn, &uuid).await?;
    assert!(reason.contains("400"), "dead-letter reason {reason:?}");
    notifier.terminate(Duration::from_secs(10))?;
    for (name, out) in [
        ("notifier", notifier.output()),
        ("writer", writer.output()),
        ("api", api_proc.output()),
    ] {
        assert!(!out.contains("ACCESS_REFUSED"), "{name}:\n{out}");
    }
    writer.child.kill()?;
    writer.wait(Duration::from_secs(10))?;

    // The writer's queue full (the same policy, lowered to 5 messages so the test fills it in
    // a moment): the broker nacks, the API answers 503 with Retry-After, and the queued
    // messages stay.
    node.ctl(&[
        "set_policy",
        "-p",
        "loadtest",
        "--apply-to",
        "queues",
        "loadtest-writer-limits",
        "^loadtest\\.writer$",
        r#"{"max-length":5,"max-length-bytes":268435456,"overflow":"reject-publish"}"#,
    ])?;
    node.ctl(&["purge_queue", "-p", "loadtest", "loadtest.writer"])?;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    let mut full = None;
    for _ in 0..10 {
        let resp = client
            .post(format!("{api}/apiv0.1/events/register"))
            .header("X-API-Key", "limits-key")
            .body(REGISTER)
            .send()
            .await?;
        let status = resp.status().as_u16();
        statuses.push(status);
        if status == 503 {
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body: Value = resp.json().await?;
            full = Some((retry_after, body));
            break;
        }
    }
    let (retry_after, body) = full.unwrap_or_else(|| panic!("no 503: {statuses:?}"));
    // A quorum queue checks its limit before it enqueues, so it may end one message over.
    let accepted = statuses.iter().filter(|s| **s == 201).count() as u64;
    assert!((5..=6).contains(&accepted), "{statuses:?}");
    assert!(retry_after.is_some(), "no Retry-After: {body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| d.contains("nack")),
        "{body}"
    );
    // Every accepted register is queued; the refused one is not: nothing silently dropped.
    eventually(
        Duration::from_secs(10),
        "the accepted registers counted",
        || {
            let n = queue_messages(&node, "loadtest.writer");
            async move { Ok((n? == accepted).then_some(())) }
        },
    )
    .await?;
    println!(
        "RELIABILITY | broker limits | 50 MiB event.stats from the loadgen user: refused ({}) | \
         loadgen user's 101st connection: refused ({}) | writer queue full: registers {statuses:?}, \
         the 503 says {:?}, Retry-After {retry_after:?}",
        huge_err.lines().next().unwrap_or_default(),
        err.lines().next().unwrap_or_default(),
        body["detail"].as_str().unwrap_or_default(),
    );
    Ok(())
}
