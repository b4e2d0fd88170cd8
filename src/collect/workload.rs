//! Pure extraction of Kubernetes facts: Server workloads (CPU, GPUs, server kind), the operator's
//! scope, image tags and resource quantities. No I/O, so every rule is unit-tested on fixtures.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The containers of a Seldon Server pod that are not the inference server.
const AGENT: &str = "agent";
const RCLONE: &str = "rclone";
/// Set on the agent container by the Seldon operator to the server kind (`mlserver`, `triton`, …).
const SERVER_TYPE_ENV: &str = "SELDON_SERVER_TYPE";

/// Parses a Kubernetes quantity (`100m`, `1`, `1.5`, `2Gi`, `1e3`) into its plain value.
pub fn parse_quantity(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let (number, suffix) = match suffix.strip_prefix(['e', 'E']) {
        // Decimal exponent: `1e3`. (`E` alone is the exa suffix.)
        Some(exponent) if !exponent.is_empty() && exponent.parse::<i32>().is_ok() => {
            return Some(number.parse::<f64>().ok()? * 10f64.powi(exponent.parse().ok()?));
        }
        _ => (number, suffix),
    };
    let value: f64 = number.parse().ok()?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    (value.is_finite() && value >= 0.0).then_some(value * multiplier)
}

/// `docker.io/seldonio/seldon-scheduler:2.9.1@sha256:…` → `2.9.1`; no tag → `None`.
pub fn image_tag(image: &str) -> Option<&str> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_segment = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let (_, tag) = last_segment.rsplit_once(':')?;
    (!tag.is_empty()).then_some(tag)
}

/// `nvcr.io/nvidia/tritonserver:23.05-py3` → `tritonserver`.
pub fn image_name(image: &str) -> Option<&str> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_segment = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let name = last_segment.split(':').next().unwrap_or(last_segment);
    (!name.is_empty()).then_some(name)
}

/// Go's `strconv.ParseBool`, which the operator uses for `CLUSTERWIDE` and `--clusterwide`.
pub fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// What one Server contributes to the feature metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerFacts {
    pub kind: Option<String>,
    /// Inference container CPU (request, else limit) × replicas, in cores.
    pub cpu_cores: f64,
    pub gpu: bool,
}

/// Reads a Server's facts from its `spec.serverConfig` and its workload's pod template.
/// `replicas` is the workload's desired replica count (Kubernetes defaults it to 1).
pub fn server_facts(
    server_config: Option<&str>,
    pod: Option<&PodSpec>,
    replicas: i32,
) -> Result<ServerFacts, String> {
    let containers: &[Container] = pod.map(|p| p.containers.as_slice()).unwrap_or(&[]);
    let agent_kind = containers
        .iter()
        .find(|c| c.name == AGENT)
        .and_then(|agent| env_value(agent.env.as_deref(), SERVER_TYPE_ENV));
    let inference = inference_container(containers, agent_kind.as_deref().or(server_config));
    let kind = agent_kind
        .or_else(|| {
            server_config
                .filter(|s| !s.trim().is_empty())
                .map(str::to_string)
        })
        .or_else(|| {
            inference
                .and_then(|c| c.image.as_deref())
                .and_then(image_name)
                .map(str::to_string)
        })
        .map(|k| k.trim().to_lowercase());

    let resources = inference.and_then(|c| c.resources.as_ref());
    let quantity = |name: &str| {
        let requested = resources
            .and_then(|r| r.requests.as_ref())
            .and_then(|q| q.get(name));
        let limited = resources
            .and_then(|r| r.limits.as_ref())
            .and_then(|q| q.get(name));
        requested.or(limited)
    };
    // A quantity that does not parse makes the sum unknown rather than quietly smaller.
    let parsed = |name: &str, q: &Quantity| {
        parse_quantity(&q.0).ok_or_else(|| {
            format!(
                "a Server's inference container has {name} {:?}, which is not a quantity",
                q.0
            )
        })
    };
    // No CPU request or limit: the container asks for no CPU.
    let cpu = quantity("cpu")
        .map(|q| parsed("cpu", q))
        .transpose()?
        .unwrap_or(0.0);
    let cpu_cores = cpu * f64::from(replicas.max(0));
    let mut gpu = false;
    for map in resources
        .iter()
        .flat_map(|r| [r.requests.as_ref(), r.limits.as_ref()])
        .flatten()
    {
        for (name, q) in map.iter().filter(|(name, _)| name.ends_with("/gpu")) {
            gpu |= parsed(name, q)? > 0.0;
        }
    }
    Ok(ServerFacts {
        kind,
        cpu_cores,
        gpu,
    })
}

/// The inference server's container: the one named after the server kind, else the first that
/// is neither the agent nor rclone. Found by name, never by position.
fn inference_container<'a>(
    containers: &'a [Container],
    kind: Option<&str>,
) -> Option<&'a Container> {
    kind.and_then(|k| containers.iter().find(|c| c.name == k))
        .or_else(|| {
            containers
                .iter()
                .find(|c| c.name != AGENT && c.name != RCLONE)
        })
}

fn env_value(env: Option<&[EnvVar]>, name: &str) -> Option<String> {
    env?.iter()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
        .filter(|v| !v.trim().is_empty())
}

/// The feature metrics over all Servers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServerSummary {
    pub cpu_cores: f64,
    pub gpu_servers: u64,
    pub kinds: BTreeSet<String>,
}

impl ServerSummary {
    pub fn add(&mut self, facts: ServerFacts) {
        self.cpu_cores += facts.cpu_cores;
        self.gpu_servers += u64::from(facts.gpu);
        if let Some(kind) = facts.kind {
            self.kinds.insert(kind);
        }
    }

    /// `inference_server_name`: distinct kinds, sorted, comma-joined.
    pub fn kinds_joined(&self) -> String {
        self.kinds.iter().cloned().collect::<Vec<_>>().join(",")
    }
}

/// Whether the operator Deployment watches every namespace: its `CLUSTERWIDE` env, else its
/// `--clusterwide[=BOOL]` argument, else the operator's default (namespaced).
pub fn operator_is_clusterwide(deployment: &Deployment) -> Result<bool, String> {
    let containers = deployment
        .spec
        .template
        .spec
        .as_ref()
        .map(|p| p.containers.as_slice())
        .unwrap_or(&[]);
    for container in containers {
        if let Some(var) = container
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "CLUSTERWIDE")
        {
            return match &var.value {
                Some(value) => parse_go_bool(value.trim()).ok_or_else(|| {
                    format!("the operator's CLUSTERWIDE={value:?} is not a boolean")
                }),
                None => Err(
                    "the operator's CLUSTERWIDE comes from a reference hodometer does not read"
                        .into(),
                ),
            };
        }
    }
    for container in containers {
        let args = container
            .args
            .iter()
            .flatten()
            .chain(container.command.iter().flatten());
        for arg in args {
            let flag = arg.trim_start_matches('-');
            if flag == "clusterwide" && arg.starts_with('-') {
                return Ok(true);
            }
            if let Some(value) = flag
                .strip_prefix("clusterwide=")
                .filter(|_| arg.starts_with('-'))
            {
                return parse_go_bool(value).ok_or_else(|| {
                    format!("the operator's --clusterwide={value:?} is not a boolean")
                });
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_facts(config: Option<&str>, pod: Option<&PodSpec>, replicas: i32) -> ServerFacts {
        server_facts(config, pod, replicas).expect("valid quantities")
    }

    #[test]
    fn an_unreadable_quantity_is_an_error_not_zero() {
        let pod = |cpu: &str, gpu: &str| PodSpec {
            containers: vec![container(
                "mlserver",
                "mlserver:1",
                &[("cpu", cpu)],
                &[("nvidia.com/gpu", gpu)],
            )],
            ..Default::default()
        };
        let error =
            server_facts(Some("mlserver"), Some(&pod("lots", "1")), 1).expect_err("bad cpu");
        assert!(error.contains("\"lots\""), "{error}");
        assert!(server_facts(Some("mlserver"), Some(&pod("1", "one")), 1).is_err());
        assert!(server_facts(Some("mlserver"), Some(&pod("1", "1")), 1).is_ok());
    }
    use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
    use k8s_openapi::api::core::v1::{PodTemplateSpec, ResourceRequirements};
    use std::collections::BTreeMap;

    fn quantities(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, Quantity>> {
        (!pairs.is_empty()).then(|| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                .collect()
        })
    }

    fn container(
        name: &str,
        image: &str,
        requests: &[(&str, &str)],
        limits: &[(&str, &str)],
    ) -> Container {
        Container {
            name: name.into(),
            image: Some(image.into()),
            resources: Some(ResourceRequirements {
                requests: quantities(requests),
                limits: quantities(limits),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn agent(server_type: Option<&str>) -> Container {
        Container {
            name: "agent".into(),
            image: Some("docker.io/seldonio/seldon-agent:2.9.1".into()),
            env: Some(
                server_type
                    .map(|t| EnvVar {
                        name: "SELDON_SERVER_TYPE".into(),
                        value: Some(t.into()),
                        ..Default::default()
                    })
                    .into_iter()
                    .collect(),
            ),
            resources: Some(ResourceRequirements {
                requests: quantities(&[("cpu", "200m"), ("memory", "1G")]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn rclone() -> Container {
        container(
            "rclone",
            "docker.io/seldonio/seldon-rclone:2.9.1",
            &[("cpu", "200m")],
            &[],
        )
    }

    /// The default MLServer ServerConfig: rclone, agent, then mlserver asking for 1 CPU.
    fn mlserver_pod() -> PodSpec {
        PodSpec {
            containers: vec![
                rclone(),
                agent(Some("mlserver")),
                container(
                    "mlserver",
                    "docker.io/seldonio/mlserver:1.6.1",
                    &[("cpu", "1"), ("memory", "1G")],
                    &[],
                ),
            ],
            ..Default::default()
        }
    }

    /// A Triton server with a GPU: the inference container comes first here, to prove order does not matter.
    fn triton_gpu_pod() -> PodSpec {
        PodSpec {
            containers: vec![
                container(
                    "triton",
                    "nvcr.io/nvidia/tritonserver:23.05-py3",
                    &[("cpu", "1.5"), ("memory", "2Gi")],
                    &[("nvidia.com/gpu", "1")],
                ),
                agent(Some("triton")),
                rclone(),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn quantities_parse() {
        assert_eq!(parse_quantity("100m"), Some(0.1));
        assert_eq!(parse_quantity("1"), Some(1.0));
        assert_eq!(parse_quantity("1.5"), Some(1.5));
        assert_eq!(parse_quantity("2Gi"), Some(2.0 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("1G"), Some(1e9));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("250u"), Some(250e-6));
        assert_eq!(parse_quantity("lots"), None);
        assert_eq!(parse_quantity("1Zi"), None);
        assert_eq!(parse_quantity(""), None);
    }

    #[test]
    fn image_tags_and_names() {
        assert_eq!(
            image_tag("docker.io/seldonio/seldon-scheduler:2.9.1"),
            Some("2.9.1")
        );
        assert_eq!(
            image_tag("localhost:5000/seldon-scheduler:2.8.0@sha256:abc"),
            Some("2.8.0")
        );
        assert_eq!(image_tag("localhost:5000/seldon-scheduler"), None);
        assert_eq!(image_tag("seldon-scheduler@sha256:abc"), None);
        assert_eq!(
            image_name("nvcr.io/nvidia/tritonserver:23.05-py3"),
            Some("tritonserver")
        );
        assert_eq!(image_name("mlserver"), Some("mlserver"));
    }

    #[test]
    fn default_mlserver_server() {
        let facts = ok_facts(Some("mlserver"), Some(&mlserver_pod()), 2);
        assert_eq!(facts.kind.as_deref(), Some("mlserver"));
        assert_eq!(
            facts.cpu_cores, 2.0,
            "1 core × 2 replicas; agent and rclone do not count"
        );
        assert!(!facts.gpu);
    }

    #[test]
    fn gpu_triton_server_found_by_name_not_position() {
        let facts = ok_facts(Some("triton"), Some(&triton_gpu_pod()), 1);
        assert_eq!(facts.kind.as_deref(), Some("triton"));
        assert_eq!(facts.cpu_cores, 1.5);
        assert!(facts.gpu);
    }

    #[test]
    fn other_vendors_gpus_count_and_zero_gpus_do_not() {
        let pod = |q: &str| PodSpec {
            containers: vec![container(
                "triton",
                "tritonserver:1",
                &[("amd.com/gpu", q)],
                &[],
            )],
            ..Default::default()
        };
        assert!(ok_facts(Some("triton"), Some(&pod("2")), 1).gpu);
        assert!(!ok_facts(Some("triton"), Some(&pod("0")), 1).gpu);
    }

    #[test]
    fn cpu_falls_back_to_the_limit() {
        let pod = PodSpec {
            containers: vec![
                agent(Some("mlserver")),
                container("mlserver", "mlserver:1", &[], &[("cpu", "500m")]),
            ],
            ..Default::default()
        };
        assert_eq!(ok_facts(None, Some(&pod), 3).cpu_cores, 1.5);
    }

    #[test]
    fn custom_server_config_without_agent_type_uses_server_config_then_image() {
        let pod = PodSpec {
            containers: vec![
                agent(None),
                rclone(),
                container(
                    "custom-runtime",
                    "registry.example/acme/huggingface-rt:0.3",
                    &[("cpu", "2")],
                    &[],
                ),
            ],
            ..Default::default()
        };
        let from_config = ok_facts(Some("HuggingFace"), Some(&pod), 1);
        assert_eq!(from_config.kind.as_deref(), Some("huggingface"));
        assert_eq!(from_config.cpu_cores, 2.0);
        let from_image = ok_facts(None, Some(&pod), 1);
        assert_eq!(from_image.kind.as_deref(), Some("huggingface-rt"));
    }

    #[test]
    fn a_server_without_a_workload_contributes_only_its_kind() {
        let facts = ok_facts(Some("mlserver"), None, 1);
        assert_eq!(
            facts,
            ServerFacts {
                kind: Some("mlserver".into()),
                cpu_cores: 0.0,
                gpu: false
            }
        );
    }

    #[test]
    fn scaled_to_zero_uses_no_cpu() {
        assert_eq!(
            ok_facts(Some("mlserver"), Some(&mlserver_pod()), 0).cpu_cores,
            0.0
        );
    }

    #[test]
    fn summary_joins_distinct_sorted_kinds() {
        let mut summary = ServerSummary::default();
        summary.add(ok_facts(Some("triton"), Some(&triton_gpu_pod()), 1));
        summary.add(ok_facts(Some("mlserver"), Some(&mlserver_pod()), 1));
        summary.add(ok_facts(Some("mlserver"), Some(&mlserver_pod()), 1));
        assert_eq!(summary.kinds_joined(), "mlserver,triton");
        assert_eq!(summary.gpu_servers, 1);
        assert_eq!(summary.cpu_cores, 3.5);
    }

    fn operator(env: Option<(&str, &str)>, args: &[&str]) -> Deployment {
        Deployment {
            spec: DeploymentSpec {
                template: PodTemplateSpec {
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "manager".into(),
                            args: Some(args.iter().map(|a| a.to_string()).collect()),
                            env: env.map(|(k, v)| {
                                vec![EnvVar {
                                    name: k.into(),
                                    value: Some(v.into()),
                                    ..Default::default()
                                }]
                            }),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn operator_scope_from_env_then_args_then_default() {
        assert_eq!(
            operator_is_clusterwide(&operator(Some(("CLUSTERWIDE", "true")), &[])),
            Ok(true)
        );
        assert_eq!(
            operator_is_clusterwide(&operator(Some(("CLUSTERWIDE", "F")), &["--clusterwide"])),
            Ok(false)
        );
        assert_eq!(
            operator_is_clusterwide(&operator(None, &["--clusterwide=1"])),
            Ok(true)
        );
        assert_eq!(
            operator_is_clusterwide(&operator(None, &["--clusterwide"])),
            Ok(true)
        );
        assert_eq!(
            operator_is_clusterwide(&operator(None, &["-clusterwide=false"])),
            Ok(false)
        );
        assert_eq!(
            operator_is_clusterwide(&operator(None, &["--leader-elect"])),
            Ok(false)
        );
        assert!(operator_is_clusterwide(&operator(Some(("CLUSTERWIDE", "yes")), &[])).is_err());
    }
}
