//! Loading the configuration: read the TOML file, apply command-line overrides, resolve host
//! names, and hand the result to `proxy-core` to validate. Every failure names the file, key or
//! flag at fault.

use crate::cli::Cli;
use proxy_core::config::{
    Config, FileCluster, FileConfig, FileEndpoint, FileListener, FileRoute, Quantity,
};
use std::net::{SocketAddr, ToSocketAddrs};
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

    let mut listens = cli.listen.clone();
    if listens.is_empty() && cli.config.is_none() {
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
        file.listeners.push(FileListener { name, bind });
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
                weight: None,
            })
            .collect();
        file.clusters.push(FileCluster {
            name: "default".into(),
            endpoints,
        });
        // A catch-all route: the least specific of all, so file routes still win.
        file.routes.push(FileRoute {
            host: None,
            path_prefix: None,
            cluster: "default".into(),
        });
    }
    Ok(())
}

/// Replaces `name:port` endpoint addresses by the first address the name resolves to.
fn resolve_hostnames(file: &mut FileConfig) -> Result<(), String> {
    for (i, c) in file.clusters.iter_mut().enumerate() {
        for (j, e) in c.endpoints.iter_mut().enumerate() {
            if e.addr.parse::<SocketAddr>().is_ok() || !e.addr.contains(':') {
                continue;
            }
            let resolved = e
                .addr
                .to_socket_addrs()
                .map_err(|err| {
                    format!(
                        "clusters[{i}].endpoints[{j}].addr: cannot resolve `{}`: {err}",
                        e.addr
                    )
                })?
                .next()
                .ok_or_else(|| {
                    format!(
                        "clusters[{i}].endpoints[{j}].addr: `{}` resolves to nothing",
                        e.addr
                    )
                })?;
            e.addr = resolved.to_string();
        }
    }
    Ok(())
}
