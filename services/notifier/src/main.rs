//! `loadtest-notifier`: see the library docs. This file only parses settings, initialises
//! tracing and calls `run`.

use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser};

/// Posts a Slack message for every finished load-test run.
///
/// Consumes its own RabbitMQ queue `<exchange>.notify.slack`, bound to the `event.completed`
/// messages the writer publishes after a run's final record (committed or expired), and posts
/// each to a Slack incoming webhook: Block Kit blocks with the run id, target, tool, duration,
/// users, requests, failure %, requests/s, p50/p95/p99 and threshold verdicts, a link to the
/// run's Grafana dashboard, and a plain-text fallback. 429 and 5xx answers are retried,
/// honouring Retry-After; other 4xx answers, and messages still failing at the delivery limit,
/// go to the dead-letter queue `<exchange>.dead` with the reason. Without a webhook it logs
/// that notifications are off and exits 0.
///
/// Settings: defaults < `--config FILE` (TOML, see config/notifier.example.toml) < environment
/// variables `LOADTEST__SECTION__KEY`:
///
///   LOADTEST__SLACK__WEBHOOK_URL (a secret; or LOADTEST__SLACK__WEBHOOK_URL_FILE=/run/secrets/…)
///   LOADTEST__DASHBOARD__GRAFANA_URL=https://grafana.example.com (the messages' link)
///   LOADTEST__AMQP__URL, LOADTEST__AMQP__EXCHANGE (default loadtest), LOADTEST__AMQP__DELIVERY_LIMIT (20)
///   LOADTEST__METRICS__LISTEN (default 127.0.0.1:9465; Prometheus text at /metrics)
#[derive(Debug, Parser)]
#[command(name = "loadtest-notifier", version, verbatim_doc_comment)]
struct Cli {
    /// TOML settings file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // `--help` ends with every setting, its environment variable and its default, generated
    // from the settings type.
    let matches = Cli::command()
        .after_help(loadtest_notifier::settings::Settings::help())
        .get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let settings = match loadtest_notifier::settings::Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("loadtest-notifier: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    kit::telemetry::init(settings.log.format.as_deref(), "info,lapin=error");
    let shutdown = kit::telemetry::shutdown_on_signals();
    match loadtest_notifier::run(settings, shutdown).await {
        Ok(_) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "notifier stopped");
            std::process::ExitCode::FAILURE
        }
    }
}
