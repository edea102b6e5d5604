//! `loadtest-writer`: consumes load-test messages from RabbitMQ and writes them to InfluxDB.
//!
//! Layout:
//! - [`lifecycle`]: the run lifecycle as a pure state machine (messages and ticks in; points and
//!   acks out). Knows nothing of AMQP or InfluxDB.
//! - [`points`]: InfluxDB points and their line-protocol encoding.
//! - [`sink`]: InfluxDB v2, InfluxDB v1 and line-protocol file sinks behind one trait, with the
//!   retry policy.
//! - [`consumer`]: the AMQP edge (topology, consume loop, acks, dead-lettering, status).
//! - [`metrics`]: Prometheus metrics on `metrics.listen`.
//! - [`redrive`]: moves dead-lettered messages back (`loadtest-writer redrive`).
//! - [`embedded`]: lifecycle + sink in one process, for `loadgen --standalone`.
//! - [`settings`]: configuration (defaults, TOML file, environment).

pub mod consumer;
pub mod embedded;
pub mod lifecycle;
pub mod metrics;
pub mod points;
pub mod redrive;
pub mod settings;
pub mod sink;

use kit::settings::secret_from;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use crate::settings::Settings;
use crate::sink::{AnySink, InfluxV1Sink, InfluxV2Sink};

/// Builds the sink the settings name. Errors name the setting to fix.
pub fn build_sink(settings: &Settings) -> anyhow::Result<AnySink> {
    let s = &settings.sink;
    Ok(match s.kind.as_str() {
        "v2" => {
            let token = secret_from(&s.token, &s.token_file, "sink.token")?.ok_or_else(|| {
                anyhow::anyhow!("sink.token is required for the v2 sink (the default): set LOADTEST__SINK__TOKEN or sink.token_file, or pick another sink with LOADTEST__SINK__KIND=v1 (InfluxDB 1.x) or file")
            })?;
            AnySink::V2(InfluxV2Sink::new(&s.url, &s.org, &s.bucket, &token)?)
        }
        "v1" => AnySink::V1(InfluxV1Sink::new(
            &s.url,
            &s.database,
            s.retention_policy.clone(),
            s.username.clone(),
            s.password.clone(),
        )?),
        "file" => AnySink::file(&s.path)
            .map_err(|e| anyhow::anyhow!("opening sink.path {}: {e}", s.path.display()))?,
        other => anyhow::bail!("sink.kind must be v2, v1 or file, not {other:?}"),
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
    let worker = consumer::Worker {
        lifecycle: settings.lifecycle.to_settings()?,
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
    let result = consumer::run(worker, shutdown.clone()).await;
    shutdown.cancel();
    if let Some(m) = metrics {
        let _ = m.await;
    }
    result
}
