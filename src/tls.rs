//! TLS set-up shared by every client and server in the process.

/// Installs ring as the process-wide rustls crypto provider. rustls panics at the first TLS
/// client build unless exactly one provider is chosen, and kube, reqwest and tonic all build
/// clients; calling this more than once is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
