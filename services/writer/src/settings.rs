//! The writer's settings: defaults < optional TOML file (`--config`) < environment
//! (`LOADTEST__SECTION__KEY`, e.g. `LOADTEST__SINK__KIND=v1`). See `writer.example.toml`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use lifecycle::LifecycleSettings;

/// All settings of `loadtest-writer`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Broker connection and names.
    pub amqp: AmqpSettings,
    /// Run lifecycle timings.
    pub lifecycle: LifecycleConfig,
    /// Where points go.
    pub sink: SinkSettings,
    /// Event-token verification.
    pub auth: AuthSettings,
    /// Log output.
    #[serde(default)]
    pub log: LogSettings,
    /// Prometheus metrics endpoint.
    #[serde(default)]
    pub metrics: MetricsSettings,
}

/// Metrics endpoint settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Address of `GET /metrics` (default `127.0.0.1:9464`; empty disables it; port 0 picks a
    /// free port, logged on start).
    pub listen: Option<String>,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            listen: Some("127.0.0.1:9464".into()),
        }
    }
}

/// Broker settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSettings {
    /// AMQP URI (`amqp://user:pass@host:5672/%2f`); a `heartbeat` query is added when missing.
    pub url: SecretString,
    /// Topic exchange (default `loadtest`). The queue is `<exchange>.writer`, the dead-letter
    /// exchange `<exchange>.dlx`, its queue `<exchange>.dead`, the status fanout
    /// `<exchange>.status`, so one setting isolates a whole deployment (or a test).
    pub exchange: String,
    /// Consumer prefetch; must exceed the active (run, node) pairs (default 5000).
    pub prefetch: u16,
    /// Redeliveries before RabbitMQ dead-letters a message (quorum `x-delivery-limit`, default 20).
    pub delivery_limit: u32,
    /// Heartbeat, seconds (default 10).
    pub heartbeat_s: u16,
    /// Optional `x-expires` of the queues, ms (for tests; unset in production).
    pub queue_expires_ms: Option<u64>,
}

impl AmqpSettings {
    /// The writer's quorum queue.
    pub fn queue(&self) -> String {
        format!("{}.writer", self.exchange)
    }
    /// Dead-letter exchange.
    pub fn dlx(&self) -> String {
        format!("{}.dlx", self.exchange)
    }
    /// Dead-letter queue.
    pub fn dead_queue(&self) -> String {
        format!("{}.dead", self.exchange)
    }
    /// Status fanout exchange.
    pub fn status_exchange(&self) -> String {
        format!("{}.status", self.exchange)
    }
}

/// Lifecycle timings, in seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleConfig {
    /// Snapshot interval, s (default 15).
    pub snapshot_interval_s: f64,
    /// Expire a run after this long without a message, s (default 300).
    pub expire_after_s: f64,
    /// Wait this long after the first commit for the other nodes, s (default 60).
    pub commit_grace_s: f64,
    /// Distinct (method, name) pairs per run (default 500).
    pub max_names_per_run: usize,
}

impl LifecycleConfig {
    /// As [`LifecycleSettings`]; errors name the bad key.
    pub fn to_settings(&self) -> anyhow::Result<LifecycleSettings> {
        let secs = |key: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(anyhow::anyhow!(
                    "lifecycle.{key} must be a positive number of seconds, got {v}"
                ))
            }
        };
        Ok(LifecycleSettings {
            snapshot_interval: secs("snapshot_interval_s", self.snapshot_interval_s)?,
            expire_after: secs("expire_after_s", self.expire_after_s)?,
            commit_grace: secs("commit_grace_s", self.commit_grace_s)?,
            max_names_per_run: self.max_names_per_run.max(1),
        })
    }
}

/// Which sink, and its settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSettings {
    /// `v2` (InfluxDB API v2, default), `v1` (InfluxDB API v1) or `file` (line protocol).
    pub kind: SinkKind,
    /// InfluxDB base URL (v1, v2).
    pub url: String,
    /// Organisation (v2).
    pub org: String,
    /// Bucket (v2).
    pub bucket: String,
    /// API token (v2).
    pub token: Option<SecretString>,
    /// File holding the token (v2), if not given inline.
    pub token_file: Option<PathBuf>,
    /// Database (v1).
    pub database: String,
    /// Retention policy (v1), optional.
    pub retention_policy: Option<String>,
    /// Basic-auth user (v1), optional.
    pub username: Option<String>,
    /// Basic-auth password (v1), optional.
    pub password: Option<SecretString>,
    /// Output file (file sink).
    pub path: PathBuf,
}

/// Which sink the writer writes to (`sink.kind`). Any other value fails to load, naming the
/// allowed ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum SinkKind {
    /// InfluxDB API v2 (InfluxDB 2.x, 3.x, Cloud, 1.8+, v2-compatible stores): `v2`.
    V2,
    /// InfluxDB API v1 (InfluxDB 1.x and 3.x): `v1`.
    V1,
    /// A line-protocol file at `sink.path`: `file`.
    File,
}

impl TryFrom<String> for SinkKind {
    type Error = String;

    /// `config`'s own message for an unknown enum variant does not list the variants, so the
    /// value is read as text and named here with the allowed ones.
    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.as_str() {
            "v2" => Ok(SinkKind::V2),
            "v1" => Ok(SinkKind::V1),
            "file" => Ok(SinkKind::File),
            other => Err(format!(
                "unknown sink.kind `{other}`, expected one of `v2`, `v1`, `file`"
            )),
        }
    }
}

/// Event-token verification.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// HMAC secret shared with the API (event tokens are `HMAC-SHA256(secret, uuid)`).
    pub token_secret: Option<SecretString>,
    /// File holding the secret, if not given inline.
    pub token_secret_file: Option<PathBuf>,
    /// Dead-letter messages whose token does not verify (default true).
    pub verify_tokens: bool,
}

/// Log format.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `auto` (JSON unless stderr is a terminal), `json` or `text`.
    #[serde(default)]
    pub format: Option<String>,
}

/// Reads a secret given inline or from a file (trailing newline trimmed).
pub fn secret_from(
    inline: &Option<SecretString>,
    file: &Option<PathBuf>,
    what: &str,
) -> anyhow::Result<Option<SecretString>> {
    if let Some(s) = inline {
        return Ok(Some(s.clone()));
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {what} from {}: {e}", path.display()))?;
        return Ok(Some(SecretString::from(text.trim_end().to_string())));
    }
    Ok(None)
}

impl Settings {
    /// Loads defaults, then `file` if given, then `LOADTEST__…` environment variables.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut b = config::Config::builder()
            .set_default("amqp.url", "amqp://guest:guest@127.0.0.1:5672/%2f")?
            .set_default("amqp.exchange", "loadtest")?
            .set_default("amqp.prefetch", 5000)?
            .set_default("amqp.delivery_limit", 20)?
            .set_default("amqp.heartbeat_s", 10)?
            .set_default("lifecycle.snapshot_interval_s", 15.0)?
            .set_default("lifecycle.expire_after_s", 300.0)?
            .set_default("lifecycle.commit_grace_s", 60.0)?
            .set_default("lifecycle.max_names_per_run", 500)?
            .set_default("sink.kind", "v2")?
            .set_default("sink.url", "http://127.0.0.1:8086")?
            .set_default("sink.org", "loadtest")?
            .set_default("sink.bucket", "loadtest")?
            .set_default("sink.database", "loadtest")?
            .set_default("sink.path", "loadtest-results.lp")?
            .set_default("auth.verify_tokens", true)?
            .set_default("metrics.listen", "127.0.0.1:9464")?;
        if let Some(f) = file {
            b = b.add_source(config::File::from(f).required(true));
        }
        b = b.add_source(
            config::Environment::with_prefix("LOADTEST")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
        let s: Settings = b
            .build()?
            .try_deserialize()
            .map_err(|e| anyhow::anyhow!("invalid writer settings: {e}"))?;
        s.lifecycle.to_settings()?;
        if s.auth.verify_tokens
            && s.auth.token_secret.is_none()
            && s.auth.token_secret_file.is_none()
        {
            anyhow::bail!(
                "auth.token_secret is required to verify event tokens: set LOADTEST__AUTH__TOKEN_SECRET \
                 (the same secret as the API), or auth.token_secret_file, or disable with \
                 LOADTEST__AUTH__VERIFY_TOKENS=false"
            );
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/writer.example.toml");
        let mut s = Settings::load(Some(&path));
        // The example leaves the secret to the environment, so it must say so.
        let err = s.as_ref().expect_err("no secret").to_string();
        assert!(err.contains("LOADTEST__AUTH__TOKEN_SECRET"), "{err}");
        let cfg = config::Config::builder()
            .add_source(config::File::from(path.as_path()))
            .set_override("auth.token_secret", "x")
            .and_then(|b| b.build())
            .expect("builds");
        s = cfg
            .try_deserialize::<Settings>()
            .map_err(anyhow::Error::from);
        let s = s.expect("example deserializes");
        assert_eq!(s.sink.kind, SinkKind::V1);
        assert_eq!(s.amqp.queue(), "loadtest.writer");
        assert_eq!(
            s.lifecycle.to_settings().expect("valid").snapshot_interval,
            Duration::from_secs(15)
        );
    }

    fn with_sink_kind(kind: &str) -> Result<Settings, config::ConfigError> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/writer.example.toml");
        config::Config::builder()
            .add_source(config::File::from(path.as_path()))
            .set_override("auth.token_secret", "x")?
            .set_override("sink.kind", kind)?
            .build()?
            .try_deserialize::<Settings>()
    }

    #[test]
    fn sink_kind_is_one_of_three() {
        for (text, kind) in [
            ("v2", SinkKind::V2),
            ("v1", SinkKind::V1),
            ("file", SinkKind::File),
        ] {
            let s = with_sink_kind(text).expect("a known sink kind");
            assert_eq!(s.sink.kind, kind);
        }
        let err = with_sink_kind("influx")
            .expect_err("an unknown sink kind")
            .to_string();
        for allowed in ["`v2`", "`v1`", "`file`", "influx"] {
            assert!(err.contains(allowed), "{allowed} in: {err}");
        }
    }
}
