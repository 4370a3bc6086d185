//! Request routing: host (exact or `*.suffix`) and path prefix, most specific match first.
//!
//! Precedence, as an nginx or HAProxy operator would expect: an exact host beats a wildcard
//! host, a longer wildcard beats a shorter one, any host beats no host; within the same host
//! rule the longest path prefix wins; among equals, the route written first wins. Path prefixes
//! match bytes as nginx `location /prefix` does (`/api` also matches `/apix`; write `/api/` for a
//! segment boundary).

/// Index of a cluster in the configuration's cluster list.
pub type ClusterId = usize;

/// How a route matches the request's host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Any host.
    Any,
    /// Exactly this host name (stored lowercase, compared case-insensitively).
    Exact(String),
    /// Any name ending in `.suffix` (stored lowercase, with the leading dot): `*.example.com`
    /// matches `a.example.com` and `a.b.example.com`, not `example.com`.
    Suffix(String),
}

impl HostMatch {
    /// Parses a route's `host` value: `name`, `*.suffix`, or absent for any host.
    pub fn parse(host: Option<&str>) -> Result<HostMatch, &'static str> {
        let Some(host) = host else {
            return Ok(HostMatch::Any);
        };
        let lower = host.to_ascii_lowercase();
        let valid = |s: &str| {
            !s.is_empty()
                && s.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']')
                })
        };
        if let Some(suffix) = lower.strip_prefix("*.") {
            if !valid(suffix) {
                return Err("a wildcard host must look like *.example.com");
            }
            return Ok(HostMatch::Suffix(format!(".{suffix}")));
        }
        if !valid(&lower) {
            return Err("a host must be a name or IP literal, optionally *.suffix");
        }
        Ok(HostMatch::Exact(lower))
    }

    fn matches(&self, host: Option<&[u8]>) -> bool {
        match self {
            HostMatch::Any => true,
            HostMatch::Exact(h) => host.is_some_and(|v| v.eq_ignore_ascii_case(h.as_bytes())),
            HostMatch::Suffix(s) => host.is_some_and(|v| {
                v.len() > s.len() && v[v.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
            }),
        }
    }

    /// Sort key: higher is more specific.
    fn rank(&self) -> (u8, usize) {
        match self {
            HostMatch::Any => (0, 0),
            HostMatch::Suffix(s) => (1, s.len()),
            HostMatch::Exact(h) => (2, h.len()),
        }
    }
}

/// One routing rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The host rule.
    pub host: HostMatch,
    /// The path prefix; `/` matches every path.
    pub path_prefix: String,
    /// The cluster requests matching this route go to.
    pub cluster: ClusterId,
    /// Index of this route's cache settings in `Config::caches`, if it caches.
    pub cache: Option<usize>,
    /// Index of this route's compression settings in `Config::compressions`, if it compresses.
    pub compress: Option<usize>,
}

/// The compiled route table, ordered most specific first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    /// Builds a router; the order of `routes` breaks ties between equally specific routes.
    pub fn new(mut routes: Vec<Route>) -> Router {
        // A stable sort keeps the configured order among equals.
        routes.sort_by(|a, b| {
            (b.host.rank(), b.path_prefix.len()).cmp(&(a.host.rank(), a.path_prefix.len()))
        });
        Router { routes }
    }

    /// The cluster for a request to `host` (without port) and `path`, if any route matches.
    pub fn route(&self, host: Option<&[u8]>, path: &[u8]) -> Option<ClusterId> {
        self.matched(host, path).map(|r| r.cluster)
    }

    /// The route a request to `host` (without port) and `path` takes, if any.
    pub fn matched(&self, host: Option<&[u8]>, path: &[u8]) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| path.starts_with(r.path_prefix.as_bytes()) && r.host.matches(host))
    }

    /// The routes, most specific first.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: Option<&str>, prefix: &str, cluster: ClusterId) -> Route {
        Route {
            host: HostMatch::parse(host).unwrap(),
            path_prefix: prefix.into(),
            cluster,
            cache: None,
            compress: None,
        }
    }

    #[test]
    fn most_specific_route_wins() {
        let r = Router::new(vec![
            route(None, "/", 0),
            route(None, "/api", 1),
            route(Some("*.example.com"), "/", 2),
            route(Some("api.example.com"), "/", 3),
            route(Some("api.example.com"), "/v2", 4),
            route(Some("*.b.example.com"), "/", 5),
        ]);
        assert_eq!(r.route(Some(b"other.org"), b"/x"), Some(0));
        assert_eq!(r.route(None, b"/api/users"), Some(1));
        assert_eq!(r.route(Some(b"www.example.com"), b"/api"), Some(2));
        assert_eq!(r.route(Some(b"API.Example.COM"), b"/"), Some(3));
        assert_eq!(r.route(Some(b"api.example.com"), b"/v2/x"), Some(4));
        assert_eq!(r.route(Some(b"a.b.example.com"), b"/"), Some(5));
        assert_eq!(
            r.route(Some(b"example.com"), b"/api"),
            Some(1),
            "wildcard excludes the apex"
        );
    }

    #[test]
    fn no_match_without_catch_all() {
        let r = Router::new(vec![route(Some("a.test"), "/api/", 0)]);
        assert_eq!(r.route(Some(b"a.test"), b"/other"), None);
        assert_eq!(r.route(Some(b"b.test"), b"/api/x"), None);
        assert_eq!(r.route(None, b"/api/x"), None);
    }

    #[test]
    fn equal_routes_keep_configured_order() {
        let r = Router::new(vec![
            route(None, "/a", 7),
            route(None, "/b", 8),
            route(None, "/a", 9),
        ]);
        assert_eq!(r.route(None, b"/a"), Some(7));
    }

    #[test]
    fn bad_hosts_are_rejected() {
        assert!(HostMatch::parse(Some("*.")).is_err());
        assert!(HostMatch::parse(Some("a b")).is_err());
        assert!(HostMatch::parse(Some("")).is_err());
    }
}
