//! Direct AMQP access to RabbitMQ: publish (poison) messages with a confirm, read a
//! dead-letter queue, count a queue's messages.

use std::process::Command;

use anyhow::Context;

use crate::nodes::RabbitNode;

/// The shared RabbitMQ the tests use.
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Connects to RabbitMQ at `url`.
pub async fn amqp_connect(url: &str) -> anyhow::Result<lapin::Connection> {
    lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .context("connecting to RabbitMQ (start it with `rabbitmq-server -detached`)")
}

/// Publishes `body` (persistent, JSON, not `mandatory`) to `exchange` with `routing_key` on the
/// shared broker, through the services' own confirming publisher, and waits for the confirm; a
/// nack is an error.
pub async fn amqp_publish(exchange: &str, routing_key: &str, body: &[u8]) -> anyhow::Result<()> {
    amqp_publish_all(exchange, &[(routing_key.to_string(), body.to_vec())]).await
}

/// Publishes every `(routing key, body)` of `messages` (persistent, JSON, not `mandatory`) to
/// `exchange`, back to back on one confirm-mode channel, then waits for every confirm; a nack is
/// an error.
pub async fn amqp_publish_all(
    exchange: &str,
    messages: &[(String, Vec<u8>)],
) -> anyhow::Result<()> {
    use kit::amqp::{AmqpSettings, Message, Publisher};
    let publisher = Publisher::new(&AmqpSettings::new(AMQP_URL, exchange), "loadtest-e2e");
    let batch: Vec<Message<'_>> = messages
        .iter()
        .map(|(key, body)| Message::new(key, body).not_mandatory())
        .collect();
    let sent = publisher.send_all(&batch).await;
    publisher.close().await;
    sent.with_context(|| format!("publishing {} message(s) to {exchange}", messages.len()))
}

/// A dead-lettered message: its body and the writer's `x-loadtest-dead-reason` header.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The message body.
    pub body: Vec<u8>,
    /// The `x-loadtest-dead-reason` header, when there is one.
    pub reason: Option<String>,
}

/// Takes every message out of `queue` (basic_get, acked).
pub async fn amqp_take_all(
    conn: &lapin::Connection,
    queue: &str,
) -> anyhow::Result<Vec<DeadLetter>> {
    use lapin::options::{BasicAckOptions, BasicGetOptions};
    let ch = conn.create_channel().await?;
    let mut out = Vec::new();
    while let Some(msg) = ch.basic_get(queue, BasicGetOptions::default()).await? {
        let reason = msg
            .delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("x-loadtest-dead-reason").cloned())
            .map(|v| match v {
                lapin::types::AMQPValue::LongString(s) => s.to_string(),
                other => format!("{other:?}"),
            });
        out.push(DeadLetter {
            body: msg.delivery.data.clone(),
            reason,
        });
        msg.delivery.ack(BasicAckOptions::default()).await?;
    }
    let _ = ch.close(200, "done").await;
    Ok(out)
}

/// Ready messages in `queue` (passive declare; unacked deliveries are not counted).
pub async fn amqp_ready(conn: &lapin::Connection, queue: &str) -> anyhow::Result<u32> {
    use lapin::options::QueueDeclareOptions;
    let ch = conn.create_channel().await?;
    let q = ch
        .queue_declare(
            queue,
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await?;
    let _ = ch.close(200, "done").await;
    Ok(q.message_count())
}

/// Messages in `queue`, ready plus unacked, as `rabbitmqctl list_queues` reports them (the
/// shared node, or `node` when given).
pub fn rabbit_queue_messages(node: Option<&RabbitNode>, queue: &str) -> anyhow::Result<u64> {
    rabbit_queue_column(node, queue, "messages")
}

/// Deliveries of `queue` handed to consumers and not acked yet (`messages_unacknowledged` of
/// `rabbitmqctl list_queues`; the shared node, or `node` when given).
pub fn rabbit_queue_unacked(node: Option<&RabbitNode>, queue: &str) -> anyhow::Result<u64> {
    rabbit_queue_column(node, queue, "messages_unacknowledged")
}

fn rabbit_queue_column(
    node: Option<&RabbitNode>,
    queue: &str,
    column: &str,
) -> anyhow::Result<u64> {
    let args = ["list_queues", "-q", "--no-table-headers", "name", column];
    let out = match node {
        Some(n) => n.ctl(&args)?,
        None => {
            let o = Command::new("rabbitmqctl").args(args).output()?;
            String::from_utf8_lossy(&o.stdout).to_string()
        }
    };
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(queue)).then(|| w.next().and_then(|n| n.parse().ok()))?
        })
        .next()
        .with_context(|| format!("queue {queue} not listed:\n{out}"))
}

/// Whether queue `queue` exists (passive declare).
pub async fn amqp_queue_exists(conn: &lapin::Connection, queue: &str) -> anyhow::Result<bool> {
    use lapin::options::QueueDeclareOptions;
    let ch = conn.create_channel().await?;
    let found = ch
        .queue_declare(
            queue,
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .is_ok();
    let _ = ch.close(200, "done").await;
    Ok(found)
}
