//! Split invariance: however the bytes of a message arrive, the result is the same. Each input
//! is fed the way the I/O layer feeds it (append, scan for the end of the head, parse), split at
//! every byte offset and also one byte at a time.

use proxy_core::http1::{find_head_end, parse_request, parse_response, ChunkedDecoder, ParseError};

const REQUESTS: &[&str] = &[
    "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
    "GET /p?q=1 HTTP/1.1\r\nHost: a.test:8080\r\nAccept: */*\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
    "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
    "PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "GET http://abs.test/x HTTP/1.1\r\nHost: ignored\r\n\r\n",
    "GET / HTTP/1.1\nHost: lf-only\n\n",
    // Rejections must be split-invariant too.
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
    "BREW /pot HTCPCP/1.0\r\n\r\n",
];

/// What a parse came to, reduced to comparable values.
#[derive(Debug, PartialEq)]
enum Outcome {
    Head {
        head_len: usize,
        headers: usize,
        host: Option<Vec<u8>>,
        path: Vec<u8>,
    },
    Error(ParseError),
    Incomplete,
}

fn outcome(buf: &[u8]) -> Outcome {
    match parse_request(buf) {
        Ok(Some(h)) => Outcome::Head {
            head_len: h.head_len,
            headers: h.headers.as_slice().len(),
            host: h.host_name(buf).map(<[u8]>::to_vec),
            path: h.path.of(buf).to_vec(),
        },
        Ok(None) => Outcome::Incomplete,
        Err(e) => Outcome::Error(e),
    }
}

/// Feeds `input` in the given pieces the way the connection driver does.
fn feed(input: &[u8], cuts: &[usize]) -> Outcome {
    let mut buf = Vec::new();
    let mut scanned = 0;
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&input.len())) {
        buf.extend_from_slice(&input[start..end]);
        start = end;
        if find_head_end(&buf, scanned).is_some() {
            match outcome(&buf) {
                Outcome::Incomplete => {}
                done => return done,
            }
        }
        scanned = buf.len();
    }
    Outcome::Incomplete
}

#[test]
fn request_heads_parse_the_same_at_every_split() {
    for text in REQUESTS {
        let input = text.as_bytes();
        let whole = feed(input, &[]);
        assert_ne!(whole, Outcome::Incomplete, "{text:?}");
        for cut in 1..input.len() {
            assert_eq!(feed(input, &[cut]), whole, "{text:?} split at {cut}");
        }
        let bytewise: Vec<usize> = (1..input.len()).collect();
        assert_eq!(feed(input, &bytewise), whole, "{text:?} byte by byte");
    }
}

#[test]
fn two_splits_anywhere_give_the_same_request() {
    let input = REQUESTS[1].as_bytes();
    let whole = feed(input, &[]);
    for a in 1..input.len() {
        for b in a..input.len() {
            assert_eq!(feed(input, &[a, b]), whole, "split at {a} and {b}");
        }
    }
}

#[test]
fn response_heads_parse_the_same_at_every_split() {
    let input = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";
    let whole = parse_response(input).unwrap().unwrap();
    for cut in 0..whole.head_len {
        assert!(
            parse_response(&input[..cut]).unwrap().is_none(),
            "cut {cut}"
        );
    }
    for cut in whole.head_len..=input.len() {
        let h = parse_response(&input[..cut]).unwrap().unwrap();
        assert_eq!(
            (h.status, h.head_len, h.content_length),
            (200, whole.head_len, Some(2))
        );
    }
}

/// Runs the decoder over `input` cut into `pieces`; returns (payload, bytes consumed).
fn decode_pieces(input: &[u8], cuts: &[usize]) -> (Vec<u8>, usize) {
    let mut d = ChunkedDecoder::new();
    let mut payload = Vec::new();
    let mut consumed = 0;
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&input.len())) {
        let mut piece = &input[start..end];
        start = end;
        while !piece.is_empty() && !d.is_done() {
            let r = d.decode(piece).expect("valid chunked body");
            payload.extend_from_slice(r.data);
            consumed += r.consumed;
            piece = &piece[r.consumed..];
        }
    }
    assert!(d.is_done());
    (payload, consumed)
}

#[test]
fn chunked_bodies_decode_the_same_at_every_pair_of_splits() {
    let body = b"4\r\nWiki\r\n5;name=value\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\n\r\nGET / HTTP/1.1";
    let (whole, used) = decode_pieces(body, &[]);
    assert_eq!(whole, b"Wikipedia in\r\n\r\nchunks.");
    assert_eq!(
        &body[used..],
        b"GET / HTTP/1.1",
        "bytes after the body are left alone"
    );
    for a in 1..body.len() {
        for b in a..body.len() {
            assert_eq!(
                decode_pieces(body, &[a, b]),
                (whole.clone(), used),
                "splits {a},{b}"
            );
        }
    }
}

/// A small deterministic generator, so the robustness test needs no dependency and every run
/// sees the same inputs.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn arbitrary_bytes_never_panic_the_parsers() {
    // Mutations of valid messages reach deeper states than uniform noise does.
    let seeds: Vec<&[u8]> = REQUESTS.iter().map(|r| r.as_bytes()).collect();
    let alphabet = b"\r\n :;,0123456789abcdefABCDEF/HTTP.\t\x00\xff-chunked";
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for _ in 0..20_000 {
        let mut input = seeds[(rng.next() % seeds.len() as u64) as usize].to_vec();
        for _ in 0..(rng.next() % 8) {
            let at = (rng.next() % (input.len() as u64 + 1)) as usize;
            let byte = alphabet[(rng.next() % alphabet.len() as u64) as usize];
            match rng.next() % 3 {
                0 if at < input.len() => input[at] = byte,
                1 if at < input.len() => {
                    input.remove(at);
                }
                _ => input.insert(at, byte),
            }
        }
        let _ = outcome(&input);
        let _ = parse_response(&input);
        let _ = find_head_end(&input, (rng.next() % (input.len() as u64 + 1)) as usize);
        let mut d = ChunkedDecoder::new();
        let mut rest = &input[..];
        while let Ok(r) = d.decode(rest) {
            if r.consumed == 0 || r.done {
                break;
            }
            rest = &rest[r.consumed..];
        }
    }
}
