//! The API's settings: defaults < optional TOML file (`--config`) < environment
//! (`LOADTEST__SECTION__KEY`, e.g. `LOADTEST__AUTH__API_KEYS=key1,key2`), loaded by
//! [`kit::settings`]: unknown keys are errors, secrets and API keys are taken verbatim. See
//! `api.example.toml`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kit::amqp::AmqpSettings;
use kit::settings::{secret_from, Env, Spec};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// The defaults, the lowest layer (`[amqp]` defaults are [`AmqpSettings`]'s).
const DEFAULTS: &str = r#"
[http]
listen = "127.0.0.1:8080"
body_limit = 1048576
body_read_timeout_ms = 15000
header_read_timeout_ms = 10000
max_connections = 4096
max_buffered_body_bytes = 16777216
max_buffered_body_bytes_per_client = 4194304

[auth]
enabled = true
max_running_runs_per_key = 100
pending_run_ttl_s = 60
register_rate_per_key = 10
register_burst_per_key = 50
event_rate_per_run = 20
event_burst_per_run = 40
"#;

/// How the API's settings are layered.
const SPEC: Spec<'static> = Spec {
    what: "API settings",
    defaults: DEFAULTS,
    list_keys: &["auth.api_keys"],
};

/// All settings of `loadtest-api`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// HTTP listener.
    pub http: HttpSettings,
    /// Broker: `url`, `exchange` (the status fanout is `<exchange>.status`), `heartbeat_s`,
    /// `confirm_timeout_ms` (how long a publish waits for its confirm before the 503).
    #[serde(default)]
    pub amqp: AmqpSettings,
    /// API keys and event tokens.
    pub auth: AuthSettings,
}

/// HTTP listener settings: what one connection or one request may hold, and for how long.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Listen address (default `127.0.0.1:8080`; port 0 picks a free port).
    pub listen: String,
    /// Largest accepted body, bytes (default 1 MiB). A larger `Content-Length` is answered 413
    /// before anything else; a chunked body is cut off with 413 once it passes the limit.
    pub body_limit: usize,
    /// Time a request's body may take to arrive, ms (default 15000); then 408.
    pub body_read_timeout_ms: u64,
    /// Time a connection may take to send a request's headers, ms, counted from the connection's
    /// start or the end of its previous response (so it is also the keep-alive idle timeout;
    /// default 10000); then the connection is closed.
    pub header_read_timeout_ms: u64,
    /// Concurrent connections (default 4096; lowered to fit the open-files limit). Above it a
    /// new connection gets 503 with `Retry-After` and is closed at once.
    pub max_connections: usize,
    /// Request body bytes buffered at once across all requests (default 16 MiB); a request that
    /// would pass it gets 503 with `Retry-After`.
    pub max_buffered_body_bytes: usize,
    /// Of those, what one client may buffer at once (default 4 MiB): one API key on register,
    /// one run on stats and commit. Beyond it: 429 with `Retry-After`.
    pub max_buffered_body_bytes_per_client: usize,
}

impl HttpSettings {
    /// [`HttpSettings::body_read_timeout_ms`] as a duration.
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }

    /// [`HttpSettings::header_read_timeout_ms`] as a duration.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }
}

/// Authentication settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Require an API key for register and event tokens for stats/commit (default true).
    pub enabled: bool,
    /// Accepted API keys (comma-separated in the environment).
    #[serde(default)]
    #[serde(serialize_with = "kit::settings::serialize_secrets")]
    pub api_keys: Vec<SecretString>,
    /// A file of API keys, one per line (`#` comments allowed).
    pub api_keys_file: Option<PathBuf>,
    /// HMAC secret for event tokens, shared with the writer.
    #[serde(serialize_with = "kit::settings::serialize_opt_secret")]
    pub token_secret: Option<SecretString>,
    /// File holding the secret.
    pub token_secret_file: Option<PathBuf>,
    /// Running runs one API key may have (default 100; 0: no limit). Counted from the writer's
    /// running set plus the registrations this replica accepted that the writer has not
    /// reported yet. A register beyond it gets 429 `running-runs-limit`; joining a running run
    /// (same `runKey`) is not a new run.
    pub max_running_runs_per_key: usize,
    /// How long an accepted registration counts against its key before the writer reports
    /// it, s (default 60).
    pub pending_run_ttl_s: u64,
    /// Registrations per second one API key may make, sustained (default 10; 0: no limit).
    pub register_rate_per_key: u32,
    /// Registrations one API key may make in a burst (default 50).
    pub register_burst_per_key: u32,
    /// Stats and commit posts per second one run may make, sustained (default 20; 0: no limit).
    pub event_rate_per_run: u32,
    /// Stats and commit posts one run may make in a burst (default 40).
    pub event_burst_per_run: u32,
}

impl Settings {
    /// Every setting with its environment variable and default, for `--help`.
    pub fn help() -> String {
        kit::settings::help::<Settings>(&SPEC)
    }

    /// Loads defaults, then `file`, then the process's `LOADTEST__…` environment variables.
    /// Errors name the key to fix.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        Self::load_from(file, &Env::Process)
    }

    /// As [`Settings::load`], with the environment layer taken from `env`.
    pub fn load_from(file: Option<&Path>, env: &Env) -> anyhow::Result<Self> {
        let settings: Self = kit::settings::load(&SPEC, file, env)?;
        settings.check()?;
        Ok(settings)
    }

    /// Rejects limits that cannot work, naming the setting.
    fn check(&self) -> anyhow::Result<()> {
        let h = &self.http;
        let positive = [
            ("http.body_limit", h.body_limit as u64),
            ("http.body_read_timeout_ms", h.body_read_timeout_ms),
            ("http.header_read_timeout_ms", h.header_read_timeout_ms),
            ("http.max_connections", h.max_connections as u64),
            (
                "http.max_buffered_body_bytes",
                h.max_buffered_body_bytes as u64,
            ),
            (
                "http.max_buffered_body_bytes_per_client",
                h.max_buffered_body_bytes_per_client as u64,
            ),
            ("auth.pending_run_ttl_s", self.auth.pending_run_ttl_s),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            anyhow::bail!("{name} must be greater than 0");
        }
        if h.max_buffered_body_bytes_per_client < h.body_limit
            || h.max_buffered_body_bytes < h.max_buffered_body_bytes_per_client
        {
            anyhow::bail!(
                "need http.body_limit <= http.max_buffered_body_bytes_per_client <= \
                 http.max_buffered_body_bytes (now {} / {} / {})",
                h.body_limit,
                h.max_buffered_body_bytes_per_client,
                h.max_buffered_body_bytes
            );
        }
        Ok(())
    }
}

/// The resolved secrets: API keys and the token secret.
#[derive(Debug, Clone)]
pub struct Secrets {
    /// Accepted API keys.
    pub api_keys: Vec<SecretString>,
    /// HMAC secret for event tokens.
    pub token_secret: SecretString,
}

impl Secrets {
    /// Reads inline values and files. Errors say which setting to fix.
    pub fn resolve(auth: &AuthSettings) -> anyhow::Result<Self> {
        let mut api_keys: Vec<SecretString> = auth
            .api_keys
            .iter()
            .filter(|k| !k.expose_secret().trim().is_empty())
            .cloned()
            .collect();
        if let Some(path) = &auth.api_keys_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("reading auth.api_keys_file {}: {e}", path.display())
            })?;
            api_keys.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(|l| SecretString::from(l.to_string())),
            );
        }
        let token_secret = match secret_from(
            &auth.token_secret,
            &auth.token_secret_file,
            "auth.token_secret",
        )? {
            Some(s) => s,
            None => anyhow::bail!(
                "auth.token_secret is required (event tokens are HMAC-SHA256(secret, uuid)): set \
                 LOADTEST__AUTH__TOKEN_SECRET to the same secret as the writer's, or auth.token_secret_file"
            ),
        };
        if token_secret.expose_secret().is_empty() {
            anyhow::bail!("auth.token_secret is empty");
        }
        if auth.enabled && api_keys.is_empty() {
            anyhow::bail!(
                "auth is enabled but no API key is configured: set LOADTEST__AUTH__API_KEYS=key1,key2 \
                 or auth.api_keys_file, or disable auth explicitly with LOADTEST__AUTH__ENABLED=false"
            );
        }
        Ok(Self {
            api_keys,
            token_secret,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_loads_and_secrets_are_required() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/api.example.toml");
        let no_env = Env::vars(Vec::<(String, String)>::new());
        let s = Settings::load_from(Some(&path), &no_env).expect("example loads");
        assert_eq!(s.http.body_limit, 1024 * 1024);
        assert!(s.auth.enabled);
        let err = Secrets::resolve(&s.auth)
            .expect_err("no secret")
            .to_string();
        assert!(err.contains("LOADTEST__AUTH__TOKEN_SECRET"), "{err}");
        let mut auth = s.auth.clone();
        auth.token_secret = Some(SecretString::from("s".to_string()));
        let err = Secrets::resolve(&auth).expect_err("no keys").to_string();
        assert!(err.contains("LOADTEST__AUTH__API_KEYS"), "{err}");
        auth.api_keys = vec![SecretString::from("k".to_string())];
        assert!(Secrets::resolve(&auth).is_ok());
    }

    fn load_env(vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
        Settings::load_from(None, &Env::vars(vars.iter().copied()))
    }

    /// Issue 17 item 4: the environment's secrets and keys are strings, verbatim. Type guessing
    /// made a 64-digit secret the HMAC key `1`, lost digits of long decimal secrets, and made the
    /// key `0123` stop the API from starting.
    #[test]
    fn secrets_and_api_keys_from_the_environment_are_verbatim() {
        let zeros_one = format!("{}1", "0".repeat(63));
        let long_decimal = "123456789012345678901234567890123456789012345678901234567890";
        for secret in [zeros_one.as_str(), long_decimal] {
            let s = load_env(&[
                ("LOADTEST__AUTH__TOKEN_SECRET", secret),
                ("LOADTEST__AUTH__API_KEYS", "k"),
            ])
            .expect("loads");
            let secrets = Secrets::resolve(&s.auth).expect("resolves");
            assert_eq!(secrets.token_secret.expose_secret(), secret);
        }
        let s = load_env(&[
            ("LOADTEST__AUTH__TOKEN_SECRET", "s"),
            ("LOADTEST__AUTH__API_KEYS", "0123"),
        ])
        .expect("the key 0123 loads");
        let secrets = Secrets::resolve(&s.auth).expect("resolves");
        let keys: Vec<&str> = secrets.api_keys.iter().map(|k| k.expose_secret()).collect();
        assert_eq!(keys, ["0123"]);
        // Numbers elsewhere still parse from the environment.
        let s = load_env(&[
            ("LOADTEST__HTTP__BODY_LIMIT", "2048"),
            ("LOADTEST__AMQP__CONFIRM_TIMEOUT_MS", "750"),
            ("LOADTEST__AUTH__ENABLED", "false"),
        ])
        .expect("loads");
        assert_eq!(s.http.body_limit, 2048);
        assert_eq!(s.amqp.confirm_timeout_ms, 750);
        assert!(!s.auth.enabled);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = load_env(&[("LOADTEST__HTTP__LISTNE", "x")])
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("http.listne"), "{err}");
    }

    #[test]
    fn the_token_secret_file_loses_its_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("api-secret-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("secret");
        std::fs::write(&path, "0042\n").expect("write");
        let path_text = path.to_string_lossy().to_string();
        let s = load_env(&[
            ("LOADTEST__AUTH__TOKEN_SECRET_FILE", path_text.as_str()),
            ("LOADTEST__AUTH__ENABLED", "false"),
        ])
        .expect("loads");
        let secrets = Secrets::resolve(&s.auth).expect("resolves");
        assert_eq!(secrets.token_secret.expose_secret(), "0042");
        let _ = std::fs::remove_dir_all(dir);
    }
}
