//! Extensions: static facts an operator chose to share, next to the metrics. The data lives here
//! so a snapshot can carry it; reading, validating and guarding it is `crate::extensions`.

use std::fmt;

use super::Level;

/// The prefix that keeps an extension's property apart from every metric in the event.
pub const EXTENSION_PREFIX: &str = "ext.";

/// Where an extension's value came from; of several, the last one wins and is the one kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExtensionSource {
    /// A file in `--extensions-dir` (a mounted ConfigMap).
    Dir,
    /// `HODOMETER_EXTENSIONS`.
    Env,
    /// `--extension`.
    Flag,
}

impl ExtensionSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ExtensionSource::Dir => "--extensions-dir",
            ExtensionSource::Env => "HODOMETER_EXTENSIONS",
            ExtensionSource::Flag => "--extension",
        }
    }
}

impl fmt::Display for ExtensionSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a value might name something the privacy promise keeps inside the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Suspicion {
    Ipv4Address,
    Ipv6Address,
    EmailAddress,
    HostName,
    Namespace,
}

impl Suspicion {
    pub fn as_str(self) -> &'static str {
        match self {
            Suspicion::Ipv4Address => "looks like an IPv4 address",
            Suspicion::Ipv6Address => "looks like an IPv6 address",
            Suspicion::EmailAddress => "looks like an e-mail address",
            Suspicion::HostName => "looks like a host name",
            Suspicion::Namespace => "is the namespace's name",
        }
    }
}

impl fmt::Display for Suspicion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One validated extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension {
    pub key: String,
    /// The lowest level at which it is shared, as for a metric.
    pub level: Level,
    pub value: String,
    pub source: ExtensionSource,
    /// What the privacy guard noticed about the value: warnings, never refusals.
    pub suspicions: Vec<Suspicion>,
}

impl Extension {
    /// Its property name in the event: `ext.<key>`.
    pub fn property(&self) -> String {
        format!("{EXTENSION_PREFIX}{}", self.key)
    }

    /// The warnings for people, one per suspicion, naming the extension but not its value.
    pub fn warnings(&self) -> impl Iterator<Item = String> + '_ {
        self.suspicions.iter().map(|s| {
            format!(
                "extension {} (from {}): its value {s}; it is shared as it is, so make sure that is meant",
                self.property(),
                self.source
            )
        })
    }
}
