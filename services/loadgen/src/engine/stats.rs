//! Cumulative, exact request statistics, sharded per user.
//!
//! Every user records into a [`Shard`] behind its own `std::sync::Mutex` (up to
//! [`MAX_SHARDS`] shards; beyond that users share them round robin), so recording a request
//! contends with almost nobody, and the lock is held only for one [`StatsEntry::log`] call
//! (never across an `.await`). Every entry records an HdrHistogram too (microseconds, 3
//! significant digits: [`protocol::LatencyHistogram`]), which travels in the stats messages and
//! which every percentile a user sees comes from ([`StatsEntry::percentile`]).
//! [`Stats::snapshot`] merges all shards into a Locust-shaped [`StatsPayload`]; merging is exact
//! (histograms add), so the totals equal the number of requests recorded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use protocol::{ErrorEntry, StatsEntry, StatsPayload};

/// Most shards; users beyond this many share shards round robin, which bounds the memory the
/// HdrHistograms take.
pub(crate) const MAX_SHARDS: usize = 64;

/// The current time as Unix seconds (f64), as Locust's timestamps are.
pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (stats stay usable).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The outcome of one request, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample<'a> {
    /// HTTP method (`GET`).
    pub(crate) method: &'a str,
    /// Request name (the path).
    pub(crate) name: &'a str,
    /// Response time, ms.
    pub(crate) response_time_ms: f64,
    /// Response body size, bytes.
    pub(crate) content_length: u64,
    /// `None` on success; the error text (`HTTP 500`, `timeout`, …) on failure.
    pub(crate) error: Option<String>,
    /// Completion time, Unix seconds.
    pub(crate) finished_at: f64,
}

/// One user's cumulative stats.
#[derive(Debug, Default)]
pub(crate) struct Shard {
    start_time: f64,
    /// method → name → entry and its latency histogram; looked up by `&str`, so recording
    /// allocates nothing after the first request of an endpoint.
    entries: HashMap<String, HashMap<String, StatsEntry>>,
    /// (method, name, error) → occurrences.
    errors: HashMap<(String, String, String), u64>,
}

impl Shard {
    fn new(start_time: f64) -> Self {
        Self {
            start_time,
            ..Self::default()
        }
    }

    /// Records one request.
    pub(crate) fn record(&mut self, s: &Sample<'_>) {
        let by_name = match self.entries.get_mut(s.method) {
            Some(m) => m,
            None => self.entries.entry(s.method.to_string()).or_default(),
        };
        let entry = match by_name.get_mut(s.name) {
            Some(e) => e,
            None => by_name
                .entry(s.name.to_string())
                .or_insert_with(|| StatsEntry::recording(s.method, s.name, self.start_time)),
        };
        entry.log(
            s.response_time_ms,
            s.content_length,
            s.error.is_some(),
            s.finished_at,
        );
        if let Some(error) = &s.error {
            *self
                .errors
                .entry((s.method.to_string(), s.name.to_string(), error.clone()))
                .or_insert(0) += 1;
        }
    }
}

/// A user's handle on its shard.
#[derive(Debug, Clone)]
pub(crate) struct ShardHandle(Arc<Mutex<Shard>>);

impl ShardHandle {
    /// Records one request (holds the shard's lock for this call only).
    pub(crate) fn record(&self, sample: &Sample<'_>) {
        lock(&self.0).record(sample);
    }
}

/// All users' stats.
#[derive(Debug)]
pub(crate) struct Stats {
    start_time: f64,
    shards: Mutex<Vec<Arc<Mutex<Shard>>>>,
    handed_out: std::sync::atomic::AtomicUsize,
}

impl Stats {
    /// Empty stats whose entries start at `start_time` (Unix seconds).
    pub(crate) fn new(start_time: f64) -> Self {
        Self {
            start_time,
            shards: Mutex::new(Vec::new()),
            handed_out: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// A shard for one user: a new one for each of the first [`MAX_SHARDS`] users, then the
    /// existing ones in turn.
    pub(crate) fn shard(&self) -> ShardHandle {
        let n = self
            .handed_out
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut shards = lock(&self.shards);
        if shards.len() < MAX_SHARDS {
            let shard = Arc::new(Mutex::new(Shard::new(self.start_time)));
            shards.push(Arc::clone(&shard));
            return ShardHandle(shard);
        }
        ShardHandle(Arc::clone(&shards[n % shards.len()]))
    }

    /// The cumulative stats of all shards: entries sorted by (name, method), errors sorted by
    /// (name, method, error), and the `Aggregated` total. `user_count` and `state` are copied
    /// into the payload.
    pub(crate) fn snapshot(&self, user_count: u64, state: &str) -> StatsPayload {
        let shards: Vec<Arc<Mutex<Shard>>> = lock(&self.shards).clone();
        let mut entries: HashMap<(String, String), StatsEntry> = HashMap::new();
        let mut errors: HashMap<(String, String, String), u64> = HashMap::new();
        for shard in shards {
            // Clone under the lock, merge outside it, so a user waits only for the copy.
            let (shard_entries, shard_errors) = {
                let s = lock(&shard);
                let e: Vec<StatsEntry> = s
                    .entries
                    .values()
                    .flat_map(|m| m.values().cloned())
                    .collect();
                (e, s.errors.clone())
            };
            for e in shard_entries {
                match entries.get_mut(&(e.method.clone(), e.name.clone())) {
                    Some(acc) => acc.merge(&e),
                    None => {
                        entries.insert(e.key(), e);
                    }
                }
            }
            for (k, n) in shard_errors {
                *errors.entry(k).or_insert(0) += n;
            }
        }
        let mut entries: Vec<StatsEntry> = entries.into_values().collect();
        entries.sort_by(|a, b| (&a.name, &a.method).cmp(&(&b.name, &b.method)));
        let mut errors: Vec<ErrorEntry> = errors
            .into_iter()
            .map(|((method, name, error), occurrences)| ErrorEntry {
                method,
                name,
                error,
                occurrences,
            })
            .collect();
        errors.sort_by(|a, b| (&a.name, &a.method, &a.error).cmp(&(&b.name, &b.method, &b.error)));
        let mut payload = StatsPayload::from_entries(entries, errors, user_count, state);
        if payload.total.start_time <= 0.0 {
            payload.total.start_time = self.start_time;
        }
        payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, ms: f64, error: Option<&str>) -> Sample<'static> {
        Sample {
            method: "GET",
            name: Box::leak(name.to_string().into_boxed_str()),
            response_time_ms: ms,
            content_length: 10,
            error: error.map(str::to_string),
            finished_at: 1_000.0,
        }
    }

    #[test]
    fn snapshot_merges_shards_exactly() {
        let stats = Arc::new(Stats::new(999.0));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let shard = stats.shard();
                std::thread::spawn(move || {
                    for i in 0..1_000 {
                        let name = if i % 2 == 0 { "/a" } else { "/b" };
                        let err = (i % 100 == t).then_some("HTTP 500");
                        shard.record(&sample(name, (i % 50) as f64, err));
                    }
                })
            })
            .collect();
        // Snapshots taken while recording never see more than was recorded.
        let mid = stats.snapshot(8, "running");
        assert!(mid.total.num_requests <= 8_000);
        for t in threads {
            t.join().expect("thread");
        }
        let p = stats.snapshot(8, "stopped");
        assert_eq!(p.total.num_requests, 8_000);
        assert_eq!(p.total.num_failures, 80);
        assert_eq!(p.total.name, protocol::AGGREGATED);
        assert_eq!(p.total.total_content_length, 80_000);
        assert_eq!(p.entries.len(), 2);
        assert_eq!(p.entries[0].name, "/a");
        assert_eq!(p.entries[0].num_requests, 4_000);
        assert_eq!(p.entries[0].start_time, 999.0);
        let errs: u64 = p.errors.iter().map(|e| e.occurrences).sum();
        assert_eq!(errs, 80);
        assert!(p.errors.iter().all(|e| e.error == "HTTP 500"));
        assert_eq!(p.user_count, 8);
        assert_eq!(p.state, "stopped");
    }

    #[test]
    fn histograms_merge_and_shards_are_bounded() {
        let stats = Stats::new(1.0);
        let handles: Vec<ShardHandle> = (0..MAX_SHARDS + 10).map(|_| stats.shard()).collect();
        assert_eq!(lock(&stats.shards).len(), MAX_SHARDS);
        for (i, h) in handles.iter().enumerate() {
            h.record(&sample("/a", (i % 10 + 1) as f64 * 0.5, None));
            h.record(&sample("/b", 100.0, None));
        }
        let p = stats.snapshot(0, "x");
        let n = (MAX_SHARDS + 10) as u64;
        assert_eq!(p.total.num_requests, 2 * n);
        let hist = |e: &StatsEntry| e.hdr_histogram.as_ref().map_or(0, |h| h.len());
        assert_eq!(hist(&p.total), 2 * n);
        assert_eq!(hist(&p.entries[0]), n);
        assert_eq!(p.entries[0].percentile(1.0), 5.0);
        assert_eq!(p.entries[1].percentile(0.5), 100.0);
        assert_eq!(p.total.percentile_source(), protocol::PercentileSource::Hdr);
    }

    #[test]
    fn empty_snapshot_has_a_total() {
        let p = Stats::new(5.0).snapshot(0, "spawning");
        assert!(p.entries.is_empty());
        assert_eq!(p.total.num_requests, 0);
        assert_eq!(p.total.start_time, 5.0);
    }
}
