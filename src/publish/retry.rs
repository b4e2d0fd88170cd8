//! The publisher's side of the retry engine ([`crate::backoff`]): its schedule, which failures
//! are transient, the receiver's `Retry-After`, and how giving up is reported.

use std::time::{Duration, SystemTime};

use super::{PublishError, PublishPolicy};
use crate::backoff::{self, AttemptFailure, GaveUp, Jitter, PastDeadline, Stop, Verdict};

/// A failed attempt: the error and the pause the receiver asked for, if any.
pub struct Rejected {
    pub error: PublishError,
    pub retry_after: Option<Duration>,
}

impl PublishPolicy {
    /// 1 s doubling to 30 s with full jitter, by default: many clusters that failed together
    /// (a receiver outage) must not retry together.
    pub(super) fn backoff(&self) -> backoff::Policy {
        backoff::Policy {
            initial: self.first_backoff,
            factor: 2,
            cap: self.max_backoff,
            max_attempts: self.max_attempts,
            jitter: Jitter::Full,
            deadline: self.deadline,
            attempt_timeout: Some(self.request_timeout),
            past_deadline: PastDeadline::GiveUp,
        }
    }
}

/// Connect errors, timeouts, 5xx and 429 are worth another attempt, not before `Retry-After`.
pub fn verdict(rejected: &Rejected) -> Verdict {
    if rejected.error.is_transient() {
        Verdict::Retry {
            not_before: rejected.retry_after,
        }
    } else {
        Verdict::Final
    }
}

/// The error of an attempt as people read it; a cut-off attempt is one that timed out.
pub fn attempt_error(failure: &AttemptFailure<Rejected>) -> PublishError {
    match failure {
        AttemptFailure::Error(rejected) => rejected.error.clone(),
        AttemptFailure::TimedOut { after, .. } => PublishError::TimedOut { after: *after },
    }
}

/// The final error of a publish that got no acceptance.
pub fn give_up(gave_up: GaveUp<Rejected>, policy: &PublishPolicy, attempts: u32) -> PublishError {
    let (stop, last) = match gave_up {
        GaveUp::Final(rejected) => return rejected.error,
        GaveUp::Stopped { stop, last } => (stop, last),
    };
    let last = Box::new(attempt_error(&last));
    match stop {
        Stop::AttemptsExhausted => PublishError::AttemptsExhausted { attempts, last },
        Stop::DeadlineExceeded => PublishError::DeadlineExceeded {
            deadline: policy.deadline,
            attempts,
            last,
        },
        Stop::NotBeforeBeyondDeadline {
            not_before,
            remaining,
        } => PublishError::RetryAfterBeyondDeadline {
            retry_after: not_before,
            remaining,
            attempts,
            last,
        },
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
