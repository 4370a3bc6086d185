//! `ringway demo`: two tiny sample upstreams on ephemeral loopback ports, so a first run shows
//! round robin with nothing else installed. They are plain blocking servers on their own
//! threads; they exist for the demo and are not part of the proxy.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

/// Starts the sample upstreams and returns their addresses.
pub fn start_upstreams() -> std::io::Result<Vec<SocketAddr>> {
    ["A", "B"]
        .into_iter()
        .map(|name| {
            let l = TcpListener::bind("127.0.0.1:0")?;
            let addr = l.local_addr()?;
            std::thread::Builder::new()
                .name(format!("demo-upstream-{name}"))
                .spawn(move || {
                    for conn in l.incoming().flatten() {
                        let _ = std::thread::Builder::new().spawn(move || serve(conn, name));
                    }
                })?;
            Ok(addr)
        })
        .collect()
}

fn serve(mut conn: TcpStream, name: &str) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut len = 0;
    loop {
        let Some(end) = buf[..len]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| p + 4)
        else {
            if len == buf.len() {
                return;
            }
            match conn.read(&mut buf[len..]) {
                Ok(0) | Err(_) => return,
                Ok(n) => len += n,
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let target = head.split(' ').nth(1).unwrap_or("/").to_owned();
        let body_len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().to_owned())
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        // Skip the request body, if any.
        let mut skip = body_len;
        let in_buf = (len - end).min(skip);
        skip -= in_buf;
        buf.copy_within(end + in_buf..len, 0);
        len -= end + in_buf;
        while skip > 0 {
            let mut sink = [0u8; 8192];
            match conn.read(&mut sink[..skip.min(8192)]) {
                Ok(0) | Err(_) => return,
                Ok(n) => skip -= n,
            }
        }
        let body = format!("Hello from sample upstream {name}; you asked for {target}\n");
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nX-Upstream: {name}\r\n\r\n{body}",
            body.len()
        );
        if conn.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}
