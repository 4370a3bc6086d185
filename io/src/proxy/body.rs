//! Streaming message bodies between two sockets through one bounded buffer.
//!
//! [`BodyTracker`] knows, from the framing `proxy-core` decided, which bytes belong to the body
//! and when it ends; [`pump`] moves them from one socket to the other, one buffer at a time.
//! Reading waits until the previous write has finished, so a slow receiver slows the sender
//! (TCP backpressure) and memory stays at one buffer per direction whatever the body size.

use crate::stream::Timed;
use monoio::buf::IoBuf;
use proxy_core::http1::{BodyFraming, ChunkedDecoder};
use std::io;
use std::time::{Duration, Instant};

/// Where a body ends, tracked as its bytes pass.
#[derive(Debug, Clone)]
pub(crate) enum BodyTracker {
    /// The body is complete (or there is none).
    Done,
    /// This many bytes are still to come.
    Length(u64),
    /// A chunked body; the decoder finds its end.
    Chunked(ChunkedDecoder),
    /// The body ends when the sender closes.
    UntilClose,
}

/// Why a pump stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PumpError {
    /// The sender closed before the body was complete.
    SrcClosed,
    /// The sender went quiet for longer than its timeout.
    SrcTimeout,
    /// Reading from the sender failed.
    SrcIo,
    /// The body's chunked framing is invalid.
    Malformed,
    /// The body grew past the configured limit.
    TooLarge,
    /// Writing to the receiver failed or timed out.
    Dst,
}

impl BodyTracker {
    pub(crate) fn new(framing: BodyFraming) -> BodyTracker {
        match framing {
            BodyFraming::None | BodyFraming::Length(0) => BodyTracker::Done,
            BodyFraming::Length(n) => BodyTracker::Length(n),
            BodyFraming::Chunked => BodyTracker::Chunked(ChunkedDecoder::new()),
            BodyFraming::UntilClose => BodyTracker::UntilClose,
        }
    }

    /// Whether more than `n` bytes of the body may still arrive.
    pub(crate) fn expects_more_than(&self, n: usize) -> bool {
        match self {
            BodyTracker::Done => false,
            BodyTracker::Length(rem) => *rem > n as u64,
            BodyTracker::Chunked(d) => !d.is_done(),
            BodyTracker::UntilClose => true,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        match self {
            BodyTracker::Done => true,
            BodyTracker::Chunked(d) => d.is_done(),
            _ => false,
        }
    }

    /// Whether a chunked body's payload so far exceeds `limit`. (A `Content-Length` body is
    /// checked against the limit before anything is read.)
    pub(crate) fn over_limit(&self, limit: Option<u64>) -> bool {
        match (self, limit) {
            (BodyTracker::Chunked(d), Some(max)) => d.payload_len() > max,
            _ => false,
        }
    }

    /// How many leading bytes of `input` belong to the body, advancing past them. Wire bytes
    /// are forwarded unchanged, chunk framing included.
    pub(crate) fn advance(&mut self, input: &[u8]) -> Result<usize, PumpError> {
        self.advance_with(input, None)
    }

    /// Like [`BodyTracker::advance`], but writes the body into `out` in Ringway's own chunked
    /// framing: one chunk per run of payload, extensions dropped, and the end as `0` CRLF CRLF
    /// with the sender's trailer fields dropped. A client's chunk lines are therefore never passed
    /// on, only their validated meaning. Stops early rather than grow `out` past its capacity.
    /// Returns bytes consumed (for a non-chunked body, the same as `advance`, copying).
    pub(crate) fn advance_reframing(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<usize, PumpError> {
        let BodyTracker::Chunked(d) = self else {
            return self.advance_with(input, Some(out));
        };
        // Room for a size line (16 hex digits + CRLF), the data's CRLF and the last chunk.
        const FRAMING: usize = 18 + 2 + 5;
        let mut pos = 0;
        while pos < input.len() && !d.is_done() {
            let room = out.capacity().saturating_sub(out.len() + FRAMING);
            if room == 0 {
                break;
            }
            let end = input.len().min(pos + room);
            let r = d
                .decode(&input[pos..end])
                .map_err(|_| PumpError::Malformed)?;
            if !r.data.is_empty() {
                write_hex(out, r.data.len());
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(r.data);
                out.extend_from_slice(b"\r\n");
            }
            if r.done {
                out.extend_from_slice(b"0\r\n\r\n");
            }
            pos += r.consumed;
            if r.consumed == 0 {
                break;
            }
        }
        Ok(pos)
    }

    /// Like [`BodyTracker::advance`], but appends only the decoded payload to `out` (for
    /// HTTP/1.0 clients, which cannot receive chunked coding). Returns bytes consumed.
    pub(crate) fn advance_decoding(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<usize, PumpError> {
        self.advance_with(input, Some(out))
    }

    fn advance_with(
        &mut self,
        input: &[u8],
        mut out: Option<&mut Vec<u8>>,
    ) -> Result<usize, PumpError> {
        let n = match self {
            BodyTracker::Done => 0,
            BodyTracker::Length(rem) => {
                let n = usize::try_from(*rem).map_or(input.len(), |r| r.min(input.len()));
                *rem -= n as u64;
                if *rem == 0 {
                    *self = BodyTracker::Done;
                }
                n
            }
            BodyTracker::UntilClose => input.len(),
            BodyTracker::Chunked(d) => {
                let mut pos = 0;
                while pos < input.len() && !d.is_done() {
                    let r = d.decode(&input[pos..]).map_err(|_| PumpError::Malformed)?;
                    if let Some(out) = out.as_deref_mut() {
                        out.extend_from_slice(r.data);
                    }
                    pos += r.consumed;
                    if r.consumed == 0 {
                        break;
                    }
                }
                return Ok(pos);
            }
        };
        if let Some(out) = out {
            out.extend_from_slice(&input[..n]);
        }
        Ok(n)
    }
}

/// Appends `n` in upper-case hexadecimal.
pub(crate) fn write_hex(out: &mut Vec<u8>, n: usize) {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut v = n;
    loop {
        i -= 1;
        digits[i] = b"0123456789ABCDEF"[v & 15];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// What a pump writes for the body bytes it reads.
pub(crate) enum Relay<'a> {
    /// The wire bytes as they came (after validation).
    Raw,
    /// The payload only, de-chunked into this scratch buffer (for HTTP/1.0 clients).
    Dechunk(&'a mut Vec<u8>),
    /// Re-framed in Ringway's own chunked coding through this scratch buffer (chunked
    /// request bodies, see [`BodyTracker::advance_reframing`]).
    Rechunk(&'a mut Vec<u8>),
    /// The payload compressed (and chunk-framed) on the way (responses Ringway compresses).
    Compress(&'a mut super::compressing::Compressing),
}

/// What a pump does besides relaying: a cap on a chunked body's payload, and a copy of the body
/// for the cache.
#[derive(Default)]
pub(crate) struct PumpExtra<'a> {
    /// Caps a chunked body's payload.
    pub(crate) limit: Option<u64>,
    /// Sees every wire byte of the body relayed.
    pub(crate) capture: Option<&'a mut super::cache_fill::Capture>,
}

/// Timeouts for the two sides of a pump.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PumpTimeouts {
    /// Longest wait for the sender's next bytes.
    pub(crate) src: Duration,
    /// Longest wait for the receiver to take bytes.
    pub(crate) dst: Duration,
    /// The slowest average rate the client side (sender of an upload, receiver of a download)
    /// may keep up, if any.
    pub(crate) client_rate: Option<MinRate>,
}

/// Which side of a pump is the client, the side a minimum rate applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientSide {
    /// The client sends (a request body).
    Src,
    /// The client receives (a response body).
    Dst,
}

/// A minimum transfer rate: after `grace`, a client must have moved at least `rate` bytes per
/// second of the time Ringway spent waiting on it. Time spent waiting on the other side (a slow
/// upstream) does not count against the client. This is what ends slow-body and slow-read
/// attacks, which a per-operation idle timeout alone lets trickle on for ever.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MinRate {
    side: ClientSide,
    rate: u64,
    grace: Duration,
    waited: Duration,
    bytes: u64,
    /// Bytes written to a receiving client before the pump started (the response head).
    written_before: u64,
}

impl MinRate {
    pub(crate) fn new(side: ClientSide, rate: u64, grace: Duration) -> MinRate {
        MinRate {
            side,
            rate: rate.max(1),
            grace,
            waited: Duration::ZERO,
            bytes: 0,
            written_before: 0,
        }
    }

    /// Accounts for `n` bytes already written to the receiving client, taking `waited`.
    pub(crate) fn after_writing(mut self, n: u64, waited: Duration) -> MinRate {
        self.written_before = n;
        self.waited += waited;
        self
    }

    /// How long the next client operation may take, at most `base`.
    pub(crate) fn limit(&self, base: Duration) -> Duration {
        let earned = self.grace + Duration::from_secs_f64(self.bytes as f64 / self.rate as f64);
        base.min(earned.saturating_sub(self.waited))
    }
}

/// The bytes a receiving client has actually taken: what was written, minus what still sits
/// unacknowledged in the socket's send queue. Counting written bytes instead would credit a
/// slow reader with everything the kernel buffered for it (megabytes, once the send buffer
/// autotunes), which is minutes of allowance at a 1 KiB/s minimum.
fn delivered(dst: &Timed, written: u64) -> u64 {
    written.saturating_sub(dst.unacknowledged().unwrap_or(0))
}

/// Moves the rest of a body from `src` to `dst`.
///
/// `buf` holds bytes already read from `src` (possibly including bytes past the body, which are
/// left in it when the body ends: they are the next message). `extra.limit` caps a chunked
/// body's payload; `extra.capture` gets a copy of the body's wire bytes. `relay` says what is
/// written for the bytes read. Returns the number of bytes written to `dst`.
pub(crate) async fn pump(
    src: &mut Timed,
    dst: &mut Timed,
    buf: &mut Vec<u8>,
    body: &mut BodyTracker,
    timeouts: PumpTimeouts,
    extra: PumpExtra<'_>,
    mut relay: Relay<'_>,
) -> Result<u64, PumpError> {
    let PumpExtra { limit, mut capture } = extra;
    let mut written = 0u64;
    // The minimum rate watches one side only; the clock is read only for that side.
    let (mut src_rate, mut dst_rate) = match timeouts.client_rate {
        Some(r) if r.side == ClientSide::Src => (Some(r), None),
        Some(r) => (None, Some(r)),
        None => (None, None),
    };
    while !body.is_done() {
        if buf.is_empty() {
            let since = src_rate.is_some().then(Instant::now);
            let limit = src_rate.map_or(timeouts.src, |r| r.limit(timeouts.src));
            let (res, b) = src.read_append(std::mem::take(buf), limit).await;
            *buf = b;
            if let (Some(r), Some(since)) = (&mut src_rate, since) {
                r.waited += since.elapsed();
                r.bytes += buf.len() as u64;
            }
            match res {
                Ok(0) if matches!(body, BodyTracker::UntilClose) => {
                    *body = BodyTracker::Done;
                    break;
                }
                Ok(0) => return Err(PumpError::SrcClosed),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(PumpError::SrcTimeout),
                Err(_) => return Err(PumpError::SrcIo),
            }
        }
        let consumed = match &mut relay {
            Relay::Raw => body.advance(buf)?,
            Relay::Dechunk(out) => {
                out.clear();
                body.advance_decoding(buf, out)?
            }
            Relay::Rechunk(out) => {
                out.clear();
                body.advance_reframing(buf, out)?
            }
            Relay::Compress(c) => c.step(body, buf)?,
        };
        if let Some(c) = capture.as_deref_mut() {
            c.feed(&buf[..consumed]);
        }
        if body.over_limit(limit) {
            return Err(PumpError::TooLarge);
        }
        let since = dst_rate.is_some().then(Instant::now);
        let limit = match &mut dst_rate {
            Some(r) => {
                // `r.bytes` is what the client had taken when last asked: a lower bound, so
                // the limit it gives is never too lenient. The kernel is asked again (one
                // ioctl) only when that bound decides the limit, which for a reader keeping up
                // is about once per response rather than once per write.
                let mut l = r.limit(timeouts.dst);
                if l < timeouts.dst {
                    r.bytes = delivered(dst, r.written_before + written);
                    l = r.limit(timeouts.dst);
                }
                l
            }
            None => timeouts.dst,
        };
        let (res, n) = match &mut relay {
            Relay::Raw => {
                let (res, slice) = dst
                    .write_all(std::mem::take(buf).slice(..consumed), limit)
                    .await;
                *buf = slice.into_inner();
                (res, consumed)
            }
            Relay::Dechunk(out) | Relay::Rechunk(out) if !out.is_empty() => {
                let n = out.len();
                let (res, o) = dst.write_all(std::mem::take(*out), limit).await;
                **out = o;
                (res, n)
            }
            Relay::Compress(c) if !c.out.is_empty() => {
                let n = c.out.len();
                let (res, o) = dst.write_all(std::mem::take(&mut c.out), limit).await;
                c.out = o;
                (res, n)
            }
            Relay::Dechunk(_) | Relay::Rechunk(_) | Relay::Compress(_) => (Ok(()), 0),
        };
        written += n as u64;
        if let (Some(r), Some(since)) = (&mut dst_rate, since) {
            r.waited += since.elapsed();
        }
        res.map_err(|_| PumpError::Dst)?;
        buf.drain(..consumed);
    }
    // A close-delimited body ends at the upstream's EOF, which no step saw: end the
    // compressed stream (and its chunked framing) here.
    if let Relay::Compress(c) = &mut relay {
        if !c.is_ended() {
            c.out.clear();
            c.end()?;
            let n = c.out.len();
            let (res, o) = dst
                .write_all(std::mem::take(&mut c.out), timeouts.dst)
                .await;
            c.out = o;
            res.map_err(|_| PumpError::Dst)?;
            written += n as u64;
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_tracker_stops_at_the_body_end() {
        let mut t = BodyTracker::new(BodyFraming::Length(5));
        assert_eq!(t.advance(b"abc").unwrap(), 3);
        assert_eq!(t.advance(b"deGET /").unwrap(), 2);
        assert!(t.is_done());
        assert_eq!(t.advance(b"more").unwrap(), 0);
    }

    #[test]
    fn chunked_tracker_forwards_framing_and_can_decode() {
        let wire = b"3\r\nabc\r\n0\r\n\r\nNEXT";
        let mut t = BodyTracker::new(BodyFraming::Chunked);
        assert_eq!(t.advance(wire).unwrap(), wire.len() - 4);
        assert!(t.is_done());
        let mut t = BodyTracker::new(BodyFraming::Chunked);
        let mut out = Vec::new();
        assert_eq!(t.advance_decoding(wire, &mut out).unwrap(), wire.len() - 4);
        assert_eq!(out, b"abc");
        let mut t = BodyTracker::new(BodyFraming::Chunked);
        assert_eq!(t.advance(b"zz\r\n"), Err(PumpError::Malformed));
    }

    #[test]
    fn reframing_drops_extensions_and_trailers_and_respects_capacity() {
        let wire = b"3;ext=\"a\"\r\nabc\r\n00a\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let mut t = BodyTracker::new(BodyFraming::Chunked);
        let mut out = Vec::with_capacity(256);
        assert_eq!(t.advance_reframing(wire, &mut out).unwrap(), wire.len() - 4);
        assert!(t.is_done());
        assert_eq!(out, b"3\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\n");
        // A scratch buffer smaller than the body: it fills, never grows, and resumes.
        let data = vec![b'x'; 1000];
        let wire = [b"3E8\r\n".as_slice(), &data, b"\r\n0\r\n\r\n"].concat();
        let mut t = BodyTracker::new(BodyFraming::Chunked);
        let (mut pos, mut payload) = (0, Vec::new());
        while !t.is_done() {
            let mut out = Vec::with_capacity(100);
            pos += t.advance_reframing(&wire[pos..], &mut out).unwrap();
            assert!(out.len() <= 100);
            let mut d = proxy_core::http1::ChunkedDecoder::new();
            let mut rest = &out[..];
            while !rest.is_empty() && !d.is_done() {
                let r = d.decode(rest).unwrap();
                payload.extend_from_slice(r.data);
                rest = &rest[r.consumed..];
            }
        }
        assert_eq!(pos, wire.len());
        assert_eq!(payload, data);
    }
}
