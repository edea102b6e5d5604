//! `loadtest-api`: see the library docs. This file only parses settings, initialises tracing,
//! binds the listener and calls `run`.

use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser};

/// The load-test results REST API: registers runs, takes stats and commits from load generators,
/// authorises and validates them, and publishes them to RabbitMQ with publisher confirms.
///
/// Settings: defaults < `--config FILE` (TOML, see config/api.example.toml) < environment variables
/// `LOADTEST__SECTION__KEY`, e.g. LOADTEST__HTTP__LISTEN=0.0.0.0:8080,
/// LOADTEST__AUTH__API_KEYS=key1,key2, LOADTEST__AUTH__TOKEN_SECRET=..., LOADTEST__AUTH__ENABLED=false.
#[derive(Debug, Parser)]
#[command(name = "loadtest-api", version)]
struct Cli {
    /// TOML settings file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen address; overrides http.listen (port 0 picks a free port, printed on start).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // `--help` ends with every setting, its environment variable and its default, generated
    // from the settings type.
    let matches = Cli::command()
        .after_help(loadtest_api::settings::Settings::help())
        .get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let mut settings = match loadtest_api::settings::Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("loadtest-api: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    if let Some(l) = cli.listen {
        settings.http.listen = l;
    }
    // Check the secrets before announcing anything: a missing one is a start-up error.
    if let Err(e) = loadtest_api::settings::Secrets::resolve(&settings.auth) {
        eprintln!("loadtest-api: {e:#}");
        return std::process::ExitCode::from(2);
    }
    kit::telemetry::init(None, "info,lapin=error");
    let listener = match tokio::net::TcpListener::bind(&settings.http.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "loadtest-api: cannot listen on {}: {e}",
                settings.http.listen
            );
            return std::process::ExitCode::from(2);
        }
    };
    if let Ok(addr) = listener.local_addr() {
        // Machine-readable line for scripts and tests that start us on port 0.
        println!("listening on http://{addr}");
    }
    let shutdown = kit::telemetry::shutdown_on_signals();
    match loadtest_api::run(settings, listener, shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "api stopped");
            eprintln!("loadtest-api: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
