//! Tracing set-up and shutdown signals: `EnvFilter` (`RUST_LOG`, else the service's default
//! filter), JSON on stderr when stderr is not a terminal (or `format = "json"`), human-readable
//! text otherwise; SIGTERM and ctrl-c fan out through a `CancellationToken`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Initialises the global subscriber, writing to stderr. `format`: `auto` (or `None`: JSON
/// unless stderr is a terminal), `json` or `text` (colours only on a terminal); anything else
/// means `auto`.
/// `default_filter` (an `EnvFilter` directive such as `info,lapin=error`) applies when
/// `RUST_LOG` is unset or invalid. A second call does nothing (the first subscriber stays).
pub fn init(format: Option<&str>, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = match format.unwrap_or("auto") {
        "json" => true,
        "text" => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// A token cancelled on the first SIGTERM or ctrl-c (see [`signal`]). Spawns the watching task,
/// so it must be called inside a Tokio runtime.
pub fn shutdown_on_signals() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        signal().await;
        tracing::info!("shutdown signal received");
        t.cancel();
    });
    token
}

/// Resolves at the next ctrl-c or SIGTERM. A signal that cannot be watched is logged once and
/// left out (if neither can, this never resolves).
pub async fn signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
