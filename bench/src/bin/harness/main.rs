//! `ringway-bench-harness`: measures Ringway, nginx and HAProxy in one run, on one machine,
//! with the same backend and the same client, and publishes Markdown tables and SVG charts.
//!
//! For each scenario every contender is started fresh, pinned to the proxy CPU set, while the
//! client (wrk, or `ringway-bench-rate` for fixed-rate latency) and the backend share the other
//! CPUs. Rounds are interleaved (direct, ringway, nginx, haproxy, direct, …) and medians
//! reported. CPU per request is the contender's user+sys time over the measured window (all its
//! threads and processes, from /proc schedstat) divided by the requests served. A run with
//! errors, non-2xx answers, wrong body sizes or missing forwarding fields is marked invalid.
//! The TLS scenarios (`tls-*`) are in `tls`, their rustls client in `tlsclient`; the HTTP/2
//! scenarios (`h2c-*`, `h2-tls-*`, driven by h2load) in `h2`; the load-balancing ones
//! (`lb-*`: three backends, one of them slow) in `lb`; the cache-hit ones (`cache-hit-*`: each
//! proxy's response cache on, the backend nearly idle while measured) in `cache`.
//! Run it through `scripts/bench.sh`, which installs the tools and builds everything first.

mod cache;
mod contenders;
mod h2;
mod lb;
mod measure;
mod report;
mod tls;
mod tlsclient;

use contenders::{Kind, Setup};
use measure::Load;
use report::{Row, Run};
use std::path::PathBuf;
use std::time::Duration;

const BACKEND_PORT: u16 = 19000;
const BASE_PORT: u16 = 19001;

/// What a scenario drives.
#[derive(Debug, Clone)]
enum Drive {
    Wrk(Load),
    FixedRate,
    Idle,
    Tls(tls::Mode),
    H2(h2::Mode),
    Lb(lb::Mode),
    Cache(cache::Mode),
}

#[derive(Debug, Clone)]
struct Scenario {
    name: &'static str,
    title: &'static str,
    drive: Drive,
    /// Expected response body size, for verification.
    body: usize,
}

fn scenarios() -> Vec<Scenario> {
    let wrk = |connections, path, close, post_bytes| {
        Drive::Wrk(Load {
            connections,
            path,
            close,
            post_bytes,
            tls: false,
        })
    };
    let mut all = vec![
        Scenario {
            name: "ka-c1",
            title: "Keep-alive, 1 KiB responses, 1 connection",
            drive: wrk(1, "/1k", false, 0),
            body: 1024,
        },
        Scenario {
            name: "ka-c64",
            title: "Keep-alive, 1 KiB responses, 64 connections",
            drive: wrk(64, "/1k", false, 0),
            body: 1024,
        },
        Scenario {
            name: "ka-c256",
            title: "Keep-alive, 1 KiB responses, 256 connections",
            drive: wrk(256, "/1k", false, 0),
            body: 1024,
        },
        Scenario {
            name: "new-conn",
            title: "A new connection per request, 1 KiB responses, 64 clients",
            drive: wrk(64, "/1k", true, 0),
            body: 1024,
        },
        Scenario {
            name: "resp-64k",
            title: "Keep-alive, 64 KiB responses, 64 connections",
            drive: wrk(64, "/64k", false, 0),
            body: 64 << 10,
        },
        Scenario {
            name: "resp-1m",
            title: "Keep-alive, 1 MiB responses, 16 connections",
            drive: wrk(16, "/1m", false, 0),
            body: 1 << 20,
        },
        Scenario {
            name: "post-1m",
            title: "1 MiB POST uploads, 16 connections",
            drive: wrk(16, "/0", false, 1 << 20),
            body: 0,
        },
        Scenario {
            name: "fixed-rate",
            title: "Fixed rate at 50% of nginx's maximum, 1 KiB responses, 64 connections",
            drive: Drive::FixedRate,
            body: 1024,
        },
        Scenario {
            name: "idle-10k",
            title: "Idle keep-alive connections",
            drive: Drive::Idle,
            body: 0,
        },
    ];
    all.extend(tls::scenarios());
    all.extend(h2::scenarios());
    all.extend(lb::scenarios());
    all.extend(cache::scenarios());
    all
}

struct Options {
    quick: bool,
    rounds: usize,
    duration: Duration,
    warmup: Duration,
    only: Option<Vec<String>>,
    out: PathBuf,
    idle: usize,
    proxy_cpus: String,
    client_cpus: String,
    target: PathBuf,
}

fn options() -> Result<Options, String> {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut o = Options {
        quick: false,
        rounds: 3,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(2),
        only: None,
        out: PathBuf::from("bench/results"),
        idle: 10_000,
        proxy_cpus: "1".into(),
        client_cpus: if cpus > 2 {
            format!("0,2-{}", cpus - 1)
        } else {
            "0".into()
        },
        target: PathBuf::from("target/release"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--quick" => {
                o.quick = true;
                o.duration = Duration::from_secs(1);
                o.warmup = Duration::from_millis(300);
                o.idle = 2_000;
            }
            "--rounds" => {
                o.rounds = value("--rounds")?
                    .parse()
                    .map_err(|_| "--rounds: not a number")?
            }
            "--duration" => {
                o.duration = Duration::from_secs(
                    value("--duration")?
                        .parse()
                        .map_err(|_| "--duration: seconds")?,
                )
            }
            "--only" => o.only = Some(value("--only")?.split(',').map(str::to_owned).collect()),
            "--out" => o.out = value("--out")?.into(),
            "--idle" => {
                o.idle = value("--idle")?
                    .parse()
                    .map_err(|_| "--idle: not a number")?
            }
            "--proxy-cpus" => o.proxy_cpus = value("--proxy-cpus")?,
            "--client-cpus" => o.client_cpus = value("--client-cpus")?,
            "--target" => o.target = value("--target")?.into(),
            "-h" | "--help" => {
                println!(
                    "usage: ringway-bench-harness [--quick] [--rounds N] [--duration SECS] [--only a,b] \
                     [--out DIR] [--idle N] [--proxy-cpus LIST] [--client-cpus LIST] [--target DIR]\n\
                     scenarios: {}",
                    scenarios().iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other} (try --help)")),
        }
    }
    Ok(o)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--tls-load") {
        std::process::exit(tlsclient::load_main(&args[1..]));
    }
    let opts = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ringway-bench-harness: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&opts) {
        eprintln!("ringway-bench-harness: {e}");
        std::process::exit(1);
    }
}

fn command_line(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .map(|o| {
            let text = [o.stdout, o.stderr].concat();
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

fn run(o: &Options) -> Result<(), String> {
    let workdir = std::env::temp_dir().join(format!("ringway-bench-{}", std::process::id()));
    std::fs::create_dir_all(&workdir).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&o.out)
        .map_err(|e| format!("cannot create {}: {e}", o.out.display()))?;
    let setup = Setup {
        workdir: workdir.clone(),
        ringway: o.target.join("ringway"),
        backend_port: BACKEND_PORT,
        base_port: BASE_PORT,
        proxy_cpus: o.proxy_cpus.clone(),
    };
    let date = command_line("date", &["-u", "+%Y-%m-%d"]);
    let machine = format!(
        "{} CPUs ({}), Linux {}; {}; {}; {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        command_line(
            "sh",
            &["-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"]
        ),
        command_line("uname", &["-r"]),
        command_line("nginx", &["-v"]),
        command_line("haproxy", &["-v"])
            .split(" - ")
            .next()
            .unwrap_or("")
            .to_owned(),
        command_line(setup.ringway.to_str().unwrap_or("ringway"), &["--version"]),
    );
    let placement = format!(
        "placement: proxies on CPU {}, client and backend on CPU {}",
        o.proxy_cpus, o.client_cpus
    );
    eprintln!("{machine}\n{placement}");

    let mut backend = std::process::Command::new("taskset")
        .args(["-c", &o.client_cpus])
        .arg(o.target.join("ringway-bench-backend"))
        .arg(format!("127.0.0.1:{BACKEND_PORT}"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the backend: {e}"))?;
    contenders::wait_for_port(BACKEND_PORT, Duration::from_secs(10))?;
    let result = run_scenarios(o, &setup, &date, &machine, &placement);
    let _ = backend.kill();
    let _ = backend.wait();
    let _ = std::fs::remove_dir_all(&workdir);
    result
}

fn run_scenarios(
    o: &Options,
    setup: &Setup,
    date: &str,
    machine: &str,
    placement: &str,
) -> Result<(), String> {
    let chosen: Vec<Scenario> = scenarios()
        .into_iter()
        .filter(|s| {
            o.only
                .as_ref()
                .is_none_or(|only| only.iter().any(|n| n == s.name))
        })
        .collect();
    let total = chosen.len();
    let mut nginx_max = f64::NAN;
    let mut summary = String::new();
    for (i, sc) in chosen.iter().enumerate() {
        eprintln!("[{}/{total}] {}: {}", i + 1, sc.name, sc.title);
        // `extra`: more of the section, after the table (the HTTP/2 scenarios' h2load counts).
        let (rows, how, extra) = match &sc.drive {
            Drive::Wrk(load) => {
                let rows = wrk_scenario(o, setup, sc, load)?;
                if sc.name == "ka-c64" {
                    nginx_max = rows
                        .iter()
                        .find(|(k, _)| *k == Kind::Nginx)
                        .map_or(f64::NAN, |(_, r)| r.med(|x| x.rps));
                }
                let how = format!(
                    "`wrk -t1 -c{}{}{}` on `{}`, {} interleaved rounds of {} s, medians.",
                    load.connections,
                    if load.close {
                        " -H 'Connection: close'"
                    } else {
                        ""
                    },
                    if load.post_bytes > 0 {
                        " (POST, 1 MiB body)"
                    } else {
                        ""
                    },
                    load.path,
                    o.rounds,
                    o.duration.as_secs()
                );
                (rows, how, String::new())
            }
            Drive::FixedRate => {
                if nginx_max.is_nan() {
                    nginx_max = measure_nginx_max(o, setup)?;
                }
                let rate = (nginx_max * 0.5) as u64;
                let rows = fixed_rate_scenario(o, setup, rate)?;
                let how = format!(
                    "`ringway-bench-rate` at {rate} req/s (50% of nginx's keep-alive maximum, {nginx_max:.0} req/s), 64 connections, latency from each request's scheduled send time (corrected for coordinated omission), {} rounds of {} s, medians.",
                    o.rounds,
                    o.duration.as_secs()
                );
                (rows, how, String::new())
            }
            Drive::Idle => {
                let rows = idle_scenario(o, setup)?;
                let how = format!(
                    "{} keep-alive connections each make one request (200 at a time), then sit idle (2 s; 1 s with --quick); the contender's resident memory (all processes) is read then.",
                    o.idle
                );
                (rows, how, String::new())
            }
            Drive::Tls(mode) => {
                let (rows, how) = tls::run(o, setup, sc, mode)?;
                (rows, how, String::new())
            }
            Drive::H2(mode) => h2::run(o, setup, sc, mode)?,
            Drive::Lb(mode) => lb::run(o, setup, sc, mode)?,
            Drive::Cache(mode) => cache::run(o, setup, sc, mode)?,
        };
        let title = format!("{} — {}", sc.name, sc.title);
        let mut section =
            report::markdown(&title, &how, &rows, matches!(sc.drive, Drive::FixedRate));
        section.push_str(&extra);
        println!("{section}");
        let file = o.out.join(format!("{date}-{}.md", sc.name));
        let page = format!(
            "# Ringway benchmark: {}\n\n{machine}\n\n{placement}\n\n{section}\n",
            sc.name
        );
        std::fs::write(&file, page).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        if !matches!(sc.drive, Drive::Idle | Drive::Tls(tls::Mode::Idle)) {
            let svg = o.out.join(format!("{date}-{}.svg", sc.name));
            report::chart(&svg, &title, &rows)?;
        }
        summary.push_str(&section);
        summary.push('\n');
    }
    let file = o.out.join(format!("{date}-summary.md"));
    // A later `--only` run the same day replaces its own scenarios' sections and keeps the rest.
    let earlier = std::fs::read_to_string(&file).unwrap_or_default();
    let head = format!("# Ringway benchmarks, {date}\n\n{machine}\n\n{placement}\n\n");
    std::fs::write(&file, report::merge_summary(&earlier, &head, &summary))
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    eprintln!("results written to {}", o.out.display());
    Ok(())
}

/// The backend's body of `body` bytes.
fn expected_body(body: usize) -> Vec<u8> {
    (0..body)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz012345"[i % 32])
        .collect()
}

fn verify_body(running: &contenders::Running, path: &str, body: usize) -> Result<(), String> {
    let got = measure::fetch_body(running.port, path)?;
    if got != expected_body(body) {
        return Err(format!(
            "{} returned a wrong body for {path} ({} bytes)",
            running.kind.name(),
            got.len()
        ));
    }
    Ok(())
}

fn start_all(setup: &Setup) -> Result<Vec<contenders::Running>, String> {
    Kind::ALL.iter().map(|k| setup.start(*k)).collect()
}

fn wrk_scenario(
    o: &Options,
    setup: &Setup,
    sc: &Scenario,
    load: &Load,
) -> Result<Vec<(Kind, Row)>, String> {
    let running = start_all(setup)?;
    if load.post_bytes == 0 {
        for r in &running {
            verify_body(r, load.path, sc.body)?;
        }
    }
    wrk_rounds(o, setup, sc, load, &running)
}

/// Warms up, then runs interleaved wrk rounds on every contender of `running`.
fn wrk_rounds(
    o: &Options,
    setup: &Setup,
    sc: &Scenario,
    load: &Load,
    running: &[contenders::Running],
) -> Result<Vec<(Kind, Row)>, String> {
    let mut rows: Vec<(Kind, Row)> = running.iter().map(|r| (r.kind, Row::default())).collect();
    for r in running {
        measure::wrk(&o.client_cpus, r.port, load, o.warmup, &setup.workdir)?;
    }
    for round in 0..o.rounds {
        for (i, r) in running.iter().enumerate() {
            eprintln!("  round {}/{}: {}", round + 1, o.rounds, r.kind.name());
            let run = measure::measured(r, sc.body, load.connections, || {
                let w = measure::wrk(&o.client_cpus, r.port, load, o.duration, &setup.workdir)?;
                let run = Run {
                    rps: w.rps,
                    p50_us: w.p50_us,
                    p99_us: w.p99_us,
                    p999_us: f64::NAN,
                    errors: w.errors + w.non2xx,
                    ..Run::default()
                };
                Ok((w.requests, run, w.bytes))
            })?;
            rows[i].1.runs.push(run);
        }
    }
    for (i, r) in running.iter().enumerate() {
        rows[i].1.peak_rss_kib = measure::status_kib(&r.pids(), "VmHWM:");
    }
    Ok(rows)
}

fn measure_nginx_max(o: &Options, setup: &Setup) -> Result<f64, String> {
    let nginx = setup.start(Kind::Nginx)?;
    let load = Load {
        connections: 64,
        path: "/1k",
        close: false,
        post_bytes: 0,
        tls: false,
    };
    measure::wrk(&o.client_cpus, nginx.port, &load, o.warmup, &setup.workdir)?;
    Ok(measure::wrk(
        &o.client_cpus,
        nginx.port,
        &load,
        o.duration.max(Duration::from_secs(2)),
        &setup.workdir,
    )?
    .rps)
}

fn fixed_rate_scenario(o: &Options, setup: &Setup, rate: u64) -> Result<Vec<(Kind, Row)>, String> {
    let running = start_all(setup)?;
    let bin = o.target.join("ringway-bench-rate");
    let mut rows: Vec<(Kind, Row)> = Kind::ALL.iter().map(|k| (*k, Row::default())).collect();
    for round in 0..o.rounds {
        for (i, r) in running.iter().enumerate() {
            eprintln!("  round {}/{}: {}", round + 1, o.rounds, r.kind.name());
            let run = measure::measured(r, 1024, 64, || {
                let f = measure::rate(&bin, &o.client_cpus, r.port, rate, o.duration, o.warmup)?;
                let run = Run {
                    rps: f.requests as f64 / o.duration.as_secs_f64(),
                    p50_us: f.p50_us,
                    p99_us: f.p99_us,
                    p999_us: f.p999_us,
                    errors: f.errors + f.non2xx,
                    ..Run::default()
                };
                Ok((f.requests, run, f.bytes))
            })?;
            rows[i].1.runs.push(run);
        }
    }
    for (i, r) in running.iter().enumerate() {
        rows[i].1.peak_rss_kib = measure::status_kib(&r.pids(), "VmHWM:");
    }
    Ok(rows)
}

fn idle_scenario(o: &Options, setup: &Setup) -> Result<Vec<(Kind, Row)>, String> {
    let mut rows = Vec::new();
    for kind in [Kind::Ringway, Kind::Nginx, Kind::Haproxy] {
        eprintln!("  {}", kind.name());
        let running = setup.start(kind)?;
        let (conns, failed) =
            measure::idle_connections(running.port, o.idle, 200, Duration::from_secs(2));
        let rss = measure::status_kib(&running.pids(), "VmRSS:");
        drop(conns);
        rows.push((kind, idle_row(failed, rss)));
    }
    Ok(rows)
}

/// The report row of an idle-connections measurement: failures, and the RSS with them open.
pub fn idle_row(failed: usize, rss_kib: u64) -> Row {
    let run = Run {
        errors: failed as u64,
        ..Run::default()
    };
    Row {
        runs: vec![run],
        peak_rss_kib: 0,
        idle_rss_kib: Some(rss_kib),
    }
}
