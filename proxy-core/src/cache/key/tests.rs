//! Cache key cases: primary keys (RFC 9111 §2: scheme, host and target all count), Vary name
//! lists (§4.1) and secondary keys (normalisation, absent versus empty).

use super::*;

/// Vary field values and the names (or error) they give.
type VaryCase = (
    &'static [&'static str],
    Result<&'static [&'static str], VaryStar>,
);
/// A request's fields as `(lowercase name, value)` lines.
type Fields = &'static [(&'static str, &'static str)];
/// Vary names and two requests to compare under them.
type KeyPair = (&'static [&'static str], Fields, Fields);

fn primary(scheme: &str, host: &str, target: &str) -> Vec<u8> {
    let mut out = Vec::new();
    primary_key(
        scheme.as_bytes(),
        host.as_bytes(),
        target.as_bytes(),
        &mut out,
    );
    out
}

/// The secondary key for `names` of a request whose fields are `(lowercase name, value)` lines.
fn secondary(names: &[&str], request: &[(&str, &str)]) -> Vec<u8> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut out = Vec::new();
    secondary_key(
        &names,
        |name| {
            request
                .iter()
                .filter(move |(n, _)| *n == name)
                .map(|(_, v)| v.as_bytes())
        },
        &mut out,
    );
    out
}

fn vary(values: &[&str]) -> Result<Vec<String>, VaryStar> {
    vary_names(values.iter().map(|v| v.as_bytes()))
}

#[test]
fn primary_key_layout() {
    assert_eq!(
        primary("https", "example.com", "/a?b"),
        b"https\0example.com\0/a?b"
    );
    // Scheme and host are case-insensitive; the port is kept as given.
    assert_eq!(
        primary("HTTPS", "Example.COM:8443", "/A"),
        b"https\0example.com:8443\0/A"
    );
}

#[test]
fn primary_keys_that_must_differ() {
    let keys = [
        primary("https", "example.com", "/a?b"),
        primary("http", "example.com", "/a?b"),      // scheme
        primary("https", "example.org", "/a?b"),     // host
        primary("https", "example.com:443", "/a?b"), // port kept
        primary("https", "example.com", "/a?c"),     // query
        primary("https", "example.com", "/a"),
        primary("https", "example.com", "/A?b"), // path case
        // Separator tricks: moving bytes between fields must not collide.
        primary("https", "example.com\0/a", "?b"),
        primary("https\0example.com", "", "/a?b"),
        primary("https", "example.com\u{1}", "/a?b"),
        primary("https", "example.com\u{1}\u{1}", "/a?b"),
    ];
    for (i, a) in keys.iter().enumerate() {
        for b in &keys[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn vary_names_table() {
    let cases: &[VaryCase] = &[
        (&[], Ok(&[])),
        (&["Accept-Encoding"], Ok(&["accept-encoding"])),
        (
            &["Accept-Encoding, User-Agent", "accept-encoding ,  ,Accept"],
            Ok(&["accept", "accept-encoding", "user-agent"]),
        ),
        (&[" , "], Ok(&[])),
        // §4.1: "*" always fails to match.
        (&["*"], Err(VaryStar)),
        (&["Accept", "Origin, * "], Err(VaryStar)),
    ];
    for (values, expected) in cases {
        let expected = expected.map(|names| names.iter().map(|n| n.to_string()).collect());
        assert_eq!(vary(values), expected, "{values:?}");
    }
}

#[test]
fn secondary_key_normalisation_table() {
    // Pairs of requests that must give the same key for the names listed (§4.1 allows
    // normalising whitespace and combining field lines).
    let same: &[KeyPair] = &[
        (
            &["accept"],
            &[("accept", "a/b,c/d")],
            &[("accept", "  a/b ,\tc/d ")],
        ),
        (
            &["accept"],
            &[("accept", "a/b, c/d")],
            &[("accept", "a/b"), ("accept", "c/d")],
        ),
        (
            &["accept"],
            &[("accept", "a/b, c/d")],
            &[("accept", "a/b,, ,c/d")],
        ),
        (
            &["user-agent"],
            &[("user-agent", "X  Y\t Z")],
            &[("user-agent", "X Y Z")],
        ),
        (
            &["accept-encoding"],
            &[("accept-encoding", "GZIP, Br")],
            &[("accept-encoding", "gzip,br")],
        ),
        (&["x-a"], &[("x-a", "")], &[("x-a", " , ")]),
    ];
    for (names, a, b) in same {
        assert_eq!(secondary(names, a), secondary(names, b), "{a:?} vs {b:?}");
    }
    // Pairs that must differ.
    let different: &[KeyPair] = &[
        // Absent is not empty.
        (&["x-a"], &[], &[("x-a", "")]),
        (&["x-a"], &[], &[("x-a", " ")]),
        // Case is kept outside accept-encoding.
        (
            &["user-agent"],
            &[("user-agent", "Bot")],
            &[("user-agent", "bot")],
        ),
        // Order of list elements is kept.
        (
            &["accept-encoding"],
            &[("accept-encoding", "gzip, br")],
            &[("accept-encoding", "br, gzip")],
        ),
        // Spaces inside a token are not the same as a comma.
        (&["accept"], &[("accept", "a b")], &[("accept", "a,b")]),
        (&["accept"], &[("accept", "ab")], &[("accept", "a b")]),
        // Quoted strings are kept verbatim.
        (&["x-a"], &[("x-a", "\"a ,  b\"")], &[("x-a", "\"a, b\"")]),
        // Values do not leak between names.
        (
            &["x-a", "x-b"],
            &[("x-a", "1, 2")],
            &[("x-a", "1"), ("x-b", "2")],
        ),
        (&["x-a", "x-b"], &[("x-a", "1")], &[("x-b", "1")]),
        // Escaping keeps NUL inside a value from forging a separator.
        (
            &["x-a", "x-b"],
            &[("x-a", "1\0x-b\0=2")],
            &[("x-a", "1"), ("x-b", "2")],
        ),
    ];
    for (names, a, b) in different {
        assert_ne!(secondary(names, a), secondary(names, b), "{a:?} vs {b:?}");
    }
}

#[test]
fn secondary_key_layout() {
    assert_eq!(
        secondary(
            &["accept-encoding", "x-a", "x-b"],
            &[
                ("accept-encoding", " GZip ,br "),
                ("x-b", ""),
                ("x-b", "q=\"A  B\"  , c")
            ]
        ),
        b"accept-encoding\0=gzip, br\0x-a\0-x-b\0=q=\"A  B\", c\0"
    );
    // No names: an empty key.
    assert_eq!(secondary(&[], &[("accept", "x")]), b"");
}
