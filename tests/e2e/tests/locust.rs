//! Real Locust with the `clients/locust` plugin, through the real pipeline: Locust → loadtest-api
//! → RabbitMQ → loadtest-writer → InfluxDB 1.x, against a local counting target.
//!
//! Needs RabbitMQ on 127.0.0.1:5672, InfluxDB 1.x on 127.0.0.1:8086 and Locust with the plugin
//! (`bash .ci/run` installs `locust==2.32.4` and `-e ./clients/locust` into the virtual
//! environment `$LOADTEST_CI_DIR/test-venv`, found as [`python_tool`] says); it provides all
//! three. The locustfile is `tests/e2e/locust/failing_locust.py` (`/` and `/items` answer 200,
//! `/fail` answers 500, so every run has failures to record), run from the plugin's folder as a
//! user would; the README's quick start, the plugin's `example_locust.py` against
//! `loadgen target`, must run green (exit 0).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use loadtest_e2e::*;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `clients/locust`: the plugin's folder, where the tests run Locust.
fn plugin_dir() -> PathBuf {
    repo_root().join("clients/locust")
}

/// The tests' locustfile, with an endpoint that fails (see the module docs).
fn failing_locustfile() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("locust/failing_locust.py")
            .to_string_lossy()
            .into_owned()
    })
}

/// How to run Locust: [`python_tool`]`("locust")` (the CI's virtual environment, else PATH),
/// else `python3 -m locust`; panics with the install command when neither works.
fn locust_program() -> &'static [String] {
    static PROGRAM: OnceLock<Vec<String>> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        let locust = python_tool("locust").to_string_lossy().into_owned();
        let python = python_tool("python").to_string_lossy().into_owned();
        let candidates: [Vec<String>; 2] = [
            vec![locust],
            vec![python, "-m".to_string(), "locust".to_string()],
        ];
        for c in candidates {
            let ok = Command::new(&c[0])
                .args(&c[1..])
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return c;
            }
        }
        panic!(
            "Locust is not installed (neither `locust` nor `python3 -m locust` runs, in \
             $LOADTEST_PYTHON_BIN, the CI's virtual environment or on PATH); install locust=={LOCUST_PIN} and the plugin \
             with `source .ci/services.sh && ensure_locust` (or `bash .ci/run`)"
        );
    })
}

/// A Locust process, killed on drop, with its combined output in a log file.
struct Locust {
    child: Child,
    log: PathBuf,
    name: String,
}

impl Locust {
    /// Starts Locust in `clients/locust` with `args` and extra environment `env`.
    fn start(name: &str, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let log = std::env::temp_dir().join(format!(
            "loadtest-e2e-locust-{name}-{}.log",
            uuid::Uuid::new_v4()
        ));
        let file = std::fs::File::create(&log)?;
        let program = locust_program();
        let mut cmd = Command::new(&program[0]);
        cmd.args(&program[1..])
            .args(args)
            .current_dir(plugin_dir())
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            // Neither the developer's locust.conf nor stray LOCUST_* variables apply.
            .env_remove("LOCUST_CONSUMER_HOST")
            .env_remove("LOCUST_CONSUMER_API_KEY")
            .env("PYTHONUNBUFFERED", "1")
            // Its own process group, so that drop also ends the workers `--processes` forks.
            .process_group(0);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", program.join(" ")))?;
        Ok(Self {
            child,
            log,
            name: name.to_string(),
        })
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for Locust to exit (a blocking wait, off the async runtime).
    async fn wait(mut self, timeout: Duration) -> anyhow::Result<(ExitStatus, String)> {
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + timeout;
            loop {
                if let Some(s) = self.child.try_wait()? {
                    return Ok((s, self.output()));
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
        })
        .await?
    }
}

impl Drop for Locust {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let group = format!("-{}", self.child.id());
            let _ = Command::new("kill")
                .args(["-KILL", "--", &group])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `n` Locust workers (the failing locustfile) for the master on 127.0.0.1:`port`.
fn start_workers(test: &str, port: &str, n: usize) -> anyhow::Result<Vec<Locust>> {
    (0..n)
        .map(|i| {
            #[rustfmt::skip]
            let args = [
                "-f", failing_locustfile(), "--worker", "--master-host", "127.0.0.1",
                "--master-port", port,
            ];
            Locust::start(&format!("{test}-worker{i}"), &args, &[])
        })
        .collect()
}

/// Locust's `PREFIX_stats.csv`: per endpoint, and the `Aggregated` row under method "".
fn read_stats_csv(path: &Path) -> anyhow::Result<Counts> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_stats_csv(&text)
}

/// The run's `loadtest_summary` counts, once the final record is there.
async fn summary_counts(db: &str, uuid: &str) -> anyhow::Result<Counts> {
    let q = format!(
        "SELECT requests, failures, \"method\", \"name\" FROM loadtest_summary WHERE event_id = '{uuid}'"
    );
    let rows = eventually(Duration::from_secs(30), "the run's summary", || async {
        let rows = influx_rows(db, &q).await?;
        Ok(rows
            .iter()
            .any(|r| r["name"] == "Aggregated")
            .then_some(rows))
    })
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let method = r["method"].as_str().unwrap_or_default().to_string();
            let name = r["name"].as_str().unwrap_or_default().to_string();
            (
                (method, name),
                (field_u64(r, "requests"), field_u64(r, "failures")),
            )
        })
        .collect())
}

/// Asserts the run's snapshots exist (every 5 s, cumulative) and its event is committed with
/// the right tags; returns the snapshots' request counts.
async fn check_snapshots_and_event(
    db: &str,
    uuid: &str,
    mode: &str,
    min_snapshots: usize,
) -> anyhow::Result<Vec<u64>> {
    let snapshots = influx_rows(
        db,
        &format!("SELECT requests FROM loadtest_snapshot WHERE event_id = '{uuid}' ORDER BY time"),
    )
    .await?;
    assert!(
        snapshots.len() >= min_snapshots,
        "expected at least {min_snapshots} snapshots: {snapshots:?}"
    );
    for r in &snapshots {
        let t = r["time"].as_i64().expect("time");
        assert_eq!(t % 5_000_000_000, 0, "snapshot not aligned to 5 s: {t}");
    }
    let counts: Vec<u64> = snapshots.iter().map(|r| field_u64(r, "requests")).collect();
    assert!(
        counts.windows(2).all(|w| w[0] <= w[1]),
        "cumulative requests decreased: {counts:?}"
    );
    let q = format!(
        "SELECT last(status) AS status FROM loadtest_event WHERE event_id = '{uuid}' AND \"mode\" = '{mode}' AND tool = 'locust'"
    );
    eventually(Duration::from_secs(30), "status committed", || async {
        let rows = influx_rows(db, &q).await?;
        Ok(rows.first().filter(|r| r["status"] == "committed").cloned())
    })
    .await?;
    Ok(counts)
}

/// A fresh API, writer (InfluxDB 1.x, snapshots every 5 s) and database.
struct Pipeline {
    stack: Stack,
    db: String,
    api: String,
    _api: Proc,
    _writer: Proc,
}

async fn start_pipeline(test: &str) -> anyhow::Result<Pipeline> {
    require_rabbitmq_and_influxdb();
    build_binaries()?;
    let stack = Stack::new(test);
    let db = stack.db();
    influx_create_db(&db).await?;
    let writer = stack.start_writer(
        &format!("writer-{test}"),
        &[
            ("LOADTEST__SINK__KIND", "v1".into()),
            ("LOADTEST__SINK__URL", INFLUX.into()),
            ("LOADTEST__SINK__DATABASE", db.clone()),
            ("LOADTEST__LIFECYCLE__SNAPSHOT_INTERVAL_S", "5".into()),
        ],
    )?;
    let (api_proc, api) = stack.start_api()?;
    Ok(Pipeline {
        stack,
        db,
        api,
        _api: api_proc,
        _writer: writer,
    })
}

/// Distributed Locust (a headless master and `workers` worker processes, or `--processes`)
/// runs 30 s; the run's summary in InfluxDB equals Locust's own `--csv` stats per endpoint.
async fn distributed_run_equals_csv(test: &str, use_processes: bool) -> anyhow::Result<()> {
    let p = start_pipeline(test).await?;
    let target = start_target().await?;
    let csv_dir = std::env::temp_dir().join(format!("loadtest-e2e-{}", p.stack.exchange));
    std::fs::create_dir_all(&csv_dir)?;
    let csv_prefix = csv_dir.join("run");
    let csv_prefix = csv_prefix.to_string_lossy().to_string();
    let port = free_port()?.to_string();
    let mut args = vec![
        "-f",
        failing_locustfile(),
        "--host",
        &target.url,
        "--headless",
        "-u",
        "6",
        "-r",
        "10",
        "-t",
        "30s",
        "--only-summary",
        "--csv",
        &csv_prefix,
        "--consumer-host",
        &p.api,
        "--consumer-api-key",
        &p.stack.api_key,
        "--consumer-interval",
        "2s",
    ];
    let mut workers = Vec::new();
    if use_processes {
        args.extend([
            "--processes",
            "2",
            "--master-port",
            &port,
            "--master-bind-port",
            &port,
        ]);
    } else {
        args.extend([
            "--master",
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            &port,
            "--expect-workers",
            "2",
        ]);
        workers = start_workers(test, &port, 2)?;
    }
    let master = Locust::start(&format!("{test}-master"), &args, &[])?;
    let (status, out) = master.wait(Duration::from_secs(120)).await?;
    let uuid = registered_uuid(&out).unwrap_or_else(|| panic!("no registered run in:\n{out}"));
    assert!(
        out.contains(&format!("locust_consumer: committed run {uuid}")),
        "no commit in:\n{out}"
    );
    assert!(
        !out.contains("/WARNING/locust_consumer") && !out.contains("/ERROR/locust_consumer"),
        "the plugin complained:\n{out}"
    );
    // Failures on /fail: Locust's usual exit code for a run with failures is 1.
    assert_eq!(status.code(), Some(1), "locust exit code:\n{out}");
    for w in workers {
        let (ws, wout) = w.wait(Duration::from_secs(30)).await?;
        assert!(ws.success(), "worker failed:\n{wout}");
    }

    let csv = read_stats_csv(Path::new(&format!("{csv_prefix}_stats.csv")))?;
    let printed = read_printed_summary(&out);
    let summary = summary_counts(&p.db, &uuid).await?;
    println!("{test}: run {uuid}\n  csv:      {csv:?}\n  influxdb: {summary:?}");
    assert_eq!(
        csv.len(),
        4,
        "/, /items, /fail and Aggregated in the CSV: {csv:?}"
    );
    assert_eq!(summary, csv, "loadtest_summary vs Locust's CSV");
    assert_eq!(printed, csv, "Locust's printed summary vs its CSV");
    let total = csv[&(String::new(), "Aggregated".to_string())];
    let fail = csv[&("GET".to_string(), "/fail".to_string())];
    assert!(total.0 > 100, "too few requests: {total:?}");
    assert_eq!(fail.0, fail.1, "every /fail request failed: {fail:?}");
    assert_eq!(total.1, fail.1, "only /fail fails: {csv:?}");

    let snapshots = check_snapshots_and_event(&p.db, &uuid, "cluster", 4).await?;
    assert!(
        snapshots.iter().all(|s| *s <= total.0),
        "a snapshot counts more than the final record: {snapshots:?} vs {total:?}"
    );
    let _ = std::fs::remove_dir_all(&csv_dir);
    Ok(())
}

/// The master's own counts, from its web UI's `GET /stats/requests` (`Aggregated` has no method).
async fn master_stats(web: &str) -> anyhow::Result<Counts> {
    let v: serde_json::Value = reqwest::get(format!("{web}/stats/requests"))
        .await?
        .json()
        .await?;
    let rows = v["stats"]
        .as_array()
        .context("no stats in /stats/requests")?;
    Ok(rows
        .iter()
        .map(|r| {
            let method = r["method"].as_str().unwrap_or_default().to_string();
            let name = r["name"].as_str().unwrap_or_default().to_string();
            let n = |k: &str| r[k].as_u64().unwrap_or_default();
            ((method, name), (n("num_requests"), n("num_failures")))
        })
        .collect())
}

/// `python -m locust_consumer.swarm ARGS` from the plugin's folder; its stdout (the run id), or an
/// error with its stderr.
async fn swarm(args: Vec<String>) -> anyhow::Result<String> {
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python_tool("python"))
            .args(["-m", "locust_consumer.swarm"])
            .args(&args)
            .current_dir(plugin_dir())
            .output()
    })
    .await??;
    let stderr = String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(
        out.status.success(),
        "swarm failed ({}):\n{stderr}",
        out.status
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The Kubernetes way (`infra/k8s/locust`, `run-locust-cluster.sh`): a master that stays up with
/// its web UI, two workers, and two tests started by `python -m locust_consumer.swarm`. Each prints
/// its run id, and each run's summary equals the master's own counts and the target's. Locust
/// stops these tests without quitting: the workers leave the master's list until they are ready
/// again (`--stop-timeout`), and their last stats come with their next report, after
/// `test_stop`; the commit must wait for them. (Before, the plugin saw no worker left to wait for
/// and committed at once: 1,111 of the 1,129 requests Locust counted, in a trial with 5 workers.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tests_started_through_the_web_ui_are_recorded_exactly() -> anyhow::Result<()> {
    let p = start_pipeline("locust-swarm").await?;
    let target = start_target().await?;
    let port = free_port()?.to_string();
    let web = format!("http://127.0.0.1:{}", free_port()?);
    let web_port = web.rsplit(':').next().unwrap_or_default().to_string();
    let workers = start_workers("locust-swarm", &port, 2)?;
    #[rustfmt::skip]
    let master = Locust::start("locust-swarm-master", &[
        "-f", failing_locustfile(), "--master", "--master-bind-host", "127.0.0.1",
        "--master-bind-port", &port, "--web-host", "127.0.0.1", "--web-port", &web_port,
        "--stop-timeout", "5", "--consumer-host", &p.api, "--consumer-api-key", &p.stack.api_key,
        "--consumer-interval", "2s",
    ], &[])?;
    let mut runs = Vec::new();
    for round in 1..=2 {
        let before = target.count.load(std::sync::atomic::Ordering::SeqCst);
        #[rustfmt::skip]
        let uuid = swarm(vec![
            "--web".into(), web.clone(), "--workers".into(), "2".into(), "--users".into(),
            "6".into(), "--spawn-rate".into(), "10".into(), "--run-time".into(), "10s".into(),
            "--host".into(), target.url.clone(), "--timeout".into(), "60".into(),
        ])
        .await?;
        anyhow::ensure!(
            uuid::Uuid::parse_str(&uuid).is_ok(),
            "swarm printed {uuid:?}"
        );
        eventually(Duration::from_secs(60), "the commit", || async {
            Ok(master
                .output()
                .contains(&format!("locust_consumer: committed run {uuid}"))
                .then_some(()))
        })
        .await?;
        let answered = target.count.load(std::sync::atomic::Ordering::SeqCst) - before;
        let reported = master_stats(&web).await?;
        let summary = summary_counts(&p.db, &uuid).await?;
        println!("round {round}: run {uuid}\n  master:   {reported:?}\n  influxdb: {summary:?}\n  target answered {answered}");
        assert_eq!(summary, reported, "loadtest_summary vs the master's counts");
        let total = aggregated(&reported).context("no Aggregated row")?;
        assert_eq!(
            total.0, answered,
            "the master's total vs the target's count"
        );
        assert!(
            total.0 > 50 && total.1 > 0,
            "a real run with failures: {total:?}"
        );
        runs.push(uuid);
    }
    assert_ne!(runs[0], runs[1], "each test is a run of its own");
    let out = master.output();
    assert!(
        !out.contains("/WARNING/locust_consumer") && !out.contains("/ERROR/locust_consumer"),
        "the plugin complained:\n{out}"
    );
    drop(workers);
    Ok(())
}

/// `--master` with two `--worker` processes on this machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn locust_master_and_two_workers_equal_csv_exactly() -> anyhow::Result<()> {
    distributed_run_equals_csv("locust-dist", false).await
}

/// `--processes 2`: Locust forks two workers and the parent is the master.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn locust_processes_equal_csv_exactly() -> anyhow::Result<()> {
    distributed_run_equals_csv("locust-procs", true).await
}

/// Issue 17 item 6: the README's Locust quick start as written (`loadgen target` on port 8000's
/// stand-in, the plugin's `example_locust.py`, `-u 5 -r 10 -t 20s --only-summary
/// --consumer-host`) runs green: no failure, exit code 0, the run committed with Locust's counts.
/// On main two of the example's three endpoints answered 404 and Locust exited 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readme_quick_start_runs_green_against_loadgen_target() -> anyhow::Result<()> {
    let p = start_pipeline("locust-readme").await?;
    let listen = format!("127.0.0.1:{}", free_port()?);
    let mut target = Proc::start(
        "loadgen-target",
        "loadgen",
        &["target", "--listen", &listen],
        &[],
    )?;
    target.wait_for_line(&listen, Duration::from_secs(30))?;
    let host = format!("--host=http://{listen}");
    let locust = Locust::start(
        "locust-readme",
        &[
            "-f",
            "example_locust.py",
            &host,
            "--headless",
            "-u",
            "5",
            "-r",
            "10",
            "-t",
            "20s",
            "--only-summary",
            "--consumer-host",
            &p.api,
            "--consumer-api-key",
            &p.stack.api_key,
        ],
        &[],
    )?;
    let (status, out) = locust.wait(Duration::from_secs(90)).await?;
    assert_eq!(status.code(), Some(0), "locust exit code:\n{out}");
    let uuid = registered_uuid(&out).unwrap_or_else(|| panic!("no registered run in:\n{out}"));
    let printed = read_printed_summary(&out);
    let total = printed[&(String::new(), "Aggregated".to_string())];
    assert!(total.0 > 100 && total.1 == 0, "{printed:?}\n{out}");
    assert_eq!(
        printed.len(),
        4,
        "/, /api/items, /api/slow, Aggregated: {printed:?}"
    );
    let summary = summary_counts(&p.db, &uuid).await?;
    assert_eq!(summary, printed, "loadtest_summary vs Locust's summary");
    Ok(())
}

/// The original command shape (`-u 5 -r 10 -t 20s --only-summary --consumer-host`, the API key
/// from the environment) ends in InfluxDB with Locust's own counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn locust_original_command_shape_lands_in_influxdb() -> anyhow::Result<()> {
    let p = start_pipeline("locust-orig").await?;
    let target = start_target().await?;
    let host = format!("--host={}", target.url);
    let locust = Locust::start(
        "locust-orig",
        &[
            "-f",
            failing_locustfile(),
            &host,
            "--headless",
            "-u",
            "5",
            "-r",
            "10",
            "-t",
            "20s",
            "--only-summary",
            "--consumer-host",
            &p.api,
        ],
        &[("LOCUST_CONSUMER_API_KEY", &p.stack.api_key)],
    )?;
    let (status, out) = locust.wait(Duration::from_secs(90)).await?;
    assert_eq!(status.code(), Some(1), "locust exit code:\n{out}");
    let uuid = registered_uuid(&out).unwrap_or_else(|| panic!("no registered run in:\n{out}"));
    assert!(
        out.contains(&format!("locust_consumer: committed run {uuid}")),
        "no commit in:\n{out}"
    );
    let printed = read_printed_summary(&out);
    let summary = summary_counts(&p.db, &uuid).await?;
    println!("original shape: run {uuid}\n  printed:  {printed:?}\n  influxdb: {summary:?}");
    assert_eq!(printed.len(), 4, "summary table rows: {printed:?}\n{out}");
    assert_eq!(summary, printed, "loadtest_summary vs Locust's summary");
    check_snapshots_and_event(&p.db, &uuid, "single", 2).await?;
    let event = influx_rows(
        &p.db,
        &format!("SELECT clients, hatch_rate, target_host, tool FROM loadtest_event WHERE event_id = '{uuid}'"),
    )
    .await?;
    let last = event.last().expect("the event point");
    assert_eq!(
        (
            field_u64(last, "clients"),
            last["hatch_rate"].as_f64(),
            last["target_host"].as_str(),
            last["tool"].as_str()
        ),
        (5, Some(10.0), Some(target.url.as_str()), Some("locust")),
        "register parameters: {event:?}"
    );
    let errors = influx_rows(
        &p.db,
        &format!("SELECT occurrences FROM loadtest_error WHERE event_id = '{uuid}' AND \"name\" = '/fail'"),
    )
    .await?;
    let occurrences: u64 = errors.iter().map(|r| field_u64(r, "occurrences")).sum();
    assert_eq!(
        occurrences,
        printed[&("GET".to_string(), "/fail".to_string())].1,
        "/fail errors recorded: {errors:?}"
    );
    Ok(())
}

/// The API is down (a closed port): the same command finishes its test, exits with Locust's
/// usual code, and the plugin prints exactly one warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn locust_runs_on_with_one_warning_when_the_api_is_down() -> anyhow::Result<()> {
    let target = start_target().await?;
    let host = format!("--host={}", target.url);
    let api = format!("http://127.0.0.1:{}", free_port()?);
    let locust = Locust::start(
        "locust-api-down",
        &[
            "-f",
            failing_locustfile(),
            &host,
            "--headless",
            "-u",
            "5",
            "-r",
            "10",
            "-t",
            "20s",
            "--only-summary",
            "--consumer-host",
            &api,
        ],
        &[],
    )?;
    let (status, out) = locust.wait(Duration::from_secs(90)).await?;
    let printed = read_printed_summary(&out);
    let total = printed
        .get(&(String::new(), "Aggregated".to_string()))
        .copied()
        .unwrap_or_else(|| panic!("no summary:\n{out}"));
    assert!(total.0 > 100, "the test ran on: {total:?}\n{out}");
    // Locust's usual code: 1 when any request failed (/fail does), else 0.
    let usual = if total.1 > 0 { 1 } else { 0 };
    assert_eq!(status.code(), Some(usual), "locust exit code:\n{out}");
    let warnings: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("/WARNING/locust_consumer"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning from the plugin:\n{out}");
    assert!(
        warnings[0].contains(&api) && warnings[0].contains("cannot be reached"),
        "a clear warning: {}",
        warnings[0]
    );
    assert!(
        !out.contains("/ERROR/locust_consumer") && !out.contains("Traceback"),
        "no errors:\n{out}"
    );
    Ok(())
}

/// `--consumer-required` with the API down: a clear error, no load, exit code 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn locust_consumer_required_stops_when_the_api_is_down() -> anyhow::Result<()> {
    let target = start_target().await?;
    let host = format!("--host={}", target.url);
    let api = format!("http://127.0.0.1:{}", free_port()?);
    let locust = Locust::start(
        "locust-required",
        &[
            "-f",
            failing_locustfile(),
            &host,
            "--headless",
            "-u",
            "5",
            "-r",
            "10",
            "-t",
            "60s",
            "--only-summary",
            "--consumer-host",
            &api,
            "--consumer-required",
        ],
        &[],
    )?;
    let (status, out) = locust.wait(Duration::from_secs(60)).await?;
    assert_eq!(status.code(), Some(1), "locust exit code:\n{out}");
    let errors: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("/ERROR/locust_consumer"))
        .collect();
    assert_eq!(errors.len(), 1, "one error from the plugin:\n{out}");
    assert!(
        errors[0].contains("--consumer-required") && errors[0].contains(&api),
        "a clear error: {}",
        errors[0]
    );
    assert_eq!(
        target.count.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no load without a registered run:\n{out}"
    );
    Ok(())
}

/// The plugin's Python unit tests (payloads, retries, options), no network needed.
#[test]
fn locust_plugin_python_unit_tests() {
    // The Python that has Locust (the CI's virtual environment); checks it is there, with the
    // install hint.
    locust_program();
    let out = Command::new(python_tool("python"))
        .args(["-m", "unittest", "discover", "-s", "tests", "-t", "."])
        .current_dir(plugin_dir())
        .output()
        .expect("running python -m unittest");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "Python unit tests failed:\n{text}");
    assert!(
        text.contains("OK"),
        "no unittest summary in the output:\n{text}"
    );
}
