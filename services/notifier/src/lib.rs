//! `loadtest-notifier`: posts a Slack message for every finished load-test run.
//!
//! The writer publishes `event.completed` after it wrote a run's final record (committed) or
//! gave up waiting for it (expired). The notifier consumes its own durable queue bound to that
//! routing key, turns each message into Block Kit blocks with a plain-text fallback (run id,
//! target, tool, duration, users, requests, failure %, requests/s, p50/p95/p99, threshold
//! verdicts, a link to the run's dashboard) and posts it to a Slack incoming webhook. Its own
//! process and queue, so a slow or failing Slack never blocks or slows the writer.
//!
//! Layout:
//! - [`settings`]: configuration (defaults, TOML file, environment); the webhook URL is a secret.
//! - [`message`]: the Slack message of a run (pure).
//! - [`slack`]: the webhook client and what Slack's answers mean (retry or give up).
//! - [`consumer`]: the queue, the consume loop, acks, retries and dead letters.
//! - [`metrics`]: Prometheus metrics on `metrics.listen`.

pub mod consumer;
pub mod message;
pub mod metrics;
pub mod settings;
pub mod slack;

use tokio_util::sync::CancellationToken;

use crate::settings::Settings;
use crate::slack::Webhook;

/// How [`run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ran {
    /// No webhook is configured: notifications are off, nothing was consumed.
    Off,
    /// Consumed until shutdown.
    Stopped,
}

/// The log line when no webhook is configured.
pub const OFF_MESSAGE: &str = "Slack notifications are off: no webhook configured (set LOADTEST__SLACK__WEBHOOK_URL or slack.webhook_url_file); not consuming";

/// Runs the notifier until `shutdown` is cancelled; returns at once with [`Ran::Off`] when no
/// webhook is configured (it then declares no queue, so no message piles up for it).
///
/// # Errors
///
/// An unreadable `slack.webhook_url_file`, or a webhook URL that is not an http(s) URL (the
/// error names the setting, never the URL).
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<Ran> {
    let Some(url) = settings.slack.webhook()? else {
        tracing::info!("{OFF_MESSAGE}");
        return Ok(Ran::Off);
    };
    let webhook = Webhook::new(&url, settings.slack.timeout())?;
    let metrics = settings
        .metrics
        .listen
        .clone()
        .filter(|l| !l.is_empty())
        .map(|listen| tokio::spawn(metrics::serve(listen, shutdown.clone())));
    let notifier = consumer::Notifier {
        grafana_url: settings.dashboard.base(),
        amqp: settings.amqp,
        webhook,
        slack: settings.slack,
    };
    let result = consumer::run(notifier, shutdown.clone()).await;
    shutdown.cancel();
    if let Some(m) = metrics {
        let _ = m.await;
    }
    result.map(|()| Ran::Stopped)
}
