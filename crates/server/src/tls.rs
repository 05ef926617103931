//! The TLS policy (`docs/design/0002-tls-policy.md`).

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::crypto::aws_lc_rs;
use rustls::{CipherSuite, NamedGroup, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::ServerError;

/// The only cipher suites the server negotiates: AES-256-GCM, for TLS 1.3 and for TLS 1.2 with
/// ECDHE (the RSA variant is allowed for deployments that bring an RSA certificate).
pub const ALLOWED_SUITES: [CipherSuite; 3] = [
    CipherSuite::TLS13_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
];

/// The key-exchange groups: hybrid post-quantum first, then X25519 and P-256. No FFDHE.
pub const ALLOWED_GROUPS: [NamedGroup; 3] = [
    NamedGroup::X25519MLKEM768,
    NamedGroup::X25519,
    NamedGroup::secp256r1,
];

/// aws-lc-rs restricted to [`ALLOWED_SUITES`] and [`ALLOWED_GROUPS`].
#[must_use]
pub fn provider() -> CryptoProvider {
    let mut provider = aws_lc_rs::default_provider();
    provider
        .cipher_suites
        .retain(|s| ALLOWED_SUITES.contains(&s.suite()));
    provider.kx_groups = ALLOWED_GROUPS
        .iter()
        .filter_map(|name| {
            aws_lc_rs::ALL_KX_GROUPS
                .iter()
                .find(|g| g.name() == *name)
                .copied()
        })
        .collect();
    provider
}

/// A server configuration with the policy: TLS 1.3 and 1.2, [`ALLOWED_SUITES`], extended master
/// secret required for TLS 1.2, no 0-RTT data, ALPN `h2` then `http/1.1`.
///
/// # Errors
/// [`ServerError::Tls`] if the key does not match the certificate or is of an unsupported kind.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, ServerError> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.require_ems = true;
    config.max_early_data_size = 0;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
