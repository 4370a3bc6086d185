//! Counting the frames of an HTTP/2 byte stream that cost the server work without carrying a
//! request: a thin frame-header scanner under the HTTP/2 library, fed the client's bytes as they
//! arrive (any split), with the time passed in.
//!
//! What is counted, per one-second window unless said otherwise:
//! - PING and SETTINGS frames that are not acknowledgements (each forces an answer: the PING and
//!   SETTINGS floods of CVE-2019-9512 and CVE-2019-9515);
//! - PRIORITY, WINDOW_UPDATE and RST_STREAM frames (cheap each, but unbounded in number);
//! - consecutive DATA frames with an empty payload and no END_STREAM, in a row rather than per
//!   second (CVE-2019-9518): any frame with a payload resets the run.
//!
//! The scanner only reads frame headers (9 bytes) and skips payloads, so it costs a few
//! comparisons per frame and holds no buffer. It does not validate frames: that is the HTTP/2
//! library's job, and a malformed stream fails there.

/// The limits [`FloodGuard`] enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloodLimits {
    /// PING and SETTINGS frames (not acknowledgements) per second.
    pub pings_and_settings_per_sec: u32,
    /// PRIORITY, WINDOW_UPDATE and RST_STREAM frames per second.
    pub control_frames_per_sec: u32,
    /// Empty DATA frames (without END_STREAM) in a row.
    pub empty_data_frames: u32,
}

impl Default for FloodLimits {
    /// Far above what a browser or gRPC client sends (a handful of PINGs and SETTINGS per
    /// connection; WINDOW_UPDATEs in proportion to data), far below a flood.
    fn default() -> Self {
        FloodLimits {
            pings_and_settings_per_sec: 100,
            control_frames_per_sec: 10_000,
            empty_data_frames: 100,
        }
    }
}

/// Which limit a client broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flood {
    /// Too many PING or SETTINGS frames.
    PingOrSettings,
    /// Too many PRIORITY, WINDOW_UPDATE or RST_STREAM frames.
    ControlFrames,
    /// Too many empty DATA frames in a row.
    EmptyData,
    /// The first frame after the preface is not SETTINGS (RFC 9113 §3.4): not a flood but a
    /// protocol error, answered GOAWAY(PROTOCOL_ERROR); checked here because the scanner sees
    /// that frame first.
    NoSettingsFirst,
}

impl Flood {
    /// A short name for logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Flood::PingOrSettings => "ping_settings_flood",
            Flood::ControlFrames => "control_frame_flood",
            Flood::EmptyData => "empty_data_flood",
            Flood::NoSettingsFirst => "preface_without_settings",
        }
    }
}

/// The client connection preface (RFC 9113 §3.4), which precedes the first frame.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const DATA: u8 = 0x0;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const WINDOW_UPDATE: u8 = 0x8;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_STREAM: u8 = 0x1;

/// Where the scanner is in the byte stream.
#[derive(Debug, Clone, Copy)]
enum Position {
    /// This many bytes of the preface seen.
    Preface(usize),
    /// This many bytes of a frame header gathered.
    Header(usize),
    /// This many bytes of the first frame's header (which must be SETTINGS) gathered.
    FirstHeader(usize),
    /// This many payload bytes still to skip.
    Payload(u32),
}

/// Scans a client's HTTP/2 byte stream and reports the first flood.
///
/// Call order: [`FloodGuard::handle_bytes`] with every chunk the client sends, in order, before
/// the HTTP/2 library gets it; on `Err`, answer GOAWAY (ENHANCE_YOUR_CALM) and close. A guard that
/// reported a flood keeps reporting it.
#[derive(Debug, Clone)]
pub struct FloodGuard<T> {
    limits: FloodLimits,
    position: Position,
    header: [u8; 9],
    window_start: Option<T>,
    pings: u32,
    controls: u32,
    empty_run: u32,
    tripped: Option<Flood>,
}

impl<T> FloodGuard<T>
where
    T: Copy + Ord + std::ops::Sub<Output = std::time::Duration>,
{
    /// A guard for a connection whose first bytes are the client preface.
    pub fn new(limits: FloodLimits) -> Self {
        FloodGuard {
            limits,
            position: Position::Preface(0),
            header: [0; 9],
            window_start: None,
            pings: 0,
            controls: 0,
            empty_run: 0,
            tripped: None,
        }
    }

    /// Accounts for `bytes`, received at `now` (any `Instant`-like clock).
    pub fn handle_bytes(&mut self, mut bytes: &[u8], now: T) -> Result<(), Flood> {
        if let Some(f) = self.tripped {
            return Err(f);
        }
        while !bytes.is_empty() {
            match self.position {
                Position::Preface(seen) => {
                    let n = (PREFACE.len() - seen).min(bytes.len());
                    // A wrong preface is the library's to refuse; scanning stops mattering.
                    self.position = if seen + n == PREFACE.len() {
                        Position::FirstHeader(0)
                    } else {
                        Position::Preface(seen + n)
                    };
                    bytes = &bytes[n..];
                }
                Position::Header(have) | Position::FirstHeader(have) => {
                    let first = matches!(self.position, Position::FirstHeader(_));
                    let n = (9 - have).min(bytes.len());
                    self.header[have..have + n].copy_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
                    if have + n < 9 {
                        self.position = if first {
                            Position::FirstHeader(have + n)
                        } else {
                            Position::Header(have + n)
                        };
                        continue;
                    }
                    let h = self.header;
                    if first && (h[3] != SETTINGS || h[4] & FLAG_ACK != 0) {
                        self.tripped = Some(Flood::NoSettingsFirst);
                        return Err(Flood::NoSettingsFirst);
                    }
                    let len = u32::from_be_bytes([0, h[0], h[1], h[2]]);
                    if let Err(f) = self.count(h[3], h[4], len, now) {
                        self.tripped = Some(f);
                        return Err(f);
                    }
                    self.position = if len == 0 {
                        Position::Header(0)
                    } else {
                        Position::Payload(len)
                    };
                }
                Position::Payload(left) => {
                    let n = u32::try_from(bytes.len()).unwrap_or(u32::MAX).min(left);
                    bytes = &bytes[n as usize..];
                    self.position = if n == left {
                        Position::Header(0)
                    } else {
                        Position::Payload(left - n)
                    };
                }
            }
        }
        Ok(())
    }

    fn count(&mut self, kind: u8, flags: u8, len: u32, now: T) -> Result<(), Flood> {
        match self.window_start {
            Some(start) if now - start < std::time::Duration::from_secs(1) => {}
            _ => {
                self.window_start = Some(now);
                self.pings = 0;
                self.controls = 0;
            }
        }
        match kind {
            PING | SETTINGS if flags & FLAG_ACK == 0 => {
                self.pings += 1;
                if self.pings > self.limits.pings_and_settings_per_sec {
                    return Err(Flood::PingOrSettings);
                }
            }
            PRIORITY | WINDOW_UPDATE | RST_STREAM => {
                self.controls += 1;
                if self.controls > self.limits.control_frames_per_sec {
                    return Err(Flood::ControlFrames);
                }
            }
            DATA if len == 0 && flags & FLAG_END_STREAM == 0 => {
                self.empty_run += 1;
                if self.empty_run > self.limits.empty_data_frames {
                    return Err(Flood::EmptyData);
                }
                return Ok(());
            }
            _ => {}
        }
        if len > 0 {
            self.empty_run = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn limits() -> FloodLimits {
        FloodLimits {
            pings_and_settings_per_sec: 10,
            control_frames_per_sec: 20,
            empty_data_frames: 5,
        }
    }

    /// A guard past the preface and the client's first SETTINGS.
    fn started(now: Instant) -> FloodGuard<Instant> {
        let mut g = FloodGuard::new(limits());
        g.handle_bytes(PREFACE, now).unwrap();
        g.handle_bytes(&frame(SETTINGS, 0, 0, &[]), now).unwrap();
        g
    }

    /// Feeds `stream` split into pieces of `step` bytes, all at `now`.
    fn feed(
        g: &mut FloodGuard<Instant>,
        stream: &[u8],
        step: usize,
        now: Instant,
    ) -> Result<(), Flood> {
        for piece in stream.chunks(step) {
            g.handle_bytes(piece, now)?;
        }
        Ok(())
    }

    #[test]
    fn a_ping_flood_trips_at_the_limit_whatever_the_split() {
        let mut stream = PREFACE.to_vec();
        stream.extend(frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]));
        for _ in 0..9 {
            stream.extend(frame(PING, 0, 0, &[7; 8]));
        }
        // Ten so far (a SETTINGS and nine PINGs): exactly the limit.
        let now = Instant::now();
        for step in [1, 2, 9, 10, 17, 1000] {
            let mut g = FloodGuard::new(limits());
            assert_eq!(feed(&mut g, &stream, step, now), Ok(()), "step {step}");
            // Acknowledgements are free.
            assert_eq!(
                feed(&mut g, &frame(PING, FLAG_ACK, 0, &[7; 8]), step, now),
                Ok(())
            );
            assert_eq!(
                feed(&mut g, &frame(PING, 0, 0, &[7; 8]), step, now),
                Err(Flood::PingOrSettings),
                "step {step}"
            );
            // It stays tripped.
            assert_eq!(g.handle_bytes(b"", now), Err(Flood::PingOrSettings));
        }
    }

    #[test]
    fn the_first_frame_must_be_settings() {
        let now = Instant::now();
        for first in [
            frame(PING, 0, 0, &[0; 8]),
            frame(SETTINGS, FLAG_ACK, 0, &[]),
            frame(0x1, 0x5, 1, &[0x82]),
        ] {
            let mut stream = PREFACE.to_vec();
            stream.extend(&first);
            for step in [1, 5, 24, 25, 1000] {
                let mut g = FloodGuard::new(limits());
                assert_eq!(
                    feed(&mut g, &stream, step, now),
                    Err(Flood::NoSettingsFirst),
                    "first frame type {} step {step}",
                    first[3]
                );
            }
        }
        let mut stream = PREFACE.to_vec();
        stream.extend(frame(SETTINGS, 0, 0, &[]));
        stream.extend(frame(PING, 0, 0, &[0; 8]));
        assert_eq!(
            feed(&mut FloodGuard::new(limits()), &stream, 3, now),
            Ok(())
        );
    }

    #[test]
    fn the_budget_is_per_second() {
        let mut g = FloodGuard::new(limits());
        let t0 = Instant::now();
        g.handle_bytes(PREFACE, t0).unwrap();
        // The client's SETTINGS, in a window of its own.
        let earlier = t0 - Duration::from_secs(2);
        g.handle_bytes(&frame(SETTINGS, 0, 0, &[]), earlier)
            .unwrap();
        for second in 0..5u64 {
            let now = t0 + Duration::from_millis(1000 * second + 10);
            for _ in 0..10 {
                g.handle_bytes(&frame(PING, 0, 0, &[0; 8]), now).unwrap();
            }
        }
        let late = t0 + Duration::from_millis(4500);
        assert_eq!(
            g.handle_bytes(&frame(SETTINGS, 0, 0, &[]), late),
            Err(Flood::PingOrSettings)
        );
    }

    #[test]
    fn control_frames_and_empty_data_have_their_own_limits() {
        let now = Instant::now();
        let mut g = started(now);
        for i in 0..20u32 {
            let kind = [PRIORITY, WINDOW_UPDATE, RST_STREAM][i as usize % 3];
            g.handle_bytes(&frame(kind, 0, 1, &[0, 0, 0, 1]), now)
                .unwrap();
        }
        assert_eq!(
            g.handle_bytes(&frame(WINDOW_UPDATE, 0, 0, &[0, 0, 0, 1]), now),
            Err(Flood::ControlFrames)
        );

        let mut g = started(now);
        // Runs of empty DATA frames are fine while broken up by real data, and END_STREAM
        // frames never count.
        for _ in 0..50 {
            for _ in 0..5 {
                g.handle_bytes(&frame(DATA, 0, 1, &[]), now).unwrap();
            }
            g.handle_bytes(&frame(DATA, FLAG_END_STREAM, 3, &[]), now)
                .unwrap();
            g.handle_bytes(&frame(DATA, 0, 1, b"x"), now).unwrap();
        }
        for _ in 0..5 {
            g.handle_bytes(&frame(DATA, 0, 1, &[]), now).unwrap();
        }
        assert_eq!(
            g.handle_bytes(&frame(DATA, 0, 1, &[]), now),
            Err(Flood::EmptyData)
        );
    }

    #[test]
    fn large_payloads_are_skipped_not_read_as_headers() {
        let now = Instant::now();
        let mut g = FloodGuard::new(limits());
        let mut stream = PREFACE.to_vec();
        stream.extend(frame(SETTINGS, 0, 0, &[]));
        // A DATA payload full of bytes that would look like PING headers if misread.
        let fake_pings: Vec<u8> = (0..2000).flat_map(|_| frame(PING, 0, 0, &[])).collect();
        stream.extend(frame(DATA, 0, 1, &fake_pings));
        stream.extend(frame(HEADERS_FOR_TEST, 0x4, 3, &[0x82]));
        for step in [1, 7, 4096] {
            let mut g2 = g.clone();
            assert_eq!(feed(&mut g2, &stream, step, now), Ok(()), "step {step}");
        }
        assert_eq!(feed(&mut g, &stream, 1 << 20, now), Ok(()));
    }

    const HEADERS_FOR_TEST: u8 = 0x1;
}
