//! The confirming publisher against the real RabbitMQ on 127.0.0.1:5672 (`.ci/run` starts it;
//! `rabbitmq-server -detached` by hand). Each test uses its own exchange and queue.

use futures::StreamExt as _;
use kit::amqp::{AmqpSettings, Message, PublishError, Publisher};
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ExchangeKind};
use loadtest_kit as kit;

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn settings(test: &str) -> AmqpSettings {
    let id = uuid::Uuid::new_v4().simple().to_string();
    AmqpSettings::new(URL, &format!("kit-{test}-{}", &id[..8]))
}

/// A channel on a fresh connection; fails loudly when RabbitMQ is not running.
async fn channel(s: &AmqpSettings) -> (Connection, Channel) {
    let conn = kit::amqp::connect(s, "kit-test").await.unwrap_or_else(|e| {
        panic!("RabbitMQ is not reachable on 127.0.0.1:5672 ({e}); start it with `rabbitmq-server -detached` or .ci/run")
    });
    let ch = conn.create_channel().await.expect("channel");
    ch.exchange_declare(
        &s.exchange,
        ExchangeKind::Topic,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange");
    (conn, ch)
}

/// Deletes the test's exchange (best effort) and closes `conn`.
async fn clean_up(conn: Connection, s: &AmqpSettings) {
    if let Ok(ch) = conn.create_channel().await {
        let _ = ch.exchange_delete(&s.exchange, Default::default()).await;
    }
    let _ = conn.close(200, "done").await;
}

/// Declares a queue (expiring a minute after its last use) `<exchange>.q` bound to `key`, with `args`.
async fn bind_queue(ch: &Channel, s: &AmqpSettings, key: &str, args: FieldTable) -> String {
    let q = format!("{}.q", s.exchange);
    let mut args = args;
    args.insert("x-expires".into(), AMQPValue::LongLongInt(60_000));
    ch.queue_declare(&q, QueueDeclareOptions::default(), args)
        .await
        .expect("queue");
    ch.queue_bind(
        &q,
        &s.exchange,
        key,
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    q
}

#[tokio::test]
async fn a_confirmed_message_is_persistent_json_with_an_id() {
    let s = settings("ok");
    let (conn, ch) = channel(&s).await;
    let q = bind_queue(&ch, &s, "event.stats", FieldTable::default()).await;
    let p = Publisher::new(&s, "kit-test-publisher");
    p.publish("event.stats", br#"{"a":1}"#)
        .await
        .expect("confirmed");
    let mut headers = FieldTable::default();
    headers.insert("x-reason".into(), AMQPValue::LongString("why".into()));
    p.send(Message::new("event.stats", b"{}").headers(headers))
        .await
        .expect("confirmed");
    let mut consumer = ch
        .basic_consume(
            &q,
            "",
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let first = consumer.next().await.expect("delivery").expect("ok");
    assert_eq!(first.data, br#"{"a":1}"#);
    let props = &first.properties;
    assert_eq!(*props.delivery_mode(), Some(2));
    assert_eq!(
        props.content_type().as_ref().map(|c| c.as_str()),
        Some("application/json")
    );
    assert!(props.message_id().is_some());
    assert_eq!(
        props.app_id().as_ref().map(|a| a.as_str()),
        Some("kit-test-publisher")
    );
    let second = consumer.next().await.expect("delivery").expect("ok");
    let h = second.properties.headers().clone().expect("headers");
    assert!(
        matches!(h.inner().get("x-reason"), Some(AMQPValue::LongString(r)) if r.to_string() == "why")
    );
    p.close().await;
    clean_up(conn, &s).await;
}

#[tokio::test]
async fn unroutable_is_an_error_unless_not_mandatory() {
    let s = settings("unroutable");
    let (conn, _ch) = channel(&s).await;
    let p = Publisher::new(&s, "kit-test");
    assert_eq!(
        p.publish("event.nobody", b"{}").await,
        Err(PublishError::Unroutable("event.nobody".into()))
    );
    // The channel is still good, and a non-mandatory publish to nobody is fine.
    p.send(Message::new("event.nobody", b"{}").not_mandatory())
        .await
        .expect("not mandatory");
    p.close().await;
    clean_up(conn, &s).await;
}

#[tokio::test]
async fn a_full_queue_with_reject_publish_is_a_nack() {
    let s = settings("nack");
    let (conn, ch) = channel(&s).await;
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(0));
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    bind_queue(&ch, &s, "event.stats", args).await;
    let p = Publisher::new(&s, "kit-test");
    assert_eq!(
        p.publish("event.stats", b"{}").await,
        Err(PublishError::Nacked)
    );
    p.close().await;
    clean_up(conn, &s).await;
}

#[tokio::test]
async fn after_an_error_the_next_publish_reconnects() {
    let s = settings("missing");
    // Publishing to an exchange that does not exist closes the channel: unavailable.
    let plain = Publisher::new(&s, "kit-test");
    assert!(matches!(
        plain.publish("event.stats", b"{}").await,
        Err(PublishError::Unavailable(_))
    ));
    // A declaring publisher creates the exchange; with no queue the message is unroutable.
    let declaring = Publisher::new(&s, "kit-test").declaring_exchange();
    assert_eq!(
        declaring.publish("event.stats", b"{}").await,
        Err(PublishError::Unroutable("event.stats".into()))
    );
    declaring.close().await;
    // The first publisher's next publish opens a new channel and reaches the exchange.
    assert_eq!(
        plain.publish("event.stats", b"{}").await,
        Err(PublishError::Unroutable("event.stats".into()))
    );
    plain.close().await;
    let conn = kit::amqp::connect(&s, "kit-test").await.expect("connect");
    clean_up(conn, &s).await;
}
