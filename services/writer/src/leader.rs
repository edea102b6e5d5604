//! The leader loop: one `tokio::select!` over shutdown, deliveries, the checkpoint confirms, the
//! write in flight and the policy's next timer. What to do with each event is the
//! [`Policy`]'s; this loop only executes its [`Action`]s against RabbitMQ and InfluxDB:
//!
//! - acks go out pipelined (every frame queued before the first is awaited: one wake-up of
//!   lapin's I/O loop for the lot, not one each);
//! - dead letters, `event.completed` and the status go through the kit's confirming
//!   [`Publisher`] (the status best effort, bounded);
//! - checkpoints go to the [`CheckpointStream`], their confirms awaited beside the loop, in the
//!   order sent, so consuming goes on while they come;
//! - writes run beside the loop too ([`crate::outbox::write_batch`]): while InfluxDB is down
//!   the write retries with backoff and the loop goes on consuming and checkpointing.
//!
//! Any broker error ends the session ([`crate::session`]): the unacked deliveries go back to
//! the queue.

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::Context;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use kit::amqp::{AmqpSettings, Message, Publisher};
use lapin::options::BasicAckOptions;
use lapin::types::{AMQPValue, LongString, ShortString};
use lapin::{BasicProperties, Channel};
use lifecycle::{Batch, DeliveryId};
use protocol::routing;
use tokio_util::sync::CancellationToken;

use crate::checkpoints::CheckpointStream;
use crate::outbox::{self, WriteOutcome};
use crate::policy::{Action, Inbound, Policy};
use crate::sink::AnySink;

/// What dead-lettering a delivery needs besides its body: the original routing key and
/// properties (message id, producer), which travel with it and `redrive` restores.
#[derive(Debug)]
pub(crate) struct Origin {
    routing_key: String,
    properties: BasicProperties,
}

/// A delivery as the policy takes it.
pub(crate) type Delivery = Inbound<Origin>;

/// What the loop executes actions against.
pub(crate) struct Leader<'a> {
    /// The channel consumed from: acks go on it.
    pub(crate) consume: Channel,
    pub(crate) publisher: &'a Publisher,
    pub(crate) stream: CheckpointStream,
    pub(crate) sink: &'a AnySink,
    /// The dead-letter and status exchanges' names.
    pub(crate) amqp: &'a AmqpSettings,
    pub(crate) shutdown: &'a CancellationToken,
}

/// The loop's I/O in flight.
#[derive(Default)]
struct InFlight<'a> {
    write: Option<BoxFuture<'a, WriteOutcome>>,
    /// The confirms of the checkpoints sent, oldest first.
    confirms: VecDeque<BoxFuture<'static, anyhow::Result<()>>>,
}

impl<'a> Leader<'a> {
    /// Consumes until shutdown (`Ok`, after a last checkpoint) or a broker error.
    pub(crate) async fn run(
        self,
        mut policy: Policy<Origin>,
        consumer: &mut lapin::Consumer,
    ) -> anyhow::Result<()> {
        let mut io = InFlight::default();
        self.execute(policy.start(), &mut io).await?;
        let shutdown = self.shutdown;
        loop {
            let actions = tokio::select! {
                _ = shutdown.cancelled() => break,
                d = consumer.next() => {
                    let d = delivery(d)?;
                    policy.delivered(d, || ready(consumer))?
                }
                confirmed = first(&mut io.confirms) => {
                    confirmed?;
                    policy.confirmed()?
                }
                outcome = written(&mut io.write) => {
                    io.write = None;
                    policy.written(outcome)?
                }
                () = tokio::time::sleep_until(policy.deadline()) => policy.timer(|| ready(consumer))?,
            };
            self.execute(actions, &mut io).await?;
        }
        // A write in flight is cancelled (its points stay in the outboxes); what is folded in is
        // checkpointed, so the next writer has it without waiting for redeliveries.
        io.write = None;
        let last = async {
            self.execute(policy.shutdown()?, &mut io).await?;
            while let Some(confirmed) = io.confirms.pop_front() {
                confirmed.await?;
                self.execute(policy.confirmed()?, &mut io).await?;
            }
            anyhow::Ok(())
        };
        match tokio::time::timeout(Duration::from_secs(5), last).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "last checkpoint failed"),
            Err(_) => tracing::warn!("last checkpoint timed out"),
        }
        Ok(())
    }

    /// Executes `actions` in order.
    async fn execute(
        &self,
        actions: Vec<Action<Origin>>,
        io: &mut InFlight<'a>,
    ) -> anyhow::Result<()> {
        for action in actions {
            match action {
                Action::Ack(tags) => self.ack(tags).await?,
                Action::DeadLetter { delivery, reason } => {
                    self.dead_letter(delivery, &reason).await?;
                }
                Action::PublishCompleted(body) => {
                    // Not mandatory: no queue is bound to event.completed until a notifier runs.
                    self.publisher
                        .send(Message::new(routing::COMPLETED, &body).not_mandatory())
                        .await
                        .context("publishing event.completed")?;
                }
                Action::PublishStatus(body) => self.publish_status(&body).await,
                Action::SendCheckpoint(bodies) => {
                    let sent = self.stream.send(&bodies).await?;
                    io.confirms.push_back(sent.confirmed().boxed());
                }
                Action::StartWrite(batches) => io.write = Some(self.write(batches)),
            }
        }
        Ok(())
    }

    /// Writes `batches` at the same time, as one outcome.
    fn write(&self, batches: Vec<Batch>) -> BoxFuture<'a, WriteOutcome> {
        let (sink, cancel) = (self.sink, self.shutdown);
        futures::future::join_all(
            batches
                .into_iter()
                .map(|batch| outbox::write_batch(sink, batch, cancel)),
        )
        .map(WriteOutcome::combine)
        .boxed()
    }

    /// Acks `tags`, pipelined, in order.
    async fn ack(&self, tags: Vec<DeliveryId>) -> anyhow::Result<()> {
        let ch = &self.consume;
        let sent = futures::future::join_all(
            tags.into_iter()
                .map(|tag| ch.basic_ack(tag, BasicAckOptions::default())),
        )
        .await;
        for r in sent {
            r.context("acking")?;
        }
        Ok(())
    }

    /// Publishes the delivery to the dead-letter exchange, with the reason and its routing key in
    /// headers, then acks it.
    async fn dead_letter(&self, d: Delivery, reason: &str) -> anyhow::Result<()> {
        let Origin {
            routing_key,
            properties,
        } = d.meta;
        let mut headers = properties.headers().clone().unwrap_or_default();
        headers.insert(
            ShortString::from(routing::DEATH_REASON_HEADER),
            AMQPValue::LongString(LongString::from(reason.to_string())),
        );
        headers.insert(
            ShortString::from("x-loadtest-routing-key"),
            AMQPValue::LongString(LongString::from(routing_key.clone())),
        );
        let dlx = self.amqp.dlx();
        let message = Message::new(&routing_key, &d.body)
            .exchange(&dlx)
            .properties(properties)
            .headers(headers);
        self.publisher
            .send(message)
            .await
            .context("dead-lettering")?;
        metrics::counter!("loadtest_writer_dead_lettered_total").increment(1);
        self.consume
            .basic_ack(d.tag, BasicAckOptions::default())
            .await
            .context("acking")
    }

    /// Best effort, transient, not mandatory: a status nobody listens to is fine, and the next
    /// one is a fresh one. Bounded so a slow broker cannot stall the loop long.
    async fn publish_status(&self, body: &[u8]) {
        let exchange = self.amqp.status_exchange();
        let message = Message::new("", body)
            .exchange(&exchange)
            .transient()
            .not_mandatory();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.publisher.send(message)).await;
    }
}

/// A delivery from the consumer as the policy takes it; the consumer's end is an error.
fn delivery(d: Option<Result<lapin::message::Delivery, lapin::Error>>) -> anyhow::Result<Delivery> {
    match d {
        Some(Ok(d)) => Ok(Inbound {
            tag: d.delivery_tag,
            body: d.data,
            meta: Origin {
                routing_key: d.routing_key.to_string(),
                properties: d.properties,
            },
        }),
        Some(Err(e)) => Err(anyhow::Error::new(e).context("consuming")),
        None => anyhow::bail!("the broker cancelled the consumer"),
    }
}

/// The next delivery the consumer has already received, without waiting.
fn ready(consumer: &mut lapin::Consumer) -> anyhow::Result<Option<Delivery>> {
    consumer.next().now_or_never().map(delivery).transpose()
}

/// Waits for the oldest checkpoint's confirms and drops them; never resolves when none is in
/// flight.
async fn first(q: &mut VecDeque<BoxFuture<'static, anyhow::Result<()>>>) -> anyhow::Result<()> {
    match q.front_mut() {
        Some(c) => {
            let r = c.await;
            q.pop_front();
            r
        }
        None => std::future::pending().await,
    }
}

/// Waits for the write in flight; never resolves when there is none.
async fn written(inflight: &mut Option<BoxFuture<'_, WriteOutcome>>) -> WriteOutcome {
    match inflight {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}
