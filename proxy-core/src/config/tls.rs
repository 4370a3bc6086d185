//! TLS settings: what a TLS listener serves (certificates chosen by SNI, client-certificate
//! policy, HSTS) and how a cluster talks TLS to its upstreams. Only paths and policies live
//! here; reading the files and building TLS state is the I/O layer's job.

use super::{duration, err, ConfigError};
use serde::Deserialize;
use std::time::Duration;

/// `[listeners.tls]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileListenerTls {
    /// Certificates, each with its key; the first is the default for clients without SNI.
    #[serde(default)]
    pub certificates: Vec<FileCertificate>,
    /// Refuse clients whose SNI matches no certificate (or who send none) instead of
    /// answering with the first certificate.
    pub strict_sni: Option<bool>,
    /// `none`, `optional` or `required`: client certificates, for every certificate entry that
    /// does not say otherwise.
    pub client_auth: Option<String>,
    /// PEM bundle of the CAs client certificates must chain to.
    pub client_ca: Option<String>,
    /// Request field that carries the verified client certificate's subject upstream (and is
    /// removed from what clients send).
    pub client_subject_header: Option<String>,
    /// `Strict-Transport-Security` value added to responses that lack one.
    pub hsts: Option<String>,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Option<super::Quantity>,
}

/// One `[[listeners.tls.certificates]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCertificate {
    /// PEM file: the certificate, then its chain.
    pub cert: String,
    /// PEM file: the private key.
    pub key: String,
    /// Overrides the listener's `client_auth` for the names on this certificate.
    pub client_auth: Option<String>,
    /// Overrides the listener's `client_ca` for the names on this certificate.
    pub client_ca: Option<String>,
}

/// `[clusters.tls]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUpstreamTls {
    /// PEM bundle of CAs to verify upstreams against; absent means the system's roots.
    pub ca: Option<String>,
    /// Name sent as SNI and verified in the upstream's certificate; default: the first
    /// endpoint's host name (or IP address).
    pub server_name: Option<String>,
    /// Client certificate (PEM) presented to upstreams.
    pub cert: Option<String>,
    /// Its private key (PEM).
    pub key: Option<String>,
    /// Verify the upstream's certificate (default true; false is for testing only).
    pub verify: Option<bool>,
}

/// Whether clients must present a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientAuth {
    /// Certificates are not requested.
    None,
    /// Requested; if presented, it must chain to the CA bundle at this path.
    Optional(String),
    /// Required, and must chain to the CA bundle at this path.
    Required(String),
}

/// A certificate and key, by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    /// PEM certificate chain.
    pub cert: String,
    /// PEM private key.
    pub key: String,
    /// The client-certificate policy for the names this certificate serves.
    pub client_auth: ClientAuth,
}

/// A TLS listener's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// Certificates in file order; SNI picks among them by their own names.
    pub certificates: Vec<CertificateFiles>,
    /// Without it the first certificate answers clients whose SNI matches none.
    pub strict_sni: bool,
    /// Field name for the client certificate's subject, if passed upstream.
    pub client_subject_header: Option<String>,
    /// `Strict-Transport-Security` value, if any.
    pub hsts: Option<String>,
    /// Handshake time limit.
    pub handshake_timeout: Duration,
}

impl ListenerTls {
    /// Whether the certificates differ in client-certificate policy, so that a request must
    /// not reach a host through a connection negotiated for another (421).
    pub fn mixed_client_auth(&self) -> bool {
        self.certificates
            .windows(2)
            .any(|w| w[0].client_auth != w[1].client_auth)
    }
}

/// TLS towards a cluster's upstreams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// CA bundle path; `None` for the system's roots.
    pub ca: Option<String>,
    /// SNI and verification name.
    pub server_name: String,
    /// Client certificate and key paths.
    pub client_cert: Option<(String, String)>,
    /// Verify the upstream's certificate.
    pub verify: bool,
}

fn client_auth(
    mode: Option<&str>,
    ca: Option<&String>,
    key: &str,
) -> Result<ClientAuth, ConfigError> {
    let ca = ca.filter(|c| !c.is_empty()).cloned();
    match (mode.unwrap_or("none"), ca) {
        ("none", _) => Ok(ClientAuth::None),
        ("optional", Some(ca)) => Ok(ClientAuth::Optional(ca)),
        ("required", Some(ca)) => Ok(ClientAuth::Required(ca)),
        ("optional" | "required", None) => err(
            format!("{key}.client_auth"),
            "needs client_ca, the CA bundle client certificates are verified against",
        ),
        (other, _) => err(
            format!("{key}.client_auth"),
            format!("`{other}` is not one of none, optional, required"),
        ),
    }
}

/// Resolves a listener's `tls` table; `key` is the listener's key path.
pub(super) fn resolve_listener_tls(
    t: &FileListenerTls,
    key: &str,
) -> Result<ListenerTls, ConfigError> {
    let key = format!("{key}.tls");
    if t.certificates.is_empty() {
        return err(
            format!("{key}.certificates"),
            "a TLS listener needs at least one certificate (cert and key)",
        );
    }
    let listener_auth = client_auth(t.client_auth.as_deref(), t.client_ca.as_ref(), &key)?;
    let mut certificates = Vec::with_capacity(t.certificates.len());
    for (i, c) in t.certificates.iter().enumerate() {
        let ckey = format!("{key}.certificates[{i}]");
        if c.cert.is_empty() || c.key.is_empty() {
            return err(ckey, "cert and key must both name files");
        }
        let auth = if c.client_auth.is_some() || c.client_ca.is_some() {
            let mode = c.client_auth.as_deref().or(t.client_auth.as_deref());
            client_auth(mode, c.client_ca.as_ref().or(t.client_ca.as_ref()), &ckey)?
        } else {
            listener_auth.clone()
        };
        certificates.push(CertificateFiles {
            cert: c.cert.clone(),
            key: c.key.clone(),
            client_auth: auth,
        });
    }
    let client_subject_header = match &t.client_subject_header {
        None => None,
        Some(h) if h.is_empty() => None,
        Some(h) if is_token(h) => Some(h.clone()),
        Some(h) => {
            return err(
                format!("{key}.client_subject_header"),
                format!("`{h}` is not a valid header field name"),
            )
        }
    };
    let hsts = match &t.hsts {
        None => None,
        Some(v) if v.is_empty() => None,
        Some(v) if v.starts_with("max-age=") && v.bytes().all(|b| (b' '..0x7f).contains(&b)) => {
            Some(v.clone())
        }
        Some(v) => {
            return err(
                format!("{key}.hsts"),
                format!("`{v}` is not a Strict-Transport-Security value (max-age=SECONDS; …)"),
            )
        }
    };
    Ok(ListenerTls {
        certificates,
        strict_sni: t.strict_sni.unwrap_or(false),
        client_subject_header,
        hsts,
        handshake_timeout: duration(
            &t.handshake_timeout,
            &format!("{key}.handshake_timeout"),
            Duration::from_secs(10),
        )?,
    })
}

/// Resolves a cluster's `tls` table; `default_name` is the first endpoint's host.
pub(super) fn resolve_upstream_tls(
    t: &FileUpstreamTls,
    key: &str,
    default_name: Option<&str>,
) -> Result<UpstreamTls, ConfigError> {
    let key = format!("{key}.tls");
    let server_name = match (&t.server_name, default_name) {
        (Some(n), _) if !n.is_empty() => n.clone(),
        (_, Some(n)) => n.to_owned(),
        _ => {
            return err(
                format!("{key}.server_name"),
                "needed: the cluster has no endpoint to take a name from",
            )
        }
    };
    if server_name.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return err(
            format!("{key}.server_name"),
            format!("`{server_name}` is not a host name"),
        );
    }
    let client_cert = match (&t.cert, &t.key) {
        (None, None) => None,
        (Some(c), Some(k)) if !c.is_empty() && !k.is_empty() => Some((c.clone(), k.clone())),
        _ => return err(key, "cert and key go together: set both or neither"),
    };
    Ok(UpstreamTls {
        ca: t.ca.clone().filter(|c| !c.is_empty()),
        server_name,
        client_cert,
        verify: t.verify.unwrap_or(true),
    })
}

fn is_token(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
