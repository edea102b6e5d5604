//! The AMQP edge: the notifier's own queue, the consume loop, acks, retries and dead letters.
//!
//! The queue `<exchange>.notify.slack` is a durable quorum queue bound to `event.completed` on
//! the topic exchange, with `x-delivery-limit` and dead-lettering to `<exchange>.dlx`. It is the
//! notifier's alone, so the writer only publishes `event.completed` (confirmed, not mandatory)
//! and never waits for Slack: a slow or failing Slack fills this queue, nothing else. Its length
//! is bounded (`slack.max_queued`, overflow `drop-head`: the oldest are dead-lettered; never
//! `reject-publish`, which would nack the writer's publish).
//!
//! One message at a time (prefetch 1; Slack takes about one message per second per webhook):
//! - Slack answered 2xx: ack.
//! - Slack refused it for good (another 4xx), or it is not an `event.completed` message: publish
//!   it to `<exchange>.dlx` with the reason in `x-loadtest-dead-reason` (confirmed), then ack.
//! - 429, 5xx or no answer: nack with requeue, so RabbitMQ counts the delivery, and wait before
//!   the next post: `Retry-After` when Slack gave one (at most `max_retry_after_s`), else the
//!   kit's backoff (reset by the next success). The delivery that RabbitMQ would dead-letter
//!   after (`x-delivery-count` at the delivery limit) is dead-lettered by us instead, with the
//!   reason; should we die first, RabbitMQ dead-letters it itself (`x-death`).
//!
//! Dead letters carry `x-loadtest-routing-key: event.completed`, so `loadtest-writer redrive`
//! moves them back once Slack works again. On a broker error the session ends, the held
//! delivery goes back to the queue, and the notifier reconnects with the kit's backoff.

use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use kit::amqp::{AmqpSettings, Message, Publisher};
use kit::backoff::{Backoff, SessionError};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};
use protocol::{routing, Body, Envelope};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::message;
use crate::settings::SlackSettings;
use crate::slack::{PostError, Webhook};

/// The notifier's name in its queue (`<exchange>.notify.slack`) and connections.
pub const NOTIFIER: &str = "slack";

/// The header RabbitMQ sets on a quorum queue's redeliveries: deliveries so far, this one not
/// counted.
const DELIVERY_COUNT_HEADER: &str = "x-delivery-count";

/// Declares the topic exchange, the dead-letter exchange and queue, and the notifier's quorum
/// queue bound to `event.completed`, keeping at most `max_queued` messages (the oldest beyond
/// are dead-lettered). Idempotent.
///
/// # Errors
///
/// lapin's (a queue that exists with other arguments is `PRECONDITION_FAILED`).
pub async fn declare_topology(
    ch: &Channel,
    s: &AmqpSettings,
    max_queued: u32,
) -> Result<(), lapin::Error> {
    ch.exchange_declare(
        &s.exchange,
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    kit::amqp::declare_dead_letters(ch, s).await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(i64::from(s.delivery_limit)),
    );
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(s.dlx().into()),
    );
    args.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(i64::from(max_queued)),
    );
    // Drop (dead-letter) the oldest, never refuse the writer's publish.
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("drop-head".into()),
    );
    if let Some(ms) = s.queue_expires_ms {
        args.insert("x-expires".into(), AMQPValue::LongLongInt(ms as i64));
    }
    let queue = s.notify_queue(NOTIFIER);
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(&queue, durable, args).await?;
    ch.queue_bind(
        &queue,
        &s.exchange,
        routing::COMPLETED,
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    Ok(())
}

/// What the consumer needs.
#[derive(Debug)]
pub struct Notifier {
    /// Broker settings.
    pub amqp: AmqpSettings,
    /// Where messages go.
    pub webhook: Webhook,
    /// Pacing and retry settings.
    pub slack: SlackSettings,
    /// Base URL of the Grafana with the dashboard (no trailing `/`), for the messages' link.
    pub grafana_url: Option<String>,
}

/// Consumes until `shutdown`, reconnecting on broker errors with the kit's backoff (0.5 s
/// doubling to 10 s, reset once a session was consuming).
///
/// # Errors
///
/// None so far: broker errors are retried until shutdown.
pub async fn run(notifier: Notifier, shutdown: CancellationToken) -> anyhow::Result<()> {
    let name = format!("loadtest-notifier-{NOTIFIER}");
    let publisher = Publisher::new(&notifier.amqp, &format!("{name}-publisher"));
    let (first, max) = notifier.slack.retry_delays();
    // One session at a time: the lock only lends the pacing to the current one.
    let pace = tokio::sync::Mutex::new(Pace {
        next_post: Instant::now(),
        backoff: Backoff::new(first, max),
    });
    let backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    let (n, p, pace, stop, name) = (&notifier, &publisher, &pace, &shutdown, name.as_str());
    kit::backoff::reconnect("broker session", backoff, stop, move || async move {
        session(n, p, &mut *pace.lock().await, name, stop).await
    })
    .await;
    publisher.close().await;
    Ok(())
}

/// When the next post may go, and the backoff for posts without `Retry-After`. Kept across
/// broker sessions: Slack's rate limit does not care about our reconnects.
struct Pace {
    next_post: Instant,
    backoff: Backoff,
}

/// One broker session: connect, declare, consume until shutdown (`Ok`) or a broker error.
async fn session(
    n: &Notifier,
    publisher: &Publisher,
    pace: &mut Pace,
    name: &str,
    shutdown: &CancellationToken,
) -> Result<(), SessionError> {
    let conn = kit::amqp::connect(&n.amqp, name)
        .await
        .context("connecting to RabbitMQ")
        .map_err(SessionError::before)?;
    let ch = conn.create_channel().await.map_err(SessionError::before)?;
    declare_topology(&ch, &n.amqp, n.slack.max_queued)
        .await
        .context("declaring the notifier's queue")
        .map_err(SessionError::before)?;
    ch.basic_qos(1, BasicQosOptions::default())
        .await
        .map_err(SessionError::before)?;
    let queue = n.amqp.notify_queue(NOTIFIER);
    let mut consumer = ch
        .basic_consume(
            &queue,
            name,
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(SessionError::before)?;
    tracing::info!(queue = %queue, dashboard = n.grafana_url.is_some(), "consuming; posting every finished run to Slack");
    let result = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            d = consumer.next() => {
                let delivery = match d {
                    Some(Ok(d)) => d,
                    Some(Err(e)) => break Err(anyhow::Error::new(e).context("consuming")),
                    None => break Err(anyhow::anyhow!("the broker cancelled the consumer")),
                };
                let handled = Handler { n, ch: &ch, publisher, shutdown }.handle(delivery, pace).await;
                if let Err(e) = handled {
                    break Err(e);
                }
            }
        }
    };
    // An unacked delivery goes back to the queue when the connection closes.
    let _ = conn.close(200, "notifier stopping").await;
    result.map_err(SessionError::after)
}

/// Handles one delivery on the session's channel.
struct Handler<'a> {
    n: &'a Notifier,
    ch: &'a Channel,
    publisher: &'a Publisher,
    shutdown: &'a CancellationToken,
}

impl Handler<'_> {
    async fn handle(&self, d: Delivery, pace: &mut Pace) -> anyhow::Result<()> {
        let env = match Envelope::from_json(&d.data) {
            Ok(env) => env,
            Err(e) => {
                tracing::warn!(error = %e, "not a loadtest message; dead-lettering");
                return self
                    .dead_letter(&d, &format!("invalid message: {e}"), "invalid")
                    .await;
            }
        };
        let Body::Completed(run) = &env.body else {
            let reason = format!("not an event.completed message (kind {})", env.body.kind());
            tracing::warn!(event_id = %env.event_id, "{reason}; dead-lettering");
            return self.dead_letter(&d, &reason, "invalid").await;
        };
        let msg = message::message(env.event_id, run, self.n.grafana_url.as_deref());

        // Pacing: Slack's rate limit, and the wait a failed post asked for.
        tokio::select! {
            _ = self.shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep_until(pace.next_post) => {}
        }
        let started = std::time::Instant::now();
        let posted = self.n.webhook.post(&msg).await;
        metrics::histogram!("loadtest_notifier_post_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        pace.next_post = Instant::now() + self.n.slack.min_interval();

        let deliveries = delivery_count(&d) + 1;
        match posted {
            Ok(()) => {
                pace.backoff.reset();
                self.ch
                    .basic_ack(d.delivery_tag, BasicAckOptions::default())
                    .await
                    .context("acking")?;
                metrics::counter!("loadtest_notifier_posted_total", "status" => status_label(&run.status))
                    .increment(1);
                tracing::info!(event_id = %env.event_id, status = %run.status, deliveries, "posted to Slack");
                Ok(())
            }
            Err(PostError::Rejected(reason)) => {
                tracing::error!(event_id = %env.event_id, error = %reason, "Slack refused the message; dead-lettering");
                self.dead_letter(
                    &d,
                    &format!("Slack refused the message: {reason}"),
                    "rejected",
                )
                .await
            }
            Err(PostError::Retryable {
                reason,
                retry_after,
                cause,
            }) => {
                let limit = u64::from(self.n.amqp.delivery_limit);
                if deliveries > limit {
                    // RabbitMQ would dead-letter it on this return, without our reason.
                    tracing::error!(event_id = %env.event_id, deliveries, error = %reason, "Slack still failing at the delivery limit; dead-lettering");
                    let reason = format!(
                        "Slack still failing after {deliveries} deliveries (delivery limit {limit}): {reason}"
                    );
                    return self.dead_letter(&d, &reason, "delivery_limit").await;
                }
                let wait = match retry_after {
                    Some(after) => after.min(self.n.slack.max_retry_after()),
                    None => pace.backoff.next_delay(),
                };
                pace.next_post = pace.next_post.max(Instant::now() + wait);
                metrics::counter!("loadtest_notifier_retried_total", "cause" => cause.as_str())
                    .increment(1);
                tracing::warn!(
                    event_id = %env.event_id,
                    deliveries,
                    delivery_limit = limit,
                    error = %reason,
                    retry_in_ms = wait.as_millis() as u64,
                    "Slack post failed; retrying"
                );
                // Back to the queue: RabbitMQ counts the delivery towards the limit.
                self.ch
                    .basic_nack(
                        d.delivery_tag,
                        BasicNackOptions {
                            requeue: true,
                            ..Default::default()
                        },
                    )
                    .await
                    .context("returning the message")
            }
        }
    }

    /// Publishes the delivery to the dead-letter exchange with `reason`, then acks it.
    async fn dead_letter(
        &self,
        d: &Delivery,
        reason: &str,
        cause: &'static str,
    ) -> anyhow::Result<()> {
        let mut headers = FieldTable::default();
        if let Some(h) = d.properties.headers() {
            for (k, v) in h.inner() {
                // A redriven message must start counting afresh.
                if k.as_str() != DELIVERY_COUNT_HEADER {
                    headers.insert(k.clone(), v.clone());
                }
            }
        }
        headers.insert(
            ShortString::from(routing::DEATH_REASON_HEADER),
            AMQPValue::LongString(LongString::from(reason.to_string())),
        );
        headers.insert(
            ShortString::from("x-loadtest-routing-key"),
            AMQPValue::LongString(LongString::from(d.routing_key.to_string())),
        );
        let dlx = self.n.amqp.dlx();
        let message = Message::new(d.routing_key.as_str(), &d.data)
            .exchange(&dlx)
            .properties(d.properties.clone())
            .headers(headers);
        self.publisher
            .send(message)
            .await
            .context("dead-lettering")?;
        self.ch
            .basic_ack(d.delivery_tag, BasicAckOptions::default())
            .await
            .context("acking a dead-lettered message")?;
        metrics::counter!("loadtest_notifier_dead_lettered_total", "cause" => cause).increment(1);
        Ok(())
    }
}

/// Deliveries of this message before this one (RabbitMQ's `x-delivery-count`; 0 when absent).
fn delivery_count(d: &Delivery) -> u64 {
    let Some(v) = d
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(DELIVERY_COUNT_HEADER))
    else {
        return 0;
    };
    match v {
        AMQPValue::ShortShortInt(n) => u64::try_from(*n).unwrap_or(0),
        AMQPValue::ShortShortUInt(n) => u64::from(*n),
        AMQPValue::ShortInt(n) => u64::try_from(*n).unwrap_or(0),
        AMQPValue::ShortUInt(n) => u64::from(*n),
        AMQPValue::LongInt(n) => u64::try_from(*n).unwrap_or(0),
        AMQPValue::LongUInt(n) => u64::from(*n),
        AMQPValue::LongLongInt(n) => u64::try_from(*n).unwrap_or(0),
        _ => 0,
    }
}

/// The `status` label of the posted counter: `committed`, `expired` or `other`.
fn status_label(status: &str) -> &'static str {
    match status {
        "committed" => "committed",
        "expired" => "expired",
        _ => "other",
    }
}
