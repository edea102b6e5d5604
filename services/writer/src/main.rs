//! `loadtest-writer`: see the library docs. This file only parses settings, initialises tracing
//! and calls `run`.

use std::path::PathBuf;

use clap::Parser;

/// Consumes load-test messages from RabbitMQ (queue `<exchange>.writer`) and writes a snapshot
/// of every running run each snapshot interval, and the final record on commit, to InfluxDB.
///
/// Settings: defaults < `--config FILE` (TOML, see writer.example.toml) < environment variables
/// `LOADTEST__SECTION__KEY`, e.g. LOADTEST__SINK__KIND=v1, LOADTEST__SINK__DATABASE=loadtest,
/// LOADTEST__AUTH__TOKEN_SECRET=..., LOADTEST__LIFECYCLE__SNAPSHOT_INTERVAL_S=15.
#[derive(Debug, Parser)]
#[command(name = "loadtest-writer", version)]
struct Cli {
    /// TOML settings file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let settings = match loadtest_writer::settings::Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("loadtest-writer: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    telemetry::init(settings.log.format.as_deref(), "info,lapin=error");
    let shutdown = telemetry::shutdown_on_signals();
    match loadtest_writer::run(settings, shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "writer stopped");
            std::process::ExitCode::FAILURE
        }
    }
}
