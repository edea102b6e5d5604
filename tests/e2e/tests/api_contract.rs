//! The API's contract against the running services: keys and event tokens, idempotent register,
//! limits, OpenAPI (schemathesis), metrics, and no secret in any log. (RabbitMQ least privilege
//! and the broker's limits are in `broker_limits.rs`, on a private node.)

use std::time::Duration;

use kit::amqp::{AmqpSettings, Message, Publisher};
use lapin::options::BasicGetOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use loadtest_e2e::*;
use serde_json::{json, Value};

const REGISTER: &str = include_str!("../../../fixtures/original-register.json");
const STATS: &str = include_str!("../../../fixtures/stats-message.json");

struct Running {
    stack: Stack,
    api: String,
    db: String,
    writer: Proc,
    api_proc: Proc,
}

async fn start(name: &str) -> anyhow::Result<Running> {
    require_rabbitmq_and_influxdb();
    build_binaries()?;
    let stack = Stack::new(name);
    let db = stack.db();
    influx_create_db(&db).await?;
    let writer = stack.start_writer(
        &format!("writer-{name}"),
        &[
            ("LOADTEST__SINK__KIND", "v1".into()),
            ("LOADTEST__SINK__DATABASE", db.clone()),
        ],
    )?;
    let (api_proc, api) = stack.start_api()?;
    Ok(Running {
        stack,
        api,
        db,
        writer,
        api_proc,
    })
}

async fn register(
    client: &reqwest::Client,
    r: &Running,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    let resp = client
        .post(format!("{}/apiv0.1/events/register", r.api))
        .header("X-API-Key", &r.stack.api_key)
        .json(body)
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

fn stats_body(requests: u64) -> Value {
    let env: Value = serde_json::from_str(STATS).expect("fixture");
    let mut p = env["payload"].clone();
    p["entries"][0]["num_requests"] = requests.into();
    p["total"]["num_requests"] = requests.into();
    p
}

async fn post_stats(
    client: &reqwest::Client,
    api: &str,
    uuid: &str,
    token: &str,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    let resp = client
        .post(format!("{api}/apiv0.1/events/{uuid}/stats"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

/// Keys are required, tokens are scoped to their run (API: 401; straight on the queue: the
/// writer dead-letters it with the reason), and register is idempotent per run key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_tokens_and_idempotent_register() -> anyhow::Result<()> {
    let r = start("auth").await?;
    let client = reqwest::Client::new();
    let body: Value = serde_json::from_str(REGISTER)?;

    // No key, wrong key: 401 problem+json.
    let resp = client
        .post(format!("{}/apiv0.1/events/register", r.api))
        .json(&body)
        .send()
        .await?;
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let resp = client
        .post(format!("{}/apiv0.1/events/register", r.api))
        .bearer_auth("not-a-key")
        .json(&body)
        .send()
        .await?;
    assert_eq!(resp.status(), 401);

    let (s, a) = register(&client, &r, &body).await?;
    assert_eq!(s, 201);
    let (s, b) = register(&client, &r, &body).await?;
    assert_eq!(s, 201);
    assert_ne!(
        a["uuid"], b["uuid"],
        "without runKey every register is a new run"
    );
    let (a_id, a_tok) = (
        a["uuid"].as_str().unwrap_or_default(),
        a["token"].as_str().unwrap_or_default(),
    );
    let (b_id, b_tok) = (
        b["uuid"].as_str().unwrap_or_default(),
        b["token"].as_str().unwrap_or_default(),
    );

    // A's token cannot write to B, through the API.
    let (s, problem) = post_stats(&client, &r.api, b_id, a_tok, &stats_body(5)).await?;
    assert_eq!(s, 401, "{problem}");
    let (s, _) = post_stats(&client, &r.api, a_id, a_tok, &stats_body(5)).await?;
    assert_eq!(s, 202);
    let (s, _) = post_stats(&client, &r.api, b_id, b_tok, &stats_body(5)).await?;
    assert_eq!(s, 202);
    // A stats post to a run id that is not a uuid: 404.
    let (s, _) = post_stats(&client, &r.api, "not-a-uuid", a_tok, &stats_body(5)).await?;
    assert_eq!(s, 404);

    // …nor straight on the queue: the writer dead-letters it with the reason.
    let conn = Connection::connect(
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        ConnectionProperties::default(),
    )
    .await?;
    let ch = conn.create_channel().await?;
    let mut env: Value = serde_json::from_str(STATS)?;
    env["eventId"] = b_id.into();
    env["token"] = a_tok.into();
    env["nodeId"] = "intruder".into();
    let publisher = Publisher::new(&AmqpSettings::new(AMQP_URL, &r.stack.exchange), "e2e");
    publisher
        .publish("event.stats", env.to_string().as_bytes())
        .await?;
    publisher.close().await;
    let dead_queue = format!("{}.dead", r.stack.exchange);
    let dead = eventually(
        Duration::from_secs(15),
        "the forged message in the dead-letter queue",
        || {
            let ch = ch.clone();
            let q = dead_queue.clone();
            async move { Ok(ch.basic_get(&q, BasicGetOptions { no_ack: true }).await?) }
        },
    )
    .await?;
    let headers = dead
        .delivery
        .properties
        .headers()
        .clone()
        .unwrap_or_default();
    let reason = headers
        .inner()
        .get("x-loadtest-dead-reason")
        .map(|v| match v {
            AMQPValue::LongString(s) => s.to_string(),
            other => format!("{other:?}"),
        })
        .unwrap_or_default();
    assert!(reason.contains("token"), "reason: {reason:?}");
    let forged: Value = serde_json::from_slice(&dead.delivery.data)?;
    assert_eq!(forged["nodeId"], "intruder");

    // Idempotent register: five nodes with one runKey join one run (same uuid and token).
    let mut ids = Vec::new();
    for node in 0..5 {
        let mut b = body.clone();
        b["runKey"] = "nightly-42".into();
        b["nodeId"] = format!("node-{node}").into();
        b["expectedNodes"] = 5.into();
        let (s, v) = register(&client, &r, &b).await?;
        assert_eq!(s, 201, "{v}");
        ids.push((v["uuid"].clone(), v["token"].clone()));
    }
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    let (run_id, run_token) = (
        ids[0].0.as_str().unwrap_or_default().to_string(),
        ids[0].1.as_str().unwrap_or_default().to_string(),
    );
    // Each node commits its own final stats; the run's summary is their exact sum.
    let commit_tpl = include_str!("../../../fixtures/original-commit.json")
        .replace("REPLACE-WITH-UUID-FROM-REGISTER", &run_id);
    let mut expected = 0;
    for node in 0..5u64 {
        let mut c: Value = serde_json::from_str(&commit_tpl)?;
        c["nodeId"] = format!("node-{node}").into();
        let n = 100 + node * 7;
        c["measurement"]["fields"]["requestStats"][0]["num_requests"] = n.into();
        expected += n;
        let resp = client
            .post(format!("{}/apiv0.1/events/commit", r.api))
            .bearer_auth(&run_token)
            .json(&c)
            .send()
            .await?;
        assert_eq!(resp.status(), 202);
    }
    let q = format!("SELECT requests FROM loadtest_summary WHERE event_id = '{run_id}' AND \"name\" = 'Aggregated'");
    let rows = eventually(Duration::from_secs(20), "cluster summary", || async {
        let rows = influx_rows(&r.db, &q).await?;
        Ok((!rows.is_empty()).then_some(rows))
    })
    .await?;
    assert_eq!(rows[0]["requests"], expected);
    // A different API key gets a different run for the same runKey (keys are namespaces).
    assert_ne!(
        protocol::run_id_for_key(r.stack.secret.as_bytes(), "k1", "nightly-42"),
        protocol::run_id_for_key(r.stack.secret.as_bytes(), "k2", "nightly-42")
    );
    drop(conn);
    Ok(())
}

/// Every limit answers a 4xx problem+json naming the field, never a 5xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_answer_4xx_naming_the_field() -> anyhow::Result<()> {
    let r = start("limits").await?;
    let client = reqwest::Client::new();
    let body: Value = serde_json::from_str(REGISTER)?;
    let (_, reg) = register(&client, &r, &body).await?;
    let (uuid, token) = (
        reg["uuid"].as_str().unwrap_or_default().to_string(),
        reg["token"].as_str().unwrap_or_default().to_string(),
    );

    // Over 1 MiB: 413.
    let big = "x".repeat(1024 * 1024 + 10);
    let resp = client
        .post(format!("{}/apiv0.1/events/{uuid}/stats", r.api))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await?;
    assert_eq!(resp.status(), 413);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");

    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "long name",
            {
                let mut b = stats_body(1);
                b["entries"][0]["name"] = "n".repeat(1001).into();
                b
            },
            "entries[0].name",
        ),
        (
            "too many entries",
            {
                let mut b = stats_body(1);
                b["entries"] = Value::Array(vec![json!({"name": "/", "num_requests": 0}); 10_001]);
                b
            },
            "entries",
        ),
        (
            "negative count",
            {
                let mut b = stats_body(1);
                b["entries"][0]["num_failures"] = (-1).into();
                b
            },
            "entries[0].num_failures",
        ),
        (
            "negative time",
            {
                let mut b = stats_body(1);
                b["total"]["total_response_time"] = (-5.0).into();
                b
            },
            "total.total_response_time",
        ),
    ];
    for (what, body, field) in cases {
        let (s, problem) = post_stats(&client, &r.api, &uuid, &token, &body).await?;
        assert_eq!(s, 400, "{what}: {problem}");
        assert_eq!(problem["field"], field, "{what}: {problem}");
    }
    // Non-finite numbers cannot be written in JSON; the nearest thing, an overflowing literal.
    let raw = stats_body(1).to_string().replace(
        "\"total_response_time\":630.0",
        "\"total_response_time\":1e999",
    );
    assert!(raw.contains("1e999"));
    let resp = client
        .post(format!("{}/apiv0.1/events/{uuid}/stats", r.api))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await?;
    assert_eq!(resp.status(), 400);
    let problem: Value = resp.json().await?;
    assert!(
        problem["field"]
            .as_str()
            .unwrap_or_default()
            .contains("total_response_time"),
        "{problem}"
    );

    // A timestamp that does not parse.
    let mut b = body.clone();
    b["startedAt"] = "2026-02-30T25:00:00Z".into();
    let (s, problem) = register(&client, &r, &b).await?;
    assert_eq!(s, 400);
    assert_eq!(problem["field"], "startedAt");
    // Not JSON at all.
    let resp = client
        .post(format!("{}/apiv0.1/events/register", r.api))
        .header("X-API-Key", &r.stack.api_key)
        .body("{not json")
        .send()
        .await?;
    assert_eq!(resp.status(), 400);
    Ok(())
}

/// schemathesis, all checks, against the live API: no server error, no response that breaks the
/// schema, no other check failing, at least 500 generated cases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_all_checks_pass() -> anyhow::Result<()> {
    let r = start("schema").await?;
    let config =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemathesis/schemathesis.toml");
    let out = tokio::process::Command::new(python_tool("schemathesis"))
        .arg("--config-file")
        .arg(&config)
        .args([
            "run",
            &format!("{}/openapi.json", r.api),
            "--checks",
            "all",
            "--max-examples",
            "120",
            "--seed",
            "1",
        ])
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", r.stack.api_key))
        .env("NO_COLOR", "1")
        .output()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "running schemathesis ({e}); install it with `source .ci/services.sh && ensure_schemathesis`"
            )
        })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.contains(" generated, "))
        .unwrap_or_default()
        .trim()
        .to_string();
    println!("schemathesis: {line}");
    assert!(out.status.success(), "schemathesis failed:\n{text}");
    let generated: u64 = line
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(generated >= 500, "only {generated} cases:\n{text}");
    assert!(line.contains(&format!("{generated} passed")), "{line}");
    assert!(
        !r.api_proc.output().contains("internal error"),
        "the API logged an internal error"
    );
    Ok(())
}

/// `/metrics` on the API counts requests by route and status and times publishes; on the
/// writer it counts messages by kind and outcome, points written, write latency and runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text() -> anyhow::Result<()> {
    let mut r = start("metrics").await?;
    let client = reqwest::Client::new();
    let body: Value = serde_json::from_str(REGISTER)?;
    let (s, reg) = register(&client, &r, &body).await?;
    assert_eq!(s, 201);
    let resp = client
        .post(format!("{}/apiv0.1/events/register", r.api))
        .bearer_auth("wrong")
        .json(&body)
        .send()
        .await?;
    assert_eq!(resp.status(), 401);
    let text = client
        .get(format!("{}/metrics", r.api))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        text.contains("loadtest_api_http_requests_total{route=\"/apiv0.1/events/register\",method=\"POST\",status=\"201\"} 1"),
        "{text}"
    );
    assert!(text.contains("status=\"401\"} 1"), "{text}");
    assert!(
        text.contains("loadtest_api_publish_duration_seconds_bucket{kind=\"registered\""),
        "{text}"
    );

    let line = r
        .writer
        .wait_for_line("metrics listening", Duration::from_secs(10))?;
    let url = line
        .split('"')
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no metrics url in {line}"))
        .to_string();
    let (uuid, token) = (
        reg["uuid"].as_str().unwrap_or_default(),
        reg["token"].as_str().unwrap_or_default(),
    );
    let commit = include_str!("../../../fixtures/original-commit.json")
        .replace("REPLACE-WITH-UUID-FROM-REGISTER", uuid);
    let resp = client
        .post(format!("{}/apiv0.1/events/commit", r.api))
        .bearer_auth(token)
        .body(commit)
        .send()
        .await?;
    assert_eq!(resp.status(), 202);
    let text = eventually(
        Duration::from_secs(15),
        "writer metrics after the commit",
        || {
            let client = client.clone();
            let url = url.clone();
            async move {
                let text = client.get(&url).send().await?.text().await?;
                let committed = text.lines().any(|l| {
                    l.starts_with("loadtest_writer_messages_total")
                        && l.contains("kind=\"committed\"")
                        && l.contains("outcome=\"accepted\"")
                });
                // The counter moves when the commit arrives; the final write and the running
                // set follow a moment later.
                let written = text.contains("loadtest_writer_write_duration_seconds_bucket")
                    && text.contains("loadtest_writer_runs_running 0");
                Ok((committed && written).then_some(text))
            }
        },
    )
    .await?;
    for needle in [
        "loadtest_writer_points_written_total",
        "loadtest_writer_write_duration_seconds_bucket",
        "loadtest_writer_runs_running 0",
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
    Ok(())
}

/// No secret ever appears in the services' logs: API key, event token, token secret, InfluxDB
/// token — through a full run with debug logging, auth failures and a failing InfluxDB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_logs() -> anyhow::Result<()> {
    require_rabbitmq_and_influxdb();
    build_binaries()?;
    let stack = Stack::new("secrets");
    let influx_token = format!("influx-token-{}", uuid::Uuid::new_v4().simple());
    let writer = stack.start_writer(
        "writer-secrets",
        &[
            ("RUST_LOG", "debug".into()),
            ("LOADTEST__SINK__KIND", "v2".into()),
            // InfluxDB 1.x has no v2 API: every write fails (404), and the failure is logged.
            ("LOADTEST__SINK__URL", INFLUX.into()),
            ("LOADTEST__SINK__TOKEN", influx_token.clone()),
        ],
    )?;
    let (api_proc, api) = stack.start_api()?;
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{api}/apiv0.1/events/register"))
        .bearer_auth(&stack.api_key)
        .body(REGISTER)
        .send()
        .await?;
    assert_eq!(resp.status(), 201);
    let v: Value = resp.json().await?;
    let token = v["token"].as_str().unwrap_or_default().to_string();
    let uuid = v["uuid"].as_str().unwrap_or_default().to_string();
    let (s, _) = post_stats(&client, &api, &uuid, &token, &stats_body(3)).await?;
    assert_eq!(s, 202);
    let bad = client
        .post(format!("{api}/apiv0.1/events/register"))
        .bearer_auth(format!("{}-wrong", stack.api_key))
        .body(REGISTER)
        .send()
        .await?;
    assert_eq!(bad.status(), 401);
    // Wait until the writer has tried (and failed) to write.
    let mut writer = writer;
    writer.wait_for_line("write failed; retrying", Duration::from_secs(20))?;
    let logs = format!("{}\n{}", api_proc.output(), writer.output());
    for (what, secret) in [
        ("API key", stack.api_key.as_str()),
        ("event token", token.as_str()),
        ("token secret", stack.secret.as_str()),
        ("InfluxDB token", influx_token.as_str()),
    ] {
        assert!(!logs.contains(secret), "the {what} appears in the logs");
    }
    assert!(
        logs.contains(&uuid),
        "the logs do mention the run (the check can fail)"
    );
    Ok(())
}

/// `loadtest-writer redrive` moves dead-lettered messages back, and the writer then records
/// them: here a register and a commit that sat in the dead-letter queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_moves_dead_letters_back() -> anyhow::Result<()> {
    let r = start("redrive").await?;
    let id = uuid::Uuid::new_v4();
    let token = protocol::event_token(r.stack.secret.as_bytes(), &id);
    let info: protocol::RunInfo = serde_json::from_value(json!({
        "startedAt": "2026-11-29T08:00:00Z", "host": "h", "clients": 1, "targetHost": "http://t",
        "mode": "single", "tool": "e2e"
    }))?;
    let mut entry = protocol::StatsEntry::new("GET", "/", 1_795_939_200.0);
    for _ in 0..37 {
        entry.log(12.0, 10, false, 1_795_939_201.0);
    }
    let stats = protocol::StatsPayload::from_entries(vec![entry], vec![], 1, "stopped");
    let register =
        protocol::Envelope::new(id, "n1", 0, token.clone(), protocol::Body::Registered(info));
    let commit = protocol::Envelope::new(
        id,
        "n1",
        1,
        token,
        protocol::Body::Committed(protocol::CommitPayload {
            host: "h".into(),
            stats,
            thresholds: Vec::new(),
        }),
    );
    let publisher = Publisher::new(&AmqpSettings::new(AMQP_URL, &r.stack.exchange), "e2e");
    let dlx = format!("{}.dlx", r.stack.exchange);
    for (env, key) in [
        (&register, "event.registered"),
        (&commit, "event.committed"),
    ] {
        let mut headers = FieldTable::default();
        headers.insert(
            "x-loadtest-dead-reason".into(),
            AMQPValue::LongString("test".into()),
        );
        headers.insert(
            "x-loadtest-routing-key".into(),
            AMQPValue::LongString(key.into()),
        );
        let body = env.to_json();
        publisher
            .send(
                Message::new(key, &body)
                    .exchange(&dlx)
                    .headers(headers)
                    .not_mandatory(),
            )
            .await?;
    }
    publisher.close().await;
    let out = tokio::process::Command::new(bin_dir().join("loadtest-writer"))
        .arg("redrive")
        .env("LOADTEST__AMQP__EXCHANGE", &r.stack.exchange)
        .env("LOADTEST__AMQP__QUEUE_EXPIRES_MS", "600000")
        .env("LOADTEST__AUTH__TOKEN_SECRET", &r.stack.secret)
        .env("LOADTEST__SINK__KIND", "file")
        .env(
            "LOADTEST__SINK__PATH",
            std::env::temp_dir().join("redrive-unused.lp"),
        )
        .env("LOADTEST__METRICS__LISTEN", "")
        .output()
        .await?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("moved 2 message(s)"), "{text}");
    let q = format!(
        "SELECT requests FROM loadtest_summary WHERE event_id = '{id}' AND \"name\" = 'Aggregated'"
    );
    let rows = eventually(
        Duration::from_secs(20),
        "the redriven run in InfluxDB",
        || async {
            let rows = influx_rows(&r.db, &q).await?;
            Ok((!rows.is_empty()).then_some(rows))
        },
    )
    .await?;
    assert_eq!(rows[0]["requests"], 37);
    Ok(())
}
