//! The wall clock in the one unit events use. A leaf module.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds now; 0 if the clock reads before 1970 (nothing sensible to say then).
pub fn unix_now() -> u64 {
    unix_seconds(SystemTime::now())
}

/// `at` in Unix seconds; 0 before 1970.
pub fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}
