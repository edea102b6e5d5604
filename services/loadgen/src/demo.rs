//! `loadgen demo`: a complete standalone run against a built-in HTTP target, so a newcomer sees
//! the users, the snapshots and the summary with one command and no services.
//!
//! The target (axum on `127.0.0.1:0`) serves `/` (fast), `/api/items` (5–30 ms),
//! `/api/slow` (100–300 ms) and `/api/flaky` (HTTP 500 about 5 % of the time).
//! `loadgen target` serves the same routes on its own, counting what it answers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use rand::Rng as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cli::{fmt_duration, Args, DemoArgs, RunArgs, TargetArgs};
use crate::RunOutcome;

/// The paths the demo requests.
pub(crate) const DEMO_PATHS: [&str; 4] = ["/", "/api/items", "/api/slow", "/api/flaky"];

/// Spawn rate of the demo, users per second.
pub(crate) const DEMO_SPAWN_RATE: f64 = 5.0;

/// The demo target's routes.
pub(crate) fn target_router() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { "Hello from the loadgen demo target\n" }),
        )
        .route("/api/items", get(items))
        .route("/api/slow", get(slow))
        .route("/api/flaky", get(flaky))
}

/// A random duration in `[min_ms, max_ms]` milliseconds.
fn random_ms(min_ms: u64, max_ms: u64) -> Duration {
    Duration::from_millis(rand::thread_rng().gen_range(min_ms..=max_ms))
}

async fn items() -> Json<serde_json::Value> {
    tokio::time::sleep(random_ms(5, 30)).await;
    Json(serde_json::json!({"items": [{"id": 1, "name": "apple"}, {"id": 2, "name": "pear"}]}))
}

async fn slow() -> &'static str {
    tokio::time::sleep(random_ms(100, 300)).await;
    "slow but fine\n"
}

async fn flaky() -> (StatusCode, &'static str) {
    let fail = rand::thread_rng().gen_bool(0.05);
    if fail {
        (StatusCode::INTERNAL_SERVER_ERROR, "simulated failure\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}

/// Serves [`target_router`] on `127.0.0.1:0` until `stop`; returns the bound address.
pub(crate) async fn start_target(stop: CancellationToken) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind the demo target to 127.0.0.1")?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let served = axum::serve(listener, target_router())
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "demo target failed");
        }
    });
    Ok(addr)
}

/// A demo under way: its target runs until [`Demo::finish`].
#[derive(Debug)]
pub(crate) struct Demo {
    /// The standalone load test to run against the target.
    pub(crate) args: RunArgs,
    output: std::path::PathBuf,
    target_stop: CancellationToken,
}

impl Demo {
    /// Starts the target and says what the demo does; the load test to run is [`Demo::args`].
    pub(crate) async fn start(demo: DemoArgs) -> anyhow::Result<Self> {
        eprintln!("loadgen demo: a complete load test on this machine, no services needed.");
        let target_stop = CancellationToken::new();
        let addr = start_target(target_stop.clone()).await?;
        let host = format!("http://{addr}");
        eprintln!(
            "1. Started a demo target at {host}: / (fast), /api/items (5-30 ms), /api/slow (100-300 ms), /api/flaky (fails ~5%)"
        );
        eprintln!(
            "2. Running {} users (spawn rate {DEMO_SPAWN_RATE}/s) for {} in standalone mode: the writer's run lifecycle runs in-process",
            demo.users,
            fmt_duration(demo.run_time)
        );
        eprintln!(
            "3. A snapshot of the cumulative stats goes to {} at every wall-clock multiple of {}; the final record at the end",
            demo.output.display(),
            fmt_duration(demo.snapshot_interval)
        );
        let mut argv: Vec<String> = vec![
            "loadgen".into(),
            "--host".into(),
            host,
            "--users".into(),
            demo.users.to_string(),
            "--spawn-rate".into(),
            DEMO_SPAWN_RATE.to_string(),
            "--run-time".into(),
            format!("{}", demo.run_time.as_secs_f64()),
            "--snapshot-interval".into(),
            format!("{}", demo.snapshot_interval.as_secs_f64()),
            "--stop-timeout".into(),
            "2".into(),
            "--standalone".into(),
            "--output".into(),
            demo.output.display().to_string(),
        ];
        for p in DEMO_PATHS {
            argv.push("--path".into());
            argv.push(p.into());
        }
        let args = match Args::try_parse_from_iter(argv) {
            Ok(args) => args.run,
            Err(e) => {
                target_stop.cancel();
                return Err(e).context("building the demo's arguments");
            }
        };
        Ok(Self {
            args,
            output: demo.output,
            target_stop,
        })
    }

    /// Stops the target; after a successful run, says where to look.
    pub(crate) fn finish(self, done: Option<(u64, u64)>) {
        self.target_stop.cancel();
        if let Some((requests, failures)) = done {
            eprintln!(
                "4. Done: {requests} requests, {failures} failures. Look at {} to see the loadtest_event, loadtest_snapshot, loadtest_request and loadtest_summary points.",
                self.output.display()
            );
        }
    }
}

/// `loadgen target`: serves [`target_router`] on `args.listen` until `shutdown`, counting every
/// request it answers; `GET /__count` (not counted) returns `{"requests": N}`. Prints the
/// address when listening and the count at exit; the outcome's `total_requests` is the count.
pub(crate) async fn serve_target(
    args: TargetArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<RunOutcome> {
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!(
        "loadgen target listening on http://{}",
        listener.local_addr()?
    );
    let count = serve_counting(listener, shutdown).await?;
    println!("loadgen target answered {count} requests");
    Ok(RunOutcome {
        uuid: None,
        total_requests: count,
        failures: 0,
        stats: crate::engine::stats::Stats::new(crate::engine::stats::unix_now())
            .snapshot(0, "stopped"),
        users_started: 0,
        requests_cancelled: 0,
        elapsed: Duration::ZERO,
        output: None,
        summary: String::new(),
        thresholds: Vec::new(),
        http1_requests: count,
        http2_requests: 0,
    })
}

/// Serves [`target_router`] plus `GET /__count` on `listener` until `stop`; returns the number of
/// requests answered.
async fn serve_counting(listener: TcpListener, stop: CancellationToken) -> anyhow::Result<u64> {
    let count = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&count);
    let app = target_router()
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let counted = Arc::clone(&counted);
                async move {
                    let response = next.run(req).await;
                    counted.fetch_add(1, Ordering::SeqCst);
                    response
                }
            },
        ))
        .route(
            "/__count",
            get({
                let count = Arc::clone(&count);
                move || async move {
                    Json(serde_json::json!({"requests": count.load(Ordering::SeqCst)}))
                }
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
        .context("the demo target failed")?;
    Ok(count.load(Ordering::SeqCst))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_target_counts_what_it_answers() -> anyhow::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let stop = CancellationToken::new();
        let served = tokio::spawn(serve_counting(listener, stop.clone()));
        let client = reqwest::Client::new();
        for path in ["/", "/api/items", "/nothing-here"] {
            client.get(format!("{base}{path}")).send().await?;
        }
        let counted: serde_json::Value = client
            .get(format!("{base}/__count"))
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(counted, serde_json::json!({"requests": 3}));
        stop.cancel();
        assert_eq!(served.await??, 3);
        Ok(())
    }
}
