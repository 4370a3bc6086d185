//! HTTP/2 settings: whether listeners speak it, and the limits that keep one client connection
//! (up to `max_concurrent_streams` requests at once) from costing more than its share.

use super::{duration, err, size, ConfigError, Limits, Timeouts};
use crate::h2::FloodLimits;
use serde::Deserialize;
use std::time::Duration;

/// `[http2]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHttp2 {
    /// Serve HTTP/2 (h2c by prior knowledge on plain listeners, ALPN `h2` on TLS listeners)
    /// on every listener that does not say otherwise. Default true.
    pub enabled: Option<bool>,
    /// Streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub max_concurrent_streams: Option<u32>,
    /// Largest request header list, decoded (SETTINGS_MAX_HEADER_LIST_SIZE); default
    /// `limits.max_header_bytes`.
    pub max_header_list_size: Option<super::Quantity>,
    /// Flow-control window of each stream for request bodies.
    pub initial_stream_window: Option<super::Quantity>,
    /// Flow-control window of the whole connection for request bodies.
    pub initial_connection_window: Option<super::Quantity>,
    /// Response bytes buffered per stream while the client's window is closed.
    pub max_send_buffer: Option<super::Quantity>,
    /// Streams a client may open and reset before they are served (rapid reset).
    pub max_pending_resets: Option<usize>,
    /// Streams Ringway may reset because of client errors (MadeYouReset).
    pub max_local_error_resets: Option<usize>,
    /// PING and SETTINGS frames (not acknowledgements) a client may send per second.
    pub pings_settings_per_sec: Option<u32>,
    /// PRIORITY, WINDOW_UPDATE and RST_STREAM frames a client may send per second.
    pub control_frames_per_sec: Option<u32>,
    /// Empty DATA frames (without END_STREAM) a client may send in a row.
    pub empty_data_frames: Option<u32>,
    /// Upstream exchanges HTTP/2 streams may run at once per endpoint per worker; more wait.
    pub max_upstream_connections: Option<usize>,
    /// How long a connection with no open stream is kept; default `timeouts.idle`.
    pub idle_timeout: Option<super::Quantity>,
    /// Send a keepalive PING this often; 0 or absent: never.
    pub ping_interval: Option<super::Quantity>,
    /// How long an answer to that PING may take before the connection is closed.
    pub ping_timeout: Option<super::Quantity>,
}

/// The resolved HTTP/2 settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2 {
    /// HTTP/2 on listeners that do not say otherwise.
    pub enabled: bool,
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    pub max_concurrent_streams: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE (also bounds CONTINUATION sequences).
    pub max_header_list_size: u32,
    /// Initial stream window for request bodies.
    pub initial_stream_window: u32,
    /// Initial connection window for request bodies.
    pub initial_connection_window: u32,
    /// Response bytes buffered per stream.
    pub max_send_buffer: usize,
    /// Rapid-reset budget.
    pub max_pending_resets: usize,
    /// MadeYouReset budget.
    pub max_local_error_resets: usize,
    /// Limits on frames that cost work without carrying a request.
    pub floods: FloodLimits,
    /// Concurrent upstream exchanges of HTTP/2 streams per endpoint per worker.
    pub max_upstream_connections: usize,
    /// Idle connection lifetime.
    pub idle_timeout: Duration,
    /// Keepalive PING interval, if any.
    pub ping_interval: Option<Duration>,
    /// Keepalive PING answer deadline.
    pub ping_timeout: Duration,
}

/// The largest flow-control window HTTP/2 allows (RFC 9113 §6.9.1).
const MAX_WINDOW: u64 = (1 << 31) - 1;

fn bounded(v: u64, key: &str, min: u64, max: u64, what: &str) -> Result<u64, ConfigError> {
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        err(key, format!("must be {what}"))
    }
}

/// Resolves `[http2]`; `limits` and `timeouts` supply the defaults that follow HTTP/1.
pub(super) fn resolve_http2(
    f: &FileHttp2,
    limits: &Limits,
    timeouts: &Timeouts,
) -> Result<Http2, ConfigError> {
    let streams = f.max_concurrent_streams.unwrap_or(128);
    bounded(
        u64::from(streams),
        "http2.max_concurrent_streams",
        1,
        10_000,
        "from 1 to 10000",
    )?;
    let header_list = bounded(
        size(
            &f.max_header_list_size,
            "http2.max_header_list_size",
            limits.max_header_bytes as u64,
        )?,
        "http2.max_header_list_size",
        1024,
        1 << 20,
        "between 1k and 1m",
    )?;
    let stream_window = bounded(
        size(
            &f.initial_stream_window,
            "http2.initial_stream_window",
            256 * 1024,
        )?,
        "http2.initial_stream_window",
        65_535,
        MAX_WINDOW,
        "between 65535 bytes and 2^31-1",
    )?;
    let conn_window = bounded(
        size(
            &f.initial_connection_window,
            "http2.initial_connection_window",
            1 << 20,
        )?,
        "http2.initial_connection_window",
        65_535,
        MAX_WINDOW,
        "between 65535 bytes and 2^31-1",
    )?;
    let send_buffer = bounded(
        size(&f.max_send_buffer, "http2.max_send_buffer", 64 * 1024)?,
        "http2.max_send_buffer",
        1024,
        16 << 20,
        "between 1k and 16m",
    )?;
    let positive = |v: Option<u32>, key: &str, default: u32| -> Result<u32, ConfigError> {
        let v = v.unwrap_or(default);
        if v == 0 {
            return err(key, "must be at least 1");
        }
        Ok(v)
    };
    let floods = FloodLimits {
        pings_and_settings_per_sec: positive(
            f.pings_settings_per_sec,
            "http2.pings_settings_per_sec",
            100,
        )?,
        control_frames_per_sec: positive(
            f.control_frames_per_sec,
            "http2.control_frames_per_sec",
            10_000,
        )?,
        empty_data_frames: positive(f.empty_data_frames, "http2.empty_data_frames", 100)?,
    };
    let ping_interval = match &f.ping_interval {
        None => None,
        Some(q) => {
            let d = q.duration().or_else(|m| err("http2.ping_interval", m))?;
            (!d.is_zero()).then_some(d)
        }
    };
    let max_pending_resets = f.max_pending_resets.unwrap_or(20);
    if max_pending_resets == 0 {
        return err("http2.max_pending_resets", "must be at least 1");
    }
    let max_local_error_resets = f.max_local_error_resets.unwrap_or(1024);
    if max_local_error_resets == 0 {
        return err("http2.max_local_error_resets", "must be at least 1");
    }
    let max_upstream_connections = f.max_upstream_connections.unwrap_or(256);
    if !(1..=65_536).contains(&max_upstream_connections) {
        return err("http2.max_upstream_connections", "must be from 1 to 65536");
    }
    Ok(Http2 {
        max_upstream_connections,
        enabled: f.enabled.unwrap_or(true),
        max_concurrent_streams: streams,
        max_header_list_size: header_list as u32,
        initial_stream_window: stream_window as u32,
        initial_connection_window: conn_window as u32,
        max_send_buffer: send_buffer as usize,
        max_pending_resets,
        max_local_error_resets,
        floods,
        idle_timeout: duration(&f.idle_timeout, "http2.idle_timeout", timeouts.idle)?,
        ping_interval,
        ping_timeout: duration(
            &f.ping_timeout,
            "http2.ping_timeout",
            Duration::from_secs(20),
        )?,
    })
}
