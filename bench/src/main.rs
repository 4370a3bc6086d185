//! `ringway-bench-backend`: the fixed-response HTTP/1.1 server every benchmark contender
//! proxies to. One monoio runtime on one core (io_uring, or epoll where unavailable), keep-alive,
//! pipelining-safe. `GET /0`, `/1k`, `/64k` and `/1m` answer bodies of that size (any other path:
//! 0 bytes); request bodies with Content-Length are read and discarded, so uploads work too.
//! `GET /cache/1k` and `/cache/64k` answer the same bodies as `/1k` and `/64k`, made cacheable
//! by `Cache-Control: public, max-age=3600` and a strong `ETag` (the harness's cache-hit
//! scenarios); conditional requests still get the full 200 answer.
//! `GET /__stats` answers `accepted=N requests=N missing_forwarding=N`: connections accepted,
//! requests served, and requests that arrived without `X-Forwarded-For` or `X-Forwarded-Proto`
//! (the harness uses these to count upstream connections and to check that every proxy adds
//! the same forwarding fields).
//!
//! Usage: `ringway-bench-backend [ADDR] [--delay-ms N]` (default 127.0.0.1:9000, no delay).
//! `--delay-ms N` holds every counted request's response for N ms after the request (body
//! included) has arrived, each connection's in turn, so the instance plays a slow upstream
//! (the harness's load-balancing scenarios); `/__stats` is answered at once.

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};
use proxy_core::http1::{parse_request, BodyFraming};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut addr = "127.0.0.1:9000".to_owned();
    let mut delay = Duration::ZERO;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--delay-ms" {
            let Some(ms) = args.next().and_then(|v| v.parse::<u64>().ok()) else {
                eprintln!("ringway-bench-backend: --delay-ms needs a number of milliseconds");
                std::process::exit(2);
            };
            delay = Duration::from_millis(ms);
        } else {
            addr = a;
        }
    }
    let run = proxy_io::runtime::run(
        proxy_core::config::IoDriver::Auto,
        1024,
        |driver| async move {
            let listener = match TcpListener::bind(&addr) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("ringway-bench-backend: cannot listen on {addr}: {e}");
                    std::process::exit(1);
                }
            };
            eprintln!(
                "ringway-bench-backend: listening on {addr} ({}), delay {delay:?}",
                driver.name()
            );
            let responses = Rc::new(Responses::new());
            let stats = Rc::new(Stats::default());
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                let _ = conn.set_nodelay(true);
                stats.accepted.set(stats.accepted.get() + 1);
                monoio::spawn(serve(conn, responses.clone(), stats.clone(), delay));
            }
        },
    );
    if let Err(e) = run {
        eprintln!("ringway-bench-backend: {e}");
        std::process::exit(1);
    }
}

/// What the backend has seen.
#[derive(Default)]
struct Stats {
    accepted: Cell<u64>,
    requests: Cell<u64>,
    missing_forwarding: Cell<u64>,
}

impl Stats {
    fn response(&self) -> Vec<u8> {
        let body = format!(
            "accepted={} requests={} missing_forwarding={}\n",
            self.accepted.get(),
            self.requests.get(),
            self.missing_forwarding.get()
        );
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }
}

/// A response as sent on a kept-alive connection, and with `Connection: close`.
type Variants = [Rc<Vec<u8>>; 2];

/// Pre-built responses, one per path, each in a keep-alive and a closing variant; any other
/// path gets the fourth (`/0`).
struct Responses {
    sizes: Vec<(&'static [u8], Variants)>,
}

impl Responses {
    fn new() -> Responses {
        let make = |n: usize, cacheable: bool| {
            [false, true].map(|close| {
                let connection = if close { "Connection: close\r\n" } else { "" };
                let freshness = if cacheable {
                    format!("Cache-Control: public, max-age=3600\r\nETag: \"bench-{n}\"\r\n")
                } else {
                    String::new()
                };
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {n}\r\n{freshness}{connection}\r\n"
                )
                .into_bytes();
                r.extend((0..n).map(|i| b"abcdefghijklmnopqrstuvwxyz012345"[i % 32]));
                Rc::new(r)
            })
        };
        Responses {
            sizes: vec![
                (&b"/1k"[..], make(1024, false)),
                (&b"/64k"[..], make(64 * 1024, false)),
                (&b"/1m"[..], make(1024 * 1024, false)),
                (&b"/0"[..], make(0, false)),
                (&b"/cache/1k"[..], make(1024, true)),
                (&b"/cache/64k"[..], make(64 * 1024, true)),
            ],
        }
    }

    fn for_path(&self, path: &[u8], close: bool) -> Rc<Vec<u8>> {
        let path = path.split(|&b| b == b'?').next().unwrap_or(path);
        let both = self
            .sizes
            .iter()
            .find(|(p, _)| *p == path)
            .map_or(&self.sizes[3].1, |(_, r)| r);
        both[usize::from(close)].clone()
    }
}

/// Serves one connection; every counted response waits `delay` once its request is read.
async fn serve(mut conn: TcpStream, responses: Rc<Responses>, stats: Rc<Stats>, delay: Duration) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut skip: u64 = 0;
    // The answer to a request whose body is still arriving: a well-behaved upstream reads the
    // whole body before it responds.
    let mut pending: Option<(Rc<Vec<u8>>, bool)> = None;
    loop {
        // Discard request body bytes still owed.
        let drop_now = usize::try_from(skip).unwrap_or(usize::MAX).min(buf.len());
        buf.drain(..drop_now);
        skip -= drop_now as u64;
        if skip == 0 {
            if let Some((response, close)) = pending.take() {
                if !delay.is_zero() {
                    monoio::time::sleep(delay).await;
                }
                let (res, _) = conn.write_all(response).await;
                if res.is_err() || close {
                    return;
                }
            }
            match parse_request(&buf) {
                Ok(Some(head)) => {
                    if head.path.of(&buf) == b"/__stats" {
                        let close = !head.keep_alive;
                        buf.drain(..head.head_len);
                        let (res, _) = conn.write_all(stats.response()).await;
                        if res.is_err() || close {
                            return;
                        }
                        continue;
                    }
                    stats.requests.set(stats.requests.get() + 1);
                    if head.headers.find(&buf, b"x-forwarded-for").is_none()
                        || head.headers.find(&buf, b"x-forwarded-proto").is_none()
                    {
                        stats
                            .missing_forwarding
                            .set(stats.missing_forwarding.get() + 1);
                    }
                    let response = responses.for_path(head.path.of(&buf), !head.keep_alive);
                    skip = match head.framing {
                        BodyFraming::Length(n) => n,
                        _ => 0,
                    };
                    pending = Some((response, !head.keep_alive));
                    buf.drain(..head.head_len);
                    continue;
                }
                Ok(None) => {}
                Err(_) => return,
            }
        }
        if buf.len() == buf.capacity() {
            return;
        }
        let len = buf.len();
        let (res, b) = conn
            .read(monoio::buf::IoBufMut::slice_mut(buf, len..))
            .await;
        buf = b.into_inner();
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
