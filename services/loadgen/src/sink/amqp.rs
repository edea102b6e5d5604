//! `--amqp-url`: stats and the commit go straight to RabbitMQ instead of through the API.
//!
//! The run is still registered through the API (`--consumer-host`), which hands out the run's
//! uuid and event token; the envelopes (`loadtest.v1`, see `protocol::Envelope`) carry that
//! token, and the writer verifies it as it does for the API's messages. Publishing is the kit's
//! confirming publisher (`kit::amqp::Publisher`): persistent, `mandatory`, awaiting the broker's
//! confirm; a nack, a returned (unroutable) message or a timeout is an error, and the next attempt
//! reconnects (with heartbeats). [`AmqpPublisher::publish`] retries with the kit's capped backoff
//! until the retry budget is spent. Never InfluxDB: loadgen holds no database credentials.

use std::time::Duration;

use anyhow::Context as _;
use kit::amqp::{AmqpSettings, Publisher};
use kit::backoff::Backoff;
use protocol::Envelope;
use tokio::time::Instant;

pub(crate) use kit::amqp::redact;

/// How long a publisher confirm may take.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// Heartbeat of loadgen's connection, seconds.
const HEARTBEAT_S: u16 = 30;
/// First retry delay.
const BACKOFF_START: Duration = Duration::from_millis(500);
/// Longest delay between retries.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A confirm-mode publisher to the pipeline's topic exchange, retrying within a budget.
#[derive(Debug)]
pub(crate) struct AmqpPublisher {
    publisher: Publisher,
    retry_budget: Duration,
}

impl AmqpPublisher {
    /// A publisher to `exchange` at `url` (`amqp://user:pass@host:5672/%2f`); connects now,
    /// so a wrong URL fails before the load starts.
    pub(crate) async fn connect(url: &str, exchange: &str) -> anyhow::Result<Self> {
        let settings = AmqpSettings {
            heartbeat_s: HEARTBEAT_S,
            confirm_timeout_ms: CONFIRM_TIMEOUT.as_millis() as u64,
            ..AmqpSettings::new(url, exchange)
        };
        let publisher = Publisher::new(&settings, "loadgen");
        publisher
            .connect()
            .await
            .with_context(|| format!("cannot connect to RabbitMQ at {}", redact(url)))?;
        Ok(Self {
            publisher,
            retry_budget: Duration::from_secs(60),
        })
    }

    /// Publishes `env` with its routing key and waits for the confirm, reconnecting and
    /// retrying (0.5 s doubling to 5 s, with jitter) for up to the retry budget (60 s).
    pub(crate) async fn publish(&mut self, env: &Envelope) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut backoff = Backoff::new(BACKOFF_START, BACKOFF_MAX);
        let body = env.to_json();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let e = match self.publisher.publish(env.body.routing_key(), &body).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let delay = backoff.next_delay();
            if started.elapsed() + delay > self.retry_budget {
                return Err(anyhow::Error::new(e).context(format!(
                    "publishing {} to RabbitMQ exchange {:?} failed after {attempts} attempts",
                    env.body.kind(),
                    self.publisher.exchange()
                )));
            }
            tracing::warn!(kind = env.body.kind(), attempt = attempts, error = %e, retry_in = ?delay, "AMQP publish failed, retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// Closes the connection.
    pub(crate) async fn close(self) {
        self.publisher.close().await;
    }
}
