//! Validated configuration: the option groups every collecting command shares. Flags and
//! environment variables arrive as raw text and are checked with `validate`, so every bad setting
//! is reported at once, each with its name and value, before anything runs.

use std::path::PathBuf;

use clap::Args;
use uuid::Uuid;

use crate::collect::CollectPlan;
use crate::collect::scheduler::{CallPolicy, SchedulerTarget};
use crate::k8s::KubeTarget;
use crate::k8s::args::KubeArgs;
use crate::logging::LogSettings;
use crate::metrics::Level;
use crate::payload::DEFAULT_TOKEN;
use crate::publish::{Endpoint, PublishPolicy, parse_endpoint, parse_endpoint_list};
use crate::tls_secret::{
    CLIENT_SECRET_SETTING, Pem, SERVER_SECRET_SETTING, SecretKey, TlsSource, parse_secret_name,
    secret_key_of,
};
use crate::validate::{
    Checker, ConfigErrors, parse_do_not_track, parse_duration, parse_host, parse_level,
    parse_log_format, parse_log_level, parse_port, parse_uuid,
};

/// The consent ConfigMap's name: one setting shared by `inspect`, `daemon`, `collect` and
/// `consent`.
#[derive(Clone, Debug, Args)]
pub struct ConsentNameArg {
    /// The consent ConfigMap (in the Seldon namespace) that governs what the in-cluster reporter
    /// shares; without one, or with empty data, METRICS_LEVEL rules.
    #[arg(long, env = "HODOMETER_CONSENT_CONFIGMAP", default_value = crate::consent::DEFAULT_CONSENT_CONFIGMAP, value_name = "NAME")]
    pub consent_configmap: String,
}

impl ConsentNameArg {
    pub fn check(&self, c: &mut Checker) -> Option<String> {
        c.check(
            "--consent-configmap (HODOMETER_CONSENT_CONFIGMAP)",
            &self.consent_configmap,
            crate::consent::parse_configmap_name,
        )
    }
}

/// Everything a collection-running command needs, validated.
#[derive(Clone, Debug)]
pub struct Settings {
    pub plan: CollectPlan,
    /// The level asked for (`METRICS_LEVEL`); what is shared is the policy's decision.
    pub level: Level,
    /// `DO_NOT_TRACK`, parsed; only `policy::decide` acts on it (the views show it).
    pub do_not_track: bool,
    /// The consent ConfigMap that governs the in-cluster reporter.
    pub consent_configmap: String,
    pub token: String,
    pub log: LogSettings,
    /// The setting the scheduler port came from, shown next to the address (SCHEDULER_PORT is an
    /// alias people meet in Seldon's docs; saying which one won saves a puzzled operator).
    pub scheduler_port_from: &'static str,
}

impl Settings {
    /// `host:port (port from SETTING)`, or the port-forward ("port-forward to pod … via context
    /// …"), for the inspector header and `collect --output table`.
    pub fn scheduler_description(&self) -> String {
        if let Some(forward) = self.plan.scheduler.forward() {
            return forward.describe();
        }
        format!(
            "{} (port from {})",
            self.plan.scheduler.address(),
            self.scheduler_port_from
        )
    }
}

/// Where to collect from and what to share: the options of every command that collects, as
/// text, so that all of them are validated together.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Scheduler host name or address [default: localhost; seldon-scheduler for daemon].
    #[arg(long, env = "SCHEDULER_HOST")]
    pub scheduler_host: Option<String>,
    /// Scheduler plaintext gRPC port [default: 9004; SCHEDULER_PORT is read too, when
    /// SCHEDULER_PLAINTXT_PORT is unset].
    #[arg(long, env = "SCHEDULER_PLAINTXT_PORT")]
    pub scheduler_port: Option<String>,
    /// SCHEDULER_PORT, the name Seldon's usage docs give the plaintext port; the code's name,
    /// SCHEDULER_PLAINTXT_PORT (or --scheduler-port), wins when both are set.
    #[arg(long = "scheduler-port-alias", env = "SCHEDULER_PORT", hide = true)]
    pub scheduler_port_alias: Option<String>,
    /// Scheduler TLS gRPC port, used when TLS is on.
    #[arg(long, env = "SCHEDULER_TLS_PORT", default_value = "9044")]
    pub scheduler_tls_port: String,
    /// Mutual TLS to the scheduler (also on with CONTROL_PLANE_SECURITY_PROTOCOL=SSL).
    #[arg(long)]
    pub tls: bool,
    /// SSL turns on mutual TLS to the scheduler; PLAINTEXT (the default) leaves it off.
    #[arg(long, env = "CONTROL_PLANE_SECURITY_PROTOCOL")]
    pub security_protocol: Option<String>,
    /// Client private key (PEM) for mutual TLS.
    #[arg(
        long,
        env = "CONTROL_PLANE_CLIENT_TLS_KEY_LOCATION",
        value_name = "FILE"
    )]
    pub tls_client_key: Option<String>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(
        long,
        env = "CONTROL_PLANE_CLIENT_TLS_CRT_LOCATION",
        value_name = "FILE"
    )]
    pub tls_client_cert: Option<String>,
    /// CA of the client certificate (PEM); also verifies the scheduler unless --tls-server-ca is set.
    #[arg(
        long,
        env = "CONTROL_PLANE_CLIENT_TLS_CA_LOCATION",
        value_name = "FILE"
    )]
    pub tls_client_ca: Option<String>,
    /// CA that verifies the scheduler's certificate (PEM).
    #[arg(
        long,
        env = "CONTROL_PLANE_SERVER_TLS_CA_LOCATION",
        value_name = "FILE"
    )]
    pub tls_server_ca: Option<String>,
    /// Read the client key, certificate and CA from this Kubernetes Secret (in the Seldon
    /// namespace) instead of files; the data keys are the base names of the three client
    /// locations (default tls.key, tls.crt, ca.crt). Re-read at every collection.
    #[arg(
        long,
        env = "CONTROL_PLANE_CLIENT_TLS_SECRET_NAME",
        value_name = "SECRET"
    )]
    pub tls_client_secret: Option<String>,
    /// Read the CA that verifies the scheduler from this Secret, under the base name of the
    /// server CA location (default ca.crt).
    #[arg(
        long,
        env = "CONTROL_PLANE_SERVER_TLS_SECRET_NAME",
        value_name = "SECRET"
    )]
    pub tls_server_secret: Option<String>,
    /// Level of metrics to share: off, cluster, resource or feature (DO_NOT_TRACK=1 forces off).
    #[arg(long, env = "METRICS_LEVEL", default_value = "cluster")]
    pub level: String,
    /// Cluster id (a UUID) sent as the event's distinct_id; random for each start when unset.
    #[arg(long, env = "CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// Event token.
    #[arg(long, env = "HODOMETER_TOKEN", default_value = DEFAULT_TOKEN)]
    pub token: String,
    /// Read the Kubernetes API: in-cluster service account, else kubeconfig [default].
    #[arg(long, overrides_with = "no_kube")]
    pub kube: bool,
    /// Do not read the Kubernetes API: is_kubernetes and the Kubernetes metrics are unknown
    /// (not read), never sent.
    #[arg(long, overrides_with = "kube")]
    pub no_kube: bool,
    #[command(flatten)]
    pub k8s: KubeArgs,
    #[command(flatten)]
    pub consent: ConsentNameArg,
    /// Log level: error, warn, info, debug or trace. Logs go to stderr.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log format: text or json [default: text on a terminal, json otherwise].
    #[arg(long, env = "LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Set DO_NOT_TRACK=1 to share nothing, whatever the level.
    #[arg(long, env = "DO_NOT_TRACK", hide = true)]
    pub do_not_track: Option<String>,
    /// Directory of extensions: one file per key, named KEY or KEY@LEVEL, holding its value (a
    /// mounted ConfigMap). Names starting with a dot are skipped.
    #[arg(long, env = "HODOMETER_EXTENSIONS_DIR", value_name = "DIR")]
    pub extensions_dir: Option<PathBuf>,
    /// Extensions as comma-separated KEY[@LEVEL]=VALUE (what HODOMETER_EXTENSIONS holds).
    #[arg(long, env = "HODOMETER_EXTENSIONS", value_name = "KEY=VALUE,...")]
    pub extensions: Option<String>,
    /// A static fact to share as the property ext.KEY (repeatable): KEY=VALUE, or
    /// KEY@LEVEL=VALUE to share it only at that level or above [default level: cluster]. Wins
    /// over HODOMETER_EXTENSIONS (comma-separated KEY=VALUE), which wins over --extensions-dir.
    #[arg(long = "extension", value_name = "KEY[@LEVEL]=VALUE")]
    pub extension: Vec<String>,
}

/// Where events are published.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Main endpoint events are published to.
    #[arg(long, env = "PUBLISH_URL", default_value = DEFAULT_PUBLISH_URL)]
    pub publish_url: String,
    /// Extra endpoints, comma-separated (e.g. your own `hodometer receive`).
    #[arg(long, env = "EXTRA_PUBLISH_URLS", value_name = "URLS")]
    pub extra_publish_urls: Option<String>,
    /// Deadline for publishing one event to one endpoint, retries included [default: 10m;
    /// 20s for `collect --publish`, where someone waits].
    #[arg(long, value_name = "DURATION")]
    pub publish_deadline: Option<String>,
}

/// The original Hodometer's endpoint.
pub const DEFAULT_PUBLISH_URL: &str = "http://hodometer.seldon.io";

/// Validated publishing settings.
#[derive(Clone, Debug)]
pub struct PublishSettings {
    /// The main endpoint first, then the extra ones, without duplicates.
    pub endpoints: Vec<Endpoint>,
    pub policy: PublishPolicy,
}

/// The publish deadline of the patient commands (the daemon, the inspector's sends).
pub const PATIENT_PUBLISH_DEADLINE: &str = "10m";
/// The publish deadline where someone waits at a prompt (`collect --publish`).
pub const PERSON_PUBLISH_DEADLINE: &str = "20s";

impl PublishArgs {
    /// Validates with the patient deadline as the default.
    pub fn check(&self, c: &mut Checker) -> Option<PublishSettings> {
        self.check_with_deadline(c, PATIENT_PUBLISH_DEADLINE)
    }

    /// Validates with `default_deadline` when `--publish-deadline` is not given.
    pub fn check_with_deadline(
        &self,
        c: &mut Checker,
        default_deadline: &str,
    ) -> Option<PublishSettings> {
        let main = c.check_redacted(
            "--publish-url (PUBLISH_URL)",
            &self.publish_url,
            parse_endpoint,
        );
        let extra = c.check_opt_redacted(
            "--extra-publish-urls (EXTRA_PUBLISH_URLS)",
            self.extra_publish_urls.as_deref(),
            parse_endpoint_list,
        );
        let deadline = c.check(
            "--publish-deadline",
            self.publish_deadline.as_deref().unwrap_or(default_deadline),
            parse_duration,
        );
        let mut endpoints = vec![main?];
        for endpoint in extra?.unwrap_or_default() {
            if !endpoints.contains(&endpoint) {
                endpoints.push(endpoint);
            }
        }
        Some(PublishSettings {
            endpoints,
            policy: PublishPolicy {
                deadline: deadline?,
                ..PublishPolicy::default()
            },
        })
    }
}

const PORT_SETTING: &str = "--scheduler-port (SCHEDULER_PLAINTXT_PORT)";
const PORT_ALIAS_SETTING: &str = "SCHEDULER_PORT";
const TLS_PORT_SETTING: &str = "--scheduler-tls-port (SCHEDULER_TLS_PORT)";
const DEFAULT_SCHEDULER_PORT: &str = "9004";
const KEY_SETTING: &str = "--tls-client-key (CONTROL_PLANE_CLIENT_TLS_KEY_LOCATION)";
const CERT_SETTING: &str = "--tls-client-cert (CONTROL_PLANE_CLIENT_TLS_CRT_LOCATION)";
const CLIENT_CA_SETTING: &str = "--tls-client-ca (CONTROL_PLANE_CLIENT_TLS_CA_LOCATION)";
const SERVER_CA_SETTING: &str = "--tls-server-ca (CONTROL_PLANE_SERVER_TLS_CA_LOCATION)";

/// Reads a PEM file named by a setting; a missing or unreadable one is a configuration error.
fn read_pem(path: &str) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read the file: {e}"))?;
    if String::from_utf8_lossy(&bytes).contains("-----BEGIN ") {
        Ok(bytes)
    } else {
        Err("the file holds no PEM block".into())
    }
}

impl CommonArgs {
    /// Validates every setting on its own, reporting all problems together.
    pub fn validate(&self, default_host: &str) -> Result<Settings, ConfigErrors> {
        let mut c = Checker::default();
        let settings = self.check(&mut c, default_host);
        c.finish_with(|| settings)
    }

    /// Validates every setting into `c`, alongside other option groups; `None` if any failed.
    pub fn check(&self, c: &mut Checker, default_host: &str) -> Option<Settings> {
        let host = c.check(
            "--scheduler-host (SCHEDULER_HOST)",
            self.scheduler_host.as_deref().unwrap_or(default_host),
            parse_host,
        );
        let (port_setting, port_text) = self.scheduler_port_setting();
        let port = c.check(port_setting, port_text, parse_port);
        let tls_port = c.check(TLS_PORT_SETTING, &self.scheduler_tls_port, parse_port);
        let ssl = c.check_opt(
            "--security-protocol (CONTROL_PLANE_SECURITY_PROTOCOL)",
            self.security_protocol.as_deref(),
            |t| match t.trim().to_ascii_uppercase().as_str() {
                "SSL" => Ok(true),
                "PLAINTEXT" => Ok(false),
                _ => Err("expected SSL or PLAINTEXT".into()),
            },
        );
        let tls_on = self.tls || matches!(ssl, Some(Some(true)));
        let level = c.check("--level (METRICS_LEVEL)", &self.level, parse_level);
        let cluster_id = match &self.cluster_id {
            Some(text) => c.check("--cluster-id (CLUSTER_ID)", text, parse_uuid),
            None => Some(Uuid::new_v4()),
        };
        let consent_configmap = self.consent.check(c);
        let token = c.check_secret("--token (HODOMETER_TOKEN)", &self.token, |t| {
            let t = t.trim();
            if t.is_empty() || !t.chars().all(|ch| ch.is_ascii_graphic()) {
                Err("expected a non-empty token of printable ASCII".into())
            } else {
                Ok(t.to_string())
            }
        });
        let k8s = self.k8s.check(c);
        let rpc_timeout = k8s.as_ref().map(|k| k.timeout);
        let log_level = c.check("--log-level (LOG_LEVEL)", &self.log_level, parse_log_level);
        let log_format = c.check_opt(
            "--log-format (LOG_FORMAT)",
            self.log_format.as_deref(),
            parse_log_format,
        );
        let do_not_track = c.check_opt(
            "DO_NOT_TRACK",
            self.do_not_track.as_deref(),
            parse_do_not_track,
        );
        // An unreadable DO_NOT_TRACK is an error; until it is fixed, err on the side of sharing nothing.
        let do_not_track = do_not_track.is_none_or(|d| d.unwrap_or(false));
        let extensions = crate::extensions::check(
            self.extensions_dir.as_deref(),
            self.extensions.as_deref(),
            &self.extension,
            c,
        );
        let kube = !self.no_kube || self.kube;
        let kube_target = if kube {
            k8s.clone().map(Some)
        } else {
            Some(None)
        };
        let tls = if tls_on {
            self.client_tls(c, kube_target.as_ref()).map(Some)
        } else {
            Some(None)
        };
        let tls = tls?;
        let scheduler_port_from = if tls.is_some() {
            TLS_PORT_SETTING
        } else {
            port_setting
        };
        Some(Settings {
            plan: CollectPlan {
                cluster_id: cluster_id?,
                scheduler: SchedulerTarget {
                    route: Default::default(),
                    host: host?,
                    port: if tls.is_some() { tls_port? } else { port? },
                    rpc_timeout: rpc_timeout?,
                    tls,
                    policy: CallPolicy::patient(),
                },
                kube: kube_target?,
                extensions: extensions?,
            },
            // As asked: the policy (`policy::decide`) is what lets DO_NOT_TRACK win.
            level: level?,
            do_not_track,
            consent_configmap: consent_configmap?,
            token: token?,
            log: LogSettings {
                level: log_level?,
                format: log_format?,
            },
            scheduler_port_from,
        })
    }

    /// The plaintext port's setting and text: the flag or SCHEDULER_PLAINTXT_PORT, else the
    /// SCHEDULER_PORT alias, else the default.
    fn scheduler_port_setting(&self) -> (&'static str, &str) {
        match (&self.scheduler_port, &self.scheduler_port_alias) {
            (Some(port), _) => (PORT_SETTING, port),
            (None, Some(port)) => (PORT_ALIAS_SETTING, port),
            (None, None) => ("the default", DEFAULT_SCHEDULER_PORT),
        }
    }

    /// The mutual-TLS material: key, certificate and CA are required, from files or, with
    /// `CONTROL_PLANE_CLIENT_TLS_SECRET_NAME`, from that Secret under the base names of the
    /// `…_LOCATION` values; the server CA comes from its own Secret or file, else the client CA.
    /// `kube` is the Kubernetes target (`Some(None)` with `--no-kube`, `None` if it was invalid).
    fn client_tls(&self, c: &mut Checker, kube: Option<&Option<KubeTarget>>) -> Option<TlsSource> {
        let secret_name = |c: &mut Checker, setting, value: &Option<String>| {
            // The Helm chart sets the names even when empty; empty means "not in a Secret".
            let name = value.as_deref().filter(|v| !v.trim().is_empty());
            c.check_opt(setting, name, parse_secret_name)
        };
        let client_secret = secret_name(c, CLIENT_SECRET_SETTING, &self.tls_client_secret);
        let server_secret = secret_name(c, SERVER_SECRET_SETTING, &self.tls_server_secret);
        let in_secret = |c: &mut Checker,
                         secret: &str,
                         secret_setting: &'static str,
                         key_setting: &'static str,
                         location: &Option<String>,
                         default_key: &str| {
            let location = location.as_deref().unwrap_or(default_key);
            let key = c.check(key_setting, location, secret_key_of)?;
            Some(Pem::InSecret(SecretKey {
                secret: secret.to_string(),
                secret_setting,
                key,
                key_setting,
            }))
        };
        let file = |c: &mut Checker, setting, value: &Option<String>| match value {
            Some(path) => c.check(setting, path, read_pem).map(Pem::Loaded),
            None => c.check(setting, "", |_| {
                Err::<Pem, _>(
                    "required when TLS is on (or set CONTROL_PLANE_CLIENT_TLS_SECRET_NAME)".into(),
                )
            }),
        };
        let (key, cert, client_ca) = match &client_secret {
            Some(Some(secret)) => {
                let mut item = |setting, location: &Option<String>, default_key| {
                    in_secret(
                        c,
                        secret,
                        CLIENT_SECRET_SETTING,
                        setting,
                        location,
                        default_key,
                    )
                };
                (
                    item(KEY_SETTING, &self.tls_client_key, "tls.key"),
                    item(CERT_SETTING, &self.tls_client_cert, "tls.crt"),
                    item(CLIENT_CA_SETTING, &self.tls_client_ca, "ca.crt"),
                )
            }
            Some(None) => (
                file(c, KEY_SETTING, &self.tls_client_key),
                file(c, CERT_SETTING, &self.tls_client_cert),
                file(c, CLIENT_CA_SETTING, &self.tls_client_ca),
            ),
            // An invalid Secret name is already reported; files were not asked for.
            None => (None, None, None),
        };
        let server_ca = match (&server_secret, &self.tls_server_ca) {
            (Some(Some(secret)), location) => in_secret(
                c,
                secret,
                SERVER_SECRET_SETTING,
                SERVER_CA_SETTING,
                location,
                "ca.crt",
            ),
            (_, Some(_)) => file(c, SERVER_CA_SETTING, &self.tls_server_ca),
            (_, None) => client_ca.clone(),
        };
        let source = TlsSource {
            server_ca: server_ca?,
            client_cert: cert?,
            client_key: key?,
            kube: kube?.clone(),
        };
        if source.uses_secrets() && source.kube.is_none() {
            let setting = if matches!(client_secret, Some(Some(_))) {
                CLIENT_SECRET_SETTING
            } else {
                SERVER_SECRET_SETTING
            };
            c.check(setting, "", |_| {
                Err::<(), _>(
                    "Secrets are read through the Kubernetes API, which --no-kube turns off".into(),
                )
            });
            return None;
        }
        Some(source)
    }
}

/// How `inspect` and `collect` reach the scheduler (the daemon, in a pod, always uses the
/// address).
#[derive(Debug, Args)]
pub struct RouteArgs {
    /// How to reach the scheduler: forward (a port-forward hodometer opens through the Kubernetes
    /// API server to a Ready pod of Service seldon-scheduler), direct (the address), or auto:
    /// forward when no scheduler address is set and a kubeconfig is in use, else direct.
    #[arg(long = "scheduler", value_enum, default_value_t = RouteChoice::Auto, value_name = "HOW")]
    pub scheduler: RouteChoice,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RouteChoice {
    Auto,
    Forward,
    Direct,
}

const ROUTE_SETTING: &str = "--scheduler";

impl RouteArgs {
    /// Settles the route of `settings` (already checked from `common`): an explicit address
    /// always wins; otherwise a kubeconfig (not a pod's service account) means a port-forward.
    pub fn apply(&self, common: &CommonArgs, settings: &mut Settings) -> Result<(), ConfigErrors> {
        let explicit = common.explicit_address();
        let kube = settings.plan.kube.as_ref();
        let uses_kubeconfig = kube.is_some_and(crate::k8s::uses_kubeconfig);
        let mut c = Checker::default();
        let forward = match (self.scheduler, explicit, kube) {
            (RouteChoice::Direct, _, _) => false,
            (RouteChoice::Forward, Some(setting), _) => {
                c.check(ROUTE_SETTING, "forward", |_| {
                    Err::<(), _>(format!("a port-forward finds the scheduler itself: drop {setting}, or use --scheduler direct"))
                });
                false
            }
            (RouteChoice::Forward, None, None) => {
                c.check(ROUTE_SETTING, "forward", |_| {
                    Err::<(), _>(
                        "a port-forward goes through the Kubernetes API, which --no-kube turns off"
                            .into(),
                    )
                });
                false
            }
            (RouteChoice::Forward, None, Some(_)) => true,
            (RouteChoice::Auto, Some(_), _) | (RouteChoice::Auto, None, None) => false,
            (RouteChoice::Auto, None, Some(_)) => uses_kubeconfig,
        };
        c.finish()?;
        if let (true, Some(kube)) = (forward, kube) {
            let scheduler = &mut settings.plan.scheduler;
            let spec = crate::k8s::forward::ForwardSpec::new(kube.clone(), scheduler.tls.is_some());
            scheduler.route = crate::collect::scheduler::Route::Forward(spec);
            scheduler.host = "localhost".into();
            scheduler.port = if scheduler.tls.is_some() { 9044 } else { 9004 };
        }
        Ok(())
    }
}

impl CommonArgs {
    /// The setting that names the scheduler's address, when one does.
    pub fn explicit_address(&self) -> Option<&'static str> {
        if self.scheduler_host.is_some() {
            Some("--scheduler-host (SCHEDULER_HOST)")
        } else if self.scheduler_port.is_some() {
            Some(PORT_SETTING)
        } else if self.scheduler_port_alias.is_some() {
            Some(PORT_ALIAS_SETTING)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::LogFormat;
    use crate::validate::MAX_DURATION;
    use std::time::Duration;

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

    #[test]
    fn url_settings_never_echo_credentials() {
        let mut checker = Checker::default();
        let main = "http://user:s3cret@h/x?api_key=k3y";
        assert!(
            checker
                .check_redacted(
                    "--publish-url (PUBLISH_URL)",
                    main,
                    crate::publish::parse_endpoint
                )
                .is_none()
        );
        let extra = "http://h1/,https://bob:hunter2@h2/p?q=1,ftp://carol:pa://ss@h3";
        assert_eq!(
            checker.check_opt_redacted(
                "--extra-publish-urls (EXTRA_PUBLISH_URLS)",
                Some(extra),
                crate::publish::parse_endpoint_list,
            ),
            None
        );
        let errors = checker.finish().expect_err("two problems");
        assert_eq!(errors.0[0].value, "http://REDACTED@h/x?REDACTED");
        assert_eq!(errors.0[1].value, "http://REDACTED@h3");
        let text = errors.to_string();
        for secret in [
            "s3cret", "user", "k3y", "api_key", "bob", "hunter2", "carol", "pa:", "ss@",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("PUBLISH_URL") && text.contains("EXTRA_PUBLISH_URLS"));
    }

    #[test]
    fn an_invalid_token_is_reported_without_its_value() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            common: CommonArgs,
        }
        let cli = <Cli as clap::Parser>::parse_from(["x", "--token", "s3cret token\u{7}"]);
        let errors = cli.common.validate("localhost").expect_err("invalid token");
        let text = errors.to_string();
        assert!(text.contains("HODOMETER_TOKEN"), "{text}");
        assert!(text.contains("printable ASCII"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[test]
    fn durations_are_capped_at_a_year() {
        assert_eq!(parse_duration("365d"), Ok(MAX_DURATION));
        let problem = parse_duration("366d").expect_err("over a year");
        assert!(problem.contains("365 days"), "{problem}");
        assert!(parse_duration("500000000000y").is_err());
        let mut checker = Checker::default();
        assert_eq!(
            checker.check("--rpc-timeout", "500000000000y", parse_duration),
            None
        );
        let text = checker.finish().expect_err("too long").to_string();
        assert!(text.contains("--rpc-timeout"), "{text}");
    }

    #[derive(clap::Parser)]
    struct Common {
        #[command(flatten)]
        common: CommonArgs,
    }

    fn settings(args: &[&str]) -> Result<Settings, ConfigErrors> {
        use clap::Parser;
        let args = std::iter::once("hodometer").chain(args.iter().copied());
        Common::try_parse_from(args)
            .expect("arguments parse")
            .common
            .validate("localhost")
    }

    #[test]
    fn scheduler_port_alias_is_read_and_the_codes_name_wins() {
        let alias = settings(&["--scheduler-port-alias", "9100"]).expect("valid");
        assert_eq!(alias.plan.scheduler.port, 9100);
        assert_eq!(
            alias.scheduler_description(),
            "localhost:9100 (port from SCHEDULER_PORT)"
        );
        let both = settings(&["--scheduler-port-alias", "9100", "--scheduler-port", "9200"])
            .expect("valid");
        assert_eq!(both.plan.scheduler.port, 9200);
        assert!(
            both.scheduler_description()
                .ends_with("(port from --scheduler-port (SCHEDULER_PLAINTXT_PORT))"),
            "{}",
            both.scheduler_description()
        );
        let neither = settings(&[]).expect("valid");
        assert_eq!(neither.plan.scheduler.port, 9004);
        assert!(neither.scheduler_description().contains("the default"));
        let bad = settings(&["--scheduler-port-alias", "x"]).expect_err("bad port");
        assert!(bad.to_string().contains("SCHEDULER_PORT"), "{bad}");
    }

    #[test]
    fn secret_mode_reads_keys_by_base_name_and_needs_kubernetes() {
        let secret = settings(&[
            "--tls",
            "--tls-client-secret",
            "certs",
            "--tls-client-cert",
            "/tmp/certs/cpc/client.pem",
        ])
        .expect("valid: no file is read in Secret mode");
        let tls = secret.plan.scheduler.tls.expect("TLS on");
        let key_of = |pem: &Pem| match pem {
            Pem::InSecret(item) => (item.secret.clone(), item.key.clone()),
            Pem::Loaded(_) => panic!("expected a Secret item"),
        };
        assert_eq!(
            key_of(&tls.client_cert),
            ("certs".into(), "client.pem".into())
        );
        assert_eq!(key_of(&tls.client_key), ("certs".into(), "tls.key".into()));
        // No server Secret and no server CA file: the client Secret's CA verifies the scheduler.
        assert_eq!(key_of(&tls.server_ca), ("certs".into(), "ca.crt".into()));
        assert!(tls.kube.is_some());

        let errors = settings(&["--tls", "--tls-client-secret", "certs", "--no-kube"])
            .expect_err("Secrets need the API");
        let text = errors.to_string();
        assert!(
            text.contains("CONTROL_PLANE_CLIENT_TLS_SECRET_NAME") && text.contains("--no-kube"),
            "{text}"
        );
        // Without TLS the names are ignored, as the Helm chart sets them either way.
        assert!(settings(&["--tls-client-secret", "Not A Name", "--no-kube"]).is_ok());
    }

    #[test]
    fn log_levels_accept_the_originals_logrus_names() {
        assert_eq!(parse_log_level("warning"), Ok(tracing::Level::WARN));
        assert_eq!(parse_log_level(" Warning "), Ok(tracing::Level::WARN));
        assert_eq!(parse_log_level("fatal"), Ok(tracing::Level::ERROR));
        assert_eq!(parse_log_level("PANIC"), Ok(tracing::Level::ERROR));
        assert_eq!(parse_log_level("WARN"), Ok(tracing::Level::WARN));
        assert_eq!(parse_log_level("Trace"), Ok(tracing::Level::TRACE));
        assert!(parse_log_level("loud").is_err());
    }
}
