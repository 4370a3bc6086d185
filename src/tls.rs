//! TLS wiring: loading every TLS listener's certificates and every cluster's upstream TLS
//! settings at startup (a bad file stops the start, named), and reloading certificates on
//! SIGHUP or `POST /reload`.

use proxy_core::config::{ClientAuth, Config, UpstreamProtocol};
use proxy_io::tls::{new_ticketer, ServerTls, UpstreamTlsConfig};
use std::collections::HashSet;
use std::sync::Arc;

/// The TLS listeners, for reloading and for `/metrics`.
pub type Reloadable = Arc<Vec<Arc<ServerTls>>>;

/// TLS state built from the configuration.
pub struct TlsState {
    /// Per configured listener, in order.
    pub per_listener: Vec<Option<Arc<ServerTls>>>,
    /// Per configured cluster, in order.
    pub per_cluster: Vec<Option<UpstreamTlsConfig>>,
    /// The TLS listeners alone.
    pub listeners: Reloadable,
}

/// Loads every certificate, key and CA bundle the configuration names.
pub fn load(config: &Config) -> Result<TlsState, String> {
    let policies: HashSet<&ClientAuth> = config
        .listeners
        .iter()
        .filter_map(|l| l.tls.as_ref())
        .flat_map(|t| t.certificates.iter().map(|c| &c.client_auth))
        .collect();
    // When TLS hosts differ in client-certificate policy, a request may only reach the host its
    // connection was negotiated for: otherwise a connection set up without a certificate could
    // be used for a host that requires one.
    let host_check = policies.len() > 1;
    let mut per_listener = Vec::with_capacity(config.listeners.len());
    let mut ticketer = None;
    for l in &config.listeners {
        let Some(t) = &l.tls else {
            per_listener.push(None);
            continue;
        };
        let keys = match &ticketer {
            Some(k) => Arc::clone(k),
            None => ticketer.insert(new_ticketer()?).clone(),
        };
        let tls = ServerTls::load(&l.name, t, keys, host_check, l.http2)
            .map_err(|e| format!("listener {}: {e}", l.name))?;
        per_listener.push(Some(tls));
    }
    let per_cluster = config
        .clusters
        .iter()
        .map(|c| {
            c.tls
                .as_ref()
                .map(|t| UpstreamTlsConfig::load(&c.name, t, c.protocol == UpstreamProtocol::H2))
                .transpose()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let listeners = Arc::new(per_listener.iter().flatten().cloned().collect());
    Ok(TlsState {
        per_listener,
        per_cluster,
        listeners,
    })
}

/// Re-reads every TLS listener's certificates. Each listener swaps in its new set only if all
/// of its files load; the error names each file that failed.
pub fn reload(listeners: &Reloadable) -> Result<usize, String> {
    let mut errors = Vec::new();
    let mut reloaded = 0;
    for l in listeners.iter() {
        match l.reload() {
            Ok(()) => reloaded += 1,
            Err(e) => {
                tracing::error!(error = %e, "certificate reload failed; the certificates in service stay");
                errors.push(e);
            }
        }
    }
    if errors.is_empty() {
        tracing::info!(listeners = reloaded, "TLS certificates reloaded");
        Ok(reloaded)
    } else {
        Err(errors.join("; "))
    }
}
