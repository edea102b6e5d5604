//! `loadtest-writer redrive`: moves dead-lettered messages back to the pipeline once their
//! cause is fixed (a database created, a token corrected, a bug fixed).
//!
//! Each message of `<exchange>.dead` is republished to the topic exchange with its original
//! routing key (our `x-loadtest-routing-key` header, else the first of RabbitMQ's `x-death`
//! routing keys, else the envelope's kind), without the dead-letter headers, through the kit's
//! confirming publisher (`mandatory`); only then is it acked in the dead-letter queue. A nack or a
//! returned message stops the redrive with an error; the message stays in the dead-letter queue. A message whose routing key cannot be
//! found stays where it is. Messages the writer dead-letters again simply come back to the queue.

use anyhow::Context;
use kit::amqp::{AmqpSettings, Message, PublishError, Publisher};
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions};
use lapin::types::{AMQPValue, FieldTable};

use crate::session::declare_topology;

/// What a redrive did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RedriveReport {
    /// Messages republished to the exchange.
    pub moved: u64,
    /// Messages left in the dead-letter queue (no routing key could be found).
    pub kept: u64,
}

fn header_text(headers: &FieldTable, key: &str) -> Option<String> {
    match headers.inner().get(key)? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

/// The routing key a dead-lettered message was first published with.
fn original_routing_key(headers: &FieldTable, data: &[u8]) -> Option<String> {
    if let Some(k) = header_text(headers, "x-loadtest-routing-key") {
        return Some(k);
    }
    if let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") {
        for death in deaths.as_slice() {
            if let AMQPValue::FieldTable(t) = death {
                if let Some(AMQPValue::FieldArray(keys)) = t.inner().get("routing-keys") {
                    if let Some(AMQPValue::LongString(k)) = keys.as_slice().first() {
                        return Some(k.to_string());
                    }
                }
            }
        }
    }
    let v: serde_json::Value = serde_json::from_slice(data).ok()?;
    match v.get("kind")?.as_str()? {
        "registered" => Some(protocol::routing::REGISTERED.into()),
        "stats" => Some(protocol::routing::STATS.into()),
        "committed" => Some(protocol::routing::COMMITTED.into()),
        _ => None,
    }
}

/// Moves up to `limit` messages from `<exchange>.dead` back to `<exchange>`.
pub async fn redrive(amqp: &AmqpSettings, limit: u64) -> anyhow::Result<RedriveReport> {
    let conn = kit::amqp::connect(amqp, "loadtest-writer-redrive")
        .await
        .context("connecting to RabbitMQ")?;
    let ch = conn.create_channel().await?;
    declare_topology(&ch, amqp).await?;
    let publisher = Publisher::new(amqp, "loadtest-writer-redrive");
    let mut report = RedriveReport::default();
    let mut kept_tags = Vec::new();
    while report.moved + report.kept < limit {
        let Some(msg) = ch
            .basic_get(&amqp.dead_queue(), BasicGetOptions { no_ack: false })
            .await
            .context("reading the dead-letter queue")?
        else {
            break;
        };
        let d = msg.delivery;
        let headers = d.properties.headers().clone().unwrap_or_default();
        let Some(key) = original_routing_key(&headers, &d.data) else {
            tracing::warn!(
                delivery_tag = d.delivery_tag,
                "no routing key for a dead-lettered message; kept"
            );
            kept_tags.push(d.delivery_tag);
            report.kept += 1;
            continue;
        };
        let mut clean = FieldTable::default();
        for (k, v) in headers.inner() {
            let k = k.as_str();
            if !(k.starts_with("x-death")
                || k.starts_with("x-loadtest-")
                || k.starts_with("x-first-death")
                || k.starts_with("x-last-death"))
            {
                clean.insert(k.into(), v.clone());
            }
        }
        let props = d.properties.clone().with_headers(clean);
        match publisher
            .send(Message::new(&key, &d.data).properties(props))
            .await
        {
            Ok(()) => {}
            Err(e @ (PublishError::Nacked | PublishError::Unroutable(_))) => anyhow::bail!(
                "the broker refused the republished message (routing key {key}: {e}); it is still in {}",
                amqp.dead_queue()
            ),
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "republishing to {} (the message is still in {})",
                    amqp.exchange,
                    amqp.dead_queue()
                )))
            }
        }
        ch.basic_ack(d.delivery_tag, BasicAckOptions::default())
            .await?;
        report.moved += 1;
    }
    // Messages we could not route go back to the dead-letter queue as they were.
    for tag in kept_tags {
        ch.basic_nack(
            tag,
            BasicNackOptions {
                requeue: true,
                ..Default::default()
            },
        )
        .await?;
    }
    publisher.close().await;
    let _ = conn.close(200, "redrive done").await;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_key_comes_from_our_header_then_the_kind() {
        let mut h = FieldTable::default();
        h.insert(
            "x-loadtest-routing-key".into(),
            AMQPValue::LongString("event.stats".into()),
        );
        assert_eq!(
            original_routing_key(&h, b"").as_deref(),
            Some("event.stats")
        );
        let none = FieldTable::default();
        assert_eq!(
            original_routing_key(&none, br#"{"kind":"committed"}"#).as_deref(),
            Some("event.committed")
        );
        assert_eq!(original_routing_key(&none, b"not json"), None);
    }
}
