//! The nested sharing levels: `off` ⊂ `cluster` ⊂ `resource` ⊂ `feature`.

use std::fmt;

/// How much an operator agreed to share. Ordered, so "metric level ≤ chosen level" is the whole
/// sharing rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Off,
    Cluster,
    Resource,
    Feature,
}

impl Level {
    pub const ALL: [Level; 4] = [Level::Off, Level::Cluster, Level::Resource, Level::Feature];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Off => "off",
            Level::Cluster => "cluster",
            Level::Resource => "resource",
            Level::Feature => "feature",
        }
    }

    /// Case-insensitive, as the original accepted `METRICS_LEVEL=Feature`.
    pub fn parse(text: &str) -> Option<Level> {
        let text = text.trim();
        Level::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(text))
    }

    /// Whether a metric that belongs to `metric_level` leaves the cluster at this level.
    pub fn shares(self, metric_level: Level) -> bool {
        self != Level::Off && metric_level <= self
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_is_case_insensitive_and_rejects_others() {
        assert_eq!(Level::parse("Feature"), Some(Level::Feature));
        assert_eq!(Level::parse(" RESOURCE "), Some(Level::Resource));
        assert_eq!(Level::parse("off"), Some(Level::Off));
        assert_eq!(Level::parse("verbose"), None);
        assert_eq!(Level::parse(""), None);
    }

    #[test]
    fn levels_nest() {
        assert!(Level::Feature.shares(Level::Cluster));
        assert!(Level::Resource.shares(Level::Resource));
        assert!(!Level::Resource.shares(Level::Feature));
        assert!(!Level::Cluster.shares(Level::Resource));
        for level in Level::ALL {
            assert!(
                !Level::Off.shares(level),
                "off shares nothing, not even {level}"
            );
        }
    }
}
