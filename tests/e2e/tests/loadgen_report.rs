//! loadgen's result files: `--html` rendered by headless Chromium (its charts must have drawn),
//! `--json` and Locust's `--csv` files, from a real `loadgen` process.
//!
//! Needs Chromium (`apt-get install -y chromium`; `bash .ci/run` installs it).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use loadtest_e2e::*;

/// The Chromium binary, or a loud failure with the install command.
fn chromium() -> PathBuf {
    for name in [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ] {
        for dir in ["/usr/bin", "/usr/local/bin", "/snap/bin"] {
            let p = Path::new(dir).join(name);
            if p.exists() {
                return p;
            }
        }
    }
    panic!(
        "headless Chromium is needed to render the HTML report; install it with \
         `apt-get install -y chromium` (or run `bash .ci/run`)"
    );
}

/// Runs headless Chromium on `page` with `extra` arguments; returns its stdout.
fn run_chromium(page: &Path, extra: &[&str], profile: &Path) -> anyhow::Result<String> {
    let out_file = profile.join("chromium-stdout.txt");
    let err_file = profile.join("chromium-stderr.txt");
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-dev-shm-usage",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_file)?)
        .stderr(std::fs::File::create(&err_file)?)
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait()? {
            let stdout = std::fs::read_to_string(&out_file).unwrap_or_default();
            anyhow::ensure!(
                status.success(),
                "chromium exited with {status}: {}",
                std::fs::read_to_string(&err_file).unwrap_or_default()
            );
            return Ok(stdout);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_report_charts_draw_in_headless_chromium() -> anyhow::Result<()> {
    let browser = chromium();
    build_binaries()?;
    let target = start_target().await?;
    let dir = std::env::temp_dir().join(format!("loadgen-report-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let html = dir.join("report.html");
    let json = dir.join("report.json");
    let prefix = dir.join("run");
    let mut loadgen = Proc::start(
        "loadgen-report",
        "loadgen",
        &[
            "--host",
            &target.url,
            "-u",
            "2",
            "-r",
            "4",
            "-t",
            "5s",
            "--path",
            "/",
            "--path",
            "/fail",
            "--html",
            &html.display().to_string(),
            "--json",
            &json.display().to_string(),
            "--csv",
            &prefix.display().to_string(),
            "--only-summary",
        ],
        &[],
    )?;
    let exit = loadgen.wait(Duration::from_secs(60))?;
    let out = loadgen.output();
    assert!(exit.success(), "loadgen failed:\n{out}");
    let total = summary_requests(&out).unwrap_or_else(|| panic!("no summary:\n{out}"));

    // JSON: the same totals, the time series.
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
    assert_eq!(report["total"]["requests"], total, "{report}");
    // A history point every second from the first second on (whatever --stats-interval), as
    // Locust's, plus the final one.
    let history = report["history"].as_array().cloned().unwrap_or_default();
    assert!(history.len() >= 5, "{report}");
    let elapsed: Vec<f64> = history
        .iter()
        .map(|p| p["elapsedS"].as_f64().unwrap_or(f64::NAN))
        .collect();
    assert!(
        (0.9..1.5).contains(&elapsed[0]),
        "first point at {elapsed:?}"
    );
    for w in elapsed[..elapsed.len() - 1].windows(2) {
        assert!(
            (0.8..1.2).contains(&(w[1] - w[0])),
            "one point a second: {elapsed:?}"
        );
    }
    assert_eq!(report["run"]["model"], "closed");

    // CSV: Locust's files and columns.
    let stats_csv = std::fs::read_to_string(dir.join("run_stats.csv"))?;
    assert!(stats_csv.starts_with("Type,Name,Request Count,Failure Count,Median Response Time,"));
    assert!(
        stats_csv
            .lines()
            .any(|l| l.starts_with(&format!(",Aggregated,{total},"))),
        "{stats_csv}"
    );
    let history_csv = std::fs::read_to_string(dir.join("run_stats_history.csv"))?;
    assert!(history_csv.lines().count() >= 5, "{history_csv}");
    let failures_csv = std::fs::read_to_string(dir.join("run_failures.csv"))?;
    assert!(
        failures_csv.contains("GET,/fail,HTTP 500,"),
        "{failures_csv}"
    );
    assert!(dir.join("run_exceptions.csv").exists());

    // HTML: no external resources; in Chromium all three charts paint pixels.
    let page = std::fs::read_to_string(&html)?;
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http"),
        "external resource"
    );
    let profile = dir.join("chromium-profile");
    std::fs::create_dir_all(&profile)?;
    let dom = run_chromium(&html, &["--dump-dom"], &profile)
        .map_err(|e| anyhow::anyhow!("{} failed: {e}", browser.display()))?;
    assert!(
        dom.contains("data-charts-drawn=\"3\""),
        "the charts did not draw; DOM:\n{}",
        &dom[..dom.len().min(3_000)]
    );
    assert!(
        dom.contains(&format!("data-chart-points=\"{}\"", history.len())),
        "a chart point per history point; DOM:\n{}",
        &dom[..dom.len().min(3_000)]
    );
    assert!(
        !dom.contains("charts drawn"),
        "no test-only line a user would see"
    );
    let shot = dir.join("report.png");
    run_chromium(
        &html,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,1600",
        ],
        &profile,
    )?;
    assert!(
        std::fs::metadata(&shot)?.len() > 10_000,
        "screenshot is too small"
    );
    eprintln!("report: {} (screenshot {})", html.display(), shot.display());
    Ok(())
}
