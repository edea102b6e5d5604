//! Helpers for the end-to-end tests: build and start the real binaries, a counting HTTP target,
//! and read InfluxDB 1.x (InfluxQL) and VictoriaMetrics (`/api/v1/export`) back.
//!
//! Every test uses its own exchange (so its own queues) and its own database or event ids, so
//! tests never see each other. A missing service fails loudly with the command that starts it.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// InfluxDB 1.x base URL.
pub const INFLUX: &str = "http://127.0.0.1:8086";
/// VictoriaMetrics base URL.
pub const VM: &str = "http://127.0.0.1:8428";

/// `target/debug` (or the profile the tests were built with).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test>
    exe.parent()
        .and_then(|p| p.parent())
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// Builds the three binaries once per test process (same profile as the tests).
pub fn build_binaries() -> anyhow::Result<()> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args([
                "build",
                "-p",
                "loadtest-api",
                "-p",
                "loadtest-writer",
                "-p",
                "loadgen",
                "--bins",
            ]);
            if bin_dir().ends_with("release") {
                cmd.arg("--release");
            }
            let status = cmd
                .status()
                .map_err(|e| format!("running cargo build: {e}"))?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("cargo build of the binaries failed: {status}"))
            }
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// Fails with the start command when a TCP service does not answer.
pub fn require_service(addr: &str, start: &str) {
    if std::net::TcpStream::connect_timeout(
        &addr
            .parse()
            .unwrap_or_else(|_| panic!("bad address {addr}")),
        Duration::from_secs(2),
    )
    .is_err()
    {
        panic!("{addr} is not reachable; start it with `{start}` (or run `bash .ci/run`)");
    }
}

/// A child process killed on drop, with its output in a log file.
pub struct Proc {
    /// The child.
    pub child: Child,
    /// Its combined log.
    pub log: PathBuf,
    name: String,
}

impl Proc {
    /// Starts `bin` (in [`bin_dir`]) with `args` and `env`; stdout and stderr go to a log file.
    pub fn start(
        name: &str,
        bin: &str,
        args: &[&str],
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let log =
            std::env::temp_dir().join(format!("loadtest-e2e-{name}-{}.log", uuid::Uuid::new_v4()));
        let file = std::fs::File::create(&log)?;
        let mut cmd = Command::new(bin_dir().join(bin));
        cmd.args(args)
            .stdout(file.try_clone()?)
            .stderr(file)
            .env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().with_context(|| format!("starting {bin}"))?;
        Ok(Self {
            child,
            log,
            name: name.to_string(),
        })
    }

    /// The log so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for a line containing `needle` in the log; returns it.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.output().lines().find(|l| l.contains(needle)) {
                return Ok(line.to_string());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!(
                    "{} exited ({status}) before printing {needle:?}:\n{}",
                    self.name,
                    self.output()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not print {needle:?} within {timeout:?}:\n{}",
                    self.name,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} still running after {timeout:?}:\n{}",
                    self.name,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Settings shared by the API and writer of one test: a unique exchange and token secret.
pub struct Stack {
    /// Exchange (queues derive from it).
    pub exchange: String,
    /// Event-token secret.
    pub secret: String,
    /// API key.
    pub api_key: String,
}

impl Stack {
    /// A fresh namespace.
    pub fn new(test: &str) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            exchange: format!("e2e-{test}-{}", &id[..8]),
            secret: format!("secret-{id}"),
            api_key: format!("key-{}", &id[8..20]),
        }
    }

    fn common_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LOADTEST__AMQP__EXCHANGE", self.exchange.clone()),
            ("LOADTEST__AMQP__QUEUE_EXPIRES_MS", "600000".into()),
            ("LOADTEST__AUTH__TOKEN_SECRET", self.secret.clone()),
        ]
    }

    /// Starts the writer with the extra settings `env` (sink, interval).
    pub fn start_writer(&self, name: &str, env: &[(&'static str, String)]) -> anyhow::Result<Proc> {
        let mut all = self.common_env();
        all.extend(env.iter().cloned());
        let mut p = Proc::start(name, "loadtest-writer", &[], &all)?;
        p.wait_for_line("consuming", Duration::from_secs(30))?;
        Ok(p)
    }

    /// Starts the API on a free port; returns it and its base URL.
    pub fn start_api(&self) -> anyhow::Result<(Proc, String)> {
        let mut all = self.common_env();
        all.push(("LOADTEST__AUTH__API_KEYS", self.api_key.clone()));
        let mut p = Proc::start("api", "loadtest-api", &["--listen", "127.0.0.1:0"], &all)?;
        let line = p.wait_for_line("listening on http://", Duration::from_secs(30))?;
        let url = line
            .split("listening on ")
            .nth(1)
            .map(|s| s.trim().to_string())
            .context("no URL in the listening line")?;
        Ok((p, url))
    }
}

/// An HTTP target on 127.0.0.1:0 that counts the requests it answers.
pub struct Target {
    /// Base URL.
    pub url: String,
    /// Requests answered.
    pub count: Arc<AtomicU64>,
}

/// Starts a counting target on the current tokio runtime.
pub async fn start_target() -> anyhow::Result<Target> {
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            if uri.path() == "/fail" {
                (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom")
            } else {
                (axum::http::StatusCode::OK, "hello")
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Target { url, count })
}

/// Creates a fresh InfluxDB 1.x database.
pub async fn influx_create_db(db: &str) -> anyhow::Result<()> {
    influx_query_raw("", &format!("CREATE DATABASE \"{db}\"")).await?;
    Ok(())
}

async fn influx_query_raw(db: &str, q: &str) -> anyhow::Result<serde_json::Value> {
    let resp = reqwest::Client::new()
        .post(format!("{INFLUX}/query"))
        .query(&[("db", db), ("epoch", "ns")])
        .form(&[("q", q)])
        .send()
        .await
        .context(
            "querying InfluxDB (start it with `influxd -config /etc/influxdb/influxdb.conf`)",
        )?;
    let status = resp.status();
    let v: serde_json::Value = resp.json().await?;
    if !status.is_success() {
        bail!("InfluxDB answered {status}: {v}");
    }
    Ok(v)
}

/// Runs an InfluxQL query; returns the rows of the first series as column → value maps.
pub async fn influx_rows(
    db: &str,
    q: &str,
) -> anyhow::Result<Vec<serde_json::Map<String, serde_json::Value>>> {
    let v = influx_query_raw(db, q).await?;
    let mut rows = Vec::new();
    let series = v["results"][0]["series"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for s in series {
        let cols: Vec<String> = s["columns"]
            .as_array()
            .map(|c| {
                c.iter()
                    .map(|x| x.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default();
        for vals in s["values"].as_array().cloned().unwrap_or_default() {
            let mut row = serde_json::Map::new();
            for (c, v) in cols
                .iter()
                .zip(vals.as_array().cloned().unwrap_or_default())
            {
                row.insert(c.clone(), v);
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what} (last error: {last_err:?})");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The `# reqs` of the `Aggregated` row of loadgen's summary table.
pub fn summary_requests(output: &str) -> Option<u64> {
    output
        .lines()
        .find(|l| l.contains("Aggregated"))
        .and_then(|l| {
            l.split_whitespace()
                .skip_while(|w| *w != "Aggregated")
                .nth(1)
        })
        .and_then(|w| w.parse().ok())
}
