//! The AMQP pieces every service shares: the broker settings and the names derived from the
//! exchange, the heartbeat URL helper, [`connect`], the dead-letter declaration
//! ([`declare_dead_letters`]), and the one confirming [`Publisher`].
//!
//! The publisher publishes persistent JSON (content type `application/json`, a `message_id`)
//! with the `mandatory` flag on a confirm-mode channel and waits for the broker's confirm, with a
//! timeout. A nack, a returned (unroutable) message or a timeout is a [`PublishError`] the caller
//! sees: nothing is silently lost. It connects lazily; after a broker or timeout error it drops
//! its connection and the next publish reconnects, so a publisher outlives broker restarts.

use std::time::Duration;

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::publisher_confirm::PublisherConfirm;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use tokio::sync::Mutex;

/// How long the publisher waits to open its connection and channel before it reports
/// [`PublishError::Unavailable`].
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Broker settings, the `[amqp]` section of every service's settings. Missing keys take the
/// defaults documented on each field.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpSettings {
    /// AMQP URI (`amqp://user:pass@host:5672/%2f`; default the local broker as guest); a
    /// `heartbeat` query is added when missing (see [`with_heartbeat`]). A secret: it may carry
    /// a password (see [`redact`]).
    #[serde(serialize_with = "serialize_redacted")]
    pub url: SecretString,
    /// The topic exchange (default `loadtest`). Every other name derives from it (see
    /// [`AmqpSettings::queue`] and the methods after it), so one setting isolates a whole
    /// deployment, or a test.
    pub exchange: String,
    /// Heartbeat, seconds (default 10): lapin notices a dead broker only through heartbeats.
    pub heartbeat_s: u16,
    /// How long a publish may wait for the broker's confirm, ms (default 5000).
    pub confirm_timeout_ms: u64,
    /// Consumer prefetch, deliveries (default 5000; the writer's consumer only, whose settings
    /// default to 20000): how much the writer takes in between two confirmed checkpoints.
    pub prefetch: u16,
    /// Redeliveries before RabbitMQ dead-letters a message (quorum `x-delivery-limit`, default
    /// 20; the writer's and the notifiers' queues).
    pub delivery_limit: u32,
    /// `x-expires` of the consumers' queues, ms (for tests; unset in production).
    pub queue_expires_ms: Option<u64>,
}

/// Serializes a URL with its password hidden ([`redact`]), for `--help`'s defaults.
fn serialize_redacted<S: Serializer>(url: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact(url.expose_secret()))
}

impl Default for AmqpSettings {
    fn default() -> Self {
        Self {
            url: SecretString::from("amqp://guest:guest@127.0.0.1:5672/%2f".to_string()),
            exchange: "loadtest".into(),
            heartbeat_s: 10,
            confirm_timeout_ms: 5000,
            prefetch: 5000,
            delivery_limit: 20,
            queue_expires_ms: None,
        }
    }
}

impl AmqpSettings {
    /// Settings for `url` and `exchange`, the rest default.
    pub fn new(url: &str, exchange: &str) -> Self {
        Self {
            url: SecretString::from(url.to_string()),
            exchange: exchange.to_string(),
            ..Self::default()
        }
    }

    /// The writer's quorum queue, `<exchange>.writer`.
    pub fn queue(&self) -> String {
        format!("{}.writer", self.exchange)
    }

    /// A notifier's quorum queue, bound to `event.completed`: `<exchange>.notify.<notifier>`
    /// (`loadtest.notify.slack`).
    pub fn notify_queue(&self, notifier: &str) -> String {
        format!("{}.notify.{notifier}", self.exchange)
    }

    /// The dead-letter exchange (fanout), `<exchange>.dlx`.
    pub fn dlx(&self) -> String {
        format!("{}.dlx", self.exchange)
    }

    /// The dead-letter queue, `<exchange>.dead`.
    pub fn dead_queue(&self) -> String {
        format!("{}.dead", self.exchange)
    }

    /// The writer's running-set fanout, `<exchange>.status`.
    pub fn status_exchange(&self) -> String {
        format!("{}.status", self.exchange)
    }

    /// [`AmqpSettings::confirm_timeout_ms`] as a duration.
    pub fn confirm_timeout(&self) -> Duration {
        Duration::from_millis(self.confirm_timeout_ms)
    }
}

/// `url` with `heartbeat=SECS` added unless it already sets one. lapin does not notice a dead
/// broker without heartbeats (a consumer stream can hang on a half-open connection), so every
/// connection we open carries one.
pub fn with_heartbeat(url: &str, heartbeat_s: u16) -> String {
    if url.contains("heartbeat=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&heartbeat={heartbeat_s}")
    } else {
        format!("{url}?heartbeat={heartbeat_s}")
    }
}

/// `url` with its password replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// Opens a connection to `settings.url` (heartbeat added), named `connection_name` in the
/// broker's management UI.
///
/// # Errors
///
/// lapin's (refused, authentication, TLS, …); they do not carry the URL.
pub async fn connect(
    settings: &AmqpSettings,
    connection_name: &str,
) -> Result<Connection, lapin::Error> {
    let uri = with_heartbeat(settings.url.expose_secret(), settings.heartbeat_s);
    let props = ConnectionProperties::default().with_connection_name(connection_name.into());
    Connection::connect(&uri, props).await
}

/// Declares the dead-letter exchange `<exchange>.dlx` (fanout, durable) and the dead-letter
/// queue `<exchange>.dead` (quorum, durable, with `x-expires` when
/// [`AmqpSettings::queue_expires_ms`] is set) bound to it. Idempotent, and the same arguments
/// as the writer's declaration, so either may come first.
///
/// # Errors
///
/// lapin's; a queue that exists with other arguments is `PRECONDITION_FAILED` (the channel
/// closes).
pub async fn declare_dead_letters(ch: &Channel, s: &AmqpSettings) -> Result<(), lapin::Error> {
    ch.exchange_declare(
        &s.dlx(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    if let Some(ms) = s.queue_expires_ms {
        args.insert("x-expires".into(), AMQPValue::LongLongInt(ms as i64));
    }
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(&s.dead_queue(), durable, args).await?;
    ch.queue_bind(
        &s.dead_queue(),
        &s.dlx(),
        "",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    Ok(())
}

/// Why a publish failed. Each means the broker did not take the message: retrying is safe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// No connection or channel, or the broker failed while publishing (lapin's error text).
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The broker nacked the message (e.g. a full queue with `reject-publish`).
    #[error("the broker nacked the message")]
    Nacked,
    /// The message was returned: no queue is bound for this routing key.
    #[error("no queue is bound for {0} (is the consumer, e.g. loadtest-writer, running?)")]
    Unroutable(String),
    /// The publish or its confirm did not complete within the confirm timeout.
    #[error("publisher confirm timed out")]
    Timeout,
}

fn unavailable(e: impl std::fmt::Display) -> PublishError {
    PublishError::Unavailable(e.to_string())
}

/// One message to publish: a routing key, a body, and what differs from the defaults
/// (the publisher's exchange, `mandatory`, persistent, JSON).
#[derive(Debug, Clone)]
pub struct Message<'a> {
    exchange: Option<&'a str>,
    routing_key: &'a str,
    body: &'a [u8],
    properties: BasicProperties,
    mandatory: bool,
    persistent: bool,
}

impl<'a> Message<'a> {
    /// `body` (JSON) for `routing_key`, to the publisher's exchange, `mandatory`, persistent.
    pub fn new(routing_key: &'a str, body: &'a [u8]) -> Self {
        Self {
            exchange: None,
            routing_key,
            body,
            properties: BasicProperties::default(),
            mandatory: true,
            persistent: true,
        }
    }

    /// Publishes to `exchange` instead of the publisher's (the dead-letter exchange, the status
    /// fanout).
    pub fn exchange(mut self, exchange: &'a str) -> Self {
        self.exchange = Some(exchange);
        self
    }

    /// Starts from these properties (headers, ids, timestamps of a message being moved). The
    /// publisher still makes it persistent (unless [`Message::transient`]), and fills the
    /// content type (`application/json`), `message_id` (a new uuid) and `app_id` (the
    /// connection name) when they are unset.
    pub fn properties(mut self, properties: BasicProperties) -> Self {
        self.properties = properties;
        self
    }

    /// Sets these headers (replacing any in the properties).
    pub fn headers(mut self, headers: FieldTable) -> Self {
        self.properties = self.properties.with_headers(headers);
        self
    }

    /// Publishes without `mandatory`: for routing keys nobody may be bound to (`event.completed`
    /// before any notifier exists, the status fanout), where no queue is not an error.
    pub fn not_mandatory(mut self) -> Self {
        self.mandatory = false;
        self
    }

    /// Publishes with delivery mode 1 (not written to disk): for messages a newer one soon
    /// supersedes (the running-set status).
    pub fn transient(mut self) -> Self {
        self.persistent = false;
        self
    }
}

/// Publishes every message of `messages`, in order, on `channel` (which must be in confirm
/// mode), then waits for all their confirms: [`publish_batch`] then [`Confirms::wait`], the one
/// publish-with-confirm loop that [`Publisher`] and the writer's checkpoint stream (whose
/// channel lives on its lock's connection) share.
///
/// # Errors
///
/// As [`publish_batch`] and [`Confirms::wait`]. No timeout: wrap the call in one.
pub async fn publish_confirmed(
    channel: &Channel,
    default_exchange: &str,
    app_id: &str,
    messages: &[Message<'_>],
) -> Result<(), PublishError> {
    publish_batch(channel, default_exchange, app_id, messages)
        .await?
        .wait()
        .await
}

/// The broker's confirms of a batch published by [`publish_batch`], not yet awaited.
#[derive(Debug)]
pub struct Confirms {
    pending: Vec<(String, PublisherConfirm)>,
}

impl Confirms {
    /// Waits for every confirm.
    ///
    /// # Errors
    ///
    /// [`PublishError::Unavailable`] (the channel closed), [`PublishError::Nacked`], or
    /// [`PublishError::Unroutable`] for a `mandatory` message no queue is bound for; the first one
    /// met. No timeout: wrap the call in one.
    pub async fn wait(self) -> Result<(), PublishError> {
        for (routing_key, confirm) in self.pending {
            let confirmation = confirm.await.map_err(unavailable)?;
            if confirmation.is_nack() {
                return Err(PublishError::Nacked);
            }
            if confirmation.take_message().is_some() {
                return Err(PublishError::Unroutable(routing_key));
            }
        }
        Ok(())
    }
}

/// Publishes every message of `messages`, in order, on `channel` (which must be in confirm
/// mode) and returns their confirms without waiting for them, so a caller can go on working and
/// wait later ([`Confirms::wait`]). A message without an exchange goes to `default_exchange`;
/// unset content type, `message_id` and `app_id` are filled (`application/json`, a new uuid,
/// `app_id`).
///
/// # Errors
///
/// [`PublishError::Unavailable`] (lapin's error text: a closed channel, `ACCESS_REFUSED`, a
/// message over the broker's maximum size). Messages before the failed one may be in the broker.
pub async fn publish_batch(
    channel: &Channel,
    default_exchange: &str,
    app_id: &str,
    messages: &[Message<'_>],
) -> Result<Confirms, PublishError> {
    let mut pending = Vec::with_capacity(messages.len());
    for m in messages {
        let mut props = m.properties.clone();
        props = props.with_delivery_mode(if m.persistent { 2 } else { 1 });
        if props.content_type().is_none() {
            props = props.with_content_type("application/json".into());
        }
        if props.message_id().is_none() {
            props = props.with_message_id(uuid::Uuid::new_v4().to_string().into());
        }
        if props.app_id().is_none() {
            props = props.with_app_id(app_id.into());
        }
        let confirm = channel
            .basic_publish(
                m.exchange.unwrap_or(default_exchange),
                m.routing_key,
                BasicPublishOptions {
                    mandatory: m.mandatory,
                    ..Default::default()
                },
                m.body,
                props,
            )
            .await
            .map_err(unavailable)?;
        pending.push((m.routing_key.to_string(), confirm));
    }
    Ok(Confirms { pending })
}

/// The open connection and its confirm-mode channel.
struct Link {
    conn: Connection,
    channel: Channel,
}

/// The confirming publisher: one connection with one confirm-mode channel, shared by concurrent
/// publishes (lapin channels take concurrent publishes, each with its own confirm).
pub struct Publisher {
    settings: AmqpSettings,
    name: String,
    declare_exchange: bool,
    link: Mutex<Option<Link>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry credentials: not printed.
        f.debug_struct("Publisher")
            .field("name", &self.name)
            .field("exchange", &self.settings.exchange)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher to `settings.exchange`, whose connection is named `connection_name` (also the
    /// messages' default `app_id`). Connects lazily: on the first publish, or
    /// [`Publisher::connect`].
    pub fn new(settings: &AmqpSettings, connection_name: &str) -> Self {
        Self {
            settings: settings.clone(),
            name: connection_name.to_string(),
            declare_exchange: false,
            link: Mutex::new(None),
        }
    }

    /// Also declares the topic exchange (durable) whenever it opens a channel, so publishing
    /// works on a fresh broker. Needs the `configure` permission on the exchange (load
    /// generators do not have it).
    pub fn declaring_exchange(mut self) -> Self {
        self.declare_exchange = true;
        self
    }

    /// The exchange messages go to by default.
    pub fn exchange(&self) -> &str {
        &self.settings.exchange
    }

    /// Connects now (if not connected), so a wrong URL fails early.
    ///
    /// # Errors
    ///
    /// [`PublishError::Unavailable`] (refused, authentication, or no answer within
    /// [`CONNECT_TIMEOUT`]).
    pub async fn connect(&self) -> Result<(), PublishError> {
        self.channel().await.map(drop)
    }

    /// Whether the broker is reachable now (connecting if needed).
    pub async fn ready(&self) -> bool {
        self.connect().await.is_ok()
    }

    /// Publishes `body` with `routing_key` to the exchange (persistent, `mandatory`, JSON) and
    /// waits for the confirm.
    ///
    /// # Errors
    ///
    /// As [`Publisher::send`].
    pub async fn publish(&self, routing_key: &str, body: &[u8]) -> Result<(), PublishError> {
        self.send(Message::new(routing_key, body)).await
    }

    /// Publishes `message` and waits for the broker's confirm, for at most the confirm timeout.
    ///
    /// # Errors
    ///
    /// [`PublishError::Unavailable`] or [`PublishError::Timeout`] (the connection is then
    /// dropped and the next publish reconnects), [`PublishError::Nacked`], or
    /// [`PublishError::Unroutable`] for a `mandatory` message no queue is bound for.
    pub async fn send(&self, message: Message<'_>) -> Result<(), PublishError> {
        self.send_all(std::slice::from_ref(&message)).await
    }

    /// Publishes every message of `messages`, in order, on the one confirm-mode channel, then
    /// waits for all their confirms (together at most the confirm timeout): a batch costs one
    /// round trip, not one per message.
    ///
    /// # Errors
    ///
    /// As [`Publisher::send`], for the first message that failed; messages before it may be
    /// in the broker, so a retry of the batch may duplicate them (consumers dedupe by message).
    pub async fn send_all(&self, messages: &[Message<'_>]) -> Result<(), PublishError> {
        let result =
            match tokio::time::timeout(self.settings.confirm_timeout(), self.try_send(messages))
                .await
            {
                Ok(r) => r,
                Err(_) => Err(PublishError::Timeout),
            };
        if matches!(
            result,
            Err(PublishError::Unavailable(_) | PublishError::Timeout)
        ) {
            // Dropping the last handle closes the connection; the next publish reconnects. If
            // another publish holds the lock, it is (re)connecting already: no need to wait.
            if let Ok(mut link) = self.link.try_lock() {
                *link = None;
            }
        }
        result
    }

    async fn try_send(&self, messages: &[Message<'_>]) -> Result<(), PublishError> {
        let channel = self.channel().await?;
        publish_confirmed(&channel, &self.settings.exchange, &self.name, messages).await
    }

    /// The confirm-mode channel, (re)connecting when there is none or it closed.
    async fn channel(&self) -> Result<Channel, PublishError> {
        let mut link = self.link.lock().await;
        if let Some(l) = link.as_ref() {
            if l.channel.status().connected() {
                return Ok(l.channel.clone());
            }
        }
        *link = None;
        let opened = tokio::time::timeout(CONNECT_TIMEOUT, self.open())
            .await
            .map_err(|_| {
                PublishError::Unavailable(format!(
                    "no connection within {}s",
                    CONNECT_TIMEOUT.as_secs()
                ))
            })??;
        let channel = opened.channel.clone();
        *link = Some(opened);
        Ok(channel)
    }

    async fn open(&self) -> Result<Link, PublishError> {
        let conn = connect(&self.settings, &self.name)
            .await
            .map_err(unavailable)?;
        let channel = conn.create_channel().await.map_err(unavailable)?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(unavailable)?;
        if self.declare_exchange {
            channel
                .exchange_declare(
                    &self.settings.exchange,
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(unavailable)?;
        }
        Ok(Link { conn, channel })
    }

    /// Closes the connection (waiting at most 1 s); a later publish would reconnect.
    pub async fn close(&self) {
        if let Some(l) = self.link.lock().await.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), l.conn.close(200, "done")).await;
        }
    }
}

#[cfg(test)]
#[path = "amqp_tests.rs"]
mod tests;
