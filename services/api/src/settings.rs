//! The API's settings: defaults < optional TOML file (`--config`) < environment
//! (`LOADTEST__SECTION__KEY`, e.g. `LOADTEST__AUTH__API_KEYS=key1,key2`). See
//! `api.example.toml`.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// All settings of `loadtest-api`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// HTTP listener.
    pub http: HttpSettings,
    /// Broker.
    pub amqp: AmqpSettings,
    /// API keys and event tokens.
    pub auth: AuthSettings,
}

/// HTTP listener settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Listen address (default `127.0.0.1:8080`; port 0 picks a free port).
    pub listen: String,
    /// Largest accepted body, bytes (default 1 MiB).
    pub body_limit: usize,
}

/// Broker settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSettings {
    /// AMQP URI; a `heartbeat` query is added when missing.
    pub url: SecretString,
    /// Topic exchange (default `loadtest`); the status fanout is `<exchange>.status`.
    pub exchange: String,
    /// Heartbeat, seconds (default 10).
    pub heartbeat_s: u16,
    /// How long to wait for a publisher confirm, ms (default 5000).
    pub confirm_timeout_ms: u64,
}

/// Authentication settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Require an API key for register and event tokens for stats/commit (default true).
    pub enabled: bool,
    /// Accepted API keys (comma-separated in the environment).
    #[serde(default)]
    pub api_keys: Vec<SecretString>,
    /// A file of API keys, one per line (`#` comments allowed).
    pub api_keys_file: Option<PathBuf>,
    /// HMAC secret for event tokens, shared with the writer.
    pub token_secret: Option<SecretString>,
    /// File holding the secret.
    pub token_secret_file: Option<PathBuf>,
}

impl Settings {
    /// Loads defaults, then `file`, then `LOADTEST__…` environment variables, and checks them.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut b = config::Config::builder()
            .set_default("http.listen", "127.0.0.1:8080")?
            .set_default("http.body_limit", 1024 * 1024)?
            .set_default("amqp.url", "amqp://guest:guest@127.0.0.1:5672/%2f")?
            .set_default("amqp.exchange", "loadtest")?
            .set_default("amqp.heartbeat_s", 10)?
            .set_default("amqp.confirm_timeout_ms", 5000)?
            .set_default("auth.enabled", true)?;
        if let Some(f) = file {
            b = b.add_source(config::File::from(f).required(true));
        }
        b = b.add_source(
            config::Environment::with_prefix("LOADTEST")
                .prefix_separator("__")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("auth.api_keys")
                .try_parsing(true),
        );
        let s: Settings = b
            .build()?
            .try_deserialize()
            .map_err(|e| anyhow::anyhow!("invalid API settings: {e}"))?;
        Ok(s)
    }
}

/// The resolved secrets: API keys and the token secret.
#[derive(Clone)]
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
        let token_secret = match (&auth.token_secret, &auth.token_secret_file) {
            (Some(s), _) => s.clone(),
            (None, Some(path)) => SecretString::from(
                std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("reading auth.token_secret_file {}: {e}", path.display()))?
                    .trim_end()
                    .to_string(),
            ),
            (None, None) => anyhow::bail!(
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
        let s = Settings::load(Some(&path)).expect("example loads");
        assert_eq!(s.http.body_limit, 1024 * 1024);
        assert!(s.auth.enabled);
        let err = Secrets::resolve(&s.auth)
            .err()
            .expect("no secret")
            .to_string();
        assert!(err.contains("LOADTEST__AUTH__TOKEN_SECRET"), "{err}");
        let mut auth = s.auth.clone();
        auth.token_secret = Some(SecretString::from("s".to_string()));
        let err = Secrets::resolve(&auth).err().expect("no keys").to_string();
        assert!(err.contains("LOADTEST__AUTH__API_KEYS"), "{err}");
        auth.api_keys = vec![SecretString::from("k".to_string())];
        assert!(Secrets::resolve(&auth).is_ok());
    }
}
