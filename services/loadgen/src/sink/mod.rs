//! Where a run's results go, behind one [`Sink`] trait: the load-test API ([`api`], stats and
//! commit over HTTP through [`client`], or over AMQP through [`amqp`]) or the in-process
//! pipeline ([`standalone`]). [`start`] picks the sink the arguments ask for and registers the
//! run; [`Publishing`] publishes snapshots to it off the users' path.

pub(crate) mod amqp;
pub(crate) mod api;
pub mod client;
pub(crate) mod publishing;
pub(crate) mod standalone;

use protocol::RunInfo;
use tokio_util::sync::CancellationToken;

use crate::cli::{fmt_duration, RunArgs, TOOL};
use api::ApiSink;
pub(crate) use publishing::{Publishing, Receipt, RunContext, Sink};
use standalone::Standalone;

/// Starts the sink `opts` asks for, registering the run: the API's (`--consumer-host`), the
/// in-process pipeline (`--standalone`), or none (the summary is printed only).
pub(crate) async fn start(
    opts: &RunArgs,
    run: &RunContext,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Box<dyn Sink>>> {
    if let Some(consumer) = &opts.consumer_host {
        let sink = ApiSink::start(consumer, opts, run, shutdown).await?;
        return Ok(Some(Box::new(sink)));
    }
    if opts.standalone {
        let s = Standalone::start(
            run_info(opts, run),
            &run.node_id,
            &opts.output,
            opts.snapshot_interval,
        )
        .await?;
        eprintln!(
            "Standalone run {}: snapshots every {} into {}",
            s.event_id(),
            fmt_duration(opts.snapshot_interval),
            opts.output.display()
        );
        return Ok(Some(Box::new(s)));
    }
    Ok(None)
}

/// The run's metadata for the in-process pipeline's `registered` message.
fn run_info(opts: &RunArgs, run: &RunContext) -> RunInfo {
    RunInfo {
        started_at: run.started_at,
        host: run.hostname.clone(),
        clients: opts.users,
        hatch_rate: opts.spawn_rate,
        requests: opts.iterations.unwrap_or(0),
        target_host: run.target_host.clone(),
        mode: "single".to_string(),
        tool: TOOL.to_string(),
        expected_nodes: opts.expected_nodes,
    }
}
