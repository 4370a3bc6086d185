//! Load-balancing test helpers: real upstream processes ([`Backend`], the
//! `ringway-test-backend` binary of the `ringway-bench` package, built once per test process by
//! [`backend_binary`]), a bounded multi-connection load driver ([`drive`], [`drive_with`],
//! [`drive_requests`]) that tallies which backend answered each request ([`Tally`]), and the
//! configuration around them ([`lb_config`], [`cluster`], [`start_lb_proxy`]).
//!
//! A [`Backend`] is a separate process so a test can SIGKILL it ([`Backend::kill`]) and bring it
//! back on the same port ([`Backend::restart`]), and it counts what it served
//! ([`Backend::stats`]). Its behaviour (health status, delay) is changed at run time through
//! `/_control/` paths by a short raw TCP client with timeouts. Every wait here is bounded.

use super::{repo_root, temp_file, Client, Proxy, Response};
use std::collections::HashMap;
use std::io::{self, BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The backend binary's name (a `[[bin]]` of `bench/Cargo.toml`).
pub const BACKEND_BIN: &str = "ringway-test-backend";

/// How long a backend may take to print `listening on …`.
const STARTUP: Duration = Duration::from_secs(10);
/// How long [`Backend::restart`] keeps retrying while the port is still busy.
const RESTART_WINDOW: Duration = Duration::from_secs(5);
/// Connect, read and write timeout of the control client.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for one connect or read in [`drive`] (the drive's `limit` may cut it shorter).
pub const DRIVE_IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The path of the `ringway-test-backend` binary, built on first use (once per test process)
/// with `cargo build -p ringway-bench --bin ringway-test-backend` in the profile and target
/// directory the tests themselves were built in (`CARGO_TARGET_DIR` if set, else the directory
/// holding this test executable's `<profile>/deps/`). `scripts/test.sh` builds it beforehand,
/// so this is normally a no-op build. Panics with cargo's output if the build fails.
pub fn backend_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(build_backend).clone()
}

fn build_backend() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the running test executable");
    // <target>/<profile>/deps/<test>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} is not in <target>/<profile>/deps/", exe.display()));
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug")
        .to_owned();
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        // A relative CARGO_TARGET_DIR is relative to where cargo runs: the repository root.
        Some(dir) => repo_root().join(dir),
        None => profile_dir
            .parent()
            .unwrap_or_else(|| panic!("no target directory above {}", profile_dir.display()))
            .to_owned(),
    };
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(repo_root())
        .args([
            "build",
            "--quiet",
            "-p",
            "ringway-bench",
            "--bin",
            BACKEND_BIN,
        ])
        .arg("--message-format=json-render-diagnostics")
        .arg("--target-dir")
        .arg(&target_dir);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {} build: {e}", env!("CARGO")));
    assert!(
        out.status.success(),
        "building {BACKEND_BIN} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // Cargo reports where it put the executable; fall back to the usual layout.
    let path = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("\"name\":\"{BACKEND_BIN}\"")))
        .find_map(json_executable)
        .unwrap_or_else(|| target_dir.join(&profile).join(BACKEND_BIN));
    assert!(
        path.is_file(),
        "{BACKEND_BIN} was built but {} does not exist",
        path.display()
    );
    path
}

/// The `"executable":"…"` value of one line of cargo's JSON messages.
fn json_executable(line: &str) -> Option<PathBuf> {
    let key = "\"executable\":\"";
    let rest = &line[line.find(key)? + key.len()..];
    let mut path = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(PathBuf::from(path)),
            '\\' => path.push(chars.next()?),
            c => path.push(c),
        }
    }
    None
}

/// The counters a backend reports on `/_stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendStats {
    /// Counted requests (everything but `/healthz`, `/_control/…` and `/_stats`).
    pub requests: u64,
    /// `/healthz` requests.
    pub healthz: u64,
    /// Counted requests in flight right now.
    pub inflight: u64,
    /// The most counted requests that were in flight at once.
    pub max_inflight: u64,
}

/// A running `ringway-test-backend` process, SIGKILLed on drop.
pub struct Backend {
    /// Its name: the `X-Backend` value and body of its answers.
    pub name: String,
    /// Where it listens (kept across [`Backend::restart`]).
    pub addr: SocketAddr,
    child: Option<Child>,
    args: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Backend {
    /// Starts a backend called `name` on a free port of 127.0.0.1.
    pub fn start(name: &str) -> Backend {
        Backend::launch(name, loopback_any(), &[])
    }

    /// Starts a backend called `name` on `addr`.
    pub fn start_on(name: &str, addr: SocketAddr) -> Backend {
        Backend::launch(name, addr, &[])
    }

    /// Starts a backend called `name` on a free port with extra flags, e.g.
    /// `&["--health-status", "503"]` or `&["--delay-ms", "50"]` (kept for restarts).
    pub fn start_with(name: &str, args: &[&str]) -> Backend {
        Backend::launch(name, loopback_any(), args)
    }

    fn launch(name: &str, addr: SocketAddr, args: &[&str]) -> Backend {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let spawned = spawn_backend(name, addr, &args)
            .unwrap_or_else(|e| panic!("backend {name} on {addr}: {e}"));
        Backend {
            name: name.to_owned(),
            addr: spawned.addr,
            child: Some(spawned.child),
            args,
            stderr: spawned.stderr,
        }
    }

    /// `ip:port`, as a cluster endpoint's `addr`.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Whether the process is running (not killed, not exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILLs the process and reaps it; a no-op if it is not running. Connections it had
    /// open are closed by the kernel (the proxy sees resets or EOFs); new ones are refused.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the process (if running) and starts a new one with the same name, port and flags,
    /// retrying for up to 5 s while the port is still busy. Run-time settings (health, delay)
    /// and counters start afresh.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + RESTART_WINDOW;
        loop {
            match spawn_backend(&self.name, self.addr, &self.args) {
                Ok(s) => {
                    assert_eq!(s.addr, self.addr, "restarted backend moved");
                    self.child = Some(s.child);
                    self.stderr = s.stderr;
                    return;
                }
                Err(e) if Instant::now() >= deadline => panic!(
                    "backend {} could not restart on {} within {RESTART_WINDOW:?}: {e}",
                    self.name, self.addr
                ),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// The backend's counters (`GET /_stats`).
    pub fn stats(&self) -> BackendStats {
        let body = self.control("/_stats");
        let mut stats = BackendStats::default();
        for line in body.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value: u64 = value
                .parse()
                .unwrap_or_else(|_| panic!("backend {}: bad /_stats line {line:?}", self.name));
            match key {
                "requests" => stats.requests = value,
                "healthz" => stats.healthz = value,
                "inflight" => stats.inflight = value,
                "max_inflight" => stats.max_inflight = value,
                _ => {}
            }
        }
        stats
    }

    /// Makes `/healthz` answer `status` (200..=599) from now on.
    pub fn set_health(&self, status: u16) {
        self.control(&format!("/_control/health?status={status}"));
    }

    /// Delays every counted request by `ms` milliseconds from now on (0: no delay).
    pub fn set_delay(&self, ms: u64) {
        self.control(&format!("/_control/delay?ms={ms}"));
    }

    /// Zeroes `requests`, `healthz` and `max_inflight`.
    pub fn reset(&self) {
        self.control("/_control/reset");
    }

    /// What the process wrote to stderr so far (startup errors, mostly).
    pub fn stderr(&self) -> String {
        lock(&self.stderr).clone()
    }

    /// `GET path` on the backend itself; panics unless it answers 200. Returns the body.
    fn control(&self, path: &str) -> String {
        let r = get_once(self.addr, path, &[]).unwrap_or_else(|e| {
            panic!(
                "backend {} ({}): GET {path}: {e}; stderr: {}",
                self.name,
                self.addr,
                self.stderr()
            )
        });
        assert_eq!(
            r.status,
            200,
            "backend {}: GET {path}: {}",
            self.name,
            r.summary()
        );
        r.body_text()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

fn loopback_any() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

struct Spawned {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

/// Starts one backend process and waits for its `listening on` line.
fn spawn_backend(name: &str, listen: SocketAddr, args: &[String]) -> Result<Spawned, String> {
    let mut child = Command::new(backend_binary())
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--name")
        .arg(name)
        .arg("--exit-with-parent")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", backend_binary().display()))?;
    let stderr = Arc::new(Mutex::new(String::new()));
    let (err_done_tx, err_done) = mpsc::channel::<()>();
    {
        let pipe = child.stderr.take().expect("stderr pipe");
        let stderr = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut s = lock(&stderr);
                s.push_str(&line);
                s.push('\n');
            }
            let _ = err_done_tx.send(());
        });
    }
    let (tx, rx) = mpsc::channel::<String>();
    {
        let mut pipe = BufReader::new(child.stdout.take().expect("stdout pipe"));
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = pipe.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining (nothing more is expected) so the backend never blocks on stdout.
            let _ = io::copy(&mut pipe, &mut io::sink());
        });
    }
    let fail = |mut child: Child, why: String| {
        let _ = child.kill();
        let status = child.wait();
        let _ = err_done.recv_timeout(Duration::from_secs(1));
        Err(format!(
            "{why} (exit: {status:?}); stderr: {}",
            lock(&stderr).trim()
        ))
    };
    let line = match rx.recv_timeout(STARTUP) {
        Ok(line) => line,
        Err(_) => return fail(child, format!("no `listening on` line within {STARTUP:?}")),
    };
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse::<SocketAddr>().ok());
    match addr {
        Some(addr) => Ok(Spawned {
            child,
            addr,
            stderr,
        }),
        None => fail(child, format!("unexpected first line {line:?}")),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One `GET path` (plus `headers`) on a fresh connection with `Connection: close`, with 5 s
/// connect, read and write timeouts; transport failures are errors, any status is `Ok`.
pub fn get_once(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> io::Result<Response> {
    let stream = TcpStream::connect_timeout(&addr, CONTROL_TIMEOUT)?;
    let mut c = Client::from_stream(stream);
    c.stream.set_read_timeout(Some(CONTROL_TIMEOUT))?;
    c.stream.set_write_timeout(Some(CONTROL_TIMEOUT))?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    c.try_send(req.as_bytes())?;
    c.read_response()
}

/// What a load run saw.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Responses per `X-Backend` value (any status; responses without the field, such as the
    /// proxy's own 502s, are not here).
    pub by_backend: HashMap<String, usize>,
    /// Responses per status code.
    pub by_status: HashMap<u16, usize>,
    /// Transport errors: refused or failed connects, resets, EOF before a complete response,
    /// read timeouts (`DRIVE_IO_TIMEOUT`).
    pub errors: usize,
    /// Requests never sent, or cut off in flight, because the drive's time limit ran out.
    pub unsent: usize,
    /// Per request, by request index: `(status, X-Backend)`; `(0, None)` for a request that
    /// got no response (an error, or unsent).
    pub responses: Vec<(u16, Option<String>)>,
    /// How long the drive took.
    pub elapsed: Duration,
}

impl Tally {
    /// Requests that got a response (any status).
    pub fn answered(&self) -> usize {
        self.by_status.values().sum()
    }

    /// Responses from backend `name`.
    pub fn count(&self, name: &str) -> usize {
        self.by_backend.get(name).copied().unwrap_or(0)
    }

    /// The fraction (0.0..=1.0) of answered requests that backend `name` answered; 0.0 when
    /// nothing was answered.
    pub fn share(&self, name: &str) -> f64 {
        match self.answered() {
            0 => 0.0,
            n => self.count(name) as f64 / n as f64,
        }
    }

    /// Non-2xx responses plus transport errors (unsent requests are not failures).
    pub fn failures(&self) -> usize {
        let non_2xx: usize = self
            .by_status
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s))
            .map(|(_, n)| n)
            .sum();
        non_2xx + self.errors
    }

    /// A one-line account for assertion messages: counts per backend and status, errors,
    /// unsent, elapsed time.
    pub fn summary(&self) -> String {
        let mut backends: Vec<_> = self.by_backend.iter().collect();
        backends.sort();
        let mut statuses: Vec<_> = self.by_status.iter().collect();
        statuses.sort();
        format!(
            "by_backend={backends:?} by_status={statuses:?} errors={} unsent={} in {:?}",
            self.errors, self.unsent, self.elapsed
        )
    }
}

/// One request of a load run: the path and the header fields to send (a `Host` field here
/// replaces the default `Host: lb.test`).
#[derive(Debug, Clone)]
pub struct DriveRequest {
    /// The request target, e.g. `/` or `/?delay_ms=20`.
    pub path: String,
    /// Extra header fields.
    pub headers: Vec<(String, String)>,
}

/// Sends `requests` GETs for `path` (with `extra_headers`) over `connections` keep-alive
/// connections in parallel threads and tallies the answers. A connection the proxy closes
/// (or that failed) is replaced for the next request; a failed request is not retried. Every
/// connect and read has a timeout; after `limit` no new request starts and requests still in
/// flight are cut off, all counted in [`Tally::unsent`].
pub fn drive(
    addr: SocketAddr,
    requests: usize,
    connections: usize,
    path: &str,
    extra_headers: &[(&str, &str)],
    limit: Duration,
) -> Tally {
    let headers: Vec<(String, String)> = extra_headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    drive_requests(addr, requests, connections, limit, |_| DriveRequest {
        path: path.to_owned(),
        headers: headers.clone(),
    })
}

/// Like [`drive`], with the header fields of request `i` given by `make_headers(i)` (e.g. a
/// different hash key or cookie per request); [`Tally::responses`]`[i]` is its answer.
pub fn drive_with(
    addr: SocketAddr,
    requests: usize,
    connections: usize,
    path: &str,
    limit: Duration,
    make_headers: impl Fn(usize) -> Vec<(String, String)> + Sync,
) -> Tally {
    drive_requests(addr, requests, connections, limit, |i| DriveRequest {
        path: path.to_owned(),
        headers: make_headers(i),
    })
}

/// Like [`drive`], with request `i` (path and headers) given by `make(i)`.
pub fn drive_requests(
    addr: SocketAddr,
    requests: usize,
    connections: usize,
    limit: Duration,
    make: impl Fn(usize) -> DriveRequest + Sync,
) -> Tally {
    let start = Instant::now();
    let deadline = start + limit;
    let next = AtomicUsize::new(0);
    let threads = connections.clamp(1, requests.max(1));
    let outcomes: Vec<(usize, Outcome)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut conn: Option<Client> = None;
                    let mut done = Vec::new();
                    while Instant::now() < deadline {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= requests {
                            break;
                        }
                        done.push((i, one_request(&mut conn, addr, &make(i), deadline)));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("load driver thread panicked"))
            .collect()
    });
    let mut tally = Tally {
        responses: vec![(0, None); requests],
        ..Tally::default()
    };
    let attempted = outcomes.len();
    for (i, outcome) in outcomes {
        match outcome {
            Outcome::Answer(status, backend) => {
                *tally.by_status.entry(status).or_default() += 1;
                if let Some(b) = &backend {
                    *tally.by_backend.entry(b.clone()).or_default() += 1;
                }
                tally.responses[i] = (status, backend);
            }
            Outcome::Error => tally.errors += 1,
            Outcome::CutOff => tally.unsent += 1,
        }
    }
    tally.unsent += requests - attempted;
    tally.elapsed = start.elapsed();
    tally
}

enum Outcome {
    Answer(u16, Option<String>),
    Error,
    CutOff,
}

/// Sends one request on `conn` (connecting first if there is none) and reads the answer.
fn one_request(
    conn: &mut Option<Client>,
    addr: SocketAddr,
    req: &DriveRequest,
    deadline: Instant,
) -> Outcome {
    // Each wait is the shorter of the per-read timeout and what is left of the limit; a
    // timeout of a wait the limit shortened is the limit cutting the request off.
    let left = deadline.saturating_duration_since(Instant::now());
    let wait = left.min(DRIVE_IO_TIMEOUT).max(Duration::from_millis(1));
    match try_request(conn, addr, req, wait) {
        Ok((response, reusable)) => {
            if !reusable {
                *conn = None;
            }
            Outcome::Answer(
                response.status,
                response.header("x-backend").map(str::to_owned),
            )
        }
        Err(e) => {
            *conn = None;
            let timed_out = matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            );
            if timed_out && left < DRIVE_IO_TIMEOUT {
                Outcome::CutOff
            } else {
                Outcome::Error
            }
        }
    }
}

/// One request with `wait` as the connect, write and per-read timeout; returns the response
/// and whether the connection can carry another request.
fn try_request(
    conn: &mut Option<Client>,
    addr: SocketAddr,
    req: &DriveRequest,
    wait: Duration,
) -> io::Result<(Response, bool)> {
    let client = match conn {
        Some(c) => c,
        None => {
            let stream = TcpStream::connect_timeout(&addr, wait)?;
            conn.insert(Client::from_stream(stream))
        }
    };
    client.stream.set_read_timeout(Some(wait))?;
    client.stream.set_write_timeout(Some(wait))?;
    let mut raw = format!("GET {} HTTP/1.1\r\n", req.path);
    if !req
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("host"))
    {
        raw.push_str("Host: lb.test\r\n");
    }
    for (k, v) in &req.headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    raw.push_str("\r\n");
    client.try_send(raw.as_bytes())?;
    let r = client.read_response()?;
    let framed = r.chunked || r.header("content-length").is_some();
    let reusable = framed && r.version == "HTTP/1.1" && !r.says_close();
    Ok((r, reusable))
}

/// A complete proxy configuration for load-balancing tests: two workers, one plain listener
/// `main` and the admin endpoint on free ports of 127.0.0.1, and a catch-all route to cluster
/// `app`, followed by `clusters_toml` (which must define `app`, e.g. with [`cluster`]).
pub fn lb_config(clusters_toml: &str) -> String {
    format!(
        r#"[server]
workers = 2
admin = "127.0.0.1:0"
log_level = "info"

[[listeners]]
name = "main"
bind = "127.0.0.1:0"

[[routes]]
cluster = "app"

{clusters_toml}
"#
    )
}

/// A `[[clusters]]` table named `name` with `backends` as equal-weight endpoints, then the
/// `extra` lines (more keys of the cluster, e.g. a balancing policy, or its sub-tables).
pub fn cluster(name: &str, backends: &[&Backend], extra: &str) -> String {
    let endpoints: Vec<String> = backends
        .iter()
        .map(|b| format!("{{ addr = \"{}\" }}", b.addr))
        .collect();
    format!(
        "[[clusters]]\nname = \"{name}\"\nendpoints = [{}]\n{extra}\n",
        endpoints.join(", ")
    )
}

/// Writes [`lb_config`]`(clusters_toml)` to a temporary file and starts the proxy on it;
/// returns the proxy and the file (rewrite it and `POST /reload` to change the clusters).
pub fn start_lb_proxy(clusters_toml: &str) -> (Proxy, PathBuf) {
    let path = temp_file("lb.toml", &lb_config(clusters_toml));
    let args = vec![
        "--config".to_owned(),
        path.to_str().expect("utf-8 temporary path").to_owned(),
    ];
    (Proxy::start_args(&args), path)
}
