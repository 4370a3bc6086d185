//! The access log: one line per request in the common log format, extended with latency,
//! upstream address and connection id, buffered per worker and written in batches.
//!
//! ```text
//! 127.0.0.1 - - [26/Nov/2026:19:17:00 +0000] "GET /x HTTP/1.1" 200 512 0.000412 127.0.0.1:9001 conn=3
//! ```
//!
//! Formatting happens only when the log is on; the timestamp is rebuilt once per second per
//! worker; lines go to a per-worker buffer flushed when it passes 32 KiB, every second, and at
//! shutdown, so logging costs no syscall per request.

use proxy_core::rewrite::write_decimal;
use std::fs::File;
use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const FLUSH_AT: usize = 32 * 1024;

/// Where access log lines go.
#[derive(Debug)]
pub enum AccessLogSink {
    /// Standard output.
    Stdout,
    /// An open file (opened for appending by the caller).
    File(File),
}

impl AccessLogSink {
    /// Another handle to the same destination, for another worker.
    pub fn try_clone(&self) -> io::Result<AccessLogSink> {
        Ok(match self {
            AccessLogSink::Stdout => AccessLogSink::Stdout,
            AccessLogSink::File(f) => AccessLogSink::File(f.try_clone()?),
        })
    }
}

/// One request, as the access log records it.
#[derive(Debug, Clone, Copy)]
pub struct AccessRecord<'a> {
    /// Client IP in text form.
    pub client_ip: &'a [u8],
    /// `METHOD target HTTP/1.x`.
    pub request_line: &'a [u8],
    /// Status sent to the client.
    pub status: u16,
    /// Response bytes sent to the client (head and body).
    pub bytes: u64,
    /// From the first byte of the request head to the last byte of the response.
    pub latency: Duration,
    /// The upstream endpoint used (`ip:port`), if any.
    pub upstream: Option<&'a [u8]>,
    /// The client connection id.
    pub conn: u64,
}

/// A worker's access log writer.
#[derive(Debug)]
pub struct AccessLog {
    sink: AccessLogSink,
    buf: Vec<u8>,
    stamp_second: u64,
    stamp: [u8; 26],
}

impl AccessLog {
    /// A writer to `sink`.
    pub fn new(sink: AccessLogSink) -> AccessLog {
        AccessLog {
            sink,
            buf: Vec::with_capacity(FLUSH_AT * 2),
            stamp_second: u64::MAX,
            stamp: [b' '; 26],
        }
    }

    /// Appends one line; flushes when the buffer is large.
    pub fn record(&mut self, r: &AccessRecord<'_>, now: SystemTime) {
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if secs != self.stamp_second {
            self.stamp_second = secs;
            format_clf_time(secs, &mut self.stamp);
        }
        let b = &mut self.buf;
        b.extend_from_slice(r.client_ip);
        b.extend_from_slice(b" - - [");
        b.extend_from_slice(&self.stamp);
        b.extend_from_slice(b"] \"");
        // Control bytes in a request line would forge log lines; httparse already refuses them.
        b.extend_from_slice(r.request_line);
        // Numbers by hand: `write!` was most of the cost of a line (about 2,900 instructions).
        b.extend_from_slice(b"\" ");
        write_decimal(b, u64::from(r.status));
        b.push(b' ');
        write_decimal(b, r.bytes);
        b.push(b' ');
        write_decimal(b, r.latency.as_secs());
        let micros = r.latency.subsec_micros();
        b.push(b'.');
        for div in [100_000, 10_000, 1_000, 100, 10, 1] {
            b.push(b'0' + (micros / div % 10) as u8);
        }
        b.push(b' ');
        b.extend_from_slice(r.upstream.unwrap_or(b"-"));
        b.extend_from_slice(b" conn=");
        write_decimal(b, r.conn);
        b.push(b'\n');
        if self.buf.len() >= FLUSH_AT {
            self.flush();
        }
    }

    /// Writes out buffered lines.
    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let res = match &mut self.sink {
            AccessLogSink::Stdout => io::stdout().lock().write_all(&self.buf),
            AccessLogSink::File(f) => f.write_all(&self.buf),
        };
        if let Err(e) = res {
            tracing::warn!(error = %e, "access log write failed; lines dropped");
        }
        self.buf.clear();
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Writes `dd/Mon/yyyy:HH:MM:SS +0000` for a Unix time in seconds.
fn format_clf_time(secs: u64, out: &mut [u8; 26]) {
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut w = &mut out[..];
    let _ = write!(
        w,
        "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
        day,
        std::str::from_utf8(MONTHS[(month - 1) as usize]).unwrap_or("Jan"),
        year,
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    let _ = w.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clf_time() {
        let mut out = [0u8; 26];
        format_clf_time(0, &mut out);
        assert_eq!(&out, b"01/Jan/1970:00:00:00 +0000");
        format_clf_time(1_795_720_620, &mut out);
        assert_eq!(&out, b"26/Nov/2026:19:17:00 +0000");
        format_clf_time(951_782_400, &mut out);
        assert_eq!(&out, b"29/Feb/2000:00:00:00 +0000");
    }
}
