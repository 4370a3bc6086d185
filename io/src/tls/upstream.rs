//! TLS towards upstreams: one rustls client config per cluster (roots, SNI name, optional
//! client certificate), cloned per worker so that each has its own session cache.

use super::certs::{load_pair, read_certificates};
use proxy_core::config::UpstreamTls;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;

/// How a cluster's upstream connections do TLS.
#[derive(Debug, Clone)]
pub struct UpstreamTlsConfig {
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) name: ServerName<'static>,
}

impl UpstreamTlsConfig {
    /// Builds the client config for `cluster`; errors name the file or setting at fault.
    /// `h2`: offer only `h2` in ALPN (the cluster speaks HTTP/2), else only `http/1.1`.
    pub fn load(cluster: &str, t: &UpstreamTls, h2: bool) -> Result<UpstreamTlsConfig, String> {
        let provider = super::provider();
        let name = ServerName::try_from(t.server_name.clone()).map_err(|_| {
            format!(
                "cluster {cluster}: `{}` is not a valid TLS server name",
                t.server_name
            )
        })?;
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("cluster {cluster}: TLS setup: {e}"))?;
        let builder = if t.verify {
            builder.with_root_certificates(roots(cluster, t.ca.as_deref())?)
        } else {
            tracing::warn!(
                cluster,
                "upstream TLS certificates are NOT verified (verify = false)"
            );
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(SignatureOnlyVerifier::new(
                    provider.clone(),
                )))
        };
        let mut config = match &t.client_cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let pair = load_pair(cert, key, &provider)?;
                builder
                    .with_client_auth_cert(pair.key.cert.clone(), load_key(key)?)
                    .map_err(|e| format!("{key}: cannot use as a client certificate key: {e}"))?
            }
        };
        config.alpn_protocols = vec![if h2 {
            b"h2".to_vec()
        } else {
            b"http/1.1".to_vec()
        }];
        Ok(UpstreamTlsConfig {
            config: Arc::new(config),
            name,
        })
    }

    /// A copy for one worker, with its own session cache (no lock shared across cores).
    pub(crate) fn for_worker(&self) -> UpstreamTlsConfig {
        let mut config = (*self.config).clone();
        config.resumption = Resumption::in_memory_sessions(256);
        UpstreamTlsConfig {
            config: Arc::new(config),
            name: self.name.clone(),
        }
    }
}

fn load_key(path: &str) -> Result<rustls::pki_types::PrivateKeyDer<'static>, String> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|e| format!("{path}: cannot read: {e}"))?;
    rustls::pki_types::PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| format!("{path}: no usable PEM private key: {e}"))
}

fn roots(cluster: &str, ca: Option<&str>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match ca {
        Some(path) => {
            for c in read_certificates(path)? {
                store
                    .add(c)
                    .map_err(|e| format!("{path}: not a usable CA certificate: {e}"))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(format!(
                    "cluster {cluster}: no system CA certificates found; set tls.ca to a CA bundle"
                ));
            }
        }
    }
    Ok(store)
}

/// Accepts any server certificate but still checks the handshake signatures (so the session is
/// at least bound to the key the server presented). For `verify = false`, and for load
/// generators that must not spend time on chain validation; never a default.
#[derive(Debug)]
pub struct SignatureOnlyVerifier(Arc<CryptoProvider>);

impl SignatureOnlyVerifier {
    /// A verifier using `provider`'s signature algorithms.
    pub fn new(provider: Arc<CryptoProvider>) -> SignatureOnlyVerifier {
        SignatureOnlyVerifier(provider)
    }
}

impl ServerCertVerifier for SignatureOnlyVerifier {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
