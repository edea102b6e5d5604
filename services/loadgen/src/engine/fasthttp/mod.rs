//! The users' fast path for `http://` and `https://` targets: one HTTP/1.1 keep-alive
//! connection per user (over TLS for `https://`, one TLS session per connection, resumed on
//! reconnect; see [`tls`]), or one HTTP/2 connection per user with `--http2` or when the
//! server's ALPN offers only h2 (see [`h2conn`]),
//! with the whole request (request line, headers, body) serialized once per request kind and
//! written as one buffer, and the response head parsed in place with `httparse` (the parser
//! hyper uses). No per-request allocation, no connection task, no channel between tasks: the
//! user's own task writes the request and reads the response, which is what makes loadgen as
//! fast as wrk.
//!
//! Response framing follows RFC 9112 §6.3: no body for `HEAD`, 1xx, 204 and 304; else a
//! `Transfer-Encoding` whose last coding is `chunked` (decoded, trailers skipped; any other
//! last coding: the body runs to the end of the connection), else `Content-Length` (differing
//! values are an invalid response), else the body runs to the end of the connection. 1xx
//! interim responses other than 101 are skipped; a 101 ends the connection's use. Limits are
//! hyper's: 100 headers, a head of 400 KiB, chunk-size lines of 16 KiB.
//!
//! A connection that fails, times out, answers `Connection: close` (or HTTP/1.0 without
//! keep-alive) or is closed by the server is dropped and the next request opens a new one.
//! Before a kept-alive connection that was idle for a millisecond or more is reused it is
//! checked without blocking (back-to-back requests skip the system call): if the server has
//! closed it while idle (keep-alive timeouts), or sent bytes nobody asked for, a new one is
//! opened, so idle closes are not counted as failures and stray bytes are not read as the next
//! response. A server that answers early and closes while the request body is still being
//! written (a 413 for a large upload) gets its answer counted, not a connection error.
//! Redirects are not followed (a 3xx counts as a success unless the scenario expects another
//! status), as in wrk and oha.
//!
//! Layout: [`target`] prepares a request's bytes once; [`connect`] opens a connection (TCP,
//! then TLS with [`tls`]'s settings and ALPN); [`conn`] owns the user's connection and runs one
//! HTTP/1.1 exchange, [`h2conn`] one HTTP/2 exchange; [`head`] parses a response head and decides the body's framing;
//! [`framing`] reads the body by that framing (chunked decoding included); [`error`] is what a
//! request can end in.

mod conn;
mod connect;
mod error;
mod framing;
mod h2conn;
mod head;
mod target;
#[cfg(test)]
mod tests;
mod tls;

pub(crate) use conn::FastConn;
pub(crate) use connect::{Connector, Protocol};
pub(crate) use target::FastTarget;
pub use tls::TlsMin;
pub(crate) use tls::TlsOptions;
