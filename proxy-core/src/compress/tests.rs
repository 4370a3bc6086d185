//! Tests for `compress`: round trips through the real decoders of each coding, flush points
//! that decode to exactly the input so far, and tables for negotiation and type matching.

use std::io::{Read, Write};

use super::*;

const ALL: [Encoding; 3] = [Encoding::Gzip, Encoding::Brotli, Encoding::Zstd];

/// Deterministic xorshift64 bytes (incompressible).
fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// HTML-like text of `len` bytes: words picked by xorshift, in markup.
fn text(len: usize) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "proxy",
        "cache",
        "the",
        "response",
        "<div class=\"row\">",
        "</div>\n",
        "of",
        "and",
        "request",
        "header",
        "upstream",
        "client",
        "<p>",
        "</p>\n",
        "ringway",
        "compress",
    ];
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut out = Vec::with_capacity(len + 32);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(WORDS[(seed % 16) as usize].as_bytes());
        out.push(b' ');
    }
    out.truncate(len);
    out
}

fn decode(enc: Encoding, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match enc {
        Encoding::Gzip => {
            flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .expect("gzip decodes");
        }
        Encoding::Brotli => {
            brotli::Decompressor::new(data, 4096)
                .read_to_end(&mut out)
                .expect("brotli decodes");
        }
        Encoding::Zstd => out = zstd::decode_all(data).expect("zstd decodes"),
    }
    out
}

/// Decodes an unfinished stream as far as it goes (what a client sees after a flush).
fn decode_prefix(enc: Encoding, data: &[u8]) -> Vec<u8> {
    match enc {
        Encoding::Gzip => {
            let mut d = flate2::write::GzDecoder::new(Vec::new());
            d.write_all(data).expect("gzip prefix decodes");
            d.flush().expect("gzip flush");
            d.get_ref().clone()
        }
        Encoding::Brotli => {
            // Read until the decoder runs out of input (it then reports an unexpected end).
            let mut d = brotli::Decompressor::new(data, 4096);
            let mut out = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = d.read(&mut buf) {
                out.extend_from_slice(&buf[..n]);
            }
            out
        }
        Encoding::Zstd => {
            let mut d = zstd::stream::write::Decoder::new(Vec::new()).expect("zstd decoder");
            d.write_all(data).expect("zstd prefix decodes");
            d.flush().expect("zstd flush");
            d.get_ref().clone()
        }
    }
}

/// Compresses `input` in writes of `chunk` bytes (0: one write), then finishes.
fn compress(enc: Encoding, level: u32, input: &[u8], chunk: usize) -> Vec<u8> {
    let mut encoder = Encoder::new(enc, level);
    assert_eq!(encoder.encoding(), enc);
    let mut out = Vec::new();
    if chunk == 0 {
        encoder.write(input, &mut out).expect("write");
    } else {
        for piece in input.chunks(chunk) {
            encoder.write(piece, &mut out).expect("write");
        }
    }
    encoder.finish(&mut out).expect("finish");
    out
}

#[test]
fn tokens_round_trip_and_parse_case_insensitively() {
    for enc in ALL {
        assert_eq!(Encoding::from_token(enc.token().as_bytes()), Some(enc));
    }
    assert_eq!(Encoding::Gzip.token(), "gzip");
    assert_eq!(Encoding::Brotli.token(), "br");
    assert_eq!(Encoding::Zstd.token(), "zstd");
    let table: &[(&[u8], Option<Encoding>)] = &[
        (b"GZIP", Some(Encoding::Gzip)),
        (b"x-gzip", Some(Encoding::Gzip)),
        (b"X-GZip", Some(Encoding::Gzip)),
        (b"BR", Some(Encoding::Brotli)),
        (b"ZStd", Some(Encoding::Zstd)),
        (b"deflate", None),
        (b"identity", None),
        (b"*", None),
        (b"", None),
        (b"gzip ", None),
        (b"brotli", None),
    ];
    for (token, want) in table {
        assert_eq!(
            Encoding::from_token(token),
            *want,
            "{:?}",
            String::from_utf8_lossy(token)
        );
    }
}

#[test]
fn default_levels_are_the_on_the_fly_ones() {
    assert_eq!(default_level(Encoding::Gzip), 5);
    assert_eq!(default_level(Encoding::Brotli), 4);
    assert_eq!(default_level(Encoding::Zstd), 3);
}

#[test]
fn round_trips_every_coding_and_input() {
    let inputs: [(&str, Vec<u8>); 4] = [
        ("empty", Vec::new()),
        ("one byte", vec![b'x']),
        ("100 KiB text", text(100 * 1024)),
        ("1 MiB random", random_bytes(1024 * 1024, 42)),
    ];
    for enc in ALL {
        for (name, input) in &inputs {
            for chunk in [0, 1000] {
                let compressed = compress(enc, default_level(enc), input, chunk);
                assert_eq!(
                    decode(enc, &compressed),
                    *input,
                    "{enc:?} {name} chunk {chunk}"
                );
                if name.contains("random") {
                    // Incompressible data must not blow up.
                    assert!(
                        compressed.len() < input.len() + input.len() / 100,
                        "{enc:?}"
                    );
                }
                if name.contains("text") {
                    assert!(
                        compressed.len() < input.len() / 3,
                        "{enc:?} {}",
                        compressed.len()
                    );
                }
            }
        }
    }
}

#[test]
fn levels_out_of_range_are_clamped_and_still_decode() {
    let input = text(64 * 1024);
    for enc in ALL {
        for level in [0, 1, 9, 11, 19, 22, 1000, u32::MAX] {
            let compressed = compress(enc, level, &input, 4096);
            assert_eq!(decode(enc, &compressed), input, "{enc:?} level {level}");
        }
    }
}

#[test]
fn single_byte_writes_decode() {
    let input = text(3000);
    for enc in ALL {
        let compressed = compress(enc, default_level(enc), &input, 1);
        assert_eq!(decode(enc, &compressed), input, "{enc:?}");
    }
}

#[test]
fn after_each_flush_the_output_decodes_to_the_input_so_far() {
    let input = text(40 * 1024);
    for enc in ALL {
        let mut encoder = Encoder::new(enc, default_level(enc));
        let mut out = Vec::new();
        let mut fed = 0;
        for (i, piece) in input.chunks(777).enumerate() {
            encoder.write(piece, &mut out).expect("write");
            fed += piece.len();
            if i % 3 == 2 {
                let before = out.len();
                encoder.flush(&mut out).expect("flush");
                assert!(
                    out.len() > before || i == 0,
                    "{enc:?}: flush after new input emits"
                );
                let decoded = decode_prefix(enc, &out);
                assert!(
                    decoded == input[..fed],
                    "{enc:?}: {} bytes decode after flushing {fed}",
                    decoded.len()
                );
            }
        }
        encoder.finish(&mut out).expect("finish");
        assert_eq!(decode(enc, &out), input, "{enc:?} whole stream");
    }
}

#[test]
fn repeated_flushes_without_input_keep_the_stream_valid() {
    for enc in ALL {
        let mut encoder = Encoder::new(enc, default_level(enc));
        let mut out = Vec::new();
        encoder.flush(&mut out).expect("flush before any input");
        encoder.write(b"hello ", &mut out).expect("write");
        encoder.flush(&mut out).expect("flush");
        encoder.flush(&mut out).expect("second flush");
        assert_eq!(decode_prefix(enc, &out), b"hello ", "{enc:?}");
        encoder.write(b"world", &mut out).expect("write");
        encoder.flush(&mut out).expect("flush");
        encoder.finish(&mut out).expect("finish");
        assert_eq!(decode(enc, &out), b"hello world", "{enc:?}");
    }
}

#[test]
fn output_is_appended_after_what_the_caller_had() {
    let input = text(10_000);
    for enc in ALL {
        let mut encoder = Encoder::new(enc, default_level(enc));
        let mut out = b"PREFIX".to_vec();
        encoder.write(&input, &mut out).expect("write");
        encoder.finish(&mut out).expect("finish");
        assert_eq!(&out[..6], b"PREFIX");
        assert_eq!(decode(enc, &out[6..]), input, "{enc:?}");
    }
}

#[test]
fn output_split_across_caller_drains_is_complete() {
    // The caller sends `out` and clears it between calls: the pieces concatenated must decode.
    let input = random_bytes(300 * 1024, 7);
    for enc in ALL {
        let mut encoder = Encoder::new(enc, default_level(enc));
        let mut wire = Vec::new();
        let mut out = Vec::new();
        for piece in input.chunks(16 * 1024) {
            encoder.write(piece, &mut out).expect("write");
            wire.extend_from_slice(&out);
            out.clear();
        }
        encoder.finish(&mut out).expect("finish");
        wire.extend_from_slice(&out);
        assert_eq!(decode(enc, &wire), input, "{enc:?}");
    }
}

#[test]
fn negotiate_table() {
    use Encoding::{Brotli as B, Gzip as G, Zstd as Z};
    let server = [Z, B, G];
    let table: &[(&[&str], &[Encoding], Option<Encoding>)] = &[
        // Absent field: only clients that ask get compression.
        (&[], &server, None),
        // Empty value: the client wants no coding.
        (&[""], &server, None),
        (&["identity"], &server, None),
        (&["identity;q=1, deflate"], &server, None),
        (&["gzip"], &server, Some(G)),
        (&["br"], &server, Some(B)),
        // Equal q: server preference order.
        (&["gzip, deflate, br"], &server, Some(B)),
        (&["gzip, deflate, br, zstd"], &server, Some(Z)),
        (&["gzip, deflate, br, zstd"], &[G, B], Some(G)),
        // Client q-values win over server order.
        (&["gzip;q=1.0, br;q=0.5"], &server, Some(G)),
        (&["br;q=0.8, gzip;q=0.9, zstd;q=0.9"], &server, Some(Z)),
        (&["zstd;q=0.001, br;q=0.002"], &server, Some(B)),
        (&["gzip;q=0.001"], &server, Some(G)),
        // q=0 forbids.
        (&["gzip;q=0"], &server, None),
        (&["gzip;q=0.000, br"], &[G], None),
        (&["br;q=0."], &server, None),
        // `*` matches codings not listed.
        (&["*"], &server, Some(Z)),
        (&["*"], &[G], Some(G)),
        (&["gzip;q=0, *"], &[G], None),
        (&["gzip;q=0, *"], &[G, B], Some(B)),
        (&["*;q=0.5, gzip"], &server, Some(G)),
        (&["*;q=0"], &server, None),
        (&["*;q=0, br"], &server, Some(B)),
        (&["br;q=0, *;q=0.1"], &[B, G], Some(G)),
        // Case.
        (&["GZIP"], &server, Some(G)),
        (&["X-Gzip"], &server, Some(G)),
        (&["Br;Q=0.4, gzip;q=0.5"], &server, Some(G)),
        (&["zStD"], &server, Some(Z)),
        // Spaces and empty list elements.
        (&["  gzip ;  q=0.5 ,\tbr ; q=0.6 "], &server, Some(B)),
        (&[",, gzip ,,"], &[G], Some(G)),
        (&["gzip;q = 0.5, br;q=0.4"], &server, Some(G)),
        // Malformed q: that element is ignored.
        (&["br;q=2, gzip"], &server, Some(G)),
        (&["br;q=abc"], &server, None),
        (&["br;q=0.1234"], &server, None),
        (&["br;q=1.001"], &server, None),
        (&["br;q=-1"], &server, None),
        (&["br;q=", "gzip;q=0.1"], &server, Some(G)),
        (&["br;q=1.000"], &server, Some(B)),
        (&["br;q=1."], &server, Some(B)),
        (&["b r, gzip;q=0.2"], &server, Some(G)),
        // Other parameters are ignored.
        (&["gzip;level=9"], &server, Some(G)),
        (&["gzip;"], &server, Some(G)),
        // Several field lines combine.
        (&["gzip;q=0.5", "br;q=0.7"], &server, Some(B)),
        (&["gzip;q=0.5", "", "br;q=0.4"], &server, Some(G)),
        // A coding named twice keeps its highest q.
        (&["x-gzip;q=0.3, gzip;q=0.6, br;q=0.5"], &server, Some(G)),
        // Nothing enabled, or nothing enabled is acceptable.
        (&["gzip, br, zstd"], &[], None),
        (&["br, zstd"], &[G], None),
    ];
    for (values, enabled, want) in table {
        let got = negotiate(values.iter().map(|v| v.as_bytes()), enabled);
        assert_eq!(got, *want, "{values:?} enabled {enabled:?}");
    }
}

#[test]
fn content_type_matches_table() {
    let table: &[(&str, &[&str], bool)] = &[
        ("text/html", &["text/html"], true),
        ("text/html; charset=utf-8", &["text/html"], true),
        ("TEXT/HTML;charset=UTF-8", &["text/html"], true),
        ("text/html", &["Text/HTML"], true),
        ("  text/html\t ; q=1", &["text/html"], true),
        ("text/html", &[" text/html "], true),
        ("text/html", &["text/html; charset=utf-8"], true),
        ("text/plain", &["text/*"], true),
        ("Text/CSS", &["application/json", "text/*"], true),
        ("application/json", &["text/*"], false),
        ("application/json", &["application/json"], true),
        ("application/json-seq", &["application/json"], false),
        ("application/json", &["application/json-seq"], false),
        ("application/javascript", &["*/*"], true),
        ("texts/html", &["text/*"], false),
        ("image/png", &["text/html", "application/json"], false),
        ("image/svg+xml", &["image/svg+xml"], true),
        ("text/html", &[], false),
        ("", &["text/*"], false),
        ("text", &["text/*"], false),
        ("text/", &["text/*"], false),
        ("/html", &["*/*"], false),
        ("text /html", &["text/*"], false),
        ("text/html", &["text"], false),
    ];
    for (content_type, types, want) in table {
        let types: Vec<String> = types.iter().map(|t| t.to_string()).collect();
        assert_eq!(
            content_type_matches(content_type.as_bytes(), &types),
            *want,
            "{content_type:?} against {types:?}"
        );
    }
}
