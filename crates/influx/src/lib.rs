//! `loadtest-influx`: the one HTTP edge to InfluxDB-compatible stores, for the writer (line
//! protocol in) and the read API (InfluxQL in, series out).
//!
//! As vector's InfluxDB sink, the v1 and v2 APIs share one client and differ only where they
//! must: the write URL and the credential ([`WriteApi`], [`Auth`]). Everything else is written
//! once, in [`Endpoint`]: the connection pool, the request's credential, the error
//! classification (with the server's `Retry-After`), error texts without the URL (it may carry a
//! password).
//!
//! - [`Writer`]: `POST /write` (v1: InfluxDB 1.x, 3.x) or `POST /api/v2/write` (v2: InfluxDB
//!   2.x, 3.x, Cloud, VictoriaMetrics), nanosecond precision, the body a chain of shared buffers
//!   ([`bytes::Bytes`]) sent without joining them, gzipped from 1 KiB when asked. One attempt per
//!   call: retrying and splitting are the caller's policy (the writer's outbox).
//! - [`QueryClient`]: InfluxQL over `GET /query` with `db` and an optional `rp`: InfluxDB 1.x,
//!   InfluxDB 2.x through its v1 compatibility API, InfluxDB 3. A timeout and a row limit on every
//!   query; the result as [`Series`] (columns, rows of JSON values).
//! - [`Error`]: what a call ends in, typed for the caller's decision: [`Error::Unavailable`]
//!   (retry, after `retry_after` when the store sent one), [`Error::Auth`], [`Error::NotFound`],
//!   [`Error::Rejected`] (bad points), [`Error::BadQuery`], [`Error::TooManyRows`],
//!   [`Error::Response`].
//!
//! Not here: the line-protocol encoding and its backslash dialect (`loadtest-lifecycle`), the
//! retry and split policy (the writer's outbox), settings (each service's own).

mod body;
mod endpoint;
mod error;
mod query;
mod write;

pub use endpoint::{Auth, Endpoint, InvalidUrl};
pub use error::Error;
pub use query::{Epoch, QueryClient, Series};
pub use write::{WriteApi, Writer, GZIP_FROM_BYTES};
