//! The answers an HTTP/2 stream gets from the proxy itself: a stored response (the head the
//! cache writes for an HTTP/1.1 client, turned into HTTP/2 fields as an upstream head would
//! be, and the body handed to the stream as the stored `Bytes`, no copy), a status of its own
//! (refusals, upstream failures), and the access-log line of a stream.

use super::stream::{Outcome, Stream};
use crate::access_log::AccessRecord;
use crate::proxy::cached::Hit;
use bytes::Bytes;
use proxy_core::config::Endpoint;
use proxy_core::http1::{parse_response, BodyFraming, Version};
use proxy_core::Status;

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

    /// Answers the stream with Ringway's own response for `status`.
    pub(super) fn answer(&mut self, status: Status, ep: Option<&Endpoint>) {
        let outcome = self.answer_quietly(status);
        self.log(&outcome, ep);
    }

    /// Like [`Stream::answer`], leaving the access log to the caller.
    pub(super) fn answer_quietly(&mut self, status: Status) -> Outcome {
        let canned = status.response(false);
        let mut outcome = Outcome {
            status: status.code(),
            bytes: 0,
        };
        if let Ok(Some(head)) = parse_response(canned) {
            let body = &canned[head.head_len..];
            let framing = BodyFraming::Length(body.len() as u64);
            let resp = self.response(canned, &head, framing, false);
            if let Ok(mut send) = self.respond.send_response(resp, body.is_empty()) {
                if !body.is_empty() && send.send_data(Bytes::from_static(body), true).is_ok() {
                    outcome.bytes = body.len() as u64;
                }
            }
        }
        self.ctx.stats.count_response(status.code());
        if status.code() < 500 {
            self.ctx.stats.bad_requests.inc();
        }
        outcome
    }

    pub(super) fn log(&self, outcome: &Outcome, ep: Option<&Endpoint>) {
        if self.ctx.access_log.is_none() {
            return;
        }
        let conn = self.live.conn();
        self.ctx.log_access(&AccessRecord {
            client_ip: conn.ip.as_bytes(),
            request_line: if self.request_line.is_empty() {
                b"-"
            } else {
                &self.request_line
            },
            status: outcome.status,
            bytes: outcome.bytes,
            latency: self.started.elapsed(),
            upstream: ep.map(|e| self.ctx.endpoint_authority(e.id)),
            conn: conn.id,
        });
    }
}
