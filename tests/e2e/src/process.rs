//! The real binaries as child processes: building them once, starting them with their output in
//! a log file, and failing loudly when a service a test needs is not running.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// `target/debug` (or the profile the tests were built with).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    // Tests: target/<profile>/deps/<test>; binaries (bench/pipeline.sh): target/<profile>/<bin>.
    if dir.ends_with("deps") {
        dir.parent().map(PathBuf::from).unwrap_or_default()
    } else {
        dir
    }
}

/// Builds the four binaries once per test process (same profile as the tests).
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
                "-p",
                "loadtest-notifier",
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

/// Fails unless the shared RabbitMQ (127.0.0.1:5672) answers.
pub fn require_rabbitmq() {
    require_service("127.0.0.1:5672", "rabbitmq-server -detached");
}

/// Fails unless the shared InfluxDB 1.x (127.0.0.1:8086) answers.
pub fn require_influxdb() {
    require_service(
        "127.0.0.1:8086",
        "influxd -config /etc/influxdb/influxdb.conf &",
    );
}

/// Fails unless the shared RabbitMQ and InfluxDB 1.x both answer.
pub fn require_rabbitmq_and_influxdb() {
    require_rabbitmq();
    require_influxdb();
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A child process killed on drop, with its output in a log file.
#[derive(Debug)]
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
        let mut cmd = Command::new(bin_dir().join(bin));
        cmd.args(args);
        Self::spawn(name, bin, cmd, env)
    }

    /// As [`Proc::start`], with the open-files soft limit lowered to `soft` first (the hard
    /// limit stays), as on a machine whose default is 1024.
    pub fn start_with_open_files(
        name: &str,
        bin: &str,
        args: &[&str],
        env: &[(&str, String)],
        soft: u64,
    ) -> anyhow::Result<Self> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("ulimit -Sn {soft} && exec \"$0\" \"$@\""))
            .arg(bin_dir().join(bin))
            .args(args);
        Self::spawn(name, bin, cmd, env)
    }

    fn spawn(
        name: &str,
        bin: &str,
        mut cmd: Command,
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let log =
            std::env::temp_dir().join(format!("loadtest-e2e-{name}-{}.log", uuid::Uuid::new_v4()));
        let file = std::fs::File::create(&log)?;
        cmd.stdout(file.try_clone()?)
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

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A line of `/proc/PID/status` in KiB: `VmRSS` (resident now) or `VmHWM` (the peak).
    pub fn memory_kib(&self, field: &str) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {field} in /proc/{}/status", self.pid()))
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

    /// Sends SIGTERM (a graceful stop) and waits up to `timeout` for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .context("running kill -TERM")?;
        if !status.success() {
            bail!("kill -TERM {} failed: {status}", self.name);
        }
        self.wait(timeout)
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

/// Where the Python tool `tool` (`locust`, `schemathesis`, `python`) the tests run is:
/// `$LOADTEST_PYTHON_BIN/<tool>`, else `${LOADTEST_CI_DIR:-/tmp/loadtest-ci}/test-venv/bin/<tool>`
/// (the virtual environment `.ci/services.sh` installs them into), else `<tool>` on PATH
/// (`python3` for `python`).
pub fn python_tool(tool: &str) -> PathBuf {
    let dirs = [
        std::env::var_os("LOADTEST_PYTHON_BIN").map(PathBuf::from),
        Some(
            std::env::var_os("LOADTEST_CI_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/tmp/loadtest-ci"))
                .join("test-venv/bin"),
        ),
    ];
    for dir in dirs.into_iter().flatten() {
        let p = dir.join(tool);
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from(if tool == "python" { "python3" } else { tool })
}
