//! The checkpoint stream: the writer's run state outside the process.
//!
//! - **Stream** `<exchange>.writer.state` (a RabbitMQ stream, replicated by the broker,
//!   retention `x-max-age`), fed through the fanout exchange of the same name. Messages are JSON
//!   ([`StreamMessage`]), deflated (`content-encoding: deflate`: stats and line protocol shrink
//!   several times, which keeps records under the broker's maximum message size): the runs'
//!   [`Record`]s (a run's state, or a tombstone when the run ended), many to a `runs` message
//!   (about 256 KiB of JSON each, [`RunsMessages`]), and after each checkpoint a `cycle` message
//!   with the low-water mark (every run the writer holds has a record at or after it:
//!   [`cycle_message`]). The leader's policy builds them ([`crate::policy`]);
//!   [`CheckpointStream::send`] publishes them on a confirm-mode channel of the leader lock's
//!   connection ([`crate::lock`]): a writer that lost the lock cannot publish any more.
//! - **Restore**: the new leader publishes a `marker`, reads the stream from a recent timestamp
//!   (`x-stream-offset`) up to its marker, keeps the latest record of each run, and reads again
//!   from further back when the last `cycle` says a run's latest record is older than where it
//!   started (from the beginning when it finds no `cycle` at all).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use kit::amqp::{publish_batch, AmqpSettings, Confirms, Message};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use lifecycle::Record;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::settings::CheckpointSettings;

/// The AMQP `type` property of the stream's messages.
const STATE_SCHEMA: &str = "loadtest.writer-state.v1";

/// How far a writer's clock and the broker's may differ: stream offsets are by the broker's
/// clock, records carry the writer's.
pub(crate) const CLOCK_SKEW: Duration = Duration::from_secs(30);

/// How long reading the stream back may go without a message before the restore gives up.
const READ_IDLE: Duration = Duration::from_secs(15);

/// The `content-encoding` of the stream's messages.
const DEFLATE: &str = "deflate";

/// A checkpoint's records go to the stream in messages of about this much JSON each (before
/// deflate; a message closes once it reaches it), bytes: a checkpoint of 10,000 runs is a few
/// dozen messages and confirms, not 10,000, and records of similar runs deflate together.
const RUNS_MESSAGE_BYTES: usize = 256 * 1024;

/// `json` deflated.
fn deflate(json: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(json)?;
    e.finish()
}

/// A stream message's JSON: inflated when its `content-encoding` says `deflate`.
fn json_of(d: &lapin::message::Delivery) -> std::io::Result<Vec<u8>> {
    if d.properties
        .content_encoding()
        .as_ref()
        .is_some_and(|e| e.as_str() == DEFLATE)
    {
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(&d.data[..]).read_to_end(&mut out)?;
        Ok(out)
    } else {
        Ok(d.data.clone())
    }
}

/// A message of the checkpoint stream (JSON, tagged by `kind`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub(crate) enum StreamMessage {
    /// A run's state, or its tombstone (`"state": null`).
    Run(Box<Record>),
    /// Several runs' records, in order (what [`RunsMessages`] builds).
    Runs { records: Vec<Record> },
    /// The end of a checkpoint: every run the writer held then has a record taken at or after
    /// `lowWater`.
    Cycle {
        /// When the checkpoint was taken (the writer's clock).
        at: DateTime<Utc>,
        #[serde(rename = "lowWater")]
        low_water: DateTime<Utc>,
    },
    /// Published by a writer before it reads the stream back: where its reading ends.
    Marker { id: Uuid, at: DateTime<Utc> },
}

/// A checkpoint's closing `cycle` message, deflated: the checkpoint was taken at `at`, and every
/// run the writer holds has a record taken at or after `low_water`.
///
/// # Errors
///
/// Serializing or deflating.
pub(crate) fn cycle_message(
    at: DateTime<Utc>,
    low_water: DateTime<Utc>,
) -> anyhow::Result<Vec<u8>> {
    Ok(deflate(&serde_json::to_vec(&StreamMessage::Cycle {
        at,
        low_water,
    })?)?)
}

/// Declares the checkpoint stream and its fanout exchange (same name), bound together.
/// Idempotent; a stream that exists keeps its arguments (an inequivalent one is an error that
/// names them: change them with a policy).
pub(crate) async fn declare_stream(
    ch: &Channel,
    amqp: &AmqpSettings,
    s: &CheckpointSettings,
) -> anyhow::Result<()> {
    let name = s.stream_name(amqp);
    ch.exchange_declare(
        &name,
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .with_context(|| format!("declaring exchange {name}"))?;
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("stream".into()),
    );
    args.insert(
        "x-max-age".into(),
        AMQPValue::LongString(format!("{}s", s.max_age_s.max(1)).into()),
    );
    args.insert(
        "x-stream-max-segment-size-bytes".into(),
        AMQPValue::LongLongInt(i64::try_from(s.max_segment_size_bytes).unwrap_or(i64::MAX)),
    );
    ch.queue_declare(
        &name,
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await
    .with_context(|| format!("declaring stream {name}"))?;
    ch.queue_bind(
        &name,
        &name,
        "",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .with_context(|| format!("binding stream {name}"))?;
    Ok(())
}

/// What a restore read back.
#[derive(Debug, Default)]
pub(crate) struct Restored {
    /// The latest record of each run (tombstones included).
    pub(crate) records: Vec<Record>,
    /// Stream messages read (over every pass).
    pub(crate) messages: usize,
    /// Messages that could not be parsed (logged, skipped).
    pub(crate) skipped: usize,
    /// Passes over the stream (1 normally).
    pub(crate) passes: usize,
}

/// Where a read of the stream starts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Offset {
    First,
    At(DateTime<Utc>),
}

/// A checkpoint published, its confirms outstanding.
#[derive(Debug)]
pub(crate) struct Sent {
    confirms: Confirms,
    timeout: Duration,
}

impl Sent {
    /// Waits for every confirm (at most the confirm timeout).
    ///
    /// # Errors
    ///
    /// A broker error, a nack or a timeout: the records may be partly in the stream, and the
    /// covered deliveries must not be acked (end the session: the broker redelivers them).
    pub(crate) async fn confirmed(self) -> anyhow::Result<()> {
        tokio::time::timeout(self.timeout, self.confirms.wait())
            .await
            .map_err(|_| anyhow::anyhow!("checkpoint confirms timed out"))?
            .context("checkpoint confirm")
    }
}

/// Publishing checkpoints to, and reading them back from, the stream.
#[derive(Debug)]
pub(crate) struct CheckpointStream {
    channel: Channel,
    name: String,
    writer_id: Uuid,
    confirm_timeout: Duration,
}

impl CheckpointStream {
    /// A confirm-mode channel on `conn` (the lock's connection) to stream `name`.
    ///
    /// # Errors
    ///
    /// The broker's.
    pub(crate) async fn open(
        conn: &Connection,
        name: String,
        writer_id: Uuid,
        confirm_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            channel,
            name,
            writer_id,
            confirm_timeout,
        })
    }

    /// Publishes a checkpoint's messages (deflated: its [`RunsMessages`], then its
    /// [`cycle_message`]) without waiting for the confirms: the caller goes on consuming and
    /// awaits [`Sent::confirmed`] before acking what the checkpoint covers. Checkpoints sent one
    /// after another reach the stream in that order (one channel).
    ///
    /// # Errors
    ///
    /// The broker's, or no room to publish within the confirm timeout (end the session).
    pub(crate) async fn send(&self, bodies: &[Vec<u8>]) -> anyhow::Result<Sent> {
        let confirms = tokio::time::timeout(self.confirm_timeout, self.publish_all(bodies))
            .await
            .map_err(|_| anyhow::anyhow!("checkpoint publish timed out"))??;
        Ok(Sent {
            confirms,
            timeout: self.confirm_timeout,
        })
    }

    async fn send_all(&self, bodies: &[Vec<u8>]) -> anyhow::Result<()> {
        self.publish_all(bodies)
            .await?
            .wait()
            .await
            .context("checkpoint confirm")
    }

    /// Publishes `bodies` to the stream on the confirm-mode channel; the confirms are returned,
    /// not awaited.
    async fn publish_all(&self, bodies: &[Vec<u8>]) -> anyhow::Result<Confirms> {
        let messages: Vec<Message<'_>> = bodies
            .iter()
            .map(|body| {
                Message::new("", body)
                    .properties(self.properties())
                    .not_mandatory()
            })
            .collect();
        publish_batch(&self.channel, &self.name, "loadtest-writer", &messages)
            .await
            .context("publishing a checkpoint")
    }

    fn properties(&self) -> BasicProperties {
        let mut headers = FieldTable::default();
        headers.insert(
            "x-loadtest-writer".into(),
            AMQPValue::LongString(LongString::from(self.writer_id.to_string())),
        );
        BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_content_encoding(DEFLATE.into())
            .with_type(STATE_SCHEMA.into())
            .with_message_id(Uuid::new_v4().to_string().into())
            .with_timestamp(Utc::now().timestamp().max(0) as u64)
            .with_headers(headers)
    }

    /// Reads the runs' latest records back (see the module docs), starting `window` before now.
    ///
    /// # Errors
    ///
    /// The broker's, or the stream going quiet before the marker shows up.
    pub(crate) async fn restore(
        &self,
        conn: &Connection,
        window: Duration,
    ) -> anyhow::Result<Restored> {
        let marker = Uuid::new_v4();
        let body = deflate(&serde_json::to_vec(&StreamMessage::Marker {
            id: marker,
            at: Utc::now(),
        })?)?;
        tokio::time::timeout(self.confirm_timeout, self.send_all(&[body]))
            .await
            .map_err(|_| anyhow::anyhow!("marker confirm timed out"))??;
        let mut start = Offset::At(Utc::now() - window);
        let mut out = Restored::default();
        loop {
            out.passes += 1;
            let (latest, low_water) = self.read(conn, start, marker, &mut out).await?;
            let again = match (low_water, start) {
                (None, Offset::First) => None,
                // No checkpoint in the window: no writer was active for a while; from the start.
                (None, Offset::At(_)) => Some(Offset::First),
                (Some(lw), Offset::At(s)) if lw - CLOCK_SKEW < s => {
                    Some(Offset::At(lw - CLOCK_SKEW))
                }
                (Some(_), _) => None,
            };
            match again {
                Some(o) => start = o,
                None => {
                    out.records = latest.into_values().collect();
                    return Ok(out);
                }
            }
        }
    }

    /// One pass: from `start` up to `marker`; the latest record per run and the last low-water
    /// mark.
    async fn read(
        &self,
        conn: &Connection,
        start: Offset,
        marker: Uuid,
        out: &mut Restored,
    ) -> anyhow::Result<(HashMap<Uuid, Record>, Option<DateTime<Utc>>)> {
        let ch = conn.create_channel().await?;
        ch.basic_qos(1000, BasicQosOptions::default()).await?;
        let mut args = FieldTable::default();
        args.insert(
            "x-stream-offset".into(),
            match start {
                Offset::First => AMQPValue::LongString("first".into()),
                Offset::At(t) => AMQPValue::Timestamp(t.timestamp().max(0) as u64),
            },
        );
        let mut consumer = ch
            .basic_consume(&self.name, "", BasicConsumeOptions::default(), args)
            .await
            .with_context(|| format!("reading stream {}", self.name))?;
        let mut latest = HashMap::new();
        let mut low_water = None;
        loop {
            let d = match tokio::time::timeout(READ_IDLE, consumer.next()).await {
                Ok(Some(d)) => d?,
                Ok(None) => bail!("the broker cancelled the stream consumer"),
                Err(_) => bail!(
                    "no message from stream {} for {READ_IDLE:?} before the restore marker",
                    self.name
                ),
            };
            ch.basic_ack(d.delivery_tag, BasicAckOptions::default())
                .await?;
            out.messages += 1;
            let parsed = json_of(&d)
                .map_err(anyhow::Error::from)
                .and_then(|json| Ok(serde_json::from_slice::<StreamMessage>(&json)?));
            match parsed {
                Ok(StreamMessage::Run(r)) => {
                    latest.insert(r.event_id, *r);
                }
                Ok(StreamMessage::Runs { records }) => {
                    for r in records {
                        latest.insert(r.event_id, r);
                    }
                }
                Ok(StreamMessage::Cycle { low_water: lw, .. }) => low_water = Some(lw),
                Ok(StreamMessage::Marker { id, .. }) if id == marker => break,
                Ok(StreamMessage::Marker { .. }) => {}
                Err(e) => {
                    out.skipped += 1;
                    tracing::error!(error = %e, "unreadable checkpoint record skipped");
                }
            }
        }
        let _ = ch.close(200, "restored").await;
        Ok((latest, low_water))
    }
}

/// Builds a checkpoint's [`StreamMessage::Runs`] messages as its records come (in order), each
/// closed once it holds [`RUNS_MESSAGE_BYTES`] of JSON or more, and deflated then: one message's
/// JSON is in memory at a time.
#[derive(Debug)]
pub(crate) struct RunsMessages {
    max_bytes: usize,
    json: Vec<u8>,
    deflated: Vec<Vec<u8>>,
}

impl RunsMessages {
    /// Messages of about [`RUNS_MESSAGE_BYTES`] of JSON each.
    pub(crate) fn new() -> Self {
        Self::with_max_bytes(RUNS_MESSAGE_BYTES)
    }

    fn with_max_bytes(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            json: Vec::new(),
            deflated: Vec::new(),
        }
    }

    /// Adds a record ([`Record`] or [`lifecycle::RecordRef`]).
    ///
    /// # Errors
    ///
    /// Serializing or deflating.
    pub(crate) fn push(&mut self, record: &impl Serialize) -> anyhow::Result<()> {
        const OPEN: &[u8] = br#"{"kind":"runs","records":["#;
        self.json
            .extend_from_slice(if self.json.is_empty() { OPEN } else { b"," });
        serde_json::to_writer(&mut self.json, record).context("serializing a record")?;
        if self.json.len() >= self.max_bytes {
            self.close()?;
        }
        Ok(())
    }

    fn close(&mut self) -> anyhow::Result<()> {
        self.json.extend_from_slice(b"]}");
        self.deflated.push(deflate(&self.json)?);
        self.json.clear();
        Ok(())
    }

    /// The messages, deflated.
    ///
    /// # Errors
    ///
    /// Deflating.
    pub(crate) fn finish(mut self) -> anyhow::Result<Vec<Vec<u8>>> {
        if !self.json.is_empty() {
            self.close()?;
        }
        Ok(self.deflated)
    }
}

#[cfg(test)]
#[path = "checkpoints_tests.rs"]
mod tests;
