//! `--standalone`: the results pipeline in-process.
//!
//! The run's messages (registered, cumulative stats at every wall-clock multiple of the
//! snapshot interval, committed with the threshold verdicts) go straight into the run-lifecycle
//! state machine the writer runs too ([`lifecycle::Embedded`]), which writes line protocol to a
//! file; no RabbitMQ, InfluxDB or API is involved. The event token is computed with a fixed
//! secret and is not verified by the embedded pipeline.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use futures::future::BoxFuture;
use lifecycle::{Embedded, FileSink, LifecycleSettings};
use protocol::{Body, CommitPayload, Envelope, RunInfo, StatsPayload, ThresholdVerdict};
use uuid::Uuid;

use super::publishing::{Receipt, Sink};

/// The secret of standalone event tokens (the embedded pipeline does not verify them).
const STANDALONE_SECRET: &[u8] = b"standalone";

/// An in-process pipeline for one run.
pub(crate) struct Standalone {
    embedded: Embedded<FileSink>,
    event_id: Uuid,
    node_id: String,
    token: String,
    host: String,
    seq: u64,
    interval: Duration,
    output: PathBuf,
}

impl std::fmt::Debug for Standalone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Standalone")
            .field("event_id", &self.event_id)
            .field("node_id", &self.node_id)
            .field("seq", &self.seq)
            .field("interval", &self.interval)
            .field("output", &self.output)
            .finish_non_exhaustive()
    }
}

impl Standalone {
    /// Opens (appends to) `output`, creates the lifecycle with `interval` between snapshots and
    /// registers the run described by `info` under a new random event id.
    pub(crate) async fn start(
        info: RunInfo,
        node_id: &str,
        output: &Path,
        interval: Duration,
    ) -> anyhow::Result<Self> {
        let sink = FileSink::open(output)
            .with_context(|| format!("cannot open output file {}", output.display()))?;
        let settings = LifecycleSettings {
            snapshot_interval: interval,
            ..LifecycleSettings::default()
        };
        let event_id = Uuid::new_v4();
        let token = protocol::event_token(STANDALONE_SECRET, &event_id);
        let host = info.host.clone();
        let mut embedded = Embedded::new(settings, sink);
        embedded
            .handle(Envelope::new(
                event_id,
                node_id,
                0,
                token.clone(),
                Body::Registered(info),
            ))
            .await
            .context("writing the run's registration")?;
        Ok(Self {
            embedded,
            event_id,
            node_id: node_id.to_string(),
            token,
            host,
            seq: 0,
            interval,
            output: output.to_path_buf(),
        })
    }

    /// The run's event id.
    pub(crate) fn event_id(&self) -> Uuid {
        self.event_id
    }

    /// The line-protocol file.
    pub(crate) fn output(&self) -> &Path {
        &self.output
    }

    /// Time from now until the next wall-clock multiple of the snapshot interval (since the
    /// Unix epoch); always more than zero.
    pub(crate) fn until_next_snapshot(&self) -> Duration {
        until_next_multiple(Utc::now(), self.interval)
    }

    /// Feeds the cumulative `payload` as the next stats message, then ticks the lifecycle,
    /// which writes the snapshot.
    pub(crate) async fn snapshot(&mut self, payload: StatsPayload) -> anyhow::Result<()> {
        self.seq += 1;
        let env = Envelope::new(
            self.event_id,
            self.node_id.as_str(),
            self.seq,
            self.token.clone(),
            Body::Stats(payload),
        );
        self.embedded
            .handle(env)
            .await
            .context("writing a stats message")?;
        self.embedded
            .tick(Utc::now())
            .await
            .context("writing a snapshot")?;
        Ok(())
    }

    /// Commits the run with its final stats and the `--threshold` verdicts; the lifecycle writes
    /// the final record (with a `loadtest_threshold` point per verdict).
    pub(crate) async fn commit(
        mut self,
        payload: StatsPayload,
        thresholds: Vec<ThresholdVerdict>,
    ) -> anyhow::Result<()> {
        self.seq += 1;
        let env = Envelope::new(
            self.event_id,
            self.node_id.as_str(),
            self.seq,
            self.token.clone(),
            Body::Committed(CommitPayload {
                host: self.host.clone(),
                stats: payload,
                thresholds,
            }),
        );
        self.embedded
            .handle(env)
            .await
            .context("writing the run's final record")?;
        Ok(())
    }
}

/// Time from `now` until the next multiple of `interval` since the Unix epoch (strictly after
/// `now`).
pub(crate) fn until_next_multiple(now: chrono::DateTime<Utc>, interval: Duration) -> Duration {
    let now_ns = protocol::time::unix_nanos(now);
    let next = protocol::time::align_down(now, interval).saturating_add(
        i64::try_from(interval.as_nanos())
            .unwrap_or(i64::MAX)
            .max(1),
    );
    Duration::from_nanos(
        u64::try_from(next.saturating_sub(now_ns))
            .unwrap_or(1)
            .max(1),
    )
}

impl Sink for Standalone {
    fn run_id(&self) -> Uuid {
        self.event_id
    }

    fn tick(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(tokio::time::sleep(self.until_next_snapshot()))
    }

    fn publish(&mut self, stats: StatsPayload) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Err(e) = self.snapshot(stats).await {
                tracing::error!(error = format!("{e:#}"), "standalone snapshot failed");
            }
        })
    }

    /// A snapshot cut off half-way could leave the output file half-written.
    fn publish_is_cancel_safe(&self) -> bool {
        false
    }

    fn commit<'a>(
        self: Box<Self>,
        stats: &'a StatsPayload,
        verdicts: &'a [ThresholdVerdict],
    ) -> BoxFuture<'a, anyhow::Result<Receipt>> {
        Box::pin(async move {
            let output = self.output().to_path_buf();
            Standalone::commit(*self, stats.clone(), verdicts.to_vec())
                .await
                .with_context(|| {
                    format!("cannot write the final record to {}", output.display())
                })?;
            Ok(Receipt {
                message: format!(
                    "Results written to {out} (line protocol; import into InfluxDB 2 with \
                     `influx write -b BUCKET -f {out}`, into InfluxDB 1.x with \
                     `curl -XPOST 'http://127.0.0.1:8086/write?db=DATABASE' --data-binary @{out}`)",
                    out = output.display(),
                ),
                output: Some(output),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_multiple_is_aligned_and_in_the_future() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-29T08:00:07.5Z")
            .expect("ts")
            .with_timezone(&Utc);
        assert_eq!(
            until_next_multiple(t, Duration::from_secs(15)),
            Duration::from_millis(7_500)
        );
        let exact = chrono::DateTime::parse_from_rfc3339("2026-11-29T08:00:15Z")
            .expect("ts")
            .with_timezone(&Utc);
        assert_eq!(
            until_next_multiple(exact, Duration::from_secs(15)),
            Duration::from_secs(15)
        );
    }
}
