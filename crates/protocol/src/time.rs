//! Snapshot timestamps aligned to the wall clock, so a redelivered or retried write overwrites
//! the same point instead of adding one.

use chrono::{DateTime, Utc};
use std::time::Duration;

/// Nanoseconds since the Unix epoch of `t` (saturating far outside ±292 years).
pub fn unix_nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// The largest multiple of `interval` at or before `t`, in Unix nanoseconds.
pub fn align_down(t: DateTime<Utc>, interval: Duration) -> i64 {
    let step = interval.as_nanos().max(1) as i64;
    unix_nanos(t).div_euclid(step) * step
}

/// The smallest multiple of `interval` at or after `t`, in Unix nanoseconds.
pub fn align_up(t: DateTime<Utc>, interval: Duration) -> i64 {
    let step = interval.as_nanos().max(1) as i64;
    let n = unix_nanos(t);
    let down = n.div_euclid(step) * step;
    if down == n {
        n
    } else {
        down + step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_to_multiples() {
        let t = DateTime::parse_from_rfc3339("2026-11-29T08:00:07.5Z")
            .expect("ts")
            .with_timezone(&Utc);
        let i = Duration::from_secs(15);
        assert_eq!(align_down(t, i) % 15_000_000_000, 0);
        assert_eq!(align_up(t, i) - align_down(t, i), 15_000_000_000);
        let exact = DateTime::parse_from_rfc3339("2026-11-29T08:00:15Z")
            .expect("ts")
            .with_timezone(&Utc);
        assert_eq!(align_up(exact, i), align_down(exact, i));
    }
}
