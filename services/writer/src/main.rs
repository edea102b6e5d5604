//! `loadtest-writer`: see the library docs. This file only parses settings, initialises tracing
//! and calls `run`.

use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser};

/// jemalloc rather than glibc's allocator: the writer frees on one thread what lapin's I/O
/// thread allocated (every delivery), and glibc's per-thread arenas kept that memory: resident
/// memory per running run was about twice what jemalloc keeps (`bench/pipeline.sh`).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Consumes load-test messages from RabbitMQ (queue `<exchange>.writer`) and writes a snapshot
/// of every running run each snapshot interval, and the final record on commit, to InfluxDB.
///
/// Settings: defaults < `--config FILE` (TOML, see config/writer.example.toml) < environment variables
/// `LOADTEST__SECTION__KEY`, e.g. LOADTEST__SINK__KIND=v1, LOADTEST__SINK__DATABASE=loadtest,
/// LOADTEST__AUTH__TOKEN_SECRET=..., LOADTEST__LIFECYCLE__SNAPSHOT_INTERVAL_S=15.
#[derive(Debug, Parser)]
#[command(name = "loadtest-writer", version)]
struct Cli {
    /// TOML settings file.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Move dead-lettered messages (queue `<exchange>.dead`) back to the pipeline once their
    /// cause is fixed, then exit. Prints how many were moved.
    Redrive {
        /// Move at most this many messages.
        #[arg(long, default_value_t = u64::MAX, hide_default_value = true)]
        limit: u64,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // `--help` ends with every setting, its environment variable and its default, generated
    // from the settings type.
    let matches = Cli::command()
        .after_help(loadtest_writer::settings::Settings::help())
        .get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let settings = match loadtest_writer::settings::Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("loadtest-writer: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    // lapin logs every channel the broker closes at error level; a standing-by writer's refused
    // lock attempts close one a second. The writer reports the channel errors that matter itself.
    kit::telemetry::init(
        settings.log.format.as_deref(),
        "info,lapin=error,lapin::channel=off",
    );
    if let Some(Command::Redrive { limit }) = cli.command {
        return match loadtest_writer::redrive::redrive(&settings.amqp, limit).await {
            Ok(r) => {
                println!(
                    "moved {} message(s) from {} back to {}; {} without a routing key kept",
                    r.moved,
                    settings.amqp.dead_queue(),
                    settings.amqp.exchange,
                    r.kept
                );
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("loadtest-writer redrive: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let shutdown = kit::telemetry::shutdown_on_signals();
    match loadtest_writer::run(settings, shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "writer stopped");
            std::process::ExitCode::FAILURE
        }
    }
}
