//! The configuration file as written: every key optional, unknown keys refused. This raw form
//! is what TOML deserialises into and what command-line flags override; it is resolved once into
//! the typed [`Config`](super::Config) before anything starts.

use super::units::Quantity;
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `[server]`: process-wide settings.
    #[serde(default)]
    pub server: FileServer,
    /// `[timeouts]`.
    #[serde(default)]
    pub timeouts: FileTimeouts,
    /// `[limits]`.
    #[serde(default)]
    pub limits: FileLimits,
    /// `[proxy]`: forwarding headers and upstream connection reuse.
    #[serde(default)]
    pub proxy: FileProxy,
    /// `[[listeners]]`.
    #[serde(default)]
    pub listeners: Vec<FileListener>,
    /// `[[routes]]`.
    #[serde(default)]
    pub routes: Vec<FileRoute>,
    /// `[[clusters]]`.
    #[serde(default)]
    pub clusters: Vec<FileCluster>,
    /// `[http2]`.
    #[serde(default)]
    pub http2: super::http2::FileHttp2,
}

/// `[server]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileServer {
    /// Worker threads; 0 means one per CPU the process may run on.
    pub workers: Option<usize>,
    /// CPUs to pin workers to, in order; default: the process's affinity mask.
    pub cpu_list: Option<Vec<usize>>,
    /// `auto`, `uring` or `epoll`.
    pub io_driver: Option<String>,
    /// io_uring submission queue entries per worker.
    pub io_uring_entries: Option<u32>,
    /// Listen backlog per listener socket.
    pub backlog: Option<u32>,
    /// Client connections per worker; more are answered 503 and closed.
    pub max_connections: Option<usize>,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Option<Quantity>,
    /// Admin endpoint address.
    pub admin: Option<String>,
    /// Token that state-changing admin calls must present on a non-loopback admin address.
    pub admin_token: Option<String>,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub log_level: Option<String>,
    /// Access log destination: a path, or `-` for standard output.
    pub access_log: Option<String>,
    /// A hosts-format file consulted before the system resolver for endpoint names.
    pub hosts_file: Option<String>,
}

/// `[timeouts]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTimeouts {
    /// Time allowed for a client to send a complete request head.
    pub header: Option<Quantity>,
    /// Time an idle keep-alive client connection is kept, and the limit on a stalled body
    /// transfer in either direction.
    pub idle: Option<Quantity>,
    /// Time allowed to connect to an upstream.
    pub upstream_connect: Option<Quantity>,
    /// Time allowed for an upstream to start its response (and between reads of it).
    pub upstream_response: Option<Quantity>,
}

/// `[limits]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    /// Largest request head accepted (431 beyond).
    pub max_header_bytes: Option<Quantity>,
    /// Longest request target accepted (414 beyond).
    pub max_uri_bytes: Option<Quantity>,
    /// Largest request body accepted (413 beyond); 0 means no limit.
    pub max_body_bytes: Option<Quantity>,
    /// Slowest average rate a client may send or receive a body at, per second (0: none).
    pub min_client_rate: Option<Quantity>,
}

/// `[proxy]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileProxy {
    /// Append the client address to `X-Forwarded-For`.
    pub x_forwarded_for: Option<bool>,
    /// Set `X-Forwarded-Proto`.
    pub x_forwarded_proto: Option<bool>,
    /// Pseudonym for the `Via` field; empty to add none.
    pub via: Option<String>,
    /// Forward the client's `Host` (true) or name the upstream endpoint (false).
    pub preserve_host: Option<bool>,
    /// Idle upstream connections kept per endpoint per worker.
    pub upstream_pool_size: Option<usize>,
    /// How long an idle upstream connection is kept.
    pub upstream_idle_timeout: Option<Quantity>,
}

/// One `[[listeners]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileListener {
    /// A unique name, used in logs and metrics.
    pub name: String,
    /// `ip:port`; port 0 picks a free port once for all workers.
    pub bind: String,
    /// `[listeners.tls]`: terminate TLS on this listener.
    pub tls: Option<super::tls::FileListenerTls>,
    /// Serve HTTP/2 on this listener; default `http2.enabled`.
    pub http2: Option<bool>,
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRoute {
    /// `name` or `*.suffix`; absent matches any host.
    pub host: Option<String>,
    /// A path prefix starting with `/`; absent means `/`.
    pub path_prefix: Option<String>,
    /// The name of a `[[clusters]]` entry.
    pub cluster: String,
    /// Cache responses of this route (RFC 9111 shared cache, in memory, per worker).
    pub cache: Option<super::accel::FileCache>,
    /// Compress responses of this route for clients that accept it.
    pub compress: Option<super::accel::FileCompress>,
}

/// One `[[clusters]]` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCluster {
    /// A unique name that routes refer to.
    pub name: String,
    /// The upstream endpoints; an empty list makes every request to the cluster a 503.
    #[serde(default)]
    pub endpoints: Vec<FileEndpoint>,
    /// `[clusters.tls]`: talk TLS to the endpoints.
    pub tls: Option<super::tls::FileUpstreamTls>,
    /// `http1` (default) or `h2`: the protocol spoken to the endpoints.
    pub protocol: Option<String>,
    /// `round_robin` (default), `random`, `least_conn`, `p2c` or `maglev`.
    pub lb: Option<String>,
    /// What `maglev` hashes: `client_ip` (default), `path`, `header:NAME` or `cookie:NAME`.
    pub hash_key: Option<String>,
    /// Stick each client to one endpoint with a cookie of this name.
    pub sticky_cookie: Option<String>,
    /// Priority-level overprovisioning factor (default 1.4).
    pub overprovisioning: Option<f64>,
    /// How often endpoint names are resolved again (default 30s).
    pub resolve_interval: Option<Quantity>,
    /// Addresses kept per endpoint name (default 4).
    pub max_addresses: Option<usize>,
    /// Upstream exchanges at once per endpoint per worker (circuit breaker); default no limit.
    pub max_connections: Option<usize>,
    /// Requests waiting for such an exchange per endpoint per worker; more get 503 at once.
    pub max_pending: Option<usize>,
    /// `[clusters.health]`: active health checks.
    pub health: Option<super::lb::FileHealth>,
    /// `[clusters.outlier]`: passive outlier detection.
    pub outlier: Option<super::lb::FileOutlier>,
    /// `[clusters.retry]`: retries and their budget.
    pub retry: Option<super::lb::FileRetry>,
}

/// One upstream endpoint.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEndpoint {
    /// `ip:port` (host names are resolved by the binary before validation).
    pub addr: String,
    /// Relative share of requests, 1 to 1000; default 1.
    pub weight: Option<u32>,
    /// A free-form region name (shown by the admin endpoint; failover works by `priority`).
    pub region: Option<String>,
    /// Priority level, 0 (default, served first) to 7.
    pub priority: Option<u8>,
    /// The host name `addr` had before the binary resolved it (the default TLS server name).
    #[serde(skip)]
    pub host_name: Option<String>,
    /// Every address the name resolved to at start (the binary fills this).
    #[serde(skip)]
    pub resolved: Vec<std::net::SocketAddr>,
}
