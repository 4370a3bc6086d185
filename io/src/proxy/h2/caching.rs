//! The cache's steps around an HTTP/2 stream's upstream exchange: before it, answer from a
//! stale entry first (stale-while-revalidate) or wait for another stream's fetch of the same
//! URL on this worker (coalescing); after it, when the client already has its answer, read the
//! refreshed response into the store only.

use super::stream::{Plan, Stream};
use crate::cache::FetchGuard;
use crate::proxy::body::BodyTracker;
use crate::proxy::cache_fill::{self, Capture};
use crate::proxy::cached;
use crate::stream::Timed;
use crate::worker::WorkerCtx;
use proxy_core::config::Config;

/// How a stream goes on after the cache's first step.
pub(super) enum Before<'a> {
    /// Forward; the guard (if any) makes other streams for the URL wait; with `refresh_only`
    /// the client already has a stale answer and the exchange only refreshes the entry.
    Forward {
        fetch: Option<FetchGuard<'a>>,
        refresh_only: bool,
    },
    /// The stream was answered from the cache.
    Answered,
}

impl Stream {
    /// The cache's step before forwarding `plan`.
    pub(super) async fn cache_before<'a>(
        &mut self,
        ctx: &'a WorkerCtx,
        cfg: &Config,
        plan: &mut Plan,
    ) -> Before<'a> {
        let (route, enc) = (plan.accel.compress_route, plan.accel.compress);
        let Some(creq) = plan.accel.cache.as_mut() else {
            return Before::Forward {
                fetch: None,
                refresh_only: false,
            };
        };
        if creq.stale_first {
            if let Some((_, entry)) = &creq.stored {
                let hit = cache_fill::stale(creq, entry.clone(), cached::now_secs());
                ctx.stats.cache_stale.inc();
                self.serve_hit(&hit, None);
                // One refresh per URL and worker: if one is under way, this stream is done.
                return match ctx.cache.begin_fetch(creq.id, &creq.key) {
                    Ok(guard) => Before::Forward {
                        fetch: Some(guard),
                        refresh_only: true,
                    },
                    Err(_) => Before::Answered,
                };
            }
        }
        if creq.stored.is_some() {
            return Before::Forward {
                fetch: None,
                refresh_only: false,
            };
        }
        match ctx.cache.begin_fetch(creq.id, &creq.key) {
            Ok(guard) => Before::Forward {
                fetch: Some(guard),
                refresh_only: false,
            },
            Err(gate) => {
                let waited = self
                    .unless_reset(monoio::time::timeout(
                        cfg.timeouts.upstream_response,
                        gate.wait(),
                    ))
                    .await;
                if waited.is_none() {
                    return Before::Answered;
                }
                match cached::relookup(ctx, cfg, creq, route, enc) {
                    Some(hit) => {
                        self.serve_hit(&hit, None);
                        Before::Answered
                    }
                    None => Before::Forward {
                        fetch: None,
                        refresh_only: false,
                    },
                }
            }
        }
    }
}

/// Reads a refreshed response's body (its first bytes in `ubuf`, after the head) into the
/// store; nobody else waits for it. Returns whether the connection can be pooled.
pub(super) async fn refresh_body(
    ctx: &WorkerCtx,
    cfg: &Config,
    plan: &Plan,
    up: &mut Timed,
    ubuf: &mut Vec<u8>,
    mut tracker: BodyTracker,
    mut capture: Option<Box<Capture>>,
) -> bool {
    // A body that ends with the connection leaves nothing to pool.
    let until_close = matches!(tracker, BodyTracker::UntilClose);
    let read = cache_fill::read_into(
        up,
        ubuf,
        &mut tracker,
        &mut capture,
        cfg.timeouts.upstream_response,
    )
    .await;
    if let (Some(c), Some(creq), true) = (capture, plan.accel.cache.as_ref(), read.is_ok()) {
        c.finish(ctx, creq);
    }
    read.is_ok() && ubuf.is_empty() && !until_close
}
