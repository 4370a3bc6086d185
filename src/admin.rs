//! The admin endpoint: `GET /healthz`, `GET /metrics` (Prometheus text), `GET /upstreams`
//! (JSON), `POST /reload` (re-read TLS certificates), `POST /upstreams/<cluster>/<addr>/drain`
//! or `/enable`, and `POST /cache/purge?url=URL` (or `?prefix=URL`: every URL starting with
//! it), served from one ordinary thread, off the data path. A
//! state-changing call must present the token when one is configured (401 otherwise); other
//! methods are refused with 405.

use crate::tls::Reloadable;
use crate::upstreams_view::Upstreams;
use proxy_core::config::Admin;
use proxy_core::config::Config;
use proxy_core::http1::parse_request;
use proxy_io::cache::{CachePurges, PurgeRule};
use proxy_io::metrics::{render_prometheus, WorkerStats};
use proxy_io::shutdown::Shutdown;
use proxy_io::upstreams::{SharedUpstreams, UpstreamCounters};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// Binds the admin address; fails (before any worker starts) if it cannot.
pub fn bind(admin: &Admin) -> Result<(TcpListener, SocketAddr), String> {
    let l = TcpListener::bind(admin.addr)
        .map_err(|e| format!("cannot listen on admin address {}: {e}", admin.addr))?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    Ok((l, addr))
}

/// What the admin endpoint reads and changes.
pub struct State {
    /// Each worker's counters.
    pub workers: Vec<Arc<WorkerStats>>,
    /// The configuration snapshot.
    pub config: Arc<Config>,
    /// Health, drain and addresses of the endpoints.
    pub upstreams: Arc<SharedUpstreams>,
    /// Each worker's upstream counters.
    pub upstream_counters: Vec<Arc<UpstreamCounters>>,
    /// Where cache purges are published for every worker.
    pub cache_purges: Arc<CachePurges>,
}

impl State {
    fn upstreams(&self) -> Upstreams<'_> {
        Upstreams {
            config: &self.config,
            shared: &self.upstreams,
            counters: &self.upstream_counters,
        }
    }
}

/// Serves admin requests on a background thread until the process exits.
pub fn serve(
    listener: TcpListener,
    token: Option<String>,
    state: State,
    shutdown: Shutdown,
    tls: Reloadable,
) {
    let spawned = std::thread::Builder::new()
        .name("ringway-admin".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                if let Err(e) = handle(conn, token.as_deref(), &state, &shutdown, &tls) {
                    tracing::debug!(error = %e, "admin request failed");
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the admin thread");
    }
}

fn handle(
    mut conn: TcpStream,
    token: Option<&str>,
    state: &State,
    shutdown: &Shutdown,
    tls: &Reloadable,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    let head = loop {
        let n = conn.read(&mut buf[len..])?;
        if n == 0 {
            return Ok(());
        }
        len += n;
        match parse_request(&buf[..len]) {
            Ok(Some(h)) => break h,
            Ok(None) if len < buf.len() => continue,
            _ => return respond(&mut conn, "400 Bad Request", "text/plain", "bad request\n"),
        }
    };
    let method = head.method_span.of(&buf);
    let target = head.path.of(&buf);
    let path = target.split(|&b| b == b'?').next().unwrap_or(target);
    let query = target.get(path.len() + 1..).unwrap_or_default();
    if method != b"GET" && method != b"HEAD" {
        if let Some(t) = token {
            let auth = head.headers.find(&buf, b"authorization");
            let expected = format!("Bearer {t}");
            if auth != Some(expected.as_bytes()) {
                return respond(
                    &mut conn,
                    "401 Unauthorized",
                    "text/plain",
                    "admin token required\n",
                );
            }
        }
        if method == b"POST" && path == b"/reload" {
            return match crate::tls::reload(tls) {
                Ok(n) => respond(
                    &mut conn,
                    "200 OK",
                    "text/plain",
                    &format!("reloaded the certificates of {n} TLS listener(s)\n"),
                ),
                Err(e) => respond(
                    &mut conn,
                    "500 Internal Server Error",
                    "text/plain",
                    &format!("reload failed, the certificates in service stay: {e}\n"),
                ),
            };
        }
        if method == b"POST" && path == b"/cache/purge" {
            return match purge_rule(query) {
                Ok((rule, url)) => {
                    let generation = state.cache_purges.publish(rule);
                    respond(
                        &mut conn,
                        "200 OK",
                        "text/plain",
                        &format!("purge {generation} of {url} published: every worker applies it before its next cache lookup\n"),
                    )
                }
                Err(msg) => respond(&mut conn, "400 Bad Request", "text/plain", msg),
            };
        }
        if method == b"POST" && path.starts_with(b"/upstreams/") {
            let path = String::from_utf8_lossy(path);
            return match state.upstreams().set_drained(&path) {
                Ok(msg) => respond(&mut conn, "200 OK", "text/plain", &msg),
                Err((_, msg)) => respond(&mut conn, "404 Not Found", "text/plain", &msg),
            };
        }
        return respond(
            &mut conn,
            "405 Method Not Allowed",
            "text/plain",
            "method not allowed\n",
        );
    }
    match path {
        b"/healthz" if shutdown.is_triggered() => respond(
            &mut conn,
            "503 Service Unavailable",
            "text/plain",
            "draining\n",
        ),
        b"/healthz" => respond(&mut conn, "200 OK", "text/plain", "ok\n"),
        b"/metrics" => {
            let mut text = render_prometheus(
                &state.workers,
                &tls.iter()
                    .flat_map(|l| l.certificates())
                    .collect::<Vec<_>>(),
            );
            text.push_str(&state.upstreams().prometheus());
            respond(&mut conn, "200 OK", "text/plain; version=0.0.4", &text)
        }
        b"/upstreams" => respond(
            &mut conn,
            "200 OK",
            "application/json",
            &state.upstreams().json(),
        ),
        _ => respond(
            &mut conn,
            "404 Not Found",
            "text/plain",
            "not found: try /healthz, /metrics or /upstreams\n",
        ),
    }
}

fn respond(conn: &mut TcpStream, status: &str, ctype: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())?;
    conn.write_all(body.as_bytes())
}

/// The purge a `/cache/purge` query asks for: `url=URL` (that URL) or `prefix=URL` (every URL
/// starting with it), percent-encoded.
fn purge_rule(query: &[u8]) -> Result<(PurgeRule, String), &'static str> {
    const USAGE: &str = "give url=http://host/path?query (one URL) or prefix=http://host/path \
                         (every URL starting with it), percent-encoded\n";
    let mut found = None;
    for pair in query.split(|&b| b == b'&') {
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => continue,
        };
        let prefix = match name {
            b"url" => false,
            b"prefix" => true,
            _ => continue,
        };
        if found.is_some() {
            return Err(USAGE);
        }
        let url = percent_decode(value).ok_or(USAGE)?;
        let rule = PurgeRule::for_url(&url, prefix).ok_or(USAGE)?;
        found = Some((rule, url));
    }
    found.ok_or(USAGE)
}

/// Decodes `%XX` escapes and `+` (a space); `None` for a bad escape or non-UTF-8 text.
fn percent_decode(v: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b'%' => {
                let hex = std::str::from_utf8(v.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod purge_tests {
    use super::*;

    #[test]
    fn purge_queries_name_one_url_or_a_prefix() {
        let (rule, url) = purge_rule(b"url=http%3A%2F%2Fa.test%2Fx%3Fy%3D1").unwrap();
        assert_eq!(url, "http://a.test/x?y=1");
        assert_eq!(Some(rule), PurgeRule::for_url("http://a.test/x?y=1", false));
        let (rule, _) = purge_rule(b"prefix=https://a.test/img/").unwrap();
        assert!(matches!(rule, PurgeRule::Prefix(_)));
        assert!(purge_rule(b"").is_err());
        assert!(purge_rule(b"url=a.test/x").is_err());
        assert!(purge_rule(b"url=http://a.test/x&prefix=http://a.test/").is_err());
        assert!(purge_rule(b"url=%zz").is_err());
    }
}
