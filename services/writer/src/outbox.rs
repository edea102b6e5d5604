//! Writing the runs' outboxes: batches of the runs' points (a [`Batch`] each, up to [`MAX_BATCH_BYTES`], two at a time), retried with
//! the sink's backoff, while the consume loop goes on (the write runs beside it, in
//! the leader loop).
//!
//! A batch that InfluxDB rejects for good (400, 422, a single line too large) is written again
//! run by run, so only the runs whose own points are bad are rejected (and, when their final
//! record is among them, the deliveries they still hold are dead-lettered with the reason).

use std::time::Instant;

use lifecycle::{Batch, BatchPart, Sink};
use tokio_util::sync::CancellationToken;

use crate::sink::{write_with_retry, WriteFailure};

/// The most line protocol one write carries (bytes, about; at least one run's): more goes in the
/// next write, right after. 2 MiB is 5,000 to 6,000 lines, the batch size InfluxData recommends;
/// a loaded InfluxDB 1.x answered 8 MiB bodies with its write timeout (HTTP 500 after 10 s),
/// and a retried batch that never fits its timeout never progresses (`bench/pipeline.sh`).
pub const MAX_BATCH_BYTES: usize = 2 * 1024 * 1024;

/// What became of a batch.
#[derive(Debug, Default)]
pub struct WriteOutcome {
    /// Parts written.
    pub written: Vec<BatchPart>,
    /// Parts rejected for good, with the reason (for the dead-letter header).
    pub rejected: Vec<(BatchPart, String)>,
    /// Shutdown came first: these parts were not written (they stay in the outboxes).
    pub cancelled: bool,
}

impl WriteOutcome {
    /// The outcomes of batches written at the same time, as one (their parts in order).
    pub fn combine(outcomes: Vec<WriteOutcome>) -> WriteOutcome {
        let mut all = WriteOutcome::default();
        for o in outcomes {
            all.written.extend(o.written);
            all.rejected.extend(o.rejected);
            all.cancelled |= o.cancelled;
        }
        all
    }
}

/// Writes `batch` (one request; run by run after a permanent rejection of the whole), retrying
/// what is retryable until it succeeds or `cancel` fires.
pub async fn write_batch(
    sink: &impl Sink,
    batch: Batch,
    cancel: &CancellationToken,
) -> WriteOutcome {
    let mut out = WriteOutcome::default();
    let started = Instant::now();
    let body = batch.body();
    let result = write_with_retry(sink, &body, cancel).await;
    metrics::histogram!("loadtest_writer_write_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    tracing::debug!(
        runs = batch.parts.len(),
        points = batch.points(),
        bytes = body.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        ok = result.is_ok(),
        "batch written"
    );
    match result {
        Ok(()) => out.written = batch.parts,
        Err(WriteFailure::Cancelled) => out.cancelled = true,
        Err(WriteFailure::Permanent(reason)) if batch.parts.len() == 1 => {
            out.rejected = batch
                .parts
                .into_iter()
                .map(|p| (p, reason.clone()))
                .collect();
        }
        Err(WriteFailure::Permanent(reason)) => {
            tracing::warn!(error = %reason, runs = batch.parts.len(), "batch rejected; writing it run by run to find the bad points");
            for part in batch.parts {
                if out.cancelled {
                    break;
                }
                match write_with_retry(sink, &part.lines, cancel).await {
                    Ok(()) => out.written.push(part),
                    Err(WriteFailure::Permanent(r)) => out.rejected.push((part, r)),
                    Err(WriteFailure::Cancelled) => out.cancelled = true,
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use lifecycle::{Lifecycle, LifecycleSettings, SinkError};
    use protocol::{Body, Envelope, RunInfo};

    use super::*;
    use crate::sink::AnySink;

    /// Rejects (400) any body with a line for target `bad`, like InfluxDB rejects a field type
    /// conflict; records the bodies it was sent.
    #[derive(Default)]
    struct Picky {
        calls: Mutex<Vec<String>>,
    }

    impl Sink for Picky {
        async fn write(&self, lines: &[u8]) -> Result<(), SinkError> {
            let text = String::from_utf8_lossy(lines).to_string();
            let bad = text.contains("target_host=bad");
            self.calls.lock().expect("lock").push(text);
            if bad {
                Err(SinkError::Permanent {
                    status: 400,
                    message: "field type conflict".into(),
                })
            } else {
                Ok(())
            }
        }
    }

    #[tokio::test]
    async fn a_rejected_batch_is_written_again_run_by_run() {
        let mut lc = Lifecycle::new(LifecycleSettings::default());
        for (i, target) in ["good", "bad", "fine"].iter().enumerate() {
            let env = Envelope::new(
                uuid::Uuid::new_v4(),
                "n",
                0,
                String::new(),
                Body::Registered(info(target)),
            );
            lc.handle(i as u64, env, chrono::Utc::now());
        }
        let sink = Picky::default();
        let out = write_batch(&sink, lc.batch(MAX_BATCH_BYTES), &CancellationToken::new()).await;
        assert_eq!(out.written.len(), 2);
        assert_eq!(out.rejected.len(), 1);
        let (part, reason) = &out.rejected[0];
        assert!(String::from_utf8_lossy(&part.lines).contains("target_host=bad"));
        assert_eq!(reason, "HTTP 400: field type conflict");
        assert_eq!(
            sink.calls.lock().expect("lock").len(),
            4,
            "the batch, then each run"
        );
    }

    fn info(target: &str) -> RunInfo {
        RunInfo {
            started_at: chrono::Utc::now(),
            host: "h".into(),
            clients: 1,
            hatch_rate: 1.0,
            requests: 0,
            target_host: target.into(),
            mode: "single".into(),
            tool: "t".into(),
            expected_nodes: None,
        }
    }

    /// A batch of 3 runs into a file sink: one request, every part written.
    #[tokio::test]
    async fn a_batch_is_one_write() {
        let mut lc = Lifecycle::new(LifecycleSettings::default());
        for i in 0..3 {
            let id = uuid::Uuid::new_v4();
            let env = Envelope::new(id, "n", 0, String::new(), Body::Registered(info("t")));
            lc.handle(i, env, chrono::Utc::now());
        }
        let batch = lc.batch(MAX_BATCH_BYTES);
        assert_eq!(batch.parts.len(), 3);
        let dir = std::env::temp_dir().join(format!("lt-outbox-{}", uuid::Uuid::new_v4()));
        let sink = AnySink::file(&dir.join("out.lp")).expect("open");
        let out = write_batch(&sink, batch, &CancellationToken::new()).await;
        assert_eq!(out.written.len(), 3);
        assert!(out.rejected.is_empty() && !out.cancelled);
        let text = std::fs::read_to_string(dir.join("out.lp")).expect("read");
        assert_eq!(text.lines().count(), 3);
        let _ = std::fs::remove_dir_all(dir);
    }
}
