//! The one canonical form of a request path, used for routing, for every policy check and for
//! what is forwarded, so no check can pass on one spelling of a path while the upstream acts on
//! another (`/public/..%2fadmin`).
//!
//! The rules, applied in place (the canonical form is never longer than what was sent):
//! - `%XX` escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded (RFC 3986
//!   §6.2.2.2); every other escape is kept, with upper-case hex digits (§6.2.2.1).
//! - Dot-segments are removed (§5.2.4), after decoding, so `%2e%2e` counts as `..`. A `..` that
//!   would climb above the root is refused rather than clamped.
//! - Refused outright: an encoded slash or backslash (`%2F`, `%5C`: whether they separate
//!   segments differs between backends, which is exactly what a smuggled path exploits), a raw
//!   backslash, an encoded NUL, and any malformed escape.
//! - Empty segments (`//`) are kept as sent; the query string is never touched.

use super::chunked::hex_value;

/// Why a path was refused (the request gets 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// `%` not followed by two hex digits.
    BadEscape,
    /// `%2F`, `%5C` or a raw backslash.
    EncodedSeparator,
    /// `%00`.
    Nul,
    /// A `..` segment with nothing left to remove.
    AboveRoot,
}

/// Rewrites the path-and-query in `target` to its canonical form in place and returns its new
/// length. Targets that are not paths (`*`, or empty for an absolute-form target with none) are
/// left alone.
pub fn normalize(target: &mut [u8]) -> Result<usize, PathError> {
    let path_end = target
        .iter()
        .position(|&b| b == b'?')
        .unwrap_or(target.len());
    // The common case: nothing to decode, no dot-segment, no backslash.
    let path = &target[..path_end];
    if !path.iter().any(|&b| matches!(b, b'%' | b'.' | b'\\')) {
        return Ok(target.len());
    }
    if path.first() != Some(&b'/') {
        // `*`, or an absolute-form target without a path: no segments to resolve.
        return if path.contains(&b'\\') {
            Err(PathError::EncodedSeparator)
        } else {
            Ok(target.len())
        };
    }
    let decoded = decode(&mut target[..path_end])?;
    let resolved = remove_dot_segments(&mut target[..decoded])?;
    let query_len = target.len() - path_end;
    target.copy_within(path_end.., resolved);
    Ok(resolved + query_len)
}

/// Decodes unreserved escapes and upper-cases the others, in place; returns the new length.
fn decode(path: &mut [u8]) -> Result<usize, PathError> {
    let (mut r, mut w) = (0, 0);
    while r < path.len() {
        let b = path[r];
        match b {
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    path.get(r + 1).copied().and_then(hex_value),
                    path.get(r + 2).copied().and_then(hex_value),
                ) else {
                    return Err(PathError::BadEscape);
                };
                let v = hi << 4 | lo;
                match v {
                    b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                    0 => return Err(PathError::Nul),
                    _ if is_unreserved(v) => {
                        path[w] = v;
                        w += 1;
                    }
                    _ => {
                        path[w] = b'%';
                        path[w + 1] = path[r + 1].to_ascii_uppercase();
                        path[w + 2] = path[r + 2].to_ascii_uppercase();
                        w += 3;
                    }
                }
                r += 3;
            }
            b'\\' => return Err(PathError::EncodedSeparator),
            _ => {
                path[w] = b;
                w += 1;
                r += 1;
            }
        }
    }
    Ok(w)
}

/// Removes `.` and `..` segments from an absolute path in place; returns the new length.
fn remove_dot_segments(path: &mut [u8]) -> Result<usize, PathError> {
    // Invariant: path[..w] is the resolved output so far, starting with '/', and `w <= r`.
    let mut w = 0;
    let mut r = 0;
    while r < path.len() {
        // path[r] == b'/': the segment runs to the next '/' or the end.
        let start = r + 1;
        let end = path[start..]
            .iter()
            .position(|&b| b == b'/')
            .map_or(path.len(), |p| start + p);
        let last = end == path.len();
        match &path[start..end] {
            b"." => {
                if last {
                    path[w] = b'/';
                    w += 1;
                }
            }
            b".." => {
                if w == 0 {
                    return Err(PathError::AboveRoot);
                }
                // Drop the last output segment, keeping its leading '/' only at the end.
                w = path[..w].iter().rposition(|&b| b == b'/').unwrap_or(0);
                if last {
                    path[w] = b'/';
                    w += 1;
                }
            }
            _ => {
                path.copy_within(r..end, w);
                w += end - r;
            }
        }
        r = end;
    }
    if w == 0 {
        path[0] = b'/';
        w = 1;
    }
    Ok(w)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> Result<String, PathError> {
        let mut v = s.as_bytes().to_vec();
        let n = normalize(&mut v)?;
        Ok(String::from_utf8(v[..n].to_vec()).expect("ascii"))
    }

    #[test]
    fn plain_paths_are_untouched() {
        for p in [
            "/",
            "/a/b",
            "/a//b",
            "/a?x=..%2f",
            "*",
            "",
            "?q",
            "/a-b_c~d",
        ] {
            assert_eq!(norm(p).as_deref(), Ok(p), "{p}");
        }
    }

    #[test]
    fn dot_segments_are_removed() {
        let cases = [
            ("/a/./b/../c", "/a/c"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/b/../", "/a/"),
            ("/./", "/"),
            ("/.", "/"),
            ("/a/..", "/"),
            ("/a/%2e%2E/b", "/b"),
            ("/a/.%2e/b?q=/../", "/b?q=/../"),
            ("/a/...", "/a/..."),
            ("/a/..b/c", "/a/..b/c"),
            ("/a//../b", "/a/b"),
        ];
        for (p, want) in cases {
            assert_eq!(norm(p).as_deref(), Ok(want), "{p}");
        }
    }

    #[test]
    fn escapes_are_canonical() {
        assert_eq!(norm("/%7euser/%41").as_deref(), Ok("/~user/A"));
        assert_eq!(norm("/a%3ab%c3%a9").as_deref(), Ok("/a%3Ab%C3%A9"));
        assert_eq!(norm("/%25/x").as_deref(), Ok("/%25/x"));
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        assert_eq!(norm("/public/..%2fadmin"), Err(PathError::EncodedSeparator));
        assert_eq!(norm("/a%2Fb"), Err(PathError::EncodedSeparator));
        assert_eq!(norm("/a%5cb"), Err(PathError::EncodedSeparator));
        assert_eq!(norm("/a\\b"), Err(PathError::EncodedSeparator));
        assert_eq!(norm("/a%00"), Err(PathError::Nul));
        assert_eq!(norm("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(norm("/a%4"), Err(PathError::BadEscape));
        assert_eq!(norm("/../x"), Err(PathError::AboveRoot));
        assert_eq!(norm("/a/../../x"), Err(PathError::AboveRoot));
        assert_eq!(norm("/%2e%2e/x"), Err(PathError::AboveRoot));
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for p in ["/a/./b/../c?x", "/%7e/%3a/..", "/x/.%2E/y/", "/a//b/../c"] {
            let once = norm(p).expect("valid");
            assert_eq!(norm(&once).as_deref(), Ok(once.as_str()), "{p}");
        }
    }
}
