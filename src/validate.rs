//! Checking settings: every problem is collected, then all are reported at once, each with its
//! flag or variable and its value. A leaf module, so every command can use it.

use std::fmt;
use std::time::Duration;

use uuid::Uuid;

use crate::logging::LogFormat;
use crate::metrics::Level;
use crate::redact;

/// One invalid setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// The flag and, where there is one, its environment variable: `--level (METRICS_LEVEL)`.
    pub setting: &'static str,
    /// The value as it may be shown: credentials hidden (see `redact`).
    pub value: String,
    pub problem: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {:?}: {}", self.setting, self.value, self.problem)
    }
}

/// Every invalid setting found, reported together.
#[derive(Clone, Debug, Default, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<Invalid>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        let noun = if count == 1 { "problem" } else { "problems" };
        writeln!(f, "invalid configuration ({count} {noun}):")?;
        for invalid in &self.0 {
            writeln!(f, "  - {invalid}")?;
        }
        Ok(())
    }
}

/// Collects problems while each setting is parsed, so one pass reports them all.
#[derive(Default)]
pub struct Checker {
    errors: Vec<Invalid>,
}

impl Checker {
    /// Parses `value` with `parse`; on failure records the problem and returns `None`.
    pub fn check<T>(
        &mut self,
        setting: &'static str,
        value: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        self.check_shown(setting, value, str::to_string, parse)
    }

    /// As [`Checker::check`] for a setting that may carry credentials (URLs): a problem records
    /// the value with its userinfo and query hidden (see [`redact::url_text`]).
    pub fn check_redacted<T>(
        &mut self,
        setting: &'static str,
        value: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        self.check_shown(setting, value, redact::url_text, parse)
    }

    /// As [`Checker::check`] for a secret (a token): a problem says why the value is invalid,
    /// never what it is.
    pub fn check_secret<T>(
        &mut self,
        setting: &'static str,
        value: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        self.check_shown(setting, value, redact::secret, parse)
    }

    /// As [`Checker::check`] for a setting that may be absent: `Some(None)` when it is.
    pub fn check_opt<T>(
        &mut self,
        setting: &'static str,
        value: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<Option<T>> {
        value.map_or(Some(None), |text| {
            self.check(setting, text, parse).map(Some)
        })
    }

    /// As [`Checker::check_redacted`] for a setting that may be absent.
    pub fn check_opt_redacted<T>(
        &mut self,
        setting: &'static str,
        value: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<Option<T>> {
        value.map_or(Some(None), |text| {
            self.check_redacted(setting, text, parse).map(Some)
        })
    }

    /// The one place a problem is recorded; `shown` is how its value appears in the report.
    fn check_shown<T>(
        &mut self,
        setting: &'static str,
        value: &str,
        shown: fn(&str) -> String,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        parse(value)
            .map_err(|problem| {
                self.errors.push(Invalid {
                    setting,
                    value: shown(value),
                    problem,
                })
            })
            .ok()
    }

    pub fn finish(self) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(self.errors))
        }
    }

    /// Ends the check: every problem recorded, or the value `build` makes from the parsed
    /// settings. `build` sees each setting as an `Option` and is only called when none failed,
    /// so its `None` cannot happen; it still maps to an (empty) error rather than a panic.
    pub fn finish_with<T>(self, build: impl FnOnce() -> Option<T>) -> Result<T, ConfigErrors> {
        self.finish()?;
        build().ok_or_else(ConfigErrors::default)
    }
}

pub fn parse_level(text: &str) -> Result<Level, String> {
    Level::parse(text).ok_or_else(|| "expected one of off, cluster, resource, feature".into())
}

pub fn parse_port(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err("expected a port number from 1 to 65535".into()),
        Ok(port) => Ok(port),
    }
}

pub fn parse_host(text: &str) -> Result<String, String> {
    let host = text.trim();
    if host.is_empty() || host.contains(['/', ' ', '?', '#', '@']) {
        Err("expected a host name or IP address, without scheme or port".into())
    } else {
        Ok(host.to_string())
    }
}

/// A Kubernetes namespace name (an RFC 1123 label).
pub fn parse_namespace(text: &str) -> Result<String, String> {
    let ns = text.trim();
    let valid = !ns.is_empty()
        && ns.len() <= 63
        && ns
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !ns.starts_with('-')
        && !ns.ends_with('-');
    if valid {
        Ok(ns.to_string())
    } else {
        Err("expected a namespace name: lower-case letters, digits and '-', at most 63".into())
    }
}

/// The name of a namespaced Kubernetes object (a ConfigMap, a Secret): a DNS subdomain, that is
/// lower-case letters, digits, `-` and `.`, starting and ending alphanumeric, at most 253.
pub fn parse_object_name(text: &str, kind: &str) -> Result<String, String> {
    let name = text.trim();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        Ok(name.to_string())
    } else {
        Err(format!(
            "expected a {kind} name (lower-case letters, digits, '-' and '.')"
        ))
    }
}

/// A listening address: an IP and a port (port 0 picks a free one).
pub fn parse_socket_addr(text: &str) -> Result<std::net::SocketAddr, String> {
    text.trim()
        .parse()
        .map_err(|_| "expected IP:PORT, e.g. 127.0.0.1:8080".to_string())
}

pub fn parse_uuid(text: &str) -> Result<Uuid, String> {
    Uuid::parse_str(text.trim()).map_err(|e| format!("expected a UUID ({e})"))
}

/// The longest duration any setting accepts: far beyond any sensible interval or deadline, and
/// far below what would overflow the clock arithmetic that uses it.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d.is_zero() => Err("must be longer than zero".into()),
        Ok(d) if d > MAX_DURATION => Err("must be at most 365 days".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("expected a duration such as 30s, 5m or 8h ({e})")),
    }
}

/// The common `DO_NOT_TRACK` convention: any affirmative value turns sharing off.
pub fn parse_do_not_track(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected 1 or 0 (true/false)".into()),
    }
}

/// `error`, `warn`, `info`, `debug` or `trace`, in any case; also the original's logrus names
/// (`warning`, and `fatal` and `panic`, which mean `error` here).
pub fn parse_log_level(text: &str) -> Result<tracing::Level, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "warning" => Ok(tracing::Level::WARN),
        "fatal" | "panic" => Ok(tracing::Level::ERROR),
        other => other
            .parse::<tracing::Level>()
            .map_err(|_| "expected one of error, warn, info, debug, trace".into()),
    }
}

pub fn parse_log_format(text: &str) -> Result<LogFormat, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err("expected text or json".into()),
    }
}
