//! A node's stats payload ([`StatsPayload`]: its entries, total and errors) and the one
//! definition of a run's rates ([`rate`] over [`load_window_s`]).
//! The entries themselves ([`StatsEntry`]) are in [`crate::stats`].

use serde::{Deserialize, Serialize};

use crate::stats::{
    is_total_row, split_total_rows, StatsEntry, AGGREGATED, MAX_ENTRIES, MAX_NAME_LEN,
};
use crate::ValidationError;

/// Counts of one error, as Locust reports them (`StatsError.serialize()` without the
/// duplicated fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorEntry {
    /// HTTP method of the failing request.
    #[serde(default)]
    pub method: String,
    /// Request name, at most 1,000 characters.
    pub name: String,
    /// The error text (exception or status).
    pub error: String,
    /// How often it occurred (cumulative).
    #[serde(deserialize_with = "crate::lenient::count")]
    pub occurrences: u64,
}

/// A node's cumulative stats since it started: the payload of a `stats` message.
/// Any later payload from the same node supersedes every earlier one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct StatsPayload {
    /// Users (clients) running on the node now.
    #[serde(default, deserialize_with = "crate::lenient::count")]
    pub user_count: u64,
    /// Runner state (`spawning`, `running`, `stopped`), free text as Locust reports it.
    #[serde(default)]
    pub state: String,
    /// Per-endpoint entries (at most 10,000).
    #[serde(default)]
    pub entries: Vec<StatsEntry>,
    /// The aggregated row (`name = "Aggregated"`).
    pub total: StatsEntry,
    /// Errors by (method, name, error) (at most 10,000).
    #[serde(default)]
    pub errors: Vec<ErrorEntry>,
    /// Our addition, optional: when the node's load stopped (its users stopped starting
    /// requests, or its request budget was spent), Unix seconds. Sent in a node's final stats;
    /// the end of its load window (see [`StatsPayload::load_window_s`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub stopped_at: Option<f64>,
}

/// Requests (or failures) per second: `count` ÷ `window_s`, the load window in seconds; 0 when
/// the window is unknown or not positive. The one definition of a run's rates (see the README's
/// data section).
pub fn rate(count: u64, window_s: Option<f64>) -> f64 {
    match window_s {
        Some(w) if w > 0.0 && count > 0 => count as f64 / w.max(0.001),
        _ => 0.0,
    }
}

/// The load window of stats whose first user started at `start` (Unix s, as `start_time`),
/// ending at `stopped_at` when the producer says when its load stopped, else at the last
/// request (`last_request`, Unix s; Locust's own definition): seconds, `None` when unknown or
/// not positive.
pub fn load_window_s(
    start: f64,
    stopped_at: Option<f64>,
    last_request: Option<f64>,
) -> Option<f64> {
    let end = stopped_at.or(last_request)?;
    (start > 0.0 && end > start).then_some(end - start)
}

impl StatsPayload {
    /// A payload from `entries`, with the total computed by merging them (as Locust's
    /// `total` is the merge of all entries).
    pub fn from_entries(
        entries: Vec<StatsEntry>,
        errors: Vec<ErrorEntry>,
        user_count: u64,
        state: &str,
    ) -> Self {
        let (entries, total_rows) = split_total_rows(entries);
        if entries.is_empty() {
            // Only Locust's total row was sent: it is the total, with no endpoints.
            if let Some(mut total) = total_rows.first().cloned() {
                total.method.clear();
                return Self {
                    user_count,
                    state: state.to_string(),
                    entries,
                    total,
                    errors,
                    stopped_at: None,
                };
            }
        }
        let start = entries
            .iter()
            .map(|e| e.start_time)
            .filter(|t| *t > 0.0)
            .fold(f64::INFINITY, f64::min);
        let mut total =
            StatsEntry::new("", AGGREGATED, if start.is_finite() { start } else { 0.0 });
        for e in &entries {
            total.merge(e);
        }
        // Without histograms the merge has no percentiles; Locust's own total row has them
        // when it counts the same requests.
        if total.response_times.is_empty() && total.reported_percentiles.is_empty() {
            if let Some(row) = total_rows
                .iter()
                .find(|r| r.num_requests == total.num_requests)
            {
                total.reported_percentiles = row.reported_percentiles.clone();
            }
        }
        Self {
            user_count,
            state: state.to_string(),
            entries,
            total,
            errors,
            stopped_at: None,
        }
    }

    /// This node's load window, s: from its first user's start (`total.start_time`) to
    /// `stopped_at`, or to its last request when it did not say (see [`load_window_s`]).
    pub fn load_window_s(&self) -> Option<f64> {
        load_window_s(
            self.total.start_time,
            self.stopped_at,
            self.total.last_request_timestamp,
        )
    }

    /// Requests (or failures) per second over this node's load window (see [`rate`]).
    pub fn rate(&self, count: u64) -> f64 {
        rate(count, self.load_window_s())
    }

    /// The payload without Locust's total rows among its entries (see [`is_total_row`]):
    /// `total` already carries the total, and counting the row as an endpoint would double
    /// every aggregated count.
    pub fn without_total_rows(mut self) -> Self {
        self.entries.retain(|e| !is_total_row(e));
        self
    }

    /// Checks the payload's limits and every entry; errors name the JSON path under `path`.
    pub fn validate(&self, path: &str) -> Result<(), ValidationError> {
        if self.entries.len() > MAX_ENTRIES {
            return Err(ValidationError::new(
                format!("{path}.entries"),
                format!("more than {MAX_ENTRIES} entries"),
            ));
        }
        for (i, entry) in self.entries.iter().enumerate() {
            entry.validate(&format!("{path}.entries[{i}]"))?;
        }
        self.total.validate(&format!("{path}.total"))?;
        if let Some(t) = self.stopped_at {
            if !t.is_finite() || t < 0.0 {
                return Err(ValidationError::new(
                    format!("{path}.stoppedAt"),
                    "must be a finite, non-negative number",
                ));
            }
        }
        if self.errors.len() > MAX_ENTRIES {
            return Err(ValidationError::new(
                format!("{path}.errors"),
                format!("more than {MAX_ENTRIES} errors"),
            ));
        }
        for (i, e) in self.errors.iter().enumerate() {
            if e.name.chars().count() > MAX_NAME_LEN {
                return Err(ValidationError::new(
                    format!("{path}.errors[{i}].name"),
                    format!("longer than {MAX_NAME_LEN} characters"),
                ));
            }
        }
        Ok(())
    }
}
