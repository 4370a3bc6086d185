//! An HTTP/2 upstream server for the end-to-end tests of HTTP/2 towards upstreams: the `h2`
//! crate's server on a current-thread tokio runtime of its own thread, listening on
//! `127.0.0.1:0` (or a given address, to restart on the same port), speaking h2c by prior
//! knowledge or, with [`H2UpstreamOpts::tls`], HTTP/2 over TLS (tokio-rustls, ALPN `h2`).
//!
//! It records every request ([`Seen`]: method, path, `:authority`, `:scheme`, fields, body
//! length and FNV-1a, trailers, which connection it came on), and counts TCP connections,
//! TLS handshakes (with the ALPN protocol and SNI), streams, streams in flight at once and the
//! RST_STREAMs it received. The behaviour is selected by the path (the query is ignored):
//!
//! | path                  | answer                                                                   |
//! |-----------------------|--------------------------------------------------------------------------|
//! | `/echo`               | 200, body = the request body (no content-length); the request trailers, if any, as response trailers; `x-seen-length`, `x-seen-fnv` |
//! | `/grpc`               | 200 `content-type: application/grpc`, body = the request body, trailers `grpc-status: 0`, `grpc-message: ok` |
//! | `/grpc-trailers-only` | a gRPC "Trailers-Only" answer: one HEADERS frame with END_STREAM: 200, `content-type: application/grpc`, `grpc-status: 12`, `grpc-message: unimplemented` |
//! | `/bytes/N`            | 200, N bytes of [`pattern`], `content-length: N`                         |
//! | `/bytes-nolen/N`      | 200, N bytes of [`pattern`], no content-length                           |
//! | `/slow/MS`            | waits MS milliseconds (a RST_STREAM, or the connection's end, in the meantime is recorded and ends it), then 200 `slow` |
//! | `/reset-after-head`   | 200 head and 1000 bytes of [`pattern`], 150 ms later RST_STREAM(INTERNAL_ERROR) |
//! | `/reset-before-head`  | RST_STREAM(INTERNAL_ERROR), no head                                      |
//! | `/refuse-stream`      | RST_STREAM(REFUSED_STREAM), no head                                      |
//! | `/stream-echo`        | streaming echo: 200 `content-type: application/grpc` at once, then every DATA frame echoed as it arrives, trailers `grpc-status: 0` after the request's end |
//! | `/head-then-wait/MS`  | 200 head and 1000 bytes of [`pattern`], then a wait of MS milliseconds (a RST_STREAM or the connection's end is recorded), then 1000 more bytes |
//! | `/early-hints`        | 103 with `link: </style.css>; rel=preload`, then 200 `hinted`          |
//! | `/headers`            | 200, body = the request as text: `METHOD PATH`, `:authority: …`, `:scheme: …`, then `name: value` lines |
//! | `/cookies`            | 200 with two `set-cookie` fields, body `cookies`                         |
//! | `/status/N`           | status N, body `status N` (none for 204 and 304)                         |
//! | anything else         | 200, body = the server's name                                           |
//!
//! Every response carries `x-upstream: <name>`; a HEAD request gets the GET head without a
//! body. Except for `/stream-echo`, the request body is read whole (its flow-control capacity
//! released as it arrives) before the answer starts.

use super::h2::Body;
use super::tls::Issued;
use super::upstream::{fnv1a, pattern};
use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Which TCP connection it came on (0 for the first accepted, …).
    pub conn: usize,
    /// The method.
    pub method: String,
    /// `:path` (with the query).
    pub path: String,
    /// `:authority`, if present.
    pub authority: Option<String>,
    /// `:scheme`, if present.
    pub scheme: Option<String>,
    /// The regular fields, names lowercase, in the order the `http` crate keeps them.
    pub headers: Vec<(String, String)>,
    /// Body bytes received.
    pub body_len: usize,
    /// FNV-1a 64 of the body.
    pub body_fnv: u64,
    /// The request trailers, if a trailing HEADERS frame came.
    pub trailers: Option<Vec<(String, String)>>,
    /// The error that ended the body early (a reset by the peer), if any.
    pub body_error: Option<String>,
}

impl Seen {
    /// The values of field `name` (case-insensitive).
    pub fn fields(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields(name).first().copied()
    }

    /// The first value of trailer `name`.
    pub fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers
            .as_ref()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One TLS handshake as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// The ALPN protocol selected.
    pub alpn: Option<String>,
    /// The SNI name the client sent.
    pub sni: Option<String>,
}

/// How to run an [`H2Upstream`].
#[derive(Default)]
pub struct H2UpstreamOpts {
    /// Serve HTTP/2 over TLS with this certificate (ALPN `h2` only), instead of h2c.
    pub tls: Option<Issued>,
    /// ALPN protocols offered with `tls` (default: `h2` alone).
    pub alpn: Option<Vec<String>>,
    /// SETTINGS_MAX_CONCURRENT_STREAMS (default: none advertised, i.e. unlimited).
    pub max_concurrent_streams: Option<u32>,
    /// The address to listen on (default `127.0.0.1:0`).
    pub addr: Option<SocketAddr>,
}

struct Shared {
    name: String,
    connections: AtomicUsize,
    open_connections: AtomicUsize,
    streams: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
    resets: Mutex<Vec<(String, Reason)>>,
    lost: Mutex<Vec<(String, String)>>,
    finished: Mutex<Vec<String>>,
    handshakes: Mutex<Vec<Handshake>>,
    handshake_failures: AtomicUsize,
    stop: AtomicBool,
    /// Bumped to make every open connection send GOAWAY (graceful shutdown).
    goaway: AtomicU64,
}

/// A running HTTP/2 upstream; stopped (listener and every connection closed) when dropped.
pub struct H2Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl H2Upstream {
    /// An h2c (prior knowledge) upstream called `name` on `127.0.0.1:0`.
    pub fn start(name: &str) -> H2Upstream {
        H2Upstream::start_with(name, H2UpstreamOpts::default())
    }

    /// An HTTP/2-over-TLS upstream called `name` serving `cert` with ALPN `h2`.
    pub fn start_tls(name: &str, cert: Issued) -> H2Upstream {
        H2Upstream::start_with(
            name,
            H2UpstreamOpts {
                tls: Some(cert),
                ..H2UpstreamOpts::default()
            },
        )
    }

    /// An upstream with `opts`. Binding a given address is retried for up to 5 s (a restart
    /// on the port of a server just stopped).
    pub fn start_with(name: &str, opts: H2UpstreamOpts) -> H2Upstream {
        let want = opts
            .addr
            .unwrap_or_else(|| "127.0.0.1:0".parse().expect("address"));
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match std::net::TcpListener::bind(want) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("bind the HTTP/2 upstream on {want}: {e}"),
            }
        };
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("upstream address");
        let tls = opts.tls.as_ref().map(|cert| {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(cert.chain_pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .expect("certificate chain PEM");
            let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("key PEM");
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let mut config = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .expect("upstream certificate");
            config.alpn_protocols = match &opts.alpn {
                Some(list) => list.iter().map(|p| p.as_bytes().to_vec()).collect(),
                None => vec![b"h2".to_vec()],
            };
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        });
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            connections: AtomicUsize::new(0),
            open_connections: AtomicUsize::new(0),
            streams: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
            resets: Mutex::new(Vec::new()),
            lost: Mutex::new(Vec::new()),
            finished: Mutex::new(Vec::new()),
            handshakes: Mutex::new(Vec::new()),
            handshake_failures: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            goaway: AtomicU64::new(0),
        });
        let s = shared.clone();
        let max_streams = opts.max_concurrent_streams;
        let thread = std::thread::Builder::new()
            .name(format!("h2-upstream-{name}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(accept_loop(listener, s, tls, max_streams));
                // Dropping the runtime drops every connection task: their sockets close.
                drop(rt);
            })
            .expect("spawn the HTTP/2 upstream");
        H2Upstream {
            addr,
            shared,
            thread: Some(thread),
        }
    }

    /// Stops listening and closes every connection abruptly (no GOAWAY), as a crashed or
    /// killed server would; returns once the sockets are closed.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Makes every open connection send GOAWAY(NO_ERROR) (graceful shutdown): streams in
    /// flight finish, new ones must go to a new connection.
    pub fn goaway_all(&self) {
        self.shared.goaway.fetch_add(1, Ordering::SeqCst);
    }

    /// The server's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// TCP connections open now.
    pub fn open_connections(&self) -> usize {
        self.shared.open_connections.load(Ordering::SeqCst)
    }

    /// Request streams received so far (counted at the request head).
    pub fn streams(&self) -> usize {
        self.shared.streams.load(Ordering::SeqCst)
    }

    /// The most request streams that were in progress at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Every request recorded so far (recorded once its body has been read), in order.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.shared.seen).clone()
    }

    /// The last request recorded whose path starts with `prefix`.
    pub fn last(&self, prefix: &str) -> Option<Seen> {
        lock(&self.shared.seen)
            .iter()
            .rev()
            .find(|s| s.path.starts_with(prefix))
            .cloned()
    }

    /// The RST_STREAMs received from the client (Ringway), with the path of their stream.
    pub fn resets(&self) -> Vec<(String, Reason)> {
        lock(&self.shared.resets).clone()
    }

    /// Waiting `/slow/MS` streams whose connection failed or closed (no RST_STREAM), with
    /// the error.
    pub fn lost(&self) -> Vec<(String, String)> {
        lock(&self.shared.lost).clone()
    }

    /// The paths of the responses sent to their end: every DATA frame granted flow-control
    /// capacity by the peer and handed to the connection (the answers of `/echo`, `/grpc`,
    /// `/bytes…`, `/headers`, `/status/N`, `/slow/MS`, …; not the resets).
    pub fn finished(&self) -> Vec<String> {
        lock(&self.shared.finished).clone()
    }

    /// TLS handshakes completed so far.
    pub fn handshakes(&self) -> Vec<Handshake> {
        lock(&self.shared.handshakes).clone()
    }

    /// TLS handshakes that failed.
    pub fn handshake_failures(&self) -> usize {
        self.shared.handshake_failures.load(Ordering::SeqCst)
    }

    /// Waits up to `timeout` until at least `n` requests are recorded.
    pub fn wait_seen(&self, n: usize, timeout: Duration) -> bool {
        self.wait(timeout, || lock(&self.shared.seen).len() >= n)
    }

    /// Waits up to `timeout` until at least `n` streams have arrived.
    pub fn wait_streams(&self, n: usize, timeout: Duration) -> bool {
        self.wait(timeout, || self.streams() >= n)
    }

    /// Waits up to `timeout` until at least `n` RST_STREAMs have been received.
    pub fn wait_resets(&self, n: usize, timeout: Duration) -> bool {
        self.wait(timeout, || lock(&self.shared.resets).len() >= n)
    }

    fn wait(&self, timeout: Duration, ok: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if ok() {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for H2Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `flag` every 10 ms until it is set.
async fn until_set(flag: &AtomicBool) {
    while !flag.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    max_streams: Option<u32>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = until_set(&shared.stop) => return,
        };
        let Ok((tcp, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let conn_id = shared.connections.fetch_add(1, Ordering::SeqCst);
        let s = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            s.open_connections.fetch_add(1, Ordering::SeqCst);
            match tls {
                None => serve_conn(tcp, conn_id, s.clone(), max_streams).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await;
                    match handshake {
                        Ok(Ok(tls)) => {
                            let (_, conn) = tls.get_ref();
                            lock(&s.handshakes).push(Handshake {
                                alpn: conn
                                    .alpn_protocol()
                                    .map(|p| String::from_utf8_lossy(p).into_owned()),
                                sni: conn.server_name().map(str::to_owned),
                            });
                            serve_conn(tls, conn_id, s.clone(), max_streams).await
                        }
                        _ => {
                            s.handshake_failures.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            }
            s.open_connections.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

async fn serve_conn<T>(io: T, conn_id: usize, shared: Arc<Shared>, max_streams: Option<u32>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = h2::server::Builder::new();
    if let Some(n) = max_streams {
        builder.max_concurrent_streams(n);
    }
    let Ok(Ok(mut conn)) =
        tokio::time::timeout(Duration::from_secs(10), builder.handshake::<_, Bytes>(io)).await
    else {
        return;
    };
    let mut goaway_seen = shared.goaway.load(Ordering::SeqCst);
    let mut going_away = false;
    loop {
        let next = tokio::select! {
            n = conn.accept() => n,
            _ = async {
                loop {
                    if !going_away && shared.goaway.load(Ordering::SeqCst) != goaway_seen {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            } => {
                goaway_seen = shared.goaway.load(Ordering::SeqCst);
                going_away = true;
                conn.graceful_shutdown();
                continue;
            }
        };
        match next {
            Some(Ok((req, respond))) => {
                let s = shared.clone();
                tokio::spawn(handle(req, respond, conn_id, s));
            }
            Some(Err(_)) | None => return,
        }
    }
}

/// Counts a stream in flight while alive.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn new(s: &Arc<Shared>) -> InFlight {
        let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        s.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(s.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn field_list(map: &HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Reads the whole request body (releasing capacity) and its trailers.
async fn read_body(body: &mut RecvStream) -> (Vec<u8>, Option<HeaderMap>, Option<String>) {
    let mut got = Vec::new();
    while let Some(chunk) = body.data().await {
        match chunk {
            Ok(c) => {
                let _ = body.flow_control().release_capacity(c.len());
                got.extend_from_slice(&c);
            }
            Err(e) => return (got, None, Some(e.to_string())),
        }
    }
    match body.trailers().await {
        Ok(t) => (got, t, None),
        Err(e) => (got, None, Some(e.to_string())),
    }
}

fn response(status: u16, name: &str) -> http::response::Builder {
    Response::builder()
        .status(StatusCode::from_u16(status).expect("status"))
        .header("x-upstream", name)
}

async fn handle(
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    conn_id: usize,
    shared: Arc<Shared>,
) {
    shared.streams.fetch_add(1, Ordering::SeqCst);
    let _in_flight = InFlight::new(&shared);
    let (parts, mut body) = req.into_parts();
    if parts.uri.path() == "/stream-echo" {
        stream_echo(parts, body, respond, conn_id, &shared).await;
        return;
    }
    let (data, trailers, body_error) = read_body(&mut body).await;
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let seen = Seen {
        conn: conn_id,
        method: parts.method.as_str().to_owned(),
        path: path.clone(),
        authority: parts.uri.authority().map(|a| a.as_str().to_owned()),
        scheme: parts.uri.scheme_str().map(str::to_owned),
        headers: field_list(&parts.headers),
        body_len: data.len(),
        body_fnv: fnv1a(&data),
        trailers: trailers.as_ref().map(field_list),
        body_error: body_error.clone(),
    };
    lock(&shared.seen).push(seen.clone());
    if body_error.is_some() {
        return;
    }
    let name = shared.name.clone();
    let route = parts.uri.path().to_owned();
    let num = |prefix: &str| -> Option<u64> { route.strip_prefix(prefix)?.parse().ok() };
    let seen_fields = |b: http::response::Builder| {
        b.header("x-seen-length", data.len().to_string())
            .header("x-seen-fnv", format!("{:016x}", fnv1a(&data)))
    };

    let (head, body) = if route == "/echo" {
        let head = seen_fields(response(200, &name));
        let out = Body {
            data: Bytes::from(data.clone()),
            trailers,
            empty: false,
        };
        (head, out)
    } else if route == "/grpc" {
        let mut head = seen_fields(response(200, &name)).header("content-type", "application/grpc");
        if let Some(te) = seen.field("te") {
            head = head.header("x-seen-te", te);
        }
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_static("0"));
        t.insert("grpc-message", HeaderValue::from_static("ok"));
        let out = Body {
            data: Bytes::from(data.clone()),
            trailers: Some(t),
            empty: false,
        };
        (head, out)
    } else if route == "/grpc-trailers-only" {
        let head = response(200, &name)
            .header("content-type", "application/grpc")
            .header("grpc-status", "12")
            .header("grpc-message", "unimplemented");
        (head, Body::none())
    } else if let Some(n) = num("/bytes/") {
        let n = usize::try_from(n).expect("size");
        let head = response(200, &name).header("content-length", n.to_string());
        (head, Body::data(pattern(n)))
    } else if let Some(n) = num("/bytes-nolen/") {
        let n = usize::try_from(n).expect("size");
        (response(200, &name), Body::data(pattern(n)))
    } else if let Some(ms) = num("/slow/") {
        let reset = tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ms)) => None,
            r = poll_fn(|cx| respond.poll_reset(cx)) => Some(r),
        };
        match reset {
            Some(Ok(reason)) => {
                lock(&shared.resets).push((path, reason));
                return;
            }
            Some(Err(e)) => {
                lock(&shared.lost).push((path, e.to_string()));
                return;
            }
            None => {}
        }
        (response(200, &name), Body::data("slow"))
    } else if route == "/reset-after-head" {
        let head = response(200, &name).body(()).expect("response");
        let Ok(mut stream) = respond.send_response(head, false) else {
            return;
        };
        let _ = stream.send_data(Bytes::from(pattern(1000)), false);
        // Let the head and the data go out before the reset (h2 drops queued frames of a
        // stream it resets).
        tokio::time::sleep(Duration::from_millis(150)).await;
        stream.send_reset(Reason::INTERNAL_ERROR);
        return;
    } else if let Some(ms) = num("/head-then-wait/") {
        let head = response(200, &name).body(()).expect("response");
        let Ok(mut stream) = respond.send_response(head, false) else {
            return;
        };
        let _ = stream.send_data(Bytes::from(pattern(1000)), false);
        let reset = tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ms)) => None,
            r = poll_fn(|cx| stream.poll_reset(cx)) => Some(r),
        };
        match reset {
            Some(Ok(reason)) => lock(&shared.resets).push((path, reason)),
            Some(Err(e)) => lock(&shared.lost).push((path, e.to_string())),
            None => {
                let _ = stream.send_data(Bytes::from(pattern(2000).split_off(1000)), true);
            }
        }
        return;
    } else if route == "/early-hints" {
        let hint = Response::builder()
            .status(103)
            .header("link", "</style.css>; rel=preload")
            .body(())
            .expect("103");
        let _ = respond.send_informational(hint);
        (response(200, &name), Body::data("hinted"))
    } else if route == "/reset-before-head" {
        respond.send_reset(Reason::INTERNAL_ERROR);
        return;
    } else if route == "/refuse-stream" {
        respond.send_reset(Reason::REFUSED_STREAM);
        return;
    } else if route == "/headers" {
        let mut text = format!("{} {}\n", seen.method, seen.path);
        if let Some(a) = &seen.authority {
            text.push_str(&format!(":authority: {a}\n"));
        }
        if let Some(s) = &seen.scheme {
            text.push_str(&format!(":scheme: {s}\n"));
        }
        for (k, v) in &seen.headers {
            text.push_str(&format!("{k}: {v}\n"));
        }
        let head = response(200, &name).header("content-length", text.len().to_string());
        (head, Body::data(text))
    } else if route == "/cookies" {
        let head = response(200, &name)
            .header("set-cookie", "a=1; Path=/")
            .header("set-cookie", "b=2; Path=/")
            .header("content-length", "7");
        (head, Body::data("cookies"))
    } else if let Some(n) = num("/status/") {
        let n = u16::try_from(n).expect("status");
        if n == 204 || n == 304 {
            (response(n, &name), Body::none())
        } else {
            let text = format!("status {n}");
            let head = response(n, &name).header("content-length", text.len().to_string());
            (head, Body::data(text))
        }
    } else {
        (response(200, &name), Body::data(name.clone()))
    };

    // A HEAD request gets the GET head (content-length included) without the body.
    let body = if seen.method == "HEAD" {
        Body::none()
    } else {
        body
    };
    let end = body.empty && body.data.is_empty() && body.trailers.is_none();
    let head = head.body(()).expect("response head");
    let Ok(stream) = respond.send_response(head, end) else {
        return;
    };
    if end || send_all(stream, body).await {
        lock(&shared.finished).push(path);
    }
}

/// Sends `body` on `stream` as the peer grants capacity, then the trailers or END_STREAM;
/// whether all of it was handed to the connection (false: the stream failed first).
async fn send_all(mut stream: h2::SendStream<Bytes>, body: Body) -> bool {
    let mut data = body.data;
    let mut ended = false;
    while !data.is_empty() {
        stream.reserve_capacity(data.len().min(1 << 20));
        let cap = match poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(Ok(n)) => n,
            Some(Err(_)) | None => return false,
        };
        if cap == 0 {
            continue;
        }
        let piece = data.split_to(cap.min(data.len()));
        ended = data.is_empty() && body.trailers.is_none();
        if stream.send_data(piece, ended).is_err() {
            return false;
        }
    }
    match body.trailers {
        Some(t) => stream.send_trailers(t).is_ok(),
        None if !ended => stream.send_data(Bytes::new(), true).is_ok(),
        None => true,
    }
}

/// `/stream-echo`: the head at once, each DATA frame echoed as it arrives (so a client can
/// send one message, wait for its echo, and send the next), `grpc-status: 0` trailers at the
/// end. Recorded when the request ends.
async fn stream_echo(
    parts: http::request::Parts,
    mut body: RecvStream,
    mut respond: SendResponse<Bytes>,
    conn_id: usize,
    shared: &Arc<Shared>,
) {
    let head = response(200, &shared.name)
        .header("content-type", "application/grpc")
        .body(())
        .expect("response");
    let Ok(mut out) = respond.send_response(head, false) else {
        return;
    };
    let mut got = Vec::new();
    let mut error = None;
    while let Some(chunk) = body.data().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        };
        let _ = body.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
        let mut rest = chunk;
        while !rest.is_empty() {
            out.reserve_capacity(rest.len());
            match poll_fn(|cx| out.poll_capacity(cx)).await {
                Some(Ok(0)) => continue,
                Some(Ok(n)) => {
                    let piece = rest.split_to(n.min(rest.len()));
                    if out.send_data(piece, false).is_err() {
                        error = Some("send_data failed".into());
                        break;
                    }
                }
                _ => {
                    error = Some("no send capacity".into());
                    break;
                }
            }
        }
        if error.is_some() {
            break;
        }
    }
    let trailers = if error.is_none() {
        match body.trailers().await {
            Ok(t) => t,
            Err(e) => {
                error = Some(e.to_string());
                None
            }
        }
    } else {
        None
    };
    lock(&shared.seen).push(Seen {
        conn: conn_id,
        method: parts.method.as_str().to_owned(),
        path: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        authority: parts.uri.authority().map(|a| a.as_str().to_owned()),
        scheme: parts.uri.scheme_str().map(str::to_owned),
        headers: field_list(&parts.headers),
        body_len: got.len(),
        body_fnv: fnv1a(&got),
        trailers: trailers.as_ref().map(field_list),
        body_error: error.clone(),
    });
    if error.is_none() {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_static("0"));
        let _ = out.send_trailers(t);
    }
}

/// Ringway with `workers` workers in front of `upstreams` spoken to over HTTP/2, plus `extra`.
pub fn h2_proxy(
    upstreams: &[std::net::SocketAddr],
    workers: usize,
    extra: &[&str],
) -> super::Proxy {
    let workers = workers.to_string();
    let mut args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--log-level",
        "info",
        "--workers",
        &workers,
        "--upstream-protocol",
        "h2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for u in upstreams {
        args.push("--upstream".into());
        args.push(u.to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    super::Proxy::start_args(&args)
}
