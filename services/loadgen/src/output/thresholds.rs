//! Pass/fail thresholds (`--threshold 'p95<300ms'`), checked against the final stats.
//!
//! Syntax: `METRIC[NAME] OP VALUE[UNIT]`, spaces allowed, where
//! - METRIC is `p50`…`p100` (any percentile, `p99.9` too), `avg`, `min`, `max`, `median`
//!   (response times, ms), `rps` (requests/s), `fail_ratio` (failures / requests, 0–1, or a
//!   percentage such as `1%`), `failures` or `requests` (counts);
//! - `[NAME]` optionally restricts it to one endpoint (a request name, e.g. `p95[/api/items]`);
//!   without it the `Aggregated` totals are checked;
//! - OP is `<`, `<=`, `>`, `>=`;
//! - a time VALUE takes `us`, `ms` (the default) or `s`.
//!
//! A threshold on an endpoint that never ran fails (`no such endpoint`). Any failed threshold
//! makes `loadgen` exit with code 1.

use std::fmt;

use protocol::{StatsEntry, StatsPayload};
use serde::{Deserialize, Serialize};

use crate::summary::rps;

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
    /// The endpoint (request name), or `None` for the aggregated totals.
    pub name: Option<String>,
    /// The comparison.
    pub op: Op,
    /// The limit, in the metric's unit (ms for times, a fraction for `fail_ratio`).
    pub limit: f64,
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
    /// The measured value in the same unit; `None` when the endpoint never ran.
    pub actual: Option<f64>,
    /// Whether the threshold held.
    pub passed: bool,
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
/// `rps>=100`.
pub fn parse_threshold(text: &str) -> Result<Threshold, String> {
    let expr = text.trim().to_string();
    let compact: String = expr.chars().filter(|c| !c.is_whitespace()).collect();
    let op_at = compact
        .find(['<', '>'])
        .ok_or_else(|| format!("threshold {expr:?}: no comparison; use e.g. p95<300ms or fail_ratio<0.01 (operators: < <= > >=)"))?;
    let (lhs, rest) = compact.split_at(op_at);
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
    let (metric_text, name) = match lhs.find('[') {
        Some(i) => {
            let inner = lhs[i + 1..].strip_suffix(']').ok_or_else(|| {
                format!(
                    "threshold {expr:?}: an endpoint goes in brackets, e.g. p95[/api/items]<300ms"
                )
            })?;
            if inner.is_empty() {
                return Err(format!("threshold {expr:?}: empty endpoint name in []"));
            }
            (&lhs[..i], Some(inner.to_string()))
        }
        None => (lhs, None),
    };
    let metric = parse_metric(&metric_text.to_ascii_lowercase(), &expr)?;
    let limit = parse_limit(metric, value, &expr)?;
    Ok(Threshold {
        expr,
        metric,
        name,
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

fn measure(metric: Metric, e: &StatsEntry, total: &StatsEntry) -> f64 {
    match metric {
        Metric::Percentile(p) => e.percentile(p),
        Metric::Avg => e.avg_response_time(),
        Metric::Min => e.min_response_time.unwrap_or(0.0),
        Metric::Max => e.max_response_time,
        Metric::Rps => rps(e.num_requests, total),
        Metric::FailRatio => {
            if e.num_requests == 0 {
                0.0
            } else {
                e.num_failures as f64 / e.num_requests as f64
            }
        }
        Metric::Failures => e.num_failures as f64,
        Metric::Requests => e.num_requests as f64,
    }
}

/// Checks every threshold against the final stats `p`. `percentile` overrides how response-time
/// percentiles of an entry are computed (e.g. from an HdrHistogram); `None` uses the Locust
/// histogram of the entry.
pub fn evaluate(
    thresholds: &[Threshold],
    p: &StatsPayload,
    percentile: Option<crate::report::PercentileFn<'_>>,
) -> Vec<Verdict> {
    thresholds
        .iter()
        .map(|t| {
            let entry = match &t.name {
                None => Some(&p.total),
                Some(n) => p.entries.iter().find(|e| &e.name == n),
            };
            let actual = entry.map(|e| match (t.metric, percentile) {
                (Metric::Percentile(q), Some(f)) if e.num_requests > 0 => {
                    let key = t
                        .name
                        .as_ref()
                        .map(|_| (e.method.as_str(), e.name.as_str()));
                    f(key, q).unwrap_or_else(|| e.percentile(q))
                }
                _ => measure(t.metric, e, &p.total),
            });
            Verdict {
                threshold: t.expr.clone(),
                metric: metric_name(t.metric),
                name: t
                    .name
                    .clone()
                    .unwrap_or_else(|| protocol::AGGREGATED.to_string()),
                op: t.op,
                limit: t.limit,
                actual,
                passed: actual.is_some_and(|a| t.op.holds(a, t.limit)),
            }
        })
        .collect()
}

/// The `Thresholds` block printed after the summary: one line per verdict, then the count of
/// failures.
pub fn render(verdicts: &[Verdict]) -> String {
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
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms() {
        let t = parse_threshold("p95<300ms").expect("p95");
        assert_eq!(t.metric, Metric::Percentile(0.95));
        assert_eq!((t.op, t.limit, t.name.as_deref()), (Op::Lt, 300.0, None));
        let t = parse_threshold(" fail_ratio < 0.01 ").expect("ratio");
        assert_eq!((t.metric, t.limit), (Metric::FailRatio, 0.01));
        assert_eq!(parse_threshold("fail_ratio<1%").expect("pct").limit, 0.01);
        let t = parse_threshold("p99.9[/api/items]<=1.5s").expect("named");
        assert!(matches!(t.metric, Metric::Percentile(q) if (q - 0.999).abs() < 1e-12));
        assert_eq!(t.name.as_deref(), Some("/api/items"));
        assert_eq!((t.op, t.limit), (Op::Le, 1_500.0));
        assert_eq!(parse_threshold("rps>=100").expect("rps").op, Op::Ge);
        assert_eq!(parse_threshold("avg<250us").expect("us").limit, 0.25);
        assert_eq!(parse_threshold("p95<300").expect("plain ms").limit, 300.0);
    }

    #[test]
    fn bad_thresholds_are_explained() {
        for (bad, says) in [
            ("p95 300ms", "no comparison"),
            ("p95<fast", "not a number"),
            ("latency<3", "unknown metric"),
            ("p0<3", "percentile"),
            ("p101<3", "percentile"),
            ("rps<3ms", "unit"),
            ("p95<3h", "unit"),
            ("p95[/a<3", "brackets"),
        ] {
            let e = parse_threshold(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    fn payload() -> StatsPayload {
        let mut a = StatsEntry::new("GET", "/a", 100.0);
        let mut b = StatsEntry::new("GET", "/b", 100.0);
        for i in 0..100 {
            a.log(f64::from(i + 1), 0, i < 5, 101.0);
            b.log(2.0, 0, false, 102.0);
        }
        StatsPayload::from_entries(vec![a, b], vec![], 2, "stopped")
    }

    #[test]
    fn verdicts() {
        let ts: Vec<Threshold> = [
            "p95[/a]<50ms",
            "p95[/b]<50ms",
            "fail_ratio<0.01",
            "requests>=200",
            "p50[/nope]<1s",
        ]
        .iter()
        .map(|t| parse_threshold(t).expect("valid"))
        .collect();
        let v = evaluate(&ts, &payload(), None);
        assert!(!v[0].passed, "{}", v[0]);
        assert_eq!(v[0].actual, Some(96.0));
        assert!(v[1].passed);
        assert!(!v[2].passed, "5 of 200 failed: {}", v[2]);
        assert_eq!(v[2].actual, Some(0.025));
        assert!(v[3].passed);
        assert!(!v[4].passed && v[4].actual.is_none());
        let text = render(&v);
        assert!(
            text.contains("FAIL p95[/a]<50ms (p95 of /a = 96 ms)"),
            "{text}"
        );
        assert!(text.contains("PASS requests>=200"), "{text}");
        assert!(
            text.contains("3 of 5 thresholds FAILED: p95[/a]<50ms, fail_ratio<0.01, p50[/nope]<1s"),
            "{text}"
        );
        let json = serde_json::to_value(&v[0]).expect("json");
        assert_eq!(json["op"], "<");
        assert_eq!(json["passed"], false);
        // An override of the percentile source is used for percentiles only.
        let hdr = |_: Option<(&str, &str)>, _: f64| Some(7.0);
        let v = evaluate(&ts[..1], &payload(), Some(&hdr));
        assert_eq!(v[0].actual, Some(7.0));
        assert!(v[0].passed);
    }
}
