//! RFC 9111 shared-cache cases: storability (§3, §3.5), freshness (§4.2.1, §4.2.2), age
//! (§4.2.3), serving decisions (§4.2, §5.2, RFC 5861), invalidation (§4.4) and 304 refresh
//! (§4.3.4).

use super::*;

const T: u64 = 1_000_000;

/// (request, response, set_cookie, vary_star, expected)
type StorableCase = (
    RequestFacts,
    ResponseMeta,
    bool,
    bool,
    Result<(), NotStorable>,
);

/// A 200 response with `Cache-Control: max-age=100`, requested, received and dated at `T`.
fn meta() -> ResponseMeta {
    ResponseMeta {
        status: 200,
        control: ResponseControl {
            max_age: Some(100),
            ..ResponseControl::default()
        },
        date: Some(T),
        expires: None,
        last_modified: None,
        age: 0,
        request_time: T,
        response_time: T,
    }
}

fn cc(values: &str) -> ResponseControl {
    ResponseControl::parse([values.as_bytes()])
}

fn rq(values: &str) -> RequestControl {
    RequestControl::parse([values.as_bytes()], false)
}

fn get() -> RequestFacts {
    RequestFacts {
        method: Method::Get,
        control: RequestControl::default(),
        authorization: false,
    }
}

#[test]
fn storable_table() {
    use NotStorable as N;
    let with = |status: u16, control: &str| ResponseMeta {
        status,
        control: cc(control),
        ..meta()
    };
    let auth = RequestFacts {
        authorization: true,
        ..get()
    };
    let no_store_req = RequestFacts {
        control: rq("no-store"),
        ..get()
    };
    let expires_only = ResponseMeta {
        status: 302,
        control: ResponseControl::default(),
        expires: Some(T + 60),
        ..meta()
    };
    // (request, response, set_cookie, vary_star, expected)
    let cases: &[StorableCase] = &[
        (get(), meta(), false, false, Ok(())),
        (
            RequestFacts {
                method: Method::Head,
                ..get()
            },
            meta(),
            false,
            false,
            Ok(()),
        ),
        // §3: the method must be understood and cacheable; Ringway stores GET and HEAD only.
        (
            RequestFacts {
                method: Method::Post,
                ..get()
            },
            meta(),
            false,
            false,
            Err(N::Method),
        ),
        (
            RequestFacts {
                method: Method::Options,
                ..get()
            },
            meta(),
            false,
            false,
            Err(N::Method),
        ),
        (
            RequestFacts {
                method: Method::Other,
                ..get()
            },
            meta(),
            false,
            false,
            Err(N::Method),
        ),
        // Partial content is not stored.
        (
            get(),
            with(206, "max-age=100"),
            false,
            false,
            Err(N::Partial),
        ),
        // Statuses not understood, even with explicit freshness.
        (
            get(),
            with(500, "max-age=100"),
            false,
            false,
            Err(N::Status),
        ),
        (
            get(),
            with(201, "max-age=100"),
            false,
            false,
            Err(N::Status),
        ),
        (
            get(),
            with(304, "max-age=100"),
            false,
            false,
            Err(N::Status),
        ),
        (
            get(),
            with(403, "max-age=100"),
            false,
            false,
            Err(N::Status),
        ),
        (
            get(),
            with(101, "max-age=100"),
            false,
            false,
            Err(N::Status),
        ),
        // Storable only with explicit freshness (or public): 302, 303, 307.
        (get(), with(302, "max-age=100"), false, false, Ok(())),
        (get(), with(307, "s-maxage=5"), false, false, Ok(())),
        (get(), expires_only, false, false, Ok(())),
        (get(), with(303, "public"), false, false, Ok(())),
        (get(), with(302, ""), false, false, Err(N::NoFreshness)),
        (
            get(),
            with(307, "no-cache"),
            false,
            false,
            Err(N::NoFreshness),
        ),
        (
            get(),
            with(302, "must-revalidate"),
            false,
            false,
            Err(N::NoFreshness),
        ),
        // Heuristically cacheable statuses need no explicit freshness (RFC 9110 §15.1).
        (get(), with(200, ""), false, false, Ok(())),
        (get(), with(404, ""), false, false, Ok(())),
        (get(), with(301, ""), false, false, Ok(())),
        (get(), with(501, ""), false, false, Ok(())),
        // §5.2.2.4: no-cache is storable (always revalidated).
        (get(), with(200, "no-cache"), false, false, Ok(())),
        // §5.2.1.5, §5.2.2.5, §5.2.2.7.
        (no_store_req, meta(), false, false, Err(N::RequestNoStore)),
        (
            get(),
            with(200, "max-age=9, no-store"),
            false,
            false,
            Err(N::NoStore),
        ),
        (
            get(),
            with(200, "private, max-age=9"),
            false,
            false,
            Err(N::Private),
        ),
        (
            get(),
            with(200, "private=\"x-user\", max-age=9"),
            false,
            false,
            Err(N::Private),
        ),
        (
            get(),
            with(200, "public, private"),
            false,
            false,
            Err(N::Private),
        ),
        // §3.5: Authorization, and the three directives that allow sharing it.
        (auth, meta(), false, false, Err(N::Authorization)),
        (
            auth,
            with(200, "max-age=9, proxy-revalidate"),
            false,
            false,
            Err(N::Authorization),
        ),
        (auth, with(200, "public"), false, false, Ok(())),
        (auth, with(200, "s-maxage=9"), false, false, Ok(())),
        (auth, with(200, "must-revalidate"), false, false, Ok(())),
        // Ringway's choice: never replay Set-Cookie; §4.1: Vary: * never matches.
        (get(), meta(), true, false, Err(N::SetCookie)),
        (
            get(),
            with(200, "public, max-age=60"),
            true,
            false,
            Err(N::SetCookie),
        ),
        (get(), meta(), false, true, Err(N::VaryStar)),
    ];
    for (i, (req, resp, set_cookie, vary_star, expected)) in cases.iter().enumerate() {
        assert_eq!(
            storable(req, resp, *set_cookie, *vary_star),
            *expected,
            "case {i}: {req:?} {resp:?}"
        );
    }
}

#[test]
fn freshness_lifetime_table() {
    let base = ResponseMeta {
        control: ResponseControl::default(),
        ..meta()
    };
    // (response, expected lifetime)
    let cases: &[(ResponseMeta, u64)] = &[
        // §4.2.1 precedence: s-maxage > max-age > Expires.
        (
            ResponseMeta {
                control: cc("max-age=20, s-maxage=10"),
                expires: Some(T + 99),
                ..base
            },
            10,
        ),
        (
            ResponseMeta {
                control: cc("max-age=20"),
                expires: Some(T + 99),
                ..base
            },
            20,
        ),
        (
            ResponseMeta {
                control: cc("max-age=0"),
                expires: Some(T + 99),
                ..base
            },
            0,
        ),
        // An invalid max-age reads as 0, which wins over Expires (§4.2.1: stale).
        (
            ResponseMeta {
                control: cc("max-age=x"),
                expires: Some(T + 99),
                ..base
            },
            0,
        ),
        // Expires − Date.
        (
            ResponseMeta {
                expires: Some(T + 99),
                ..base
            },
            99,
        ),
        // Expires without Date: measured from the response time.
        (
            ResponseMeta {
                date: None,
                response_time: T + 40,
                expires: Some(T + 99),
                ..base
            },
            59,
        ),
        // §5.3: invalid Expires (Some(0)) and an Expires before Date: already expired.
        (
            ResponseMeta {
                expires: Some(0),
                ..base
            },
            0,
        ),
        (
            ResponseMeta {
                expires: Some(T - 5),
                ..base
            },
            0,
        ),
        // Expires wins over the heuristic.
        (
            ResponseMeta {
                expires: Some(T + 1),
                last_modified: Some(T - 10_000),
                ..base
            },
            1,
        ),
        // §4.2.2 heuristic: 10% of Date − Last-Modified.
        (
            ResponseMeta {
                last_modified: Some(T - 10_000),
                ..base
            },
            1_000,
        ),
        (
            ResponseMeta {
                date: None,
                response_time: T + 5_000,
                last_modified: Some(T - 5_000),
                ..base
            },
            1_000,
        ),
        // Capped at one day.
        (
            ResponseMeta {
                last_modified: Some(0),
                ..base
            },
            HEURISTIC_MAX,
        ),
        (
            ResponseMeta {
                last_modified: Some(T - 864_000),
                ..base
            },
            86_400,
        ),
        (
            ResponseMeta {
                last_modified: Some(T - 864_010),
                ..base
            },
            86_400,
        ),
        // No Last-Modified, or one in the future: nothing to go on.
        (base, 0),
        (
            ResponseMeta {
                last_modified: Some(T + 100),
                ..base
            },
            0,
        ),
        // Heuristic only with permission: a 302 needs `public`.
        (
            ResponseMeta {
                status: 302,
                last_modified: Some(T - 10_000),
                ..base
            },
            0,
        ),
        (
            ResponseMeta {
                status: 302,
                control: cc("public"),
                last_modified: Some(T - 10_000),
                ..base
            },
            1_000,
        ),
        (
            ResponseMeta {
                status: 404,
                last_modified: Some(T - 10_000),
                ..base
            },
            1_000,
        ),
    ];
    for (i, (resp, expected)) in cases.iter().enumerate() {
        assert_eq!(freshness_lifetime(resp), *expected, "case {i}: {resp:?}");
    }
}

#[test]
fn current_age_table() {
    // Request sent at T, response received at T+2 (2 s response_delay), resident until `now`.
    let m = |date: Option<u64>, age: u64| ResponseMeta {
        date,
        age,
        request_time: T,
        response_time: T + 2,
        ..meta()
    };
    // (response, now, expected current_age)
    let cases: &[(ResponseMeta, u64, u64)] = &[
        // apparent_age = 7 beats corrected_age_value = 3 + 2; resident 8.
        (m(Some(T - 5), 3), T + 10, 15),
        // corrected_age_value = 30 + 2 beats apparent_age = 7.
        (m(Some(T - 5), 30), T + 10, 40),
        // Date in the future: apparent_age is 0, the transit delay still counts.
        (m(Some(T + 100), 0), T + 10, 10),
        // No Date: apparent_age 0.
        (m(None, 0), T + 2, 2),
        (m(None, 10), T + 2, 12),
        // A clock stepping backwards gives no resident time, never a panic.
        (m(Some(T - 5), 0), T, 7),
        // Absurd Age saturates.
        (m(Some(T), u64::MAX), T + 10, u64::MAX),
    ];
    for (i, (resp, now, expected)) in cases.iter().enumerate() {
        assert_eq!(current_age(resp, *now), *expected, "case {i}");
    }
}

#[test]
fn evaluate_table() {
    use Serve::*;
    let r = |control: &str| ResponseMeta {
        control: cc(control),
        ..meta()
    };
    let none = RequestControl::default();
    // (response, request, now, expected). All responses are dated, sent and received at T.
    let cases: &[(ResponseMeta, RequestControl, u64, Serve)] = &[
        // §4.2: fresh while lifetime > age.
        (meta(), none, T, Fresh),
        (meta(), none, T + 99, Fresh),
        (meta(), none, T + 100, Revalidate),
        (meta(), none, T + 5_000, Revalidate),
        // §5.2.2.4 / §5.2.1.4: no-cache on either side.
        (r("max-age=100, no-cache"), none, T, Revalidate),
        (meta(), rq("no-cache"), T, Revalidate),
        (meta(), RequestControl::parse([], true), T, Revalidate),
        // §5.2.1.1: request max-age.
        (meta(), rq("max-age=0"), T + 1, Revalidate),
        // max-age=0 revalidates even at age 0 (ages are whole seconds; a reload means it).
        (meta(), rq("max-age=0"), T, Revalidate),
        (meta(), rq("max-age=60"), T + 60, Fresh),
        (meta(), rq("max-age=60"), T + 61, Revalidate),
        (meta(), rq("max-age=60, max-stale"), T + 61, Revalidate),
        // §5.2.1.3: min-fresh.
        (meta(), rq("min-fresh=30"), T + 70, Fresh),
        (meta(), rq("min-fresh=30"), T + 71, Revalidate),
        (meta(), rq("min-fresh=30, max-stale"), T + 150, Revalidate),
        // §5.2.1.2: max-stale, bare and with a value.
        (meta(), rq("max-stale"), T + 1_000_000, Fresh),
        (meta(), rq("max-stale=10"), T + 110, Fresh),
        (meta(), rq("max-stale=10"), T + 111, Revalidate),
        // §4.2.4: must-revalidate, proxy-revalidate and s-maxage forbid stale use.
        (
            r("max-age=100, must-revalidate"),
            rq("max-stale"),
            T + 101,
            Revalidate,
        ),
        (
            r("max-age=100, proxy-revalidate"),
            rq("max-stale"),
            T + 101,
            Revalidate,
        ),
        (r("s-maxage=100"), rq("max-stale"), T + 101, Revalidate),
        (r("s-maxage=100"), none, T + 99, Fresh),
        // RFC 5861 §3: stale-while-revalidate inside and outside its window.
        (
            r("max-age=100, stale-while-revalidate=30"),
            none,
            T + 99,
            Fresh,
        ),
        (
            r("max-age=100, stale-while-revalidate=30"),
            none,
            T + 100,
            StaleWhileRevalidate,
        ),
        (
            r("max-age=100, stale-while-revalidate=30"),
            none,
            T + 130,
            StaleWhileRevalidate,
        ),
        (
            r("max-age=100, stale-while-revalidate=30"),
            none,
            T + 131,
            Revalidate,
        ),
        (
            r("max-age=100, stale-while-revalidate=30, must-revalidate"),
            none,
            T + 101,
            Revalidate,
        ),
        (
            r("max-age=100, stale-while-revalidate=30, proxy-revalidate"),
            none,
            T + 101,
            Revalidate,
        ),
        (
            r("s-maxage=100, stale-while-revalidate=30"),
            none,
            T + 101,
            Revalidate,
        ),
        (
            r("max-age=100, stale-while-revalidate=30, no-cache"),
            none,
            T + 101,
            Revalidate,
        ),
        (
            r("max-age=100, stale-while-revalidate=30"),
            rq("no-cache"),
            T + 101,
            Revalidate,
        ),
        (
            r("max-age=100, stale-while-revalidate=30"),
            rq("max-age=50"),
            T + 101,
            Revalidate,
        ),
        // max-stale lets the client take it outright.
        (
            r("max-age=100, stale-while-revalidate=30"),
            rq("max-stale=5"),
            T + 102,
            Fresh,
        ),
        (
            r("max-age=100, stale-while-revalidate=30"),
            rq("max-stale=5"),
            T + 110,
            StaleWhileRevalidate,
        ),
        // No explicit freshness and no heuristic: stale at once.
        (r(""), none, T, Revalidate),
    ];
    for (i, (resp, req, now, expected)) in cases.iter().enumerate() {
        assert_eq!(
            evaluate(resp, req, *now),
            *expected,
            "case {i}: {:?} {req:?}",
            resp.control
        );
    }
}

#[test]
fn stale_if_error_table() {
    let r = |control: &str| ResponseMeta {
        control: cc(control),
        ..meta()
    };
    let none = RequestControl::default();
    // (response, request, now, expected); lifetimes are 100 s from T.
    let cases: &[(ResponseMeta, RequestControl, u64, bool)] = &[
        // RFC 5861 §4: the response's window.
        (r("max-age=100, stale-if-error=60"), none, T + 160, true),
        (r("max-age=100, stale-if-error=60"), none, T + 161, false),
        // The request's window.
        (meta(), rq("stale-if-error=60"), T + 160, true),
        (meta(), rq("stale-if-error=60"), T + 161, false),
        (
            r("max-age=100, stale-if-error=10"),
            rq("stale-if-error=600"),
            T + 500,
            true,
        ),
        (meta(), none, T + 101, false),
        // Forbidden by must-revalidate, proxy-revalidate, s-maxage and no-cache (§4.2.4).
        (
            r("max-age=100, stale-if-error=60, must-revalidate"),
            none,
            T + 110,
            false,
        ),
        (
            r("max-age=100, must-revalidate"),
            rq("stale-if-error=60"),
            T + 110,
            false,
        ),
        (
            r("max-age=100, stale-if-error=60, proxy-revalidate"),
            none,
            T + 110,
            false,
        ),
        (r("s-maxage=100, stale-if-error=60"), none, T + 110, false),
        (
            r("max-age=100, stale-if-error=60, no-cache"),
            none,
            T + 110,
            false,
        ),
        // A request with no-cache accepts only its own window.
        (
            r("max-age=100, stale-if-error=60"),
            rq("no-cache"),
            T + 110,
            false,
        ),
        (meta(), rq("no-cache, stale-if-error=60"), T + 110, true),
        // Not yet stale (revalidating because the client asked): 0 s stale.
        (meta(), rq("no-cache, stale-if-error=0"), T + 50, true),
    ];
    for (i, (resp, req, now, expected)) in cases.iter().enumerate() {
        assert_eq!(stale_if_error(resp, req, *now), *expected, "case {i}");
    }
}

#[test]
fn invalidates_table() {
    // §4.4: unsafe methods with a non-error status.
    let cases: &[(Method, u16, bool)] = &[
        (Method::Post, 200, true),
        (Method::Put, 201, true),
        (Method::Delete, 204, true),
        (Method::Patch, 303, true),
        (Method::Other, 200, true),
        (Method::Post, 399, true),
        (Method::Post, 400, false),
        (Method::Delete, 404, false),
        (Method::Put, 500, false),
        (Method::Post, 199, false),
        (Method::Get, 200, false),
        (Method::Head, 200, false),
        (Method::Options, 200, false),
        (Method::Trace, 200, false),
    ];
    for (method, status, expected) in cases {
        assert_eq!(
            invalidates(*method, *status),
            *expected,
            "{method:?} {status}"
        );
    }
}

#[test]
fn refresh_from_304() {
    let stored = ResponseMeta {
        control: cc("max-age=100, stale-if-error=60"),
        expires: Some(T + 500),
        last_modified: Some(T - 1_000),
        age: 40,
        ..meta()
    };
    let later = T + 10_000;
    let from_304 = ResponseMeta {
        status: 304,
        control: cc("max-age=300"),
        date: Some(later),
        expires: None,
        last_modified: None,
        age: 0,
        request_time: later - 1,
        response_time: later,
    };

    // §4.3.4: the 304's fields replace the stored ones; absent ones are kept.
    let mut s = stored;
    refresh(&mut s, &from_304, true);
    assert_eq!(
        s,
        ResponseMeta {
            status: 200,
            control: cc("max-age=300"),
            date: Some(later),
            expires: Some(T + 500),
            last_modified: Some(T - 1_000),
            age: 0,
            request_time: later - 1,
            response_time: later,
        }
    );
    // The 304 took 1 s to arrive (response_delay), so the age is 1 at `later`.
    assert_eq!(
        evaluate(&s, &RequestControl::default(), later + 298),
        Serve::Fresh
    );
    assert_eq!(
        evaluate(&stored, &RequestControl::default(), later),
        Serve::Revalidate
    );

    // Without a Cache-Control field on the 304 the stored directives stay.
    let mut s = stored;
    refresh(&mut s, &from_304, false);
    assert_eq!(s.control, stored.control);
    assert_eq!(
        evaluate(&s, &RequestControl::default(), later + 98),
        Serve::Fresh
    );
    assert_eq!(
        evaluate(&s, &RequestControl::default(), later + 99),
        Serve::Revalidate
    );

    // Present Expires, Last-Modified and Age replace the stored ones.
    let mut s = stored;
    let full = ResponseMeta {
        expires: Some(later + 50),
        last_modified: Some(T),
        age: 7,
        ..from_304
    };
    refresh(&mut s, &full, false);
    assert_eq!(
        (s.expires, s.last_modified, s.age),
        (Some(later + 50), Some(T), 7)
    );

    // A 304 without Date: the refreshed response is new, not as old as the first one.
    let mut s = stored;
    refresh(
        &mut s,
        &ResponseMeta {
            date: None,
            ..from_304
        },
        false,
    );
    assert_eq!(s.date, None);
    assert_eq!(current_age(&s, later + 10), 11);
}
