//! Assertions on a whole run as a user would check it in InfluxDB, and the reliability table.

use std::time::Duration;

use anyhow::bail;

use crate::influx::influx_rows_at;

/// What [`check_run`] counted for one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunFigures {
    /// Points expected: the event point, one summary per endpoint and `Aggregated`, and one
    /// snapshot per interval from the first snapshot to the final one.
    pub expected: u64,
    /// Points found for the same measurements.
    pub found: u64,
    /// Snapshot slots missing inside a fault window (allowed: a failover may miss one).
    pub missing_at_faults: u64,
}

impl std::ops::AddAssign for RunFigures {
    fn add_assign(&mut self, o: Self) {
        self.expected += o.expected;
        self.found += o.found;
        self.missing_at_faults += o.missing_at_faults;
    }
}

/// Checks one run in InfluxDB at `base`/`db` as a user would, failing on any point missing,
/// doubled or wrong:
/// - exactly one `loadtest_event` point, with `status`;
/// - exactly one `loadtest_summary` point per name in `counts` (endpoints and `Aggregated`),
///   with those request counts, and no other name;
/// - snapshots in one series, at distinct timestamps aligned to `interval`, cumulative requests
///   never decreasing and ending at the `Aggregated` count, and one every interval: a longer gap
///   only where it overlaps one of `fault_windows` (Unix ns ranges).
pub async fn check_run(
    base: &str,
    db: &str,
    uuid: &str,
    status: &str,
    interval: Duration,
    counts: &[(&str, u64)],
    fault_windows: &[(i64, i64)],
) -> anyhow::Result<RunFigures> {
    let mut fig = RunFigures::default();
    let events = influx_rows_at(
        base,
        db,
        &format!("SELECT status FROM loadtest_event WHERE event_id = '{uuid}' GROUP BY *"),
    )
    .await?;
    fig.expected += 1;
    fig.found += events.len() as u64;
    if events.len() != 1 || events[0]["status"] != status {
        bail!("run {uuid}: expected one event point with status {status}, found {events:?}");
    }
    let summary = influx_rows_at(
        base,
        db,
        &format!("SELECT requests FROM loadtest_summary WHERE event_id = '{uuid}' GROUP BY *"),
    )
    .await?;
    fig.expected += counts.len() as u64;
    fig.found += summary.len() as u64;
    for (name, count) in counts {
        let rows: Vec<_> = summary.iter().filter(|r| r["name"] == *name).collect();
        if rows.len() != 1 || rows[0]["requests"].as_u64() != Some(*count) {
            bail!(
                "run {uuid}: expected one summary for {name} with {count} requests, found {rows:?}"
            );
        }
    }
    if summary.len() != counts.len() {
        bail!("run {uuid}: expected summaries for {counts:?}, found {summary:?}");
    }
    let snaps = influx_rows_at(
        base,
        db,
        &format!(
            "SELECT requests FROM loadtest_snapshot WHERE event_id = '{uuid}' GROUP BY * ORDER BY time"
        ),
    )
    .await?;
    if snaps.is_empty() {
        bail!("run {uuid}: no snapshot");
    }
    let tag_sets: std::collections::BTreeSet<String> = snaps
        .iter()
        .map(|r| format!("{:?}/{:?}", r.get("target_host"), r.get("mode")))
        .collect();
    if tag_sets.len() != 1 {
        bail!(
            "run {uuid}: snapshots in {} series (duplicates under other tags): {snaps:?}",
            tag_sets.len()
        );
    }
    let iv = interval.as_nanos() as i64;
    let times: Vec<i64> = snaps.iter().filter_map(|r| r["time"].as_i64()).collect();
    let reqs: Vec<u64> = snaps
        .iter()
        .filter_map(|r| r["requests"].as_u64())
        .collect();
    let (first, last) = (times[0], times[times.len() - 1]);
    let slots = ((last - first) / iv + 1) as u64;
    fig.expected += slots;
    fig.found += times.len() as u64;
    for w in times.windows(2) {
        if w[1] <= w[0] {
            bail!("run {uuid}: duplicate snapshot timestamp {}", w[1]);
        }
        let gap = w[1] - w[0];
        if gap > iv {
            let at_fault = fault_windows
                .iter()
                .any(|(s, e)| *s <= w[1] && *e >= w[0] - iv);
            if !at_fault {
                bail!(
                    "run {uuid}: snapshot gap of {} s between {} and {} outside any fault: {times:?}",
                    gap / 1_000_000_000,
                    w[0],
                    w[1]
                );
            }
            fig.missing_at_faults += (gap / iv - 1) as u64;
        }
    }
    if let Some(t) = times.iter().find(|t| *t % iv != 0) {
        bail!("run {uuid}: snapshot at {t} not aligned to {interval:?}");
    }
    if reqs.windows(2).any(|w| w[1] < w[0]) {
        bail!("run {uuid}: cumulative requests decreased: {reqs:?}");
    }
    let agg = counts
        .iter()
        .find(|(n, _)| *n == "Aggregated")
        .map(|(_, c)| *c);
    if agg.is_some() && reqs.last().copied() != agg {
        bail!("run {uuid}: last snapshot {reqs:?} != Aggregated {agg:?}");
    }
    Ok(fig)
}

/// Prints one row of the reliability table (`docs/reliability.md`) to stdout.
pub fn report_row(
    scenario: &str,
    runs: usize,
    faults: &str,
    fig: RunFigures,
    dead_expected: usize,
    dead_actual: usize,
) {
    println!(
        "RELIABILITY | {scenario} | {runs} | {faults} | {} | {} ({} snapshot slots missed at faults) | {dead_expected} | {dead_actual} |",
        fig.expected, fig.found, fig.missing_at_faults
    );
}
