//! `loadgen`: a Locust-like HTTP load generator whose results flow through the load-test
//! pipeline.
//!
//! Layout:
//! - [`cli`] — the command line ([`Args`]) and its value parsers (durations, URLs, paths).
//! - [`runner`] — the users (tokio tasks sending GETs through one shared `reqwest` client).
//! - [`stats`] — exact cumulative stats, one `std::sync::Mutex`-protected shard per user, merged
//!   into Locust-shaped [`protocol::StatsPayload`]s.
//! - [`client`] — the load-test API client (register, stats, commit) with retries.
//! - [`standalone`] — the in-process pipeline (`--standalone`), writing line protocol to a file.
//! - [`summary`] — the Locust-like report and the progress line.
//! - [`demo`] — `loadgen demo`, a built-in target plus a standalone run against it.
//!
//! [`run`] is the whole program after argument parsing: `main` and the tests both call it.
//! Shutdown (ctrl-c, SIGTERM) arrives through a [`CancellationToken`]: the users stop, and the
//! run is still committed.

#![warn(missing_docs)]

pub mod amqp;
pub mod cli;
pub mod client;
pub mod demo;
pub mod fasthttp;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod standalone;
pub mod stats;
pub mod summary;
pub mod thresholds;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use protocol::{Body, CommitPayload, Envelope, RunInfo, StatsPayload};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use cli::{Args, Command, DemoArgs, RunArgs, TargetArgs};
use client::{
    ApiClient, CommitFields, CommitMeasurement, CommitRequest, CommitTags, RegisterFields,
    RegisterMeasurement, RegisterRequest, RegisterTags, Registration, StatsMessage,
};
use runner::{LoadPlan, Progress};
use standalone::Standalone;
use stats::Stats;

/// The name this tool registers runs under.
pub const TOOL: &str = "loadgen";

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
    /// Requests in flight at the stop timeout, cancelled and not counted.
    pub requests_cancelled: u64,
    /// Wall time from the first user's start to the end of the last request.
    pub elapsed: Duration,
    /// The line-protocol file written (`--standalone`, `demo`).
    pub output: Option<PathBuf>,
    /// The report printed to stdout (request table, percentiles, errors).
    pub summary: String,
    /// The `--threshold` verdicts, in the order given.
    pub thresholds: Vec<thresholds::Verdict>,
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
        Some(Command::Demo(demo)) => demo::run(demo, shutdown).await,
        Some(Command::Target(target)) => demo::serve_target(target, shutdown).await,
        None => run_test(args.run, shutdown).await,
    }
}

/// This machine's hostname (from the kernel, `/etc/hostname` or `$HOSTNAME`; `localhost` when
/// none is known).
pub fn hostname() -> String {
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

/// Where results go.
enum Pipeline {
    /// Print the summary only.
    None,
    /// Register, publish and commit through the API.
    Api(Box<ApiSession>),
    /// The in-process pipeline.
    Standalone(Box<Standalone>),
}

struct ApiSession {
    client: ApiClient,
    registration: Registration,
    publisher: JoinHandle<u64>,
    publisher_stop: CancellationToken,
    /// `--amqp-url`: stats and commit go to RabbitMQ through this.
    amqp: Option<SharedAmqp>,
}

/// The AMQP publisher, shared by the stats task and the commit.
type SharedAmqp = Arc<tokio::sync::Mutex<amqp::AmqpPublisher>>;

/// Context shared by the phases of one test.
struct TestContext {
    target_host: String,
    hostname: String,
    node_id: String,
    started_at: DateTime<Utc>,
}

/// A load test (no subcommand).
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
        Some(file) => scenario::Scenario::load(file).map_err(anyhow::Error::msg)?,
        None if opts.paths.is_empty() => scenario::Scenario::from_paths(&["/".to_string()])?,
        None => scenario::Scenario::from_paths(&opts.paths)?,
    };
    scenario.resolve(&host)?;
    let hostname = hostname();
    let ctx = TestContext {
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
        host,
        scenario: Arc::new(scenario),
        users: opts.users,
        spawn_rate: opts.spawn_rate,
        iterations: opts.iterations,
        arrival_rate: opts.arrival_rate,
        timeout: opts.timeout,
        threads: opts.threads,
    };
    let stats = Arc::new(Stats::new(stats::unix_now()));
    let progress = Arc::new(Progress::default());

    // 1. Register where the results go; a failure here ends the run before any load.
    let mut pipeline = start_pipeline(&opts, &ctx, &stats, &progress, &shutdown).await?;

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
    let started = Instant::now();
    let mut runner = tokio::spawn(runner::run_users(
        plan,
        Arc::clone(&stats),
        Arc::clone(&progress),
        stop.clone(),
        abort.clone(),
    ));

    // 3. Wait for the end, printing progress and writing standalone snapshots meanwhile.
    let deadline = opts.run_time.map(|d| started + d);
    let mut abort_at: Option<Instant> = None;
    let mut ticker = tokio::time::interval_at(started + opts.stats_interval, opts.stats_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut recorder = report::Recorder::default();
    let mut next_snapshot = match &pipeline {
        Pipeline::Standalone(s) => Some(Instant::now() + s.until_next_snapshot()),
        _ => None,
    };
    let report = loop {
        tokio::select! {
            joined = &mut runner => {
                break joined.context("the users' task failed")??;
            }
            _ = sleep_until_opt(deadline), if !stop.is_cancelled() => {
                eprintln!("Run time {} reached, stopping users", fmt_duration(opts.run_time.unwrap_or_default()));
                stop.cancel();
                abort_at = Some(Instant::now() + opts.stop_timeout);
            }
            _ = shutdown.cancelled(), if !stop.is_cancelled() => {
                eprintln!("Shutdown requested, stopping users (in-flight requests get {} to finish)", fmt_duration(opts.stop_timeout));
                stop.cancel();
                abort_at = Some(Instant::now() + opts.stop_timeout);
            }
            _ = sleep_until_opt(abort_at) => {
                tracing::warn!("stop timeout passed, cancelling requests still in flight");
                abort.cancel();
                abort_at = None;
            }
            _ = ticker.tick() => {
                let p = stats.snapshot(progress.users(), progress.state());
                if opts.quiet || opts.only_summary {
                    // Nothing while the test runs.
                } else if opts.headless {
                    eprint!("{}", summary::live_table(started.elapsed(), &p, recorder.previous(), opts.stats_interval));
                } else {
                    let before = recorder.previous().map_or(0, |q| q.total.num_requests);
                    eprintln!("{}", summary::progress_line(started.elapsed(), &p, before, opts.stats_interval));
                }
                recorder.record(stats::unix_now(), started.elapsed(), &p);
            }
            _ = sleep_until_opt(next_snapshot) => {
                if let Pipeline::Standalone(s) = &mut pipeline {
                    let p = stats.snapshot(progress.users(), progress.state());
                    if let Err(e) = s.snapshot(p).await {
                        tracing::error!(error = format!("{e:#}"), "standalone snapshot failed");
                    }
                    next_snapshot = Some(Instant::now() + s.until_next_snapshot());
                }
            }
        }
    };
    stop.cancel();
    abort.cancel();
    let elapsed = started.elapsed();
    let final_stats = stats.snapshot(report.users_started, "stopped");
    recorder.record(stats::unix_now(), elapsed, &final_stats);
    if report.requests_cancelled > 0 {
        eprintln!(
            "{} requests still in flight at the stop timeout were cancelled and are not counted",
            report.requests_cancelled
        );
    }

    // 4. Check the thresholds, commit (with the verdicts), then report. Percentiles come from
    //    the HdrHistograms (µs precision); the Locust histograms go to the pipeline.
    let latencies = stats.latencies();
    let hdr = |key: Option<(&str, &str)>, q: f64| latencies.percentile_ms(key, q);
    let verdicts = thresholds::evaluate(&opts.thresholds, &final_stats, Some(&hdr));
    let (uuid, output, committed) =
        finish_pipeline(pipeline, &opts, &ctx, &final_stats, &verdicts).await;
    let summary = format!(
        "Load model: {}\n{}",
        describe_model(&opts),
        summary::render_with(&final_stats, Some(&hdr))
    );
    println!();
    print!("{summary}");
    if !verdicts.is_empty() {
        println!();
        print!("{}", thresholds::render(&verdicts));
    }
    match (&committed, &pipeline_kind(&opts)) {
        (Ok(()), Kind::Api) => {
            if let Some(id) = uuid {
                println!("\nRun {id} committed to the load-test API.");
            }
        }
        (Ok(()), Kind::Standalone) => {
            if let Some(path) = &output {
                println!(
                    "\nResults written to {} (line protocol; import with: influx write -b BUCKET -f {})",
                    path.display(),
                    path.display()
                );
            }
        }
        _ => {}
    }
    let meta = report::RunMeta {
        tool: TOOL.to_string(),
        model: if opts.arrival_rate.is_some() {
            "open".to_string()
        } else {
            "closed".to_string()
        },
        target_host: ctx.target_host.clone(),
        started_at: client::rfc3339(ctx.started_at),
        elapsed_s: elapsed.as_secs_f64(),
        users: opts.users,
        spawn_rate: opts.spawn_rate,
        arrival_rate: opts.arrival_rate,
        uuid: uuid.map(|u| u.to_string()),
        node_id: ctx.node_id.clone(),
    };
    let files = write_reports(
        &opts,
        &report::Report {
            meta: &meta,
            stats: &final_stats,
            history: recorder.points(),
            thresholds: &verdicts,
            percentiles: Some(&hdr),
        },
    );
    committed?;
    files?;
    Ok(RunOutcome {
        uuid,
        total_requests: final_stats.total.num_requests,
        failures: final_stats.total.num_failures,
        users_started: report.users_started,
        requests_cancelled: report.requests_cancelled,
        elapsed,
        output,
        summary,
        stats: final_stats,
        thresholds: verdicts,
    })
}

/// Writes the `--json`, `--csv` and `--html` files asked for, printing where each went.
fn write_reports(opts: &RunArgs, rep: &report::Report<'_>) -> anyhow::Result<()> {
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

enum Kind {
    None,
    Api,
    Standalone,
}

fn pipeline_kind(opts: &RunArgs) -> Kind {
    if opts.consumer_host.is_some() {
        Kind::Api
    } else if opts.standalone {
        Kind::Standalone
    } else {
        Kind::None
    }
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

/// Formats a duration as `1h30m`, `35s` or `1.5s`.
pub fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() != 0 || d.as_millis() == 0 {
        return format!("{}s", d.as_secs_f64());
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3_600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn run_info(opts: &RunArgs, ctx: &TestContext) -> RunInfo {
    RunInfo {
        started_at: ctx.started_at,
        host: ctx.hostname.clone(),
        clients: opts.users,
        hatch_rate: opts.spawn_rate,
        requests: opts.iterations.unwrap_or(0),
        target_host: ctx.target_host.clone(),
        mode: "single".to_string(),
        tool: TOOL.to_string(),
        expected_nodes: opts.expected_nodes,
    }
}

async fn start_pipeline(
    opts: &RunArgs,
    ctx: &TestContext,
    stats: &Arc<Stats>,
    progress: &Arc<Progress>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Pipeline> {
    if let Some(consumer) = &opts.consumer_host {
        let client = ApiClient::new(consumer.clone())?;
        let body = RegisterRequest {
            started_at: client::rfc3339(ctx.started_at),
            host: ctx.hostname.clone(),
            measurement: RegisterMeasurement {
                fields: RegisterFields {
                    clients: opts.users,
                    hatch_rate: opts.spawn_rate,
                    requests: opts.iterations.unwrap_or(0),
                },
                tags: RegisterTags {
                    target_host: ctx.target_host.clone(),
                    mode: "single".to_string(),
                },
            },
            tool: TOOL.to_string(),
            node_id: ctx.node_id.clone(),
            run_key: opts.run_key.clone(),
            expected_nodes: opts.expected_nodes,
        };
        let registration = tokio::select! {
            r = client.register(&body, opts.api_key.as_deref()) => {
                r.context("cannot register the run; the load test was not started")?
            }
            _ = shutdown.cancelled() => anyhow::bail!("interrupted before the run was registered"),
        };
        eprintln!(
            "Registered run {} with {} (node {})",
            registration.uuid, consumer, ctx.node_id
        );
        let amqp = match &opts.amqp_url {
            None => None,
            Some(url) => {
                let p = tokio::select! {
                    p = amqp::AmqpPublisher::connect(url, &opts.amqp_exchange) => p?,
                    _ = shutdown.cancelled() => anyhow::bail!("interrupted while connecting to RabbitMQ"),
                };
                eprintln!(
                    "Publishing stats and the commit to RabbitMQ at {} (exchange {})",
                    amqp::redact(url),
                    opts.amqp_exchange
                );
                Some(Arc::new(tokio::sync::Mutex::new(p)))
            }
        };
        let publisher_stop = CancellationToken::new();
        let publisher = tokio::spawn(publish_stats(
            client.clone(),
            amqp.clone(),
            registration.clone(),
            ctx.node_id.clone(),
            Arc::clone(stats),
            Arc::clone(progress),
            opts.stats_interval,
            publisher_stop.clone(),
        ));
        return Ok(Pipeline::Api(Box::new(ApiSession {
            client,
            registration,
            publisher,
            publisher_stop,
            amqp,
        })));
    }
    if opts.standalone {
        let s = Standalone::start(
            run_info(opts, ctx),
            &ctx.node_id,
            &opts.output,
            opts.snapshot_interval,
        )
        .await?;
        eprintln!(
            "Standalone run {}: snapshots every {} into {}",
            s.event_id(),
            fmt_duration(opts.snapshot_interval),
            opts.output.display()
        );
        return Ok(Pipeline::Standalone(Box::new(s)));
    }
    Ok(Pipeline::None)
}

/// Publishes cumulative stats every `interval` until `stop`; returns the last sequence number
/// used. Runs in its own task, so a slow or unavailable API never stalls the users; a publish
/// still retrying when the next one is due delays it (the next one supersedes it anyway).
#[allow(clippy::too_many_arguments)]
async fn publish_stats(
    client: ApiClient,
    amqp: Option<SharedAmqp>,
    registration: Registration,
    node_id: String,
    stats: Arc<Stats>,
    progress: Arc<Progress>,
    interval: Duration,
    stop: CancellationToken,
) -> u64 {
    let mut seq = 0u64;
    let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return seq,
            _ = ticker.tick() => {}
        }
        seq += 1;
        let payload = stats.snapshot(progress.users(), progress.state());
        if let Some(amqp) = &amqp {
            let env = Envelope::new(
                registration.uuid,
                node_id.as_str(),
                seq,
                registration.token.clone(),
                Body::Stats(payload),
            );
            tokio::select! {
                _ = stop.cancelled() => return seq,
                r = async { amqp.lock().await.publish(&env).await } => {
                    if let Err(e) = r {
                        tracing::warn!(event_id = %registration.uuid, seq, error = format!("{e:#}"), "publishing stats to RabbitMQ failed");
                    }
                }
            }
            continue;
        }
        let msg = StatsMessage {
            node_id: node_id.clone(),
            seq,
            payload,
        };
        tokio::select! {
            _ = stop.cancelled() => return seq,
            r = client.publish_stats(registration.uuid, &registration.token, &msg) => {
                if let Err(e) = r {
                    tracing::warn!(event_id = %registration.uuid, seq, error = %e, "publishing stats failed");
                }
            }
        }
    }
}

/// Commits the run; returns its uuid, the output file (standalone) and the commit's result.
async fn finish_pipeline(
    pipeline: Pipeline,
    opts: &RunArgs,
    ctx: &TestContext,
    final_stats: &StatsPayload,
    verdicts: &[thresholds::Verdict],
) -> (Option<Uuid>, Option<PathBuf>, anyhow::Result<()>) {
    match pipeline {
        Pipeline::None => (None, None, Ok(())),
        Pipeline::Api(session) => {
            session.publisher_stop.cancel();
            let last_seq = session.publisher.await.unwrap_or(0);
            let uuid = session.registration.uuid;
            let body = CommitRequest {
                started_at: client::rfc3339(ctx.started_at),
                uuid,
                host: ctx.hostname.clone(),
                node_id: ctx.node_id.clone(),
                seq: last_seq + 1,
                user_count: final_stats.user_count,
                errors: final_stats.errors.clone(),
                measurement: CommitMeasurement {
                    fields: CommitFields {
                        request_stats: final_stats.entries.clone(),
                    },
                    tags: CommitTags {
                        hostname: ctx.target_host.clone(),
                        mode: "single".to_string(),
                    },
                },
                thresholds: verdicts.to_vec(),
            };
            eprintln!("Committing run {uuid}");
            let result = match &session.amqp {
                Some(amqp) => {
                    let env = Envelope::new(
                        uuid,
                        ctx.node_id.as_str(),
                        last_seq + 1,
                        session.registration.token.clone(),
                        Body::Committed(CommitPayload {
                            host: ctx.hostname.clone(),
                            stats: final_stats.clone(),
                            thresholds: verdicts
                                .iter()
                                .map(thresholds::Verdict::to_protocol)
                                .collect(),
                        }),
                    );
                    let mut p = amqp.lock().await;
                    let r = p.publish(&env).await;
                    r.with_context(|| {
                        format!("cannot commit run {uuid} through RabbitMQ; its final record is missing")
                    })
                }
                None => session
                    .client
                    .commit(&session.registration.token, &body)
                    .await
                    .with_context(|| {
                        format!("cannot commit run {uuid}; its final record is missing")
                    }),
            };
            if let Some(amqp) = session.amqp {
                if let Ok(p) = Arc::try_unwrap(amqp) {
                    p.into_inner().close().await;
                }
            }
            (Some(uuid), None, result)
        }
        Pipeline::Standalone(s) => {
            let uuid = s.event_id();
            let output = s.output().to_path_buf();
            let result = s.commit(final_stats.clone()).await.with_context(|| {
                format!("cannot write the final record to {}", opts.output.display())
            });
            (Some(uuid), Some(output), result)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_format() {
        assert_eq!(fmt_duration(Duration::from_secs(5_400)), "1h30m");
        assert_eq!(fmt_duration(Duration::from_secs(35)), "35s");
        assert_eq!(fmt_duration(Duration::from_millis(1_500)), "1.5s");
    }

    #[test]
    fn hostname_is_never_empty() {
        assert!(!hostname().is_empty());
    }
}
