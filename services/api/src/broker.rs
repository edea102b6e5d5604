//! The API's broker edge: a publisher with publisher confirms over a pooled connection
//! (`deadpool-lapin`), and the subscription to the writer's running set.
//!
//! Publishing: one confirm-mode channel is shared by all requests (lapin channels take
//! concurrent publishes, each with its own confirm). Every publish is `mandatory`; a nack, a
//! returned (unroutable) message or a confirm timeout is an error the handler turns into 503
//! with `Retry-After`. After an error the channel is dropped and the next publish reconnects
//! through the pool, so the API recovers from a broker restart by itself.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use deadpool_lapin::{Manager, Pool};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, ConnectionProperties, ExchangeKind};
use protocol::RunningSet;
use secrecy::ExposeSecret;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::settings::AmqpSettings;

/// Why a publish failed. All of these mean "nothing was published; retry".
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No connection or channel.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The broker nacked the message.
    #[error("the broker nacked the message")]
    Nacked,
    /// No queue is bound for the routing key.
    #[error("no queue is bound for {0} (is a loadtest-writer running?)")]
    Unroutable(String),
    /// The confirm did not arrive in time.
    #[error("publisher confirm timed out")]
    Timeout,
}

/// Publishes envelopes to the topic exchange with confirms.
pub struct Publisher {
    pool: Pool,
    channel: Mutex<Option<Channel>>,
    exchange: String,
    confirm_timeout: Duration,
}

impl Publisher {
    /// A publisher for `settings` (connects lazily).
    pub fn new(settings: &AmqpSettings) -> anyhow::Result<Self> {
        let uri =
            protocol::amqp_url::with_heartbeat(settings.url.expose_secret(), settings.heartbeat_s);
        let manager = Manager::new(
            uri,
            ConnectionProperties::default().with_connection_name("loadtest-api".into()),
        );
        let pool = Pool::builder(manager)
            .max_size(2)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(5)))
            .runtime(deadpool_lapin::Runtime::Tokio1)
            .build()
            .map_err(|e| anyhow::anyhow!("building the AMQP pool: {e}"))?;
        Ok(Self {
            pool,
            channel: Mutex::new(None),
            exchange: settings.exchange.clone(),
            confirm_timeout: Duration::from_millis(settings.confirm_timeout_ms),
        })
    }

    /// The shared confirm-mode channel, (re)opened when needed.
    pub async fn channel(&self) -> Result<Channel, PublishError> {
        let mut guard = self.channel.lock().await;
        if let Some(ch) = guard.as_ref() {
            if ch.status().connected() {
                return Ok(ch.clone());
            }
        }
        *guard = None;
        let conn = self
            .pool
            .get()
            .await
            .map_err(|e| PublishError::Unavailable(e.to_string()))?;
        let ch = conn
            .create_channel()
            .await
            .map_err(|e| PublishError::Unavailable(e.to_string()))?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| PublishError::Unavailable(e.to_string()))?;
        ch.exchange_declare(
            &self.exchange,
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| PublishError::Unavailable(e.to_string()))?;
        *guard = Some(ch.clone());
        Ok(ch)
    }

    async fn reset(&self) {
        *self.channel.lock().await = None;
    }

    /// Publishes persistent JSON `body` with `routing_key` and waits for the confirm.
    pub async fn publish(&self, routing_key: &str, body: &[u8]) -> Result<(), PublishError> {
        let result = self.try_publish(routing_key, body).await;
        if matches!(
            result,
            Err(PublishError::Unavailable(_) | PublishError::Timeout)
        ) {
            self.reset().await;
        }
        result
    }

    async fn try_publish(&self, routing_key: &str, body: &[u8]) -> Result<(), PublishError> {
        let ch = self.channel().await?;
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_message_id(uuid::Uuid::new_v4().to_string().into())
            .with_app_id("loadtest-api".into());
        let confirm = ch
            .basic_publish(
                &self.exchange,
                routing_key,
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body,
                props,
            )
            .await
            .map_err(|e| PublishError::Unavailable(e.to_string()))?;
        let confirmation = tokio::time::timeout(self.confirm_timeout, confirm)
            .await
            .map_err(|_| PublishError::Timeout)?
            .map_err(|e| PublishError::Unavailable(e.to_string()))?;
        if confirmation.is_nack() {
            return Err(PublishError::Nacked);
        }
        if confirmation.take_message().is_some() {
            return Err(PublishError::Unroutable(routing_key.to_string()));
        }
        Ok(())
    }

    /// Whether the broker is reachable now.
    pub async fn ready(&self) -> bool {
        self.channel().await.is_ok()
    }
}

/// The latest running set received from the writer.
pub type SharedStatus = Arc<RwLock<RunningSet>>;

/// Follows the writer's status fanout (`<exchange>.status`) until `shutdown`, reconnecting with
/// backoff, and keeps the latest running set in `status`.
pub async fn follow_status(
    publisher: Arc<Publisher>,
    status_exchange: String,
    status: SharedStatus,
    shutdown: CancellationToken,
) {
    let mut delay = Duration::from_millis(500);
    loop {
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = follow_once(&publisher, &status_exchange, &status) => r,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "status subscription ended; reconnecting");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

async fn follow_once(
    publisher: &Publisher,
    exchange: &str,
    status: &SharedStatus,
) -> anyhow::Result<()> {
    let conn = publisher
        .pool
        .get()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let ch = conn.create_channel().await?;
    ch.exchange_declare(
        exchange,
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    let q = ch
        .queue_declare(
            "",
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    ch.queue_bind(
        q.name().as_str(),
        exchange,
        "",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    let mut consumer = ch
        .basic_consume(
            q.name().as_str(),
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    drop(conn);
    while let Some(d) = consumer.next().await {
        let d = d?;
        match serde_json::from_slice::<RunningSet>(&d.data) {
            Ok(set) => {
                if let Ok(mut s) = status.write() {
                    *s = set;
                }
            }
            Err(e) => tracing::warn!(error = %e, "ignoring an invalid status message"),
        }
        d.ack(BasicAckOptions::default()).await?;
    }
    anyhow::bail!("status consumer cancelled")
}
