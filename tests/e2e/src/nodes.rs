//! Private RabbitMQ and InfluxDB instances (own ports and data folders) a test may stop and start
//! without disturbing the other tests.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::influx::influx_rows_at;
use crate::process::free_port;
use crate::wait::eventually;

/// A private RabbitMQ node (own name, port and data folder) a test may stop and start; halted
/// and removed on drop.
#[derive(Debug)]
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
        Self::start_with(name, "consumer_timeout = 3600000\n")
    }

    /// Starts a node whose `rabbitmq.conf` also holds `config` (e.g. the repository's
    /// `infra/rabbitmq/rabbitmq.conf`), after a generous `consumer_timeout`, and waits until it
    /// accepts AMQP connections.
    pub fn start_with_config(name: &str, config: &str) -> anyhow::Result<Self> {
        Self::start_with(name, &format!("consumer_timeout = 3600000\n{config}\n"))
    }

    /// Starts a node with `config` (lines of `rabbitmq.conf`, e.g. `consumer_timeout = 60000`)
    /// after its listener, and waits until it accepts AMQP connections.
    pub fn start_with(name: &str, config: &str) -> anyhow::Result<Self> {
        let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let dir = std::env::temp_dir().join(format!("loadtest-e2e-rabbit-{name}-{id}"));
        std::fs::create_dir_all(&dir)?;
        let port = free_port()?;
        let dist = free_port()?;
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!("listeners.tcp.local = 127.0.0.1:{port}\n{config}"),
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

    /// The AMQP URL of the node for `user` in `vhost`.
    pub fn url_as(&self, user: &str, password: &str, vhost: &str) -> String {
        format!("amqp://{user}:{password}@127.0.0.1:{}/{vhost}", self.port)
    }

    /// Imports a definitions file (users, permissions, limits, policies, queues) into the node
    /// and waits until its users can log in. The file is copied into the node's folder first,
    /// where the broker can read it.
    pub fn import_definitions(&self, definitions: &std::path::Path) -> anyhow::Result<()> {
        let copy = self.dir.join("definitions.json");
        std::fs::copy(definitions, &copy)
            .with_context(|| format!("copying {}", definitions.display()))?;
        self.ctl(&["import_definitions", &copy.to_string_lossy()])?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.ctl(&["list_users"])?.contains("loadtest-loadgen") {
            if Instant::now() > deadline {
                bail!("the definitions' users did not appear on {}", self.node);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
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
#[derive(Debug)]
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
