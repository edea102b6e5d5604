//! `loadgen` binary: parses arguments, initialises tracing, wires ctrl-c / SIGTERM to a
//! cancellation token and calls [`loadgen::run`].

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser as _;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let args = loadgen::Args::parse();
    init_tracing();
    let shutdown = CancellationToken::new();
    tokio::spawn(forward_signals(shutdown.clone()));
    match loadgen::run(args, shutdown).await {
        Ok(outcome) if outcome.thresholds_failed() => ExitCode::from(1),
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, `warn` by default (`RUST_LOG` overrides), so the report on stdout stays clean;
/// colours only on a terminal.
fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// The first ctrl-c or SIGTERM cancels `shutdown` (users stop, the run is committed); a second
/// one exits at once.
async fn forward_signals(shutdown: CancellationToken) {
    signal().await;
    shutdown.cancel();
    eprintln!("Stopping; press ctrl-c again to exit without committing.");
    signal().await;
    eprintln!("Interrupted again, exiting.");
    std::process::exit(130);
}

async fn signal() {
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
