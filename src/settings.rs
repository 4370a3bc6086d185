//! Loading the configuration: read the TOML file, apply command-line overrides, resolve host
//! names, and hand the result to `proxy-core` to validate. Every failure names the file, key or
//! flag at fault.

use crate::cli::{Cli, H2Flags};
use proxy_core::config::{
    Config, FileCache, FileCertificate, FileCluster, FileCompress, FileConfig, FileEndpoint,
    FileHealth, FileHttp2, FileListener, FileListenerTls, FileRetry, FileRoute, FileUpstreamTls,
    Quantity,
};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The listen address used when there is neither a file nor `--listen`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Builds the configuration from the file (if any) and the flags.
pub fn load(cli: &Cli) -> Result<Config, String> {
    let (mut file, origin) = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
            let file: FileConfig = toml::from_str(&text)
                .map_err(|e| format!("config file {}: {e}", path.display()))?;
            (file, format!("config file {}", path.display()))
        }
        None => (FileConfig::default(), "configuration".to_owned()),
    };
    apply_flags(cli, &mut file)?;
    if !cli.upstream_tls
        && (cli.upstream_ca.is_some()
            || cli.upstream_server_name.is_some()
            || cli.upstream_cert.is_some()
            || cli.upstream_tls_no_verify)
    {
        return Err("--upstream-ca/--upstream-server-name/--upstream-cert/--upstream-tls-no-verify need --upstream-tls".into());
    }
    resolve_hostnames(&mut file)?;
    Config::resolve(&file).map_err(|e| format!("{origin}: {e}"))
}

fn secs(d: Duration) -> Quantity {
    Quantity::Text(format!("{}ms", d.as_millis()))
}

fn apply_flags(cli: &Cli, file: &mut FileConfig) -> Result<(), String> {
    let s = &mut file.server;
    macro_rules! set {
        ($slot:expr, $flag:expr) => {
            if let Some(v) = $flag.clone() {
                $slot = Some(v);
            }
        };
    }
    set!(s.workers, cli.workers);
    set!(s.cpu_list, cli.cpu_list);
    set!(s.io_driver, cli.io_driver);
    set!(s.io_uring_entries, cli.io_uring_entries);
    set!(s.backlog, cli.backlog);
    set!(s.max_connections, cli.max_connections);
    set!(s.admin, cli.admin);
    set!(s.log_level, cli.log_level);
    set!(s.access_log, cli.access_log);
    set!(file.proxy.upstream_pool_size, cli.upstream_pool_size);
    let t = &mut file.timeouts;
    for (slot, flag) in [
        (&mut s.drain_timeout, cli.drain_timeout),
        (&mut t.header, cli.header_timeout),
        (&mut t.idle, cli.idle_timeout),
        (&mut t.upstream_connect, cli.upstream_connect_timeout),
        (&mut t.upstream_response, cli.upstream_response_timeout),
        (
            &mut file.proxy.upstream_idle_timeout,
            cli.upstream_idle_timeout,
        ),
    ] {
        if let Some(d) = flag {
            *slot = Some(secs(d));
        }
    }
    if let Some(n) = cli.max_header_bytes {
        file.limits.max_header_bytes = Some(Quantity::Int(n));
    }
    if let Some(n) = cli.max_uri_bytes {
        file.limits.max_uri_bytes = Some(Quantity::Int(n));
    }
    if let Some(n) = cli.min_client_rate {
        file.limits.min_client_rate = Some(Quantity::Int(n));
    }
    if let Some(n) = cli.max_body_bytes {
        file.limits.max_body_bytes = Some(Quantity::Int(n));
    }
    apply_h2_flags(&cli.h2, &mut file.http2);

    let mut listens = cli.listen.clone();
    if listens.is_empty() && cli.listen_tls.is_empty() && cli.config.is_none() {
        listens.push(DEFAULT_LISTEN.to_owned());
    }
    for (i, bind) in listens.into_iter().enumerate() {
        let name = if i == 0 {
            "cli".to_owned()
        } else {
            format!("cli-{}", i + 1)
        };
        if file.listeners.iter().any(|l| l.name == name) {
            return Err(format!(
                "--listen: the config file already has a listener named `{name}`"
            ));
        }
        file.listeners.push(FileListener {
            name,
            bind,
            tls: None,
            http2: None,
        });
    }
    add_tls_listeners(cli, file)?;
    if cli.h2.no_http2 {
        for l in &mut file.listeners {
            l.http2 = Some(false);
        }
    }
    if !cli.upstream.is_empty() {
        if file.clusters.iter().any(|c| c.name == "default") {
            return Err("--upstream: the config file already has a cluster named `default`".into());
        }
        let endpoints = cli
            .upstream
            .iter()
            .map(|a| FileEndpoint {
                addr: a.clone(),
                ..FileEndpoint::default()
            })
            .collect();
        file.clusters.push(FileCluster {
            name: "default".into(),
            endpoints,
            tls: upstream_tls(cli),
            protocol: cli.upstream_protocol.clone(),
            lb: cli.lb.lb.clone(),
            hash_key: cli.lb.hash_key.clone(),
            sticky_cookie: cli.lb.sticky_cookie.clone(),
            health: cli.lb.health_path.as_ref().map(|p| FileHealth {
                path: Some(p.clone()),
                interval: cli.lb.health_interval.map(secs),
                ..FileHealth::default()
            }),
            retry: cli.lb.retries.map(|n| FileRetry {
                retries: Some(n),
                ..FileRetry::default()
            }),
            max_connections: cli.lb.max_upstream_conns,
            ..FileCluster::default()
        });
        // A catch-all route: the least specific of all, so file routes still win.
        file.routes.push(FileRoute {
            host: None,
            path_prefix: None,
            cluster: "default".into(),
            cache: cli.accel.cache_max_bytes.map(|m| FileCache {
                max_bytes: Some(Quantity::Int(m)),
                ..FileCache::default()
            }),
            compress: cli.accel.compress.then(FileCompress::default),
        });
    }
    Ok(())
}

/// Applies the `--h2-*` flags (and `--no-http2`, which turns HTTP/2 off everywhere, file
/// listeners included) to `[http2]`.
fn apply_h2_flags(f: &H2Flags, h: &mut FileHttp2) {
    if f.no_http2 {
        h.enabled = Some(false);
    }
    let size = |v: Option<u64>| v.map(Quantity::Int);
    let dur = |v: Option<Duration>| v.map(secs);
    macro_rules! over {
        ($($slot:ident = $v:expr;)*) => { $( if let Some(v) = $v { h.$slot = Some(v); } )* };
    }
    over! {
        max_concurrent_streams = f.h2_max_concurrent_streams;
        max_header_list_size = size(f.h2_max_header_list_size);
        initial_stream_window = size(f.h2_initial_stream_window);
        initial_connection_window = size(f.h2_initial_connection_window);
        max_send_buffer = size(f.h2_max_send_buffer);
        max_pending_resets = f.h2_max_pending_resets;
        max_local_error_resets = f.h2_max_local_error_resets;
        pings_settings_per_sec = f.h2_pings_settings_per_sec;
        control_frames_per_sec = f.h2_control_frames_per_sec;
        empty_data_frames = f.h2_empty_data_frames;
        max_upstream_connections = f.h2_max_upstream_connections;
        idle_timeout = dur(f.h2_idle_timeout);
        ping_interval = dur(f.h2_ping_interval);
        ping_timeout = dur(f.h2_ping_timeout);
    }
}

/// Adds the `--listen-tls` listeners, all serving the `--tls-cert`/`--tls-key` pairs.
fn add_tls_listeners(cli: &Cli, file: &mut FileConfig) -> Result<(), String> {
    if cli.listen_tls.is_empty() {
        if !cli.tls_cert.is_empty() || !cli.tls_key.is_empty() {
            return Err("--tls-cert/--tls-key: no --listen-tls address to serve them on".into());
        }
        return Ok(());
    }
    if cli.tls_cert.is_empty() || cli.tls_cert.len() != cli.tls_key.len() {
        return Err(format!(
            "--listen-tls needs --tls-cert and --tls-key in pairs (got {} certificates and {} keys)",
            cli.tls_cert.len(),
            cli.tls_key.len()
        ));
    }
    let certificates: Vec<FileCertificate> = cli
        .tls_cert
        .iter()
        .zip(&cli.tls_key)
        .map(|(cert, key)| FileCertificate {
            cert: cert.clone(),
            key: key.clone(),
            client_auth: None,
            client_ca: None,
        })
        .collect();
    let tls = FileListenerTls {
        certificates,
        strict_sni: Some(cli.tls_strict_sni),
        client_auth: cli.tls_client_auth.clone(),
        client_ca: cli.tls_client_ca.clone(),
        client_subject_header: cli.tls_client_subject_header.clone(),
        hsts: cli.hsts.clone(),
        handshake_timeout: cli.tls_handshake_timeout.map(secs),
    };
    for (i, bind) in cli.listen_tls.iter().enumerate() {
        let name = if i == 0 {
            "cli-tls".to_owned()
        } else {
            format!("cli-tls-{}", i + 1)
        };
        if file.listeners.iter().any(|l| l.name == name) {
            return Err(format!(
                "--listen-tls: the config file already has a listener named `{name}`"
            ));
        }
        file.listeners.push(FileListener {
            name,
            bind: bind.clone(),
            tls: Some(tls.clone()),
            http2: None,
        });
    }
    Ok(())
}

/// The `[clusters.tls]` table the `--upstream-*` TLS flags describe, if any.
fn upstream_tls(cli: &Cli) -> Option<FileUpstreamTls> {
    cli.upstream_tls.then(|| FileUpstreamTls {
        ca: cli.upstream_ca.clone(),
        server_name: cli.upstream_server_name.clone(),
        cert: cli.upstream_cert.clone(),
        key: cli.upstream_key.clone(),
        verify: Some(!cli.upstream_tls_no_verify),
    })
}

/// Resolves `name:port` endpoint addresses (through `server.hosts_file` first, when set): the
/// endpoint keeps its name (for `Host`, TLS and later re-resolution) and every address found.
fn resolve_hostnames(file: &mut FileConfig) -> Result<(), String> {
    let hosts = file.server.hosts_file.clone().filter(|p| !p.is_empty());
    for (i, c) in file.clusters.iter_mut().enumerate() {
        for (j, e) in c.endpoints.iter_mut().enumerate() {
            if e.addr.parse::<SocketAddr>().is_ok() {
                continue;
            }
            let key = format!("clusters[{i}].endpoints[{j}].addr");
            let Some((host, port)) = e.addr.rsplit_once(':') else {
                continue;
            };
            let Ok(port) = port.parse::<u16>() else {
                return Err(format!("{key}: `{}` has no valid port", e.addr));
            };
            if host.is_empty() || host.starts_with('[') {
                continue;
            }
            let found = proxy_io::resolver::resolve(host, port, hosts.as_deref().map(Path::new))
                .map_err(|err| format!("{key}: cannot resolve `{}`: {err}", e.addr))?;
            e.host_name = Some(host.to_owned());
            e.addr = found[0].to_string();
            e.resolved = found;
        }
    }
    Ok(())
}
