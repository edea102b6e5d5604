//! The Locust stack test: real Locust from our image (`loadtest-locust`, Locust with the plugin)
//! as a master and 5 worker containers, run the way README "Deploy" says — `docker-compose.yml`'s
//! `locust` profile with the CI override — against the counting demo target, recorded through
//! the API, the writer and the store (VictoriaMetrics, read with `/api/v1/export`).
//!
//! 0. Standalone, the original command (`--headless -u 2 -r 2 -t 15s --only-summary`, no
//!    master): the stored summary = Locust's CSV = its printed summary = the target's count.
//! 1. Five workers, 60 s: the stored summary (`loadtest_summary`, per endpoint and
//!    `Aggregated`) = Locust's own `--csv` stats = the summary Locust's master prints = the
//!    target's count of requests answered.
//! 2. The same with one worker `docker kill`ed mid-run: the stored summary = Locust's CSV and
//!    printed summary (what the master got); what Locust lost (requests the target answered
//!    that no Locust report carried: the killed worker's since its last report) is printed, as
//!    are the users the snapshots show before and after the master marked the worker missing.
//!
//! Lean on purpose (it runs in `.ci/run` beside the other stack tests): one writer, no
//! notifier, one compose project for both runs, 10 users.
//!
//! Needs Docker, `docker-compose` and the images `.ci/images.sh TAG` builds; run by `.ci/run`:
//! `LOADTEST_STACK_TAG=TAG cargo test -p loadtest-e2e --test stack_locust -- --ignored
//! --nocapture`. Containers, volumes and networks are removed also when the test fails (their
//! logs are kept in a file whose path is printed).

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use chrono::{DateTime, Utc};
use loadtest_e2e::{
    aggregated, docker, docker_logs_since, eventually, export, log_times, parse_stats_csv,
    read_printed_summary, registered_uuid, require_images, stack_tag, target_count, wait_for_exit,
    Compose, Counts, LOCUST_PIN,
};

/// Locust workers per run.
const WORKERS: usize = 5;
/// Users in total (Locust's master gives each worker 2).
const USERS: u64 = 10;
/// Each run's `-t`.
const RUN_TIME_S: u64 = 60;
/// When, after the run registered, run 2 kills a worker.
const KILL_AFTER: Duration = Duration::from_secs(25);
/// The pipeline's services the runs need (the Locust services are started per run).
const SERVICES: &[&str] = &["rabbitmq", "influxdb", "api", "writer-1", "target"];
/// docker-compose.ci.yml's stand-ins for RabbitMQ and InfluxDB.
const STAND_INS: &[&str] = &[
    "loadtest-ci/rabbitmq:3.10",
    "loadtest-ci/victoriametrics:1.79",
];
/// Our images the test runs (`loadgen` is the demo target's), tagged with the stack tag.
const IMAGES: &[&str] = &[
    "loadtest-api",
    "loadtest-writer",
    "loadgen",
    "loadtest-locust",
];
/// Where the compose file's master writes its CSV files (`LOCUST_CSV`).
const CSV_STATS: &str = "/var/lib/loadtest/locust_stats.csv";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker and the images of .ci/images.sh; run by .ci/run"]
async fn locust_master_and_five_workers_in_compose() -> anyhow::Result<()> {
    let tag = stack_tag();
    let mut images: Vec<String> = IMAGES.iter().map(|i| format!("{i}:{tag}")).collect();
    images.extend(STAND_INS.iter().map(|i| i.to_string()));
    require_images(&tag, &images)?;
    let version = docker(&[
        "run",
        "--rm",
        &format!("loadtest-locust:{tag}"),
        "--version",
    ])?;
    ensure!(
        version.starts_with(&format!("locust {LOCUST_PIN} ")),
        "the image's Locust is not {LOCUST_PIN} (the tests' pin, .ci/services.sh): {version}"
    );
    let env = [
        format!("LOCUST_WORKERS={WORKERS}"),
        format!("LOCUST_USERS={USERS}"),
        "LOCUST_SPAWN_RATE=5".to_string(),
        format!("LOCUST_RUN_TIME={RUN_TIME_S}s"),
    ];
    let mut stack = Compose::new(&tag, "stack-locust", &env)?;
    let result = scenarios(&mut stack, version.trim()).await;
    if let Err(e) = &result {
        stack.keep_logs();
        eprintln!("Locust stack test failed: {e:#}");
    }
    result?;
    stack.down_and_check_nothing_is_left()
}

async fn scenarios(stack: &mut Compose, version: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    stack.up(SERVICES, SERVICES)?;
    println!(
        "STACK-LOCUST | {} up and healthy in {:.1} s; the image's {version}",
        SERVICES.join(", "),
        started.elapsed().as_secs_f64(),
    );
    let env = Env {
        http: reqwest::Client::new(),
        store: format!("http://{}", stack.port("influxdb", 8086)?),
        target: format!("http://{}", stack.port("target", 8000)?),
    };

    // 0. Standalone, the original command.
    let run = standalone_run(stack, &env).await?;
    let total = run.all_equal_target(20)?;
    println!(
        "STACK-LOCUST | run 0, standalone (--headless -u 2 -r 2 -t 15s --only-summary) | run {} | stored Aggregated {} = Locust's CSV = its printed summary = target's count {}",
        run.uuid, total.0, run.target
    );

    // 1. Five workers, nothing killed.
    let run = locust_run(stack, &env, None).await?;
    let csv_total = run.all_equal_target(500)?;
    ensure!(
        run.users.contains(&USERS),
        "run {}: no snapshot with {USERS} users: {:?}",
        run.uuid,
        run.users
    );
    println!(
        "STACK-LOCUST | run 1, master + {WORKERS} workers, {RUN_TIME_S} s | run {} | stored Aggregated {} = Locust's CSV {} = Locust's printed summary {} = target's count {} | {} endpoints equal | failures {} | users in the snapshots {:?}",
        run.uuid,
        aggregated(&run.stored).unwrap_or_default().0,
        csv_total.0,
        aggregated(&run.printed).unwrap_or_default().0,
        run.target,
        run.csv.len() - 1,
        csv_total.1,
        run.users
    );

    // 2. One worker killed mid-run.
    let run = locust_run(stack, &env, Some(KILL_AFTER)).await?;
    let killed = run.killed.as_ref().context("no worker was killed")?;
    let csv_total = run.stored_equals_locust()?;
    ensure!(
        run.target >= csv_total.0,
        "run {}: Locust counted {} requests, more than the target answered ({})",
        run.uuid,
        csv_total.0,
        run.target
    );
    let per_worker = USERS / WORKERS as u64;
    ensure!(
        run.users.contains(&USERS) && run.users.contains(&(USERS - per_worker)),
        "run {}: snapshots' users {:?}: expected {USERS}, then {} once the worker was missing",
        run.uuid,
        run.users,
        USERS - per_worker
    );
    println!(
        "STACK-LOCUST | run 2, one of {WORKERS} workers killed {} s in | run {} | stored Aggregated {} = Locust's CSV {} = Locust's printed summary {} | target's count {}: Locust lost {} requests of the killed worker | Locust marked it missing {:.1} s after the kill | users in the snapshots {:?} | master's exit code {}",
        KILL_AFTER.as_secs(),
        run.uuid,
        aggregated(&run.stored).unwrap_or_default().0,
        csv_total.0,
        aggregated(&run.printed).unwrap_or_default().0,
        run.target,
        run.target - csv_total.0,
        killed.missing_after_s,
        run.users,
        run.exit_code
    );
    Ok(())
}

/// Where the test reads the run back.
struct Env {
    http: reqwest::Client,
    store: String,
    target: String,
}

/// One Locust run, as Locust, the store and the target saw it.
struct LocustRun {
    uuid: String,
    /// Locust's `--csv` stats file.
    csv: Counts,
    /// The summary table the master printed at exit.
    printed: Counts,
    /// The run's `loadtest_summary` points.
    stored: Counts,
    /// Requests the target answered during the run.
    target: u64,
    /// `user_count` of the run's snapshots, in time order.
    users: Vec<u64>,
    exit_code: i64,
    killed: Option<Killed>,
}

impl LocustRun {
    /// Checks that the stored summary equals Locust's CSV and its printed summary, per endpoint;
    /// the CSV's `Aggregated` (requests, failures).
    fn stored_equals_locust(&self) -> anyhow::Result<(u64, u64)> {
        ensure!(
            self.stored == self.csv && self.printed == self.csv,
            "run {}: stored {:?}, Locust's CSV {:?}, Locust's printed summary {:?}",
            self.uuid,
            self.stored,
            self.csv,
            self.printed
        );
        aggregated(&self.csv).context("no Aggregated row in the CSV")
    }

    /// [`LocustRun::stored_equals_locust`], and Locust's total equals the target's count and is
    /// over `min` requests.
    fn all_equal_target(&self, min: u64) -> anyhow::Result<(u64, u64)> {
        let total = self.stored_equals_locust()?;
        ensure!(
            total.0 == self.target && total.0 > min,
            "run {}: Locust's total {total:?}, target's count {} (expected equal, over {min})",
            self.uuid,
            self.target
        );
        Ok(total)
    }
}

/// The worker run 2 killed.
struct Killed {
    /// Seconds from the kill to the master's "setting state to missing" line.
    missing_after_s: f64,
}

/// Runs `--profile locust up -d --scale locust-worker=5 locust-master locust-worker` (the
/// documented command; a second run starts the exited containers again), kills one worker
/// `kill_after` the registration if asked, waits for the master to exit, and reads the run back.
async fn locust_run(
    stack: &Compose,
    env: &Env,
    kill_after: Option<Duration>,
) -> anyhow::Result<LocustRun> {
    let before = target_count(&env.http, &env.target).await?;
    // The master's container is started again for run 2: its log of this run only.
    let since = Utc::now();
    let scale = format!("locust-worker={WORKERS}");
    #[rustfmt::skip]
    stack.compose(&[
        "--profile", "locust", "up", "-d", "--no-build", "--scale", &scale,
        "locust-master", "locust-worker",
    ])?;
    let master = stack.container("locust-master")?;
    let workers = stack.containers("locust-worker")?;
    ensure!(
        workers.len() == WORKERS,
        "{} worker containers: {workers:?}",
        workers.len()
    );
    let uuid = registration(&master, since).await?;
    let killed = match kill_after {
        None => None,
        Some(after) => Some(kill_one_worker(&master, &workers[2], after, since).await?),
    };
    let exit_code = tokio::task::block_in_place(|| {
        wait_for_exit(&master, Duration::from_secs(RUN_TIME_S + 120))
    })?;
    for w in &workers {
        tokio::task::block_in_place(|| wait_for_exit(w, Duration::from_secs(60)))?;
    }
    let ended = Ended {
        container: master,
        since,
        uuid,
        before,
        exit_code,
    };
    read_back(env, ended, killed).await
}

/// The original command in the image, standalone (no master, no workers):
/// `docker-compose run locust-master --headless -u 2 -r 2 -t 15s --only-summary`, with the
/// service's consumer host, API key, target and CSV prefix.
async fn standalone_run(stack: &mut Compose, env: &Env) -> anyhow::Result<LocustRun> {
    let before = target_count(&env.http, &env.target).await?;
    let since = Utc::now();
    #[rustfmt::skip]
    let container = stack.run_detached("standalone", &[
        "locust-master", "--headless", "-u", "2", "-r", "2", "-t", "15s", "--only-summary",
    ])?;
    let uuid = registration(&container, since).await?;
    let exit_code =
        tokio::task::block_in_place(|| wait_for_exit(&container, Duration::from_secs(120)))?;
    let ended = Ended {
        container,
        since,
        uuid,
        before,
        exit_code,
    };
    read_back(env, ended, None).await
}

/// The run id the plugin logged in `container` since `since`.
async fn registration(container: &str, since: DateTime<Utc>) -> anyhow::Result<String> {
    eventually(
        Duration::from_secs(150),
        "the run's registration",
        || async { Ok(registered_uuid(&docker_logs_since(container, since)?)) },
    )
    .await
}

/// A Locust process (a master, or standalone) that has exited.
struct Ended {
    container: String,
    /// When its run started: its log from then on is this run's.
    since: DateTime<Utc>,
    uuid: String,
    /// The target's count before the run.
    before: u64,
    exit_code: i64,
}

/// Reads a finished run back from Locust (its log and CSV file), the target and the store; the
/// run must be committed, and without a worker killed, exit 0 with no warning from the plugin.
async fn read_back(env: &Env, ended: Ended, killed: Option<Killed>) -> anyhow::Result<LocustRun> {
    let Ended {
        container,
        since,
        uuid,
        before,
        exit_code,
    } = ended;
    let logs = docker_logs_since(&container, since)?;
    ensure!(
        logs.contains(&format!("locust_consumer: committed run {uuid}")),
        "{container} did not commit run {uuid} (exit code {exit_code}):\n{logs}"
    );
    if killed.is_none() {
        ensure!(
            exit_code == 0 && !logs.contains("/WARNING/locust_consumer"),
            "{container} exited with {exit_code}, or the plugin warned:\n{logs}"
        );
    }
    let target = target_count(&env.http, &env.target).await? - before;
    let csv_path = std::env::temp_dir().join(format!("loadtest-stack-locust-{uuid}.csv"));
    docker(&[
        "cp",
        &format!("{container}:{CSV_STATS}"),
        &csv_path.to_string_lossy(),
    ])?;
    let csv = parse_stats_csv(&std::fs::read_to_string(&csv_path)?);
    let _ = std::fs::remove_file(&csv_path);
    Ok(LocustRun {
        stored: stored_summary(env, &uuid).await?,
        users: snapshot_users(env, &uuid).await?,
        uuid,
        csv: csv?,
        printed: read_printed_summary(&logs),
        target,
        exit_code,
        killed,
    })
}

/// `docker kill`s `worker` `after` from now, then waits until the master marks it missing and
/// the plugin warns (in the master's log `since` the run's start).
async fn kill_one_worker(
    master: &str,
    worker: &str,
    after: Duration,
    since: DateTime<Utc>,
) -> anyhow::Result<Killed> {
    tokio::time::sleep(after).await;
    let kill_at = Utc::now();
    docker(&["kill", worker])?;
    let needle = "failed to send heartbeat, setting state to missing";
    let missing_at = eventually(
        Duration::from_secs(30),
        "the worker marked missing",
        || async {
            Ok(log_times(master, needle)?
                .into_iter()
                .find(|t| *t >= kill_at))
        },
    )
    .await?;
    eventually(Duration::from_secs(30), "the plugin's warning", || async {
        let logs = docker_logs_since(master, since)?;
        Ok(logs
            .lines()
            .any(|l| l.contains("/WARNING/locust_consumer") && l.contains("is missing"))
            .then_some(()))
    })
    .await?;
    Ok(Killed {
        missing_after_s: (missing_at - kill_at).num_milliseconds() as f64 / 1000.0,
    })
}

/// The run's `loadtest_summary` requests and failures per (method, name), once its final record
/// (the `Aggregated` row) is there.
async fn stored_summary(env: &Env, uuid: &str) -> anyhow::Result<Counts> {
    let names = "loadtest_summary_requests|loadtest_summary_failures";
    let series = eventually(
        Duration::from_secs(90),
        "the run's final record",
        || async {
            let s = export(&env.http, &env.store, uuid, names).await?;
            let done = ["loadtest_summary_requests", "loadtest_summary_failures"]
                .iter()
                .all(|n| {
                    s.iter()
                        .any(|s| s.label("__name__") == *n && s.label("name") == "Aggregated")
                });
            Ok(done.then_some(s))
        },
    )
    .await?;
    let mut counts = Counts::new();
    for s in &series {
        ensure!(
            s.values.len() == 1,
            "run {uuid}: {} {} points: {s:?}",
            s.values.len(),
            s.label("__name__")
        );
        let key = (s.label("method").to_string(), s.label("name").to_string());
        let entry = counts.entry(key).or_default();
        match s.label("__name__") {
            "loadtest_summary_requests" => entry.0 = s.values[0] as u64,
            _ => entry.1 = s.values[0] as u64,
        }
    }
    Ok(counts)
}

/// `user_count` of the run's snapshots, in time order.
async fn snapshot_users(env: &Env, uuid: &str) -> anyhow::Result<Vec<u64>> {
    let series = export(&env.http, &env.store, uuid, "loadtest_snapshot_user_count").await?;
    ensure!(
        series.len() == 1,
        "run {uuid}: user counts in {} series",
        series.len()
    );
    Ok(series[0].values.iter().map(|v| *v as u64).collect())
}
