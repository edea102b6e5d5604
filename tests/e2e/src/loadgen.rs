//! `loadgen` runs through the API, and what its output says (summary rows, the run's uuid).

use std::time::Duration;

use anyhow::{bail, Context};

use crate::process::Proc;
use crate::stack::Stack;

/// The `# reqs` of the `Aggregated` row of loadgen's summary table.
pub fn summary_requests(output: &str) -> Option<u64> {
    output
        .lines()
        .find(|l| l.contains("Aggregated"))
        .and_then(|l| {
            l.split_whitespace()
                .skip_while(|w| *w != "Aggregated")
                .nth(1)
        })
        .and_then(|w| w.parse().ok())
}

/// The `# reqs` of endpoint `name` in loadgen's summary table.
pub fn summary_row_requests(output: &str, name: &str) -> Option<u64> {
    output
        .lines()
        .find(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() > 2 && w[1] == name
        })
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|w| w.parse().ok())
}

/// The first uuid in `text`.
pub fn first_uuid(text: &str) -> Option<String> {
    text.split(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
        .find(|w| w.len() == 36 && uuid::Uuid::parse_str(w).is_ok())
        .map(str::to_string)
}

/// The run id in loadgen's `Registered run <uuid> with <api>` line of `output`.
pub fn registered_run(output: &str) -> Option<String> {
    output
        .lines()
        .find(|l| l.contains("Registered run"))
        .and_then(first_uuid)
}

/// A load generator run through the API: the process, and its uuid once registered.
#[derive(Debug)]
pub struct LoadgenRun {
    /// The `loadgen` process.
    pub proc: Proc,
    /// The run's uuid (after [`LoadgenRun::registered`]).
    pub uuid: String,
}

impl LoadgenRun {
    /// Starts `loadgen` against `target` through the API at `api` with `paths`, `run_time` and
    /// one user; stats every `stats_interval`.
    pub fn start(
        name: &str,
        stack: &Stack,
        api: &str,
        target: &str,
        run_time: &str,
        stats_interval: &str,
    ) -> anyhow::Result<Self> {
        let proc = Proc::start(
            name,
            "loadgen",
            &[
                "--host",
                target,
                "-u",
                "1",
                "-r",
                "1",
                "-t",
                run_time,
                "--path",
                "/",
                "--path",
                "/items",
                "--consumer-host",
                api,
                "--api-key",
                &stack.api_key,
                "--stats-interval",
                stats_interval,
                "-q",
            ],
            &[],
        )?;
        Ok(Self {
            proc,
            uuid: String::new(),
        })
    }

    /// Waits for the `Registered run` line and records the uuid.
    pub fn registered(&mut self) -> anyhow::Result<&str> {
        let line = self
            .proc
            .wait_for_line("Registered run", Duration::from_secs(60))?;
        self.uuid = first_uuid(&line).with_context(|| format!("no uuid in {line:?}"))?;
        Ok(&self.uuid)
    }

    /// Waits for a successful exit; returns the summary counts (`/`, `/items`, `Aggregated`).
    pub fn finish(&mut self, timeout: Duration) -> anyhow::Result<Vec<(&'static str, u64)>> {
        let status = self.proc.wait(timeout)?;
        let out = self.proc.output();
        if !status.success() {
            bail!("loadgen failed ({status}):\n{out}");
        }
        let mut counts = Vec::new();
        for name in ["/", "/items"] {
            counts.push((
                name,
                summary_row_requests(&out, name)
                    .with_context(|| format!("no {name} row:\n{out}"))?,
            ));
        }
        counts.push((
            "Aggregated",
            summary_requests(&out).with_context(|| format!("no Aggregated row:\n{out}"))?,
        ));
        Ok(counts)
    }
}
