//! Listening sockets: one SO_REUSEPORT socket per worker per listener, all bound up front on the
//! main thread so that every failure is reported before any worker starts.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{SocketAddr, TcpListener};

/// Binds `count` SO_REUSEPORT sockets on `addr` and returns them with the address they share.
///
/// First a probe socket *without* SO_REUSEPORT is bound: if anyone (including a stale Ringway)
/// already listens there, that fails with `AddrInUse` and we refuse to start, instead of silently
/// splitting the traffic with them. Port 0 is resolved once by the probe, so every worker ends up
/// on the same port.
pub fn bind_reuseport(
    addr: SocketAddr,
    count: usize,
    backlog: u32,
) -> io::Result<(SocketAddr, Vec<TcpListener>)> {
    let probe = new_socket(addr)?;
    probe.bind(&addr.into()).map_err(|e| describe(e, addr))?;
    let bound = probe
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("bound address is not an IP address"))?;
    drop(probe);

    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let s = new_socket(bound)?;
        s.set_reuse_port(true)?;
        s.bind(&bound.into()).map_err(|e| describe(e, bound))?;
        s.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
        s.set_nonblocking(true)?;
        sockets.push(TcpListener::from(s));
    }
    Ok((bound, sockets))
}

fn new_socket(addr: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Lets a restarted proxy bind while old connections sit in TIME_WAIT; it does not allow
    // binding over a live listener (that is SO_REUSEPORT's job, and the probe skips it).
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    Ok(s)
}

fn describe(e: io::Error, addr: SocketAddr) -> io::Error {
    let what = match e.kind() {
        io::ErrorKind::AddrInUse => "another process already listens there".to_owned(),
        io::ErrorKind::AddrNotAvailable => "no local interface has that address".to_owned(),
        io::ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need privileges)".to_owned()
        }
        _ => e.to_string(),
    };
    io::Error::new(e.kind(), format!("cannot listen on {addr}: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_is_shared_and_busy_ports_are_refused() {
        let (addr, socks) = bind_reuseport("127.0.0.1:0".parse().unwrap(), 3, 128).unwrap();
        assert_ne!(addr.port(), 0);
        assert_eq!(socks.len(), 3);
        for s in &socks {
            assert_eq!(s.local_addr().unwrap(), addr);
        }
        let e = bind_reuseport(addr, 1, 128).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(e.to_string().contains("already listens"), "{e}");
    }
}
