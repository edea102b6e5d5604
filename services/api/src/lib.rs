//! `loadtest-api`: the thin REST API in front of RabbitMQ.
//!
//! Layout:
//! - [`routes`]: the handlers (register, stats, commit, isrunning, healthz, readyz, metrics,
//!   openapi.json). Each authenticates from the headers before it reads a body.
//! - [`body`]: reading bodies within the size, time and memory limits.
//! - [`limits`]: fair sharing: rates per API key and per run, running runs per API key.
//! - [`server`]: the HTTP/1.1 listener: header-read timeout, connection cap, graceful drain.
//! - [`openapi`]: the OpenAPI 3.1 document (it imports the handlers, never the other way).
//! - [`metrics`]: Prometheus metrics.
//! - [`dto`]: request bodies ([`protocol::api`], the original Consumer's byte for byte) → domain
//!   types.
//! - [`broker`]: publisher with confirms; subscription to the writer's running set.
//! - [`error`]: `ApiError` → `application/problem+json`.
//! - [`settings`]: configuration (defaults, TOML file, environment).
//!
//! Stateless: run ids for `runKey` and event tokens are HMACs, so any replica answers any call.
//! The running runs of an API key are counted from the writer's running set (see [`limits`]).

pub mod body;
pub mod broker;
pub mod dto;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod server;
pub mod settings;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::body::Bodies;
use crate::broker::{Publisher, SharedStatus};
use crate::limits::Limits;
use crate::settings::{Secrets, Settings};

/// How often idle rate-limit state and expired pending runs are dropped.
const FORGET_IDLE_EVERY: Duration = Duration::from_secs(30);

/// Shared state of the handlers.
#[derive(Debug)]
pub struct AppState {
    /// Publisher with confirms.
    pub publisher: Arc<Publisher>,
    /// Whether API keys and event tokens are required.
    pub auth_enabled: bool,
    /// API keys and token secret.
    pub secrets: Secrets,
    /// The writer's latest running set.
    pub status: SharedStatus,
    /// Rates and running runs per API key and per run.
    pub limits: Limits,
    /// Body reading within size, time and memory limits.
    pub bodies: Bodies,
}

impl AppState {
    /// The state for `settings`, publishing with `publisher` and following `status`.
    pub fn new(
        settings: &Settings,
        publisher: Arc<Publisher>,
        secrets: Secrets,
        status: SharedStatus,
    ) -> Self {
        Self {
            publisher,
            auth_enabled: settings.auth.enabled,
            secrets,
            status,
            limits: Limits::new(&settings.auth),
            bodies: Bodies::new(&settings.http),
        }
    }
}

/// The router, for tests (`Router::oneshot`) and [`run`].
pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.bodies.limit();
    Router::new()
        .route("/apiv0.1/events/register", post(routes::register))
        .route("/apiv0.1/events/commit", post(routes::commit))
        .route("/apiv0.1/events/:uuid/stats", post(routes::stats))
        .route("/events/isrunning", get(routes::is_running))
        .route("/apiv0.1/events/isrunning", get(routes::is_running_v01))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            body_limit,
            body::content_length_guard,
        ))
        .layer(axum::middleware::from_fn(metrics::track))
        .with_state(state)
}

/// Serves on `listener` until `shutdown`, then drains in-flight requests.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let secrets = Secrets::resolve(&settings.auth)?;
    kit::metrics::handle();
    if !settings.auth.enabled {
        tracing::warn!("auth is disabled: anyone who reaches this API can register runs");
    }
    let amqp = broker::with_frame_max(&settings.amqp);
    let publisher = Arc::new(Publisher::new(&amqp, "loadtest-api").declaring_exchange());
    let status: SharedStatus = Arc::new(RwLock::new(Default::default()));
    let follower = tokio::spawn(broker::follow_status(
        amqp.clone(),
        status.clone(),
        shutdown.clone(),
    ));
    let state_publisher = publisher.clone();
    let state = Arc::new(AppState::new(&settings, publisher, secrets, status));
    let forgetting = tokio::spawn(forget_idle(state.clone(), shutdown.clone()));
    let open_files = server::raise_open_files_limit();
    let limits = server::ServeLimits {
        header_read_timeout: settings.http.header_read_timeout(),
        max_connections: server::connection_cap(settings.http.max_connections, open_files),
    };
    tracing::info!(
        listen = %listener.local_addr()?,
        max_connections = limits.max_connections,
        open_files_limit = open_files,
        "loadtest-api listening"
    );
    let served = server::serve(listener, router(state), limits, shutdown.clone()).await;
    shutdown.cancel();
    let _ = follower.await;
    let _ = forgetting.await;
    state_publisher.close().await;
    served
}

/// Drops idle rate-limit state and expired pending runs every [`FORGET_IDLE_EVERY`] until
/// `shutdown`.
async fn forget_idle(state: Arc<AppState>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(FORGET_IDLE_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => state.limits.forget_idle(std::time::Instant::now()),
        }
    }
}
