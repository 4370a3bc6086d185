//! The properties the fuzz targets check, in plain Rust with no fuzzing dependency, so that the
//! corpus replay test (`proxy-core/tests/fuzz_corpus.rs`) runs exactly the same checks on stable.
//!
//! Every check takes arbitrary bytes and panics, with a readable message, when a property does
//! not hold. Input that the parser refuses or that is incomplete only has to not panic.
//!
//! - [`request`]: a request head Ringway accepts is re-serialised the way the proxy forwards it
//!   (`rewrite::write_request_head`, with a fixed forwarding policy), and that output must parse
//!   again with the same method, path, host and body framing, carry the same end-to-end header
//!   fields in the same order, contain no bare CR or LF, and none of the hop-by-hop fields the
//!   rewrite promises to strip. Done for the path as sent and for its canonical form.
//! - [`response`]: the same for response heads and `rewrite::write_response_head`, over the
//!   plans the exchange can pick (keep-alive, close, HTTP/1.0 client with de-chunking, HEAD).
//! - [`chunked`]: the chunked decoder never overflows, never claims more payload than it was
//!   given, holds no buffer of its own, and for a body it accepts, re-encoding the decoded
//!   payload as chunked and decoding that again gives the same payload and end state.
//!
//! The oracle below restates the rewrite's documented contract independently (its own list of
//! hop-by-hop names, its own Connection-token split) instead of calling the rewrite's helpers.

#![allow(dead_code)]

use proxy_core::http1::{
    find_head_end, parse_request, parse_response, BodyFraming, ChunkedDecoder, ChunkedError,
    Method, RequestHead, ResponseHead, Version, MAX_HEADERS,
};
use proxy_core::rewrite::{
    write_request_head, write_response_head, ForwardContext, ForwardPolicy, ResponsePlan,
};

/// The client address, scheme and upstream the forwarded request is written for.
const CLIENT_IP: &[u8] = b"192.0.2.7";
const UPSTREAM: &[u8] = b"10.0.0.1:80";

/// What the rewrite may add to a head beyond what the client or upstream sent: the added fields
/// (Host, X-Forwarded-For, -Proto, Via, Transfer-Encoding, TE, Connection), a `/` in front of
/// the path, and the request line. Forwarded heads must stay within `head_len` plus this.
const REWRITE_OVERHEAD: usize = 256;

/// Fields that describe a connection, not the message: never forwarded as sent.
const HOP_BY_HOP: &[&[u8]] = &[
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"transfer-encoding",
    b"upgrade",
    b"expect",
];

/// Request fields the rewrite replaces with its own value under the default policy
/// (Content-Length is restated once, however the client repeated or listed it), or drops
/// (Trailer: request trailers are not forwarded).
const REPLACED: &[&[u8]] = &[
    b"host",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"via",
    b"content-length",
    b"trailer",
];

/// Checks one arbitrary input as a request head.
pub fn request(input: &[u8]) {
    let head = match parse_request(input) {
        Ok(Some(head)) => head,
        Ok(None) | Err(_) => return,
    };
    check_request_head(input, &head);
    forward_request(input, &head);

    // The path as the proxy routes and forwards it once normalised.
    let mut canonical = input.to_vec();
    let mut normalised = head.clone();
    if normalised.normalize_path(&mut canonical).is_ok() {
        let path = normalised.path.of(&canonical).to_vec();
        let mut again = canonical.clone();
        let mut twice = normalised.clone();
        assert!(
            twice.normalize_path(&mut again).is_ok() && twice.path.of(&again) == path,
            "normalising a canonical path changed it or refused it: {} (from {})",
            esc(&path),
            esc(head.path.of(input)),
        );
        forward_request(&canonical, &normalised);
    }
}

/// Facts about an accepted request head that hold regardless of forwarding.
fn check_request_head(input: &[u8], head: &RequestHead) {
    assert!(
        head.head_len <= input.len(),
        "head_len {} past the input",
        head.head_len
    );
    // The I/O layer calls the parser only once `find_head_end` has seen a blank line; a head
    // the parser accepts but the scan never finds would leave the connection waiting forever.
    assert!(
        find_head_end(&input[..head.head_len], 0).is_some(),
        "accepted head has no end the scan finds: {}",
        esc(&input[..head.head_len])
    );
    for span in [head.method_span, head.target, head.path]
        .into_iter()
        .chain(head.host)
        .chain(
            head.headers
                .as_slice()
                .iter()
                .flat_map(|h| [h.name, h.value]),
        )
    {
        assert!(
            span.start <= span.end && span.end as usize <= head.head_len,
            "span {span:?} outside the head ({} bytes)",
            head.head_len
        );
    }
    if head.framing == BodyFraming::Chunked {
        assert_eq!(head.version, Version::Http11, "chunked HTTP/1.0 request");
    }
    assert_ne!(
        head.framing,
        BodyFraming::UntilClose,
        "close-delimited request"
    );
    assert_ne!(
        head.framing,
        BodyFraming::Length(0),
        "zero length not folded into None"
    );
    assert_ne!(head.method, Method::Connect, "CONNECT accepted");
}

/// Writes what the proxy forwards for `head` (parsed from `buf`) and checks it.
fn forward_request(buf: &[u8], head: &RequestHead) {
    let policy = ForwardPolicy::default();
    let ctx = ForwardContext {
        client_ip: CLIENT_IP,
        scheme: b"http",
        upstream_authority: UPSTREAM,
        identity: None,
    };
    let mut out = Vec::new();
    write_request_head(buf, head, &policy, &ctx, &mut out);
    let ctx_msg = || format!("\n  input:     {}\n  forwarded: {}", esc(buf), esc(&out));

    assert!(
        out.len() <= head.head_len + REWRITE_OVERHEAD,
        "forwarded head grew by more than {REWRITE_OVERHEAD} bytes{}",
        ctx_msg()
    );
    check_line_endings(&out).unwrap_or_else(|at| panic!("bare CR or LF at {at}{}", ctx_msg()));
    assert!(out.ends_with(b"\r\n\r\n"), "no blank line{}", ctx_msg());

    let lines = field_lines(&out);
    // httparse takes at most MAX_HEADERS fields; the rewrite's few additions can push a full
    // head over that, which is a limit of the next hop, not a framing fault.
    if lines > MAX_HEADERS {
        return;
    }
    let again = match parse_request(&out) {
        Ok(Some(h)) => h,
        other => panic!("forwarded head does not parse: {other:?}{}", ctx_msg()),
    };
    assert_eq!(again.head_len, out.len(), "head length{}", ctx_msg());
    assert_eq!(again.method, head.method, "method{}", ctx_msg());
    assert_eq!(
        again.method_span.of(&out),
        head.method_span.of(buf),
        "method token{}",
        ctx_msg()
    );
    let path = head.path.of(buf);
    let want_path: Vec<u8> = if path.first() == Some(&b'/') || path == b"*" {
        path.to_vec()
    } else {
        [b"/".as_slice(), path].concat()
    };
    assert_eq!(
        esc(again.path.of(&out)),
        esc(&want_path),
        "path{}",
        ctx_msg()
    );
    assert_eq!(again.version, Version::Http11, "version{}", ctx_msg());
    assert_eq!(again.framing, head.framing, "body framing{}", ctx_msg());
    assert_eq!(again.upgrade, head.upgrade, "upgrade{}", ctx_msg());
    assert!(!again.expect_continue, "Expect forwarded{}", ctx_msg());
    // The policy preserves the client's Host; a request without one (HTTP/1.0) gets the
    // upstream's authority.
    assert_eq!(
        again.host.map(|h| h.of(&out).to_vec()),
        Some(head.host.map_or(UPSTREAM, |h| h.of(buf)).to_vec()),
        "host{}",
        ctx_msg()
    );

    // End-to-end fields pass through unchanged and in order.
    let connection_listed = connection_tokens(buf, fields(buf, &head.headers));
    let sent: Vec<(&[u8], &[u8])> = fields(buf, &head.headers)
        .filter(|(name, _)| {
            !is_one_of(name, HOP_BY_HOP)
                && !is_one_of(name, REPLACED)
                && !connection_listed
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(name))
        })
        .collect();
    let added: &[&[u8]] = &[
        b"host",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"via",
        b"content-length",
        b"transfer-encoding",
        b"te",
        b"connection",
        b"upgrade",
    ];
    let forwarded: Vec<(&[u8], &[u8])> = fields(&out, &again.headers)
        .filter(|(name, _)| !is_one_of(name, added))
        .collect();
    assert_eq!(
        show_fields(&forwarded),
        show_fields(&sent),
        "end-to-end fields{}",
        ctx_msg()
    );

    // What the rewrite adds, exactly once each, and nothing it promises to strip.
    let values = |name: &[u8]| -> Vec<&[u8]> {
        fields(&out, &again.headers)
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    };
    assert_eq!(values(b"host").len(), 1, "Host count{}", ctx_msg());
    let xff = values(b"x-forwarded-for");
    assert!(
        xff.len() == 1 && (xff[0] == CLIENT_IP || xff[0].ends_with(b", 192.0.2.7")),
        "X-Forwarded-For{}",
        ctx_msg()
    );
    assert_eq!(
        values(b"x-forwarded-proto"),
        [b"http".as_slice()],
        "X-Forwarded-Proto{}",
        ctx_msg()
    );
    let via = values(b"via");
    let own_via: &[u8] = match head.version {
        Version::Http10 => b"1.0 ringway",
        Version::Http11 => b"1.1 ringway",
    };
    assert!(
        via.len() == 1 && via[0].ends_with(own_via),
        "Via{}",
        ctx_msg()
    );
    let want_te: Vec<&[u8]> = if head.framing == BodyFraming::Chunked {
        vec![b"chunked"]
    } else {
        vec![]
    };
    assert_eq!(
        values(b"transfer-encoding"),
        want_te,
        "Transfer-Encoding{}",
        ctx_msg()
    );
    // One Content-Length with the length the body is framed by, when the client sent any.
    let sent_length =
        fields(buf, &head.headers).any(|(n, _)| n.eq_ignore_ascii_case(b"content-length"));
    let want_length: Vec<Vec<u8>> = match head.framing {
        BodyFraming::Length(n) => vec![n.to_string().into_bytes()],
        BodyFraming::None if sent_length => vec![b"0".to_vec()],
        _ => vec![],
    };
    assert_eq!(
        values(b"content-length"),
        want_length,
        "Content-Length{}",
        ctx_msg()
    );
    assert!(
        values(b"te").iter().all(|v| *v == b"trailers") && values(b"te").len() <= 1,
        "TE other than trailers{}",
        ctx_msg()
    );
    let want_connection: Vec<&[u8]> = if head.upgrade {
        vec![b"Upgrade"]
    } else {
        vec![]
    };
    assert_eq!(
        values(b"connection"),
        want_connection,
        "Connection{}",
        ctx_msg()
    );
    let want_upgrade: Vec<&[u8]> = if head.upgrade {
        fields(buf, &head.headers)
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"upgrade"))
            .map(|(_, v)| v)
            .collect()
    } else {
        vec![]
    };
    assert_eq!(values(b"upgrade"), want_upgrade, "Upgrade{}", ctx_msg());
    for gone in [b"keep-alive".as_slice(), b"proxy-connection", b"expect"] {
        assert!(values(gone).is_empty(), "{} leaked{}", esc(gone), ctx_msg());
    }
    for token in &connection_listed {
        if !is_one_of(token, added) {
            assert!(
                values(token).is_empty(),
                "field {} named by Connection leaked{}",
                esc(token),
                ctx_msg()
            );
        }
    }
}

/// Checks one arbitrary input as an upstream response head.
pub fn response(input: &[u8]) {
    let head = match parse_response(input) {
        Ok(Some(head)) => head,
        Ok(None) | Err(_) => return,
    };
    assert!(head.head_len <= input.len(), "head_len past the input");
    assert!(
        find_head_end(&input[..head.head_len], 0).is_some(),
        "accepted response head has no end the scan finds: {}",
        esc(&input[..head.head_len])
    );
    for span in std::iter::once(head.reason).chain(
        head.headers
            .as_slice()
            .iter()
            .flat_map(|h| [h.name, h.value]),
    ) {
        assert!(
            span.start <= span.end && span.end as usize <= head.head_len,
            "span {span:?} outside the head ({} bytes): {}",
            head.head_len,
            esc(&input[..head.head_len])
        );
    }
    assert!(
        !(head.chunked && head.content_length.is_some()),
        "both framings accepted"
    );
    // The plans `respond_head` in io/src/proxy/exchange.rs can choose, for a few requests.
    let requests = [
        (Method::Get, Version::Http11, true, false),
        (Method::Get, Version::Http11, false, false),
        (Method::Get, Version::Http10, true, false),
        (Method::Get, Version::Http10, false, false),
        (Method::Head, Version::Http11, true, false),
        (Method::Get, Version::Http11, true, true),
    ];
    for (method, client_version, keep_alive, upgrade) in requests {
        let framing = head.framing(method);
        if head.status == 101 && !upgrade {
            continue; // refused with 502, nothing written
        }
        let dechunk = client_version == Version::Http10 && framing == BodyFraming::Chunked;
        let close = !keep_alive || framing == BodyFraming::UntilClose || dechunk;
        let plan = ResponsePlan {
            close,
            client_version,
            dechunk,
        };
        forward_response(input, &head, method, plan, framing);
    }
}

fn forward_response(
    buf: &[u8],
    head: &ResponseHead,
    method: Method,
    plan: ResponsePlan,
    framing: BodyFraming,
) {
    let mut out = Vec::new();
    write_response_head(buf, head, plan, &mut out);
    let ctx_msg = || {
        format!(
            "\n  plan:      {plan:?} for {method:?}\n  input:     {}\n  forwarded: {}",
            esc(buf),
            esc(&out)
        )
    };
    assert!(
        out.len() <= head.head_len + REWRITE_OVERHEAD,
        "forwarded head grew{}",
        ctx_msg()
    );
    check_line_endings(&out).unwrap_or_else(|at| panic!("bare CR or LF at {at}{}", ctx_msg()));
    assert!(out.ends_with(b"\r\n\r\n"), "no blank line{}", ctx_msg());
    if field_lines(&out) > MAX_HEADERS {
        return;
    }
    let again = match parse_response(&out) {
        Ok(Some(h)) => h,
        other => panic!(
            "forwarded response head does not parse: {other:?}{}",
            ctx_msg()
        ),
    };
    assert_eq!(again.head_len, out.len(), "head length{}", ctx_msg());
    assert_eq!(again.status, head.status, "status{}", ctx_msg());
    assert_eq!(
        esc(again.reason.of(&out)),
        esc(head.reason.of(buf)),
        "reason{}",
        ctx_msg()
    );
    let want_framing = if plan.dechunk {
        BodyFraming::UntilClose
    } else {
        framing
    };
    assert_eq!(again.framing(method), want_framing, "framing{}", ctx_msg());
    let switching = head.status == 101;
    if !switching {
        assert_eq!(again.close, plan.close, "persistence{}", ctx_msg());
    }

    let keep_hop = |name: &[u8]| {
        (switching && name.eq_ignore_ascii_case(b"upgrade"))
            || (!plan.dechunk && name.eq_ignore_ascii_case(b"transfer-encoding"))
    };
    let connection_listed = connection_tokens(buf, fields(buf, &head.headers));
    // Content-Length is restated once from the parsed framing (checked below), not copied.
    let restated: Vec<Vec<u8>> = fields(&out, &again.headers)
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"content-length"))
        .map(|(_, v)| v.to_vec())
        .collect();
    let want_restated: Vec<Vec<u8>> = match head.content_length {
        Some(n) if !head.chunked && !plan.dechunk => vec![n.to_string().into_bytes()],
        _ => vec![],
    };
    assert_eq!(restated, want_restated, "Content-Length{}", ctx_msg());
    let sent: Vec<(&[u8], &[u8])> = fields(buf, &head.headers)
        .filter(|(name, _)| !name.eq_ignore_ascii_case(b"content-length"))
        .filter(|(name, _)| {
            if is_one_of(name, HOP_BY_HOP) {
                keep_hop(name)
            } else {
                !connection_listed
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(name))
            }
        })
        .collect();
    let forwarded: Vec<(&[u8], &[u8])> = fields(&out, &again.headers)
        .filter(|(name, _)| !name.eq_ignore_ascii_case(b"connection"))
        .filter(|(name, _)| !name.eq_ignore_ascii_case(b"content-length"))
        .collect();
    assert_eq!(
        show_fields(&forwarded),
        show_fields(&sent),
        "fields{}",
        ctx_msg()
    );
    let connection: Vec<&[u8]> = fields(&out, &again.headers)
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"connection"))
        .map(|(_, v)| v)
        .collect();
    let want: Vec<&[u8]> = if switching {
        vec![b"Upgrade"]
    } else if plan.close {
        vec![b"close"]
    } else if plan.client_version == Version::Http10 {
        vec![b"keep-alive"]
    } else {
        vec![]
    };
    assert_eq!(connection, want, "Connection{}", ctx_msg());
}

/// Checks one arbitrary input as a chunked body.
pub fn chunked(input: &[u8]) {
    // The decoder is a fixed-size state machine: whatever it is fed, it holds no buffer.
    assert!(
        std::mem::size_of::<ChunkedDecoder>() <= 64,
        "decoder state grew"
    );
    let whole = decode(input, &[]);
    // The same bytes in two pieces, cut at a point the input chooses, end the same way.
    if !input.is_empty() {
        let cut = usize::from(input[0]) * input.len() / 256;
        let split = decode(input, &[cut]);
        assert_eq!(
            split.summary(),
            whole.summary(),
            "cut at {cut} changed the outcome of {}",
            esc(input)
        );
    }
    if !whole.done {
        return;
    }
    // Re-encode the payload in chunks of a few sizes derived from the input, then decode again.
    for size in [1, 7, whole.payload.len().max(1), 4096] {
        let mut encoded = Vec::new();
        for piece in whole.payload.chunks(size) {
            encoded.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            encoded.extend_from_slice(piece);
            encoded.extend_from_slice(b"\r\n");
        }
        encoded.extend_from_slice(b"0\r\n\r\n");
        let round = decode(&encoded, &[]);
        assert!(
            round.error.is_none() && round.done,
            "re-encoded payload refused: {:?}\n  input: {}",
            round.error,
            esc(input)
        );
        assert_eq!(round.consumed, encoded.len(), "re-encoded body end");
        assert_eq!(round.payload, whole.payload, "re-encoded payload");
        assert_eq!(round.payload_len, whole.payload_len, "payload count");
    }
}

/// How decoding a whole input went.
struct Decoding {
    payload: Vec<u8>,
    payload_len: u64,
    consumed: usize,
    done: bool,
    error: Option<ChunkedError>,
}

impl Decoding {
    /// What must not depend on how the input was cut: how it ended, the payload, and where a
    /// body that ended ended. (Bytes consumed before an error may differ: an error discards
    /// what the failing call had consumed, and a cut decides how much that was.)
    fn summary(&self) -> (bool, Option<ChunkedError>, u64, Option<usize>) {
        let end = if self.done { Some(self.consumed) } else { None };
        (self.done, self.error, self.payload_len, end)
    }
}

/// Feeds `input` to a fresh decoder in pieces cut at `cuts`, as the body pump does.
fn decode(input: &[u8], cuts: &[usize]) -> Decoding {
    let mut d = ChunkedDecoder::new();
    let mut payload = Vec::new();
    let mut consumed = 0;
    let mut start = 0;
    let mut error = None;
    'feed: for &end in cuts.iter().chain(std::iter::once(&input.len())) {
        let mut piece = &input[start..end];
        start = end;
        while !piece.is_empty() && !d.is_done() {
            match d.decode(piece) {
                Ok(r) => {
                    assert!(r.consumed <= piece.len(), "consumed more than given");
                    assert!(
                        r.consumed > 0 || r.done,
                        "no progress on {} bytes",
                        piece.len()
                    );
                    assert!(r.data.len() <= r.consumed, "payload larger than input");
                    // Payload is a view of the input, never a copy the decoder made.
                    let base = piece.as_ptr() as usize;
                    let at = r.data.as_ptr() as usize;
                    assert!(
                        r.data.is_empty() || (at >= base && at + r.data.len() <= base + r.consumed),
                        "payload is not a slice of the consumed input"
                    );
                    assert_eq!(r.done, d.is_done(), "done flag and state disagree");
                    payload.extend_from_slice(r.data);
                    consumed += r.consumed;
                    piece = &piece[r.consumed..];
                }
                Err(e) => {
                    error = Some(e);
                    break 'feed;
                }
            }
        }
        if d.is_done() {
            break;
        }
    }
    assert_eq!(
        d.payload_len(),
        payload.len() as u64,
        "payload_len disagrees with the bytes handed out"
    );
    assert!(payload.len() <= consumed, "more payload than input");
    Decoding {
        payload,
        payload_len: d.payload_len(),
        consumed,
        done: d.is_done(),
        error,
    }
}

/// `Err(offset)` of the first CR not followed by LF or LF not preceded by CR.
fn check_line_endings(out: &[u8]) -> Result<(), usize> {
    for (i, &b) in out.iter().enumerate() {
        let bare = match b {
            b'\r' => out.get(i + 1) != Some(&b'\n'),
            b'\n' => i == 0 || out[i - 1] != b'\r',
            _ => false,
        };
        if bare {
            return Err(i);
        }
    }
    Ok(())
}

/// Field lines in a serialised head (every CRLF but the request line's and the blank line's).
fn field_lines(out: &[u8]) -> usize {
    out.windows(2)
        .filter(|w| w == b"\r\n")
        .count()
        .saturating_sub(2)
}

fn fields<'a>(
    buf: &'a [u8],
    headers: &'a proxy_core::http1::Headers,
) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
    headers
        .as_slice()
        .iter()
        .map(move |h| (h.name.of(buf), h.value.of(buf)))
}

/// Every token listed by any Connection field: the fields a proxy must not forward, except
/// `Content-Length`, which delimits the body that is forwarded after the head. (Dropping it turns
/// the body into the next request; refusing such a message is the other sound answer, and
/// passes these checks vacuously.)
fn connection_tokens<'a>(
    _buf: &'a [u8],
    fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> Vec<&'a [u8]> {
    fields
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"connection"))
        .flat_map(|(_, v)| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case(b"content-length"))
        .collect()
}

fn is_one_of(name: &[u8], set: &[&[u8]]) -> bool {
    set.iter().any(|s| s.eq_ignore_ascii_case(name))
}

fn show_fields(fields: &[(&[u8], &[u8])]) -> Vec<String> {
    fields
        .iter()
        .map(|(n, v)| format!("{}: {}", esc(n), esc(v)))
        .collect()
}

/// Bytes as an escaped string for messages.
pub fn esc(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}
