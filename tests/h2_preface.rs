//! h2c by prior knowledge on a plain listener, at the byte level: the connection preface is
//! recognised however it is split, bytes sent with it are not lost, and whatever is not the
//! preface is HTTP/1 as before.

mod common;

use common::{Proxy, Upstream};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame.
const SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];
/// A PING with payload "ringway!".
const PING: [u8; 17] = [
    0, 0, 8, 6, 0, 0, 0, 0, 0, b'r', b'i', b'n', b'g', b'w', b'a', b'y', b'!',
];

/// Frames read until `want` returns true or 5 s pass: (type, flags, payload).
fn read_frames(
    s: &mut TcpStream,
    want: impl Fn(&[(u8, u8, Vec<u8>)]) -> bool,
) -> Vec<(u8, u8, Vec<u8>)> {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut buf, mut frames) = (Vec::new(), Vec::new());
    while Instant::now() < deadline && !want(&frames) {
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => continue,
        }
        while buf.len() >= 9 {
            let len =
                (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            frames.push((buf[3], buf[4], buf[9..9 + len].to_vec()));
            buf.drain(..9 + len);
        }
    }
    frames
}

fn pong(frames: &[(u8, u8, Vec<u8>)]) -> bool {
    frames
        .iter()
        .any(|(t, f, p)| *t == 6 && f & 1 == 1 && p.as_slice() == &PING[9..])
}

#[test]
fn the_preface_is_recognised_however_it_is_split() {
    let up = Upstream::start("h2-preface");
    let proxy = Proxy::start(&[up.addr], &[]);
    // Split after every byte of the preface; what follows it arrives in the same write as its
    // last byte, so bytes read together with the preface must reach the HTTP/2 side too.
    for split in [1, 3, 16, 18, 23, 24] {
        let mut s = TcpStream::connect(proxy.addr).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        s.write_all(&PREFACE[..split]).expect("write");
        std::thread::sleep(Duration::from_millis(30));
        let mut rest = PREFACE[split..].to_vec();
        rest.extend_from_slice(&SETTINGS);
        rest.extend_from_slice(&PING);
        s.write_all(&rest).expect("write");
        let frames = read_frames(&mut s, pong);
        assert!(
            frames
                .first()
                .is_some_and(|(t, f, _)| *t == 4 && f & 1 == 0),
            "split at {split}: the server's first frame must be its SETTINGS, got {frames:?}"
        );
        assert!(pong(&frames), "split at {split}: no PING ack in {frames:?}");
    }
}

#[test]
fn a_near_preface_is_http1_and_http1_is_unaffected() {
    let up = Upstream::start("h2-preface-h1");
    let proxy = Proxy::start(&[up.addr], &[]);
    // Diverges from the preface at its 4th byte: an HTTP/1 request line, answered as one
    // (505: HTTP/2.0 is not an HTTP/1 version).
    let mut s = TcpStream::connect(proxy.addr).expect("connect");
    s.write_all(b"PRIX * HTTP/2.0\r\n\r\n").expect("write");
    let mut answer = String::new();
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 505"), "got {answer:?}");
    let r = common::get(proxy.addr, "/name");
    assert_eq!(r.status, 200);
}

#[test]
fn without_http2_the_preface_is_refused_as_http1() {
    let up = Upstream::start("h2-off");
    let proxy = Proxy::start(&[up.addr], &["--no-http2"]);
    let mut s = TcpStream::connect(proxy.addr).expect("connect");
    s.write_all(PREFACE).expect("write");
    s.write_all(&SETTINGS).expect("write");
    let mut answer = String::new();
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 505"), "got {answer:?}");
    assert_eq!(up.requests(), 0, "nothing reaches the upstream");
}
