//! Certificates for testing mutual TLS to the simulated scheduler: a CA, a server certificate
//! for `localhost`/`127.0.0.1` (as the real scheduler's include `localhost`, so it verifies over
//! a port-forward) and a client certificate, written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

/// The files `hodometer sim --tls-dir DIR` writes, named for the variables that point at them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that signed both certificates (`CONTROL_PLANE_CLIENT_TLS_CA_LOCATION`).
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// `CONTROL_PLANE_CLIENT_TLS_CRT_LOCATION`.
    pub client_cert: PathBuf,
    /// `CONTROL_PLANE_CLIENT_TLS_KEY_LOCATION`.
    pub client_key: PathBuf,
}

impl TlsFiles {
    pub fn in_dir(dir: &Path) -> TlsFiles {
        TlsFiles {
            ca: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot generate certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

/// Generates a fresh CA with a server and a client certificate into `dir` (made a private 0700
/// directory); existing files of ours are replaced, each written 0600.
pub fn generate(dir: &Path) -> Result<TlsFiles, TlsError> {
    let files = TlsFiles::in_dir(dir);
    let write = |path: &Path, pem: String| {
        // Keys are private, and nothing is written through a planted symlink.
        crate::private_fs::write_private(path, pem.as_bytes()).map_err(|source| TlsError::Write {
            path: path.display().to_string(),
            source,
        })
    };
    crate::private_fs::private_dir(dir).map_err(|source| TlsError::Write {
        path: dir.display().to_string(),
        source,
    })?;

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "hodometer sim CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    write(&files.ca, ca.pem())?;

    let leaf = |name: &str,
                usage: ExtendedKeyUsagePurpose,
                cert: &Path,
                key: &Path|
     -> Result<(), TlsError> {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key_pair = KeyPair::generate()?;
        let certificate = params.signed_by(&key_pair, &ca)?;
        write(cert, certificate.pem())?;
        write(key, key_pair.serialize_pem())
    };
    leaf(
        "seldon-scheduler",
        ExtendedKeyUsagePurpose::ServerAuth,
        &files.server_cert,
        &files.server_key,
    )?;
    leaf(
        "hodometer",
        ExtendedKeyUsagePurpose::ClientAuth,
        &files.client_cert,
        &files.client_key,
    )?;
    Ok(files)
}
