//! Scenario files (`--scenario FILE`, TOML): weighted requests with method, path, headers, body,
//! a name to group them under, the expected status, and the users' think time.
//!
//! ```toml
//! think_time = "100ms"                 # pause between a user's requests; or
//! # think_time = { min = "50ms", max = "250ms" }   (uniformly random)
//!
//! [headers]                            # sent with every request
//! Authorization = "Bearer abc"
//!
//! [[request]]
//! path = "/"
//! weight = 3                           # relative share (default 1)
//!
//! [[request]]
//! name = "create item"                 # stats group (default: the path)
//! method = "POST"                      # default GET
//! path = "/api/items"
//! headers = { Content-Type = "application/json" }
//! body = '{"name": "apple"}'
//! expect_status = 201                  # or [200, 201]; default: any status below 400
//! ```
//!
//! Errors name the file, the line and column, and the field (`request[2].path`). Weights are
//! turned into a fixed, interleaved schedule (smooth weighted round robin), and the `k`-th request
//! of the run takes slot `k` of it, so a run of `-n N` requests splits exactly by weight.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde::Deserialize;
use toml::Spanned;

use crate::cli::{parse_duration, parse_path};

/// Longest schedule (sum of the weights divided by their greatest common divisor).
pub(crate) const MAX_SCHEDULE: u64 = 100_000;

/// One kind of request the users send.
#[derive(Debug, Clone)]
pub(crate) struct RequestSpec {
    /// HTTP method.
    pub(crate) method: Method,
    /// Stats name (defaults to the path).
    pub(crate) name: String,
    /// The path (with query), as given.
    pub(crate) path: String,
    /// Full URL (host + path); filled in by [`Scenario::resolve`].
    pub(crate) url: Option<Url>,
    /// The fast path's prepared target (`http://` URLs only); filled in by
    /// [`Scenario::resolve`].
    pub(crate) fast: Option<super::fasthttp::FastTarget>,
    /// Extra headers (scenario-wide ones included).
    pub(crate) headers: HeaderMap,
    /// Request body.
    pub(crate) body: Option<bytes::Bytes>,
    /// Statuses that count as success; empty: any status below 400.
    pub(crate) expect_status: Vec<u16>,
    /// Relative share.
    pub(crate) weight: u64,
}

impl RequestSpec {
    /// A plain GET of `path` (what `--path` makes).
    pub(crate) fn get(path: &str) -> Self {
        Self {
            method: Method::GET,
            name: path.to_string(),
            path: path.to_string(),
            url: None,
            fast: None,
            headers: HeaderMap::new(),
            body: None,
            expect_status: Vec::new(),
            weight: 1,
        }
    }

    /// `None` when `status` is a success for this request, else the error text
    /// (`HTTP 404`, or `HTTP 200 (expected 201)`).
    pub(crate) fn check_status(&self, status: u16) -> Option<String> {
        if self.expect_status.is_empty() {
            (status >= 400).then(|| format!("HTTP {status}"))
        } else if self.expect_status.contains(&status) {
            None
        } else {
            let want: Vec<String> = self.expect_status.iter().map(u16::to_string).collect();
            Some(format!("HTTP {status} (expected {})", want.join(" or ")))
        }
    }
}

/// Pause between two requests of one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ThinkTime {
    /// Shortest pause.
    pub(crate) min: Duration,
    /// Longest pause (equal to `min` for a fixed pause).
    pub(crate) max: Duration,
}

impl ThinkTime {
    /// A pause drawn uniformly from `[min, max]`.
    pub(crate) fn sample(&self) -> Duration {
        if self.max <= self.min {
            return self.min;
        }
        use rand::Rng as _;
        let span = (self.max - self.min).as_secs_f64();
        self.min + Duration::from_secs_f64(rand::thread_rng().gen_range(0.0..=span))
    }

    /// Whether there is no pause at all.
    pub(crate) fn is_zero(&self) -> bool {
        self.max.is_zero()
    }
}

/// What the users do: weighted requests and think time.
#[derive(Debug, Clone)]
pub(crate) struct Scenario {
    /// The requests, in file order.
    pub(crate) requests: Vec<RequestSpec>,
    /// Pause between a user's requests.
    pub(crate) think_time: ThinkTime,
    /// Index into `requests` of every slot of the weighted schedule.
    pub(crate) schedule: Vec<usize>,
}

impl Scenario {
    /// Equal shares of GETs of `paths` (`--path`), no think time.
    pub(crate) fn from_paths(paths: &[String]) -> anyhow::Result<Self> {
        let requests: Vec<RequestSpec> = paths.iter().map(|p| RequestSpec::get(p)).collect();
        anyhow::ensure!(!requests.is_empty(), "no paths to request");
        let schedule = (0..requests.len()).collect();
        Ok(Self {
            requests,
            think_time: ThinkTime::default(),
            schedule,
        })
    }

    /// Reads and checks a scenario file.
    pub(crate) fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read scenario file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}:{e}", path.display()))
    }

    /// Parses scenario TOML; errors read `LINE:COLUMN: FIELD: what is wrong`.
    #[allow(clippy::too_many_lines)] // TODO(issue 22): split into phases
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let raw: RawScenario = toml::from_str(text).map_err(|e| {
            let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            format!("{line}:{col}: {}", e.message().trim())
        })?;
        let at = |span: std::ops::Range<usize>, field: &str, msg: String| {
            let (line, col) = line_col(text, span.start);
            format!("{line}:{col}: {field}: {msg}")
        };
        let think_time = match &raw.think_time {
            None => ThinkTime::default(),
            Some(t) => {
                let span = t.span();
                let field = "think_time";
                match t.get_ref() {
                    RawThink::Fixed(s) => {
                        let d = parse_duration(s).map_err(|e| at(span.clone(), field, e))?;
                        ThinkTime { min: d, max: d }
                    }
                    RawThink::Range { min, max } => {
                        let min = parse_duration(min).map_err(|e| at(span.clone(), field, e))?;
                        let max = parse_duration(max).map_err(|e| at(span.clone(), field, e))?;
                        if max < min {
                            return Err(at(span, field, "max is shorter than min".into()));
                        }
                        ThinkTime { min, max }
                    }
                }
            }
        };
        let common = headers(&raw.headers, "headers", &at)?;
        if raw.request.is_empty() {
            return Err(
                "1:1: request: the file has no [[request]] table; add at least one with a path"
                    .into(),
            );
        }
        let mut requests = Vec::new();
        for (i, r) in raw.request.iter().enumerate() {
            let field = |f: &str| format!("request[{}].{f}", i + 1);
            let path =
                parse_path(r.path.get_ref()).map_err(|e| at(r.path.span(), &field("path"), e))?;
            let method = match &r.method {
                None => Method::GET,
                Some(m) => {
                    let upper = m.get_ref().to_ascii_uppercase();
                    match upper.as_str() {
                        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS" => {
                            Method::from_bytes(upper.as_bytes())
                                .map_err(|e| at(m.span(), &field("method"), e.to_string()))?
                        }
                        _ => {
                            return Err(at(
                                m.span(),
                                &field("method"),
                                format!("unknown method {:?}; use GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS", m.get_ref()),
                            ))
                        }
                    }
                }
            };
            let weight = match &r.weight {
                None => 1,
                Some(w) => {
                    let v = *w.get_ref();
                    if !(1..=10_000).contains(&v) {
                        return Err(at(
                            w.span(),
                            &field("weight"),
                            format!("{v} is out of range; use a whole number from 1 to 10000"),
                        ));
                    }
                    v as u64
                }
            };
            let expect_status = match &r.expect_status {
                None => Vec::new(),
                Some(s) => {
                    let list = match s.get_ref() {
                        RawStatus::One(n) => vec![*n],
                        RawStatus::Many(v) => v.clone(),
                    };
                    if list.is_empty() {
                        return Err(at(s.span(), &field("expect_status"), "empty list".into()));
                    }
                    list.iter()
                        .map(|&n| {
                            u16::try_from(n)
                                .ok()
                                .filter(|n| (100..=599).contains(n))
                                .ok_or_else(|| {
                                    at(
                                        s.span(),
                                        &field("expect_status"),
                                        format!("{n} is not an HTTP status (100-599)"),
                                    )
                                })
                        })
                        .collect::<Result<Vec<u16>, String>>()?
                }
            };
            let mut hdrs = common.clone();
            for (k, v) in headers(&r.headers, &field("headers"), &at)? {
                if let Some(k) = k {
                    hdrs.insert(k, v);
                }
            }
            let name = match &r.name {
                Some(n) if n.get_ref().trim().is_empty() => {
                    return Err(at(n.span(), &field("name"), "must not be empty".into()))
                }
                Some(n) => n.get_ref().clone(),
                None => path.clone(),
            };
            requests.push(RequestSpec {
                method,
                name,
                path,
                url: None,
                fast: None,
                headers: hdrs,
                body: r.body.as_ref().map(|b| bytes::Bytes::from(b.clone())),
                expect_status,
                weight,
            });
        }
        let weights: Vec<u64> = requests.iter().map(|r| r.weight).collect();
        let schedule = weighted_schedule(&weights).map_err(|e| format!("1:1: request: {e}"))?;
        Ok(Self {
            requests,
            think_time,
            schedule,
        })
    }

    /// Fills in every request's URL under `host`.
    pub(crate) fn resolve(&mut self, host: &Url) -> anyhow::Result<()> {
        let base = host.as_str().trim_end_matches('/');
        for r in &mut self.requests {
            let url = Url::parse(&format!("{base}{}", r.path))
                .map_err(|e| anyhow::anyhow!("invalid path {:?} for host {host}: {e}", r.path))?;
            r.fast = super::fasthttp::FastTarget::of(&url, &r.method, &r.headers, r.body.as_ref());
            r.url = Some(url);
        }
        Ok(())
    }

    /// The request the `ticket`-th request of the run sends.
    pub(crate) fn pick(&self, ticket: u64) -> &RequestSpec {
        let slot = usize::try_from(ticket % self.schedule.len().max(1) as u64).unwrap_or(0);
        let idx = self.schedule.get(slot).copied().unwrap_or(0);
        &self.requests[idx.min(self.requests.len() - 1)]
    }
}

fn headers(
    raw: &Option<Spanned<BTreeMap<String, String>>>,
    field: &str,
    at: &dyn Fn(std::ops::Range<usize>, &str, String) -> String,
) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    let Some(raw) = raw else {
        return Ok(map);
    };
    for (k, v) in raw.get_ref() {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
            at(
                raw.span(),
                field,
                format!("{k:?} is not a valid header name"),
            )
        })?;
        let value = HeaderValue::from_str(v).map_err(|_| {
            at(
                raw.span(),
                field,
                format!("the value of {k:?} is not a valid header value"),
            )
        })?;
        map.insert(name, value);
    }
    Ok(map)
}

/// 1-based line and column of byte offset `at` in `text`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The slots of a smooth weighted round robin over `weights` (divided by their gcd): each
/// index appears `weight` times, spread out.
pub(crate) fn weighted_schedule(weights: &[u64]) -> Result<Vec<usize>, String> {
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let w: Vec<i64> = weights.iter().map(|x| (x / g) as i64).collect();
    let total: i64 = w.iter().sum();
    if total as u64 > MAX_SCHEDULE {
        return Err(format!(
            "the weights add up to {total} after dividing by their common divisor; keep it under {MAX_SCHEDULE}"
        ));
    }
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..w.len() {
            current[i] += w[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best);
    }
    Ok(out)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    think_time: Option<Spanned<RawThink>>,
    headers: Option<Spanned<BTreeMap<String, String>>>,
    #[serde(default)]
    request: Vec<RawRequest>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawThink {
    Fixed(String),
    Range { min: String, max: String },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawStatus {
    One(i64),
    Many(Vec<i64>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    name: Option<Spanned<String>>,
    method: Option<Spanned<String>>,
    path: Spanned<String>,
    weight: Option<Spanned<i64>>,
    headers: Option<Spanned<BTreeMap<String, String>>>,
    body: Option<String>,
    expect_status: Option<Spanned<RawStatus>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
think_time = { min = "10ms", max = "20ms" }

[headers]
X-Team = "perf"

[[request]]
path = "/"
weight = 3

[[request]]
name = "create item"
method = "post"
path = "/api/items"
headers = { Content-Type = "application/json" }
body = '{"name": "apple"}'
expect_status = [200, 201]
"#;

    #[test]
    fn parses_a_scenario() {
        let s = Scenario::parse(GOOD).expect("valid");
        assert_eq!(s.requests.len(), 2);
        assert_eq!(s.requests[0].name, "/");
        assert_eq!(s.requests[0].weight, 3);
        assert_eq!(s.requests[1].method, Method::POST);
        assert_eq!(s.requests[1].name, "create item");
        assert_eq!(s.requests[1].headers["content-type"], "application/json");
        assert_eq!(s.requests[1].headers["x-team"], "perf");
        assert_eq!(s.requests[0].headers["x-team"], "perf");
        assert_eq!(
            s.requests[1].body.as_deref(),
            Some(&b"{\"name\": \"apple\"}"[..])
        );
        assert_eq!(s.requests[1].check_status(201), None);
        assert_eq!(
            s.requests[1].check_status(404).as_deref(),
            Some("HTTP 404 (expected 200 or 201)")
        );
        assert_eq!(s.requests[0].check_status(500).as_deref(), Some("HTTP 500"));
        assert_eq!(s.think_time.min, Duration::from_millis(10));
        assert_eq!(s.think_time.max, Duration::from_millis(20));
        assert_eq!(s.schedule, [0, 0, 1, 0]);
        let fixed =
            Scenario::parse("think_time = \"1s\"\n[[request]]\npath = \"/\"\n").expect("fixed");
        assert_eq!(fixed.think_time.min, Duration::from_secs(1));
    }

    #[test]
    fn errors_name_line_column_and_field() {
        for (text, says) in [
            (
                "[[request]]\npath = \"/\"\nmethdo = \"GET\"\n",
                "3:1: unknown field `methdo`",
            ),
            ("[[request]]\nmethod = \"GET\"\n", "missing field `path`"),
            (
                "[[request]]\npath = \"nope\"\n",
                "2:8: request[1].path: path \"nope\" must start with '/'",
            ),
            (
                "[[request]]\npath = \"/\"\n\n[[request]]\npath = \"/b\"\nweight = 0\n",
                "6:10: request[2].weight: 0 is out of range",
            ),
            (
                "[[request]]\npath = \"/\"\nmethod = \"FETCH\"\n",
                "3:10: request[1].method: unknown method \"FETCH\"",
            ),
            (
                "[[request]]\npath = \"/\"\nexpect_status = 999\n",
                "3:17: request[1].expect_status: 999 is not an HTTP status",
            ),
            (
                "think_time = \"soon\"\n[[request]]\npath = \"/\"\n",
                "1:14: think_time: invalid duration",
            ),
            (
                "[[request]]\npath = \"/\"\nweight = \"3\"\n",
                "3:10: invalid type: string \"3\", expected i64",
            ),
            ("path = \"/\"\n", "1:1: unknown field `path`"),
            ("", "no [[request]] table"),
        ] {
            let e = Scenario::parse(text).expect_err(text);
            assert!(e.contains(says), "{text:?}:\n{e}\nshould contain {says:?}");
        }
    }

    #[test]
    fn schedule_follows_the_weights() {
        let s = weighted_schedule(&[6, 2, 2]).expect("schedule");
        assert_eq!(s.len(), 5);
        assert_eq!(s.iter().filter(|&&i| i == 0).count(), 3);
        assert!(weighted_schedule(&[100_000, 1]).is_err());
        let sc =
            Scenario::parse("[[request]]\npath = \"/a\"\nweight = 2\n[[request]]\npath = \"/b\"\n")
                .expect("valid");
        let picks: Vec<&str> = (0..6).map(|k| sc.pick(k).path.as_str()).collect();
        assert_eq!(picks, ["/a", "/b", "/a", "/a", "/b", "/a"]);
    }
}
