//! Endpoint names, resolved off the request path: once at start (by the binary, through
//! [`resolve`]) and then every `resolve_interval` by one resolver thread, which writes the new
//! addresses into the shared upstream table. Workers notice the change at their next pick;
//! requests in flight keep their connections. A name that fails to resolve keeps its last
//! addresses (a DNS outage must not empty a cluster).
//!
//! A hosts-format file (`server.hosts_file`) is read before the system resolver: tests and
//! operators can point names at addresses without touching `/etc/hosts`.

use crate::shutdown::Shutdown;
use crate::upstreams::SharedUpstreams;
use proxy_core::config::Config;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Every address `host` has, with `port`: from `hosts_file` when it names the host, else from
/// the system resolver. In the order found, without duplicates.
pub fn resolve(host: &str, port: u16, hosts_file: Option<&Path>) -> io::Result<Vec<SocketAddr>> {
    let mut found = Vec::new();
    if let Some(path) = hosts_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot read hosts file {}: {e}", path.display()),
            )
        })?;
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) else {
                continue;
            };
            if words.any(|w| w.eq_ignore_ascii_case(host)) {
                found.push(SocketAddr::new(ip, port));
            }
        }
    }
    if found.is_empty() {
        found = (host, port).to_socket_addrs()?.collect();
    }
    let mut unique = Vec::with_capacity(found.len());
    for a in found {
        if !unique.contains(&a) {
            unique.push(a);
        }
    }
    if unique.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("`{host}` resolves to no address"),
        ));
    }
    Ok(unique)
}

/// Starts the resolver thread when some cluster has endpoint names; it stops with `shutdown`.
pub fn spawn_resolver(
    config: Arc<Config>,
    shared: Arc<SharedUpstreams>,
    shutdown: Shutdown,
) -> io::Result<Option<std::thread::JoinHandle<()>>> {
    if config.clusters.iter().all(|c| c.dns_names.is_empty()) {
        return Ok(None);
    }
    std::thread::Builder::new()
        .name("ringway-dns".into())
        .spawn(move || run(&config, &shared, &shutdown))
        .map(Some)
}

fn run(config: &Config, shared: &SharedUpstreams, shutdown: &Shutdown) {
    let hosts = config.server.hosts_file.as_deref().map(Path::new);
    let start = Instant::now();
    // Next due time per cluster.
    let mut due: Vec<Instant> = config
        .clusters
        .iter()
        .map(|c| start + c.resolve_interval)
        .collect();
    while !shutdown.is_triggered() {
        let now = Instant::now();
        for (c, next) in config.clusters.iter().zip(due.iter_mut()) {
            if c.dns_names.is_empty() || now < *next {
                continue;
            }
            *next = now + c.resolve_interval;
            for name in &c.dns_names {
                match resolve(&name.host, name.port, hosts) {
                    Ok(addrs) => {
                        if shared.set_addrs(name.slots.clone(), &addrs) {
                            tracing::info!(cluster = %c.name, host = %name.host, ?addrs, "endpoint addresses changed");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(cluster = %c.name, host = %name.host, error = %e, "cannot resolve; keeping the last addresses");
                    }
                }
            }
        }
        // Short naps so shutdown is noticed quickly; resolution itself runs at its interval.
        std::thread::sleep(Duration::from_millis(100));
    }
}
