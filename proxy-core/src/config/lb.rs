//! Per-cluster balancing and resilience settings: the algorithm, active health checks, passive
//! outlier detection, retries with their budget, circuit breaking and DNS re-resolution; and the
//! per-endpoint `region` and `priority` that region failover works from.

use super::{duration, err, ConfigError, Quantity};
use crate::lb::health::ExpectStatus;
use crate::lb::{Algorithm, HashKey, OutlierPolicy};
use serde::Deserialize;
use std::time::Duration;

/// `[clusters.health]` as written: an HTTP check when `path` is given, else a TCP connect.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHealth {
    /// Path of an HTTP GET check; absent: the check is a TCP connect.
    pub path: Option<String>,
    /// `Host` of the HTTP check; default the endpoint's `ip:port` (or its DNS name).
    pub host: Option<String>,
    /// Time between checks of one endpoint.
    pub interval: Option<Quantity>,
    /// Time one check may take.
    pub timeout: Option<Quantity>,
    /// Consecutive passing checks that bring a down endpoint back.
    pub rise: Option<u32>,
    /// Consecutive failing checks that take an endpoint down.
    pub fall: Option<u32>,
    /// Statuses that pass: `2xx`, `200`, `200-399`, or a comma list of those.
    pub expect_status: Option<String>,
}

/// `[clusters.outlier]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOutlier {
    /// Consecutive failures that eject an endpoint (on one worker); 0 turns ejection off.
    pub consecutive_failures: Option<u32>,
    /// First ejection time; repeated ejections last longer.
    pub base_ejection: Option<Quantity>,
    /// Longest ejection.
    pub max_ejection: Option<Quantity>,
    /// Most endpoints ejected at once, in percent of the cluster.
    pub max_ejected_percent: Option<u8>,
}

/// `[clusters.retry]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRetry {
    /// Retries after the first try (0 turns retries off).
    pub retries: Option<u32>,
    /// When to retry: `connect-failure`, `reset`, `timeout`, and status codes (`"503"`).
    pub on: Option<Vec<String>>,
    /// Retries allowed as a share of recent requests, in percent.
    pub budget_percent: Option<u32>,
    /// Retries per second always allowed, whatever the share.
    pub budget_min_per_sec: Option<u32>,
    /// Time one try may wait for its response head; default `timeouts.upstream_response`.
    pub per_try_timeout: Option<Quantity>,
    /// Time all tries together may take before the last failure is answered.
    pub timeout: Option<Quantity>,
}

/// The resolved health check of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// HTTP request or TCP connect.
    pub kind: HealthKind,
    /// Time between checks.
    pub interval: Duration,
    /// Time one check may take.
    pub timeout: Duration,
    /// Passing checks to come back up.
    pub rise: u32,
    /// Failing checks to go down.
    pub fall: u32,
}

/// What a health check does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthKind {
    /// Open a TCP connection (and the TLS handshake on a TLS cluster).
    Tcp,
    /// `GET path` with this `Host`; passes on an expected status.
    Http {
        /// The request path.
        path: String,
        /// The `Host` field, when configured.
        host: Option<String>,
        /// Passing statuses.
        expect: ExpectStatus,
    },
}

/// The resolved retry policy of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first try.
    pub retries: u32,
    /// Retry when no connection could be opened (any method: nothing was sent).
    pub on_connect_failure: bool,
    /// Retry an idempotent request whose connection closed or reset before a response.
    pub on_reset: bool,
    /// Retry an idempotent request whose try timed out.
    pub on_timeout: bool,
    /// Retry an idempotent request answered with one of these statuses.
    pub on_status: Vec<u16>,
    /// Retries allowed as a share of recent requests, in percent.
    pub budget_percent: u32,
    /// Retries per second always allowed.
    pub budget_min_per_sec: u32,
    /// Time one try may wait for its response head.
    pub per_try_timeout: Duration,
    /// Time all tries may take, if bounded.
    pub timeout: Option<Duration>,
}

/// Circuit breaking, per endpoint per worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Circuit {
    /// Upstream exchanges in progress at once (each holds one connection); `None`: no limit.
    pub max_connections: Option<usize>,
    /// Requests that may wait for one of those connections; more are answered 503 at once.
    pub max_pending: usize,
}

/// How a cluster balances.
#[derive(Debug, Clone, PartialEq)]
pub struct Balance {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// The Maglev hash key.
    pub hash_key: HashKey,
    /// The sticky-session cookie name, if sessions stick.
    pub sticky_cookie: Option<String>,
    /// Envoy's overprovisioning factor for priority levels (1.4: a level that is 72% healthy
    /// still takes all of the traffic).
    pub overprovisioning: f64,
}

impl Eq for Balance {}

pub(super) fn resolve_algorithm(v: Option<&str>, key: &str) -> Result<Algorithm, ConfigError> {
    Ok(match v.unwrap_or("round_robin") {
        "round_robin" | "roundrobin" => Algorithm::RoundRobin,
        "random" => Algorithm::Random,
        "least_conn" | "leastconn" => Algorithm::LeastConn,
        "p2c" | "peak_ewma" => Algorithm::P2c,
        "maglev" => Algorithm::Maglev,
        other => {
            return err(
                key,
                format!("`{other}` is not one of round_robin, random, least_conn, p2c, maglev"),
            )
        }
    })
}

pub(super) fn resolve_hash_key(v: Option<&str>, key: &str) -> Result<HashKey, ConfigError> {
    let text = v.unwrap_or("client_ip");
    let named = |name: &str, what: &str| {
        if name.is_empty() || name.bytes().any(|b| !b.is_ascii_graphic() || b == b';') {
            err(
                key,
                format!("`{text}`: the {what} name is empty or not a token"),
            )
        } else {
            Ok(name.to_owned())
        }
    };
    Ok(match text {
        "client_ip" => HashKey::ClientIp,
        "path" => HashKey::Path,
        _ => match text.split_once(':') {
            Some(("header", name)) => HashKey::Header(named(name, "header")?.to_ascii_lowercase()),
            Some(("cookie", name)) => HashKey::Cookie(named(name, "cookie")?),
            _ => {
                return err(
                    key,
                    format!("`{text}` is not one of client_ip, path, header:NAME, cookie:NAME"),
                )
            }
        },
    })
}

pub(super) fn resolve_health(
    h: Option<&FileHealth>,
    key: &str,
) -> Result<Option<HealthCheck>, ConfigError> {
    let Some(h) = h else { return Ok(None) };
    let interval = duration(
        &h.interval,
        &format!("{key}.interval"),
        Duration::from_secs(2),
    )?;
    let timeout = duration(
        &h.timeout,
        &format!("{key}.timeout"),
        Duration::from_secs(1),
    )?;
    let rise = h.rise.unwrap_or(2);
    let fall = h.fall.unwrap_or(3);
    for (v, k) in [(rise, "rise"), (fall, "fall")] {
        if !(1..=100).contains(&v) {
            return err(format!("{key}.{k}"), "must be from 1 to 100");
        }
    }
    let kind = match &h.path {
        None => {
            if h.expect_status.is_some() || h.host.is_some() {
                return err(
                    format!("{key}.path"),
                    "expect_status and host need an HTTP check: set path",
                );
            }
            HealthKind::Tcp
        }
        Some(path) => {
            if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
                return err(
                    format!("{key}.path"),
                    "must start with / and contain no spaces",
                );
            }
            if let Some(host) = &h.host {
                if host.is_empty() || host.bytes().any(|b| b <= b' ' || b == 0x7f) {
                    return err(format!("{key}.host"), "must be a host name without spaces");
                }
            }
            let expect = ExpectStatus::parse(h.expect_status.as_deref().unwrap_or("2xx"))
                .or_else(|m| err(format!("{key}.expect_status"), m))?;
            HealthKind::Http {
                path: path.clone(),
                host: h.host.clone(),
                expect,
            }
        }
    };
    Ok(Some(HealthCheck {
        kind,
        interval,
        timeout,
        rise,
        fall,
    }))
}

pub(super) fn resolve_outlier(
    o: Option<&FileOutlier>,
    key: &str,
) -> Result<OutlierPolicy, ConfigError> {
    let o = o.cloned().unwrap_or_default();
    let base_ejection = duration(
        &o.base_ejection,
        &format!("{key}.base_ejection"),
        Duration::from_secs(10),
    )?;
    let max_ejection = duration(
        &o.max_ejection,
        &format!("{key}.max_ejection"),
        Duration::from_secs(300),
    )?;
    if max_ejection < base_ejection {
        return err(
            format!("{key}.max_ejection"),
            "must not be below base_ejection",
        );
    }
    let max_ejected_percent = o.max_ejected_percent.unwrap_or(50);
    if max_ejected_percent > 100 {
        return err(
            format!("{key}.max_ejected_percent"),
            "must be from 0 to 100",
        );
    }
    Ok(OutlierPolicy {
        consecutive_failures: o.consecutive_failures.unwrap_or(5),
        base_ejection,
        max_ejection,
        max_ejected_percent,
    })
}

pub(super) fn resolve_retry(
    r: Option<&FileRetry>,
    key: &str,
    upstream_response: Duration,
) -> Result<RetryPolicy, ConfigError> {
    let r = r.cloned().unwrap_or_default();
    let retries = r.retries.unwrap_or(2);
    if retries > 10 {
        return err(format!("{key}.retries"), "must be at most 10");
    }
    let mut policy = RetryPolicy {
        retries,
        on_connect_failure: false,
        on_reset: false,
        on_timeout: false,
        on_status: Vec::new(),
        budget_percent: r.budget_percent.unwrap_or(20),
        budget_min_per_sec: r.budget_min_per_sec.unwrap_or(3),
        per_try_timeout: duration(
            &r.per_try_timeout,
            &format!("{key}.per_try_timeout"),
            upstream_response,
        )?,
        timeout: r
            .timeout
            .as_ref()
            .map(|_| duration(&r.timeout, &format!("{key}.timeout"), Duration::ZERO))
            .transpose()?,
    };
    if policy.budget_percent > 100 {
        return err(format!("{key}.budget_percent"), "must be from 0 to 100");
    }
    let on =
        r.on.unwrap_or_else(|| vec!["connect-failure".to_owned(), "reset".to_owned()]);
    for (i, cond) in on.iter().enumerate() {
        match cond.as_str() {
            "connect-failure" => policy.on_connect_failure = true,
            "reset" => policy.on_reset = true,
            "timeout" => policy.on_timeout = true,
            "5xx" => policy.on_status.extend([500, 502, 503, 504]),
            code => match code.parse::<u16>() {
                Ok(s @ 500..=599) => policy.on_status.push(s),
                _ => {
                    return err(
                        format!("{key}.on[{i}]"),
                        format!(
                            "`{code}` is not connect-failure, reset, timeout, 5xx or a 5xx status"
                        ),
                    )
                }
            },
        }
    }
    Ok(policy)
}

pub(super) fn resolve_circuit(
    max_connections: Option<usize>,
    max_pending: Option<usize>,
    key: &str,
) -> Result<Circuit, ConfigError> {
    if max_connections == Some(0) {
        return err(format!("{key}.max_connections"), "must be at least 1");
    }
    if max_pending.is_some() && max_connections.is_none() {
        return err(
            format!("{key}.max_pending"),
            "only applies with max_connections: set that too",
        );
    }
    Ok(Circuit {
        max_connections,
        max_pending: max_pending.unwrap_or(64),
    })
}
