//! One test's API and writers: a unique exchange (so its own queues), token secret and API key,
//! and the writer settings the tests use.

use std::time::Duration;

use anyhow::Context;

use crate::influx::INFLUX;
use crate::process::Proc;

/// Settings shared by the API and writer of one test: a unique exchange and token secret.
#[derive(Debug)]
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

    /// The writers' checkpoint stream, `<exchange>.writer.state`.
    pub fn state_stream(&self) -> String {
        format!("{}.writer.state", self.exchange)
    }

    /// The writers' queue, `<exchange>.writer`.
    pub fn queue(&self) -> String {
        format!("{}.writer", self.exchange)
    }

    fn common_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LOADTEST__AMQP__EXCHANGE", self.exchange.clone()),
            ("LOADTEST__AUTH__TOKEN_SECRET", self.secret.clone()),
        ]
    }

    /// Starts the writer with the extra settings `env` (sink, interval), and waits until it has
    /// declared the topology (it is then the leader, or stands by while another writer is).
    pub fn start_writer(&self, name: &str, env: &[(&'static str, String)]) -> anyhow::Result<Proc> {
        let mut all = self.common_env();
        all.push(("LOADTEST__AMQP__QUEUE_EXPIRES_MS", "600000".into()));
        all.push(("LOADTEST__METRICS__LISTEN", "127.0.0.1:0".into()));
        all.extend(env.iter().cloned());
        let mut p = Proc::start(name, "loadtest-writer", &[], &all)?;
        p.wait_for_line("topology declared", Duration::from_secs(30))?;
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
            &v1_sink_env(INFLUX, db, u64::from(snapshot_interval_s)),
        )
    }

    /// Starts the API on a free port; returns it and its base URL.
    pub fn start_api(&self) -> anyhow::Result<(Proc, String)> {
        self.start_api_with(&[])
    }

    /// Starts the API on a free port with extra settings (e.g. another broker URL).
    pub fn start_api_with(&self, env: &[(&'static str, String)]) -> anyhow::Result<(Proc, String)> {
        self.start_api_limited(env, None)
    }

    /// As [`Stack::start_api_with`], with the open-files soft limit lowered to `soft_open_files`
    /// before the API starts.
    pub fn start_api_limited(
        &self,
        env: &[(&'static str, String)],
        soft_open_files: Option<u64>,
    ) -> anyhow::Result<(Proc, String)> {
        let mut all = self.common_env();
        all.push(("LOADTEST__AUTH__API_KEYS", self.api_key.clone()));
        all.extend(env.iter().cloned());
        let args = ["--listen", "127.0.0.1:0"];
        let mut p = match soft_open_files {
            Some(n) => Proc::start_with_open_files("api", "loadtest-api", &args, &all, n)?,
            None => Proc::start("api", "loadtest-api", &args, &all)?,
        };
        let line = p.wait_for_line("listening on http://", Duration::from_secs(30))?;
        let url = line
            .split("listening on ")
            .nth(1)
            .map(|s| s.trim().to_string())
            .context("no URL in the listening line")?;
        Ok((p, url))
    }

    /// Starts `loadtest-notifier` on this stack's exchange, posting to `webhook_url`, with the
    /// extra settings `env` (delivery limit, pacing, dashboard URL); waits until it consumes.
    /// Its queue expires 10 min after the test.
    pub fn start_notifier(
        &self,
        webhook_url: &str,
        env: &[(&'static str, String)],
    ) -> anyhow::Result<Proc> {
        let mut all = vec![
            ("LOADTEST__AMQP__EXCHANGE", self.exchange.clone()),
            ("LOADTEST__AMQP__QUEUE_EXPIRES_MS", "600000".into()),
            ("LOADTEST__METRICS__LISTEN", "127.0.0.1:0".into()),
            ("LOADTEST__SLACK__WEBHOOK_URL", webhook_url.to_string()),
        ];
        all.extend(env.iter().cloned());
        let mut p = Proc::start("notifier", "loadtest-notifier", &[], &all)?;
        p.wait_for_line("consuming", Duration::from_secs(30))?;
        Ok(p)
    }

    /// The InfluxDB 1.x database named after this test's exchange (`e2e_<test>_<id>`); the test
    /// creates it when it needs it, and [`Stack`]'s drop removes it.
    pub fn db(&self) -> String {
        self.exchange.replace('-', "_")
    }

    /// Starts a writer without waiting for it to consume (e.g. while the broker is down).
    pub fn spawn_writer(&self, name: &str, env: &[(&'static str, String)]) -> anyhow::Result<Proc> {
        let mut all = self.common_env();
        all.extend(env.iter().cloned());
        Proc::start(name, "loadtest-writer", &[], &all)
    }
}

/// Queue suffixes the services derive from a test's exchange (the writer's work queue,
/// dead-letter queue, checkpoint stream and leader lock; notifier queues).
const QUEUE_SUFFIXES: &[&str] = &[
    ".writer",
    ".dead",
    ".writer.state",
    ".writer.lock",
    ".notify.slack",
];
/// Exchange suffixes derived from a test's exchange (the topic exchange itself is `""`; the
/// checkpoint stream's fanout exchange has the stream's name).
const EXCHANGE_SUFFIXES: &[&str] = &["", ".dlx", ".status", ".writer.state"];

impl Drop for Stack {
    /// Removes what the test's services created on the shared RabbitMQ (the exchanges and
    /// queues derived from [`Stack::exchange`]) and the shared InfluxDB 1.x database
    /// [`Stack::db`], also when the test failed, so runs leave nothing behind. Best effort:
    /// what cannot be removed (a broker that is down) is left, with a line on stderr.
    fn drop(&mut self) {
        let exchange = self.exchange.clone();
        let db = self.db();
        // Its own thread and runtime: the drop may run inside a test's runtime.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(remove_namespace(&exchange, &db))
        });
        match cleanup.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("cleanup of {}: {e:#}", self.exchange),
            Err(_) => eprintln!("cleanup of {} panicked", self.exchange),
        }
    }
}

async fn remove_namespace(exchange: &str, db: &str) -> anyhow::Result<()> {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let influx = reqwest::Client::new()
        .post(format!("{INFLUX}/query"))
        .form(&[("q", format!("DROP DATABASE \"{db}\""))])
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    let conn = tokio::time::timeout(
        Duration::from_secs(10),
        crate::amqp::amqp_connect(crate::amqp::AMQP_URL),
    )
    .await
    .context("connecting to RabbitMQ timed out")??;
    // A channel per deletion: a failed one closes only its channel.
    for suffix in QUEUE_SUFFIXES {
        let ch = conn.create_channel().await?;
        let _ = ch
            .queue_delete(
                &format!("{exchange}{suffix}"),
                QueueDeleteOptions::default(),
            )
            .await;
    }
    for suffix in EXCHANGE_SUFFIXES {
        let ch = conn.create_channel().await?;
        let _ = ch
            .exchange_delete(
                &format!("{exchange}{suffix}"),
                ExchangeDeleteOptions::default(),
            )
            .await;
    }
    let _ = conn.close(200, "test cleanup").await;
    influx.context("dropping the test database")?;
    Ok(())
}

/// Writer settings for the v1 sink into database `db` of the InfluxDB at `influx`: snapshots
/// every `interval_s` seconds, runs expire after `expire_s` seconds without a message, and the
/// commit grace is 10 s.
pub fn writer_env(
    influx: &str,
    db: &str,
    interval_s: u64,
    expire_s: u64,
) -> Vec<(&'static str, String)> {
    let mut env = v1_sink_env(influx, db, interval_s);
    env.push(("LOADTEST__LIFECYCLE__EXPIRE_AFTER_S", expire_s.to_string()));
    env.push(("LOADTEST__LIFECYCLE__COMMIT_GRACE_S", "10".into()));
    env
}

/// The v1 sink into `db` at `influx`, snapshots every `interval_s` seconds.
fn v1_sink_env(influx: &str, db: &str, interval_s: u64) -> Vec<(&'static str, String)> {
    vec![
        ("LOADTEST__SINK__KIND", "v1".into()),
        ("LOADTEST__SINK__URL", influx.to_string()),
        ("LOADTEST__SINK__DATABASE", db.to_string()),
        (
            "LOADTEST__LIFECYCLE__SNAPSHOT_INTERVAL_S",
            interval_s.to_string(),
        ),
    ]
}
