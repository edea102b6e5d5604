//! The Locust-compatible stats model: [`StatsEntry`] (Locust's `StatsEntry.serialize()` shape),
//! histogram rounding, merging and percentiles.
//!
//! Every number here follows Locust (`locust/stats.py`), so stats produced by real Locust and by
//! our `loadgen` combine exactly:
//! - response times are milliseconds (f64);
//! - `response_times` maps a *rounded* response time (ms) to a count, rounded as
//!   [`round_response_time`] does;
//! - percentiles walk that map as `calculate_response_time_percentile` does, then are clamped to
//!   the entry's min and max (a rounded bucket can otherwise report a p99 above the max).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::latency::LatencyHistogram;
use crate::response_times::ResponseTimes;
use crate::ValidationError;

/// Longest accepted request name, in characters.
pub const MAX_NAME_LEN: usize = 1_000;
/// Most reported percentiles one entry may carry (Locust's web rows carry 2 or 3).
pub const MAX_REPORTED_PERCENTILES: usize = 32;
/// Longest accepted HTTP method, in characters.
pub const MAX_METHOD_LEN: usize = 32;
/// Most entries (and most errors) accepted in one stats payload.
pub const MAX_ENTRIES: usize = 10_000;
/// The name Locust gives the total row.
pub const AGGREGATED: &str = "Aggregated";

/// Rounds a response time (ms) to its histogram bucket exactly as Locust does
/// (`StatsEntry._log_time_of_request` in `locust/stats.py`): to whole ms below 100 ms, to 10 ms
/// below 1 s, to 100 ms below 10 s, and to whole seconds above. Python's `round` rounds half to
/// even, and so does this. Negative or non-finite times go to bucket 0.
pub fn round_response_time(ms: f64) -> u64 {
    if !ms.is_finite() || ms <= 0.0 {
        return 0;
    }
    let step = if ms < 100.0 {
        1.0
    } else if ms < 1_000.0 {
        10.0
    } else if ms < 10_000.0 {
        100.0
    } else {
        1_000.0
    };
    let rounded = (ms / step).round_ties_even() * step;
    // `as` saturates for values beyond u64::MAX, which no response time reaches.
    rounded as u64
}

/// Locust's percentile over a rounded histogram (`calculate_response_time_percentile`):
/// walks the buckets from the slowest down until at most `num_requests * percent` requests
/// (truncated to an integer, as Locust's `int()`) remain. Returns 0 for an empty histogram.
/// `percent` is a fraction (0.95 for p95).
pub fn histogram_percentile(response_times: &ResponseTimes, percent: f64) -> u64 {
    let num_requests = response_times.total();
    if num_requests == 0 {
        return 0;
    }
    let wanted = (num_requests as f64 * percent) as u64;
    // Locust walks down from the slowest bucket until at most `wanted` requests remain below
    // it: that is the slowest bucket with at most `wanted` requests below it.
    let mut below = 0u64;
    let mut found = 0;
    for (bucket, count) in response_times.iter() {
        if below > wanted {
            break;
        }
        found = bucket;
        below = below.saturating_add(count);
    }
    found
}

/// Whether `entry` is Locust's total row (`name: "Aggregated"` with no method, as
/// `RequestStats.total` serializes and as the web UI's `/stats/requests` lists it) rather than
/// an endpoint. An endpoint a user named `Aggregated` has a method and stays an endpoint.
pub fn is_total_row(entry: &StatsEntry) -> bool {
    entry.name == AGGREGATED && entry.method.is_empty()
}

/// Splits Locust's total rows off a list of entries: `(endpoints, total rows)`.
pub(crate) fn split_total_rows(entries: Vec<StatsEntry>) -> (Vec<StatsEntry>, Vec<StatsEntry>) {
    entries.into_iter().partition(|e| !is_total_row(e))
}

/// One endpoint's cumulative stats, in Locust's serialized shape (`StatsEntry.serialize()`).
///
/// Times are milliseconds; `start_time` and `last_request_timestamp` are Unix seconds (f64).
/// Unknown fields that Locust also sends (`num_reqs_per_sec`, `num_fail_per_sec`,
/// `num_none_requests`) are accepted and ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatsEntry {
    /// Request name (URL path or the name given for grouping), at most 1,000 characters.
    pub name: String,
    /// HTTP method; empty (or `null`, as Locust's total row has it) for the aggregated row.
    /// At most 32 characters.
    #[serde(default, deserialize_with = "crate::lenient::null_as_empty")]
    pub method: String,
    /// Requests completed, successes and failures.
    #[serde(deserialize_with = "crate::lenient::count")]
    pub num_requests: u64,
    /// Requests that failed.
    #[serde(default)]
    #[serde(deserialize_with = "crate::lenient::count")]
    pub num_failures: u64,
    /// Sum of all response times, ms.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub total_response_time: f64,
    /// Fastest response, ms; `null` before the first request (as Locust sends it).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub min_response_time: Option<f64>,
    /// Slowest response, ms.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub max_response_time: f64,
    /// Sum of response body sizes, bytes.
    #[serde(default)]
    #[serde(deserialize_with = "crate::lenient::count")]
    pub total_content_length: u64,
    /// Rounded response time (ms) → count. JSON keys are the integers as strings.
    #[serde(default, deserialize_with = "crate::lenient::histogram")]
    #[cfg_attr(feature = "openapi", schema(value_type = std::collections::HashMap<String, u64>))]
    pub response_times: ResponseTimes,
    /// When this entry started counting, Unix seconds.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub start_time: f64,
    /// When the last request completed, Unix seconds; `null` before the first request.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub last_request_timestamp: Option<f64>,
    /// Percentiles the producer computed itself and sent instead of a histogram, ms, by
    /// fraction written as text (`"0.5"`, `"0.95"`, `"0.99"`): Locust's web `/stats/requests`
    /// rows carry `median_response_time` and `response_time_percentile_0.95`/`_0.99` but no
    /// `response_times`. Used only while `response_times` is empty (see
    /// [`StatsEntry::measured_percentile`]); they cannot be combined, so merging two entries
    /// that both have requests drops them.
    /// Not in the OpenAPI document: clients of the API send Locust's web rows for this, and the
    /// API fills it in from them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub reported_percentiles: BTreeMap<String, f64>,
    /// Our addition, optional: the same requests' response times in an HdrHistogram (µs, 3
    /// significant digits), HdrHistogram's V2 compressed serialization in base64 (see
    /// [`LatencyHistogram`]). When present, every percentile of the entry comes from it
    /// ([`StatsEntry::percentile`]); Locust's `response_times` stays for compatibility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub hdr_histogram: Option<LatencyHistogram>,
}

/// Where an entry's percentiles come from (the `percentile_source` of stored points).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PercentileSource {
    /// The merged HdrHistogram (µs, 3 significant digits): loadgen's runs.
    Hdr,
    /// Locust's rounded `response_times` map: Locust's runs, and any mix without HdrHistograms.
    Locust,
}

impl PercentileSource {
    /// `hdr` or `locust`.
    pub fn as_str(self) -> &'static str {
        match self {
            PercentileSource::Hdr => "hdr",
            PercentileSource::Locust => "locust",
        }
    }
}

/// Rounds milliseconds to whole microseconds (3 decimals), so a stored or printed time carries
/// no float noise (`12.345000000000001` becomes `12.345`).
pub fn round_to_us(ms: f64) -> f64 {
    if ms.is_finite() {
        (ms * 1_000.0).round() / 1_000.0
    } else {
        ms
    }
}

impl StatsEntry {
    /// An empty entry for `method name`, starting at `start_time` (Unix seconds).
    pub fn new(method: impl Into<String>, name: impl Into<String>, start_time: f64) -> Self {
        Self {
            name: name.into(),
            method: method.into(),
            num_requests: 0,
            num_failures: 0,
            total_response_time: 0.0,
            min_response_time: None,
            max_response_time: 0.0,
            total_content_length: 0,
            response_times: ResponseTimes::new(),
            start_time,
            last_request_timestamp: None,
            reported_percentiles: BTreeMap::new(),
            hdr_histogram: None,
        }
    }

    /// An empty entry that also records an HdrHistogram (see [`StatsEntry::hdr_histogram`]).
    pub fn recording(method: impl Into<String>, name: impl Into<String>, start_time: f64) -> Self {
        Self {
            hdr_histogram: Some(LatencyHistogram::new()),
            ..Self::new(method, name, start_time)
        }
    }

    /// Records one request: `response_time` in ms, body size in bytes, completion time in Unix
    /// seconds.
    pub fn log(&mut self, response_time: f64, content_length: u64, failed: bool, now: f64) {
        self.num_requests += 1;
        if failed {
            self.num_failures += 1;
        }
        self.total_response_time += response_time;
        self.min_response_time = Some(match self.min_response_time {
            Some(min) => min.min(response_time),
            None => response_time,
        });
        self.max_response_time = self.max_response_time.max(response_time);
        self.total_content_length += content_length;
        self.response_times
            .add(round_response_time(response_time), 1);
        if let Some(h) = &mut self.hdr_histogram {
            h.record_ms(response_time);
        }
        self.last_request_timestamp = Some(match self.last_request_timestamp {
            Some(last) => last.max(now),
            None => now,
        });
    }

    /// Adds `other` into `self`: counts and histograms add, min/max/start/last combine. Merging is
    /// exact, associative and commutative, so nodes and intervals combine in any order.
    ///
    /// HdrHistograms add too; the merge keeps one only when every side that has requests has
    /// one (a histogram of part of the requests would give wrong percentiles), so a mix with
    /// Locust's entries falls back to Locust's map.
    pub fn merge(&mut self, other: &StatsEntry) {
        // Reported percentiles describe one producer's requests only: they survive a merge only
        // when one side has no requests at all.
        if self.num_requests == 0 && self.response_times.is_empty() {
            self.reported_percentiles = other.reported_percentiles.clone();
        } else if other.num_requests > 0 || !other.response_times.is_empty() {
            self.reported_percentiles.clear();
        }
        self.hdr_histogram = match (self.hdr_histogram.take(), &other.hdr_histogram) {
            (Some(mut a), Some(b)) => {
                a.add(b);
                Some(a)
            }
            (Some(a), None) if other.num_requests == 0 => Some(a),
            (None, Some(b)) if self.num_requests == 0 => Some(b.clone()),
            _ => None,
        };
        self.num_requests = self.num_requests.saturating_add(other.num_requests);
        self.num_failures = self.num_failures.saturating_add(other.num_failures);
        // Saturate like the counts: finite inputs never merge into an infinite total.
        self.total_response_time =
            (self.total_response_time + other.total_response_time).min(f64::MAX);
        self.min_response_time = match (self.min_response_time, other.min_response_time) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max_response_time = self.max_response_time.max(other.max_response_time);
        self.total_content_length = self
            .total_content_length
            .saturating_add(other.total_content_length);
        self.response_times.merge(&other.response_times);
        self.start_time = match (self.start_time, other.start_time) {
            (a, b) if a <= 0.0 => b,
            (a, b) if b <= 0.0 => a,
            (a, b) => a.min(b),
        };
        self.last_request_timestamp =
            match (self.last_request_timestamp, other.last_request_timestamp) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
    }

    /// Average response time, ms (0 without requests).
    pub fn avg_response_time(&self) -> f64 {
        if self.num_requests == 0 {
            0.0
        } else {
            self.total_response_time / self.num_requests as f64
        }
    }

    /// Percentile of the response time (ms, to the µs) for `percent` (a fraction: 0.99 for
    /// p99): the one percentile function every output uses (console, files, thresholds,
    /// stored points). From the HdrHistogram when the entry has one with values
    /// (`value_at_quantile`), else as Locust does on the rounded histogram; either way clamped
    /// to `[min, max]` (a bucket's upper edge can otherwise lie above the max) and rounded to
    /// whole µs. 0 without requests.
    pub fn percentile(&self, percent: f64) -> f64 {
        let raw = match self
            .hdr_histogram
            .as_ref()
            .and_then(|h| h.quantile_ms(percent))
        {
            Some(v) => v,
            None => histogram_percentile(&self.response_times, percent) as f64,
        };
        round_to_us(clamp_to(
            raw,
            self.min_response_time,
            self.max_response_time,
        ))
    }

    /// The percentile of the requests since `earlier` (the same entry's previous cumulative
    /// stats): a snapshot interval's. From the difference of the HdrHistograms when both have
    /// one, else of Locust's maps; clamped to this entry's `[min, max]`, rounded to µs. `None`
    /// when the interval had no requests.
    pub fn interval_percentile(&self, earlier: Option<&StatsEntry>, percent: f64) -> Option<f64> {
        let [v] = self.interval_percentiles(earlier, [percent]);
        v
    }

    /// [`StatsEntry::interval_percentile`] of several fractions: the interval's histogram is
    /// computed once.
    pub fn interval_percentiles<const N: usize>(
        &self,
        earlier: Option<&StatsEntry>,
        percents: [f64; N],
    ) -> [Option<f64>; N] {
        let before = earlier.map_or(0, |e| e.num_requests);
        if self.num_requests <= before {
            return [None; N];
        }
        let hdr = match (&self.hdr_histogram, earlier.map(|e| &e.hdr_histogram)) {
            (Some(now), None) => Some(std::borrow::Cow::Borrowed(now)),
            (Some(now), Some(Some(prev))) => Some(std::borrow::Cow::Owned(now.since(prev))),
            _ => None,
        }
        .filter(|h| !h.is_empty());
        let locust = match (&hdr, earlier) {
            (Some(_), _) => None,
            (None, Some(prev)) => Some(self.response_times.since(&prev.response_times)),
            (None, None) => None,
        };
        percents.map(|percent| {
            let raw = match &hdr {
                Some(h) => h.quantile_ms(percent).unwrap_or(0.0),
                None => {
                    histogram_percentile(locust.as_ref().unwrap_or(&self.response_times), percent)
                        as f64
                }
            };
            Some(round_to_us(clamp_to(
                raw,
                self.min_response_time,
                self.max_response_time,
            )))
        })
    }

    /// Where [`StatsEntry::percentile`] takes its values from.
    pub fn percentile_source(&self) -> PercentileSource {
        match &self.hdr_histogram {
            Some(h) if !h.is_empty() => PercentileSource::Hdr,
            _ => PercentileSource::Locust,
        }
    }

    /// The percentile for `percent` (a fraction) that somebody measured, ms: from the
    /// HdrHistogram or Locust's map when there is one ([`StatsEntry::percentile`]), else the one the producer reported for
    /// exactly that fraction, clamped to `[min, max]`; `None` when neither exists or there were
    /// no requests, so nobody stores a percentile made up from the minimum.
    pub fn measured_percentile(&self, percent: f64) -> Option<f64> {
        if self.num_requests == 0 {
            return None;
        }
        if !self.response_times.is_empty() || self.percentile_source() == PercentileSource::Hdr {
            return Some(self.percentile(percent));
        }
        self.reported_percentiles
            .iter()
            .find(|(k, _)| k.parse::<f64>().is_ok_and(|f| (f - percent).abs() < 1e-9))
            .map(|(_, v)| round_to_us(clamp_to(*v, self.min_response_time, self.max_response_time)))
    }

    /// The (method, name) key of this entry.
    pub fn key(&self) -> (String, String) {
        (self.method.clone(), self.name.clone())
    }

    /// Checks one entry's invariants; `path` is the JSON path used in the error
    /// (`payload.entries[3]`).
    pub fn validate(&self, path: &str) -> Result<(), ValidationError> {
        if self.name.chars().count() > MAX_NAME_LEN {
            return Err(ValidationError::new(
                format!("{path}.name"),
                format!("longer than {MAX_NAME_LEN} characters"),
            ));
        }
        if self.method.chars().count() > MAX_METHOD_LEN {
            return Err(ValidationError::new(
                format!("{path}.method"),
                format!("longer than {MAX_METHOD_LEN} characters"),
            ));
        }
        let finite_non_negative = [
            ("total_response_time", Some(self.total_response_time)),
            ("min_response_time", self.min_response_time),
            ("max_response_time", Some(self.max_response_time)),
            ("start_time", Some(self.start_time)),
            ("last_request_timestamp", self.last_request_timestamp),
        ];
        if let Some(h) = &self.hdr_histogram {
            if h.len() != self.num_requests {
                return Err(ValidationError::new(
                    format!("{path}.hdr_histogram"),
                    format!(
                        "holds {} values for {} requests; it must hold one per request",
                        h.len(),
                        self.num_requests
                    ),
                ));
            }
        }
        for (field, value) in finite_non_negative {
            if let Some(v) = value {
                if !v.is_finite() || v < 0.0 {
                    return Err(ValidationError::new(
                        format!("{path}.{field}"),
                        "must be a finite, non-negative number",
                    ));
                }
            }
        }
        for (fraction, v) in &self.reported_percentiles {
            let field = format!("{path}.reported_percentiles.{fraction}");
            if !fraction
                .parse::<f64>()
                .is_ok_and(|f| (0.0..=1.0).contains(&f))
            {
                return Err(ValidationError::new(
                    field,
                    "key must be a fraction between 0 and 1",
                ));
            }
            if !v.is_finite() || *v < 0.0 {
                return Err(ValidationError::new(
                    field,
                    "must be a finite, non-negative number",
                ));
            }
        }
        if self.reported_percentiles.len() > MAX_REPORTED_PERCENTILES {
            return Err(ValidationError::new(
                format!("{path}.reported_percentiles"),
                format!("more than {MAX_REPORTED_PERCENTILES} percentiles"),
            ));
        }
        Ok(())
    }
}

/// Clamps a percentile to the entry's observed range.
fn clamp_to(value: f64, min: Option<f64>, max: f64) -> f64 {
    let mut v = value;
    if let Some(min) = min {
        v = v.max(min);
    }
    if max > 0.0 {
        v = v.min(max);
    }
    v
}

#[cfg(test)]
#[path = "stats_tests.rs"]
mod tests;
