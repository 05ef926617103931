//! The agent's TLS: rustls on aws-lc-rs, TLS 1.3 and 1.2, AES-256-GCM suites only, and trust in
//! exactly one CA, the one pinned at enrollment (not the system's roots).

use std::sync::Arc;

use rustls::crypto::aws_lc_rs;
use rustls::{CipherSuite, ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::AgentError;

/// The suites the agent offers: the server's policy (`docs/design/0002-tls-policy.md`).
pub const SUITES: [CipherSuite; 3] = [
    CipherSuite::TLS13_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
];

/// Parses the pinned CA (PEM, one or more certificates).
///
/// # Errors
/// [`AgentError::State`] if `pem` holds no certificate.
pub fn parse_ca(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, AgentError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AgentError::State(format!("pinned CA: {e}")))?;
    if certs.is_empty() {
        return Err(AgentError::State("pinned CA: no certificate".into()));
    }
    Ok(certs)
}

/// Reads the CA certificate to pin from the file at `path` (what `agent enroll --ca` names)
/// and checks that it holds one.
///
/// # Errors
/// [`AgentError::Usage`] naming `path` when it cannot be read or holds no PEM certificate.
pub fn read_ca(path: &std::path::Path) -> Result<Vec<u8>, AgentError> {
    let pem = std::fs::read(path).map_err(|e| {
        AgentError::Usage(format!(
            "cannot read the CA certificate {}: {e}",
            path.display()
        ))
    })?;
    parse_ca(&pem).map_err(|e| {
        AgentError::Usage(format!(
            "the CA certificate {} is not usable: {e}",
            path.display()
        ))
    })?;
    Ok(pem)
}

/// A client configuration that trusts only `ca` (PEM), with ALPN `h2` then `http/1.1`.
///
/// # Errors
/// [`AgentError::State`] for a CA that does not parse.
pub fn client_config(ca: &[u8]) -> Result<ClientConfig, AgentError> {
    let mut roots = RootCertStore::empty();
    for cert in parse_ca(ca)? {
        roots
            .add(cert)
            .map_err(|e| AgentError::State(format!("pinned CA: {e}")))?;
    }
    let mut provider = aws_lc_rs::default_provider();
    provider
        .cipher_suites
        .retain(|s| SUITES.contains(&s.suite()));
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| AgentError::State(format!("TLS configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
