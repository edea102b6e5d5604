//! Pass/fail thresholds (`--threshold 'p95<300ms'`), checked against the final stats.
//!
//! Syntax: `METRIC[NAME] OP VALUE[UNIT]`, spaces allowed, where
//! - METRIC is `p50`…`p100` (any percentile, `p99.9` too), `avg`, `min`, `max`, `median`
//!   (response times, ms), `rps` (requests/s), `fail_ratio` (failures / requests, 0–1, or a
//!   percentage such as `1%`), `failures` or `requests` (counts);
//! - `[NAME]` optionally restricts it to the requests of that name (e.g. `p95[/api/items]`),
//!   every method combined (their histograms merged) when several methods share the name;
//!   `[METHOD NAME]` to one method (`p95[GET /api/items]`); without brackets the `Aggregated`
//!   totals are checked;
//! - OP is `<`, `<=`, `>`, `>=`;
//! - a time VALUE takes `us`, `ms` (the default) or `s`.
//!
//! A threshold over no data fails: on an endpoint that never ran (`no such endpoint`), or on
//! requests that are not there (verdict `no data`: the run or the endpoint had no requests).
//! Any failed threshold makes `loadgen` exit with code 1.

use std::borrow::Cow;
use std::fmt;

use protocol::{StatsEntry, StatsPayload};
use serde::{Deserialize, Serialize};

use super::percentiles::{Percentiles, Scope};
use super::summary::rps;

/// What a threshold measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// A response-time percentile, as a fraction (0.95 for `p95`), ms.
    Percentile(f64),
    /// Mean response time, ms.
    Avg,
    /// Fastest response, ms.
    Min,
    /// Slowest response, ms.
    Max,
    /// Requests per second over the run.
    Rps,
    /// Failures divided by requests (0 when there were no requests).
    FailRatio,
    /// Failed requests.
    Failures,
    /// Requests.
    Requests,
}

impl Metric {
    fn is_time(self) -> bool {
        matches!(
            self,
            Metric::Percentile(_) | Metric::Avg | Metric::Min | Metric::Max
        )
    }
}

/// A comparison (the pipeline's own type, carried in the verdicts).
pub use protocol::ThresholdOp as Op;

/// One parsed `--threshold`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// The text as given.
    pub expr: String,
    /// What is measured.
    pub metric: Metric,
    /// Which requests are checked.
    pub target: Target,
    /// The comparison.
    pub op: Op,
    /// The limit, in the metric's unit (ms for times, a fraction for `fail_ratio`).
    pub limit: f64,
}

/// Which requests a threshold checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every request: the `Aggregated` totals (no brackets).
    Total,
    /// The requests of this name, every method combined: `p95[/api/items]`.
    Name(String),
    /// The requests of one method and name: `p95[GET /api/items]`.
    Endpoint {
        /// The HTTP method (`GET`).
        method: String,
        /// The request name.
        name: String,
    },
}

impl Target {
    /// The target in brackets: `METHOD NAME` when the first word is an upper-case method,
    /// else a name (which may hold spaces, as a scenario's `name = "create item"`).
    fn parse(inner: &str) -> Self {
        match inner.split_once(char::is_whitespace) {
            Some((method, name))
                if method.bytes().all(|b| b.is_ascii_uppercase()) && !name.trim().is_empty() =>
            {
                Target::Endpoint {
                    method: method.to_string(),
                    name: name.trim().to_string(),
                }
            }
            _ => Target::Name(inner.to_string()),
        }
    }

    /// How verdicts name it: `Aggregated`, `/api/items`, `GET /api/items`.
    pub fn label(&self) -> String {
        match self {
            Target::Total => protocol::AGGREGATED.to_string(),
            Target::Name(name) => name.clone(),
            Target::Endpoint { method, name } => format!("{method} {name}"),
        }
    }

    /// The stats this target stands for in `p` and the scope of their percentiles; `None` when
    /// no endpoint matches. Several methods of one name are merged into one entry.
    fn select<'a>(&self, p: &'a StatsPayload) -> Option<(Cow<'a, StatsEntry>, Scope)> {
        let named = |name: &str| {
            let mut matching = p.entries.iter().filter(|e| e.name == name);
            let first = matching.next()?;
            let mut rest = matching.peekable();
            if rest.peek().is_none() {
                return Some((Cow::Borrowed(first), Scope::Endpoint));
            }
            let mut merged = first.clone();
            merged.method = String::new();
            for e in rest {
                merged.merge(e);
            }
            Some((Cow::Owned(merged), Scope::Name))
        };
        match self {
            Target::Total => Some((Cow::Borrowed(&p.total), Scope::Total)),
            Target::Name(name) => named(name),
            Target::Endpoint { method, name } => p
                .entries
                .iter()
                .find(|e| &e.method == method && &e.name == name)
                .map(|e| (Cow::Borrowed(e), Scope::Endpoint))
                // A name that only looks like `METHOD NAME` (`name = "GET items"`).
                .or_else(|| named(&self.label())),
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

/// The outcome of one threshold, printed after the summary and carried in the commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// The threshold as given (`p95<300ms`).
    pub threshold: String,
    /// The metric's name (`p95`, `fail_ratio`, …).
    pub metric: String,
    /// The endpoint checked, or `Aggregated`.
    pub name: String,
    /// The comparison.
    pub op: Op,
    /// The limit (ms for times, a fraction for `fail_ratio`).
    pub limit: f64,
    /// The measured value in the same unit; `None` when nothing was measured (no requests,
    /// or no such endpoint): the threshold then fails.
    pub actual: Option<f64>,
    /// Whether the threshold held.
    pub passed: bool,
    /// The verdict in a word: `pass`, `fail`, `no data` or `no such endpoint`.
    pub outcome: Outcome,
}

/// A threshold's verdict in a word. A threshold over no data fails: a limit nothing was
/// measured against has not been met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Measured, and the limit held.
    #[serde(rename = "pass")]
    Pass,
    /// Measured, and the limit did not hold.
    #[serde(rename = "fail")]
    Fail,
    /// The endpoint (or the run) had no requests: nothing to measure.
    #[serde(rename = "no data")]
    NoData,
    /// No endpoint of that name ran.
    #[serde(rename = "no such endpoint")]
    NoSuchEndpoint,
}

impl Outcome {
    /// `pass`, `fail`, `no data`, `no such endpoint`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::NoData => "no data",
            Outcome::NoSuchEndpoint => "no such endpoint",
        }
    }
}

/// The verdict as the pipeline carries it in a commit, through the API or AMQP: the one place
/// a [`Verdict`] becomes a [`protocol::ThresholdVerdict`].
impl From<&Verdict> for protocol::ThresholdVerdict {
    fn from(v: &Verdict) -> Self {
        Self {
            threshold: v.threshold.clone(),
            metric: Some(v.metric.clone()),
            name: Some(v.name.clone()),
            op: Some(v.op),
            limit: Some(v.limit),
            actual: v.actual,
            passed: v.passed,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = if self.passed { "PASS" } else { "FAIL" };
        match self.actual {
            Some(a) => {
                let unit = if metric_is_time(&self.metric) {
                    " ms"
                } else {
                    ""
                };
                write!(
                    f,
                    "{word} {} ({} of {} = {}{unit})",
                    self.threshold,
                    self.metric,
                    self.name,
                    fmt_value(a)
                )
            }
            None if self.outcome == Outcome::NoData => write!(
                f,
                "{word} {} (no data: {} had no requests)",
                self.threshold, self.name
            ),
            None => write!(
                f,
                "{word} {} (no such endpoint: {})",
                self.threshold, self.name
            ),
        }
    }
}

fn metric_is_time(m: &str) -> bool {
    m.starts_with('p') || matches!(m, "avg" | "min" | "max" | "median")
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

fn metric_name(m: Metric) -> String {
    match m {
        Metric::Percentile(p) => {
            let pct = p * 100.0;
            let s = format!("{pct:.4}");
            format!("p{}", s.trim_end_matches('0').trim_end_matches('.'))
        }
        Metric::Avg => "avg".into(),
        Metric::Min => "min".into(),
        Metric::Max => "max".into(),
        Metric::Rps => "rps".into(),
        Metric::FailRatio => "fail_ratio".into(),
        Metric::Failures => "failures".into(),
        Metric::Requests => "requests".into(),
    }
}

fn parse_metric(text: &str, expr: &str) -> Result<Metric, String> {
    let m = match text {
        "avg" | "mean" => Metric::Avg,
        "min" => Metric::Min,
        "max" => Metric::Max,
        "median" | "med" => Metric::Percentile(0.5),
        "rps" => Metric::Rps,
        "fail_ratio" | "failure_ratio" | "error_rate" => Metric::FailRatio,
        "failures" | "fails" => Metric::Failures,
        "requests" | "reqs" => Metric::Requests,
        p if p.starts_with('p') => {
            let pct: f64 = p[1..].parse().map_err(|_| bad_metric(text, expr))?;
            if !(pct > 0.0 && pct <= 100.0) {
                return Err(format!(
                    "threshold {expr:?}: percentile {text:?} must be between p0 (excluded) and p100"
                ));
            }
            Metric::Percentile(pct / 100.0)
        }
        _ => return Err(bad_metric(text, expr)),
    };
    Ok(m)
}

fn bad_metric(text: &str, expr: &str) -> String {
    format!(
        "threshold {expr:?}: unknown metric {text:?}; use p50..p100 (e.g. p95, p99.9), avg, min, max, median, rps, fail_ratio, failures or requests"
    )
}

/// Parses `--threshold` text such as `p95<300ms`, `fail_ratio<0.01`, `p99[/api/items]<=1s`,
/// `p95[GET /api/items]<200ms`, `rps>=100`.
pub(crate) fn parse_threshold(text: &str) -> Result<Threshold, String> {
    let expr = text.trim().to_string();
    let no_comparison = || {
        format!("threshold {expr:?}: no comparison; use e.g. p95<300ms or fail_ratio<0.01 (operators: < <= > >=)")
    };
    let brackets =
        || format!("threshold {expr:?}: an endpoint goes in brackets, e.g. p95[/api/items]<300ms");
    // What is in brackets keeps its inner spaces (`GET /x`); elsewhere spaces are ignored.
    let (lhs, inner, rest) = match expr.find(['[', '<', '>']) {
        Some(open) if expr[open..].starts_with('[') => {
            let close = expr.rfind(']').filter(|&c| c > open).ok_or_else(brackets)?;
            let rest = expr[close + 1..].trim_start();
            if rest.is_empty() {
                return Err(no_comparison());
            }
            if !rest.starts_with(['<', '>']) {
                return Err(brackets());
            }
            (&expr[..open], Some(expr[open + 1..close].trim()), rest)
        }
        Some(op_at) => (&expr[..op_at], None, &expr[op_at..]),
        None => return Err(no_comparison()),
    };
    let compact = |s: &str| -> String { s.chars().filter(|c| !c.is_whitespace()).collect() };
    let rest = compact(rest);
    let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
        (Op::Le, v)
    } else if let Some(v) = rest.strip_prefix(">=") {
        (Op::Ge, v)
    } else if let Some(v) = rest.strip_prefix('<') {
        (Op::Lt, v)
    } else if let Some(v) = rest.strip_prefix('>') {
        (Op::Gt, v)
    } else {
        return Err(format!("threshold {expr:?}: bad operator"));
    };
    let target = match inner {
        None => Target::Total,
        Some("") => return Err(format!("threshold {expr:?}: empty endpoint name in []")),
        Some(inner) => Target::parse(inner),
    };
    let metric = parse_metric(&compact(lhs).to_ascii_lowercase(), &expr)?;
    let limit = parse_limit(metric, value, &expr)?;
    Ok(Threshold {
        expr,
        metric,
        target,
        op,
        limit,
    })
}

fn parse_limit(metric: Metric, value: &str, expr: &str) -> Result<f64, String> {
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+' || c == 'e'))
        .unwrap_or(value.len());
    let (num, unit) = value.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("threshold {expr:?}: {value:?} is not a number"))?;
    if !n.is_finite() {
        return Err(format!("threshold {expr:?}: the limit must be finite"));
    }
    let factor = match (metric, unit) {
        (m, "" | "ms") if m.is_time() => 1.0,
        (m, "s") if m.is_time() => 1_000.0,
        (m, "us" | "µs") if m.is_time() => 0.001,
        (Metric::FailRatio, "%") => 0.01,
        (_, "") => 1.0,
        (m, u) => {
            return Err(format!(
                "threshold {expr:?}: unit {u:?} does not fit {}; {}",
                metric_name(m),
                if m.is_time() {
                    "use us, ms or s"
                } else if m == Metric::FailRatio {
                    "use a fraction (0.01) or a percentage (1%)"
                } else {
                    "use a plain number"
                }
            ))
        }
    };
    Ok(n * factor)
}

/// The value of `metric` for the requests `e` stands for (`scope`), percentiles from
/// `percentiles`.
fn measure(
    metric: Metric,
    e: &StatsEntry,
    scope: Scope,
    p: &StatsPayload,
    percentiles: &dyn Percentiles,
) -> Option<f64> {
    // No requests: nothing was measured, whatever the metric (a count of 0 is "no data" too,
    // so `requests<10` cannot pass on a run that sent nothing).
    if e.num_requests == 0 {
        return None;
    }
    Some(match metric {
        Metric::Percentile(q) => percentiles.percentile(e, scope, q),
        Metric::Avg => e.avg_response_time(),
        Metric::Min => e.min_response_time.unwrap_or(0.0),
        Metric::Max => e.max_response_time,
        Metric::Rps => rps(e.num_requests, p),
        Metric::FailRatio => {
            if e.num_requests == 0 {
                0.0
            } else {
                e.num_failures as f64 / e.num_requests as f64
            }
        }
        Metric::Failures => e.num_failures as f64,
        Metric::Requests => e.num_requests as f64,
    })
}

/// Checks every threshold against the final stats `p`, response-time percentiles from
/// `percentiles`.
pub(crate) fn evaluate(
    thresholds: &[Threshold],
    p: &StatsPayload,
    percentiles: &dyn Percentiles,
) -> Vec<Verdict> {
    thresholds
        .iter()
        .map(|t| {
            let selected = t.target.select(p);
            let found = selected.is_some();
            let actual =
                selected.and_then(|(e, scope)| measure(t.metric, &e, scope, p, percentiles));
            Verdict {
                threshold: t.expr.clone(),
                metric: metric_name(t.metric),
                name: t.target.label(),
                op: t.op,
                limit: t.limit,
                actual,
                passed: actual.is_some_and(|a| t.op.holds(a, t.limit)),
                outcome: match actual {
                    Some(a) if t.op.holds(a, t.limit) => Outcome::Pass,
                    Some(_) => Outcome::Fail,
                    None if found => Outcome::NoData,
                    None => Outcome::NoSuchEndpoint,
                },
            }
        })
        .collect()
}

/// The `Thresholds` block printed after the summary: one line per verdict, then the count of
/// failures.
pub(crate) fn render(verdicts: &[Verdict]) -> String {
    let mut out = String::from("Thresholds\n");
    for v in verdicts {
        out.push_str(&format!("  {v}\n"));
    }
    let failed = verdicts.iter().filter(|v| !v.passed).count();
    if failed == 0 {
        out.push_str(&format!("All {} thresholds passed.\n", verdicts.len()));
    } else {
        out.push_str(&format!(
            "{failed} of {} thresholds FAILED: {}\n",
            verdicts.len(),
            verdicts
                .iter()
                .filter(|v| !v.passed)
                .map(|v| v.threshold.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests;
