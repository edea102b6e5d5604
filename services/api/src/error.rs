//! One error type for the HTTP boundary: every error is `application/problem+json`
//! (RFC 9457: `type`, `title`, `status`, `detail`, plus `field`, the JSON path of the offending
//! field). A 500 is opaque and logs its cause once.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use protocol::api::Problem;

/// An error answered to the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body (or a header) is invalid; `field` is its JSON path.
    #[error("{field}: {detail}")]
    Invalid {
        /// JSON path of the offending field (`measurement.fields.clients`).
        field: String,
        /// What is wrong.
        detail: String,
    },
    /// 401: missing or wrong API key / event token.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// 404: no such run or route.
    #[error("not found: {0}")]
    NotFound(String),
    /// 413: body larger than the limit.
    #[error("payload too large: {0}")]
    TooLarge(String),
    /// 408: the body did not arrive within `http.body_read_timeout_ms`.
    #[error("body timeout: {0}")]
    BodyTimeout(String),
    /// 429: a per-client limit (`problem` names it: `rate-limit`, `running-runs-limit`,
    /// `buffered-bytes-limit`); retry after the given seconds. Nothing was published.
    #[error("limited: {detail}")]
    Limited {
        /// The problem type's last segment.
        problem: &'static str,
        /// Which limit, with its setting.
        detail: String,
        /// Seconds for `Retry-After`.
        retry_after_s: u64,
    },
    /// 503: this API replica is full (request bodies buffered at once); retry after the given
    /// seconds. Nothing was published.
    #[error("busy: {detail}")]
    Busy {
        /// Which limit, with its setting.
        detail: String,
        /// Seconds for `Retry-After`.
        retry_after_s: u64,
    },
    /// 503: the broker is unavailable; retry after the given seconds. Nothing was published.
    #[error("unavailable: {detail}")]
    Unavailable {
        /// Why.
        detail: String,
        /// Seconds for `Retry-After`.
        retry_after_s: u64,
    },
    /// 500: our fault; the cause is logged, not returned.
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

impl From<protocol::ValidationError> for ApiError {
    fn from(e: protocol::ValidationError) -> Self {
        ApiError::Invalid {
            field: e.field,
            detail: e.message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, title, field, detail) = match &self {
            ApiError::Invalid { field, detail } => (
                StatusCode::BAD_REQUEST,
                "invalid-body",
                "Invalid request body",
                Some(field.clone()),
                format!("{field}: {detail}"),
            ),
            ApiError::Unauthorized(d) => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                None,
                d.clone(),
            ),
            ApiError::NotFound(d) => (
                StatusCode::NOT_FOUND,
                "not-found",
                "Not found",
                None,
                d.clone(),
            ),
            ApiError::TooLarge(d) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Payload too large",
                None,
                d.clone(),
            ),
            ApiError::BodyTimeout(d) => (
                StatusCode::REQUEST_TIMEOUT,
                "body-timeout",
                "Request body timeout",
                None,
                d.clone(),
            ),
            ApiError::Limited {
                problem, detail, ..
            } => (
                StatusCode::TOO_MANY_REQUESTS,
                *problem,
                "Too many requests",
                None,
                detail.clone(),
            ),
            ApiError::Busy { detail, .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server-busy",
                "Service busy",
                None,
                detail.clone(),
            ),
            ApiError::Unavailable { detail, .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "broker-unavailable",
                "Service unavailable",
                None,
                detail.clone(),
            ),
            ApiError::Internal(e) => {
                tracing::error!(error = %format!("{e:#}"), "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal server error",
                    None,
                    "an internal error occurred; it has been logged".to_string(),
                )
            }
        };
        let problem = Problem {
            kind: format!("https://loadtest.dev/problems/{kind}"),
            title: title.to_string(),
            status: status.as_u16(),
            detail,
            field,
        };
        let mut resp = (status, axum::Json(problem)).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let ApiError::Unavailable { retry_after_s, .. }
        | ApiError::Busy { retry_after_s, .. }
        | ApiError::Limited { retry_after_s, .. } = self
        {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
        }
        if status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body is not read: the connection cannot carry another request.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
