//! `pipeline_bench`: the pipeline's throughput against RabbitMQ's own, measured in one run on
//! the real RabbitMQ and InfluxDB 1.x (issue 14). `bench/pipeline.sh` builds it and the
//! services with `--release` and runs it; see `docs/performance.md`.
//!
//! - **ingest**: raw lapin publishing (confirms, persistent, `mandatory`) of the stats envelope
//!   the API would publish, to the writer's quorum queue, against `POST /apiv0.1/events/{uuid}/stats`
//!   on `loadtest-api` driven by a small HTTP/1.1 keep-alive client, both at `CONC` concurrent
//!   senders for `DURATION_S` seconds: messages/s.
//! - **consume**: the same prefilled queue (`CONSUME_RUNS` runs, 2 nodes, registers then
//!   cumulative stats, `CONSUME_MSGS` messages) consumed and acked one by one with lapin, against
//!   `loadtest-writer` consuming and folding it: messages/s.
//! - **scale**: for each of `SCALES` runs (2 nodes each, stats every `STATS_S` s, snapshots every
//!   `SNAPSHOT_S` s) fed straight to the exchange: per tick, the time from the tick until its
//!   last snapshot is in InfluxDB, the writer's resident memory and memory per running run, and
//!   the InfluxDB requests per tick.
//!
//! - **CPU per message** of each ingest and consume side: RabbitMQ's node (`beam.smp`), the API
//!   or the writer, and this driver, from `/proc/PID/stat` before and after the side.
//!
//! Rounds are interleaved (ingest and consume alternate which side goes first) and the closing
//! table has medians. Every round uses its own exchange (so its own queues and stream) and the
//! scale phases their own InfluxDB database; all are removed at the end, also on failure or
//! ctrl-c.

// A bench driver, not a test: the workspace's 100-line limit holds here too.
#![warn(clippy::too_many_lines)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kit::amqp::AmqpSettings;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use loadtest_e2e::{amqp_connect, free_port, influx_create_db, Proc, Stack, AMQP_URL, INFLUX};
use protocol::{event_token, routing, Body, Envelope, RunInfo, StatsEntry, StatsPayload};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

/// Bench settings, from the environment (defaults in brackets in `bench/pipeline.sh`).
struct Config {
    rounds: usize,
    conc: usize,
    duration: Duration,
    consume_runs: usize,
    consume_msgs: usize,
    scales: Vec<usize>,
    scale_ticks: usize,
    snapshot_s: u64,
    stats_s: u64,
    /// Which of `ingest`, `consume`, `scale` to run (all by default).
    phases: Vec<String>,
}

fn env_num<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Config {
    fn from_env() -> Self {
        let scales = std::env::var("SCALES")
            .unwrap_or_else(|_| "1000,10000".into())
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        Self {
            rounds: env_num("ROUNDS", 3),
            conc: env_num("CONC", 64),
            duration: Duration::from_secs(env_num("DURATION_S", 10)),
            consume_runs: env_num("CONSUME_RUNS", 500),
            consume_msgs: env_num("CONSUME_MSGS", 60_000),
            scales,
            scale_ticks: env_num("SCALE_TICKS", 3),
            snapshot_s: env_num("SNAPSHOT_S", 15),
            stats_s: env_num("STATS_S", 5),
            phases: std::env::var("PHASES")
                .unwrap_or_else(|_| "ingest,consume,scale".into())
                .split(',')
                .map(|s| s.trim().to_string())
                .collect(),
        }
    }
}

impl Config {
    fn phase(&self, name: &str) -> bool {
        self.phases.iter().any(|p| p == name)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cfg = Config::from_env();
    tokio::select! {
        r = run(&cfg) => r,
        _ = tokio::signal::ctrl_c() => bail!("interrupted; removing what the bench created"),
    }
}

async fn run(cfg: &Config) -> anyhow::Result<()> {
    let mut publish_raw = Vec::new();
    let mut publish_api = Vec::new();
    let mut consume_raw = Vec::new();
    let mut consume_writer = Vec::new();
    for round in 0..cfg.rounds {
        let raw_first = round % 2 == 0;
        if cfg.phase("ingest") {
            eprintln!("[bench] round {}: ingest", round + 1);
            let (raw, api) = ingest_round(cfg, raw_first).await?;
            eprintln!(
                "[bench]   raw publish {:.0} msg/s, API stats {:.0} msg/s",
                raw.rate, api.rate
            );
            publish_raw.push(raw);
            publish_api.push(api);
        }
        if cfg.phase("consume") {
            eprintln!("[bench] round {}: consume", round + 1);
            let (raw, writer) = consume_round(cfg, raw_first).await?;
            eprintln!(
                "[bench]   raw consume-and-ack {:.0} msg/s, writer {:.0} msg/s",
                raw.rate, writer.rate
            );
            consume_raw.push(raw);
            consume_writer.push(writer);
        }
    }
    let mut scale = Vec::new();
    for &runs in cfg.scales.iter().filter(|_| cfg.phase("scale")) {
        eprintln!("[bench] scale: {runs} runs");
        scale.push(scale_phase(cfg, runs).await?);
    }
    report(
        cfg,
        &publish_raw,
        &publish_api,
        &consume_raw,
        &consume_writer,
        &scale,
    );
    Ok(())
}

// ------------------------------------------------------------------------------------------
// CPU per message

/// One side of a round: messages/s, and CPU time per message of the broker, of the service on
/// the path (the API or the writer; none for the raw side) and of this bench driver.
#[derive(Debug, Clone, Copy, Default)]
struct Side {
    rate: f64,
    broker_us: f64,
    service_us: f64,
    bench_us: f64,
}

/// CPU seconds (user + system, every thread) process `pid` has used so far: fields 14 and 15
/// of `/proc/PID/stat`, in USER_HZ ticks (100 per second on Linux, `man 5 proc`). 0 when the
/// process is gone.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the name, field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    (ticks(11) + ticks(12)) / 100.0
}

/// The RabbitMQ node's process (`beam.smp`) on this machine, if it runs here.
fn broker_pid() -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == "beam.smp").then_some(pid)
    })
}

/// CPU seconds of the broker, the service (`service` pid) and this process at its start.
struct CpuMeter {
    broker: Option<u32>,
    service: Option<u32>,
    start: [f64; 3],
}

impl CpuMeter {
    fn start(service: Option<u32>) -> Self {
        let broker = broker_pid();
        let mut m = Self {
            broker,
            service,
            start: [0.0; 3],
        };
        m.start = m.now();
        m
    }

    fn now(&self) -> [f64; 3] {
        [
            self.broker.map_or(0.0, cpu_seconds),
            self.service.map_or(0.0, cpu_seconds),
            cpu_seconds(std::process::id()),
        ]
    }

    /// The side's figures: `msgs` messages in `secs` seconds since [`CpuMeter::start`].
    fn side(&self, msgs: f64, secs: f64) -> Side {
        let now = self.now();
        let per_msg = |i: usize| (now[i] - self.start[i]) * 1e6 / msgs.max(1.0);
        Side {
            rate: msgs / secs,
            broker_us: per_msg(0),
            service_us: per_msg(1),
            bench_us: per_msg(2),
        }
    }
}

// ------------------------------------------------------------------------------------------
// Messages

/// A node's cumulative stats after `k` reporting intervals: 3 endpoints with a few dozen
/// histogram buckets each, as a busy loadgen node sends them.
fn stats_payload(k: u64) -> StatsPayload {
    let start = 1_764_489_600.0;
    let mut entries = Vec::new();
    for (i, name) in ["/", "/items", "/items/{id}"].iter().enumerate() {
        let mut e = StatsEntry::new("GET", *name, start);
        for b in 0..30u64 {
            let ms = 1 + b * 3 + i as u64;
            let count = (k + 1) * (10 + b);
            e.num_requests += count;
            e.total_response_time += (ms * count) as f64;
            e.total_content_length += 512 * count;
            e.response_times.add(ms, count);
        }
        e.num_failures = k;
        e.min_response_time = Some(1.0);
        e.max_response_time = 100.0;
        e.last_request_timestamp = Some(start + k as f64 * 5.0);
        entries.push(e);
    }
    StatsPayload::from_entries(entries, Vec::new(), 50, "running")
}

fn run_info() -> RunInfo {
    RunInfo {
        started_at: chrono::Utc::now(),
        host: "bench".into(),
        clients: 100,
        hatch_rate: 10.0,
        requests: 0,
        target_host: "http://target.bench".into(),
        mode: "cluster".into(),
        tool: "bench".into(),
        expected_nodes: Some(2),
    }
}

/// The envelope of a message, as the API publishes it.
fn envelope(secret: &str, run: Uuid, node: &str, seq: u64, body: Body) -> Vec<u8> {
    let token = event_token(secret.as_bytes(), &run);
    Envelope::new(run, node, seq, token, body).to_json()
}

fn properties() -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_message_id(Uuid::new_v4().to_string().into())
        .with_app_id("pipeline-bench".into())
}

/// Publishes one message (persistent, `mandatory`) and waits for its confirm: an error unless
/// acked and routed.
async fn publish_confirmed(
    ch: &Channel,
    exchange: &str,
    key: &str,
    body: &[u8],
) -> anyhow::Result<()> {
    let confirm = ch
        .basic_publish(
            exchange,
            key,
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            body,
            properties(),
        )
        .await?
        .await?;
    if confirm.is_nack() {
        bail!("nacked");
    }
    if confirm.take_message().is_some() {
        bail!("returned (unroutable)");
    }
    Ok(())
}

/// Publishes `messages` with up to 1,000 confirms outstanding; fails on a nack or return.
async fn publish_many(
    ch: &Channel,
    exchange: &str,
    messages: impl IntoIterator<Item = (&'static str, Vec<u8>)>,
) -> anyhow::Result<()> {
    let mut pending = Vec::with_capacity(1000);
    for (key, body) in messages {
        let c = ch
            .basic_publish(
                exchange,
                key,
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &body,
                properties(),
            )
            .await?;
        pending.push(c);
        if pending.len() >= 1000 {
            settle(&mut pending).await?;
        }
    }
    settle(&mut pending).await
}

async fn settle(
    pending: &mut Vec<lapin::publisher_confirm::PublisherConfirm>,
) -> anyhow::Result<()> {
    for c in pending.drain(..) {
        let confirm = c.await?;
        if confirm.is_nack() || confirm.take_message().is_some() {
            bail!("a prefill message was nacked or returned");
        }
    }
    Ok(())
}

async fn confirm_channel(conn: &Connection) -> anyhow::Result<Channel> {
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    Ok(ch)
}

/// Declares the writer's topology for `stack` (as the writer does), so publishing is routed
/// before any writer runs.
async fn declare(conn: &Connection, stack: &Stack) -> anyhow::Result<()> {
    let ch = conn.create_channel().await?;
    let mut s = AmqpSettings::new(AMQP_URL, &stack.exchange);
    s.queue_expires_ms = Some(600_000);
    loadtest_writer::declare_topology(&ch, &s).await?;
    let _ = ch.close(200, "declared").await;
    Ok(())
}

async fn purge(conn: &Connection, queue: &str) -> anyhow::Result<()> {
    let ch = conn.create_channel().await?;
    ch.queue_purge(queue, QueuePurgeOptions::default()).await?;
    let _ = ch.close(200, "purged").await;
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Ingest: raw confirmed publish vs the API's stats endpoint

async fn ingest_round(cfg: &Config, raw_first: bool) -> anyhow::Result<(Side, Side)> {
    let stack = Stack::new("bench-ingest");
    let conn = amqp_connect(AMQP_URL).await?;
    declare(&conn, &stack).await?;
    let (mut api, url) = stack.start_api_with(&[
        ("LOADTEST__AUTH__EVENT_RATE_PER_RUN", "0".into()),
        ("LOADTEST__AUTH__REGISTER_RATE_PER_KEY", "0".into()),
        ("RUST_LOG", "warn".into()),
    ])?;
    let mut raw = Side::default();
    let mut via_api = Side::default();
    for side in if raw_first {
        [true, false]
    } else {
        [false, true]
    } {
        purge(&conn, &stack.queue()).await?;
        if side {
            raw = raw_publish(cfg, &conn, &stack).await?;
        } else {
            via_api = api_publish(cfg, &url, &stack, api.pid()).await?;
        }
    }
    purge(&conn, &stack.queue()).await?;
    let _ = api.terminate(Duration::from_secs(10));
    let _ = conn.close(200, "bench done").await;
    Ok((raw, via_api))
}

/// `CONC` tasks on one confirm-mode channel (as the API shares one), each publishing and
/// awaiting its confirm in a loop: confirmed messages/s.
async fn raw_publish(cfg: &Config, conn: &Connection, stack: &Stack) -> anyhow::Result<Side> {
    let ch = confirm_channel(conn).await?;
    let count = Arc::new(AtomicU64::new(0));
    let cpu = CpuMeter::start(None);
    let started = Instant::now();
    let deadline = started + cfg.duration;
    let mut tasks = Vec::new();
    for i in 0..cfg.conc {
        let run = Uuid::new_v4();
        let body = envelope(
            &stack.secret,
            run,
            &format!("node-{i}"),
            1,
            Body::Stats(stats_payload(1)),
        );
        let (ch, exchange, count) = (ch.clone(), stack.exchange.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                publish_confirmed(&ch, &exchange, routing::STATS, &body).await?;
                count.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    let side = cpu.side(count.load(Ordering::Relaxed) as f64, secs);
    let _ = ch.close(200, "done").await;
    Ok(side)
}

/// `CONC` keep-alive HTTP/1.1 connections, each posting a node's stats for its own run in a
/// loop: 202s per second.
async fn api_publish(cfg: &Config, url: &str, stack: &Stack, api: u32) -> anyhow::Result<Side> {
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let count = Arc::new(AtomicU64::new(0));
    let cpu = CpuMeter::start(Some(api));
    let started = Instant::now();
    let deadline = started + cfg.duration;
    let mut tasks = Vec::new();
    for i in 0..cfg.conc {
        let run = Uuid::new_v4();
        let token = event_token(stack.secret.as_bytes(), &run);
        let body = serde_json::to_vec(&protocol::api::StatsRequest::new(
            Some(format!("node-{i}")),
            Some(1),
            stats_payload(1),
        ))?;
        let head = format!(
            "POST /apiv0.1/events/{run}/stats HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(&body);
        let (addr, count) = (addr.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(&addr).await?;
            s.set_nodelay(true)?;
            let mut buf = Vec::with_capacity(4096);
            while Instant::now() < deadline {
                s.write_all(&request).await?;
                let status = read_response(&mut s, &mut buf).await?;
                if status != 202 {
                    bail!(
                        "the API answered {status}: {}",
                        String::from_utf8_lossy(&buf)
                    );
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(cpu.side(count.load(Ordering::Relaxed) as f64, secs))
}

/// Reads one HTTP/1.1 response (headers and a `Content-Length` body) into `buf`; returns its
/// status.
async fn read_response(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<u16> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("the API closed the connection");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).context("response head")?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status")?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("the API closed the connection mid-body");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(status)
}

// ------------------------------------------------------------------------------------------
// Consume: raw consume-and-ack vs the writer

/// The consume workload: per run, both nodes' registers, then cumulative stats in rounds over
/// every run, `msgs` messages in all.
fn consume_messages(secret: &str, runs: usize, msgs: usize) -> Vec<(&'static str, Vec<u8>)> {
    let ids: Vec<Uuid> = (0..runs).map(|_| Uuid::new_v4()).collect();
    let mut out = Vec::with_capacity(msgs);
    for id in &ids {
        for node in ["node-a", "node-b"] {
            out.push((
                routing::REGISTERED,
                envelope(secret, *id, node, 0, Body::Registered(run_info())),
            ));
        }
    }
    let mut seq = 1;
    while out.len() < msgs {
        let payload = stats_payload(seq);
        for id in &ids {
            for node in ["node-a", "node-b"] {
                if out.len() < msgs {
                    out.push((
                        routing::STATS,
                        envelope(secret, *id, node, seq, Body::Stats(payload.clone())),
                    ));
                }
            }
        }
        seq += 1;
    }
    out
}

async fn consume_round(cfg: &Config, raw_first: bool) -> anyhow::Result<(Side, Side)> {
    let mut raw = Side::default();
    let mut writer = Side::default();
    for side in if raw_first {
        [true, false]
    } else {
        [false, true]
    } {
        // A fresh namespace each: the writer's stream and runs start empty.
        let stack = Stack::new("bench-consume");
        let conn = amqp_connect(AMQP_URL).await?;
        declare(&conn, &stack).await?;
        let messages = consume_messages(&stack.secret, cfg.consume_runs, cfg.consume_msgs);
        let n = messages.len();
        let ch = confirm_channel(&conn).await?;
        publish_many(&ch, &stack.exchange, messages).await?;
        if side {
            raw = raw_consume(&conn, &stack, n).await?;
        } else {
            writer = writer_consume(&stack, n).await?;
        }
        let _ = conn.close(200, "bench done").await;
    }
    Ok((raw, writer))
}

/// The writer's default prefetch (`loadtest-writer`'s settings), which the raw consumer gets too.
const WRITER_PREFETCH: u16 = 20_000;

/// Consumes `n` messages with the writer's prefetch, acking each: messages/s from the consume.
async fn raw_consume(conn: &Connection, stack: &Stack, n: usize) -> anyhow::Result<Side> {
    use futures::StreamExt;
    let ch = conn.create_channel().await?;
    ch.basic_qos(WRITER_PREFETCH, BasicQosOptions::default())
        .await?;
    let cpu = CpuMeter::start(None);
    let started = Instant::now();
    let mut consumer = ch
        .basic_consume(
            &stack.queue(),
            "raw-bench",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut got = 0;
    while got < n {
        let d = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .context("raw consume stalled")?
            .context("consumer cancelled")??;
        ch.basic_ack(d.delivery_tag, BasicAckOptions::default())
            .await?;
        got += 1;
    }
    let side = cpu.side(n as f64, started.elapsed().as_secs_f64());
    let _ = ch.close(200, "done").await;
    Ok(side)
}

/// Starts the writer on the prefilled queue; messages/s from its consuming until it has folded
/// all `n` (its `loadtest_writer_messages_total{outcome="accepted"}`).
async fn writer_consume(stack: &Stack, n: usize) -> anyhow::Result<Side> {
    influx_create_db(&stack.db()).await?;
    let port = free_port()?;
    let mut env = writer_settings(stack, 15);
    env.push(("LOADTEST__METRICS__LISTEN", format!("127.0.0.1:{port}")));
    let mut writer = stack.start_writer("bench-writer", &env)?;
    let started = wait_log(&writer, "active consumer", Duration::from_secs(60)).await?;
    let cpu = CpuMeter::start(Some(writer.pid()));
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let http = reqwest::Client::new();
    loop {
        let text = http.get(&metrics).send().await?.text().await?;
        let accepted = metric_sum(
            &text,
            "loadtest_writer_messages_total",
            "outcome=\"accepted\"",
        );
        if accepted as usize >= n {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("the writer folded {accepted} of {n} messages in 120 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let side = cpu.side(n as f64, started.elapsed().as_secs_f64());
    let _ = writer.terminate(Duration::from_secs(10));
    Ok(side)
}

/// The writer's settings for the bench: v1 sink into the stack's database, snapshots every
/// `interval_s`, runs expire after 10 min.
fn writer_settings(stack: &Stack, interval_s: u64) -> Vec<(&'static str, String)> {
    vec![
        ("LOADTEST__SINK__KIND", "v1".into()),
        ("LOADTEST__SINK__URL", INFLUX.to_string()),
        ("LOADTEST__SINK__DATABASE", stack.db()),
        (
            "LOADTEST__LIFECYCLE__SNAPSHOT_INTERVAL_S",
            interval_s.to_string(),
        ),
        ("LOADTEST__LIFECYCLE__EXPIRE_AFTER_S", "600".into()),
        (
            "RUST_LOG",
            std::env::var("WRITER_LOG")
                .unwrap_or_else(|_| "warn,loadtest_writer::session=info".into()),
        ),
    ]
}

/// Waits (polling every 10 ms) for a log line containing `needle`; returns when it was seen.
async fn wait_log(p: &Proc, needle: &str, timeout: Duration) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        if p.output().contains(needle) {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            bail!("no {needle:?} within {timeout:?}:\n{}", p.output());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The sum of a Prometheus metric's samples whose labels contain `label` (`""`: all).
fn metric_sum(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

// ------------------------------------------------------------------------------------------
// Scale

/// What one scale phase measured.
struct Scale {
    runs: usize,
    /// Per tick: seconds from the tick until its last snapshot (`loadtest_snapshot` point) was
    /// in InfluxDB (`None`: not within the interval), how many of the runs' snapshots were there
    /// then, and seconds until its last request point was.
    ticks: Vec<(Option<f64>, usize, Option<f64>)>,
    /// InfluxDB write requests per tick (after the first measured tick).
    requests_per_tick: Vec<f64>,
    /// Writer RSS before any run, and at the last tick, KiB.
    rss_base_kib: u64,
    rss_kib: u64,
    /// Stats messages published per second (target: 2 × runs / stats_s).
    feed_rate: f64,
    /// InfluxDB alone: seconds to take a tick's points (4 per run) in 2 MiB gzip'd requests.
    influx_alone_s: f64,
}

/// InfluxDB's own speed for a tick of `runs` runs: a snapshot and 3 request points per run, as
/// the writer writes them, in requests of about 2 MiB, gzip'd, one after another. Seconds.
async fn influx_alone(db: &str, runs: usize) -> anyhow::Result<f64> {
    use std::io::Write;
    let at = loadtest_e2e::now_ns() / 1_000_000_000 * 1_000_000_000;
    let fields = "failures=3i,fail_per_s=0.1,requests=12345i,response_time_avg=12.5,response_time_max=100,response_time_min=1,response_time_p50=10,response_time_p90=40,response_time_p95=60,response_time_p99=90,response_time_p95_total=60,rps=100.5";
    let mut bodies = Vec::new();
    let mut body = String::new();
    for _ in 0..runs {
        let id = Uuid::new_v4();
        body.push_str(&format!("bench_probe_snapshot,event_id={id},mode=cluster,target_host=http://target.bench {fields},nodes=2i,user_count=100i {at}\n"));
        for name in ["/", "/items", "/items/{id}"] {
            body.push_str(&format!(
                "bench_probe_request,event_id={id},method=GET,name={name} {fields} {at}\n"
            ));
        }
        if body.len() >= 2 * 1024 * 1024 {
            bodies.push(std::mem::take(&mut body));
        }
    }
    if !body.is_empty() {
        bodies.push(body);
    }
    let http = reqwest::Client::new();
    let started = Instant::now();
    for b in bodies {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b.as_bytes())?;
        let resp = http
            .post(format!("{INFLUX}/write"))
            .query(&[("db", db), ("precision", "ns")])
            .header("Content-Encoding", "gzip")
            .body(gz.finish()?)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!(
                "InfluxDB answered {}: {}",
                resp.status(),
                resp.text().await?
            );
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

async fn scale_phase(cfg: &Config, runs: usize) -> anyhow::Result<Scale> {
    let stack = Stack::new("bench-scale");
    let conn = amqp_connect(AMQP_URL).await?;
    declare(&conn, &stack).await?;
    influx_create_db(&stack.db()).await?;
    let influx_alone_s = influx_alone(&stack.db(), runs).await?;
    eprintln!("[bench]   InfluxDB alone: a tick's points of {runs} runs in {influx_alone_s:.2} s");
    let port = free_port()?;
    let mut env = writer_settings(&stack, cfg.snapshot_s);
    env.push(("LOADTEST__METRICS__LISTEN", format!("127.0.0.1:{port}")));
    let writer = stack.start_writer("bench-scale-writer", &env)?;
    wait_log(&writer, "active consumer", Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_base_kib = writer.memory_kib("VmRSS")?;
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let http = reqwest::Client::new();

    // Registers, then the feed in the background.
    let ids: Vec<Uuid> = (0..runs).map(|_| Uuid::new_v4()).collect();
    let tokens: Vec<String> = ids
        .iter()
        .map(|id| event_token(stack.secret.as_bytes(), id))
        .collect();
    let ch = confirm_channel(&conn).await?;
    let registers = ids.iter().flat_map(|id| {
        ["node-a", "node-b"].map(|node| {
            (
                routing::REGISTERED,
                envelope(&stack.secret, *id, node, 0, Body::Registered(run_info())),
            )
        })
    });
    publish_many(&ch, &stack.exchange, registers).await?;
    let published = Arc::new(AtomicU64::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let feed = tokio::spawn(feed(
        ch.clone(),
        stack.exchange.clone(),
        ids.clone(),
        tokens,
        Duration::from_secs(cfg.stats_s),
        published.clone(),
        stop.clone(),
    ));
    let feed_started = Instant::now();

    // Skip the tick during which the feed started up, then measure.
    let interval = cfg.snapshot_s as i64 * 1_000_000_000;
    let now = loadtest_e2e::now_ns();
    let mut tick = (now / interval + 2) * interval;
    let mut ticks = Vec::new();
    let mut requests = Vec::new();
    let mut last_requests = None;
    let mut rss_kib = 0;
    for _ in 0..cfg.scale_ticks {
        sleep_until_ns(tick).await;
        let give_up = tick + interval - 1_000_000_000;
        let db = stack.db();
        let (latency, found) = until_count(&db, "loadtest_snapshot", tick, runs, give_up).await;
        // And the tick's request points (3 endpoints per run), written after every snapshot.
        let all_latency = match latency {
            Some(_) => {
                until_count(&db, "loadtest_request", tick, 3 * runs, give_up)
                    .await
                    .0
            }
            None => None,
        };
        let secs =
            |l: Option<f64>| l.map_or("(not within the interval)".into(), |s| format!("{s:.2} s"));
        eprintln!(
            "[bench]   tick {}: {found} of {runs} snapshots, after {}; every request point after {}",
            tick / 1_000_000_000,
            secs(latency),
            secs(all_latency)
        );
        ticks.push((latency, found, all_latency));
        // Requests and memory late in the interval, once the tick's writes are done.
        sleep_until_ns(give_up).await;
        let text = http.get(&metrics).send().await?.text().await?;
        let writes = metric_sum(&text, "loadtest_writer_write_duration_seconds_count", "");
        if let Some(last) = last_requests {
            requests.push(writes - last);
        }
        last_requests = Some(writes);
        rss_kib = writer.memory_kib("VmRSS")?;
        tick += interval;
    }
    stop.cancel();
    feed.await??;
    let feed_rate = published.load(Ordering::Relaxed) as f64 / feed_started.elapsed().as_secs_f64();
    drop(writer);
    let _ = conn.close(200, "bench done").await;
    Ok(Scale {
        runs,
        ticks,
        requests_per_tick: requests,
        rss_base_kib,
        rss_kib,
        feed_rate,
        influx_alone_s,
    })
}

/// Every `period`, each node of each run publishes its cumulative stats (seq k), paced evenly
/// over the period in 50 ms slices, until `stop`.
async fn feed(
    ch: Channel,
    exchange: String,
    ids: Vec<Uuid>,
    tokens: Vec<String>,
    period: Duration,
    published: Arc<AtomicU64>,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let slices = (period.as_millis() / 50).max(1) as usize;
    let mut k = 1u64;
    loop {
        let cycle = Instant::now();
        let payload = serde_json::to_string(&stats_payload(k))?;
        let sent_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let total = ids.len() * 2;
        let per_slice = total.div_ceil(slices);
        for slice in 0..slices {
            if stop.is_cancelled() {
                return Ok(());
            }
            let mut bodies = Vec::with_capacity(per_slice);
            for i in slice * per_slice..((slice + 1) * per_slice).min(total) {
                let (run, node) = (i / 2, if i % 2 == 0 { "node-a" } else { "node-b" });
                bodies.push((
                    routing::STATS,
                    format!(
                        r#"{{"schema":"loadtest.v1","kind":"stats","eventId":"{}","nodeId":"{node}","seq":{k},"sentAt":"{sent_at}","token":"{}","payload":{payload}}}"#,
                        ids[run], tokens[run]
                    )
                    .into_bytes(),
                ));
            }
            let n = bodies.len() as u64;
            publish_many(&ch, &exchange, bodies).await?;
            published.fetch_add(n, Ordering::Relaxed);
            tokio::time::sleep_until(
                (cycle + period.mul_f64((slice + 1) as f64 / slices as f64)).into(),
            )
            .await;
        }
        k += 1;
    }
}

async fn sleep_until_ns(at: i64) {
    let wait = at - loadtest_e2e::now_ns();
    if wait > 0 {
        tokio::time::sleep(Duration::from_nanos(wait as u64)).await;
    }
}

/// Snapshots of aligned time `at` (ns) in `db`.
/// Polls (every 100 ms, until `give_up`, Unix ns) until `want` points of `measurement` at
/// `tick` are in InfluxDB: the seconds from the tick until then (`None` when not by
/// `give_up`), and the count last seen.
async fn until_count(
    db: &str,
    measurement: &str,
    tick: i64,
    want: usize,
    give_up: i64,
) -> (Option<f64>, usize) {
    let mut found = 0;
    while loadtest_e2e::now_ns() < give_up {
        found = point_count(db, measurement, tick).await.unwrap_or(0);
        if found >= want {
            return (Some((loadtest_e2e::now_ns() - tick) as f64 / 1e9), found);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (None, found)
}

/// Points of `measurement` at time `at` (each has a `requests` field).
async fn point_count(db: &str, measurement: &str, at: i64) -> anyhow::Result<usize> {
    let v = loadtest_e2e::influx_query(
        db,
        &format!("SELECT count(\"requests\") FROM \"{measurement}\" WHERE time = {at}"),
    )
    .await?;
    Ok(v["results"][0]["series"][0]["values"][0][1]
        .as_u64()
        .unwrap_or(0) as usize)
}

// ------------------------------------------------------------------------------------------
// Report

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn list(v: &[f64]) -> String {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s.iter()
        .map(|x| format!("{x:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The median of one figure of `sides`.
fn median_of(sides: &[Side], figure: impl Fn(&Side) -> f64) -> f64 {
    median(&sides.iter().map(figure).collect::<Vec<_>>())
}

#[allow(clippy::too_many_lines)] // TODO(issue 22): split
fn report(
    cfg: &Config,
    publish_raw: &[Side],
    publish_api: &[Side],
    consume_raw: &[Side],
    consume_writer: &[Side],
    scale: &[Scale],
) {
    let rates = |v: &[Side]| v.iter().map(|s| s.rate).collect::<Vec<_>>();
    let (publish_raw_rates, publish_api_rates) = (rates(publish_raw), rates(publish_api));
    let (consume_raw_rates, consume_writer_rates) = (rates(consume_raw), rates(consume_writer));
    let (pr, pa) = (median(&publish_raw_rates), median(&publish_api_rates));
    let (cr, cw) = (median(&consume_raw_rates), median(&consume_writer_rates));
    let ingest_ratio = pa / pr;
    let consume_ratio = cw / cr;
    println!(
        "\n## Throughput: medians of {} interleaved rounds ({} concurrent senders, {} s each; consume: {} messages of {} runs × 2 nodes)\n",
        cfg.rounds,
        cfg.conc,
        cfg.duration.as_secs(),
        cfg.consume_msgs,
        cfg.consume_runs
    );
    println!("| path | baseline msg/s | pipeline msg/s | ratio | rounds (baseline; pipeline) |");
    println!("|---|---:|---:|---:|---|");
    println!(
        "| ingest: raw confirmed publish vs API stats | {pr:.0} | {pa:.0} | {ingest_ratio:.2}x | {}; {} |",
        list(&publish_raw_rates),
        list(&publish_api_rates)
    );
    println!(
        "| consume: raw consume-and-ack vs writer | {cr:.0} | {cw:.0} | {consume_ratio:.2}x | {}; {} |",
        list(&consume_raw_rates),
        list(&consume_writer_rates)
    );
    println!(
        "\n## CPU per message (µs, medians; /proc/PID/stat): where the two sides' time goes\n"
    );
    println!("| path | side | broker | API or writer | bench driver | all three |");
    println!("|---|---|---:|---:|---:|---:|");
    for (path, sides) in [
        (
            "ingest",
            [("raw publish", publish_raw), ("API", publish_api)],
        ),
        (
            "consume",
            [("raw consume", consume_raw), ("writer", consume_writer)],
        ),
    ] {
        for (side, v) in sides {
            let (b, s, d) = (
                median_of(v, |s| s.broker_us),
                median_of(v, |s| s.service_us),
                median_of(v, |s| s.bench_us),
            );
            println!(
                "| {path} | {side} | {b:.1} | {s:.1} | {d:.1} | {:.1} |",
                b + s + d
            );
        }
    }
    println!(
        "\n## Scale: 2 nodes per run, stats every {} s, snapshots every {} s\n",
        cfg.stats_s, cfg.snapshot_s
    );
    println!("| runs | stats msg/s fed | InfluxDB alone: a tick's points (s) | tick → last snapshot in InfluxDB (s, per tick) | tick → last request point (s, per tick) | InfluxDB requests per tick | writer RSS (MiB) | memory per run (KB) |");
    println!("|---:|---:|---:|---|---|---|---:|---:|");
    let mut slowest_10k: Option<Option<f64>> = None;
    let mut per_run_10k = None;
    for s in scale {
        let ticks: Vec<String> = s
            .ticks
            .iter()
            .map(|(l, found, _)| match l {
                Some(l) => format!("{l:.2}"),
                None => format!("> interval ({found} of {})", s.runs),
            })
            .collect();
        let all: Vec<String> = s
            .ticks
            .iter()
            .map(|(_, _, a)| a.map_or("> interval".into(), |a| format!("{a:.2}")))
            .collect();
        let per_run =
            (s.rss_kib.saturating_sub(s.rss_base_kib)) as f64 * 1024.0 / s.runs as f64 / 1000.0;
        println!(
            "| {} | {:.0} | {:.2} | {} | {} | {} | {:.1} | {per_run:.1} |",
            s.runs,
            s.feed_rate,
            s.influx_alone_s,
            ticks.join(", "),
            all.join(", "),
            s.requests_per_tick
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", "),
            s.rss_kib as f64 / 1024.0,
        );
        if s.runs == 10_000 {
            slowest_10k = Some(
                s.ticks
                    .iter()
                    .try_fold(0.0f64, |m, (l, _, _)| l.map(|l| m.max(l))),
            );
            per_run_10k = Some(per_run);
        }
    }
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    println!("\nAcceptance:");
    println!(
        "- {}: API stats ingest {ingest_ratio:.2}x >= 0.7x raw confirmed publish",
        verdict(ingest_ratio >= 0.7)
    );
    println!(
        "- {}: writer consumption {consume_ratio:.2}x >= 0.9x raw consume-and-ack",
        verdict(consume_ratio >= 0.9)
    );
    match slowest_10k {
        Some(Some(l)) => println!(
            "- {}: 10,000 runs: every snapshot of a tick in InfluxDB within {l:.2} s (<= 2 s)",
            verdict(l <= 2.0)
        ),
        Some(None) => println!(
            "- FAIL: 10,000 runs: a tick's snapshots were not all written within the interval"
        ),
        None => println!("- (10,000 runs not measured)"),
    }
    if let Some(p) = per_run_10k {
        println!(
            "- {}: 10,000 runs: writer memory {p:.1} KB per running run (<= 20 KB)",
            verdict(p <= 20.0)
        );
    }
}
