//! Serving a stored response on an HTTP/2 stream: the head the cache writes for an HTTP/1.1
//! client, turned into HTTP/2 fields as an upstream head would be, and the body handed to the
//! stream as the stored `Bytes` (no copy).

use super::stream::{Outcome, Stream};
use crate::proxy::cached::Hit;
use proxy_core::config::Endpoint;
use proxy_core::http1::{parse_response, BodyFraming, Version};

impl Stream {
    /// Answers the stream with the stored response `hit`.
    pub(super) fn serve_hit(&mut self, hit: &Hit, ep: Option<&Endpoint>) {
        let mut head = self.ctx.buffers.take();
        hit.write_head(false, Version::Http11, &mut head);
        let body = hit.body();
        let mut outcome = Outcome {
            status: hit.code(),
            bytes: 0,
        };
        if let Ok(Some(parsed)) = parse_response(&head) {
            let framing = match &body {
                Some(b) => BodyFraming::Length(b.len() as u64),
                None => BodyFraming::None,
            };
            let response = self.response(&head, &parsed, framing, hit.head_only);
            if let Ok(mut send) = self.respond.send_response(response, body.is_none()) {
                if let Some(b) = body {
                    let n = b.len() as u64;
                    if send.send_data(b, true).is_ok() {
                        outcome.bytes = n;
                    }
                }
            }
        }
        self.ctx.buffers.give(head);
        self.ctx.stats.count_response(outcome.status);
        self.log(&outcome, ep);
    }
}
