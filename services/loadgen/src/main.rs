//! `loadgen` binary: parses arguments, initialises tracing, wires ctrl-c / SIGTERM to a
//! cancellation token and calls [`loadgen::run`].

use std::process::ExitCode;

use clap::Parser as _;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let args = loadgen::Args::parse();
    // Text on stderr, `warn` by default (`RUST_LOG` overrides), so the report on stdout stays
    // clean; colours only on a terminal.
    kit::telemetry::init(Some("text"), "warn");
    let shutdown = CancellationToken::new();
    // `loadgen target` serves until stopped; it has no run to commit.
    let stopping = if matches!(args.command, Some(loadgen::Command::Target(_))) {
        "Stopping the target."
    } else {
        "Stopping; press ctrl-c again to exit without committing."
    };
    tokio::spawn(forward_signals(shutdown.clone(), stopping));
    match loadgen::run(args, shutdown).await {
        Ok(outcome) if outcome.thresholds_failed() => ExitCode::from(1),
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The first ctrl-c or SIGTERM cancels `shutdown` (users stop, the run is committed) and prints
/// `stopping`; a second one exits at once.
async fn forward_signals(shutdown: CancellationToken, stopping: &'static str) {
    kit::telemetry::signal().await;
    shutdown.cancel();
    eprintln!("{stopping}");
    kit::telemetry::signal().await;
    eprintln!("Interrupted again, exiting.");
    std::process::exit(130);
}
