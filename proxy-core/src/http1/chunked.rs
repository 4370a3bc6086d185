//! The chunked transfer coding (RFC 9112 §7.1) as an incremental, strict decoder.
//!
//! The proxy uses the decoder to know where a chunked body ends, how many payload bytes it
//! carried, and which bytes are payload: request bodies are re-framed from it (the client's chunk
//! lines, extensions and trailers never reach the upstream), responses relayed once validated
//! (or de-chunked for HTTP/1.0 clients).
//! It is strict on purpose: line endings must be CRLF, sizes hexadecimal without sign or
//! whitespace, extensions and trailers bounded. Leniency here is what request smuggling feeds on.

/// The longest chunk-size line (size plus extensions) accepted, in bytes.
const MAX_LINE: u32 = 4096;
/// The largest chunk size accepted: 2^63 - 1.
const MAX_SIZE: u64 = i64::MAX as u64;
/// The most trailer bytes accepted after the last chunk.
const MAX_TRAILERS: u32 = 16 * 1024;

/// Why a chunked body was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedError {
    /// A chunk size that is not hexadecimal, or overflows 64 bits.
    BadSize,
    /// A line not ended by CRLF, or chunk data not followed by CRLF.
    BadLineEnding,
    /// A chunk-size line or the trailer section is too long.
    TooLong,
    /// A trailer line that is not a header field (`name: value`, no control characters).
    BadTrailer,
}

use super::head::is_tchar;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size { digits: u8 },
    /// Skipping a chunk extension up to CR.
    Extension,
    /// Saw CR after the size line; LF must follow.
    SizeLf,
    /// Inside chunk data.
    Data,
    /// After chunk data; CR must follow.
    DataCr,
    /// After chunk data and CR; LF must follow.
    DataLf,
    /// At the start of a trailer line (or of the final blank line).
    TrailerStart,
    /// Inside a trailer field line, before or after its colon.
    TrailerLine { colon: bool },
    /// Saw CR inside or after a trailer field line.
    TrailerLf { blank: bool },
    /// The whole body has been seen.
    Done,
}

/// An incremental chunked-body decoder. Feed it bytes with [`ChunkedDecoder::decode`] until it
/// reports `done`; it never looks back at bytes it already consumed.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// Bytes left in the current chunk's data.
    remaining: u64,
    /// Bytes of the current size line, or of all trailers so far.
    line: u32,
    /// Total payload bytes seen.
    payload: u64,
}

/// What one call to [`ChunkedDecoder::decode`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// How many input bytes were consumed.
    pub consumed: usize,
    /// Payload bytes found in this call (a sub-slice of the input; possibly empty).
    pub data: &'a [u8],
    /// Whether the body ended within the consumed bytes.
    pub done: bool,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub const fn new() -> Self {
        ChunkedDecoder {
            state: State::Size { digits: 0 },
            remaining: 0,
            line: 0,
            payload: 0,
        }
    }

    /// Whether the whole body, trailers included, has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Payload bytes seen so far (chunk data only, not framing).
    pub fn payload_len(&self) -> u64 {
        self.payload
    }

    /// Consumes framing from `input` up to and including the next run of payload bytes.
    ///
    /// Returns the number of bytes consumed and the payload among them. Call again with the
    /// rest of the input while `consumed < input.len()` and not `done`. Once done, bytes after
    /// the body are left unconsumed: they belong to the next message.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<Decoded<'a>, ChunkedError> {
        self.decode_inner(input, false)
    }

    /// Like [`ChunkedDecoder::decode`], but also returns right after the last chunk's size line,
    /// so that the caller sees where the trailer section starts: while
    /// [`ChunkedDecoder::in_trailers`] holds, the bytes `decode` consumes are trailer fields
    /// (checked here; the caller may keep them to pass the trailers on).
    pub fn decode_to_trailers<'a>(&mut self, input: &'a [u8]) -> Result<Decoded<'a>, ChunkedError> {
        self.decode_inner(input, true)
    }

    /// Whether the decoder is inside the trailer section (after the last chunk, before the end).
    pub fn in_trailers(&self) -> bool {
        matches!(
            self.state,
            State::TrailerStart | State::TrailerLine { .. } | State::TrailerLf { .. }
        )
    }

    fn decode_inner<'a>(
        &mut self,
        input: &'a [u8],
        stop_at_trailers: bool,
    ) -> Result<Decoded<'a>, ChunkedError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Done => break,
                State::Data => {
                    let take = (input.len() - i)
                        .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                    self.remaining -= take as u64;
                    self.payload += take as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                    return Ok(Decoded {
                        consumed: i + take,
                        data: &input[i..i + take],
                        done: false,
                    });
                }
                State::Size { digits } => {
                    self.bump_line(MAX_LINE)?;
                    if let Some(d) = hex_value(b) {
                        // At most 16 digits, leading zeros included (a parser that stops at 16
                        // would read another size), and below 2^63, so no consumer's signed
                        // arithmetic overflows.
                        if digits >= 16 || self.remaining > MAX_SIZE >> 4 {
                            return Err(ChunkedError::BadSize);
                        }
                        self.remaining = (self.remaining << 4) | u64::from(d);
                        self.state = State::Size { digits: digits + 1 };
                    } else if digits == 0 {
                        return Err(ChunkedError::BadSize);
                    } else if b == b';' {
                        self.state = State::Extension;
                    } else if b == b'\r' {
                        self.state = State::SizeLf;
                    } else if b == b'\n' {
                        return Err(ChunkedError::BadLineEnding);
                    } else {
                        return Err(ChunkedError::BadSize);
                    }
                }
                State::Extension => {
                    self.bump_line(MAX_LINE)?;
                    match b {
                        b'\r' => self.state = State::SizeLf,
                        b'\n' => return Err(ChunkedError::BadLineEnding),
                        _ => {}
                    }
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkedError::BadLineEnding);
                    }
                    self.line = 0;
                    if self.remaining == 0 {
                        self.state = State::TrailerStart;
                        if stop_at_trailers {
                            return Ok(Decoded {
                                consumed: i + 1,
                                data: &[],
                                done: false,
                            });
                        }
                    } else {
                        self.state = State::Data;
                    }
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkedError::BadLineEnding);
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkedError::BadLineEnding);
                    }
                    self.state = State::Size { digits: 0 };
                }
                State::TrailerStart => {
                    self.bump_line(MAX_TRAILERS)?;
                    self.state = match b {
                        b'\r' => State::TrailerLf { blank: true },
                        b'\n' => return Err(ChunkedError::BadLineEnding),
                        _ if is_tchar(b) => State::TrailerLine { colon: false },
                        _ => return Err(ChunkedError::BadTrailer),
                    };
                }
                State::TrailerLine { colon: false } => {
                    self.bump_line(MAX_TRAILERS)?;
                    match b {
                        b':' => self.state = State::TrailerLine { colon: true },
                        _ if is_tchar(b) => {}
                        _ => return Err(ChunkedError::BadTrailer),
                    }
                }
                State::TrailerLine { colon: true } => {
                    self.bump_line(MAX_TRAILERS)?;
                    match b {
                        b'\r' => self.state = State::TrailerLf { blank: false },
                        b'\n' => return Err(ChunkedError::BadLineEnding),
                        b'\t' => {}
                        _ if b < 0x20 || b == 0x7f => return Err(ChunkedError::BadTrailer),
                        _ => {}
                    }
                }
                State::TrailerLf { blank } => {
                    if b != b'\n' {
                        return Err(ChunkedError::BadLineEnding);
                    }
                    if blank {
                        self.state = State::Done;
                        return Ok(Decoded {
                            consumed: i + 1,
                            data: &[],
                            done: true,
                        });
                    }
                    self.state = State::TrailerStart;
                }
            }
            i += 1;
        }
        Ok(Decoded {
            consumed: i,
            data: &[],
            done: self.state == State::Done,
        })
    }

    fn bump_line(&mut self, limit: u32) -> Result<(), ChunkedError> {
        self.line += 1;
        if self.line > limit {
            return Err(ChunkedError::TooLong);
        }
        Ok(())
    }
}

/// The value of one hexadecimal digit.
pub(super) fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trailer_section_can_be_told_apart() {
        let body = b"3\r\nabc\r\n0\r\ngrpc-status: 0\r\nx: y\r\n\r\nNEXT";
        for step in 1..body.len() {
            let mut d = ChunkedDecoder::new();
            let (mut data, mut trailers, mut pos) = (Vec::new(), Vec::new(), 0);
            while pos < body.len() && !d.is_done() {
                let end = (pos + step).min(body.len());
                let was_in_trailers = d.in_trailers();
                let r = d.decode_to_trailers(&body[pos..end]).expect("valid");
                data.extend_from_slice(r.data);
                if was_in_trailers {
                    trailers.extend_from_slice(&body[pos..pos + r.consumed]);
                }
                pos += r.consumed;
            }
            assert_eq!(data, b"abc");
            assert_eq!(trailers, b"grpc-status: 0\r\nx: y\r\n\r\n", "step {step}");
            assert_eq!(&body[pos..], b"NEXT");
        }
    }

    /// Decodes `input` fed in pieces of `step` bytes; returns payload, consumed and done.
    fn run(input: &[u8], step: usize) -> Result<(Vec<u8>, usize, bool), ChunkedError> {
        let mut d = ChunkedDecoder::new();
        let mut payload = Vec::new();
        let mut pos = 0;
        while pos < input.len() && !d.is_done() {
            let end = (pos + step).min(input.len());
            let mut piece = &input[pos..end];
            while !piece.is_empty() && !d.is_done() {
                let r = d.decode(piece)?;
                payload.extend_from_slice(r.data);
                pos += r.consumed;
                piece = &piece[r.consumed..];
            }
        }
        Ok((payload, pos, d.is_done()))
    }

    #[test]
    fn decodes_at_every_split() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
        for step in 1..body.len() {
            let (payload, consumed, done) = run(body, step).unwrap();
            assert_eq!(payload, b"hello world", "step {step}");
            assert_eq!(consumed, body.len() - 4, "step {step}");
            assert!(done);
        }
    }

    #[test]
    fn empty_body_is_just_the_last_chunk() {
        let (payload, consumed, done) = run(b"0\r\n\r\n", 1).unwrap();
        assert!(payload.is_empty() && done);
        assert_eq!(consumed, 5);
    }

    #[test]
    fn rejects_what_smuggling_uses() {
        assert_eq!(
            run(b"5\nhello\r\n0\r\n\r\n", 64).unwrap_err(),
            ChunkedError::BadLineEnding
        );
        assert_eq!(
            run(b"5\r\nhelloXX0\r\n\r\n", 64).unwrap_err(),
            ChunkedError::BadLineEnding
        );
        assert_eq!(run(b"-5\r\n", 64).unwrap_err(), ChunkedError::BadSize);
        assert_eq!(run(b" 5\r\n", 64).unwrap_err(), ChunkedError::BadSize);
        assert_eq!(run(b"0x5\r\n", 64).unwrap_err(), ChunkedError::BadSize);
        assert_eq!(
            run(b"1ffffffffffffffff\r\n", 64).unwrap_err(),
            ChunkedError::BadSize
        );
        assert_eq!(run(b"\r\n", 64).unwrap_err(), ChunkedError::BadSize);
        // 2^63 is one too many; 2^63 - 1 (and leading zeros) are fine.
        assert_eq!(
            run(b"8000000000000000\r\n", 64).unwrap_err(),
            ChunkedError::BadSize
        );
        let mut d = ChunkedDecoder::new();
        assert!(d.decode(b"7fffffffffffffff\r\n").is_ok());
        let zeros = [vec![b'0'; 16], b"5\r\nhello\r\n0\r\n\r\n".to_vec()].concat();
        assert_eq!(run(&zeros, 7).unwrap_err(), ChunkedError::BadSize);
        assert_eq!(
            run(b"000000000000005\r\nhello\r\n0\r\n\r\n", 7).unwrap().0,
            b"hello"
        );
        // Trailers must be header fields: no request line, no field without a colon, no NUL.
        for bad in [
            &b"0\r\nGET /x HTTP/1.1\r\n\r\n"[..],
            b"0\r\n0\r\n\r\n",
            b"0\r\nX-T: a\x00b\r\n\r\n",
            b"0\r\n: v\r\n\r\n",
            b"0\r\nX T: v\r\n\r\n",
        ] {
            assert_eq!(
                run(bad, 3).unwrap_err(),
                ChunkedError::BadTrailer,
                "{bad:?}"
            );
        }
        assert!(run(b"0\r\nX-T: a b\t\xe9\r\nY:\r\n\r\n", 3).unwrap().2);
        let long = [b"1;".as_slice(), &[b'a'; 5000]].concat();
        assert_eq!(run(&long, 64).unwrap_err(), ChunkedError::TooLong);
    }

    #[test]
    fn large_sizes_are_counted_not_buffered() {
        let mut d = ChunkedDecoder::new();
        let r = d.decode(b"ffffffff\r\n").unwrap();
        assert_eq!((r.consumed, r.done), (10, false));
        let chunk = vec![0u8; 1 << 20];
        let r = d.decode(&chunk).unwrap();
        assert_eq!(r.data.len(), 1 << 20);
        assert_eq!(d.payload_len(), 1 << 20);
    }
}
