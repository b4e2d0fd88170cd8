//! TLS set-up shared by every client and server in the process, and the client material the
//! scheduler connection uses (from files or from Secrets, `tls_secret`).

/// Installs ring as the process-wide rustls crypto provider. rustls panics at the first TLS
/// client build unless exactly one provider is chosen, and kube, reqwest and tonic all build
/// clients; calling this more than once is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// PEM contents of the files or Secret keys named by the `CONTROL_PLANE_*_TLS_*` variables.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// The CA that verifies the scheduler's certificate.
    pub server_ca: Vec<u8>,
    pub client_cert: Vec<u8>,
    pub client_key: Vec<u8>,
}

impl std::fmt::Debug for ClientTls {
    // Never print the private key, not even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls { .. }")
    }
}
