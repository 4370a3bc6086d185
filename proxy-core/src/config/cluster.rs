//! Clusters and their endpoints: literal addresses, and the address slots a host name fills;
//! each endpoint's stable id (the index of every per-worker table in the I/O layer); and the
//! balancing, health, retry and circuit settings of each cluster (parsed in [`super::lb`]).

use super::{duration, err, lb, tls, ConfigError, FileCluster, HealthKind, Timeouts, UpstreamTls};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

/// An upstream endpoint: one configured address, or one address slot of a configured DNS
/// name (a name that resolves to several addresses fills several slots).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// Its address (for a DNS slot: the address at start; the resolver changes it later).
    pub addr: SocketAddr,
    /// Its weight, 1 to 1000.
    pub weight: u32,
    /// Its index across all clusters; per-core pools are indexed by it.
    pub id: usize,
    /// Its priority level (0 is served first).
    pub priority: u8,
    /// Index of its region in [`Cluster::regions`], if it has one.
    pub region: Option<usize>,
    /// Index of its name in [`Cluster::dns_names`], for a DNS slot.
    pub dns: Option<usize>,
    /// Whether the slot holds an address at start (always true for a literal address).
    pub present: bool,
}

/// An endpoint name resolved off the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsName {
    /// The host name.
    pub host: String,
    /// The port.
    pub port: u16,
    /// Ids of its slots, in order.
    pub slots: std::ops::Range<usize>,
}

/// The protocol spoken to a cluster's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1, connections pooled per endpoint per worker.
    Http1,
    /// HTTP/2 (h2c by prior knowledge, or ALPN `h2` over TLS), one multiplexed connection per
    /// endpoint per worker.
    H2,
}

/// A cluster of endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// Its name.
    pub name: String,
    /// Its endpoints (possibly none: requests then get 503).
    pub endpoints: Vec<Endpoint>,
    /// TLS towards the endpoints, if any.
    pub tls: Option<UpstreamTls>,
    /// The protocol spoken to the endpoints.
    pub protocol: UpstreamProtocol,
    /// How requests are spread.
    pub balance: lb::Balance,
    /// Active health checks, if any.
    pub health: Option<lb::HealthCheck>,
    /// Passive outlier detection.
    pub outlier: crate::lb::OutlierPolicy,
    /// Retries.
    pub retry: lb::RetryPolicy,
    /// Circuit breaking.
    pub circuit: lb::Circuit,
    /// Region names its endpoints refer to.
    pub regions: Vec<String>,
    /// Endpoint names resolved again every `resolve_interval`.
    pub dns_names: Vec<DnsName>,
    /// How often [`Cluster::dns_names`] are resolved again.
    pub resolve_interval: Duration,
}

pub(super) fn resolve_clusters(
    raw: &[FileCluster],
    timeouts: &Timeouts,
) -> Result<Vec<Cluster>, ConfigError> {
    let mut names = HashSet::new();
    let mut next_id = 0;
    let mut out = Vec::with_capacity(raw.len());
    for (i, c) in raw.iter().enumerate() {
        if c.name.is_empty() || !names.insert(c.name.clone()) {
            return err(
                format!("clusters[{i}].name"),
                format!("`{}` is empty or used twice", c.name),
            );
        }
        let max_addresses = c.max_addresses.unwrap_or(4);
        if !(1..=64).contains(&max_addresses) {
            return err(
                format!("clusters[{i}].max_addresses"),
                "must be from 1 to 64",
            );
        }
        let mut endpoints = Vec::with_capacity(c.endpoints.len());
        let mut regions: Vec<String> = Vec::new();
        let mut dns_names = Vec::new();
        for (j, e) in c.endpoints.iter().enumerate() {
            let key = format!("clusters[{i}].endpoints[{j}]");
            let addr: SocketAddr = e.addr.parse().or_else(|_| {
                err(
                    format!("{key}.addr"),
                    format!("`{}` is not an ip:port address", e.addr),
                )
            })?;
            if addr.port() == 0 {
                return err(format!("{key}.addr"), "port 0 cannot be connected to");
            }
            let weight = e.weight.unwrap_or(1);
            if !(1..=1000).contains(&weight) {
                return err(format!("{key}.weight"), "must be from 1 to 1000");
            }
            let priority = e.priority.unwrap_or(0);
            if priority > 7 {
                return err(format!("{key}.priority"), "must be from 0 to 7");
            }
            let region = match &e.region {
                None => None,
                Some(r) if r.is_empty() => return err(format!("{key}.region"), "is empty"),
                Some(r) => Some(regions.iter().position(|x| x == r).unwrap_or_else(|| {
                    regions.push(r.clone());
                    regions.len() - 1
                })),
            };
            let one = Endpoint {
                addr,
                weight,
                id: next_id,
                priority,
                region,
                dns: None,
                present: true,
            };
            match &e.host_name {
                None => {
                    endpoints.push(one);
                    next_id += 1;
                }
                Some(host) => {
                    // A name: `max_addresses` slots, filled with what it resolves to now.
                    let first = next_id;
                    for k in 0..max_addresses {
                        let found = if e.resolved.is_empty() {
                            (k == 0).then_some(addr)
                        } else {
                            e.resolved.get(k).copied()
                        };
                        endpoints.push(Endpoint {
                            addr: found.unwrap_or(addr),
                            id: next_id,
                            dns: Some(dns_names.len()),
                            present: found.is_some(),
                            ..one
                        });
                        next_id += 1;
                    }
                    dns_names.push(DnsName {
                        host: host.clone(),
                        port: addr.port(),
                        slots: first..next_id,
                    });
                }
            }
        }
        let default_name = c.endpoints.first().map(|e| {
            e.host_name.clone().unwrap_or_else(|| {
                e.addr
                    .parse::<SocketAddr>()
                    .map_or_else(|_| e.addr.clone(), |a| a.ip().to_string())
            })
        });
        let tls = c
            .tls
            .as_ref()
            .map(|t| {
                tls::resolve_upstream_tls(t, &format!("clusters[{i}]"), default_name.as_deref())
            })
            .transpose()?;
        let protocol = match c.protocol.as_deref().unwrap_or("http1") {
            "http1" | "http/1.1" => UpstreamProtocol::Http1,
            "h2" | "http2" => UpstreamProtocol::H2,
            other => {
                return err(
                    format!("clusters[{i}].protocol"),
                    format!("`{other}` is not one of http1, h2"),
                )
            }
        };
        let key = format!("clusters[{i}]");
        let algorithm = lb::resolve_algorithm(c.lb.as_deref(), &format!("{key}.lb"))?;
        if c.hash_key.is_some() && algorithm != crate::lb::Algorithm::Maglev {
            return err(
                format!("{key}.hash_key"),
                "only applies with lb = \"maglev\"",
            );
        }
        let hash_key = lb::resolve_hash_key(c.hash_key.as_deref(), &format!("{key}.hash_key"))?;
        if let Some(name) = &c.sticky_cookie {
            if name.is_empty()
                || name
                    .bytes()
                    .any(|b| !b.is_ascii_graphic() || b"()<>@,;:\\\"/[]?={}".contains(&b))
            {
                return err(
                    format!("{key}.sticky_cookie"),
                    format!("`{name}` is not a valid cookie name"),
                );
            }
        }
        let health = lb::resolve_health(c.health.as_ref(), &format!("{key}.health"))?;
        if protocol == UpstreamProtocol::H2
            && matches!(&health, Some(h) if matches!(h.kind, HealthKind::Http { .. }))
        {
            return err(
                format!("{key}.health.path"),
                "HTTP health checks speak HTTP/1.1; an h2 cluster takes a TCP check (omit path)",
            );
        }
        let overprovisioning = c.overprovisioning.unwrap_or(1.4);
        if !(1.0..=10.0).contains(&overprovisioning) {
            return err(
                format!("{key}.overprovisioning"),
                "must be from 1.0 to 10.0",
            );
        }
        out.push(Cluster {
            name: c.name.clone(),
            endpoints,
            tls,
            protocol,
            balance: lb::Balance {
                algorithm,
                hash_key,
                sticky_cookie: c.sticky_cookie.clone(),
                overprovisioning,
            },
            health,
            outlier: lb::resolve_outlier(c.outlier.as_ref(), &format!("{key}.outlier"))?,
            retry: lb::resolve_retry(
                c.retry.as_ref(),
                &format!("{key}.retry"),
                timeouts.upstream_response,
            )?,
            circuit: lb::resolve_circuit(c.max_connections, c.max_pending, &key)?,
            regions,
            dns_names,
            resolve_interval: duration(
                &c.resolve_interval,
                &format!("{key}.resolve_interval"),
                Duration::from_secs(30),
            )?,
        });
    }
    Ok(out)
}
