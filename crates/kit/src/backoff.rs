//! One backoff policy for every retry loop: capped exponential delays with jitter
//! ([`backon`]'s `ExponentialBuilder`), and a [`Backoff::reset`] so a loop that got through
//! starts again from the first delay.
//!
//! [`reconnect`] is the loop the long-lived broker sessions run (the writer's consumer, the API's
//! status follower): it resets the backoff after every session that was established, so a few
//! broker blips spread over a day do not leave every later reconnect waiting the cap.

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

/// Capped exponential backoff with jitter: the first delay is `first`, each next one doubles,
/// and each is stretched by a random factor in `[1, 2)`, then capped at `max` (the cap is a cap:
/// no delay is ever longer). [`Backoff::reset`] starts again from `first`. It never runs out:
/// callers bound their retrying by time or by shutdown.
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    delays: ExponentialBackoff,
    max: Duration,
}

impl Backoff {
    /// A backoff starting at `first`, doubling, capped at `max` (if `first > max`, every delay
    /// is `max`).
    pub fn new(first: Duration, max: Duration) -> Self {
        let builder = ExponentialBuilder::new()
            .with_min_delay(first.min(max))
            .with_max_delay(max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Self {
            delays: builder.build(),
            builder,
            max,
        }
    }

    /// The next delay to wait, in `[first, max]`.
    pub fn next_delay(&mut self) -> Duration {
        self.delays.next().unwrap_or(self.max).min(self.max)
    }

    /// Starts again from the first delay (call it once an attempt got through).
    pub fn reset(&mut self) {
        self.delays = self.builder.build();
    }

    /// The cap.
    pub fn max(&self) -> Duration {
        self.max
    }
}

/// Why a broker session ended, and whether it had been established first (connected and
/// consuming): [`reconnect`] resets its backoff after an established session, and keeps
/// backing off while attempts fail before that point.
#[derive(Debug)]
pub struct SessionError {
    /// What ended the session.
    pub error: anyhow::Error,
    /// Whether the session had been established before it ended.
    pub established: bool,
}

impl SessionError {
    /// A session that failed before it was established (connecting, declaring, consuming).
    pub fn before(error: impl Into<anyhow::Error>) -> Self {
        Self {
            error: error.into(),
            established: false,
        }
    }

    /// A session that was established, then ended.
    pub fn after(error: impl Into<anyhow::Error>) -> Self {
        Self {
            error: error.into(),
            established: true,
        }
    }
}

/// Runs `session` again and again until it returns `Ok(())` (a clean stop) or `shutdown` is
/// cancelled, waiting `backoff`'s next delay between attempts. The backoff is reset after a
/// session that was established ([`SessionError::after`]), so the first reconnect after a
/// working session waits the first delay again, while attempts that fail before establishing
/// back off up to the cap. Each ended session is logged once at warn level with `what`.
///
/// `session` is not cancelled when `shutdown` fires: it watches `shutdown` itself, so it can
/// stop cleanly (finish a write, close its connection); the wait between sessions is cancelled.
pub async fn reconnect<F, Fut>(
    what: &'static str,
    mut backoff: Backoff,
    shutdown: &CancellationToken,
    mut session: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), SessionError>>,
{
    loop {
        let ended = match session().await {
            Ok(()) => return,
            Err(e) => e,
        };
        if shutdown.is_cancelled() {
            return;
        }
        if ended.established {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        tracing::warn!(
            session = what,
            error = %format!("{:#}", ended.error),
            established = ended.established,
            retry_in_ms = delay.as_millis() as u64,
            "session ended; reconnecting"
        );
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::time::Instant;

    use super::*;

    const FIRST: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(10);

    #[test]
    fn delays_grow_to_the_cap_and_reset() {
        let mut b = Backoff::new(FIRST, MAX);
        let delays: Vec<Duration> = (0..12).map(|_| b.next_delay()).collect();
        for (i, d) in delays.iter().enumerate() {
            let floor = (FIRST * 2u32.pow(i as u32)).min(MAX);
            assert!(
                *d >= floor && *d <= MAX,
                "delay {i} = {d:?}, want [{floor:?}, {MAX:?}]"
            );
        }
        assert_eq!(delays[11], MAX, "at the cap, jitter cannot pass it");
        b.reset();
        let d = b.next_delay();
        assert!(d >= FIRST && d < FIRST * 2, "after reset: {d:?}");
    }

    #[test]
    fn first_above_max_is_max() {
        let mut b = Backoff::new(Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(b.next_delay(), Duration::from_secs(1));
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }

    // Waits are measured on Tokio's paused clock, which rounds a sleep up to the next
    // millisecond: upper bounds are inclusive.

    /// Runs [`reconnect`] with a session that ends `outcomes.len()` times (established or not,
    /// in that order) and then stops cleanly; returns the waits between the sessions.
    async fn waits_between(outcomes: Vec<bool>) -> Vec<Duration> {
        let starts = Arc::new(Mutex::new(Vec::new()));
        let shutdown = CancellationToken::new();
        let mut left = outcomes.into_iter();
        let s = starts.clone();
        reconnect("test", Backoff::new(FIRST, MAX), &shutdown, move || {
            s.lock().expect("lock").push(Instant::now());
            let next = left.next();
            async move {
                match next {
                    Some(true) => Err(SessionError::after(anyhow::anyhow!("broker went away"))),
                    Some(false) => Err(SessionError::before(anyhow::anyhow!("refused"))),
                    None => Ok(()),
                }
            }
        })
        .await;
        let starts = starts.lock().expect("lock");
        starts.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// The defect this guards: the reconnect backoff never reset after a working session, so
    /// after a few broker blips every reconnect waited the cap.
    #[tokio::test(start_paused = true)]
    async fn established_sessions_reset_the_backoff() {
        let waits = waits_between(vec![true; 6]).await;
        assert_eq!(waits.len(), 6);
        for (i, w) in waits.iter().enumerate() {
            assert!(
                *w >= FIRST && *w <= FIRST * 2,
                "reconnect {i} after a working session waited {w:?}: the backoff was not reset ({waits:?})"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failed_attempts_back_off_to_the_cap() {
        let waits = waits_between(vec![false; 7]).await;
        assert!(waits[0] >= FIRST && waits[0] <= FIRST * 2, "{waits:?}");
        assert!(waits[3] >= FIRST * 8, "{waits:?}");
        assert_eq!(waits[6], MAX, "{waits:?}");
        // A session that gets through resets it; the failures after it start over.
        let waits = waits_between(vec![false, false, false, false, true, false]).await;
        assert!(waits[3] >= FIRST * 8, "{waits:?}");
        assert!(waits[4] <= FIRST * 2, "{waits:?}");
        assert!(waits[5] >= FIRST * 2 && waits[5] <= FIRST * 4, "{waits:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_the_wait() {
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        let started = Instant::now();
        reconnect("test", Backoff::new(MAX, MAX), &shutdown, move || {
            let s = s.clone();
            async move {
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    s.cancel();
                });
                Err(SessionError::before(anyhow::anyhow!("refused")))
            }
        })
        .await;
        assert!(started.elapsed() < MAX, "{:?}", started.elapsed());
    }
}
