//! The handlers that need no broker, driven through `Router::oneshot` (no listener, no
//! RabbitMQ). The publisher points at a port nothing listens on and is never connected until a
//! handler publishes (publishing is lazy), so a request that gets as far as publishing is a 503
//! with `Retry-After`.

use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use kit::amqp::{AmqpSettings, Publisher};
use kit::settings::Env;
use loadtest_api::broker::SharedStatus;
use loadtest_api::settings::{Secrets, Settings};
use loadtest_api::AppState;
use secrecy::SecretString;
use serde_json::Value;
use tower::ServiceExt;

const KEY: &str = "test-key";
const SECRET: &str = "test-secret";
const BODY_LIMIT: usize = 4096;

fn app() -> Router {
    app_with(&[], Arc::new(RwLock::new(Default::default())))
}

/// The router with settings `env` (over a 4 KiB body limit) and the writer's status `status`.
fn app_with(env: &[(&str, &str)], status: SharedStatus) -> Router {
    let limit = BODY_LIMIT.to_string();
    let mut vars = vec![("LOADTEST__HTTP__BODY_LIMIT", limit.as_str())];
    vars.extend_from_slice(env);
    let settings = Settings::load_from(None, &Env::vars(vars)).expect("settings");
    // Nothing listens on port 1: a publish fails at once with "unavailable".
    let amqp = AmqpSettings::new("amqp://guest:guest@127.0.0.1:1/%2f", "router-test");
    let state = Arc::new(AppState::new(
        &settings,
        Arc::new(Publisher::new(&amqp, "loadtest-api-test")),
        Secrets {
            api_keys: vec![SecretString::from(KEY.to_string())],
            token_secret: SecretString::from(SECRET.to_string()),
        },
        status,
    ));
    loadtest_api::router(state)
}

fn register_body() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/original-register.json"
    );
    std::fs::read(path).expect("fixture")
}

/// Sends `request` through a fresh router; returns the status, the content type and the body
/// (JSON, or a JSON string for other bodies).
async fn send(request: Request<Body>) -> (StatusCode, String, Value, axum::http::HeaderMap) {
    send_to(&app(), request).await
}

/// Sends `request` through `app` (whose limits keep their state between requests).
async fn send_to(
    app: &Router,
    request: Request<Body>,
) -> (StatusCode, String, Value, axum::http::HeaderMap) {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, content_type, body, headers)
}

fn post(uri: &str, key: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut b = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(k) = key {
        b = b.header(header::AUTHORIZATION, format!("Bearer {k}"));
    }
    b.body(body.into()).expect("request")
}

fn get(uri: &str) -> Request<Body> {
    Request::builder()
        .uri(uri)
        .body(Body::empty())
        .expect("request")
}

fn assert_problem(status: StatusCode, content_type: &str, body: &Value, want: StatusCode) {
    assert_eq!(status, want, "{body}");
    assert_eq!(content_type, "application/problem+json", "{body}");
    assert_eq!(body["status"], want.as_u16(), "{body}");
    assert!(
        body["type"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert!(
        body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert!(
        body["detail"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn register_without_a_key_is_401() {
    let (status, ct, body, headers) =
        send(post("/apiv0.1/events/register", None, register_body())).await;
    assert_problem(status, &ct, &body, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
    let (status, ct, body, _) = send(post(
        "/apiv0.1/events/register",
        Some("wrong-key"),
        register_body(),
    ))
    .await;
    assert_problem(status, &ct, &body, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn register_with_an_invalid_body_is_400_naming_the_field() {
    let (status, ct, body, _) = send(post("/apiv0.1/events/register", Some(KEY), "not json")).await;
    assert_problem(status, &ct, &body, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "$", "{body}");

    let mut wrong: Value = serde_json::from_slice(&register_body()).expect("fixture is JSON");
    wrong["measurement"]["fields"]["clients"] = Value::String("five".into());
    let (status, ct, body, _) = send(post(
        "/apiv0.1/events/register",
        Some(KEY),
        wrong.to_string(),
    ))
    .await;
    assert_problem(status, &ct, &body, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "measurement.fields.clients", "{body}");
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(BODY_LIMIT * 2));
    let (status, ct, body, _) = send(post("/apiv0.1/events/register", Some(KEY), big)).await;
    assert_problem(status, &ct, &body, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_valid_register_without_a_broker_is_503_with_retry_after() {
    let (status, ct, body, headers) =
        send(post("/apiv0.1/events/register", Some(KEY), register_body())).await;
    assert_problem(status, &ct, &body, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[header::RETRY_AFTER], "2", "{body}");
}

#[tokio::test]
async fn stats_with_a_bad_token_is_401() {
    let uri = format!("/apiv0.1/events/{}/stats", uuid::Uuid::new_v4());
    let stats = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/stats-message.json"
    );
    let stats = std::fs::read(stats).expect("fixture");
    let (status, ct, body, _) = send(post(&uri, Some("not-the-token"), stats.clone())).await;
    assert_problem(status, &ct, &body, StatusCode::UNAUTHORIZED);
    let (status, ct, body, _) = send(post(&uri, None, stats)).await;
    assert_problem(status, &ct, &body, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn stats_for_a_non_uuid_is_404() {
    let (status, ct, body, _) =
        send(post("/apiv0.1/events/not-a-uuid/stats", Some("t"), "{}")).await;
    assert_problem(status, &ct, &body, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn commit_without_a_token_is_401() {
    let (status, ct, body, _) = send(post("/apiv0.1/events/commit", None, "{}")).await;
    assert_problem(status, &ct, &body, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_unknown_route_is_404_problem_json() {
    let (status, ct, body, _) = send(get("/nope")).await;
    assert_problem(status, &ct, &body, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_wrong_method_is_405_problem_json_with_allow() {
    let (status, ct, body, headers) = send(get("/apiv0.1/events/register")).await;
    assert_problem(status, &ct, &body, StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        headers
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("POST")),
        "{headers:?}"
    );
}

#[tokio::test]
async fn healthz_is_ok() {
    let (status, _, body, _) = send(get("/healthz")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, serde_json::json!({ "status": "ok" }));
}

#[tokio::test]
async fn readyz_without_a_broker_is_503() {
    let (status, ct, body, headers) = send(get("/readyz")).await;
    assert_problem(status, &ct, &body, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key(header::RETRY_AFTER));
}

#[tokio::test]
async fn openapi_json_lists_the_routes() {
    let (status, ct, body, _) = send(get("/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ct.starts_with("application/json"), "{ct}");
    assert!(
        body["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "{body}"
    );
    for path in [
        "/apiv0.1/events/register",
        "/apiv0.1/events/commit",
        "/apiv0.1/events/{uuid}/stats",
        "/healthz",
    ] {
        assert!(body["paths"].get(path).is_some(), "{path} missing");
    }
}

#[tokio::test]
async fn isrunning_answers_from_the_status_without_a_broker() {
    for uri in ["/events/isrunning", "/apiv0.1/events/isrunning"] {
        let (status, _, body, _) = send(get(uri)).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(body["running"], 0, "{uri}: {body}");
    }
}

/// A body that sends `first` and then never ends (a stalled client).
fn stalled_body(first: &'static [u8]) -> Body {
    let once = futures::stream::once(async move {
        Ok::<_, std::io::Error>(axum::body::Bytes::from_static(first))
    });
    Body::from_stream(once.chain(futures::stream::pending()))
}

use futures::StreamExt as _;

/// The id the API gives `KEY` (a hash prefix of the key).
fn key_id(key: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(key.as_bytes())[..8])
}

fn running_status(runs: &[(uuid::Uuid, String)]) -> SharedStatus {
    let events: Vec<protocol::RunningEvent> = runs
        .iter()
        .map(|(id, key)| protocol::RunningEvent {
            uuid: *id,
            started_at: chrono::Utc::now(),
            last_stats_at: None,
            nodes: 1,
            key_id: Some(key.clone()),
        })
        .collect();
    Arc::new(RwLock::new(protocol::RunningSet {
        running: events.len(),
        events,
    }))
}

#[tokio::test]
async fn an_announced_body_over_the_limit_is_413_before_the_key_is_checked() {
    let request = Request::builder()
        .method(Method::POST)
        .uri("/apiv0.1/events/register")
        .header(header::CONTENT_LENGTH, "200000000")
        .body(stalled_body(b"{"))
        .expect("request");
    let (status, ct, body, headers) = send(request).await;
    assert_problem(status, &ct, &body, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("http.body_limit")),
        "{body}"
    );
    assert_eq!(headers[header::CONNECTION], "close");
}

#[tokio::test]
async fn credentials_are_checked_before_the_body_is_read() {
    let timeout = std::time::Duration::from_secs(5);
    // Register without a key, stats with a wrong token, commit with a malformed or missing
    // token: each answered at once although the body never ends.
    let run = uuid::Uuid::new_v4();
    let cases = [
        ("/apiv0.1/events/register".to_string(), None),
        (format!("/apiv0.1/events/{run}/stats"), Some("0".repeat(64))),
        ("/apiv0.1/events/commit".to_string(), Some("not-hex".into())),
        ("/apiv0.1/events/commit".to_string(), None),
    ];
    for (uri, credential) in cases {
        let request = post(&uri, credential.as_deref(), stalled_body(b"{\"startedAt\""));
        let (status, ct, body, _) = tokio::time::timeout(timeout, send(request))
            .await
            .unwrap_or_else(|_| panic!("{uri}: the handler waited for the body"));
        assert_problem(status, &ct, &body, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn a_body_that_stalls_is_408() {
    let app = app_with(
        &[("LOADTEST__HTTP__BODY_READ_TIMEOUT_MS", "200")],
        Arc::new(RwLock::new(Default::default())),
    );
    let request = post(
        "/apiv0.1/events/register",
        Some(KEY),
        stalled_body(b"{\"startedAt\""),
    );
    let (status, ct, body, _) = send_to(&app, request).await;
    assert_problem(status, &ct, &body, StatusCode::REQUEST_TIMEOUT);
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("http.body_read_timeout_ms")),
        "{body}"
    );
}

#[tokio::test]
async fn a_key_over_its_register_rate_gets_429_with_retry_after() {
    let app = app_with(
        &[
            ("LOADTEST__AUTH__REGISTER_RATE_PER_KEY", "1"),
            ("LOADTEST__AUTH__REGISTER_BURST_PER_KEY", "2"),
        ],
        Arc::new(RwLock::new(Default::default())),
    );
    for _ in 0..2 {
        // Within the rate: as far as publishing (no broker here: 503).
        let (status, ..) = send_to(
            &app,
            post("/apiv0.1/events/register", Some(KEY), register_body()),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
    let (status, ct, body, headers) = send_to(
        &app,
        post("/apiv0.1/events/register", Some(KEY), register_body()),
    )
    .await;
    assert_problem(status, &ct, &body, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["type"], "https://loadtest.dev/problems/rate-limit");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("auth.register_rate_per_key")),
        "{body}"
    );
    assert_eq!(headers[header::RETRY_AFTER], "1");
}

#[tokio::test]
async fn a_run_over_its_stats_rate_gets_429() {
    let app = app_with(
        &[
            ("LOADTEST__AUTH__EVENT_RATE_PER_RUN", "1"),
            ("LOADTEST__AUTH__EVENT_BURST_PER_RUN", "1"),
        ],
        Arc::new(RwLock::new(Default::default())),
    );
    let run = uuid::Uuid::new_v4();
    let token = protocol::event_token(SECRET.as_bytes(), &run);
    let uri = format!("/apiv0.1/events/{run}/stats");
    let (status, ..) = send_to(&app, post(&uri, Some(&token), "{}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "within the rate: parsed");
    let (status, ct, body, headers) = send_to(&app, post(&uri, Some(&token), "{}")).await;
    assert_problem(status, &ct, &body, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("auth.event_rate_per_run")),
        "{body}"
    );
    assert!(headers.contains_key(header::RETRY_AFTER));
}

#[tokio::test]
async fn a_key_at_its_running_runs_cannot_start_another_but_may_join_one() {
    let mine = key_id(KEY);
    let runs: Vec<(uuid::Uuid, String)> = (0..3)
        .map(|_| (uuid::Uuid::new_v4(), mine.clone()))
        .chain(std::iter::once((
            uuid::Uuid::new_v4(),
            "0123456789abcdef".into(),
        )))
        .collect();
    // One of the key's running runs was registered with a run key.
    let joined = protocol::run_id_for_key(SECRET.as_bytes(), &mine, "nightly");
    let mut with_joined = runs.clone();
    with_joined[0].0 = joined;
    let app = app_with(
        &[("LOADTEST__AUTH__MAX_RUNNING_RUNS_PER_KEY", "3")],
        running_status(&with_joined),
    );
    let (status, ct, body, headers) = send_to(
        &app,
        post("/apiv0.1/events/register", Some(KEY), register_body()),
    )
    .await;
    assert_problem(status, &ct, &body, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        body["type"],
        "https://loadtest.dev/problems/running-runs-limit"
    );
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&format!("API key {mine} has 3 running runs"))
            && detail.contains("auth.max_running_runs_per_key"),
        "{detail}"
    );
    assert!(headers.contains_key(header::RETRY_AFTER));
    // Another node joining the running run (same runKey): not a new run, so as far as
    // publishing (no broker here: 503).
    let mut join: Value = serde_json::from_slice(&register_body()).expect("fixture");
    join["runKey"] = "nightly".into();
    let (status, ..) = send_to(
        &app,
        post("/apiv0.1/events/register", Some(KEY), join.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // isrunning does not tell which runs share a key.
    let (_, _, body, _) = send_to(&app, get("/events/isrunning")).await;
    assert_eq!(body["running"], 4);
    assert!(!body.to_string().contains("keyId"), "{body}");
}
