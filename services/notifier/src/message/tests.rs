//! The message's blocks and fallback for committed, failed-threshold, expired and old-writer
//! payloads, escaping and Slack's limits.

use chrono::{DateTime, Utc};
use protocol::{CompletedPayload, NodeVerdict, Percentiles, ThresholdOp, ThresholdVerdict};
use serde_json::Value;
use uuid::Uuid;

use super::*;

const ID: Uuid = Uuid::from_u128(0x0123_4567_89ab_4def_8123_4567_89ab_cdef);

fn started() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-29T08:00:00Z")
        .expect("time")
        .with_timezone(&Utc)
}

fn committed() -> CompletedPayload {
    CompletedPayload {
        status: "committed".into(),
        duration_s: 35.26,
        requests: 1234,
        failures: 56,
        nodes: 1,
        target_host: Some("http://t:8080".into()),
        tool: Some("loadgen".into()),
        started_at: Some(started()),
        users: Some(4),
        rps: Some(35.0123),
        failure_pct: Some(4.538_087_520_259_319),
        response_time_ms: Some(Percentiles {
            p50: 1.26,
            p95: 12.0,
            p99: 40.44,
        }),
        thresholds: Vec::new(),
    }
}

fn verdict(node: &str, threshold: &str, passed: bool) -> NodeVerdict {
    NodeVerdict {
        node_id: node.into(),
        verdict: ThresholdVerdict {
            threshold: threshold.into(),
            metric: Some("p95".into()),
            name: None,
            op: Some(ThresholdOp::Lt),
            passed,
            actual: Some(31.2346),
            limit: Some(5.0),
        },
    }
}

fn header(m: &Value) -> &str {
    assert_eq!(m["blocks"][0]["type"], "header");
    m["blocks"][0]["text"]["text"]
        .as_str()
        .expect("header text")
}

/// The fields of the first section, as (name, value).
fn fields(m: &Value) -> Vec<(String, String)> {
    m["blocks"][1]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| {
            let text = f["text"].as_str().expect("text");
            let (name, value) = text.split_once('\n').expect("name and value");
            (name.trim_matches('*').to_string(), value.to_string())
        })
        .collect()
}

fn block_of_type<'a>(m: &'a Value, ty: &str) -> Vec<&'a Value> {
    m["blocks"]
        .as_array()
        .expect("blocks")
        .iter()
        .filter(|b| b["type"] == ty)
        .collect()
}

#[test]
fn committed_run_shows_every_figure() {
    let m = message(ID, &committed(), Some("https://grafana.example.com/"));
    assert_eq!(
        header(&m),
        ":white_check_mark: Load test committed: http://t:8080"
    );
    let expected = [
        ("Target", "http://t:8080"),
        ("Tool", "loadgen"),
        (
            "Started",
            "<!date^1795939200^{date_short_pretty} {time_secs}|2026-11-29 08:00:00 UTC>",
        ),
        ("Duration", "35.3 s"),
        ("Users", "4"),
        ("Requests", "1234"),
        ("Failures", "56 (4.54 %)"),
        ("Requests/s", "35.0"),
        ("Response time p50 / p95 / p99", "1.3 / 12.0 / 40.4 ms"),
        ("Nodes", "1"),
    ];
    let got = fields(&m);
    let got: Vec<(&str, &str)> = got.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(got, expected);
    // No thresholds: no thresholds section. The link, then the run id.
    let sections = block_of_type(&m, "section");
    assert_eq!(sections.len(), 2, "{m:#}");
    assert_eq!(
        sections[1]["text"]["text"],
        "<https://grafana.example.com/d/loadtest-run/load-test-run?var-run=01234567-89ab-4def-8123-456789abcdef&amp;from=1795939200000&amp;to=1795939295260|Open this run in Grafana>"
    );
    let context = block_of_type(&m, "context");
    assert_eq!(
        context[0]["elements"][0]["text"],
        "Run `01234567-89ab-4def-8123-456789abcdef` · committed"
    );
    let text = m["text"].as_str().expect("fallback");
    assert_eq!(
        text,
        ":white_check_mark: Load test committed: http://t:8080 (loadgen), 1234 requests, 4.54 % failed, \
         35.0 requests/s, p50/p95/p99 1.3/12.0/40.4 ms. Run 01234567-89ab-4def-8123-456789abcdef: \
         <https://grafana.example.com/d/loadtest-run/load-test-run?var-run=01234567-89ab-4def-8123-456789abcdef&amp;from=1795939200000&amp;to=1795939295260|dashboard>"
    );
}

#[test]
fn dashboard_link_covers_the_run_and_its_final_snapshot() {
    let link = dashboard_link("http://g:3000", ID, &committed()).expect("link");
    assert_eq!(
        link,
        "http://g:3000/d/loadtest-run/load-test-run?var-run=01234567-89ab-4def-8123-456789abcdef&from=1795939200000&to=1795939295260"
    );
    let mut old = committed();
    old.started_at = None;
    assert_eq!(
        dashboard_link("http://g", ID, &old),
        None,
        "no start, no link"
    );
    let m = message(ID, &committed(), None);
    assert_eq!(
        block_of_type(&m, "section").len(),
        1,
        "no Grafana URL, no link"
    );
    assert!(!m["text"].as_str().expect("text").contains("dashboard"));
}

#[test]
fn failed_thresholds_are_in_the_header_and_listed_first() {
    let mut run = committed();
    let mut ratio = verdict("a", "fail_ratio<0.01", true);
    ratio.verdict.metric = Some("fail_ratio".into());
    run.thresholds = vec![ratio, verdict("a", "p95<5ms", false)];
    let m = message(ID, &run, None);
    assert_eq!(
        header(&m),
        ":x: Load test committed, 1 threshold failed: http://t:8080"
    );
    let sections = block_of_type(&m, "section");
    assert_eq!(
        sections[1]["text"]["text"],
        "*Thresholds:* 1 of 2 failed\n\
         :x: `p95<5ms` actual 31.235 ms, limit 5 ms\n\
         :white_check_mark: `fail_ratio<0.01` actual 31.235, limit 5"
            .replace('<', "&lt;")
    );
    assert!(m["text"]
        .as_str()
        .expect("text")
        .contains(", thresholds: 1 of 2 failed."));

    // Several nodes: each line names its node.
    run.thresholds = vec![verdict("a", "p95<5ms", true), verdict("b", "p95<5ms", true)];
    let m = message(ID, &run, None);
    assert_eq!(
        header(&m),
        ":white_check_mark: Load test committed: http://t:8080"
    );
    let text = block_of_type(&m, "section")[1]["text"]["text"]
        .as_str()
        .expect("text")
        .to_string();
    assert!(text.starts_with("*Thresholds:* all 2 passed\n"), "{text}");
    assert!(m["text"]
        .as_str()
        .expect("text")
        .contains(", thresholds: all 2 passed."));
    assert!(
        text.contains("limit 5 ms (node a)\n") && text.ends_with("(node b)"),
        "{text}"
    );
}

#[test]
fn expired_run_says_so() {
    let mut run = committed();
    run.status = "expired".into();
    let m = message(ID, &run, None);
    assert_eq!(header(&m), ":warning: Load test expired: http://t:8080");
    let context = block_of_type(&m, "context")[0]["elements"][0]["text"]
        .as_str()
        .expect("context")
        .to_string();
    assert!(
        context.contains("· expired · no commit came within"),
        "{context}"
    );
}

#[test]
fn an_older_writers_payload_shows_what_it_has() {
    let run = CompletedPayload {
        status: "committed".into(),
        duration_s: 40.0,
        requests: 33,
        failures: 4,
        nodes: 1,
        target_host: None,
        tool: None,
        started_at: None,
        users: None,
        rps: None,
        failure_pct: None,
        response_time_ms: None,
        thresholds: Vec::new(),
    };
    let m = message(ID, &run, Some("http://g"));
    assert_eq!(
        header(&m),
        ":white_check_mark: Load test committed: (no target)"
    );
    let f = fields(&m);
    let value = |name: &str| {
        f.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .expect("field")
    };
    assert_eq!(value("Tool"), "–");
    assert_eq!(value("Started"), "–");
    assert_eq!(value("Users"), "–");
    assert_eq!(value("Failures"), "4");
    assert_eq!(value("Requests/s"), "–");
    assert_eq!(value("Response time p50 / p95 / p99"), "–");
    assert_eq!(
        m["text"],
        ":white_check_mark: Load test committed: (no target) (–), 33 requests. Run 01234567-89ab-4def-8123-456789abcdef"
    );
}

#[test]
fn run_text_is_escaped_and_cut_to_slacks_limits() {
    let mut run = committed();
    run.target_host = Some(format!("http://a&b/<x>{}", "y".repeat(300)));
    run.thresholds = (0..30)
        .map(|i| verdict(&format!("n{i}"), &format!("p95[`/x`]<{i}ms"), false))
        .collect();
    let m = message(ID, &run, None);
    let h = header(&m);
    assert_eq!(h.chars().count(), 150, "{h}");
    assert!(
        h.ends_with('…') && h.contains("http://a&b/<x>"),
        "plain text: {h}"
    );
    let f = fields(&m);
    assert!(
        f[0].1.starts_with("http://a&amp;b/&lt;x&gt;yyy"),
        "{:?}",
        f[0]
    );
    assert!(f.len() <= 10);
    let thresholds = block_of_type(&m, "section")[1]["text"]["text"]
        .as_str()
        .expect("text")
        .to_string();
    assert!(thresholds.len() <= 3000);
    assert!(thresholds.ends_with("\n… and 10 more"), "{thresholds}");
    assert!(
        thresholds.contains(":x: `p95['/x']&lt;0ms` actual"),
        "{thresholds}"
    );
    for b in m["blocks"].as_array().expect("blocks") {
        for f in b["fields"].as_array().into_iter().flatten() {
            assert!(f["text"].as_str().expect("text").chars().count() <= 2000);
        }
    }
}

#[test]
fn durations_and_numbers() {
    assert_eq!(duration(0.0), "0.0 s");
    assert_eq!(duration(59.94), "59.9 s");
    assert_eq!(duration(61.0), "1 min 01 s");
    assert_eq!(duration(3599.4), "59 min 59 s");
    assert_eq!(duration(7385.0), "2 h 03 min");
    assert_eq!(duration(f64::NAN), "–");
    assert_eq!(number(5.0), "5");
    assert_eq!(number(0.01), "0.01");
    assert_eq!(number(31.2346), "31.235");
    assert_eq!(escape("a&b<c>"), "a&amp;b&lt;c&gt;");
}
