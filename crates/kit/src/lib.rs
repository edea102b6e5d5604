//! The service kit: what every loadtest service needs, written once.
//!
//! - [`telemetry`]: tracing set-up (`EnvFilter`, JSON when not a terminal) and the shutdown
//!   token cancelled on SIGTERM or ctrl-c.
//! - [`settings`]: the layered settings loader (defaults < optional TOML file < environment
//!   `LOADTEST__SECTION__KEY`, unknown keys are errors) and the secret loader (inline value or
//!   `*_file`). Values from the environment are strings until a field asks for a number, so
//!   secrets and keys come through verbatim.
//! - [`backoff`]: one capped exponential backoff with jitter and reset, and the reconnect loop
//!   that resets it once a session was established.
//! - [`amqp`]: the broker settings and the names derived from the exchange, the heartbeat URL
//!   helper, [`amqp::connect`], and the one confirming [`amqp::Publisher`] with its typed
//!   [`amqp::PublishError`].
//! - [`metrics`]: the process-wide Prometheus recorder and the small `/metrics` + `/healthz`
//!   server.

pub mod amqp;
pub mod backoff;
pub mod metrics;
pub mod settings;
pub mod telemetry;
