//! The client side of the TLS scenarios, on rustls: a probe that fetches one response and says
//! what was negotiated, the connection-per-request load client (run as a pinned child process,
//! `ringway-bench-harness --tls-load …`, as wrk is), and the idle-connection opener.
//!
//! wrk cannot drive `tls-new-conn`: on reconnect it reuses its OpenSSL object (`SSL_clear`),
//! which keeps the session, so every connection after a connection's first resumes (an
//! abbreviated handshake without the certificate signature). This client never resumes, so
//! every request costs the server a full handshake. It offers what wrk's OpenSSL offers first
//! (TLS 1.3, AES-256-GCM, an X25519 key share) so every server negotiates what it negotiates
//! with wrk, and like wrk (`SSL_VERIFY_NONE`) the load client checks the handshake signature
//! but not the certificate chain; the probe and the idle client verify the chain.

use proxy_io::tls::SignatureOnlyVerifier;
use rustls::client::Resumption;
use rustls::crypto::aws_lc_rs::{cipher_suite as cs, default_provider, kx_group};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, RootCertStore, StreamOwned};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connect, read and write timeout, as wrk's `--timeout 5s`.
const TIMEOUT: Duration = Duration::from_secs(5);

/// aws-lc-rs with OpenSSL 3's client preference order (what wrk offers).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ],
        kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
        ..default_provider()
    })
}

/// A client config that never resumes and offers ALPN http/1.1; with `ca`, certificates must
/// chain to it, without, only the handshake signature is checked.
pub fn config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client: {e}"))?;
    let mut cfg = match ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            let certs =
                CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SignatureOnlyVerifier::new(
                provider.clone(),
            )))
            .with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.resumption = Resumption::disabled();
    Ok(Arc::new(cfg))
}

/// One response read off a TLS stream.
struct Response {
    status: u16,
    /// Head and body bytes.
    bytes: u64,
    body: Vec<u8>,
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// Connects to 127.0.0.1:`port` (SNI `localhost`), completes the handshake and makes one
/// request for `path`.
fn exchange(
    cfg: &Arc<ClientConfig>,
    port: u16,
    path: &str,
    close: bool,
) -> Result<(Tls, Response), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let tcp = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_read_timeout(Some(TIMEOUT));
    let _ = tcp.set_write_timeout(Some(TIMEOUT));
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let conn = ClientConnection::new(cfg.clone(), name).map_err(|e| format!("TLS: {e}"))?;
    let mut tls = StreamOwned::new(conn, tcp);
    let connection = if close { "close" } else { "keep-alive" };
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: {connection}\r\n\r\n");
    tls.write_all(request.as_bytes())
        .and_then(|()| tls.flush())
        .map_err(|e| format!("request: {e}"))?;
    let response = read_response(&mut tls)?;
    Ok((tls, response))
}

/// Reads one Content-Length framed response.
fn read_response(s: &mut impl Read) -> Result<Response, String> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 16 << 10];
    let mut frame: Option<(usize, usize)> = None; // (head length, head + body length)
    loop {
        if frame.is_none() {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]);
                let length = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                    .ok_or("response without Content-Length")?;
                frame = Some((end + 4, end + 4 + length));
            }
        }
        if let Some((head, total)) = frame {
            if buf.len() >= total {
                let status = std::str::from_utf8(buf.get(9..12).unwrap_or_default())
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                return Ok(Response {
                    status,
                    bytes: total as u64,
                    body: buf[head..total].to_vec(),
                });
            }
        }
        let n = s.read(&mut chunk).map_err(|e| format!("response: {e}"))?;
        if n == 0 {
            return Err("connection closed before the response was complete".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Fetches `path` once through `port` over TLS; returns the body and what was negotiated.
pub fn fetch(cfg: &Arc<ClientConfig>, port: u16, path: &str) -> Result<(Vec<u8>, String), String> {
    let (tls, r) = exchange(cfg, port, path, true)?;
    if r.status != 200 {
        return Err(format!("status {} for {path}", r.status));
    }
    let c = &tls.conn;
    let name = |v: Option<String>| v.unwrap_or_else(|| "?".into());
    let negotiated = format!(
        "{}, {}, {}, ALPN {}",
        name(c.protocol_version().map(|v| format!("{v:?}"))),
        name(
            c.negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
        ),
        name(
            c.negotiated_key_exchange_group()
                .map(|g| format!("{:?}", g.name()))
        ),
        name(
            c.alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned())
        ),
    );
    Ok((r.body, negotiated))
}

/// What the load client counted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadResult {
    pub requests: u64,
    pub errors: u64,
    pub non2xx: u64,
    pub bytes: u64,
    /// Handshakes that were full, 1-RTT ones.
    pub full: u64,
    /// Full handshakes that needed a HelloRetryRequest (another round trip).
    pub retried: u64,
    /// Resumed handshakes (there should be none).
    pub resumed: u64,
    pub seconds: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

impl LoadResult {
    fn text(&self) -> String {
        format!(
            "REQUESTS {}\nERRORS {}\nNON2XX {}\nBYTES {}\nFULL {}\nRETRIED {}\nRESUMED {}\nSECONDS {}\nP50 {}\nP99 {}\n",
            self.requests,
            self.errors,
            self.non2xx,
            self.bytes,
            self.full,
            self.retried,
            self.resumed,
            self.seconds,
            self.p50_us,
            self.p99_us
        )
    }

    pub fn parse(text: &str) -> Option<LoadResult> {
        let mut r = LoadResult::default();
        let mut seen = 0;
        for line in text.lines() {
            let (key, value) = line.split_once(' ')?;
            let int = || value.parse::<u64>().ok();
            let float = || value.parse::<f64>().ok();
            match key {
                "REQUESTS" => r.requests = int()?,
                "ERRORS" => r.errors = int()?,
                "NON2XX" => r.non2xx = int()?,
                "BYTES" => r.bytes = int()?,
                "FULL" => r.full = int()?,
                "RETRIED" => r.retried = int()?,
                "RESUMED" => r.resumed = int()?,
                "SECONDS" => r.seconds = float()?,
                "P50" => r.p50_us = float()?,
                "P99" => r.p99_us = float()?,
                _ => continue,
            }
            seen += 1;
        }
        (seen == 10).then_some(r)
    }
}

/// One client thread's counts.
#[derive(Default)]
struct Tally {
    result: LoadResult,
    latencies_us: Vec<u32>,
}

/// New connection, full handshake, one request, close; again until `end`.
fn load_worker(cfg: &Arc<ClientConfig>, port: u16, path: &str, end: Instant) -> Tally {
    let mut t = Tally::default();
    while Instant::now() < end {
        let t0 = Instant::now();
        match exchange(cfg, port, path, true) {
            Ok((tls, r)) => {
                t.latencies_us
                    .push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                let r0 = &mut t.result;
                r0.requests += 1;
                r0.bytes += r.bytes;
                if !(200..300).contains(&r.status) {
                    r0.non2xx += 1;
                }
                match tls.conn.handshake_kind() {
                    Some(HandshakeKind::Full) => r0.full += 1,
                    Some(HandshakeKind::FullWithHelloRetryRequest) => r0.retried += 1,
                    _ => r0.resumed += 1,
                }
            }
            Err(_) => {
                t.result.errors += 1;
                // A refusing server must not turn this into a busy loop.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    t
}

/// `--tls-load PORT PATH CONNECTIONS MILLISECONDS`: CONNECTIONS threads, each making a new TLS
/// connection per request to 127.0.0.1:PORT until the time is up; prints a [`LoadResult`].
pub fn load_main(args: &[String]) -> i32 {
    let parsed = match args {
        [port, path, conns, ms] => match (port.parse(), conns.parse(), ms.parse()) {
            (Ok(port), Ok(conns), Ok(ms)) => Some((port, path.clone(), conns, ms)),
            _ => None,
        },
        _ => None,
    };
    let Some((port, path, conns, ms)): Option<(u16, String, usize, u64)> = parsed else {
        eprintln!("usage: ringway-bench-harness --tls-load PORT PATH CONNECTIONS MILLISECONDS");
        return 2;
    };
    let cfg = match config(None) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let start = Instant::now();
    let end = start + Duration::from_millis(ms);
    let threads: Vec<_> = (0..conns.max(1))
        .map(|_| {
            let (cfg, path) = (cfg.clone(), path.clone());
            std::thread::spawn(move || load_worker(&cfg, port, &path, end))
        })
        .collect();
    let mut total = LoadResult::default();
    let mut latencies = Vec::new();
    for t in threads {
        let Ok(t) = t.join() else { continue };
        let r = t.result;
        total.requests += r.requests;
        total.errors += r.errors;
        total.non2xx += r.non2xx;
        total.bytes += r.bytes;
        total.full += r.full;
        total.retried += r.retried;
        total.resumed += r.resumed;
        latencies.extend(t.latencies_us);
    }
    total.seconds = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(f64::NAN, |v| *v as f64)
    };
    total.p50_us = pct(0.50);
    total.p99_us = pct(0.99);
    print!("{}", total.text());
    0
}

/// Opens `n` TLS connections to `port` (`threads` handshaking at a time, within two minutes),
/// makes one keep-alive request on each and keeps them open with the TLS state dropped (the
/// server cannot tell), then waits `settle`. Returns the open sockets and how many failed.
pub fn idle(
    cfg: &Arc<ClientConfig>,
    port: u16,
    n: usize,
    threads: usize,
    settle: Duration,
) -> (Vec<TcpStream>, usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let threads = threads.max(1);
    let per = n.div_ceil(threads);
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let count = per.min(n.saturating_sub(i * per));
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                let mut open = Vec::with_capacity(count);
                for _ in 0..count {
                    if Instant::now() > deadline {
                        break;
                    }
                    if let Ok((tls, r)) = exchange(&cfg, port, "/0", false) {
                        if r.status == 200 {
                            open.push(tls.into_parts().1);
                        }
                    }
                }
                open
            })
        })
        .collect();
    let conns: Vec<TcpStream> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap_or_default())
        .collect();
    let failed = n - conns.len();
    std::thread::sleep(settle);
    (conns, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_result_round_trips() {
        let r = LoadResult {
            requests: 12,
            errors: 1,
            non2xx: 2,
            bytes: 13_000,
            full: 11,
            retried: 0,
            resumed: 1,
            seconds: 1.25,
            p50_us: 800.0,
            p99_us: 2500.0,
        };
        assert_eq!(LoadResult::parse(&r.text()), Some(r));
        assert_eq!(LoadResult::parse("REQUESTS 1\n"), None);
    }

    #[test]
    fn reads_a_framed_response() {
        let mut wire: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc";
        let r = read_response(&mut wire).unwrap();
        assert_eq!((r.status, r.bytes, r.body), (200, 41, b"abc".to_vec()));
        let mut short: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc";
        assert!(read_response(&mut short).is_err());
    }
}
