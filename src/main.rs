//! The `ringway` binary: command line, configuration loading, logging, the admin endpoint,
//! signal handling and wiring of the per-core workers from `proxy-io`.

mod admin;
mod cli;
mod demo;
mod settings;
mod tls;
mod upstreams_view;

use clap::Parser;
use cli::{Cli, Command};
use proxy_core::config::Config;
use proxy_io::access_log::AccessLogSink;
use proxy_io::cache::CachePurges;
use proxy_io::health::spawn_health_checker;
use proxy_io::listener::bind_reuseport;
use proxy_io::metrics::WorkerStats;
use proxy_io::resolver::spawn_resolver;
use proxy_io::shutdown::Shutdown;
use proxy_io::upstreams::{SharedUpstreams, UpstreamCounters};
use proxy_io::{spawn_workers, WorkerSpec};
use std::process::ExitCode;
use std::sync::Arc;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Lets mimalloc return the calling thread's freed pages to the kernel now rather than at its
/// next allocation burst, so memory freed after a load spike shows up in RSS. Forced: the lazy
/// collection left 2.4 MiB of 10,000 idle connections' freed exchange state resident. It runs at
/// most once a second per worker, and only after a burst left buffers to trim.
fn release_memory() {
    // SAFETY: mi_collect only walks and purges the calling thread's own heap.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// Exit status for a bad configuration or bad flags (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    // First, before the workers' heaps exist: see the function's notes.
    proxy_io::runtime::disable_transparent_huge_pages();
    let mut cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_CONFIG } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let demo = matches!(cli.command, Some(Command::Demo));
    let mut demo_upstreams = Vec::new();
    if demo {
        match demo::start_upstreams() {
            Ok(addrs) => demo_upstreams = addrs,
            Err(e) => {
                eprintln!("ringway: cannot start the demo upstreams: {e}");
                return ExitCode::FAILURE;
            }
        }
        cli.upstream
            .extend(demo_upstreams.iter().map(|a| a.to_string()));
        if cli.admin.is_none() {
            cli.admin = Some("127.0.0.1:9901".into());
        }
    }
    let config = match settings::load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringway: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // Logging first: loading certificates warns about expired ones.
    init_logging(&config.server.log_level);
    let tls = match tls::load(&config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ringway: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if cli.check {
        println!("ringway: configuration OK");
        return ExitCode::SUCCESS;
    }
    match run(config, tls, demo.then_some(demo_upstreams)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("ringway: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RINGWAY_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "warn,ringway={level},proxy_io={level},proxy_core={level}"
        ))
    });
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

/// The CPUs workers are pinned to: the configured list, or every CPU in the process's affinity
/// mask (so `taskset -c 1 ringway` pins every worker to CPU 1).
fn worker_cpus(config: &Config) -> Vec<usize> {
    if !config.server.cpu_list.is_empty() {
        return config.server.cpu_list.clone();
    }
    proxy_io::runtime::allowed_cpus()
}

fn run(
    config: Config,
    tls: tls::TlsState,
    demo: Option<Vec<std::net::SocketAddr>>,
) -> Result<(), String> {
    let cpus = worker_cpus(&config);
    let workers = match config.server.workers {
        0 => cpus.len().max(1),
        n => n,
    };
    // Bind everything before starting anything, so every failure is reported up front.
    let mut per_worker: Vec<Vec<std::net::TcpListener>> =
        (0..workers).map(|_| Vec::new()).collect();
    let mut bound = Vec::new();
    for l in &config.listeners {
        let (addr, socks) =
            bind_reuseport(l.bind, workers, config.server.backlog).map_err(|e| e.to_string())?;
        for (w, s) in socks.into_iter().enumerate() {
            per_worker[w].push(s);
        }
        bound.push((l.name.clone(), addr));
    }
    let admin = match &config.server.admin {
        Some(a) => Some((admin::bind(a)?, a.token.clone())),
        None => None,
    };
    let access_log = match config.server.access_log.as_deref() {
        None => None,
        Some("-") => Some(AccessLogSink::Stdout),
        Some(path) => Some(AccessLogSink::File(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open access log {path}: {e}"))?,
        )),
    };

    let shutdown = Shutdown::new();
    install_signal_handler(shutdown.clone(), tls.listeners.clone())?;
    let stats: Vec<Arc<WorkerStats>> = (0..workers)
        .map(|_| Arc::new(WorkerStats::default()))
        .collect();
    let upstream_counters: Vec<Arc<UpstreamCounters>> = (0..workers)
        .map(|_| UpstreamCounters::new(&config))
        .collect();
    let shared = Arc::new(SharedUpstreams::new(&config));
    let cache_purges = Arc::new(CachePurges::default());
    let config = Arc::new(config);
    let mut specs = Vec::with_capacity(workers);
    for (index, listeners) in per_worker.into_iter().enumerate() {
        specs.push(WorkerSpec {
            index,
            cpu: (!cpus.is_empty()).then(|| cpus[index % cpus.len()]),
            config: config.clone(),
            listeners,
            stats: stats[index].clone(),
            shutdown: shutdown.clone(),
            access_log: match &access_log {
                Some(s) => Some(
                    s.try_clone()
                        .map_err(|e| format!("cannot share the access log: {e}"))?,
                ),
                None => None,
            },
            tls: tls.per_listener.clone(),
            upstream_tls: tls.per_cluster.clone(),
            release_memory: Some(release_memory),
            upstreams: shared.clone(),
            upstream_counters: upstream_counters[index].clone(),
            cache_purges: cache_purges.clone(),
            workers,
        });
    }
    let handles = spawn_workers(specs).map_err(|e| e.to_string())?;
    let helpers = [
        spawn_health_checker(
            config.clone(),
            shared.clone(),
            tls.per_cluster.clone(),
            shutdown.clone(),
        ),
        spawn_resolver(config.clone(), shared.clone(), shutdown.clone()),
    ];
    let mut background = Vec::new();
    for h in helpers {
        match h {
            Ok(Some(handle)) => background.push(handle),
            Ok(None) => {}
            Err(e) => {
                shutdown.trigger();
                return Err(format!("cannot start a background thread: {e}"));
            }
        }
    }
    if let Some(((listener, addr), token)) = admin {
        tracing::info!(%addr, "admin endpoint listening");
        admin::serve(
            listener,
            token,
            admin::State {
                workers: stats.clone(),
                config: config.clone(),
                upstreams: shared.clone(),
                upstream_counters: upstream_counters.clone(),
                cache_purges: cache_purges.clone(),
            },
            shutdown.clone(),
            tls.listeners.clone(),
        );
    }
    for (name, addr) in &bound {
        tracing::info!(listener = %name, %addr, workers, "listening");
    }
    if let Some(upstreams) = demo {
        let (_, addr) = &bound[0];
        println!("Ringway demo: proxy on http://{addr} in front of sample upstreams {upstreams:?}");
        println!("Try: curl http://{addr}/   (run it twice: answers alternate between A and B)");
        if let Some(a) = &config.server.admin {
            println!("Metrics: curl http://{}/metrics   Stop: Ctrl-C", a.addr);
        }
    }
    for h in handles {
        h.join();
    }
    for b in background {
        let _ = b.join();
    }
    tracing::info!("stopped");
    Ok(())
}

fn install_signal_handler(shutdown: Shutdown, tls: tls::Reloadable) -> Result<(), String> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    std::thread::Builder::new()
        .name("ringway-signals".into())
        .spawn(move || {
            let mut seen = 0;
            for sig in signals.forever() {
                if sig == SIGHUP {
                    // Errors are logged by `reload`; the certificates in service stay.
                    let _ = tls::reload(&tls);
                    continue;
                }
                seen += 1;
                if seen == 1 {
                    tracing::info!(signal = sig, "shutting down gracefully");
                    shutdown.trigger();
                } else {
                    tracing::warn!(signal = sig, "second signal: exiting now");
                    std::process::exit(1);
                }
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    Ok(())
}
