//! What the inspector is connected to: one collection plan (a cluster: its Kubernetes context,
//! namespace, scheduler route and cluster id) with its kept connections and the watch of the
//! scheduler. Switching context replaces the session; results of an older one carry its epoch
//! and are dropped, so two clusters' numbers never mix.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::app::App;
use super::{CONNECT_TIMEOUT, Msg, forward_watch, spawn_watch};
use crate::collect::{CollectPlan, Sources};
use crate::consent::cluster::ConsentApi;

pub(super) struct Session {
    /// Counts sessions: messages from tasks of an older one are stale.
    pub epoch: u64,
    pub plan: CollectPlan,
    pub sources: Arc<Mutex<Sources>>,
    /// The consent and status ConfigMaps over this session's Kubernetes client, once built.
    pub consent_api: Option<ConsentApi>,
    watch: JoinHandle<()>,
    /// The cluster id of each context this inspector has shown: the same context keeps its id,
    /// another never gets it.
    ids: HashMap<String, Uuid>,
}

impl Session {
    pub fn start(plan: CollectPlan, app: &mut App, tx: &mpsc::UnboundedSender<Msg>) -> Session {
        let mut ids = HashMap::new();
        if let Some(Ok((_, Some(current)))) = plan.kube.as_ref().map(crate::k8s::contexts) {
            ids.insert(current, plan.cluster_id);
        }
        let watch = watch(&plan, app, tx);
        Session {
            epoch: 0,
            consent_api: None,
            sources: sources(&plan),
            plan,
            watch,
            ids,
        }
    }

    /// Moves everything to `context` and `namespace`; the app forgets the last cluster.
    pub fn switch(
        &mut self,
        context: &str,
        namespace: &str,
        app: &mut App,
        tx: &mpsc::UnboundedSender<Msg>,
    ) {
        let id = *self
            .ids
            .entry(context.to_string())
            .or_insert_with(Uuid::new_v4);
        let Some(plan) = super::switch::switched_plan(&self.plan, context, namespace, id) else {
            app.message =
                Some("Kubernetes is not read (--no-kube): there is no context to switch".into());
            return;
        };
        self.watch.abort();
        self.epoch += 1;
        self.plan = plan;
        self.sources = sources(&self.plan);
        self.consent_api = None;
        let kube = self
            .plan
            .kube
            .as_ref()
            .map(|k| format!("{} namespace {namespace}", crate::k8s::describe_target(k)))
            .unwrap_or_default();
        app.on_switched(id.to_string(), kube, self.plan.scheduler.address());
        self.watch = watch(&self.plan, app, tx);
        tracing::info!(context, namespace, "switched context");
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

fn sources(plan: &CollectPlan) -> Arc<Mutex<Sources>> {
    Arc::new(Mutex::new(
        Sources::new(plan.clone()).fast_fail(CONNECT_TIMEOUT),
    ))
}

/// Over a port-forward the forward's own state is watched; otherwise a TCP connection.
fn watch(plan: &CollectPlan, app: &mut App, tx: &mpsc::UnboundedSender<Msg>) -> JoinHandle<()> {
    match plan.scheduler.forward() {
        Some(spec) => {
            app.on_forward(spec.view());
            forward_watch::spawn(spec.clone(), tx.clone())
        }
        None => spawn_watch(plan.scheduler.address(), tx.clone()),
    }
}
