//! HTTP-date cases: the RFC 9110 §5.6.7 examples, calendar edges checked against GNU `date`,
//! malformed values, and write/parse round trips.

use super::*;

/// Sun, 06 Nov 1994 08:49:37 GMT, the instant of every RFC 9110 §5.6.7 example.
const RFC_EXAMPLE: u64 = 784_111_777;

fn written(secs: u64) -> String {
    let mut out = Vec::new();
    write_http_date(secs, &mut out);
    assert_eq!(out.len(), 29, "IMF-fixdate is always 29 bytes");
    String::from_utf8(out).unwrap()
}

#[test]
fn rfc_9110_examples_in_all_three_forms() {
    let cases: &[&str] = &[
        "Sun, 06 Nov 1994 08:49:37 GMT",  // IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT", // obsolete RFC 850 format
        "Sun Nov  6 08:49:37 1994",       // ANSI C's asctime() format
        "  Sun, 06 Nov 1994 08:49:37 GMT\t",
    ];
    for v in cases {
        assert_eq!(parse_http_date(v.as_bytes()), Some(RFC_EXAMPLE), "{v:?}");
    }
}

#[test]
fn calendar_edges() {
    // Expected values from `date -u -d ... +%s`.
    let cases: &[(&str, Option<u64>)] = &[
        ("Thu, 01 Jan 1970 00:00:00 GMT", Some(0)),
        ("Tue, 29 Feb 2000 00:00:00 GMT", Some(951_782_400)), // 400-year leap
        ("Thu, 29 Feb 2024 23:59:59 GMT", Some(1_709_251_199)), // 4-year leap
        ("Mon, 01 Mar 2100 00:00:00 GMT", Some(4_107_542_400)), // after a non-leap century
        ("Tue, 31 Dec 2024 12:00:00 GMT", Some(1_735_646_400)),
        ("Tue, 19 Jan 2038 03:14:08 GMT", Some(2_147_483_648)), // past i32
        ("Fri, 31 Dec 9999 23:59:59 GMT", Some(253_402_300_799)),
        ("Tuesday, 31-Dec-69 00:00:00 GMT", Some(3_155_673_600)), // 69 -> 2069
        ("Thursday, 01-Jan-70 00:00:00 GMT", Some(0)),            // 70 -> 1970
        ("Thu Jan  1 00:00:00 1970", Some(0)),
        ("Thu Feb 29 23:59:59 2024", Some(1_709_251_199)),
        // A leap second is in the grammar (second = 2DIGIT, 00-60).
        ("Tue, 31 Dec 2024 11:59:60 GMT", Some(1_735_646_400)),
        // Not a leap year.
        ("Wed, 29 Feb 2023 00:00:00 GMT", None),
        ("Mon, 29 Feb 2100 00:00:00 GMT", None),
        ("Thu, 31 Apr 2024 00:00:00 GMT", None),
        ("Thu, 00 Jan 2024 00:00:00 GMT", None),
        // Before the epoch.
        ("Sun, 31 Dec 1969 23:59:59 GMT", None),
    ];
    for (v, expected) in cases {
        assert_eq!(parse_http_date(v.as_bytes()), *expected, "{v:?}");
    }
}

#[test]
fn malformed_dates_are_rejected() {
    let cases: &[&str] = &[
        "",
        "Sun",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 gmt",
        "sun, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 nov 1994 08:49:37 GMT",
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 94 08:49:37 GMT",
        "Sun, 06 Nov 1994 8:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 06 Nov 1994 08-49-37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT extra",
        "Sun, 32 Nov 1994 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun,06 Nov 1994 08:49:37 GMT ",
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sundae, 06-Nov-94 08:49:37 GMT",
        "Sunday, 06 Nov 94 08:49:37 GMT",
        "Sun Nov 6 08:49:37 1994",
        "Sun Nov  6 08:49:37 94",
        "Sun Nov 6  08:49:37 1994",
        "-1",
        "784111777",
        "Sun, +6 Nov 1994 08:49:37 GMT",
    ];
    for v in cases {
        assert_eq!(parse_http_date(v.as_bytes()), None, "{v:?}");
    }
}

#[test]
fn writes_imf_fixdate() {
    assert_eq!(written(RFC_EXAMPLE), "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_eq!(written(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(written(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    assert_eq!(written(1_709_251_199), "Thu, 29 Feb 2024 23:59:59 GMT");
    assert_eq!(written(4_107_542_400), "Mon, 01 Mar 2100 00:00:00 GMT");
    // Clamped to the last four-digit year.
    assert_eq!(written(u64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
    // Appends, does not overwrite.
    let mut out = b"Date: ".to_vec();
    write_http_date(0, &mut out);
    assert_eq!(out, b"Date: Thu, 01 Jan 1970 00:00:00 GMT");
}

#[test]
fn write_then_parse_round_trips() {
    // Every day boundary (and a second before and after) over 1970..2110, plus odd instants.
    let mut secs = 0u64;
    while secs < 4_418_000_000 {
        for s in [secs, secs + 1, secs + DAY - 1, secs + 12_345] {
            let text = written(s);
            assert_eq!(parse_http_date(text.as_bytes()), Some(s), "{text}");
        }
        secs += DAY;
    }
    let last = written(LAST_WRITABLE);
    assert_eq!(parse_http_date(last.as_bytes()), Some(LAST_WRITABLE));
}
