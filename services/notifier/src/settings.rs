//! The notifier's settings: defaults < optional TOML file (`--config`) < environment
//! (`LOADTEST__SECTION__KEY`, e.g. `LOADTEST__SLACK__WEBHOOK_URL`), loaded by
//! [`kit::settings`]: unknown keys are errors, secrets are taken verbatim. See
//! `config/notifier.example.toml`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kit::amqp::AmqpSettings;
use kit::settings::{secret_from, Env, Spec};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// All settings of `loadtest-notifier`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Broker connection and names: the queue is `<exchange>.notify.slack`, dead letters go to
    /// `<exchange>.dlx`; `delivery_limit` bounds the attempts per message.
    #[serde(default)]
    pub amqp: AmqpSettings,
    /// The webhook and how to post to it.
    pub slack: SlackSettings,
    /// Where the dashboard the messages link to is.
    #[serde(default)]
    pub dashboard: DashboardSettings,
    /// Log output.
    #[serde(default)]
    pub log: LogSettings,
    /// Prometheus metrics endpoint.
    #[serde(default)]
    pub metrics: MetricsSettings,
}

/// The Slack incoming webhook (`[slack]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SlackSettings {
    /// The incoming webhook URL (`https://hooks.slack.com/services/…`), a secret. Without it
    /// (nor `webhook_url_file`) notifications are off.
    #[serde(serialize_with = "kit::settings::serialize_opt_secret")]
    pub webhook_url: Option<SecretString>,
    /// A file holding the webhook URL (trailing newline trimmed), if not given inline.
    pub webhook_url_file: Option<PathBuf>,
    /// How long one post may take, s (default 10).
    pub timeout_s: f64,
    /// Least time between two posts, ms (default 1000: Slack takes about one message per
    /// second per webhook).
    pub min_interval_ms: u64,
    /// First wait after a failed post without `Retry-After`, ms (default 1000); each next
    /// failure doubles it, up to `retry_max_s`.
    pub retry_first_ms: u64,
    /// Longest wait between attempts without `Retry-After`, s (default 60).
    pub retry_max_s: f64,
    /// Longest `Retry-After` honoured, s (default 900); a longer one waits this long.
    pub max_retry_after_s: f64,
    /// Most messages the notifier's queue keeps (its `x-max-length`, default 10000): beyond it,
    /// the oldest go to the dead-letter exchange (`drop-head`), so a notifier that is stopped
    /// for good cannot pile messages up on the broker. Never `reject-publish`: that would nack
    /// the writer's `event.completed` and stall it.
    pub max_queued: u32,
}

impl SlackSettings {
    /// The webhook URL from `webhook_url` or `webhook_url_file`; `None` when neither is set or
    /// it is empty (notifications off).
    ///
    /// # Errors
    ///
    /// The file cannot be read (the error names `slack.webhook_url_file`).
    pub fn webhook(&self) -> anyhow::Result<Option<SecretString>> {
        use secrecy::ExposeSecret;
        let url = secret_from(
            &self.webhook_url,
            &self.webhook_url_file,
            "slack.webhook_url_file",
        )?;
        Ok(url.filter(|u| !u.expose_secret().trim().is_empty()))
    }

    /// [`SlackSettings::timeout_s`] as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_s)
    }

    /// [`SlackSettings::min_interval_ms`] as a duration.
    pub fn min_interval(&self) -> Duration {
        Duration::from_millis(self.min_interval_ms)
    }

    /// The backoff's first delay and cap.
    pub fn retry_delays(&self) -> (Duration, Duration) {
        (
            Duration::from_millis(self.retry_first_ms.max(1)),
            Duration::from_secs_f64(self.retry_max_s),
        )
    }

    /// [`SlackSettings::max_retry_after_s`] as a duration.
    pub fn max_retry_after(&self) -> Duration {
        Duration::from_secs_f64(self.max_retry_after_s)
    }
}

/// The dashboard (`[dashboard]`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardSettings {
    /// Base URL of the Grafana that has the load-test dashboard (uid `loadtest-run`), e.g.
    /// `https://grafana.example.com`; messages link to the run there. Unset: no link.
    pub grafana_url: Option<String>,
}

impl DashboardSettings {
    /// The base URL without a trailing `/`, `None` when unset or empty.
    pub fn base(&self) -> Option<String> {
        self.grafana_url
            .as_deref()
            .map(|u| u.trim().trim_end_matches('/').to_string())
            .filter(|u| !u.is_empty())
    }
}

/// Metrics endpoint settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Address of `GET /metrics` and `GET /healthz` (default `127.0.0.1:9465`; empty disables
    /// it; port 0 picks a free port, logged on start).
    pub listen: Option<String>,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            listen: Some("127.0.0.1:9465".into()),
        }
    }
}

/// Log format.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `auto` (JSON unless stderr is a terminal), `json` or `text`.
    #[serde(default)]
    pub format: Option<String>,
}

/// The defaults, the lowest layer (`[amqp]` keys not set here are [`AmqpSettings`]'s defaults).
const DEFAULTS: &str = r#"
[slack]
timeout_s = 10.0
min_interval_ms = 1000
retry_first_ms = 1000
retry_max_s = 60.0
max_retry_after_s = 900.0
max_queued = 10000

[metrics]
listen = "127.0.0.1:9465"
"#;

/// How the notifier's settings are layered.
const SPEC: Spec<'static> = Spec {
    what: "notifier settings",
    defaults: DEFAULTS,
    list_keys: &[],
};

impl Settings {
    /// Every setting with its environment variable and default, for `--help`.
    pub fn help() -> String {
        kit::settings::help::<Settings>(&SPEC)
    }

    /// Loads defaults, then `file` if given, then the process's `LOADTEST__…` environment
    /// variables, and checks them. Errors name the key to fix.
    ///
    /// # Errors
    ///
    /// An unknown key, a value of the wrong type, an unreadable file, or a value out of range.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        Self::load_from(file, &Env::Process)
    }

    /// As [`Settings::load`], with the environment layer taken from `env`.
    ///
    /// # Errors
    ///
    /// As [`Settings::load`].
    pub fn load_from(file: Option<&Path>, env: &Env) -> anyhow::Result<Self> {
        let s: Settings = kit::settings::load(&SPEC, file, env)?;
        let positive = |key: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "slack.{key} must be a positive number of seconds, got {v}"
                ))
            }
        };
        positive("timeout_s", s.slack.timeout_s)?;
        positive("retry_max_s", s.slack.retry_max_s)?;
        positive("max_retry_after_s", s.slack.max_retry_after_s)?;
        if let Some(base) = s.dashboard.base() {
            let ok = (base.starts_with("http://") || base.starts_with("https://"))
                && !base.contains(|c: char| c.is_whitespace() || matches!(c, '|' | '<' | '>'));
            if !ok {
                anyhow::bail!(
                    "dashboard.grafana_url must be an http(s) URL such as https://grafana.example.com, got {base:?}"
                );
            }
        }
        if s.slack.max_queued == 0 {
            anyhow::bail!("slack.max_queued must be at least 1");
        }
        if s.amqp.delivery_limit == 0 {
            anyhow::bail!("amqp.delivery_limit must be at least 1");
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> Env {
        Env::vars(vars.iter().copied())
    }

    #[test]
    fn example_file_loads_and_is_off_without_a_webhook() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/notifier.example.toml");
        let s = Settings::load_from(Some(&path), &env(&[])).expect("example loads");
        assert!(s.slack.webhook().expect("no file").is_none(), "off");
        assert_eq!(s.amqp.notify_queue("slack"), "loadtest.notify.slack");
        assert_eq!(s.amqp.delivery_limit, 20);
        assert_eq!(s.slack.timeout(), Duration::from_secs(10));
        assert_eq!(s.slack.min_interval(), Duration::from_secs(1));
        assert_eq!(s.dashboard.base().as_deref(), Some("http://localhost:3000"));
        let d = DashboardSettings {
            grafana_url: Some("https://g.example.com/ ".into()),
        };
        assert_eq!(d.base().as_deref(), Some("https://g.example.com"));
        assert_eq!(s.metrics.listen.as_deref(), Some("127.0.0.1:9465"));
    }

    #[test]
    fn the_webhook_comes_verbatim_from_the_environment_or_a_file() {
        let url = "https://hooks.slack.com/services/T000/B000/0123456789";
        let s = Settings::load_from(None, &env(&[("LOADTEST__SLACK__WEBHOOK_URL", url)]))
            .expect("loads");
        let got = s.slack.webhook().expect("ok").expect("set");
        assert_eq!(got.expose_secret(), url);
        assert!(!format!("{s:?}").contains("0123456789"), "Debug hides it");

        let dir = std::env::temp_dir().join(format!("notifier-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("webhook");
        std::fs::write(&file, format!("{url}\n")).expect("write");
        let s = Settings::load_from(
            None,
            &env(&[(
                "LOADTEST__SLACK__WEBHOOK_URL_FILE",
                file.to_str().expect("utf-8"),
            )]),
        )
        .expect("loads");
        let got = s.slack.webhook().expect("ok").expect("set");
        assert_eq!(got.expose_secret(), url, "trailing newline trimmed");
        let _ = std::fs::remove_dir_all(dir);

        let s = Settings::load_from(None, &env(&[("LOADTEST__SLACK__WEBHOOK_URL", " ")]))
            .expect("loads");
        assert!(s.slack.webhook().expect("ok").is_none(), "empty is off");
    }

    #[test]
    fn bad_values_are_named() {
        let err = Settings::load_from(None, &env(&[("LOADTEST__SLACK__WEBHOOK", "x")]))
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("slack.webhook"), "{err}");
        let err = Settings::load_from(None, &env(&[("LOADTEST__SLACK__TIMEOUT_S", "0")]))
            .expect_err("zero timeout")
            .to_string();
        assert!(err.contains("slack.timeout_s"), "{err}");
        let err = Settings::load_from(
            None,
            &env(&[("LOADTEST__DASHBOARD__GRAFANA_URL", "grafana:3000")]),
        )
        .expect_err("no scheme")
        .to_string();
        assert!(err.contains("dashboard.grafana_url"), "{err}");
    }
}
