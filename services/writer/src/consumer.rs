//! The AMQP edge of the writer: topology, the consume loop, acks, dead-lettering and the
//! running-set status. The run lifecycle itself knows nothing of AMQP.
//!
//! One `tokio::select!` over shutdown, deliveries and the snapshot tick. Deliveries are acked
//! only as [`Effects`] say (after the write, or when superseded); the
//! lifecycle's points are encoded to line protocol here. A message that fails
//! validation, carries a bad token, or whose points InfluxDB rejects for good is published to the
//! dead-letter exchange with the reason in the `x-loadtest-dead-reason` header (confirmed), then
//! acked. On any broker error the session ends, the held deliveries go back to the queue, and the
//! writer reconnects with backoff and rebuilds its runs from the redeliveries.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use futures::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use lifecycle::{DeliveryId, Effects, Lifecycle, LifecycleSettings};
use protocol::{routing, verify_event_token, Envelope};
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use crate::settings::AmqpSettings;
use crate::sink::{write_with_retry, AnySink, WriteFailure};

/// Connects to the broker.
pub async fn connect(settings: &AmqpSettings, name: &str) -> anyhow::Result<Connection> {
    let uri =
        protocol::amqp_url::with_heartbeat(settings.url.expose_secret(), settings.heartbeat_s);
    let props = ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect(&uri, props)
        .await
        .context("connecting to RabbitMQ")
}

/// Declares the exchanges, the writer's quorum queue (single active consumer, delivery limit,
/// dead-lettering) and the dead-letter queue. Idempotent.
pub async fn declare_topology(ch: &Channel, s: &AmqpSettings) -> anyhow::Result<()> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        &s.exchange,
        ExchangeKind::Topic,
        durable,
        FieldTable::default(),
    )
    .await?;
    ch.exchange_declare(
        &s.dlx(),
        ExchangeKind::Fanout,
        durable,
        FieldTable::default(),
    )
    .await?;
    ch.exchange_declare(
        &s.status_exchange(),
        ExchangeKind::Fanout,
        durable,
        FieldTable::default(),
    )
    .await?;
    let mut dead_args = FieldTable::default();
    dead_args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    let mut args = dead_args.clone();
    if let Some(ms) = s.queue_expires_ms {
        args.insert("x-expires".into(), AMQPValue::LongLongInt(ms as i64));
        dead_args.insert("x-expires".into(), AMQPValue::LongLongInt(ms as i64));
    }
    args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(i64::from(s.delivery_limit)),
    );
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(s.dlx().into()),
    );
    let q = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(&s.dead_queue(), q, dead_args).await?;
    ch.queue_bind(
        &s.dead_queue(),
        &s.dlx(),
        "",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    ch.queue_declare(&s.queue(), q, args).await?;
    for key in [routing::REGISTERED, routing::STATS, routing::COMMITTED] {
        ch.queue_bind(
            &s.queue(),
            &s.exchange,
            key,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    }
    Ok(())
}

/// What the writer needs besides the lifecycle settings.
pub struct Worker {
    /// Broker settings.
    pub amqp: AmqpSettings,
    /// Lifecycle settings.
    pub lifecycle: LifecycleSettings,
    /// Where points go.
    pub sink: AnySink,
    /// Event-token secret; `None` disables verification.
    pub token_secret: Option<SecretString>,
}

/// A delivery held until the lifecycle says it may be acked.
struct Held {
    data: Vec<u8>,
    routing_key: String,
    properties: BasicProperties,
}

/// Consumes until `shutdown`, reconnecting with capped exponential backoff on broker errors.
pub async fn run(worker: Worker, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut delay = Duration::from_millis(500);
    loop {
        match session(&worker, &shutdown).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), retry_in_ms = delay.as_millis() as u64, "broker session ended; reconnecting");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

struct Session<'a> {
    worker: &'a Worker,
    consume: Channel,
    publish: Channel,
    lifecycle: Lifecycle,
    /// Valid deliveries not settled yet (acked or dead-lettered exactly once: see [`Session::ack`]).
    held: HashMap<DeliveryId, Held>,
    /// Whether this session has received a delivery, i.e. is the queue's single active consumer.
    /// A standing-by replica publishes no status, or API replicas would see its empty running
    /// set alternate with the active writer's.
    active: bool,
    shutdown: &'a CancellationToken,
}

async fn session(worker: &Worker, shutdown: &CancellationToken) -> anyhow::Result<()> {
    let conn = connect(&worker.amqp, "loadtest-writer").await?;
    let consume = conn.create_channel().await?;
    declare_topology(&consume, &worker.amqp).await?;
    consume
        .basic_qos(worker.amqp.prefetch, BasicQosOptions::default())
        .await?;
    let publish = conn.create_channel().await?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut consumer = consume
        .basic_consume(
            &worker.amqp.queue(),
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(queue = %worker.amqp.queue(), sink = %worker.sink.describe(), "consuming");
    let mut s = Session {
        worker,
        consume,
        publish,
        lifecycle: Lifecycle::new(worker.lifecycle.clone()),
        held: HashMap::new(),
        active: false,
        shutdown,
    };
    s.publish_status().await;
    let interval = worker.lifecycle.snapshot_interval;
    // Status is refreshed more often than snapshots so `isrunning` stays fresh.
    let status_every = interval.min(Duration::from_secs(5));
    let mut next_tick = next_aligned(interval);
    let mut next_status = tokio::time::Instant::now() + status_every;
    let result = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            d = consumer.next() => {
                let delivery = match d {
                    Some(Ok(d)) => d,
                    Some(Err(e)) => break Err(anyhow::Error::new(e).context("consuming")),
                    None => break Err(anyhow::anyhow!("the broker cancelled the consumer")),
                };
                if let Err(e) = s.on_delivery(delivery).await {
                    break Err(e);
                }
            }
            _ = tokio::time::sleep_until(next_tick) => {
                next_tick = next_aligned(interval);
                // Take in what has already arrived before snapshotting: after a stall (an
                // InfluxDB outage) the prefetched backlog may hold commits sent before this tick,
                // and a snapshot written now from older stats would land after the run's end.
                if let Err(e) = s.drain_ready(&mut consumer).await {
                    break Err(e);
                }
                let fx = s.lifecycle.tick(Utc::now());
                if let Err(e) = s.apply(fx).await {
                    break Err(e);
                }
                s.publish_status().await;
            }
            _ = tokio::time::sleep_until(next_status) => {
                next_status = tokio::time::Instant::now() + status_every;
                s.publish_status().await;
            }
        }
    };
    // Unacked deliveries go back to the queue when the channel closes: nothing is lost.
    let _ = conn.close(200, "writer stopping").await;
    result
}

/// The instant of the next wall-clock multiple of `interval`.
fn next_aligned(interval: Duration) -> tokio::time::Instant {
    let now = Utc::now();
    let next = protocol::time::align_down(now, interval) + interval.as_nanos() as i64;
    let wait = (next - protocol::time::unix_nanos(now)).max(0) as u64;
    // A few ms late so the aligned timestamp is the one just reached.
    tokio::time::Instant::now() + Duration::from_nanos(wait) + Duration::from_millis(5)
}

impl Session<'_> {
    /// Handles the deliveries already buffered, without waiting for more (bounded by the prefetch).
    async fn drain_ready(&mut self, consumer: &mut lapin::Consumer) -> anyhow::Result<()> {
        for _ in 0..self.worker.amqp.prefetch.max(1) {
            match consumer.next().now_or_never() {
                Some(Some(Ok(d))) => self.on_delivery(d).await?,
                Some(Some(Err(e))) => return Err(anyhow::Error::new(e).context("consuming")),
                Some(None) => return Err(anyhow::anyhow!("the broker cancelled the consumer")),
                None => break,
            }
        }
        Ok(())
    }

    async fn on_delivery(&mut self, d: lapin::message::Delivery) -> anyhow::Result<()> {
        let tag = d.delivery_tag;
        if !self.active {
            self.active = true;
            tracing::info!(queue = %self.worker.amqp.queue(), "active consumer: receiving deliveries");
        }
        let envelope = match Envelope::from_json(&d.data) {
            Ok(env) => env,
            Err(e) => {
                metrics::counter!("loadtest_writer_messages_total", "kind" => "unknown", "outcome" => "invalid").increment(1);
                tracing::warn!(delivery_tag = tag, error = %e, "invalid message; dead-lettering");
                return self
                    .dead_letter_raw(
                        tag,
                        &d.data,
                        d.routing_key.as_str(),
                        &d.properties,
                        &format!("invalid message: {e}"),
                    )
                    .await;
            }
        };
        if let Some(secret) = &self.worker.token_secret {
            if !verify_event_token(
                secret.expose_secret().as_bytes(),
                &envelope.event_id,
                &envelope.token,
            ) {
                metrics::counter!("loadtest_writer_messages_total", "kind" => envelope.body.kind(), "outcome" => "bad_token").increment(1);
                tracing::warn!(delivery_tag = tag, event_id = %envelope.event_id, "bad event token; dead-lettering");
                return self
                    .dead_letter_raw(
                        tag,
                        &d.data,
                        d.routing_key.as_str(),
                        &d.properties,
                        "bad event token",
                    )
                    .await;
            }
        }
        self.held.insert(
            tag,
            Held {
                data: d.data,
                routing_key: d.routing_key.to_string(),
                properties: d.properties,
            },
        );
        metrics::counter!("loadtest_writer_messages_total", "kind" => envelope.body.kind(), "outcome" => "accepted").increment(1);
        let fx = self.lifecycle.handle(tag, envelope, Utc::now());
        self.apply(fx).await
    }

    async fn apply(&mut self, fx: Effects) -> anyhow::Result<()> {
        for tag in fx.ack {
            self.ack(tag).await?;
        }
        for w in fx.writes {
            let mut lines = Vec::new();
            let points = lifecycle::encode(&w.points, &mut lines);
            if !lines.is_empty() {
                let started = std::time::Instant::now();
                let written = write_with_retry(&self.worker.sink, &lines, self.shutdown).await;
                metrics::histogram!("loadtest_writer_write_duration_seconds")
                    .record(started.elapsed().as_secs_f64());
                match written {
                    Ok(()) => {
                        metrics::counter!("loadtest_writer_points_written_total")
                            .increment(points as u64);
                        tracing::debug!(event_id = %w.event_id, points, "points written");
                    }
                    Err(WriteFailure::Cancelled) => return Ok(()),
                    Err(WriteFailure::Permanent(reason)) => {
                        tracing::error!(event_id = %w.event_id, error = %reason, "points rejected; dead-lettering the messages that carried them");
                        for tag in w.acks {
                            self.dead_letter(
                                tag,
                                &format!("InfluxDB rejected the points: {reason}"),
                            )
                            .await?;
                        }
                        continue;
                    }
                }
            }
            for tag in w.acks {
                self.ack(tag).await?;
            }
        }
        for env in fx.completed {
            self.publish_confirmed(
                &self.worker.amqp.exchange,
                protocol::routing::COMPLETED,
                &env.to_json(),
                FieldTable::default(),
            )
            .await
            .context("publishing event.completed")?;
        }
        if fx.running_changed {
            self.publish_status().await;
        }
        Ok(())
    }

    /// Acks a held delivery. A tag that is not held any more was settled already: acking it
    /// twice would be a channel error (PRECONDITION_FAILED) that ends the session.
    async fn ack(&mut self, tag: DeliveryId) -> anyhow::Result<()> {
        if self.held.remove(&tag).is_none() {
            return Ok(());
        }
        self.ack_raw(tag).await
    }

    async fn ack_raw(&mut self, tag: DeliveryId) -> anyhow::Result<()> {
        self.consume
            .basic_ack(tag, BasicAckOptions::default())
            .await
            .context("acking")
    }

    async fn dead_letter(&mut self, tag: DeliveryId, reason: &str) -> anyhow::Result<()> {
        let Some(h) = self.held.remove(&tag) else {
            return Ok(());
        };
        self.dead_letter_raw(tag, &h.data, &h.routing_key, &h.properties, reason)
            .await
    }

    async fn dead_letter_raw(
        &mut self,
        tag: DeliveryId,
        data: &[u8],
        routing_key: &str,
        props: &BasicProperties,
        reason: &str,
    ) -> anyhow::Result<()> {
        let mut headers = props.headers().clone().unwrap_or_default();
        headers.insert(
            ShortString::from(routing::DEATH_REASON_HEADER),
            AMQPValue::LongString(LongString::from(reason.to_string())),
        );
        headers.insert(
            ShortString::from("x-loadtest-routing-key"),
            AMQPValue::LongString(LongString::from(routing_key.to_string())),
        );
        self.publish_confirmed(&self.worker.amqp.dlx(), routing_key, data, headers)
            .await
            .context("dead-lettering")?;
        metrics::counter!("loadtest_writer_dead_lettered_total").increment(1);
        self.ack_raw(tag).await
    }

    async fn publish_confirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        data: &[u8],
        headers: FieldTable,
    ) -> anyhow::Result<()> {
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_message_id(uuid::Uuid::new_v4().to_string().into())
            .with_headers(headers);
        let confirm = self
            .publish
            .basic_publish(
                exchange,
                routing_key,
                BasicPublishOptions::default(),
                data,
                props,
            )
            .await?;
        let confirmation = tokio::time::timeout(Duration::from_secs(10), confirm)
            .await
            .context("publisher confirm timed out")??;
        if confirmation.is_nack() {
            anyhow::bail!("the broker nacked the publish to {exchange}");
        }
        Ok(())
    }

    async fn publish_status(&self) {
        if !self.active {
            return;
        }
        let running = self.lifecycle.running();
        metrics::gauge!("loadtest_writer_runs_running").set(running.running as f64);
        let body = match serde_json::to_vec(&running) {
            Ok(b) => b,
            Err(_) => return,
        };
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(1);
        // Best effort: a status nobody listens to is fine; the next tick sends a fresh one.
        if let Ok(c) = self
            .publish
            .basic_publish(
                &self.worker.amqp.status_exchange(),
                "",
                BasicPublishOptions::default(),
                &body,
                props,
            )
            .await
        {
            let _ = tokio::time::timeout(Duration::from_secs(5), c).await;
        }
    }
}
