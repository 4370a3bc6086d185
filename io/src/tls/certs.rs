//! Certificates: reading PEM files into rustls keys, learning the names each certificate serves
//! (from its own SAN list), and choosing one by SNI, exact names before `*.` wildcards, with the
//! first certificate as the default unless SNI is strict.
//!
//! The chosen set sits behind an [`ArcSwap`]: a reload builds a whole new set off the workers and
//! swaps it in; handshakes in progress keep the set they loaded.

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::sync::Arc;

/// A certificate and key read from files, with what the proxy needs to know about it.
#[derive(Debug)]
pub(crate) struct LoadedCert {
    pub(crate) key: Arc<CertifiedKey>,
    /// DNS names (lowercase, possibly `*.suffix`) the certificate is valid for.
    pub(crate) names: Vec<String>,
    /// Expiry, in seconds since the Unix epoch.
    pub(crate) not_after: i64,
    /// The certificate file, for messages and metrics.
    pub(crate) cert_path: String,
}

/// Reads every certificate in a PEM file; an error names the file.
pub(crate) fn read_certificates(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{path}: cannot read: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{path}: not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "{path}: no certificate found (expected a PEM `BEGIN CERTIFICATE` block)"
        ));
    }
    Ok(certs)
}

/// Reads a certificate chain and its private key, checking that they belong together.
pub(crate) fn load_pair(
    cert_path: &str,
    key_path: &str,
    provider: &CryptoProvider,
) -> Result<LoadedCert, String> {
    let chain = read_certificates(cert_path)?;
    let pem = std::fs::read(key_path).map_err(|e| format!("{key_path}: cannot read: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| format!("{key_path}: no usable PEM private key: {e}"))?;
    let (names, not_after) = describe(&chain[0]).map_err(|e| format!("{cert_path}: {e}"))?;
    let key = CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            format!("{key_path}: this key does not match the certificate in {cert_path}")
        }
        other => format!("{key_path}: unusable private key: {other}"),
    })?;
    Ok(LoadedCert {
        key: Arc::new(key),
        names,
        not_after,
        cert_path: cert_path.to_owned(),
    })
}

/// The DNS names and expiry of a certificate.
fn describe(der: &CertificateDer<'_>) -> Result<(Vec<String>, i64), String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("unparseable certificate: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => names.push(d.to_ascii_lowercase()),
                GeneralName::IPAddress(ip) => {
                    if let Some(text) = ip_text(ip) {
                        names.push(text);
                    }
                }
                _ => {}
            }
        }
    }
    if names.is_empty() {
        // Old certificates name their host only in the subject's CN.
        if let Some(cn) = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
        {
            names.push(cn.to_ascii_lowercase());
        }
    }
    Ok((names, cert.validity().not_after.timestamp()))
}

fn ip_text(raw: &[u8]) -> Option<String> {
    let ip: std::net::IpAddr = match raw.len() {
        4 => <[u8; 4]>::try_from(raw).ok()?.into(),
        16 => <[u8; 16]>::try_from(raw).ok()?.into(),
        _ => return None,
    };
    Some(ip.to_string())
}

/// The subject of a DER certificate in RFC 4514 style (`CN=alice, O=Example`), if it parses.
pub(crate) fn subject_of(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.subject().to_string())
}

/// One listener's certificates, indexed by name.
#[derive(Debug)]
pub(crate) struct CertSet {
    pub(crate) certs: Vec<LoadedCert>,
    exact: HashMap<String, usize>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<String, usize>,
    strict: bool,
}

impl CertSet {
    /// Indexes `certs`; earlier certificates win a name they share with later ones.
    pub(crate) fn new(certs: Vec<LoadedCert>, strict: bool) -> CertSet {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (i, c) in certs.iter().enumerate() {
            for n in &c.names {
                match n.strip_prefix("*.") {
                    Some(suffix) => wildcard.entry(suffix.to_owned()).or_insert(i),
                    None => exact.entry(n.clone()).or_insert(i),
                };
            }
        }
        CertSet {
            certs,
            exact,
            wildcard,
            strict,
        }
    }

    /// The certificate for a client that sent `sni` (or none): exact name, then a wildcard one
    /// label up, then the first certificate unless SNI is strict.
    pub(crate) fn lookup(&self, sni: Option<&str>) -> Option<usize> {
        if let Some(name) = sni {
            let name = name.trim_end_matches('.');
            let found = self.exact_or_wildcard(name);
            if found.is_some() {
                return found;
            }
        }
        (!self.strict && !self.certs.is_empty()).then_some(0)
    }

    /// The certificate whose own names cover `host`, ignoring the default.
    pub(crate) fn exact_or_wildcard(&self, host: &str) -> Option<usize> {
        let lower;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = host.to_ascii_lowercase();
            lower.as_str()
        } else {
            host
        };
        if let Some(&i) = self.exact.get(host) {
            return Some(i);
        }
        let (_, parent) = host.split_once('.')?;
        self.wildcard.get(parent).copied()
    }
}

/// Resolves certificates from the current [`CertSet`] of a listener.
#[derive(Debug)]
pub(crate) struct SniResolver {
    pub(crate) current: ArcSwap<CertSet>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let set = self.current.load();
        let i = set.lookup(hello.server_name())?;
        Some(set.certs[i].key.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(names: &[&str]) -> LoadedCert {
        // A key is never used by lookup; any parseable one will do.
        let k = unusable_key();
        LoadedCert {
            key: k,
            names: names.iter().map(|s| (*s).to_owned()).collect(),
            not_after: 0,
            cert_path: String::new(),
        }
    }

    fn unusable_key() -> Arc<CertifiedKey> {
        #[derive(Debug)]
        struct NoKey;
        impl rustls::sign::SigningKey for NoKey {
            fn choose_scheme(
                &self,
                _: &[rustls::SignatureScheme],
            ) -> Option<Box<dyn rustls::sign::Signer>> {
                None
            }
            fn algorithm(&self) -> rustls::SignatureAlgorithm {
                rustls::SignatureAlgorithm::ECDSA
            }
        }
        Arc::new(CertifiedKey::new(
            vec![CertificateDer::from(vec![0u8])],
            Arc::new(NoKey),
        ))
    }

    #[test]
    fn exact_names_beat_wildcards_and_default_is_first_unless_strict() {
        let set = CertSet::new(
            vec![
                named(&["a.test"]),
                named(&["*.b.test"]),
                named(&["x.b.test"]),
            ],
            false,
        );
        assert_eq!(set.lookup(Some("a.test")), Some(0));
        assert_eq!(set.lookup(Some("A.Test.")), Some(0));
        assert_eq!(set.lookup(Some("y.b.test")), Some(1));
        assert_eq!(set.lookup(Some("x.b.test")), Some(2));
        // A wildcard covers exactly one label.
        assert_eq!(set.exact_or_wildcard("z.y.b.test"), None);
        assert_eq!(set.exact_or_wildcard("b.test"), None);
        assert_eq!(set.lookup(Some("other.test")), Some(0));
        assert_eq!(set.lookup(None), Some(0));
        let strict = CertSet::new(vec![named(&["a.test"])], true);
        assert_eq!(strict.lookup(Some("other.test")), None);
        assert_eq!(strict.lookup(None), None);
        assert_eq!(strict.lookup(Some("a.test")), Some(0));
    }
}
