//! TLS helpers for the end-to-end tests: a throwaway PKI made with rcgen at test time (a CA,
//! server certificates for given names, client certificates, expired ones), written into a
//! per-test directory; a blocking rustls client that speaks HTTP/1.1 over one TLS connection
//! ([`TlsClient`]); an HTTPS upstream (rustls on std threads, [`TlsUpstream`]); and bounded runs
//! of `openssl s_client`.

use super::client::{parse_fields, read_chunked, read_exact, read_head, Response, IO_TIMEOUT};
use super::{curl, Proxy};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The crypto provider of every test-side TLS config (named explicitly: more than one may be
/// compiled in).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Now, as rcgen wants it.
fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    d.push(DnType::OrganizationName, "Ringway tests");
    d
}

/// A test certificate authority.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    /// Its certificate, PEM.
    pub pem: String,
}

/// A certificate issued by a [`Ca`], with its key.
pub struct Issued {
    /// The leaf, then the CA (what a server presents).
    pub chain_pem: String,
    /// The private key, PEM (PKCS#8).
    pub key_pem: String,
    /// The leaf alone, DER, for comparing with what a peer presented.
    pub der: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
    /// Expiry, seconds since the Unix epoch.
    pub not_after: i64,
}

impl Ca {
    /// A new CA named `name`, valid from yesterday for 90 days.
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut p = CertificateParams::default();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name = dn(name);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.not_before = now() - time::Duration::days(1);
        p.not_after = now() + time::Duration::days(90);
        let cert = p.self_signed(&key).expect("self-sign the CA");
        let pem = cert.pem();
        Ca { cert, key, pem }
    }

    fn issue(
        &self,
        cn: &str,
        sans: &[&str],
        usage: ExtendedKeyUsagePurpose,
        valid: (time::OffsetDateTime, time::OffsetDateTime),
    ) -> Issued {
        let key = KeyPair::generate().expect("leaf key");
        let names: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut p = CertificateParams::new(names).expect("certificate names");
        p.distinguished_name = dn(cn);
        p.extended_key_usages = vec![usage];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        (p.not_before, p.not_after) = valid;
        let cert = p
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign the certificate");
        Issued {
            chain_pem: format!("{}{}", cert.pem(), self.pem),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            chain: vec![cert.der().clone(), self.cert.der().clone()],
            key_der: key.serialize_der(),
            not_after: valid.1.unix_timestamp(),
        }
    }

    /// A server certificate with subject `CN=<cn>, O=Ringway tests` for `sans` (DNS names or
    /// IP addresses), valid for 90 days (well under the 366 days clients accept).
    pub fn server(&self, cn: &str, sans: &[&str]) -> Issued {
        let valid = (
            now() - time::Duration::hours(1),
            now() + time::Duration::days(90),
        );
        self.issue(cn, sans, ExtendedKeyUsagePurpose::ServerAuth, valid)
    }

    /// A server certificate that expired yesterday.
    pub fn expired_server(&self, cn: &str, sans: &[&str]) -> Issued {
        let valid = (
            now() - time::Duration::days(30),
            now() - time::Duration::days(1),
        );
        self.issue(cn, sans, ExtendedKeyUsagePurpose::ServerAuth, valid)
    }

    /// A client certificate (ClientAuth usage) with subject `CN=<cn>, O=Ringway tests`.
    pub fn client(&self, cn: &str) -> Issued {
        let valid = (
            now() - time::Duration::hours(1),
            now() + time::Duration::days(90),
        );
        self.issue(cn, &[], ExtendedKeyUsagePurpose::ClientAuth, valid)
    }
}

impl Issued {
    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// Writes `<stem>.pem` (the chain) and `<stem>.key` into `dir`; returns both paths.
    pub fn write(&self, dir: &TempDir, stem: &str) -> (String, String) {
        (
            dir.write(&format!("{stem}.pem"), &self.chain_pem),
            dir.write(&format!("{stem}.key"), &self.key_pem),
        )
    }
}

/// A directory for one test's files, removed when dropped (declare it before the proxy that
/// reads from it, so that the proxy is dropped first).
pub struct TempDir {
    /// Where it is.
    pub path: PathBuf,
}

impl TempDir {
    /// A fresh, empty directory named after `name`.
    pub fn new(name: &str) -> TempDir {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("ringway-tls-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the test directory");
        TempDir { path }
    }

    /// Writes `contents` to `name` in the directory (replacing it); returns the path.
    pub fn write(&self, name: &str, contents: &str) -> String {
        let p = self.path.join(name);
        std::fs::write(&p, contents).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p.to_str().expect("utf-8 temp path").to_owned()
    }

    /// The path of `name` in the directory (which need not exist).
    pub fn file(&self, name: &str) -> String {
        self.path
            .join(name)
            .to_str()
            .expect("utf-8 path")
            .to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Starts a proxy (two workers, admin endpoint, plain listener `cli`) with one TLS listener
/// serving `certs` (cert, key paths) in front of `upstreams`, plus `extra` flags; returns it
/// with the TLS listener's address.
pub fn start_tls_proxy(
    upstreams: &[SocketAddr],
    certs: &[&(String, String)],
    extra: &[&str],
) -> (Proxy, SocketAddr) {
    let mut args = vec!["--listen-tls", "127.0.0.1:0"];
    for (cert, key) in certs {
        args.extend(["--tls-cert", cert.as_str(), "--tls-key", key.as_str()]);
    }
    args.extend_from_slice(extra);
    let proxy = Proxy::start(upstreams, &args);
    let addr = proxy.listener("cli-tls");
    (proxy, addr)
}

/// Options for a [`TlsClient`] connection.
pub struct ClientOpts<'a> {
    /// Trusted roots.
    pub roots: Vec<&'a Ca>,
    /// A client certificate to present when asked.
    pub cert: Option<&'a Issued>,
    /// Only TLS 1.2 (default: 1.3 and 1.2).
    pub tls12_only: bool,
}

impl<'a> ClientOpts<'a> {
    /// Trusting `ca`, no client certificate.
    pub fn trusting(ca: &'a Ca) -> ClientOpts<'a> {
        ClientOpts {
            roots: vec![ca],
            cert: None,
            tls12_only: false,
        }
    }

    /// The same, presenting `cert`.
    pub fn with_cert(mut self, cert: &'a Issued) -> ClientOpts<'a> {
        self.cert = Some(cert);
        self
    }
}

/// One client-side TLS connection (its own config: no session is resumed, so the server's
/// certificate is always presented afresh).
pub struct TlsClient {
    /// The TLS stream.
    pub stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl TlsClient {
    /// Connects to `addr` and completes the handshake. `server_name` is sent as SNI and
    /// verified; an IP address sends no SNI.
    pub fn connect(
        addr: SocketAddr,
        server_name: &str,
        opts: &ClientOpts<'_>,
    ) -> Result<TlsClient, String> {
        let mut roots = rustls::RootCertStore::empty();
        for ca in &opts.roots {
            roots.add(ca.cert.der().clone()).expect("add a root");
        }
        let versions: &[&rustls::SupportedProtocolVersion] = if opts.tls12_only {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .expect("protocol versions")
            .with_root_certificates(roots);
        let mut config = match opts.cert {
            Some(c) => builder
                .with_client_auth_cert(c.chain.clone(), c.key())
                .expect("client certificate"),
            None => builder.with_no_client_auth(),
        };
        config.resumption = rustls::client::Resumption::disabled();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = ServerName::try_from(server_name.to_owned()).expect("server name");
        let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client conn");
        let sock = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        sock.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        sock.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let _ = sock.set_nodelay(true);
        let mut stream = rustls::StreamOwned::new(conn, sock);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(|e| format!("TLS handshake with {addr} ({server_name}): {e}"))?;
        }
        Ok(TlsClient {
            stream,
            buf: Vec::new(),
        })
    }

    /// The certificate the server presented (the leaf).
    pub fn peer_cert(&self) -> CertificateDer<'static> {
        self.stream
            .conn
            .peer_certificates()
            .expect("a server certificate")[0]
            .clone()
    }

    /// Writes `data`.
    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.stream.write_all(data)?;
        self.stream.flush()
    }

    /// Sends `raw` and reads one response; `Err` says what went wrong (a refused client
    /// certificate shows up here under TLS 1.3).
    pub fn try_request(&mut self, raw: &str) -> Result<Response, String> {
        self.send(raw.as_bytes())
            .map_err(|e| format!("writing the request: {e}"))?;
        read_response(&mut self.stream, &mut self.buf)
            .map_err(|e| format!("reading the response: {e}"))
    }

    /// Sends `raw` and reads one response; panics on failure.
    pub fn request(&mut self, raw: &str) -> Response {
        self.try_request(raw)
            .unwrap_or_else(|e| panic!("request {raw:?}: {e}"))
    }

    /// Reads the next response (bytes past it stay buffered).
    pub fn read_response(&mut self) -> io::Result<Response> {
        read_response(&mut self.stream, &mut self.buf)
    }

    /// Reads exactly `n` bytes (those already buffered first).
    pub fn read_bytes(&mut self, n: usize) -> io::Result<Vec<u8>> {
        read_exact(&mut self.stream, &mut self.buf, n)
    }

    /// Reads until the server ends the TLS session with `close_notify`, returning what came
    /// (buffered bytes first). `Err` if the connection ends without one (a truncation the
    /// client could not tell from the real end), or is still open after `within`.
    pub fn read_to_close_notify(&mut self, within: Duration) -> Result<Vec<u8>, String> {
        let deadline = Instant::now() + within;
        let mut got = std::mem::take(&mut self.buf);
        let mut chunk = [0u8; 16384];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("still open after {within:?}"));
            }
            self.stream
                .sock
                .set_read_timeout(Some(left))
                .expect("set read timeout");
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(got),
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    return Err(format!(
                        "ended without close_notify after {} bytes: {e}",
                        got.len()
                    ))
                }
            }
        }
    }
}

/// One connection and one `GET path` (Host `server_name`, `Connection: close`).
pub fn tls_get(
    addr: SocketAddr,
    server_name: &str,
    opts: &ClientOpts<'_>,
    path: &str,
) -> Result<Response, String> {
    let mut c = TlsClient::connect(addr, server_name, opts)?;
    c.try_request(&format!(
        "GET {path} HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n"
    ))
}

/// Reads one response (no interim responses expected; 101 and 1xx end at the head).
pub fn read_response(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Response> {
    let head = read_head(r, buf)?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default().to_owned();
    let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad status line {status_line:?}"),
        )
    })?;
    let mut r2 = Response {
        version,
        status,
        headers: parse_fields(lines),
        body: Vec::new(),
        chunked: false,
        trailers: Vec::new(),
        interim: Vec::new(),
    };
    if status < 200 || status == 204 || status == 304 {
        return Ok(r2);
    }
    let te = r2.header("transfer-encoding").map(str::to_ascii_lowercase);
    if te.is_some_and(|t| t.contains("chunked")) {
        (r2.body, r2.trailers) = read_chunked(r, buf)?;
        r2.chunked = true;
    } else if let Some(len) = r2.header("content-length") {
        let len: usize = len.trim().parse().unwrap_or(0);
        r2.body = read_exact(r, buf, len)?;
    } else {
        let mut chunk = [0u8; 16384];
        loop {
            match r.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            }
        }
        r2.body = std::mem::take(buf);
    }
    Ok(r2)
}

/// The first bytes a TLS client sends: a real ClientHello record (for `sni`).
pub fn client_hello(sni: &str) -> Vec<u8> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = ServerName::try_from(sni.to_owned()).expect("server name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client conn");
    let mut out = Vec::new();
    conn.write_tls(&mut out).expect("ClientHello");
    out
}

/// Runs `program args` with `stdin` written to it, killing it after `timeout`; returns its
/// output (stdout and stderr as lossy text, joined) and whether it exited successfully.
pub fn run_bounded(program: &str, args: &[&str], stdin: &[u8], timeout: Duration) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let deadline = Instant::now() + timeout;
    while child.try_wait().expect("poll child").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = writer.join();
    child.wait_with_output().expect("collect output")
}

/// `openssl s_client -connect addr ARGS` with `stdin` (an empty stdin ends the session right
/// after the handshake); returns stdout and stderr together.
pub fn s_client(addr: SocketAddr, args: &[&str], stdin: &[u8]) -> String {
    let connect = addr.to_string();
    let mut all = vec!["s_client", "-connect", connect.as_str()];
    all.extend_from_slice(args);
    let out = run_bounded("openssl", &all, stdin, Duration::from_secs(10));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The subject `openssl s_client` prints for the server's certificate (its `subject=` line),
/// spelled `CN=a.test, O=Ringway tests` whichever OpenSSL version printed it.
pub fn s_client_subject(out: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.strip_prefix("subject="))
        .map(|s| s.replace(" = ", "="))
}

struct UpstreamShared {
    name: String,
    handshakes: AtomicUsize,
    requests: AtomicUsize,
    client_certs: Mutex<Vec<CertificateDer<'static>>>,
    stop: AtomicBool,
}

/// An HTTPS upstream: rustls on std threads, one per connection, keep-alive. Every request
/// gets 200 with body `<name> over TLS: <METHOD> <path>; client certificate: yes|no`; a path
/// starting `/hsts` also gets `Strict-Transport-Security: max-age=60; upstream`.
pub struct TlsUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<UpstreamShared>,
}

impl TlsUpstream {
    /// Serves `cert`; with `client_ca`, asks for (but does not require) client certificates
    /// signed by it.
    pub fn start(name: &str, cert: &Issued, client_ca: Option<&Ca>) -> TlsUpstream {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions");
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca.cert.der().clone()).expect("client CA");
                let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider(),
                )
                .allow_unauthenticated()
                .build()
                .expect("client verifier");
                builder.with_client_cert_verifier(v)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(cert.chain.clone(), cert.key())
            .expect("upstream certificate");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the TLS upstream");
        let addr = listener.local_addr().expect("address");
        let shared = Arc::new(UpstreamShared {
            name: name.to_owned(),
            handshakes: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            client_certs: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (s, config) = (s.clone(), config.clone());
                std::thread::spawn(move || {
                    let _ = serve_tls(conn, config, &s);
                });
            }
        });
        TlsUpstream { addr, shared }
    }

    /// TLS handshakes completed so far.
    pub fn handshakes(&self) -> usize {
        self.shared.handshakes.load(Ordering::SeqCst)
    }

    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// The client certificates (leaves) presented so far.
    pub fn client_certs(&self) -> Vec<CertificateDer<'static>> {
        self.shared
            .client_certs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn serve_tls(
    sock: TcpStream,
    config: Arc<rustls::ServerConfig>,
    shared: &UpstreamShared,
) -> io::Result<()> {
    sock.set_read_timeout(Some(Duration::from_secs(30)))?;
    sock.set_write_timeout(Some(Duration::from_secs(30)))?;
    let conn = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
    let mut s = rustls::StreamOwned::new(conn, sock);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    shared.handshakes.fetch_add(1, Ordering::SeqCst);
    let client_cert = s.conn.peer_certificates().map(|c| c[0].clone());
    if let Some(c) = &client_cert {
        shared
            .client_certs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(c.clone());
    }
    let mut buf = Vec::new();
    loop {
        let head = match read_head(&mut s, &mut buf) {
            Ok(h) => h,
            Err(_) => return Ok(()),
        };
        let mut lines = head.split("\r\n");
        let line = lines.next().unwrap_or_default().to_owned();
        let fields = parse_fields(lines);
        let field = |n: &str| {
            fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.to_ascii_lowercase())
        };
        let len = field("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        read_exact(&mut s, &mut buf, len)?;
        shared.requests.fetch_add(1, Ordering::SeqCst);
        let mut parts = line.split(' ');
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let body = format!(
            "{} over TLS: {method} {path}; client certificate: {}",
            shared.name,
            if client_cert.is_some() { "yes" } else { "no" }
        );
        let close = field("connection").is_some_and(|v| v.contains("close"));
        let mut head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Upstream: {}\r\n",
            body.len(),
            shared.name
        );
        if path.starts_with("/hsts") {
            head.push_str("Strict-Transport-Security: max-age=60; upstream\r\n");
        }
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes())?;
        s.write_all(body.as_bytes())?;
        s.flush()?;
        if close {
            s.conn.send_close_notify();
            let _ = s.conn.complete_io(&mut s.sock);
            return Ok(());
        }
    }
}

/// A CA and a certificate for `localhost` and 127.0.0.1, written to `dir`.
pub fn localhost_site(dir: &TempDir) -> (Ca, (String, String)) {
    let ca = Ca::new("Ringway Test CA");
    let site = ca
        .server("localhost", &["localhost", "127.0.0.1"])
        .write(dir, "localhost");
    (ca, site)
}

/// `curl` over HTTPS to `https://NAME:PORT/path` resolved to `addr`, trusting `ca_pem`.
pub fn curl_https(
    addr: SocketAddr,
    name: &str,
    path: &str,
    ca_pem: &str,
    extra: &[&str],
) -> CmdOutput {
    let resolve = format!("{name}:{}:{}", addr.port(), addr.ip());
    let url = format!("https://{name}:{}{path}", addr.port());
    let mut args = vec!["-sS", "--cacert", ca_pem, "--resolve", &resolve];
    args.extend_from_slice(extra);
    args.push(&url);
    let out = curl(&args);
    CmdOutput {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A finished command's output, as text.
pub struct CmdOutput {
    /// Exit status 0.
    pub ok: bool,
    /// The exit code.
    pub code: Option<i32>,
    /// Standard output, lossy.
    pub stdout: String,
    /// Standard error, lossy.
    pub stderr: String,
}

/// The header lines named `name` (case-insensitive) in a request head echoed by `/headers`.
pub fn field_lines<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    head.lines()
        .filter(|l| l.to_ascii_lowercase().starts_with(&prefix))
        .collect()
}

/// A per-worker series, e.g. `name{worker="all"}`.
pub fn series(name: &str, worker: &str) -> String {
    format!("{name}{{worker=\"{worker}\"}}")
}
