//! [`Worker`]: what the consume loop ([`crate::consumer`]) and the active writer
//! ([`crate::active`]) need, in a module of its own so neither depends on the other for it.

use kit::amqp::AmqpSettings;
use lifecycle::LifecycleSettings;
use secrecy::SecretString;

use crate::settings::CheckpointSettings;
use crate::sink::AnySink;

/// What the writer needs.
#[derive(Debug)]
pub struct Worker {
    /// Broker settings.
    pub amqp: AmqpSettings,
    /// Lifecycle settings.
    pub lifecycle: LifecycleSettings,
    /// The checkpoint stream and the leader lock.
    pub checkpoint: CheckpointSettings,
    /// Where points go.
    pub sink: AnySink,
    /// Event-token secret; `None` disables verification.
    pub token_secret: Option<SecretString>,
}
