//! One truth for every number (issue 16): the same counts, rates and percentiles in the
//! console, the CSV, JSON and HTML files, the threshold verdicts and InfluxDB.
//!
//! - the issue's three cases, each a test: two percentile sources (a target alternating 105 ms
//!   and 147 ms, `--standalone`), rates over the wrong span (the API's register answered 503
//!   twice), thresholds over no data (a target that never answers);
//! - the consistency test: one run per transport (API, AMQP, `--standalone`) against a target
//!   whose response times are known and that counts what it receives; the console, CSV, JSON,
//!   HTML's embedded data, threshold actuals and the stored points agree on requests, failures,
//!   requests/s (0.1 %) and every percentile (exactly), and the counts equal the target's.
//!
//! Needs RabbitMQ on 127.0.0.1:5672 and InfluxDB 1.x on 127.0.0.1:8086; `bash .ci/run` starts
//! them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use loadtest_e2e::*;
use serde_json::Value;

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Percentile labels of loadgen's files and the stored summary fields they become.
const PERCENTILES: [(&str, &str); 11] = [
    ("50%", "response_time_p50"),
    ("66%", "response_time_p66"),
    ("75%", "response_time_p75"),
    ("80%", "response_time_p80"),
    ("90%", "response_time_p90"),
    ("95%", "response_time_p95"),
    ("98%", "response_time_p98"),
    ("99%", "response_time_p99"),
    ("99.9%", "response_time_p999"),
    ("99.99%", "response_time_p9999"),
    ("100%", "response_time_p100"),
];

/// A target whose response times are known: `/x` answers in 105 ms and 147 ms in turn, `/never`
/// never answers. It counts every request on arrival.
struct KnownTarget {
    url: String,
    count: Arc<AtomicU64>,
}

async fn known_target() -> anyhow::Result<KnownTarget> {
    let count = Arc::new(AtomicU64::new(0));
    let (c1, c2) = (count.clone(), count.clone());
    let turn = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new()
        .route(
            "/x",
            axum::routing::get(move || {
                let (c, turn) = (c1.clone(), turn.clone());
                async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    let ms = if turn.fetch_add(1, Ordering::SeqCst) % 2 == 0 {
                        105
                    } else {
                        147
                    };
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    "ok"
                }
            }),
        )
        .route(
            "/never",
            axum::routing::get(move || {
                let c = c2.clone();
                async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<()>().await;
                    "never"
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(KnownTarget { url, count })
}

/// A proxy in front of the API that answers the first `refusals` registers with 503 and
/// `Retry-After: 1`, then forwards everything.
async fn flaky_api(api: String, refusals: u64) -> anyhow::Result<String> {
    let refused = Arc::new(AtomicU64::new(0));
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(
        move |method: axum::http::Method,
              uri: axum::http::Uri,
              headers: axum::http::HeaderMap,
              body: axum::body::Bytes| {
            let (api, refused, http) = (api.clone(), refused.clone(), http.clone());
            async move {
                use axum::response::IntoResponse;
                if uri.path().ends_with("/register")
                    && refused.fetch_add(1, Ordering::SeqCst) < refusals
                {
                    return (
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        [
                            ("retry-after", "1"),
                            ("content-type", "application/problem+json"),
                        ],
                        r#"{"type":"about:blank","title":"Service Unavailable","status":503}"#,
                    )
                        .into_response();
                }
                let mut req = http.request(
                    method,
                    format!("{api}{}", uri.path_and_query().map_or("/", |p| p.as_str())),
                );
                for (k, v) in &headers {
                    if k != "host" && k != "content-length" {
                        req = req.header(k, v);
                    }
                }
                match req.body(body).send().await {
                    Ok(resp) => {
                        let status = resp.status();
                        let ct = resp
                            .headers()
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("application/json")
                            .to_string();
                        let bytes = resp.bytes().await.unwrap_or_default();
                        (status, [("content-type", ct)], bytes).into_response()
                    }
                    Err(e) => (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
                }
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(url)
}

/// A fresh directory for one run's files.
fn run_dir(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("numbers-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Runs loadgen with `args` and waits for it; returns its exit code and output.
fn loadgen(name: &str, args: &[&str]) -> anyhow::Result<(Option<i32>, String)> {
    let mut p = Proc::start(name, "loadgen", args, &[])?;
    let exit = p.wait(Duration::from_secs(120))?;
    Ok((exit.code(), p.output()))
}

/// The fields of the stored `Aggregated` summary in a line-protocol file, by name.
fn lp_summary(path: &Path) -> anyhow::Result<BTreeMap<String, Value>> {
    let text = std::fs::read_to_string(path)?;
    let line = text
        .lines()
        .find(|l| l.starts_with("loadtest_summary,") && l.contains(",name=Aggregated "))
        .ok_or_else(|| anyhow::anyhow!("no Aggregated summary in {}:\n{text}", path.display()))?;
    Ok(lp_fields(line))
}

/// The `loadtest_event` final point's fields and the `loadtest_threshold` points' (threshold,
/// fields) of a line-protocol file.
fn lp_points(
    path: &Path,
    measurement: &str,
) -> anyhow::Result<Vec<(String, BTreeMap<String, Value>)>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(&format!("{measurement},")))
        .map(|l| {
            (
                l.split(' ').next().unwrap_or_default().to_string(),
                lp_fields(l),
            )
        })
        .collect())
}

/// The fields of one line (numbers as JSON numbers, strings as strings, `123i` as integers).
/// Enough for the points these tests read: no spaces or commas in their string fields.
fn lp_fields(line: &str) -> BTreeMap<String, Value> {
    let fields = line.split(' ').nth(1).unwrap_or_default();
    fields
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            let value = if let Some(s) = v.strip_prefix('"') {
                Value::String(s.trim_end_matches('"').to_string())
            } else if let Some(i) = v.strip_suffix('i') {
                i.parse::<i64>().map_or(Value::Null, Value::from)
            } else {
                v.parse::<f64>().map_or(Value::Null, Value::from)
            };
            (k.to_string(), value)
        })
        .collect()
}

/// The stored `Aggregated` summary of run `uuid` in InfluxDB database `db`, once written.
async fn influx_summary(db: &str, uuid: &str) -> anyhow::Result<BTreeMap<String, Value>> {
    let q = format!(
        "SELECT * FROM loadtest_summary WHERE event_id = '{uuid}' AND \"name\" = 'Aggregated'"
    );
    let rows = eventually(Duration::from_secs(30), "the stored summary", || async {
        let rows = influx_rows(db, &q).await?;
        Ok((!rows.is_empty()).then_some(rows))
    })
    .await?;
    Ok(rows[0].clone().into_iter().collect())
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// The console's `Aggregated` rows: (requests, failures, req/s) from the request table and the
/// printed cells of the percentile table.
fn console_aggregated(out: &str) -> (u64, u64, f64, Vec<String>) {
    let request = out
        .lines()
        .find(|l| l.trim_start().starts_with("Aggregated") && l.contains('|'))
        .unwrap_or_else(|| panic!("no Aggregated request row:\n{out}"));
    let cols: Vec<&str> = request.split_whitespace().collect();
    let requests = cols[1].parse().unwrap_or(u64::MAX);
    let failures = cols[2]
        .split('(')
        .next()
        .unwrap_or("")
        .parse()
        .unwrap_or(u64::MAX);
    let rps = cols[9].parse().unwrap_or(f64::NAN);
    let pct = out
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with("Aggregated") && !l.contains('|'))
        .unwrap_or_else(|| panic!("no Aggregated percentile row:\n{out}"));
    let cells: Vec<String> = pct
        .split_whitespace()
        .skip(1)
        .take(PERCENTILES.len())
        .map(str::to_string)
        .collect();
    (requests, failures, rps, cells)
}

/// How the console prints a response time in its 7-wide columns (as loadgen's `fmt_ms_cell`).
fn console_cell(v: f64) -> String {
    if v < 10.0 && v.fract() != 0.0 {
        format!("{v:.2}")
    } else if v < 100.0 && v.fract() != 0.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-9)
}

/// Asserts that everything loadgen showed and wrote for one run agrees with the stored summary
/// `stored` and the stored threshold actuals `stored_thresholds` (expression → actual), and
/// that the requests equal the target's count.
fn assert_one_truth(
    what: &str,
    out: &str,
    dir: &Path,
    stored: &BTreeMap<String, Value>,
    stored_thresholds: &BTreeMap<String, Option<f64>>,
    target_count: u64,
) -> anyhow::Result<()> {
    let json: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("r.json"))?)?;
    let total = &json["total"];
    let requests = total["requests"].as_u64().unwrap_or(u64::MAX);
    let failures = total["failures"].as_u64().unwrap_or(u64::MAX);
    let rps = num(&total["rps"]);

    // Counts: target = JSON = stored = console = CSV = HTML.
    assert_eq!(
        requests, target_count,
        "{what}: JSON requests vs the target's count"
    );
    assert_eq!(
        stored["requests"].as_u64(),
        Some(requests),
        "{what}: stored requests"
    );
    assert_eq!(
        stored["failures"].as_u64(),
        Some(failures),
        "{what}: stored failures"
    );
    let (c_req, c_fail, c_rps, c_cells) = console_aggregated(out);
    assert_eq!(
        (c_req, c_fail),
        (requests, failures),
        "{what}: console counts\n{out}"
    );

    // Requests/s: one definition, to 0.1 % (the console prints two decimals).
    let stored_rps = num(&stored["rps"]);
    assert!(
        close(rps, stored_rps, 1e-3),
        "{what}: JSON rps {rps} vs stored {stored_rps}"
    );
    assert!(
        (c_rps - rps).abs() <= 0.005 + 1e-9 || close(c_rps, rps, 1e-3),
        "{what}: console rps {c_rps} vs {rps}"
    );

    // Percentiles: JSON = stored, exactly; the console and the CSV print the same values.
    let csv = std::fs::read_to_string(dir.join("p_stats.csv"))?;
    let header: Vec<&str> = csv.lines().next().unwrap_or_default().split(',').collect();
    let agg: Vec<&str> = csv
        .lines()
        .find(|l| l.starts_with(",Aggregated,"))
        .unwrap_or_else(|| panic!("{what}: no Aggregated CSV row:\n{csv}"))
        .split(',')
        .collect();
    let csv_col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .map(|i| agg[i].to_string())
            .unwrap_or_default()
    };
    assert_eq!(
        csv_col("Request Count"),
        requests.to_string(),
        "{what}: CSV requests"
    );
    assert_eq!(
        csv_col("Failure Count"),
        failures.to_string(),
        "{what}: CSV failures"
    );
    let csv_rps: f64 = csv_col("Requests/s").parse().unwrap_or(f64::NAN);
    assert!(
        close(csv_rps, rps, 1e-9),
        "{what}: CSV rps {csv_rps} vs {rps}"
    );
    let html = std::fs::read_to_string(dir.join("r.html"))?;
    let start = html
        .find(r#"<script type="application/json" id="report-data">"#)
        .map(|i| i + r#"<script type="application/json" id="report-data">"#.len())
        .unwrap_or(0);
    let end = html[start..]
        .find("</script>")
        .map_or(html.len(), |e| start + e);
    let embedded: Value = serde_json::from_str(&html[start..end].replace("<\\/", "</"))?;
    assert_eq!(
        embedded["total"], json["total"],
        "{what}: HTML's embedded data vs JSON"
    );
    for (i, (label, field)) in PERCENTILES.iter().enumerate() {
        let v = num(&total["percentilesMs"][*label]);
        assert_eq!(
            v,
            num(&stored[*field]),
            "{what}: {label} JSON vs stored {field}"
        );
        assert_eq!(csv_col(label), format!("{v}"), "{what}: CSV {label}");
        assert_eq!(
            c_cells[i],
            console_cell(v),
            "{what}: console {label}\n{out}"
        );
    }
    assert_eq!(
        csv_col("Median Response Time"),
        format!("{}", num(&total["percentilesMs"]["50%"])),
        "{what}: CSV median"
    );
    assert_eq!(
        stored["percentile_source"], "hdr",
        "{what}: percentile source"
    );

    // Threshold actuals: console = JSON = stored summary = stored loadtest_threshold.
    for t in json["thresholds"].as_array().cloned().unwrap_or_default() {
        let expr = t["threshold"].as_str().unwrap_or_default().to_string();
        let actual = t["actual"].as_f64();
        let expected = match t["metric"].as_str() {
            Some("rps") => Some(rps),
            Some("requests") => Some(requests as f64),
            Some("p50") => Some(num(&stored["response_time_p50"])),
            Some("p95") => Some(num(&stored["response_time_p95"])),
            Some("p99") => Some(num(&stored["response_time_p99"])),
            Some("p99.9") => Some(num(&stored["response_time_p999"])),
            _ => actual,
        };
        if t["metric"] == "rps" {
            let (a, e) = (actual.unwrap_or(f64::NAN), expected.unwrap_or(f64::NAN));
            assert!(close(a, e, 1e-3), "{what}: {expr} actual {a} vs {e}");
        } else {
            assert_eq!(actual, expected, "{what}: {expr} actual");
        }
        assert_eq!(
            stored_thresholds.get(&expr).copied().flatten(),
            actual,
            "{what}: stored loadtest_threshold actual of {expr}"
        );
    }
    Ok(())
}

/// The run's common arguments: `/x` 2 users × 30 requests, every output file, thresholds.
fn run_args<'a>(target: &'a str, dir: &'a Path, owned: &'a mut Vec<String>) -> Vec<&'a str> {
    owned.push(dir.join("r.json").display().to_string());
    owned.push(dir.join("p").display().to_string());
    owned.push(dir.join("r.html").display().to_string());
    let mut args = vec![
        "--host",
        target,
        "-u",
        "2",
        "-r",
        "10",
        "-n",
        "60",
        "--path",
        "/x",
        "--only-summary",
        "--threshold",
        "p50<1s",
        "--threshold",
        "p95<1s",
        "--threshold",
        "p99.9<1s",
        "--threshold",
        "rps>1",
        "--threshold",
        "requests>=60",
    ];
    args.extend(["--json", &owned[0], "--csv", &owned[1], "--html", &owned[2]]);
    args
}

/// Issue 16, case 1 and the `--standalone` consistency run: against 105 ms / 147 ms answers,
/// the console's Med and percentile table, the CSV, the JSON, the HTML and the threshold
/// actuals all show the stored percentiles (one source: the merged HdrHistogram).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_run_shows_and_stores_one_set_of_numbers() -> anyhow::Result<()> {
    build_binaries()?;
    let target = known_target().await?;
    let dir = run_dir("standalone")?;
    let lp = dir.join("run.lp");
    let mut owned = Vec::new();
    let mut args = run_args(&target.url, &dir, &mut owned);
    let lp_s = lp.display().to_string();
    args.extend(["--standalone", "--output", &lp_s]);
    let (code, out) = loadgen("numbers-standalone", &args)?;
    assert_eq!(code, Some(0), "{out}");
    let stored = lp_summary(&lp)?;
    let thresholds: BTreeMap<String, Option<f64>> = lp_points(&lp, "loadtest_threshold")?
        .into_iter()
        .map(|(series, f)| {
            let expr = series
                .split(",threshold=")
                .nth(1)
                .unwrap_or_default()
                .replace("\\ ", " ")
                .replace("\\,", ",")
                .replace("\\=", "=");
            (expr, f.get("actual").and_then(Value::as_f64))
        })
        .collect();
    assert_one_truth(
        "standalone",
        &out,
        &dir,
        &stored,
        &thresholds,
        target.count.load(Ordering::SeqCst),
    )?;
    // The console's request table's Med is the percentile table's 50%.
    let med = out
        .lines()
        .find(|l| l.trim_start().starts_with("Aggregated") && l.contains('|'))
        .and_then(|l| l.split('|').nth(1))
        .and_then(|s| s.split_whitespace().nth(3))
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        med,
        console_cell(num(&stored["response_time_p50"])),
        "{out}"
    );
    // 105 ms and 147 ms in turn (plus each request's own overhead): measured to the µs.
    let p50 = num(&stored["response_time_p50"]);
    assert!((105.0..170.0).contains(&p50), "p50 {p50}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The consistency test through the API (stats and commit over HTTP) and through AMQP
/// (`--amqp-url`): the stored points are the numbers loadgen printed and wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_and_amqp_runs_store_the_numbers_loadgen_shows() -> anyhow::Result<()> {
    require_rabbitmq_and_influxdb();
    build_binaries()?;
    let stack = Stack::new("numbers");
    let db = stack.db();
    influx_create_db(&db).await?;
    let _writer = stack.start_v1_writer("writer-numbers", &db, 5)?;
    let (_api, api) = stack.start_api()?;
    for transport in ["api", "amqp"] {
        let target = known_target().await?;
        let dir = run_dir(transport)?;
        let mut owned = Vec::new();
        let mut args = run_args(&target.url, &dir, &mut owned);
        args.extend(["--consumer-host", &api, "--api-key", &stack.api_key]);
        if transport == "amqp" {
            args.extend(["--amqp-url", AMQP, "--amqp-exchange", &stack.exchange]);
        }
        let (code, out) = loadgen(&format!("numbers-{transport}"), &args)?;
        assert_eq!(code, Some(0), "{out}");
        let uuid = registered_run(&out)
            .or_else(|| first_uuid(&out))
            .unwrap_or_else(|| panic!("no run id:\n{out}"));
        let stored = influx_summary(&db, &uuid).await?;
        let rows = influx_rows_at(
            INFLUX,
            &db,
            &format!("SELECT * FROM loadtest_threshold WHERE event_id = '{uuid}' GROUP BY *"),
        )
        .await?;
        let thresholds: BTreeMap<String, Option<f64>> = rows
            .iter()
            .map(|r| {
                (
                    r.get("threshold")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    r.get("actual").and_then(Value::as_f64),
                )
            })
            .collect();
        assert_one_truth(
            transport,
            &out,
            &dir,
            &stored,
            &thresholds,
            target.count.load(Ordering::SeqCst),
        )?;
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// Issue 16, case 2: the register answered 503 (`Retry-After`) twice. The retries are before
/// the load window: requests/s are over the 4 s the users ran, in the console, the JSON, the
/// rps threshold, the stored summary, and `duration_s`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_retries_do_not_enter_the_rates() -> anyhow::Result<()> {
    require_rabbitmq_and_influxdb();
    build_binaries()?;
    let stack = Stack::new("numrate");
    let db = stack.db();
    influx_create_db(&db).await?;
    let _writer = stack.start_v1_writer("writer-numrate", &db, 5)?;
    let (_api, api) = stack.start_api()?;
    let proxy = flaky_api(api, 2).await?;
    let target = known_target().await?;
    let dir = run_dir("rate")?;
    let json = dir.join("r.json").display().to_string();
    let (code, out) = loadgen(
        "numbers-rate",
        &[
            "--host",
            &target.url,
            "-u",
            "2",
            "-r",
            "10",
            "-t",
            "4s",
            "--path",
            "/x",
            "--only-summary",
            "--json",
            &json,
            "--threshold",
            "rps>0",
            "--consumer-host",
            &proxy,
            "--api-key",
            &stack.api_key,
        ],
    )?;
    assert_eq!(code, Some(0), "{out}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
    let requests = report["total"]["requests"].as_u64().unwrap_or(0) as f64;
    let window = num(&report["run"]["elapsedS"]);
    assert!(
        (3.9..4.5).contains(&window),
        "load window {window} s, not the register's retries"
    );
    let rps = num(&report["total"]["rps"]);
    assert!(
        close(rps, requests / window, 1e-9),
        "rps {rps} = {requests} / {window}"
    );
    // 2 users, one request per ~126 ms each: ~16 requests/s; the old span (register retries
    // included) gave about half.
    assert!(rps > 12.0, "rps {rps}");
    assert!(
        close(num(&report["thresholds"][0]["actual"]), rps, 1e-12),
        "threshold actual {}",
        report["thresholds"][0]
    );
    let uuid = registered_run(&out)
        .or_else(|| first_uuid(&out))
        .unwrap_or_else(|| panic!("no run id:\n{out}"));
    let stored = influx_summary(&db, &uuid).await?;
    assert!(
        close(num(&stored["rps"]), rps, 1e-3),
        "stored rps {} vs {rps}",
        stored["rps"]
    );
    let events = influx_rows(
        &db,
        &format!("SELECT duration_s FROM loadtest_event WHERE event_id = '{uuid}' AND status = 'committed'"),
    )
    .await?;
    let duration = events.first().map_or(f64::NAN, |r| num(&r["duration_s"]));
    assert!(
        close(duration, window, 1e-3),
        "duration_s {duration} vs the load window {window}"
    );
    let (_, _, c_rps, _) = console_aggregated(&out);
    assert!((c_rps - rps).abs() <= 0.006, "console rps {c_rps} vs {rps}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Issue 16, case 3: a target that accepts connections and never answers, `--stop-timeout 0`.
/// The requests in flight at the stop are counted as failures of their own kind (so the count
/// is the target's), and the thresholds fail: exit 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_never_answers_fails_the_thresholds() -> anyhow::Result<()> {
    build_binaries()?;
    let target = known_target().await?;
    let dir = run_dir("never")?;
    let json = dir.join("r.json").display().to_string();
    let lp = dir.join("run.lp");
    let lp_s = lp.display().to_string();
    let (code, out) = loadgen(
        "numbers-never",
        &[
            "--host",
            &target.url,
            "-u",
            "2",
            "-r",
            "10",
            "-t",
            "2s",
            "--stop-timeout",
            "0",
            "--path",
            "/never",
            "--threshold",
            "p95<300ms",
            "--threshold",
            "fail_ratio<0.01",
            "--json",
            &json,
            "--standalone",
            "--output",
            &lp_s,
            "--only-summary",
        ],
    )?;
    assert_eq!(
        code,
        Some(1),
        "thresholds over cancelled requests must fail:\n{out}"
    );
    assert!(!out.contains("All 2 thresholds passed"), "{out}");
    assert!(out.contains("2 of 2 thresholds FAILED"), "{out}");
    let sent = target.count.load(Ordering::SeqCst);
    assert_eq!(sent, 2, "each user sent one request");
    assert_eq!(
        summary_requests(&out),
        Some(sent),
        "every request sent is counted:\n{out}"
    );
    assert!(
        out.contains("cancelled: in flight at the stop timeout"),
        "{out}"
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
    assert_eq!(report["total"]["failures"].as_u64(), Some(sent));
    assert!(
        report["errors"][0]["error"] == "cancelled: in flight at the stop timeout",
        "{}",
        report["errors"]
    );
    let stored = lp_summary(&lp)?;
    assert_eq!(stored["requests"].as_u64(), Some(sent));
    assert_eq!(stored["failures"].as_u64(), Some(sent));
    let thresholds = lp_points(&lp, "loadtest_threshold")?;
    assert_eq!(thresholds.len(), 2);
    assert!(
        thresholds
            .iter()
            .all(|(_, f)| f["passed"].as_i64() == Some(0)),
        "{thresholds:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
