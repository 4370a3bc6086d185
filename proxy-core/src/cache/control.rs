//! Cache-Control directives (RFC 9111 §5.2) read into flat `Copy` structs: the response side
//! (§5.2.2, plus RFC 5861's `stale-while-revalidate` and `stale-if-error`) and the request side
//! (§5.2.1, with `Pragma: no-cache` per §5.4).
//!
//! Parsing never allocates and never fails. Whatever is invalid or repeated is read in the
//! conservative direction: a response becomes stale, a request asks for revalidation, and no
//! stale use is granted. Unknown extension directives are ignored (§5.2.3). This file only
//! reads directives; deciding freshness or storability belongs to `policy`.

/// The largest delta-seconds value kept: RFC 9111 §1.2.2 says a cache that receives a larger
/// one (or one that overflows) uses 2^31.
pub const DELTA_SECONDS_MAX: u64 = 1 << 31;

/// Response Cache-Control directives (RFC 9111 §5.2.2), merged over all Cache-Control fields.
///
/// Invalid or repeated `max-age` / `s-maxage` read as `Some(0)` (the response is stale,
/// §4.2.1 and §1.2.2); invalid or repeated `stale-while-revalidate` / `stale-if-error` read as
/// `None` (no stale use is granted). The qualified forms `no-cache="field"` and
/// `private="field"` are treated as unqualified, the conservative reading for a shared cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponseControl {
    /// `max-age=N` (§5.2.2.1).
    pub max_age: Option<u64>,
    /// `s-maxage=N` (§5.2.2.10); for a shared cache it overrides `max-age` and forbids stale use.
    pub s_maxage: Option<u64>,
    /// `no-store` (§5.2.2.5).
    pub no_store: bool,
    /// `no-cache`, qualified or not (§5.2.2.4): storable, but always revalidated.
    pub no_cache: bool,
    /// `private`, qualified or not (§5.2.2.7): a shared cache does not store it.
    pub private: bool,
    /// `public` (§5.2.2.9).
    pub public: bool,
    /// `must-revalidate` (§5.2.2.2).
    pub must_revalidate: bool,
    /// `proxy-revalidate` (§5.2.2.8).
    pub proxy_revalidate: bool,
    /// `no-transform` (§5.2.2.6): the body must not be recompressed.
    pub no_transform: bool,
    /// `immutable` (RFC 8246).
    pub immutable: bool,
    /// `stale-while-revalidate=N` (RFC 5861 §3).
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error=N` (RFC 5861 §4).
    pub stale_if_error: Option<u64>,
}

impl ResponseControl {
    /// Parses every Cache-Control field value of a response (each may hold a comma list).
    ///
    /// Directive names are case-insensitive, arguments may be tokens or quoted strings, empty
    /// list elements are skipped. See the type's documentation for invalid and repeated values.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> ResponseControl {
        let mut control = ResponseControl::default();
        let mut seen = Seen::default();
        for value in values {
            for directive in Directives::new(value) {
                control.apply(&directive, &mut seen);
            }
        }
        control
    }

    fn apply(&mut self, d: &Directive<'_>, seen: &mut Seen) {
        let name = d.name;
        if name.eq_ignore_ascii_case(b"max-age") {
            self.max_age = Some(stale_if_bad(d, &mut seen.max_age));
        } else if name.eq_ignore_ascii_case(b"s-maxage") {
            self.s_maxage = Some(stale_if_bad(d, &mut seen.s_maxage));
        } else if name.eq_ignore_ascii_case(b"no-store") {
            self.no_store = true;
        } else if name.eq_ignore_ascii_case(b"no-cache") {
            self.no_cache = true;
        } else if name.eq_ignore_ascii_case(b"private") {
            self.private = true;
        } else if name.eq_ignore_ascii_case(b"public") {
            self.public = true;
        } else if name.eq_ignore_ascii_case(b"must-revalidate") {
            self.must_revalidate = true;
        } else if name.eq_ignore_ascii_case(b"proxy-revalidate") {
            self.proxy_revalidate = true;
        } else if name.eq_ignore_ascii_case(b"no-transform") {
            self.no_transform = true;
        } else if name.eq_ignore_ascii_case(b"immutable") {
            self.immutable = true;
        } else if name.eq_ignore_ascii_case(b"stale-while-revalidate") {
            self.stale_while_revalidate = none_if_bad(d, &mut seen.stale_while_revalidate);
        } else if name.eq_ignore_ascii_case(b"stale-if-error") {
            self.stale_if_error = none_if_bad(d, &mut seen.stale_if_error);
        }
    }
}

/// Request Cache-Control directives (RFC 9111 §5.2.1), plus `Pragma: no-cache` when no
/// Cache-Control field is present (§5.4).
///
/// Invalid or repeated values take the strictest reading: `max-age` becomes `Some(0)`,
/// `min-fresh` becomes [`DELTA_SECONDS_MAX`] (both force revalidation), `max-stale` and
/// `stale-if-error` become `None` (no stale use).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestControl {
    /// `max-age=N` (§5.2.1.1): the client accepts no response older than N seconds.
    pub max_age: Option<u64>,
    /// `max-stale[=N]` (§5.2.1.2); the bare form is `u64::MAX` (any staleness).
    pub max_stale: Option<u64>,
    /// `min-fresh=N` (§5.2.1.3).
    pub min_fresh: Option<u64>,
    /// `no-cache` (§5.2.1.4), or `Pragma: no-cache` without Cache-Control (§5.4).
    pub no_cache: bool,
    /// `no-store` (§5.2.1.5).
    pub no_store: bool,
    /// `only-if-cached` (§5.2.1.7).
    pub only_if_cached: bool,
    /// `stale-if-error=N` (RFC 5861 §4).
    pub stale_if_error: Option<u64>,
}

impl RequestControl {
    /// Parses a request's Cache-Control field values. `pragma_no_cache` says whether a Pragma
    /// field contains `no-cache`; it is honoured only when `values` is empty (no Cache-Control
    /// field at all, §5.4).
    pub fn parse<'a>(
        values: impl IntoIterator<Item = &'a [u8]>,
        pragma_no_cache: bool,
    ) -> RequestControl {
        let mut control = RequestControl::default();
        let mut seen = Seen::default();
        let mut any_field = false;
        for value in values {
            any_field = true;
            for directive in Directives::new(value) {
                control.apply(&directive, &mut seen);
            }
        }
        if !any_field && pragma_no_cache {
            control.no_cache = true;
        }
        control
    }

    fn apply(&mut self, d: &Directive<'_>, seen: &mut Seen) {
        let name = d.name;
        if name.eq_ignore_ascii_case(b"max-age") {
            self.max_age = Some(stale_if_bad(d, &mut seen.max_age));
        } else if name.eq_ignore_ascii_case(b"max-stale") {
            let first = !std::mem::replace(&mut seen.max_stale, true);
            self.max_stale = match (first, d.argument) {
                (false, _) => None,
                (true, None) => Some(u64::MAX),
                (true, Some(_)) => d.delta_seconds(),
            };
        } else if name.eq_ignore_ascii_case(b"min-fresh") {
            let first = !std::mem::replace(&mut seen.min_fresh, true);
            self.min_fresh = Some(match d.delta_seconds() {
                Some(secs) if first => secs,
                _ => DELTA_SECONDS_MAX,
            });
        } else if name.eq_ignore_ascii_case(b"no-cache") {
            self.no_cache = true;
        } else if name.eq_ignore_ascii_case(b"no-store") {
            self.no_store = true;
        } else if name.eq_ignore_ascii_case(b"only-if-cached") {
            self.only_if_cached = true;
        } else if name.eq_ignore_ascii_case(b"stale-if-error") {
            self.stale_if_error = none_if_bad(d, &mut seen.stale_if_error);
        }
    }
}

/// Which valued directives have been met already (a repeat makes the value invalid).
#[derive(Default)]
struct Seen {
    max_age: bool,
    s_maxage: bool,
    stale_while_revalidate: bool,
    stale_if_error: bool,
    max_stale: bool,
    min_fresh: bool,
}

/// The value of a directive whose invalid reading is "stale": 0 when invalid or repeated.
fn stale_if_bad(d: &Directive<'_>, seen: &mut bool) -> u64 {
    let first = !std::mem::replace(seen, true);
    match d.delta_seconds() {
        Some(secs) if first => secs,
        _ => 0,
    }
}

/// The value of a directive whose invalid reading is "absent": None when invalid or repeated.
fn none_if_bad(d: &Directive<'_>, seen: &mut bool) -> Option<u64> {
    let first = !std::mem::replace(seen, true);
    d.delta_seconds().filter(|_| first)
}

/// One `name[=argument]` element of a Cache-Control list.
struct Directive<'a> {
    name: &'a [u8],
    /// The argument without its quotes, if there was an `=`.
    argument: Option<&'a [u8]>,
    /// Junk after the argument, or an unterminated quoted string.
    malformed: bool,
}

impl Directive<'_> {
    /// The argument as delta-seconds (§1.2.2: `1*DIGIT`, quoted form accepted per §5.2),
    /// saturated at [`DELTA_SECONDS_MAX`]; None if absent or invalid.
    fn delta_seconds(&self) -> Option<u64> {
        let digits = self.argument.filter(|_| !self.malformed)?;
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut secs: u64 = 0;
        for &b in digits {
            secs = secs.saturating_mul(10).saturating_add(u64::from(b - b'0'));
            if secs >= DELTA_SECONDS_MAX {
                return Some(DELTA_SECONDS_MAX);
            }
        }
        Some(secs)
    }
}

/// Iterates over the directives of one field value, commas inside quoted strings respected.
struct Directives<'a> {
    rest: &'a [u8],
}

impl<'a> Directives<'a> {
    fn new(value: &'a [u8]) -> Self {
        Directives { rest: value }
    }
}

impl<'a> Iterator for Directives<'a> {
    type Item = Directive<'a>;

    fn next(&mut self) -> Option<Directive<'a>> {
        loop {
            let start = self.rest.iter().position(|&b| !is_ows(b) && b != b',')?;
            let s = &self.rest[start..];
            let name_len = s
                .iter()
                .position(|&b| matches!(b, b',' | b'=' | b' ' | b'\t' | b'"'))
                .unwrap_or(s.len());
            let name = &s[..name_len];
            let mut at = skip_ows(s, name_len);
            let mut argument = None;
            let mut malformed = false;
            if s.get(at) == Some(&b'=') {
                at = skip_ows(s, at + 1);
                if s.get(at) == Some(&b'"') {
                    let (inner, end, closed) = quoted(s, at + 1);
                    argument = Some(inner);
                    malformed = !closed;
                    at = end;
                } else {
                    let len = s[at..]
                        .iter()
                        .position(|&b| matches!(b, b',' | b' ' | b'\t'))
                        .unwrap_or(s.len() - at);
                    argument = Some(&s[at..at + len]);
                    at += len;
                }
            }
            // Anything other than whitespace before the next comma is junk.
            let (junk, next) = to_next_comma(s, at);
            self.rest = &s[next..];
            if name.is_empty() {
                continue;
            }
            return Some(Directive {
                name,
                argument,
                malformed: malformed || junk,
            });
        }
    }
}

/// Scans a quoted string whose opening quote is just before `from`: its inner bytes, the index
/// after the closing quote, and whether it was closed.
fn quoted(s: &[u8], from: usize) -> (&[u8], usize, bool) {
    let mut i = from;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return (&s[from..i], i + 1, true),
            _ => i += 1,
        }
    }
    (&s[from..], s.len(), false)
}

/// From `at`, finds the next comma outside quotes: whether non-whitespace came first, and the
/// index just after the comma (or the end).
fn to_next_comma(s: &[u8], mut at: usize) -> (bool, usize) {
    let mut junk = false;
    while at < s.len() {
        match s[at] {
            b',' => return (junk, at + 1),
            b'"' => {
                junk = true;
                at = quoted(s, at + 1).1;
            }
            b if is_ows(b) => at += 1,
            _ => {
                junk = true;
                at += 1;
            }
        }
    }
    (junk, at)
}

fn skip_ows(s: &[u8], mut at: usize) -> usize {
    while s.get(at).is_some_and(|&b| is_ows(b)) {
        at += 1;
    }
    at
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

#[cfg(test)]
mod tests;
