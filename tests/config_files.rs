//! Configuration files: every `*.toml` shipped in the repository's `config/` directory passes
//! `ringway --check` (with generated certificates standing in for the ones `config/tls.toml`
//! names), and a proxy run from a file routes by host and path prefix, answers 404
//! when no route matches and 503 for a cluster without endpoints.

mod common;

use common::tls::{Ca, TempDir};
use common::{repo_root, run_to_completion, temp_file, Client, Proxy, Upstream};

#[test]
fn every_shipped_config_file_passes_check() {
    let dir = repo_root().join("config");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "cannot read the shipped config directory {}: {e}",
            dir.display()
        )
    });
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no *.toml file in {}: the shipped configuration files are missing",
        dir.display()
    );
    let mut failures = Vec::new();
    for f in &files {
        let (_certs, f) = with_test_certificates(f);
        let f = &f;
        let out = run_to_completion(&["--check", "--config", f.to_str().expect("utf-8 path")]);
        if out.status.code() != Some(0) {
            failures.push(format!(
                "{}: exit {:?}: {}",
                f.display(),
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "shipped configs failing --check:\n{}",
        failures.join("\n")
    );
}

/// Where a shipped file names certificates under `/etc/ringway/certs/`, a copy of it pointing
/// at freshly made certificates of the same names (so `--check` really loads and matches them),
/// in a directory that lives as long as the returned guard; otherwise the file itself.
fn with_test_certificates(file: &std::path::Path) -> (Option<TempDir>, std::path::PathBuf) {
    const PREFIX: &str = "/etc/ringway/certs/";
    let text = std::fs::read_to_string(file).expect("read shipped config");
    if !text.contains(PREFIX) {
        return (None, file.to_owned());
    }
    let dir = TempDir::new("shipped-config");
    let ca = Ca::new("Shipped config test CA");
    // Every `NAME.pem` the file mentions gets a certificate for NAME (and `NAME.key`); a name
    // ending in `ca` gets the CA itself.
    for piece in text.split(PREFIX).skip(1) {
        let name = piece.split('"').next().unwrap_or_default();
        match name.strip_suffix(".pem") {
            Some(stem) if stem.ends_with("ca") => {
                dir.write(name, &ca.pem);
            }
            Some(stem) => {
                ca.server(stem, &[stem]).write(&dir, stem);
            }
            None => {}
        }
    }
    let copy = dir.write(
        &file.file_name().expect("file name").to_string_lossy(),
        &text.replace(PREFIX, &format!("{}/", dir.file(""))),
    );
    (Some(dir), copy.into())
}

#[test]
fn routes_from_a_file_pick_clusters_by_host_and_path() {
    let api = Upstream::start("api");
    let files = Upstream::start("static");
    let config = format!(
        r#"
[server]
workers = 2

[[clusters]]
name = "api"
endpoints = [{{ addr = "{api}" }}]

[[clusters]]
name = "static"
endpoints = [{{ addr = "{files}", weight = 3 }}]

[[clusters]]
name = "nobody"
endpoints = []

[[routes]]
host = "api.test"
cluster = "api"

[[routes]]
path_prefix = "/bytes"
cluster = "static"

[[routes]]
path_prefix = "/down"
cluster = "nobody"
"#,
        api = api.addr,
        files = files.addr
    );
    let path = temp_file("routes.toml", &config);
    let path_arg = path.to_str().expect("utf-8 path").to_owned();
    let proxy = Proxy::start(&[], &["--config", &path_arg]);
    let _ = std::fs::remove_file(&path);

    let mut c = Client::connect(proxy.addr);
    let r = c.request("GET /name HTTP/1.1\r\nHost: api.test\r\n\r\n");
    assert_eq!(
        (r.status, r.header("x-upstream")),
        (200, Some("api")),
        "{}",
        r.summary()
    );
    let r = c.request("GET /bytes/3 HTTP/1.1\r\nHost: www.test\r\n\r\n");
    assert_eq!(
        (r.status, r.header("x-upstream")),
        (200, Some("static")),
        "{}",
        r.summary()
    );
    assert_eq!(r.body, common::pattern(3), "path forwarded unchanged");

    // No route: 404 from the proxy itself; the connection stays usable.
    let r = c.request("GET /elsewhere HTTP/1.1\r\nHost: www.test\r\n\r\n");
    assert_eq!(r.status, 404, "{}", r.summary());
    assert_eq!(
        r.header("x-upstream"),
        None,
        "a 404 for no route must not come from an upstream"
    );
    // A cluster with no endpoints: 503.
    let r = c.request("GET /down/x HTTP/1.1\r\nHost: www.test\r\n\r\n");
    assert_eq!(r.status, 503, "{}", r.summary());
    let r = c.request("GET /name HTTP/1.1\r\nHost: api.test\r\n\r\n");
    assert_eq!((r.status, r.body_text().as_str()), (200, "api"));
    assert_eq!(
        api.requests() + files.requests(),
        3,
        "requests that reached an upstream"
    );
}
