//! Driving TLS handshakes on a [`Timed`] stream: the server side (reading the ClientHello first
//! to pick the rustls config its SNI calls for) and the client side towards upstreams.

use super::certs::subject_of;
use super::session::{tls_error, TlsSession};
use super::{UpstreamTlsConfig, WorkerTls};
use crate::stream::Timed;
use rustls::server::Acceptor;
use rustls::{ClientConnection, Connection, HandshakeKind};
use std::io;
use std::time::{Duration, Instant};

/// What a finished server handshake established.
#[derive(Debug)]
pub(crate) struct Handshake {
    /// The SNI the client sent, lowercase.
    pub(crate) sni: Option<Box<str>>,
    /// The client-certificate policy (index) of the certificate served.
    pub(crate) policy: usize,
    /// The verified client certificate's subject, if one was presented.
    pub(crate) subject: Option<Box<[u8]>>,
    /// The session was resumed (ticket or session ID).
    pub(crate) resumed: bool,
    /// ALPN chose HTTP/2.
    pub(crate) h2: bool,
}

/// Why a server handshake did not complete.
#[derive(Debug)]
pub(crate) enum AcceptFail {
    /// The client spoke plain HTTP to the TLS port.
    PlainHttp,
    /// The client closed, or sent something that is not TLS at all.
    Closed,
    /// The handshake took longer than allowed.
    Timeout,
    /// TLS failed (bad message, no shared protocol, unknown SNI, bad client certificate); an
    /// alert was sent.
    Tls(String),
}

/// The read buffer while waiting for a ClientHello.
const HELLO_BUFFER: usize = 4096;

/// A fatal `unrecognized_name` alert record (TLS 1.2 record version, as TLS 1.3 also uses).
const UNRECOGNIZED_NAME: [u8; 7] = [21, 3, 3, 0, 2, 2, 112];

/// Time allowed to send an alert before closing.
const ALERT_TIMEOUT: Duration = Duration::from_secs(1);

impl Timed {
    /// Performs the server side of a TLS handshake on a plain stream, leaving it a TLS stream.
    pub(crate) async fn accept_tls(
        &mut self,
        tls: &WorkerTls,
        deadline: Instant,
    ) -> Result<Handshake, AcceptFail> {
        let mut acceptor = Acceptor::default();
        // A ClientHello fits in 4 KiB (one with a post-quantum key share is about 1.8 KiB), so a
        // client that stalls mid-handshake holds that much, not a full record's buffer.
        let mut inbuf = Vec::with_capacity(HELLO_BUFFER);
        let mut fed = 0;
        let mut first = true;
        let accepted = loop {
            if fed == inbuf.len() {
                inbuf.clear();
                fed = 0;
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(AcceptFail::Timeout);
                }
                let (res, b) = self.read_raw(inbuf, left).await;
                inbuf = b;
                match res {
                    Ok(0) => return Err(AcceptFail::Closed),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                        return Err(AcceptFail::Timeout)
                    }
                    Err(_) => return Err(AcceptFail::Closed),
                }
                // 22 is a TLS handshake record; an uppercase letter starts an HTTP method.
                if std::mem::take(&mut first) && inbuf.first() != Some(&22) {
                    return Err(if inbuf[0].is_ascii_uppercase() {
                        AcceptFail::PlainHttp
                    } else {
                        AcceptFail::Closed
                    });
                }
            }
            let mut rest = &inbuf[fed..];
            match acceptor.read_tls(&mut rest) {
                Ok(n) => fed += n,
                Err(e) => return Err(AcceptFail::Tls(e.to_string())),
            }
            match acceptor.accept() {
                Ok(Some(a)) => break a,
                Ok(None) => {}
                Err((e, mut alert)) => {
                    let mut out = Vec::new();
                    let _ = alert.write_all(&mut out);
                    self.send_raw(out).await;
                    return Err(AcceptFail::Tls(e.to_string()));
                }
            }
        };
        let sni = accepted
            .client_hello()
            .server_name()
            .map(|s| s.to_ascii_lowercase().into_boxed_str());
        let entry = tls.shared.resolver.current.load().lookup(sni.as_deref());
        let Some(entry) = entry else {
            // Strict SNI and no certificate for the name: say so (RFC 6066 §3). Nothing is
            // encrypted yet, so the alert is a plain record.
            self.send_raw(UNRECOGNIZED_NAME.to_vec()).await;
            return Err(AcceptFail::Tls(format!(
                "no certificate for server name {:?}",
                sni.as_deref().unwrap_or("(none sent)")
            )));
        };
        let policy = tls.shared.cert_policy[entry];
        let conn = match accepted.into_connection(tls.configs[policy].clone()) {
            Ok(c) => c,
            Err((e, mut alert)) => {
                let mut out = Vec::new();
                let _ = alert.write_all(&mut out);
                self.send_raw(out).await;
                return Err(AcceptFail::Tls(e.to_string()));
            }
        };
        self.tls = Some(Box::new(TlsSession::new(
            Connection::Server(conn),
            inbuf,
            fed,
        )));
        match self.finish_handshake(deadline).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(AcceptFail::Timeout),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(AcceptFail::Tls(e.to_string()))
            }
            Err(_) => return Err(AcceptFail::Closed),
        }
        let Some(session) = &self.tls else {
            return Err(AcceptFail::Closed);
        };
        let subject = session
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| subject_of(c))
            .map(|s| s.into_bytes().into_boxed_slice());
        Ok(Handshake {
            sni,
            policy,
            subject,
            resumed: session.conn.handshake_kind() == Some(HandshakeKind::Resumed),
            h2: session.conn.alpn_protocol() == Some(b"h2"),
        })
    }

    /// Performs the client side of a TLS handshake towards an upstream.
    pub(crate) async fn connect_tls(
        &mut self,
        cfg: &UpstreamTlsConfig,
        deadline: Instant,
    ) -> io::Result<()> {
        let conn =
            ClientConnection::new(cfg.config.clone(), cfg.name.clone()).map_err(tls_error)?;
        self.tls = Some(Box::new(TlsSession::new(
            Connection::Client(conn),
            Vec::new(),
            0,
        )));
        self.finish_handshake(deadline).await
    }

    /// Exchanges handshake messages until rustls says the handshake is over, then sends what
    /// it queued after it (session tickets).
    async fn finish_handshake(&mut self, deadline: Instant) -> io::Result<()> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "TLS handshake timed out",
                ));
            }
            let Some(session) = self.tls.as_mut() else {
                return Err(io::Error::other("not a TLS stream"));
            };
            if let Err(e) = session.feed() {
                // The alert rustls queued tells the peer why.
                let _ = self.flush_tls(ALERT_TIMEOUT).await;
                return Err(tls_error(e));
            }
            self.flush_tls(left).await?;
            let Some(session) = self.tls.as_mut() else {
                return Err(io::Error::other("not a TLS stream"));
            };
            if !session.conn.is_handshaking() {
                return Ok(());
            }
            if session.closed {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let inbuf = session.take_inbuf();
            let (res, inbuf) = self.read_raw(inbuf, left).await;
            let Some(session) = self.tls.as_mut() else {
                return Err(io::Error::other("not a TLS stream"));
            };
            session.inbuf = inbuf;
            if res? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed during the TLS handshake",
                ));
            }
        }
    }

    /// Best-effort write of an alert before closing.
    async fn send_raw(&mut self, out: Vec<u8>) {
        if !out.is_empty() {
            let tls = self.tls.take();
            let _ = self.write_all(out, ALERT_TIMEOUT).await;
            self.tls = tls;
        }
    }
}
