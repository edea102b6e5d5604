//! The Locust-like end-of-run report: request table, percentile table and error report, and the
//! one-line progress status.

use std::fmt::Write as _;
use std::time::Duration;

use protocol::{StatsEntry, StatsPayload};

use super::percentiles::{percentile_label, Percentiles, Scope, PERCENTILES};

/// `count` requests (or failures) per second over the run's load window (first user started →
/// load stopped): [`StatsPayload::rate`], the one definition the stored points use too.
pub(crate) fn rps(count: u64, p: &StatsPayload) -> f64 {
    p.rate(count)
}

/// Average response size of `e`, bytes (0 without requests).
pub(crate) fn avg_content(e: &StatsEntry) -> f64 {
    if e.num_requests == 0 {
        0.0
    } else {
        e.total_content_length as f64 / e.num_requests as f64
    }
}

fn name_width(p: &StatsPayload) -> usize {
    p.entries
        .iter()
        .map(|e| e.name.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(20, 60)
}

fn truncate(name: &str, width: usize) -> String {
    if name.chars().count() <= width {
        name.to_string()
    } else {
        let head: String = name.chars().take(width.saturating_sub(3)).collect();
        format!("{head}...")
    }
}

fn request_row(out: &mut String, e: &StatsEntry, p: &StatsPayload, w: usize) {
    let rates = (rps(e.num_requests, p), rps(e.num_failures, p));
    request_row_with_rates(out, e, rates, w);
}

fn request_row_with_rates(out: &mut String, e: &StatsEntry, (rps, fail_rps): (f64, f64), w: usize) {
    let fail_pct = if e.num_requests == 0 {
        0.0
    } else {
        e.num_failures as f64 * 100.0 / e.num_requests as f64
    };
    let fails = format!("{}({:.2}%)", e.num_failures, fail_pct);
    let _ = writeln!(
        out,
        "{:<8} {:<w$} {:>8} {:>14} | {:>7.0} {:>7.0} {:>7.0} {:>7.0} | {:>8.2} {:>11.2}",
        e.method,
        truncate(&e.name, w),
        e.num_requests,
        fails,
        e.avg_response_time(),
        e.min_response_time.unwrap_or(0.0),
        e.max_response_time,
        e.percentile(0.5),
        rps,
        fail_rps,
    );
}

/// A response time for a 7-wide column: two decimals below 10 ms, one below 100 ms, whole
/// ms above.
pub(crate) fn fmt_ms_cell(v: f64) -> String {
    if v < 10.0 && v.fract() != 0.0 {
        format!("{v:.2}")
    } else if v < 100.0 && v.fract() != 0.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

fn percentile_row(out: &mut String, e: &StatsEntry, total: bool, w: usize, pf: &dyn Percentiles) {
    let _ = write!(out, "{:<8} {:<w$}", e.method, truncate(&e.name, w));
    for p in PERCENTILES {
        if e.num_requests == 0 {
            let _ = write!(out, " {:>7}", "N/A");
        } else {
            let v = pf.percentile(e, Scope::row(total), p);
            let _ = write!(out, " {:>7}", fmt_ms_cell(v));
        }
    }
    let _ = writeln!(out, " {:>8}", e.num_requests);
}

fn table_header(w: usize) -> (String, String) {
    let header = format!(
        "{:<8} {:<w$} {:>8} {:>14} | {:>7} {:>7} {:>7} {:>7} | {:>8} {:>11}",
        "Type", "Name", "# reqs", "# fails", "Avg", "Min", "Max", "Med", "req/s", "failures/s"
    );
    let rule = format!(
        "{}|{}|{}|{}|{}|{}",
        "-".repeat(8),
        "-".repeat(w),
        "-".repeat(8),
        "-".repeat(15),
        "-".repeat(33),
        "-".repeat(21)
    );
    (header, rule)
}

/// The live stats table printed every stats interval in headless mode, as Locust prints it:
/// a status line, then per endpoint and `Total` the cumulative counts and response times (ms)
/// and the *current* requests/s and failures/s (over the interval since `previous`, which is
/// `interval` old). The total row is named `Total` (not `Aggregated`) so the final summary's
/// `Aggregated` row stays the only one in a run's output.
pub(crate) fn live_table(
    elapsed: Duration,
    p: &StatsPayload,
    previous: Option<&StatsPayload>,
    interval: Duration,
) -> String {
    let w = name_width(p);
    let secs = elapsed.as_secs();
    let interval_s = interval.as_secs_f64().max(0.001);
    let rates = |e: &StatsEntry, prev: Option<&StatsEntry>| {
        let (r0, f0) = prev.map_or((0, 0), |x| (x.num_requests, x.num_failures));
        (
            e.num_requests.saturating_sub(r0) as f64 / interval_s,
            e.num_failures.saturating_sub(f0) as f64 / interval_s,
        )
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "[{:02}:{:02}:{:02}] users {} ({})",
        secs / 3_600,
        secs / 60 % 60,
        secs % 60,
        p.user_count,
        p.state
    );
    let (header, rule) = table_header(w);
    let _ = writeln!(out, "{header}");
    let _ = writeln!(out, "{rule}");
    for e in &p.entries {
        let prev = previous.and_then(|q| {
            q.entries
                .iter()
                .find(|x| x.name == e.name && x.method == e.method)
        });
        request_row_with_rates(&mut out, e, rates(e, prev), w);
    }
    let _ = writeln!(out, "{rule}");
    let mut total = p.total.clone();
    total.name = "Total".to_string();
    request_row_with_rates(
        &mut out,
        &total,
        rates(&p.total, previous.map(|q| &q.total)),
        w,
    );
    out
}

/// The report printed at the end of a run: the request table (per endpoint, then `Aggregated`),
/// the response-time percentile table (ms, from `pf`), and the error report when there were
/// errors.
pub(crate) fn render(p: &StatsPayload, pf: &dyn Percentiles) -> String {
    let w = name_width(p);
    let mut out = String::new();
    let (header, rule) = table_header(w);
    let _ = writeln!(out, "{header}");
    let _ = writeln!(out, "{rule}");
    for e in &p.entries {
        request_row(&mut out, e, p, w);
    }
    let _ = writeln!(out, "{rule}");
    request_row(&mut out, &p.total, p, w);
    let _ = writeln!(out);

    let _ = writeln!(out, "Response time percentiles ({})", pf.heading(&p.total));
    let _ = write!(out, "{:<8} {:<w$}", "Type", "Name");
    for p in PERCENTILES {
        let _ = write!(out, " {:>7}", percentile_label(p));
    }
    let _ = writeln!(out, " {:>8}", "# reqs");
    let prule = format!(
        "{}|{}|{}|{}",
        "-".repeat(8),
        "-".repeat(w),
        "-".repeat(8 * PERCENTILES.len() - 1),
        "-".repeat(8)
    );
    let _ = writeln!(out, "{prule}");
    for e in &p.entries {
        percentile_row(&mut out, e, false, w, pf);
    }
    let _ = writeln!(out, "{prule}");
    percentile_row(&mut out, &p.total, true, w, pf);

    if !p.errors.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "Error report");
        let _ = writeln!(out, "{:<14} | Error", "# occurrences");
        let _ = writeln!(out, "{}|{}", "-".repeat(15), "-".repeat(60));
        let mut errors = p.errors.clone();
        errors.sort_by_key(|e| std::cmp::Reverse(e.occurrences));
        for e in &errors {
            let _ = writeln!(
                out,
                "{:<14} | {} {}: {}",
                e.occurrences, e.method, e.name, e.error
            );
        }
    }
    out
}

/// The one-line progress status printed every stats interval:
/// `[elapsed] users N (state) | requests N | rps N | failures N (P%)`, where rps is the rate
/// since the previous line.
pub(crate) fn progress_line(
    elapsed: Duration,
    p: &StatsPayload,
    previous_requests: u64,
    interval: Duration,
) -> String {
    let total = &p.total;
    let interval_s = interval.as_secs_f64().max(0.001);
    let rps = total.num_requests.saturating_sub(previous_requests) as f64 / interval_s;
    let fail_pct = if total.num_requests == 0 {
        0.0
    } else {
        total.num_failures as f64 * 100.0 / total.num_requests as f64
    };
    let secs = elapsed.as_secs();
    format!(
        "[{:02}:{:02}:{:02}] users {} ({}) | requests {} | {:.1} req/s | failures {} ({:.2}%)",
        secs / 3_600,
        secs / 60 % 60,
        secs % 60,
        p.user_count,
        p.state,
        total.num_requests,
        rps,
        total.num_failures,
        fail_pct
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::ErrorEntry;

    fn payload() -> StatsPayload {
        let mut a = StatsEntry::new("GET", "/", 100.0);
        let mut b = StatsEntry::new("GET", "/api/flaky", 100.0);
        for i in 0..10 {
            a.log(10.0 * (i + 1) as f64, 5, false, 102.0);
            b.log(5.0, 0, i == 0, 104.0);
        }
        let errors = vec![ErrorEntry {
            method: "GET".into(),
            name: "/api/flaky".into(),
            error: "HTTP 500".into(),
            occurrences: 1,
        }];
        let mut p = StatsPayload::from_entries(vec![a, b], errors, 3, "stopped");
        p.stopped_at = Some(104.0);
        p
    }

    #[test]
    fn report_has_rows_totals_percentiles_and_errors() {
        let text = render(&payload(), &super::super::percentiles::Recorded);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("Type"), "{text}");
        assert!(lines[0].contains("# reqs") && lines[0].contains("failures/s"));
        let agg = lines
            .iter()
            .find(|l| l.contains("Aggregated") && l.contains('|'))
            .expect("aggregated row");
        let cols: Vec<&str> = agg.split_whitespace().collect();
        assert_eq!(cols[1], "20", "{agg}");
        assert_eq!(cols[2], "1(5.00%)", "{agg}");
        // 20 requests over 4 s.
        assert!(agg.contains("5.00"), "{agg}");
        assert!(text.contains("99.9%") && text.contains("99.99%") && text.contains("100%"));
        let p_row = lines
            .iter()
            .rev()
            .find(|l| l.contains("Aggregated"))
            .expect("percentile aggregated");
        assert!(p_row.trim_end().ends_with("20"), "{p_row}");
        assert!(text.contains("GET /api/flaky: HTTP 500"), "{text}");
    }

    #[test]
    fn live_table_shows_current_rates_and_a_total_row() {
        let now = payload();
        let mut before = payload();
        before.entries[0].num_requests = 4;
        before.total.num_requests = 14;
        let text = live_table(
            Duration::from_secs(12),
            &now,
            Some(&before),
            Duration::from_secs(2),
        );
        assert!(text.starts_with("[00:00:12] users 3 (stopped)"), "{text}");
        assert!(!text.contains("Aggregated"), "{text}");
        let total = text
            .lines()
            .find(|l| l.trim_start().starts_with("Total"))
            .expect("total row");
        // 20 - 14 = 6 requests over 2 s.
        assert!(total.contains(" 3.00 "), "{total}");
        let first = text.lines().find(|l| l.contains(" / ")).expect("/ row");
        assert!(first.contains(" 3.00 "), "{first}");
    }

    #[test]
    fn progress() {
        let line = progress_line(
            Duration::from_secs(65),
            &payload(),
            10,
            Duration::from_secs(5),
        );
        assert_eq!(
            line,
            "[00:01:05] users 3 (stopped) | requests 20 | 2.0 req/s | failures 1 (5.00%)"
        );
    }
}
