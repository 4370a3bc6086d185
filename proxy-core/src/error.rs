//! Request-path errors as small `Copy` values, and the short canned responses they produce.
//!
//! A flood of bad requests must not allocate: every error is an enum variant that knows its
//! status code and which side is to blame, and every error response is a `&'static [u8]`.

/// An HTTP status code the proxy itself may answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 400: the request is malformed.
    BadRequest,
    /// 400: plain HTTP arrived on a TLS port.
    PlainHttpOnTlsPort,
    /// 404: no route matches the request.
    NotFound,
    /// 405: the method cannot be proxied (CONNECT).
    MethodNotAllowed,
    /// 408: the client was too slow to send its request head.
    RequestTimeout,
    /// 413: the request body exceeds the configured limit.
    PayloadTooLarge,
    /// 414: the request target exceeds the configured limit.
    UriTooLong,
    /// 417: an `Expect` value other than `100-continue`.
    ExpectationFailed,
    /// 421: the request names a host its TLS connection was not negotiated for, and the
    /// two differ in client-certificate policy.
    MisdirectedRequest,
    /// 431: the request head exceeds the configured limit.
    HeaderFieldsTooLarge,
    /// 501: a transfer coding other than chunked.
    NotImplemented,
    /// 502: the upstream refused, reset, or answered garbage.
    BadGateway,
    /// 503: the cluster has no endpoint, or the proxy is at its connection limit.
    ServiceUnavailable,
    /// 504: the upstream did not answer in time.
    GatewayTimeout,
    /// 505: an HTTP version other than 1.0 or 1.1.
    VersionNotSupported,
}

impl Status {
    /// The numeric status code.
    pub const fn code(self) -> u16 {
        match self {
            Status::BadRequest | Status::PlainHttpOnTlsPort => 400,
            Status::MisdirectedRequest => 421,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::PayloadTooLarge => 413,
            Status::UriTooLong => 414,
            Status::ExpectationFailed => 417,
            Status::HeaderFieldsTooLarge => 431,
            Status::NotImplemented => 501,
            Status::BadGateway => 502,
            Status::ServiceUnavailable => 503,
            Status::GatewayTimeout => 504,
            Status::VersionNotSupported => 505,
        }
    }

    /// The complete response, head and body, that the proxy sends for this status.
    ///
    /// `close` selects the variant carrying `Connection: close`. Bodies are short, say what went
    /// wrong in words, and never name an upstream address or a software version.
    pub const fn response(self, close: bool) -> &'static [u8] {
        macro_rules! canned {
            ($status:literal, $len:literal, $body:literal) => {
                if close {
                    concat!(
                        "HTTP/1.1 ",
                        $status,
                        "\r\nContent-Type: text/plain\r\nContent-Length: ",
                        $len,
                        "\r\nConnection: close\r\n\r\n",
                        $body
                    )
                    .as_bytes()
                } else {
                    concat!(
                        "HTTP/1.1 ",
                        $status,
                        "\r\nContent-Type: text/plain\r\nContent-Length: ",
                        $len,
                        "\r\n\r\n",
                        $body
                    )
                    .as_bytes()
                }
            };
        }
        match self {
            Status::BadRequest => canned!("400 Bad Request", "12", "bad request\n"),
            Status::PlainHttpOnTlsPort => canned!(
                "400 Bad Request",
                "48",
                "this port speaks TLS: send the request as https\n"
            ),
            Status::NotFound => canned!("404 Not Found", "26", "no route for this request\n"),
            // RFC 9110 §15.5.6: a 405 names the methods that are allowed. Every method but
            // CONNECT is forwarded.
            Status::MethodNotAllowed => canned!(
                "405 Method Not Allowed\r\nAllow: GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH",
                "19",
                "method not allowed\n"
            ),
            Status::RequestTimeout => canned!("408 Request Timeout", "18", "request timed out\n"),
            Status::PayloadTooLarge => {
                canned!("413 Payload Too Large", "23", "request body too large\n")
            }
            Status::UriTooLong => canned!("414 URI Too Long", "24", "request target too long\n"),
            Status::ExpectationFailed => {
                canned!("417 Expectation Failed", "24", "unsupported expectation\n")
            }
            Status::MisdirectedRequest => canned!(
                "421 Misdirected Request",
                "49",
                "this connection was not negotiated for that host\n"
            ),
            Status::HeaderFieldsTooLarge => canned!(
                "431 Request Header Fields Too Large",
                "25",
                "request header too large\n"
            ),
            Status::NotImplemented => canned!(
                "501 Not Implemented",
                "30",
                "transfer coding not supported\n"
            ),
            Status::BadGateway => canned!("502 Bad Gateway", "16", "upstream failed\n"),
            Status::ServiceUnavailable => {
                canned!("503 Service Unavailable", "22", "no upstream available\n")
            }
            Status::GatewayTimeout => canned!("504 Gateway Timeout", "19", "upstream timed out\n"),
            Status::VersionNotSupported => canned!(
                "505 HTTP Version Not Supported",
                "27",
                "http version not supported\n"
            ),
        }
    }

    /// All statuses, for tests and metrics.
    pub const ALL: [Status; 15] = [
        Status::BadRequest,
        Status::PlainHttpOnTlsPort,
        Status::MisdirectedRequest,
        Status::NotFound,
        Status::MethodNotAllowed,
        Status::RequestTimeout,
        Status::PayloadTooLarge,
        Status::UriTooLong,
        Status::ExpectationFailed,
        Status::HeaderFieldsTooLarge,
        Status::NotImplemented,
        Status::BadGateway,
        Status::ServiceUnavailable,
        Status::GatewayTimeout,
        Status::VersionNotSupported,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_responses_are_well_framed() {
        for status in Status::ALL {
            for close in [false, true] {
                let text = std::str::from_utf8(status.response(close)).unwrap();
                let (head, body) = text.split_once("\r\n\r\n").unwrap();
                assert!(head.starts_with(&format!("HTTP/1.1 {} ", status.code())));
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(len, body.len(), "{text}");
                assert_eq!(head.contains("Connection: close"), close);
                assert_eq!(
                    head.contains("\r\nAllow: GET, HEAD, POST"),
                    status == Status::MethodNotAllowed,
                    "{text}"
                );
            }
        }
    }
}
