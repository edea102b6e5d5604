//! The active writer (the leader): one `tokio::select!` over shutdown, deliveries, the write in
//! flight, the snapshot tick, the checkpoint and the status.
//!
//! - A delivery is validated (invalid ones and bad tokens are dead-lettered with the reason),
//!   held, and fed to the lifecycle; what the lifecycle says is superseded is acked at once
//!   (with the other acks of that turn of the loop, pipelined: [`Active::flush_acks`]).
//! - The runs' outboxes are written beside the loop, one batch at a time ([`crate::outbox`]):
//!   while InfluxDB is down the write retries with backoff and the loop goes on consuming and
//!   checkpointing; the points wait in the outboxes (bounded) and are written later with their
//!   own timestamps. Points rejected for good are dropped; when a run's final record is
//!   rejected, the deliveries the run still holds are dead-lettered with the reason.
//! - Every snapshot interval (once the tick's write is done, or 5 s after the tick), and as soon
//!   as `checkpoint.after_deliveries` deliveries were taken in since the last (while a tick's
//!   snapshot points are being written, only once three quarters of the prefetch are unacked),
//!   the changed runs are checkpointed to the stream; the confirms are awaited beside the loop (at most
//!   [`MAX_CHECKPOINTS_IN_FLIGHT`] checkpoints, in order), and once the broker confirms the
//!   records, the deliveries they cover are acked.
//!   A run whose final record is written is checkpointed at once (its tombstone), then its
//!   deliveries are acked.
//! - `event.completed` and the dead letters go through the kit's confirming [`Publisher`], the
//!   running set to the status fanout (within [`STATUS_COALESCE`] of a change).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use kit::amqp::{Message, Publisher};
use lapin::options::BasicAckOptions;
use lapin::types::{AMQPValue, LongString, ShortString};
use lapin::{BasicProperties, Channel};
use lifecycle::{DeliveryId, Effects, Lifecycle};
use protocol::{routing, verify_event_token, Envelope};
use secrecy::ExposeSecret;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::outbox::{self, WriteOutcome, MAX_BATCH_BYTES};
use crate::state::{RunsMessages, StateStream};
use crate::worker::Worker;

/// After a tick, the checkpoint waits this long at most for the tick's snapshot points to be
/// written. Serializing a checkpoint holds the loop, which also drives the write: at 10,000 runs
/// a checkpoint of every run takes about a second, and in the middle of the tick's write it
/// delayed the last snapshots by that much (`bench/pipeline.sh`).
const CHECKPOINT_AFTER_TICK: Duration = Duration::from_secs(5);

/// Batches written at the same time: InfluxDB takes concurrent writes on several cores, and
/// at 10,000 runs the two requests that carry a tick's snapshot points land together.
const CONCURRENT_WRITES: usize = 2;

/// A change of the running set is published this long after it at most: the changes of a
/// burst (10,000 registrations) go out as one status message, not one each (each carries the
/// whole set).
const STATUS_COALESCE: Duration = Duration::from_millis(500);

/// Checkpoints sent and not confirmed yet, at most, before the loop waits for one to start the
/// next that `checkpoint.after_deliveries` asks for.
const MAX_CHECKPOINTS_IN_FLIGHT: usize = 2;

/// A checkpoint sent to the stream, its confirms awaited beside the loop (consuming goes on);
/// what it covers is acked once they are in.
struct Confirming {
    confirmed: BoxFuture<'static, anyhow::Result<()>>,
    covers: Vec<DeliveryId>,
}

/// Waits for the oldest checkpoint in flight to be confirmed and returns what it covers; never
/// resolves when none is in flight. (Checkpoints reach the stream in the order sent, and are
/// acked in that order.)
async fn first_confirmed(q: &mut VecDeque<Confirming>) -> anyhow::Result<Vec<DeliveryId>> {
    match q.front_mut() {
        Some(c) => {
            (&mut c.confirmed).await?;
            Ok(q.pop_front().map(|c| c.covers).unwrap_or_default())
        }
        None => std::future::pending().await,
    }
}

/// A delivery held until the lifecycle says it may be acked.
struct Held {
    data: Vec<u8>,
    routing_key: String,
    properties: BasicProperties,
}

/// The leader's state for one broker session.
pub(crate) struct Active<'a> {
    worker: &'a Worker,
    consume: Channel,
    publisher: &'a Publisher,
    stream: StateStream,
    lifecycle: Lifecycle,
    /// Valid deliveries not settled yet (acked or dead-lettered exactly once: see
    /// [`Active::ack`]).
    held: HashMap<DeliveryId, Held>,
    /// Deliveries taken in since the last checkpoint that trigger the next.
    threshold: usize,
    /// Deliveries held since the last checkpoint was sent.
    uncovered: usize,
    /// The running set changed since the last status was published.
    status_changed: bool,
    /// Settled deliveries whose acks are not sent yet: sent together, pipelined, at the end of
    /// each turn of the loop ([`Active::flush_acks`]).
    acks: Vec<DeliveryId>,
    shutdown: &'a CancellationToken,
}

/// Waits for the write in flight; never resolves when there is none.
async fn written(inflight: &mut Option<BoxFuture<'_, WriteOutcome>>) -> WriteOutcome {
    match inflight {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Waits until `at`; never resolves when it is `None`.
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl<'a> Active<'a> {
    pub(crate) fn new(
        worker: &'a Worker,
        consume: Channel,
        publisher: &'a Publisher,
        stream: StateStream,
        lifecycle: Lifecycle,
        shutdown: &'a CancellationToken,
    ) -> Self {
        Self {
            worker,
            consume,
            publisher,
            stream,
            lifecycle,
            held: HashMap::new(),
            threshold: worker.checkpoint.threshold(worker.amqp.prefetch),
            uncovered: 0,
            status_changed: false,
            acks: Vec::new(),
            shutdown,
        }
    }

    /// Consumes until shutdown (`Ok`, after a last checkpoint) or a broker error.
    #[allow(clippy::too_many_lines)] // TODO(issue 22): split into phases
    pub(crate) async fn run(mut self, consumer: &mut lapin::Consumer) -> anyhow::Result<()> {
        let interval = self.worker.lifecycle.snapshot_interval;
        // Status is refreshed more often than snapshots so `isrunning` stays fresh.
        let status_every = interval.min(Duration::from_secs(5));
        let mut next_tick = next_aligned(interval);
        let mut next_status = Instant::now() + status_every;
        // Set after a tick while its snapshot points are being written: checkpoints wait (see
        // `Active::checkpoint_due`) until they are written or this instant.
        let mut checkpoint_at: Option<Instant> = None;
        // A run ended (its final record is written): its tombstone is due.
        let mut tombstone_due = false;
        self.publish_status().await;
        // Restored outboxes (points of an outage, or of a writer that died) go out at once.
        let mut inflight = self.start_write();
        let mut confirming: VecDeque<Confirming> = VecDeque::new();
        let shutdown = self.shutdown;
        loop {
            if self.status_changed {
                next_status = next_status.min(Instant::now() + STATUS_COALESCE);
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                d = consumer.next() => {
                    let delivery = match d {
                        Some(Ok(d)) => d,
                        Some(Err(e)) => return Err(anyhow::Error::new(e).context("consuming")),
                        None => anyhow::bail!("the broker cancelled the consumer"),
                    };
                    self.on_delivery(delivery).await?;
                    // And what else has arrived, so the acks of a burst go out together.
                    let after_tick = checkpoint_at.is_some();
                    self.drain_ready(consumer, Some(after_tick)).await?;
                    if self.checkpoint_due(after_tick)
                        && confirming.len() < MAX_CHECKPOINTS_IN_FLIGHT
                    {
                        confirming.push_back(self.send_checkpoint().await?);
                    }
                    if inflight.is_none() {
                        inflight = self.start_write();
                    }
                }
                covers = first_confirmed(&mut confirming) => {
                    for tag in covers? {
                        self.ack(tag);
                    }
                    self.count_unacked();
                    if self.checkpoint_due(checkpoint_at.is_some()) {
                        confirming.push_back(self.send_checkpoint().await?);
                    }
                }
                outcome = written(&mut inflight) => {
                    tombstone_due |= self.on_written(outcome).await?;
                    // Replaces the write just done: the next batch goes out before any
                    // checkpoint is serialized.
                    inflight = self.start_write();
                    // The tick's snapshot points are all written (its request points may still
                    // be going out), or a run ended outside a tick's write: the checkpoint they
                    // waited for.
                    let snapshots_written = inflight.is_none()
                        || self.lifecycle.pending_snapshots() == 0;
                    if (checkpoint_at.is_some() && snapshots_written)
                        || (checkpoint_at.is_none() && tombstone_due)
                    {
                        checkpoint_at = None;
                        tombstone_due = false;
                        confirming.push_back(self.send_checkpoint().await?);
                    }
                }
                _ = tokio::time::sleep_until(next_tick) => {
                    next_tick = next_aligned(interval);
                    // Take in what has already arrived before snapshotting: the prefetched
                    // backlog may hold commits sent before this tick, and a snapshot from older
                    // stats would land after the run's end.
                    self.drain_ready(consumer, None).await?;
                    let started = std::time::Instant::now();
                    let fx = self.lifecycle.tick(Utc::now());
                    tracing::debug!(
                        runs = self.lifecycle.runs(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "tick computed"
                    );
                    self.apply(fx).await?;
                    if inflight.is_none() {
                        inflight = self.start_write();
                    }
                    if inflight.is_none() {
                        confirming.push_back(self.send_checkpoint().await?);
                    } else {
                        checkpoint_at = Some(Instant::now() + CHECKPOINT_AFTER_TICK);
                    }
                    metrics::gauge!("loadtest_writer_pending_snapshots")
                        .set(self.lifecycle.pending_snapshots() as f64);
                    self.publish_status().await;
                }
                _ = until(checkpoint_at) => {
                    checkpoint_at = None;
                    tombstone_due = false;
                    confirming.push_back(self.send_checkpoint().await?);
                }
                _ = tokio::time::sleep_until(next_status) => {
                    next_status = Instant::now() + status_every;
                    self.publish_status().await;
                }
            }
            self.flush_acks().await?;
        }
        // Shutdown: a write in flight was cancelled (its points stay in the outboxes); what is
        // folded in is checkpointed, so the next writer has it without waiting for redeliveries.
        drop(inflight);
        let last = async {
            while let Some(c) = confirming.pop_front() {
                c.confirmed.await?;
                for tag in c.covers {
                    self.ack(tag);
                }
            }
            self.checkpoint().await
        };
        match tokio::time::timeout(Duration::from_secs(5), last).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "last checkpoint failed"),
            Err(_) => tracing::warn!("last checkpoint timed out"),
        }
        Ok(())
    }

    /// The write of the outboxes' next batches ([`CONCURRENT_WRITES`] requests at a time, each
    /// up to [`MAX_BATCH_BYTES`]), when there is something to write.
    fn start_write(&self) -> Option<BoxFuture<'a, WriteOutcome>> {
        let batches = self.lifecycle.batches(MAX_BATCH_BYTES, CONCURRENT_WRITES);
        if batches.is_empty() {
            return None;
        }
        let (sink, cancel) = (&self.worker.sink, self.shutdown);
        Some(
            futures::future::join_all(
                batches
                    .into_iter()
                    .map(|batch| outbox::write_batch(sink, batch, cancel)),
            )
            .map(WriteOutcome::combine)
            .boxed(),
        )
    }

    /// Applies a write's outcome. Returns whether a run ended (its tombstone is due).
    async fn on_written(&mut self, outcome: WriteOutcome) -> anyhow::Result<bool> {
        let mut ended = false;
        for part in &outcome.written {
            metrics::counter!("loadtest_writer_points_written_total").increment(part.points as u64);
            tracing::debug!(event_id = %part.event_id, points = part.points, "points written");
            let fx = self.lifecycle.written(part);
            ended |= !fx.completed.is_empty();
            self.apply(fx).await?;
        }
        for (part, reason) in &outcome.rejected {
            tracing::error!(event_id = %part.event_id, error = %reason, final_record = part.final_record, "points rejected; dropping them");
            metrics::counter!("loadtest_writer_points_rejected_total")
                .increment(part.points as u64);
            let reason = format!("InfluxDB rejected the points: {reason}");
            for tag in self.lifecycle.rejected(part) {
                self.dead_letter(tag, &reason).await?;
            }
            ended |= part.final_record;
        }
        Ok(ended)
    }

    /// Checkpoints the changed runs (and tombstones), waits for the confirms, then acks what the
    /// records cover.
    async fn checkpoint(&mut self) -> anyhow::Result<()> {
        let c = self.send_checkpoint().await?;
        c.confirmed.await?;
        for tag in c.covers {
            self.ack(tag);
        }
        self.flush_acks().await?;
        self.count_unacked();
        Ok(())
    }

    /// Sends a checkpoint of the changed runs (and tombstones) to the stream; the caller acks
    /// what it covers once it is confirmed.
    async fn send_checkpoint(&mut self) -> anyhow::Result<Confirming> {
        // Each record is serialized as the lifecycle hands it over: no copy of the runs' state.
        let started = std::time::Instant::now();
        let mut runs = RunsMessages::new();
        let mut failed = None;
        let cp = self.lifecycle.checkpoint_each(Utc::now(), |r| {
            if failed.is_none() {
                failed = runs.push(r).err();
            }
        });
        if let Some(e) = failed {
            // The runs count as checkpointed now: the session must end (the broker redelivers).
            return Err(e);
        }
        self.uncovered = 0;
        let sent = self.stream.send(runs.finish()?, cp.low_water).await?;
        let bytes = sent.bytes;
        metrics::counter!("loadtest_writer_checkpoints_total").increment(1);
        metrics::counter!("loadtest_writer_checkpoint_records_total").increment(cp.records as u64);
        metrics::counter!("loadtest_writer_checkpoint_bytes_total").increment(bytes as u64);
        tracing::debug!(
            records = cp.records,
            bytes,
            covers = cp.covers.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "checkpoint sent"
        );
        Ok(Confirming {
            confirmed: sent.confirmed().boxed(),
            covers: cp.covers,
        })
    }

    fn count_unacked(&self) {
        metrics::gauge!("loadtest_writer_unacked_deliveries").set(self.held.len() as f64);
    }

    /// Whether the deliveries taken in since the last checkpoint call for the next. While a
    /// tick's snapshot points are being written (`after_tick`) only once three quarters of the
    /// prefetch are unacked: right after a tick every run has changed, and serializing all of
    /// them (about a second at 10,000 runs) would hold the loop that drives the tick's write.
    fn checkpoint_due(&self, after_tick: bool) -> bool {
        self.uncovered >= self.threshold
            && (!after_tick || self.held.len() >= usize::from(self.worker.amqp.prefetch) * 3 / 4)
    }

    /// Handles the deliveries already buffered, without waiting for more (bounded by the
    /// prefetch; with `Some(after_tick)`, also stops once a checkpoint is due:
    /// [`Active::checkpoint_due`]).
    async fn drain_ready(
        &mut self,
        consumer: &mut lapin::Consumer,
        until_checkpoint: Option<bool>,
    ) -> anyhow::Result<()> {
        for _ in 0..self.worker.amqp.prefetch.max(1) {
            if until_checkpoint.is_some_and(|after_tick| self.checkpoint_due(after_tick)) {
                break;
            }
            match consumer.next().now_or_never() {
                Some(Some(Ok(d))) => self.on_delivery(d).await?,
                Some(Some(Err(e))) => return Err(anyhow::Error::new(e).context("consuming")),
                Some(None) => anyhow::bail!("the broker cancelled the consumer"),
                None => break,
            }
        }
        Ok(())
    }

    async fn on_delivery(&mut self, d: lapin::message::Delivery) -> anyhow::Result<()> {
        let tag = d.delivery_tag;
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
        self.uncovered += 1;
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
        self.apply(fx).await?;
        self.count_unacked();
        Ok(())
    }

    /// Acks what is superseded, counts dropped snapshots, publishes `event.completed` and the
    /// status. (The points computed are in the outboxes: [`Active::start_write`].)
    async fn apply(&mut self, fx: Effects) -> anyhow::Result<()> {
        for tag in fx.ack {
            self.ack(tag);
        }
        if fx.dropped_snapshots > 0 {
            metrics::counter!("loadtest_writer_snapshots_dropped_total")
                .increment(fx.dropped_snapshots);
        }
        for env in fx.completed {
            // Not mandatory: no queue is bound to event.completed until a notifier runs.
            let body = env.to_json();
            self.publisher
                .send(Message::new(routing::COMPLETED, &body).not_mandatory())
                .await
                .context("publishing event.completed")?;
        }
        // Published within STATUS_COALESCE by the loop (or at the tick).
        self.status_changed |= fx.running_changed;
        Ok(())
    }

    /// Settles a held delivery: its ack goes out with the next [`Active::flush_acks`]. A tag that
    /// is not held any more was settled already: acking it twice would be a channel error
    /// (PRECONDITION_FAILED) that ends the session.
    fn ack(&mut self, tag: DeliveryId) {
        if self.held.remove(&tag).is_some() {
            self.acks.push(tag);
        }
    }

    /// Sends the pending acks, pipelined (every frame queued before the first is awaited: one
    /// wake-up of lapin's I/O loop for the lot, not one each), in the order they were settled
    /// (a checkpoint's registers first).
    async fn flush_acks(&mut self) -> anyhow::Result<()> {
        if self.acks.is_empty() {
            return Ok(());
        }
        let ch = &self.consume;
        let sent = futures::future::join_all(
            self.acks
                .drain(..)
                .map(|tag| ch.basic_ack(tag, BasicAckOptions::default())),
        )
        .await;
        for r in sent {
            r.context("acking")?;
        }
        Ok(())
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
        // The original properties (message id, producer) travel with it; redrive restores them.
        let dlx = self.worker.amqp.dlx();
        let message = Message::new(routing_key, data)
            .exchange(&dlx)
            .properties(props.clone())
            .headers(headers);
        self.publisher
            .send(message)
            .await
            .context("dead-lettering")?;
        metrics::counter!("loadtest_writer_dead_lettered_total").increment(1);
        self.ack_raw(tag).await
    }

    /// Publishes the running set to the status fanout (only the leader does: a standing-by
    /// writer would publish an empty set).
    async fn publish_status(&mut self) {
        self.status_changed = false;
        let running = self.lifecycle.running();
        metrics::gauge!("loadtest_writer_runs_running").set(running.running as f64);
        let body = match serde_json::to_vec(&running) {
            Ok(b) => b,
            Err(_) => return,
        };
        // Best effort, transient, not mandatory: a status nobody listens to is fine, and the
        // next tick sends a fresh one. Bounded so a slow broker cannot stall the consumer long.
        let exchange = self.worker.amqp.status_exchange();
        let message = Message::new("", &body)
            .exchange(&exchange)
            .transient()
            .not_mandatory();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.publisher.send(message)).await;
    }
}

/// The instant of the next wall-clock multiple of `interval`.
fn next_aligned(interval: Duration) -> Instant {
    let now = Utc::now();
    let next = protocol::time::align_down(now, interval) + interval.as_nanos() as i64;
    let wait = (next - protocol::time::unix_nanos(now)).max(0) as u64;
    // A few ms late so the aligned timestamp is the one just reached.
    Instant::now() + Duration::from_nanos(wait) + Duration::from_millis(5)
}
