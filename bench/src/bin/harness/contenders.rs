//! The contenders: how each proxy is configured and started, pinned to the proxy CPU set, in
//! front of the shared backend. Every proxy runs one worker, logs off, upstream keep-alive on,
//! and adds the same forwarding fields (X-Forwarded-For, X-Forwarded-Proto, Via), so none wins
//! by doing less. In the TLS scenarios all three terminate TLS with the same ECDSA P-256
//! certificate (TLS 1.2 and 1.3, session resumption as each ships it). In the HTTP/2 scenarios
//! nginx and HAProxy get HTTP/2 on their listener (h2c with prior knowledge on a plain one, ALPN
//! `h2` on a TLS one); Ringway is started as for HTTP/1, since it serves both on every listener.
//! In the load-balancing scenarios each gets several upstreams and a [`Balance`], and nothing
//! else changes. In the cache-hit scenarios each gets its own response cache, bounded by
//! [`CACHE_MIB`], honouring the origin's `Cache-Control` (Ringway `--cache-max-bytes`, nginx
//! `proxy_cache` on a `proxy_cache_path` in the work directory, HAProxy's in-memory `cache`
//! section), and marks hits in a response field where it can.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Who is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Client straight to the backend: the floor.
    Direct,
    /// Ringway, one worker.
    Ringway,
    /// nginx, one worker process.
    Nginx,
    /// HAProxy, one thread.
    Haproxy,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Direct, Kind::Ringway, Kind::Nginx, Kind::Haproxy];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Ringway => "ringway",
            Kind::Nginx => "nginx",
            Kind::Haproxy => "haproxy",
        }
    }

    pub fn port(self, base: u16) -> u16 {
        base + self as u16
    }
}

/// A running contender (nothing to run for `Direct`).
pub struct Running {
    pub kind: Kind,
    pub port: u16,
    child: Option<Child>,
}

impl Running {
    /// PIDs whose CPU and memory count for this contender (all of nginx's processes).
    pub fn pids(&self) -> Vec<u32> {
        let Some(child) = &self.child else {
            return Vec::new();
        };
        let root = child.id();
        let mut pids = vec![root];
        // nginx forks its workers; they are children of the master.
        if let Ok(children) = std::fs::read_to_string(format!("/proc/{root}/task/{root}/children"))
        {
            pids.extend(
                children
                    .split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
        pids
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            // One that exited at startup is reaped, not signalled.
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            // SIGTERM, then SIGKILL if it lingers: nginx's workers exit with the master.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How a contender spreads requests over several upstreams (the `lb-*` scenarios). Each
/// variant names the closest algorithm every contender has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Ringway `round_robin`, nginx's default (weighted round robin), HAProxy `roundrobin`.
    RoundRobin,
    /// Ringway `p2c` (peak-EWMA latency × requests in flight), nginx `least_conn`, HAProxy
    /// `leastconn`.
    LeastLoaded,
}

impl Balance {
    /// Ringway's `lb` (`--lb`) value.
    pub fn ringway(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round_robin",
            Balance::LeastLoaded => "p2c",
        }
    }

    /// The nginx `upstream` directive (empty: nginx's default, round robin).
    pub fn nginx(self) -> &'static str {
        match self {
            Balance::RoundRobin => "",
            Balance::LeastLoaded => "least_conn;",
        }
    }

    /// HAProxy's `balance` algorithm.
    pub fn haproxy(self) -> &'static str {
        match self {
            Balance::RoundRobin => "roundrobin",
            Balance::LeastLoaded => "leastconn",
        }
    }
}

/// The memory (MiB) each contender's response cache may use in the cache-hit scenarios.
pub const CACHE_MIB: u64 = 256;

/// The largest response HAProxy's cache stores (bytes): above the 64 KiB body and its head.
pub const HAPROXY_CACHE_MAX_OBJECT: u64 = 1 << 20;

// HAProxy refuses a `max-object-size` over half the cache; the 64 KiB body and its head fit.
const _: () = assert!(
    HAPROXY_CACHE_MAX_OBJECT > (64 << 10) + 1024 && HAPROXY_CACHE_MAX_OBJECT * 2 <= CACHE_MIB << 20
);

/// The certificate every contender serves in the TLS scenarios.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Leaf certificate followed by its CA (PEM).
    pub cert: PathBuf,
    /// The leaf's private key (PKCS#8 PEM).
    pub key: PathBuf,
    /// `cert` then `key` in one file, as HAProxy's `crt` wants it.
    pub combined: PathBuf,
    /// The CA alone, for clients that verify.
    pub ca: PathBuf,
}

/// Paths and CPU placement shared by every contender.
pub struct Setup {
    pub workdir: PathBuf,
    pub ringway: PathBuf,
    pub backend_port: u16,
    pub base_port: u16,
    pub proxy_cpus: String,
}

impl Setup {
    /// Starts `kind` and waits until its port accepts connections.
    pub fn start(&self, kind: Kind) -> Result<Running, String> {
        self.start_with(kind, None, false, &[self.backend_port], None, false)
    }

    /// Starts `kind` with its response cache on (see [`CACHE_MIB`]); the direct path has none.
    pub fn start_cache(&self, kind: Kind) -> Result<Running, String> {
        self.start_with(kind, None, false, &[self.backend_port], None, true)
    }

    /// Starts `kind` in front of the backends on `ports`, balanced by `balance` (there is no
    /// direct path to several backends).
    pub fn start_lb(&self, kind: Kind, ports: &[u16], balance: Balance) -> Result<Running, String> {
        if kind == Kind::Direct {
            return Err("no direct path to several backends".into());
        }
        self.start_with(kind, None, false, ports, Some(balance), false)
    }

    /// Starts `kind` speaking HTTP/2 to clients: h2c with prior knowledge, or with `tls`, ALPN
    /// `h2` (and `http/1.1`). The backend does not speak HTTP/2: no direct path.
    pub fn start_h2(&self, kind: Kind, tls: Option<&TlsFiles>) -> Result<Running, String> {
        if kind == Kind::Direct {
            return Err("the backend does not speak HTTP/2: no direct path".into());
        }
        self.start_with(kind, tls, true, &[self.backend_port], None, false)
    }

    /// Starts `kind` terminating TLS with `tls` (there is no direct path over TLS).
    pub fn start_tls(&self, kind: Kind, tls: &TlsFiles) -> Result<Running, String> {
        if kind == Kind::Direct {
            return Err("the backend does not speak TLS: no direct path".into());
        }
        self.start_with(kind, Some(tls), false, &[self.backend_port], None, false)
    }

    /// Starts `kind` in front of the backends on `backends`, with `balance` when given (the
    /// single-backend scenarios give none, and their configurations name no algorithm), its
    /// response cache on when `cache`.
    fn start_with(
        &self,
        kind: Kind,
        tls: Option<&TlsFiles>,
        h2: bool,
        backends: &[u16],
        balance: Option<Balance>,
        cache: bool,
    ) -> Result<Running, String> {
        let port = kind.port(self.base_port);
        if kind != Kind::Direct && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Err(format!(
                "port {port} is already taken (a contender left over from an interrupted run?); \
                 stop that process first"
            ));
        }
        let child = match kind {
            Kind::Direct => None,
            Kind::Ringway => Some(
                self.spawn(
                    Command::new(&self.ringway)
                        .args(match tls {
                            None => vec!["--listen".into(), format!("127.0.0.1:{port}")],
                            Some(t) => vec![
                                "--listen-tls".into(),
                                format!("127.0.0.1:{port}"),
                                "--tls-cert".into(),
                                t.cert.display().to_string(),
                                "--tls-key".into(),
                                t.key.display().to_string(),
                            ],
                        })
                        .args(
                            backends
                                .iter()
                                .flat_map(|p| ["--upstream".into(), format!("127.0.0.1:{p}")]),
                        )
                        .args(balance.map(|b| ["--lb", b.ringway()]).into_iter().flatten())
                        .args(
                            cache
                                .then(|| {
                                    ["--cache-max-bytes".to_owned(), format!("{CACHE_MIB}MiB")]
                                })
                                .into_iter()
                                .flatten(),
                        )
                        .args([
                            "--workers",
                            "1",
                            "--log-level",
                            "error",
                            "--max-connections",
                            "40000",
                        ]),
                )?,
            ),
            Kind::Nginx => {
                let conf = self.write(
                    "nginx.conf",
                    &nginx_conf(port, backends, balance, &self.workdir, tls, h2, cache),
                )?;
                Some(self.spawn(Command::new("nginx").arg("-c").arg(conf))?)
            }
            Kind::Haproxy => {
                let conf = self.write(
                    "haproxy.cfg",
                    &haproxy_conf(port, backends, balance, tls, h2, cache),
                )?;
                Some(self.spawn(Command::new("haproxy").arg("-db").arg("-f").arg(conf))?)
            }
        };
        let running = Running {
            kind,
            port: if kind == Kind::Direct {
                self.backend_port
            } else {
                port
            },
            child,
        };
        let mut running = running;
        // A contender that exits (a flag it does not know, a config it refuses) fails the start
        // at once, its own message above on stderr, rather than after the wait.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", running.port)).is_err() {
            if let Some(Ok(Some(status))) = running.child.as_mut().map(Child::try_wait) {
                return Err(format!(
                    "{} did not start: it exited ({status}); its message is above",
                    kind.name()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not start: nothing listens on port {} after 10 s",
                    kind.name(),
                    running.port
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Something else answering on the port (a contender left over from an interrupted run)
        // would be measured in its place.
        if let Some(child) = &mut running.child {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "{} exited at startup ({status}); is another process on port {}?",
                    kind.name(),
                    running.port
                ));
            }
        }
        Ok(running)
    }

    fn spawn(&self, cmd: &mut Command) -> Result<Child, String> {
        let program = cmd.get_program().to_owned();
        let mut pinned = Command::new("taskset");
        pinned
            .args(["-c", &self.proxy_cpus])
            .arg(&program)
            .args(cmd.get_args());
        pinned
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.to_string_lossy()))
    }

    fn write(&self, name: &str, text: &str) -> Result<PathBuf, String> {
        let path = self.workdir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("nothing listens on port {port} after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn nginx_conf(
    port: u16,
    backends: &[u16],
    balance: Option<Balance>,
    dir: &Path,
    tls: Option<&TlsFiles>,
    h2: bool,
    cache: bool,
) -> String {
    let dir = dir.display();
    // The cache: entries on disk in the work directory (read back through the page cache),
    // keys in a shared-memory zone; lifetimes from the origin's Cache-Control alone (no
    // `proxy_cache_valid`), and every answer says HIT, MISS, EXPIRED, … in X-Cache-Status.
    let (cache_zone, cache_lines) = if cache {
        (
            format!(
                "\n  proxy_cache_path {dir}/nginx-cache levels=1:2 keys_zone=bench:10m \
                 max_size={CACHE_MIB}m inactive=60m use_temp_path=off;"
            ),
            "\n      proxy_cache bench;\n      proxy_cache_key $scheme$host$request_uri;\n      \
             add_header X-Cache-Status $upstream_cache_status;"
                .to_owned(),
        )
    } else {
        (String::new(), String::new())
    };
    // The balancing directive (if any) then one `server` per backend, all sharing the idle
    // connection cache.
    let servers: String = balance
        .map(Balance::nginx)
        .filter(|d| !d.is_empty())
        .map(|d| format!("{d} "))
        .into_iter()
        .chain(backends.iter().map(|b| format!("server 127.0.0.1:{b}; ")))
        .collect();
    // HTTP/2 on a plain listener is h2c with prior knowledge only (nginx 1.22 then refuses
    // HTTP/1.1 there); on a TLS one ALPN offers h2 and http/1.1. `keepalive_requests` (raised
    // below) also bounds the requests of an HTTP/2 connection since 1.19.7, which made
    // `http2_max_requests` obsolete (1.22 warns about it).
    let http2 = if h2 { " http2" } else { "" };
    // With TLS: nginx's session defaults written out (no server-side session cache, tickets
    // on); its default ciphers and ECDH curves.
    let (ssl, tls_lines) = match tls {
        None => ("", String::new()),
        Some(t) => (
            " ssl",
            format!(
                "\n    ssl_certificate {};\n    ssl_certificate_key {};\n    \
                 ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_session_cache none;\n    \
                 ssl_session_tickets on;\n    ssl_session_timeout 5m;",
                t.cert.display(),
                t.key.display()
            ),
        ),
    };
    format!(
        r#"# Written by ringway-bench-harness: one worker, upstream keep-alive, logs off.
worker_processes 1;
worker_rlimit_nofile 20000;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log error;
daemon off;
events {{ worker_connections 19000; multi_accept on; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  client_body_temp_path {dir}/nginx-body;
  proxy_temp_path {dir}/nginx-proxy;{cache_zone}
  upstream backend {{ {servers}keepalive 1024; keepalive_requests 1000000; }}
  server {{
    listen 127.0.0.1:{port}{ssl}{http2} reuseport;{tls_lines}
    client_max_body_size 0;
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header Via "1.1 nginx";
      # Stream bodies both ways with bounded memory, as Ringway does.
      proxy_request_buffering off;
      proxy_max_temp_file_size 0;{cache_lines}
    }}
  }}
}}
"#
    )
}

/// This process's soft limit on open descriptors, which the contenders inherit.
fn nofile_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find_map(|line| line.strip_prefix("Max open files"))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(1024)
}

fn haproxy_conf(
    port: u16,
    backends: &[u16],
    balance: Option<Balance>,
    tls: Option<&TlsFiles>,
    h2: bool,
    cache: bool,
) -> String {
    // With TLS: HAProxy's defaults otherwise (its session cache and tickets on).
    // HAProxy refuses to start unless the descriptor limit covers two per connection, so over
    // TLS it gets as many as the limit allows (enough for ten thousand idle connections with
    // bench.sh's 65536); the plain scenarios keep their 9000.
    let maxconn = match tls {
        None => 9000,
        Some(_) => (nofile_limit().saturating_sub(100) / 2).clamp(1000, 20000),
    };
    // HTTP/2: `proto h2` makes a plain bind h2c (prior knowledge); over TLS, ALPN offers h2
    // then http/1.1. The backend side stays HTTP/1.1 with `http-reuse always`, so streams of
    // any client connection share the idle server connections.
    let (ssl, proto) = match (tls, h2) {
        (None, false) => (String::new(), "http"),
        (None, true) => (" proto h2".to_owned(), "http"),
        (Some(t), _) => (
            format!(
                " ssl crt {} alpn {} ssl-min-ver TLSv1.2",
                t.combined.display(),
                if h2 { "h2,http/1.1" } else { "http/1.1" }
            ),
            "https",
        ),
    };
    // The balancing algorithm (if any) then one `server` per backend.
    let servers: String = balance
        .map(|b| format!("  balance {}\n", b.haproxy()))
        .into_iter()
        .chain(
            backends
                .iter()
                .enumerate()
                .map(|(i, b)| format!("  server b{} 127.0.0.1:{b}\n", i + 1)),
        )
        .collect();
    // The cache: in memory, lifetimes from the origin's Cache-Control up to `max-age`; hits
    // are served by the backend section's `cache-use` without a server, and marked in
    // X-Cache-Status by the frontend (`res.cache_hit`).
    let (hit_marker, cache_rules, cache_section) = if cache {
        (
            "  http-response set-header X-Cache-Status HIT if { res.cache_hit }\n",
            "  http-request cache-use bench\n  http-response cache-store bench\n",
            format!(
                "cache bench\n  total-max-size {CACHE_MIB}\n  \
                 max-object-size {HAPROXY_CACHE_MAX_OBJECT}\n  max-age 3600\n"
            ),
        )
    } else {
        ("", "", String::new())
    };
    format!(
        r#"# Written by ringway-bench-harness: one thread, connection reuse, logs off.
global
  nbthread 1
  maxconn {maxconn}
defaults
  mode http
  timeout connect 5s
  timeout client 75s
  timeout server 75s
  timeout http-keep-alive 75s
  option http-keep-alive
  http-reuse always
frontend bench
  bind 127.0.0.1:{port}{ssl}
  option forwardfor
  http-request set-header X-Forwarded-Proto {proto}
  http-request add-header Via "1.1 haproxy"
{hit_marker}  default_backend backend
backend backend
{cache_rules}{servers}{cache_section}"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_backend_configs_name_no_algorithm() {
        let nginx = nginx_conf(19003, &[19000], None, Path::new("/w"), None, false, false);
        assert!(nginx.contains(
            "upstream backend { server 127.0.0.1:19000; keepalive 1024; keepalive_requests 1000000; }"
        ));
        let haproxy = haproxy_conf(19004, &[19000], None, None, false, false);
        assert!(haproxy.ends_with("backend backend\n  server b1 127.0.0.1:19000\n"));
    }

    #[test]
    fn balanced_configs_list_every_backend_after_the_algorithm() {
        let ports = [19000, 19010, 19011];
        let nginx = nginx_conf(
            19003,
            &ports,
            Some(Balance::LeastLoaded),
            Path::new("/w"),
            None,
            false,
            false,
        );
        assert!(nginx.contains(
            "upstream backend { least_conn; server 127.0.0.1:19000; server 127.0.0.1:19010; \
             server 127.0.0.1:19011; keepalive 1024; keepalive_requests 1000000; }"
        ));
        let rr = nginx_conf(
            19003,
            &ports,
            Some(Balance::RoundRobin),
            Path::new("/w"),
            None,
            false,
            false,
        );
        assert!(rr.contains("upstream backend { server 127.0.0.1:19000; server"));
        let haproxy = haproxy_conf(
            19004,
            &ports,
            Some(Balance::LeastLoaded),
            None,
            false,
            false,
        );
        assert!(haproxy.ends_with(
            "backend backend\n  balance leastconn\n  server b1 127.0.0.1:19000\n  \
             server b2 127.0.0.1:19010\n  server b3 127.0.0.1:19011\n"
        ));
    }

    #[test]
    fn plain_configs_have_no_cache() {
        let nginx = nginx_conf(19003, &[19000], None, Path::new("/w"), None, false, false);
        let haproxy = haproxy_conf(19004, &[19000], None, None, false, false);
        for word in ["proxy_cache", "X-Cache-Status"] {
            assert!(!nginx.contains(word), "{word}");
        }
        for word in ["cache", "X-Cache-Status"] {
            assert!(!haproxy.contains(word), "{word}");
        }
    }

    #[test]
    fn nginx_caches_by_uri_and_marks_hits() {
        let nginx = nginx_conf(19003, &[19000], None, Path::new("/w"), None, false, true);
        assert!(nginx.contains(
            "\n  proxy_cache_path /w/nginx-cache levels=1:2 keys_zone=bench:10m max_size=256m \
             inactive=60m use_temp_path=off;\n"
        ));
        let location = nginx.split("location / {").nth(1).unwrap();
        for line in [
            "proxy_cache bench;",
            "proxy_cache_key $scheme$host$request_uri;",
            "add_header X-Cache-Status $upstream_cache_status;",
        ] {
            assert!(location.contains(&format!("\n      {line}\n")), "{line}");
        }
        // Lifetimes come from the origin alone, and its Cache-Control is not ignored.
        assert!(!nginx.contains("proxy_cache_valid"));
        assert!(!nginx.contains("proxy_ignore_headers"));
    }

    #[test]
    fn haproxy_caches_in_memory_and_marks_hits() {
        let haproxy = haproxy_conf(19004, &[19000], None, None, false, true);
        assert!(haproxy.contains(
            "  http-response set-header X-Cache-Status HIT if { res.cache_hit }\n  \
             default_backend backend\n"
        ));
        assert!(haproxy.ends_with(
            "backend backend\n  http-request cache-use bench\n  http-response cache-store bench\n  \
             server b1 127.0.0.1:19000\ncache bench\n  total-max-size 256\n  \
             max-object-size 1048576\n  max-age 3600\n"
        ));
    }
}
