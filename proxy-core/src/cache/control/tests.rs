//! Cache-Control parsing cases, each tied to the RFC 9111 (or RFC 5861) text it checks.

use super::*;

fn response(values: &[&str]) -> ResponseControl {
    ResponseControl::parse(values.iter().map(|v| v.as_bytes()))
}

fn request(values: &[&str], pragma: bool) -> RequestControl {
    RequestControl::parse(values.iter().map(|v| v.as_bytes()), pragma)
}

#[test]
fn response_delta_seconds_table() {
    // (field values, expected max_age, expected s_maxage)
    let cases: &[(&[&str], Option<u64>, Option<u64>)] = &[
        (&[], None, None),
        (&["max-age=60"], Some(60), None),
        // §5.2: names are case-insensitive.
        (&["MAX-AGE=60, S-MaxAge=30"], Some(60), Some(30)),
        // §5.2: the quoted-string form is accepted.
        (&["max-age=\"60\""], Some(60), None),
        // Whitespace around commas and (leniently) around `=`.
        (&["  max-age = 60 ,s-maxage=5  "], Some(60), Some(5)),
        // §4.2.1: an invalid value makes the response stale.
        (&["max-age=abc"], Some(0), None),
        (&["max-age=-1"], Some(0), None),
        (&["max-age="], Some(0), None),
        (&["max-age"], Some(0), None),
        (&["max-age=1.5"], Some(0), None),
        (&["max-age=60 junk"], Some(0), None),
        (&["max-age=\"60"], Some(0), None),
        // §4.2.1: several max-age directives: the response is stale.
        (&["max-age=60, max-age=60"], Some(0), None),
        (&["max-age=60", "max-age=120"], Some(0), None),
        (&["max-age=60, max-age=120, max-age=30"], Some(0), None),
        (&["s-maxage=1, s-maxage=2"], None, Some(0)),
        // §1.2.2: larger than 2^31 (or overflowing) saturates at 2^31.
        (&["max-age=2147483648"], Some(DELTA_SECONDS_MAX), None),
        (&["max-age=2147483647"], Some(2_147_483_647), None),
        (
            &["max-age=99999999999999999999999999"],
            Some(DELTA_SECONDS_MAX),
            None,
        ),
        (&["max-age=0"], Some(0), None),
        (&["max-age=007"], Some(7), None),
        // Fields merge: each field is a list.
        (&["public", "max-age=10"], Some(10), None),
    ];
    for (values, max_age, s_maxage) in cases {
        let c = response(values);
        assert_eq!(c.max_age, *max_age, "max-age of {values:?}");
        assert_eq!(c.s_maxage, *s_maxage, "s-maxage of {values:?}");
    }
}

#[test]
fn response_flags_table() {
    let c = response(&[
        "No-Store, PRIVATE, public",
        "must-revalidate,proxy-revalidate",
    ]);
    assert!(c.no_store && c.private && c.public && c.must_revalidate && c.proxy_revalidate);
    assert!(!c.no_cache && !c.no_transform && !c.immutable);

    let c = response(&["no-transform, immutable, no-cache"]);
    assert!(c.no_transform && c.immutable && c.no_cache);
    assert!(!c.no_store && !c.private);

    // §5.2.2.4 / §5.2.2.7: qualified forms, treated as unqualified; a comma inside the quoted
    // field list does not split the directive.
    let c = response(&["no-cache=\"set-cookie, x-a\", max-age=5"]);
    assert!(c.no_cache);
    assert_eq!(c.max_age, Some(5));
    let c = response(&["private=\"x-user\""]);
    assert!(c.private);
    // §5.2.3: unknown extensions are ignored, even with quoted arguments holding commas.
    let c = response(&["community=\"UCI, x\", foo=bar, max-age=9, x-ext"]);
    assert_eq!(
        c,
        ResponseControl {
            max_age: Some(9),
            ..ResponseControl::default()
        }
    );
    // Empty list elements (RFC 9110 §5.6.1) and empty fields are skipped.
    assert_eq!(response(&[",,", ""]), ResponseControl::default());
    // A directive name only matches whole: `no-store-x` is an extension.
    assert!(!response(&["no-store-x, publicly"]).no_store);
    assert!(!response(&["publicly"]).public);
}

#[test]
fn response_stale_extensions_table() {
    // RFC 5861: (values, swr, sie); invalid or repeated grants nothing.
    let cases: &[(&str, Option<u64>, Option<u64>)] = &[
        ("stale-while-revalidate=30", Some(30), None),
        ("stale-if-error=600", None, Some(600)),
        (
            "max-age=1, stale-while-revalidate=\"5\", stale-if-error=7",
            Some(5),
            Some(7),
        ),
        ("stale-while-revalidate", None, None),
        ("stale-while-revalidate=x", None, None),
        ("stale-if-error=1, stale-if-error=2", None, None),
        (
            "stale-if-error=1, stale-if-error=2, stale-if-error=3",
            None,
            None,
        ),
    ];
    for (value, swr, sie) in cases {
        let c = response(&[value]);
        assert_eq!(c.stale_while_revalidate, *swr, "{value}");
        assert_eq!(c.stale_if_error, *sie, "{value}");
    }
}

#[test]
fn request_table() {
    let none = RequestControl::default();
    let cases: &[(&[&str], bool, RequestControl)] = &[
        (&[], false, none),
        // §5.4: Pragma: no-cache counts only without any Cache-Control field.
        (
            &[],
            true,
            RequestControl {
                no_cache: true,
                ..none
            },
        ),
        (
            &["max-age=5"],
            true,
            RequestControl {
                max_age: Some(5),
                ..none
            },
        ),
        (&[""], true, none),
        (
            &["No-Cache"],
            false,
            RequestControl {
                no_cache: true,
                ..none
            },
        ),
        (
            &["no-store, only-if-cached"],
            false,
            RequestControl {
                no_store: true,
                only_if_cached: true,
                ..none
            },
        ),
        // §5.2.1.2: bare max-stale accepts any staleness.
        (
            &["max-stale"],
            false,
            RequestControl {
                max_stale: Some(u64::MAX),
                ..none
            },
        ),
        (
            &["max-stale=30"],
            false,
            RequestControl {
                max_stale: Some(30),
                ..none
            },
        ),
        (&["max-stale=x"], false, none),
        (&["max-stale=1, max-stale"], false, none),
        (
            &["min-fresh=20"],
            false,
            RequestControl {
                min_fresh: Some(20),
                ..none
            },
        ),
        (
            &["min-fresh=abc"],
            false,
            RequestControl {
                min_fresh: Some(DELTA_SECONDS_MAX),
                ..none
            },
        ),
        (
            &["max-age=0"],
            false,
            RequestControl {
                max_age: Some(0),
                ..none
            },
        ),
        (
            &["max-age=oops"],
            false,
            RequestControl {
                max_age: Some(0),
                ..none
            },
        ),
        (
            &["max-age=9", "max-age=9"],
            false,
            RequestControl {
                max_age: Some(0),
                ..none
            },
        ),
        (
            &["stale-if-error=60"],
            false,
            RequestControl {
                stale_if_error: Some(60),
                ..none
            },
        ),
        (&["stale-if-error=-1"], false, none),
        (&["foo, bar=\"a,b\""], false, none),
    ];
    for (values, pragma, expected) in cases {
        assert_eq!(
            request(values, *pragma),
            *expected,
            "{values:?} pragma={pragma}"
        );
    }
}
