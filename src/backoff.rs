//! One retry engine for every caller: exponential backoff (optionally with full jitter), an
//! attempt limit, a per-attempt time limit and an overall deadline, plus a "not sooner than"
//! hint a failure may carry (HTTP `Retry-After`).
//!
//! A leaf: it knows nothing of the crate. Each caller brings its own [`Policy`] and its own rule
//! for which errors are worth another attempt. The decisions are pure ([`Policy::next_step`]) so
//! every rule is unit-tested without a clock; [`retry`] runs them against tokio's clock.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How the pause before a retry is drawn from the backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jitter {
    /// Exactly the backoff: fine when one client retries against one server.
    None,
    /// Uniform in `[0, backoff]`, so many clients that failed together do not retry together.
    Full,
}

/// What to do when the next pause would reach the deadline, so no attempt could follow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PastDeadline {
    /// Give up at once.
    GiveUp,
    /// Wait until the deadline, then give up: the caller's "nothing within the deadline" is then
    /// literally true, and a hung call and a failing one take the same time.
    WaitOut,
}

/// How hard to try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The backoff after the first failure.
    pub initial: Duration,
    /// Each further failure multiplies the backoff by this (at least 1).
    pub factor: u32,
    /// The backoff never grows beyond this.
    pub cap: Duration,
    /// Attempts at most, the first included.
    pub max_attempts: u32,
    pub jitter: Jitter,
    /// Everything, attempts and pauses, ends within this from the start.
    pub deadline: Duration,
    /// One attempt's time limit (always cut at the deadline too); `None` for the deadline alone.
    pub attempt_timeout: Option<Duration>,
    pub past_deadline: PastDeadline,
}

/// What a caller's rule says about an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Retrying cannot help.
    Final,
    /// Worth another attempt; when `not_before` is given, not sooner than that from now.
    Retry { not_before: Option<Duration> },
}

/// What to do after a failure worth retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Pause this long, then try again.
    Retry(Duration),
    Stop(Stop),
}

/// Why retrying ended although the failure was worth retrying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    AttemptsExhausted,
    /// The next attempt could only start at or after the deadline.
    DeadlineExceeded,
    /// The failure asked for a pause at least as long as the time left.
    NotBeforeBeyondDeadline {
        not_before: Duration,
        remaining: Duration,
    },
}

/// How one attempt failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptFailure<E> {
    /// The attempt returned an error.
    Error(E),
    /// The attempt was cut off after `after` (its time limit or the deadline). `earlier` is the
    /// error of the latest attempt that returned one, which often says more than the cut.
    TimedOut { after: Duration, earlier: Option<E> },
}

/// Why [`retry`] produced no value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GaveUp<E> {
    /// The caller's rule called this error final.
    Final(E),
    /// Retrying ran out, after `last`.
    Stopped { stop: Stop, last: AttemptFailure<E> },
}

/// The end of [`retry`]: the value or why there is none, and how many attempts it took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retried<T, E> {
    pub attempts: u32,
    pub result: Result<T, GaveUp<E>>,
}

/// What an attempt is told when it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// Time left before the deadline; the attempt is cut off then.
    pub remaining: Duration,
}

/// A retry about to happen, for the caller's log line.
#[derive(Debug)]
pub struct Retrying<'a, E> {
    /// The attempt that just failed.
    pub attempt: u32,
    pub failure: &'a AttemptFailure<E>,
    pub wait: Duration,
}

impl Policy {
    /// The backoff after the `failures`-th failed attempt (1-based):
    /// `min(cap, initial · factor^(failures-1))`, the ceiling of the pause under full jitter.
    pub fn backoff(&self, failures: u32) -> Duration {
        // Far out the product is beyond any cap anyway, so saturate rather than overflow.
        self.factor
            .checked_pow(failures.saturating_sub(1))
            .and_then(|factor| self.initial.checked_mul(factor))
            .unwrap_or(Duration::MAX)
            .min(self.cap)
    }

    /// Decides the next step after `failures` attempts, the last of which failed in a way worth
    /// retrying, `elapsed` from the start. `not_before` is the failure's own minimum pause;
    /// `unit` is a uniform random number in `[0, 1]` for the jitter.
    pub fn next_step(
        &self,
        failures: u32,
        elapsed: Duration,
        not_before: Option<Duration>,
        unit: f64,
    ) -> Next {
        if failures >= self.max_attempts {
            return Next::Stop(Stop::AttemptsExhausted);
        }
        let remaining = self.deadline.saturating_sub(elapsed);
        if let Some(not_before) = not_before
            && not_before >= remaining
        {
            return Next::Stop(Stop::NotBeforeBeyondDeadline {
                not_before,
                remaining,
            });
        }
        let backoff = self.backoff(failures);
        let drawn = match self.jitter {
            Jitter::None => backoff,
            Jitter::Full => full_jitter(backoff, unit),
        };
        // The failure's pause is a lower bound; the jitter still spreads retries above it.
        let wait = drawn.max(not_before.unwrap_or_default());
        if wait >= remaining {
            Next::Stop(Stop::DeadlineExceeded)
        } else {
            Next::Retry(wait)
        }
    }
}

/// Full jitter: uniform in `[0, ceiling]` for `unit` uniform in `[0, 1]`. Spreading retries over
/// the whole range, not just its top, is what keeps clients that failed together apart.
pub fn full_jitter(ceiling: Duration, unit: f64) -> Duration {
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

/// Runs `attempt` until it succeeds or `policy` says to stop. `rule` judges each error an
/// attempt returns; an attempt cut off by its time limit is always worth another if time allows.
/// `on_retry` hears of each retry before its pause.
pub async fn retry<T, E, A, Fut>(
    policy: &Policy,
    mut attempt: A,
    mut rule: impl FnMut(&E) -> Verdict,
    mut on_retry: impl FnMut(&Retrying<'_, E>),
) -> Retried<T, E>
where
    A: FnMut(Attempt) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    let mut rng = fastrand::Rng::new();
    let mut earlier = None;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let remaining = policy.deadline.saturating_sub(started.elapsed());
        let limit = policy
            .attempt_timeout
            .map_or(remaining, |timeout| timeout.min(remaining));
        let started_attempt = attempt(Attempt {
            number: attempts,
            remaining,
        });
        let (failure, not_before) = match tokio::time::timeout(limit, started_attempt).await {
            Ok(Ok(value)) => {
                return Retried {
                    attempts,
                    result: Ok(value),
                };
            }
            Ok(Err(error)) => match rule(&error) {
                Verdict::Final => {
                    return Retried {
                        attempts,
                        result: Err(GaveUp::Final(error)),
                    };
                }
                Verdict::Retry { not_before } => (AttemptFailure::Error(error), not_before),
            },
            Err(_elapsed) => {
                let earlier = earlier.take();
                (
                    AttemptFailure::TimedOut {
                        after: limit,
                        earlier,
                    },
                    None,
                )
            }
        };
        match policy.next_step(attempts, started.elapsed(), not_before, rng.f64()) {
            Next::Retry(wait) => {
                on_retry(&Retrying {
                    attempt: attempts,
                    failure: &failure,
                    wait,
                });
                earlier = match failure {
                    AttemptFailure::Error(error) => Some(error),
                    AttemptFailure::TimedOut { earlier, .. } => earlier,
                };
                tokio::time::sleep(wait).await;
            }
            Next::Stop(stop) => {
                if stop == Stop::DeadlineExceeded && policy.past_deadline == PastDeadline::WaitOut {
                    tokio::time::sleep(policy.deadline.saturating_sub(started.elapsed())).await;
                }
                return Retried {
                    attempts,
                    result: Err(GaveUp::Stopped {
                        stop,
                        last: failure,
                    }),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    /// The publisher's schedule: 1 s doubling to 30 s, full jitter, 20 attempts.
    fn jittered() -> Policy {
        Policy {
            initial: S,
            factor: 2,
            cap: 30 * S,
            max_attempts: 20,
            jitter: Jitter::Full,
            deadline: 600 * S,
            attempt_timeout: None,
            past_deadline: PastDeadline::GiveUp,
        }
    }

    /// The scheduler's schedule: 100 ms doubling to 5 s, no jitter, no attempt limit.
    fn plain(deadline: Duration) -> Policy {
        Policy {
            initial: 100 * MS,
            factor: 2,
            cap: 5 * S,
            max_attempts: u32::MAX,
            jitter: Jitter::None,
            deadline,
            attempt_timeout: None,
            past_deadline: PastDeadline::WaitOut,
        }
    }

    fn retry_everything(_: &&str) -> Verdict {
        Verdict::Retry { not_before: None }
    }

    /// Runs `policy` against attempts that fail with "down" until attempt `succeed_on`, returning
    /// what the engine said and when each attempt started.
    async fn run_until(
        policy: &Policy,
        succeed_on: u32,
        rule: impl FnMut(&&'static str) -> Verdict,
    ) -> (Retried<u32, &'static str>, Vec<Duration>) {
        let started = Instant::now();
        let mut starts = Vec::new();
        let retried = retry(
            policy,
            |attempt| {
                starts.push(started.elapsed());
                async move {
                    if attempt.number >= succeed_on {
                        Ok(attempt.number)
                    } else {
                        Err("down")
                    }
                }
            },
            rule,
            |_| {},
        )
        .await;
        (retried, starts)
    }

    #[test]
    fn the_backoff_multiplies_up_to_the_cap() {
        let p = jittered();
        let backoffs: Vec<u64> = (1..=8).map(|n| p.backoff(n).as_secs()).collect();
        assert_eq!(backoffs, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(p.backoff(1_000), 30 * S, "no overflow far out");
        assert_eq!(p.backoff(u32::MAX), 30 * S);
        let tripling = Policy {
            factor: 3,
            ..plain(S)
        };
        let backoffs: Vec<Duration> = (1..=5).map(|n| tripling.backoff(n)).collect();
        assert_eq!(backoffs, [100 * MS, 300 * MS, 900 * MS, 2_700 * MS, 5 * S]);
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
        let p = jittered();
        assert_eq!(p.next_step(1, S, None, 0.5), Next::Retry(S / 2));
        assert_eq!(p.next_step(3, S, None, 1.0), Next::Retry(4 * S));
        assert_eq!(p.next_step(10, S, None, 1.0), Next::Retry(30 * S));
    }

    #[test]
    fn without_jitter_the_wait_is_the_backoff_whatever_the_draw() {
        let p = plain(60 * S);
        assert_eq!(p.next_step(1, S, None, 0.0), Next::Retry(100 * MS));
        assert_eq!(p.next_step(3, S, None, 0.9), Next::Retry(400 * MS));
    }

    #[test]
    fn not_before_is_a_lower_bound_on_the_wait() {
        let p = jittered();
        assert_eq!(p.next_step(1, S, Some(5 * S), 0.5), Next::Retry(5 * S));
        // Beyond the backoff cap is still honoured while the deadline allows it.
        assert_eq!(p.next_step(1, S, Some(90 * S), 0.0), Next::Retry(90 * S));
        // A jittered wait above it stands.
        assert_eq!(p.next_step(6, S, Some(2 * S), 1.0), Next::Retry(30 * S));
    }

    #[test]
    fn attempts_are_limited() {
        let p = jittered();
        assert!(matches!(p.next_step(19, S, None, 0.0), Next::Retry(_)));
        assert_eq!(
            p.next_step(20, S, None, 0.0),
            Next::Stop(Stop::AttemptsExhausted)
        );
    }

    #[test]
    fn a_wait_that_would_pass_the_deadline_stops() {
        let p = Policy {
            deadline: 10 * S,
            ..jittered()
        };
        assert_eq!(
            p.next_step(5, 8 * S, None, 0.1),
            Next::Retry(S + S * 6 / 10)
        );
        assert_eq!(
            p.next_step(5, 8 * S, None, 0.2),
            Next::Stop(Stop::DeadlineExceeded)
        );
        assert_eq!(
            p.next_step(1, 11 * S, None, 0.0),
            Next::Stop(Stop::DeadlineExceeded),
            "already past it"
        );
        assert_eq!(
            p.next_step(1, 8 * S, Some(3 * S), 0.0),
            Next::Stop(Stop::NotBeforeBeyondDeadline {
                not_before: 3 * S,
                remaining: 2 * S
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_are_counted_and_paused_by_the_backoff() {
        let (retried, starts) = run_until(&plain(10 * S), 4, retry_everything).await;
        assert_eq!(retried.attempts, 4);
        assert_eq!(retried.result, Ok(4));
        assert_eq!(starts, [Duration::ZERO, 100 * MS, 300 * MS, 700 * MS]);
    }

    #[tokio::test(start_paused = true)]
    async fn jittered_pauses_stay_within_the_backoff() {
        let policy = Policy {
            max_attempts: 12,
            ..jittered()
        };
        let (retried, starts) = run_until(&policy, u32::MAX, retry_everything).await;
        assert_eq!(retried.attempts, 12);
        let pauses: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
        for (failures, pause) in (1..).zip(&pauses) {
            assert!(*pause <= policy.backoff(failures), "{failures}: {pause:?}");
        }
        assert!(
            pauses
                .iter()
                .zip(1..)
                .any(|(pause, failures)| *pause < policy.backoff(failures)),
            "jitter drew every pause at its ceiling: {pauses:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_the_rule_calls_final_stops_at_once() {
        let (retried, starts) = run_until(&jittered(), 5, |_| Verdict::Final).await;
        assert_eq!(retried.attempts, 1);
        assert_eq!(retried.result, Err(GaveUp::Final("down")));
        assert_eq!(starts, [Duration::ZERO]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_attempt_limit_ends_retrying_with_the_last_error() {
        let policy = Policy {
            max_attempts: 3,
            ..plain(10 * S)
        };
        let (retried, _) = run_until(&policy, u32::MAX, retry_everything).await;
        assert_eq!(retried.attempts, 3);
        assert_eq!(
            retried.result,
            Err(GaveUp::Stopped {
                stop: Stop::AttemptsExhausted,
                last: AttemptFailure::Error("down"),
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn giving_up_early_returns_before_the_deadline() {
        let policy = Policy {
            past_deadline: PastDeadline::GiveUp,
            ..plain(2 * S)
        };
        let started = Instant::now();
        let (retried, starts) = run_until(&policy, u32::MAX, retry_everything).await;
        // Pauses of 100, 200, 400 and 800 ms; the next (1.6 s) would pass the deadline.
        assert_eq!(starts.last(), Some(&(1_500 * MS)));
        assert_eq!(started.elapsed(), 1_500 * MS);
        assert_eq!(retried.attempts, 5);
        assert!(matches!(
            retried.result,
            Err(GaveUp::Stopped {
                stop: Stop::DeadlineExceeded,
                ..
            })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_out_the_deadline_returns_at_it() {
        let started = Instant::now();
        let (retried, _) = run_until(&plain(2 * S), u32::MAX, retry_everything).await;
        assert_eq!(started.elapsed(), 2 * S);
        assert_eq!(retried.attempts, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_attempt_is_cut_at_the_deadline_keeping_the_earlier_error() {
        let started = Instant::now();
        let retried: Retried<(), &str> = retry(
            &plain(3 * S),
            |attempt| async move {
                if attempt.number == 1 {
                    Err("refused")
                } else {
                    std::future::pending().await
                }
            },
            retry_everything,
            |_| {},
        )
        .await;
        assert_eq!(started.elapsed(), 3 * S);
        assert_eq!(retried.attempts, 2);
        assert_eq!(
            retried.result,
            Err(GaveUp::Stopped {
                stop: Stop::DeadlineExceeded,
                last: AttemptFailure::TimedOut {
                    after: 3 * S - 100 * MS,
                    earlier: Some("refused"),
                },
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_attempt_is_cut_at_its_own_limit_and_retried() {
        let policy = Policy {
            attempt_timeout: Some(2 * S),
            ..plain(60 * S)
        };
        let started = Instant::now();
        let mut told = Vec::new();
        let retried = retry(
            &policy,
            |attempt| async move {
                if attempt.number == 1 {
                    std::future::pending().await
                } else {
                    Ok::<_, &str>(attempt.number)
                }
            },
            retry_everything,
            |retrying| told.push((retrying.attempt, retrying.failure.clone(), retrying.wait)),
        )
        .await;
        assert_eq!(retried.result, Ok(2));
        assert_eq!(started.elapsed(), 2 * S + 100 * MS);
        let cut = AttemptFailure::TimedOut {
            after: 2 * S,
            earlier: None,
        };
        assert_eq!(told, [(1, cut, 100 * MS)]);
    }

    #[tokio::test(start_paused = true)]
    async fn not_before_from_the_rule_is_waited_out() {
        let (retried, starts) = run_until(&jittered(), 2, |_| Verdict::Retry {
            not_before: Some(45 * S),
        })
        .await;
        assert_eq!(retried.result, Ok(2));
        // Above the 30 s cap and any draw of the 1 s jittered backoff.
        assert_eq!(starts, [Duration::ZERO, 45 * S]);
    }

    #[tokio::test(start_paused = true)]
    async fn not_before_beyond_the_deadline_stops_at_once() {
        let policy = Policy {
            deadline: 60 * S,
            ..jittered()
        };
        let (retried, starts) = run_until(&policy, 2, |_| Verdict::Retry {
            not_before: Some(3_600 * S),
        })
        .await;
        assert_eq!(starts, [Duration::ZERO]);
        assert_eq!(
            retried.result,
            Err(GaveUp::Stopped {
                stop: Stop::NotBeforeBeyondDeadline {
                    not_before: 3_600 * S,
                    remaining: 60 * S,
                },
                last: AttemptFailure::Error("down"),
            })
        );
    }
}
