//! Switching the kubeconfig context (and namespace) inside the inspector, like k9s `:ctx`: the
//! picker's state and how keys move it. No I/O here: listing contexts and namespaces, and
//! reconnecting, are the event loop's (see `mod.rs`).

use uuid::Uuid;

use super::keys::Context;
use crate::collect::CollectPlan;
use crate::collect::scheduler::Route;
use crate::k8s::forward::{ForwardSpec, TLS_PORT_NAME};

/// The picker on screen, step by step.
#[derive(Clone, Debug, PartialEq)]
pub enum Picker {
    /// The kubeconfig's contexts; `current` is the one in use.
    Contexts {
        names: Vec<String>,
        current: Option<String>,
        selected: usize,
    },
    /// Asking the chosen context's API server for its namespaces.
    Listing { context: String },
    Namespaces {
        context: String,
        names: Vec<String>,
        selected: usize,
    },
    /// The namespaces cannot be listed (`why`): the operator types one.
    Typing {
        context: String,
        typed: String,
        why: String,
    },
}

/// What choosing in the picker asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    ListNamespaces(String),
    Switch { context: String, namespace: String },
}

impl Picker {
    /// Which key bindings apply.
    pub fn key_context(&self) -> Context {
        match self {
            Picker::Contexts { .. } | Picker::Listing { .. } => Context::Contexts,
            Picker::Namespaces { .. } => Context::Namespaces,
            Picker::Typing { .. } => Context::TypeNamespace,
        }
    }

    pub fn scroll(&mut self, by: i16) {
        let (Picker::Contexts {
            names, selected, ..
        }
        | Picker::Namespaces {
            names, selected, ..
        }) = self
        else {
            return;
        };
        *selected = if by < 0 {
            selected.saturating_sub(1)
        } else {
            (*selected + 1).min(names.len().saturating_sub(1))
        };
    }

    /// Enter: the next step, or `Err` with why nothing can be chosen yet.
    pub fn choose(&mut self) -> Result<Step, String> {
        match self {
            Picker::Contexts {
                names, selected, ..
            } => {
                let context = names
                    .get(*selected)
                    .cloned()
                    .ok_or("no context to choose")?;
                *self = Picker::Listing {
                    context: context.clone(),
                };
                Ok(Step::ListNamespaces(context))
            }
            Picker::Listing { .. } => Err("still listing the namespaces".into()),
            Picker::Namespaces {
                context,
                names,
                selected,
            } => {
                let namespace = names
                    .get(*selected)
                    .cloned()
                    .ok_or("no namespace to choose")?;
                Ok(Step::Switch {
                    context: context.clone(),
                    namespace,
                })
            }
            Picker::Typing { context, typed, .. } => {
                let namespace = crate::validate::parse_namespace(typed)?;
                Ok(Step::Switch {
                    context: context.clone(),
                    namespace,
                })
            }
        }
    }

    /// A character typed while a namespace is being typed; `false` when nothing is typed here.
    pub fn type_char(&mut self, ch: char) -> bool {
        match self {
            Picker::Typing { typed, .. } => {
                // A namespace is a DNS label: at most 63 characters.
                if typed.len() < 63 && !ch.is_control() {
                    typed.push(ch);
                }
                true
            }
            _ => false,
        }
    }

    pub fn backspace(&mut self) -> bool {
        match self {
            Picker::Typing { typed, .. } => {
                typed.pop();
                true
            }
            _ => false,
        }
    }

    /// The namespaces of `context` (or why they cannot be listed) arrived; `default` is the one
    /// to start on (the context's own, or Seldon's).
    pub fn on_namespaces(
        &mut self,
        context: &str,
        listed: Result<Vec<String>, String>,
        default: &str,
    ) {
        if !matches!(self, Picker::Listing { context: waiting } if waiting == context) {
            return;
        }
        *self = match listed {
            Ok(names) if !names.is_empty() => Picker::Namespaces {
                selected: names.iter().position(|n| n == default).unwrap_or(0),
                context: context.to_string(),
                names,
            },
            Ok(_) => Picker::Typing {
                context: context.to_string(),
                typed: default.to_string(),
                why: "the context lists no namespaces".into(),
            },
            Err(why) => Picker::Typing {
                context: context.to_string(),
                typed: default.to_string(),
                why,
            },
        };
    }
}

/// The plan of `plan` moved to another context and namespace: the Kubernetes target, the
/// port-forward (a fresh one, with its own state), the Secrets of Secret-mode TLS, and the
/// cluster id. `None` when the plan reads no Kubernetes.
pub fn switched_plan(
    plan: &CollectPlan,
    context: &str,
    namespace: &str,
    cluster_id: Uuid,
) -> Option<CollectPlan> {
    let mut kube = plan.kube.clone()?;
    kube.context = Some(context.to_string());
    kube.namespace = Some(namespace.to_string());
    let mut plan = plan.clone();
    plan.cluster_id = cluster_id;
    if let Route::Forward(spec) = &plan.scheduler.route {
        let tls = spec.port_name == TLS_PORT_NAME;
        plan.scheduler.route = Route::Forward(ForwardSpec::new(kube.clone(), tls));
    }
    if let Some(tls) = &mut plan.scheduler.tls
        && tls.kube.is_some()
    {
        tls.kube = Some(kube.clone());
    }
    plan.kube = Some(kube);
    Some(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contexts() -> Picker {
        Picker::Contexts {
            names: vec!["a".into(), "b".into()],
            current: Some("a".into()),
            selected: 0,
        }
    }

    #[test]
    fn a_context_then_a_listed_namespace() {
        let mut picker = contexts();
        picker.scroll(1);
        picker.scroll(1);
        assert_eq!(picker.choose(), Ok(Step::ListNamespaces("b".into())));
        assert_eq!(picker.key_context(), Context::Contexts);
        picker.on_namespaces("b", Ok(vec!["default".into(), "seldon".into()]), "seldon");
        assert_eq!(picker.key_context(), Context::Namespaces);
        assert_eq!(
            picker.choose(),
            Ok(Step::Switch {
                context: "b".into(),
                namespace: "seldon".into()
            })
        );
    }

    #[test]
    fn namespaces_that_cannot_be_listed_are_typed_and_checked() {
        let mut picker = contexts();
        picker.choose().expect("a context");
        picker.on_namespaces("a", Err("forbidden: list namespaces".into()), "seldon-mesh");
        let Picker::Typing { typed, why, .. } = &picker else {
            panic!("{picker:?}");
        };
        assert_eq!(
            (typed.as_str(), why.as_str()),
            ("seldon-mesh", "forbidden: list namespaces")
        );
        for _ in 0..11 {
            picker.backspace();
        }
        for ch in "Bad_Name".chars() {
            assert!(picker.type_char(ch));
        }
        assert!(picker.choose().is_err(), "not a DNS label");
        for _ in 0..8 {
            picker.backspace();
        }
        "prod".chars().for_each(|ch| {
            picker.type_char(ch);
        });
        assert_eq!(
            picker.choose(),
            Ok(Step::Switch {
                context: "a".into(),
                namespace: "prod".into()
            })
        );
    }

    #[test]
    fn an_answer_for_another_context_changes_nothing() {
        let mut picker = contexts();
        picker.choose().expect("a context");
        picker.on_namespaces("b", Ok(vec!["x".into()]), "x");
        assert_eq!(
            picker,
            Picker::Listing {
                context: "a".into()
            }
        );
    }
}
