//! Response compression, pure: choosing a content coding from `Accept-Encoding` (RFC 9110
//! §12.5.3), matching a response's `Content-Type` against the configured compressible types, and
//! a streaming [`Encoder`] for gzip, brotli and zstd that appends its output straight into a
//! caller-owned `Vec<u8>`. It must not own sockets, buffers between calls or clocks, and it must
//! not decide *whether* a response may be compressed beyond these two checks (status, `Range`,
//! `Cache-Control: no-transform`, an existing `Content-Encoding` are the caller's business).
//!
//! Memory per [`Encoder`], measured on this machine (heap held by the coder after 1 MiB of input
//! fed in 16 KiB writes, and its peak; it does not grow with longer bodies):
//!
//! | coding, level | held | peak | notes |
//! |---|---|---|---|
//! | gzip 5 (any level) | 371 KiB | 371 KiB | zlib-rs: window ×2, hash and chain, pending |
//! | brotli 4, `lgwin` 16 | 1.7 MiB | 1.8 MiB | ring buffer and per-metablock command buffers |
//! | brotli 1 | 0.1 MiB | 0.2 MiB | |
//! | brotli 9 / 11 | 33 / 2.2 MiB | 33 / 6.2 MiB | H9 hasher / Zopfli: not on the fly |
//! | zstd 3 | 3.5 MiB | 3.5 MiB | default window for unknown sizes (2 MiB) plus tables |
//! | zstd 1 / 5 / 9 / 19 | 1.3 / 5.2 / 12.7 / 83.5 MiB | same | window ≤ 2 MiB at all levels |
//!
//! Throughput for a 1 MiB HTML-like text body in 16 KiB writes (release build, one core of this
//! 2-vCPU Xeon, shared with other builds, so ±30%): gzip 5 ≈ 115 MiB/s (ratio 0.161),
//! brotli 4 ≈ 110 MiB/s (0.197), zstd 3 ≈ 550 MiB/s (0.177); gzip 1 ≈ 330 MiB/s, brotli 1 ≈
//! 230 MiB/s.

use std::io;

use brotli::enc::encode::{
    BrotliEncoderDestroyInstance, BrotliEncoderOperation, BrotliEncoderParameter,
    BrotliEncoderStateStruct,
};
use brotli::enc::StandardAlloc;
use flate2::{Compress, Compression, FlushCompress, Status};
use zstd::zstd_safe::{CCtx, CParameter, InBuffer, OutBuffer};

/// A content coding Ringway can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// `gzip` (RFC 1952): DEFLATE with a CRC-32 trailer; every client understands it.
    Gzip,
    /// `br` (RFC 7932): brotli, better ratios on text at similar speed.
    Brotli,
    /// `zstd` (RFC 8878): Zstandard, the fastest of the three.
    Zstd,
}

impl Encoding {
    /// The token in Content-Encoding / Accept-Encoding: "gzip", "br", "zstd".
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Brotli => "br",
            Encoding::Zstd => "zstd",
        }
    }

    /// Parses a token (case-insensitive; "x-gzip" counts as gzip). The token must already be
    /// trimmed of whitespace.
    pub fn from_token(t: &[u8]) -> Option<Encoding> {
        if t.eq_ignore_ascii_case(b"gzip") || t.eq_ignore_ascii_case(b"x-gzip") {
            Some(Encoding::Gzip)
        } else if t.eq_ignore_ascii_case(b"br") {
            Some(Encoding::Brotli)
        } else if t.eq_ignore_ascii_case(b"zstd") {
            Some(Encoding::Zstd)
        } else {
            None
        }
    }

    /// Position in per-coding tables.
    fn index(self) -> usize {
        match self {
            Encoding::Gzip => 0,
            Encoding::Brotli => 1,
            Encoding::Zstd => 2,
        }
    }
}

/// Picks the coding for a response from the request's Accept-Encoding field values (RFC 9110
/// §12.5.3).
///
/// - No Accept-Encoding field at all (the iterator is empty) → `None`: Ringway only compresses
///   for clients that ask. An empty field value lists nothing, so it also yields `None`.
/// - Each element is `coding [; q=qvalue]`; q defaults to 1, `q=0` forbids the coding. An element
///   whose q is malformed (`q=abc`, `q=1.5`, `q=0.1234`) is ignored; other parameters are
///   ignored. A coding listed more than once keeps its highest q.
/// - `*` gives its q to every coding not listed explicitly; so `gzip;q=0, *` excludes gzip.
/// - `identity` and unknown codings are irrelevant to the choice among `enabled`.
/// - Among acceptable codings with the highest q, the first in `enabled` order wins (server
///   preference). `None` when nothing in `enabled` is acceptable.
///
/// One pass over the values, no allocation.
pub fn negotiate<'a>(
    accept_encoding: impl IntoIterator<Item = &'a [u8]>,
    enabled: &[Encoding],
) -> Option<Encoding> {
    // q-values in thousandths, per coding (index by `Encoding::index`) and for `*`.
    let mut listed: [Option<u16>; 3] = [None; 3];
    let mut star: Option<u16> = None;
    let mut any_field = false;
    for value in accept_encoding {
        any_field = true;
        for element in value.split(|&b| b == b',') {
            let Some((coding, q)) = parse_element(element) else {
                continue;
            };
            let slot = match coding {
                Coding::Known(enc) => &mut listed[enc.index()],
                Coding::Star => &mut star,
                Coding::Other => continue,
            };
            *slot = Some(slot.map_or(q, |old| old.max(q)));
        }
    }
    if !any_field {
        return None;
    }
    let mut best: Option<(Encoding, u16)> = None;
    for &enc in enabled {
        let q = listed[enc.index()].or(star).unwrap_or(0);
        if q > 0 && best.is_none_or(|(_, best_q)| q > best_q) {
            best = Some((enc, q));
        }
    }
    best.map(|(enc, _)| enc)
}

/// Whether a Content-Type value matches one of `types` (e.g. "text/html", "text/*",
/// "application/json"): media type compared case-insensitively without parameters; "type/*"
/// matches any subtype ("*/*" any type); surrounding whitespace ignored. A Content-Type that is
/// not `token/token` matches nothing.
pub fn content_type_matches(content_type: &[u8], types: &[String]) -> bool {
    let Some((ty, subtype)) = media_type(content_type) else {
        return false;
    };
    types
        .iter()
        .any(|pattern| match media_type(pattern.as_bytes()) {
            Some((p_ty, p_sub)) => {
                (p_ty == b"*" || p_ty.eq_ignore_ascii_case(ty))
                    && (p_sub == b"*" || p_sub.eq_ignore_ascii_case(subtype))
            }
            None => false,
        })
}

/// The default compression level for each coding (on-the-fly compression: not the maximum):
/// gzip 5, brotli 4, zstd 3.
pub fn default_level(enc: Encoding) -> u32 {
    match enc {
        Encoding::Gzip => 5,
        Encoding::Brotli => 4,
        Encoding::Zstd => 3,
    }
}

/// A streaming compressor. Output is appended to the caller's Vec; nothing is lost or
/// duplicated between calls.
///
/// Call order: [`Encoder::write`] and [`Encoder::flush`] any number of times, then
/// [`Encoder::finish`] once (it consumes the encoder). Dropping an encoder without `finish`
/// leaves the client with a truncated stream, which is right when the upstream body was cut.
///
/// The coders write directly into the spare capacity of `out` (gzip, zstd) or into a zeroed
/// tail of it that is truncated afterwards (brotli); input is never copied by this type. Memory
/// per encoder is bounded by the coding and level (see the module docs).
pub struct Encoder {
    coder: Coder,
}

impl Encoder {
    /// A compressor for `enc` at `level` (clamped to the coding's valid range: gzip 0..=9,
    /// brotli 0..=11, zstd 1..=19; zstd's window is capped at 2 MiB). Memory grows steeply
    /// with the level (brotli 9 ≈ 33 MiB, zstd 19 ≈ 84 MiB, see the module docs): configuration
    /// should keep on-the-fly levels near [`default_level`].
    pub fn new(enc: Encoding, level: u32) -> Encoder {
        let coder = match enc {
            Encoding::Gzip => {
                let level = level.min(GZIP_MAX_LEVEL);
                Coder::Gzip(Compress::new_gzip(
                    Compression::new(level),
                    GZIP_WINDOW_BITS,
                ))
            }
            Encoding::Brotli => {
                let mut state = Box::new(BrotliEncoderStateStruct::new(StandardAlloc::default()));
                // Both values are in range and the state is fresh, so neither call can fail.
                state.set_parameter(
                    BrotliEncoderParameter::BROTLI_PARAM_QUALITY,
                    level.min(BROTLI_MAX_QUALITY),
                );
                state.set_parameter(BrotliEncoderParameter::BROTLI_PARAM_LGWIN, BROTLI_LGWIN);
                Coder::Brotli(state)
            }
            Encoding::Zstd => {
                let level = level.clamp(1, ZSTD_MAX_LEVEL);
                let mut cctx = CCtx::create();
                // In range by construction; if zstd refused anyway it would keep its default
                // level (3) and window, which still produce a valid stream.
                let _ = cctx.set_parameter(CParameter::CompressionLevel(level as i32));
                if level > ZSTD_LEVEL_AT_WINDOW_CAP {
                    let _ = cctx.set_parameter(CParameter::WindowLog(ZSTD_MAX_WINDOW_LOG));
                }
                Coder::Zstd(cctx)
            }
        };
        Encoder { coder }
    }

    /// Compresses `input`, appending whatever compressed bytes are ready to `out` (may be none:
    /// the coder buffers).
    pub fn write(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        match &mut self.coder {
            Coder::Gzip(c) => {
                let mut consumed = 0;
                while consumed < input.len() {
                    out.reserve(OUT_STEP);
                    let before = c.total_in();
                    c.compress_vec(&input[consumed..], out, FlushCompress::None)
                        .map_err(|_| io::Error::other("gzip: deflate failed"))?;
                    consumed += progress(before, c.total_in());
                }
                Ok(())
            }
            Coder::Brotli(state) => brotli_run(
                state,
                BrotliEncoderOperation::BROTLI_OPERATION_PROCESS,
                input,
                out,
            ),
            Coder::Zstd(cctx) => {
                let mut input = InBuffer::around(input);
                while input.pos() < input.src.len() {
                    out.reserve(OUT_STEP);
                    let pos = out.len();
                    let mut output = OutBuffer::around_pos(out, pos);
                    cctx.compress_stream(&mut output, &mut input)
                        .map_err(zstd_error)?;
                }
                Ok(())
            }
        }
    }

    /// Flushes so that everything written so far can be decoded by the client now (gzip sync
    /// flush, brotli flush, zstd flush), appending to `out`. Used when the upstream pauses.
    pub fn flush(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        match &mut self.coder {
            Coder::Gzip(c) => loop {
                out.reserve(OUT_STEP);
                let status = c
                    .compress_vec(&[], out, FlushCompress::Sync)
                    .map_err(|_| io::Error::other("gzip: deflate flush failed"))?;
                // zlib asks to be called again only when it filled all the space it was given;
                // `BufError` means there was nothing new to flush.
                if status == Status::BufError || out.len() < out.capacity() {
                    return Ok(());
                }
            },
            Coder::Brotli(state) => brotli_run(
                state,
                BrotliEncoderOperation::BROTLI_OPERATION_FLUSH,
                &[],
                out,
            ),
            Coder::Zstd(cctx) => zstd_drain(cctx, out, false),
        }
    }

    /// Ends the stream (gzip trailer, etc.), appending the rest to `out`.
    pub fn finish(mut self, out: &mut Vec<u8>) -> io::Result<()> {
        match &mut self.coder {
            Coder::Gzip(c) => loop {
                out.reserve(OUT_STEP);
                let before = out.len();
                let status = c
                    .compress_vec(&[], out, FlushCompress::Finish)
                    .map_err(|_| io::Error::other("gzip: deflate finish failed"))?;
                match status {
                    Status::StreamEnd => return Ok(()),
                    Status::BufError if out.len() == before => {
                        return Err(io::Error::other("gzip: deflate made no progress"))
                    }
                    _ => {}
                }
            },
            Coder::Brotli(state) => brotli_run(
                state,
                BrotliEncoderOperation::BROTLI_OPERATION_FINISH,
                &[],
                out,
            ),
            Coder::Zstd(cctx) => zstd_drain(cctx, out, true),
        }
    }

    /// The coding.
    pub fn encoding(&self) -> Encoding {
        match self.coder {
            Coder::Gzip(_) => Encoding::Gzip,
            Coder::Brotli(_) => Encoding::Brotli,
            Coder::Zstd(_) => Encoding::Zstd,
        }
    }
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("encoding", &self.encoding())
            .finish_non_exhaustive()
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        if let Coder::Brotli(state) = &mut self.coder {
            BrotliEncoderDestroyInstance(state);
        }
    }
}

/// Output space made available before each call into a coder: the coders stop when it is full
/// and are called again, so this bounds the zeroing (brotli) and sets the growth step of `out`.
const OUT_STEP: usize = 16 * 1024;
/// gzip: 32 KiB window (zlib's maximum); 371 KiB of state with zlib-rs (14: 307 KiB, 13: 275 KiB).
const GZIP_WINDOW_BITS: u8 = 15;
/// gzip: the highest zlib level.
const GZIP_MAX_LEVEL: u32 = 9;
/// brotli: 64 KiB window. The encoder's ring buffer and its per-metablock buffers grow with the
/// window (measured peak at quality 4: 1.8 MiB with 16, 3.1 MiB with 17, 4.3 MiB with 18) while
/// the ratio on web text barely moves (0.197 against 0.196 on 1 MiB of HTML-like text).
const BROTLI_LGWIN: u32 = 16;
/// brotli: the highest quality.
const BROTLI_MAX_QUALITY: u32 = 11;
/// zstd: the highest non-"ultra" level (20..=22 need windows of 8 MiB and more).
const ZSTD_MAX_LEVEL: u32 = 19;
/// zstd: levels up to this one already use a window of at most 2 MiB for streams of unknown
/// size; above it the window is capped explicitly.
const ZSTD_LEVEL_AT_WINDOW_CAP: u32 = 7;
/// zstd: the window cap, 2 MiB.
const ZSTD_MAX_WINDOW_LOG: u32 = 21;

/// The coder behind an [`Encoder`].
enum Coder {
    /// zlib's deflate producing the gzip wrapper (header, CRC-32 and size trailer) itself.
    Gzip(Compress),
    /// brotli's streaming encoder; boxed because the state is several KiB inline.
    Brotli(Box<BrotliEncoderStateStruct<StandardAlloc>>),
    /// A zstd compression context.
    Zstd(CCtx<'static>),
}

/// Runs brotli's stream loop for `op` until `input` is consumed and, for a flush, until no
/// output is pending, or for a finish, until the stream is closed. Output goes into a zeroed
/// tail of `out` that is cut back to what brotli wrote.
fn brotli_run(
    state: &mut BrotliEncoderStateStruct<StandardAlloc>,
    op: BrotliEncoderOperation,
    input: &[u8],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let mut no_callback =
        |_: &mut brotli::interface::PredictionModeContextMap<brotli::InputReferenceMut>,
         _: &mut [brotli::interface::StaticCommand],
         _: brotli::InputPair,
         _: &mut StandardAlloc| ();
    let mut available_in = input.len();
    let mut in_offset = 0;
    let mut total_out = None;
    loop {
        let start = out.len();
        out.resize(start + OUT_STEP, 0);
        let mut available_out = OUT_STEP;
        let mut out_offset = start;
        let ok = state.compress_stream(
            op,
            &mut available_in,
            input,
            &mut in_offset,
            &mut available_out,
            out,
            &mut out_offset,
            &mut total_out,
            &mut no_callback,
        );
        out.truncate(out_offset);
        if !ok {
            return Err(io::Error::other("brotli: encoder failed"));
        }
        let done = match op {
            BrotliEncoderOperation::BROTLI_OPERATION_FINISH => state.is_finished(),
            _ => available_in == 0 && !state.has_more_output(),
        };
        if done {
            return Ok(());
        }
    }
}

/// Bytes consumed between two readings of a coder's input counter.
fn progress(before: u64, after: u64) -> usize {
    usize::try_from(after.saturating_sub(before)).unwrap_or(usize::MAX)
}

/// Flushes (or with `end`, ends) a zstd stream into `out` until the library has nothing left.
fn zstd_drain(cctx: &mut CCtx<'static>, out: &mut Vec<u8>, end: bool) -> io::Result<()> {
    loop {
        out.reserve(OUT_STEP);
        let pos = out.len();
        let mut output = OutBuffer::around_pos(out, pos);
        let remaining = if end {
            cctx.end_stream(&mut output)
        } else {
            cctx.flush_stream(&mut output)
        }
        .map_err(zstd_error)?;
        if remaining == 0 {
            return Ok(());
        }
    }
}

/// A zstd error code as an `io::Error`.
fn zstd_error(code: usize) -> io::Error {
    io::Error::other(zstd::zstd_safe::get_error_name(code))
}

/// An element of Accept-Encoding, classified.
enum Coding {
    /// One of ours (x-gzip folded into gzip).
    Known(Encoding),
    /// `*`.
    Star,
    /// `identity` or a coding Ringway does not produce.
    Other,
}

/// Parses one Accept-Encoding list element into its coding and q in thousandths. `None` for an
/// empty element, a coding that is not a token, or a malformed q.
fn parse_element(element: &[u8]) -> Option<(Coding, u16)> {
    let mut parts = element.split(|&b| b == b';');
    let name = parts.next()?.trim_ascii();
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return None;
    }
    let mut q = 1000;
    for param in parts {
        let param = param.trim_ascii();
        let Some(eq) = param.iter().position(|&b| b == b'=') else {
            continue;
        };
        if param[..eq].trim_ascii().eq_ignore_ascii_case(b"q") {
            q = parse_qvalue(param[eq + 1..].trim_ascii())?;
        }
    }
    let coding = if name == b"*" {
        Coding::Star
    } else {
        Encoding::from_token(name).map_or(Coding::Other, Coding::Known)
    };
    Some((coding, q))
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )` in thousandths.
fn parse_qvalue(v: &[u8]) -> Option<u16> {
    match v {
        [b'0'] => Some(0),
        [b'1'] => Some(1000),
        [b'0', b'.', frac @ ..] if frac.len() <= 3 && frac.iter().all(u8::is_ascii_digit) => {
            let mut value = 0u16;
            for i in 0..3 {
                let digit = frac.get(i).map_or(0, |d| u16::from(d - b'0'));
                value = value * 10 + digit;
            }
            Some(value)
        }
        [b'1', b'.', frac @ ..] if frac.len() <= 3 && frac.iter().all(|&d| d == b'0') => Some(1000),
        _ => None,
    }
}

/// The `type` and `subtype` of a media type value, parameters dropped, or `None` if it is not
/// `token/token`.
fn media_type(value: &[u8]) -> Option<(&[u8], &[u8])> {
    let essence = value.split(|&b| b == b';').next().map(<[u8]>::trim_ascii)?;
    let slash = essence.iter().position(|&b| b == b'/')?;
    let (ty, subtype) = (&essence[..slash], &essence[slash + 1..]);
    let is_token = |s: &[u8]| !s.is_empty() && s.iter().all(|&b| is_tchar(b));
    (is_token(ty) && is_token(subtype)).then_some((ty, subtype))
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests;
