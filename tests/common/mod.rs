//! Shared helpers for the end-to-end tests: starting and stopping the `ringway` binary
//! ([`Proxy`]), a mock upstream server ([`Upstream`], in `upstream.rs`) and a raw HTTP/1.1
//! client that shows exactly what came over the wire ([`Client`], in `client.rs`); an HTTP/2
//! client (`h2.rs`), an HTTP/2 upstream server (`h2_upstream.rs`), and load-balancing helpers
//! (`lb.rs`: real backend processes that can be killed and restarted, and a load driver).
//!
//! Every test starts its own proxy on ports the kernel picks (`127.0.0.1:0`, read back from the
//! proxy's log), so tests are independent and can run in parallel. Every wait is bounded.

#![allow(dead_code)]

mod client;
pub mod h2;
pub mod h2_upstream;
pub mod lb;
pub mod origin;
pub mod tls;
mod upstream;

#[allow(unused_imports)]
pub use client::{get, Client, Response};
#[allow(unused_imports)]
pub use upstream::{pattern, Upstream};

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the proxy may take to start listening.
const STARTUP: Duration = Duration::from_secs(10);

/// The path of the `ringway` binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_ringway")
}

/// The I/O driver the suite runs on: `RINGWAY_TEST_IO_DRIVER` (`uring` or `epoll`), default
/// `uring`.
pub fn driver() -> String {
    let d = std::env::var("RINGWAY_TEST_IO_DRIVER").unwrap_or_else(|_| "uring".to_owned());
    assert!(
        d == "uring" || d == "epoll",
        "RINGWAY_TEST_IO_DRIVER must be `uring` or `epoll`, not `{d}`"
    );
    d
}

/// The `driver` label `/metrics` shows for [`driver`].
pub fn driver_metric_label() -> &'static str {
    if driver() == "epoll" {
        "epoll"
    } else {
        "io_uring"
    }
}

/// Runs the binary to completion with `args` (plus `--io-driver`), for `--check` and friends.
pub fn run_to_completion(args: &[&str]) -> Output {
    let mut cmd = Command::new(binary());
    cmd.args(args).arg("--io-driver").arg(driver());
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringway");
    let deadline = Instant::now() + STARTUP;
    loop {
        match child.try_wait().expect("poll ringway") {
            Some(_) => return child.wait_with_output().expect("collect ringway output"),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("collect ringway output");
                panic!(
                    "ringway {args:?} did not exit within {STARTUP:?}; stderr:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Writes `contents` to a fresh file in the temporary directory and returns its path.
pub fn temp_file(name: &str, contents: &str) -> PathBuf {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("ringway-e2e-{}-{n}-{name}", std::process::id()));
    std::fs::write(&path, contents).expect("write temporary file");
    path
}

/// A running `ringway` process, killed on drop.
pub struct Proxy {
    child: Child,
    /// The proxy listener's address.
    pub addr: SocketAddr,
    /// The admin endpoint's address.
    pub admin: SocketAddr,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<Vec<u8>>>,
}

impl Proxy {
    /// Starts the proxy with two workers, a listener and an admin endpoint on free ports, the
    /// given upstreams as the `default` cluster (none: the config file must provide routes) and
    /// `extra` flags. Panics with the proxy's stderr if it is not listening within 10 s.
    pub fn start(upstreams: &[SocketAddr], extra: &[&str]) -> Proxy {
        let mut args: Vec<String> = vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--admin".into(),
            "127.0.0.1:0".into(),
            "--workers".into(),
            "2".into(),
            "--log-level".into(),
            "info".into(),
        ];
        for u in upstreams {
            args.push("--upstream".into());
            args.push(u.to_string());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        Proxy::start_args(&args)
    }

    /// Starts the proxy with exactly `args` plus `--io-driver`; `args` must configure an admin
    /// endpoint and a listener (both are read back from the log).
    pub fn start_args(args: &[String]) -> Proxy {
        let mut child = Command::new(binary())
            .args(args)
            .arg("--io-driver")
            .arg(driver())
            .env_remove("RINGWAY_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringway");
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<String>();
        {
            let pipe = child.stderr.take().expect("stderr pipe");
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    {
                        let mut s = lock(&stderr);
                        s.push_str(&line);
                        s.push('\n');
                    }
                    let _ = tx.send(line);
                }
            });
        }
        {
            let mut pipe = child.stdout.take().expect("stdout pipe");
            let stdout = stdout.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    lock(&stdout).extend_from_slice(&buf[..n]);
                }
            });
        }
        let deadline = Instant::now() + STARTUP;
        let (mut addr, mut admin) = (None, None);
        while addr.is_none() || admin.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("admin endpoint listening") => admin = addr_field(&line),
                Ok(line) if line.contains("listening") && line.contains("listener=") => {
                    addr = addr.or(addr_field(&line))
                }
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait();
                    std::thread::sleep(Duration::from_millis(100));
                    panic!(
                        "ringway {args:?} did not start listening (exit: {status:?}); stderr:\n{}",
                        lock(&stderr)
                    );
                }
            }
        }
        let proxy = Proxy {
            child,
            addr: addr.expect("listener address"),
            admin: admin.expect("admin address"),
            stderr,
            stdout,
        };
        while TcpStream::connect(proxy.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "ringway logged {} but does not accept connections; stderr:\n{}",
                proxy.addr,
                proxy.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        proxy
    }

    /// The address of the listener called `name` (e.g. `cli-tls`), from the proxy's
    /// `listening listener=NAME addr=…` log line; waits up to 5 s for that line.
    pub fn listener(&self, name: &str) -> SocketAddr {
        let needle = format!("listener={name} ");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found = lock(&self.stderr)
                .lines()
                .find(|l| l.contains("listening") && l.contains(&needle))
                .and_then(addr_field);
            if let Some(addr) = found {
                return addr;
            }
            assert!(
                Instant::now() < deadline,
                "no `listening listener={name}` line in the proxy's log:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything the proxy wrote to stderr so far.
    pub fn stderr(&self) -> String {
        lock(&self.stderr).clone()
    }

    /// Everything the proxy wrote to stdout so far.
    pub fn stdout(&self) -> Vec<u8> {
        lock(&self.stdout).clone()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the proxy.
    pub fn signal(&self, signal: i32) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll ringway") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `GET path` on the admin endpoint.
    pub fn admin_get(&self, path: &str) -> Response {
        let mut c = Client::connect(self.admin);
        c.request(&format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n"))
    }

    /// `POST path` with an empty body on the admin endpoint (e.g. `/reload`).
    pub fn admin_post(&self, path: &str) -> Response {
        let mut c = Client::connect(self.admin);
        c.request(&format!(
            "POST {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n"
        ))
    }

    /// The `/metrics` samples, keyed by series (`name{labels}`).
    pub fn metrics(&self) -> HashMap<String, f64> {
        let r = self.admin_get("/metrics");
        assert_eq!(r.status, 200, "GET /metrics: {}", r.body_text());
        parse_metrics(&r.body_text())
    }

    /// Polls `/metrics` until `ok(metrics)` holds or `timeout` passes; returns the last scrape.
    /// Counters are bumped just after a response is written, so a client can see its response
    /// a moment before the counter moves.
    pub fn metrics_when(
        &self,
        timeout: Duration,
        ok: impl Fn(&HashMap<String, f64>) -> bool,
    ) -> HashMap<String, f64> {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.metrics();
            if ok(&m) || Instant::now() > deadline {
                return m;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One `/metrics` sample, e.g. `ringway_upstream_reuses_total{worker="all"}`.
    pub fn metric(&self, series: &str) -> f64 {
        let m = self.metrics();
        *m.get(series).unwrap_or_else(|| {
            let mut keys: Vec<_> = m.keys().collect();
            keys.sort();
            panic!("no metric {series}; have {keys:?}")
        })
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Parses the Prometheus text format into `series -> value`.
pub fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

fn addr_field(line: &str) -> Option<SocketAddr> {
    let at = line.find("addr=")? + "addr=".len();
    let rest = &line[at..];
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    rest[..end].trim_matches('"').parse().ok()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A local address nobody listens on (bound, then released).
pub fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr")
}

/// Runs `curl` with `args` (a 30 s `--max-time` is added) and returns its output.
pub fn curl(args: &[&str]) -> Output {
    Command::new("/usr/bin/curl")
        .args(["--max-time", "30"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run /usr/bin/curl")
}

/// Raises this process's open-file limit to at least `want` (children inherit it).
pub fn raise_nofile(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        assert_eq!(
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim),
            0,
            "getrlimit"
        );
        if lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0, "setrlimit");
        }
    }
}

/// The repository root.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Writes all of `data` to `stream` from a background thread (so the caller can read at the
/// same time without deadlocking on full socket buffers).
pub fn write_in_background(
    stream: &TcpStream,
    data: Vec<u8>,
) -> std::thread::JoinHandle<std::io::Result<()>> {
    let mut w = stream.try_clone().expect("clone stream");
    std::thread::spawn(move || w.write_all(&data))
}
