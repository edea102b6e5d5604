//! The load-test API's HTTP bodies, shared by the API (which parses them), its clients (loadgen
//! sends them) and the OpenAPI document (which describes them, behind the `openapi` feature).
//!
//! - `POST /apiv0.1/events/register`: [`RegisterRequest`] → 201 [`RegisterResponse`];
//! - `POST /apiv0.1/events/{uuid}/stats`: [`StatsRequest`] → 202 [`Accepted`];
//! - `POST /apiv0.1/events/commit`: [`CommitRequest`] → 202 [`Accepted`];
//! - `GET /healthz`, `GET /readyz`: [`Health`];
//! - every error: [`Problem`] (`application/problem+json`).
//!
//! The register and commit bodies are the original Consumer's, byte for byte (see `fixtures/`);
//! our additions are optional. These are wire types: they hold what a client sent, type-checked
//! but not yet validated. The API converts them into its domain types with `TryFrom`, checking the
//! limits below; each limit is written once, here or in [`crate::stats`] and [`crate::envelope`],
//! and the same constant reaches the OpenAPI document through `openapi::Limits` (behind the
//! `openapi` feature).
//!
//! Where the original API answered a type error with its own words (`nodeId: must be a string`),
//! the field's deserializer says the same, so every error keeps its field path and message.

#[cfg(feature = "openapi")]
pub mod openapi;

use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{ErrorEntry, StatsEntry, StatsPayload, ThresholdVerdict};

/// Longest `host` (the registering or committing machine), in characters.
pub const MAX_HOST_LEN: usize = 255;
/// Longest `measurement.tags.targetHost` of a register, in characters.
pub const MAX_TARGET_HOST_LEN: usize = 1_000;
/// Longest `measurement.tags.mode` of a register, in characters.
pub const MAX_MODE_LEN: usize = 64;
/// Longest `tool` of a register, in characters.
pub const MAX_TOOL_LEN: usize = 64;
/// Longest `runKey` of a register, in characters (it may not be empty either).
pub const MAX_RUN_KEY_LEN: usize = 200;
/// Most nodes a register may announce (`expectedNodes`).
pub const MAX_EXPECTED_NODES: u64 = u32::MAX as u64;
/// Most threshold verdicts in one commit.
pub const MAX_THRESHOLDS: usize = 100;
pub use crate::envelope::{MAX_METRIC_LEN, MAX_NODE_ID_LEN, MAX_THRESHOLD_LEN};
pub use crate::stats::{MAX_ENTRIES, MAX_METHOD_LEN, MAX_NAME_LEN};

/// Body of `POST /apiv0.1/events/register`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    /// Start time, RFC 3339 (`2026-11-29T08:00:00Z`).
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub started_at: String,
    /// The registering machine (at most 255 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Run parameters and tags.
    pub measurement: RegisterMeasurement,
    /// Idempotency key: the same key with the same API key returns the same uuid and token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_key: Option<String>,
    /// The registering node (default `default`; cluster nodes send their own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// `loadgen`, `locust`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Nodes expected to join (cluster mode).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::lenient::opt_count"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u32>, minimum = 0))]
    pub expected_nodes: Option<u64>,
}

/// `measurement` of a register body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisterMeasurement {
    /// Numeric parameters.
    pub fields: RegisterFields,
    /// Tags.
    pub tags: RegisterTags,
}

/// `measurement.fields` of a register body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RegisterFields {
    /// Users planned.
    #[serde(deserialize_with = "crate::lenient::count")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub clients: u64,
    /// Spawn rate, users/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub hatch_rate: Option<f64>,
    /// Planned requests (0 for a time-bound run).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::lenient::opt_count"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub requests: Option<u64>,
}

/// `measurement.tags` of a register body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RegisterTags {
    /// The system under test (at most 1,000 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_host: Option<String>,
    /// `single` or `cluster` (at most 64 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// Answer to a register (201).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RegisterResponse {
    /// The run's uuid.
    pub uuid: Uuid,
    /// Event-scoped bearer token for stats and commit.
    pub token: String,
    /// Where to post stats.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub stats_url: String,
    /// Where to post the commit.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub commit_url: String,
}

/// Body of `POST /apiv0.1/events/{uuid}/stats`: a node's cumulative stats (the fields of
/// [`StatsPayload`]) plus its id and sequence number, side by side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct StatsRequest {
    /// The sending node (default `default`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_string"
    )]
    pub node_id: Option<String>,
    /// Sequence number; a higher one supersedes a lower one from the same node.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_count"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub seq: Option<u64>,
    /// Users running on the node.
    #[serde(default, deserialize_with = "crate::lenient::count")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub user_count: u64,
    /// Runner state (`spawning`, `running`, `stopped`).
    #[serde(default)]
    pub state: String,
    /// Per-endpoint entries.
    #[serde(default)]
    pub entries: Vec<StatsEntry>,
    /// The aggregated row.
    pub total: StatsEntry,
    /// Errors.
    #[serde(default)]
    pub errors: Vec<ErrorEntry>,
    /// When the node's load stopped, Unix seconds (see [`StatsPayload::stopped_at`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub stopped_at: Option<f64>,
}

impl StatsRequest {
    /// The body carrying `payload` from `node_id` as its `seq`-th message.
    pub fn new(node_id: Option<String>, seq: Option<u64>, payload: StatsPayload) -> Self {
        Self {
            node_id,
            seq,
            user_count: payload.user_count,
            state: payload.state,
            entries: payload.entries,
            total: payload.total,
            errors: payload.errors,
            stopped_at: payload.stopped_at,
        }
    }

    /// The stats the body carries (not validated).
    /// The stats payload it carries; Locust's total row, if the client listed it among the
    /// entries, is left out (the `total` carries it).
    pub fn payload(self) -> StatsPayload {
        StatsPayload {
            user_count: self.user_count,
            state: self.state,
            entries: self.entries,
            total: self.total,
            errors: self.errors,
            stopped_at: self.stopped_at,
        }
        .without_total_rows()
    }
}

/// Body of `POST /apiv0.1/events/commit` (the original Consumer's, plus optional additions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CommitRequest {
    /// Start time, RFC 3339.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_string"
    )]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub started_at: Option<String>,
    /// The run's uuid from register.
    #[serde(deserialize_with = "uuid_text")]
    pub uuid: Uuid,
    /// The committing machine.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_string"
    )]
    pub host: Option<String>,
    /// The committing node (default `default`; cluster nodes send their own).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_string"
    )]
    pub node_id: Option<String>,
    /// Sequence number.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_count"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub seq: Option<u64>,
    /// Users at the end.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_count"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub user_count: Option<u64>,
    /// Errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<ErrorEntry>>,
    /// Final stats.
    #[serde(default, deserialize_with = "object_or_default")]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub measurement: CommitMeasurement,
    /// The load generator's threshold verdicts, written as `loadtest_threshold` points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<Vec<ThresholdVerdict>>,
    /// When the node's load stopped, Unix seconds: the end of its load window (see
    /// [`StatsPayload::stopped_at`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.0))]
    pub stopped_at: Option<f64>,
}

/// `measurement` of a commit body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommitMeasurement {
    /// The final stats.
    #[serde(default, deserialize_with = "object_or_default")]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub fields: CommitFields,
    /// Tags (`hostname`, `mode`), informational: any JSON is accepted and ignored.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "tolerant"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<serde_json::Value>))]
    pub tags: Option<CommitTags>,
}

/// `measurement.fields` of a commit body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CommitFields {
    /// Locust `StatsEntry.serialize()` objects (or Locust's `/stats/requests` JSON object).
    // Required: `None` only when a body has none, which the API rejects.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = Vec<StatsEntry>, required = true)
    )]
    pub request_stats: Option<RequestStats>,
}

/// `measurement.tags` of a commit body, as the original Consumer's clients send them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CommitTags {
    /// The system under test (named `hostname`, as in the original Consumer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// `single` or `cluster`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// `measurement.fields.requestStats` of a commit: a list of Locust `StatsEntry.serialize()`
/// objects, or Locust's web `/stats/requests` JSON (which has no histograms).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum RequestStats {
    /// Locust `StatsEntry.serialize()` objects (loadgen sends these).
    Entries(Vec<StatsEntry>),
    /// Locust's web `/stats/requests` JSON.
    Web(WebStats),
}

/// What a `requestStats` of the wrong JSON type is told.
const REQUEST_STATS_SHAPE: &str =
    "must be a list of stats entries or Locust's /stats/requests object";

impl<'de> Deserialize<'de> for RequestStats {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Shape;
        impl<'de> Visitor<'de> for Shape {
            type Value = RequestStats;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(REQUEST_STATS_SHAPE)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(RequestStats::Entries)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                WebStats::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RequestStats::Web)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Err(E::custom(REQUEST_STATS_SHAPE))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Err(E::custom(REQUEST_STATS_SHAPE))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Err(E::custom(REQUEST_STATS_SHAPE))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Err(E::custom(REQUEST_STATS_SHAPE))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Err(E::custom(REQUEST_STATS_SHAPE))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Err(E::custom(REQUEST_STATS_SHAPE))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Err(E::custom(REQUEST_STATS_SHAPE))
            }
        }
        d.deserialize_any(Shape)
    }
}

/// Locust's web `/stats/requests` JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebStats {
    /// One row per endpoint, and Locust's `Aggregated` row.
    pub stats: Vec<WebRow>,
    /// Errors.
    #[serde(default)]
    pub errors: Vec<ErrorEntry>,
    /// Users running.
    #[serde(default, deserialize_with = "crate::lenient::count")]
    pub user_count: u64,
}

/// One row of Locust's web `/stats/requests` JSON (`stats[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebRow {
    /// HTTP method (`null` in the `Aggregated` row).
    #[serde(default)]
    pub method: Option<String>,
    /// Request name.
    pub name: String,
    /// Requests.
    #[serde(deserialize_with = "crate::lenient::count")]
    pub num_requests: u64,
    /// Failures.
    #[serde(default, deserialize_with = "crate::lenient::count")]
    pub num_failures: u64,
    /// Mean response time, ms.
    #[serde(default)]
    pub avg_response_time: f64,
    /// Fastest response, ms.
    #[serde(default)]
    pub min_response_time: Option<f64>,
    /// Slowest response, ms.
    #[serde(default)]
    pub max_response_time: Option<f64>,
    /// Mean body size, bytes.
    #[serde(default)]
    pub avg_content_length: f64,
    /// Median response time, ms, as Locust computed it (`null` before the first request).
    #[serde(default)]
    pub median_response_time: Option<f64>,
    /// The other columns; Locust's percentiles among them are `response_time_percentile_0.95`
    /// and `response_time_percentile_0.99` (one per fraction Locust's
    /// `PERCENTILES_TO_STATISTICS` names), ms.
    #[serde(flatten)]
    pub other: std::collections::BTreeMap<String, serde_json::Value>,
}

impl WebRow {
    /// The percentiles Locust reported for this row, ms, by fraction as text (`"0.5"` for the
    /// median, `"0.95"` for `response_time_percentile_0.95`); `null`s are left out.
    pub fn reported_percentiles(&self) -> std::collections::BTreeMap<String, f64> {
        let mut out = std::collections::BTreeMap::new();
        if let Some(m) = self.median_response_time {
            out.insert("0.5".to_string(), m);
        }
        for (k, v) in &self.other {
            if let (Some(fraction), Some(ms)) =
                (k.strip_prefix("response_time_percentile_"), v.as_f64())
            {
                out.insert(fraction.to_string(), ms);
            }
        }
        out
    }
}

/// Answer to a stats post or a commit (202).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Accepted {
    /// Always `accepted`.
    pub status: String,
    /// The run.
    pub uuid: Uuid,
}

impl Accepted {
    /// The answer for run `uuid`.
    pub fn new(uuid: Uuid) -> Self {
        Self {
            status: "accepted".to_string(),
            uuid,
        }
    }
}

/// Answer of `/healthz` and `/readyz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// `ok` or `ready`.
    pub status: String,
}

/// The problem+json body of every error (RFC 9457), naming the offending field when one is
/// to blame. Read leniently (RFC 9457 makes every member optional), written whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    /// A URI reference naming the problem type.
    #[serde(rename = "type", default = "about_blank")]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub kind: String,
    /// Short summary.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub title: String,
    /// HTTP status.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub status: u16,
    /// Explanation for this occurrence.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub detail: String,
    /// JSON path of the offending field, when one is to blame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

fn about_blank() -> String {
    "about:blank".to_string()
}

/// An optional string: `null` or absent is `None`; any other non-string is "must be a string".
fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => Ok(Some(s)),
        _ => Err(de::Error::custom("must be a string")),
    }
}

/// An optional count (see [`crate::lenient::count`]): `null` or absent is `None`; anything else
/// that is not a count is "must be a non-negative integer".
fn opt_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        v => crate::lenient::count(&v)
            .map(Some)
            .map_err(|_| de::Error::custom("must be a non-negative integer")),
    }
}

/// A uuid written as a string: "must be a string", or "not a uuid: …".
fn uuid_text<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => {
            Uuid::parse_str(&s).map_err(|e| de::Error::custom(format!("not a uuid: {e}")))
        }
        _ => Err(de::Error::custom("must be a string")),
    }
}

/// A value that must be present when its field is (`null` is not "absent"); absence is
/// `#[serde(default)]`'s `None`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `T` read from an object; anything else (a string, a number, `null`, a list) is
/// `T::default()`, as if the object were empty. Errors inside the object keep their path.
fn object_or_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    struct ObjectOrDefault<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de> + Default> Visitor<'de> for ObjectOrDefault<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(T::default())
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<T, E> {
            Ok(T::default())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<T, E> {
            Ok(T::default())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<T, E> {
            Ok(T::default())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<T, E> {
            Ok(T::default())
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<T, E> {
            Ok(T::default())
        }
        fn visit_unit<E: de::Error>(self) -> Result<T, E> {
            Ok(T::default())
        }
        fn visit_none<E: de::Error>(self) -> Result<T, E> {
            Ok(T::default())
        }
    }
    d.deserialize_any(ObjectOrDefault(std::marker::PhantomData))
}

/// `T` when the value is one, else `None`: a field the server takes as information only.
fn tolerant<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(T::deserialize(value).ok())
}

#[cfg(test)]
mod tests;
