//! Answers the proxy gives on its own in an HTTP/1 exchange (a request refused before any
//! upstream, a 502 for an upstream answer that cannot be forwarded), the access-log line of an
//! exchange, and the per-host checks of a TLS client connection (421 for a misdirected request,
//! the client-certificate identity sent upstream, HSTS).

use super::exchange::Request;
use super::{Client, ClientTls, Next};
use crate::access_log::AccessRecord;
use crate::worker::WorkerCtx;
use proxy_core::config::Config;
use proxy_core::http1::BodyFraming;
use proxy_core::Status;
use std::time::Instant;

impl ClientTls {
    /// Whether a request for `host` must be refused with 421 on this TLS connection: its
    /// listener's hosts differ in client-certificate policy, and `host` is not the name the
    /// connection was negotiated for (or, without SNI, is served under another policy).
    pub(super) fn misdirected(&self, host: Option<&[u8]>) -> bool {
        let Some(hs) = &self.handshake else {
            return false;
        };
        if !self.listener.shared.host_check() {
            return false;
        }
        let Some(host) = host.and_then(|h| std::str::from_utf8(h).ok()) else {
            return false;
        };
        let host = host.trim_end_matches('.');
        match &hs.sni {
            Some(sni) => !sni.eq_ignore_ascii_case(host),
            None => self
                .listener
                .shared
                .policy_for_host(host)
                .is_some_and(|p| p != hs.policy),
        }
    }

    /// The request field that carries the verified client certificate's subject upstream
    /// (its name, and the subject if a certificate was presented), when configured.
    pub(super) fn identity(&self) -> Option<(&[u8], Option<&[u8]>)> {
        let name = self
            .listener
            .shared
            .settings()
            .client_subject_header
            .as_ref()?;
        let subject = self.handshake.as_ref().and_then(|h| h.subject.as_deref());
        Some((name.as_bytes(), subject))
    }

    /// The `Strict-Transport-Security` value to add to responses, when configured.
    pub(super) fn hsts(&self) -> Option<&str> {
        self.listener.shared.settings().hsts.as_deref()
    }
}

impl Client {
    /// Answers 502 for an upstream response that cannot be forwarded (an unrequested upgrade,
    /// broken chunking) and closes: the upstream's bytes can no longer be trusted to frame.
    pub(super) async fn bad_upstream_answer(
        &mut self,
        ctx: &WorkerCtx,
        cfg: &Config,
        started: Instant,
        up: usize,
    ) -> Next {
        ctx.stats.upstream_errors.inc();
        let sent = self.send_status(ctx, cfg, Status::BadGateway, true).await;
        self.log(ctx, 502, sent, started, Some(up));
        Next::Close
    }

    /// Answers a request that never reached an upstream (no route, too large, no endpoint).
    /// Its body, if any, was not read, so the connection can only stay open without one.
    pub(super) async fn answer_early(
        &mut self,
        ctx: &WorkerCtx,
        cfg: &Config,
        mut cbuf: Vec<u8>,
        req: &Request,
        status: Status,
        started: Instant,
    ) -> Next {
        let close = req.framing != BodyFraming::None || !req.keep_alive || ctx.drain.is_fired();
        if !close {
            cbuf.drain(..req.head_len);
        }
        self.buf = Some(cbuf);
        let sent = self.send_status(ctx, cfg, status, close).await;
        self.log(ctx, status.code(), sent, started, None);
        if close {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }

    /// Whether a request for `host` must be refused with 421 (see [`ClientTls::misdirected`]).
    pub(super) fn misdirected(&self, host: Option<&[u8]>) -> bool {
        self.tls.as_ref().is_some_and(|t| t.misdirected(host))
    }

    pub(super) fn log(
        &self,
        ctx: &WorkerCtx,
        status: u16,
        bytes: u64,
        started: Instant,
        upstream: Option<usize>,
    ) {
        if ctx.access_log.is_none() {
            return;
        }
        ctx.log_access(&AccessRecord {
            client_ip: self.ip.as_bytes(),
            request_line: if self.request_line.is_empty() {
                b"-"
            } else {
                &self.request_line
            },
            status,
            bytes,
            latency: started.elapsed(),
            upstream: upstream.map(|id| ctx.endpoint_authority(id)),
            conn: self.id,
        });
    }
}
