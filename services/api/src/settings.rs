//! The API's settings: defaults < optional TOML file (`--config`) < environment
//! (`LOADTEST__SECTION__KEY`, e.g. `LOADTEST__AUTH__API_KEYS=key1,key2`), loaded by
//! [`kit::settings`]: unknown keys are errors, secrets and API keys are taken verbatim. See
//! `api.example.toml`.

use std::path::{Path, PathBuf};

use kit::amqp::AmqpSettings;
use kit::settings::{secret_from, Env, Spec};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The defaults, the lowest layer (`[amqp]` defaults are [`AmqpSettings`]'s).
const DEFAULTS: &str = r#"
[http]
listen = "127.0.0.1:8080"
body_limit = 1048576

[auth]
enabled = true
"#;

/// How the API's settings are layered.
const SPEC: Spec<'static> = Spec {
    what: "API settings",
    defaults: DEFAULTS,
    list_keys: &["auth.api_keys"],
};

/// All settings of `loadtest-api`.
#[derive(Debug, Clone, Deserialize)]
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

/// HTTP listener settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Listen address (default `127.0.0.1:8080`; port 0 picks a free port).
    pub listen: String,
    /// Largest accepted body, bytes (default 1 MiB).
    pub body_limit: usize,
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
    /// Loads defaults, then `file`, then the process's `LOADTEST__…` environment variables.
    /// Errors name the key to fix.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        Self::load_from(file, &Env::Process)
    }

    /// As [`Settings::load`], with the environment layer taken from `env`.
    pub fn load_from(file: Option<&Path>, env: &Env) -> anyhow::Result<Self> {
        Ok(kit::settings::load(&SPEC, file, env)?)
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
