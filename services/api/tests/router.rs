//! The handlers that need no broker, driven through `Router::oneshot` (no listener, no
//! RabbitMQ). The publisher points at a port nothing listens on and is never connected until a
//! handler publishes (publishing is lazy), so a request that gets as far as publishing is a 503
//! with `Retry-After`.

use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use kit::amqp::{AmqpSettings, Publisher};
use loadtest_api::settings::Secrets;
use loadtest_api::AppState;
use secrecy::SecretString;
use serde_json::Value;
use tower::ServiceExt;

const KEY: &str = "test-key";
const SECRET: &str = "test-secret";
const BODY_LIMIT: usize = 4096;

fn app() -> Router {
    // Nothing listens on port 1: a publish fails at once with "unavailable".
    let amqp = AmqpSettings::new("amqp://guest:guest@127.0.0.1:1/%2f", "router-test");
    let state = Arc::new(AppState {
        publisher: Arc::new(Publisher::new(&amqp, "loadtest-api-test")),
        auth_enabled: true,
        secrets: Secrets {
            api_keys: vec![SecretString::from(KEY.to_string())],
            token_secret: SecretString::from(SECRET.to_string()),
        },
        status: Arc::new(RwLock::new(Default::default())),
    });
    loadtest_api::router(state, BODY_LIMIT)
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
    let response = app().oneshot(request).await.expect("infallible");
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
