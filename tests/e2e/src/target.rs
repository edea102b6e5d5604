//! Counting HTTP targets for the load generators (axum on 127.0.0.1:0, in the test process).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// An HTTP target on 127.0.0.1:0 that counts the requests it answers.
#[derive(Debug)]
pub struct Target {
    /// Base URL.
    pub url: String,
    /// Requests answered.
    pub count: Arc<AtomicU64>,
}

/// Starts a counting target on the current tokio runtime.
pub async fn start_target() -> anyhow::Result<Target> {
    start_slow_target(Duration::ZERO).await
}

/// Like [`start_target`], but every answer takes `delay`, so each load-generator user sends at
/// most one request per `delay` (keeps CPU low when many generators run).
pub async fn start_slow_target(delay: Duration) -> anyhow::Result<Target> {
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let c = c.clone();
        async move {
            tokio::time::sleep(delay).await;
            c.fetch_add(1, Ordering::SeqCst);
            if uri.path() == "/fail" {
                (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom")
            } else {
                (axum::http::StatusCode::OK, "hello")
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Target { url, count })
}
