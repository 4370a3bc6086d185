//! What the admin endpoint shows of the upstreams: `GET /upstreams` as JSON and the
//! per-cluster, per-endpoint series appended to `/metrics`, both read from the shared upstream
//! table and every worker's counters (summed; ejection is per worker, so the view counts the
//! workers that have an endpoint ejected). Also the drain and enable calls.

use proxy_core::config::{Cluster, Config, Endpoint};
use proxy_io::upstreams::{Health, SharedUpstreams, UpstreamCounters};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Everything the views read.
pub struct Upstreams<'a> {
    /// The configuration snapshot.
    pub config: &'a Config,
    /// Health, drain and addresses.
    pub shared: &'a SharedUpstreams,
    /// Each worker's counters.
    pub counters: &'a [Arc<UpstreamCounters>],
}

struct EndpointView {
    addr: Option<SocketAddr>,
    health: Health,
    drained: bool,
    requests: u64,
    failures: u64,
    in_flight: u64,
    ejected_workers: u64,
    ejections: u64,
    ewma_micros: u64,
}

impl Upstreams<'_> {
    fn view(&self, e: &Endpoint, addrs: &[Option<SocketAddr>]) -> EndpointView {
        let mut v = EndpointView {
            addr: addrs.get(e.id).copied().flatten(),
            health: self.shared.health(e.id),
            drained: self.shared.is_drained(e.id),
            requests: 0,
            failures: 0,
            in_flight: 0,
            ejected_workers: 0,
            ejections: 0,
            ewma_micros: 0,
        };
        let mut measured = 0;
        for w in self.counters {
            let Some(c) = w.endpoints.get(e.id) else {
                continue;
            };
            v.requests += c.requests.get();
            v.failures += c.failures.get();
            v.in_flight = v.in_flight.wrapping_add(c.in_flight.get());
            v.ejected_workers += c.ejected.load(Ordering::Relaxed);
            v.ejections += c.ejections.get();
            let ewma = c.ewma_micros.load(Ordering::Relaxed);
            if ewma > 0 {
                v.ewma_micros += ewma;
                measured += 1;
            }
        }
        v.ewma_micros = v.ewma_micros.checked_div(measured).unwrap_or(0);
        v
    }

    /// `GET /upstreams`.
    pub fn json(&self) -> String {
        let addrs = self.shared.addrs();
        let mut out = String::from("{\"clusters\":[");
        for (ci, c) in self.config.clusters.iter().enumerate() {
            if ci > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"name\":{},\"lb\":\"{}\",\"protocol\":\"{}\",\"retries\":{},\"budget_exhausted\":{},\"circuit_open\":{},\"no_endpoint\":{},\"endpoints\":[",
                quote(&c.name),
                format!("{:?}", c.balance.algorithm).to_ascii_lowercase(),
                match c.protocol {
                    proxy_core::config::UpstreamProtocol::Http1 => "http1",
                    proxy_core::config::UpstreamProtocol::H2 => "h2",
                },
                self.sum_cluster(ci, |k| k.retries.get()),
                self.sum_cluster(ci, |k| k.budget_exhausted.get()),
                self.sum_cluster(ci, |k| k.circuit_open.get()),
                self.sum_cluster(ci, |k| k.no_endpoint.get()),
            );
            for (j, e) in c.endpoints.iter().enumerate() {
                let v = self.view(e, &addrs);
                if j > 0 {
                    out.push(',');
                }
                let _ = write!(
                    out,
                    "{{\"id\":{},\"addr\":{},\"name\":{},\"region\":{},\"priority\":{},\"weight\":{},\"health\":\"{}\",\"draining\":{},\"ejected_workers\":{},\"ejections\":{},\"in_flight\":{},\"ewma_ms\":{:.3},\"requests\":{},\"failures\":{}}}",
                    e.id,
                    v.addr.map_or_else(|| "null".to_owned(), |a| quote(&a.to_string())),
                    quote(&display_name(c, e, v.addr)),
                    e.region
                        .and_then(|r| c.regions.get(r))
                        .map_or_else(|| "null".to_owned(), |r| quote(r)),
                    e.priority,
                    e.weight,
                    health_name(v.health),
                    v.drained,
                    v.ejected_workers,
                    v.ejections,
                    v.in_flight,
                    v.ewma_micros as f64 / 1000.0,
                    v.requests,
                    v.failures,
                );
            }
            out.push_str("]}");
        }
        out.push_str("]}\n");
        out
    }

    fn sum_cluster(
        &self,
        cluster: usize,
        get: impl Fn(&proxy_io::upstreams::ClusterCounters) -> u64,
    ) -> u64 {
        self.counters
            .iter()
            .filter_map(|w| w.clusters.get(cluster))
            .map(get)
            .sum()
    }

    /// The upstream series for `/metrics`.
    pub fn prometheus(&self) -> String {
        let addrs = self.shared.addrs();
        let mut out = String::new();
        let series: [(&str, &str, &str); 8] = [
            (
                "ringway_upstream_endpoint_requests_total",
                "counter",
                "Tries sent to the endpoint.",
            ),
            (
                "ringway_upstream_endpoint_failures_total",
                "counter",
                "Tries that failed (connect, reset, timeout, 5xx).",
            ),
            (
                "ringway_upstream_endpoint_in_flight",
                "gauge",
                "Requests waiting for the endpoint's response head.",
            ),
            (
                "ringway_upstream_endpoint_healthy",
                "gauge",
                "1 unless active health checks have the endpoint down.",
            ),
            (
                "ringway_upstream_endpoint_draining",
                "gauge",
                "1 while the endpoint is drained by the admin.",
            ),
            (
                "ringway_upstream_endpoint_ejected_workers",
                "gauge",
                "Workers that have the endpoint ejected (outlier detection).",
            ),
            (
                "ringway_upstream_endpoint_ejections_total",
                "counter",
                "Outlier ejections.",
            ),
            (
                "ringway_upstream_endpoint_latency_ewma_seconds",
                "gauge",
                "Peak-EWMA latency to the response head.",
            ),
        ];
        for (k, (name, kind, help)) in series.iter().enumerate() {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for c in &self.config.clusters {
                for e in &c.endpoints {
                    let v = self.view(e, &addrs);
                    if v.addr.is_none() {
                        continue;
                    }
                    let value = match k {
                        0 => v.requests as f64,
                        1 => v.failures as f64,
                        2 => v.in_flight as f64,
                        3 => f64::from(u8::from(v.health != Health::Down)),
                        4 => f64::from(u8::from(v.drained)),
                        5 => v.ejected_workers as f64,
                        6 => v.ejections as f64,
                        _ => v.ewma_micros as f64 / 1e6,
                    };
                    let _ = writeln!(
                        out,
                        "{name}{{cluster={},endpoint={}}} {value}",
                        quote(&c.name),
                        quote(&display_name(c, e, v.addr))
                    );
                }
            }
        }
        let cluster_series: [(&str, &str, ClusterGet); 4] = [
            (
                "ringway_upstream_retries_total",
                "Retries on another endpoint or a fresh connection.",
                |k| k.retries.get(),
            ),
            (
                "ringway_upstream_retry_budget_exhausted_total",
                "Retries refused by the retry budget.",
                |k| k.budget_exhausted.get(),
            ),
            (
                "ringway_upstream_circuit_open_total",
                "Requests answered 503 by the circuit breaker.",
                |k| k.circuit_open.get(),
            ),
            (
                "ringway_upstream_no_endpoint_total",
                "Requests answered 503 with no endpoint to try.",
                |k| k.no_endpoint.get(),
            ),
        ];
        for (name, help, get) in cluster_series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (ci, c) in self.config.clusters.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{name}{{cluster={}}} {}",
                    quote(&c.name),
                    self.sum_cluster(ci, get)
                );
            }
        }
        out
    }

    /// `POST /upstreams/<cluster>/<addr>/drain` or `/enable`: the endpoints changed, or why
    /// none could be.
    pub fn set_drained(&self, path: &str) -> Result<String, (u16, String)> {
        let rest = path.strip_prefix("/upstreams/").unwrap_or(path);
        let mut parts = rest.rsplitn(2, '/');
        let (Some(action), Some(target)) = (parts.next(), parts.next()) else {
            return Err((
                404,
                "use /upstreams/<cluster>/<addr>/drain or /enable\n".into(),
            ));
        };
        let drained = match action {
            "drain" => true,
            "enable" => false,
            _ => return Err((404, format!("unknown action `{action}`: drain or enable\n"))),
        };
        let Some((cluster, addr)) = target.split_once('/') else {
            return Err((
                404,
                "use /upstreams/<cluster>/<addr>/drain or /enable\n".into(),
            ));
        };
        let Some(c) = self.config.clusters.iter().find(|c| c.name == cluster) else {
            return Err((404, format!("no cluster is named `{cluster}`\n")));
        };
        let addrs = self.shared.addrs();
        let matching: Vec<&Endpoint> = c
            .endpoints
            .iter()
            .filter(|e| {
                let current = addrs.get(e.id).copied().flatten();
                current.is_some_and(|a| a.to_string() == addr)
                    || display_name(c, e, current) == addr
                    || e.dns
                        .and_then(|d| c.dns_names.get(d))
                        .is_some_and(|n| format!("{}:{}", n.host, n.port) == addr)
            })
            .collect();
        if matching.is_empty() {
            return Err((
                404,
                format!("cluster `{cluster}` has no endpoint `{addr}`\n"),
            ));
        }
        for e in &matching {
            self.shared.set_drained(e.id, drained);
        }
        tracing::info!(
            cluster,
            endpoint = addr,
            drained,
            "endpoint drain changed by the admin"
        );
        Ok(format!(
            "{} {} endpoint(s) of cluster `{cluster}`\n",
            if drained { "drained" } else { "enabled" },
            matching.len()
        ))
    }
}

/// Reads one per-cluster counter.
type ClusterGet = fn(&proxy_io::upstreams::ClusterCounters) -> u64;

fn display_name(c: &Cluster, e: &Endpoint, addr: Option<SocketAddr>) -> String {
    addr.map_or_else(
        || match e.dns.and_then(|d| c.dns_names.get(d)) {
            Some(n) => format!("{}:{}#{}", n.host, n.port, e.id - n.slots.start),
            None => e.addr.to_string(),
        },
        |a| a.to_string(),
    )
}

fn health_name(h: Health) -> &'static str {
    match h {
        Health::Unchecked => "unchecked",
        Health::Up => "up",
        Health::Down => "down",
    }
}

/// A JSON (and Prometheus label) string literal.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
