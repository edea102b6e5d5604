//! The real `loadtest-api` under slow, keyless and idle clients (issue 12, API hardening):
//! credentials are checked from the headers before a body is read, a `Content-Length` over the
//! limit is 413 at once, bodies and headers have read timeouts, connections have a cap (503,
//! never a hang), buffered body bytes have a budget, and other clients keep getting answers in
//! under 1 s while the API's memory stays under 50 MB.
//!
//! The siege (`slow_keyless_and_idle_clients_cannot_starve_others`, about 1,500 connections at
//! once) runs in the fault stage, alone:
//! `cargo test -p loadtest-e2e --test api_hardening -- --ignored --test-threads=1 --nocapture`.
//! The small tests run with the others. Needs RabbitMQ on 127.0.0.1:5672.

use std::sync::Arc;
use std::time::{Duration, Instant};

use loadtest_e2e::*;
use tokio::sync::Mutex;

const REGISTER: &str = include_str!("../../../fixtures/original-register.json");
const REGISTER_PATH: &str = "/apiv0.1/events/register";
/// The bound on the API's memory under the slow-client tests.
const RSS_LIMIT_KIB: u64 = 50 * 1024;
/// The bound on other clients' answers.
const ANSWER_LIMIT: Duration = Duration::from_secs(1);

struct Api {
    stack: Stack,
    key_b: String,
    proc: Proc,
    url: String,
    addr: String,
    _writer: Proc,
    sink: std::path::PathBuf,
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.sink);
    }
}

/// A writer (file sink: nothing to read back here) and an API with keys A (`stack.api_key`)
/// and B, with the settings `env`, the open-files soft limit lowered to `soft_open_files`.
async fn start_api(
    name: &str,
    env: &[(&'static str, String)],
    soft_open_files: Option<u64>,
) -> anyhow::Result<Api> {
    require_rabbitmq();
    build_binaries()?;
    let stack = Stack::new(name);
    let key_b = format!("b-{}", stack.api_key);
    let sink = std::env::temp_dir().join(format!("{}.lp", stack.exchange));
    let writer = stack.start_writer(
        &format!("writer-{name}"),
        &[
            ("LOADTEST__SINK__KIND", "file".into()),
            ("LOADTEST__SINK__PATH", sink.to_string_lossy().to_string()),
        ],
    )?;
    let mut all = vec![(
        "LOADTEST__AUTH__API_KEYS",
        format!("{},{key_b}", stack.api_key),
    )];
    all.extend(env.iter().cloned());
    let (proc, url) = stack.start_api_limited(&all, soft_open_files)?;
    Ok(Api {
        addr: host_port(&url),
        stack,
        key_b,
        proc,
        url,
        _writer: writer,
        sink,
    })
}

/// One other client's calls, each on a fresh connection: `GET /healthz` and a register with
/// key B (joining one run, so the probes do not count as running runs). Returns the slowest.
async fn probe(api: &Api) -> anyhow::Result<Duration> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .build()?;
    let started = Instant::now();
    let r = client.get(format!("{}/healthz", api.url)).send().await?;
    anyhow::ensure!(r.status() == 200, "healthz: {}", r.status());
    let health = started.elapsed();
    let mut body: serde_json::Value = serde_json::from_str(REGISTER)?;
    body["runKey"] = "probe".into();
    let started = Instant::now();
    let r = client
        .post(format!("{}{REGISTER_PATH}", api.url))
        .header("X-API-Key", &api.key_b)
        .json(&body)
        .send()
        .await?;
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    anyhow::ensure!(status == 201, "register: {status} {text}");
    Ok(health.max(started.elapsed()))
}

fn key_header(key: &str) -> Vec<String> {
    vec![format!("X-API-Key: {key}")]
}

/// A `Content-Length` over the limit is answered 413 at once, before the key is checked and
/// without a byte of the body (on main: a 2 MiB body without a key got 401, and a request
/// announcing 200 MB got no answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_body_over_the_limit_is_413_at_once() -> anyhow::Result<()> {
    let api = start_api("cl413", &[], None).await?;
    for (length, headers) in [
        (200_000_000, Vec::new()),
        (2 * 1024 * 1024, Vec::new()),
        (2 * 1024 * 1024, key_header(&api.stack.api_key)),
    ] {
        let head = post_head(REGISTER_PATH, &headers, length);
        let started = Instant::now();
        let (mut s, _) = send_partial(&api.addr, head.as_bytes(), 0, ANSWER_LIMIT).await?;
        let answer = read_answer(&mut s, started + ANSWER_LIMIT).await;
        assert_eq!(
            answer.status(),
            Some(413),
            "Content-Length {length}: {answer:?}"
        );
        let RawAnswer::Response { body, .. } = answer else {
            unreachable!()
        };
        assert!(body.contains("http.body_limit"), "{body}");
    }
    Ok(())
}

/// Credentials come from the headers before the body is read: a register without a key, stats
/// with a wrong token and a commit with a malformed one are answered 401 while their bodies
/// have not arrived (on main each waited for its body first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_checked_before_the_body() -> anyhow::Result<()> {
    let api = start_api("auth", &[], None).await?;
    let run = uuid::Uuid::new_v4();
    let cases = [
        (REGISTER_PATH.to_string(), Vec::new()),
        (
            format!("/apiv0.1/events/{run}/stats"),
            vec![format!("Authorization: Bearer {}", "0".repeat(64))],
        ),
        (
            "/apiv0.1/events/commit".to_string(),
            vec!["Authorization: Bearer not-a-token".to_string()],
        ),
    ];
    for (path, headers) in cases {
        let head = post_head(&path, &headers, 500_000);
        let started = Instant::now();
        let (mut s, _) = send_partial(&api.addr, head.as_bytes(), 0, ANSWER_LIMIT).await?;
        let answer = read_answer(&mut s, started + ANSWER_LIMIT).await;
        assert_eq!(answer.status(), Some(401), "{path}: {answer:?}");
    }
    Ok(())
}

/// A keyed body that stalls gets 408 after `http.body_read_timeout_ms` (on main it waited
/// for as long as the client chose).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_gets_408() -> anyhow::Result<()> {
    let api = start_api(
        "body408",
        &[("LOADTEST__HTTP__BODY_READ_TIMEOUT_MS", "1500".into())],
        None,
    )
    .await?;
    // Key A, 100 of 1,000 body bytes, then nothing.
    let head = post_head(REGISTER_PATH, &key_header(&api.stack.api_key), 1000);
    let started = Instant::now();
    let (mut s, _) = send_partial(&api.addr, head.as_bytes(), 100, ANSWER_LIMIT).await?;
    let answer = read_answer(&mut s, started + Duration::from_secs(5)).await;
    assert_eq!(answer.status(), Some(408), "{answer:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_secs(3),
        "408 after {waited:?}"
    );
    let RawAnswer::Response { body, head, .. } = answer else {
        unreachable!()
    };
    assert!(head.contains("application/problem+json"), "{head}");
    assert!(body.contains("http.body_read_timeout_ms"), "{body}");
    Ok(())
}

/// Above `http.max_connections` a connection gets 503 with `Retry-After` at once and is
/// closed; it never waits (on main there was no cap: it waited for a slot in the kernel's
/// backlog, or got "Too many open files").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_above_the_cap_gets_503_at_once() -> anyhow::Result<()> {
    let api = start_api(
        "cap503",
        &[("LOADTEST__HTTP__MAX_CONNECTIONS", "20".into())],
        None,
    )
    .await?;
    let half = "POST /apiv0.1/events/register HTTP/1.1\r\nHost: x\r\n";
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(
            send_partial(&api.addr, half.as_bytes(), 0, ANSWER_LIMIT)
                .await?
                .0,
        );
    }
    // Let the server accept all twenty.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let (mut s, _) = send_partial(&api.addr, half.as_bytes(), 0, ANSWER_LIMIT).await?;
    let answer = read_answer(&mut s, started + ANSWER_LIMIT).await;
    assert_eq!(answer.status(), Some(503), "{answer:?}");
    let RawAnswer::Response { head, body, .. } = answer else {
        unreachable!()
    };
    assert!(head.contains("retry-after: 1"), "{head}");
    assert!(body.contains("http.max_connections"), "{body}");
    assert!(
        closed_by_server(&mut s, started + ANSWER_LIMIT)
            .await
            .is_some(),
        "the refused connection was not closed"
    );
    // A slot frees when an idle connection leaves (the server sees it go within moments).
    drop(idle.pop());
    let took = eventually(Duration::from_secs(5), "a free slot", || async {
        Ok(probe(&api).await.ok())
    })
    .await?;
    assert!(took < ANSWER_LIMIT, "{took:?}");
    Ok(())
}

/// What the attackers of one kind got back.
#[derive(Default, Debug)]
struct Tally {
    by_status: std::collections::BTreeMap<String, usize>,
}

impl Tally {
    fn add(&mut self, answer: &RawAnswer) {
        let key = match answer {
            RawAnswer::Response { status, body, .. } => {
                // The problem type's last segment tells which limit answered.
                let kind = serde_json::from_str::<serde_json::Value>(body)
                    .ok()
                    .and_then(|v| v["type"].as_str().map(str::to_string))
                    .and_then(|t| t.rsplit('/').next().map(str::to_string))
                    .unwrap_or_default();
                format!("{status} {kind}").trim().to_string()
            }
            RawAnswer::Closed => "closed".into(),
            RawAnswer::Nothing => "no answer".into(),
        };
        *self.by_status.entry(key).or_default() += 1;
    }

    fn summary(&self) -> String {
        self.by_status
            .iter()
            .map(|(k, n)| format!("{n}× {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Sends `head` and `body_bytes` of body on each of `n` connections, keeps them open (stalled)
/// and records what each gets back before `deadline`.
fn stallers(
    addr: &str,
    head: String,
    n: usize,
    body_bytes: usize,
    deadline: Instant,
    tally: Arc<Mutex<Tally>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..n)
        .map(|_| {
            let (addr, head, tally) = (addr.to_string(), head.clone(), tally.clone());
            tokio::spawn(async move {
                let answer =
                    match send_partial(&addr, head.as_bytes(), body_bytes, Duration::from_secs(5))
                        .await
                    {
                        Ok((mut s, _)) => read_answer(&mut s, deadline).await,
                        Err(_) => RawAnswer::Closed,
                    };
                tally.lock().await.add(&answer);
            })
        })
        .collect()
}

/// The slow-client siege, all at once against one API started with the usual
/// open-files soft limit of 1024 (it raises it to the hard limit): 1,100 idle half-sent
/// requests, 200 keyless and 200 keyed connections that each send about 1 MiB of body and
/// stall, and one request announcing a 200 MB body. Meanwhile another client (key B) gets its
/// answers in under 1 s and the API's peak RSS stays under 50 MB; the idle connections are
/// closed after the header-read timeout. On main: 224 MB and counting, and every other
/// client timed out ("Too many open files").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fault stage: 1,500 connections at once; run alone with --ignored --test-threads=1"]
async fn slow_keyless_and_idle_clients_cannot_starve_others() -> anyhow::Result<()> {
    // This test process needs about 1,600 sockets.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let header_timeout = Duration::from_secs(10);
    let api = start_api("siege", &[], Some(1024)).await?;
    probe(&api).await?;
    let rss_start = api.proc.memory_kib("VmRSS")?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(25);

    // 1,100 idle half-sent requests: when does the server close each?
    let half = "POST /apiv0.1/events/register HTTP/1.1\r\nHost: x\r\nX-API-Key: ";
    let idle: Vec<_> = (0..1100)
        .map(|_| {
            let addr = api.addr.clone();
            tokio::spawn(async move {
                let (mut s, _) = send_partial(&addr, half.as_bytes(), 0, ANSWER_LIMIT)
                    .await
                    .ok()?;
                closed_by_server(&mut s, deadline).await
            })
        })
        .collect();
    let keyless = Arc::new(Mutex::new(Tally::default()));
    let keyed = Arc::new(Mutex::new(Tally::default()));
    let mut attackers = stallers(
        &api.addr,
        post_head(REGISTER_PATH, &[], 1_048_000),
        200,
        1_000_000,
        deadline,
        keyless.clone(),
    );
    attackers.extend(stallers(
        &api.addr,
        post_head(REGISTER_PATH, &key_header(&api.stack.api_key), 1_048_000),
        200,
        1_000_000,
        deadline,
        keyed.clone(),
    ));
    // The 200 MB announcement: 413 at once.
    let big_started = Instant::now();
    let (mut big, _) = send_partial(
        &api.addr,
        post_head(REGISTER_PATH, &[], 200_000_000).as_bytes(),
        0,
        ANSWER_LIMIT,
    )
    .await?;
    let big_answer = read_answer(&mut big, big_started + ANSWER_LIMIT).await;
    let big_took = big_started.elapsed();

    // Another client, every 250 ms until the idle connections are closed; the API's memory,
    // every 100 ms.
    let mut slowest = Duration::ZERO;
    let mut slowest_at = Duration::ZERO;
    let mut failures = Vec::new();
    let mut probes = 0;
    let mut rss_max = rss_start;
    let mut next_probe = Instant::now();
    while started.elapsed() < header_timeout + Duration::from_secs(3) {
        rss_max = rss_max.max(api.proc.memory_kib("VmRSS")?);
        if Instant::now() >= next_probe {
            next_probe += Duration::from_millis(250);
            probes += 1;
            match probe(&api).await {
                Ok(took) if took > slowest => {
                    slowest = took;
                    slowest_at = started.elapsed();
                }
                Ok(_) => {}
                Err(e) => failures.push(format!("{:?}: {e:#}", started.elapsed())),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_peak = api.proc.memory_kib("VmHWM")?;
    let mut idle_closed = Vec::new();
    for t in idle {
        idle_closed.push(t.await?.map(|at| at.duration_since(started)));
    }
    for a in attackers {
        a.await?;
    }
    let closed: Vec<Duration> = idle_closed.iter().flatten().copied().collect();
    let keyless = keyless.lock().await.summary();
    let keyed = keyed.lock().await.summary();
    println!(
        "RELIABILITY | API siege (1,100 idle half-sent, 200 keyless and 200 keyed ~1 MiB stalled \
         bodies, one 200 MB Content-Length; soft open-files limit 1024) | RSS {:.1} MB before, \
         {:.1} MB max sampled, {:.1} MB peak (VmHWM) | other client: {probes} probes, slowest \
         {} ms (at {:.1} s), {} failed | 200 MB announcement: {:?} in {} ms | idle closed by the server: {} \
         of 1100, after {:.1}-{:.1} s | keyless: {keyless} | keyed: {keyed}",
        rss_start as f64 / 1024.0,
        rss_max as f64 / 1024.0,
        rss_peak as f64 / 1024.0,
        slowest.as_millis(),
        slowest_at.as_secs_f64(),
        failures.len(),
        big_answer.status(),
        big_took.as_millis(),
        closed.len(),
        closed.iter().min().unwrap_or(&Duration::ZERO).as_secs_f64(),
        closed.iter().max().unwrap_or(&Duration::ZERO).as_secs_f64(),
    );
    assert!(failures.is_empty(), "other clients failed: {failures:#?}");
    assert!(slowest < ANSWER_LIMIT, "slowest answer {slowest:?}");
    assert!(
        rss_peak < RSS_LIMIT_KIB,
        "peak RSS {rss_peak} KiB (limit {RSS_LIMIT_KIB} KiB)"
    );
    assert_eq!(big_answer.status(), Some(413), "{big_answer:?}");
    assert_eq!(closed.len(), 1100, "idle connections left open");
    assert!(
        closed
            .iter()
            .all(|d| *d >= header_timeout - Duration::from_secs(1)),
        "an idle connection closed before the header-read timeout"
    );
    assert!(
        !keyless.contains("201") && !keyless.contains("no answer"),
        "{keyless}"
    );
    assert!(
        !keyed.contains("201") && !keyed.contains("no answer"),
        "{keyed}"
    );
    Ok(())
}
