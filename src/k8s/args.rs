//! The Kubernetes flags every command that talks to a cluster shares, spelt as kubectl spells
//! them: `-n/--namespace`, `--context` (alias `--kube-context`), `--kubeconfig` and
//! `--request-timeout`. One definition, flattened into each command's arguments, so the words and
//! their help are the same everywhere.

use std::path::PathBuf;

use clap::Args;

use super::KubeTarget;
use crate::validate::{Checker, parse_duration, parse_namespace};

/// The setting names used in configuration errors.
pub const NAMESPACE_SETTING: &str = "--namespace (POD_NAMESPACE)";
pub const CONTEXT_SETTING: &str = "--context";
pub const TIMEOUT_SETTING: &str = "--request-timeout";

#[derive(Clone, Debug, Args)]
pub struct KubeArgs {
    /// Kubeconfig file [default: KUBECONFIG, else ~/.kube/config].
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use instead of the current one.
    #[arg(long = "context", visible_alias = "kube-context", value_name = "NAME")]
    pub context: Option<String>,
    /// Seldon namespace [default: the in-cluster namespace, else the kubeconfig context's, else
    /// seldon-mesh].
    #[arg(short = 'n', long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
    /// Deadline for each request to the scheduler or the Kubernetes API, retries included
    /// (e.g. 30s).
    // The names it had before it was one (`--rpc-timeout` on collecting commands, `--timeout` on
    // `consent`) keep working, unlisted.
    #[arg(
        long,
        alias = "rpc-timeout",
        alias = "timeout",
        default_value = "30s",
        value_name = "DURATION"
    )]
    pub request_timeout: String,
}

impl KubeArgs {
    /// Validates the flags into `c`, alongside the command's other settings: the target they
    /// name.
    pub fn check(&self, c: &mut Checker) -> Option<KubeTarget> {
        let namespace = c.check_opt(
            NAMESPACE_SETTING,
            self.namespace.as_deref(),
            parse_namespace,
        );
        let context = c.check_opt(CONTEXT_SETTING, self.context.as_deref(), |text| {
            let text = text.trim();
            if text.is_empty() {
                Err("expected a kubeconfig context name".to_string())
            } else {
                Ok(text.to_string())
            }
        });
        let timeout = c.check(TIMEOUT_SETTING, &self.request_timeout, parse_duration);
        Some(KubeTarget {
            kubeconfig: self.kubeconfig.clone(),
            context: context?,
            namespace: namespace?,
            timeout: timeout?,
            inline: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::time::Duration;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        kube: KubeArgs,
    }

    fn choice(args: &[&str]) -> KubeTarget {
        let cli = Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
            .expect("arguments parse");
        let mut c = Checker::default();
        let choice = cli.kube.check(&mut c);
        c.finish_with(|| choice).expect("valid")
    }

    #[test]
    fn kubectl_spellings_and_the_old_names_mean_the_same() {
        let kubectl = choice(&["-n", "ns", "--context", "c", "--request-timeout", "5s"]);
        let old = choice(&[
            "--namespace",
            "ns",
            "--kube-context",
            "c",
            "--rpc-timeout",
            "5s",
        ]);
        assert_eq!(kubectl, old);
        assert_eq!(kubectl.timeout, Duration::from_secs(5));
        assert_eq!(choice(&["--timeout", "5s"]).timeout, Duration::from_secs(5));
        assert_eq!(choice(&[]).timeout, Duration::from_secs(30));
    }
}
