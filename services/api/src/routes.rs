//! HTTP handlers. Each one authenticates from the headers, checks its rate, reads the body
//! within the limits ([`crate::body`]), parses (DTO → domain), publishes with confirms and only
//! then answers; a publish failure is a 503 with `Retry-After` and nothing half-done.
//!
//! Commit carries its run's uuid in the body, so its event token can only be verified once the
//! body is read: before reading, commit requires a well-formed token header (64 hex digits);
//! after parsing, it verifies the token against the uuid.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body as RequestBody;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::api::{
    Accepted, CommitRequest, Health, Problem, RegisterRequest, RegisterResponse, StatsRequest,
};
use protocol::{event_token, run_id_for_key, verify_event_token, Body, CommitPayload, Envelope};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::broker::PublishError;
use crate::dto::{self, Registration};
use crate::error::ApiError;
use crate::limits::Admission;
use crate::AppState;

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|v| v.trim().to_string())
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
}

/// Checks the API key; returns its id (a hash prefix, never the key) for run-key derivation.
fn authorise_key(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let given = header(headers, "x-api-key").or_else(|| bearer(headers));
    if !state.auth_enabled {
        return Ok(given
            .map(|k| key_id(&k))
            .unwrap_or_else(|| "anonymous".into()));
    }
    let Some(given) = given else {
        return Err(ApiError::Unauthorized(
            "an API key is required: send Authorization: Bearer <api key> or X-API-Key".into(),
        ));
    };
    let ok = state
        .secrets
        .api_keys
        .iter()
        .any(|k| constant_time_eq(k.expose_secret().as_bytes(), given.as_bytes()));
    if ok {
        Ok(key_id(&given))
    } else {
        Err(ApiError::Unauthorized("the API key is not valid".into()))
    }
}

fn key_id(key: &str) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let (ha, hb) = (Sha256::digest(a), Sha256::digest(b));
    ha.iter()
        .zip(hb.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Checks the event token for `event_id`; returns the token to put in the envelope.
fn authorise_event(
    state: &AppState,
    headers: &HeaderMap,
    event_id: &Uuid,
) -> Result<String, ApiError> {
    let secret = state.secrets.token_secret.expose_secret().as_bytes();
    let given = header(headers, "x-event-token").or_else(|| bearer(headers));
    match given {
        Some(t) if verify_event_token(secret, event_id, &t) => Ok(t),
        Some(_) => Err(ApiError::Unauthorized(format!(
            "the event token is not valid for run {event_id}"
        ))),
        None if !state.auth_enabled => Ok(event_token(secret, event_id)),
        None => Err(ApiError::Unauthorized(
            "the event token from register is required: send Authorization: Bearer <token>".into(),
        )),
    }
}

/// The event token header of a commit, checked for form only (64 hex digits) before the body
/// is read; the body names the run it must be verified against. Returns the client the body
/// bytes are counted for.
fn commit_client(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    match header(headers, "x-event-token").or_else(|| bearer(headers)) {
        Some(t) if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(format!("the run of token {}…", &t[..8]))
        }
        Some(_) => Err(ApiError::Unauthorized(
            "the event token is not valid: expected the 64 hexadecimal digits register returned"
                .into(),
        )),
        None if !state.auth_enabled => Ok("commits without a token".into()),
        None => Err(ApiError::Unauthorized(
            "the event token from register is required: send Authorization: Bearer <token>".into(),
        )),
    }
}

async fn publish(state: &AppState, env: &Envelope) -> Result<(), ApiError> {
    let started = std::time::Instant::now();
    let result = state
        .publisher
        .publish(env.body.routing_key(), &env.to_json())
        .await;
    let failure = result.as_ref().err().map(|e| match e {
        PublishError::Nacked => "nacked",
        PublishError::Unroutable(_) => "unroutable",
        PublishError::Timeout => "timeout",
        PublishError::Unavailable(_) => "unavailable",
    });
    crate::metrics::publish_observed(env.body.kind(), started, failure);
    tracing::debug!(event_id = %env.event_id, kind = env.body.kind(), elapsed_ms = started.elapsed().as_millis() as u64, ok = result.is_ok(), "published");
    result.map_err(|e| {
        tracing::warn!(event_id = %env.event_id, error = %e, "publish failed; answering 503");
        let retry_after_s = match e {
            PublishError::Unroutable(_) => 5,
            _ => 2,
        };
        ApiError::Unavailable {
            detail: format!("{e}; nothing was recorded, retry"),
            retry_after_s,
        }
    })
}

/// `POST /apiv0.1/events/register` → 201 `{uuid, token, statsUrl, commitUrl}`.
#[utoipa::path(
    post,
    path = "/apiv0.1/events/register",
    tag = "events",
    request_body(content = RegisterRequest, content_type = "application/json"),
    security(("apiKey" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 400, description = "Invalid body; `field` names the offending JSON path", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong credentials", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive within `http.body_read_timeout_ms`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body (or its `Content-Length`) larger than the limit (1 MiB by default); answered before anything else", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "A limit of this API key or run (`type` names it: rate-limit, running-runs-limit, buffered-bytes-limit); nothing was recorded; retry after `Retry-After` seconds", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 503, description = "RabbitMQ unavailable or nacked (writer's queue full), or this API replica busy; nothing was recorded; retry after `Retry-After` seconds", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 201, description = "Registered", body = RegisterResponse),
    )
)]
pub async fn register(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: RequestBody,
) -> Result<Response, ApiError> {
    let key = authorise_key(&state, &headers)?;
    // With auth off there are no keys to share between: the per-key limits are off too.
    let per_key = state.auth_enabled;
    if per_key {
        state.limits.check_register(&key)?;
    }
    let (bytes, _held) = state.bodies.read(body, &format!("API key {key}")).await?;
    let request: RegisterRequest = dto::parse(&bytes)?;
    let reg = Registration::try_from(request)?;
    let secret = state.secrets.token_secret.expose_secret().as_bytes();
    let event_id = match &reg.run_key {
        Some(k) => run_id_for_key(secret, &key, k),
        None => Uuid::new_v4(),
    };
    let admission = if per_key {
        let status = state
            .status
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state
            .limits
            .admit(&key, event_id, &status, Instant::now())?
    } else {
        Admission::Joined
    };
    let token = event_token(secret, &event_id);
    let mut env = Envelope::new(
        event_id,
        reg.node_id.clone(),
        0,
        token.clone(),
        Body::Registered(reg.info),
    );
    if per_key {
        env = env.with_key_id(key.clone());
    }
    if let Err(e) = publish(&state, &env).await {
        if admission == Admission::New {
            state.limits.release(&key, event_id);
        }
        return Err(e);
    }
    tracing::info!(event_id = %event_id, node_id = %reg.node_id, "run registered");
    let response = RegisterResponse {
        uuid: event_id,
        token,
        stats_url: format!("/apiv0.1/events/{event_id}/stats"),
        commit_url: "/apiv0.1/events/commit".to_string(),
    };
    Ok((StatusCode::CREATED, Json(response)).into_response())
}

/// `POST /apiv0.1/events/{uuid}/stats` → 202.
#[utoipa::path(
    post,
    path = "/apiv0.1/events/{uuid}/stats",
    tag = "events",
    params(("uuid" = uuid::Uuid, Path, description = "The run's uuid from register")),
    request_body(content = StatsRequest, content_type = "application/json"),
    security(("eventToken" = [])),
    responses(
        (status = 400, description = "Invalid body; `field` names the offending JSON path", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong credentials", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive within `http.body_read_timeout_ms`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body (or its `Content-Length`) larger than the limit (1 MiB by default); answered before anything else", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "A limit of this API key or run (`type` names it: rate-limit, running-runs-limit, buffered-bytes-limit); nothing was recorded; retry after `Retry-After` seconds", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 503, description = "RabbitMQ unavailable or nacked (writer's queue full), or this API replica busy; nothing was recorded; retry after `Retry-After` seconds", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 404, description = "Not a run id", body = Problem, content_type = "application/problem+json"),
        (status = 202, description = "Accepted (published, confirmed)", body = Accepted),
    )
)]
pub async fn stats(
    State(state): State<Arc<AppState>>,
    Path(uuid): Path<String>,
    headers: HeaderMap,
    body: RequestBody,
) -> Result<Response, ApiError> {
    let event_id = Uuid::parse_str(&uuid)
        .map_err(|_| ApiError::NotFound(format!("no run {uuid:?}: not a uuid")))?;
    let token = authorise_event(&state, &headers, &event_id)?;
    state.limits.check_event(event_id)?;
    let (bytes, _held) = state.bodies.read(body, &format!("run {event_id}")).await?;
    let post = dto::parse_stats(&bytes)?;
    let env = Envelope::new(
        event_id,
        post.node_id,
        post.seq,
        token,
        Body::Stats(post.payload),
    );
    publish(&state, &env).await?;
    Ok(accepted(event_id))
}

/// `POST /apiv0.1/events/commit` → 202.
#[utoipa::path(
    post,
    path = "/apiv0.1/events/commit",
    tag = "events",
    request_body(content = CommitRequest, content_type = "application/json"),
    security(("eventToken" = [])),
    responses(
        (status = 400, description = "Invalid body; `field` names the offending JSON path", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong credentials", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive within `http.body_read_timeout_ms`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body (or its `Content-Length`) larger than the limit (1 MiB by default); answered before anything else", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "A limit of this API key or run (`type` names it: rate-limit, running-runs-limit, buffered-bytes-limit); nothing was recorded; retry after `Retry-After` seconds", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 503, description = "RabbitMQ unavailable or nacked (writer's queue full), or this API replica busy; nothing was recorded; retry after `Retry-After` seconds", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 202, description = "Accepted (published, confirmed)", body = Accepted),
    )
)]
pub async fn commit(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: RequestBody,
) -> Result<Response, ApiError> {
    let client = commit_client(&state, &headers)?;
    let (bytes, _held) = state.bodies.read(body, &client).await?;
    let c = dto::parse_commit(&bytes)?;
    let token = authorise_event(&state, &headers, &c.event_id)?;
    state.limits.check_event(c.event_id)?;
    let env = Envelope::new(
        c.event_id,
        c.node_id.clone(),
        c.seq,
        token,
        Body::Committed(CommitPayload {
            host: c.host,
            stats: c.stats,
            thresholds: c.thresholds,
        }),
    );
    publish(&state, &env).await?;
    tracing::info!(event_id = %c.event_id, node_id = %c.node_id, "run committed");
    Ok(accepted(c.event_id))
}

fn accepted(event_id: Uuid) -> Response {
    (StatusCode::ACCEPTED, Json(Accepted::new(event_id))).into_response()
}

fn health(status: &str) -> Response {
    Json(Health {
        status: status.to_string(),
    })
    .into_response()
}

/// `GET /events/isrunning`: the runs the writer holds.
#[utoipa::path(get, path = "/events/isrunning", tag = "events",
    responses((status = 200, description = "Running runs", body = protocol::RunningSet)))]
pub async fn is_running(State(state): State<Arc<AppState>>) -> Response {
    let mut set = state.status.read().map(|s| s.clone()).unwrap_or_default();
    // Which runs share an API key is the writer's and the limits' business, not the public's.
    for e in &mut set.events {
        e.key_id = None;
    }
    Json(set).into_response()
}

/// `GET /apiv0.1/events/isrunning`: the same as `/events/isrunning`.
#[utoipa::path(get, path = "/apiv0.1/events/isrunning", tag = "events",
    responses((status = 200, description = "Running runs", body = protocol::RunningSet)))]
pub async fn is_running_v01(state: State<Arc<AppState>>) -> Response {
    is_running(state).await
}

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain")))]
pub async fn metrics() -> Response {
    let text = crate::metrics::handle()
        .map(|h| h.render())
        .unwrap_or_default();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
        .into_response()
}

/// `GET /healthz`: the process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Up", body = Health)))]
pub async fn healthz() -> Response {
    health("ok")
}

/// `GET /readyz`: the broker is reachable.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "RabbitMQ unreachable", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ))]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    if state.publisher.ready().await {
        Ok(health("ready"))
    } else {
        Err(ApiError::Unavailable {
            detail: "RabbitMQ is not reachable".into(),
            retry_after_s: 2,
        })
    }
}

/// A known route with another method: 405 problem+json (axum adds the `Allow` header).
pub async fn method_not_allowed() -> Response {
    let problem = Problem {
        kind: "https://loadtest.dev/problems/method-not-allowed".into(),
        title: "Method not allowed".into(),
        status: 405,
        detail: "this route does not take that method; see /openapi.json".into(),
        field: None,
    };
    let mut resp = (StatusCode::METHOD_NOT_ALLOWED, Json(problem)).into_response();
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/problem+json"),
    );
    resp
}

/// Any other route.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}
