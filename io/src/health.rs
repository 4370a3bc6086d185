//! Active health checks: one thread for the whole process (not one per core), running a small
//! epoll-driven runtime with one task per checked endpoint. Each task connects (TCP, plus the
//! TLS handshake on a TLS cluster), optionally sends `GET path` and reads the status, feeds the
//! result to a rise/fall state machine, and publishes transitions into the shared upstream table
//! that every worker reads at pick time.

use crate::pool::connect;
use crate::shutdown::Shutdown;
use crate::tls::UpstreamTlsConfig;
use crate::upstreams::{Health, SharedUpstreams};
use proxy_core::config::{Config, HealthCheck, HealthKind};
use proxy_core::http1::{find_head_end, parse_response};
use proxy_core::lb::health::HealthState;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

/// Starts the health-check thread when some cluster has a health check; it stops with
/// `shutdown`. `upstream_tls` is per cluster, as the workers get it.
pub fn spawn_health_checker(
    config: Arc<Config>,
    shared: Arc<SharedUpstreams>,
    upstream_tls: Vec<Option<UpstreamTlsConfig>>,
    shutdown: Shutdown,
) -> io::Result<Option<std::thread::JoinHandle<()>>> {
    if config.clusters.iter().all(|c| c.health.is_none()) {
        return Ok(None);
    }
    std::thread::Builder::new()
        .name("ringway-health".into())
        .spawn(move || {
            let rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build();
            let mut rt = match rt {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the health checker; endpoints stay usable");
                    return;
                }
            };
            rt.block_on(run(config, shared, upstream_tls, shutdown));
        })
        .map(Some)
}

async fn run(
    config: Arc<Config>,
    shared: Arc<SharedUpstreams>,
    upstream_tls: Vec<Option<UpstreamTlsConfig>>,
    shutdown: Shutdown,
) {
    let mut tasks = Vec::new();
    for (i, c) in config.clusters.iter().enumerate() {
        let Some(check) = &c.health else { continue };
        let tls = upstream_tls
            .get(i)
            .and_then(Option::as_ref)
            .map(|t| Rc::new(t.for_worker()));
        for e in &c.endpoints {
            let host = match (&check.kind, e.dns.and_then(|d| c.dns_names.get(d))) {
                (HealthKind::Http { host: Some(h), .. }, _) => h.clone(),
                (_, Some(name)) => format!("{}:{}", name.host, name.port),
                _ => e.addr.to_string(),
            };
            let probe = Probe {
                id: e.id,
                cluster: c.name.clone(),
                check: check.clone(),
                host,
                tls: tls.clone(),
            };
            tasks.push(monoio::spawn(probe.run(shared.clone(), shutdown.clone())));
        }
    }
    shutdown.wait().await;
    drop(tasks);
}

struct Probe {
    id: usize,
    cluster: String,
    check: HealthCheck,
    host: String,
    tls: Option<Rc<UpstreamTlsConfig>>,
}

impl Probe {
    async fn run(self, shared: Arc<SharedUpstreams>, shutdown: Shutdown) {
        let mut state = HealthState::new(self.check.rise, self.check.fall);
        let mut reported = false;
        let mut checked: Option<SocketAddr> = None;
        while !shutdown.is_triggered() {
            let addr = shared.addrs().get(self.id).copied().flatten();
            if addr != checked {
                // A DNS slot now holds another server (or none): its history does not carry over.
                checked = addr;
                state = HealthState::new(self.check.rise, self.check.fall);
                reported = false;
                shared.set_health(self.id, Health::Unchecked);
            }
            if let Some(addr) = addr {
                let result = self.once(addr).await;
                let flipped = state.observe(result.is_ok());
                if let Err(why) = &result {
                    tracing::debug!(cluster = %self.cluster, %addr, %why, "health check failed");
                }
                if flipped.is_some() || !reported {
                    reported = true;
                    let up = state.is_up();
                    shared.set_health(self.id, if up { Health::Up } else { Health::Down });
                    if flipped.is_some() {
                        if up {
                            tracing::info!(cluster = %self.cluster, %addr, "endpoint is up (health check)");
                        } else {
                            tracing::warn!(cluster = %self.cluster, %addr, error = ?result.err(), "endpoint is down (health check)");
                        }
                    }
                }
            }
            monoio::select! {
                _ = monoio::time::sleep(self.check.interval) => {}
                _ = shutdown.wait() => {}
            }
        }
    }

    /// One check; the reason when it fails.
    async fn once(&self, addr: SocketAddr) -> Result<(), String> {
        let timeout = self.check.timeout;
        let deadline = Instant::now() + timeout;
        let mut conn = connect(addr, timeout)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        if let Some(tls) = &self.tls {
            conn.connect_tls(tls, deadline)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
        }
        let HealthKind::Http { path, expect, .. } = &self.check.kind else {
            return Ok(());
        };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ringway-health-check\r\nConnection: close\r\n\r\n",
            self.host
        );
        let left = deadline.saturating_duration_since(Instant::now());
        let (res, _) = conn.write_all(request.into_bytes(), left).await;
        res.map_err(|e| format!("send: {e}"))?;
        let mut buf = Vec::with_capacity(4096);
        loop {
            if find_head_end(&buf, 0).is_some() {
                return match parse_response(&buf) {
                    Ok(Some(head)) if expect.matches(head.status) => Ok(()),
                    Ok(Some(head)) => Err(format!("status {}", head.status)),
                    _ => Err("invalid response".into()),
                };
            }
            if buf.len() == buf.capacity() {
                return Err("response head too large".into());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("timed out".into());
            }
            let (res, b) = conn.read_append(buf, left).await;
            buf = b;
            match res {
                Ok(0) => return Err("closed before a response".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("receive: {e}")),
            }
        }
    }
}
