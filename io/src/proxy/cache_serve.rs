//! Writing a stored response to an HTTP/1 client: the head made for this client, then the body
//! straight from the stored bytes.

use super::cached::Hit;
use super::{Client, Next};
use crate::worker::WorkerCtx;
use proxy_core::config::Config;
use proxy_core::http1::Version;

impl Client {
    /// Answers the request `req` with the stored response `hit`.
    pub(super) async fn serve_hit(
        &mut self,
        ctx: &WorkerCtx,
        cfg: &Config,
        req: &super::exchange::Request,
        hit: &Hit,
        started: std::time::Instant,
    ) -> Next {
        let close = !req.keep_alive || ctx.drain.is_fired();
        let Some(sent) = self.write_hit(ctx, cfg, hit, close, req.version).await else {
            return Next::Close;
        };
        ctx.stats.count_response(hit.code());
        self.log(ctx, hit.code(), sent, started, None);
        if close {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }

    /// Writes the stored response `hit`: a small body in the same write as the head, a larger
    /// one straight from the stored bytes (no copy). Returns the bytes written, or `None` if
    /// the client went away.
    pub(super) async fn write_hit(
        &mut self,
        ctx: &WorkerCtx,
        cfg: &Config,
        hit: &Hit,
        close: bool,
        version: Version,
    ) -> Option<u64> {
        let mut out = ctx.buffers.take();
        hit.write_head(close, version, &mut out);
        if let Some(v) = self.tls.as_ref().and_then(|t| t.hsts()) {
            if proxy_core::cache::head::field(&out, b"strict-transport-security").is_none() {
                proxy_core::cache::head::insert_field(
                    &mut out,
                    b"Strict-Transport-Security",
                    v.as_bytes(),
                );
            }
        }
        let body = hit.body();
        let inline = body
            .as_ref()
            .is_some_and(|b| b.len() <= INLINE_BODY && b.len() <= out.capacity() - out.len());
        if inline {
            if let Some(b) = &body {
                out.extend_from_slice(b);
            }
        }
        let (res, out) = self.io.write_all(out, cfg.timeouts.idle).await;
        let mut sent = out.len() as u64;
        ctx.buffers.give(out);
        res.ok()?;
        if let (Some(b), false) = (body, inline) {
            let n = b.len() as u64;
            let (res, _) = self.io.write_all(b, cfg.timeouts.idle).await;
            res.ok()?;
            sent += n;
        }
        Some(sent)
    }

    /// How the connection goes on after a background refresh (its client was answered before).
    pub(super) fn after_refresh(&self, req: &super::exchange::Request, ctx: &WorkerCtx) -> Next {
        if !req.keep_alive || ctx.drain.is_fired() {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }
}

/// Bodies up to this size are copied into the head's write (one syscall beats one copy).
const INLINE_BODY: usize = 16 * 1024;
