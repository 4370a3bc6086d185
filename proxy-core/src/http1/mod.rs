//! HTTP/1.x message heads and bodies, parsed in place.
//!
//! Heads are parsed by httparse straight out of the connection's read buffer and recorded as
//! [`Span`]s (offsets into that buffer), so a parsed head owns no memory and costs no allocation.
//! Bodies are framed by [`BodyFraming`] and, when chunked, tracked by [`ChunkedDecoder`]. Nothing
//! here reads a socket: the caller feeds bytes in and acts on what comes back.

mod chunked;
mod head;
pub mod path;
mod request;
mod response;

pub use chunked::{ChunkedDecoder, ChunkedError, Decoded};
pub(crate) use head::is_tchar;
pub use head::{find_head_end, has_token, HeaderSpan, Headers, Span, Version, MAX_HEADERS};
pub use request::{parse_request, Method, RequestHead};
pub use response::{parse_response, ResponseHead};

use crate::Status;

/// Why a message head or body was rejected. Each variant maps to the status the proxy answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Not valid HTTP/1.x syntax.
    Malformed,
    /// More header fields than [`MAX_HEADERS`].
    TooManyHeaders,
    /// An HTTP version other than 1.0 and 1.1.
    Version,
    /// Both `Content-Length` and `Transfer-Encoding`, or conflicting `Content-Length` values.
    AmbiguousLength,
    /// A `Content-Length` that is not a plain decimal number.
    BadContentLength,
    /// A transfer coding other than a single, final `chunked`.
    UnsupportedTransferCoding,
    /// HTTP/1.1 without exactly one `Host`, or more than one `Host`.
    BadHost,
    /// A request method the proxy does not forward (CONNECT).
    MethodNotAllowed,
    /// An `Expect` value other than `100-continue`.
    Expectation,
    /// A `Transfer-Encoding` value that is not a valid list of codings (refused with 400, where
    /// a valid but unsupported coding gets 501).
    BadTransferCoding,
    /// A bare CR or a bare LF in the head: every line must end in CRLF.
    BareLineEnding,
    /// A request path that cannot be put in canonical form (see [`path`]).
    BadPath,
}

impl ParseError {
    /// The status the proxy answers a request rejected for this reason with.
    pub const fn status(self) -> Status {
        match self {
            ParseError::TooManyHeaders => Status::HeaderFieldsTooLarge,
            ParseError::Version => Status::VersionNotSupported,
            ParseError::UnsupportedTransferCoding => Status::NotImplemented,
            ParseError::MethodNotAllowed => Status::MethodNotAllowed,
            ParseError::Expectation => Status::ExpectationFailed,
            ParseError::Malformed
            | ParseError::BadTransferCoding
            | ParseError::BareLineEnding
            | ParseError::BadPath
            | ParseError::AmbiguousLength
            | ParseError::BadContentLength
            | ParseError::BadHost => Status::BadRequest,
        }
    }

    /// A short, fixed description for logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            ParseError::Malformed => "malformed message head",
            ParseError::TooManyHeaders => "too many header fields",
            ParseError::Version => "unsupported HTTP version",
            ParseError::AmbiguousLength => "ambiguous message length",
            ParseError::BadContentLength => "invalid Content-Length",
            ParseError::UnsupportedTransferCoding => "unsupported transfer coding",
            ParseError::BadHost => "missing or repeated Host",
            ParseError::MethodNotAllowed => "method not allowed",
            ParseError::Expectation => "unsupported expectation",
            ParseError::BadTransferCoding => "invalid Transfer-Encoding",
            ParseError::BareLineEnding => "bare CR or LF in the head",
            ParseError::BadPath => "invalid or ambiguous request path",
        }
    }
}

/// How a message body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body at all.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding, ending with the zero-size chunk and trailers.
    Chunked,
    /// Everything until the sender closes (responses only).
    UntilClose,
}
