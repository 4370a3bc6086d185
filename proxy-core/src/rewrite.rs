//! Header rewriting between client and upstream: the heads Ringway sends on, written into a
//! caller-owned buffer that is reused across requests (so steady state allocates nothing).
//!
//! Requests lose their hop-by-hop fields (Connection and every field it names, Keep-Alive,
//! Proxy-Connection, TE except `trailers`, Upgrade unless tunnelling, Transfer-Encoding, and
//! Expect, which the proxy answers itself) and gain X-Forwarded-For, X-Forwarded-Proto and Via as
//! configured. Chunked request bodies are re-framed by the I/O layer and their trailers dropped,
//! so the `Trailer` field announcing them goes too. Responses lose the same hop-by-hop fields and
//! say `Connection: close` when the client connection will close; their `Trailer` field and
//! trailers stay.

use crate::http1::{has_token, BodyFraming, RequestHead, ResponseHead, Version};

/// Which forwarding fields the proxy adds to requests; built once from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardPolicy {
    /// Append the client address to `X-Forwarded-For`.
    pub x_forwarded_for: bool,
    /// Replace `X-Forwarded-Proto` with the scheme the client used.
    pub x_forwarded_proto: bool,
    /// The pseudonym appended to `Via` (as `1.1 NAME`), or `None` to add no `Via`.
    pub via: Option<String>,
    /// Forward the client's `Host`; when false, `Host` names the upstream endpoint.
    pub preserve_host: bool,
}

impl Default for ForwardPolicy {
    fn default() -> Self {
        ForwardPolicy {
            x_forwarded_for: true,
            x_forwarded_proto: true,
            via: Some("ringway".to_owned()),
            preserve_host: true,
        }
    }
}

/// Per-request facts the request rewrite needs from the I/O layer.
#[derive(Debug, Clone, Copy)]
pub struct ForwardContext<'a> {
    /// The client's IP address in text form (no port).
    pub client_ip: &'a [u8],
    /// The scheme the client used: `http` or `https`.
    pub scheme: &'a [u8],
    /// The upstream endpoint as `ip:port`, used as `Host` when the policy does not preserve it.
    pub upstream_authority: &'a [u8],
    /// A field Ringway vouches for (the TLS client certificate's subject): its name, and its
    /// value when there is one. Fields of that name sent by the client are always dropped, so
    /// a client cannot claim an identity it did not prove.
    pub identity: Option<(&'a [u8], Option<&'a [u8]>)>,
}

/// Field names that describe one connection, not the message, and are never forwarded as-is.
const HOP_BY_HOP: [&[u8]; 7] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"transfer-encoding",
    b"upgrade",
    b"expect",
];

pub(crate) fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| h.len() == name.len() && h.eq_ignore_ascii_case(name))
}

/// Writes the head to send upstream for `head` (parsed from `buf`) into `out`, appending.
pub fn write_request_head(
    buf: &[u8],
    head: &RequestHead,
    policy: &ForwardPolicy,
    ctx: &ForwardContext<'_>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(head.method_span.of(buf));
    out.push(b' ');
    let path = head.path.of(buf);
    if path.first() != Some(&b'/') && path != b"*" {
        out.push(b'/');
    }
    out.extend_from_slice(path);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    match (policy.preserve_host, head.host) {
        (true, Some(host)) => out.extend_from_slice(host.of(buf)),
        _ => out.extend_from_slice(ctx.upstream_authority),
    }
    out.extend_from_slice(b"\r\n");

    let mut te_trailers = false;
    // Only a Connection field can name extra hop-by-hop fields; most requests have none or
    // just `keep-alive`, so the per-field lookup below is skipped when there is none.
    let has_connection = head.headers.find(buf, b"connection").is_some();
    for h in head.headers.as_slice() {
        let name = h.name.of(buf);
        let value = h.value.of(buf);
        if is_hop_by_hop(name) {
            if name.eq_ignore_ascii_case(b"te") {
                te_trailers |= has_token(value, b"trailers");
            } else if head.upgrade && name.eq_ignore_ascii_case(b"upgrade") {
                write_field(out, name, value);
            }
            continue;
        }
        // Content-Length is written once below, whatever list or repeats the client sent.
        // Request trailers are dropped when the body is re-framed, so nothing announces them.
        let replaced = name.eq_ignore_ascii_case(b"host")
            || name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"trailer")
            || (policy.x_forwarded_for && name.eq_ignore_ascii_case(b"x-forwarded-for"))
            || (policy.x_forwarded_proto && name.eq_ignore_ascii_case(b"x-forwarded-proto"))
            || (policy.via.is_some() && name.eq_ignore_ascii_case(b"via"))
            || ctx
                .identity
                .is_some_and(|(n, _)| name.eq_ignore_ascii_case(n));
        if replaced || (has_connection && head.headers.connection_lists(buf, name)) {
            continue;
        }
        write_field(out, name, value);
    }
    if policy.x_forwarded_for {
        // Every earlier X-Forwarded-For field is folded into one list, the client appended.
        out.extend_from_slice(b"X-Forwarded-For: ");
        write_list_values(buf, head, b"x-forwarded-for", out);
        out.extend_from_slice(ctx.client_ip);
        out.extend_from_slice(b"\r\n");
    }
    if let Some((name, Some(value))) = ctx.identity {
        write_field(out, name, value);
    }
    if policy.x_forwarded_proto {
        out.extend_from_slice(b"X-Forwarded-Proto: ");
        out.extend_from_slice(ctx.scheme);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(via) = &policy.via {
        out.extend_from_slice(b"Via: ");
        write_list_values(buf, head, b"via", out);
        out.extend_from_slice(match head.version {
            Version::Http10 => b"1.0 ",
            Version::Http11 => b"1.1 ",
        });
        out.extend_from_slice(via.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if head.framing == BodyFraming::Chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    } else if let Some(n) = head.content_length {
        out.extend_from_slice(b"Content-Length: ");
        write_decimal(out, n);
        out.extend_from_slice(b"\r\n");
    }
    if te_trailers {
        out.extend_from_slice(b"TE: trailers\r\n");
    }
    if head.upgrade {
        out.extend_from_slice(b"Connection: Upgrade\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// How the response head sent to the client must be adjusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponsePlan {
    /// The client connection closes after this response: say `Connection: close`.
    pub close: bool,
    /// The client's HTTP version.
    pub client_version: Version,
    /// The chunked body is decoded and sent close-delimited (HTTP/1.0 clients).
    pub dechunk: bool,
}

/// Writes the head to send to the client for the upstream `head` (parsed from `buf`) into `out`.
pub fn write_response_head(buf: &[u8], head: &ResponseHead, plan: ResponsePlan, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    let code = head.status;
    out.extend_from_slice(&[
        b'0' + (code / 100 % 10) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
        b' ',
    ]);
    out.extend_from_slice(head.reason.of(buf));
    out.extend_from_slice(b"\r\n");
    let switching = code == 101;
    let has_connection = head.headers.find(buf, b"connection").is_some();
    for h in head.headers.as_slice() {
        let name = h.name.of(buf);
        let value = h.value.of(buf);
        // Restated once below from the parsed framing: a `Connection` field naming it must not
        // make the client read the body differently from how Ringway relays it.
        if name.eq_ignore_ascii_case(b"content-length") {
            continue;
        }
        if is_hop_by_hop(name) {
            let keep = (switching && name.eq_ignore_ascii_case(b"upgrade"))
                || (!plan.dechunk && name.eq_ignore_ascii_case(b"transfer-encoding"));
            if !keep {
                continue;
            }
        } else if has_connection && head.headers.connection_lists(buf, name) {
            continue;
        }
        write_field(out, name, value);
    }
    if let (false, Some(n)) = (head.chunked || plan.dechunk, head.content_length) {
        out.extend_from_slice(b"Content-Length: ");
        write_decimal(out, n);
        out.extend_from_slice(b"\r\n");
    }
    if switching {
        out.extend_from_slice(b"Connection: Upgrade\r\n");
    } else if plan.close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if plan.client_version == Version::Http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// In a request head written by [`write_request_head`] (its `Host` field comes right after the
/// request line), replaces a `Host` value equal to `from` by `to`: a retry on another endpoint
/// names that endpoint when the client's `Host` is not preserved. Returns whether it changed.
pub fn replace_host(out: &mut Vec<u8>, from: &[u8], to: &[u8]) -> bool {
    const FIELD: &[u8] = b"\r\nHost: ";
    let Some(line_end) = out.windows(2).position(|w| w == b"\r\n") else {
        return false;
    };
    let start = line_end + FIELD.len();
    if out.get(line_end..start) != Some(FIELD) || out.get(start..start + from.len()) != Some(from) {
        return false;
    }
    if out.get(start + from.len()..start + from.len() + 2) != Some(b"\r\n") {
        return false;
    }
    out.splice(start..start + from.len(), to.iter().copied());
    true
}

/// Adds `name: value` at the end of a head written by [`write_response_head`] (before the blank
/// line that ends it).
pub fn append_response_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    if out.ends_with(b"\r\n\r\n") {
        out.truncate(out.len() - 2);
        write_field(out, name, value);
        out.extend_from_slice(b"\r\n");
    }
}

/// Writes the values of every field named `name`, each followed by ", ".
fn write_list_values(buf: &[u8], head: &RequestHead, name: &[u8], out: &mut Vec<u8>) {
    for h in head.headers.as_slice() {
        if h.name.of(buf).eq_ignore_ascii_case(name) && !h.value.is_empty() {
            out.extend_from_slice(h.value.of(buf));
            out.extend_from_slice(b", ");
        }
    }
}

/// Appends `n` in decimal without going through `fmt` (which costs far more per number).
pub fn write_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn write_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests;
