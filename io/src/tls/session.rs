//! A rustls session driven over Ringway's own socket I/O: ciphertext is read into a scratch
//! buffer owned here, fed to rustls, and the plaintext is copied into the caller's buffer; what
//! rustls wants to send is gathered into a second scratch buffer and written in one operation.
//!
//! Both scratch buffers exist only while the connection is busy: [`TlsSession::release`] drops
//! them when the connection parks, so an idle TLS connection holds rustls' own state and nothing
//! else. This is the seam that a kernel-TLS or unbuffered-rustls driver would replace.

use std::io::{self, BufRead as _, Write as _};

/// Ciphertext read per socket read: one full TLS record plus its header and tag.
pub(crate) const READ_CHUNK: usize = 16 * 1024 + 256;

/// A TLS session and its scratch buffers.
pub(crate) struct TlsSession {
    pub(crate) conn: rustls::Connection,
    /// Ciphertext read from the socket; `inbuf[fed..]` is not yet handed to rustls.
    pub(crate) inbuf: Vec<u8>,
    pub(crate) fed: usize,
    /// Ciphertext on its way to the socket.
    pub(crate) out: Vec<u8>,
    /// Plaintext rustls holds that the caller has not taken.
    plain: usize,
    /// The peer sent close_notify or closed the socket.
    pub(crate) closed: bool,
}

/// What [`TlsSession::take_plaintext`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Plain {
    /// This many bytes were appended.
    Data(usize),
    /// The peer closed the TLS session (or the socket) and everything was delivered.
    Eof,
    /// Nothing decrypted yet.
    Empty,
}

impl TlsSession {
    /// Wraps a connection; `inbuf` may already hold ciphertext (bytes that arrived with the
    /// ClientHello).
    pub(crate) fn new(conn: rustls::Connection, inbuf: Vec<u8>, fed: usize) -> TlsSession {
        TlsSession {
            conn,
            inbuf,
            fed,
            out: Vec::new(),
            plain: 0,
            closed: false,
        }
    }

    /// Whether a read would find something without touching the socket.
    pub(crate) fn has_buffered(&self) -> bool {
        self.plain > 0 || self.fed < self.inbuf.len()
    }

    /// Frees the scratch buffers when nothing is left in them (the connection is going idle).
    pub(crate) fn release(&mut self) {
        if self.fed >= self.inbuf.len() {
            self.inbuf = Vec::new();
            self.fed = 0;
        }
        self.out = Vec::new();
    }

    /// Appends decrypted bytes to `buf`, up to its capacity.
    pub(crate) fn take_plaintext(&mut self, buf: &mut Vec<u8>) -> Plain {
        let mut got = 0;
        let mut reader = self.conn.reader();
        while buf.len() < buf.capacity() {
            match reader.fill_buf() {
                Ok([]) => {
                    self.plain = 0;
                    return if got > 0 {
                        Plain::Data(got)
                    } else {
                        Plain::Eof
                    };
                }
                Ok(chunk) => {
                    let n = chunk.len().min(buf.capacity() - buf.len());
                    buf.extend_from_slice(&chunk[..n]);
                    reader.consume(n);
                    got += n;
                    self.plain = self.plain.saturating_sub(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.plain = 0;
                    break;
                }
                // The socket closed without close_notify: an end all the same (HTTP framing
                // decides whether anything was cut short).
                Err(_) => {
                    self.plain = 0;
                    return if got > 0 {
                        Plain::Data(got)
                    } else {
                        Plain::Eof
                    };
                }
            }
        }
        if got > 0 {
            Plain::Data(got)
        } else if self.closed && self.fed >= self.inbuf.len() {
            Plain::Eof
        } else {
            Plain::Empty
        }
    }

    /// Hands buffered ciphertext to rustls and processes it. Returns whether any was taken.
    /// rustls stops taking when its plaintext buffer is full; the rest waits in `inbuf`.
    pub(crate) fn feed(&mut self) -> Result<bool, rustls::Error> {
        let mut progress = false;
        while self.fed < self.inbuf.len() {
            let mut rest = &self.inbuf[self.fed..];
            match self.conn.read_tls(&mut rest) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    self.fed += n;
                    progress = true;
                }
            }
            let state = self.conn.process_new_packets()?;
            self.plain = state.plaintext_bytes_to_read();
            if state.peer_has_closed() {
                self.closed = true;
            }
        }
        if self.fed >= self.inbuf.len() {
            self.inbuf.clear();
            self.fed = 0;
        }
        Ok(progress)
    }

    /// Makes room in `inbuf` for a socket read and returns it (cleared of fed bytes).
    pub(crate) fn take_inbuf(&mut self) -> Vec<u8> {
        let mut b = std::mem::take(&mut self.inbuf);
        if self.fed > 0 {
            b.drain(..self.fed);
            self.fed = 0;
        }
        if b.capacity() < READ_CHUNK {
            b.reserve_exact(READ_CHUNK - b.len());
        }
        b
    }

    /// Gathers everything rustls wants to send into `out` and returns it (empty if nothing).
    pub(crate) fn take_output(&mut self) -> io::Result<Vec<u8>> {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        while self.conn.wants_write() {
            self.conn.write_tls(&mut out)?;
        }
        Ok(out)
    }

    /// Encrypts as much of `plain` as rustls will buffer; returns how much it took.
    pub(crate) fn encrypt(&mut self, plain: &[u8]) -> io::Result<usize> {
        self.conn.writer().write(plain)
    }
}

/// Turns a rustls error into an I/O error that says it was TLS.
pub(crate) fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use std::sync::Arc;

    /// A server session and a client session that trusts it, in memory.
    fn pair() -> (TlsSession, rustls::ClientConnection) {
        let provider = crate::tls::provider();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.test".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = CertificateDer::from(cert.der().to_vec());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server = rustls::ServerConnection::new(Arc::new(server)).unwrap();
        let client = rustls::ClientConnection::new(
            Arc::new(client),
            ServerName::try_from("a.test").unwrap(),
        )
        .unwrap();
        (
            TlsSession::new(rustls::Connection::Server(server), Vec::new(), 0),
            client,
        )
    }

    /// Moves bytes between the two sides until neither has anything to send, feeding the
    /// server `step` bytes at a time.
    fn pump(server: &mut TlsSession, client: &mut rustls::ClientConnection, step: usize) {
        for _ in 0..10_000 {
            let mut to_server = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut to_server).unwrap();
            }
            for piece in to_server.chunks(step) {
                server.inbuf.extend_from_slice(piece);
                server.feed().unwrap();
            }
            let to_client = server.take_output().unwrap();
            let moved = !to_server.is_empty() || !to_client.is_empty();
            let mut rd = &to_client[..];
            while !rd.is_empty() {
                client.read_tls(&mut rd).unwrap();
                client.process_new_packets().unwrap();
            }
            server.out = to_client;
            if !moved {
                return;
            }
        }
        panic!("the sessions never went quiet");
    }

    #[test]
    fn ciphertext_split_at_every_byte_yields_the_same_plaintext() {
        let message: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        for step in [1, 7, 4096, usize::MAX] {
            let (mut server, mut client) = pair();
            pump(&mut server, &mut client, step);
            assert!(!server.conn.is_handshaking() && !client.is_handshaking());
            client.writer().write_all(&message).unwrap();
            let mut got = Vec::new();
            let mut buf = Vec::with_capacity(5000);
            let mut to_server = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut to_server).unwrap();
            }
            let mut pieces = to_server.chunks(step.min(to_server.len()));
            loop {
                // A small caller buffer: plaintext larger than it comes out in pieces, the
                // rest staying in rustls (and undelivered ciphertext in `inbuf`).
                match server.take_plaintext(&mut buf) {
                    Plain::Data(_) => {
                        got.extend_from_slice(&buf);
                        buf.clear();
                        continue;
                    }
                    Plain::Eof => panic!("no close was sent"),
                    Plain::Empty => {}
                }
                if server.feed().unwrap() {
                    continue;
                }
                let Some(p) = pieces.next() else { break };
                server.inbuf.extend_from_slice(p);
            }
            assert_eq!(got.len(), message.len(), "step {step}");
            assert!(got == message, "step {step}: plaintext differs");
            assert!(!server.has_buffered());
        }
    }

    #[test]
    fn close_notify_reads_as_the_end_and_release_frees_the_scratch_buffers() {
        let (mut server, mut client) = pair();
        pump(&mut server, &mut client, usize::MAX);
        client.writer().write_all(b"last words").unwrap();
        client.send_close_notify();
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        server.inbuf.extend_from_slice(&wire);
        server.feed().unwrap();
        let mut buf = Vec::with_capacity(64);
        assert_eq!(server.take_plaintext(&mut buf), Plain::Data(10));
        assert_eq!(buf, b"last words");
        assert_eq!(server.take_plaintext(&mut buf), Plain::Eof);
        server.out = Vec::with_capacity(1 << 14);
        server.release();
        assert_eq!(server.inbuf.capacity() + server.out.capacity(), 0);
    }
}
