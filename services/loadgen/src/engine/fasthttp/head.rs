//! Parsing a response head in place (with `httparse`, the parser hyper uses) and deciding how
//! its body is framed.

use super::error::FastError;
use super::framing::Framing;

/// Most response-head bytes before the response is called invalid (hyper's default read
/// buffer limit).
pub(super) const MAX_HEAD: usize = 400 * 1024;
/// Most headers in a response head (hyper's default).
const MAX_HEADERS: usize = 100;

/// A parsed response head.
#[derive(Debug, Clone, Copy)]
pub(super) struct Head {
    /// The status code.
    pub(super) status: u16,
    /// Bytes of the head, status line to the empty line.
    pub(super) len: usize,
    /// How the body is delimited.
    pub(super) framing: Framing,
    /// The connection may be reused after the body.
    pub(super) keep_alive: bool,
}

/// Parses the response head at the start of `buf`: `None` while it is incomplete.
pub(super) fn parse_head(buf: &[u8], head_request: bool) -> Result<Option<Head>, FastError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Ok(httparse::Status::Complete(_)) | Err(_) => return Err(FastError::InvalidResponse),
    };
    let status = match resp.code {
        Some(code @ 100..) => code,
        _ => return Err(FastError::InvalidResponse),
    };
    let http11 = resp.version == Some(1);
    let (mut length, mut coding, mut close, mut keep) = (None, None, false, false);
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = content_length(h.value).ok_or(FastError::InvalidResponse)?;
            if length.is_some_and(|l| l != n) {
                return Err(FastError::InvalidResponse);
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Several fields are one list; the last coding decides the framing.
            if let Some(last) = h.value.rsplit(|&b| b == b',').next() {
                coding = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            close |= has_token(h.value, "close");
            keep |= has_token(h.value, "keep-alive");
        }
    }
    let framing = if head_request || (100..200).contains(&status) || status == 204 || status == 304
    {
        Framing::Empty
    } else {
        match (coding, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::UntilClose,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::UntilClose,
        }
    };
    Ok(Some(Head {
        status,
        len,
        framing,
        keep_alive: !close && status != 101 && (http11 || keep),
    }))
}

/// A `Content-Length` value: digits only (no sign, no spaces inside), at most `u64::MAX`.
fn content_length(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Whether the comma-separated header `value` holds `token` (case-insensitive).
fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}
