//! Follows the port-forward to the scheduler, in place of the TCP watch a direct address gets:
//! the forward's stream ending is the scheduler going away. The inspector shows "reconnecting"
//! at once and collects again; while no Ready pod is found it looks every
//! [`POLL`] (two API reads, no forward) and collects as soon as one is, so a replaced pod is
//! connected again within about a second of being Ready.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Msg;
use crate::k8s::forward::{ForwardSpec, LinkState};

/// How often a forward that is down looks for a Ready pod.
const POLL: Duration = Duration::from_millis(500);

pub(super) fn spawn(spec: ForwardSpec, tx: mpsc::UnboundedSender<Msg>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut states = spec.link.subscribe();
        loop {
            let state = states.borrow_and_update().clone();
            if tx.send(Msg::Forward(spec.view())).is_err() {
                return;
            }
            let down = match &state {
                LinkState::Closed { .. } => {
                    // Collect now: the channel opens a new forward to whichever pod is Ready.
                    if tx.send(Msg::SchedulerChanged).is_err() {
                        return;
                    }
                    true
                }
                LinkState::Failed { permanent, .. } => !permanent,
                LinkState::Idle | LinkState::Open { .. } => false,
            };
            if down {
                // Until the state moves on: look for a Ready pod, and collect once there is one.
                tokio::select! {
                    changed = states.changed() => if changed.is_err() { return },
                    () = until_resolvable(&spec) => {
                        if tx.send(Msg::SchedulerChanged).is_err() {
                            return;
                        }
                        // The collection's forward moves the state on; never more than one
                        // collection per poll while it does.
                        tokio::select! {
                            changed = states.changed() => if changed.is_err() { return },
                            () = tokio::time::sleep(POLL * 2) => {}
                        }
                    }
                }
            } else if states.changed().await.is_err() {
                return;
            }
        }
    })
}

/// Completes once the Service resolves to a Ready pod.
async fn until_resolvable(spec: &ForwardSpec) {
    loop {
        tokio::time::sleep(POLL).await;
        if spec.resolve().await.is_ok() {
            return;
        }
    }
}
