//! A broker session of the writer, and the topology it declares. The run lifecycle itself knows
//! nothing of AMQP.
//!
//! A session connects, declares the topology (queues, exchanges, the checkpoint stream), then
//! takes the leader lock (standing by while another writer holds it: see [`crate::lock`]). The
//! leader restores the running runs from the checkpoint stream ([`crate::checkpoints`]) and
//! consumes the writer's queue ([`crate::leader`], whose rules are [`crate::policy`]'s):
//! deliveries are acked once a confirmed checkpoint covers them, or when superseded; points are
//! written beside the consume loop, so an InfluxDB outage does not stop consumption. On any
//! broker error the session ends (with it the lock, and the unacked deliveries go back to the
//! queue) and the writer reconnects with backoff (reset once a session was established); when it
//! is leader again it restores from the stream like any new writer.

use std::time::{Duration, Instant};

use anyhow::Context;
use kit::amqp::{AmqpSettings, Publisher};
use kit::backoff::{Backoff, SessionError};
use lapin::options::{
    BasicConsumeOptions, BasicQosOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ExchangeKind};
use lifecycle::{Lifecycle, LifecycleSettings};
use protocol::routing;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::checkpoints::{self, CheckpointStream, CLOCK_SKEW};
use crate::leader::Leader;
use crate::lock;
use crate::policy::{Clock, Policy, PolicySettings};
use crate::settings::CheckpointSettings;
use crate::sink::AnySink;

/// Declares the exchanges, the writer's quorum queue (single active consumer, delivery limit,
/// dead-lettering) and the dead-letter queue. Idempotent. (The checkpoint stream:
/// `checkpoints::declare_stream`.)
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

/// The writer's settings, resolved, and its sink: what every session needs.
#[derive(Debug)]
pub(crate) struct Worker {
    pub(crate) amqp: AmqpSettings,
    pub(crate) lifecycle: LifecycleSettings,
    pub(crate) checkpoint: CheckpointSettings,
    pub(crate) sink: AnySink,
    /// Event-token secret; `None` disables verification.
    pub(crate) token_secret: Option<SecretString>,
}

/// Consumes until `shutdown`, reconnecting on broker errors with capped exponential backoff
/// (0.5 s doubling to 10 s), reset once a session was established: a broker blip costs the
/// first delay, not the cap.
pub(crate) async fn run(worker: Worker, shutdown: CancellationToken) -> anyhow::Result<()> {
    let publisher = Publisher::new(&worker.amqp, "loadtest-writer-publisher");
    let writer_id = Uuid::new_v4();
    let backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    let (w, p, stop) = (&worker, &publisher, &shutdown);
    kit::backoff::reconnect("broker session", backoff, stop, move || {
        session(w, p, writer_id, stop)
    })
    .await;
    publisher.close().await;
    Ok(())
}

/// One broker session: connect, declare, take the leader lock, restore, consume until shutdown
/// (`Ok`) or a broker error. It counts as established once the topology is declared.
async fn session(
    worker: &Worker,
    publisher: &Publisher,
    writer_id: Uuid,
    shutdown: &CancellationToken,
) -> Result<(), SessionError> {
    let conn = kit::amqp::connect(&worker.amqp, "loadtest-writer")
        .await
        .context("connecting to RabbitMQ")
        .map_err(SessionError::before)?;
    let channel = conn.create_channel().await.map_err(SessionError::before)?;
    declare_topology(&channel, &worker.amqp)
        .await
        .map_err(SessionError::before)?;
    checkpoints::declare_stream(&channel, &worker.amqp, &worker.checkpoint)
        .await
        .map_err(SessionError::before)?;
    tracing::info!(queue = %worker.amqp.queue(), stream = %worker.checkpoint.stream_name(&worker.amqp), "connected; topology declared");
    let result = lead(&conn, channel, worker, publisher, writer_id, shutdown).await;
    metrics::gauge!("loadtest_writer_leader").set(0.0);
    metrics::gauge!("loadtest_writer_unacked_deliveries").set(0.0);
    // Unacked deliveries go back to the queue when the connection closes, and the lock is
    // released: nothing is lost.
    let _ = conn.close(200, "writer stopping").await;
    result.map_err(SessionError::after)
}

/// Takes the leader lock (standing by while another writer holds it), restores the runs from
/// the checkpoint stream and consumes until shutdown or a broker error.
async fn lead(
    conn: &Connection,
    channel: Channel,
    worker: &Worker,
    publisher: &Publisher,
    writer_id: Uuid,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let lock = CheckpointSettings::lock_name(&worker.amqp);
    let standing_by =
        || tracing::info!(lock = %lock, "standing by: another writer holds the leader lock");
    let retry = worker.checkpoint.lock_retry()?;
    let Some(_lock_channel) = lock::take_lock(conn, &lock, retry, shutdown, standing_by).await?
    else {
        return Ok(());
    };
    let took = Instant::now();
    let stream = CheckpointStream::open(
        conn,
        worker.checkpoint.stream_name(&worker.amqp),
        writer_id,
        worker.amqp.confirm_timeout(),
    )
    .await?;
    // Every running run has a record within the last refresh (plus a tick), unless no writer
    // was active: the restore reads further back then.
    let window =
        worker.lifecycle.checkpoint_refresh + 2 * worker.lifecycle.snapshot_interval + CLOCK_SKEW;
    let restored = stream.restore(conn, window).await?;
    let mut lifecycle = Lifecycle::new(worker.lifecycle.clone());
    // The writer writes the outboxes' line protocol; the points themselves are not needed.
    lifecycle.keep_points_in_effects(false);
    let runs = lifecycle.restore(restored.records);
    channel
        .basic_qos(worker.amqp.prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            &worker.amqp.queue(),
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    metrics::gauge!("loadtest_writer_leader").set(1.0);
    tracing::info!(
        lock = %lock,
        queue = %worker.amqp.queue(),
        sink = %worker.sink.describe(),
        runs,
        stream_messages = restored.messages,
        skipped = restored.skipped,
        passes = restored.passes,
        restore_ms = took.elapsed().as_millis() as u64,
        "active consumer: leader lock taken, runs restored; consuming"
    );
    let policy = Policy::new(
        lifecycle,
        PolicySettings {
            snapshot_interval: worker.lifecycle.snapshot_interval,
            prefetch: worker.amqp.prefetch,
            checkpoint_after: worker.checkpoint.threshold(worker.amqp.prefetch),
            token_secret: worker.token_secret.clone(),
            clock: Clock::System,
        },
    );
    let leader = Leader {
        consume: channel,
        publisher,
        stream,
        sink: &worker.sink,
        amqp: &worker.amqp,
        shutdown,
    };
    leader.run(policy, &mut consumer).await
}
