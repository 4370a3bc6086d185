//! Compressing a response body on its way to an HTTP/1.1 client: which responses qualify, and
//! the chunk-framed streaming compressor the body pump drives. The codings themselves are
//! `proxy_core::compress`'s.

use super::body::{BodyTracker, PumpError};
use proxy_core::compress::{content_type_matches, Encoder, Encoding};
use proxy_core::config::CompressSettings;
use proxy_core::http1::{has_token, Method, ResponseHead};

/// Whether the response in `ubuf` should be compressed under `settings`: a 200 with a body of
/// a listed type, not already encoded, not forbidden by `no-transform`, not a range, and not
/// known to be below `min_bytes`.
pub(super) fn should_compress(
    settings: &CompressSettings,
    ubuf: &[u8],
    head: &ResponseHead,
    method: Method,
) -> bool {
    head.status == 200
        && method == Method::Get
        && head.headers.find(ubuf, b"content-encoding").is_none()
        && head.headers.find(ubuf, b"content-range").is_none()
        && !head
            .headers
            .find(ubuf, b"cache-control")
            .is_some_and(|v| has_token(v, b"no-transform"))
        && head.content_length.is_none_or(|n| n >= settings.min_bytes)
        && head
            .headers
            .find(ubuf, b"content-type")
            .is_some_and(|t| content_type_matches(t, &settings.types))
}

/// A response body being compressed on its way to the client, chunk-framed for HTTP/1.1.
pub(super) struct Compressing {
    encoder: Option<Encoder>,
    plain: Vec<u8>,
    /// The bytes to write next: whole chunks (and the last chunk once the body ends).
    pub(super) out: Vec<u8>,
}

/// Width of the chunk-size field Ringway writes for compressed chunks (leading zeros are valid
/// chunk-size digits), so compressed bytes go straight after it without a copy.
const SIZE_DIGITS: usize = 8;

impl Compressing {
    /// A compressor for `enc` at `level`.
    pub(super) fn new(enc: Encoding, level: u32) -> Compressing {
        Compressing {
            encoder: Some(Encoder::new(enc, level)),
            plain: Vec::with_capacity(16 * 1024),
            out: Vec::with_capacity(16 * 1024),
        }
    }

    /// Consumes body bytes from `buf`: decodes their framing, compresses the payload (flushed,
    /// so the client can decode everything received so far) and leaves the framed chunks in
    /// `out`, ending the stream when the body ends. Returns the bytes of `buf` consumed.
    pub(super) fn step(&mut self, body: &mut BodyTracker, buf: &[u8]) -> Result<usize, PumpError> {
        self.out.clear();
        self.plain.clear();
        let consumed = body.advance_decoding(buf, &mut self.plain)?;
        if self.encoder.is_none() {
            return Ok(consumed);
        }
        let start = self.open_chunk();
        let Some(encoder) = self.encoder.as_mut() else {
            return Ok(consumed);
        };
        let res = encoder
            .write(&self.plain, &mut self.out)
            .and_then(|()| encoder.flush(&mut self.out));
        res.map_err(|_| PumpError::Malformed)?;
        self.close_chunk(start);
        if body.is_done() {
            self.end()?;
        }
        Ok(consumed)
    }

    /// Whether the compressed stream has been ended.
    pub(super) fn is_ended(&self) -> bool {
        self.encoder.is_none()
    }

    /// Ends the compressed stream (its trailer, then the last chunk), appending to `out`.
    pub(super) fn end(&mut self) -> Result<(), PumpError> {
        let Some(encoder) = self.encoder.take() else {
            return Ok(());
        };
        let start = self.open_chunk();
        encoder
            .finish(&mut self.out)
            .map_err(|_| PumpError::Malformed)?;
        self.close_chunk(start);
        self.out.extend_from_slice(b"0\r\n\r\n");
        Ok(())
    }

    fn open_chunk(&mut self) -> usize {
        let start = self.out.len();
        self.out.extend_from_slice(&[b'0'; SIZE_DIGITS]);
        self.out.extend_from_slice(b"\r\n");
        start
    }

    /// Fills in the size of the chunk opened at `start`, or takes it back if it is empty.
    fn close_chunk(&mut self, start: usize) {
        let data = self.out.len() - start - SIZE_DIGITS - 2;
        if data == 0 {
            self.out.truncate(start);
            return;
        }
        let mut n = data;
        for i in (0..SIZE_DIGITS).rev() {
            self.out[start + i] = b"0123456789abcdef"[n & 15];
            n >>= 4;
        }
        self.out.extend_from_slice(b"\r\n");
    }
}
