//! Command-line flags. Every scalar flag overrides the matching config-file key; `--listen`
//! and `--upstream` add a listener named `cli` and a cluster named `default`.

use clap::{Parser, Subcommand};
use proxy_core::config::{parse_duration, parse_size};
use std::path::PathBuf;
use std::time::Duration;

/// Ringway: a thread-per-core HTTP/1.1 reverse proxy on io_uring.
#[derive(Debug, Parser)]
#[command(name = "ringway", version, about, long_about = None)]
pub struct Cli {
    /// What to run; without a subcommand, the proxy.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// TOML configuration file.
    #[arg(global = true, short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Validate the configuration and exit: 0 if valid, 64 with the offending key if not.
    #[arg(global = true, long)]
    pub check: bool,

    /// Listen address (repeatable). With a file, adds listeners named `cli`, `cli-2`, …;
    /// without one, defaults to 127.0.0.1:8080.
    #[arg(global = true, long, value_name = "ADDR")]
    pub listen: Vec<String>,

    /// Upstream endpoint `host:port` (repeatable), forming the cluster `default` that every
    /// request not matched by a file route goes to.
    #[arg(global = true, long, value_name = "ADDR")]
    pub upstream: Vec<String>,

    /// TLS listen address (repeatable), serving the certificates of --tls-cert. Adds listeners
    /// named `cli-tls`, `cli-tls-2`, ….
    #[arg(global = true, long, value_name = "ADDR")]
    pub listen_tls: Vec<String>,

    /// Certificate chain (PEM) for --listen-tls (repeatable, paired in order with --tls-key);
    /// SNI picks among them by their names, the first answers clients without SNI.
    #[arg(global = true, long, value_name = "FILE")]
    pub tls_cert: Vec<String>,

    /// Private key (PEM) of the --tls-cert at the same position.
    #[arg(global = true, long, value_name = "FILE")]
    pub tls_key: Vec<String>,

    /// Client certificates on --listen-tls: none, optional or required (needs --tls-client-ca).
    #[arg(global = true, long, value_name = "MODE", value_parser = ["none", "optional", "required"])]
    pub tls_client_auth: Option<String>,

    /// CA bundle (PEM) client certificates must chain to.
    #[arg(global = true, long, value_name = "FILE")]
    pub tls_client_ca: Option<String>,

    /// Pass the verified client certificate's subject upstream in this request field.
    #[arg(global = true, long, value_name = "NAME")]
    pub tls_client_subject_header: Option<String>,

    /// Refuse TLS clients whose SNI matches no certificate, instead of using the first.
    #[arg(global = true, long)]
    pub tls_strict_sni: bool,

    /// Time allowed for a TLS handshake (e.g. 10s).
    #[arg(global = true, long, value_name = "DURATION", value_parser = duration)]
    pub tls_handshake_timeout: Option<Duration>,

    /// Add `Strict-Transport-Security: VALUE` to TLS responses that lack one
    /// (e.g. "max-age=31536000; includeSubDomains").
    #[arg(global = true, long, value_name = "VALUE")]
    pub hsts: Option<String>,

    /// Protocol spoken to the --upstream endpoints: http1 (pooled connections) or h2 (one
    /// multiplexed HTTP/2 connection per endpoint per worker; h2c, or ALPN h2 with --upstream-tls).
    #[arg(global = true, long, value_name = "PROTOCOL", value_parser = ["http1", "h2"])]
    pub upstream_protocol: Option<String>,

    /// Talk TLS to the --upstream endpoints.
    #[arg(global = true, long)]
    pub upstream_tls: bool,

    /// CA bundle (PEM) to verify --upstream certificates against (default: system roots).
    #[arg(global = true, long, value_name = "FILE")]
    pub upstream_ca: Option<String>,

    /// Name sent as SNI to --upstream endpoints and verified in their certificates.
    #[arg(global = true, long, value_name = "NAME")]
    pub upstream_server_name: Option<String>,

    /// Client certificate (PEM) presented to --upstream endpoints (with --upstream-key).
    #[arg(global = true, long, value_name = "FILE")]
    pub upstream_cert: Option<String>,

    /// Private key (PEM) of --upstream-cert.
    #[arg(global = true, long, value_name = "FILE")]
    pub upstream_key: Option<String>,

    /// Do not verify --upstream certificates (testing only).
    #[arg(global = true, long)]
    pub upstream_tls_no_verify: bool,

    /// Worker threads (0 = one per CPU the process may run on).
    #[arg(global = true, long, value_name = "N")]
    pub workers: Option<usize>,

    /// CPUs to pin workers to, comma-separated (default: the process's affinity mask).
    #[arg(global = true, long, value_name = "LIST", value_delimiter = ',')]
    pub cpu_list: Option<Vec<usize>>,

    /// I/O driver: auto, uring or epoll.
    #[arg(global = true, long, value_name = "DRIVER", value_parser = ["auto", "uring", "epoll"])]
    pub io_driver: Option<String>,

    /// io_uring submission queue entries per worker (power of two, 256 to 32768).
    #[arg(global = true, long, value_name = "N")]
    pub io_uring_entries: Option<u32>,

    /// Listen backlog.
    #[arg(global = true, long, value_name = "N")]
    pub backlog: Option<u32>,

    /// Client connections per worker; beyond it, new connections get 503.
    #[arg(global = true, long, value_name = "N")]
    pub max_connections: Option<usize>,

    /// Time allowed for in-flight requests at shutdown (e.g. 30s).
    #[arg(global = true, long, value_name = "DURATION", value_parser = duration)]
    pub drain_timeout: Option<Duration>,

    /// Admin endpoint address (/healthz, /metrics).
    #[arg(global = true, long, value_name = "ADDR")]
    pub admin: Option<String>,

    /// Log level: error, warn, info, debug or trace.
    #[arg(global = true, long, value_name = "LEVEL", value_parser = ["error", "warn", "info", "debug", "trace"])]
    pub log_level: Option<String>,

    /// Access log: a file path, - for standard output, or off (the default).
    #[arg(global = true, long, value_name = "PATH")]
    pub access_log: Option<String>,

    /// Time allowed for a complete request head (e.g. 10s).
    #[arg(global = true, long, value_name = "DURATION", value_parser = duration)]
    pub header_timeout: Option<Duration>,

    /// Idle keep-alive time, and the limit on a stalled transfer (e.g. 60s).
    #[arg(global = true, long, value_name = "DURATION", value_parser = duration)]
    pub idle_timeout: Option<Duration>,

    /// Time allowed to connect to an upstream (e.g. 3s).
    #[arg(global = true, long, value_name = "DURATION", value_parser = duration)]
    pub upstream_connect_timeout: Option<Duration>,

    /// Time allowed for an upstream to start responding, and between its reads (e.g. 60s).
    #[arg(global = true, long, value_name = "DURATION", value_parser = duration)]
    pub upstream_response_timeout: Option<Duration>,

    /// Largest request head (e.g. 16k); 431 beyond.
    #[arg(global = true, long, value_name = "SIZE", value_parser = size)]
    pub max_header_bytes: Option<u64>,

    /// Longest request target (e.g. 8k); 414 beyond.
    #[arg(global = true, long, value_name = "SIZE", value_parser = size)]
    pub max_uri_bytes: Option<u64>,

    /// Slowest a client may send a request body or read a response, in bytes per second
    /// averaged after a grace of the header timeout (e.g. 1k; 0 = no minimum).
    #[arg(global = true, long, value_name = "SIZE", value_parser = size)]
    pub min_client_rate: Option<u64>,

    /// Largest request body (e.g. 100m; 0 = no limit); 413 beyond.
    #[arg(global = true, long, value_name = "SIZE", value_parser = size)]
    pub max_body_bytes: Option<u64>,

    /// Idle upstream connections kept per endpoint per worker.
    #[arg(global = true, long, value_name = "N")]
    pub upstream_pool_size: Option<usize>,

    /// How long an idle upstream connection is kept (e.g. 60s).
    #[arg(global = true, long, value_name = "DURATION", value_parser = duration)]
    pub upstream_idle_timeout: Option<Duration>,

    /// HTTP/2 settings (`[http2]` in the file).
    #[command(flatten)]
    pub h2: H2Flags,

    /// Balancing of the `--upstream` cluster.
    #[command(flatten)]
    pub lb: LbFlags,

    /// Caching and compression on the `--upstream` route.
    #[command(flatten)]
    pub accel: AccelFlags,
}

/// Web acceleration on the catch-all route `--upstream` builds (the route keys `cache` and
/// `compress`).
#[derive(Debug, clap::Args)]
pub struct AccelFlags {
    /// Cache responses of the --upstream route in memory, this much in all (e.g. 256MiB).
    #[arg(global = true, long, value_name = "SIZE", value_parser = size)]
    pub cache_max_bytes: Option<u64>,

    /// Compress responses of the --upstream route (br, zstd, gzip) for clients that ask.
    #[arg(global = true, long)]
    pub compress: bool,
}

/// Balancing flags for the cluster `--upstream` builds (`[[clusters]]` keys of the same name).
#[derive(Debug, clap::Args)]
pub struct LbFlags {
    /// Balancing algorithm of the --upstream cluster.
    #[arg(global = true, long, value_name = "ALGORITHM", value_parser = ["round_robin", "random", "least_conn", "p2c", "maglev"])]
    pub lb: Option<String>,

    /// What `--lb maglev` hashes: client_ip, path, header:NAME or cookie:NAME.
    #[arg(global = true, long, value_name = "KEY")]
    pub hash_key: Option<String>,

    /// Stick clients to an endpoint with a cookie of this name.
    #[arg(global = true, long, value_name = "NAME")]
    pub sticky_cookie: Option<String>,

    /// Check each --upstream endpoint with `GET PATH` (2xx passes).
    #[arg(global = true, long, value_name = "PATH")]
    pub health_path: Option<String>,

    /// Time between health checks (e.g. 2s).
    #[arg(global = true, long, value_name = "DURATION", value_parser = duration)]
    pub health_interval: Option<Duration>,

    /// Retries of a failed request on another endpoint (default 2).
    #[arg(global = true, long, value_name = "N")]
    pub retries: Option<u32>,

    /// Upstream exchanges at once per endpoint per worker (circuit breaker).
    #[arg(global = true, long, value_name = "N")]
    pub max_upstream_conns: Option<usize>,
}

/// HTTP/2 flags: each overrides the `[http2]` key of the same name.
#[derive(Debug, clap::Args)]
pub struct H2Flags {
    /// Serve HTTP/1.x only: no h2c on plain listeners, no ALPN `h2` on TLS listeners.
    #[arg(global = true, long)]
    pub no_http2: bool,

    /// Streams an HTTP/2 client may have open at once.
    #[arg(global = true, long, value_name = "N")]
    pub h2_max_concurrent_streams: Option<u32>,

    /// Largest HTTP/2 request header list, decoded (e.g. 16k; default --max-header-bytes).
    #[arg(global = true, long, value_name = "SIZE", value_parser = size)]
    pub h2_max_header_list_size: Option<u64>,

    /// HTTP/2 flow-control window per stream for request bodies (e.g. 256k).
    #[arg(global = true, long, value_name = "SIZE", value_parser = size)]
    pub h2_initial_stream_window: Option<u64>,

    /// HTTP/2 flow-control window per connection for request bodies (e.g. 1m).
    #[arg(global = true, long, value_name = "SIZE", value_parser = size)]
    pub h2_initial_connection_window: Option<u64>,

    /// Response bytes buffered per HTTP/2 stream while the client's window is closed (e.g. 64k).
    #[arg(global = true, long, value_name = "SIZE", value_parser = size)]
    pub h2_max_send_buffer: Option<u64>,

    /// Streams a client may open and reset before they are served (rapid reset), per connection.
    #[arg(global = true, long, value_name = "N")]
    pub h2_max_pending_resets: Option<usize>,

    /// Streams Ringway may reset for a client's errors (MadeYouReset), per connection.
    #[arg(global = true, long, value_name = "N")]
    pub h2_max_local_error_resets: Option<usize>,

    /// PING and SETTINGS frames a client may send per second.
    #[arg(global = true, long, value_name = "N")]
    pub h2_pings_settings_per_sec: Option<u32>,

    /// PRIORITY, WINDOW_UPDATE and RST_STREAM frames a client may send per second.
    #[arg(global = true, long, value_name = "N")]
    pub h2_control_frames_per_sec: Option<u32>,

    /// Empty DATA frames (without END_STREAM) a client may send in a row.
    #[arg(global = true, long, value_name = "N")]
    pub h2_empty_data_frames: Option<u32>,

    /// Upstream exchanges HTTP/2 streams may run at once per endpoint per worker; more queue.
    #[arg(global = true, long, value_name = "N")]
    pub h2_max_upstream_connections: Option<usize>,

    /// How long an HTTP/2 connection with no open stream is kept (default --idle-timeout).
    #[arg(global = true, long, value_name = "DURATION", value_parser = duration)]
    pub h2_idle_timeout: Option<Duration>,

    /// Send a keepalive PING this often (default: never); see --h2-ping-timeout.
    #[arg(global = true, long, value_name = "DURATION", value_parser = duration)]
    pub h2_ping_interval: Option<Duration>,

    /// How long the answer to a keepalive PING may take (e.g. 20s).
    #[arg(global = true, long, value_name = "DURATION", value_parser = duration)]
    pub h2_ping_timeout: Option<Duration>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy on 127.0.0.1:8080 in front of two built-in sample upstreams.
    Demo,
}

fn duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

fn size(s: &str) -> Result<u64, String> {
    parse_size(s)
}
