//! End-to-end tests of `loadgen::run`: a real HTTP target and a stand-in for the load-test API
//! (both axum on port 0, in the test process), and the standalone pipeline writing to a file.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use loadgen::client::{ApiClient, ApiError};
use loadgen::{run, Args};
use protocol::api::{CommitRequest, StatsRequest};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A target that counts the requests it answered, per path. `/fail` answers 500.
#[derive(Clone, Default)]
struct Target {
    hits: Arc<Mutex<HashMap<String, u64>>>,
}

impl Target {
    fn count(&self, path: &str) -> u64 {
        self.hits
            .lock()
            .map(|h| h.get(path).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    fn total(&self) -> u64 {
        self.hits.lock().map(|h| h.values().sum()).unwrap_or(0)
    }
}

async fn target_handler(State(t): State<Target>, uri: axum::http::Uri) -> Response {
    let path = uri.path().to_string();
    if let Ok(mut h) = t.hits.lock() {
        *h.entry(path.clone()).or_insert(0) += 1;
    }
    if path == "/fail" {
        (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response()
    } else {
        (StatusCode::OK, "hello").into_response()
    }
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("serve");
    });
    addr
}

async fn start_target() -> (Target, String) {
    let target = Target::default();
    let router = Router::new()
        .fallback(target_handler)
        .with_state(target.clone());
    let addr = serve(router).await;
    (target, format!("http://{addr}"))
}

fn args(list: &[&str]) -> Args {
    let mut argv = vec!["loadgen"];
    argv.extend_from_slice(list);
    Args::try_parse_from_iter(argv).expect("valid arguments")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_n_requests_are_sent_and_counted() {
    let (target, host) = start_target().await;
    let outcome = run(
        args(&[
            "--host", &host, "-u", "7", "-r", "100", "-n", "200", "--path", "/a", "--path", "/b",
            "--path", "/fail", "-q",
        ]),
        CancellationToken::new(),
    )
    .await
    .expect("run succeeds");
    assert_eq!(target.total(), 200, "the target saw exactly 200 requests");
    assert_eq!(outcome.total_requests, 200);
    assert_eq!(outcome.stats.total.num_requests, 200);
    // Paths get equal shares: 200 = 67 + 67 + 66.
    assert_eq!(target.count("/a"), 67);
    assert_eq!(target.count("/b"), 67);
    assert_eq!(target.count("/fail"), 66);
    assert_eq!(outcome.failures, 66);
    let by_name: HashMap<&str, u64> = outcome
        .stats
        .entries
        .iter()
        .map(|e| (e.name.as_str(), e.num_requests))
        .collect();
    assert_eq!(by_name["/a"], 67);
    assert_eq!(by_name["/fail"], 66);
    assert_eq!(outcome.stats.errors.len(), 1);
    assert_eq!(outcome.stats.errors[0].error, "HTTP 500");
    assert_eq!(outcome.stats.errors[0].occurrences, 66);
    assert!(outcome.uuid.is_none());
    // The printed Aggregated row carries the exact count.
    let agg = outcome
        .summary
        .lines()
        .find(|l| l.contains("Aggregated") && l.contains('|'))
        .expect("aggregated row");
    let cols: Vec<&str> = agg.split_whitespace().collect();
    assert_eq!(cols[0], "Aggregated");
    assert_eq!(cols[1], "200", "{agg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_stops_the_users_and_keeps_counts_exact() {
    let (target, host) = start_target().await;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        stop.cancel();
    });
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        run(
            args(&["--host", &host, "-u", "4", "-r", "50", "-q"]),
            shutdown,
        ),
    )
    .await
    .expect("stops after the shutdown")
    .expect("run succeeds");
    assert!(outcome.total_requests > 0);
    assert_eq!(outcome.requests_cancelled, 0);
    assert_eq!(outcome.total_requests, target.total());
}

/// A stand-in for the load-test API that records what it receives. The first stats post gets
/// a 503 with `Retry-After: 0`, to exercise the retry.
#[derive(Clone, Default)]
struct FakeApi {
    registers: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
    stats: Arc<Mutex<Vec<(String, HeaderMap, Value)>>>,
    commits: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
    stats_calls: Arc<AtomicU64>,
    reject_register: bool,
}

const EVENT_TOKEN: &str = "event-token-123";

async fn fake_register(
    State(api): State<FakeApi>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if api.reject_register {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            [("content-type", "application/problem+json")],
            Json(
                json!({"type": "about:blank", "title": "Unprocessable Entity", "status": 422,
                        "detail": "must be at least 1", "field": "measurement.fields.clients"}),
            ),
        )
            .into_response();
    }
    api.registers.lock().expect("lock").push((headers, body));
    let uuid = Uuid::new_v4();
    (
        StatusCode::CREATED,
        Json(json!({"uuid": uuid, "token": EVENT_TOKEN,
                    "statsUrl": format!("/apiv0.1/events/{uuid}/stats"),
                    "commitUrl": "/apiv0.1/events/commit"})),
    )
        .into_response()
}

async fn fake_stats(
    State(api): State<FakeApi>,
    Path(uuid): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if api.stats_calls.fetch_add(1, Ordering::SeqCst) == 0 {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "0")],
            "busy",
        )
            .into_response();
    }
    api.stats.lock().expect("lock").push((uuid, headers, body));
    StatusCode::ACCEPTED.into_response()
}

async fn fake_commit(
    State(api): State<FakeApi>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    api.commits.lock().expect("lock").push((headers, body));
    StatusCode::ACCEPTED.into_response()
}

async fn start_api(api: FakeApi) -> String {
    let router = Router::new()
        .route("/apiv0.1/events/register", post(fake_register))
        .route("/apiv0.1/events/:uuid/stats", post(fake_stats))
        .route("/apiv0.1/events/commit", post(fake_commit))
        .with_state(api);
    format!("http://{}", serve(router).await)
}

fn bearer(h: &HeaderMap) -> &str {
    h.get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registers_publishes_and_commits_through_the_api() {
    let (target, host) = start_target().await;
    let api = FakeApi::default();
    let consumer = start_api(api.clone()).await;
    let outcome = run(
        args(&[
            "--host",
            &host,
            "-u",
            "3",
            "-r",
            "30",
            "-t",
            "1600ms",
            "--consumer-host",
            &consumer,
            "--api-key",
            "key-1",
            "--node-id",
            "node-a",
            "--run-key",
            "nightly",
            "--expected-nodes",
            "2",
            "--stats-interval",
            "250ms",
            "-q",
        ]),
        CancellationToken::new(),
    )
    .await
    .expect("run succeeds");
    let uuid = outcome.uuid.expect("registered");

    let registers = api.registers.lock().expect("lock").clone();
    assert_eq!(registers.len(), 1);
    let (headers, body) = &registers[0];
    assert_eq!(bearer(headers), "Bearer key-1");
    assert_eq!(body["tool"], "loadgen");
    assert_eq!(body["nodeId"], "node-a");
    assert_eq!(body["runKey"], "nightly");
    assert_eq!(body["expectedNodes"], 2);
    assert_eq!(body["measurement"]["fields"]["clients"], 3);
    assert_eq!(body["measurement"]["fields"]["hatchRate"], 30.0);
    assert_eq!(body["measurement"]["fields"]["requests"], 0);
    assert_eq!(body["measurement"]["tags"]["targetHost"], host.as_str());
    assert_eq!(body["measurement"]["tags"]["mode"], "single");
    assert!(body["host"].as_str().is_some_and(|h| !h.is_empty()));
    let started = body["startedAt"].as_str().expect("startedAt");
    assert!(
        chrono::DateTime::parse_from_rfc3339(started).is_ok(),
        "{started}"
    );

    let stats = api.stats.lock().expect("lock").clone();
    assert!(
        stats.len() >= 2,
        "stats were published ({} accepted)",
        stats.len()
    );
    let mut last_seq = 0;
    let mut last_requests = 0;
    for (path_uuid, headers, body) in &stats {
        assert_eq!(path_uuid, &uuid.to_string());
        assert_eq!(bearer(headers), format!("Bearer {EVENT_TOKEN}"));
        let msg: StatsRequest = serde_json::from_value(body.clone()).expect("stats message shape");
        assert_eq!(msg.node_id.as_deref(), Some("node-a"));
        let seq = msg.seq.expect("seq");
        assert!(seq > last_seq, "seq increases");
        assert!(msg.total.num_requests >= last_requests, "cumulative");
        assert_eq!(msg.total.name, "Aggregated");
        assert_eq!(msg.total.method, "");
        last_seq = seq;
        last_requests = msg.total.num_requests;
    }
    // The first publish (seq 1) was answered 503 and retried with the same seq.
    assert_eq!(
        serde_json::from_value::<StatsRequest>(stats[0].2.clone())
            .expect("msg")
            .seq,
        Some(1)
    );

    let commits = api.commits.lock().expect("lock").clone();
    assert_eq!(commits.len(), 1);
    let (headers, body) = &commits[0];
    assert_eq!(bearer(headers), format!("Bearer {EVENT_TOKEN}"));
    assert_eq!(body["uuid"], uuid.to_string());
    assert_eq!(body["nodeId"], "node-a");
    assert!(body["seq"].as_u64().expect("seq") > last_seq);
    assert_eq!(body["measurement"]["tags"]["hostname"], host.as_str());
    assert_eq!(body["measurement"]["tags"]["mode"], "single");
    assert!(body["errors"].is_array());
    assert!(body["host"].as_str().is_some_and(|h| !h.is_empty()));
    let entries: Vec<protocol::StatsEntry> =
        serde_json::from_value(body["measurement"]["fields"]["requestStats"].clone())
            .expect("requestStats are StatsEntries");
    let committed: u64 = entries.iter().map(|e| e.num_requests).sum();
    assert_eq!(committed, outcome.total_requests);
    assert_eq!(committed, target.total());
}

#[tokio::test]
async fn a_rejected_register_is_a_clear_error_and_sends_no_load() {
    let (target, host) = start_target().await;
    let api = FakeApi {
        reject_register: true,
        ..FakeApi::default()
    };
    let consumer = start_api(api).await;
    let err = run(
        args(&[
            "--host",
            &host,
            "-n",
            "10",
            "--consumer-host",
            &consumer,
            "-q",
        ]),
        CancellationToken::new(),
    )
    .await
    .expect_err("register fails");
    let text = format!("{err:#}");
    assert!(text.contains("422"), "{text}");
    assert!(text.contains("must be at least 1"), "{text}");
    assert!(text.contains("measurement.fields.clients"), "{text}");
    assert_eq!(target.total(), 0);
}

#[tokio::test]
async fn an_unavailable_api_is_retried_then_reported() {
    let router = Router::new().route(
        "/apiv0.1/events/commit",
        post(|| async {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [("retry-after", "1")],
                "down",
            )
        }),
    );
    let api = format!("http://{}", serve(router).await);
    let client = ApiClient::new(api.parse().expect("url"))
        .expect("client")
        .with_retry_budget(Duration::from_millis(1_500));
    let body: CommitRequest = serde_json::from_value(json!({
        "startedAt": "2026-11-29T08:00:00Z", "uuid": Uuid::new_v4(), "host": "h", "nodeId": "n",
        "seq": 1, "userCount": 1, "errors": [],
        "measurement": {"fields": {"requestStats": []}, "tags": {"hostname": "x", "mode": "single"}}
    }))
    .expect("commit body");
    let started = std::time::Instant::now();
    let err = client.commit("t", &body).await.expect_err("gives up");
    assert!(
        matches!(err, ApiError::Unavailable { attempts: 2, .. }),
        "{err}"
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(err.to_string().contains("503"), "{err}");

    // Nothing listening at all: connection errors are retried, then reported.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let client = ApiClient::new(format!("http://{addr}").parse().expect("url"))
        .expect("client")
        .with_retry_budget(Duration::from_millis(800));
    let err = client.commit("t", &body).await.expect_err("gives up");
    assert!(matches!(err, ApiError::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("connection error"), "{err}");
}

fn temp_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("loadgen-test-{}-{name}", Uuid::new_v4()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standalone_writes_events_snapshots_and_summaries() {
    let (target, host) = start_target().await;
    let output = temp_file("standalone.lp");
    let outcome = run(
        args(&[
            "--host",
            &host,
            "-u",
            "3",
            "-r",
            "30",
            "-t",
            "2500ms",
            "--path",
            "/x",
            "--path",
            "/fail",
            "--standalone",
            "--snapshot-interval",
            "1s",
            "--output",
            output.to_str().expect("utf-8 path"),
            "-q",
        ]),
        CancellationToken::new(),
    )
    .await
    .expect("run succeeds");
    assert!(outcome.uuid.is_some());
    assert_eq!(outcome.output.as_deref(), Some(output.as_path()));
    assert_eq!(outcome.total_requests, target.total());
    let text = std::fs::read_to_string(&output).expect("output written");
    let _ = std::fs::remove_file(&output);
    let event_id = outcome.uuid.expect("uuid").to_string();
    let count = |m: &str| text.lines().filter(|l| l.starts_with(m)).count();
    assert!(
        count("loadtest_event,") >= 2,
        "registered and committed:\n{text}"
    );
    assert!(
        count("loadtest_snapshot,") >= 2,
        "snapshots while running:\n{text}"
    );
    assert!(count("loadtest_request,") >= 2, "{text}");
    assert!(
        count("loadtest_summary,") >= 3,
        "per endpoint and Aggregated:\n{text}"
    );
    assert!(count("loadtest_error,") >= 1, "{text}");
    assert!(text.lines().all(|l| l.contains(&event_id)), "{text}");
    assert!(text.contains("status=\"committed\""), "{text}");
    let aggregated = text
        .lines()
        .find(|l| l.starts_with("loadtest_summary,") && l.contains("name=Aggregated"))
        .expect("aggregated summary");
    assert!(
        aggregated.contains(&format!(" requests={}i", outcome.total_requests))
            || aggregated.contains(&format!(",requests={}i", outcome.total_requests)),
        "{aggregated}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn demo_runs_by_itself() {
    let output = temp_file("demo.lp");
    let outcome = run(
        args(&[
            "demo",
            "-t",
            "2s",
            "--snapshot-interval",
            "1s",
            "--output",
            output.to_str().expect("utf-8 path"),
        ]),
        CancellationToken::new(),
    )
    .await
    .expect("demo succeeds");
    let text = std::fs::read_to_string(&output).expect("output written");
    let _ = std::fs::remove_file(&output);
    assert!(outcome.total_requests > 0);
    assert_eq!(
        outcome.stats.entries.len(),
        4,
        "all four demo endpoints were hit"
    );
    assert!(text.contains("loadtest_summary,"), "{text}");
}

#[test]
fn missing_or_bad_arguments_are_explained() {
    for (argv, expected) in [
        (vec!["loadgen", "-u", "3"], "--host"),
        (vec!["loadgen", "--host", "nope"], "invalid URL"),
        (
            vec!["loadgen", "--host", "http://h", "-t", "3 weeks"],
            "invalid duration",
        ),
        (vec!["loadgen", "--host", "http://h", "-u", "0"], "0"),
        (
            vec!["loadgen", "--host", "http://h", "--path", "x"],
            "must start with '/'",
        ),
    ] {
        let err = Args::try_parse_from_iter(argv.clone()).expect_err("rejected");
        assert!(err.to_string().contains(expected), "{argv:?}: {err}");
    }
}

/// `--threshold`: verdicts are in the outcome, printed, and sent with the commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thresholds_are_checked_and_committed() {
    let (_target, host) = start_target().await;
    let api = FakeApi::default();
    let consumer = start_api(api.clone()).await;
    let outcome = run(
        args(&[
            "--host",
            &host,
            "-u",
            "2",
            "-r",
            "100",
            "-n",
            "40",
            "--path",
            "/",
            "--path",
            "/fail",
            "--consumer-host",
            &consumer,
            "--threshold",
            "p95<10s",
            "--threshold",
            "fail_ratio<0.01",
            "-q",
        ]),
        CancellationToken::new(),
    )
    .await
    .expect("run succeeds");
    assert_eq!(outcome.thresholds.len(), 2);
    assert!(outcome.thresholds[0].passed);
    assert!(!outcome.thresholds[1].passed);
    assert_eq!(outcome.thresholds[1].actual, Some(0.5));
    assert!(outcome.thresholds_failed());
    let commits = api.commits.lock().expect("lock").clone();
    let body = &commits[0].1;
    assert_eq!(body["thresholds"][0]["threshold"], "p95<10s");
    assert_eq!(body["thresholds"][0]["passed"], true);
    assert_eq!(body["thresholds"][1]["metric"], "fail_ratio");
    assert_eq!(body["thresholds"][1]["passed"], false);
    assert_eq!(body["thresholds"][1]["actual"], 0.5);
}

/// `--standalone --threshold`: the verdicts reach the final record as `loadtest_threshold`
/// points, as with the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standalone_writes_threshold_points() {
    let (_target, host) = start_target().await;
    let output = temp_file("standalone-thresholds.lp");
    let outcome = run(
        args(&[
            "--host",
            &host,
            "-u",
            "2",
            "-r",
            "100",
            "-n",
            "40",
            "--path",
            "/",
            "--path",
            "/fail",
            "--standalone",
            "--output",
            output.to_str().expect("utf-8 path"),
            "--threshold",
            "p95<10s",
            "--threshold",
            "fail_ratio<0.01",
            "-q",
        ]),
        CancellationToken::new(),
    )
    .await
    .expect("run succeeds");
    assert!(outcome.thresholds_failed());
    let text = std::fs::read_to_string(&output).expect("output written");
    let _ = std::fs::remove_file(&output);
    let event_id = outcome.uuid.expect("uuid").to_string();
    let thresholds: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("loadtest_threshold,"))
        .collect();
    assert_eq!(thresholds.len(), 2, "one point per verdict:\n{text}");
    let find = |expr: &str| {
        thresholds
            .iter()
            .find(|l| l.contains(&format!(",threshold={expr} ")))
            .unwrap_or_else(|| panic!("a point for {expr}:\n{text}"))
    };
    let held = find("p95<10s");
    assert!(held.contains(&format!("event_id={event_id},")), "{held}");
    assert!(
        held.contains(" passed=1i,verdict=\"pass\",actual="),
        "{held}"
    );
    assert!(held.contains(",limit=10000 "), "{held}");
    let failed = find("fail_ratio<0.01");
    assert!(
        failed.contains(" passed=0i,verdict=\"fail\",actual=0.5,limit=0.01 "),
        "{failed}"
    );
}

/// `--scenario`: weights split `-n` exactly, methods, headers and bodies are sent, and an
/// unexpected status is a failure named after the expectation.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scenario_file_drives_the_requests() {
    /// (method, path, x-team header, body) of each request.
    type Request = (String, String, String, String);
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<Request>>>);
    async fn handler(
        State(seen): State<Seen>,
        method: axum::http::Method,
        uri: axum::http::Uri,
        headers: HeaderMap,
        body: String,
    ) -> &'static str {
        let team = headers
            .get("x-team")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        seen.0
            .lock()
            .expect("lock")
            .push((method.to_string(), uri.path().to_string(), team, body));
        "ok"
    }
    let seen = Seen::default();
    let addr = serve(Router::new().fallback(handler).with_state(seen.clone())).await;
    let file = temp_file("scenario.toml");
    std::fs::write(
        &file,
        r#"
think_time = "1ms"
[headers]
X-Team = "perf"

[[request]]
path = "/a"
weight = 3

[[request]]
name = "create"
method = "POST"
path = "/items"
body = '{"name": "apple"}'
expect_status = 201
"#,
    )
    .expect("write scenario");
    let outcome = run(
        args(&[
            "--host",
            &format!("http://{addr}"),
            "-u",
            "3",
            "-r",
            "100",
            "-n",
            "40",
            "--scenario",
            &file.display().to_string(),
            "-q",
        ]),
        CancellationToken::new(),
    )
    .await
    .expect("run succeeds");
    let seen = seen.0.lock().expect("lock").clone();
    assert_eq!(seen.len(), 40);
    let posts: Vec<_> = seen.iter().filter(|s| s.0 == "POST").collect();
    assert_eq!(posts.len(), 10);
    assert!(posts
        .iter()
        .all(|s| s.1 == "/items" && s.3 == r#"{"name": "apple"}"#));
    assert!(seen.iter().all(|s| s.2 == "perf"), "common header sent");
    let by_name: HashMap<(&str, &str), (u64, u64)> = outcome
        .stats
        .entries
        .iter()
        .map(|e| {
            (
                (e.method.as_str(), e.name.as_str()),
                (e.num_requests, e.num_failures),
            )
        })
        .collect();
    assert_eq!(by_name[&("GET", "/a")], (30, 0));
    assert_eq!(by_name[&("POST", "create")], (10, 10));
    assert_eq!(outcome.stats.errors[0].error, "HTTP 200 (expected 201)");

    // A bad file: the error names the file, line, column and field; no load is sent.
    std::fs::write(&file, "[[request]]\npath = \"/a\"\nweight = -2\n").expect("write");
    let err = run(
        args(&[
            "--host",
            &format!("http://{addr}"),
            "--scenario",
            &file.display().to_string(),
        ]),
        CancellationToken::new(),
    )
    .await
    .expect_err("bad scenario");
    let text = format!("{err:#}");
    assert!(
        text.contains("scenario.toml:3:10: request[1].weight: -2 is out of range"),
        "{text}"
    );
}

/// A target whose every answer takes 50 ms.
async fn slow_target() -> String {
    let router = Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        "slow"
    });
    format!("http://{}", serve(router).await)
}

/// `--arrival-rate`: requests start on schedule whatever the responses do, and the time a
/// request waited for a free connection counts in its response time (coordinated omission
/// corrected), which the closed model cannot see.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_open_model_keeps_the_schedule_and_corrects_coordinated_omission() {
    let host = slow_target().await;
    // 60 requests due over 0.3 s, but 2 connections serve only 40/s.
    let open = run(
        args(&[
            "--host",
            &host,
            "-u",
            "2",
            "--arrival-rate",
            "200/s",
            "-n",
            "60",
            "-q",
        ]),
        CancellationToken::new(),
    )
    .await
    .expect("open run");
    assert_eq!(open.total_requests, 60);
    assert!(
        open.summary
            .starts_with("Load model: open (arrival rate 200/s"),
        "{}",
        open.summary
    );
    let p99_open = open.stats.total.percentile(0.99);
    assert!(p99_open >= 500.0, "queueing counted: p99 {p99_open} ms");

    let closed = run(
        args(&["--host", &host, "-u", "2", "-r", "100", "-n", "60", "-q"]),
        CancellationToken::new(),
    )
    .await
    .expect("closed run");
    assert!(
        closed.summary.starts_with("Load model: closed (2 users"),
        "{}",
        closed.summary
    );
    let p99_closed = closed.stats.total.percentile(0.99);
    assert!(
        p99_closed < 200.0,
        "closed model sees only service time: {p99_closed} ms"
    );

    // With enough connections the rate is kept: 100 requests at 200/s take about 0.5 s.
    let (_t, fast) = start_target().await;
    let paced = run(
        args(&[
            "--host",
            &fast,
            "-u",
            "10",
            "--arrival-rate",
            "200",
            "-n",
            "100",
            "-q",
        ]),
        CancellationToken::new(),
    )
    .await
    .expect("paced run");
    assert_eq!(paced.total_requests, 100);
    let secs = paced.elapsed.as_secs_f64();
    assert!((0.45..2.0).contains(&secs), "took {secs} s");
}
