use super::*;

fn resolve(toml_text: &str) -> Result<Config, ConfigError> {
    let file: FileConfig = toml::from_str(toml_text).expect("valid TOML");
    Config::resolve(&file)
}

const MINIMAL: &str = r#"
[[listeners]]
name = "public"
bind = "127.0.0.1:8080"
[[routes]]
cluster = "app"
[[clusters]]
name = "app"
endpoints = [{ addr = "127.0.0.1:9001", weight = 2 }, { addr = "127.0.0.1:9002" }]
"#;

#[test]
fn minimal_file_gets_defaults() {
    let c = resolve(MINIMAL).unwrap();
    assert_eq!(c.server.workers, 0);
    assert_eq!(c.server.io_driver, IoDriver::Auto);
    assert_eq!(c.timeouts.header, Duration::from_secs(10));
    assert_eq!(c.limits.max_header_bytes, 16384);
    assert_eq!(c.limits.max_body_bytes, None);
    assert_eq!(c.clusters[0].endpoints[0].weight, 2);
    assert_eq!(c.clusters[0].endpoints[1].id, 1);
    assert_eq!(c.router.route(Some(b"x"), b"/"), Some(0));
    assert_eq!(c.forward.via.as_deref(), Some("ringway"));
}

#[test]
fn errors_name_the_key() {
    let cases: &[(&str, &str)] = &[
        ("[timeouts]\nheader = \"10x\"\n", "timeouts.header"),
        ("[timeouts]\nidle = 0\n", "timeouts.idle"),
        (
            "[limits]\nmax_header_bytes = 10\n",
            "limits.max_header_bytes",
        ),
        ("[server]\nio_driver = \"kqueue\"\n", "server.io_driver"),
        (
            "[server]\nio_uring_entries = 1000\n",
            "server.io_uring_entries",
        ),
        ("[server]\nadmin = \"0.0.0.0:9901\"\n", "server.admin"),
        ("[server]\nadmin = \"nowhere\"\n", "server.admin"),
        ("[server]\nlog_level = \"loud\"\n", "server.log_level"),
    ];
    for (extra, key) in cases {
        let e = resolve(&format!("{extra}{MINIMAL}")).unwrap_err();
        assert_eq!(&e.key, key, "{extra}: {e}");
    }
    let bad_endpoint = MINIMAL.replace("127.0.0.1:9002", "not-an-address");
    assert_eq!(
        resolve(&bad_endpoint).unwrap_err().key,
        "clusters[0].endpoints[1].addr"
    );
    let bad_cluster = MINIMAL.replace("cluster = \"app\"", "cluster = \"nope\"");
    assert_eq!(resolve(&bad_cluster).unwrap_err().key, "routes[0].cluster");
    let bad_weight = MINIMAL.replace("weight = 2", "weight = 0");
    assert_eq!(
        resolve(&bad_weight).unwrap_err().key,
        "clusters[0].endpoints[0].weight"
    );
    let bad_bind = MINIMAL.replace("127.0.0.1:8080", "localhost");
    assert_eq!(resolve(&bad_bind).unwrap_err().key, "listeners[0].bind");
}

#[test]
fn unknown_keys_are_refused() {
    let e = toml::from_str::<FileConfig>("[server]\nworkerz = 2\n").unwrap_err();
    assert!(e.to_string().contains("workerz"), "{e}");
}

#[test]
fn admin_off_loopback_needs_a_token() {
    let text = format!("[server]\nadmin = \"0.0.0.0:9901\"\nadmin_token = \"s3cret\"\n{MINIMAL}");
    let c = resolve(&text).unwrap();
    assert_eq!(c.server.admin.unwrap().token.as_deref(), Some("s3cret"));
}

#[test]
fn empty_cluster_is_allowed() {
    let text = MINIMAL.replace(
        "endpoints = [{ addr = \"127.0.0.1:9001\", weight = 2 }, { addr = \"127.0.0.1:9002\" }]",
        "endpoints = []",
    );
    assert!(resolve(&text).unwrap().clusters[0].endpoints.is_empty());
}

#[test]
fn access_log_off_means_no_log() {
    let with = |v: &str| {
        let text = format!("[server]\naccess_log = \"{v}\"\n{MINIMAL}");
        resolve(&text).unwrap().server.access_log
    };
    assert_eq!(with("off"), None);
    assert_eq!(with(""), None);
    assert_eq!(with("./off").as_deref(), Some("./off"));
    assert_eq!(with("-").as_deref(), Some("-"));
    assert_eq!(resolve(MINIMAL).unwrap().server.access_log, None);
}

const TLS: &str = r#"
[[listeners]]
name = "https"
bind = "127.0.0.1:8443"
[listeners.tls]
client_auth = "optional"
client_ca = "clients.pem"
client_subject_header = "X-Client-Subject"
hsts = "max-age=31536000; includeSubDomains"
[[listeners.tls.certificates]]
cert = "a.pem"
key = "a.key"
[[listeners.tls.certificates]]
cert = "admin.pem"
key = "admin.key"
client_auth = "required"
[[routes]]
cluster = "app"
[[clusters]]
name = "app"
endpoints = [{ addr = "10.0.0.7:443" }]
[clusters.tls]
ca = "internal-ca.pem"
"#;

#[test]
fn tls_listener_and_upstream_resolve_with_inherited_policies() {
    let c = resolve(TLS).unwrap();
    let t = c.listeners[0].tls.as_ref().unwrap();
    assert_eq!(
        t.certificates[0].client_auth,
        ClientAuth::Optional("clients.pem".into())
    );
    // The override keeps the listener's CA bundle.
    assert_eq!(
        t.certificates[1].client_auth,
        ClientAuth::Required("clients.pem".into())
    );
    assert!(t.mixed_client_auth());
    assert!(!t.strict_sni);
    assert_eq!(t.handshake_timeout, Duration::from_secs(10));
    let u = c.clusters[0].tls.as_ref().unwrap();
    // Without a server name, the endpoint's address is what the certificate must name.
    assert_eq!(u.server_name, "10.0.0.7");
    assert!(u.verify);
    assert_eq!(u.ca.as_deref(), Some("internal-ca.pem"));
}

#[test]
fn tls_errors_name_the_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "client_auth = \"optional\"\n",
            "client_auth = \"sometimes\"\n",
            "listeners[0].tls.client_auth",
        ),
        (
            "client_ca = \"clients.pem\"\n",
            "",
            "listeners[0].tls.client_auth",
        ),
        (
            "hsts = \"max-age=31536000; includeSubDomains\"",
            "hsts = \"forever\"",
            "listeners[0].tls.hsts",
        ),
        (
            "client_subject_header = \"X-Client-Subject\"",
            "client_subject_header = \"bad name\"",
            "listeners[0].tls.client_subject_header",
        ),
        (
            "ca = \"internal-ca.pem\"",
            "cert = \"only-cert.pem\"",
            "clusters[0].tls",
        ),
    ];
    for (from, to, key) in cases {
        let e = resolve(&TLS.replacen(from, to, 1)).unwrap_err();
        assert_eq!(&e.key, key, "{from} -> {to}: {e}");
    }
    let none = TLS
        .replace("[[listeners.tls.certificates]]\ncert = \"a.pem\"\nkey = \"a.key\"\n", "")
        .replace(
            "[[listeners.tls.certificates]]\ncert = \"admin.pem\"\nkey = \"admin.key\"\nclient_auth = \"required\"\n",
            "",
        );
    assert_eq!(
        resolve(&none).unwrap_err().key,
        "listeners[0].tls.certificates"
    );
}

#[test]
fn http2_defaults_follow_http1_limits_and_listeners_can_opt_out() {
    let text = format!(
        "{MINIMAL}[limits]\nmax_header_bytes = \"32k\"\n[timeouts]\nidle = \"7s\"\n[[listeners]]\nname = \"h1\"\nbind = \"127.0.0.1:8081\"\nhttp2 = false\n"
    );
    let c = resolve(&text).unwrap();
    assert!(c.http2.enabled);
    assert_eq!(c.http2.max_header_list_size, 32 * 1024);
    assert_eq!(c.http2.idle_timeout, Duration::from_secs(7));
    assert_eq!(c.http2.max_concurrent_streams, 128);
    assert_eq!(c.http2.ping_interval, None);
    assert!(c.listeners[0].http2);
    assert!(!c.listeners[1].http2);
    let off = resolve(&format!("{MINIMAL}[http2]\nenabled = false\n")).unwrap();
    assert!(!off.listeners[0].http2);
}

#[test]
fn http2_errors_name_the_key() {
    for (body, key) in [
        ("max_concurrent_streams = 0", "http2.max_concurrent_streams"),
        (
            "initial_stream_window = \"4g\"",
            "http2.initial_stream_window",
        ),
        (
            "initial_connection_window = 100",
            "http2.initial_connection_window",
        ),
        (
            "max_header_list_size = \"2m\"",
            "http2.max_header_list_size",
        ),
        ("pings_settings_per_sec = 0", "http2.pings_settings_per_sec"),
        (
            "max_upstream_connections = 0",
            "http2.max_upstream_connections",
        ),
        ("ping_timeout = \"soon\"", "http2.ping_timeout"),
    ] {
        let e = resolve(&format!("{MINIMAL}[http2]\n{body}\n")).unwrap_err();
        assert_eq!(e.key, key, "{body}");
    }
    let file: Result<FileConfig, _> = toml::from_str("[http2]\nmax_streams = 1\n");
    assert!(file.unwrap_err().to_string().contains("max_streams"));
}

fn cluster_with(keys: &str) -> Result<Config, ConfigError> {
    resolve(&format!(
        "[[listeners]]\nname = \"l\"\nbind = \"127.0.0.1:8080\"\n[[routes]]\ncluster = \"app\"\n[[clusters]]\nname = \"app\"\nendpoints = [{{ addr = \"127.0.0.1:9001\", region = \"a\" }}, {{ addr = \"127.0.0.1:9002\", priority = 1, region = \"b\" }}]\n{keys}\n"
    ))
}

#[test]
fn balancing_keys_resolve() {
    let c = cluster_with(
        "lb = \"maglev\"\nhash_key = \"header:X-User\"\nsticky_cookie = \"rw\"\nhealth = { path = \"/hz\", interval = \"1s\", rise = 1, fall = 2, expect_status = \"200,3xx\" }\nretry = { retries = 3, on = [\"reset\", \"503\"], per_try_timeout = \"2s\" }\nmax_connections = 10\nmax_pending = 0",
    )
    .unwrap();
    let app = &c.clusters[0];
    assert_eq!(app.balance.algorithm, crate::lb::Algorithm::Maglev);
    assert_eq!(
        app.balance.hash_key,
        crate::lb::HashKey::Header("x-user".into())
    );
    assert_eq!(app.balance.sticky_cookie.as_deref(), Some("rw"));
    let health = app.health.as_ref().unwrap();
    assert_eq!((health.rise, health.fall), (1, 2));
    assert!(matches!(&health.kind, HealthKind::Http { path, .. } if path == "/hz"));
    assert_eq!(app.retry.retries, 3);
    assert!(!app.retry.on_connect_failure && app.retry.on_reset);
    assert_eq!(app.retry.on_status, [503]);
    assert_eq!(app.retry.per_try_timeout, Duration::from_secs(2));
    assert_eq!(app.circuit.max_connections, Some(10));
    assert_eq!(app.circuit.max_pending, 0);
    assert_eq!(app.endpoints[1].priority, 1);
    assert_eq!(app.regions, ["a", "b"]);
    assert_eq!(app.endpoints[1].region, Some(1));
    // Defaults: round robin, connect-failure and reset retried twice, no health check.
    let d = cluster_with("").unwrap();
    let app = &d.clusters[0];
    assert_eq!(app.balance.algorithm, crate::lb::Algorithm::RoundRobin);
    assert!(app.health.is_none());
    assert!(app.retry.on_connect_failure && app.retry.on_reset && !app.retry.on_timeout);
    assert_eq!(app.retry.retries, 2);
    assert_eq!(app.outlier.consecutive_failures, 5);
}

#[test]
fn balancing_errors_name_the_key() {
    let cases: &[(&str, &str)] = &[
        ("lb = \"fastest\"", "clusters[0].lb"),
        ("hash_key = \"path\"", "clusters[0].hash_key"),
        (
            "lb = \"maglev\"\nhash_key = \"header:\"",
            "clusters[0].hash_key",
        ),
        (
            "lb = \"maglev\"\nhash_key = \"body\"",
            "clusters[0].hash_key",
        ),
        ("sticky_cookie = \"a b\"", "clusters[0].sticky_cookie"),
        ("overprovisioning = 0.5", "clusters[0].overprovisioning"),
        (
            "health = { interval = \"0s\" }",
            "clusters[0].health.interval",
        ),
        ("health = { rise = 0 }", "clusters[0].health.rise"),
        ("health = { path = \"hz\" }", "clusters[0].health.path"),
        (
            "health = { expect_status = \"2xx\" }",
            "clusters[0].health.path",
        ),
        (
            "health = { path = \"/\", expect_status = \"7xx\" }",
            "clusters[0].health.expect_status",
        ),
        ("retry = { on = [\"always\"] }", "clusters[0].retry.on[0]"),
        ("retry = { on = [\"404\"] }", "clusters[0].retry.on[0]"),
        ("retry = { retries = 11 }", "clusters[0].retry.retries"),
        (
            "retry = { budget_percent = 101 }",
            "clusters[0].retry.budget_percent",
        ),
        ("max_connections = 0", "clusters[0].max_connections"),
        ("max_pending = 5", "clusters[0].max_pending"),
        (
            "outlier = { max_ejected_percent = 101 }",
            "clusters[0].outlier.max_ejected_percent",
        ),
        (
            "outlier = { base_ejection = \"10s\", max_ejection = \"1s\" }",
            "clusters[0].outlier.max_ejection",
        ),
        ("max_addresses = 0", "clusters[0].max_addresses"),
    ];
    for (keys, key) in cases {
        let e = cluster_with(keys).expect_err(keys);
        assert_eq!(&e.key, key, "{keys}: {e}");
    }
    let e = resolve(
        "[[listeners]]\nname = \"l\"\nbind = \"127.0.0.1:8080\"\n[[routes]]\ncluster = \"app\"\n[[clusters]]\nname = \"app\"\nendpoints = [{ addr = \"127.0.0.1:9001\", priority = 8 }]\n",
    )
    .unwrap_err();
    assert_eq!(e.key, "clusters[0].endpoints[0].priority");
}

#[test]
fn a_host_name_fills_address_slots() {
    let mut file: FileConfig = toml::from_str(
        "[[listeners]]\nname = \"l\"\nbind = \"127.0.0.1:8080\"\n[[routes]]\ncluster = \"app\"\n[[clusters]]\nname = \"app\"\nmax_addresses = 3\nendpoints = [{ addr = \"127.0.0.1:9001\" }, { addr = \"10.0.0.1:80\" }]\n",
    )
    .unwrap();
    // What the binary does after resolving `svc.local:80` to two addresses.
    let e = &mut file.clusters[0].endpoints[1];
    e.host_name = Some("svc.local".into());
    e.resolved = vec![
        "10.0.0.1:80".parse().unwrap(),
        "10.0.0.2:80".parse().unwrap(),
    ];
    let c = Config::resolve(&file).unwrap();
    let app = &c.clusters[0];
    assert_eq!(
        app.endpoints.len(),
        4,
        "one literal endpoint and three slots"
    );
    assert_eq!(c.endpoint_count(), 4);
    assert_eq!(app.dns_names[0].host, "svc.local");
    assert_eq!(app.dns_names[0].slots, 1..4);
    let present: Vec<bool> = app.endpoints.iter().map(|e| e.present).collect();
    assert_eq!(present, [true, true, true, false]);
    assert_eq!(app.endpoints[2].addr, "10.0.0.2:80".parse().unwrap());
}

#[test]
fn route_cache_and_compression_resolve_with_defaults() {
    let text = MINIMAL.replace(
        "[[routes]]\ncluster = \"app\"\n",
        "[[routes]]\ncluster = \"app\"\ncache = {}\ncompress = { encodings = [\"gzip\", \"br\"] }\n\
         [[routes]]\npath_prefix = \"/raw\"\ncluster = \"app\"\n",
    );
    let c = resolve(&text).unwrap();
    let cached = c.router.matched(None, b"/x").unwrap();
    let raw = c.router.matched(None, b"/raw/x").unwrap();
    assert_eq!((raw.cache, raw.compress), (None, None));
    let cache = &c.caches[cached.cache.unwrap()];
    assert_eq!(cache.max_bytes, 256 << 20);
    assert_eq!(cache.max_object_bytes, 8 << 20);
    assert_eq!(cache.status_header.as_deref(), Some("X-Cache"));
    let compress = &c.compressions[cached.compress.unwrap()];
    assert_eq!(
        compress.encodings,
        [
            crate::compress::Encoding::Gzip,
            crate::compress::Encoding::Brotli
        ]
    );
    assert!(compress.types.iter().any(|t| t == "text/html"));
    assert_eq!((compress.min_bytes, compress.gzip_level), (256, 5));
}

#[test]
fn route_cache_and_compression_errors_name_the_key() {
    let cases = [
        ("cache = { max_bytes = 0 }", "routes[0].cache.max_bytes"),
        (
            "cache = { max_bytes = \"1m\", max_object_bytes = \"2m\" }",
            "routes[0].cache.max_object_bytes",
        ),
        (
            "cache = { status_header = \"X Cache\" }",
            "routes[0].cache.status_header",
        ),
        (
            "compress = { encodings = [\"lzma\"] }",
            "routes[0].compress.encodings",
        ),
        (
            "compress = { encodings = [] }",
            "routes[0].compress.encodings",
        ),
        (
            "compress = { types = [\"html\"] }",
            "routes[0].compress.types",
        ),
        (
            "compress = { gzip_level = 10 }",
            "routes[0].compress.gzip_level",
        ),
        (
            "compress = { zstd_level = 22 }",
            "routes[0].compress.zstd_level",
        ),
    ];
    for (keys, key) in cases {
        let text = MINIMAL.replace(
            "[[routes]]\ncluster = \"app\"\n",
            &format!("[[routes]]\ncluster = \"app\"\n{keys}\n"),
        );
        let e = resolve(&text).unwrap_err();
        assert_eq!(e.key, key, "{keys}: {e:?}");
    }
}

#[test]
fn cache_and_compression_are_refused_on_routes_to_h2_clusters() {
    for keys in ["cache = {}", "compress = {}"] {
        let text = MINIMAL
            .replace(
                "[[routes]]\ncluster = \"app\"\n",
                &format!("[[routes]]\ncluster = \"app\"\n{keys}\n"),
            )
            .replace("name = \"app\"\n", "name = \"app\"\nprotocol = \"h2\"\n");
        let e = resolve(&text).unwrap_err();
        let field = keys.split(' ').next().unwrap();
        assert_eq!(e.key, format!("routes[0].{field}"), "{e:?}");
        assert!(e.message.contains("h2"), "{e:?}");
    }
}
