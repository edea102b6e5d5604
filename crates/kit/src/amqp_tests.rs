//! Tests of [`super`].

use super::*;

#[test]
fn heartbeat_is_added_once() {
    assert_eq!(
        with_heartbeat("amqp://h/%2f", 10),
        "amqp://h/%2f?heartbeat=10"
    );
    assert_eq!(
        with_heartbeat("amqp://h/?x=1", 5),
        "amqp://h/?x=1&heartbeat=5"
    );
    assert_eq!(
        with_heartbeat("amqp://h/?heartbeat=3", 5),
        "amqp://h/?heartbeat=3"
    );
}

#[test]
fn passwords_are_redacted() {
    assert_eq!(
        redact("amqp://guest:secret@h:5672/%2f"),
        "amqp://guest:***@h:5672/%2f"
    );
    assert_eq!(redact("amqp://h:5672"), "amqp://h:5672");
}

#[test]
fn names_derive_from_the_exchange() {
    let s = AmqpSettings::new("amqp://h", "lt");
    assert_eq!(
        [s.queue(), s.dlx(), s.dead_queue(), s.status_exchange()],
        ["lt.writer", "lt.dlx", "lt.dead", "lt.status"]
    );
    assert_eq!(s.notify_queue("slack"), "lt.notify.slack");
    assert_eq!(s.confirm_timeout(), Duration::from_secs(5));
}

#[tokio::test]
async fn an_unreachable_broker_is_unavailable_and_publishing_is_lazy() {
    // Nothing listens on port 1: creating the publisher does not connect, publishing fails
    // fast with Unavailable.
    let p = Publisher::new(&AmqpSettings::new("amqp://127.0.0.1:1/%2f", "x"), "test");
    assert!(matches!(
        p.publish("k", b"{}").await,
        Err(PublishError::Unavailable(_))
    ));
    assert!(!p.ready().await);
}
