//! Prints how Ringway frames byte streams of pipelined requests, for the differential test
//! against another HTTP/1.1 implementation (`tests/differential/run.py`).
//!
//! Input on stdin: one byte stream per line, hex-encoded (an empty line is an empty stream).
//! Output on stdout: one JSON object per input line, in order:
//!
//! ```text
//! {"ok":true,"messages":[{"method":"POST","target":"/x","body_len":5,"chunked":false}],"incomplete":false,"closed":false,"paused":false}
//! {"ok":false,"error":"<reason>","after_messages":1,"messages":[...]}
//! ```
//!
//! A stream is framed the way a client connection is served: scan for the end of a head
//! (`find_head_end`), parse it, put its path in canonical form, consume its body as its
//! `BodyFraming` says (a `ChunkedDecoder` finds the end of a chunked one), then the next request
//! from the bytes left. Framing stops, with everything before it reported, where the proxy would
//! stop reading: at trailing bytes that do not yet make a whole message (`incomplete`), after a
//! request that closes the connection (`closed`) or asks for a protocol upgrade (`paused`), or at
//! the first refusal (`ok: false`, with the reason and how many requests came before it).
//! Strings are JSON with every byte outside printable ASCII written as `\u00XX` (Latin-1).

use proxy_core::http1::{find_head_end, parse_request, BodyFraming, ChunkedDecoder};
use std::fmt::Write as _;
use std::io::{self, BufRead, Write};

/// One request as framed.
struct Message {
    method: Vec<u8>,
    target: Vec<u8>,
    body_len: u64,
    chunked: bool,
}

/// Where framing stopped.
enum End {
    Complete,
    Incomplete,
    Closed,
    Paused,
    Refused(String),
}

/// What becomes of the bytes left after one request's head: how many of them its body takes,
/// and how many payload bytes that body carries; `None` when the body is not all there yet.
type BodyOutcome = Result<Option<(usize, u64)>, String>;

fn frame(stream: &[u8]) -> (Vec<Message>, End) {
    let mut messages = Vec::new();
    let mut pos = 0;
    loop {
        let rest = &stream[pos..];
        if rest.is_empty() {
            return (messages, End::Complete);
        }
        // The I/O layer parses only once the scan has found the end of a head.
        if find_head_end(rest, 0).is_none() {
            return (messages, End::Incomplete);
        }
        let mut head = match parse_request(rest) {
            Ok(Some(head)) => head,
            Ok(None) => return (messages, End::Incomplete),
            Err(e) => return (messages, End::Refused(e.as_str().to_owned())),
        };
        let mut canonical = rest.to_vec();
        if let Err(e) = head.normalize_path(&mut canonical) {
            return (messages, End::Refused(e.as_str().to_owned()));
        }
        let body = &rest[head.head_len..];
        let taken = match head.framing {
            BodyFraming::None => Ok(Some((0, 0))),
            BodyFraming::Length(n) => Ok(usize::try_from(n)
                .ok()
                .filter(|&n| n <= body.len())
                .map(|n| (n, n as u64))),
            BodyFraming::Chunked => chunked_body(body),
            BodyFraming::UntilClose => Err("close-delimited request body".to_owned()),
        };
        let (used, body_len) = match taken {
            Ok(Some(t)) => t,
            Ok(None) => return (messages, End::Incomplete),
            Err(e) => return (messages, End::Refused(e)),
        };
        messages.push(Message {
            method: head.method_span.of(rest).to_vec(),
            target: head.target.of(rest).to_vec(),
            body_len,
            chunked: head.framing == BodyFraming::Chunked,
        });
        pos += head.head_len + used;
        if head.upgrade {
            return (messages, End::Paused);
        }
        if !head.keep_alive {
            return (messages, End::Closed);
        }
    }
}

/// Decodes a chunked body at the start of `body`.
fn chunked_body(body: &[u8]) -> BodyOutcome {
    let mut decoder = ChunkedDecoder::new();
    let mut used = 0;
    while used < body.len() && !decoder.is_done() {
        match decoder.decode(&body[used..]) {
            Ok(r) => used += r.consumed,
            Err(e) => return Err(format!("chunked body: {e:?}")),
        }
    }
    Ok(decoder.is_done().then(|| (used, decoder.payload_len())))
}

/// `bytes` as a JSON string, each byte one Latin-1 character.
fn json_str(out: &mut String, bytes: &[u8]) {
    out.push('"');
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
    }
    out.push('"');
}

fn report(messages: &[Message], end: &End) -> String {
    let mut list = String::from("[");
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            list.push(',');
        }
        list.push_str("{\"method\":");
        json_str(&mut list, &m.method);
        list.push_str(",\"target\":");
        json_str(&mut list, &m.target);
        let _ = write!(
            list,
            ",\"body_len\":{},\"chunked\":{}}}",
            m.body_len, m.chunked
        );
    }
    list.push(']');
    match end {
        End::Refused(reason) => {
            let mut out = String::from("{\"ok\":false,\"error\":");
            json_str(&mut out, reason.as_bytes());
            let _ = write!(
                out,
                ",\"after_messages\":{},\"messages\":{list}}}",
                messages.len()
            );
            out
        }
        _ => format!(
            "{{\"ok\":true,\"messages\":{list},\"incomplete\":{},\"closed\":{},\"paused\":{}}}",
            matches!(end, End::Incomplete),
            matches!(end, End::Closed),
            matches!(end, End::Paused),
        ),
    }
}

fn unhex(line: &str) -> Option<Vec<u8>> {
    let line = line.trim();
    if line.len() % 2 != 0 {
        return None;
    }
    (0..line.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(line.get(i..i + 2)?, 16).ok())
        .collect()
}

fn main() -> io::Result<()> {
    let stdin = io::stdin();
    let mut out = io::BufWriter::new(io::stdout().lock());
    for (n, line) in stdin.lock().lines().enumerate() {
        let line = line?;
        let Some(stream) = unhex(&line) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("line {}: not hex", n + 1),
            ));
        };
        let (messages, end) = frame(&stream);
        writeln!(out, "{}", report(&messages, &end))?;
    }
    out.flush()
}
