//! The API's broker edge: the kit's confirming [`Publisher`] (every publish is `mandatory`; a
//! nack, a returned (unroutable) message or a confirm timeout is an error the handler turns into
//! 503 with `Retry-After`; after an error the next publish reconnects), and the subscription to
//! the writer's running set.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use kit::amqp::AmqpSettings;
use kit::backoff::{Backoff, SessionError};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ExchangeKind};
use protocol::RunningSet;
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

pub use kit::amqp::{PublishError, Publisher};

/// The latest running set received from the writer.
pub type SharedStatus = Arc<RwLock<RunningSet>>;

/// The AMQP frame size the API's connections ask for, bytes. lapin keeps two buffers of 32
/// frames per connection, and it fills them: with RabbitMQ's default `frame_max` (128 KiB)
/// that is 8 MiB resident per connection, 16 MiB for the API's two, more than the API itself
/// needs under a siege of 1,500 clients. With 16 KiB frames it is 1 MiB per connection; a
/// message (at most a 1 MiB body) is sent as more frames.
pub const FRAME_MAX: u32 = 16 * 1024;

/// `amqp` with `frame_max` set to [`FRAME_MAX`] in its URL, unless the URL sets one already.
pub fn with_frame_max(amqp: &AmqpSettings) -> AmqpSettings {
    let mut lean = amqp.clone();
    let url = amqp.url.expose_secret();
    if !url.contains("frame_max=") {
        let sep = if url.contains('?') { '&' } else { '?' };
        lean.url = SecretString::from(format!("{url}{sep}frame_max={FRAME_MAX}"));
    }
    lean
}

/// Follows the writer's status fanout (`<exchange>.status`) until `shutdown`, keeping the latest
/// running set in `status`. Reconnects with backoff (0.5 s doubling to 10 s), reset once a
/// subscription was consuming, so a broker restart costs the first delay again.
pub async fn follow_status(
    settings: AmqpSettings,
    status: SharedStatus,
    shutdown: CancellationToken,
) {
    let (settings, status, stop) = (&settings, &status, &shutdown);
    let backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    kit::backoff::reconnect("status subscription", backoff, stop, move || async move {
        tokio::select! {
            _ = stop.cancelled() => Ok(()),
            r = follow_once(settings, status) => r,
        }
    })
    .await;
}

async fn follow_once(settings: &AmqpSettings, status: &SharedStatus) -> Result<(), SessionError> {
    let conn = kit::amqp::connect(settings, "loadtest-api-status")
        .await
        .map_err(SessionError::before)?;
    let mut consumer = subscribe(&conn, &settings.status_exchange())
        .await
        .map_err(SessionError::before)?;
    while let Some(d) = consumer.next().await {
        let d = d.map_err(SessionError::after)?;
        match serde_json::from_slice::<RunningSet>(&d.data) {
            Ok(set) => {
                if let Ok(mut s) = status.write() {
                    *s = set;
                }
            }
            Err(e) => tracing::warn!(error = %e, "ignoring an invalid status message"),
        }
        d.ack(BasicAckOptions::default())
            .await
            .map_err(SessionError::after)?;
    }
    Err(SessionError::after(anyhow::anyhow!(
        "status consumer cancelled"
    )))
}

/// Declares the status fanout and a private queue bound to it, and consumes it.
async fn subscribe(conn: &Connection, exchange: &str) -> Result<lapin::Consumer, lapin::Error> {
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
    ch.basic_consume(
        q.name().as_str(),
        "",
        BasicConsumeOptions::default(),
        FieldTable::default(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_size_is_added_unless_the_url_has_one() {
        let url = |u: &str| {
            with_frame_max(&AmqpSettings::new(u, "x"))
                .url
                .expose_secret()
                .to_string()
        };
        assert_eq!(url("amqp://h/%2f"), "amqp://h/%2f?frame_max=16384");
        assert_eq!(
            url("amqp://h/%2f?heartbeat=5"),
            "amqp://h/%2f?heartbeat=5&frame_max=16384"
        );
        assert_eq!(
            url("amqp://h/%2f?frame_max=8192"),
            "amqp://h/%2f?frame_max=8192"
        );
    }
}
