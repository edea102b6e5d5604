//! The stack tests' harness: one `docker-compose` project of `docker-compose.yml` with the CI
//! override `docker-compose.ci.yml`, as users run it, with its own name, secrets and host ports
//! published on 127.0.0.1 at random (the `*_PUBLISH` variables), so that it clashes neither with
//! the host's services nor with another project up at the same time. [`Compose`]'s drop takes
//! the project down (`down -v`) also when the test failed, after copying every container's log
//! to a file whose path it prints.
//!
//! Also the `docker` helpers the stack tests share: [`docker`], [`docker_logs`], [`log_times`]
//! and the check that the images `.ci/images.sh` builds are there ([`require_images`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use chrono::{DateTime, Utc};

/// How long [`Compose::wait_healthy`] waits for each service's healthcheck.
const HEALTHY_WITHIN: Duration = Duration::from_secs(180);

/// The image tag `.ci/images.sh TAG` built: `LOADTEST_STACK_TAG`, default `ci`.
pub fn stack_tag() -> String {
    std::env::var("LOADTEST_STACK_TAG").unwrap_or_else(|_| "ci".into())
}

/// Fails, with the command that builds them, unless every image in `images` exists.
pub fn require_images(tag: &str, images: &[String]) -> anyhow::Result<()> {
    for image in images {
        ensure!(
            docker(&["image", "inspect", image]).is_ok(),
            "image {image} is missing; build the images first with `bash .ci/images.sh {tag}`"
        );
    }
    Ok(())
}

/// One compose project with its own name, secrets and random host ports; taken down on drop.
#[derive(Debug)]
pub struct Compose {
    project: String,
    root: PathBuf,
    env_file: PathBuf,
    /// Containers started with [`Compose::run_detached`] (`docker-compose run -d`), which
    /// `down` does not remove.
    runs: Vec<String>,
    down: bool,
}

impl Compose {
    /// A project named `loadtest-NAME-<random>` with the images tagged `tag`, fresh secrets,
    /// every port published on a random 127.0.0.1 port, and the extra `.env` lines `env`
    /// (`KEY=VALUE`, e.g. `LOCUST_WORKERS=5`).
    pub fn new(tag: &str, name: &str, env: &[String]) -> anyhow::Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let project = format!("loadtest-{name}-{}", &id[..10]);
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let root = root.canonicalize().context("the repository root")?;
        let env_file = std::env::temp_dir().join(format!("{project}.env"));
        let secret = |what: &str| format!("{what}-{}", uuid::Uuid::new_v4().simple());
        let mut lines = vec![
            format!("LOADTEST_TAG={tag}"),
            format!("LOADTEST_API_KEY={}", secret("key")),
            format!("LOADTEST_TOKEN_SECRET={}", secret("secret")),
            format!("INFLUXDB_TOKEN={}", secret("token")),
            format!("INFLUXDB_ADMIN_PASSWORD={}", secret("password")),
            // Random ports on loopback: the host's own RabbitMQ, InfluxDB and VictoriaMetrics
            // hold the usual ones, and other projects may be up at the same time.
            "LOADTEST_API_PUBLISH=127.0.0.1:".into(),
            "LOADTEST_TARGET_PUBLISH=127.0.0.1:".into(),
            "RABBITMQ_AMQP_PUBLISH=127.0.0.1:".into(),
            "RABBITMQ_MANAGEMENT_PUBLISH=127.0.0.1:".into(),
            "INFLUXDB_PUBLISH=127.0.0.1:".into(),
            "LOCUST_WEB_PUBLISH=127.0.0.1:".into(),
            // docker-compose.ci.yml's store is VictoriaMetrics, which unescapes `\\`.
            "SINK_BACKSLASHES=escaped".into(),
        ];
        lines.extend(env.iter().cloned());
        std::fs::write(&env_file, lines.join("\n") + "\n")?;
        Ok(Self {
            project,
            root,
            env_file,
            runs: Vec::new(),
            down: false,
        })
    }

    /// The compose project's name (`-p`).
    pub fn project(&self) -> &str {
        &self.project
    }

    /// `docker-compose -p PROJECT --env-file ENV -f docker-compose.yml -f docker-compose.ci.yml
    /// ARGS`, run from the repository root.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("docker-compose");
        cmd.current_dir(&self.root)
            .args(["-p", &self.project, "--env-file"])
            .arg(&self.env_file)
            .args(["-f", "docker-compose.yml", "-f", "docker-compose.ci.yml"])
            .args(args);
        cmd
    }

    /// Runs `docker-compose ARGS`; its stdout, or an error with its stderr.
    pub fn compose(&self, args: &[&str]) -> anyhow::Result<String> {
        output(
            self.command(args),
            &format!("docker-compose {}", args.join(" ")),
        )
    }

    /// `up -d --no-build SERVICES`, then waits until each of `healthy` passes its healthcheck.
    pub fn up(&self, services: &[&str], healthy: &[&str]) -> anyhow::Result<()> {
        let mut args = vec!["up", "-d", "--no-build"];
        args.extend_from_slice(services);
        self.compose(&args)?;
        self.wait_healthy(healthy)
    }

    /// Waits until the container of each of `services` reports `healthy` (180 s each at most).
    pub fn wait_healthy(&self, services: &[&str]) -> anyhow::Result<()> {
        let deadline = Instant::now() + HEALTHY_WITHIN;
        for service in services {
            let id = self.container(service)?;
            loop {
                let health = docker(&["inspect", "-f", "{{.State.Health.Status}}", &id])?;
                if health.trim() == "healthy" {
                    break;
                }
                ensure!(
                    Instant::now() < deadline,
                    "{service} is {} after {HEALTHY_WITHIN:?}",
                    health.trim()
                );
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        Ok(())
    }

    /// The container id of `service` (its first container when it is scaled).
    pub fn container(&self, service: &str) -> anyhow::Result<String> {
        self.containers(service)?
            .into_iter()
            .next()
            .with_context(|| format!("no container for {service}"))
    }

    /// The ids of every container of `service`, running or not.
    pub fn containers(&self, service: &str) -> anyhow::Result<Vec<String>> {
        Ok(self
            .compose(&["ps", "-q", service])?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// `127.0.0.1:PORT` where `service`'s `port` is published.
    pub fn port(&self, service: &str, port: u16) -> anyhow::Result<String> {
        let addr = self.compose(&["port", service, &port.to_string()])?;
        let addr = addr.trim().to_string();
        ensure!(
            addr.starts_with("127.0.0.1:"),
            "{service}:{port} published at {addr:?}"
        );
        Ok(addr)
    }

    /// Restart count and start time of each service's container.
    pub fn restarts(&self, services: &[&str]) -> anyhow::Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for s in services {
            let id = self.container(s)?;
            let v = docker(&[
                "inspect",
                "-f",
                "{{.RestartCount}} {{.State.StartedAt}}",
                &id,
            ])?;
            out.insert(s.to_string(), v.trim().to_string());
        }
        Ok(out)
    }

    /// `docker-compose run -d --name PROJECT-NAME ARGS` (ARGS: the service and its command);
    /// returns the container's name. The container is removed when the project goes.
    pub fn run_detached(&mut self, name: &str, args: &[&str]) -> anyhow::Result<String> {
        let container = format!("{}-{name}", self.project);
        self.runs.push(container.clone());
        let mut all = vec!["run", "-d", "--name", &container];
        all.extend_from_slice(args);
        self.compose(&all)?;
        Ok(container)
    }

    /// Copies every container's log to a file (printed) before the project goes away.
    pub fn keep_logs(&self) {
        let path = std::env::temp_dir().join(format!("{}.log", self.project));
        let mut text = String::new();
        let mut cmd = self.command(&["logs", "--no-color", "--timestamps"]);
        if let Ok(out) = cmd.output() {
            text.push_str(&String::from_utf8_lossy(&out.stdout));
        }
        for run in &self.runs {
            text.push_str(&format!(
                "\n==== {run}\n{}",
                docker_logs(run).unwrap_or_default()
            ));
        }
        if std::fs::write(&path, text).is_ok() {
            eprintln!("stack logs kept in {}", path.display());
        }
    }

    /// `docker-compose down -v`, then checks that no container, volume or network of the project
    /// is left.
    pub fn down_and_check_nothing_is_left(mut self) -> anyhow::Result<()> {
        for run in &self.runs {
            let _ = docker(&["rm", "-f", run]);
        }
        self.compose(&["down", "-v", "--remove-orphans", "-t", "30"])?;
        self.down = true;
        let label = format!("label=com.docker.compose.project={}", self.project);
        let left = [
            docker(&["ps", "-aq", "--filter", &label])?,
            docker(&["volume", "ls", "-q", "--filter", &label])?,
            docker(&["network", "ls", "-q", "--filter", &label])?,
        ];
        ensure!(
            left.iter().all(|l| l.trim().is_empty()),
            "left after `docker-compose down -v`: containers {:?}, volumes {:?}, networks {:?}",
            left[0].trim(),
            left[1].trim(),
            left[2].trim()
        );
        println!(
            "STACK | docker-compose down -v: no container, volume or network of the project left"
        );
        Ok(())
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.keep_logs();
        }
        if !self.down {
            for run in &self.runs {
                let _ = docker(&["rm", "-f", run]);
            }
            let _ = self
                .command(&["down", "-v", "--remove-orphans", "-t", "10"])
                .output();
        }
        let _ = std::fs::remove_file(&self.env_file);
    }
}

/// Runs `cmd`; its stdout, or an error naming `what` with its stderr.
pub fn output(mut cmd: Command, what: &str) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `docker ARGS`; its stdout, or an error with its stderr.
pub fn docker(args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    output(cmd, &format!("docker {}", args.join(" ")))
}

/// A container's stdout and stderr.
pub fn docker_logs(container: &str) -> anyhow::Result<String> {
    docker_logs_args(&["logs", container])
}

/// What a container wrote to stdout and stderr from `since` on (e.g. since it was started again).
pub fn docker_logs_since(container: &str, since: DateTime<Utc>) -> anyhow::Result<String> {
    let since = since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    docker_logs_args(&["logs", "--since", &since, container])
}

fn docker_logs_args(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("docker").args(args).output()?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// When `container` logged a line containing `needle`, by Docker's log timestamps.
pub fn log_times(container: &str, needle: &str) -> anyhow::Result<Vec<DateTime<Utc>>> {
    let out = Command::new("docker")
        .args(["logs", "--timestamps", container])
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(text
        .lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .collect())
}

/// The count of a `loadgen target`'s `GET /__count` (`{"requests": N}`) at `target`.
pub async fn target_count(http: &reqwest::Client, target: &str) -> anyhow::Result<u64> {
    let v: serde_json::Value = http
        .get(format!("{target}/__count"))
        .send()
        .await?
        .json()
        .await?;
    v["requests"].as_u64().context("no requests in /__count")
}

/// Waits until `container` has exited (at most `timeout`); its exit code.
pub fn wait_for_exit(container: &str, timeout: Duration) -> anyhow::Result<i64> {
    let deadline = Instant::now() + timeout;
    loop {
        let state = docker(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            container,
        ])?;
        let mut words = state.split_whitespace();
        if let (Some("exited" | "dead"), Some(code)) = (words.next(), words.next()) {
            return code
                .parse()
                .with_context(|| format!("exit code of {container}: {state}"));
        }
        ensure!(
            Instant::now() < deadline,
            "{container} still {} after {timeout:?}",
            state.trim()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
