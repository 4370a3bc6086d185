//! An HTTP/2 client for the end-to-end tests: the `h2` crate's client on a current-thread tokio
//! runtime, over plain TCP (h2c with prior knowledge, [`H2::h2c`]) or over TLS with ALPN
//! ([`tls_connect`], then [`H2::handshake`]). Each test runs its async body with [`run`], which
//! bounds it in time; every helper that waits has its own bound too.
//!
//! Responses are read whole ([`H2Response`]: status, headers, body, trailers), releasing flow
//! control capacity as the body arrives so that large downloads work with the default windows.
//! Request bodies are sent as the peer grants capacity, never buffered past it.

use bytes::Bytes;
use h2::client::{ResponseFuture, SendRequest};
use h2::{Reason, SendStream};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;

#[allow(unused_imports)]
pub use super::upstream::fnv1a;

/// How long one exchange (or one connect) may take before the helper gives up.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `f` to completion on a fresh current-thread runtime (time and I/O enabled); panics if
/// it takes longer than `limit`.
pub fn run<F: Future>(limit: Duration, f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(async move {
            tokio::time::timeout(limit, f)
                .await
                .unwrap_or_else(|_| panic!("the test's async part took longer than {limit:?}"))
        })
}

/// `fut`, or a panic naming `what` after `limit`.
pub async fn within<F: Future>(limit: Duration, what: &str, fut: F) -> F::Output {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {limit:?}"))
}

/// A response, read to its end.
#[derive(Debug, Clone)]
pub struct H2Response {
    /// The status code.
    pub status: u16,
    /// The header fields (pseudo-headers excluded).
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
    /// The trailer fields, if a trailing HEADERS frame came.
    pub trailers: Option<HeaderMap>,
}

impl H2Response {
    /// The first value of header `name`, as text (`None` if absent or not text).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The first value of trailer `name`, as text.
    pub fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers
            .as_ref()
            .and_then(|t| t.get(name))
            .and_then(|v| v.to_str().ok())
    }

    /// The body as (lossy) text.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Status, headers, trailers and at most 300 bytes of body, for assertion messages.
    pub fn summary(&self) -> String {
        let body = self.body_text();
        let cut: String = body.chars().take(300).collect();
        let more = if cut.len() < body.len() { "…" } else { "" };
        format!(
            "{} {:?} trailers {:?} body ({} bytes): {cut:?}{more}",
            self.status,
            self.headers,
            self.trailers,
            self.body.len()
        )
    }
}

/// What went wrong with one exchange: the `h2` error, with the body bytes that had arrived
/// before it (a stream reset mid-body shows what came first).
#[derive(Debug)]
pub struct StreamError {
    /// The error: a reset (`is_reset`, `reason`), a GOAWAY (`is_go_away`), or I/O.
    pub error: h2::Error,
    /// The response status, if the head had arrived.
    pub status: Option<u16>,
    /// The body bytes received before the error.
    pub partial_body: Vec<u8>,
}

impl StreamError {
    fn new(error: h2::Error) -> StreamError {
        StreamError {
            error,
            status: None,
            partial_body: Vec::new(),
        }
    }

    /// The error code of a reset or GOAWAY.
    pub fn reason(&self) -> Option<Reason> {
        self.error.reason()
    }
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (reset: {}, go_away: {}, remote: {}, io: {}; status {:?}, {} body bytes before it)",
            self.error,
            self.error.is_reset(),
            self.error.is_go_away(),
            self.error.is_remote(),
            self.error.is_io(),
            self.status,
            self.partial_body.len()
        )
    }
}

/// A request body: none (END_STREAM on HEADERS), or data and optional trailers.
#[derive(Clone, Debug, Default)]
pub struct Body {
    /// The data; sent in pieces as the peer grants capacity.
    pub data: Bytes,
    /// Trailer fields, sent after the data.
    pub trailers: Option<HeaderMap>,
    /// Whether to send END_STREAM on the HEADERS frame (no DATA at all). Ignored when there is
    /// data or trailers.
    pub empty: bool,
}

impl Body {
    /// No body: END_STREAM on HEADERS.
    pub fn none() -> Body {
        Body {
            empty: true,
            ..Body::default()
        }
    }

    /// `data`, then END_STREAM.
    pub fn data(data: impl Into<Bytes>) -> Body {
        Body {
            data: data.into(),
            trailers: None,
            empty: false,
        }
    }

    /// `data`, then `trailers` (which end the stream).
    pub fn with_trailers(data: impl Into<Bytes>, trailers: &[(&str, &str)]) -> Body {
        Body {
            data: data.into(),
            trailers: Some(fields(trailers)),
            empty: false,
        }
    }
}

/// A header map from `(name, value)` pairs (appended, so a name may repeat).
pub fn fields(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.append(
            HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            HeaderValue::from_str(v).expect("header value"),
        );
    }
    m
}

/// One HTTP/2 client connection. The connection task runs on the current runtime.
pub struct H2 {
    /// The handle that opens streams (clone it for concurrent senders).
    pub send: SendRequest<Bytes>,
    /// `http` or `https`: the `:scheme` of requests.
    pub scheme: &'static str,
    /// The `:authority` of requests made with [`H2::req`].
    pub authority: String,
    conn: JoinHandle<Result<(), h2::Error>>,
}

impl H2 {
    /// h2c with prior knowledge: connects to `addr` and sends the preface.
    pub async fn h2c(addr: SocketAddr, authority: &str) -> Result<H2, String> {
        H2::h2c_with(addr, authority, &h2::client::Builder::new()).await
    }

    /// h2c with the client settings of `builder` (windows, for instance).
    pub async fn h2c_with(
        addr: SocketAddr,
        authority: &str,
        builder: &h2::client::Builder,
    ) -> Result<H2, String> {
        let tcp = within(TIMEOUT, "TCP connect", TcpStream::connect(addr))
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        H2::handshake_with(tcp, "http", authority, builder).await
    }

    /// The HTTP/2 handshake over an established transport (the client's default settings:
    /// 64 KiB windows, so flow control is exercised).
    pub async fn handshake<T>(io: T, scheme: &'static str, authority: &str) -> Result<H2, String>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        H2::handshake_with(io, scheme, authority, &h2::client::Builder::new()).await
    }

    /// The HTTP/2 handshake with the client settings of `builder`.
    pub async fn handshake_with<T>(
        io: T,
        scheme: &'static str,
        authority: &str,
        builder: &h2::client::Builder,
    ) -> Result<H2, String>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (send, conn) = within(TIMEOUT, "HTTP/2 handshake", builder.handshake(io))
            .await
            .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
        let conn = tokio::spawn(conn);
        Ok(H2 {
            send,
            scheme,
            authority: authority.to_owned(),
            conn,
        })
    }

    /// A request builder for `method path` on this connection's scheme and authority.
    pub fn req(&self, method: Method, path: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(format!("{}://{}{path}", self.scheme, self.authority))
    }

    /// Opens a stream for `req` with `body` (waiting for a free stream slot first, as a client
    /// at the server's concurrency limit must) and returns the response future. The body is
    /// sent from a task of its own, so the response can arrive while the body is still going.
    pub async fn start(
        &mut self,
        req: Request<()>,
        body: Body,
    ) -> Result<ResponseFuture, StreamError> {
        let send = within(
            TIMEOUT,
            "waiting for a stream slot",
            self.send.clone().ready(),
        )
        .await
        .map_err(StreamError::new)?;
        self.send = send;
        let end = body.empty && body.data.is_empty() && body.trailers.is_none();
        let (resp, stream) = self.send.send_request(req, end).map_err(StreamError::new)?;
        if !end {
            tokio::spawn(send_body(stream, body));
        }
        Ok(resp)
    }

    /// One exchange: sends `req` with `body`, reads the whole response.
    pub async fn exchange(
        &mut self,
        req: Request<()>,
        body: Body,
    ) -> Result<H2Response, StreamError> {
        let resp = self.start(req, body).await?;
        within(TIMEOUT, "the response", read_response(resp)).await
    }

    /// `GET path` without a body.
    pub async fn get(&mut self, path: &str) -> Result<H2Response, StreamError> {
        let req = self.req(Method::GET, path).body(()).expect("request");
        self.exchange(req, Body::none()).await
    }

    /// `GET path` that must succeed; panics otherwise.
    pub async fn must_get(&mut self, path: &str) -> H2Response {
        self.get(path)
            .await
            .unwrap_or_else(|e| panic!("GET {path} over HTTP/2: {e}"))
    }

    /// Whether the connection task has ended (the server closed, or a connection error).
    pub fn is_closed(&self) -> bool {
        self.conn.is_finished()
    }

    /// Waits up to `limit` for the connection task to end; its result, or `None` if it is
    /// still running.
    pub async fn closed_within(&mut self, limit: Duration) -> Option<Result<(), String>> {
        match tokio::time::timeout(limit, &mut self.conn).await {
            Ok(Ok(r)) => Some(r.map_err(|e| e.to_string())),
            Ok(Err(e)) => Some(Err(format!("connection task: {e}"))),
            Err(_) => None,
        }
    }
}

impl Drop for H2 {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

/// Sends `body` on `stream` as the peer grants capacity, then the trailers or END_STREAM. A
/// stream that the peer resets stops the sending (the response future reports why).
pub async fn send_body(mut stream: SendStream<Bytes>, body: Body) {
    let mut data = body.data;
    let mut ended = false;
    while !data.is_empty() {
        stream.reserve_capacity(data.len().min(1 << 20));
        let cap = match poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(Ok(n)) => n,
            Some(Err(_)) | None => return,
        };
        if cap == 0 {
            continue;
        }
        let piece = data.split_to(cap.min(data.len()));
        ended = data.is_empty() && body.trailers.is_none();
        if stream.send_data(piece, ended).is_err() {
            return;
        }
    }
    match body.trailers {
        Some(t) => {
            let _ = stream.send_trailers(t);
        }
        // A zero-length body: one empty DATA frame with END_STREAM.
        None if !ended => {
            let _ = stream.send_data(Bytes::new(), true);
        }
        None => {}
    }
}

/// Reads a response to its end (headers, body, trailers), releasing flow-control capacity as
/// the body arrives.
pub async fn read_response(resp: ResponseFuture) -> Result<H2Response, StreamError> {
    let resp = resp.await.map_err(StreamError::new)?;
    let (parts, mut body) = resp.into_parts();
    let status = parts.status.as_u16();
    let mut got = Vec::new();
    let fail = |error: h2::Error, got: Vec<u8>| StreamError {
        error,
        status: Some(status),
        partial_body: got,
    };
    while let Some(chunk) = body.data().await {
        match chunk {
            Ok(c) => {
                let _ = body.flow_control().release_capacity(c.len());
                got.extend_from_slice(&c);
            }
            Err(e) => return Err(fail(e, got)),
        }
    }
    let trailers = match body.trailers().await {
        Ok(t) => t,
        Err(e) => return Err(fail(e, got)),
    };
    Ok(H2Response {
        status,
        headers: parts.headers,
        body: got,
        trailers,
    })
}

/// A TLS client stream.
pub type Tls = TlsStream<TcpStream>;

/// Connects to `addr` over TLS trusting the CA in `ca_pem` (PEM text), verifying
/// `server_name`, offering the ALPN protocols `alpn` (none: no ALPN extension). Returns the
/// stream and the protocol the server selected.
pub async fn tls_connect(
    addr: SocketAddr,
    server_name: &str,
    ca_pem: &str,
    alpn: &[&str],
) -> Result<(Tls, Option<String>), String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| format!("CA PEM: {e:?}"))?)
            .map_err(|e| format!("CA certificate: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("protocol versions: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    config.resumption = rustls::client::Resumption::disabled();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = within(TIMEOUT, "TCP connect", TcpStream::connect(addr))
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(server_name.to_owned()).map_err(|e| e.to_string())?;
    let tls = within(TIMEOUT, "TLS handshake", connector.connect(name, tcp))
        .await
        .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
    let proto = tls
        .get_ref()
        .1
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    Ok((tls, proto))
}

/// h2 over TLS: connects with ALPN `h2, http/1.1`, requires `h2` to be selected and does the
/// HTTP/2 handshake. `authority` is also the TLS server name.
pub async fn h2_tls(addr: SocketAddr, authority: &str, ca_pem: &str) -> Result<H2, String> {
    let (tls, proto) = tls_connect(addr, authority, ca_pem, &["h2", "http/1.1"]).await?;
    if proto.as_deref() != Some("h2") {
        return Err(format!("ALPN selected {proto:?}, not h2"));
    }
    H2::handshake(tls, "https", authority).await
}

/// The HTTP/2 client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The header lines named `name` (case-insensitive) in a request head echoed by the upstream's
/// `/headers` or `/digest`, values trimmed.
pub fn head_fields(head: &str, name: &str) -> Vec<String> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}
