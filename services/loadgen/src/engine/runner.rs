//! The users: tokio tasks that send HTTP GET requests one after the other and record each
//! outcome in their stats shard.
//!
//! Users run on [`LoadPlan::threads`] threads, each driving its own single-threaded tokio
//! runtime, and are dealt to them in turn (as wrk deals connections to its threads): a user's
//! socket, timers and stats stay on one thread, with no work stealing and no cross-thread
//! wake-ups on the request path. The spawn schedule, progress and stats publishing run on the
//! caller's runtime.
//!
//! Stopping has two steps, so counts stay exact: `stop` (run time over, ctrl-c, or the request
//! budget spent) makes every user finish its in-flight request and start no new one; `abort`
//! (fired `--stop-timeout` after `stop`) cancels requests still in flight, which are then
//! counted as failures of their own kind ([`CANCELLED_ERROR`], their response time the time
//! they were in flight), so the count equals what was sent. With `-n N` a shared atomic counter hands out exactly N request
//! tickets, and the ticket number also picks the path, so paths get equal shares.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::fasthttp::{Connector, FastConn, FastTarget, Protocol};
use super::scenario::{RequestSpec, Scenario};
use super::stats::{unix_now, Sample, ShardHandle, Stats};

/// The error of a request still in flight at the stop timeout: cancelled, and counted as a
/// failure (its response time is how long it had been in flight).
pub const CANCELLED_ERROR: &str = "cancelled: in flight at the stop timeout";

/// What the users do.
#[derive(Debug, Clone)]
pub(crate) struct LoadPlan {
    /// What the users request (`--path`s or a `--scenario` file); URLs resolved under `host`.
    pub(crate) scenario: Arc<Scenario>,
    /// Concurrent users.
    pub(crate) users: u64,
    /// Users started per second.
    pub(crate) spawn_rate: f64,
    /// Total requests to send, or unlimited.
    pub(crate) iterations: Option<u64>,
    /// Open model: requests started per second, whatever the responses do; `users` is then
    /// the number of connections (workers) sending them. `None`: closed model.
    pub(crate) arrival_rate: Option<f64>,
    /// Per-request timeout.
    pub(crate) timeout: Duration,
    /// Threads the users run on; 0: one per CPU this process may run on.
    pub(crate) threads: usize,
    /// How the users connect (TLS settings, HTTP version, HTTP/2 streams per user).
    pub(crate) connector: Arc<Connector>,
}

impl LoadPlan {
    /// The number of user threads: [`LoadPlan::threads`], or the CPUs this process may run on
    /// (its affinity mask and cgroup quota), never more than the users.
    pub(crate) fn user_threads(&self) -> usize {
        let n = match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        n.clamp(1, usize::try_from(self.users).unwrap_or(usize::MAX).max(1))
    }
}

/// Live counters shared with the progress printer and the stats publishers.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    users: AtomicU64,
    spawning_done: std::sync::atomic::AtomicBool,
}

impl Progress {
    /// Users started so far.
    pub(crate) fn users(&self) -> u64 {
        self.users.load(Ordering::Relaxed)
    }

    /// `spawning` while users are still being started, then `running`.
    pub(crate) fn state(&self) -> &'static str {
        if self.spawning_done.load(Ordering::Relaxed) {
            "running"
        } else {
            "spawning"
        }
    }
}

/// How the users ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunnerReport {
    /// Users that were started.
    pub(crate) users_started: u64,
    /// Requests cancelled by the stop timeout (counted as failures, [`CANCELLED_ERROR`]).
    pub(crate) requests_cancelled: u64,
    /// Requests answered over HTTP/1.1 and over HTTP/2 (the rest got no response).
    pub(crate) protocols: ProtocolCounts,
}

/// Requests answered per HTTP version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ProtocolCounts {
    /// Answered over HTTP/1.1.
    pub(crate) http1: u64,
    /// Answered over HTTP/2.
    pub(crate) http2: u64,
}

impl ProtocolCounts {
    fn add(&mut self, protocol: Option<Protocol>) {
        match protocol {
            Some(Protocol::Http1) => self.http1 += 1,
            Some(Protocol::Http2) => self.http2 += 1,
            None => {}
        }
    }
}

/// [`ProtocolCounts`] summed over the users (each adds its own when it ends, so the request
/// path touches no shared counter).
#[derive(Debug, Default)]
struct SharedProtocolCounts {
    http1: AtomicU64,
    http2: AtomicU64,
}

impl SharedProtocolCounts {
    fn add(&self, c: ProtocolCounts) {
        self.http1.fetch_add(c.http1, Ordering::Relaxed);
        self.http2.fetch_add(c.http2, Ordering::Relaxed);
    }

    fn get(&self) -> ProtocolCounts {
        ProtocolCounts {
            http1: self.http1.load(Ordering::Relaxed),
            http2: self.http2.load(Ordering::Relaxed),
        }
    }
}

/// Hands out request tickets: ticket `k` is the `k`-th request of the run (0-based).
#[derive(Debug)]
struct Tickets {
    next: AtomicU64,
    limit: Option<u64>,
}

impl Tickets {
    fn take(&self) -> Option<u64> {
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        match self.limit {
            Some(limit) if k >= limit => None,
            _ => Some(k),
        }
    }
}

/// File descriptors loadgen keeps besides one socket per user: stdio, the runtimes' own, the
/// API or AMQP connections, report files, and reconnects whose old socket is still closing.
const RESERVED_FILES: u64 = 256;

/// Raises the soft limit on open files so `users` connections fit (one socket each, plus
/// [`RESERVED_FILES`]), as far as the hard limit allows. Errors: the hard limit is too low, with
/// what to run to raise it.
pub(crate) fn raise_open_files(users: u64) -> anyhow::Result<()> {
    let need = users.saturating_add(RESERVED_FILES);
    let soft = match rlimit::increase_nofile_limit(need) {
        Ok(soft) => soft,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read or raise the open-files limit");
            return Ok(());
        }
    };
    if soft < need {
        let hard = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(soft, |(_, hard)| hard);
        anyhow::bail!(
            "-u {users} needs {need} open files (one socket per user, {RESERVED_FILES} for loadgen itself), \
             but the hard limit is {hard}: raise it with `ulimit -n {need}` (as root, or in \
             /etc/security/limits.conf; LimitNOFILE={need} under systemd, --ulimit nofile={need} in docker), \
             or run fewer users per process"
        );
    }
    Ok(())
}

/// The shared HTTP client the users use: one connection pool for all of them.
pub(crate) fn http_client(plan: &LoadPlan) -> anyhow::Result<reqwest::Client> {
    let pool = usize::try_from(plan.users).unwrap_or(usize::MAX);
    Ok(reqwest::Client::builder()
        .timeout(plan.timeout)
        .connect_timeout(plan.timeout.min(Duration::from_secs(10)))
        .pool_max_idle_per_host(pool)
        .tcp_nodelay(true)
        .user_agent(concat!("loadgen/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// Starts USERS users at the spawn rate and waits until all have finished. Returns when the
/// request budget is spent, or after `stop` fired and every user finished (or was cut off by
/// `abort`).
pub(crate) async fn run_users(
    plan: LoadPlan,
    stats: Arc<Stats>,
    progress: Arc<Progress>,
    stop: CancellationToken,
    abort: CancellationToken,
) -> anyhow::Result<RunnerReport> {
    anyhow::ensure!(
        !plan.scenario.requests.is_empty()
            && plan.scenario.requests.iter().all(|r| r.url.is_some()),
        "no requests to send (the scenario's URLs are not resolved)"
    );
    let tickets = Arc::new(Tickets {
        next: AtomicU64::new(0),
        limit: plan.iterations,
    });
    let cancelled = Arc::new(AtomicU64::new(0));
    let protocols = Arc::new(SharedProtocolCounts::default());
    let mut users = UserThreads::start(&plan)?;
    let spawn_start = Instant::now();
    // Open model: every worker starts at once; request k is due at start + k / rate.
    let open = plan.arrival_rate.map(|rate| (spawn_start, rate));
    for i in 0..plan.users {
        let due = if open.is_some() {
            spawn_start
        } else {
            spawn_start + Duration::from_secs_f64(i as f64 / plan.spawn_rate)
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep_until(due) => {}
        }
        if plan
            .iterations
            .is_some_and(|n| tickets.next.load(Ordering::Relaxed) >= n)
        {
            // The budget is spent; more users would have nothing to do.
            break;
        }
        let fast = plan
            .scenario
            .requests
            .iter()
            .all(|r| r.fast.is_some())
            .then(|| FastConn::new(Arc::clone(&plan.connector)));
        let user = User {
            fast,
            timeout: plan.timeout,
            scenario: Arc::clone(&plan.scenario),
            open,
            tickets: Arc::clone(&tickets),
            shard: stats.shard(),
            stop: stop.clone(),
            abort: abort.clone(),
            cancelled: Arc::clone(&cancelled),
            protocols: Arc::clone(&protocols),
            lanes: plan.connector.h2_streams,
        };
        users.add(user);
        progress.users.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(user = i, "user started");
    }
    progress.spawning_done.store(true, Ordering::Relaxed);
    let users_started = progress.users();
    users.join().await;
    Ok(RunnerReport {
        users_started,
        requests_cancelled: cancelled.load(Ordering::Relaxed),
        protocols: protocols.get(),
    })
}

/// The threads the users run on, each driving a single-threaded tokio runtime with its own
/// `reqwest` client (for a URL the fast path cannot take; its pooled connections then live on
/// the runtime that uses them).
struct UserThreads {
    queues: Vec<mpsc::UnboundedSender<User>>,
    finished: Vec<oneshot::Receiver<()>>,
    next: usize,
}

impl UserThreads {
    fn start(plan: &LoadPlan) -> anyhow::Result<Self> {
        let n = plan.user_threads();
        let mut threads = Self {
            queues: Vec::with_capacity(n),
            finished: Vec::with_capacity(n),
            next: 0,
        };
        for i in 0..n {
            let client = http_client(plan)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start a users' runtime")?;
            let (queue, mut arrivals) = mpsc::unbounded_channel::<User>();
            let (done, finished) = oneshot::channel();
            std::thread::Builder::new()
                .name(format!("loadgen-users-{i}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        let mut users = JoinSet::new();
                        loop {
                            tokio::select! {
                                user = arrivals.recv() => match user {
                                    Some(user) => {
                                        users.spawn(user.run(client.clone()));
                                    }
                                    None => break,
                                },
                                Some(joined) = users.join_next() => report(joined),
                            }
                        }
                        while let Some(joined) = users.join_next().await {
                            report(joined);
                        }
                    });
                    let _ = done.send(());
                })
                .context("cannot start a users' thread")?;
            threads.queues.push(queue);
            threads.finished.push(finished);
        }
        Ok(threads)
    }

    /// Hands `user` to the next thread in turn.
    fn add(&mut self, user: User) {
        let i = self.next % self.queues.len();
        self.next += 1;
        if self.queues[i].send(user).is_err() {
            tracing::error!(thread = i, "a users' thread is gone; user not started");
        }
    }

    /// Waits until every user has finished.
    async fn join(self) {
        drop(self.queues);
        for finished in self.finished {
            // An error means the thread ended without saying so; it is over all the same.
            let _ = finished.await;
        }
    }
}

fn report(joined: Result<(), tokio::task::JoinError>) {
    if let Err(e) = joined {
        tracing::error!(error = %e, "a user task failed");
    }
}

struct User {
    /// The user's own connection for `http://` targets (see [`super::fasthttp`]).
    fast: Option<FastConn>,
    timeout: Duration,
    scenario: Arc<Scenario>,
    /// Open model: (start, requests per second).
    open: Option<(Instant, f64)>,
    tickets: Arc<Tickets>,
    shard: ShardHandle,
    stop: CancellationToken,
    abort: CancellationToken,
    cancelled: Arc<AtomicU64>,
    /// Where the user adds its requests per HTTP version when it ends.
    protocols: Arc<SharedProtocolCounts>,
    /// Requests the user keeps in flight at once (`--h2-streams`, on its one HTTP/2
    /// connection); 1 otherwise.
    lanes: usize,
}

impl User {
    async fn run(mut self, client: reqwest::Client) {
        let fast = self.fast.take();
        let counts = match fast {
            Some(conn) if self.lanes > 1 => {
                let lanes = (1..self.lanes)
                    .map(|_| Some(conn.lane()))
                    .collect::<Vec<_>>();
                let all = futures::future::join_all(
                    std::iter::once(Some(conn))
                        .chain(lanes)
                        .map(|conn| self.lane(conn, &client)),
                )
                .await;
                all.into_iter()
                    .fold(ProtocolCounts::default(), |a, c| ProtocolCounts {
                        http1: a.http1 + c.http1,
                        http2: a.http2 + c.http2,
                    })
            }
            fast => self.lane(fast, &client).await,
        };
        self.protocols.add(counts);
    }

    /// One request after the other until the user stops; returns the requests answered per
    /// HTTP version.
    async fn lane(&self, mut fast: Option<FastConn>, client: &reqwest::Client) -> ProtocolCounts {
        let mut counts = ProtocolCounts::default();
        // Waiting for cancellation registers a waiter; do it once, not once per request.
        let (stop, abort) = (self.stop.clone(), self.abort.clone());
        let stopped = stop.cancelled();
        let aborted = abort.cancelled();
        tokio::pin!(stopped, aborted);
        while !self.stop.is_cancelled() {
            let Some(ticket) = self.tickets.take() else {
                break;
            };
            let spec = self.scenario.pick(ticket);
            let origin = match self.open {
                None => Instant::now(),
                Some((start, rate)) => {
                    let due = start + Duration::from_secs_f64(ticket as f64 / rate);
                    // tokio's timer fires on whole milliseconds, rounding up: aim half a
                    // millisecond early, so sends land within ±0.5 ms of their due time.
                    let wake = due.checked_sub(OPEN_EARLY).unwrap_or(due);
                    if wake > Instant::now() {
                        tokio::select! {
                            _ = &mut stopped => break,
                            _ = tokio::time::sleep_until(wake) => {}
                        }
                    }
                    due
                }
            };
            let sent = match (&mut fast, &spec.fast) {
                (Some(conn), Some(target)) => futures::future::Either::Left(fast_request(
                    conn,
                    target,
                    spec,
                    origin,
                    self.timeout,
                )),
                _ => futures::future::Either::Right(request_from(client, spec, origin)),
            };
            let in_flight_since = Instant::now().min(origin);
            let (outcome, cancelled) = tokio::select! {
                biased;
                o = sent => (o, false),
                _ = &mut aborted => {
                    self.cancelled.fetch_add(1, Ordering::Relaxed);
                    let o = Outcome {
                        response_time_ms: in_flight_since.elapsed().as_secs_f64() * 1_000.0,
                        content_length: 0,
                        error: Some(CANCELLED_ERROR.to_string()),
                        protocol: None,
                    };
                    (o, true)
                }
            };
            counts.add(outcome.protocol);
            self.shard.record(&Sample {
                method: spec.method.as_str(),
                name: &spec.name,
                response_time_ms: outcome.response_time_ms,
                content_length: outcome.content_length,
                error: outcome.error,
                finished_at: unix_now(),
            });
            if cancelled {
                break;
            }
            let think = self.scenario.think_time;
            if self.open.is_none() && !think.is_zero() {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tokio::time::sleep(think.sample()) => {}
                }
            }
        }
        counts
    }
}

/// The outcome of one request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    /// Time from sending until the whole body was read, ms.
    pub(crate) response_time_ms: f64,
    /// Body size, bytes.
    pub(crate) content_length: u64,
    /// `None` on success; `HTTP <status>` for status >= 400, or the transport error kind.
    pub(crate) error: Option<String>,
    /// The HTTP version of the response; `None` when none came.
    pub(crate) protocol: Option<Protocol>,
}

/// [`request_from`] on the user's own connection (see [`super::fasthttp`]).
async fn fast_request(
    conn: &mut FastConn,
    target: &FastTarget,
    spec: &RequestSpec,
    origin: Instant,
    timeout: Duration,
) -> Outcome {
    let started = Instant::now().min(origin);
    let result = conn.send(target, timeout).await;
    let response_time_ms = started.elapsed().as_secs_f64() * 1_000.0;
    match result {
        Ok((status, len, protocol)) => Outcome {
            response_time_ms,
            content_length: len,
            error: spec.check_status(status),
            protocol: Some(protocol),
        },
        Err(e) => Outcome {
            response_time_ms,
            content_length: 0,
            error: Some(e.to_string()),
            protocol: None,
        },
    }
}

/// How early an open-model worker wakes before a request's due time.
const OPEN_EARLY: Duration = Duration::from_micros(500);

/// Sends one request of `spec` through `reqwest` and reads the whole body. A status `spec` does
/// not expect (by default: 400 and above) is a failure. The response is timed from `origin`
/// when that is earlier than the actual send: in the open model `origin` is the request's due
/// time, so a request sent late (all workers were busy) counts the wait too — the correction
/// for coordinated omission.
pub(crate) async fn request_from(
    client: &reqwest::Client,
    spec: &RequestSpec,
    origin: Instant,
) -> Outcome {
    let started = Instant::now().min(origin);
    let Some(url) = spec.url.clone() else {
        return Outcome {
            response_time_ms: 0.0,
            content_length: 0,
            error: Some("request error".to_string()),
            protocol: None,
        };
    };
    let result = async {
        let mut req = client.request(spec.method.clone(), url);
        if !spec.headers.is_empty() {
            req = req.headers(spec.headers.clone());
        }
        if let Some(body) = &spec.body {
            req = req.body(body.clone());
        }
        let resp = req.send().await?;
        let status = resp.status();
        let body = resp.bytes().await?;
        Ok::<_, reqwest::Error>((status, body.len() as u64))
    }
    .await;
    let response_time_ms = started.elapsed().as_secs_f64() * 1_000.0;
    match result {
        Ok((status, len)) => Outcome {
            response_time_ms,
            content_length: len,
            error: spec.check_status(status.as_u16()),
            protocol: Some(Protocol::Http1),
        },
        Err(e) => {
            tracing::debug!(error = %e, "request failed");
            Outcome {
                response_time_ms,
                content_length: 0,
                error: Some(transport_error_kind(&e).to_string()),
                protocol: None,
            }
        }
    }
}

/// The kind of a transport error, in the words the fast path's [`super::fasthttp::FastError`]
/// uses too: `timeout`, `connection error`, `redirect error`, `body error`, `decode error` or
/// `request error`.
pub(crate) fn transport_error_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection error"
    } else if e.is_redirect() {
        "redirect error"
    } else if e.is_body() {
        "body error"
    } else if e.is_decode() {
        "decode error"
    } else {
        "request error"
    }
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
