//! Fault injection for the simulated scheduler, one `--fault` flag each:
//!
//! | spec | effect |
//! | --- | --- |
//! | `delay:RPC:MS` | wait MS milliseconds before answering each call (a large value hangs) |
//! | `cut:RPC:N[:TIMES]` | end the stream with `Unavailable` after N items, on the first TIMES calls (default: every call) |
//! | `unavailable:RPC[:TIMES]` | answer `Unavailable` at once, on the first TIMES calls (default: every call) |
//! | `refuse:N` | drop the first N connections as soon as they are accepted |
//!
//! RPC is `status`, `models`, `servers`, `pipelines`, `experiments` or `all`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rpc {
    Status,
    Models,
    Servers,
    Pipelines,
    Experiments,
}

impl Rpc {
    pub const ALL: [Rpc; 5] = [
        Rpc::Status,
        Rpc::Models,
        Rpc::Servers,
        Rpc::Pipelines,
        Rpc::Experiments,
    ];

    fn parse(text: &str) -> Result<Option<Rpc>, String> {
        Ok(Some(match text {
            "status" => Rpc::Status,
            "models" => Rpc::Models,
            "servers" => Rpc::Servers,
            "pipelines" => Rpc::Pipelines,
            "experiments" => Rpc::Experiments,
            "all" => return Ok(None),
            other => {
                return Err(format!(
                    "unknown RPC {other:?}: expected status, models, servers, pipelines, experiments or all"
                ));
            }
        }))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `None` targets every RPC.
    Delay {
        rpc: Option<Rpc>,
        delay: Duration,
    },
    Cut {
        rpc: Rpc,
        after: u64,
        times: Option<u64>,
    },
    Unavailable {
        rpc: Option<Rpc>,
        times: Option<u64>,
    },
    Refuse {
        connections: u64,
    },
}

impl Fault {
    pub fn parse(spec: &str) -> Result<Fault, String> {
        let parts: Vec<&str> = spec.split(':').collect();
        let number = |text: &str| {
            text.parse::<u64>()
                .map_err(|_| format!("{text:?} is not a whole number"))
        };
        match parts.as_slice() {
            ["delay", rpc, ms] => Ok(Fault::Delay {
                rpc: Rpc::parse(rpc)?,
                delay: Duration::from_millis(number(ms)?),
            }),
            ["cut", rpc, after, rest @ ..] if rest.len() <= 1 => Ok(Fault::Cut {
                rpc: Rpc::parse(rpc)?.ok_or("cut needs one RPC, not all")?,
                after: number(after)?,
                times: rest.first().map(|t| number(t)).transpose()?,
            }),
            ["unavailable", rpc, rest @ ..] if rest.len() <= 1 => Ok(Fault::Unavailable {
                rpc: Rpc::parse(rpc)?,
                times: rest.first().map(|t| number(t)).transpose()?,
            }),
            ["refuse", n] => Ok(Fault::Refuse {
                connections: number(n)?,
            }),
            _ => Err(
                "expected delay:RPC:MS, cut:RPC:N[:TIMES], unavailable:RPC[:TIMES] or refuse:N"
                    .into(),
            ),
        }
    }
}

/// What to do on one call, decided from the faults and how many calls came before.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallPlan {
    pub delay: Duration,
    pub unavailable: bool,
    pub cut_after: Option<u64>,
}

/// The active faults and per-RPC call counters.
#[derive(Debug, Default)]
pub struct Faults {
    faults: Vec<Fault>,
    calls: [AtomicU64; 5],
    connections: AtomicU64,
}

impl Faults {
    pub fn new(faults: Vec<Fault>) -> Faults {
        Faults {
            faults,
            ..Faults::default()
        }
    }

    /// Counts a call to `rpc` and says how to misbehave on it.
    pub fn on_call(&self, rpc: Rpc) -> CallPlan {
        let call = self.calls[rpc as usize].fetch_add(1, Ordering::SeqCst);
        let applies = |times: &Option<u64>| times.is_none_or(|t| call < t);
        let targets = |target: &Option<Rpc>| target.is_none_or(|r| r == rpc);
        let mut plan = CallPlan::default();
        for fault in &self.faults {
            match fault {
                Fault::Delay { rpc: target, delay } if targets(target) => plan.delay += *delay,
                Fault::Unavailable { rpc: target, times } if targets(target) && applies(times) => {
                    plan.unavailable = true
                }
                Fault::Cut {
                    rpc: target,
                    after,
                    times,
                } if *target == rpc && applies(times) => plan.cut_after = Some(*after),
                _ => {}
            }
        }
        plan
    }

    /// Counts an accepted connection; true when it should be dropped.
    pub fn refuse_connection(&self) -> bool {
        let n = self.connections.fetch_add(1, Ordering::SeqCst);
        self.faults
            .iter()
            .any(|f| matches!(f, Fault::Refuse { connections } if n < *connections))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!(
            Fault::parse("delay:all:250"),
            Ok(Fault::Delay {
                rpc: None,
                delay: Duration::from_millis(250)
            })
        );
        assert_eq!(
            Fault::parse("cut:models:100:1"),
            Ok(Fault::Cut {
                rpc: Rpc::Models,
                after: 100,
                times: Some(1)
            })
        );
        assert_eq!(
            Fault::parse("unavailable:servers"),
            Ok(Fault::Unavailable {
                rpc: Some(Rpc::Servers),
                times: None
            })
        );
        assert_eq!(
            Fault::parse("refuse:3"),
            Ok(Fault::Refuse { connections: 3 })
        );
        assert!(Fault::parse("cut:all:3").is_err());
        assert!(Fault::parse("delay:modles:3").is_err());
        assert!(Fault::parse("explode").is_err());
    }

    #[test]
    fn limited_faults_stop_after_their_count() {
        let faults = Faults::new(vec![
            Fault::Cut {
                rpc: Rpc::Models,
                after: 5,
                times: Some(2),
            },
            Fault::Unavailable {
                rpc: None,
                times: Some(1),
            },
        ]);
        let first = faults.on_call(Rpc::Models);
        assert_eq!(first.cut_after, Some(5));
        assert!(first.unavailable);
        let second = faults.on_call(Rpc::Models);
        assert_eq!(second.cut_after, Some(5));
        assert!(!second.unavailable);
        assert_eq!(faults.on_call(Rpc::Models), CallPlan::default());
        assert!(
            faults.on_call(Rpc::Servers).unavailable,
            "counters are per RPC"
        );
    }

    #[test]
    fn refuse_drops_only_the_first_connections() {
        let faults = Faults::new(vec![Fault::Refuse { connections: 2 }]);
        assert!(faults.refuse_connection());
        assert!(faults.refuse_connection());
        assert!(!faults.refuse_connection());
    }
}
