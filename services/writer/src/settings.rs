//! The writer's settings: defaults < optional TOML file (`--config`) < environment
//! (`LOADTEST__SECTION__KEY`, e.g. `LOADTEST__SINK__KIND=v1`), loaded by [`kit::settings`]:
//! unknown keys are errors, secrets are taken verbatim. See `writer.example.toml`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kit::amqp::AmqpSettings;
use kit::settings::{Env, Spec};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use lifecycle::{Backslashes, LifecycleSettings};

/// All settings of `loadtest-writer`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Broker connection and names (`<exchange>.writer`, `.dlx`, `.dead`, `.status`), prefetch
    /// (default 20000 here: the writer keeps consuming while checkpoints are being confirmed
    /// only below it), delivery limit; publisher confirms wait `confirm_timeout_ms` (default
    /// 10000 here).
    pub amqp: AmqpSettings,
    /// Run lifecycle timings.
    pub lifecycle: LifecycleConfig,
    /// Where run state is checkpointed, and the leader lock.
    pub checkpoint: CheckpointSettings,
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
#[derive(Debug, Clone, Deserialize, Serialize)]
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

/// Lifecycle timings, in seconds.
#[derive(Debug, Clone, Deserialize, Serialize)]
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
    /// Snapshots a run keeps while they cannot be written (default 120); the oldest is dropped
    /// beyond it, with a warning.
    pub max_pending_snapshots_per_run: usize,
    /// Bytes of line protocol those snapshots may take per run (default 8388608: 8 MiB); the
    /// oldest is dropped beyond it too. Checkpoint records carry them (deflated), and the
    /// broker caps a message's size.
    pub max_pending_bytes_per_run: usize,
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
            max_pending_snapshots_per_run: self.max_pending_snapshots_per_run.max(1),
            max_pending_bytes_per_run: self.max_pending_bytes_per_run.max(1),
            ..LifecycleSettings::default()
        })
    }
}

/// The checkpoint stream and the leader lock (see `checkpoints` and `lock`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSettings {
    /// The checkpoint stream, and the fanout exchange bound to it (default empty:
    /// `<exchange>.writer.state`).
    pub stream: String,
    /// The stream's retention, s (`x-max-age`, default 3600). Applies when the stream is
    /// created; change an existing stream's with a policy.
    pub max_age_s: u64,
    /// The stream's segment size, bytes (`x-stream-max-segment-size-bytes`, default 4000000):
    /// retention deletes whole segments, so small ones let it act.
    pub max_segment_size_bytes: u64,
    /// An unchanged run is checkpointed again after this long, s (default 60).
    pub refresh_s: f64,
    /// Checkpoint as soon as this many deliveries were taken in since the last checkpoint
    /// (default 1000; at most half the prefetch), besides every snapshot interval.
    pub after_deliveries: usize,
    /// A standing-by writer tries to take the leader lock this often, s (default 1).
    pub lock_retry_s: f64,
}

impl CheckpointSettings {
    /// The stream's name: `stream`, or `<exchange>.writer.state`.
    pub fn stream_name(&self, amqp: &AmqpSettings) -> String {
        if self.stream.is_empty() {
            format!("{}.writer.state", amqp.exchange)
        } else {
            self.stream.clone()
        }
    }

    /// The leader lock's exclusive queue, `<exchange>.writer.lock`.
    pub fn lock_name(amqp: &AmqpSettings) -> String {
        format!("{}.writer.lock", amqp.exchange)
    }

    /// [`CheckpointSettings::refresh_s`] as a duration; errors name the key.
    pub fn refresh(&self) -> anyhow::Result<Duration> {
        positive("checkpoint.refresh_s", self.refresh_s)
    }

    /// [`CheckpointSettings::lock_retry_s`] as a duration; errors name the key.
    pub fn lock_retry(&self) -> anyhow::Result<Duration> {
        positive("checkpoint.lock_retry_s", self.lock_retry_s)
    }

    /// The unacked count that triggers a checkpoint: `after_deliveries`, at most half the
    /// prefetch (the broker stops delivering at the prefetch), at least 1.
    pub fn threshold(&self, prefetch: u16) -> usize {
        self.after_deliveries.min(usize::from(prefetch) / 2).max(1)
    }
}

fn positive(key: &str, v: f64) -> anyhow::Result<Duration> {
    if v.is_finite() && v > 0.0 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(anyhow::anyhow!(
            "{key} must be a positive number of seconds, got {v}"
        ))
    }
}

/// Which sink, and its settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
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
    #[serde(serialize_with = "kit::settings::serialize_opt_secret")]
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
    #[serde(serialize_with = "kit::settings::serialize_opt_secret")]
    pub password: Option<SecretString>,
    /// Gzip request bodies of 1 KiB and more (v1; default true): line protocol shrinks about
    /// ten times, which is what a remote InfluxDB (or Cloud) mostly waits for.
    pub gzip: bool,
    /// Output file (file sink).
    pub path: PathBuf,
    /// How the store reads a backslash in a tag value (a request name): `literal` (default;
    /// InfluxDB 1.x and 2.x, and the file, which is imported into them) or `escaped`
    /// (VictoriaMetrics, InfluxDB 3). See `lifecycle::Backslashes`.
    pub backslashes: Backslashes,
}

/// Which sink the writer writes to (`sink.kind`). Any other value fails to load, naming the
/// allowed ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", rename_all = "lowercase")]
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
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// HMAC secret shared with the API (event tokens are `HMAC-SHA256(secret, uuid)`).
    #[serde(serialize_with = "kit::settings::serialize_opt_secret")]
    pub token_secret: Option<SecretString>,
    /// File holding the secret, if not given inline.
    pub token_secret_file: Option<PathBuf>,
    /// Dead-letter messages whose token does not verify (default true).
    pub verify_tokens: bool,
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
[amqp]
confirm_timeout_ms = 10000
prefetch = 20000

[lifecycle]
snapshot_interval_s = 15.0
expire_after_s = 300.0
commit_grace_s = 60.0
max_names_per_run = 500
max_pending_snapshots_per_run = 120
max_pending_bytes_per_run = 8388608

[checkpoint]
stream = ""
max_age_s = 3600
max_segment_size_bytes = 4000000
refresh_s = 60.0
after_deliveries = 1000
lock_retry_s = 1.0

[sink]
kind = "v2"
url = "http://127.0.0.1:8086"
org = "loadtest"
bucket = "loadtest"
database = "loadtest"
gzip = true
path = "loadtest-results.lp"
backslashes = "literal"

[auth]
verify_tokens = true

[metrics]
listen = "127.0.0.1:9464"
"#;

/// How the writer's settings are layered.
const SPEC: Spec<'static> = Spec {
    what: "writer settings",
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
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        Self::load_from(file, &Env::Process)
    }

    /// As [`Settings::load`], with the environment layer taken from `env`.
    pub fn load_from(file: Option<&Path>, env: &Env) -> anyhow::Result<Self> {
        let s: Settings = kit::settings::load(&SPEC, file, env)?;
        s.lifecycle.to_settings()?;
        s.checkpoint.refresh()?;
        s.checkpoint.lock_retry()?;
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

    use secrecy::ExposeSecret;

    fn env(vars: &[(&str, &str)]) -> Env {
        Env::vars(vars.iter().copied())
    }

    #[test]
    fn example_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/writer.example.toml");
        // The example leaves the secret to the environment, so it must say so.
        let err = Settings::load_from(Some(&path), &env(&[]))
            .expect_err("no secret")
            .to_string();
        assert!(err.contains("LOADTEST__AUTH__TOKEN_SECRET"), "{err}");
        let s = Settings::load_from(Some(&path), &env(&[("LOADTEST__AUTH__TOKEN_SECRET", "x")]))
            .expect("example loads");
        assert_eq!(s.sink.kind, SinkKind::V1);
        assert_eq!(s.amqp.queue(), "loadtest.writer");
        assert_eq!(s.amqp.confirm_timeout_ms, 10_000);
        assert_eq!(
            s.lifecycle.to_settings().expect("valid").snapshot_interval,
            Duration::from_secs(15)
        );
        assert_eq!(s.checkpoint.stream_name(&s.amqp), "loadtest.writer.state");
        assert_eq!(
            CheckpointSettings::lock_name(&s.amqp),
            "loadtest.writer.lock"
        );
        assert_eq!(
            s.checkpoint.refresh().expect("valid"),
            Duration::from_secs(60)
        );
        assert_eq!(s.checkpoint.threshold(s.amqp.prefetch), 1000);
        assert_eq!(s.amqp.prefetch, 20000);
        assert_eq!(s.checkpoint.threshold(50), 25, "at most half the prefetch");
        assert_eq!(
            s.lifecycle
                .to_settings()
                .expect("valid")
                .max_pending_snapshots_per_run,
            120
        );
    }

    /// Issue 17 item 4: a secret made of digits is the string given, not a number.
    #[test]
    fn secrets_from_the_environment_are_verbatim() {
        let zeros_one = format!("{}1", "0".repeat(63));
        let long_decimal = "123456789012345678901234567890123456789012345678901234567890";
        for secret in [zeros_one.as_str(), long_decimal, "0123"] {
            let s = Settings::load_from(
                None,
                &env(&[
                    ("LOADTEST__AUTH__TOKEN_SECRET", secret),
                    ("LOADTEST__SINK__TOKEN", secret),
                    ("LOADTEST__AMQP__PREFETCH", "42"),
                ]),
            )
            .expect("loads");
            let got = s.auth.token_secret.expect("set");
            assert_eq!(got.expose_secret(), secret);
            assert_eq!(s.sink.token.expect("set").expose_secret(), secret);
            assert_eq!(s.amqp.prefetch, 42, "numbers still parse");
        }
    }

    /// Issue 17 item 8: `--help` lists every setting with its variable and default, secrets
    /// never shown.
    #[test]
    fn help_lists_every_setting_with_its_variable_and_default() {
        let help = Settings::help();
        for line in [
            "LOADTEST__SINK__BACKSLASHES = literal",
            "LOADTEST__SINK__KIND = v2",
            "LOADTEST__AUTH__TOKEN_SECRET = unset",
            "LOADTEST__AMQP__URL = amqp://guest:***@127.0.0.1:5672/%2f",
            "LOADTEST__LIFECYCLE__SNAPSHOT_INTERVAL_S = 15.0",
            "LOADTEST__CHECKPOINT__LOCK_RETRY_S = 1.0",
        ] {
            assert!(help.contains(line), "{line} missing from:\n{help}");
        }
        assert!(!help.contains("guest:guest"), "{help}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Settings::load_from(
            None,
            &env(&[
                ("LOADTEST__AUTH__TOKEN_SECRET", "x"),
                ("LOADTEST__SINK__DATABSE", "x"),
            ]),
        )
        .expect_err("unknown key")
        .to_string();
        assert!(err.contains("sink.databse"), "{err}");
    }
}
