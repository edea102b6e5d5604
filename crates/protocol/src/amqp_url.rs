//! AMQP URI helpers shared by every service that talks to RabbitMQ.

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

#[cfg(test)]
mod tests {
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
}
