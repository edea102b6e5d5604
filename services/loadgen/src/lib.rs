//! `loadgen`: a Locust-like HTTP load generator whose results flow through the load-test
//! pipeline.
//!
//! Layout, in layers (each imports only from the ones below it):
//! - `cli` — the command line ([`Args`]) and its value parsers (durations, URLs, paths).
//! - `engine` — the load: the users (`runner`: tokio tasks on their own threads, sending what the
//!   `scenario` says), `http://` and `https://` requests over each user's own connection
//!   (`fasthttp`: TCP or TLS, HTTP/1.1 or HTTP/2, head parsing, body framing, one typed error;
//!   `reqwest` only for a URL the fast path cannot take), and exact cumulative `stats` (a
//!   `std::sync::Mutex`-protected shard per user,
//!   merged into Locust-shaped [`protocol::StatsPayload`]s, with HdrHistograms).
//! - `sink` — where results go, behind one `Sink` trait: the load-test API (`--consumer-host`;
//!   [`client`] with retries, stats and commit over HTTP or, with `--amqp-url`, AMQP) or the
//!   in-process pipeline (`--standalone`), fed by a publishing task off the users' path.
//! - `output` — what a run shows: percentiles from one source (`percentiles`), the console's
//!   tables (`summary`), the `--threshold` verdicts (`thresholds`), and the `--json`, `--csv`
//!   and `--html` files (`report`, `history`, `csv`, `html`).
//! - `demo` — `loadgen demo`, a built-in target plus a standalone run against it.
//!
//! [`run`] is the whole program after argument parsing: `main` and the tests both call it.
//! Shutdown (ctrl-c, SIGTERM) arrives through a [`CancellationToken`]: the users stop, and the
//! run is still committed.

#![warn(missing_docs)]

mod cli;
mod demo;
mod engine;
mod output;
mod sink;

#[cfg(test)]
mod golden;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use protocol::{StatsPayload, ThresholdVerdict};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use cli::{fmt_duration, TOOL};
pub use cli::{Args, Command, DemoArgs, RunArgs, TargetArgs};
pub use engine::fasthttp::TlsMin;
use engine::fasthttp::{Connector, TlsOptions};
pub use engine::runner::CANCELLED_ERROR;
use engine::runner::{self, LoadPlan, Progress};
use engine::scenario::Scenario;
use engine::stats::{self, Stats};
use output::history::Recorder;
use output::percentiles::Recorded;
use output::report::{self, Report, RunMeta};
pub use output::thresholds::{Metric, Op, Outcome, Target, Threshold, Verdict};
use output::{summary, thresholds};
pub use sink::client;
use sink::{Publishing, Receipt, RunContext};

/// How often the report's history (`--json`, `--csv`, `--html`) takes a point: every second,
/// as Locust's `stats_history` does.
const HISTORY_INTERVAL: Duration = Duration::from_secs(1);

/// What a finished run produced.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The run's uuid: from the API's register (`--consumer-host`) or the in-process pipeline
    /// (`--standalone`, `demo`); `None` for a print-only run.
    pub uuid: Option<Uuid>,
    /// Requests completed and counted (equals `stats.total.num_requests`).
    pub total_requests: u64,
    /// Requests that failed (transport error or HTTP status >= 400).
    pub failures: u64,
    /// The final cumulative stats (state `stopped`).
    pub stats: StatsPayload,
    /// Users that were started.
    pub users_started: u64,
    /// Requests in flight at the stop timeout, cancelled, and counted as failures of their own
    /// kind ([`CANCELLED_ERROR`]).
    pub requests_cancelled: u64,
    /// The load window: from the first user's start to the load's stop (run time over, ctrl-c,
    /// or the request budget spent). Requests/s everywhere are requests ÷ this.
    pub elapsed: Duration,
    /// The line-protocol file written (`--standalone`, `demo`).
    pub output: Option<PathBuf>,
    /// The report printed to stdout (request table, percentiles, errors).
    pub summary: String,
    /// The `--threshold` verdicts, in the order given.
    pub thresholds: Vec<Verdict>,
    /// Requests answered over HTTP/1.1.
    pub http1_requests: u64,
    /// Requests answered over HTTP/2.
    pub http2_requests: u64,
}

impl RunOutcome {
    /// Whether any `--threshold` failed (loadgen then exits with code 1).
    pub fn thresholds_failed(&self) -> bool {
        self.thresholds.iter().any(|v| !v.passed)
    }
}

/// Runs what `args` asks for (a load test, or `demo`) until it ends by itself or `shutdown` is
/// cancelled, prints the summary to stdout, and returns the outcome.
///
/// Errors: a bad setting, a failed register (the test does not start), a failed commit or a
/// failed final write in standalone mode (the summary is printed first).
pub async fn run(args: Args, shutdown: CancellationToken) -> anyhow::Result<RunOutcome> {
    match args.command {
        Some(Command::Demo(demo)) => {
            let demo = demo::Demo::start(demo).await?;
            let result = run_test(demo.args.clone(), shutdown).await;
            demo.finish(result.as_ref().ok().map(|o| (o.total_requests, o.failures)));
            result
        }
        Some(Command::Target(target)) => demo::serve_target(target, shutdown).await,
        None => run_test(args.run, shutdown).await,
    }
}

/// This machine's hostname (from the kernel, `/etc/hostname` or `$HOSTNAME`; `localhost` when
/// none is known).
fn hostname() -> String {
    let from_file = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    from_file("/proc/sys/kernel/hostname")
        .or_else(|| from_file("/etc/hostname"))
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .or_else(|| std::env::var("COMPUTERNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".to_string())
}

/// A load test (no subcommand).
#[allow(clippy::too_many_lines)] // TODO(issue 22): split into phases
async fn run_test(opts: RunArgs, shutdown: CancellationToken) -> anyhow::Result<RunOutcome> {
    let host = opts
        .host
        .clone()
        .context("--host is required (the base URL of the system under test)")?;
    anyhow::ensure!(
        !(opts.standalone && opts.consumer_host.is_some()),
        "--standalone and --consumer-host exclude each other"
    );
    anyhow::ensure!(
        opts.expected_nodes.unwrap_or(1) <= 1 || opts.run_key.is_some(),
        "--expected-nodes {} needs --run-key K: the nodes of one run register with the same key",
        opts.expected_nodes.unwrap_or(1)
    );
    let mut scenario = match &opts.scenario {
        Some(file) => Scenario::load(file).map_err(anyhow::Error::msg)?,
        None if opts.paths.is_empty() => Scenario::from_paths(&["/".to_string()])?,
        None => Scenario::from_paths(&opts.paths)?,
    };
    scenario.resolve(&host)?;
    let tls = TlsOptions {
        insecure: opts.insecure,
        cacert: opts.cacert.clone(),
        client_cert: opts.cert.clone().zip(opts.key.clone()),
        min: opts.tls_min,
        sni: opts.sni.clone(),
    };
    let h2_streams = usize::try_from(opts.h2_streams).unwrap_or(1);
    let connector = Arc::new(Connector::new(&host, &tls, opts.http2, h2_streams)?);
    runner::raise_open_files(opts.users)?;
    let hostname = hostname();
    let ctx = RunContext {
        target_host: host.as_str().trim_end_matches('/').to_string(),
        node_id: opts
            .node_id
            .clone()
            .unwrap_or_else(|| format!("{hostname}-{}", std::process::id())),
        hostname,
        started_at: Utc::now(),
    };
    let what: Vec<String> = scenario
        .requests
        .iter()
        .map(|r| {
            let name = if r.name == r.path {
                String::new()
            } else {
                format!(" ({})", r.name)
            };
            let weight = if opts.scenario.is_some() {
                format!(" x{}", r.weight)
            } else {
                String::new()
            };
            format!("{} {}{name}{weight}", r.method, r.path)
        })
        .collect();
    let plan = LoadPlan {
        scenario: Arc::new(scenario),
        users: opts.users,
        spawn_rate: opts.spawn_rate,
        iterations: opts.iterations,
        arrival_rate: opts.arrival_rate,
        timeout: opts.timeout,
        threads: opts.threads,
        connector,
    };
    let progress = Arc::new(Progress::default());

    // 1. Register where the results go; a failure here ends the run before any load. The sink
    //    then gets snapshots from its own task, off the users' path.
    let sink = sink::start(&opts, &ctx, &shutdown).await?;
    let uuid = sink.as_ref().map(|s| s.run_id());
    // The load window starts here, with the first user (registering and its retries are
    // before it): the stats' `start_time`, the start of every rate.
    let stats = Arc::new(Stats::new(stats::unix_now()));
    let started = Instant::now();
    let publishing = sink.map(|s| Publishing::start(s, Arc::clone(&stats), Arc::clone(&progress)));

    // 2. Start the users.
    eprintln!(
        "Starting {} against {} ({}), requests: {}",
        describe_model(&opts),
        ctx.target_host,
        describe_stop(&opts),
        what.join(", ")
    );
    let stop = CancellationToken::new();
    let abort = CancellationToken::new();
    let mut runner = tokio::spawn(runner::run_users(
        plan,
        Arc::clone(&stats),
        Arc::clone(&progress),
        stop.clone(),
        abort.clone(),
    ));

    // 3. Wait for the end, printing progress meanwhile.
    let deadline = opts.run_time.map(|d| started + d);
    let mut abort_at: Option<Instant> = None;
    let mut ticker = tokio::time::interval_at(started + opts.stats_interval, opts.stats_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The report's history: a point every second from the first second on, as Locust's.
    let mut history = tokio::time::interval_at(started + HISTORY_INTERVAL, HISTORY_INTERVAL);
    history.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut recorder = Recorder::default();
    // Only the report files show the history; without them no snapshot a second is taken.
    let wants_history = opts.json.is_some() || opts.csv.is_some() || opts.html.is_some();
    let mut printed: Option<StatsPayload> = None;
    // When the load stopped (Unix s, and as an instant): the end of the load window.
    let mut stopped: Option<(f64, Instant)> = None;
    let report = loop {
        tokio::select! {
            joined = &mut runner => {
                break joined.context("the users' task failed")??;
            }
            _ = sleep_until_opt(deadline), if !stop.is_cancelled() => {
                eprintln!("Run time {} reached, stopping users", fmt_duration(opts.run_time.unwrap_or_default()));
                stopped.get_or_insert((stats::unix_now(), Instant::now()));
                stop.cancel();
                abort_at = Some(Instant::now() + opts.stop_timeout);
            }
            _ = shutdown.cancelled(), if !stop.is_cancelled() => {
                eprintln!("Shutdown requested, stopping users (in-flight requests get {} to finish)", fmt_duration(opts.stop_timeout));
                stopped.get_or_insert((stats::unix_now(), Instant::now()));
                stop.cancel();
                abort_at = Some(Instant::now() + opts.stop_timeout);
            }
            _ = sleep_until_opt(abort_at) => {
                tracing::warn!("stop timeout passed, cancelling requests still in flight");
                abort.cancel();
                abort_at = None;
            }
            _ = history.tick(), if stopped.is_none() && wants_history => {
                let p = stats.snapshot(progress.users(), progress.state());
                recorder.record(stats::unix_now(), started.elapsed(), &p);
            }
            _ = ticker.tick() => {
                if opts.quiet || opts.only_summary {
                    // Nothing while the test runs.
                } else {
                    let p = stats.snapshot(progress.users(), progress.state());
                    if opts.headless {
                        eprint!("{}", summary::live_table(started.elapsed(), &p, printed.as_ref(), opts.stats_interval));
                    } else {
                        let before = printed.as_ref().map_or(0, |q| q.total.num_requests);
                        eprintln!("{}", summary::progress_line(started.elapsed(), &p, before, opts.stats_interval));
                    }
                    printed = Some(p);
                }
            }
        }
    };
    // Without a stop (the request budget spent, or every user done), the load stopped when the
    // users finished.
    let (stopped_at, stopped_instant) =
        stopped.unwrap_or_else(|| (stats::unix_now(), Instant::now()));
    stop.cancel();
    abort.cancel();
    let mut final_stats = stats.snapshot(report.users_started, "stopped");
    final_stats.stopped_at = Some(stopped_at);
    // The load window as every rate has it (one clock: the stats' Unix times).
    let elapsed = final_stats
        .load_window_s()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or_else(|| stopped_instant.saturating_duration_since(started));
    recorder.record(stopped_at, elapsed, &final_stats);
    if report.requests_cancelled > 0 {
        eprintln!(
            "{} requests still in flight at the stop timeout were cancelled; they count as failures ({CANCELLED_ERROR})",
            report.requests_cancelled
        );
    }

    // 4. Check the thresholds, commit (with the verdicts), then report. Every percentile comes
    //    from `StatsEntry::percentile` (the merged HdrHistograms), the one the writer uses too.
    let percentiles = Recorded;
    let verdicts = thresholds::evaluate(&opts.thresholds, &final_stats, &percentiles);
    let committed = match publishing {
        None => Ok(None),
        Some(publishing) => {
            let wire: Vec<ThresholdVerdict> = verdicts.iter().map(ThresholdVerdict::from).collect();
            commit(publishing, &final_stats, &wire).await.map(Some)
        }
    };
    let summary = format!(
        "Load model: {}\n{}{}",
        describe_model(&opts),
        summary::render(&final_stats, &percentiles),
        describe_protocols(&report.protocols, final_stats.total.num_requests),
    );
    println!();
    print!("{summary}");
    if !verdicts.is_empty() {
        println!();
        print!("{}", thresholds::render(&verdicts));
    }
    if let Ok(Some(receipt)) = &committed {
        println!("\n{}", receipt.message);
    }
    let meta = RunMeta {
        tool: TOOL.to_string(),
        model: if opts.arrival_rate.is_some() {
            "open".to_string()
        } else {
            "closed".to_string()
        },
        target_host: ctx.target_host.clone(),
        started_at: client::rfc3339(ctx.started_at),
        // Run time = the load window, s (requests/s = requests ÷ this).
        elapsed_s: elapsed.as_secs_f64(),
        users: opts.users,
        spawn_rate: opts.spawn_rate,
        arrival_rate: opts.arrival_rate,
        uuid: uuid.map(|u| u.to_string()),
        node_id: ctx.node_id.clone(),
    };
    let files = write_reports(
        &opts,
        &Report {
            meta: &meta,
            stats: &final_stats,
            history: recorder.points(),
            thresholds: &verdicts,
            percentiles: &percentiles,
        },
    );
    let receipt = committed?;
    files?;
    Ok(RunOutcome {
        uuid,
        total_requests: final_stats.total.num_requests,
        failures: final_stats.total.num_failures,
        users_started: report.users_started,
        requests_cancelled: report.requests_cancelled,
        elapsed,
        output: receipt.and_then(|r| r.output),
        summary,
        stats: final_stats,
        thresholds: verdicts,
        http1_requests: report.protocols.http1,
        http2_requests: report.protocols.http2,
    })
}

/// The summary's line on HTTP versions: `Protocols: HTTP/1.1 1000 requests` (and HTTP/2, and
/// the requests that got no response, when there are any).
fn describe_protocols(p: &runner::ProtocolCounts, total: u64) -> String {
    let mut parts = Vec::new();
    if p.http1 > 0 {
        parts.push(format!("HTTP/1.1 {} requests", p.http1));
    }
    if p.http2 > 0 {
        parts.push(format!("HTTP/2 {} requests", p.http2));
    }
    let unanswered = total.saturating_sub(p.http1 + p.http2);
    if unanswered > 0 || parts.is_empty() {
        parts.push(format!("no response {unanswered} requests"));
    }
    format!("Protocols: {}\n", parts.join(", "))
}

/// Stops publishing snapshots and commits the run with its final stats and verdicts.
async fn commit(
    publishing: Publishing,
    final_stats: &StatsPayload,
    verdicts: &[ThresholdVerdict],
) -> anyhow::Result<Receipt> {
    let sink = publishing.stop().await?;
    sink.commit(final_stats, verdicts).await
}

/// Writes the `--json`, `--csv` and `--html` files asked for, printing where each went.
fn write_reports(opts: &RunArgs, rep: &Report<'_>) -> anyhow::Result<()> {
    if let Some(path) = &opts.json {
        let text = serde_json::to_string_pretty(&rep.json())?;
        report::write_file(path, &text)?;
        eprintln!("JSON report written to {}", path.display());
    }
    if let Some(prefix) = &opts.csv {
        let written = rep.write_csv(prefix)?;
        let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        eprintln!("CSV files written: {}", names.join(", "));
    }
    if let Some(path) = &opts.html {
        report::write_file(path, &rep.html())?;
        eprintln!("HTML report written to {}", path.display());
    }
    Ok(())
}

/// `closed (5 users, spawn rate 10/s)` or `open (arrival rate 500/s, up to 50 connections;
/// response times from each request's scheduled start: coordinated omission corrected)`.
fn describe_model(opts: &RunArgs) -> String {
    match opts.arrival_rate {
        None => format!(
            "closed ({} users, spawn rate {}/s)",
            opts.users, opts.spawn_rate
        ),
        Some(rate) => format!(
            "open (arrival rate {rate}/s, up to {} connections; response times from each request's scheduled start: coordinated omission corrected)",
            opts.users
        ),
    }
}

fn describe_stop(opts: &RunArgs) -> String {
    match (opts.run_time, opts.iterations) {
        (Some(t), Some(n)) => format!("for {} or {n} requests", fmt_duration(t)),
        (Some(t), None) => format!("for {}", fmt_duration(t)),
        (None, Some(n)) => format!("for {n} requests"),
        (None, None) => "until ctrl-c".to_string(),
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
