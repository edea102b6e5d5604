//! The Grafana dashboard (`infra/grafana/dashboards/loadtest.json`) against real recorded runs.
//!
//! Two runs go through loadgen → loadtest-api → RabbitMQ → loadtest-writer → InfluxDB 1.x: a
//! baseline (`/`, `/items`, one passing threshold) and the run under test (`/`, `/fail`, a
//! passing and a failing threshold). Then every variable, panel and annotation query is taken
//! out of the dashboard JSON, its variables are substituted as Grafana 11 substitutes them for
//! InfluxQL, and it runs against the test's database. Each must return rows, with the columns
//! its panel uses and values that match the runs. Grafana itself does not run here: what
//! Grafana does with the rows (transformations, links, rendering) rests on its documentation.
//!
//! Needs RabbitMQ on 127.0.0.1:5672 and InfluxDB 1.x on 127.0.0.1:8086; `bash .ci/run` starts
//! them.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use loadtest_e2e::*;
use serde_json::{Map, Value};

const DASHBOARD: &str = include_str!("../../../infra/grafana/dashboards/loadtest.json");
const DATASOURCE_UID: &str = "loadtest-influxdb";

// ---------------------------------------------------------------------------------------------
// Grafana's substitution rules for the InfluxDB (InfluxQL) data source
// ---------------------------------------------------------------------------------------------

/// What Grafana substitutes into a query: the selected variable values, the time range and
/// the panel's interval.
struct GrafanaContext {
    /// Variable name → selected value (single-value variables: not multi, no "All").
    vars: BTreeMap<String, String>,
    from_ms: i64,
    to_ms: i64,
    interval_ms: i64,
}

impl GrafanaContext {
    /// The query as Grafana sends it: template variables first (the front end, formatted by
    /// the data source's `interpolateQueryExpr`), then `$timeFilter`, `$interval`,
    /// `$__interval_ms` and `$__interval` (the InfluxQL back end, `models/query.go`).
    fn interpolate(&self, query: &str) -> String {
        let mut out = self.replace_variables(query);
        let time_filter = format!("time >= {}ms and time <= {}ms", self.from_ms, self.to_ms);
        let interval = format_interval(self.interval_ms);
        out = out.replace("$timeFilter", &time_filter);
        out = out.replace("$interval", &interval);
        out = out.replace("$__interval_ms", &self.interval_ms.to_string());
        out.replace("$__interval", &interval)
    }

    /// `$name` and `${name}` of known variables (Grafana's variable regex takes the longest
    /// run of word characters after `$`); anything else is left for the back end.
    fn replace_variables(&self, query: &str) -> String {
        let mut out = String::with_capacity(query.len());
        let mut rest = query;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            let (name, len) = if let Some(braced) = after.strip_prefix('{') {
                match braced.find('}') {
                    Some(end) => (&braced[..end], end + 2),
                    None => ("", 0),
                }
            } else {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            };
            match self.vars.get(name) {
                Some(value) if len > 0 => {
                    out.push_str(&influx_regular_escape(value));
                    rest = &after[len..];
                }
                _ => {
                    out.push('$');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// `influxRegularEscape`: a value that `parseFloat` reads as a number is used as it is, any
/// other is regex-escaped (`escapeRegex` of `@grafana/data`).
fn influx_regular_escape(value: &str) -> String {
    if js_parse_float_is_number(value) {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if "\\^$*+?.()|[]{}/".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Whether JavaScript's `parseFloat` finds a number at the start of `s`.
fn js_parse_float_is_number(s: &str) -> bool {
    let s = s.trim_start();
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_digit() => true,
        Some('.') => chars.next().is_some_and(|c| c.is_ascii_digit()),
        _ => s.starts_with("Infinity"),
    }
}

/// Grafana's `rangeutil.roundInterval` (the steps a query interval is rounded to).
fn round_interval(ms: i64) -> i64 {
    const STEPS: [(i64, i64); 22] = [
        (15, 10),
        (35, 20),
        (75, 50),
        (150, 100),
        (350, 200),
        (750, 500),
        (1_500, 1_000),
        (3_500, 2_000),
        (7_500, 5_000),
        (12_500, 10_000),
        (17_500, 15_000),
        (25_000, 20_000),
        (45_000, 30_000),
        (90_000, 60_000),
        (210_000, 120_000),
        (450_000, 300_000),
        (750_000, 600_000),
        (1_050_000, 900_000),
        (1_500_000, 1_200_000),
        (2_700_000, 1_800_000),
        (5_400_000, 3_600_000),
        (9_000_000, 7_200_000),
    ];
    STEPS
        .iter()
        .find(|(below, _)| ms < *below)
        .map(|(_, step)| *step)
        .unwrap_or(10_800_000)
}

/// `gtime.FormatInterval` of Grafana's back end.
fn format_interval(ms: i64) -> String {
    const UNITS: [(i64, &str); 5] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
        (1, "ms"),
    ];
    UNITS
        .iter()
        .find(|(size, _)| ms >= *size)
        .map(|(size, unit)| format!("{}{unit}", ms / size))
        .unwrap_or_else(|| "1ms".into())
}

// ---------------------------------------------------------------------------------------------
// Running a query
// ---------------------------------------------------------------------------------------------

/// One series of an InfluxQL answer.
#[derive(Debug)]
struct Series {
    tags: Map<String, Value>,
    columns: Vec<String>,
    values: Vec<Vec<Value>>,
}

/// The rows of every series, with the series' tags as columns (as Grafana's table format
/// shows them).
fn rows(series: &[Series]) -> Vec<Map<String, Value>> {
    let mut out = Vec::new();
    for s in series {
        for vals in &s.values {
            let mut row = s.tags.clone();
            for (c, v) in s.columns.iter().zip(vals) {
                row.insert(c.clone(), v.clone());
            }
            out.push(row);
        }
    }
    out
}

async fn run_influxql(db: &str, query: &str) -> anyhow::Result<Vec<Series>> {
    let v = influx_query(db, query).await?;
    let result = &v["results"][0];
    if let Some(e) = result["error"].as_str() {
        bail!("InfluxQL error {e:?} for {query}");
    }
    let mut out = Vec::new();
    for s in result["series"].as_array().cloned().unwrap_or_default() {
        out.push(Series {
            tags: s["tags"].as_object().cloned().unwrap_or_default(),
            columns: s["columns"]
                .as_array()
                .map(|c| {
                    c.iter()
                        .map(|x| x.as_str().unwrap_or_default().to_string())
                        .collect()
                })
                .unwrap_or_default(),
            values: s["values"]
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .map(|r| r.as_array().cloned().unwrap_or_default())
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    Ok(out)
}

/// A variable's options as Grafana's InfluxQL data source makes them: `SHOW TAG VALUES` gives
/// its `value` column, a `SELECT` its first column after `time`; in row order, without
/// repeats.
fn variable_options(query: &str, series: &[Series]) -> Vec<String> {
    let show_tag_values = query.to_lowercase().contains("show tag values");
    let mut out: Vec<String> = Vec::new();
    for s in series {
        let col = if show_tag_values {
            s.columns.iter().position(|c| c == "value")
        } else {
            s.columns.iter().position(|c| c != "time")
        };
        for row in &s.values {
            let text = match col.and_then(|i| row.get(i)) {
                Some(Value::String(t)) => t.clone(),
                Some(Value::Null) | None => "null".into(),
                Some(other) => other.to_string(),
            };
            if !out.contains(&text) {
                out.push(text);
            }
        }
    }
    out
}

/// A variable's regex applied to its options as Grafana does: options that do not match are
/// dropped; named groups `text` and `value` split an option into what is shown and what is
/// substituted (either defaults to the other); without named groups, the first group (or the
/// whole match) is both. Returns `(text, value)` pairs.
fn apply_variable_regex(
    options: Vec<String>,
    regex: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    if regex.is_empty() {
        return Ok(options.into_iter().map(|o| (o.clone(), o)).collect());
    }
    let pattern = regex
        .strip_prefix('/')
        .and_then(|r| r.rsplit_once('/'))
        .map(|(body, _flags)| body)
        .with_context(|| format!("variable regex {regex:?} is not /…/"))?;
    let re = regex::Regex::new(pattern).with_context(|| format!("variable regex {regex:?}"))?;
    let mut out = Vec::new();
    for o in options {
        let Some(c) = re.captures(&o) else { continue };
        let text = c.name("text").map(|m| m.as_str().to_string());
        let value = c.name("value").map(|m| m.as_str().to_string());
        let (text, value) = match (text, value) {
            (Some(t), Some(v)) => (t, v),
            (Some(t), None) => (t.clone(), t),
            (None, Some(v)) => (v.clone(), v),
            (None, None) => {
                let m = c
                    .get(1)
                    .or_else(|| c.get(0))
                    .map(|m| m.as_str().to_string());
                let m = m.unwrap_or_default();
                (m.clone(), m)
            }
        };
        out.push((text, value));
    }
    Ok(out)
}

fn num(row: &Map<String, Value>, col: &str) -> anyhow::Result<f64> {
    row.get(col)
        .and_then(Value::as_f64)
        .with_context(|| format!("no number in column {col:?} of {row:?}"))
}

fn text<'a>(row: &'a Map<String, Value>, col: &str) -> anyhow::Result<&'a str> {
    row.get(col)
        .and_then(Value::as_str)
        .with_context(|| format!("no text in column {col:?} of {row:?}"))
}

fn has_columns(rows: &[Map<String, Value>], cols: &[&str]) -> anyhow::Result<()> {
    for r in rows {
        for c in cols {
            ensure!(r.contains_key(*c), "column {c:?} missing in {r:?}");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Clean-up
// ---------------------------------------------------------------------------------------------

/// Drops the test's database and deletes its exchanges and queues when dropped (also when the
/// test fails). Declared before the processes, so it runs after they are stopped.
struct Cleanup {
    db: String,
    exchange: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let db = self.db.clone();
        let x = self.exchange.clone();
        // Dropped inside the test's runtime: clean up on a thread with a runtime of its own.
        let done = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let _ = influx_query("", &format!("DROP DATABASE \"{db}\"")).await;
                if let Ok(conn) = amqp_connect(AMQP_URL).await {
                    if let Ok(ch) = conn.create_channel().await {
                        for q in [format!("{x}.writer"), format!("{x}.dead")] {
                            let _ = ch
                                .queue_delete(&q, lapin::options::QueueDeleteOptions::default())
                                .await;
                        }
                        for e in [x.clone(), format!("{x}.dlx"), format!("{x}.status")] {
                            let _ = ch
                                .exchange_delete(
                                    &e,
                                    lapin::options::ExchangeDeleteOptions::default(),
                                )
                                .await;
                        }
                    }
                    let _ = conn.close(200, "dashboard test done").await;
                }
            });
        });
        let _ = done.join();
    }
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

/// One recorded run: its id, start (Unix ns, the event point's time) and loadgen's own
/// request counts.
struct Recorded {
    uuid: String,
    start_ns: i64,
    counts: BTreeMap<String, u64>,
}

/// The pipeline the runs go through.
struct Pipeline<'a> {
    stack: &'a Stack,
    api: &'a str,
    target: &'a str,
    db: &'a str,
}

/// Runs loadgen through the API with `paths` and `thresholds`; waits for the final record.
async fn record_run(
    p: &Pipeline<'_>,
    name: &str,
    paths: &[&str],
    thresholds: &[&str],
    expect_exit: i32,
) -> anyhow::Result<Recorded> {
    let Pipeline {
        stack,
        api,
        target,
        db,
    } = *p;
    let mut args = vec![
        "--host",
        target,
        "-u",
        "2",
        "-r",
        "2",
        "-t",
        "8s",
        "--consumer-host",
        api,
        "--api-key",
        &stack.api_key,
        "--stats-interval",
        "1s",
        "--only-summary",
    ];
    for p in paths {
        args.extend(["--path", p]);
    }
    for t in thresholds {
        args.extend(["--threshold", t]);
    }
    let mut loadgen = Proc::start(name, "loadgen", &args, &[])?;
    let exit = loadgen.wait(Duration::from_secs(90))?;
    let out = loadgen.output();
    ensure!(
        exit.code() == Some(expect_exit),
        "{name}: exit code {expect_exit} expected, got {exit}:\n{out}"
    );
    let uuid = registered_run(&out).with_context(|| format!("no registered run in:\n{out}"))?;
    let mut counts = BTreeMap::new();
    for p in paths {
        let n = summary_row_requests(&out, p).with_context(|| format!("no {p} row:\n{out}"))?;
        counts.insert(p.to_string(), n);
    }
    let total = summary_requests(&out).with_context(|| format!("no Aggregated row:\n{out}"))?;
    counts.insert("Aggregated".into(), total);
    aggregated_summary(db, &uuid, "requests").await?;
    let event = influx_rows(
        db,
        &format!("SELECT \"status\" FROM \"loadtest_event\" WHERE \"event_id\" = '{uuid}'"),
    )
    .await?;
    let start_ns = event
        .first()
        .and_then(|r| r["time"].as_i64())
        .with_context(|| format!("no event point for {uuid}"))?;
    Ok(Recorded {
        uuid,
        start_ns,
        counts,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_the_recorded_runs() -> anyhow::Result<()> {
    require_service("127.0.0.1:5672", "rabbitmq-server -detached");
    require_service(
        "127.0.0.1:8086",
        "influxd -config /etc/influxdb/influxdb.conf &",
    );
    let dashboard: Value = serde_json::from_str(DASHBOARD).context("dashboard JSON")?;
    build_binaries()?;

    let stack = Stack::new("dash");
    let db = stack.db();
    let _cleanup = Cleanup {
        db: db.clone(),
        exchange: stack.exchange.clone(),
    };
    influx_create_db(&db).await?;
    let _writer = stack.start_v1_writer("writer-dash", &db, 2)?;
    let (_api, api) = stack.start_api()?;
    // 20 ms per answer keeps two users at about 100 requests/s; `/fail` answers 500.
    let target = start_slow_target(Duration::from_millis(20)).await?;

    let pipeline = Pipeline {
        stack: &stack,
        api: &api,
        target: &target.url,
        db: &db,
    };
    let baseline = record_run(
        &pipeline,
        "loadgen-dash-baseline",
        &["/", "/items"],
        &["p95<60000ms"],
        0,
    )
    .await?;
    let run = record_run(
        &pipeline,
        "loadgen-dash-run",
        &["/", "/fail"],
        &["p95<60000ms", "fail_ratio<0.01"],
        1,
    )
    .await?;
    ensure!(run.start_ns > baseline.start_ns, "runs out of order");

    // The dashboard as a user opens it: the time range covers both runs, the newest run is
    // selected and compared with the one before it (a query variable's default is its first
    // option).
    let from_ms = baseline.start_ns / 1_000_000 - 60_000;
    let to_ms = now_ns() / 1_000_000 + 60_000;
    let mut ctx = GrafanaContext {
        vars: BTreeMap::new(),
        from_ms,
        to_ms,
        // A panel 1000 px wide: Grafana's interval is the range over the data points, rounded.
        interval_ms: round_interval((to_ms - from_ms) / 1000),
    };
    let mut report: Vec<(String, usize)> = Vec::new();

    // -- Variables, in dashboard order (later ones use the earlier ones' values) ---------------
    for var in dashboard["templating"]["list"]
        .as_array()
        .context("templating.list")?
    {
        let name = var["name"].as_str().context("variable name")?;
        ensure!(
            var["datasource"]["uid"] == DATASOURCE_UID,
            "variable {name}: datasource {}",
            var["datasource"]
        );
        let query = var["query"].as_str().context("variable query")?;
        let sent = ctx.interpolate(query);
        let series = run_influxql(&db, &sent).await?;
        let labelled = apply_variable_regex(
            variable_options(&sent, &series),
            var["regex"].as_str().unwrap_or(""),
        )?;
        let options: Vec<String> = labelled.iter().map(|(_, v)| v.clone()).collect();
        report.push((format!("variable ${name}"), options.len()));
        ensure!(
            !options.is_empty(),
            "variable {name}: no options from {sent}"
        );
        let selected = match name {
            "run" => {
                ensure!(
                    options == [run.uuid.clone(), baseline.uuid.clone()],
                    "run selector: both runs, newest first, expected: {options:?}"
                );
                // Each option shows the run's start, target and status, not a bare id.
                for (text, _) in &labelled {
                    ensure!(
                        text.contains(&target.url)
                            && text.contains(" · committed")
                            && text.contains(" UTC"),
                        "run selector label {text:?}"
                    );
                }
                options[0].clone()
            }
            "baseline" => {
                // Every run but the newest: the default is the run before the newest.
                ensure!(options == [baseline.uuid.clone()], "{options:?}");
                options[0].clone()
            }
            "run_target" => {
                ensure!(options == [target.url.clone()], "{options:?}");
                options[0].clone()
            }
            "run_status" => {
                ensure!(options == ["committed"], "{options:?}");
                options[0].clone()
            }
            "baseline_shift_ms" => {
                let shift: i64 = options[0].parse().context("shift is a number")?;
                // elapsed(…, 1ms) truncates the distance to whole milliseconds.
                let expected = (run.start_ns - baseline.start_ns) / 1_000_000;
                ensure!(
                    shift == expected && shift > 0,
                    "shift {shift} ms, the runs started {expected} ms apart"
                );
                options[0].clone()
            }
            other => bail!("variable {other} is not covered by this test"),
        };
        ctx.vars.insert(name.to_string(), selected);
    }

    // Compared with a newer run, the baseline moves back: the shift is negative.
    let shift_var = dashboard["templating"]["list"]
        .as_array()
        .and_then(|l| l.iter().find(|v| v["name"] == "baseline_shift_ms"))
        .and_then(|v| v["query"].as_str())
        .context("baseline_shift_ms")?;
    let swapped = GrafanaContext {
        vars: BTreeMap::from([
            ("run".to_string(), baseline.uuid.clone()),
            ("baseline".to_string(), run.uuid.clone()),
        ]),
        from_ms: ctx.from_ms,
        to_ms: ctx.to_ms,
        interval_ms: ctx.interval_ms,
    };
    let sent = swapped.interpolate(shift_var);
    let options = variable_options(&sent, &run_influxql(&db, &sent).await?);
    ensure!(
        options == [((baseline.start_ns - run.start_ns) / 1_000_000).to_string()],
        "shift with the baseline newer than the run: {options:?}"
    );

    // -- Panels ----------------------------------------------------------------------------------
    let mut panels_seen = 0;
    for panel in dashboard["panels"].as_array().context("panels")? {
        let Some(targets) = panel["targets"].as_array() else {
            continue; // rows
        };
        let title = panel["title"].as_str().context("panel title")?;
        panels_seen += 1;
        for t in targets {
            ensure!(
                t["datasource"]["uid"] == DATASOURCE_UID && t["rawQuery"] == true,
                "{title}: {t}"
            );
            let ref_id = t["refId"].as_str().context("refId")?;
            let sent = ctx.interpolate(t["query"].as_str().context("query")?);
            let series = run_influxql(&db, &sent).await?;
            let rows = rows(&series);
            report.push((format!("{title} ({ref_id})"), rows.len()));
            ensure!(
                !rows.is_empty(),
                "{title} ({ref_id}) returned nothing: {sent}"
            );
            check_panel(title, ref_id, &rows, &series, &run, &baseline, &target.url)
                .with_context(|| format!("{title} ({ref_id}): {sent}"))?;
        }
    }
    ensure!(
        panels_seen == 11,
        "{panels_seen} panels with queries, 11 expected"
    );

    // -- Annotations -----------------------------------------------------------------------------
    for a in dashboard["annotations"]["list"]
        .as_array()
        .context("annotations")?
    {
        if a["builtIn"] == 1 {
            continue;
        }
        let name = a["name"].as_str().context("annotation name")?;
        ensure!(a["datasource"]["uid"] == DATASOURCE_UID, "{name}");
        let t = &a["target"];
        let sent = ctx.interpolate(t["query"].as_str().context("annotation query")?);
        let rows = rows(&run_influxql(&db, &sent).await?);
        report.push((format!("annotation {name}"), rows.len()));
        ensure!(
            !rows.is_empty(),
            "annotation {name} returned nothing: {sent}"
        );
        let text_col = t["textColumn"].as_str().unwrap_or_default();
        let tag_cols: Vec<&str> = t["tagsColumn"]
            .as_str()
            .unwrap_or_default()
            .split(',')
            .collect();
        has_columns(&rows, &[&[text_col], tag_cols.as_slice()].concat())?;
        let ids: Vec<&str> = rows
            .iter()
            .map(|r| text(r, "event_id"))
            .collect::<anyhow::Result<_>>()?;
        ensure!(
            rows.len() == 2
                && ids.contains(&run.uuid.as_str())
                && ids.contains(&baseline.uuid.as_str()),
            "annotation {name}: one per run expected: {rows:?}"
        );
        if name == "Run end" {
            for (r, rec) in [(&run, "run"), (&baseline, "baseline")] {
                let row = rows
                    .iter()
                    .find(|row| row["event_id"] == r.uuid.as_str())
                    .with_context(|| format!("no end of the {rec}"))?;
                ensure!(
                    num(row, "requests")? as u64 == r.counts["Aggregated"],
                    "{rec}: {row:?}"
                );
            }
        }
    }

    println!("\nDASHBOARD | query | rows");
    println!("DASHBOARD |---|---|");
    for (what, n) in &report {
        println!("DASHBOARD | {what} | {n} |");
    }
    Ok(())
}

/// What each panel's rows must show.
fn check_panel(
    title: &str,
    ref_id: &str,
    rows: &[Map<String, Value>],
    series: &[Series],
    run: &Recorded,
    baseline: &Recorded,
    target_url: &str,
) -> anyhow::Result<()> {
    match (title, ref_id) {
        ("All runs", _) => {
            has_columns(
                rows,
                &[
                    "event_id",
                    "target_host",
                    "status",
                    "tool",
                    "users",
                    "duration_s",
                    "duration_ms",
                ],
            )?;
            let ids: Vec<&str> = rows
                .iter()
                .map(|r| text(r, "event_id"))
                .collect::<anyhow::Result<_>>()?;
            ensure!(
                ids == [run.uuid.as_str(), baseline.uuid.as_str()],
                "{ids:?}"
            );
            for r in rows {
                ensure!(
                    r["status"] == "committed" && r["target_host"] == target_url,
                    "{r:?}"
                );
                ensure!(num(r, "users")? == 2.0, "{r:?}");
                ensure!(
                    num(r, "duration_ms")? == num(r, "duration_s")? * 1000.0,
                    "{r:?}"
                );
            }
        }
        ("Users", _) => {
            has_columns(rows, &["users"])?;
            let max = rows
                .iter()
                .filter_map(|r| r["users"].as_f64())
                .fold(0.0, f64::max);
            ensure!(max == 2.0, "2 users expected: {rows:?}");
        }
        ("Requests/s and failures/s", _) => {
            has_columns(rows, &["requests/s", "failures/s"])?;
            ensure!(
                rows.iter().any(|r| r["failures/s"].as_f64() > Some(0.0)),
                "the run's /fail requests show as failures/s: {rows:?}"
            );
        }
        ("Response time p50 / p95 / p99", _) => {
            has_columns(rows, &["p50", "p95", "p99"])?;
            for r in rows {
                ensure!(
                    num(r, "p50")? <= num(r, "p95")? && num(r, "p95")? <= num(r, "p99")?,
                    "{r:?}"
                );
            }
        }
        ("Requests/s per endpoint" | "p95 per endpoint", _) => {
            let col = if title.starts_with("p95") {
                "p95"
            } else {
                "rps"
            };
            has_columns(rows, &[col, "method", "name"])?;
            let names: Vec<&str> = series
                .iter()
                .filter_map(|s| s.tags.get("name").and_then(Value::as_str))
                .collect();
            ensure!(
                names == ["/", "/fail"],
                "one series per endpoint: {names:?}"
            );
        }
        ("Endpoints", "A") => {
            has_columns(
                rows,
                &[
                    "method",
                    "name",
                    "requests",
                    "failures",
                    "failure %",
                    "avg",
                    "p50",
                    "p95",
                    "p99",
                    "max",
                    "rps",
                ],
            )?;
            for (name, count) in &run.counts {
                let r = rows
                    .iter()
                    .find(|r| r["name"] == name.as_str())
                    .with_context(|| format!("no row for {name}"))?;
                ensure!(
                    num(r, "requests")? as u64 == *count,
                    "{name}: loadgen counted {count}: {r:?}"
                );
            }
            ensure!(rows.len() == run.counts.len(), "{rows:?}");
            let fail = rows
                .iter()
                .find(|r| r["name"] == "/fail")
                .context("/fail")?;
            ensure!(num(fail, "failure %")? == 100.0, "{fail:?}");
            let ok = rows.iter().find(|r| r["name"] == "/").context("/")?;
            ensure!(num(ok, "failure %")? == 0.0, "{ok:?}");
        }
        ("Endpoints", "B") => {
            has_columns(rows, &["method", "name", "baseline p95"])?;
            let mut names: Vec<&str> = rows
                .iter()
                .map(|r| text(r, "name"))
                .collect::<anyhow::Result<_>>()?;
            names.sort_unstable();
            let mut expected: Vec<&str> = baseline.counts.keys().map(String::as_str).collect();
            expected.sort_unstable();
            ensure!(names == expected, "baseline endpoints: {names:?}");
        }
        ("Errors", _) => {
            has_columns(rows, &["method", "name", "error", "occurrences"])?;
            let total: f64 = rows.iter().filter_map(|r| r["occurrences"].as_f64()).sum();
            ensure!(
                rows.iter().all(|r| r["name"] == "/fail") && total as u64 == run.counts["/fail"],
                "every /fail request is an error ({}): {rows:?}",
                run.counts["/fail"]
            );
        }
        ("Thresholds", _) => {
            has_columns(rows, &["threshold", "node_id", "passed", "actual", "limit"])?;
            let verdict = |expr: &str| -> anyhow::Result<f64> {
                num(
                    rows.iter()
                        .find(|r| r["threshold"] == expr)
                        .with_context(|| format!("no verdict for {expr}"))?,
                    "passed",
                )
            };
            ensure!(verdict("p95<60000ms")? == 1.0, "{rows:?}");
            ensure!(verdict("fail_ratio<0.01")? == 0.0, "{rows:?}");
        }
        ("p95: run vs baseline", _) => has_columns(rows, &["p95"])?,
        ("Requests/s: run vs baseline", _) => has_columns(rows, &["requests/s"])?,
        (other, r) => bail!("panel {other} ({r}) is not covered by this test"),
    }
    Ok(())
}

#[test]
fn grafana_substitution_rules() {
    let mut ctx = GrafanaContext {
        vars: BTreeMap::new(),
        from_ms: 1_000,
        to_ms: 2_000,
        interval_ms: 15_000,
    };
    ctx.vars.insert("run".into(), "a.b".into());
    ctx.vars.insert("run_target".into(), "http://x".into());
    ctx.vars.insert("shift".into(), "-1500".into());
    assert_eq!(
        ctx.interpolate("=~ /^$run$/ $run_target ${shift} $unknown $timeFilter time($__interval)"),
        "=~ /^a\\.b$/ http:\\/\\/x -1500 $unknown time >= 1000ms and time <= 2000ms time(15s)"
    );
    // A run id that starts with a digit is a number to parseFloat, so Grafana leaves it as is.
    assert!(js_parse_float_is_number("1f3a-77"));
    assert!(!js_parse_float_is_number("f3a-77"));
    assert_eq!(round_interval(150), 200);
    assert_eq!(round_interval(149), 100);
    assert_eq!(format_interval(100), "100ms");
    assert_eq!(format_interval(120_000), "2m");
}
