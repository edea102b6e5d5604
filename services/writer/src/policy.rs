//! The leader loop's policy: what the active writer does with each event, as a state machine
//! with no broker connection and no InfluxDB client in it. [`crate::leader`] is the loop that
//! feeds it events and executes its [`Action`]s; the policy's tests drive it with paused time.
//!
//! Events in: a delivery (and those already received behind it), a write done, a checkpoint
//! confirmed, a timer (the snapshot tick, the checkpoint a tick waits for, the status), and
//! shutdown. Actions out: ack, dead-letter, publish `event.completed`, publish the status, send
//! a checkpoint, start a write. The rules it keeps:
//!
//! - **No ack runs ahead of its checkpoint.** A delivery folded into a run's state is acked once
//!   the checkpoint that carries that state is confirmed ([`Policy::confirmed`]; checkpoints are
//!   confirmed in the order sent). A delivery the lifecycle says is superseded (a newer
//!   cumulative stats message of the same node) or carries nothing new is acked at once. A run
//!   whose final record is written leaves with its tombstone: its deliveries are acked once the
//!   checkpoint carrying the tombstone is confirmed.
//! - **Bad input is dead-lettered with its reason**: a message that fails validation
//!   (`invalid message: …`), a bad event token (`bad event token`), and, when InfluxDB rejects a
//!   run's final record for good, the deliveries the run still holds (`InfluxDB rejected the
//!   points: …`).
//! - **Checkpoints**: every snapshot interval once the tick's snapshot points are written (or
//!   [`CHECKPOINT_AFTER_TICK`] after the tick, whichever comes first); as soon as
//!   `checkpoint_after` deliveries were taken in since the last (while a tick's snapshot points
//!   are being written, only once three quarters of the prefetch are unacked); when a run's final
//!   record is written (its tombstone); and a last one at shutdown. At most
//!   [`MAX_CHECKPOINTS_IN_FLIGHT`] are sent and not confirmed; one due beyond that is sent at the
//!   next confirm. So the deliveries held unacked are about those since the last checkpoint,
//!   whatever the number or length of the runs (and never more than the broker's prefetch).
//! - **Writes**: one write at a time of the outboxes' next batches ([`CONCURRENT_WRITES`]
//!   requests of up to [`MAX_BATCH_BYTES`] each), the next as soon as one is done, so points
//!   computed while InfluxDB is down wait in the outboxes and consuming goes on.
//! - **Status**: the running set is published at each tick, every `min(interval, 5 s)`, and
//!   within [`STATUS_COALESCE`] of a change.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lifecycle::{Batch, DeliveryId, Effects, Lifecycle};
use protocol::{verify_event_token, Envelope};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use crate::checkpoints::{cycle_message, RunsMessages};
use crate::outbox::{WriteOutcome, MAX_BATCH_BYTES};

/// After a tick, the checkpoint waits this long at most for the tick's snapshot points to be
/// written. Serializing a checkpoint holds the loop, which also drives the write: at 10,000 runs
/// a checkpoint of every run takes about a second, and in the middle of the tick's write it
/// delayed the last snapshots by that much (`bench/pipeline.sh`).
pub(crate) const CHECKPOINT_AFTER_TICK: Duration = Duration::from_secs(5);

/// Batches written at the same time: InfluxDB takes concurrent writes on several cores, and at
/// 10,000 runs the two requests that carry a tick's snapshot points land together.
pub(crate) const CONCURRENT_WRITES: usize = 2;

/// A change of the running set is published this long after it at most: the changes of a burst
/// (10,000 registrations) go out as one status message, not one each (each carries the whole
/// set).
pub(crate) const STATUS_COALESCE: Duration = Duration::from_millis(500);

/// Checkpoints sent and not confirmed yet, at most; a checkpoint due beyond it is sent at the
/// next confirm.
pub(crate) const MAX_CHECKPOINTS_IN_FLIGHT: usize = 2;

/// The status is published at least this often (or every snapshot interval when shorter), so
/// the API's `isrunning` stays fresh.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// A delivery as the policy sees it: its tag, its body, and `meta`, whatever else the executor
/// needs to dead-letter it (the routing key and properties), carried through untouched.
#[derive(Debug)]
pub(crate) struct Inbound<M> {
    pub(crate) tag: DeliveryId,
    pub(crate) body: Vec<u8>,
    pub(crate) meta: M,
}

/// What the executor does, in the order given. Each event's actions end with one [`Action::Ack`]
/// of everything that event settled, so the acks of a burst go out together.
#[derive(Debug)]
pub(crate) enum Action<M> {
    /// Ack these deliveries (each is acked exactly once over the session).
    Ack(Vec<DeliveryId>),
    /// Publish the delivery to the dead-letter exchange with `reason` in its
    /// `x-loadtest-dead-reason` header, then ack it.
    DeadLetter {
        delivery: Inbound<M>,
        reason: String,
    },
    /// Publish this `event.completed` envelope (JSON): a run's final record is written.
    PublishCompleted(Vec<u8>),
    /// Publish the running set (JSON, [`protocol::RunningSet`]) to the status fanout; best
    /// effort.
    PublishStatus(Vec<u8>),
    /// Publish these deflated checkpoint-stream messages (the records, then the `cycle`), in
    /// order, and report their confirms to [`Policy::confirmed`] in the order sent.
    SendCheckpoint(Vec<Vec<u8>>),
    /// Write these batches (at the same time) and report the outcome to [`Policy::written`].
    /// Never sent while a write is in flight.
    StartWrite(Vec<Batch>),
}

/// Where the policy's wall-clock time comes from (the lifecycle's `now`, tick alignment).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Clock {
    /// The system clock.
    System,
    /// Starts at `wall` at tokio's `instant` and moves with tokio's clock (tests with paused
    /// time).
    #[cfg(test)]
    Tokio {
        wall: DateTime<Utc>,
        instant: Instant,
    },
}

impl Clock {
    /// A test clock reading `wall` now.
    #[cfg(test)]
    pub(crate) fn tokio(wall: DateTime<Utc>) -> Self {
        Clock::Tokio {
            wall,
            instant: Instant::now(),
        }
    }

    fn now(self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            #[cfg(test)]
            Clock::Tokio { wall, instant } => {
                wall + chrono::Duration::from_std(instant.elapsed()).unwrap_or_default()
            }
        }
    }

    /// The instant of the next wall-clock multiple of `interval`, a few ms late so the aligned
    /// timestamp is the one just reached.
    fn next_aligned(self, interval: Duration) -> Instant {
        let now = self.now();
        let next = protocol::time::align_down(now, interval) + interval.as_nanos() as i64;
        let wait = (next - protocol::time::unix_nanos(now)).max(0) as u64;
        Instant::now() + Duration::from_nanos(wait) + Duration::from_millis(5)
    }
}

/// What the policy needs besides the lifecycle.
#[derive(Debug, Clone)]
pub(crate) struct PolicySettings {
    /// The lifecycle's snapshot interval: ticks come at its wall-clock multiples.
    pub(crate) snapshot_interval: Duration,
    /// The broker's prefetch: the most deliveries it hands out unacked.
    pub(crate) prefetch: u16,
    /// Deliveries taken in since the last checkpoint that call for the next
    /// ([`crate::settings::CheckpointSettings::threshold`]).
    pub(crate) checkpoint_after: usize,
    /// Event-token secret; `None` disables verification.
    pub(crate) token_secret: Option<SecretString>,
    pub(crate) clock: Clock,
}

/// The timers the loop sleeps on ([`Policy::deadline`]).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Timer {
    /// The cap on how long a tick's checkpoint waits for the tick's write.
    Checkpoint,
    Tick,
    Status,
}

/// The leader's state for one broker session: the run lifecycle, the deliveries held, the
/// checkpoints in flight, the write in flight and the timers.
#[derive(Debug)]
pub(crate) struct Policy<M> {
    lifecycle: Lifecycle,
    settings: PolicySettings,
    /// Valid deliveries not settled yet (each is acked or dead-lettered exactly once: a second
    /// ack would be a channel error, PRECONDITION_FAILED, that ends the session).
    held: HashMap<DeliveryId, Inbound<M>>,
    /// Deliveries held since the last checkpoint was sent.
    uncovered: usize,
    /// The deliveries each checkpoint in flight covers, oldest first.
    in_flight: VecDeque<Vec<DeliveryId>>,
    /// A checkpoint is due but [`MAX_CHECKPOINTS_IN_FLIGHT`] are in flight: sent at the next
    /// confirm.
    checkpoint_wanted: bool,
    writing: bool,
    /// Set after a tick while its snapshot points are being written: the tick's checkpoint is
    /// sent once they are, or at this instant.
    checkpoint_at: Option<Instant>,
    /// A run ended (its final record is written): its tombstone is due.
    tombstone_due: bool,
    next_tick: Instant,
    next_status: Instant,
    /// When the running set first changed since the status was last published.
    status_changed: Option<Instant>,
    /// Shutdown began: no more writes, and no checkpoint but the last.
    stopping: bool,
    /// Settled this event, acked at its end.
    acks: Vec<DeliveryId>,
    out: Vec<Action<M>>,
}

impl<M> Policy<M> {
    /// The policy over `lifecycle` (restored runs included); the first tick is at the next
    /// wall-clock multiple of the snapshot interval.
    pub(crate) fn new(lifecycle: Lifecycle, settings: PolicySettings) -> Self {
        let next_tick = settings.clock.next_aligned(settings.snapshot_interval);
        let next_status = Instant::now() + settings.snapshot_interval.min(STATUS_EVERY);
        Self {
            lifecycle,
            settings,
            held: HashMap::new(),
            uncovered: 0,
            in_flight: VecDeque::new(),
            checkpoint_wanted: false,
            writing: false,
            checkpoint_at: None,
            tombstone_due: false,
            next_tick,
            next_status,
            status_changed: None,
            stopping: false,
            acks: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Deliveries held unacked.
    #[cfg(test)]
    pub(crate) fn unacked(&self) -> usize {
        self.held.len()
    }

    /// The session begins: the status goes out, and the restored outboxes (points of an outage,
    /// or of a writer that died) are written at once.
    pub(crate) fn start(&mut self) -> Vec<Action<M>> {
        self.publish_status();
        self.start_write();
        self.end_event()
    }

    /// A delivery came; `ready` hands out those already received behind it without waiting
    /// (`Ok(None)` when there are none; an error ends the session). They are taken in up to the
    /// prefetch, or until a checkpoint is due.
    ///
    /// # Errors
    ///
    /// `ready`'s, or serializing a checkpoint (the session must end: the broker redelivers).
    pub(crate) fn delivered(
        &mut self,
        delivery: Inbound<M>,
        ready: impl FnMut() -> anyhow::Result<Option<Inbound<M>>>,
    ) -> anyhow::Result<Vec<Action<M>>> {
        self.take(delivery);
        self.take_ready(ready, true)?;
        if self.checkpoint_due() {
            self.request_checkpoint()?;
        }
        self.start_write();
        Ok(self.end_event())
    }

    /// The oldest checkpoint in flight is confirmed: the deliveries it covers are acked.
    ///
    /// # Errors
    ///
    /// Serializing the next checkpoint, when one is due.
    pub(crate) fn confirmed(&mut self) -> anyhow::Result<Vec<Action<M>>> {
        for tag in self.in_flight.pop_front().unwrap_or_default() {
            self.ack(tag);
        }
        self.count_unacked();
        if self.checkpoint_wanted || (!self.stopping && self.checkpoint_due()) {
            self.request_checkpoint()?;
        }
        Ok(self.end_event())
    }

    /// The write in flight is done. Written points leave the outboxes (a finalizing run whose
    /// outbox is empty ends); a rejected final record dead-letters the run's deliveries. Then
    /// the next batches go out, and the checkpoint that waited for the write (a tick's, or a
    /// tombstone) is sent.
    ///
    /// # Errors
    ///
    /// Serializing the checkpoint.
    pub(crate) fn written(&mut self, outcome: WriteOutcome) -> anyhow::Result<Vec<Action<M>>> {
        self.writing = false;
        for part in &outcome.written {
            metrics::counter!("loadtest_writer_points_written_total").increment(part.points as u64);
            tracing::debug!(event_id = %part.event_id, points = part.points, "points written");
            let fx = self.lifecycle.written(part);
            self.tombstone_due |= !fx.completed.is_empty();
            self.apply(fx);
        }
        for (part, reason) in &outcome.rejected {
            tracing::error!(event_id = %part.event_id, error = %reason, final_record = part.final_record, "points rejected; dropping them");
            metrics::counter!("loadtest_writer_points_rejected_total")
                .increment(part.points as u64);
            let reason = format!("InfluxDB rejected the points: {reason}");
            for tag in self.lifecycle.rejected(part) {
                self.dead_letter(tag, &reason);
            }
            self.tombstone_due |= part.final_record;
        }
        // The next batch goes out before any checkpoint is serialized.
        self.start_write();
        // The tick's snapshot points are all written (its request points may still be going
        // out), or a run ended outside a tick's write: the checkpoint they waited for.
        let snapshots_written = !self.writing || self.lifecycle.pending_snapshots() == 0;
        let waited = match self.checkpoint_at {
            Some(_) => snapshots_written,
            None => self.tombstone_due,
        };
        if waited && !self.stopping {
            self.checkpoint_at = None;
            self.request_checkpoint()?;
        }
        Ok(self.end_event())
    }

    /// When the loop must call [`Policy::timer`] next.
    pub(crate) fn deadline(&self) -> Instant {
        self.timers()
            .into_iter()
            .flatten()
            .map(|(at, _)| at)
            .min()
            .unwrap_or(self.next_tick)
    }

    /// The earliest timer due: the snapshot tick (after taking in what `ready` has, as
    /// [`Policy::delivered`] does), the checkpoint a tick's write held back, or the status.
    ///
    /// # Errors
    ///
    /// `ready`'s, or serializing a checkpoint.
    pub(crate) fn timer(
        &mut self,
        ready: impl FnMut() -> anyhow::Result<Option<Inbound<M>>>,
    ) -> anyhow::Result<Vec<Action<M>>> {
        let now = Instant::now();
        let due = self
            .timers()
            .into_iter()
            .flatten()
            .filter(|(at, _)| *at <= now)
            .min_by_key(|(at, _)| *at)
            .map(|(_, timer)| timer);
        match due {
            Some(Timer::Tick) => self.tick(ready)?,
            Some(Timer::Checkpoint) => {
                self.checkpoint_at = None;
                self.request_checkpoint()?;
            }
            Some(Timer::Status) => {
                self.next_status = now + self.status_every();
                self.publish_status();
            }
            None => {}
        }
        Ok(self.end_event())
    }

    /// Shutdown: no more writes (the one in flight was cancelled: its points stay in the
    /// outboxes), and a last checkpoint of what is folded in, so the next writer has it without
    /// waiting for redeliveries. The executor then awaits the confirms in flight, reporting each
    /// to [`Policy::confirmed`].
    ///
    /// # Errors
    ///
    /// Serializing the checkpoint.
    pub(crate) fn shutdown(&mut self) -> anyhow::Result<Vec<Action<M>>> {
        self.stopping = true;
        self.writing = false;
        self.checkpoint_at = None;
        self.request_checkpoint()?;
        Ok(self.end_event())
    }

    fn status_every(&self) -> Duration {
        self.settings.snapshot_interval.min(STATUS_EVERY)
    }

    fn timers(&self) -> [Option<(Instant, Timer)>; 3] {
        let status = match self.status_changed {
            Some(at) => self.next_status.min(at + STATUS_COALESCE),
            None => self.next_status,
        };
        [
            self.checkpoint_at.map(|at| (at, Timer::Checkpoint)),
            Some((self.next_tick, Timer::Tick)),
            Some((status, Timer::Status)),
        ]
    }

    /// Takes in what has already arrived, snapshots every running run, and starts writing the
    /// snapshots; the tick's checkpoint is sent at once when there is nothing to write, or once
    /// the snapshot points are written (at most [`CHECKPOINT_AFTER_TICK`] later).
    fn tick(
        &mut self,
        ready: impl FnMut() -> anyhow::Result<Option<Inbound<M>>>,
    ) -> anyhow::Result<()> {
        self.next_tick = self
            .settings
            .clock
            .next_aligned(self.settings.snapshot_interval);
        // The prefetched deliveries first, so the snapshots include them.
        self.take_ready(ready, false)?;
        let started = std::time::Instant::now();
        let fx = self.lifecycle.tick(self.settings.clock.now());
        tracing::debug!(
            runs = self.lifecycle.runs(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "tick computed"
        );
        self.apply(fx);
        self.start_write();
        if self.writing {
            // A tick that comes while an earlier tick's write still goes (ticks shorter than the
            // cap, or InfluxDB slow) moves the cap: a checkpoint of every run in the middle of
            // the write would slow it further.
            self.checkpoint_at = Some(Instant::now() + CHECKPOINT_AFTER_TICK);
        } else {
            self.request_checkpoint()?;
        }
        metrics::gauge!("loadtest_writer_pending_snapshots")
            .set(self.lifecycle.pending_snapshots() as f64);
        self.publish_status();
        Ok(())
    }

    /// Takes in the deliveries `ready` has, up to the prefetch; with `until_checkpoint`, stops
    /// once a checkpoint is due.
    fn take_ready(
        &mut self,
        mut ready: impl FnMut() -> anyhow::Result<Option<Inbound<M>>>,
        until_checkpoint: bool,
    ) -> anyhow::Result<()> {
        for _ in 0..self.settings.prefetch.max(1) {
            if until_checkpoint && self.checkpoint_due() {
                break;
            }
            match ready()? {
                Some(d) => self.take(d),
                None => break,
            }
        }
        Ok(())
    }

    /// Validates a delivery and feeds it to the lifecycle, holding it until the lifecycle says
    /// it may be acked.
    fn take(&mut self, d: Inbound<M>) {
        let tag = d.tag;
        let envelope = match Envelope::from_json(&d.body) {
            Ok(env) => env,
            Err(e) => {
                metrics::counter!("loadtest_writer_messages_total", "kind" => "unknown", "outcome" => "invalid").increment(1);
                tracing::warn!(delivery_tag = tag, error = %e, "invalid message; dead-lettering");
                let reason = format!("invalid message: {e}");
                self.out.push(Action::DeadLetter {
                    delivery: d,
                    reason,
                });
                return;
            }
        };
        if let Some(secret) = &self.settings.token_secret {
            if !verify_event_token(
                secret.expose_secret().as_bytes(),
                &envelope.event_id,
                &envelope.token,
            ) {
                metrics::counter!("loadtest_writer_messages_total", "kind" => envelope.body.kind(), "outcome" => "bad_token").increment(1);
                tracing::warn!(delivery_tag = tag, event_id = %envelope.event_id, "bad event token; dead-lettering");
                self.out.push(Action::DeadLetter {
                    delivery: d,
                    reason: "bad event token".into(),
                });
                return;
            }
        }
        self.uncovered += 1;
        self.held.insert(tag, d);
        metrics::counter!("loadtest_writer_messages_total", "kind" => envelope.body.kind(), "outcome" => "accepted").increment(1);
        let fx = self
            .lifecycle
            .handle(tag, envelope, self.settings.clock.now());
        self.apply(fx);
        self.count_unacked();
    }

    /// Acks what is superseded, counts dropped snapshots, publishes `event.completed`, and notes
    /// a change of the running set. (The points computed wait in the outboxes:
    /// [`Policy::start_write`].)
    fn apply(&mut self, fx: Effects) {
        for tag in fx.ack {
            self.ack(tag);
        }
        if fx.dropped_snapshots > 0 {
            metrics::counter!("loadtest_writer_snapshots_dropped_total")
                .increment(fx.dropped_snapshots);
        }
        for env in fx.completed {
            self.out.push(Action::PublishCompleted(env.to_json()));
        }
        if fx.running_changed && self.status_changed.is_none() {
            self.status_changed = Some(Instant::now());
        }
    }

    /// Whether the deliveries taken in since the last checkpoint call for the next. While a
    /// tick's snapshot points are being written only once three quarters of the prefetch are
    /// unacked: right after a tick every run has changed, and serializing all of them (about a
    /// second at 10,000 runs) would hold the loop that drives the tick's write.
    fn checkpoint_due(&self) -> bool {
        self.uncovered >= self.settings.checkpoint_after
            && (self.checkpoint_at.is_none()
                || self.held.len() >= usize::from(self.settings.prefetch) * 3 / 4)
    }

    /// Sends a checkpoint now, or at the next confirm when [`MAX_CHECKPOINTS_IN_FLIGHT`] are in
    /// flight.
    fn request_checkpoint(&mut self) -> anyhow::Result<()> {
        if self.in_flight.len() >= MAX_CHECKPOINTS_IN_FLIGHT {
            self.checkpoint_wanted = true;
            return Ok(());
        }
        self.send_checkpoint()
    }

    /// Checkpoints the changed runs (and tombstones): the records go out as stream messages, and
    /// the deliveries they cover wait for the confirm.
    fn send_checkpoint(&mut self) -> anyhow::Result<()> {
        // Each record is serialized as the lifecycle hands it over: no copy of the runs' state.
        let started = std::time::Instant::now();
        let now = self.settings.clock.now();
        let mut runs = RunsMessages::new();
        let mut failed = None;
        let cp = self.lifecycle.checkpoint_each(now, |r| {
            if failed.is_none() {
                failed = runs.push(r).err();
            }
        });
        if let Some(e) = failed {
            // The runs count as checkpointed now: the session must end (the broker redelivers).
            return Err(e);
        }
        let mut bodies = runs.finish()?;
        bodies.push(cycle_message(now, cp.low_water)?);
        self.uncovered = 0;
        self.tombstone_due = false;
        self.checkpoint_wanted = false;
        let bytes: usize = bodies.iter().map(Vec::len).sum();
        metrics::counter!("loadtest_writer_checkpoints_total").increment(1);
        metrics::counter!("loadtest_writer_checkpoint_records_total").increment(cp.records as u64);
        metrics::counter!("loadtest_writer_checkpoint_bytes_total").increment(bytes as u64);
        tracing::debug!(
            records = cp.records,
            bytes,
            covers = cp.covers.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "checkpoint serialized"
        );
        self.in_flight.push_back(cp.covers);
        self.out.push(Action::SendCheckpoint(bodies));
        Ok(())
    }

    /// Starts writing the outboxes' next batches, unless a write is in flight or nothing waits.
    fn start_write(&mut self) {
        if self.writing || self.stopping {
            return;
        }
        let batches = self.lifecycle.batches(MAX_BATCH_BYTES, CONCURRENT_WRITES);
        if !batches.is_empty() {
            self.writing = true;
            self.out.push(Action::StartWrite(batches));
        }
    }

    /// The running set goes to the status fanout (only the leader publishes it: a standing-by
    /// writer would publish an empty set).
    fn publish_status(&mut self) {
        self.status_changed = None;
        let running = self.lifecycle.running();
        metrics::gauge!("loadtest_writer_runs_running").set(running.running as f64);
        if let Ok(body) = serde_json::to_vec(&running) {
            self.out.push(Action::PublishStatus(body));
        }
    }

    /// Settles a held delivery: acked at the end of this event. A tag that is not held any more
    /// was settled already.
    fn ack(&mut self, tag: DeliveryId) {
        if self.held.remove(&tag).is_some() {
            self.acks.push(tag);
        }
    }

    fn dead_letter(&mut self, tag: DeliveryId, reason: &str) {
        if let Some(delivery) = self.held.remove(&tag) {
            self.out.push(Action::DeadLetter {
                delivery,
                reason: reason.to_string(),
            });
        }
    }

    fn count_unacked(&self) {
        metrics::gauge!("loadtest_writer_unacked_deliveries").set(self.held.len() as f64);
    }

    /// This event's actions, its acks last (in the order settled: a checkpoint's registers
    /// first).
    fn end_event(&mut self) -> Vec<Action<M>> {
        if !self.acks.is_empty() {
            let acks = std::mem::take(&mut self.acks);
            self.out.push(Action::Ack(acks));
        }
        std::mem::take(&mut self.out)
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
