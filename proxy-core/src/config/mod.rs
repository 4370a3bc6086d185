//! The configuration model: the raw file form ([`FileConfig`]), and the typed [`Config`] it is
//! resolved into once, where every value has been checked and defaulted. Nothing downstream
//! re-validates; an invalid [`Config`] cannot be built. Errors name the key and say why.

pub mod accel;
mod cluster;
mod file;
mod http2;
pub mod lb;
mod tls;
mod units;

pub use accel::{CacheSettings, CompressSettings, FileCache, FileCompress};
pub use cluster::{Cluster, DnsName, Endpoint, UpstreamProtocol};
pub use file::{
    FileCluster, FileConfig, FileEndpoint, FileLimits, FileListener, FileProxy, FileRoute,
    FileServer, FileTimeouts,
};
pub use http2::{FileHttp2, Http2};
pub use lb::{
    Balance, Circuit, FileHealth, FileOutlier, FileRetry, HealthCheck, HealthKind, RetryPolicy,
};
pub use tls::{
    CertificateFiles, ClientAuth, FileCertificate, FileListenerTls, FileUpstreamTls, ListenerTls,
    UpstreamTls,
};
pub use units::{parse_duration, parse_size, Quantity};

use crate::rewrite::ForwardPolicy;
use crate::route::{HostMatch, Route, Router};
use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// A configuration error: which key, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key path, such as `clusters[0].endpoints[1].addr`.
    pub key: String,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(key: impl Into<String>, message: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError {
        key: key.into(),
        message: message.into(),
    })
}

/// Which I/O driver the workers run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoDriver {
    /// io_uring when the kernel allows it, else epoll.
    Auto,
    /// io_uring or refuse to start.
    Uring,
    /// epoll.
    Epoll,
}

/// Process-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Worker threads; 0 means one per CPU the process may run on.
    pub workers: usize,
    /// CPUs to pin to; empty means the process's affinity mask.
    pub cpu_list: Vec<usize>,
    /// The I/O driver.
    pub io_driver: IoDriver,
    /// io_uring entries per worker.
    pub io_uring_entries: u32,
    /// Listen backlog.
    pub backlog: u32,
    /// Client connections per worker.
    pub max_connections: usize,
    /// Time shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
    /// The admin endpoint, if any.
    pub admin: Option<Admin>,
    /// Log level filter.
    pub log_level: String,
    /// Access log destination; `None` when off (absent, empty or `off`, as in nginx; a file
    /// named `off` is `./off`), `Some("-")` for standard output.
    pub access_log: Option<String>,
    /// A hosts-format file consulted before the system resolver for endpoint names.
    pub hosts_file: Option<String>,
}

/// The admin endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// Its address.
    pub addr: SocketAddr,
    /// The bearer token state-changing calls must present (required off loopback).
    pub token: Option<String>,
}

/// Timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Complete request head.
    pub header: Duration,
    /// Idle keep-alive, and a stalled body transfer.
    pub idle: Duration,
    /// Upstream connect.
    pub upstream_connect: Duration,
    /// Upstream response start, and each later upstream read.
    pub upstream_response: Duration,
}

/// Size limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head.
    pub max_header_bytes: usize,
    /// Longest request target (414 beyond); at most `max_header_bytes`.
    pub max_uri_bytes: usize,
    /// Largest request body; `None` for no limit.
    pub max_body_bytes: Option<u64>,
    /// Bytes per second a client must average while it sends a request body or receives a
    /// response body, counting only the time Ringway waits on it, after a grace period of
    /// `timeouts.header`; `None` for no minimum.
    pub min_client_rate: Option<u64>,
}

/// Upstream connection reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Idle connections kept per endpoint per worker.
    pub size: usize,
    /// How long an idle connection is kept.
    pub idle_timeout: Duration,
}

/// A listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Its name.
    pub name: String,
    /// Its address.
    pub bind: SocketAddr,
    /// TLS termination, if this is a TLS listener.
    pub tls: Option<ListenerTls>,
    /// Serves HTTP/2 (h2c by prior knowledge when plain, ALPN `h2` when TLS).
    pub http2: bool,
}

/// The resolved configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Process-wide settings.
    pub server: Server,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Limits.
    pub limits: Limits,
    /// Forwarding headers and Host handling.
    pub forward: ForwardPolicy,
    /// Upstream connection reuse.
    pub pool: PoolSettings,
    /// Listeners, in file order.
    pub listeners: Vec<Listener>,
    /// The route table.
    pub router: Router,
    /// Clusters, indexed by the router's cluster ids.
    pub clusters: Vec<Cluster>,
    /// HTTP/2 settings.
    pub http2: Http2,
    /// Cache settings of the routes that cache (`Route::cache` indexes this).
    pub caches: Vec<CacheSettings>,
    /// Compression settings of the routes that compress (`Route::compress` indexes this).
    pub compressions: Vec<CompressSettings>,
}

impl Config {
    /// Total number of endpoints across clusters (the range of [`Endpoint::id`]).
    pub fn endpoint_count(&self) -> usize {
        self.clusters.iter().map(|c| c.endpoints.len()).sum()
    }

    /// Resolves and validates a raw configuration.
    pub fn resolve(file: &FileConfig) -> Result<Config, ConfigError> {
        let server = resolve_server(&file.server)?;
        let t = &file.timeouts;
        let timeouts = Timeouts {
            header: duration(&t.header, "timeouts.header", Duration::from_secs(10))?,
            idle: duration(&t.idle, "timeouts.idle", Duration::from_secs(60))?,
            upstream_connect: duration(
                &t.upstream_connect,
                "timeouts.upstream_connect",
                Duration::from_secs(3),
            )?,
            upstream_response: duration(
                &t.upstream_response,
                "timeouts.upstream_response",
                Duration::from_secs(60),
            )?,
        };
        let max_header = size(
            &file.limits.max_header_bytes,
            "limits.max_header_bytes",
            16 * 1024,
        )?;
        if !(1024..=1 << 20).contains(&max_header) {
            return err("limits.max_header_bytes", "must be between 1k and 1m");
        }
        let max_uri = size(&file.limits.max_uri_bytes, "limits.max_uri_bytes", 8 * 1024)?;
        if !(64..=max_header).contains(&max_uri) {
            return err(
                "limits.max_uri_bytes",
                "must be between 64 bytes and limits.max_header_bytes",
            );
        }
        let max_body = size(&file.limits.max_body_bytes, "limits.max_body_bytes", 0)?;
        let min_rate = size(&file.limits.min_client_rate, "limits.min_client_rate", 1024)?;
        let limits = Limits {
            min_client_rate: (min_rate > 0).then_some(min_rate),
            max_header_bytes: max_header as usize,
            max_uri_bytes: max_uri as usize,
            max_body_bytes: (max_body > 0).then_some(max_body),
        };
        let p = &file.proxy;
        let via = p.via.clone().unwrap_or_else(|| "ringway".to_owned());
        if !via.bytes().all(|b| b.is_ascii_graphic()) {
            return err(
                "proxy.via",
                "must be a single token without spaces (or empty to add no Via)",
            );
        }
        let forward = ForwardPolicy {
            x_forwarded_for: p.x_forwarded_for.unwrap_or(true),
            x_forwarded_proto: p.x_forwarded_proto.unwrap_or(true),
            via: (!via.is_empty()).then_some(via),
            preserve_host: p.preserve_host.unwrap_or(true),
        };
        let pool_size = p.upstream_pool_size.unwrap_or(1024);
        if pool_size > 65536 {
            return err("proxy.upstream_pool_size", "must be at most 65536");
        }
        let pool = PoolSettings {
            size: pool_size,
            idle_timeout: duration(
                &p.upstream_idle_timeout,
                "proxy.upstream_idle_timeout",
                Duration::from_secs(60),
            )?,
        };
        let http2 = http2::resolve_http2(&file.http2, &limits, &timeouts)?;
        let listeners = resolve_listeners(&file.listeners, http2.enabled)?;
        let clusters = cluster::resolve_clusters(&file.clusters, &timeouts)?;
        let (router, caches, compressions) = resolve_routes(&file.routes, &clusters)?;
        Ok(Config {
            server,
            timeouts,
            limits,
            forward,
            pool,
            listeners,
            router,
            clusters,
            http2,
            caches,
            compressions,
        })
    }
}

fn duration(v: &Option<Quantity>, key: &str, default: Duration) -> Result<Duration, ConfigError> {
    let Some(q) = v else { return Ok(default) };
    let d = q.duration().or_else(|m| err(key, m))?;
    if d.is_zero() {
        return err(key, "must be greater than zero");
    }
    Ok(d)
}

fn size(v: &Option<Quantity>, key: &str, default: u64) -> Result<u64, ConfigError> {
    v.as_ref()
        .map_or(Ok(default), |q| q.bytes().or_else(|m| err(key, m)))
}

fn resolve_server(s: &FileServer) -> Result<Server, ConfigError> {
    let workers = s.workers.unwrap_or(0);
    if workers > 1024 {
        return err(
            "server.workers",
            "must be at most 1024 (0 means one per CPU)",
        );
    }
    let io_driver = match s.io_driver.as_deref().unwrap_or("auto") {
        "auto" => IoDriver::Auto,
        "uring" | "io_uring" => IoDriver::Uring,
        "epoll" => IoDriver::Epoll,
        other => {
            return err(
                "server.io_driver",
                format!("`{other}` is not one of auto, uring, epoll"),
            )
        }
    };
    let entries = s.io_uring_entries.unwrap_or(1024);
    if !(256..=32768).contains(&entries) || !entries.is_power_of_two() {
        return err(
            "server.io_uring_entries",
            "must be a power of two from 256 to 32768",
        );
    }
    let backlog = s.backlog.unwrap_or(4096);
    if !(1..=65535).contains(&backlog) {
        return err("server.backlog", "must be from 1 to 65535");
    }
    let max_connections = s.max_connections.unwrap_or(100_000);
    if max_connections == 0 {
        return err("server.max_connections", "must be at least 1");
    }
    let admin = match &s.admin {
        None => None,
        Some(a) if a.is_empty() => None,
        Some(a) => {
            let addr: SocketAddr = a
                .parse()
                .or_else(|_| err("server.admin", format!("`{a}` is not an ip:port address")))?;
            let token = s.admin_token.clone().filter(|t| !t.is_empty());
            if !addr.ip().is_loopback() && token.is_none() {
                return err(
                    "server.admin",
                    "a non-loopback admin address needs server.admin_token to be set",
                );
            }
            Some(Admin { addr, token })
        }
    };
    let log_level = s.log_level.clone().unwrap_or_else(|| "info".to_owned());
    if !["error", "warn", "info", "debug", "trace"].contains(&log_level.as_str()) {
        return err(
            "server.log_level",
            format!("`{log_level}` is not one of error, warn, info, debug, trace"),
        );
    }
    Ok(Server {
        workers,
        cpu_list: s.cpu_list.clone().unwrap_or_default(),
        io_driver,
        io_uring_entries: entries,
        backlog,
        max_connections,
        drain_timeout: duration(
            &s.drain_timeout,
            "server.drain_timeout",
            Duration::from_secs(30),
        )?,
        admin,
        log_level,
        access_log: s.access_log.clone().filter(|p| !p.is_empty() && p != "off"),
        hosts_file: s.hosts_file.clone().filter(|p| !p.is_empty()),
    })
}

fn resolve_listeners(raw: &[FileListener], http2: bool) -> Result<Vec<Listener>, ConfigError> {
    if raw.is_empty() {
        return err(
            "listeners",
            "at least one listener is needed (a [[listeners]] entry or --listen)",
        );
    }
    let mut names = HashSet::new();
    let mut binds = HashSet::new();
    raw.iter()
        .enumerate()
        .map(|(i, l)| {
            let key = format!("listeners[{i}]");
            if l.name.is_empty() || !names.insert(l.name.clone()) {
                return err(
                    format!("{key}.name"),
                    format!("`{}` is empty or used twice", l.name),
                );
            }
            let bind: SocketAddr = l.bind.parse().or_else(|_| {
                err(
                    format!("{key}.bind"),
                    format!("`{}` is not an ip:port address", l.bind),
                )
            })?;
            if bind.port() != 0 && !binds.insert(bind) {
                return err(
                    format!("{key}.bind"),
                    format!("{bind} is bound by another listener"),
                );
            }
            let tls = l
                .tls
                .as_ref()
                .map(|t| tls::resolve_listener_tls(t, &key))
                .transpose()?;
            Ok(Listener {
                name: l.name.clone(),
                bind,
                tls,
                http2: l.http2.unwrap_or(http2),
            })
        })
        .collect()
}

/// The route table, and the cache and compression settings its routes refer to.
type Routes = (Router, Vec<CacheSettings>, Vec<CompressSettings>);

fn resolve_routes(raw: &[FileRoute], clusters: &[Cluster]) -> Result<Routes, ConfigError> {
    if raw.is_empty() {
        return err(
            "routes",
            "no [[routes]] entry: every request would be answered 404 (or use --upstream)",
        );
    }
    let mut routes = Vec::with_capacity(raw.len());
    let (mut caches, mut compressions) = (Vec::new(), Vec::new());
    for (i, r) in raw.iter().enumerate() {
        let key = format!("routes[{i}]");
        let Some(cluster) = clusters.iter().position(|c| c.name == r.cluster) else {
            return err(
                format!("{key}.cluster"),
                format!("no cluster is named `{}`", r.cluster),
            );
        };
        let host =
            HostMatch::parse(r.host.as_deref()).or_else(|m| err(format!("{key}.host"), m))?;
        let path_prefix = r.path_prefix.clone().unwrap_or_else(|| "/".to_owned());
        if !path_prefix.starts_with('/') || path_prefix.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return err(
                format!("{key}.path_prefix"),
                "must start with / and contain no spaces",
            );
        }
        if clusters[cluster].protocol == UpstreamProtocol::H2 {
            let what = match (&r.cache, &r.compress) {
                (Some(_), _) => Some("cache"),
                (None, Some(_)) => Some("compress"),
                (None, None) => None,
            };
            if let Some(what) = what {
                return err(
                    format!("{key}.{what}"),
                    format!(
                        "caching and compression are not available on a route to a cluster \
                         with protocol = \"h2\" (`{}`); use an HTTP/1.1 cluster",
                        r.cluster
                    ),
                );
            }
        }
        let cache = match &r.cache {
            None => None,
            Some(c) => {
                caches.push(accel::resolve_cache(c, &key)?);
                Some(caches.len() - 1)
            }
        };
        let compress = match &r.compress {
            None => None,
            Some(c) => {
                compressions.push(accel::resolve_compress(c, &key)?);
                Some(compressions.len() - 1)
            }
        };
        routes.push(Route {
            host,
            path_prefix,
            cluster,
            cache,
            compress,
        });
    }
    Ok((Router::new(routes), caches, compressions))
}

#[cfg(test)]
mod tests;
