//! What a request contributes to balancing: its Maglev hash key (client address, a header, a
//! cookie or the path) and the sticky-session token its cookie carries; and the `Set-Cookie`
//! value that pins a client to an endpoint. All read from spans of the parsed head, no copies.

use super::{hash, HashKey};
use crate::config::Balance;
use crate::http1::RequestHead;

/// The balancing inputs of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestKeys {
    /// The Maglev key, hashed; `None` when the cluster does not hash or the request lacks it.
    pub hash: Option<u64>,
    /// The endpoint token of the sticky cookie, when the request carries a well-formed one.
    pub sticky: Option<u64>,
}

/// Extracts the balancing inputs of `head` (parsed from `buf`) for a cluster balancing as
/// `balance`, `client_ip` being the client's address as text.
pub fn request_keys(
    balance: &Balance,
    head: &RequestHead,
    buf: &[u8],
    client_ip: &[u8],
) -> RequestKeys {
    let hash_key = (balance.algorithm == super::Algorithm::Maglev).then_some(&balance.hash_key);
    let hash = match hash_key {
        None => None,
        Some(HashKey::ClientIp) => Some(hash(client_ip)),
        Some(HashKey::Path) => {
            let p = head.path.of(buf);
            let p = p.split(|&b| b == b'?').next().unwrap_or(p);
            Some(hash(p))
        }
        Some(HashKey::Header(name)) => head.headers.find(buf, name.as_bytes()).map(hash),
        Some(HashKey::Cookie(name)) => cookie(head, buf, name.as_bytes()).map(hash),
    };
    let sticky = balance
        .sticky_cookie
        .as_deref()
        .and_then(|name| cookie(head, buf, name.as_bytes()))
        .and_then(parse_token);
    RequestKeys { hash, sticky }
}

/// The value of cookie `name` in the request's `Cookie` fields (there may be several).
pub fn cookie<'a>(head: &RequestHead, buf: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    head.headers
        .as_slice()
        .iter()
        .filter(|h| h.name.of(buf).eq_ignore_ascii_case(b"cookie"))
        .find_map(|h| cookie_in(h.value.of(buf), name))
}

/// The value of cookie `name` in one `Cookie` field value (`a=1; b=2`).
pub fn cookie_in<'a>(field: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    field.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (k, v) = (&pair[..eq], &pair[eq + 1..]);
        (k == name).then(|| {
            let v = v.trim_ascii();
            v.strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(v)
        })
    })
}

/// A sticky token as it travels in the cookie: 16 lowercase hex digits.
pub fn format_token(token: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        let nibble = (token >> (60 - 4 * i)) & 0xf;
        *b = b"0123456789abcdef"[nibble as usize];
    }
    out
}

/// Reads a token written by [`format_token`]; anything else is ignored (a fresh pick).
pub fn parse_token(text: &[u8]) -> Option<u64> {
    if text.len() != 16 {
        return None;
    }
    text.iter().try_fold(0u64, |acc, &b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | u64::from(d))
    })
}

/// The `Set-Cookie` value that pins a client to the endpoint with `token`.
pub fn sticky_set_cookie(name: &str, token: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(name.len() + 40);
    v.extend_from_slice(name.as_bytes());
    v.push(b'=');
    v.extend_from_slice(&format_token(token));
    v.extend_from_slice(b"; Path=/; HttpOnly");
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        assert_eq!(cookie_in(b"a=1; rw=abc; b=2", b"rw"), Some(&b"abc"[..]));
        assert_eq!(cookie_in(b"a=1;rw=\"x\"", b"rw"), Some(&b"x"[..]));
        assert_eq!(cookie_in(b"arw=1", b"rw"), None);
        assert_eq!(cookie_in(b"", b"rw"), None);
        assert_eq!(cookie_in(b"rw", b"rw"), None);
    }

    #[test]
    fn tokens_round_trip_and_reject_junk() {
        for t in [0, 1, u64::MAX, 0x0123_4567_89ab_cdef] {
            assert_eq!(parse_token(&format_token(t)), Some(t));
        }
        assert_eq!(parse_token(b"0123"), None);
        assert_eq!(parse_token(b"0123456789ABCDEF"), None);
        assert_eq!(parse_token(b"0123456789abcdeg"), None);
    }
}
