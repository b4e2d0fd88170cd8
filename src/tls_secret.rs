//! Secret-mode mutual TLS, as the original runs in-cluster: with
//! `CONTROL_PLANE_CLIENT_TLS_SECRET_NAME` (and `CONTROL_PLANE_SERVER_TLS_SECRET_NAME`) set, the
//! client key, certificate and CAs come from Kubernetes Secrets in the Seldon namespace, read
//! through the API, under the data keys named by the base names of the `…_LOCATION` variables
//! (`tls.key`, `tls.crt`, `ca.crt`). They stay in memory: the root filesystem is read-only.
//!
//! Rotation: the Secrets are re-read at the start of every collection, and every collection opens
//! a new connection, so a rotated certificate is used from the next collection on, with no restart
//! and no watch (which is why the Role needs only `get` on the two Secrets, by name).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

use crate::k8s::{KubeTarget, load_config};
use crate::tls::ClientTls;

pub const CLIENT_SECRET_SETTING: &str =
    "--tls-client-secret (CONTROL_PLANE_CLIENT_TLS_SECRET_NAME)";
pub const SERVER_SECRET_SETTING: &str =
    "--tls-server-secret (CONTROL_PLANE_SERVER_TLS_SECRET_NAME)";

/// Where one PEM item comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum Pem {
    /// Read from a `…_LOCATION` file when the settings were checked.
    Loaded(Vec<u8>),
    /// A data key of a Secret, read at every collection.
    InSecret(SecretKey),
}

impl std::fmt::Debug for Pem {
    // Never print key material, not even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pem::Loaded(_) => f.write_str("Loaded(..)"),
            Pem::InSecret(key) => write!(f, "InSecret({key:?})"),
        }
    }
}

/// One data key of one Secret, with the settings that named them (for messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretKey {
    pub secret: String,
    pub secret_setting: &'static str,
    pub key: String,
    pub key_setting: &'static str,
}

/// Everything mutual TLS to the scheduler needs, each item from a file or a Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSource {
    /// The CA that verifies the scheduler's certificate.
    pub server_ca: Pem,
    pub client_cert: Pem,
    pub client_key: Pem,
    /// How to reach the Kubernetes API; needed only when an item is in a Secret.
    pub kube: Option<KubeTarget>,
}

/// Why the TLS material could not be read; each names the Secret, and the key when there is one.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum SecretTlsError {
    #[error("cannot read the TLS Secrets: {0}")]
    NoKubernetes(String),
    #[error("TLS Secret {namespace}/{secret} (named by {setting}) not found")]
    NotFound {
        namespace: String,
        secret: String,
        setting: &'static str,
    },
    #[error(
        "forbidden: get Secret {namespace}/{secret} (named by {setting}; keys {keys}) needs a Role \
         granting get on secrets with resourceNames [{secret}] (assets/k8s/role.yaml)"
    )]
    Forbidden {
        namespace: String,
        secret: String,
        setting: &'static str,
        keys: String,
    },
    #[error("cannot read TLS Secret {namespace}/{secret} (named by {setting}): {reason}")]
    Unreadable {
        namespace: String,
        secret: String,
        setting: &'static str,
        reason: String,
    },
    #[error(
        "TLS Secret {namespace}/{secret} has no key {key:?} (the base name of {key_setting}); its keys: {present}"
    )]
    MissingKey {
        namespace: String,
        secret: String,
        key: String,
        key_setting: &'static str,
        present: String,
    },
    #[error("key {key:?} of TLS Secret {namespace}/{secret} is not a PEM {expected}: {reason}")]
    BadPem {
        namespace: String,
        secret: String,
        key: String,
        expected: &'static str,
        reason: String,
    },
}

/// What a PEM item must hold.
#[derive(Clone, Copy)]
enum Expect {
    Certificates,
    PrivateKey,
}

impl Expect {
    fn check(self, bytes: &[u8]) -> Result<(), String> {
        match self {
            Expect::Certificates => {
                let certificates = CertificateDer::pem_slice_iter(bytes)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?;
                if certificates.is_empty() {
                    return Err("no CERTIFICATE block".into());
                }
                Ok(())
            }
            Expect::PrivateKey => PrivateKeyDer::from_pem_slice(bytes)
                .map(drop)
                .map_err(|e| e.to_string()),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Expect::Certificates => "certificate",
            Expect::PrivateKey => "private key",
        }
    }
}

impl TlsSource {
    /// Whether any item lives in a Secret.
    pub fn uses_secrets(&self) -> bool {
        self.items()
            .iter()
            .any(|(pem, _)| matches!(pem, Pem::InSecret(_)))
    }

    fn items(&self) -> [(&Pem, Expect); 3] {
        [
            (&self.server_ca, Expect::Certificates),
            (&self.client_cert, Expect::Certificates),
            (&self.client_key, Expect::PrivateKey),
        ]
    }

    /// The PEM items as they are now: files as read at start-up, Secrets read afresh (each
    /// Secret once), every Secret item checked to parse.
    pub async fn load(&self) -> Result<ClientTls, SecretTlsError> {
        let (namespace, secrets) = if self.uses_secrets() {
            self.fetch().await?
        } else {
            (String::new(), BTreeMap::new())
        };
        let resolve = |(pem, expect): (&Pem, Expect)| -> Result<Vec<u8>, SecretTlsError> {
            let wanted = match pem {
                Pem::Loaded(bytes) => return Ok(bytes.clone()),
                Pem::InSecret(wanted) => wanted,
            };
            let data = secrets.get(&wanted.secret).cloned().unwrap_or_default();
            let bytes = data
                .get(&wanted.key)
                .ok_or_else(|| SecretTlsError::MissingKey {
                    namespace: namespace.clone(),
                    secret: wanted.secret.clone(),
                    key: wanted.key.clone(),
                    key_setting: wanted.key_setting,
                    present: present_keys(&data),
                })?;
            expect
                .check(bytes)
                .map_err(|reason| SecretTlsError::BadPem {
                    namespace: namespace.clone(),
                    secret: wanted.secret.clone(),
                    key: wanted.key.clone(),
                    expected: expect.name(),
                    reason,
                })?;
            Ok(bytes.clone())
        };
        let [server_ca, client_cert, client_key] = self.items();
        Ok(ClientTls {
            server_ca: resolve(server_ca)?,
            client_cert: resolve(client_cert)?,
            client_key: resolve(client_key)?,
        })
    }

    /// Gets every Secret an item names: the namespace, and each Secret's data by name.
    async fn fetch(
        &self,
    ) -> Result<(String, BTreeMap<String, BTreeMap<String, Vec<u8>>>), SecretTlsError> {
        let target = self.kube.as_ref().ok_or_else(|| {
            SecretTlsError::NoKubernetes("the Kubernetes API is turned off (--no-kube)".into())
        })?;
        crate::tls::install_crypto_provider();
        let (config, namespace) = load_config(target)
            .await
            .map_err(SecretTlsError::NoKubernetes)?
            .ok_or_else(|| {
                SecretTlsError::NoKubernetes(
                    "there is no in-cluster service account and no kubeconfig".into(),
                )
            })?;
        let client = Client::try_from(config)
            .map_err(|e| SecretTlsError::NoKubernetes(format!("no Kubernetes client: {e}")))?;
        let api: Api<Secret> = Api::namespaced(client, &namespace);
        let mut wanted: BTreeMap<&str, (&'static str, BTreeSet<&str>)> = BTreeMap::new();
        for (pem, _) in self.items() {
            if let Pem::InSecret(item) = pem {
                let entry = wanted
                    .entry(&item.secret)
                    .or_insert((item.secret_setting, BTreeSet::new()));
                entry.1.insert(&item.key);
            }
        }
        let mut secrets = BTreeMap::new();
        for (name, (setting, keys)) in wanted {
            let data = get_secret(&api, target.timeout, name)
                .await
                .map_err(|failure| failure.into_error(&namespace, name, setting, &keys))?;
            secrets.insert(name.to_string(), data);
        }
        Ok((namespace, secrets))
    }
}

/// How one Secret read failed, before it is given the names that make it readable.
enum GetFailure {
    NotFound,
    Forbidden,
    Other(String),
}

impl GetFailure {
    fn into_error(
        self,
        namespace: &str,
        secret: &str,
        setting: &'static str,
        keys: &BTreeSet<&str>,
    ) -> SecretTlsError {
        let (namespace, secret) = (namespace.to_string(), secret.to_string());
        match self {
            GetFailure::NotFound => SecretTlsError::NotFound {
                namespace,
                secret,
                setting,
            },
            GetFailure::Forbidden => SecretTlsError::Forbidden {
                namespace,
                secret,
                setting,
                keys: keys.iter().copied().collect::<Vec<_>>().join(", "),
            },
            GetFailure::Other(reason) => SecretTlsError::Unreadable {
                namespace,
                secret,
                setting,
                reason,
            },
        }
    }
}

async fn get_secret(
    api: &Api<Secret>,
    timeout: Duration,
    name: &str,
) -> Result<BTreeMap<String, Vec<u8>>, GetFailure> {
    let answer = tokio::time::timeout(timeout, api.get_opt(name))
        .await
        .map_err(|_| GetFailure::Other(format!("no answer within {timeout:?}")))?;
    match answer {
        Ok(Some(secret)) => Ok(secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| (key, value.0))
            .collect()),
        Ok(None) => Err(GetFailure::NotFound),
        Err(kube::Error::Api(status)) if status.code == 403 => Err(GetFailure::Forbidden),
        Err(error) => Err(GetFailure::Other(error.to_string())),
    }
}

fn present_keys(data: &BTreeMap<String, Vec<u8>>) -> String {
    if data.is_empty() {
        "none".into()
    } else {
        data.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// A Secret name as Kubernetes accepts it: a DNS subdomain.
pub fn parse_secret_name(text: &str) -> Result<String, String> {
    crate::validate::parse_object_name(text, "Secret")
}

/// The Secret data key a `…_LOCATION` path stands for in Secret mode: its base name, as the
/// original uses it (`/tmp/certs/cpc/tls.crt` → `tls.crt`).
pub fn secret_key_of(location: &str) -> Result<String, String> {
    let key = Path::new(location.trim())
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("");
    let valid = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(key.to_string())
    } else {
        Err(
            "in Secret mode the base name of this path is the Secret's data key, which must be \
             letters, digits, '-', '_' or '.'"
                .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_base_names_of_the_locations() {
        assert_eq!(
            secret_key_of("/tmp/certs/cpc/tls.crt"),
            Ok("tls.crt".into())
        );
        assert_eq!(secret_key_of("ca.crt"), Ok("ca.crt".into()));
        assert!(secret_key_of("/tmp/certs/").is_ok_and(|k| k == "certs"));
        assert!(secret_key_of("/").is_err());
        assert!(secret_key_of("/tmp/a b").is_err());
    }

    #[test]
    fn secret_names_are_dns_subdomains() {
        assert_eq!(
            parse_secret_name(" seldon-controlplane-client "),
            Ok("seldon-controlplane-client".into())
        );
        assert!(parse_secret_name("Upper").is_err());
        assert!(parse_secret_name("-x").is_err());
        assert!(parse_secret_name("").is_err());
    }

    #[test]
    fn pem_items_are_checked_for_what_they_must_hold() {
        assert!(Expect::Certificates.check(b"not pem").is_err());
        assert!(
            Expect::PrivateKey
                .check(b"-----BEGIN CERTIFICATE-----\n")
                .is_err()
        );
        let key = rcgen::KeyPair::generate().expect("key");
        assert!(
            Expect::PrivateKey
                .check(key.serialize_pem().as_bytes())
                .is_ok()
        );
        let cert = rcgen::CertificateParams::new(vec!["x".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        assert!(Expect::Certificates.check(cert.pem().as_bytes()).is_ok());
    }

    #[test]
    fn debug_output_never_shows_key_material() {
        let source = TlsSource {
            server_ca: Pem::Loaded(b"CA".to_vec()),
            client_cert: Pem::Loaded(b"CERT".to_vec()),
            client_key: Pem::Loaded(b"SECRET-KEY-BYTES".to_vec()),
            kube: None,
        };
        let text = format!("{source:?}");
        assert!(!text.contains("SECRET-KEY-BYTES"), "{text}");
    }
}
