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
            // The variables cargo sets for this test binary would make build scripts that watch
            // them (ring's watches CARGO_MANIFEST_DIR) rebuild half the dependency tree.
            for (key, _) in std::env::vars() {
                if key.starts_with("CARGO_PKG_")
                    || matches!(
                        key.as_str(),
                        "CARGO_MANIFEST_DIR"
                            | "CARGO_MANIFEST_PATH"
                            | "CARGO_CRATE_NAME"
                            | "CARGO_BIN_NAME"
                            | "CARGO_PRIMARY_PACKAGE"
                            | "CARGO_TARGET_TMPDIR"
                            | "OUT_DIR"
                    )
                {
                    cmd.env_remove(key);
                }
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
            ("LOADTEST__AUTH__TOKEN_SECRET", self.secret.clone()),
        ]
    }

    /// Starts the writer with the extra settings `env` (sink, interval).
    pub fn start_writer(&self, name: &str, env: &[(&'static str, String)]) -> anyhow::Result<Proc> {
        let mut all = self.common_env();
        all.push(("LOADTEST__AMQP__QUEUE_EXPIRES_MS", "600000".into()));
        all.push(("LOADTEST__METRICS__LISTEN", "127.0.0.1:0".into()));
        all.extend(env.iter().cloned());
        let mut p = Proc::start(name, "loadtest-writer", &[], &all)?;
        p.wait_for_line("consuming", Duration::from_secs(30))?;
        Ok(p)
    }

    /// Starts a writer with the v1 sink into InfluxDB 1.x database `db` and snapshots every
    /// `snapshot_interval_s` seconds.
    pub fn start_v1_writer(
        &self,
        name: &str,
        db: &str,
        snapshot_interval_s: u32,
    ) -> anyhow::Result<Proc> {
        self.start_writer(
            name,
            &[
                ("LOADTEST__SINK__KIND", "v1".into()),
                ("LOADTEST__SINK__URL", INFLUX.into()),
                ("LOADTEST__SINK__DATABASE", db.to_string()),
                (
                    "LOADTEST__LIFECYCLE__SNAPSHOT_INTERVAL_S",
                    snapshot_interval_s.to_string(),
                ),
            ],
        )
    }

    /// Starts the API on a free port; returns it and its base URL.
    pub fn start_api(&self) -> anyhow::Result<(Proc, String)> {
        self.start_api_with(&[])
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
    start_slow_target(Duration::ZERO).await
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

/// Runs an InfluxQL query; returns InfluxDB's JSON answer as it is (series, tags, values).
pub async fn influx_query(db: &str, q: &str) -> anyhow::Result<serde_json::Value> {
    influx_query_raw(db, q).await
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

// ---------------------------------------------------------------------------------------------
// Fault-suite helpers: direct AMQP access (publish poison, read the dead-letter queue), private
// RabbitMQ and InfluxDB instances a test may stop and start without disturbing other tests, a
// slow counting target, and summary parsing per endpoint.
// ---------------------------------------------------------------------------------------------

/// The shared RabbitMQ the tests use.
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Connects to RabbitMQ at `url`.
pub async fn amqp_connect(url: &str) -> anyhow::Result<lapin::Connection> {
    lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .context("connecting to RabbitMQ (start it with `rabbitmq-server -detached`)")
}

/// Publishes `body` (persistent, JSON) to `exchange` with `routing_key` and waits for the
/// broker's confirm; a nack is an error.
pub async fn amqp_publish(
    conn: &lapin::Connection,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
) -> anyhow::Result<()> {
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let props = lapin::BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_message_id(uuid::Uuid::new_v4().to_string().into());
    let confirm = ch
        .basic_publish(
            exchange,
            routing_key,
            BasicPublishOptions::default(),
            body,
            props,
        )
        .await?
        .await?;
    let _ = ch.close(200, "published").await;
    if confirm.is_nack() {
        bail!("the broker nacked the publish to {exchange}");
    }
    Ok(())
}

/// A dead-lettered message: its body and the writer's `x-loadtest-dead-reason` header.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The message body.
    pub body: Vec<u8>,
    /// The `x-loadtest-dead-reason` header, when there is one.
    pub reason: Option<String>,
}

/// Takes every message out of `queue` (basic_get, acked).
pub async fn amqp_take_all(
    conn: &lapin::Connection,
    queue: &str,
) -> anyhow::Result<Vec<DeadLetter>> {
    use lapin::options::{BasicAckOptions, BasicGetOptions};
    let ch = conn.create_channel().await?;
    let mut out = Vec::new();
    while let Some(msg) = ch.basic_get(queue, BasicGetOptions::default()).await? {
        let reason = msg
            .delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("x-loadtest-dead-reason").cloned())
            .map(|v| match v {
                lapin::types::AMQPValue::LongString(s) => s.to_string(),
                other => format!("{other:?}"),
            });
        out.push(DeadLetter {
            body: msg.delivery.data.clone(),
            reason,
        });
        msg.delivery.ack(BasicAckOptions::default()).await?;
    }
    let _ = ch.close(200, "done").await;
    Ok(out)
}

/// Ready messages in `queue` (passive declare; unacked deliveries are not counted).
pub async fn amqp_ready(conn: &lapin::Connection, queue: &str) -> anyhow::Result<u32> {
    use lapin::options::QueueDeclareOptions;
    let ch = conn.create_channel().await?;
    let q = ch
        .queue_declare(
            queue,
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await?;
    let _ = ch.close(200, "done").await;
    Ok(q.message_count())
}

/// Messages in `queue`, ready plus unacked, as `rabbitmqctl list_queues` reports them (the
/// shared node, or `node` when given).
pub fn rabbit_queue_messages(node: Option<&RabbitNode>, queue: &str) -> anyhow::Result<u64> {
    let out = match node {
        Some(n) => n.ctl(&[
            "list_queues",
            "-q",
            "--no-table-headers",
            "name",
            "messages",
        ])?,
        None => {
            let o = Command::new("rabbitmqctl")
                .args([
                    "list_queues",
                    "-q",
                    "--no-table-headers",
                    "name",
                    "messages",
                ])
                .output()?;
            String::from_utf8_lossy(&o.stdout).to_string()
        }
    };
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(queue)).then(|| w.next().and_then(|n| n.parse().ok()))?
        })
        .next()
        .with_context(|| format!("queue {queue} not listed:\n{out}"))
}

/// A private RabbitMQ node (own name, port and data folder) a test may stop and start; halted
/// and removed on drop.
pub struct RabbitNode {
    /// Node name (`name@localhost`).
    pub node: String,
    /// AMQP port.
    pub port: u16,
    dir: PathBuf,
}

impl RabbitNode {
    /// Starts a node and waits until it accepts AMQP connections.
    pub fn start(name: &str) -> anyhow::Result<Self> {
        let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let dir = std::env::temp_dir().join(format!("loadtest-e2e-rabbit-{name}-{id}"));
        std::fs::create_dir_all(&dir)?;
        let port = free_port()?;
        let dist = free_port()?;
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!("listeners.tcp.local = 127.0.0.1:{port}\nconsumer_timeout = 3600000\n"),
        )?;
        std::fs::write(dir.join("enabled_plugins"), "[].\n")?;
        std::fs::write(dir.join("env.conf"), "")?;
        let node = Self {
            node: format!("e2e-{name}-{id}@localhost"),
            port,
            dir,
        };
        let status = node
            .command("rabbitmq-server")
            .arg("-detached")
            .env("RABBITMQ_NODENAME", &node.node)
            .env("RABBITMQ_CONFIG_FILE", node.dir.join("rabbitmq.conf"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                node.dir.join("enabled_plugins"),
            )
            .env("RABBITMQ_MNESIA_BASE", node.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", node.dir.join("log"))
            .env("RABBITMQ_DIST_PORT", dist.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .status()
            .context("starting rabbitmq-server (apt-get install rabbitmq-server)")?;
        if !status.success() {
            bail!("rabbitmq-server -detached failed: {status}");
        }
        node.wait_up(Duration::from_secs(90))?;
        Ok(node)
    }

    fn command(&self, tool: &str) -> Command {
        let mut cmd = Command::new(format!("/usr/lib/rabbitmq/bin/{tool}"));
        cmd.env("HOME", &self.dir)
            .env("RABBITMQ_CONF_ENV_FILE", self.dir.join("env.conf"));
        cmd
    }

    /// Runs `rabbitmqctl -n NODE args`; returns stdout.
    pub fn ctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .command("rabbitmqctl")
            .arg("-n")
            .arg(&self.node)
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!(
                "rabbitmqctl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }

    /// The AMQP URL of the node.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn wait_up(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", self.port).parse()?;
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
            if Instant::now() > deadline {
                bail!("RabbitMQ node {} did not come up", self.node);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    /// Stops the broker application (the node keeps running; connections are closed).
    pub fn stop_app(&self) -> anyhow::Result<()> {
        self.ctl(&["stop_app"]).map(|_| ())
    }

    /// Starts the broker application again and waits for the AMQP port.
    pub fn start_app(&self) -> anyhow::Result<()> {
        self.ctl(&["start_app"])?;
        self.wait_up(Duration::from_secs(60))
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        let _ = self.ctl(&["stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private InfluxDB 1.x (`influxd` with its own ports and data folder) a test may kill and
/// start again; killed and removed on drop.
pub struct InfluxNode {
    /// Base URL.
    pub url: String,
    dir: PathBuf,
    config: PathBuf,
    child: Option<Child>,
}

impl InfluxNode {
    /// Starts `influxd` and waits for `/ping`.
    pub async fn start() -> anyhow::Result<Self> {
        let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let dir = std::env::temp_dir().join(format!("loadtest-e2e-influx-{id}"));
        std::fs::create_dir_all(&dir)?;
        let http = free_port()?;
        let rpc = free_port()?;
        let d = dir.display();
        let config = dir.join("influxdb.conf");
        std::fs::write(
            &config,
            format!(
                "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
                 [meta]\n  dir = \"{d}/meta\"\n\
                 [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
                 [monitor]\n  store-enabled = false\n\
                 [http]\n  bind-address = \"127.0.0.1:{http}\"\n  log-enabled = false\n"
            ),
        )?;
        let mut node = Self {
            url: format!("http://127.0.0.1:{http}"),
            dir,
            config,
            child: None,
        };
        node.start_again().await?;
        Ok(node)
    }

    /// Starts the (stopped) `influxd` again on the same ports and data, and waits for `/ping`.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("influxd.log"))?;
        let child = Command::new("influxd")
            .arg("-config")
            .arg(&self.config)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting influxd (apt-get install influxdb)")?;
        self.child = Some(child);
        let url = self.url.clone();
        eventually(Duration::from_secs(60), "influxd /ping", || {
            let url = url.clone();
            async move {
                let r = reqwest::get(format!("{url}/ping")).await?;
                Ok((r.status().as_u16() == 204).then_some(()))
            }
        })
        .await
    }

    /// Kills `influxd` (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs an InfluxQL statement against this instance; returns the rows of every series.
    pub async fn rows(
        &self,
        db: &str,
        q: &str,
    ) -> anyhow::Result<Vec<serde_json::Map<String, serde_json::Value>>> {
        influx_rows_at(&self.url, db, q).await
    }
}

impl Drop for InfluxNode {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// [`influx_rows`] against the InfluxDB at `base`, rows of every series (with the series'
/// tags as columns).
pub async fn influx_rows_at(
    base: &str,
    db: &str,
    q: &str,
) -> anyhow::Result<Vec<serde_json::Map<String, serde_json::Value>>> {
    let resp = reqwest::Client::new()
        .post(format!("{base}/query"))
        .query(&[("db", db), ("epoch", "ns")])
        .form(&[("q", q)])
        .send()
        .await
        .with_context(|| format!("querying InfluxDB at {base}"))?;
    let status = resp.status();
    let v: serde_json::Value = resp.json().await?;
    if !status.is_success() {
        bail!("InfluxDB answered {status}: {v}");
    }
    if let Some(e) = v["results"][0]["error"].as_str() {
        bail!("InfluxQL error: {e}");
    }
    let mut rows = Vec::new();
    for s in v["results"][0]["series"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let cols: Vec<String> = s["columns"]
            .as_array()
            .map(|c| {
                c.iter()
                    .map(|x| x.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let tags = s["tags"].as_object().cloned().unwrap_or_default();
        for vals in s["values"].as_array().cloned().unwrap_or_default() {
            let mut row = tags.clone();
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

/// Writes line protocol to the InfluxDB at `base` (database `db`); returns the HTTP status.
pub async fn influx_write_at(base: &str, db: &str, lines: &str) -> anyhow::Result<u16> {
    let resp = reqwest::Client::new()
        .post(format!("{base}/write"))
        .query(&[("db", db), ("precision", "ns")])
        .body(lines.to_string())
        .send()
        .await?;
    Ok(resp.status().as_u16())
}

/// Creates database `db` on the InfluxDB at `base`.
pub async fn influx_create_db_at(base: &str, db: &str) -> anyhow::Result<()> {
    influx_rows_at(base, "", &format!("CREATE DATABASE \"{db}\"")).await?;
    Ok(())
}

/// Like [`start_target`], but every answer takes `delay`, so each load-generator user sends at
/// most one request per `delay` (keeps CPU low when many generators run).
pub async fn start_slow_target(delay: Duration) -> anyhow::Result<Target> {
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let c = c.clone();
        async move {
            tokio::time::sleep(delay).await;
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

/// The `# reqs` of endpoint `name` in loadgen's summary table.
pub fn summary_row_requests(output: &str, name: &str) -> Option<u64> {
    output
        .lines()
        .find(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() > 2 && w[1] == name
        })
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|w| w.parse().ok())
}

/// The first uuid in `text`.
pub fn first_uuid(text: &str) -> Option<String> {
    text.split(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
        .find(|w| w.len() == 36 && uuid::Uuid::parse_str(w).is_ok())
        .map(str::to_string)
}

/// The run id in loadgen's `Registered run <uuid> with <api>` line of `output`.
pub fn registered_run(output: &str) -> Option<String> {
    output
        .lines()
        .find(|l| l.contains("Registered run"))
        .and_then(first_uuid)
}

/// Waits up to 30 s for run `uuid`'s `Aggregated` summary point in InfluxDB 1.x database `db`
/// and returns its `fields` (an InfluxQL field list, e.g. `requests, failures`).
pub async fn aggregated_summary(
    db: &str,
    uuid: &str,
    fields: &str,
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let q = format!(
        "SELECT {fields} FROM loadtest_summary WHERE event_id = '{uuid}' AND \"name\" = 'Aggregated'"
    );
    eventually(Duration::from_secs(30), "the summary", || async {
        Ok(influx_rows(db, &q).await?.into_iter().next())
    })
    .await
}

impl Stack {
    /// Starts the API on a free port with extra settings (e.g. another broker URL).
    pub fn start_api_with(&self, env: &[(&'static str, String)]) -> anyhow::Result<(Proc, String)> {
        let mut all = self.common_env();
        all.push(("LOADTEST__AUTH__API_KEYS", self.api_key.clone()));
        all.extend(env.iter().cloned());
        let mut p = Proc::start("api", "loadtest-api", &["--listen", "127.0.0.1:0"], &all)?;
        let line = p.wait_for_line("listening on http://", Duration::from_secs(30))?;
        let url = line
            .split("listening on ")
            .nth(1)
            .map(|s| s.trim().to_string())
            .context("no URL in the listening line")?;
        Ok((p, url))
    }

    /// Starts a writer without waiting for it to consume (e.g. while the broker is down).
    pub fn spawn_writer(&self, name: &str, env: &[(&'static str, String)]) -> anyhow::Result<Proc> {
        let mut all = self.common_env();
        all.extend(env.iter().cloned());
        Proc::start(name, "loadtest-writer", &[], &all)
    }
}

/// What [`check_run`] counted for one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunFigures {
    /// Points expected: the event point, one summary per endpoint and `Aggregated`, and one
    /// snapshot per interval from the first snapshot to the final one.
    pub expected: u64,
    /// Points found for the same measurements.
    pub found: u64,
    /// Snapshot slots missing inside a fault window (allowed: a failover may miss one).
    pub missing_at_faults: u64,
}

impl std::ops::AddAssign for RunFigures {
    fn add_assign(&mut self, o: Self) {
        self.expected += o.expected;
        self.found += o.found;
        self.missing_at_faults += o.missing_at_faults;
    }
}

/// Checks one run in InfluxDB at `base`/`db` as a user would, failing on any point missing,
/// doubled or wrong:
/// - exactly one `loadtest_event` point, with `status`;
/// - exactly one `loadtest_summary` point per name in `counts` (endpoints and `Aggregated`),
///   with those request counts, and no other name;
/// - snapshots in one series, at distinct timestamps aligned to `interval`, cumulative requests
///   never decreasing and ending at the `Aggregated` count, and one every interval: a longer gap
///   only where it overlaps one of `fault_windows` (Unix ns ranges).
pub async fn check_run(
    base: &str,
    db: &str,
    uuid: &str,
    status: &str,
    interval: Duration,
    counts: &[(&str, u64)],
    fault_windows: &[(i64, i64)],
) -> anyhow::Result<RunFigures> {
    let mut fig = RunFigures::default();
    let events = influx_rows_at(
        base,
        db,
        &format!("SELECT status FROM loadtest_event WHERE event_id = '{uuid}' GROUP BY *"),
    )
    .await?;
    fig.expected += 1;
    fig.found += events.len() as u64;
    if events.len() != 1 || events[0]["status"] != status {
        bail!("run {uuid}: expected one event point with status {status}, found {events:?}");
    }
    let summary = influx_rows_at(
        base,
        db,
        &format!("SELECT requests FROM loadtest_summary WHERE event_id = '{uuid}' GROUP BY *"),
    )
    .await?;
    fig.expected += counts.len() as u64;
    fig.found += summary.len() as u64;
    for (name, count) in counts {
        let rows: Vec<_> = summary.iter().filter(|r| r["name"] == *name).collect();
        if rows.len() != 1 || rows[0]["requests"].as_u64() != Some(*count) {
            bail!(
                "run {uuid}: expected one summary for {name} with {count} requests, found {rows:?}"
            );
        }
    }
    if summary.len() != counts.len() {
        bail!("run {uuid}: expected summaries for {counts:?}, found {summary:?}");
    }
    let snaps = influx_rows_at(
        base,
        db,
        &format!(
            "SELECT requests FROM loadtest_snapshot WHERE event_id = '{uuid}' GROUP BY * ORDER BY time"
        ),
    )
    .await?;
    if snaps.is_empty() {
        bail!("run {uuid}: no snapshot");
    }
    let tag_sets: std::collections::BTreeSet<String> = snaps
        .iter()
        .map(|r| format!("{:?}/{:?}", r.get("target_host"), r.get("mode")))
        .collect();
    if tag_sets.len() != 1 {
        bail!(
            "run {uuid}: snapshots in {} series (duplicates under other tags): {snaps:?}",
            tag_sets.len()
        );
    }
    let iv = interval.as_nanos() as i64;
    let times: Vec<i64> = snaps.iter().filter_map(|r| r["time"].as_i64()).collect();
    let reqs: Vec<u64> = snaps
        .iter()
        .filter_map(|r| r["requests"].as_u64())
        .collect();
    let (first, last) = (times[0], times[times.len() - 1]);
    let slots = ((last - first) / iv + 1) as u64;
    fig.expected += slots;
    fig.found += times.len() as u64;
    for w in times.windows(2) {
        if w[1] <= w[0] {
            bail!("run {uuid}: duplicate snapshot timestamp {}", w[1]);
        }
        let gap = w[1] - w[0];
        if gap > iv {
            let at_fault = fault_windows
                .iter()
                .any(|(s, e)| *s <= w[1] && *e >= w[0] - iv);
            if !at_fault {
                bail!(
                    "run {uuid}: snapshot gap of {} s between {} and {} outside any fault: {times:?}",
                    gap / 1_000_000_000,
                    w[0],
                    w[1]
                );
            }
            fig.missing_at_faults += (gap / iv - 1) as u64;
        }
    }
    if let Some(t) = times.iter().find(|t| *t % iv != 0) {
        bail!("run {uuid}: snapshot at {t} not aligned to {interval:?}");
    }
    if reqs.windows(2).any(|w| w[1] < w[0]) {
        bail!("run {uuid}: cumulative requests decreased: {reqs:?}");
    }
    let agg = counts
        .iter()
        .find(|(n, _)| *n == "Aggregated")
        .map(|(_, c)| *c);
    if agg.is_some() && reqs.last().copied() != agg {
        bail!("run {uuid}: last snapshot {reqs:?} != Aggregated {agg:?}");
    }
    Ok(fig)
}

/// Unix nanoseconds now.
pub fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
}

/// A load generator run through the API: the process, and its uuid once registered.
pub struct LoadgenRun {
    /// The `loadgen` process.
    pub proc: Proc,
    /// The run's uuid (after [`LoadgenRun::registered`]).
    pub uuid: String,
}

impl LoadgenRun {
    /// Starts `loadgen` against `target` through the API at `api` with `paths`, `run_time` and
    /// one user; stats every `stats_interval`.
    pub fn start(
        name: &str,
        stack: &Stack,
        api: &str,
        target: &str,
        run_time: &str,
        stats_interval: &str,
    ) -> anyhow::Result<Self> {
        let proc = Proc::start(
            name,
            "loadgen",
            &[
                "--host",
                target,
                "-u",
                "1",
                "-r",
                "1",
                "-t",
                run_time,
                "--path",
                "/",
                "--path",
                "/items",
                "--consumer-host",
                api,
                "--api-key",
                &stack.api_key,
                "--stats-interval",
                stats_interval,
                "-q",
            ],
            &[],
        )?;
        Ok(Self {
            proc,
            uuid: String::new(),
        })
    }

    /// Waits for the `Registered run` line and records the uuid.
    pub fn registered(&mut self) -> anyhow::Result<&str> {
        let line = self
            .proc
            .wait_for_line("Registered run", Duration::from_secs(60))?;
        self.uuid = first_uuid(&line).with_context(|| format!("no uuid in {line:?}"))?;
        Ok(&self.uuid)
    }

    /// Waits for a successful exit; returns the summary counts (`/`, `/items`, `Aggregated`).
    pub fn finish(&mut self, timeout: Duration) -> anyhow::Result<Vec<(&'static str, u64)>> {
        let status = self.proc.wait(timeout)?;
        let out = self.proc.output();
        if !status.success() {
            bail!("loadgen failed ({status}):\n{out}");
        }
        let mut counts = Vec::new();
        for name in ["/", "/items"] {
            counts.push((
                name,
                summary_row_requests(&out, name)
                    .with_context(|| format!("no {name} row:\n{out}"))?,
            ));
        }
        counts.push((
            "Aggregated",
            summary_requests(&out).with_context(|| format!("no Aggregated row:\n{out}"))?,
        ));
        Ok(counts)
    }
}

/// Prints one row of the reliability table (`docs/reliability.md`) to stdout.
pub fn report_row(
    scenario: &str,
    runs: usize,
    faults: &str,
    fig: RunFigures,
    dead_expected: usize,
    dead_actual: usize,
) {
    println!(
        "RELIABILITY | {scenario} | {runs} | {faults} | {} | {} ({} snapshot slots missed at faults) | {dead_expected} | {dead_actual} |",
        fig.expected, fig.found, fig.missing_at_faults
    );
}
