//! The embedded pipeline: the run lifecycle and a sink in one process, with no broker.
//!
//! `loadgen --standalone` and `loadgen demo` feed their own messages straight into it.

use chrono::{DateTime, Utc};
use protocol::Envelope;

use crate::machine::Lifecycle;
use crate::settings::LifecycleSettings;
use crate::sink::{Sink, SinkError};

/// Lifecycle plus sink. Messages need no delivery tags: nothing is acked, and nothing is
/// checkpointed (one process: there is no standby to restore).
///
/// Each write is attempted once: a failed write is the caller's to report (a local file that
/// cannot be written does not heal by waiting). Points that could not be written stay in the
/// runs' outboxes and go with the next write.
#[derive(Debug)]
pub struct Embedded<S> {
    lifecycle: Lifecycle,
    sink: S,
    next_id: u64,
    points_written: usize,
}

impl<S: Sink> Embedded<S> {
    /// A pipeline writing to `sink`.
    pub fn new(settings: LifecycleSettings, sink: S) -> Self {
        Self {
            lifecycle: Lifecycle::new(settings),
            sink,
            next_id: 0,
            points_written: 0,
        }
    }

    /// Feeds one message, stamped with the current wall-clock time, and writes the points it
    /// produces.
    ///
    /// Errors: the sink failed to write them.
    pub async fn handle(&mut self, envelope: Envelope) -> Result<(), SinkError> {
        self.next_id += 1;
        let now = Utc::now();
        self.lifecycle.handle(self.next_id, envelope, now);
        self.flush(now).await
    }

    /// A snapshot tick at `now` (the lifecycle aligns the timestamp to the interval).
    ///
    /// Errors: the sink failed to write the snapshot.
    pub async fn tick(&mut self, now: DateTime<Utc>) -> Result<(), SinkError> {
        self.lifecycle.tick(now);
        self.flush(now).await
    }

    /// Points written so far.
    pub fn points_written(&self) -> usize {
        self.points_written
    }

    /// Runs still open.
    pub fn running(&self) -> usize {
        self.lifecycle.running().running
    }

    /// The sink written to.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// Writes the outboxes, then settles the lifecycle's bookkeeping (no checkpoint is kept:
    /// the records are dropped).
    async fn flush(&mut self, now: DateTime<Utc>) -> Result<(), SinkError> {
        let written = self.write_outboxes().await;
        let _ = self.lifecycle.checkpoint(now);
        written
    }

    async fn write_outboxes(&mut self) -> Result<(), SinkError> {
        loop {
            let batch = self.lifecycle.batch(usize::MAX);
            if batch.is_empty() {
                return Ok(());
            }
            self.sink.write(&batch.body()).await?;
            self.points_written += batch.points();
            for part in &batch.parts {
                self.lifecycle.written(part);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::FileSink;
    use protocol::{Body, CommitPayload, RunInfo, StatsEntry, StatsPayload};
    use uuid::Uuid;

    #[tokio::test]
    async fn a_run_goes_to_the_file_as_line_protocol() {
        let dir = std::env::temp_dir().join(format!("lt-embedded-{}", Uuid::new_v4()));
        let path = dir.join("run.lp");
        let sink = FileSink::open(&path).expect("open");
        let mut e = Embedded::new(LifecycleSettings::default(), sink);
        let id = Uuid::new_v4();
        let info = RunInfo {
            started_at: Utc::now(),
            host: "h".into(),
            clients: 1,
            hatch_rate: 1.0,
            requests: 0,
            target_host: "http://t".into(),
            mode: "single".into(),
            tool: "loadgen".into(),
            expected_nodes: None,
        };
        e.handle(Envelope::new(
            id,
            "a",
            0,
            String::new(),
            Body::Registered(info),
        ))
        .await
        .expect("register");
        assert_eq!(e.running(), 1);
        let mut entry = StatsEntry::new("GET", "/", 1.0);
        entry.log(5.0, 10, false, 2.0);
        let stats = StatsPayload::from_entries(vec![entry], vec![], 1, "stopped");
        let commit = CommitPayload {
            host: "h".into(),
            stats,
            thresholds: Vec::new(),
        };
        e.handle(Envelope::new(
            id,
            "a",
            1,
            String::new(),
            Body::Committed(commit),
        ))
        .await
        .expect("commit");
        assert_eq!(e.running(), 0);
        let text = std::fs::read_to_string(e.sink().path()).expect("read");
        let measurements: Vec<&str> = text
            .lines()
            .map(|l| l.split(',').next().unwrap_or_default())
            .collect();
        assert_eq!(
            measurements,
            [
                "loadtest_event",
                "loadtest_snapshot",
                "loadtest_request",
                "loadtest_summary",
                "loadtest_summary",
                "loadtest_event"
            ]
        );
        assert_eq!(e.points_written(), 6);
        let _ = std::fs::remove_dir_all(dir);
    }
}
