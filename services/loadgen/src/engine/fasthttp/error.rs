//! What a fast-path request can end in besides a response: one typed error (as oha's
//! `ClientError`), displayed in the words `reqwest` errors are reported with, so both paths
//! count the same failures under the same names.

/// Why a fast-path request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FastError {
    /// Connecting, writing or reading failed, or the connection closed before the response was
    /// complete.
    #[error("connection error")]
    Connection,
    /// The response is not HTTP/1.x, or breaks its framing rules or limits.
    #[error("invalid response")]
    InvalidResponse,
    /// No complete response within the request timeout.
    #[error("timeout")]
    Timeout,
    /// The TLS handshake or a TLS record failed, for the cause given.
    #[error(transparent)]
    Tls(#[from] super::tls::TlsFailure),
    /// The HTTP/2 connection or stream failed (a protocol error, a reset stream, GOAWAY).
    #[error("HTTP/2 error")]
    Http2,
}
