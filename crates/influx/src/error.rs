//! [`Error`]: what a write or a query ends in, classified from the HTTP status.

use std::time::Duration;

/// Why a write or a query failed. Messages carry no credential and no URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The store could not be reached or cannot serve now: a connection error, a timeout, a 5xx,
    /// 408 or 429. Worth retrying, after `retry_after` when the store sent a `Retry-After`
    /// (seconds).
    #[error("InfluxDB unavailable: {message}")]
    Unavailable {
        /// `HTTP 503: …` with the store's explanation, or the transport error.
        message: String,
        /// The store's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// 401 or 403: the credential is missing or wrong, or lacks the permission (a configuration
    /// error an operator fixes).
    #[error("HTTP {status}: {message} (check the InfluxDB credential and its permissions)")]
    Auth {
        /// 401 or 403.
        status: u16,
        /// The store's explanation.
        message: String,
    },
    /// 404, or a query's `database not found`: the database, retention policy, bucket or
    /// organisation does not exist, or the store has no such API (a store without InfluxQL
    /// answers `/query` with 404).
    #[error("not found: {message}")]
    NotFound {
        /// The store's explanation.
        message: String,
    },
    /// Another 4xx to a write: the points themselves are bad (400: a field type conflict, a
    /// line that does not parse; 422: outside the retention period) or the body is too large
    /// (413). Retrying the same body cannot succeed.
    #[error("HTTP {status}: {message}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The store's explanation.
        message: String,
    },
    /// The store refused an InfluxQL query: it does not parse (HTTP 400), or a statement failed
    /// (InfluxDB answers 200 with the statement's `error`).
    #[error("bad query: {message}")]
    BadQuery {
        /// The store's explanation.
        message: String,
    },
    /// A query's result has more rows than the client's row limit, or the store cut it short
    /// itself (`partial`, its own `max-row-limit`).
    #[error("the query's result has more than {limit} rows")]
    TooManyRows {
        /// The limit that was reached.
        limit: usize,
    },
    /// The answer could not be read: not InfluxQL's JSON, or larger than the client accepts.
    #[error("unreadable InfluxDB response: {message}")]
    Response {
        /// What was wrong with it.
        message: String,
    },
}

impl Error {
    /// The error for a non-2xx `status` with the store's explanation `message`: 5xx, 408 and
    /// 429 are [`Error::Unavailable`], 401 and 403 [`Error::Auth`], 404 [`Error::NotFound`],
    /// any other [`Error::Rejected`].
    pub fn from_status(status: u16, message: String, retry_after: Option<Duration>) -> Self {
        match status {
            s if s >= 500 || s == 408 || s == 429 => Error::Unavailable {
                message: format!("HTTP {status}: {message}"),
                retry_after,
            },
            401 | 403 => Error::Auth { status, message },
            404 => Error::NotFound { message },
            _ => Error::Rejected { status, message },
        }
    }

    /// Whether the same request can succeed later without a change on the client's side:
    /// [`Error::Unavailable`] only (an [`Error::Auth`] or [`Error::NotFound`] needs an operator).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }

    /// The server's `Retry-After`, for an [`Error::Unavailable`].
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        let of = |s| Error::from_status(s, "why".into(), None);
        for s in [500, 502, 503, 504, 408, 429] {
            assert!(of(s).is_transient(), "{s}");
        }
        assert_eq!(
            of(401),
            Error::Auth {
                status: 401,
                message: "why".into()
            }
        );
        assert!(matches!(of(403), Error::Auth { status: 403, .. }));
        assert!(matches!(of(404), Error::NotFound { .. }));
        for s in [400, 413, 422] {
            assert!(matches!(of(s), Error::Rejected { status, .. } if status == s));
        }
        let e = Error::from_status(503, "busy".into(), Some(Duration::from_secs(7)));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(e.to_string(), "InfluxDB unavailable: HTTP 503: busy");
    }
}
