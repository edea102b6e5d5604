//! `loadtest-writer`: consumes load-test messages from RabbitMQ and writes them to InfluxDB.
//!
//! The run lifecycle itself (a pure state machine: messages and ticks in; points and acks out),
//! the points' line-protocol encoding and the file sink live in the `loadtest-lifecycle` crate,
//! which `loadgen --standalone` uses too. This crate is its AMQP and InfluxDB edge.
//!
//! Layout:
//! - [`settings`]: configuration (defaults, TOML file, environment).
//! - `session` (private): a broker session: connect, declare the topology, take the leader
//!   lock, restore the runs, lead; reconnects with backoff.
//! - `lock` (private): the leader lock (an exclusive queue).
//! - `checkpoints` (private): the checkpoint stream: its messages, publishing them, restoring
//!   the runs from them.
//! - `policy` (private): the leader loop's rules as a state machine (events in, actions out:
//!   ack once checkpointed, dead-letter, checkpoint, write, status), unit-tested with paused
//!   time.
//! - `leader` (private): the leader loop, which executes the policy's actions against the
//!   broker and InfluxDB.
//! - [`sink`]: InfluxDB v2 and InfluxDB v1 sinks and the lifecycle's file sink behind
//!   [`AnySink`], with the retry policy.
//! - [`outbox`]: writing the runs' outboxes in batches.
//! - [`metrics`]: Prometheus metrics on `metrics.listen`.
//! - [`redrive`]: moves dead-lettered messages back (`loadtest-writer redrive`).

mod checkpoints;
mod leader;
mod lock;
pub mod metrics;
pub mod outbox;
mod policy;
pub mod redrive;
mod session;
pub mod settings;
pub mod sink;

/// Declares the writer's exchanges and queues (see the function's docs); the e2e harness
/// declares them before any writer runs.
pub use session::declare_topology;

use kit::settings::secret_from;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use crate::settings::{Settings, SinkKind};
use crate::sink::{AnySink, InfluxV1Sink, InfluxV2Sink};

/// Builds the sink the settings name. Errors name the setting to fix.
pub fn build_sink(settings: &Settings) -> anyhow::Result<AnySink> {
    let s = &settings.sink;
    Ok(match s.kind {
        SinkKind::V2 => {
            let token = secret_from(&s.token, &s.token_file, "sink.token")?.ok_or_else(|| {
                anyhow::anyhow!("sink.token is required for the v2 sink (the default): set LOADTEST__SINK__TOKEN or sink.token_file, or pick another sink with LOADTEST__SINK__KIND=v1 (InfluxDB 1.x) or file")
            })?;
            AnySink::V2(InfluxV2Sink::new(&s.url, &s.org, &s.bucket, &token)?)
        }
        SinkKind::V1 => AnySink::V1(
            InfluxV1Sink::new(
                &s.url,
                &s.database,
                s.retention_policy.clone(),
                s.username.clone(),
                s.password.clone(),
            )?
            .gzip(s.gzip),
        ),
        SinkKind::File => AnySink::file(&s.path)
            .map_err(|e| anyhow::anyhow!("opening sink.path {}: {e}", s.path.display()))?,
    })
}

/// Runs the writer until `shutdown` is cancelled.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let sink = build_sink(&settings)?;
    let token_secret = if settings.auth.verify_tokens {
        secret_from(
            &settings.auth.token_secret,
            &settings.auth.token_secret_file,
            "auth.token_secret",
        )?
    } else {
        None
    };
    if token_secret
        .as_ref()
        .is_some_and(|s| s.expose_secret().is_empty())
    {
        anyhow::bail!("auth.token_secret is empty");
    }
    let mut lifecycle = settings.lifecycle.to_settings()?;
    lifecycle.checkpoint_refresh = settings.checkpoint.refresh()?;
    lifecycle.backslashes = settings.sink.backslashes;
    let worker = session::Worker {
        lifecycle,
        checkpoint: settings.checkpoint.clone(),
        amqp: settings.amqp.clone(),
        sink,
        token_secret,
    };
    let metrics = settings
        .metrics
        .listen
        .clone()
        .filter(|l| !l.is_empty())
        .map(|listen| tokio::spawn(metrics::serve(listen, shutdown.clone())));
    let result = session::run(worker, shutdown.clone()).await;
    shutdown.cancel();
    if let Some(m) = metrics {
        let _ = m.await;
    }
    result
}
