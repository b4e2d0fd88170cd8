//! What publishing to one endpoint came to, as data for the UI, the logs and the daemon's
//! metrics; and the pure judgement of a receiver's reply.

use std::time::Duration;

/// Why publishing to an endpoint failed, or why one attempt failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("connection failed: {reason}")]
    Connect { reason: String },
    /// The TLS handshake failed on the receiver's certificate; not retried.
    #[error("TLS certificate rejected: {reason}")]
    Certificate { reason: String },
    #[error("no response within {}", show(*after))]
    TimedOut { after: Duration },
    /// The connection broke after it was made (reset, truncated reply, …).
    #[error("request failed: {reason}")]
    Transport { reason: String },
    #[error("HTTP {status}: {excerpt}")]
    Http { status: u16, excerpt: String },
    #[error("HTTP {status}, but the reply is neither `1` nor JSON with a `status`: {excerpt}")]
    UnexpectedReply { status: u16, excerpt: String },
    #[error("rejected by the receiver: {error}")]
    Rejected { error: String },
    /// Nothing a retry can fix: a redirect loop, a request the client cannot build.
    #[error("the request could not be sent: {reason}")]
    Unsendable { reason: String },
    #[error("gave up after {attempts} attempts; last error: {last}")]
    AttemptsExhausted {
        attempts: u32,
        last: Box<PublishError>,
    },
    #[error(
        "publish deadline of {} reached after {attempts} attempt(s); last error: {last}",
        show(*deadline)
    )]
    DeadlineExceeded {
        deadline: Duration,
        attempts: u32,
        last: Box<PublishError>,
    },
    #[error(
        "the receiver asked to retry after {}, beyond the publish deadline ({} left), after \
         {attempts} attempt(s); last error: {last}",
        show(*retry_after),
        show(*remaining)
    )]
    RetryAfterBeyondDeadline {
        retry_after: Duration,
        remaining: Duration,
        attempts: u32,
        last: Box<PublishError>,
    },
    /// An outcome of an earlier session, as it was written down (the inspector keeps its sends):
    /// its text, and whether the receiver rejected the event.
    #[error("{text}")]
    Recorded { rejected: bool, text: String },
}

impl PublishError {
    /// Whether sending the same request again may succeed (connect errors, timeouts,
    /// 5xx and 429). Every other answer is permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            PublishError::Connect { .. }
            | PublishError::TimedOut { .. }
            | PublishError::Transport { .. } => true,
            PublishError::Http { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// The error of the last attempt, for the final errors that wrap it.
    pub fn last_attempt(&self) -> &PublishError {
        match self {
            PublishError::AttemptsExhausted { last, .. }
            | PublishError::DeadlineExceeded { last, .. }
            | PublishError::RetryAfterBeyondDeadline { last, .. } => last,
            other => other,
        }
    }
}

/// The three ways a publish ends, for counting and logging.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutcomeKind {
    /// The receiver accepted the event.
    Ok,
    /// The receiver answered and refused it for good: a 4xx, `status: 0`, or a reply that is not
    /// a verdict at all. Sending it again would not help; the configuration might.
    Rejected,
    /// No verdict: the endpoint stayed unreachable, hung or kept failing until the attempts or
    /// the deadline ran out.
    Failed,
}

impl OutcomeKind {
    pub const ALL: [OutcomeKind; 3] = [OutcomeKind::Ok, OutcomeKind::Rejected, OutcomeKind::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Ok => "ok",
            OutcomeKind::Rejected => "rejected",
            OutcomeKind::Failed => "failed",
        }
    }
}

/// How publishing one event to one endpoint ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointOutcome {
    /// The endpoint's position in the list given to the publisher, to match streamed outcomes.
    pub index: usize,
    /// The endpoint, credentials redacted.
    pub endpoint: String,
    pub result: Result<(), PublishError>,
    /// Requests sent (started), at least one.
    pub attempts: u32,
    /// From the start of the first attempt to the end of the last, waits included.
    pub latency: Duration,
    /// The HTTP status of the last reply, if any attempt got one.
    pub last_status: Option<u16>,
}

impl EndpointOutcome {
    pub fn is_ok(&self) -> bool {
        self.result.is_ok()
    }

    pub fn error(&self) -> Option<&PublishError> {
        self.result.as_ref().err()
    }

    pub fn kind(&self) -> OutcomeKind {
        match &self.result {
            Ok(()) => OutcomeKind::Ok,
            Err(
                PublishError::Rejected { .. }
                | PublishError::UnexpectedReply { .. }
                | PublishError::Http { .. }
                | PublishError::Recorded { rejected: true, .. },
            ) => OutcomeKind::Rejected,
            Err(_) => OutcomeKind::Failed,
        }
    }

    /// `"ok"`, `"rejected"` or `"failed"`: a stable label for logs and metrics.
    pub fn outcome_label(&self) -> &'static str {
        self.kind().as_str()
    }

    /// The one rendering of an outcome, without the endpoint, for logs, `collect --publish` and
    /// the inspector: `ok (HTTP 200, 1 attempt, 12 ms)` or `failed (3 attempts, 4012 ms): …`.
    pub fn detail(&self) -> String {
        let status = self
            .last_status
            .map(|s| format!("HTTP {s}, "))
            .unwrap_or_default();
        let plural = if self.attempts == 1 { "" } else { "s" };
        let facts = format!(
            "{status}{} attempt{plural}, {} ms",
            self.attempts,
            self.latency.as_millis()
        );
        match self.error() {
            None => format!("{} ({facts})", self.outcome_label()),
            Some(error) => format!("{} ({facts}): {error}", self.outcome_label()),
        }
    }
}

/// `http://a/ ok (HTTP 200, 1 attempt, 12 ms); http://b/ failed: …` for logs and terminals.
pub fn describe_outcomes(outcomes: &[EndpointOutcome]) -> String {
    outcomes
        .iter()
        .map(|o| format!("{} {}", o.endpoint, o.detail()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The longest body excerpt kept in an error, in characters.
const EXCERPT_CHARS: usize = 200;

/// Judges a complete reply. Success is a 2xx whose body is `1` or JSON with `"status": 1`;
/// `0` or `"status": 0` is the receiver's refusal, reported with its `error`.
pub(crate) fn judge_reply(status: u16, body: &[u8]) -> Result<(), PublishError> {
    if !(200..300).contains(&status) {
        return Err(PublishError::Http {
            status,
            excerpt: excerpt(body),
        });
    }
    let text = String::from_utf8_lossy(body);
    match text.trim() {
        "1" => return Ok(()),
        "0" => {
            return Err(PublishError::Rejected {
                error: "the receiver answered 0 (no reason given)".into(),
            });
        }
        _ => {}
    }
    let verdict = serde_json::from_str::<serde_json::Value>(&text).ok();
    let unexpected = || PublishError::UnexpectedReply {
        status,
        excerpt: excerpt(body),
    };
    let Some(reply) = verdict.as_ref().and_then(|v| v.as_object()) else {
        return Err(unexpected());
    };
    match reply.get("status").and_then(serde_json::Value::as_i64) {
        Some(1) => Ok(()),
        Some(0) => Err(PublishError::Rejected {
            error: match reply.get("error") {
                Some(serde_json::Value::String(error)) if !error.trim().is_empty() => {
                    excerpt(error.as_bytes())
                }
                Some(serde_json::Value::Null) | None => "no reason given".into(),
                Some(other) => excerpt(other.to_string().as_bytes()),
            },
        }),
        _ => Err(unexpected()),
    }
}

/// A short, single-line, printable excerpt of a reply body for error messages and logs.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".into();
    }
    let mut out: String = text
        .chars()
        .take(EXCERPT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(EXCERPT_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// A duration for people, to the millisecond: `1s 500ms`.
fn show(duration: Duration) -> String {
    let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    humantime::format_duration(Duration::from_millis(millis)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_described_one_per_endpoint() {
        let ok = EndpointOutcome {
            index: 0,
            endpoint: "http://a/".into(),
            result: Ok(()),
            attempts: 1,
            latency: Duration::from_millis(12),
            last_status: Some(200),
        };
        let failed = EndpointOutcome {
            index: 1,
            endpoint: "http://REDACTED@b/".into(),
            result: Err(PublishError::Connect {
                reason: "refused".into(),
            }),
            attempts: 3,
            latency: Duration::from_millis(40),
            last_status: None,
        };
        assert_eq!(
            describe_outcomes(&[ok, failed]),
            "http://a/ ok (HTTP 200, 1 attempt, 12 ms); \
             http://REDACTED@b/ failed (3 attempts, 40 ms): connection failed: refused"
        );
    }

    #[test]
    fn success_is_a_2xx_with_status_1_or_plain_1() {
        assert_eq!(judge_reply(200, br#"{"status":1,"error":null}"#), Ok(()));
        assert_eq!(judge_reply(200, br#"{"error": null, "status": 1}"#), Ok(()));
        assert_eq!(judge_reply(200, b"1"), Ok(()));
        assert_eq!(judge_reply(204, b"1\n"), Ok(()));
    }

    #[test]
    fn status_0_is_a_rejection_with_the_receivers_error() {
        assert_eq!(
            judge_reply(200, br#"{"status":0,"error":"bad token"}"#),
            Err(PublishError::Rejected {
                error: "bad token".into()
            })
        );
        let no_reason = judge_reply(200, br#"{"status":0}"#).expect_err("rejected");
        assert_eq!(
            no_reason.to_string(),
            "rejected by the receiver: no reason given"
        );
        assert!(matches!(
            judge_reply(200, b"0"),
            Err(PublishError::Rejected { .. })
        ));
    }

    #[test]
    fn a_2xx_without_a_verdict_is_unexpected() {
        for body in [
            &b"<html>captive portal</html>"[..],
            b"",
            br#"{"status":"1"}"#,
            b"[1]",
            br#"{"ok":true}"#,
        ] {
            let error = judge_reply(200, body).expect_err("no verdict");
            assert!(
                matches!(error, PublishError::UnexpectedReply { status: 200, .. }),
                "{error}"
            );
            assert!(!error.is_transient());
        }
    }

    #[test]
    fn other_statuses_are_http_errors_transient_only_for_5xx_and_429() {
        let transient = |status| {
            judge_reply(status, b"{}")
                .expect_err("not 2xx")
                .is_transient()
        };
        assert!(transient(500));
        assert!(transient(503));
        assert!(transient(429));
        assert!(!transient(400));
        assert!(!transient(404));
        assert!(!transient(301), "a redirect reqwest did not follow");
        let error = judge_reply(400, b"missing data\n").expect_err("400");
        assert_eq!(error.to_string(), "HTTP 400: missing data");
    }

    #[test]
    fn excerpts_are_short_single_line_and_marked_when_cut() {
        assert_eq!(excerpt(b"  \n"), "(empty body)");
        assert_eq!(excerpt(b"a\nb\tc"), "a b c");
        let long = "x".repeat(500);
        let cut = excerpt(long.as_bytes());
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn outcomes_are_labelled_for_counting() {
        let outcome = |result| EndpointOutcome {
            index: 0,
            endpoint: "http://h/".into(),
            result,
            attempts: 1,
            latency: Duration::ZERO,
            last_status: None,
        };
        assert_eq!(outcome(Ok(())).outcome_label(), "ok");
        let http = PublishError::Http {
            status: 400,
            excerpt: String::new(),
        };
        assert_eq!(outcome(Err(http.clone())).outcome_label(), "rejected");
        let exhausted = PublishError::AttemptsExhausted {
            attempts: 20,
            last: Box::new(PublishError::Connect {
                reason: "refused".into(),
            }),
        };
        assert_eq!(outcome(Err(exhausted.clone())).outcome_label(), "failed");
        assert_eq!(
            exhausted.to_string(),
            "gave up after 20 attempts; last error: connection failed: refused"
        );
        assert!(matches!(
            exhausted.last_attempt(),
            PublishError::Connect { .. }
        ));
        assert_eq!(http.last_attempt(), &http);
    }

    #[test]
    fn durations_read_well_in_messages() {
        let error = PublishError::DeadlineExceeded {
            deadline: Duration::from_millis(1500),
            attempts: 2,
            last: Box::new(PublishError::TimedOut {
                after: Duration::from_micros(1_250_300),
            }),
        };
        assert_eq!(
            error.to_string(),
            "publish deadline of 1s 500ms reached after 2 attempt(s); last error: no response \
             within 1s 250ms"
        );
    }
}
