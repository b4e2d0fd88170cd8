//! Pure retry decisions: exponential backoff with full jitter, `Retry-After`, the attempt limit
//! and the overall deadline. No clock and no randomness of its own, so every rule is unit-tested.

use std::time::{Duration, SystemTime};

use super::PublishPolicy;

/// What to do after a transient failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Sleep this long, then send the same request again.
    Retry(Duration),
    Stop(Stop),
}

/// Why retrying ends although the failure was transient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    AttemptsExhausted,
    /// The next attempt could only start at or after the deadline.
    DeadlineExceeded,
    /// The receiver asked for a pause longer than the time left.
    RetryAfterBeyondDeadline {
        retry_after: Duration,
        remaining: Duration,
    },
}

/// The ceiling of the pause after the `failures`-th failed attempt (1-based):
/// `min(max_backoff, first_backoff · 2^(failures-1))`.
pub fn backoff_ceiling(policy: &PublishPolicy, failures: u32) -> Duration {
    // Past 2^31 the product is beyond any sensible cap anyway, so saturate rather than overflow.
    let factor = 1u32
        .checked_shl(failures.saturating_sub(1))
        .unwrap_or(u32::MAX);
    policy
        .first_backoff
        .checked_mul(factor)
        .unwrap_or(Duration::MAX)
        .min(policy.max_backoff)
}

/// Full jitter: uniform in `[0, ceiling]` for `unit` uniform in `[0, 1]`. Spreading retries
/// over the whole range keeps many clusters that failed together from retrying together.
pub fn full_jitter(ceiling: Duration, unit: f64) -> Duration {
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

/// Decides the next step after `failures` attempts, the last of which failed transiently,
/// `elapsed` into the publish. `retry_after` is what the receiver asked for; `unit` is a
/// uniform random number in `[0, 1]` for the jitter.
pub fn next_step(
    policy: &PublishPolicy,
    failures: u32,
    elapsed: Duration,
    retry_after: Option<Duration>,
    unit: f64,
) -> Next {
    if failures >= policy.max_attempts {
        return Next::Stop(Stop::AttemptsExhausted);
    }
    let remaining = policy.deadline.saturating_sub(elapsed);
    if let Some(retry_after) = retry_after
        && retry_after >= remaining
    {
        return Next::Stop(Stop::RetryAfterBeyondDeadline {
            retry_after,
            remaining,
        });
    }
    // The receiver's pause is a lower bound; the jitter still spreads retries above it.
    let wait =
        full_jitter(backoff_ceiling(policy, failures), unit).max(retry_after.unwrap_or_default());
    if wait >= remaining {
        Next::Stop(Stop::DeadlineExceeded)
    } else {
        Next::Retry(wait)
    }
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP date (RFC 9110 10.2.3), as a pause from
/// `now`. A date in the past means no pause; anything else unreadable is ignored (`None`).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn policy() -> PublishPolicy {
        PublishPolicy {
            deadline: Duration::from_secs(600),
            ..PublishPolicy::default()
        }
    }

    #[test]
    fn the_ceiling_doubles_from_one_second_to_the_thirty_second_cap() {
        let p = policy();
        let ceilings: Vec<u64> = (1..=8).map(|n| backoff_ceiling(&p, n).as_secs()).collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff_ceiling(&p, 1_000), 30 * S, "no overflow far out");
        assert_eq!(backoff_ceiling(&p, u32::MAX), 30 * S);
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling() {
        assert_eq!(full_jitter(8 * S, 0.0), Duration::ZERO);
        assert_eq!(full_jitter(8 * S, 0.5), 4 * S);
        assert_eq!(full_jitter(8 * S, 1.0), 8 * S);
        assert_eq!(
            full_jitter(8 * S, 7.0),
            8 * S,
            "out-of-range units are clamped"
        );
        let mut rng = fastrand::Rng::with_seed(7);
        let waits: Vec<Duration> = (0..1_000).map(|_| full_jitter(4 * S, rng.f64())).collect();
        assert!(waits.iter().all(|w| *w <= 4 * S));
        // Uniform, not clustered at the top as "equal jitter" would be.
        assert!(waits.iter().any(|w| *w < S / 2));
        assert!(waits.iter().any(|w| *w > 3 * S + S / 2));
    }

    #[test]
    fn retries_wait_a_jittered_backoff() {
        let p = policy();
        assert_eq!(next_step(&p, 1, S, None, 0.5), Next::Retry(S / 2));
        assert_eq!(next_step(&p, 3, S, None, 1.0), Next::Retry(4 * S));
        assert_eq!(next_step(&p, 10, S, None, 1.0), Next::Retry(30 * S));
    }

    #[test]
    fn retry_after_is_a_lower_bound_on_the_wait() {
        let p = policy();
        assert_eq!(next_step(&p, 1, S, Some(5 * S), 0.5), Next::Retry(5 * S));
        // Beyond the backoff cap is still honoured while the deadline allows it.
        assert_eq!(next_step(&p, 1, S, Some(90 * S), 0.0), Next::Retry(90 * S));
        // A jittered wait above it stands.
        assert_eq!(next_step(&p, 6, S, Some(2 * S), 1.0), Next::Retry(30 * S));
    }

    #[test]
    fn attempts_are_limited() {
        let p = policy();
        assert!(matches!(next_step(&p, 19, S, None, 0.0), Next::Retry(_)));
        assert_eq!(
            next_step(&p, 20, S, None, 0.0),
            Next::Stop(Stop::AttemptsExhausted)
        );
    }

    #[test]
    fn a_wait_that_would_pass_the_deadline_stops() {
        let p = PublishPolicy {
            deadline: 10 * S,
            ..policy()
        };
        assert_eq!(
            next_step(&p, 5, 8 * S, None, 0.1),
            Next::Retry(S + S * 6 / 10)
        );
        assert_eq!(
            next_step(&p, 5, 8 * S, None, 0.2),
            Next::Stop(Stop::DeadlineExceeded)
        );
        assert_eq!(
            next_step(&p, 1, 11 * S, None, 0.0),
            Next::Stop(Stop::DeadlineExceeded),
            "already past it"
        );
        assert_eq!(
            next_step(&p, 1, 8 * S, Some(3 * S), 0.0),
            Next::Stop(Stop::RetryAfterBeyondDeadline {
                retry_after: 3 * S,
                remaining: 2 * S
            })
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("120", now), Some(120 * S));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(30 * S)
        );
        // The obsolete forms RFC 9110 still asks recipients to accept.
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:50:07 GMT", now),
            Some(30 * S)
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:50:07 1994", now),
            Some(30 * S)
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO),
            "a past date means now"
        );
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("1.5", now), None);
    }
}
