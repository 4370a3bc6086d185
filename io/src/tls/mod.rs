//! TLS with rustls: the crypto provider and protocol profile, per-listener certificate state
//! (SNI selection, client-certificate policy, reload), per-cluster upstream client settings,
//! and the session driver the streams use.
//!
//! Shared across workers, read-only on the request path: certificates (swapped whole on
//! reload), client-certificate verifiers and the session-ticket keys, so that a client resumes
//! on whichever worker SO_REUSEPORT hands its next connection to. Per worker: the rustls
//! configs themselves, each with its own session-ID cache, so no lock is shared on a handshake
//! except the ticket keys' read lock.

pub(crate) mod certs;
mod handshake;
pub(crate) mod session;
mod upstream;

pub(crate) use handshake::{AcceptFail, Handshake};
pub use upstream::{SignatureOnlyVerifier, UpstreamTlsConfig};

use certs::{load_pair, read_certificates, CertSet, SniResolver};
use proxy_core::config::{ClientAuth, ListenerTls};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Application protocols offered, in preference order.
const ALPN: &[&[u8]] = &[b"http/1.1", b"http/1.0"];
/// The ALPN protocols of a listener that also serves HTTP/2, preferred first.
const ALPN_H2: &[&[u8]] = &[b"h2", b"http/1.1", b"http/1.0"];
/// TLS 1.2 sessions remembered per worker for session-ID resumption.
const SESSION_CACHE: usize = 4096;

/// The crypto provider every TLS config uses: aws-lc-rs, restricted to the cipher suites of
/// Mozilla's "intermediate" profile (TLS 1.3's three, and ECDHE with AES-GCM or ChaCha20 for
/// TLS 1.2), with rustls' default key-exchange groups.
pub fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::aws_lc_rs::cipher_suite as cs;
    let base = rustls::crypto::aws_lc_rs::default_provider();
    Arc::new(CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..base
    })
}

/// Session-ticket keys for every TLS listener: random, rotated every six hours (the previous
/// key still decrypts), shared by all workers.
pub fn new_ticketer() -> Result<Arc<dyn ProducesTickets>, String> {
    rustls::crypto::aws_lc_rs::Ticketer::new()
        .map_err(|e| format!("cannot create TLS session-ticket keys: {e}"))
}

/// A certificate in service, for `/metrics`.
#[derive(Debug, Clone)]
pub struct CertificateStatus {
    /// The listener serving it.
    pub listener: String,
    /// Its certificate file.
    pub file: String,
    /// Expiry, seconds since the Unix epoch.
    pub not_after: i64,
}

/// One TLS listener's certificate state, shared by every worker.
pub struct ServerTls {
    name: String,
    settings: ListenerTls,
    provider: Arc<CryptoProvider>,
    resolver: Arc<SniResolver>,
    /// One rustls config per distinct client-certificate policy; workers take copies.
    configs: Vec<ServerConfig>,
    /// Certificate `i` is served with `verifiers[cert_policy[i]]`.
    cert_policy: Vec<usize>,
    /// Requests must name the host their connection was negotiated for (421 otherwise).
    host_check: bool,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("listener", &self.name)
            .finish()
    }
}

impl ServerTls {
    /// Reads the listener's certificates, keys and CA bundles. Fails, naming the file, on
    /// anything unreadable, unparseable or mismatched. Expired certificates are accepted with a
    /// warning (a restart must not take a site down) and show on `/metrics`.
    ///
    /// `host_check`: other listeners differ in client-certificate policy, so requests must
    /// match their connection's SNI even if this listener's certificates agree. `http2`: offer
    /// `h2` in ALPN.
    pub fn load(
        listener: &str,
        settings: &ListenerTls,
        ticketer: Arc<dyn ProducesTickets>,
        host_check: bool,
        http2: bool,
    ) -> Result<Arc<ServerTls>, String> {
        let provider = provider();
        let set = load_set(settings, &provider)?;
        warn_expiry(listener, &set);
        let mut policies: Vec<&ClientAuth> = Vec::new();
        let mut cert_policy = Vec::with_capacity(settings.certificates.len());
        for c in &settings.certificates {
            let i = match policies.iter().position(|p| **p == c.client_auth) {
                Some(i) => i,
                None => {
                    policies.push(&c.client_auth);
                    policies.len() - 1
                }
            };
            cert_policy.push(i);
        }
        let resolver = Arc::new(SniResolver {
            current: arc_swap::ArcSwap::from_pointee(set),
        });
        let configs = policies
            .iter()
            .map(|p| {
                let verifier = client_verifier(p, &provider)?;
                let mut cfg =
                    server_config(&provider, verifier, resolver.clone(), ticketer.clone())?;
                if http2 {
                    cfg.alpn_protocols = ALPN_H2.iter().map(|p| p.to_vec()).collect();
                }
                Ok::<_, String>(cfg)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(ServerTls {
            name: listener.to_owned(),
            host_check: host_check || settings.mixed_client_auth(),
            settings: settings.clone(),
            resolver,
            provider,
            configs,
            cert_policy,
        }))
    }

    /// Re-reads every certificate and key; on success new handshakes use them at once, on
    /// failure the certificates in service stay and the error names the file.
    pub fn reload(&self) -> Result<(), String> {
        let set = load_set(&self.settings, &self.provider)?;
        warn_expiry(&self.name, &set);
        self.resolver.current.store(Arc::new(set));
        Ok(())
    }

    /// The certificates in service.
    pub fn certificates(&self) -> Vec<CertificateStatus> {
        self.resolver
            .current
            .load()
            .certs
            .iter()
            .map(|c| CertificateStatus {
                listener: self.name.clone(),
                file: c.cert_path.clone(),
                not_after: c.not_after,
            })
            .collect()
    }

    /// The listener's settings.
    pub(crate) fn settings(&self) -> &ListenerTls {
        &self.settings
    }

    /// Whether requests must name the host their connection was negotiated for.
    pub(crate) fn host_check(&self) -> bool {
        self.host_check
    }

    /// The client-certificate policy (an index) for requests to `host`, if a certificate names
    /// it.
    pub(crate) fn policy_for_host(&self, host: &str) -> Option<usize> {
        let set = self.resolver.current.load();
        set.exact_or_wildcard(host).map(|i| self.cert_policy[i])
    }

    /// One rustls config per client-certificate policy, for one worker: copies with their own
    /// session-ID cache (the ticket keys and certificates stay shared).
    pub(crate) fn worker_configs(&self) -> Vec<Arc<ServerConfig>> {
        self.configs
            .iter()
            .map(|c| {
                let mut c = c.clone();
                c.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
                Arc::new(c)
            })
            .collect()
    }
}

/// The rustls config for one client-certificate policy: TLS 1.3 and 1.2, the listener's
/// certificates, the shared ticket keys, ALPN, no 0-RTT.
fn server_config(
    provider: &Arc<CryptoProvider>,
    verifier: Arc<dyn ClientCertVerifier>,
    resolver: Arc<SniResolver>,
    ticketer: Arc<dyn ProducesTickets>,
) -> Result<ServerConfig, String> {
    let mut cfg = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    cfg.ticketer = ticketer;
    // One ticket is all a client needs to resume; each costs an encryption.
    cfg.send_tls13_tickets = 1;
    cfg.max_early_data_size = 0;
    Ok(cfg)
}

/// A worker's view of a TLS listener.
pub(crate) struct WorkerTls {
    pub(crate) shared: Arc<ServerTls>,
    pub(crate) configs: Vec<Arc<ServerConfig>>,
}

fn load_set(settings: &ListenerTls, provider: &CryptoProvider) -> Result<CertSet, String> {
    let certs = settings
        .certificates
        .iter()
        .map(|c| load_pair(&c.cert, &c.key, provider))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CertSet::new(certs, settings.strict_sni))
}

fn warn_expiry(listener: &str, set: &CertSet) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    for c in &set.certs {
        if c.not_after < now {
            tracing::error!(listener, file = %c.cert_path, expired_seconds_ago = now - c.not_after,
                "TLS CERTIFICATE HAS EXPIRED: clients will refuse it; serving it anyway so the listener stays up");
        } else if c.not_after - now < 14 * 86_400 {
            tracing::warn!(listener, file = %c.cert_path, days_left = (c.not_after - now) / 86_400,
                "TLS certificate expires soon");
        }
        if c.names.is_empty() {
            tracing::warn!(listener, file = %c.cert_path, "certificate names no host: only usable as the default");
        }
    }
}

fn client_verifier(
    policy: &ClientAuth,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let (ca, optional) = match policy {
        ClientAuth::None => return Ok(WebPkiClientVerifier::no_client_auth()),
        ClientAuth::Optional(ca) => (ca, true),
        ClientAuth::Required(ca) => (ca, false),
    };
    let roots = Arc::new(root_store(ca)?);
    let builder = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
    let builder = if optional {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    builder
        .build()
        .map_err(|e| format!("{ca}: cannot verify client certificates with it: {e}"))
}

/// The CA certificates in a PEM bundle.
fn root_store(path: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in read_certificates(path)? {
        roots
            .add(c)
            .map_err(|e| format!("{path}: not a usable CA certificate: {e}"))?;
    }
    Ok(roots)
}
