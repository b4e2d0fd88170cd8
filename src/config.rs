//! Validated configuration. Flags and environment variables arrive as raw text (see `cli`), so
//! every bad setting can be reported at once, each with its name and value, before anything runs.

use std::fmt;
use std::time::Duration;

use uuid::Uuid;

use crate::collect::scheduler::SchedulerTarget;
use crate::collect::{CollectPlan, KubeMode};
use crate::metrics::Level;

/// One invalid setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// The flag and, where there is one, its environment variable: `--level (METRICS_LEVEL)`.
    pub setting: &'static str,
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
        writeln!(f, "invalid configuration ({} problems):", self.0.len())?;
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
        match parse(value) {
            Ok(parsed) => Some(parsed),
            Err(problem) => {
                self.errors.push(Invalid {
                    setting,
                    value: value.to_string(),
                    problem,
                });
                None
            }
        }
    }

    pub fn finish(self) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(self.errors))
        }
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

pub fn parse_uuid(text: &str) -> Result<Uuid, String> {
    Uuid::parse_str(text.trim()).map_err(|e| format!("expected a UUID ({e})"))
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d.is_zero() => Err("must be longer than zero".into()),
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

pub fn parse_log_level(text: &str) -> Result<tracing::Level, String> {
    text.trim()
        .parse::<tracing::Level>()
        .map_err(|_| "expected one of error, warn, info, debug, trace".into())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

pub fn parse_log_format(text: &str) -> Result<LogFormat, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err("expected text or json".into()),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSettings {
    pub level: tracing::Level,
    /// `None`: text on a terminal, JSON otherwise.
    pub format: Option<LogFormat>,
}

/// Everything a collection-running command needs, validated.
#[derive(Clone, Debug)]
pub struct Settings {
    pub plan: CollectPlan,
    /// The level asked for, already forced to `off` when `DO_NOT_TRACK` is set.
    pub level: Level,
    pub do_not_track: bool,
    pub token: String,
    pub log: LogSettings,
}

/// Raw scheduler-and-collection options as they arrive from flags and the environment.
pub struct RawCommon<'a> {
    pub scheduler_host: &'a str,
    pub scheduler_port: &'a str,
    pub level: &'a str,
    pub cluster_id: Option<&'a str>,
    pub token: &'a str,
    pub no_kube: bool,
    pub rpc_timeout: &'a str,
    pub log_level: &'a str,
    pub log_format: Option<&'a str>,
    pub do_not_track: Option<&'a str>,
}

impl RawCommon<'_> {
    /// Validates every setting, reporting all problems together.
    pub fn validate(&self) -> Result<Settings, ConfigErrors> {
        let mut c = Checker::default();
        let host = c.check(
            "--scheduler-host (SCHEDULER_HOST)",
            self.scheduler_host,
            parse_host,
        );
        let port = c.check(
            "--scheduler-port (SCHEDULER_PLAINTXT_PORT)",
            self.scheduler_port,
            parse_port,
        );
        let level = c.check("--level (METRICS_LEVEL)", self.level, parse_level);
        let cluster_id = match self.cluster_id {
            Some(text) => c.check("--cluster-id (CLUSTER_ID)", text, parse_uuid),
            None => Some(Uuid::new_v4()),
        };
        let token = c.check("--token (HODOMETER_TOKEN)", self.token, |t| {
            let t = t.trim();
            if t.is_empty() || !t.chars().all(|ch| ch.is_ascii_graphic()) {
                Err("expected a non-empty token of printable ASCII".into())
            } else {
                Ok(t.to_string())
            }
        });
        let rpc_timeout = c.check("--rpc-timeout", self.rpc_timeout, parse_duration);
        let log_level = c.check("--log-level (LOG_LEVEL)", self.log_level, parse_log_level);
        let log_format = match self.log_format {
            Some(text) => c
                .check("--log-format (LOG_FORMAT)", text, parse_log_format)
                .map(Some),
            None => Some(None),
        };
        let do_not_track = match self.do_not_track {
            Some(text) => c.check("DO_NOT_TRACK", text, parse_do_not_track),
            None => Some(false),
        };
        let do_not_track = do_not_track.unwrap_or(true);
        let settings = (|| {
            Some(Settings {
                plan: CollectPlan {
                    cluster_id: cluster_id?,
                    scheduler: SchedulerTarget {
                        host: host?,
                        port: port?,
                        rpc_timeout: rpc_timeout?,
                    },
                    kube: if self.no_kube {
                        KubeMode::Disabled
                    } else {
                        KubeMode::NotAvailable
                    },
                },
                level: if do_not_track { Level::Off } else { level? },
                do_not_track,
                token: token?,
                log: LogSettings {
                    level: log_level?,
                    format: log_format?,
                },
            })
        })();
        c.finish()?;
        // With no problems recorded, every setting parsed.
        settings.ok_or_else(ConfigErrors::default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checker_reports_every_problem_with_its_value() {
        let mut checker = Checker::default();
        assert_eq!(
            checker.check("--level (METRICS_LEVEL)", "loud", parse_level),
            None
        );
        assert_eq!(
            checker.check(
                "--scheduler-port (SCHEDULER_PLAINTXT_PORT)",
                "0",
                parse_port
            ),
            None
        );
        assert_eq!(
            checker.check("--cluster-id (CLUSTER_ID)", "abc", parse_uuid),
            None
        );
        assert_eq!(
            checker.check("--rpc-timeout", "30s", parse_duration),
            Some(Duration::from_secs(30))
        );
        let errors = checker.finish().expect_err("three problems");
        assert_eq!(errors.0.len(), 3);
        let text = errors.to_string();
        for needle in [
            "METRICS_LEVEL",
            "\"loud\"",
            "SCHEDULER_PLAINTXT_PORT",
            "\"0\"",
            "CLUSTER_ID",
            "\"abc\"",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }

    #[test]
    fn parsers_accept_good_values() {
        assert_eq!(parse_port("9004"), Ok(9004));
        assert!(parse_port("65536").is_err());
        assert_eq!(
            parse_host(" seldon-scheduler "),
            Ok("seldon-scheduler".into())
        );
        assert!(parse_host("http://x").is_err());
        assert!(parse_host("").is_err());
        assert_eq!(parse_duration("8h"), Ok(Duration::from_secs(8 * 3600)));
        assert!(parse_duration("0s").is_err());
        assert_eq!(parse_do_not_track("1"), Ok(true));
        assert_eq!(parse_do_not_track("0"), Ok(false));
        assert!(parse_do_not_track("maybe").is_err());
        assert_eq!(parse_log_level("debug"), Ok(tracing::Level::DEBUG));
        assert_eq!(parse_log_format("JSON"), Ok(LogFormat::Json));
    }
}
