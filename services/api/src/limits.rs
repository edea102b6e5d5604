//! Fair sharing between API keys: a request rate per API key on register and per run on stats
//! and commit (keyed GCRA from `governor`), and a cap on the running runs of one API key.
//!
//! The API is stateless and replicated, so a key's running runs are counted from the writer's
//! running set (each run carries its registering key's id), plus the registrations this
//! replica accepted that the writer has not reported yet (bounded by the cap, forgotten after
//! `auth.pending_run_ttl_s`), so a burst cannot pass the cap before the next status arrives.
//! Several replicas may each admit a burst up to the cap before the writer reports it.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use protocol::RunningSet;
use uuid::Uuid;

use crate::error::ApiError;
use crate::settings::AuthSettings;

/// How long a client refused by the running-runs cap is asked to wait: about one status
/// interval of the writer, when a finished run would have been reported.
const RUNNING_RUNS_RETRY_AFTER_S: u64 = 15;

/// A keyed rate: the limiter, and its numbers and setting name for the 429's detail.
struct Rate<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    per_second: u32,
    burst: u32,
    setting: &'static str,
}

impl<K: Hash + Eq + Clone> std::fmt::Debug for Rate<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The limiter's per-key state is not worth printing.
        f.debug_struct("Rate")
            .field("per_second", &self.per_second)
            .field("burst", &self.burst)
            .field("setting", &self.setting)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone> Rate<K> {
    /// `None` when `per_second` is 0 (no limit).
    fn new(per_second: u32, burst: u32, setting: &'static str) -> Option<Self> {
        let rate = NonZeroU32::new(per_second)?;
        let burst_nz = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Some(Self {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst_nz)),
            per_second,
            burst: burst.max(1),
            setting,
        })
    }

    /// `Ok` when `key` may make one more request now; else the seconds until it may.
    fn check(&self, key: &K) -> Result<(), u64> {
        self.limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }

    fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// Whether an admitted registration starts a new run or joins a running one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A new run, counted against its key until the writer reports it (or the TTL passes).
    New,
    /// The run is running already (the writer reported it, or this replica admitted it):
    /// another node joining through the same `runKey`, not a new run.
    Joined,
}

/// The limits of [`AuthSettings`]: per-key register rate, per-run event rate, per-key running
/// runs.
#[derive(Debug)]
pub struct Limits {
    register: Option<Rate<String>>,
    events: Option<Rate<Uuid>>,
    max_running_per_key: usize,
    pending_ttl: Duration,
    /// Per key id: the runs this replica admitted that the writer has not reported yet.
    pending: Mutex<HashMap<String, Vec<(Uuid, Instant)>>>,
}

impl Limits {
    /// The limits configured in `auth`.
    pub fn new(auth: &AuthSettings) -> Self {
        Self {
            register: Rate::new(
                auth.register_rate_per_key,
                auth.register_burst_per_key,
                "auth.register_rate_per_key",
            ),
            events: Rate::new(
                auth.event_rate_per_run,
                auth.event_burst_per_run,
                "auth.event_rate_per_run",
            ),
            max_running_per_key: auth.max_running_runs_per_key,
            pending_ttl: Duration::from_secs(auth.pending_run_ttl_s.max(1)),
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// One more register for API key `key_id`, or 429 `rate-limit`.
    pub fn check_register(&self, key_id: &str) -> Result<(), ApiError> {
        let Some(rate) = &self.register else {
            return Ok(());
        };
        rate.check(&key_id.to_string()).map_err(|wait_s| {
            limited(
                "rate-limit",
                format!(
                    "API key {key_id} made more than {} registrations per second (burst {}) \
                     (limit {}); retry in {wait_s} s",
                    rate.per_second, rate.burst, rate.setting
                ),
                wait_s,
            )
        })
    }

    /// One more stats or commit post for run `event_id`, or 429 `rate-limit`.
    pub fn check_event(&self, event_id: Uuid) -> Result<(), ApiError> {
        let Some(rate) = &self.events else {
            return Ok(());
        };
        rate.check(&event_id).map_err(|wait_s| {
            limited(
                "rate-limit",
                format!(
                    "run {event_id} posted more than {} stats or commits per second (burst {}) \
                     (limit {}); retry in {wait_s} s",
                    rate.per_second, rate.burst, rate.setting
                ),
                wait_s,
            )
        })
    }

    /// Admits run `event_id` for API key `key_id` given the writer's running set, or answers
    /// 429 `running-runs-limit` when the key has `auth.max_running_runs_per_key` running runs.
    /// A new run counts as pending until the writer reports it; call [`Limits::release`] if it
    /// was not published after all.
    pub fn admit(
        &self,
        key_id: &str,
        event_id: Uuid,
        status: &RunningSet,
        now: Instant,
    ) -> Result<Admission, ApiError> {
        if self.max_running_per_key == 0 {
            return Ok(Admission::New);
        }
        let mut reported: HashSet<Uuid> = HashSet::new();
        for e in &status.events {
            if e.uuid == event_id {
                return Ok(Admission::Joined);
            }
            if e.key_id.as_deref() == Some(key_id) {
                reported.insert(e.uuid);
            }
        }
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let list = pending.entry(key_id.to_string()).or_default();
        let ttl = self.pending_ttl;
        list.retain(|(id, at)| !reported.contains(id) && now.saturating_duration_since(*at) < ttl);
        if list.iter().any(|(id, _)| *id == event_id) {
            return Ok(Admission::Joined);
        }
        let running = reported.len() + list.len();
        if running >= self.max_running_per_key {
            return Err(limited(
                "running-runs-limit",
                format!(
                    "API key {key_id} has {running} running runs (limit \
                     auth.max_running_runs_per_key = {}); commit or let one expire first",
                    self.max_running_per_key
                ),
                RUNNING_RUNS_RETRY_AFTER_S,
            ));
        }
        list.push((event_id, now));
        Ok(Admission::New)
    }

    /// Forgets a run admitted as [`Admission::New`] whose register was not published.
    pub fn release(&self, key_id: &str, event_id: Uuid) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(list) = pending.get_mut(key_id) {
            list.retain(|(id, _)| *id != event_id);
        }
    }

    /// Drops what no longer limits anyone: expired pending runs, keys and runs whose rate
    /// budget is full again. Called periodically.
    pub fn forget_idle(&self, now: Instant) {
        if let Some(r) = &self.register {
            r.forget_idle();
        }
        if let Some(r) = &self.events {
            r.forget_idle();
        }
        let ttl = self.pending_ttl;
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        pending.retain(|_, list| {
            list.retain(|(_, at)| now.saturating_duration_since(*at) < ttl);
            !list.is_empty()
        });
    }
}

fn limited(problem: &'static str, detail: String, retry_after_s: u64) -> ApiError {
    crate::metrics::limited(problem);
    ApiError::Limited {
        problem,
        detail,
        retry_after_s: retry_after_s.max(1),
    }
}

#[cfg(test)]
mod tests {
    use protocol::RunningEvent;

    use super::*;

    fn auth(max_running: usize, register_rate: u32, event_rate: u32) -> AuthSettings {
        AuthSettings {
            enabled: true,
            api_keys: Vec::new(),
            api_keys_file: None,
            token_secret: None,
            token_secret_file: None,
            max_running_runs_per_key: max_running,
            pending_run_ttl_s: 60,
            register_rate_per_key: register_rate,
            register_burst_per_key: 3,
            event_rate_per_run: event_rate,
            event_burst_per_run: 2,
        }
    }

    fn running(runs: &[(u128, &str)]) -> RunningSet {
        let events: Vec<RunningEvent> = runs
            .iter()
            .map(|(id, key)| RunningEvent {
                uuid: Uuid::from_u128(*id),
                started_at: chrono::Utc::now(),
                last_stats_at: None,
                nodes: 1,
                key_id: Some(key.to_string()),
            })
            .collect();
        RunningSet {
            running: events.len(),
            events,
        }
    }

    fn is_limited(r: Result<Admission, ApiError>, problem: &str) -> String {
        match r {
            Err(ApiError::Limited {
                problem: p, detail, ..
            }) if p == problem => detail,
            other => panic!("expected 429 {problem}, got {other:?}"),
        }
    }

    #[test]
    fn a_key_may_not_pass_its_running_runs_counting_the_writers_and_its_own() {
        let limits = Limits::new(&auth(3, 0, 0));
        let now = Instant::now();
        // The writer reports two runs of key a, one of key b.
        let status = running(&[(1, "a"), (2, "a"), (3, "b")]);
        assert_eq!(
            limits.admit("a", Uuid::from_u128(10), &status, now).ok(),
            Some(Admission::New)
        );
        let detail = is_limited(
            limits.admit("a", Uuid::from_u128(11), &status, now),
            "running-runs-limit",
        );
        assert!(
            detail.contains("API key a has 3 running runs")
                && detail.contains("auth.max_running_runs_per_key"),
            "{detail}"
        );
        // Joining a running run (reported, or admitted here) is not a new run.
        assert_eq!(
            limits.admit("a", Uuid::from_u128(1), &status, now).ok(),
            Some(Admission::Joined)
        );
        assert_eq!(
            limits.admit("a", Uuid::from_u128(10), &status, now).ok(),
            Some(Admission::Joined)
        );
        // Another key is not affected.
        assert_eq!(
            limits.admit("b", Uuid::from_u128(20), &status, now).ok(),
            Some(Admission::New)
        );
        // Once the writer reports run 10 and run 1 ended, a has 2 runs: one more fits.
        let status = running(&[(2, "a"), (10, "a"), (3, "b"), (20, "b")]);
        assert_eq!(
            limits.admit("a", Uuid::from_u128(11), &status, now).ok(),
            Some(Admission::New)
        );
        is_limited(
            limits.admit("a", Uuid::from_u128(12), &status, now),
            "running-runs-limit",
        );
    }

    #[test]
    fn unreported_runs_count_until_the_ttl_and_a_failed_publish_releases_its_place() {
        let limits = Limits::new(&auth(2, 0, 0));
        let empty = RunningSet::default();
        let t0 = Instant::now();
        limits
            .admit("a", Uuid::from_u128(1), &empty, t0)
            .expect("first");
        limits
            .admit("a", Uuid::from_u128(2), &empty, t0)
            .expect("second");
        is_limited(
            limits.admit("a", Uuid::from_u128(3), &empty, t0),
            "running-runs-limit",
        );
        limits.release("a", Uuid::from_u128(2));
        limits
            .admit("a", Uuid::from_u128(3), &empty, t0)
            .expect("the released place");
        // Never reported by the writer: forgotten after the TTL.
        let later = t0 + Duration::from_secs(61);
        limits.forget_idle(later);
        limits
            .admit("a", Uuid::from_u128(4), &empty, later)
            .expect("after the TTL");
    }

    #[test]
    fn zero_turns_the_running_runs_cap_and_the_rates_off() {
        let limits = Limits::new(&auth(0, 0, 0));
        let empty = RunningSet::default();
        for i in 0..500 {
            assert_eq!(
                limits
                    .admit("a", Uuid::from_u128(i), &empty, Instant::now())
                    .ok(),
                Some(Admission::New)
            );
            assert!(limits.check_register("a").is_ok());
            assert!(limits.check_event(Uuid::from_u128(1)).is_ok());
        }
    }

    #[test]
    fn rates_are_per_key_and_per_run_with_retry_after() {
        let limits = Limits::new(&auth(0, 1, 1));
        for _ in 0..3 {
            limits.check_register("a").expect("within the burst");
        }
        match limits.check_register("a") {
            Err(ApiError::Limited {
                problem: "rate-limit",
                detail,
                retry_after_s,
            }) => {
                assert!(
                    detail.contains("API key a") && detail.contains("auth.register_rate_per_key"),
                    "{detail}"
                );
                assert!((1..=2).contains(&retry_after_s), "{retry_after_s}");
            }
            other => panic!("expected 429, got {other:?}"),
        }
        limits.check_register("b").expect("another key");
        let run = Uuid::from_u128(7);
        limits.check_event(run).expect("1");
        limits.check_event(run).expect("2");
        match limits.check_event(run) {
            Err(ApiError::Limited { detail, .. }) => {
                assert!(detail.contains("auth.event_rate_per_run"), "{detail}")
            }
            other => panic!("expected 429, got {other:?}"),
        }
        limits.check_event(Uuid::from_u128(8)).expect("another run");
    }
}
