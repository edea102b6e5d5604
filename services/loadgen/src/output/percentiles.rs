//! Response-time percentiles, computed here and only here: the console's tables, the CSV and
//! JSON files, the HTML page and the thresholds all ask one [`Percentiles`] source, so a
//! number printed and a number written are the same number.
//!
//! Two sources: the run's HdrHistograms ([`Latencies`], µs precision), which loadgen records
//! for every request, and Locust's rounded histograms ([`Locust`]), which is all a snapshot
//! carries (and what the request table's median column shows, as Locust's does).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use protocol::stats::histogram_percentile;
use protocol::StatsEntry;

use crate::engine::stats::{new_histogram, Latencies};

/// Percentiles of the percentile tables (fractions), as Locust prints them.
pub(crate) const PERCENTILES: [f64; 11] = [
    0.50, 0.66, 0.75, 0.80, 0.90, 0.95, 0.98, 0.99, 0.999, 0.9999, 1.0,
];

/// The column label of a percentile fraction: `50%`, `99.9%`, `100%`.
pub(crate) fn percentile_label(p: f64) -> String {
    let pct = p * 100.0;
    if (pct - pct.round()).abs() < 1e-9 {
        format!("{}%", pct.round() as u64)
    } else {
        // 99.9 and 99.99; trim float noise.
        let s = format!("{pct:.4}");
        format!("{}%", s.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// Which requests a row of stats stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Every request: the `Aggregated` row.
    Total,
    /// The requests of the entry's method and name.
    Endpoint,
    /// The requests of the entry's name, whatever their method (the entry is their merge).
    Name,
}

impl Scope {
    /// The scope of a table row: the total row, or one endpoint.
    pub(crate) fn row(total: bool) -> Self {
        if total {
            Scope::Total
        } else {
            Scope::Endpoint
        }
    }
}

/// Where the response-time percentiles a user sees come from.
pub(crate) trait Percentiles {
    /// The `q` quantile (0–1) of the response times of the requests `e` stands for (see
    /// [`Scope`]), ms.
    fn percentile(&self, e: &StatsEntry, scope: Scope, q: f64) -> f64;

    /// How the console's percentile table is headed: `ms, HdrHistogram` or `approximated, ms`.
    fn heading(&self) -> &'static str;
}

/// Locust's percentiles: from the entry's rounded histogram, clamped to its min and max.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Locust;

impl Percentiles for Locust {
    fn percentile(&self, e: &StatsEntry, _: Scope, q: f64) -> f64 {
        e.percentile(q)
    }

    fn heading(&self) -> &'static str {
        "approximated, ms"
    }
}

/// The run's HdrHistograms; Locust's histogram of the entry where there is none (an endpoint
/// loadgen did not record, or no request at all).
impl Percentiles for Latencies {
    fn percentile(&self, e: &StatsEntry, scope: Scope, q: f64) -> f64 {
        let merged: Histogram<u32>;
        let h = match scope {
            Scope::Total => Some(&self.total),
            Scope::Endpoint => self.by_entry.get(&(e.method.clone(), e.name.clone())),
            Scope::Name => {
                let mut all = new_histogram();
                for (_, h) in self.by_entry.iter().filter(|((_, n), _)| *n == e.name) {
                    // Auto-resizing histograms of one precision always add.
                    let _ = all.add(h);
                }
                merged = all;
                Some(&merged)
            }
        };
        match h {
            Some(h) if !h.is_empty() => h.value_at_quantile(q.clamp(0.0, 1.0)) as f64 / 1_000.0,
            _ => e.percentile(q),
        }
    }

    fn heading(&self) -> &'static str {
        "ms, HdrHistogram"
    }
}

/// The `q` quantile of a rounded histogram (rounded ms → count), ms, as Locust computes it
/// (not clamped): the percentiles of a stats interval, whose histogram is the difference of
/// two cumulative ones.
pub(crate) fn of_histogram(h: &BTreeMap<u64, u64>, q: f64) -> f64 {
    histogram_percentile(h, q) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::stats::{Sample, Stats};

    #[test]
    fn labels() {
        let labels: Vec<String> = PERCENTILES.iter().map(|p| percentile_label(*p)).collect();
        assert_eq!(
            labels,
            ["50%", "66%", "75%", "80%", "90%", "95%", "98%", "99%", "99.9%", "99.99%", "100%"]
        );
    }

    #[test]
    fn hdr_percentiles_by_scope() {
        let stats = Stats::new(1.0);
        let shard = stats.shard();
        for (method, ms) in [("GET", 1.0), ("POST", 100.0)] {
            for _ in 0..10 {
                shard.record(&Sample {
                    method,
                    name: "/x",
                    response_time_ms: ms,
                    content_length: 0,
                    error: None,
                    finished_at: 2.0,
                });
            }
        }
        let l = stats.latencies();
        let p = stats.snapshot(1, "stopped");
        let get = &p.entries[0];
        assert_eq!(get.method, "GET");
        assert!((l.percentile(get, Scope::Endpoint, 1.0) - 1.0).abs() < 0.01);
        assert!((l.percentile(&p.total, Scope::Total, 1.0) - 100.0).abs() < 0.1);
        // Every method of the name: the slow POSTs are in it.
        assert!((l.percentile(get, Scope::Name, 0.95) - 100.0).abs() < 0.1);
        // An endpoint without a histogram: Locust's.
        let mut other = get.clone();
        other.name = "/y".into();
        assert_eq!(
            l.percentile(&other, Scope::Endpoint, 0.5),
            other.percentile(0.5)
        );
        assert_eq!(Locust.percentile(get, Scope::Endpoint, 0.5), 1.0);
    }
}
