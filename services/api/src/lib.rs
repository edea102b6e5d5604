//! `loadtest-api`: the thin REST API in front of RabbitMQ.
//!
//! Layout:
//! - [`routes`]: the handlers (register, stats, commit, isrunning, healthz, readyz, metrics,
//!   openapi.json).
//! - [`openapi`]: the OpenAPI 3.1 document (it imports the handlers, never the other way).
//! - [`metrics`]: Prometheus metrics.
//! - [`dto`]: request bodies ([`protocol::api`], the original Consumer's byte for byte) → domain
//!   types.
//! - [`broker`]: publisher with confirms; subscription to the writer's running set.
//! - [`error`]: `ApiError` → `application/problem+json`.
//! - [`settings`]: configuration (defaults, TOML file, environment).
//!
//! Stateless: run ids for `runKey` and event tokens are HMACs, so any replica answers any call.

pub mod broker;
pub mod dto;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod settings;

use std::sync::{Arc, RwLock};

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::broker::{Publisher, SharedStatus};
use crate::settings::{Secrets, Settings};

/// Shared state of the handlers.
pub struct AppState {
    /// Publisher with confirms.
    pub publisher: Arc<Publisher>,
    /// Whether API keys and event tokens are required.
    pub auth_enabled: bool,
    /// API keys and token secret.
    pub secrets: Secrets,
    /// The writer's latest running set.
    pub status: SharedStatus,
}

/// The router, for tests (`Router::oneshot`) and [`run`].
pub fn router(state: Arc<AppState>, body_limit: usize) -> Router {
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
        .layer(DefaultBodyLimit::max(body_limit))
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
    let publisher = Arc::new(Publisher::new(&settings.amqp, "loadtest-api").declaring_exchange());
    let status: SharedStatus = Arc::new(RwLock::new(Default::default()));
    let follower = tokio::spawn(broker::follow_status(
        settings.amqp.clone(),
        status.clone(),
        shutdown.clone(),
    ));
    let state_publisher = publisher.clone();
    let state = Arc::new(AppState {
        publisher,
        auth_enabled: settings.auth.enabled,
        secrets,
        status,
    });
    let app = router(state, settings.http.body_limit);
    tracing::info!(listen = %listener.local_addr()?, "loadtest-api listening");
    let s = shutdown.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { s.cancelled().await })
        .await?;
    shutdown.cancel();
    let _ = follower.await;
    state_publisher.close().await;
    Ok(())
}
