//! The layered settings loader and the secret loader, used by every service's `Settings::load`.
//!
//! Layers, each overriding the one before: the service's defaults (TOML text) < an optional TOML
//! file (`--config FILE`) < the environment, `LOADTEST__SECTION__KEY` (`LOADTEST__AMQP__URL` sets
//! `amqp.url`; names are case-insensitive). The settings structs deny unknown fields, so a
//! misspelt key is an error that names it, never silently ignored.
//!
//! Environment values are strings: a field that is a number or a boolean parses its string, and
//! every other field (secrets, API keys, names) takes it verbatim. So
//! `LOADTEST__AUTH__TOKEN_SECRET=000…0001` is that 64-character secret, not the number 1, and
//! `LOADTEST__AUTH__API_KEYS=0123` is the key `0123`. The keys a service names as lists are
//! split on commas (`LOADTEST__AUTH__API_KEYS=key1,key2`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use config::{ConfigError, FileFormat, Map, Source, Value, ValueKind};
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};

/// Prefix of the environment variables read, followed by `__` (`LOADTEST__SECTION__KEY`).
pub const ENV_PREFIX: &str = "LOADTEST";

/// Why settings could not be loaded. The messages name the key (or variable, or file) to fix
/// and never carry a secret's value.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A layer could not be read, or the merged settings do not fit the struct: an unknown key,
    /// a missing one, or a value of the wrong type (the message names the key).
    #[error("invalid {what}: {message}")]
    Invalid {
        /// Whose settings (`API settings`).
        what: &'static str,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A `LOADTEST__…` variable's value is not UTF-8.
    #[error("environment variable {0} is not valid UTF-8")]
    NotUnicode(String),
    /// A secret's `*_file` could not be read.
    #[error("reading {key} from {}: {source}", path.display())]
    SecretFile {
        /// The setting (`auth.token_secret`).
        key: String,
        /// The file named by `<key>_file`.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Where the environment layer comes from.
#[derive(Debug, Clone, Default)]
pub enum Env {
    /// The process environment: every `LOADTEST__…` variable.
    #[default]
    Process,
    /// These `(name, value)` pairs instead, as if they were the whole environment (tests set
    /// variables here, so parallel tests never race on the process environment).
    Vars(Vec<(String, String)>),
}

impl Env {
    /// An environment of exactly these variables.
    pub fn vars<K: Into<String>, V: Into<String>>(vars: impl IntoIterator<Item = (K, V)>) -> Self {
        Env::Vars(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// The `LOADTEST__…` variables, names as given.
    fn loadtest_vars(&self) -> Result<Vec<(String, String)>, SettingsError> {
        let prefix = format!("{ENV_PREFIX}__").to_lowercase();
        let wanted = |k: &str| k.to_lowercase().starts_with(&prefix);
        match self {
            Env::Vars(v) => Ok(v.iter().filter(|(k, _)| wanted(k)).cloned().collect()),
            Env::Process => std::env::vars_os()
                .filter_map(|(k, v)| {
                    let k = k.into_string().ok()?;
                    wanted(&k).then_some((k, v))
                })
                .map(|(k, v): (String, OsString)| {
                    v.into_string()
                        .map(|v| (k.clone(), v))
                        .map_err(|_| SettingsError::NotUnicode(k))
                })
                .collect(),
        }
    }
}

/// What a service's settings are made of besides the file and the environment.
#[derive(Debug, Clone, Copy)]
pub struct Spec<'a> {
    /// Whose settings, for error messages (`API settings`).
    pub what: &'static str,
    /// The defaults, as TOML text (the lowest layer).
    pub defaults: &'a str,
    /// Dotted keys whose environment value is a comma-separated list (`auth.api_keys`).
    pub list_keys: &'a [&'a str],
}

/// Loads `T` from `spec.defaults` < `file` (TOML, required when given) < `env`.
///
/// # Errors
///
/// [`SettingsError::Invalid`] naming the key for an unknown key (with
/// `#[serde(deny_unknown_fields)]` on `T`), a missing key or a value of the wrong type, or an
/// unreadable file; [`SettingsError::NotUnicode`] for a variable that is not UTF-8.
pub fn load<T: DeserializeOwned>(
    spec: &Spec<'_>,
    file: Option<&Path>,
    env: &Env,
) -> Result<T, SettingsError> {
    let invalid = |e: ConfigError| SettingsError::Invalid {
        what: spec.what,
        message: e.to_string(),
    };
    let mut builder = config::Config::builder()
        .add_source(config::File::from_str(spec.defaults, FileFormat::Toml));
    if let Some(f) = file {
        builder = builder.add_source(
            config::File::from(f)
                .format(FileFormat::Toml)
                .required(true),
        );
    }
    builder = builder.add_source(EnvSource {
        vars: env.loadtest_vars()?,
        list_keys: spec.list_keys.iter().map(|k| k.to_string()).collect(),
    });
    let merged = builder.build().map_err(invalid)?;
    serde_path_to_error::deserialize(merged).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // The path names the key in full (`amqp.prefetch`), where serde names only its last part.
        let message = if path == "." {
            message
        } else {
            format!("{path}: {message}")
        };
        SettingsError::Invalid {
            what: spec.what,
            message,
        }
    })
}

/// What a secret is shown as in [`help`]: never its value.
const SECRET: &str = "(secret)";

/// Serializes a secret as `(secret)` (for [`help`]; the value is never written).
pub fn serialize_secret<S: Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(SECRET)
}

/// Serializes an optional secret as `(secret)` or nothing (for [`help`]).
pub fn serialize_opt_secret<S: Serializer>(
    v: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str(SECRET),
        None => s.serialize_none(),
    }
}

/// Serializes a list of secrets as one `(secret)` each (for [`help`]).
pub fn serialize_secrets<S: Serializer>(v: &[SecretString], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|_| SECRET))
}

/// Every setting of `T`, one line each: its TOML key, its environment variable and its default,
/// generated from `T` loaded from `spec.defaults` alone and serialized (so a setting added to
/// `T` is listed without being written twice; secrets show as `(secret)`, settings without a
/// default as `unset`). For `--help`.
pub fn help<T: DeserializeOwned + Serialize>(spec: &Spec<'_>) -> String {
    let value = load::<T>(spec, None, &Env::Vars(Vec::new()))
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::to_value(t).map_err(|e| e.to_string()));
    let value = match value {
        Ok(v) => v,
        Err(e) => return format!("(the defaults do not load: {e})"),
    };
    let mut rows = Vec::new();
    walk(&value, String::new(), &mut rows);
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::from(
        "Settings: TOML key (in --config FILE), environment variable (wins over the file), \
         default. Each is described in the commented example file, config/*.example.toml.\n",
    );
    for (key, default) in rows {
        let env = format!("{ENV_PREFIX}__{}", key.to_uppercase().replace('.', "__"));
        let list = if spec.list_keys.contains(&key.as_str()) {
            " (comma-separated)"
        } else {
            ""
        };
        out.push_str(&format!("  {key:<width$}  {env}{list} = {default}\n"));
    }
    out
}

/// Collects (dotted key, default as text) for every leaf of `v`.
fn walk(v: &serde_json::Value, key: String, rows: &mut Vec<(String, String)>) {
    use serde_json::Value as J;
    match v {
        J::Object(map) => {
            for (k, child) in map {
                let key = if key.is_empty() {
                    k.clone()
                } else {
                    format!("{key}.{k}")
                };
                walk(child, key, rows);
            }
        }
        J::Null => rows.push((key, "unset".to_string())),
        J::String(s) if s.is_empty() => rows.push((key, "\"\"".to_string())),
        J::String(s) => rows.push((key, s.clone())),
        J::Array(items) => {
            let items: Vec<String> = items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                .collect();
            rows.push((key, format!("[{}]", items.join(","))));
        }
        other => rows.push((key, other.to_string())),
    }
}

/// The environment layer: `LOADTEST__A__B_C=v` → key `a.b_c`, value the string `v` (an array of
/// strings for a list key), with the variable's name as the value's origin so errors name it.
#[derive(Debug, Clone)]
struct EnvSource {
    vars: Vec<(String, String)>,
    list_keys: Vec<String>,
}

impl Source for EnvSource {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, ConfigError> {
        let skip = ENV_PREFIX.len() + 2;
        let mut map = Map::new();
        for (name, value) in &self.vars {
            let key = name[skip..].to_lowercase().replace("__", ".");
            let origin = Some(name);
            let kind = if self.list_keys.contains(&key) {
                ValueKind::Array(
                    value
                        .split(',')
                        .map(|item| Value::new(origin, ValueKind::String(item.to_string())))
                        .collect(),
                )
            } else {
                ValueKind::String(value.clone())
            };
            map.insert(key, Value::new(origin, kind));
        }
        Ok(map)
    }
}

/// A secret given inline (`key`) or in a file (`key_file`, its trailing newline trimmed, so
/// `echo secret > file` works); the inline value wins. `Ok(None)` when neither is set.
///
/// # Errors
///
/// [`SettingsError::SecretFile`] naming `key` when the file cannot be read.
pub fn secret_from(
    inline: &Option<SecretString>,
    file: &Option<PathBuf>,
    key: &str,
) -> Result<Option<SecretString>, SettingsError> {
    if let Some(s) = inline {
        return Ok(Some(s.clone()));
    }
    let Some(path) = file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::SecretFile {
        key: key.to_string(),
        path: path.clone(),
        source,
    })?;
    let secret = text
        .strip_suffix('\n')
        .map(|s| s.strip_suffix('\r').unwrap_or(s))
        .unwrap_or(&text);
    Ok(Some(SecretString::from(secret.to_string())))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        auth: Auth,
        net: Net,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Auth {
        token_secret: Option<SecretString>,
        #[serde(default)]
        api_keys: Vec<SecretString>,
        enabled: bool,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Net {
        port: u16,
        ratio: f64,
        name: String,
    }

    const SPEC: Spec<'static> = Spec {
        what: "test settings",
        defaults: "[auth]\nenabled = true\n[net]\nport = 80\nratio = 0.5\nname = \"n\"\n",
        list_keys: &["auth.api_keys"],
    };

    fn load_env(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        load(&SPEC, None, &Env::vars(vars.iter().copied()))
    }

    #[test]
    fn defaults_then_file_then_environment() {
        let dir = std::env::temp_dir().join(format!("kit-settings-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("s.conf");
        std::fs::write(&file, "[net]\nport = 81\nname = \"file\"\n").expect("write");
        let s: Settings = load(
            &SPEC,
            Some(&file),
            &Env::vars([("LOADTEST__NET__PORT", "82"), ("OTHER__NET__PORT", "1")]),
        )
        .expect("loads");
        assert_eq!(s.net.port, 82, "the environment wins over the file");
        assert_eq!(s.net.name, "file", "the file wins over the defaults");
        assert_eq!(s.net.ratio, 0.5, "defaults fill the rest");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn numbers_and_booleans_still_parse_from_the_environment() {
        let s = load_env(&[
            ("LOADTEST__NET__PORT", "8080"),
            ("LOADTEST__NET__RATIO", "2.5"),
            ("loadtest__auth__enabled", "false"),
            ("LOADTEST__NET__NAME", "12"),
        ])
        .expect("loads");
        assert_eq!(s.net.port, 8080);
        assert_eq!(s.net.ratio, 2.5);
        assert!(!s.auth.enabled);
        assert_eq!(s.net.name, "12");
        let err = load_env(&[("LOADTEST__NET__PORT", "eighty")])
            .expect_err("not a number")
            .to_string();
        assert!(err.contains("net.port"), "{err}");
    }

    /// Issue 17 item 4: type guessing turned a 64-digit secret into the number 1, lost digits of
    /// long decimal secrets, and made the key `0123` unloadable.
    #[test]
    fn secrets_and_keys_come_through_verbatim() {
        let zeros_one = format!("{}1", "0".repeat(63));
        let long_decimal = "31415926535897932384626433832795028841971693993751";
        for secret in [zeros_one.as_str(), long_decimal, "1e3", "true", "0x10"] {
            let s = load_env(&[("LOADTEST__AUTH__TOKEN_SECRET", secret)]).expect("loads");
            let got = s.auth.token_secret.expect("set");
            assert_eq!(got.expose_secret(), secret);
        }
        let s = load_env(&[("LOADTEST__AUTH__API_KEYS", "0123")]).expect("loads");
        let keys: Vec<&str> = s.auth.api_keys.iter().map(|k| k.expose_secret()).collect();
        assert_eq!(keys, ["0123"]);
        let s = load_env(&[("LOADTEST__AUTH__API_KEYS", "0123,007,k3")]).expect("loads");
        let keys: Vec<&str> = s.auth.api_keys.iter().map(|k| k.expose_secret()).collect();
        assert_eq!(keys, ["0123", "007", "k3"]);
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let err = load_env(&[("LOADTEST__NET__PROT", "1")])
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("net.prot"), "{err}");
        let err = load_env(&[("LOADTEST__NETT__PORT", "1")])
            .expect_err("unknown section")
            .to_string();
        assert!(err.contains("nett"), "{err}");
    }

    #[test]
    fn a_missing_file_or_key_is_an_error() {
        let no_env = Env::vars(Vec::<(String, String)>::new());
        let missing = Path::new("/nonexistent/x.toml");
        let err = load::<Settings>(&SPEC, Some(missing), &no_env)
            .expect_err("missing file")
            .to_string();
        assert!(err.contains("/nonexistent/x.toml"), "{err}");
        let spec = Spec {
            defaults: "[net]\nport = 1\nratio = 1.0\nname = \"n\"\n",
            ..SPEC
        };
        let err = load::<Settings>(&spec, None, &no_env)
            .expect_err("missing section")
            .to_string();
        assert!(err.contains("auth"), "{err}");
    }

    #[test]
    fn secret_files_lose_only_their_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("kit-secret-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let read = |text: &str| {
            let path = dir.join("secret");
            std::fs::write(&path, text).expect("write");
            secret_from(&None, &Some(path), "auth.token_secret")
                .expect("reads")
                .expect("set")
                .expose_secret()
                .to_string()
        };
        assert_eq!(read("s3cret\n"), "s3cret");
        assert_eq!(read("s3cret\r\n"), "s3cret");
        assert_eq!(read("0001"), "0001");
        assert_eq!(read(" padded \n"), " padded ");
        let inline = Some(SecretString::from("inline".to_string()));
        let got = secret_from(&inline, &Some(dir.join("none")), "k").expect("inline wins");
        assert_eq!(got.expect("set").expose_secret(), "inline");
        assert!(secret_from(&None, &None, "k").expect("ok").is_none());
        let err = secret_from(&None, &Some(dir.join("none")), "auth.token_secret")
            .expect_err("missing")
            .to_string();
        assert!(err.contains("auth.token_secret"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
