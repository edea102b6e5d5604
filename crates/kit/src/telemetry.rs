//! Tracing set-up and shutdown signals: `EnvFilter` (`RUST_LOG`, else the service's default
//! filter), JSON on stderr when stderr is not a terminal (or `format = "json"`), human-readable
//! text otherwise; SIGTERM and ctrl-c fan out through a `CancellationToken`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Initialises the global subscriber, writing to stderr. `format`: `auto` (or `None`: JSON
/// unless stderr is a terminal), `json` or `text`; anything else means `auto`.
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
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// A token cancelled on SIGTERM or ctrl-c (ctrl-c only where SIGTERM cannot be watched).
/// Spawns the watching task, so it must be called inside a Tokio runtime.
pub fn shutdown_on_signals() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        t.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown signal received");
        t.cancel();
    });
    token
}
