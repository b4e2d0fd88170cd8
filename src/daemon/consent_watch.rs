//! The daemon's watch on its consent ConfigMap: wakes the policy read as soon as the consent
//! changes, so an approval or a withdrawal applies within moments, not at the next periodic read.

use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::consent::cluster::ConsentApi;
use crate::policy::Policy;

/// How long one watch of the consent runs before it is opened again (API servers end watches
/// after a few minutes anyway).
const CONSENT_WATCH_SECONDS: u32 = 290;

/// Wakes `changed` as soon as the consent ConfigMap changes, through a watch from the version
/// last read. A Role from older manifests (or an API server) may refuse the watch: then the
/// periodic read every `refresh` is all there is, as before the watch.
pub(super) async fn watch(
    api: &ConsentApi,
    policies: &watch::Receiver<Policy>,
    changed: &Notify,
    refresh: Duration,
) {
    let last_read = || {
        policies
            .borrow()
            .consent_version
            .clone()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "0".into())
    };
    let mut since = last_read();
    loop {
        let opened = std::time::Instant::now();
        match api.next_consent_change(&since, CONSENT_WATCH_SECONDS).await {
            Ok(Some(version)) => {
                since = if version.is_empty() {
                    last_read()
                } else {
                    version
                };
                changed.notify_one();
            }
            // Its time ran out: open it again, but never in a tight loop.
            Ok(None) if opened.elapsed() >= refresh => {}
            Ok(None) => tokio::time::sleep(refresh).await,
            Err(error) => {
                tracing::debug!(%error, "cannot watch the consent; it is read every {refresh:?}");
                tokio::time::sleep(refresh).await;
                since = last_read();
            }
        }
    }
}
