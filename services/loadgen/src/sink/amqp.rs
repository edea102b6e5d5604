//! `--amqp-url`: stats and the commit go straight to RabbitMQ instead of through the API.
//!
//! The run is still registered through the API (`--consumer-host`), which hands out the run's
//! uuid and event token; the envelopes (`loadtest.v1`, see `protocol::Envelope`) carry that
//! token, and the writer verifies it as it does for the API's messages. Every publish is
//! persistent, `mandatory`, on a confirm-mode channel, and waits for the broker's confirm; a
//! nack, a returned (unroutable) message or a timeout is an error. A failed publish drops the
//! channel and connection, and the next attempt reconnects (with heartbeats), retrying with
//! capped backoff until the retry budget is spent. Never InfluxDB: loadgen holds no database
//! credentials.

use std::time::Duration;

use anyhow::Context as _;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use protocol::Envelope;
use tokio::time::Instant;

/// How long a publisher confirm may take.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// First retry delay.
const BACKOFF_START: Duration = Duration::from_millis(500);
/// Longest delay between retries.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A confirm-mode publisher to the pipeline's topic exchange.
pub struct AmqpPublisher {
    url: String,
    exchange: String,
    retry_budget: Duration,
    conn: Option<Connection>,
    channel: Option<Channel>,
}

impl std::fmt::Debug for AmqpPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry credentials: not printed.
        f.debug_struct("AmqpPublisher")
            .field("exchange", &self.exchange)
            .field("connected", &self.channel.is_some())
            .finish_non_exhaustive()
    }
}

/// `url` with a 30 s heartbeat unless it sets one.
fn with_heartbeat(url: &str) -> String {
    if url.contains("heartbeat=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&heartbeat=30")
    } else {
        format!("{url}?heartbeat=30")
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

impl AmqpPublisher {
    /// A publisher to `exchange` at `url` (`amqp://user:pass@host:5672/%2f`); connects now,
    /// so a wrong URL fails before the load starts.
    pub async fn connect(url: &str, exchange: &str) -> anyhow::Result<Self> {
        let mut p = Self {
            url: with_heartbeat(url),
            exchange: exchange.to_string(),
            retry_budget: Duration::from_secs(60),
            conn: None,
            channel: None,
        };
        p.channel()
            .await
            .with_context(|| format!("cannot connect to RabbitMQ at {}", redact(url)))?;
        Ok(p)
    }

    async fn channel(&mut self) -> anyhow::Result<Channel> {
        if let Some(ch) = &self.channel {
            if ch.status().connected() {
                return Ok(ch.clone());
            }
        }
        self.channel = None;
        if let Some(c) = self.conn.take() {
            let _ = c.close(200, "reconnecting").await;
        }
        let conn = Connection::connect(
            &self.url,
            ConnectionProperties::default().with_connection_name("loadgen".into()),
        )
        .await?;
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        self.conn = Some(conn);
        self.channel = Some(ch.clone());
        Ok(ch)
    }

    async fn try_publish(&mut self, env: &Envelope) -> anyhow::Result<()> {
        let ch = self.channel().await?;
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_message_id(uuid::Uuid::new_v4().to_string().into())
            .with_app_id("loadgen".into());
        let routing_key = env.body.routing_key();
        let confirm = ch
            .basic_publish(
                &self.exchange,
                routing_key,
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &env.to_json(),
                props,
            )
            .await?;
        let confirmation = tokio::time::timeout(CONFIRM_TIMEOUT, confirm)
            .await
            .map_err(|_| anyhow::anyhow!("publisher confirm timed out"))??;
        if confirmation.is_nack() {
            anyhow::bail!("the broker nacked the message");
        }
        if confirmation.take_message().is_some() {
            anyhow::bail!(
                "the message was returned unroutable: no queue is bound to exchange {:?} for {routing_key} (is the writer running with this exchange?)",
                self.exchange
            );
        }
        Ok(())
    }

    /// Publishes `env` with its routing key and waits for the confirm, reconnecting and
    /// retrying (0.5 s doubling to 5 s) for up to the retry budget (60 s).
    pub async fn publish(&mut self, env: &Envelope) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut delay = BACKOFF_START;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            match self.try_publish(env).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.channel = None;
                    if started.elapsed() + delay > self.retry_budget {
                        return Err(e.context(format!(
                            "publishing {} to RabbitMQ failed after {attempts} attempts",
                            env.body.kind()
                        )));
                    }
                    tracing::warn!(kind = env.body.kind(), attempt = attempts, error = %e, retry_in = ?delay, "AMQP publish failed, retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Closes the connection.
    pub async fn close(mut self) {
        self.channel = None;
        if let Some(c) = self.conn.take() {
            let _ = c.close(200, "done").await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            with_heartbeat("amqp://h:5672/%2f"),
            "amqp://h:5672/%2f?heartbeat=30"
        );
        assert_eq!(
            with_heartbeat("amqp://h/%2f?frame_max=1&heartbeat=5"),
            "amqp://h/%2f?frame_max=1&heartbeat=5"
        );
        assert_eq!(
            redact("amqp://guest:secret@h:5672/%2f"),
            "amqp://guest:***@h:5672/%2f"
        );
        assert_eq!(redact("amqp://h:5672"), "amqp://h:5672");
    }
}
