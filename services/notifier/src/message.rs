//! The Slack message of a finished run: Block Kit blocks and the plain-text `text` fallback
//! that notifications (and clients without blocks) show. Pure: a completed payload in, JSON out.
//!
//! ```text
//! header   ✅ Load test committed: http://target            (❌ … N thresholds failed, ⚠️ expired)
//! section  Target · Tool · Started · Duration · Users · Requests · Failures · Requests/s ·
//!          Response time p50 / p95 / p99 · Nodes             (10 fields, Slack's maximum)
//! section  Thresholds: 1 of 2 failed, one line per node and threshold   (when there are any)
//! section  Open this run in Grafana (link)                   (when a Grafana URL is set)
//! context  Run <uuid> · committed   (expired: why, and that the figures are the last stats)
//! ```
//!
//! Numbers are formatted with fixed rules so anyone can compare them with the stored summary:
//! counts as integers, times in ms and rates per second with one decimal, the failure
//! percentage with two; a value the payload does not have (an older writer's message, a run
//! without requests) shows as `–`. Text from the run (target, tool, threshold expressions) is
//! escaped for mrkdwn (`&`, `<`, `>`), and every text is cut to Slack's length limits.

use chrono::{DateTime, Utc};
use protocol::{CompletedPayload, NodeVerdict};
use serde_json::{json, Value};
use uuid::Uuid;

/// The dashboard's uid and slug (`infra/grafana`, "Load test run").
pub const DASHBOARD_PATH: &str = "/d/loadtest-run/load-test-run";

/// Slack's limit on a header's text, characters.
const HEADER_MAX: usize = 150;
/// Slack's limit on a section field's text, characters.
const FIELD_MAX: usize = 2000;
/// Slack's limit on a section's text is 3000 characters; the threshold list stays below it.
const SECTION_MAX: usize = 2900;
/// Threshold verdicts listed at most (the rest are counted).
const MAX_VERDICTS: usize = 20;
/// What stands for a value the payload does not have.
const UNKNOWN: &str = "–";

/// How far past the run's end the dashboard link reaches, ms: the final snapshot is aligned up
/// to the writer's snapshot interval (15 s by default), so it lies after the end.
const LINK_PAST_END_MS: i64 = 60_000;

/// The Slack message (`{"text": …, "blocks": […]}`) for run `event_id`. `grafana_url` is the
/// base URL of the Grafana that has the dashboard (no trailing `/`); without it there is no link.
pub fn message(event_id: Uuid, run: &CompletedPayload, grafana_url: Option<&str>) -> Value {
    let failed = run.thresholds.iter().filter(|v| !v.verdict.passed).count();
    let (emoji, title) = title(run, failed);
    let target = match run.target_host.as_deref() {
        Some(t) if !t.is_empty() => t,
        _ => "(no target)",
    };
    let link = grafana_url.and_then(|base| dashboard_link(base, event_id, run));

    let mut blocks = vec![json!({
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": truncate(&format!("{emoji} {title}: {target}"), HEADER_MAX),
            "emoji": true,
        },
    })];
    let fields: Vec<Value> = fields(run, target)
        .into_iter()
        .map(|(name, value)| {
            json!({"type": "mrkdwn", "text": truncate(&format!("*{name}*\n{value}"), FIELD_MAX)})
        })
        .collect();
    blocks.push(json!({"type": "section", "fields": fields}));
    if !run.thresholds.is_empty() {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": thresholds_text(&run.thresholds, failed)},
        }));
    }
    if let Some(url) = &link {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("<{}|Open this run in Grafana>", escape(url))},
        }));
    }
    let mut context = format!("Run `{event_id}` · {}", escape(&run.status));
    if run.status == "expired" {
        context.push_str(
            " · no commit came within the writer's expire_after: the figures are those of the \
             last stats received",
        );
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": truncate(&context, FIELD_MAX)}],
    }));

    json!({"text": fallback(event_id, run, target, failed, link.as_deref()), "blocks": blocks})
}

/// The emoji code and title of the header.
fn title(run: &CompletedPayload, failed: usize) -> (&'static str, String) {
    match run.status.as_str() {
        "committed" if failed > 0 => (
            ":x:",
            format!(
                "Load test committed, {failed} threshold{} failed",
                if failed == 1 { "" } else { "s" }
            ),
        ),
        "committed" => (":white_check_mark:", "Load test committed".into()),
        "expired" => (":warning:", "Load test expired".into()),
        other => (":information_source:", format!("Load test {other}")),
    }
}

/// The section's fields, as (name, mrkdwn value): ten, Slack's maximum.
fn fields(run: &CompletedPayload, target: &str) -> Vec<(&'static str, String)> {
    let started = run
        .started_at
        .map(slack_date)
        .unwrap_or_else(|| UNKNOWN.into());
    let failures = match run.failure_pct {
        Some(pct) => format!("{} ({pct:.2} %)", run.failures),
        None => run.failures.to_string(),
    };
    let times = match &run.response_time_ms {
        Some(p) => format!("{:.1} / {:.1} / {:.1} ms", p.p50, p.p95, p.p99),
        None => UNKNOWN.into(),
    };
    vec![
        ("Target", escape(target)),
        ("Tool", text_or_unknown(run.tool.as_deref())),
        ("Started", started),
        ("Duration", duration(run.duration_s)),
        ("Users", or_unknown(run.users)),
        ("Requests", run.requests.to_string()),
        ("Failures", failures),
        (
            "Requests/s",
            run.rps.map_or(UNKNOWN.into(), |r| format!("{r:.1}")),
        ),
        ("Response time p50 / p95 / p99", times),
        ("Nodes", run.nodes.to_string()),
    ]
}

/// `*Thresholds:* 1 of 2 failed` and one line per verdict, failed ones first, each with the
/// measured value and the limit, in ms for time metrics (and the node, when several nodes
/// judged thresholds).
fn thresholds_text(verdicts: &[NodeVerdict], failed: usize) -> String {
    let several_nodes = verdicts.iter().any(|v| v.node_id != verdicts[0].node_id);
    let mut ordered: Vec<&NodeVerdict> = verdicts.iter().collect();
    ordered.sort_by_key(|v| v.verdict.passed);
    let mut text = if failed == 0 {
        format!("*Thresholds:* all {} passed", verdicts.len())
    } else {
        format!("*Thresholds:* {failed} of {} failed", verdicts.len())
    };
    for (i, v) in ordered.iter().enumerate() {
        let line = verdict_line(v, several_nodes);
        if i == MAX_VERDICTS || text.chars().count() + line.chars().count() + 40 > SECTION_MAX {
            text.push_str(&format!("\n… and {} more", ordered.len() - i));
            break;
        }
        text.push('\n');
        text.push_str(&line);
    }
    text
}

fn verdict_line(v: &NodeVerdict, with_node: bool) -> String {
    let t = &v.verdict;
    let icon = if t.passed {
        ":white_check_mark:"
    } else {
        ":x:"
    };
    // A backtick would end the code span early.
    let expr = truncate(&escape(&t.threshold.replace('`', "'")), 200);
    // Times are in ms; ratios and counts have no unit. An older verdict names no metric.
    let unit = match t.metric.as_deref() {
        Some(m) if m.starts_with('p') || matches!(m, "avg" | "min" | "max" | "median") => " ms",
        _ => "",
    };
    let value = |v: Option<f64>| v.map_or(UNKNOWN.into(), |v| format!("{}{unit}", number(v)));
    let mut line = format!(
        "{icon} `{expr}` actual {}, limit {}",
        value(t.actual),
        value(t.limit)
    );
    if with_node {
        line.push_str(&format!(" (node {})", truncate(&escape(&v.node_id), 100)));
    }
    line
}

/// The plain-text fallback: the header and the key figures in one line.
fn fallback(
    event_id: Uuid,
    run: &CompletedPayload,
    target: &str,
    failed: usize,
    link: Option<&str>,
) -> String {
    let (emoji, title) = title(run, failed);
    let mut text = format!(
        "{emoji} {title}: {} ({}), {} requests",
        escape(target),
        text_or_unknown(run.tool.as_deref()),
        run.requests
    );
    if let Some(pct) = run.failure_pct {
        text.push_str(&format!(", {pct:.2} % failed"));
    }
    if let Some(rps) = run.rps {
        text.push_str(&format!(", {rps:.1} requests/s"));
    }
    if let Some(p) = &run.response_time_ms {
        text.push_str(&format!(
            ", p50/p95/p99 {:.1}/{:.1}/{:.1} ms",
            p.p50, p.p95, p.p99
        ));
    }
    match (run.thresholds.len(), failed) {
        (0, _) => {}
        (n, 0) => text.push_str(&format!(", thresholds: all {n} passed")),
        (n, failed) => text.push_str(&format!(", thresholds: {failed} of {n} failed")),
    }
    text.push_str(&format!(". Run {event_id}"));
    if let Some(url) = link {
        text.push_str(&format!(": <{}|dashboard>", escape(url)));
    }
    truncate(&text, 3000)
}

/// The dashboard for run `event_id` over its time range (from its start to a minute past its
/// end), when the start is known: `{base}/d/loadtest-run/load-test-run?var-run=…&from=…&to=…`.
pub fn dashboard_link(base: &str, event_id: Uuid, run: &CompletedPayload) -> Option<String> {
    let start = run.started_at?.timestamp_millis();
    let duration_ms = if run.duration_s.is_finite() {
        (run.duration_s.max(0.0) * 1000.0).round() as i64
    } else {
        0
    };
    let to = start + duration_ms + LINK_PAST_END_MS;
    Some(format!(
        "{}{DASHBOARD_PATH}?var-run={}&from={start}&to={to}",
        base.trim_end_matches('/'),
        event_id.hyphenated()
    ))
}

/// `<!date^…>`: Slack shows the time in the reader's time zone, the fallback in UTC.
fn slack_date(t: DateTime<Utc>) -> String {
    format!(
        "<!date^{}^{{date_short_pretty}} {{time_secs}}|{}>",
        t.timestamp(),
        t.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

/// A duration: `12.5 s` below a minute, `3 min 05 s` below an hour, `2 h 03 min` above.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return UNKNOWN.into();
    }
    if seconds < 60.0 {
        return format!("{seconds:.1} s");
    }
    let whole = seconds.round() as u64;
    if whole < 3600 {
        format!("{} min {:02} s", whole / 60, whole % 60)
    } else {
        format!("{} h {:02} min", whole / 3600, (whole % 3600) / 60)
    }
}

/// A measured value: an integer as such, else at most three decimals.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn or_unknown(v: Option<u64>) -> String {
    v.map_or(UNKNOWN.into(), |v| v.to_string())
}

fn text_or_unknown(v: Option<&str>) -> String {
    match v {
        Some(s) if !s.is_empty() => escape(s),
        _ => UNKNOWN.into(),
    }
}

/// `&`, `<` and `>` as HTML entities: Slack's control characters in mrkdwn.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `s` cut to `max` characters, the last one an ellipsis when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests;
