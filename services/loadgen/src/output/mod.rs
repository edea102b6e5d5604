//! What a run shows: the console tables ([`summary`]), the `--threshold` verdicts
//! ([`thresholds`]), and the result files ([`report`] with its time series ([`history`]), CSV
//! ([`csv`]) and HTML ([`html`])). Every response-time percentile any of them shows comes from
//! one [`percentiles::Percentiles`] source, computed in [`percentiles`] only.

pub(crate) mod csv;
pub(crate) mod history;
pub(crate) mod html;
pub(crate) mod percentiles;
pub(crate) mod report;
pub(crate) mod summary;
pub(crate) mod thresholds;
