//! Cumulative, exact request statistics, sharded per user.
//!
//! Every user records into a [`Shard`] behind its own `std::sync::Mutex` (up to
//! [`MAX_SHARDS`] shards; beyond that users share them round robin), so recording a request
//! contends with almost nobody, and the lock is held only for one [`StatsEntry::log`] call and
//! one HdrHistogram record (never across an `.await`). [`Stats::snapshot`] merges all shards
//! into a Locust-shaped [`StatsPayload`]; merging is exact, so the totals equal the number of
//! requests recorded. [`Stats::latencies`] merges the shards' HdrHistograms (microseconds, 3
//! significant digits), which every percentile a user sees comes from (`output::percentiles`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use protocol::{ErrorEntry, StatsEntry, StatsPayload};

/// Most shards; users beyond this many share shards round robin, which bounds the memory the
/// HdrHistograms take.
pub(crate) const MAX_SHARDS: usize = 64;

/// Largest latency the HdrHistograms hold, µs (one hour); longer ones count as one hour.
pub(crate) const HDR_MAX_US: u64 = 3_600_000_000;

/// A new empty latency histogram (µs, 3 significant digits, growing as needed).
pub(crate) fn new_histogram() -> Histogram<u32> {
    Histogram::new(3).unwrap_or_else(|_| {
        // 3 significant digits is always valid; keep a fixed-range fallback all the same.
        Histogram::new_with_max(HDR_MAX_US, 2).unwrap_or_else(|_| unreachable_histogram())
    })
}

#[allow(clippy::panic)]
fn unreachable_histogram() -> Histogram<u32> {
    panic!("hdrhistogram rejected constant parameters")
}

/// Records `ms` milliseconds into `h` as microseconds (at least 1 µs, at most one hour).
pub(crate) fn record_ms(h: &mut Histogram<u32>, ms: f64) {
    let us = if ms.is_finite() && ms > 0.0 {
        ((ms * 1_000.0).round() as u64).clamp(1, HDR_MAX_US)
    } else {
        1
    };
    if h.record(us).is_err() {
        h.saturating_record(us);
    }
}

/// Merged HdrHistograms of a run: per (method, name) and in total.
#[derive(Debug, Clone)]
pub(crate) struct Latencies {
    /// (method, name) → histogram, µs.
    pub(crate) by_entry: HashMap<(String, String), Histogram<u32>>,
    /// All requests, µs.
    pub(crate) total: Histogram<u32>,
}

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
    entries: HashMap<String, HashMap<String, (StatsEntry, Histogram<u32>)>>,
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
        let (entry, hdr) = match by_name.get_mut(s.name) {
            Some(e) => e,
            None => by_name.entry(s.name.to_string()).or_insert_with(|| {
                (
                    StatsEntry::new(s.method, s.name, self.start_time),
                    new_histogram(),
                )
            }),
        };
        record_ms(hdr, s.response_time_ms);
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

    /// The merged latency histograms of all shards.
    pub(crate) fn latencies(&self) -> Latencies {
        let shards: Vec<Arc<Mutex<Shard>>> = lock(&self.shards).clone();
        let mut by_entry: HashMap<(String, String), Histogram<u32>> = HashMap::new();
        let mut total = new_histogram();
        for shard in shards {
            let hists: Vec<((String, String), Histogram<u32>)> = {
                let s = lock(&shard);
                s.entries
                    .iter()
                    .flat_map(|(m, by_name)| {
                        by_name
                            .iter()
                            .map(move |(n, (_, h))| ((m.clone(), n.clone()), h.clone()))
                    })
                    .collect()
            };
            for (key, h) in hists {
                // Auto-resizing histograms of one precision always add.
                let _ = total.add(&h);
                match by_entry.get_mut(&key) {
                    Some(acc) => {
                        let _ = acc.add(&h);
                    }
                    None => {
                        by_entry.insert(key, h);
                    }
                }
            }
        }
        Latencies { by_entry, total }
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
                    .flat_map(|m| m.values().map(|(e, _)| e.clone()))
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
    fn latencies_merge_and_shards_are_bounded() {
        let stats = Stats::new(1.0);
        let handles: Vec<ShardHandle> = (0..MAX_SHARDS + 10).map(|_| stats.shard()).collect();
        assert_eq!(lock(&stats.shards).len(), MAX_SHARDS);
        for (i, h) in handles.iter().enumerate() {
            h.record(&sample("/a", (i % 10 + 1) as f64 * 0.5, None));
            h.record(&sample("/b", 100.0, None));
        }
        let l = stats.latencies();
        let n = (MAX_SHARDS + 10) as u64;
        assert_eq!(l.total.len(), 2 * n);
        assert_eq!(l.by_entry[&("GET".to_string(), "/a".to_string())].len(), n);
        let ms = |name: &str, q: f64| {
            l.by_entry[&("GET".to_string(), name.to_string())].value_at_quantile(q) as f64 / 1e3
        };
        let p100 = ms("/a", 1.0);
        assert!((p100 - 5.0).abs() < 0.01, "{p100}");
        let p50 = ms("/b", 0.5);
        assert!((p50 - 100.0).abs() < 0.1, "{p50}");
        assert!(!l
            .by_entry
            .contains_key(&("GET".to_string(), "/nope".to_string())));
        assert_eq!(stats.snapshot(0, "x").total.num_requests, 2 * n);
    }

    #[test]
    fn empty_snapshot_has_a_total() {
        let p = Stats::new(5.0).snapshot(0, "spawning");
        assert!(p.entries.is_empty());
        assert_eq!(p.total.num_requests, 0);
        assert_eq!(p.total.start_time, 5.0);
    }
}
