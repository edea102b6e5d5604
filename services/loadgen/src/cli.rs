//! Command-line interface (clap derive) and the parsers of its values.
//!
//! [`Args`] is what `main` parses and what `run` takes. Every value is checked while
//! parsing (URLs, durations, counts), so a typo gives a clear message before anything starts.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand};
use reqwest::Url;

/// The name this tool registers runs under.
pub(crate) const TOOL: &str = "loadgen";

const EXAMPLES: &str = "\
Examples:
  # 50 users, 10 new users per second, for 2 minutes, over two endpoints; summary only:
  loadgen --host http://localhost:8080 -u 50 -r 10 -t 2m --path / --path /api/items

  # exactly 10000 requests, results published through the pipeline's API:
  LOADTEST_API_KEY=... loadgen --host https://staging.example.com -u 20 -r 5 -n 10000 \\
      --consumer-host https://loadtest-api.example.com

  # no services at all: write line protocol to a file (import it with `influx write`):
  loadgen --host http://localhost:8080 -u 10 -r 2 -t 1h30m --standalone --output run.lp

  # see a complete run against a built-in target:
  loadgen demo

  # pass/fail thresholds (exit code 1 if one fails) and report files:
  loadgen --host http://localhost:8080 -u 20 -r 5 -t 1m --threshold 'p95<300ms' \
      --threshold 'fail_ratio<0.01' --json run.json --csv run --html run.html

Scenario file (--scenario FILE, TOML):
  think_time = \"100ms\"                  # or { min = \"50ms\", max = \"250ms\" }
  [headers]                             # sent with every request
  Authorization = \"Bearer abc\"
  [[request]]
  path = \"/\"
  weight = 3                            # relative share, default 1
  [[request]]
  name = \"create item\"                  # stats group, default: the path
  method = \"POST\"                       # default GET
  path = \"/api/items\"
  headers = { Content-Type = \"application/json\" }
  body = '{\"name\": \"apple\"}'
  expect_status = 201                   # or [200, 201]; default: any status below 400";

/// Locust-like HTTP load generator.
///
/// Sends HTTP GET requests from USERS concurrent users (started at SPAWN_RATE users per second)
/// to HOST, spread equally over the `--path` values, until RUN_TIME has passed, ITERATIONS
/// requests were sent, or ctrl-c / SIGTERM. It keeps Locust-compatible cumulative statistics and
/// prints a Locust-like summary at the end. With `--consumer-host` it registers the run with the
/// load-test API, publishes cumulative stats every `--stats-interval` and commits at the end;
/// with `--standalone` it runs the whole results pipeline in-process and writes InfluxDB line
/// protocol to `--output`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "loadgen",
    version,
    after_help = EXAMPLES,
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    /// A subcommand; without one, loadgen runs a load test with the options below.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The load test's options.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Start a small built-in HTTP target and run a 35 s standalone load test against it
    /// (10 users, 5 users/s, 15 s snapshots), writing line protocol to `loadtest-demo.lp`.
    Demo(DemoArgs),
    /// Serve the demo's HTTP target on `--listen` until ctrl-c / SIGTERM, counting the requests
    /// it answers (`GET /__count` returns `{"requests": N}`; the total is printed at exit).
    /// The target of `docker compose` and of the stack test.
    Target(TargetArgs),
}

/// Options of `loadgen target`.
#[derive(Debug, Clone, ClapArgs)]
pub struct TargetArgs {
    /// Address to listen on (`0.0.0.0:8000` in a container).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8000")]
    pub listen: String,
}

/// Options of `loadgen demo`.
#[derive(Debug, Clone, ClapArgs)]
pub struct DemoArgs {
    /// Line-protocol file the demo's results are appended to.
    #[arg(long, value_name = "FILE", default_value = "loadtest-demo.lp")]
    pub output: PathBuf,
    /// How long the demo load test runs (e.g. `35s`, `1m`).
    #[arg(short = 't', long, value_name = "DURATION", default_value = "35s", value_parser = parse_positive_duration)]
    pub run_time: Duration,
    /// Interval of the snapshots written while the demo runs (aligned to the wall clock).
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_positive_duration)]
    pub snapshot_interval: Duration,
    /// Users the demo runs.
    #[arg(short = 'u', long, value_name = "USERS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub users: u64,
}

/// Options of a load test.
#[derive(Debug, Clone, ClapArgs)]
pub struct RunArgs {
    /// Base URL of the system under test (`http://host:port`); paths are appended to it.
    #[arg(long, value_name = "URL", required = true, value_parser = parse_http_url)]
    pub host: Option<Url>,

    /// Number of concurrent users (tokio tasks), each sending one request after the other.
    /// `-c/--clients` is the original customized Locust's spelling.
    #[arg(short = 'u', long, visible_short_alias = 'c', visible_alias = "clients", value_name = "USERS", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub users: u64,

    /// Users started per second until all USERS run (fractions allowed: 0.5 = one every 2 s).
    /// `--hatch-rate` is the original customized Locust's spelling.
    #[arg(short = 'r', long, visible_alias = "hatch-rate", value_name = "USERS_PER_S", default_value_t = 1.0, value_parser = parse_spawn_rate)]
    pub spawn_rate: f64,

    /// Open model: start this many requests per second (`500` or `500/s`), whatever the
    /// responses do, from up to USERS connections (`-u`, started at once; the spawn rate does
    /// not apply). Response times count from each request's scheduled start, so a stalled
    /// server shows in the percentiles (coordinated omission corrected). Without it: the
    /// closed model, each user sending its next request when the previous one returned.
    #[arg(long, value_name = "PER_S", value_parser = parse_arrival_rate)]
    pub arrival_rate: Option<f64>,

    /// Stop after this long: `35s`, `2m`, `1h30m`, or plain seconds (`90`). Without it (and
    /// without `-n`) the test runs until ctrl-c.
    #[arg(short = 't', long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub run_time: Option<Duration>,

    /// Stop after exactly this many requests in total (across all users). Combined with
    /// `--run-time`, whichever comes first stops the test. `--num-request` is the original
    /// customized Locust's spelling.
    #[arg(short = 'n', long, visible_aliases = ["num-request", "num-requests"], value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub iterations: Option<u64>,

    /// Path to request (repeatable); requests go to the paths in turn, so each gets an equal
    /// share. Default: `/`.
    #[arg(long = "path", value_name = "PATH", value_parser = parse_path)]
    pub paths: Vec<String>,

    /// A scenario file (TOML) instead of `--path`: weighted requests with method, path,
    /// headers, body, name (stats group) and expected status, and the users' think time. A bad
    /// file is reported with its line, column and field. See the example below.
    #[arg(long, value_name = "FILE", conflicts_with = "paths")]
    pub scenario: Option<PathBuf>,

    /// Per-request timeout, after which the request counts as a failure (`timeout`).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_positive_duration)]
    pub timeout: Duration,

    /// At the end of the test, how long in-flight requests may take to finish before they are
    /// cancelled (cancelled requests count as failures, "cancelled: in flight at the stop
    /// timeout", so every request sent is counted).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub stop_timeout: Duration,

    /// Threads the users run on, each with its own event loop (users are dealt to them in
    /// turn, like wrk's `-t`). Default: one per CPU this process may use (see `taskset`).
    #[arg(long, value_name = "N", default_value_t = 0, hide_default_value = true)]
    pub threads: usize,

    /// HTTPS: don't verify the server's certificate (self-signed or private-CA staging
    /// servers). A warning is printed once. Prefer `--cacert` where the CA is at hand.
    #[arg(short = 'k', long, conflicts_with = "cacert")]
    pub insecure: bool,

    /// HTTPS: trust the CA certificates in this PEM file (a bundle may hold several) besides
    /// the web's roots (Mozilla's list).
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// HTTPS: client certificate (PEM, the chain leaf first) sent when the server asks for
    /// one (mutual TLS); needs `--key`.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,

    /// HTTPS: the private key of `--cert` (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,

    /// HTTPS: the oldest TLS version accepted: `1.2` or `1.3`.
    #[arg(long, value_name = "VERSION", default_value = "1.2", value_parser = parse_tls_min)]
    pub tls_min: crate::engine::fasthttp::TlsMin,

    /// HTTPS: the server name sent in SNI and checked against the certificate. Default: the
    /// host of `--host`.
    #[arg(long, value_name = "NAME")]
    pub sni: Option<String>,

    /// Speak HTTP/2: ALPN `h2` over TLS, prior knowledge (h2c) over plain TCP. Without it,
    /// HTTP/1.1, or HTTP/2 when the server's ALPN offers only h2.
    #[arg(long)]
    pub http2: bool,

    /// With `--http2`: requests each user keeps in flight at once, each on its own stream of
    /// the user's one connection. 1 keeps the closed model's meaning (a user waits for its
    /// response before the next request).
    #[arg(long, value_name = "N", default_value_t = 1, requires = "http2", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub h2_streams: u32,

    /// Base URL of the load-test API (`https://loadtest-api.example.com`). When given, the run
    /// is registered there, stats are published every `--stats-interval`, and it is committed
    /// at the end. `LOADTEST_CONSUMER_HOST` sets it from the environment, so the original
    /// customized Locust's command lines (which had no such option) still publish their runs.
    #[arg(long, value_name = "URL", env = "LOADTEST_CONSUMER_HOST", value_parser = parse_http_url, conflicts_with = "standalone")]
    pub consumer_host: Option<Url>,

    /// Publish stats and the commit straight to RabbitMQ at URL
    /// (`amqp://user:pass@host:5672/%2f`, trusted networks only) instead of through the API.
    /// The run is still registered through `--consumer-host`, which hands out its id and event
    /// token. Messages are persistent, mandatory and publisher-confirmed.
    #[arg(
        long,
        value_name = "URL",
        env = "LOADTEST_AMQP_URL",
        hide_env_values = true,
        requires = "consumer_host"
    )]
    pub amqp_url: Option<String>,

    /// With `--amqp-url`: the pipeline's topic exchange.
    #[arg(long, value_name = "NAME", default_value = "loadtest")]
    pub amqp_exchange: String,

    /// API key for registering the run (sent as `Authorization: Bearer KEY`).
    #[arg(
        long,
        value_name = "KEY",
        env = "LOADTEST_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,

    /// This load generator's id within the run. Default: `HOSTNAME-PID`.
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,

    /// Idempotency key: nodes registering with the same key (and API key) join one run.
    #[arg(long, value_name = "KEY")]
    pub run_key: Option<String>,

    /// Number of nodes expected to join the run (cluster mode).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub expected_nodes: Option<u32>,

    /// How often cumulative stats are published to the API and a progress line is printed to
    /// stderr.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_positive_duration)]
    pub stats_interval: Duration,

    /// Run the results pipeline in-process (no RabbitMQ, InfluxDB or API) and write its line
    /// protocol to `--output`.
    #[arg(long)]
    pub standalone: bool,

    /// With `--standalone`: line-protocol file the results are appended to.
    #[arg(long, value_name = "FILE", default_value = "loadtest-results.lp")]
    pub output: PathBuf,

    /// With `--standalone`: interval of the snapshots written while the test runs; snapshots
    /// fall on wall-clock multiples of it.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_positive_duration)]
    pub snapshot_interval: Duration,

    /// A pass/fail threshold checked against the final stats (repeatable), e.g.
    /// `p95<300ms`, `p99.9<1s`, `fail_ratio<0.01` (or `<1%`), `rps>=500`, `avg<50ms`, or one
    /// endpoint's `p95[/api/items]<200ms` (every method of that name combined: their
    /// histograms are merged) or `p95[GET /api/items]<200ms` (one method). Each verdict is
    /// printed after the summary and sent with the commit; if any fails, loadgen exits with
    /// code 1.
    #[arg(long = "threshold", value_name = "EXPR", value_parser = crate::output::thresholds::parse_threshold)]
    pub thresholds: Vec<crate::output::thresholds::Threshold>,

    /// Write the results as JSON to FILE at the end: run metadata, per-endpoint and aggregated
    /// stats with the percentiles, errors, threshold verdicts and the time series.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Write Locust's CSV files at the end: `PREFIX_stats.csv`, `PREFIX_stats_history.csv`
    /// (one row per stats interval), `PREFIX_failures.csv` and `PREFIX_exceptions.csv`, with
    /// Locust's column names.
    #[arg(long, value_name = "PREFIX")]
    pub csv: Option<PathBuf>,

    /// Write a self-contained HTML report to FILE at the end (tables, and charts of
    /// requests/s, users and response-time percentiles over time; no external resources).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// Headless mode, as in Locust: print a live stats table (per endpoint and aggregated, with
    /// the current requests/s) every `--stats-interval` instead of the one-line progress.
    /// loadgen has no web UI, so the load test itself is the same either way. `--no-web` is the
    /// original customized Locust's spelling.
    #[arg(long, visible_alias = "no-web")]
    pub headless: bool,

    /// Print only the final summary: no progress line and no live stats table while the test
    /// runs.
    #[arg(long)]
    pub only_summary: bool,

    /// Don't print the progress line to stderr (as `--only-summary`).
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

impl Args {
    /// Parses `argv` (the first item is the program name), returning clap's error on bad input.
    pub fn try_parse_from_iter<I, T>(argv: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        <Self as Parser>::try_parse_from(argv)
    }
}

/// Parses `--tls-min`: `1.2` or `1.3` (a `TLS` prefix and `v` are accepted: `TLSv1.3`).
pub(crate) fn parse_tls_min(text: &str) -> Result<crate::engine::fasthttp::TlsMin, String> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.trim_start_matches("tls").trim_start_matches('v');
    match t {
        "1.2" => Ok(crate::engine::fasthttp::TlsMin::V1_2),
        "1.3" => Ok(crate::engine::fasthttp::TlsMin::V1_3),
        _ => Err(format!(
            "{text:?} is not a TLS version loadgen speaks; use 1.2 or 1.3"
        )),
    }
}

/// Formats a duration as `1h30m`, `35s` or `1.5s` (what [`parse_duration`] reads).
pub(crate) fn fmt_duration(d: Duration) -> String {
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

/// Parses a duration: `35s`, `2m`, `1h30m`, `1.5s`, `250ms`, or plain seconds (`90`, `0.5`).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration; use e.g. 35s, 2m, 1h30m or plain seconds".into());
    }
    if let Ok(secs) = s.parse::<f64>() {
        return seconds(secs, text);
    }
    let mut total = 0.0_f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(bad_duration(text));
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| bad_duration(text))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match rest[..unit_len].trim() {
            "h" => 3_600.0,
            "m" | "min" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return Err(bad_duration(text)),
        };
        rest = &rest[unit_len..];
        total += value * factor;
    }
    seconds(total, text)
}

fn seconds(secs: f64, text: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(secs).map_err(|_| bad_duration(text))
}

fn bad_duration(text: &str) -> String {
    format!("invalid duration {text:?}; use e.g. 35s, 2m, 1h30m, 250ms or plain seconds")
}

/// [`parse_duration`], refusing zero.
pub(crate) fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.is_zero() {
        return Err(format!("duration {text:?} must be greater than zero"));
    }
    Ok(d)
}

/// Parses an absolute `http` or `https` URL.
pub(crate) fn parse_http_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim())
        .map_err(|e| format!("invalid URL {text:?}: {e} (expected e.g. http://localhost:8080)"))?;
    match url.scheme() {
        "http" | "https" if url.host_str().is_some() => Ok(url),
        _ => Err(format!(
            "invalid URL {text:?}: expected an http:// or https:// URL with a host"
        )),
    }
}

/// Parses a request path; it must start with `/`.
pub(crate) fn parse_path(text: &str) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err(format!("path {text:?} must start with '/'"));
    }
    if text.chars().any(char::is_whitespace) {
        return Err(format!("path {text:?} must not contain whitespace"));
    }
    Ok(text.to_string())
}

/// Parses a spawn rate (users per second), a finite number greater than zero.
pub(crate) fn parse_spawn_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text.trim().parse().map_err(|_| {
        format!("invalid spawn rate {text:?}: expected users per second, e.g. 10 or 0.5")
    })?;
    if !rate.is_finite() || rate <= 0.0 {
        return Err(format!(
            "spawn rate {text:?} must be a number greater than zero"
        ));
    }
    Ok(rate)
}

/// Parses an arrival rate, requests per second: `500`, `500/s`, `0.5`.
pub(crate) fn parse_arrival_rate(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let t = t.strip_suffix("/s").unwrap_or(t).trim();
    let rate: f64 = t.parse().map_err(|_| {
        format!("invalid arrival rate {text:?}: expected requests per second, e.g. 500 or 500/s")
    })?;
    if !rate.is_finite() || rate <= 0.0 {
        return Err(format!(
            "arrival rate {text:?} must be a number greater than zero"
        ));
    }
    Ok(rate)
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
    fn durations() {
        assert_eq!(parse_duration("35s"), Ok(Duration::from_secs(35)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("1h30m15s"), Ok(Duration::from_secs(5_415)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1_500)));
        for bad in ["", "abc", "5x", "h", "-3", "1h-2m", "s5"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_positive_duration("0s").is_err());
    }

    #[test]
    fn urls_paths_rates() {
        assert!(parse_http_url("http://localhost:8080").is_ok());
        assert!(parse_http_url("ftp://x").is_err());
        assert!(parse_http_url("localhost:8080").is_err());
        assert!(parse_path("/a").is_ok());
        assert!(parse_path("a").is_err());
        assert_eq!(parse_spawn_rate("0.5"), Ok(0.5));
        assert!(parse_spawn_rate("0").is_err());
        assert!(parse_spawn_rate("NaN").is_err());
        assert_eq!(parse_arrival_rate("500/s"), Ok(500.0));
        assert_eq!(parse_arrival_rate("20000"), Ok(20_000.0));
        assert!(parse_arrival_rate("0/s").is_err());
        assert!(parse_arrival_rate("fast").is_err());
    }

    #[test]
    fn parses_a_full_command_line() {
        let args = Args::try_parse_from_iter([
            "loadgen",
            "--host",
            "http://t:1",
            "-u",
            "5",
            "-r",
            "2",
            "-t",
            "1m",
            "--path",
            "/a",
            "--path",
            "/b",
            "-n",
            "100",
        ])
        .expect("valid");
        assert!(args.command.is_none());
        assert_eq!(args.run.users, 5);
        assert_eq!(args.run.spawn_rate, 2.0);
        assert_eq!(args.run.run_time, Some(Duration::from_secs(60)));
        assert_eq!(args.run.iterations, Some(100));
        assert_eq!(args.run.paths, ["/a", "/b"]);
        assert_eq!(args.run.stats_interval, Duration::from_secs(5));
    }

    #[test]
    fn the_original_locust_spellings_are_aliases() {
        let args = Args::try_parse_from_iter([
            "loadgen",
            "--host=http://127.0.0.1:8080",
            "--no-web",
            "-c",
            "5",
            "-r",
            "10",
            "-n",
            "100",
            "--only-summary",
        ])
        .expect("the original command line parses");
        assert_eq!(args.run.users, 5);
        assert_eq!(args.run.spawn_rate, 10.0);
        assert_eq!(args.run.iterations, Some(100));
        assert!(args.run.headless && args.run.only_summary);
        let long = Args::try_parse_from_iter([
            "loadgen",
            "--host",
            "http://t",
            "--clients",
            "3",
            "--hatch-rate",
            "0.5",
            "--num-request",
            "7",
            "--headless",
        ])
        .expect("long aliases");
        assert_eq!(long.run.users, 3);
        assert_eq!(long.run.spawn_rate, 0.5);
        assert_eq!(long.run.iterations, Some(7));
        assert!(long.run.headless && !long.run.only_summary);
    }

    #[test]
    fn host_is_required_except_for_demo() {
        let err = Args::try_parse_from_iter(["loadgen", "-u", "5"]).expect_err("needs host");
        assert!(err.to_string().contains("--host"), "{err}");
        let demo = Args::try_parse_from_iter(["loadgen", "demo"]).expect("demo");
        assert!(matches!(demo.command, Some(Command::Demo(_))));
        let target = Args::try_parse_from_iter(["loadgen", "target", "--listen", "0.0.0.0:8000"])
            .expect("target");
        assert!(matches!(target.command, Some(Command::Target(t)) if t.listen == "0.0.0.0:8000"));
        let bad = Args::try_parse_from_iter(["loadgen", "--host", "http://t", "-t", "5y"])
            .expect_err("bad duration");
        assert!(bad.to_string().contains("invalid duration"), "{bad}");
        let both = Args::try_parse_from_iter([
            "loadgen",
            "--host",
            "http://t",
            "--standalone",
            "--consumer-host",
            "http://api",
        ]);
        assert!(both.is_err());
    }
}
